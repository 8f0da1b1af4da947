/* UNet2DModel forward pass (the forward methods of diffusers 0.30.3 models/unets/unet_2d.py and
 * unet_2d_blocks.py; see each function), on the net laid out and bound by unet_build.c.
 *
 * The forward is the only description of the memory it uses. unet_forward runs it twice: first
 * measuring (fwd.measuring), where every buffer request records the largest size asked of its
 * slot and returns a placeholder, every skip connection pushed records its size, every
 * convolution and attention reports the scratch it needs (op_conv2d_ws, op_attention_ws)
 * instead of computing, and nothing is read or written; then for real, in an arena laid out
 * from what the measure pass recorded (the way ggml_gallocr_reserve sizes a graph's allocator
 * by walking the graph it will run). unet_workspace_bytes answers from the same measure pass.
 * The blocks call the kernels only through the wrappers below, which do nothing when
 * measuring. */
#define _DEFAULT_SOURCE
#include "core.h"
#include "unet.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FWD_ALIGN 16 /* floats (64 bytes): every slot, skip connection and scratch block */
#define FWD_MAX_STACK (UNET_MAX_LEVELS * (UNET_MAX_LAYERS + 1) + 1)

/* saturating size arithmetic for the layout */
static size_t sz_mul(size_t a, size_t b) {
    size_t r;
    return core_mul_size(a, b, &r) ? r : SIZE_MAX;
}
static size_t sz_add(size_t a, size_t b) {
    size_t r;
    return core_add_size(a, b, &r) ? r : SIZE_MAX;
}
static size_t sz_align(size_t n) {
    return n >= SIZE_MAX - FWD_ALIGN ? SIZE_MAX : (n + FWD_ALIGN - 1) / FWD_ALIGN * FWD_ALIGN;
}
static size_t sz_max(size_t a, size_t b) { return a > b ? a : b; }

/* ============================================================================================ */
/* The arena                                                                                    */

/* Working buffers ("slots") of a pass. Each is sized by the measure pass for the largest tensor
 * the forward puts in it, for MB images.
 *
 * Overlay rule (the only memory two slots share): the resnet scratch T1..T3 and the attention
 * scratch QKV, ATT start at the same address. This is safe because
 *   - resnet_fwd and attn_fwd never run nested or at the same time, and each uses its scratch
 *     only while it runs (nothing in T1..T3 or QKV/ATT is read after the call returns);
 *   - neither reads its input from nor writes its output to a scratch slot of either group
 *     (CORE_ASSERTed at their entry: inputs and outputs are the hidden states H0/H1, CAT or skip
 *     connections on the stack).
 * Every other slot, each skip connection and the kernels' scratch have memory of their own;
 * every slot has a distinct address (at least FWD_ALIGN floats), as the ping-pong helpers
 * compare pointers. */
enum {
    BUF_H0,
    BUF_H1,  /* hidden states, ping-pong */
    BUF_CAT, /* up blocks: torch.cat([hidden, res], dim=1) */
    BUF_T0,  /* norm outputs; upsampled hidden of an Upsample2D */
    BUF_T1,  /* } resnet scratch: resampled input / hidden of a resnet, its shortcut ... */
    BUF_T2,  /* }                                                                        */
    BUF_T3,  /* } ... and its conv1 output                                               */
    BUF_QKV, /* ] attention scratch, overlaid on T1..T3: q, k, v (B, 3C, HW) ...          */
    BUF_ATT, /* ] ... and the attention output before to_out                              */
    BUF_SK0,
    BUF_SK1,     /* skip samples of skip blocks (B, 3, H, W), ping-pong */
    BUF_XC,      /* the centred input (center_input_sample) */
    BUF_TPROJ,   /* (B, tproj_dim) time_proj */
    BUF_E1,      /* (B, temb_dim) silu(linear_1) */
    BUF_EMB,     /* (B, temb_dim) the time embedding */
    BUF_EMB_ACT, /* (B, temb_dim) silu(emb), what every time_emb_proj sees */
    BUF_TP,      /* (B, cout | 2 cout) a resnet's time projection */
    BUF_N
};

