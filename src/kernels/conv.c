/* 2-D convolutions on NCHW tensors (see ops.h). Weights are packed once, at load, into panels of
 * 16 output channels (gemm.h); a call then takes one of two paths, chosen from the geometry and
 * the image size only (never from the batch size or the thread count):
 *
 *   direct     im2col: the input patches of 16 output pixels (a "strip") are packed k-block by
 *              k-block (1x1 convolutions read the input in place) and multiplied by the weight
 *              panels, tile by tile (gemm.h), with the bias, the per-image bias, the residual
 *              and the divisor fused into the tiles.
 *   Winograd   F(4x4, 3x3) or F(2x2, 3x3) (Lavin & Gray 2016) for 3x3 convolutions with stride
 *              1 and padding 1 when an image has at least 16 output tiles: per n x n input tile
 *              (n = m + 2) V = B^T d B, per weight U = G g G^T (computed from the packed panels
 *              at each call, since storing U would take 4x the weights' memory), then n^2 GEMMs
 *              M_xi = U_xi V_xi over the input channels and Y = A^T M A + bias per tile. F(4x4)
 *              does a quarter of the multiplications of the direct path, F(2x2) 4/9; their float
 *              errors stay within about 3x and 1x that of the direct sum (tests/test_ops.c).
 *
 * Every output element is computed by the same operations whichever task, thread or batch
 * position it falls in, so results are byte-identical for any thread count or batch split. */
#define _POSIX_C_SOURCE 200809L
#include "blas.h"
#include "core.h"
#include "gemm.h"
#include "ops.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONV_ROWLOAD 1
#else
#define CONV_ROWLOAD 0
#endif

/* Work partition constants (they change neither results nor their determinism). */
#define CONV_CHUNK 16            /* strips (16 output pixels each) packed together (im2col of 256 pixels) */
#define CONV_GROUP 2             /* weight panels (16 output channels each) per task ... */
#define CONV_MIN_TASKS 4         /* ... and strips split among tasks until a chunk has this many */
#define WINO_NS 16               /* at most this many strips of 16 tiles per Winograd chunk ... */
#define WINO_V_FLOATS (1u << 20) /* ... and at most this many floats (4 MiB) of V per chunk */
#define WINO_GROUP 2             /* weight panels (16 output channels each) per Winograd task */
#define WINO_CI_BLOCK 16         /* input channels per input-transform task */
#define WINO_KB 128              /* input channels per GEMM block (U: 36 x 2 panels x 128 x 16 floats) */
#define BLAS_NB 128              /* OpenBLAS direct path: output pixels of one image per product */

static int min_i(int a, int b) { return a < b ? a : b; }
static int max_i(int a, int b) { return a > b ? a : b; }

/* ---- weights ------------------------------------------------------------------------------- */
int op_conv_init(op_conv_w *cw, const op_kernels *k, const op_conv_geom *g, const float *w, const float *bias) {
    memset(cw, 0, sizeof *cw);
    cw->g = *g;
    cw->K = g->cin * g->k * g->k;
    cw->panels = (g->cout + GEMM_MR - 1) / GEMM_MR;
    cw->bias = bias;
    cw->rowmajor = k->blas;
    size_t n = (size_t)cw->panels * (size_t)cw->K * GEMM_MR;
    cw->a = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!cw->a) return 0;
    if (cw->rowmajor) {
        memcpy(cw->a, w, (size_t)g->cout * (size_t)cw->K * sizeof *cw->a);
        return 1;
    }
    /* panel p, row k = (ci, ky, kx): output channels 16p .. 16p + 15 of w (cout, cin, k, k) */
    for (int p = 0; p < cw->panels; p++)
        gemm_pack_panel(w + (size_t)p * GEMM_MR * cw->K, (size_t)cw->K, 1, min_i(GEMM_MR, g->cout - p * GEMM_MR), cw->K,
                        cw->a + (size_t)p * cw->K * GEMM_MR);
    return 1;
}

void op_conv_free(op_conv_w *cw) {
    if (!cw) return;
    free(cw->a);
    cw->a = NULL;
}

/* ---- path choice and workspace ------------------------------------------------------------ */
/* Winograd output tile for a 3x3 / stride 1 / padding 1 convolution with >= 16 channels in and
 * out on (H, W) images: 4 when an image has >= 16 tiles of 4x4, else 2 when it has >= 16 of 2x2,
 * else 0 (direct). The image size alone decides, so every image of a batch takes the same path. */
static int wino_tile(const op_kernels *k, const op_conv_geom *g, int H, int W) {
    if (!k->winograd || g->k != 3 || g->stride != 1 || g->pad_t != 1 || g->pad_l != 1 || g->pad_b != 1 ||
        g->pad_r != 1 || g->cin < 16 || g->cout < 16)
        return 0;
    if (((H + 3) / 4) * ((W + 3) / 4) >= 16) return 4;
    if (((H + 1) / 2) * ((W + 1) / 2) >= 16) return 2;
    return 0;
}

/* strips per Winograd chunk: V (X, ns, cin, 16) within WINO_V_FLOATS */
static int wino_ns(int X, int cin) {
    size_t ns = WINO_V_FLOATS / ((size_t)X * 16 * (size_t)(cin > 0 ? cin : 1));
    return ns < 1 ? 1 : ns > WINO_NS ? WINO_NS : (int)ns;
}

static void blas_direct_ws(const op_conv_geom *g, size_t *per_thread, size_t *shared);

/* OpenBLAS: strips per chunk, a chunk within one image of TI tiles */
static int wino_ns_blas(int X, int cin, int TI) { return min_i(wino_ns(X, cin), (TI + 15) / 16); }

/* 1x1, stride 1, no padding, P a multiple of 16: the im2col matrix is x itself */
static int conv_in_place(const op_conv_geom *g, int P) {
    return g->k == 1 && g->stride == 1 && !g->pad_t && !g->pad_l && !g->pad_b && !g->pad_r && P % GEMM_NR == 0;
}

/* k rows per block: at most k->conv_kc (A and B blocks in L1), blocks of equal size */
static int conv_kc(const op_kernels *k, int K) {
    int nb = (K + k->conv_kc - 1) / k->conv_kc;
    return nb > 0 ? (K + nb - 1) / nb : 1;
}

