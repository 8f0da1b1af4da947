/* UNet2DModel forward pass (the forward methods of diffusers 0.30.3 models/unets/unet_2d.py and
 * unet_2d_blocks.py; see each function), on the net laid out and bound by unet_build.c. */
#define _DEFAULT_SOURCE
#include "core.h"
#include "unet.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ============================================================================================ */
/* Forward                                                                                      */

#define FWD_ALIGN 16 /* floats (64 bytes) */
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

/* Working buffers of a pass, each sized for the largest tensor the forward puts in it. A resnet
 * (T1..T3) and an attention (QKV, ATT) never run at once: those two groups share memory. */
enum {
    BUF_H0,
    BUF_H1,  /* hidden states, ping-pong */
    BUF_CAT, /* up blocks: torch.cat([hidden, res], dim=1) */
    BUF_T0,  /* norm outputs; upsampled hidden of an Upsample2D */
    BUF_T1,
    BUF_T2,  /* resampled input / hidden of a resnet, its shortcut */
    BUF_T3,  /* a resnet's conv1 output */
    BUF_QKV, /* attention: q, k, v (B, 3C, HW) */
    BUF_ATT, /* attention output before to_out */
    BUF_N
};

/* Floats of buffers [b0, b1) laid out one after the other for MB images. */
static size_t bufs_floats(const size_t *buf, int b0, int b1, int MB) {
    size_t n = 0;
    for (int b = b0; b < b1; b++) n = sz_add(n, sz_align(sz_mul(buf[b], (size_t)MB)));
    return n;
}

/* All working buffers: H0..T0, then T1..T3 and QKV..ATT overlaid. */
static size_t work_floats(const size_t *buf, int MB) {
    return sz_add(bufs_floats(buf, BUF_H0, BUF_T1, MB),
                  sz_max(bufs_floats(buf, BUF_T1, BUF_QKV, MB), bufs_floats(buf, BUF_QKV, BUF_N, MB)));
}

typedef struct fwd_layout {
    int MB;            /* images per pass */
    size_t buf[BUF_N]; /* floats per image */
    size_t stack;      /* skip connections pushed by conv_in and the down blocks (MB images) */
    size_t sk;         /* per skip-sample buffer, per image: 3 * H * W (0 without skip blocks) */
    size_t xc;         /* centred input, per image (0 unless center_input_sample) */
    size_t vec;        /* per small vector buffer, per image: the largest time dimension */
    size_t ws;         /* per-thread scratch */
    size_t shared;     /* scratch shared by the threads (MB images) */
    size_t total;      /* floats of the arena */
} fwd_layout;

/* ---- layout: a walk over the net that mirrors the forward below ----------------------------- */
typedef struct planner {
    fwd_layout *L;
    int stack_c[FWD_MAX_STACK]; /* channels of the pushed skip connections */
    int n_stack;
} planner;

static void pl_buf(planner *p, int b, int C, int H, int W) {
    p->L->buf[b] = sz_max(p->L->buf[b], sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W)));
}

static void pl_hidden(planner *p, int C, int H, int W) {
    pl_buf(p, BUF_H0, C, H, W);
    pl_buf(p, BUF_H1, C, H, W);
}

static void pl_push(planner *p, int C, int H, int W) {
    CORE_ASSERT(p->n_stack < FWD_MAX_STACK);
    p->stack_c[p->n_stack++] = C;
    p->L->stack =
        sz_add(p->L->stack, sz_align(sz_mul((size_t)p->L->MB, sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W)))));
}

static void pl_conv(planner *p, const op_conv_geom *g, int H, int W) {
    size_t a, s;
    op_conv2d_ws(g, H, W, &a, &s);
    p->L->ws = sz_max(p->L->ws, a);
    p->L->shared = sz_max(p->L->shared, s);
}

