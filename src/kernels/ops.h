/* Kernels for the UNet: NCHW float32 tensors, a batch of B images at a time. They know nothing
 * of the UNet.
 *
 * Parallelism and determinism: every kernel splits its work into tasks whose boundaries depend
 * only on the tensor shapes, runs them on ctx->pool, and computes every output element by the
 * same operations whichever task (or thread, or batch position) it falls in. So the bytes of
 * image b depend only on image b's inputs: identical for every thread count and batch size.
 * Matrix products go through the 16 x 16 tiles of gemm.h (AVX-512, AVX2 or portable C, chosen at
 * run time); convolutions use weights packed once by op_conv_init (conv.c). */
#ifndef PNDM_OPS_H
#define PNDM_OPS_H

#include <stddef.h>
#include "gemm.h"
#include "threadpool.h"

/* For the kernels of ops.c and conv.c: plain C loops that the compiler vectorises, cloned for
 * AVX-512, AVX2 and the baseline; every clone gives the same bytes (ISO C mode: no contraction
 * into FMAs; no reassociation). GCC on x86-64 only: clang's target_clones needs ifunc support
 * and other compilers or targets lack it, so they build the baseline loops alone (same bytes).
 * Not under ThreadSanitizer either: the clones' ifunc resolvers run during relocation, before
 * the TSan runtime is up, and GCC instruments them (the program crashes at start). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define OPS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define OPS_CLONES
#endif

/* The kernel choices of a model: set once (op_kernels_init, at load), read-only afterwards, so
 * two models may run side by side with different kernels. No kernel reads the environment. */
typedef struct op_kernels {
    gemm_path path;    /* ISA path of the own kernels (GEMM tiles; the Winograd row loads) */
    gemm_tile_fn tile; /* gemm_tile_for(path) */
    int blas;          /* 1: the matrix products go through cblas_sgemm (op_blas_available()) */
    int winograd;      /* 1: Winograd for the 3x3 convolutions where it applies; 0: direct only */
    /* Work partition from the caches the CPU reports (they change no result: every output element
     * is one sequential chain over k whatever the blocks): */
    int l1d_bytes;    /* L1 data cache per core (sysconf / sysfs; 32 KiB when neither tells) */
    int conv_kc;      /* k rows per im2col block of the direct path: A and B blocks within half of L1 */
    int pack_strided; /* 1: 1x1 convolutions on images of P pixels, P a multiple of 128, pack their
                       * input strips instead of reading rows P floats apart (few L1 sets) */
} op_kernels;

/* Matrix-product backends for op_kernels_init. */
typedef enum op_gemm { OP_GEMM_AUTO = 0, OP_GEMM_NATIVE, OP_GEMM_BLAS } op_gemm;

/* want: the highest ISA path allowed (GEMM_PATH_AVX512: the best the CPU has); the path set is
 * the best supported one at or below it. gemm: OP_GEMM_AUTO takes the own tiles on CPUs where they
 * have a vector path (AVX2 or AVX-512, whatever `want` caps) and OpenBLAS on the others when it is
 * built in; OP_GEMM_BLAS
 * without OpenBLAS built in falls back to the own tiles. */
void op_kernels_init(op_kernels *k, gemm_path want, op_gemm gemm, int winograd);
/* Whether this build has the OpenBLAS backend (CMake option PNDM_BLAS). */
int op_blas_available(void);
/* "avx512", "avx2" or "generic", with "+openblas" when the products go through OpenBLAS. */
const char *op_kernels_name(const op_kernels *k);

typedef struct ops_ctx {
    const op_kernels *k; /* the kernel choices (required) */
    tp_pool *pool;       /* may be NULL: run on the caller */
    float **ws;          /* ws[thread]: per-thread scratch of ws_floats floats */
    size_t ws_floats;
    float *shared; /* scratch used by all threads of one kernel call */
    size_t shared_floats;
} ops_ctx;

/* ---- convolution ------------------------------------------------------------------------ */
typedef struct op_conv_geom {
    int cin, cout, k, stride;
    int pad_t, pad_l, pad_b, pad_r; /* zero padding (asymmetric for Downsample2D padding=0) */
} op_conv_geom;

/* Weights packed for the kernels k they were packed for: for the GEMM tiles, panels of 16 output
 * channels (panels, cin*k*k, 16); for OpenBLAS (k->blas), the plain (cout, cin*k*k) matrix. */
typedef struct op_conv_w {
    op_conv_geom g;
    int K;             /* cin * k * k */
    int panels;        /* ceil(cout / 16) */
    int rowmajor;      /* 1: a is (cout, K) (OpenBLAS); 0: panels */
    float *a;          /* owned, 64-byte aligned */
    const float *bias; /* (cout) or NULL, not owned */
} op_conv_w;

/* Pack w (cout, cin, k, k) for the kernels k (op_conv2d must then run with the same k->blas);
 * bias (cout) or NULL is referenced, not copied. 0 if out of memory. */