typedef struct fwd_layout {
    int MB;            /* images per pass */
    size_t buf[BUF_N]; /* floats per image */
    size_t stack;      /* skip connections pushed by conv_in and the down blocks (MB images) */
    size_t ws;         /* per-thread scratch */
    size_t shared;     /* scratch shared by the threads (MB images) */
    size_t off[BUF_N]; /* offsets of the slots (floats), then: */
    size_t stack_off, shared_off, ws_off, ws_stride, total;
} fwd_layout;

/* Offsets for what the measure pass recorded: the slots in enum order (QKV..ATT back at T1),
 * then the stack, the shared scratch and one scratch block per thread. 0 on overflow. */
static int layout(fwd_layout *L, int n_threads) {
    size_t p = 0, resnet_end = 0;
    for (int b = 0; b < BUF_N; b++) {
        if (b == BUF_QKV) {
            resnet_end = p;
            p = L->off[BUF_T1];
        }
        L->off[b] = p;
        const size_t n = sz_mul(L->buf[b], (size_t)L->MB);
        p = sz_add(p, sz_align(n ? n : 1));
        if (b == BUF_ATT) p = sz_max(p, resnet_end);
    }
    L->stack_off = p;
    L->shared_off = sz_add(p, L->stack);
    L->ws_off = sz_add(L->shared_off, sz_align(L->shared));
    L->ws_stride = sz_align(L->ws ? L->ws : 1);
    L->total = sz_add(L->ws_off, sz_mul(L->ws_stride, (size_t)n_threads));
    return L->total != SIZE_MAX;
}

/* ---- context ------------------------------------------------------------------------------ */
struct unet_ctx {
    tp_pool *pool; /* NULL for one thread */
    int n_threads; /* 0: not set up */
    float **ws;    /* (n_threads) */
    float *arena;
    size_t arena_floats;
};

unet_ctx *unet_ctx_new(void) { return calloc(1, sizeof(unet_ctx)); }

void unet_ctx_free(unet_ctx *ctx) {
    if (!ctx) return;
    tp_destroy(ctx->pool);
    free(ctx->ws);
    free(ctx->arena);
    free(ctx);
}

/* A pool of n_threads threads and an arena of at least `floats` floats. */
static int ctx_prepare(unet_ctx *ctx, int n_threads, size_t floats) {
    if (ctx->n_threads != n_threads) {
        tp_destroy(ctx->pool);
        free(ctx->ws);
        ctx->pool = NULL;
        ctx->n_threads = 0;
        ctx->ws = calloc((size_t)n_threads, sizeof *ctx->ws);
        if (!ctx->ws || (n_threads > 1 && !(ctx->pool = tp_create(n_threads)))) return 0;
        ctx->n_threads = n_threads;
    }
    if (floats > ctx->arena_floats) {
        free(ctx->arena);
        ctx->arena_floats = 0;
        ctx->arena =
            floats > SIZE_MAX / sizeof(float) - 64 ? NULL : aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        if (!ctx->arena) return 0;
        ctx->arena_floats = floats;
    }
    return 1;
}

/* ---- one pass of up to MB images ---------------------------------------------------------- */
typedef struct stack_entry {
    float *d; /* (B, C, H, W) */
    int C, H, W;
} stack_entry;

typedef struct fwd {
    const unet_net *net;
    ops_ctx ops;
    int B;             /* images in this pass */
    fwd_layout *L;     /* measuring: what is recorded; else: the layout in use */
    int measuring;     /* 1: record sizes, compute nothing */
    float *buf[BUF_N]; /* see BUF_* (measuring: placeholders) */
    float *stack_base; /* the skip-connection stack (measuring: a placeholder) */
    size_t stack_used; /* floats of it in use */
    stack_entry stack[FWD_MAX_STACK];
    int n_stack;
    unet_tap_fn tap;
    void *tap_user;
} fwd;

