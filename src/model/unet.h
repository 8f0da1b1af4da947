/* UNet2DModel (diffusers 0.30.3 semantics): the layer plan built from a config, weights bound by
 * their state-dict names, and the forward pass.
 *
 * Loading = unet_config_parse (unet_config.h) -> unet_build -> unet_bind. unet_build lays out
 * every layer as diffusers would construct it and checks what needs the layout (norm groups
 * dividing the channels they normalise, attention heads); unet_bind then checks, in order,
 * that every tensor the plan needs is present with the expected shape, that the file holds no
 * other tensor, and the final count. Every failure is PNDM_ERR_MODEL with one message naming
 * the source and the tensor or option. */
#ifndef PNDM_UNET_H
#define PNDM_UNET_H

#include "ops.h"
#include "pndm.h"
#include "tensors.h"
#include "unet_config.h"

typedef struct unet_conv {
    const float *w, *b; /* (cout, cin, k, k) (NULL: read once, by unet_bind), (cout) */
    int w_param;        /* index of w in the parameter list; -1: an attention's fused projection */
    op_conv_geom g;     /* set by unet_build */
    op_conv_w pk;       /* the weights packed for the kernels (unet_bind) */
} unet_conv;

typedef struct unet_linear {
    const float *w, *b; /* (out, in), (out) */
    int w_param;        /* index of w in the parameter list */
    int in, out;
} unet_linear;

typedef struct unet_norm {
    const float *w, *b; /* (channels) */
    int groups, channels;
    float eps;
} unet_norm;

typedef enum unet_resample {
    UNET_RS_NONE,
    UNET_RS_AVGPOOL,  /* Downsample2D(use_conv=False) */
    UNET_RS_NEAREST,  /* Upsample2D(use_conv=False) */
    UNET_RS_FIR_DOWN, /* downsample_2d, kernel (1,3,3,1) */
    UNET_RS_FIR_UP    /* upsample_2d, kernel (1,3,3,1) */
} unet_resample;

/* ResnetBlock2D */
typedef struct unet_resnet {
    int cin, cout;
    unet_norm norm1, norm2;
    unet_conv conv1, conv2;
    unet_linear temb; /* time_emb_proj: temb_dim -> cout (2 * cout for scale_shift) */
    int has_shortcut;
    unet_conv shortcut;     /* conv_shortcut 1x1 */
    unet_resample resample; /* applied to both paths after norm1 + SiLU */
    int scale_shift;
    float out_scale; /* output_scale_factor (divides) */
} unet_resnet;

/* Attention with AttnProcessor, residual_connection=True */
typedef struct unet_attn {
    int channels, heads;
    int has_norm;
    unet_norm norm;           /* group_norm */
    unet_linear q, k, v, out; /* to_q, to_k, to_v, to_out.0 (weights read once, by unet_bind) */
    unet_conv qkv;            /* [to_q; to_k; to_v] as one 1x1 convolution C -> 3C (w, b unused) */
    unet_conv proj;           /* to_out.0 as a 1x1 convolution C -> C (w, b unused) */
    float *qkv_bias;          /* (3C) owned */
    float scale;              /* dim_head ** -0.5 */
    float rescale;            /* rescale_output_factor (divides) */
} unet_attn;

typedef enum unet_sampler {
    UNET_SAMPLER_NONE,
    UNET_SAMPLER_CONV,   /* Downsample2D / Upsample2D with a conv ("downsamplers.0.conv") */
    UNET_SAMPLER_RESNET, /* ResnetBlock2D(down/up=True) ("downsamplers.0") */
    UNET_SAMPLER_SKIP    /* skip blocks: resnet_down / resnet_up with FIR + the skip path */
} unet_sampler;

typedef struct unet_block {
    unet_block_kind kind;
    int cin, cout; /* channels in (down: in_channels; up: prev_output_channel), out */
    int n_resnets;
    unet_resnet *resnets;
    int n_attns; /* one per resnet, or one after all resnets (AttnSkipUpBlock2D) */
    unet_attn *attns;
    unet_sampler sampler;
    unet_conv conv;      /* UNET_SAMPLER_CONV */
    unet_resnet rs;      /* UNET_SAMPLER_RESNET / UNET_SAMPLER_SKIP */
    unet_conv skip_conv; /* skip: down 1x1 (3 -> C), up 3x3 (C -> 3) */
    unet_norm skip_norm; /* skip up: GroupNorm(min(C / 4, 32)) before SiLU + skip_conv */
} unet_block;