void op_conv2d_ws(const op_kernels *k, const op_conv_geom *g, int H, int W, size_t *per_thread, size_t *shared) {
    const size_t cin = (size_t)(g->cin > 0 ? g->cin : 0);
    const int m = wino_tile(k, g, H, W);
    if (m && k->blas) {
        const size_t X = (size_t)(m + 2) * (size_t)(m + 2);
        const int TI = ((H + m - 1) / m) * ((W + m - 1) / m);
        const size_t ns = (size_t)wino_ns_blas((int)X, g->cin, TI), G = WINO_GROUP * 16;
        *per_thread = X * cin * G + X * G * ns * 16;
        *shared = X * ns * 16 * cin;
    } else if (m) {
        const size_t X = (size_t)(m + 2) * (size_t)(m + 2), ns = (size_t)wino_ns((int)X, g->cin);
        *per_thread = X * WINO_GROUP * WINO_KB * 16 + X * WINO_GROUP * 16 * ns * 16;
        *shared = X * ns * cin * 16;
    } else if (k->blas) {
        blas_direct_ws(g, per_thread, shared);
    } else {
        *per_thread = 0;
        *shared = (size_t)CONV_CHUNK * (size_t)g->cin * (size_t)g->k * (size_t)g->k * GEMM_NR;
    }
}

/* bias[co0 .. co0 + rows) + img_bias of image b (or 0), for a tile */
static void tile_bias(const op_conv_w *cw, const op_conv_epi *e, int b, int co0, int rows, float *out) {
    for (int r = 0; r < GEMM_MR; r++) {
        float v = 0.0f;
        if (r < rows) {
            if (cw->bias) v = cw->bias[co0 + r];
            if (e && e->img_bias) v += e->img_bias[(size_t)b * e->img_bias_stride + (size_t)(co0 + r)];
        }
        out[r] = v;
    }
}

/* ---- direct path --------------------------------------------------------------------------- */
typedef struct conv_job {
    const ops_ctx *ctx;
    const op_conv_w *cw;
    const op_conv_epi *e;
    const float *x;
    float *y;
    int H, W, Ho, Wo, P; /* P = Ho * Wo output pixels per image */
    int spi, n_strips;   /* strips per image; in all */
    int s0, ns;          /* the current chunk: first strip, strips */
    int kc, nkb;         /* k rows per block; blocks */
    int n_groups;        /* groups of CONV_GROUP panels */
    int n_parts;         /* strip ranges per group (tasks = n_groups * n_parts) */
    int in_place;        /* 1x1, stride 1, no padding, whole strips: B is x itself (ldb = P) */
    float *bp;           /* the chunk's im2col, (ns, K, 16), shared (unless in_place) */
    gemm_tile_fn tile;
} conv_job;

/* dst (kc, 16) with row stride ld: rows [k0, k0 + kc) of image xb's im2col matrix, for output pixels [p0, p0 + 16)
 * (zero beyond the image's pixels and in the padding). Row k = (ci, ky, kx). */
OPS_CLONES static void im2col_strip(const conv_job *j, const float *xb, int p0, int k0, int kc, float *dst, size_t ld) {
    const op_conv_geom *g = &j->cw->g;
    const int k = g->k, kk = k * k, s = g->stride, H = j->H, W = j->W;
    if (k == 1 && s == 1 && !g->pad_t && !g->pad_l && !g->pad_b && !g->pad_r) {
        /* 1x1 without stride or padding: row ci is x[ci][p0 .. p0 + 16) */
        const int n = min_i(GEMM_NR, j->P - p0);
        for (int r = 0; r < kc; r++) {
            float *d = dst + (size_t)r * ld;
            memcpy(d, xb + (size_t)(k0 + r) * H * W + p0, (size_t)n * sizeof *d);
            for (int l = n; l < GEMM_NR; l++) d[l] = 0.0f;
        }
        return;
    }
    /* the strip's output row segments: lanes [sl, sl + sn) = pixels (oy, ox .. ox + sn) */
    int sl[GEMM_NR], soy[GEMM_NR], sox[GEMM_NR], sn[GEMM_NR], nseg = 0, lanes = 0;
    while (lanes < GEMM_NR && p0 + lanes < j->P) {
        int p = p0 + lanes, oy = p / j->Wo, ox = p % j->Wo;
        int n = min_i(min_i(j->Wo - ox, GEMM_NR - lanes), j->P - p);
        sl[nseg] = lanes;
        soy[nseg] = oy;
        sox[nseg] = ox;
        sn[nseg] = n;
        nseg++;
        lanes += n;
    }
    if (s == 1 && kk <= 9) {
        /* per tap and segment: the source offset in a channel plane and the valid lanes [lo, hi) */
        int off[9][GEMM_NR], lo[9][GEMM_NR], hi[9][GEMM_NR];
        for (int tap = 0; tap < kk; tap++)
            for (int sg = 0; sg < nseg; sg++) {
                const int iy = soy[sg] - g->pad_t + tap / k, ix0 = sox[sg] - g->pad_l + tap % k;
                const int in_row = iy >= 0 && iy < H;
                lo[tap][sg] = in_row ? max_i(0, -ix0) : 0;
                hi[tap][sg] = in_row ? max_i(lo[tap][sg], min_i(sn[sg], W - ix0)) : 0;
                off[tap][sg] = iy * W + ix0;
            }
        int ci = k0 / kk, tap = k0 % kk;
        for (int r = 0; r < kc; r++) {
            const float *xc = xb + (size_t)ci * H * W;
            float *d = dst + (size_t)r * ld;
            for (int l = lanes; l < GEMM_NR; l++) d[l] = 0.0f;
            for (int sg = 0; sg < nseg; sg++) {
                float *ds = d + sl[sg];
                const int n = sn[sg], l0 = lo[tap][sg], l1 = hi[tap][sg];
                if (l0 == 0 && l1 == GEMM_NR) {
                    memcpy(ds, xc + off[tap][sg], GEMM_NR * sizeof *ds);
                    continue;
                }
                for (int i = 0; i < l0; i++) ds[i] = 0.0f;
                if (l1 > l0) {
                    const float *src = xc + off[tap][sg];
                    for (int i = l0; i < l1; i++) ds[i] = src[i];
                }
                for (int i = l1; i < n; i++) ds[i] = 0.0f;
            }
            if (++tap == kk) {
                tap = 0;
                ci++;
            }
        }
        return;
    }
    int ci = k0 / kk, tap = k0 % kk;
    for (int r = 0; r < kc; r++) {
        const int ky = tap / k, kx = tap % k;
        const float *xc = xb + (size_t)ci * H * W;
        float *d = dst + (size_t)r * ld;
        for (int l = lanes; l < GEMM_NR; l++) d[l] = 0.0f;
        for (int sg = 0; sg < nseg; sg++) {
            float *ds = d + sl[sg];
            const int n = sn[sg], iy = soy[sg] * s - g->pad_t + ky, ix0 = sox[sg] * s - g->pad_l + kx;
            for (int i = 0; i < n; i++) {
                const int ix = ix0 + i * s;
                ds[i] = iy >= 0 && iy < H && ix >= 0 && ix < W ? xc[(size_t)iy * W + ix] : 0.0f;
            }
        }
        if (++tap == kk) {
            tap = 0;
            ci++;
        }
    }
}