static void pl_resnet(planner *p, const unet_resnet *r, int *H, int *W) {
    pl_buf(p, BUF_T0, r->cin, *H, *W);
    if (r->resample != UNET_RS_NONE) {
        int up = r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP;
        *H = up ? 2 * *H : *H / 2;
        *W = up ? 2 * *W : *W / 2;
        pl_buf(p, BUF_T1, r->cin, *H, *W);
        pl_buf(p, BUF_T2, r->cin, *H, *W);
    }
    pl_conv(p, &r->conv1.g, *H, *W);
    pl_buf(p, BUF_T3, r->cout, *H, *W);
    pl_buf(p, BUF_T0, r->cout, *H, *W);
    pl_conv(p, &r->conv2.g, *H, *W);
    if (r->has_shortcut) {
        pl_conv(p, &r->shortcut.g, *H, *W);
        pl_buf(p, BUF_T1, r->cout, *H, *W);
        pl_buf(p, BUF_T2, r->cout, *H, *W);
    }
    p->L->vec = sz_max(p->L->vec, (size_t)r->temb.out);
}

static void pl_attn(planner *p, const unet_attn *a, int HW) {
    pl_buf(p, BUF_T0, a->channels, 1, HW);
    pl_buf(p, BUF_QKV, 3 * a->channels, 1, HW);
    pl_buf(p, BUF_ATT, a->channels, 1, HW);
    const op_conv_geom g3 = {a->channels, 3 * a->channels, 1, 1, 0, 0, 0, 0};
    const op_conv_geom g1 = {a->channels, a->channels, 1, 1, 0, 0, 0, 0};
    pl_conv(p, &g3, 1, HW);
    pl_conv(p, &g1, 1, HW);
    size_t ws, sh;
    op_attention_ws(p->L->MB, a->channels, HW, a->heads, &ws, &sh);
    p->L->ws = sz_max(p->L->ws, ws);
    p->L->shared = sz_max(p->L->shared, sh);
}

