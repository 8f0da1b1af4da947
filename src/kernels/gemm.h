/* The one matrix-multiply primitive of the UNet kernels: a 16 x 16 output tile
 *
 *     C[r][j] = (first ? bias[r] : C[r][j]) + sum_k A[k][r] * B[k][j]     r, j < 16
 *
 * with an optional epilogue on the last call of a tile, C = (C + R) / div. A is a "panel" of 16
 * rows stored k-major (16 floats per k, a[k * lda + r]), B a "strip" of 16 columns stored k-major
 * (b[k * ldb + j]). Packed operands have lda = ldb = 16; any other stride works too when the 16
 * floats of each k are contiguous (a channel row of an NCHW tensor, for instance).
 *
 * Every output element is one sequential chain over k (no split sums): calling the tile on k
 * blocks [0, k1), [k1, k2), ... gives the same bytes as one call on [0, K). So results depend
 * neither on blocking nor on tiling, threads or batch size; only on the kernel path (the FMA
 * path rounds once per multiply-add, the generic one twice).
 *
 * Paths (the caller picks one: a model's kernel choice, op_kernels in ops.h; a path the CPU lacks
 * falls back to the next one below it):
 *   avx512   16 zmm accumulators, one broadcast FMA per row per k
 *   avx2     the tile in passes of 6, 5 and 5 rows x 16 columns (12 or 10 ymm accumulators)
 *   generic  portable C (multiply, then add) */
#ifndef PNDM_GEMM_H
#define PNDM_GEMM_H

#include <stddef.h>

#define GEMM_MR 16 /* rows of a panel */
#define GEMM_NR 16 /* columns of a strip */

typedef enum gemm_path { GEMM_PATH_GENERIC = 0, GEMM_PATH_AVX2 = 1, GEMM_PATH_AVX512 = 2 } gemm_path;

enum {
    GEMM_FIRST = 1, /* start from bias (or 0) instead of loading C */
    GEMM_LAST = 2   /* apply the epilogue (residual, divisor) before storing */
};

typedef struct gemm_epi {
    const float *bias; /* (16) per row, used with GEMM_FIRST; NULL: 0 */
    const float *res;  /* residual tile (rows x cols, row stride ldr) added with GEMM_LAST, or NULL */
    size_t ldr;
    float div; /* with GEMM_LAST: C = (C + R) / div when div != 1 (a true division) */
} gemm_epi;

/* One tile. rows, cols in [1, 16]: only those rows/columns of C (and R) are read or written;
 * A and B must still hold 16 readable floats per k (zero-padded when packed). e may be NULL. */
typedef void (*gemm_tile_fn)(int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                             int rows, int cols, int flags, const gemm_epi *e);

/* Whether the CPU can run a path. */
int gemm_path_supported(gemm_path p);
/* The best path the CPU can run at or below p (GEMM_PATH_AVX512: the best there is). */
gemm_path gemm_path_best(gemm_path p);
/* The tile function of a path (which must be supported). */
gemm_tile_fn gemm_tile_for(gemm_path p);
const char *gemm_path_name(gemm_path p);

/* Pack rows [r0, r0 + rows) (rows <= 16) of the M x K matrix src (element (r, k) at
 * src[r * rs + k * ks]) into a panel dst (K, 16), zero-filling rows >= rows. */
void gemm_pack_panel(const float *src, size_t rs, size_t ks, int rows, int K, float *dst);

#endif