/* phase 1, task (strip of the chunk, k block): its part of the chunk's im2col */
static void conv_pack_task(void *arg, size_t task, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const int K = j->cw->K;
    const int si = (int)(task / (size_t)j->nkb), k0 = (int)(task % (size_t)j->nkb) * j->kc;
    const int st = j->s0 + si, b = st / j->spi, p0 = (st % j->spi) * GEMM_NR;
    im2col_strip(j, j->x + (size_t)b * j->cw->g.cin * j->H * j->W, p0, k0, min_i(j->kc, K - k0),
                 j->bp + ((size_t)si * K + (size_t)k0) * GEMM_NR, GEMM_NR);
}

/* phase 2, task = CONV_GROUP weight panels x a range of the chunk's strips: their tiles, k block
 * by k block (an A block stays in L1 across the strips, a B block in L2 across the panels) */
static void conv_gemm_task(void *arg, size_t task, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const op_conv_w *cw = j->cw;
    const int K = cw->K, cout = cw->g.cout;
    const int grp = (int)(task / (size_t)j->n_parts), part = (int)(task % (size_t)j->n_parts);
    const int pn0 = grp * CONV_GROUP, pn1 = min_i(cw->panels, pn0 + CONV_GROUP);
    const int si0 = part * j->ns / j->n_parts, si1 = (part + 1) * j->ns / j->n_parts;
    const size_t out_img = (size_t)cout * j->P;
    for (int k0 = 0; k0 < K; k0 += j->kc) {
        const int kn = min_i(j->kc, K - k0);
        const int flags = (k0 == 0 ? GEMM_FIRST : 0) | (k0 + kn == K ? GEMM_LAST : 0);
        for (int pn = pn0; pn < pn1; pn++) {
            const int co0 = pn * GEMM_MR, rows = min_i(GEMM_MR, cout - co0);
            const float *a = cw->a + ((size_t)pn * K + (size_t)k0) * GEMM_MR;
            for (int si = si0; si < si1; si++) {
                const int st = j->s0 + si, b = st / j->spi, p0 = (st % j->spi) * GEMM_NR;
                const size_t off = (size_t)b * out_img + (size_t)co0 * j->P + (size_t)p0;
                float bias[GEMM_MR];
                gemm_epi ep = {NULL, NULL, (size_t)j->P, 1.0f};
                if (flags & GEMM_FIRST) {
                    tile_bias(cw, j->e, b, co0, rows, bias);
                    ep.bias = bias;
                }
                if (j->e && j->e->res) ep.res = j->e->res + off;
                if (j->e) ep.div = j->e->div;
                const float *bm = j->bp + ((size_t)si * K + (size_t)k0) * GEMM_NR;
                size_t ldb = GEMM_NR;
                if (j->in_place) {
                    bm = j->x + ((size_t)b * K + (size_t)k0) * j->P + (size_t)p0; // x (B, cin, P)
                    ldb = (size_t)j->P;
                }
                j->tile(kn, a, GEMM_MR, bm, ldb, j->y + off, (size_t)j->P, rows, min_i(GEMM_NR, j->P - p0), flags, &ep);
            }
        }
    }
}

/* The fields of a direct-convolution job both paths share; returns its output pixels per image
 * (0: nothing to do). */
static int conv_job_init(conv_job *j, const ops_ctx *c, const op_conv_w *cw, const float *x, int H, int W,
                         const op_conv_epi *e, float *y) {
    const op_conv_geom *g = &cw->g;
    memset(j, 0, sizeof *j);
    j->ctx = c;
    j->cw = cw;
    j->e = e;
    j->x = x;
    j->y = y;
    j->H = H;
    j->W = W;
    j->Ho = op_conv_out_size(H, g->k, g->stride, g->pad_t, g->pad_b);
    j->Wo = op_conv_out_size(W, g->k, g->stride, g->pad_l, g->pad_r);
    j->P = j->Ho * j->Wo;
    return j->P;
}

static void conv_direct(const ops_ctx *c, const op_conv_w *cw, const float *x, int B, int H, int W,
                        const op_conv_epi *e, float *y) {
    conv_job j;
    if (!conv_job_init(&j, c, cw, x, H, W, e, y)) return;
    j.spi = (j.P + GEMM_NR - 1) / GEMM_NR;
    j.n_strips = B * j.spi;
    j.kc = conv_kc(c->k, cw->K);
    j.nkb = (cw->K + j.kc - 1) / j.kc;
    j.n_groups = (cw->panels + CONV_GROUP - 1) / CONV_GROUP;
    /* rows P floats apart with P a multiple of 128 (512 bytes) fall into at most 8 L1 sets: pack
     * those strips when the k blocks are longer than the 8 ways could hold anyway */
    j.in_place = conv_in_place(&cw->g, j.P) && !(c->k->pack_strided && j.P % 128 == 0 && cw->K > 32);
    j.bp = c->shared;
    j.tile = c->k->tile;
    for (j.s0 = 0; j.s0 < j.n_strips; j.s0 += CONV_CHUNK) {
        j.ns = min_i(CONV_CHUNK, j.n_strips - j.s0);
        if (!j.in_place) tp_run(c->pool, (size_t)j.ns * (size_t)j.nkb, conv_pack_task, &j);
        j.n_parts = min_i(j.ns, (CONV_MIN_TASKS + j.n_groups - 1) / j.n_groups);
        tp_run(c->pool, (size_t)j.n_groups * (size_t)j.n_parts, conv_gemm_task, &j);
    }
}