static int fwd_plan(const unet_net *net, int MB, int H, int W, int n_threads, fwd_layout *L) {
    const unet_config *c = &net->cfg;
    planner pl;
    planner *p = &pl;
    memset(L, 0, sizeof *L);
    /* sizes pndm_unet_forward accepts: every level at least 1x1, H * W well inside int */
    const int div = 1 << (c->n_levels - 1);
    if (MB < 1 || H < div || W < div || H % div || W % div || (size_t)H * (size_t)W > ((size_t)1 << 28)) return 0;
    memset(p, 0, sizeof *p);
    p->L = L;
    L->MB = MB;
    L->vec = (size_t)(net->temb_dim > net->tproj_dim ? net->temb_dim : net->tproj_dim);
    int h = H, w = W, C = c->block_out_channels[0];
    pl_conv(p, &net->conv_in.g, h, w);
    pl_push(p, C, h, w);
    for (int i = 0; i < c->n_levels; i++) { /* down_fwd */
        const unet_block *blk = &net->down[i];
        for (int j = 0; j < blk->n_resnets; j++) {
            pl_resnet(p, &blk->resnets[j], &h, &w);
            if (blk->n_attns) {
                pl_hidden(p, blk->resnets[j].cout, h, w);
                pl_attn(p, &blk->attns[j], h * w);
            }
            pl_push(p, blk->resnets[j].cout, h, w);
        }
        switch (blk->sampler) {
        case UNET_SAMPLER_NONE: break;
        case UNET_SAMPLER_CONV:
            pl_conv(p, &blk->conv.g, h, w);
            h /= 2;
            w /= 2;
            pl_push(p, blk->cout, h, w);
            break;
        case UNET_SAMPLER_RESNET:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_push(p, blk->cout, h, w);
            break;
        case UNET_SAMPLER_SKIP:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, blk->cout, h, w);
            pl_conv(p, &blk->skip_conv.g, h, w);
            pl_push(p, blk->cout, h, w);
            break;
        }
        C = blk->cout;
    }
    pl_resnet(p, &net->mid_res[0], &h, &w); /* mid */
    if (net->mid_has_attn) pl_attn(p, &net->mid_attn, h * w);
    pl_resnet(p, &net->mid_res[1], &h, &w);
    pl_hidden(p, net->mid_res[1].cout, h, w);
    C = net->mid_res[1].cout;
    for (int i = 0; i < c->n_levels; i++) { /* up_fwd */
        const unet_block *blk = &net->up[i];
        for (int j = 0; j < blk->n_resnets; j++) {
            CORE_ASSERT(p->n_stack > 0);
            pl_buf(p, BUF_CAT, C + p->stack_c[--p->n_stack], h, w);
            pl_resnet(p, &blk->resnets[j], &h, &w);
            C = blk->resnets[j].cout;
            pl_hidden(p, C, h, w);
        }
        for (int j = 0; j < blk->n_attns; j++) pl_attn(p, &blk->attns[j], h * w);
        switch (blk->sampler) {
        case UNET_SAMPLER_NONE: break;
        case UNET_SAMPLER_CONV:
            h *= 2;
            w *= 2;
            pl_buf(p, BUF_T0, C, h, w);
            pl_conv(p, &blk->conv.g, h, w);
            pl_hidden(p, C, h, w);
            break;
        case UNET_SAMPLER_RESNET:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, C, h, w);
            break;
        case UNET_SAMPLER_SKIP:
            pl_buf(p, BUF_T0, C, h, w);
            pl_conv(p, &blk->skip_conv.g, h, w);
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, C, h, w);
            break;
        }
    }
    pl_buf(p, BUF_T0, c->block_out_channels[0], h, w); /* conv_norm_out */
    pl_conv(p, &net->conv_out.g, h, w);
    const size_t px = sz_mul((size_t)H, (size_t)W);
    int skip = unet_block_is_skip(c->down_block_types[0]) || net->has_skip_up;
    L->sk = skip ? sz_mul(3, px) : 0;
    L->xc = c->center_input_sample ? sz_mul((size_t)c->in_channels, px) : 0;
    size_t total = 0;
    total = sz_add(total, work_floats(L->buf, MB));
    total = sz_add(total, L->stack);
    total = sz_add(total, sz_mul(sz_align(sz_mul(L->sk, (size_t)MB)), 2));
    total = sz_add(total, sz_align(sz_mul(L->xc, (size_t)MB)));
    total = sz_add(total, sz_mul(sz_align(sz_mul(L->vec, (size_t)MB)), 5)); /* tproj, e1, emb, emb_act, tp */
    total = sz_add(total, sz_align(L->shared));
    total = sz_add(total, sz_mul(sz_align(L->ws ? L->ws : 1), (size_t)n_threads));
    L->total = total;
    return total != SIZE_MAX;
}

static int micro_batch(int B) { return B < UNET_MICRO_BATCH ? B : UNET_MICRO_BATCH; }

size_t unet_workspace_bytes(const unet_net *net, int B, int H, int W, int n_threads) {
    fwd_layout L;
    if (B < 1 || H < 1 || W < 1 || n_threads < 1 || !fwd_plan(net, micro_batch(B), H, W, n_threads, &L))
        return SIZE_MAX;
    return sz_mul(L.total, sizeof(float));
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
    float *buf[BUF_N]; /* see BUF_* */
    size_t cap[BUF_N]; /* floats per image */
    float *sk[2];      /* skip samples (B, 3, H, W) */
    float *emb_act;    /* (B, temb_dim) silu(emb), what every time_emb_proj sees */
    float *tp;         /* (B, 2 * cout) a resnet's time projection */
    float *stack_mem;  /* next free float of the skip-connection stack */
    stack_entry stack[FWD_MAX_STACK];
    int n_stack;
    unet_tap_fn tap;
    void *tap_user;
} fwd;

/* Working buffer b for a (B, C, H, W) tensor. */
static float *buf(const fwd *f, int b, int C, int H, int W) {
    CORE_ASSERT((size_t)C * (size_t)H * (size_t)W <= f->cap[b]);
    return f->buf[b];
}