typedef struct unet_param {
    char *name;
    int ndim;
    int64_t shape[4];
    const float **slot; /* where the bound data pointer goes */
    int packed;         /* read once by unet_bind to pack it; the slot stays NULL */
} unet_param;

typedef struct unet_net {
    unet_config cfg;
    op_kernels kern; /* the kernel choices (unet_build: the best the CPU has; the loader may change
                      * them before unet_bind, never after) */
    int tproj_dim;   /* time_proj output: C0 (positional) or 2 * C0 (fourier) */
    int temb_dim;    /* 4 * C0 */
    unet_conv conv_in;
    const float *fourier_w;   /* time_proj.weight (C0), fourier only */
    unet_linear time1, time2; /* time_embedding.linear_1 / linear_2 */
    unet_block down[UNET_MAX_LEVELS], up[UNET_MAX_LEVELS];
    unet_resnet mid_res[2];
    int mid_has_attn;
    unet_attn mid_attn;
    unet_norm norm_out;
    unet_conv conv_out;
    int has_skip_up; /* output += skip sample */
    /* every convolution and attention, in the order unet_build laid them out: unet_bind packs
     * and unet_free frees by these lists (the fused projections of an attention are its own) */
    int n_convs, n_attns;
    unet_conv **convs;
    unet_attn **attns;
    /* parameters in registration order */
    int n_params;
    unet_param *params;
    size_t param_floats;
    /* converted (F16/BF16 or unaligned F32) tensors owned by the net */
    int n_owned;
    float **owned;
} unet_net;

/* Lay out the layers for cfg (copied) and list the parameters, convolutions and attentions.
 * `source` names the config in messages. On failure the net is freed. The net must not be moved
 * afterwards (those lists point into it). */
pndm_status unet_build(unet_net *net, const unet_config *cfg, const char *source, pndm_error *err);
/* Bind every parameter to a tensor of f (which must outlive the net; see the order above),
 * then pack the convolution and attention weights for the kernels. The packed tensors' pages of
 * a mapped file are released as they are packed (they are not read again), and F16/BF16
 * conversions of them freed, so the weights are held once. */
pndm_status unet_bind(unet_net *net, const tt_table *f, pndm_error *err);
void unet_free(unet_net *net);

/* Receives named intermediates of batch element 0 during a forward, for parity tests. */
typedef void (*unet_tap_fn)(const char *name, const float *data, size_t n, void *user);

/* What a forward needs besides the weights: the thread pool and one arena (activations, skip
 * connections, scratch). Kept between calls and grown when a call needs more; one caller at a
 * time. */
typedef struct unet_ctx unet_ctx;
unet_ctx *unet_ctx_new(void); /* NULL if out of memory */
void unet_ctx_free(unet_ctx *ctx);

/* Images per pass through the network: a batch runs in slices of this many images, which
 * bounds the activation memory (results do not depend on it). */
#define UNET_MICRO_BATCH 4

/* Bytes of arena a forward of (B, H, W) with n_threads threads uses (the forward's own measure
 * pass, see unet_forward.c; a built net, bound or not); SIZE_MAX on overflow or sizes the forward
 * refuses. */
size_t unet_workspace_bytes(const unet_net *net, int B, int H, int W, int n_threads);

/* x (B, C_in, H, W), t (B) -> out (B, C_out, H, W). Arguments must already be checked
 * (H, W divisible by 2^(levels-1), t > 0 for fourier). tap (may be NULL) receives batch
 * element 0 of "time_proj", "time_embedding", "down_blocks.<i>", "mid_block", "up_blocks.<i>". */
pndm_status unet_forward(const unet_net *net, unet_ctx *ctx, const float *x, int B, int H, int W, const float *t,
                         float *out, int n_threads, unet_tap_fn tap, void *tap_user, pndm_error *err);

#endif