/* ---- direct path on OpenBLAS ------------------------------------------------------------- */
/* Task (image, block of BLAS_NB output pixels): the block's im2col (K, nb) (1x1 convolutions
 * without stride or padding read x in place), one product Y (cout, nb) = W (cout, K) X (K, nb) in
 * the thread's scratch, then the epilogue. The blocks depend on the image size alone. */
static int blas_in_place(const op_conv_geom *g) {
    return g->k == 1 && g->stride == 1 && !g->pad_t && !g->pad_l && !g->pad_b && !g->pad_r;
}

static void blas_direct_ws(const op_conv_geom *g, size_t *per_thread, size_t *shared) {
    const size_t K = (size_t)g->cin * (size_t)g->k * (size_t)g->k;
    *per_thread = (size_t)g->cout * BLAS_NB + (blas_in_place(g) ? 0 : K * BLAS_NB);
    *shared = 0;
}

static void conv_blas_task(void *arg, size_t task, int thread) {
    const conv_job *j = arg;
    const op_conv_w *cw = j->cw;
    const op_conv_epi *e = j->e;
    const int K = cw->K, cout = cw->g.cout, P = j->P;
    const int b = (int)(task / (size_t)j->spi), p0 = (int)(task % (size_t)j->spi) * BLAS_NB;
    const int nb = min_i(BLAS_NB, P - p0);
    float *cm = j->ctx->ws[thread]; // (cout, BLAS_NB)
    const float *bm;
    int ldb;
    if (j->in_place) {
        bm = j->x + (size_t)b * K * P + (size_t)p0; // x (B, cin, P)
        ldb = P;
    } else {
        float *xc = cm + (size_t)cout * BLAS_NB; // im2col (K, BLAS_NB)
        const float *xb = j->x + (size_t)b * cw->g.cin * j->H * j->W;
        for (int s = 0; s < nb; s += GEMM_NR) im2col_strip(j, xb, p0 + s, 0, K, xc + s, BLAS_NB);
        bm = xc;
        ldb = BLAS_NB;
    }
    blas_sgemm(0, 0, cout, nb, K, cw->a, K, bm, ldb, 0.0f, cm, BLAS_NB);
    const size_t off = (size_t)b * cout * P + (size_t)p0;
    for (int co = 0; co < cout; co++) {
        float bias = cw->bias ? cw->bias[co] : 0.0f;
        if (e && e->img_bias) bias += e->img_bias[(size_t)b * e->img_bias_stride + (size_t)co];
        const float *cr = cm + (size_t)co * BLAS_NB;
        const float *rr = e && e->res ? e->res + off + (size_t)co * P : NULL;
        const float div = e ? e->div : 1.0f;
        float *yr = j->y + off + (size_t)co * P;
        for (int i = 0; i < nb; i++) {
            float v = cr[i] + bias;
            if (rr) v += rr[i];
            if (div != 1.0f) v /= div;
            yr[i] = v;
        }
    }
}

static void conv_direct_blas(const ops_ctx *c, const op_conv_w *cw, const float *x, int B, int H, int W,
                             const op_conv_epi *e, float *y) {
    conv_job j;
    if (!conv_job_init(&j, c, cw, x, H, W, e, y)) return;
    j.spi = (j.P + BLAS_NB - 1) / BLAS_NB; /* blocks per image */
    j.in_place = blas_in_place(&cw->g);
    tp_run(c->pool, (size_t)B * (size_t)j.spi, conv_blas_task, &j);
}

/* ---- Winograd F(4x4, 3x3) and F(2x2, 3x3) --------------------------------------------------- */
/* Transforms on 16-lane vectors: in[k * is .. + 16) -> out[k * os .. + 16). */
#define L for (int l = 0; l < 16; l++)
#define INLINE static inline __attribute__((always_inline))

/* F(4x4, 3x3) with interpolation points 0, 1, -1, 1/2, -2 and infinity: about half the float
 * error of Lavin's 0, +-1, +-2 (Barabasz et al., "Error analysis and improving the accuracy of
 * Winograd convolution for deep neural networks", 2020), about twice that of the direct sum. */

/* B^T (6x6) = [1 -3/2 -2 3/2 1 0; 0 -1 1/2 5/2 1 0; 0 1 -5/2 1/2 1 0; 0 -2 -1 2 1 0;
 *              0 1/2 -1 -1/2 1 0; 0 1 -3/2 -2 3/2 1] */
INLINE void wino4_bt(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *v0 = in, *v1 = in + is, *v2 = in + 2 * is, *v3 = in + 3 * is, *v4 = in + 4 * is, *v5 = in + 5 * is;
    float *o0 = out, *o1 = out + os, *o2 = out + 2 * os, *o3 = out + 3 * os, *o4 = out + 4 * os, *o5 = out + 5 * os;
    L {
        const float a = v4[l] - v2[l], b = v3[l] - v1[l];
        o0[l] = ((v0[l] + v4[l]) - 2.0f * v2[l]) + 1.5f * b;
        o1[l] = (v4[l] - v1[l]) + (0.5f * v2[l] + 2.5f * v3[l]);
        o2[l] = (v4[l] + v1[l]) + (0.5f * v3[l] - 2.5f * v2[l]);
        o3[l] = a + 2.0f * b;
        o4[l] = a - 0.5f * b;
        o5[l] = ((v5[l] + v1[l]) - 2.0f * v3[l]) + 1.5f * a;
    }
}