static float *other_h(const fwd *f, const float *p) { return p == f->buf[BUF_H0] ? f->buf[BUF_H1] : f->buf[BUF_H0]; }
static float *hidden(const fwd *f, const float *p, int C, int H, int W) {
    float *d = other_h(f, p);
    return buf(f, d == f->buf[BUF_H0] ? BUF_H0 : BUF_H1, C, H, W);
}
static float *other_sk(const fwd *f, const float *p) { return p == f->sk[0] ? f->sk[1] : f->sk[0]; }

static float *stack_push(fwd *f, int C, int H, int W) {
    CORE_ASSERT(f->n_stack < FWD_MAX_STACK);
    stack_entry *e = &f->stack[f->n_stack++];
    e->d = f->stack_mem;
    e->C = C;
    e->H = H;
    e->W = W;
    f->stack_mem += sz_align((size_t)f->B * (size_t)C * (size_t)H * (size_t)W);
    return e->d;
}

static void tap(const fwd *f, const char *name, const float *d, size_t per_image) {
    if (f->tap) f->tap(name, d, per_image, f->tap_user);
}

/* y = (conv(x) + bias [+ per-image bias] [+ res]) / div */
static void conv(const fwd *f, const op_conv_w *cw, const float *x, int H, int W, const float *img_bias,
                 size_t ib_stride, const float *res, float div, float *y) {
    op_conv_epi e = {img_bias, ib_stride, res, div};
    op_conv2d(&f->ops, cw, x, f->B, H, W, &e, y);
}

static void norm(const fwd *f, const unet_norm *n, const float *x, int HW, int silu, float *y) {
    op_group_norm(&f->ops, x, f->B, n->channels, HW, n->groups, n->w, n->b, n->eps, NULL, NULL, 0, silu, y);
}

static void resample(const fwd *f, unet_resample rs, const float *x, int C, int H, int W, float *y) {
    switch (rs) {
    case UNET_RS_NONE: break;
    case UNET_RS_AVGPOOL: op_avgpool2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_NEAREST: op_upsample_nearest2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_DOWN: op_fir_downsample2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_UP: op_fir_upsample2(&f->ops, x, f->B, C, H, W, y); break;
    }
}

/* ResnetBlock2D.forward: x (B, cin, H, W) -> out (B, cout, H', W'); *H, *W updated when the block
 * resamples. Uses T0..T3; out must not be x or one of them. */
