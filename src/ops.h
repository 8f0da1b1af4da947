/* Kernels for the UNet: NCHW float32 tensors, a batch of B images at a time. They know nothing
 * of the UNet.
 *
 * Parallelism and determinism: every kernel splits its work into tasks by image and by blocks
 * whose size depends only on the tensor shapes (never on the thread count or the batch size),
 * runs them on ctx->pool, and never reduces across tasks. So the bytes of image b depend only
 * on image b's inputs: they are identical for every thread count and every batch size.
 * Matrix products go to OpenBLAS single-threaded (ops_blas_init sets that once per process);
 * convolutions are GEMMs over an im2col matrix built per chunk of output pixels in a per-thread
 * workspace of bounded size (op_conv2d_ws_floats). */
#ifndef PNDM_OPS_H
#define PNDM_OPS_H

#include <stddef.h>
#include "threadpool.h"

typedef struct ops_ctx {
    tp_pool *pool;     /* may be NULL: run on the caller */
    float **ws;        /* ws[thread]: per-thread scratch of ws_floats floats */
    size_t ws_floats;
} ops_ctx;

/* Make OpenBLAS single-threaded (once per process; the pool owns parallelism). */
void ops_blas_init(void);
/* "openblas (<core>)" */
const char *ops_kernel_name(void);

/* ---- convolution ------------------------------------------------------------------------ */
typedef struct op_conv_geom {
    int cin, cout, k, stride;
    int pad_t, pad_l, pad_b, pad_r;  /* zero padding (asymmetric for Downsample2D padding=0) */
} op_conv_geom;

/* Output size of a convolution along one axis. */
int op_conv_out_size(int in, int k, int stride, int pad_before, int pad_after);
/* Scratch floats per thread that op_conv2d needs for this geometry (0 for 1x1, stride 1, no
 * padding). */
size_t op_conv2d_ws_floats(const op_conv_geom *g);
/* x (B, cin, H, W), w (cout, cin, k, k), bias (cout) or NULL -> y (B, cout, Ho, Wo).
 * y must not overlap x. */
void op_conv2d(const ops_ctx *c, const float *x, int B, int H, int W, const float *w,
               const float *bias, const op_conv_geom *g, float *y);

/* ---- linear (per image) ----------------------------------------------------------------- */
/* x (B, in), w (out, in), bias (out) or NULL -> y (B, out). Runs on the caller (tiny). */
void op_linear(const float *x, int B, int in, const float *w, const float *bias, int out, float *y);

/* ---- normalisation and pointwise -------------------------------------------------------- */
/* GroupNorm over (C/G channels x HW) per image and group, then optional per-image FiLM
 * y = y * (1 + scale[b, c]) + shift[b, c] (scale/shift (B, C) with row stride ss_stride, or NULL),
 * then optional SiLU. x (B, C, HW) -> y (B, C, HW); y may equal x. */
void op_group_norm(const ops_ctx *c, const float *x, int B, int C, int HW, int G,
                   const float *gamma, const float *beta, float eps, const float *scale,
                   const float *shift, size_t ss_stride, int silu, float *y);
/* y = silu(x) = x * sigmoid(x), n floats (y may equal x). */
void op_silu(const float *x, size_t n, float *y);
/* x (B, C, HW) += v[b * v_stride + c] (a per-image, per-channel bias). */
void op_add_channel_bias(float *x, int B, int C, int HW, const float *v, size_t v_stride);
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
/* Scratch floats per thread that op_attention needs for a sequence of length HW. */
size_t op_attention_ws_floats(int HW);
/* Multi-head self-attention core of diffusers' AttnProcessor on channel-major tensors:
 * q, k, v, o (B, C, HW) with head h = channels [h*d, (h+1)*d), d = C / heads:
 * o[:, h] = v_h softmax(scale * q_h^T k_h)^T (softmax over keys, float32). */
void op_attention(const ops_ctx *c, const float *q, const float *k, const float *v, int B, int C,
                  int HW, int heads, float scale, float *o);

/* ---- time embeddings -------------------------------------------------------------------- */
/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift=shift,
 * scale=1, max_period=10000): t (B) -> y (B, dim). */
void op_timestep_embedding(const float *t, int B, int dim, int flip_sin_to_cos, float shift, float *y);
/* diffusers GaussianFourierProjection(log=True, flip_sin_to_cos=False): t (B), w (n) ->
 * y (B, 2n) = [sin(log(t) w 2 pi), cos(...)]. */
void op_fourier_embedding(const float *t, int B, const float *w, int n, float *y);

#endif