/* What a measuring pass hands out instead of memory: one distinct address per slot, the stack
 * and the input/output. Read-only, so a kernel call that missed its `measuring` check faults at
 * once instead of writing somewhere. */
enum { PH_STACK = BUF_N, PH_X, PH_OUT, PH_N };
static const float placeholder[PH_N];
static float *ph(int i) { return (float *)&placeholder[i]; }

/* Working buffer b for a (B, C, H, W) tensor. */
static float *buf(const fwd *f, int b, int C, int H, int W) {
    const size_t n = sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W));
    if (f->measuring)
        f->L->buf[b] = sz_max(f->L->buf[b], n);
    else
        CORE_ASSERT(n <= f->L->buf[b]);
    return f->buf[b];
}

static float *other_h(const fwd *f, const float *p) { return p == f->buf[BUF_H0] ? f->buf[BUF_H1] : f->buf[BUF_H0]; }
static float *hidden(const fwd *f, const float *p, int C, int H, int W) {
    float *d = other_h(f, p);
    return buf(f, d == f->buf[BUF_H0] ? BUF_H0 : BUF_H1, C, H, W);
}
static float *other_sk(const fwd *f, const float *p, int H, int W) {
    return buf(f, p == f->buf[BUF_SK0] ? BUF_SK1 : BUF_SK0, 3, H, W);
}
/* p is in the resnet or the attention scratch (see the overlay rule) */
static int in_scratch(const fwd *f, const float *p) {
    for (int b = BUF_T1; b <= BUF_ATT; b++)
        if (p == f->buf[b]) return 1;
    return 0;
}

static float *stack_push(fwd *f, int C, int H, int W) {
    CORE_ASSERT(f->n_stack < FWD_MAX_STACK);
    const size_t n = sz_align(sz_mul((size_t)f->B, sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W))));
    stack_entry *e = &f->stack[f->n_stack++];
    e->d = f->measuring ? f->stack_base : f->stack_base + f->stack_used;
    e->C = C;
    e->H = H;
    e->W = W;
    f->stack_used = sz_add(f->stack_used, n);
    if (f->measuring) f->L->stack = sz_max(f->L->stack, f->stack_used);
    CORE_ASSERT(f->measuring || f->stack_used <= f->L->stack);
    return e->d;
}

/* ---- the kernels, as the blocks call them (nothing but scratch queries when measuring) ------ */
static void tap(const fwd *f, const char *name, const float *d, size_t per_image) {
    if (f->tap && !f->measuring) f->tap(name, d, per_image, f->tap_user);
}

/* y = (conv(x) + bias [+ per-image bias] [+ res]) / div */
static void conv(const fwd *f, const unet_conv *cv, const float *x, int H, int W, const float *img_bias,
                 size_t ib_stride, const float *res, float div, float *y) {
    if (f->measuring) { /* the geometry from unet_build: a net need not be bound to be measured */
        size_t ws, sh;
        op_conv2d_ws(f->ops.k, &cv->g, H, W, &ws, &sh);
        f->L->ws = sz_max(f->L->ws, ws);
        f->L->shared = sz_max(f->L->shared, sh);
        return;
    }
    op_conv_epi e = {img_bias, ib_stride, res, div};
    op_conv2d(&f->ops, &cv->pk, x, f->B, H, W, &e, y);
}

/* GroupNorm [FiLM: * (1 + scale) + shift, rows of ss_stride] [SiLU]: x (B, C, HW) -> y */
static void norm_film(const fwd *f, const unet_norm *n, const float *x, int HW, const float *scale, const float *shift,
                      size_t ss_stride, int silu, float *y) {
    if (f->measuring) return;
    op_group_norm(&f->ops, x, f->B, n->channels, HW, n->groups, n->w, n->b, n->eps, scale, shift, ss_stride, silu, y);
}

static void norm(const fwd *f, const unet_norm *n, const float *x, int HW, int silu, float *y) {
    norm_film(f, n, x, HW, NULL, NULL, 0, silu, y);
}