static void resnet_fwd(fwd *f, const unet_resnet *r, const float *x, int *H, int *W, float *out) {
    const int B = f->B;
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
    op_linear(f->emb_act, B, r->temb.in, r->temb.w, r->temb.b, r->temb.out, f->tp); // (B, cout | 2 cout)
    float *c1 = buf(f, BUF_T3, r->cout, H2, W2);                                    // (B, cout, H2, W2)
    if (r->scale_shift) {
        /* norm2(conv1(h)) * (1 + scale) + shift, scale/shift = chunk(temb, 2, dim=1) */
        conv(f, &r->conv1.pk, hr, H2, W2, NULL, 0, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        op_group_norm(&f->ops, c1, B, r->cout, HW, r->norm2.groups, r->norm2.w, r->norm2.b, r->norm2.eps, f->tp,
                      f->tp + r->cout, (size_t)2 * r->cout, 1, h2);
        hr = h2;
    } else {
        /* norm2(conv1(h) + temb[:, :, None, None]) */
        conv(f, &r->conv1.pk, hr, H2, W2, f->tp, (size_t)r->cout, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        norm(f, &r->norm2, c1, HW, 1, h2);
        hr = h2;
    }
    const float *sc = xr; // (B, cout, H2, W2)
    if (r->has_shortcut) {
        float *dst = xr == f->buf[BUF_T1] ? buf(f, BUF_T2, r->cout, H2, W2) : buf(f, BUF_T1, r->cout, H2, W2);
        conv(f, &r->shortcut.pk, xr, H2, W2, NULL, 0, NULL, 1.0f, dst);
        sc = dst;
    }
    conv(f, &r->conv2.pk, hr, H2, W2, NULL, 0, sc, r->out_scale, out); // (input + conv2(h)) / scale
    *H = H2;
    *W = W2;
}

/* Attention with AttnProcessor on (B, C, HW): out = (to_out(attn(norm(x))) + x) / rescale.
 * Uses T0, QKV, ATT; out must not be x or one of them. */
static void attn_fwd(fwd *f, const unet_attn *a, const float *x, int HW, float *out) {
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
    const size_t chw = (size_t)C * HW;
    op_attention(&f->ops, qkv, qkv + chw, qkv + 2 * chw, 3 * chw, f->B, C, HW, a->heads, a->scale, att);
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
        conv(f, &blk->conv.pk, h, *H, *W, NULL, 0, NULL, 1.0f, dst);
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
        float *sk = other_sk(f, *skip); // (B, 3, H/2, W/2)
        op_fir_downsample2(&f->ops, *skip, f->B, 3, Hs, Ws, sk);
        *skip = sk;
        float *dst = stack_push(f, blk->cout, *H, *W);
        conv(f, &blk->skip_conv.pk, sk, *H, *W, NULL, 0, tmp, 1.0f, dst);
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
        op_concat_channels(h, C, e->d, e->C, f->B, *H * *W, cat);
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
        float *dst = other_sk(f, *skip);
        op_fir_upsample2(&f->ops, *skip, f->B, 3, *H / 2, *W / 2, dst);
        *skip = dst;
    }
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: {
        float *up = buf(f, BUF_T0, C, 2 * *H, 2 * *W); // (B, C, 2H, 2W)
        op_upsample_nearest2(&f->ops, h, f->B, C, *H, *W, up);
        *H *= 2;
        *W *= 2;
        float *dst = hidden(f, h, C, *H, *W);
        conv(f, &blk->conv.pk, up, *H, *W, NULL, 0, NULL, 1.0f, dst);
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
        float *dst = *skip ? other_sk(f, *skip) : f->sk[0]; // (B, 3, H, W)
        conv(f, &blk->skip_conv.pk, n, *H, *W, NULL, 0, *skip, 1.0f, dst);
        *skip = dst;
        float *hd = hidden(f, h, C, 2 * *H, 2 * *W);
        resnet_fwd(f, &blk->rs, h, H, W, hd);
        h = hd;
        break;
    }
    }
    return h;
}