/* G (6x3) = [1 0 0; 1/3 1/3 1/3; -1/3 1/3 -1/3; -16/15 -8/15 -4/15; 1/15 -2/15 4/15; 0 0 1] */
INLINE void wino4_g(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *g0 = in, *g1 = in + is, *g2 = in + 2 * is;
    const float s3 = 1.0f / 3.0f, s15 = 1.0f / 15.0f, s4_15 = 4.0f / 15.0f;
    L {
        const float a = g0[l] + g2[l];
        out[l] = g0[l];
        out[os + l] = (a + g1[l]) * s3;
        out[2 * os + l] = (g1[l] - a) * s3;
        out[3 * os + l] = -((4.0f * g0[l] + 2.0f * g1[l]) + g2[l]) * s4_15;
        out[4 * os + l] = ((g0[l] - 2.0f * g1[l]) + 4.0f * g2[l]) * s15;
        out[5 * os + l] = g2[l];
    }
}

/* A^T (4x6) = [1 1 1 1 1 0; 0 1 -1 1/2 -2 0; 0 1 1 1/4 4 0; 0 1 -1 1/8 -8 1] */
INLINE void wino4_at(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *v0 = in, *v1 = in + is, *v2 = in + 2 * is, *v3 = in + 3 * is, *v4 = in + 4 * is, *v5 = in + 5 * is;
    L {
        const float a = v1[l] + v2[l], b = v1[l] - v2[l];
        out[l] = ((v0[l] + a) + v3[l]) + v4[l];
        out[os + l] = b + (0.5f * v3[l] - 2.0f * v4[l]);
        out[2 * os + l] = a + (0.25f * v3[l] + 4.0f * v4[l]);
        out[3 * os + l] = (b + (0.125f * v3[l] - 8.0f * v4[l])) + v5[l];
    }
}

/* F(2x2, 3x3), points 0, 1, -1 and infinity (Lavin & Gray):
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1],
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] */
INLINE void wino2_bt(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *v0 = in, *v1 = in + is, *v2 = in + 2 * is, *v3 = in + 3 * is;
    L {
        out[l] = v0[l] - v2[l];
        out[os + l] = v1[l] + v2[l];
        out[2 * os + l] = v2[l] - v1[l];
        out[3 * os + l] = v1[l] - v3[l];
    }
}

INLINE void wino2_g(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *g0 = in, *g1 = in + is, *g2 = in + 2 * is;
    L {
        const float a = g0[l] + g2[l];
        out[l] = g0[l];
        out[os + l] = (a + g1[l]) * 0.5f;
        out[2 * os + l] = (a - g1[l]) * 0.5f;
        out[3 * os + l] = g2[l];
    }
}

INLINE void wino2_at(const float *restrict in, size_t is, float *restrict out, size_t os) {
    const float *v0 = in, *v1 = in + is, *v2 = in + 2 * is, *v3 = in + 3 * is;
    L {
        out[l] = (v0[l] + v1[l]) + v2[l];
        out[os + l] = (v1[l] - v2[l]) - v3[l];
    }
}
#undef L

/* The three transforms of an m x m output tile (n = m + 2), 2-D as columns then rows; component
 * xi = i * n + jx goes to out + xi * os. m must be a constant after inlining. */
INLINE void wino_input_tf(const int m, float d[36][16], float t[36][16], float *out, size_t os) {
    const int n = m + 2;
    for (int c = 0; c < n; c++) m == 4 ? wino4_bt(d[c], 6 * 16, t[c], 6 * 16) : wino2_bt(d[c], 4 * 16, t[c], 4 * 16);
    for (int r = 0; r < n; r++) m == 4 ? wino4_bt(t[r * 6], 16, d[r * 6], 16) : wino2_bt(t[r * 4], 16, d[r * 4], 16);
    for (int xi = 0; xi < n * n; xi++) memcpy(out + (size_t)xi * os, d[xi], sizeof d[xi]);
}

INLINE void wino_weight_tf(const int m, const float *g, float t[18][16], float *out, size_t os) {
    const int n = m + 2;
    for (int kx = 0; kx < 3; kx++)
        m == 4 ? wino4_g(g + kx * 16, 3 * 16, t[kx], 3 * 16) : wino2_g(g + kx * 16, 3 * 16, t[kx], 3 * 16);
    for (int i = 0; i < n; i++)
        m == 4 ? wino4_g(t[i * 3], 16, out + (size_t)(i * 6) * os, os)
               : wino2_g(t[i * 3], 16, out + (size_t)(i * 4) * os, os);
}

INLINE void wino_output_tf(const int m, float a[36][16], float t[24][16], float o[16][16]) {
    const int n = m + 2;
    for (int c = 0; c < n; c++) m == 4 ? wino4_at(a[c], 6 * 16, t[c], 6 * 16) : wino2_at(a[c], 4 * 16, t[c], 4 * 16);
    for (int i = 0; i < m; i++) m == 4 ? wino4_at(t[i * 6], 16, o[i * 4], 16) : wino2_at(t[i * 4], 16, o[i * 2], 16);
}

typedef struct wino_job {
    const ops_ctx *ctx;
    const op_conv_w *cw;
    const op_conv_epi *e;
    const float *x;
    float *y;
    int m, n, X;         /* output tile m x m, input tile n x n, X = n * n components */
    int H, W, tw, TI, T; /* tiles per row, per image, in all */
    int cin, cout;
    int tile0, tlim;   /* the current chunk: its first tile (lane 0 of strip 0), tiles valid below tlim */
    int ns;            /* strips of 16 tiles in the chunk */
    int nsmax;         /* strips per chunk (the layout of V and M) */
    size_t v_si, v_ci; /* V: floats between strips, between input channels (lanes contiguous) */
    int n_cb;          /* input-channel blocks */
    int n_groups;
    gemm_tile_fn tile;
} wino_job;

#if CONV_ROWLOAD
/* d[r * n + c][l] = xc[off[l] + r * W + c] where bit c of mask[r][l] is set (bit 8 + c for
 * lanes l >= 8), else 0: the same values as the scalar loop of wino_input_body, for an input tile of n <= 8
 * columns, without gathers (a 16-lane gather was ~50 cycles on Zen 4; the 36 gathers of an F(4x4)
 * tile were 70 % of its input transform). Per row r: one masked load of the tile's row segment
 * per lane (masked-out elements are never read, so padding and lanes past the last tile cost no
 * branch), lanes l and l + 8 in the two halves of one register, then an 8 x 8 transpose in each
 * half. Offsets are in floats from xc and may point before it where masked out (the addresses
 * are formed as integers). */