int op_conv_init(op_conv_w *cw, const op_kernels *k, const op_conv_geom *g, const float *w, const float *bias);
void op_conv_free(op_conv_w *cw);

/* Output size of a convolution along one axis. */
int op_conv_out_size(int in, int k, int stride, int pad_before, int pad_after);

/* What a convolution adds to its sum: y = (conv(x) + bias + img_bias[b] + res) / div. */
typedef struct op_conv_epi {
    const float *img_bias; /* (B, cout) with row stride img_bias_stride, or NULL */
    size_t img_bias_stride;
    const float *res; /* (B, cout, Ho, Wo) residual, or NULL; may equal y */
    float div;        /* 1: none */
} op_conv_epi;

/* Scratch op_conv2d needs on (H, W) inputs with the kernels k: floats per thread (ctx->ws) and
 * shared (ctx->shared). */
void op_conv2d_ws(const op_kernels *k, const op_conv_geom *g, int H, int W, size_t *per_thread, size_t *shared);
/* x (B, cin, H, W) -> y (B, cout, Ho, Wo); e may be NULL. y must not overlap x. */
void op_conv2d(const ops_ctx *c, const op_conv_w *cw, const float *x, int B, int H, int W, const op_conv_epi *e,
               float *y);

/* ---- linear (per image) ----------------------------------------------------------------- */
/* x (B, in), w (out, in), bias (out) or NULL -> y (B, out). Runs on the caller (tiny). */
void op_linear(const float *x, int B, int in, const float *w, const float *bias, int out, float *y);

/* ---- normalisation and pointwise -------------------------------------------------------- */
/* GroupNorm over (C/G channels x HW) per image and group, then optional per-image FiLM
 * y = y * (1 + scale[b, c]) + shift[b, c] (scale/shift (B, C) with row stride ss_stride, or NULL),
 * then optional SiLU. x (B, C, HW) -> y (B, C, HW); y may equal x. */
void op_group_norm(const ops_ctx *c, const float *x, int B, int C, int HW, int G, const float *gamma, const float *beta,
                   float eps, const float *scale, const float *shift, size_t ss_stride, int silu, float *y);
/* y = silu(x) = x * sigmoid(x), n floats (y may equal x). */
void op_silu(const float *x, size_t n, float *y);
/* y = (a + b) / div, n floats (y may equal a or b). div is applied as a true division. */
void op_add_div(const float *a, const float *b, size_t n, float div, float *y);
/* Concatenate along channels per image: a (B, Ca, HW), b (B, Cb, HW) -> y (B, Ca+Cb, HW). */
void op_concat_channels(const float *a, int Ca, const float *b, int Cb, int B, int HW, float *y);

/* ---- resampling ------------------------------------------------------------------------- */
/* nearest x2: (B, C, H, W) -> (B, C, 2H, 2W) */
void op_upsample_nearest2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y);
/* 2x2 average pooling, stride 2: (B, C, H, W) -> (B, C, H/2, W/2) (H, W even) */
void op_avgpool2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y);
/* diffusers upsample_2d / FirUpsample2D (no conv), kernel (1,3,3,1), factor 2, zero borders:
 * (B, C, H, W) -> (B, C, 2H, 2W) */
void op_fir_upsample2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y);
/* diffusers downsample_2d / FirDownsample2D (no conv), kernel (1,3,3,1), factor 2:
 * (B, C, H, W) -> (B, C, H/2, W/2) (H, W even) */
void op_fir_downsample2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y);

/* ---- attention -------------------------------------------------------------------------- */
/* Scratch op_attention needs: floats per thread and shared (B images of C channels). */
void op_attention_ws(int B, int C, int HW, int heads, size_t *per_thread, size_t *shared);
/* Multi-head self-attention core of diffusers' AttnProcessor on channel-major tensors:
 * q, k, v (B, C, HW) with image stride qkv_stride (floats; C * HW when separate), o (B, C, HW),
 * head h = channels [h*d, (h+1)*d), d = C / heads:
 * o[:, h] = v_h softmax(scale * q_h^T k_h)^T (softmax over keys, float32). */
void op_attention(const ops_ctx *c, const float *q, const float *k, const float *v, size_t qkv_stride, int B, int C,
                  int HW, int heads, float scale, float *o);

/* ---- time embeddings -------------------------------------------------------------------- */
/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift=shift,
 * scale=1, max_period=10000): t (B) -> y (B, dim). */
void op_timestep_embedding(const float *t, int B, int dim, int flip_sin_to_cos, float shift, float *y);
/* diffusers GaussianFourierProjection(log=True, flip_sin_to_cos=False): t (B), w (n) ->
 * y (B, 2n) = [sin(log(t) w 2 pi), cos(...)]. */
void op_fourier_embedding(const float *t, int B, const float *w, int n, float *y);

#endif