static void resample(const fwd *f, unet_resample rs, const float *x, int C, int H, int W, float *y) {
    if (f->measuring) return;
    switch (rs) {
    case UNET_RS_NONE: break;
    case UNET_RS_AVGPOOL: op_avgpool2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_NEAREST: op_upsample_nearest2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_DOWN: op_fir_downsample2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_UP: op_fir_upsample2(&f->ops, x, f->B, C, H, W, y); break;
    }
}

static void linear(const fwd *f, const unet_linear *l, const float *x, float *y) {
    if (!f->measuring) op_linear(x, f->B, l->in, l->w, l->b, l->out, y);
}

static void silu(const fwd *f, const float *x, size_t n, float *y) {
    if (!f->measuring) op_silu(x, n, y);
}

static void concat(const fwd *f, const float *a, int Ca, const float *b, int Cb, int HW, float *y) {
    if (!f->measuring) op_concat_channels(a, Ca, b, Cb, f->B, HW, y);
}

/* q, k, v: channel blocks of qkv (B, 3C, HW) -> o (B, C, HW) */
static void attention(const fwd *f, const unet_attn *a, const float *qkv, int HW, float *o) {
    const int C = a->channels;
    if (f->measuring) {
        size_t ws, sh;
        op_attention_ws(f->B, C, HW, a->heads, &ws, &sh);
        f->L->ws = sz_max(f->L->ws, ws);
        f->L->shared = sz_max(f->L->shared, sh);
        return;
    }
    const size_t chw = (size_t)C * HW;
    op_attention(&f->ops, qkv, qkv + chw, qkv + 2 * chw, 3 * chw, f->B, C, HW, a->heads, a->scale, o);
}

/* time_proj: Timesteps (sinusoidal) or GaussianFourierProjection, t (B) -> y (B, tproj_dim) */
static void time_proj(const fwd *f, const float *t, float *y) {
    if (f->measuring) return;
    const unet_config *c = &f->net->cfg;
    if (c->time_fourier)
        op_fourier_embedding(t, f->B, f->net->fourier_w, c->block_out_channels[0], y);
    else
        op_timestep_embedding(t, f->B, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift, y);
}

/* sample = 2 * sample - 1.0: x (B, n) -> y */
static void center(const fwd *f, const float *x, size_t n, float *y) {
    if (f->measuring) return;
    for (size_t i = 0; i < (size_t)f->B * n; i++) y[i] = 2.0f * x[i] - 1.0f;
}

/* out (B, per) /= t[b] (fourier time embeddings) */
static void divide_by_t(const fwd *f, float *out, size_t per, const float *t) {
    if (f->measuring) return;
    for (int b = 0; b < f->B; b++)
        for (size_t i = 0; i < per; i++) out[(size_t)b * per + i] /= t[b];
}

/* ---- the blocks ----------------------------------------------------------------------------- */
/* ResnetBlock2D.forward: x (B, cin, H, W) -> out (B, cout, H', W'); *H, *W updated when the block
 * resamples. Uses T0..T3; out must not be x or one of them. */