__attribute__((target("avx512f"))) static void wino_rows_avx512(const float *xc, const ptrdiff_t off[16],
                                                                const uint16_t mask[8][16], int W, int n,
                                                                float d[36][16]) {
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(4));
    const uintptr_t base = (uintptr_t)xc;
    for (int r = 0; r < n; r++) {
        __m512 R[8]; // R[i] = row r of lane i's tile (floats 0-7) | of lane i + 8's (floats 8-15)
        for (int i = 0; i < 8; i++) {
            const ptrdiff_t o0 = off[i] + (ptrdiff_t)r * W, o1 = off[i + 8] + (ptrdiff_t)r * W - 8;
            R[i] = _mm512_maskz_loadu_ps(mask[r][i], (const void *)(base + (uintptr_t)o0 * sizeof(float)));
            R[i] = _mm512_mask_loadu_ps(R[i], mask[r][i + 8], (const void *)(base + (uintptr_t)o1 * sizeof(float)));
        }
        /* 8 x 8 transposes of both halves: s[c & 3 | (c & 4)] holds column c of lanes 0-3 and 8-11
         * (s[0..3]) or 4-7 and 12-15 (s[4..7]) in its 128-bit blocks (column c + 4 in blocks 1, 3) */
        __m512 t[8], s[8];
        for (int q = 0; q < 4; q++) {
            t[2 * q] = _mm512_unpacklo_ps(R[2 * q], R[2 * q + 1]);
            t[2 * q + 1] = _mm512_unpackhi_ps(R[2 * q], R[2 * q + 1]);
        }
        for (int h = 0; h < 2; h++) {
            s[4 * h + 0] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
            s[4 * h + 1] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
            s[4 * h + 2] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
            s[4 * h + 3] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
        }
        for (int c = 0; c < n; c++)
            _mm512_storeu_ps(d[r * n + c], _mm512_permutex2var_ps(s[c & 3], c < 4 ? lo : hi, s[4 + (c & 3)]));
    }
}
#endif

/* Phase 1, task (strip, channel block): V[xi][strip][ci][lane] = (B^T d B)[xi] of the n x n input
 * tile d of the strip's lane-th tile (zeros for lanes past the last tile). */
INLINE void wino_input_body(const wino_job *j, size_t task, const int m) {
    const int n = m + 2;
    const int si = (int)(task / (size_t)j->n_cb), cb = (int)(task % (size_t)j->n_cb);
    const int H = j->H, W = j->W;
    int valid[16], inner[16], iy0[16], ix0[16];
    size_t plane[16];
    for (int l = 0; l < 16; l++) {
        const int t = j->tile0 + si * 16 + l;
        valid[l] = t < j->tlim;
        const int b = valid[l] ? t / j->TI : 0, r = valid[l] ? t % j->TI : 0;
        iy0[l] = m * (r / j->tw) - 1;
        ix0[l] = m * (r % j->tw) - 1;
        plane[l] = (size_t)b * j->cin * H * W;
        inner[l] = iy0[l] >= 0 && ix0[l] >= 0 && iy0[l] + n <= H && ix0[l] + n <= W;
    }
#if CONV_ROWLOAD
    const int rowload = j->ctx->k->path == GEMM_PATH_AVX512;
    ptrdiff_t off[16];
    uint16_t mask[8][16] = {{0}}; // the elements of row r of lane l's tile inside the image (once per task)
    for (int l = 0; l < 16; l++) {
        off[l] = (ptrdiff_t)plane[l] + (ptrdiff_t)iy0[l] * W + ix0[l];
        unsigned cols = 0;
        for (int c = 0; c < n; c++)
            if (ix0[l] + c >= 0 && ix0[l] + c < W) cols |= 1u << c;
        for (int r = 0; r < n; r++)
            if (valid[l] && iy0[l] + r >= 0 && iy0[l] + r < H) mask[r][l] = (uint16_t)(l < 8 ? cols : cols << 8);
    }
#endif
    const size_t vs = (size_t)j->nsmax * j->cin * 16; // V stride between components
    const int ci1 = min_i(j->cin, (cb + 1) * WINO_CI_BLOCK);
    for (int ci = cb * WINO_CI_BLOCK; ci < ci1; ci++) {
        float d[36][16], t[36][16]; // [r * n + c][lane]
#if CONV_ROWLOAD
        if (rowload)
            wino_rows_avx512(j->x + (size_t)ci * H * W, off, (const uint16_t(*)[16])mask, W, n, d);
        else
#endif
            for (int l = 0; l < 16; l++) {
                const float *xc = j->x + plane[l] + (size_t)ci * H * W;
                if (inner[l]) {
                    const float *p = xc + (size_t)iy0[l] * W + ix0[l];
                    for (int r = 0; r < n; r++)
                        for (int c = 0; c < n; c++) d[r * n + c][l] = p[(size_t)r * W + c];
                } else {
                    for (int r = 0; r < n; r++) {
                        const int iy = iy0[l] + r;
                        for (int c = 0; c < n; c++) {
                            const int ix = ix0[l] + c;
                            d[r * n + c][l] =
                                valid[l] && iy >= 0 && iy < H && ix >= 0 && ix < W ? xc[(size_t)iy * W + ix] : 0.0f;
                        }
                    }
                }
            }
        wino_input_tf(m, d, t, j->ctx->shared + (size_t)si * j->v_si + (size_t)ci * j->v_ci, vs);
    }
}

OPS_CLONES static void wino_input_task(void *arg, size_t task, int thread) {
    (void)thread;
    const wino_job *j = arg;
    if (j->m == 4)
        wino_input_body(j, task, 4);
    else
        wino_input_body(j, task, 2);
}

/* U[xi][pl][c][lane] = (G g G^T)[xi] for input channels ci0 + c, c < nc, of the 16 output
 * channels of panel pn, from the packed panel (rows k = ci * 9 + ky * 3 + kx). */