/* One pass: x (B, C_in, H, W), t (B) -> out (B, C_out, H, W), B <= L->MB. */
static void forward_pass(fwd *f, const fwd_layout *L, float *mem, const float *x, int B, int H, int W, const float *t,
                         float *out) {
    const unet_net *net = f->net;
    const unet_config *c = &net->cfg;
    const size_t HW = (size_t)H * W;
    f->B = B;
    f->n_stack = 0;
    /* carve the arena (T1..T3 and QKV..ATT overlaid) */
    float *p = mem;
    for (int b = 0; b < BUF_N; b++) {
        if (b == BUF_QKV) p = f->buf[BUF_T1];
        f->buf[b] = p;
        f->cap[b] = L->buf[b];
        p += sz_align(L->buf[b] * (size_t)L->MB);
    }
    p = mem + work_floats(L->buf, L->MB);
    f->sk[0] = p;
    p += sz_align(L->sk * (size_t)L->MB);
    f->sk[1] = p;
    p += sz_align(L->sk * (size_t)L->MB);
    float *xc = p;
    p += sz_align(L->xc * (size_t)L->MB);
    const size_t vec = sz_align(L->vec * (size_t)L->MB);
    float *tproj = p;
    p += vec; // (B, tproj_dim)
    float *e1 = p;
    p += vec; // (B, temb_dim)
    float *emb = p;
    p += vec; // (B, temb_dim)
    f->emb_act = p;
    p += vec; // (B, temb_dim)
    f->tp = p;
    p += vec;         // (B, 2 * cout)
    f->stack_mem = p; // the shared and per-thread scratch follow the stack

    /* 0. center input: sample = 2 * sample - 1.0 */
    const float *xin = x; // (B, C_in, H, W)
    if (c->center_input_sample) {
        size_t n = (size_t)B * c->in_channels * HW;
        for (size_t i = 0; i < n; i++) xc[i] = 2.0f * x[i] - 1.0f;
        xin = xc;
    }
    /* 1. time: time_proj -> time_embedding (linear_1, silu, linear_2) */
    if (c->time_fourier)
        op_fourier_embedding(t, B, net->fourier_w, c->block_out_channels[0], tproj);
    else
        op_timestep_embedding(t, B, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift, tproj);
    tap(f, "time_proj", tproj, (size_t)net->tproj_dim);
    op_linear(tproj, B, net->time1.in, net->time1.w, net->time1.b, net->time1.out, e1);
    op_silu(e1, (size_t)B * net->temb_dim, e1);
    op_linear(e1, B, net->time2.in, net->time2.w, net->time2.b, net->time2.out, emb);
    tap(f, "time_embedding", emb, (size_t)net->temb_dim);
    op_silu(emb, (size_t)B * net->temb_dim, f->emb_act); // ResnetBlock2D: nonlinearity(temb)

    /* 2. conv_in; 3. down blocks */
    const float *skip_down = xin; // skip_sample = sample
    int h_ = H, w_ = W;
    float *h0 = stack_push(f, c->block_out_channels[0], H, W);
    conv(f, &net->conv_in.pk, xin, H, W, NULL, 0, NULL, 1.0f, h0);
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
    conv(f, &net->conv_out.pk, n, H, W, NULL, 0, skip_up, 1.0f, out); // (B, C_out, H, W)
    const size_t per = (size_t)c->out_channels * HW;
    if (c->time_fourier)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < per; i++) out[(size_t)b * per + i] /= t[b];
}

pndm_status unet_forward(const unet_net *net, unet_ctx *ctx, const float *x, int B, int H, int W, const float *t,
                         float *out, int n_threads, unet_tap_fn tapfn, void *tap_user, pndm_error *err) {
    const unet_config *c = &net->cfg;
    fwd_layout L;
    if (n_threads < 1) n_threads = 1;
    const int MB = micro_batch(B);
    if (!fwd_plan(net, MB, H, W, n_threads, &L))
        return core_fail(err, PNDM_ERR_NOMEM, "UNet forward: workspace size overflows (batch %d, %dx%d)", B, H, W);
    if (!ctx_prepare(ctx, n_threads, L.total))
        return core_fail(err, PNDM_ERR_NOMEM, "UNet forward: cannot allocate %zu bytes of workspace (batch %d, %dx%d)",
                         sz_mul(L.total, sizeof(float)), B, H, W);
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.tap = tapfn;
    f.tap_user = tap_user;
    /* scratch at the end of the arena: shared, then one block per thread */
    float *scratch = ctx->arena + (L.total - sz_align(L.shared) - sz_mul(sz_align(L.ws ? L.ws : 1), (size_t)n_threads));
    f.ops.pool = ctx->pool;
    f.ops.shared = scratch;
    f.ops.shared_floats = L.shared;
    scratch += sz_align(L.shared);
    for (int i = 0; i < n_threads; i++) ctx->ws[i] = scratch + (size_t)i * sz_align(L.ws ? L.ws : 1);
    f.ops.ws = ctx->ws;
    f.ops.ws_floats = L.ws;
    const size_t in_img = (size_t)c->in_channels * H * W, out_img = (size_t)c->out_channels * H * W;
    for (int b0 = 0; b0 < B; b0 += MB) {
        const int nb = B - b0 < MB ? B - b0 : MB;
        forward_pass(&f, &L, ctx->arena, x + (size_t)b0 * in_img, nb, H, W, t + b0, out + (size_t)b0 * out_img);
        f.tap = NULL; /* the tap sees batch element 0 only */
    }
    return PNDM_OK;
}