static void resnet_fwd(fwd *f, const unet_resnet *r, const float *x, int *H, int *W, float *out) {
    CORE_ASSERT(!in_scratch(f, x) && !in_scratch(f, out));
    int H2 = *H, W2 = *W;
    float *h = buf(f, BUF_T0, r->cin, H2, W2); // (B, cin, H, W)
    norm(f, &r->norm1, x, H2 * W2, 1, h);      // silu(norm1(x))
    const float *xr = x, *hr = h;
    if (r->resample != UNET_RS_NONE) {
        int up = r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP;
        int H3 = up ? 2 * H2 : H2 / 2, W3 = up ? 2 * W2 : W2 / 2;
        float *xs = buf(f, BUF_T1, r->cin, H3, W3), *hs = buf(f, BUF_T2, r->cin, H3, W3);
        resample(f, r->resample, x, r->cin, H2, W2, xs); // input_tensor = resample(x)
        resample(f, r->resample, h, r->cin, H2, W2, hs); // hidden = resample(hidden)
        xr = xs;
        hr = hs;
        H2 = H3;
        W2 = W3;
    }
    const int HW = H2 * W2;
    float *tp = buf(f, BUF_TP, r->temb.out, 1, 1); // (B, cout | 2 cout)
    linear(f, &r->temb, f->buf[BUF_EMB_ACT], tp);
    float *c1 = buf(f, BUF_T3, r->cout, H2, W2); // (B, cout, H2, W2)
    if (r->scale_shift) {
        /* norm2(conv1(h)) * (1 + scale) + shift, scale/shift = chunk(temb, 2, dim=1) */
        conv(f, &r->conv1, hr, H2, W2, NULL, 0, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        norm_film(f, &r->norm2, c1, HW, tp, tp + r->cout, (size_t)2 * r->cout, 1, h2);
        hr = h2;
    } else {
        /* norm2(conv1(h) + temb[:, :, None, None]) */
        conv(f, &r->conv1, hr, H2, W2, tp, (size_t)r->cout, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        norm(f, &r->norm2, c1, HW, 1, h2);
        hr = h2;
    }
    const float *sc = xr; // (B, cout, H2, W2)
    if (r->has_shortcut) {
        float *dst = xr == f->buf[BUF_T1] ? buf(f, BUF_T2, r->cout, H2, W2) : buf(f, BUF_T1, r->cout, H2, W2);
        conv(f, &r->shortcut, xr, H2, W2, NULL, 0, NULL, 1.0f, dst);
        sc = dst;
    }
    conv(f, &r->conv2, hr, H2, W2, NULL, 0, sc, r->out_scale, out); // (input + conv2(h)) / scale
    *H = H2;
    *W = W2;
}

/* Attention with AttnProcessor on (B, C, HW): out = (to_out(attn(norm(x))) + x) / rescale.
 * Uses T0, QKV, ATT; out must not be x or one of them. */
static void attn_fwd(fwd *f, const unet_attn *a, const float *x, int HW, float *out) {
    CORE_ASSERT(!in_scratch(f, x) && !in_scratch(f, out));
    const int C = a->channels;
    const float *n = x;
    if (a->has_norm) {
        float *t0 = buf(f, BUF_T0, C, 1, HW);
        norm(f, &a->norm, x, HW, 0, t0);
        n = t0;
    }
    float *qkv = buf(f, BUF_QKV, 3 * C, 1, HW); // [q; k; v] (B, 3C, HW)
    conv(f, &a->qkv, n, 1, HW, NULL, 0, NULL, 1.0f, qkv);
    float *att = buf(f, BUF_ATT, C, 1, HW); // (B, C, HW)
    attention(f, a, qkv, HW, att);
    conv(f, &a->proj, att, 1, HW, NULL, 0, x, a->rescale, out);
}

/* Down block i: hidden (B, cin, H, W) -> (B, cout, H', W'); pushes its output states. */
static const float *down_fwd(fwd *f, int i, const float *h, int *H, int *W, const float **skip) {
    const unet_block *blk = &f->net->down[i];
    for (int j = 0; j < blk->n_resnets; j++) {
        const unet_resnet *r = &blk->resnets[j];
        if (blk->n_attns) {
            int H2 = *H, W2 = *W;
            float *tmp = hidden(f, h, r->cout, H2, W2);
            resnet_fwd(f, r, h, H, W, tmp);
            float *dst = stack_push(f, r->cout, *H, *W);
            attn_fwd(f, &blk->attns[j], tmp, *H * *W, dst);
            h = dst;
        } else {
            float *dst = stack_push(f, r->cout, *H, *W);
            resnet_fwd(f, r, h, H, W, dst);
            h = dst;
        }
    }
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: {
        float *dst = stack_push(f, blk->cout, *H / 2, *W / 2);
        conv(f, &blk->conv, h, *H, *W, NULL, 0, NULL, 1.0f, dst);
        *H /= 2;
        *W /= 2;
        h = dst;
        break;
    }
    case UNET_SAMPLER_RESNET: {
        float *dst = stack_push(f, blk->cout, *H / 2, *W / 2);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_SKIP: {
        /* hidden = resnet_down(hidden); skip = FirDownsample2D(skip); hidden = skip_conv(skip) + hidden */
        int Hs = *H, Ws = *W;
        float *tmp = hidden(f, h, blk->cout, Hs / 2, Ws / 2);
        resnet_fwd(f, &blk->rs, h, H, W, tmp);
        float *sk = other_sk(f, *skip, *H, *W); // (B, 3, H/2, W/2)
        resample(f, UNET_RS_FIR_DOWN, *skip, 3, Hs, Ws, sk);
        *skip = sk;
        float *dst = stack_push(f, blk->cout, *H, *W);
        conv(f, &blk->skip_conv, sk, *H, *W, NULL, 0, tmp, 1.0f, dst);
        h = dst;
        break;
    }
    }
    return h;
}

/* Up block i: hidden (B, cin, H, W) + popped res states -> (B, cout, H', W'). */
static const float *up_fwd(fwd *f, int i, const float *h, int *H, int *W, float **skip) {
    const unet_block *blk = &f->net->up[i];
    int C = blk->cin;
    const int skip_block = blk->kind == UNET_SKIP_UP_BLOCK || blk->kind == UNET_ATTN_SKIP_UP_BLOCK;
    for (int j = 0; j < blk->n_resnets; j++) {
        const unet_resnet *r = &blk->resnets[j];
        CORE_ASSERT(f->n_stack > 0);
        const stack_entry *e = &f->stack[--f->n_stack];
        CORE_ASSERT(e->H == *H && e->W == *W && C + e->C == r->cin);
        float *cat = buf(f, BUF_CAT, r->cin, *H, *W); // (B, C + Cres, H, W)
        concat(f, h, C, e->d, e->C, *H * *W, cat);
        float *dst = hidden(f, h, r->cout, *H, *W);
        resnet_fwd(f, r, cat, H, W, dst);
        h = dst;
        if (blk->n_attns && !skip_block) {
            dst = hidden(f, h, r->cout, *H, *W);
            attn_fwd(f, &blk->attns[j], h, *H * *W, dst);
            h = dst;
        }
        C = r->cout;
    }
    if (blk->n_attns && skip_block) {
        float *dst = hidden(f, h, C, *H, *W);
        attn_fwd(f, &blk->attns[0], h, *H * *W, dst);
        h = dst;
    }
    if (skip_block && *skip) {
        /* skip_sample = FirUpsample2D(skip_sample) */
        float *dst = other_sk(f, *skip, *H, *W); // (B, 3, H, W)
        resample(f, UNET_RS_FIR_UP, *skip, 3, *H / 2, *W / 2, dst);
        *skip = dst;
    }
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: {
        float *up = buf(f, BUF_T0, C, 2 * *H, 2 * *W); // (B, C, 2H, 2W)
        resample(f, UNET_RS_NEAREST, h, C, *H, *W, up);
        *H *= 2;
        *W *= 2;
        float *dst = hidden(f, h, C, *H, *W);
        conv(f, &blk->conv, up, *H, *W, NULL, 0, NULL, 1.0f, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_RESNET: {
        float *dst = hidden(f, h, C, 2 * *H, 2 * *W);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_SKIP: {
        /* skip = skip + skip_conv(silu(skip_norm(hidden))); hidden = resnet_up(hidden) */
        float *n = buf(f, BUF_T0, C, *H, *W);
        norm(f, &blk->skip_norm, h, *H * *W, 1, n);
        float *dst = *skip ? other_sk(f, *skip, *H, *W) : buf(f, BUF_SK0, 3, *H, *W); // (B, 3, H, W)
        conv(f, &blk->skip_conv, n, *H, *W, NULL, 0, *skip, 1.0f, dst);
        *skip = dst;
        float *hd = hidden(f, h, C, 2 * *H, 2 * *W);
        resnet_fwd(f, &blk->rs, h, H, W, hd);
        h = hd;
        break;
    }
    }
    return h;
}

/* One pass: x (B, C_in, H, W), t (B) -> out (B, C_out, H, W), B <= MB (measuring: B = MB, and x,
 * t, out are not touched). */
static void forward_pass(fwd *f, const float *x, int B, int H, int W, const float *t, float *out) {
    const unet_net *net = f->net;
    const unet_config *c = &net->cfg;
    const size_t HW = (size_t)H * W;
    f->B = B;
    f->n_stack = 0;
    f->stack_used = 0;

    /* 0. center input: sample = 2 * sample - 1.0 */
    const float *xin = x; // (B, C_in, H, W)
    if (c->center_input_sample) {
        float *xc = buf(f, BUF_XC, c->in_channels, H, W);
        center(f, x, (size_t)c->in_channels * HW, xc);
        xin = xc;
    }
    /* 1. time: time_proj -> time_embedding (linear_1, silu, linear_2) */
    float *tproj = buf(f, BUF_TPROJ, net->tproj_dim, 1, 1); // (B, tproj_dim)
    float *e1 = buf(f, BUF_E1, net->temb_dim, 1, 1);        // (B, temb_dim)
    float *emb = buf(f, BUF_EMB, net->temb_dim, 1, 1);      // (B, temb_dim)
    float *emb_act = buf(f, BUF_EMB_ACT, net->temb_dim, 1, 1);
    time_proj(f, t, tproj);
    tap(f, "time_proj", tproj, (size_t)net->tproj_dim);
    linear(f, &net->time1, tproj, e1);
    silu(f, e1, (size_t)B * net->temb_dim, e1);
    linear(f, &net->time2, e1, emb);
    tap(f, "time_embedding", emb, (size_t)net->temb_dim);
    silu(f, emb, (size_t)B * net->temb_dim, emb_act); // ResnetBlock2D: nonlinearity(temb)

    /* 2. conv_in; 3. down blocks */
    const float *skip_down = xin; // skip_sample = sample
    int h_ = H, w_ = W;
    float *h0 = stack_push(f, c->block_out_channels[0], H, W);
    conv(f, &net->conv_in, xin, H, W, NULL, 0, NULL, 1.0f, h0);
    const float *h = h0;
    char name[32];
    for (int i = 0; i < c->n_levels; i++) {
        h = down_fwd(f, i, h, &h_, &w_, &skip_down);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        tap(f, name, h, (size_t)net->down[i].cout * h_ * w_);
    }
    /* 4. mid */
    {
        const int Cm = net->mid_res[0].cout;
        float *dst = hidden(f, h, Cm, h_, w_);
        resnet_fwd(f, &net->mid_res[0], h, &h_, &w_, dst);
        h = dst;
        if (net->mid_has_attn) {
            dst = hidden(f, h, Cm, h_, w_);
            attn_fwd(f, &net->mid_attn, h, h_ * w_, dst);
            h = dst;
        }
        dst = hidden(f, h, Cm, h_, w_);
        resnet_fwd(f, &net->mid_res[1], h, &h_, &w_, dst);
        h = dst;
        tap(f, "mid_block", h, (size_t)net->mid_res[1].cout * h_ * w_);
    }
    /* 5. up blocks (skip_sample starts as None) */
    float *skip_up = NULL;
    for (int i = 0; i < c->n_levels; i++) {
        h = up_fwd(f, i, h, &h_, &w_, &skip_up);
        snprintf(name, sizeof name, "up_blocks.%d", i);
        tap(f, name, h, (size_t)net->up[i].cout * h_ * w_);
    }
    CORE_ASSERT(f->n_stack == 0 && h_ == H && w_ == W);
    /* 6. post-process: conv_out(silu(conv_norm_out(h))) [+ skip] [/ t] */
    float *n = buf(f, BUF_T0, c->block_out_channels[0], H, W);
    norm(f, &net->norm_out, h, (int)HW, 1, n);
    conv(f, &net->conv_out, n, H, W, NULL, 0, skip_up, 1.0f, out); // (B, C_out, H, W)
    if (c->time_fourier) divide_by_t(f, out, (size_t)c->out_channels * HW, t);
}

static int micro_batch(int B) { return B < UNET_MICRO_BATCH ? B : UNET_MICRO_BATCH; }

/* The measure pass for (MB, H, W) and the layout for n_threads. 0 if the sizes are outside what
 * pndm_unet_forward accepts (every level at least 1x1, H * W well inside int) or overflow. */
static int measure(const unet_net *net, int MB, int H, int W, int n_threads, fwd_layout *L) {
    const int div = 1 << (net->cfg.n_levels - 1);
    memset(L, 0, sizeof *L);
    if (MB < 1 || n_threads < 1 || H < div || W < div || H % div || W % div ||
        (size_t)H * (size_t)W > ((size_t)1 << 28))
        return 0;
    L->MB = MB;
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.L = L;
    f.measuring = 1;
    f.ops.k = &net->kern; /* the workspace depends on the kernel choices */
    for (int b = 0; b < BUF_N; b++) f.buf[b] = ph(b);
    f.stack_base = ph(PH_STACK);
    forward_pass(&f, ph(PH_X), MB, H, W, ph(PH_X), ph(PH_OUT));
    return layout(L, n_threads);
}

size_t unet_workspace_bytes(const unet_net *net, int B, int H, int W, int n_threads) {
    fwd_layout L;
    if (B < 1 || !measure(net, micro_batch(B), H, W, n_threads, &L)) return SIZE_MAX;
    return sz_mul(L.total, sizeof(float));
}

pndm_status unet_forward(const unet_net *net, unet_ctx *ctx, const float *x, int B, int H, int W, const float *t,
                         float *out, int n_threads, unet_tap_fn tapfn, void *tap_user, pndm_error *err) {
    const unet_config *c = &net->cfg;
    fwd_layout L;
    if (n_threads < 1) n_threads = 1;
    const int MB = micro_batch(B);
    if (!measure(net, MB, H, W, n_threads, &L))
        return core_fail(err, PNDM_ERR_NOMEM, "UNet forward: workspace size overflows (batch %d, %dx%d)", B, H, W);
    if (!ctx_prepare(ctx, n_threads, L.total))
        return core_fail(err, PNDM_ERR_NOMEM, "UNet forward: cannot allocate %zu bytes of workspace (batch %d, %dx%d)",
                         sz_mul(L.total, sizeof(float)), B, H, W);
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.L = &L;
    f.tap = tapfn;
    f.tap_user = tap_user;
    float *mem = ctx->arena;
    for (int b = 0; b < BUF_N; b++) f.buf[b] = mem + L.off[b];
    f.stack_base = mem + L.stack_off;
    f.ops.k = &net->kern;
    f.ops.pool = ctx->pool;
    f.ops.shared = mem + L.shared_off;
    f.ops.shared_floats = L.shared;
    for (int i = 0; i < n_threads; i++) ctx->ws[i] = mem + L.ws_off + (size_t)i * L.ws_stride;
    f.ops.ws = ctx->ws;
    f.ops.ws_floats = L.ws;
    const size_t in_img = (size_t)c->in_channels * H * W, out_img = (size_t)c->out_channels * H * W;
    for (int b0 = 0; b0 < B; b0 += MB) {
        const int nb = B - b0 < MB ? B - b0 : MB;
        forward_pass(&f, x + (size_t)b0 * in_img, nb, H, W, t + b0, out + (size_t)b0 * out_img);
        f.tap = NULL; /* the tap sees batch element 0 only */
    }
    return PNDM_OK;
}