INLINE void wino_weights_body(const wino_job *j, int pn, int pl, int ci0, int nc, float *U, const int m) {
    const float *a = j->cw->a + (size_t)pn * j->cw->K * GEMM_MR;
    const size_t us = (size_t)WINO_GROUP * WINO_KB * 16; // U stride between components
    for (int c = 0; c < nc; c++) {
        float t[18][16]; // t[i * 3 + kx] = (G g)[i][kx]
        wino_weight_tf(m, a + (size_t)(ci0 + c) * 9 * GEMM_MR, t, U + ((size_t)pl * WINO_KB + c) * 16, us);
    }
}

OPS_CLONES static void wino_weights(const wino_job *j, int pn, int pl, int ci0, int nc, float *U) {
    if (j->m == 4)
        wino_weights_body(j, pn, pl, ci0, nc, U, 4);
    else
        wino_weights_body(j, pn, pl, ci0, nc, U, 2);
}

/* Output transform of output channel co (row r of M) for the chunk's strip si, plus the
 * epilogue, scattered into y. */
INLINE void wino_output_body(const wino_job *j, const float *M, size_t ldm, int si, int co, const int m) {
    float a[36][16], t[24][16], o[16][16]; // t[i * n + c] = (A^T M)[i][c]; o[i * m + jx][lane]
    for (int xi = 0; xi < (m + 2) * (m + 2); xi++)
        memcpy(a[xi], M + (size_t)xi * WINO_GROUP * 16 * ldm + (size_t)si * 16, sizeof a[xi]);
    wino_output_tf(m, a, t, o);
    /* where each lane's tile goes: p[lane] = offset of its top-left output in y (or -1) */
    const op_conv_epi *e = j->e;
    const size_t W = (size_t)j->W;
    size_t p[16];
    int full[16], valid[16];
    float bias[16];
    for (int l = 0; l < 16; l++) {
        const int t_ = j->tile0 + si * 16 + l;
        valid[l] = t_ < j->tlim;
        const int b = valid[l] ? t_ / j->TI : 0, r = valid[l] ? t_ % j->TI : 0;
        const int oy0 = m * (r / j->tw), ox0 = m * (r % j->tw);
        p[l] = ((size_t)b * j->cout + (size_t)co) * j->H * W + (size_t)oy0 * W + (size_t)ox0;
        full[l] = oy0 + m <= j->H && ox0 + m <= j->W;
        bias[l] = j->cw->bias ? j->cw->bias[co] : 0.0f;
        if (e && e->img_bias) bias[l] += e->img_bias[(size_t)b * e->img_bias_stride + (size_t)co];
    }
    /* epilogue on 16 lanes: (o + bias + res) / div */
    for (int q = 0; q < m * m; q++)
        for (int l = 0; l < 16; l++) o[q][l] += bias[l];
    if (e && e->res) {
        float r[16][16];
        for (int l = 0; l < 16; l++)
            for (int q = 0; q < m * m; q++) {
                const int i = q / m, jx = q % m;
                r[q][l] = valid[l] &&
                        (full[l] || (p[l] / W % (size_t)j->H + (size_t)i < (size_t)j->H && p[l] % W + (size_t)jx < W))
                    ? e->res[p[l] + (size_t)i * W + (size_t)jx]
                    : 0.0f;
            }
        for (int q = 0; q < m * m; q++)
            for (int l = 0; l < 16; l++) o[q][l] += r[q][l];
    }
    if (e && e->div != 1.0f) {
        const float d = e->div;
        for (int q = 0; q < m * m; q++)
            for (int l = 0; l < 16; l++) o[q][l] /= d;
    }
    for (int l = 0; l < 16 && valid[l]; l++) {
        float *yl = j->y + p[l];
        if (full[l]) {
            for (int i = 0; i < m; i++)
                for (int jx = 0; jx < m; jx++) yl[(size_t)i * W + (size_t)jx] = o[i * m + jx][l];
        } else {
            const size_t oy0 = p[l] / W % (size_t)j->H, ox0 = p[l] % W;
            for (int i = 0; i < m && oy0 + (size_t)i < (size_t)j->H; i++)
                for (int jx = 0; jx < m && ox0 + (size_t)jx < W; jx++)
                    yl[(size_t)i * W + (size_t)jx] = o[i * m + jx][l];
        }
    }
}

OPS_CLONES static void wino_output(const wino_job *j, const float *M, size_t ldm, int si, int co) {
    if (j->m == 4)
        wino_output_body(j, M, ldm, si, co, 4);
    else
        wino_output_body(j, M, ldm, si, co, 2);
}

/* Phase 2, task = group of WINO_GROUP panels: input channel block by block (U and M stay in L2),
 * U for the block, the X GEMMs accumulated into M; then the output transform. */
static void wino_gemm_task(void *arg, size_t task, int thread) {
    const wino_job *j = arg;
    const op_conv_w *cw = j->cw;
    const int cin = j->cin, ns = j->ns;
    const size_t ldm = (size_t)j->nsmax * 16;
    float *U = j->ctx->ws[thread];                           // (X, WINO_GROUP, WINO_KB, 16)
    float *M = U + (size_t)j->X * WINO_GROUP * WINO_KB * 16; // (X, WINO_GROUP * 16, nsmax * 16)
    const float *V = j->ctx->shared;                         // (X, nsmax, cin, 16)
    const int pn0 = (int)task * WINO_GROUP, pn1 = min_i(cw->panels, pn0 + WINO_GROUP);
    for (int ci0 = 0; ci0 < cin; ci0 += WINO_KB) {
        const int nc = min_i(WINO_KB, cin - ci0);
        const int flags = (ci0 == 0 ? GEMM_FIRST : 0) | (ci0 + nc == cin ? GEMM_LAST : 0);
        for (int pn = pn0; pn < pn1; pn++) wino_weights(j, pn, pn - pn0, ci0, nc, U);
        for (int xi = 0; xi < j->X; xi++)
            for (int pn = pn0; pn < pn1; pn++) {
                const int pl = pn - pn0, rows = min_i(GEMM_MR, j->cout - pn * GEMM_MR);
                const float *a = U + ((size_t)xi * WINO_GROUP + pl) * WINO_KB * 16;
                for (int si = 0; si < ns; si++)
                    j->tile(nc, a, 16, V + (((size_t)xi * j->nsmax + si) * cin + ci0) * 16, 16,
                            M + ((size_t)xi * WINO_GROUP * 16 + (size_t)pl * 16) * ldm + (size_t)si * 16, ldm, rows, 16,
                            flags, NULL);
            }
    }
    for (int pn = pn0; pn < pn1; pn++) {
        const int pl = pn - pn0, rows = min_i(GEMM_MR, j->cout - pn * GEMM_MR);
        for (int r = 0; r < rows; r++)
            for (int si = 0; si < ns; si++) wino_output(j, M + (size_t)(pl * 16 + r) * ldm, ldm, si, pn * GEMM_MR + r);
    }
}

