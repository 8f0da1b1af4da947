/* 16 x 16 GEMM tiles for three instruction sets (see gemm.h), selected at run time. */
#define _POSIX_C_SOURCE 200809L
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define GEMM_X86 1
#include <immintrin.h>
#define GEMM_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define GEMM_AVX2 __attribute__((target("avx2,fma")))
#else
#define GEMM_X86 0
#endif

/* ---- portable path ------------------------------------------------------------------------- */
/* Four rows at a time (as the AVX2 path), each element a sequential chain over k. */
static void tile_generic(int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc, int rows,
                         int cols, int flags, const gemm_epi *e) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        const int nr = rows - r0 < 4 ? rows - r0 : 4;
        float acc[4][GEMM_NR];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < GEMM_NR; j++) {
                float v = 0.0f;
                if (i < nr && j < cols) {
                    if (flags & GEMM_FIRST)
                        v = e && e->bias ? e->bias[r0 + i] : 0.0f;
                    else
                        v = c[(size_t)(r0 + i) * ldc + j];
                }
                acc[i][j] = v;
            }
        for (int k = 0; k < K; k++) {
            const float *bk = b + (size_t)k * ldb, *ak = a + (size_t)k * lda + r0;
            for (int i = 0; i < 4; i++) {
                const float av = ak[i];
                for (int j = 0; j < GEMM_NR; j++) acc[i][j] += av * bk[j];
            }
        }
        for (int i = 0; i < nr; i++) {
            float *cr = c + (size_t)(r0 + i) * ldc;
            for (int j = 0; j < cols; j++) {
                float v = acc[i][j];
                if ((flags & GEMM_LAST) && e) {
                    if (e->res) v += e->res[(size_t)(r0 + i) * e->ldr + j];
                    if (e->div != 1.0f) v /= e->div;
                }
                cr[j] = v;
            }
        }
    }
}

#if GEMM_X86
/* ---- AVX2 + FMA: passes of 6, 5 and 5 rows x 16 columns ------------------------------------- */
/* One pass: rows [r0, r0 + NRW) of the tile (nr of them stored), 2 * NRW ymm accumulators. With
 * NRW = 6 or 5, 12 or 10 independent FMA chains hide the FMA latency (5 cycles on Zen 2, 4 on Intel cores)
 * on two FMA pipes, and 12 FMAs per k need 2 loads of B and 6 broadcasts of A, within two load
 * ports. Each element is still one sequential FMA chain over k (the same bytes as any shape). */
GEMM_AVX2 static inline __attribute__((always_inline)) void avx2_pass(const int NRW, int K, const float *a, size_t lda,
                                                                      const float *b, size_t ldb, float *c, size_t ldc,
                                                                      int r0, int nr, int cols, int flags,
                                                                      const gemm_epi *e) {
    /* Every loop over the rows runs to the constant NRW (conditions inside), so that the
     * accumulators live in registers: with a loop bound of nr GCC kept them in memory and stored
     * them after every FMA (71 % of the FMA peak on L1-resident operands). */
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < NRW; i++) {
        if (i < nr && (flags & GEMM_FIRST)) {
            acc[i][0] = acc[i][1] = _mm256_set1_ps(e && e->bias ? e->bias[r0 + i] : 0.0f);
        } else if (i < nr && cols == GEMM_NR) {
            acc[i][0] = _mm256_loadu_ps(c + (size_t)(r0 + i) * ldc);
            acc[i][1] = _mm256_loadu_ps(c + (size_t)(r0 + i) * ldc + 8);
        } else {
            float t[GEMM_NR] = {0};
            if (i < nr) memcpy(t, c + (size_t)(r0 + i) * ldc, (size_t)cols * sizeof *t);
            acc[i][0] = _mm256_loadu_ps(t);
            acc[i][1] = _mm256_loadu_ps(t + 8);
        }
    }
    const float *ak = a + r0, *bk = b;
    for (int k = 0; k < K; k++, ak += lda, bk += ldb) {
        const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
#pragma GCC unroll 6
        for (int i = 0; i < NRW; i++) {
            const __m256 av = _mm256_broadcast_ss(ak + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const int last = (flags & GEMM_LAST) && e;
#pragma GCC unroll 6
    for (int i = 0; i < NRW; i++) {
        if (i >= nr) continue;
        float *cr = c + (size_t)(r0 + i) * ldc;
        __m256 v0 = acc[i][0], v1 = acc[i][1];
        if (cols == GEMM_NR) { /* C = (C + R) / div on vectors: the same IEEE operations as below */
            if (last && e->res) {
                const float *rr = e->res + (size_t)(r0 + i) * e->ldr;
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(rr));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(rr + 8));
            }
            if (last && e->div != 1.0f) {
                const __m256 d = _mm256_set1_ps(e->div);
                v0 = _mm256_div_ps(v0, d);
                v1 = _mm256_div_ps(v1, d);
            }
            _mm256_storeu_ps(cr, v0);
            _mm256_storeu_ps(cr + 8, v1);
            continue;
        }
        float t[GEMM_NR];
        _mm256_storeu_ps(t, v0);
        _mm256_storeu_ps(t + 8, v1);
        for (int j = 0; j < cols; j++) {
            float v = t[j];
            if (last) {
                if (e->res) v += e->res[(size_t)(r0 + i) * e->ldr + j];
                if (e->div != 1.0f) v /= e->div;
            }
            cr[j] = v;
        }
    }
}