/* OpenBLAS: U[xi] (cin, 32) for the 16-channel panels pl of the group starting at output channel
 * co0, from the plain weights (cout, cin * 9), by the same transform as the native path */
INLINE void wino_weights_rm_body(const wino_job *j, int co0, int ci, float *U, size_t us, const int m) {
    const int K = j->cw->K;
    for (int pl = 0; pl < WINO_GROUP && co0 + pl * 16 < j->cout; pl++) {
        const int c0 = co0 + pl * 16, nr = min_i(16, j->cout - c0);
        float g[9][16], t[18][16];
        for (int tap = 0; tap < 9; tap++)
            for (int l = 0; l < 16; l++)
                g[tap][l] = l < nr ? j->cw->a[(size_t)(c0 + l) * K + (size_t)ci * 9 + tap] : 0.0f;
        wino_weight_tf(m, g[0], t, U + (size_t)ci * WINO_GROUP * 16 + (size_t)pl * 16, us);
    }
}

OPS_CLONES static void wino_weights_rm(const wino_job *j, int co0, int ci, float *U, size_t us) {
    if (j->m == 4)
        wino_weights_rm_body(j, co0, ci, U, us, 4);
    else
        wino_weights_rm_body(j, co0, ci, U, us, 2);
}

/* OpenBLAS, task = group of WINO_GROUP panels (32 output channels): U for all input channels,
 * then per component xi one product M[xi] (32, tiles) = U[xi]^T V[xi] (cin, tiles), then the
 * output transform. */
static void wino_blas_task(void *arg, size_t task, int thread) {
    const wino_job *j = arg;
    const int cin = j->cin, G = WINO_GROUP * 16;
    const int co0 = (int)task * G, rows = min_i(G, j->cout - co0);
    const size_t ldm = (size_t)j->nsmax * 16, us = (size_t)cin * G;
    float *U = j->ctx->ws[thread];       // (X, cin, G)
    float *M = U + (size_t)j->X * us;    // (X, G, nsmax * 16)
    const float *V = j->ctx->shared;     // (X, cin, nsmax * 16)
    const size_t vs = (size_t)cin * ldm; // V stride between components
    for (int ci = 0; ci < cin; ci++) wino_weights_rm(j, co0, ci, U, us);
    for (int xi = 0; xi < j->X; xi++)
        blas_sgemm(1, 0, rows, j->ns * 16, cin, U + (size_t)xi * us, G, V + (size_t)xi * vs, (int)ldm, 0.0f,
                   M + (size_t)xi * G * ldm, (int)ldm);
    for (int r = 0; r < rows; r++)
        for (int si = 0; si < j->ns; si++) wino_output(j, M + (size_t)r * ldm, ldm, si, co0 + r);
}

static void conv_winograd(const ops_ctx *c, const op_conv_w *cw, int m, const float *x, int B, int H, int W,
                          const op_conv_epi *e, float *y) {
    wino_job j;
    j.ctx = c;
    j.cw = cw;
    j.e = e;
    j.x = x;
    j.y = y;
    j.m = m;
    j.n = m + 2;
    j.X = j.n * j.n;
    j.H = H;
    j.W = W;
    j.tw = (W + m - 1) / m;
    j.TI = ((H + m - 1) / m) * j.tw;
    j.T = B * j.TI;
    j.cin = cw->g.cin;
    j.cout = cw->g.cout;
    j.n_cb = (j.cin + WINO_CI_BLOCK - 1) / WINO_CI_BLOCK;
    j.n_groups = (cw->panels + WINO_GROUP - 1) / WINO_GROUP;
    j.tile = c->k->tile;
    if (c->k->blas) {
        /* chunks within one image: the products' shapes never depend on the batch position */
        j.nsmax = wino_ns_blas(j.X, j.cin, j.TI);
        j.v_si = 16;
        j.v_ci = (size_t)j.nsmax * 16;
        for (int b = 0; b < B; b++)
            for (int t0 = 0; t0 < j.TI; t0 += j.nsmax * 16) {
                j.tile0 = b * j.TI + t0;
                j.tlim = b * j.TI + min_i(j.TI, t0 + j.nsmax * 16);
                j.ns = (j.tlim - j.tile0 + 15) / 16;
                tp_run(c->pool, (size_t)j.ns * (size_t)j.n_cb, wino_input_task, &j);
                tp_run(c->pool, (size_t)j.n_groups, wino_blas_task, &j);
            }
        return;
    }
    const int n_strips = (j.T + 15) / 16;
    j.nsmax = wino_ns(j.X, j.cin);
    j.v_si = (size_t)j.cin * 16;
    j.v_ci = 16;
    j.tlim = j.T;
    for (int strip0 = 0; strip0 < n_strips; strip0 += j.nsmax) {
        j.tile0 = strip0 * 16;
        j.ns = min_i(j.nsmax, n_strips - strip0);
        tp_run(c->pool, (size_t)j.ns * (size_t)j.n_cb, wino_input_task, &j);
        tp_run(c->pool, (size_t)j.n_groups, wino_gemm_task, &j);
    }
}

void op_conv2d(const ops_ctx *c, const op_conv_w *cw, const float *x, int B, int H, int W, const op_conv_epi *e,
               float *y) {
    if (B <= 0 || cw->g.cout <= 0) return;
    CORE_ASSERT(cw->rowmajor == c->k->blas); /* packed for the kernels it runs on */
    const int m = wino_tile(c->k, &cw->g, H, W);
    if (m)
        conv_winograd(c, cw, m, x, B, H, W, e, y);
    else if (c->k->blas)
        conv_direct_blas(c, cw, x, B, H, W, e, y);
    else
        conv_direct(c, cw, x, B, H, W, e, y);
}