GEMM_AVX2 static void tile_avx2(int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                                int rows, int cols, int flags, const gemm_epi *e) {
    if (rows > 11) { /* full panels: passes of 6, 5 and 5 rows (10 chains cover 5 cycles x 2 pipes;
                      * 6 + 6 + 4 left the last pass at 8 chains: 85 vs 90 GFLOP/s on Zen 2) */
        avx2_pass(6, K, a, lda, b, ldb, c, ldc, 0, 6, cols, flags, e);
        avx2_pass(5, K, a, lda, b, ldb, c, ldc, 6, 5, cols, flags, e);
        avx2_pass(5, K, a, lda, b, ldb, c, ldc, 11, rows - 11, cols, flags, e);
        return;
    }
    /* rows 0-5 and 6-11 in passes of 6 (they read A rows up to 11), the rest in a pass of 4 */
    for (int r0 = 0; r0 < rows;) {
        const int rem = rows - r0;
        if (rem > 4) {
            avx2_pass(6, K, a, lda, b, ldb, c, ldc, r0, rem < 6 ? rem : 6, cols, flags, e);
            r0 += 6;
        } else {
            avx2_pass(4, K, a, lda, b, ldb, c, ldc, r0, rem, cols, flags, e);
            r0 += 4;
        }
    }
}

/* ---- AVX-512 + FMA: 16 zmm accumulators (one per row), broadcast A, one B vector per k ------ */
GEMM_AVX512 static void tile_avx512(int K, const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                                    int rows, int cols, int flags, const gemm_epi *e) {
    const __mmask16 m = (__mmask16)(cols >= GEMM_NR ? 0xFFFFu : (1u << cols) - 1u);
    __m512 acc[GEMM_MR];
    if (flags & GEMM_FIRST) {
        const float *bias = e ? e->bias : NULL;
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++) acc[r] = bias && r < rows ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++)
            acc[r] = r < rows ? _mm512_maskz_loadu_ps(m, c + (size_t)r * ldc) : _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const __m512 bv = _mm512_loadu_ps(b + (size_t)k * ldb);
        const float *ak = a + (size_t)k * lda;
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ak[r]), bv, acc[r]);
    }
    if ((flags & GEMM_LAST) && e) {
        if (e->res) {
#pragma GCC unroll 16
            for (int r = 0; r < GEMM_MR; r++)
                if (r < rows) acc[r] = _mm512_add_ps(acc[r], _mm512_maskz_loadu_ps(m, e->res + (size_t)r * e->ldr));
        }
        if (e->div != 1.0f) {
            const __m512 d = _mm512_set1_ps(e->div);
#pragma GCC unroll 16
            for (int r = 0; r < GEMM_MR; r++) acc[r] = _mm512_div_ps(acc[r], d);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < GEMM_MR; r++)
        if (r < rows) _mm512_mask_storeu_ps(c + (size_t)r * ldc, m, acc[r]);
}
#endif

/* ---- selection ------------------------------------------------------------------------------ */
int gemm_path_supported(gemm_path p) {
#if GEMM_X86
    __builtin_cpu_init();
    switch (p) {
    case GEMM_PATH_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case GEMM_PATH_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GEMM_PATH_GENERIC: return 1;
    }
    return 0;
#else
    return p == GEMM_PATH_GENERIC;
#endif
}

gemm_path gemm_path_best(gemm_path p) {
    while (p > GEMM_PATH_GENERIC && !gemm_path_supported(p)) p = (gemm_path)(p - 1);
    return p;
}

gemm_tile_fn gemm_tile_for(gemm_path p) {
    switch (p) {
#if GEMM_X86
    case GEMM_PATH_AVX512: return tile_avx512;
    case GEMM_PATH_AVX2: return tile_avx2;
#endif
    default: return tile_generic;
    }
}

const char *gemm_path_name(gemm_path p) {
    switch (p) {
    case GEMM_PATH_AVX512: return "avx512";
    case GEMM_PATH_AVX2: return "avx2";
    default: return "generic";
    }
}

void gemm_pack_panel(const float *src, size_t rs, size_t ks, int rows, int K, float *dst) {
    for (int k = 0; k < K; k++) {
        float *d = dst + (size_t)k * GEMM_MR;
        const float *s = src + (size_t)k * ks;
        for (int r = 0; r < GEMM_MR; r++) d[r] = r < rows ? s[(size_t)r * rs] : 0.0f;
    }
}
