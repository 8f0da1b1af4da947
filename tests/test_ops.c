// ctest-label: unit;threads
/* Each UNet kernel (src/ops.c, conv.c, gemm.c) against a naive double-precision reference, plus
 * the determinism contract: same bytes for any thread count, image b independent of the batch.
 * The convolutions and attention run on every GEMM path the CPU has (avx512, avx2, generic),
 * convolutions with and without Winograd. */
#define _POSIX_C_SOURCE 200809L
#include "gemm.h"
#include "harness.h"
#include "ops.h"
#include "threadpool.h"

#include <stdint.h>

#define TOL 1e-5 /* relative to max(1, max|ref|): float32 sums of up to a few thousand terms */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rand_buf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

/* The kernels under test (main switches them: every ISA path the CPU has, Winograd on and off). */
static op_kernels kern;

typedef struct ctx_holder {
    ops_ctx c;
    float *mem;
} ctx_holder;

static void ctx_make(ctx_holder *h, int threads, size_t ws_floats, size_t shared_floats) {
    h->c.k = &kern;
    h->c.pool = threads > 1 ? tp_create(threads) : NULL;
    h->c.ws = calloc((size_t)threads, sizeof *h->c.ws);
    h->c.ws_floats = ws_floats;
    h->c.shared_floats = shared_floats;
    h->mem = malloc(((ws_floats ? ws_floats : 1) * (size_t)threads + shared_floats) * sizeof(float));
    for (int i = 0; i < threads; i++) h->c.ws[i] = h->mem + (size_t)i * ws_floats;
    h->c.shared = h->mem + (size_t)threads * ws_floats;
}
static void ctx_free(ctx_holder *h) {
    tp_destroy(h->c.pool);
    free(h->c.ws);
    free(h->mem);
}

static void check_close(const char *label, const float *got, const double *ref, size_t n, double tol) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    double lim = tol * (mr > 1 ? mr : 1);
    printf("  %-40s max|err| %.3g (max|ref| %.3g)\n", label, md, mr);
    CHECK_MSG(md <= lim, "%s: max|err| %.3g > %.3g", label, md, lim);
}

/* ---- thread pool ------------------------------------------------------------------------- */
static void count_task(void *arg, size_t task, int thread) {
    int *hits = arg;
    __atomic_add_fetch(&hits[task], 1 + 0 * thread, __ATOMIC_RELAXED);
}

static void test_pool(void) {
    int hits[1000] = {0};
    tp_pool *p = tp_create(4);
    CHECK(p && tp_threads(p) >= 1 && tp_threads(p) <= 4);
    for (int rep = 0; rep < 20; rep++) tp_run(p, 1000, count_task, hits);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= hits[i] == 20;
    CHECK_MSG(ok, "every task runs exactly once per tp_run");
    tp_destroy(p);
    tp_run(NULL, 10, count_task, hits);
    CHECK(hits[9] == 21 && hits[10] == 20);
}

/* ---- conv2d ------------------------------------------------------------------------------ */
/* y = (conv(x) + bias + img_bias[b] + res) / div, in double */
static void conv_ref(const float *x, int B, int H, int W, const float *w, const float *bias, const op_conv_geom *g,
                     const float *img_bias, const float *res, float div, double *y) {
    int Ho = op_conv_out_size(H, g->k, g->stride, g->pad_t, g->pad_b);
    int Wo = op_conv_out_size(W, g->k, g->stride, g->pad_l, g->pad_r);
    for (int b = 0; b < B; b++)
        for (int co = 0; co < g->cout; co++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double s = bias ? bias[co] : 0.0;
                    if (img_bias) s += img_bias[b * g->cout + co];
                    for (int ci = 0; ci < g->cin; ci++)
                        for (int ky = 0; ky < g->k; ky++)
                            for (int kx = 0; kx < g->k; kx++) {
                                int iy = oy * g->stride - g->pad_t + ky, ix = ox * g->stride - g->pad_l + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                s += (double)w[((size_t)(co * g->cin + ci) * g->k + ky) * g->k + kx] *
                                    x[(((size_t)b * g->cin + ci) * H + iy) * W + ix];
                            }
                    size_t i = (((size_t)b * g->cout + co) * Ho + oy) * Wo + ox;
                    if (res) s += res[i];
                    y[i] = s / div;
                }
}

/* epi: 0 plain (+ bias), 1 per-image bias + residual, 2 residual / divisor */
static void conv_case(const char *label, int B, int H, int W, op_conv_geom g, int with_bias, int epi) {
    int Ho = op_conv_out_size(H, g.k, g.stride, g.pad_t, g.pad_b);
    int Wo = op_conv_out_size(W, g.k, g.stride, g.pad_l, g.pad_r);
    size_t nx = (size_t)B * g.cin * H * W, ny = (size_t)B * g.cout * Ho * Wo, per = ny / (size_t)B;
    float *x = rand_buf(nx), *w = rand_buf((size_t)g.cout * g.cin * g.k * g.k), *bias = rand_buf((size_t)g.cout);
    float *ib = rand_buf((size_t)B * g.cout), *res = rand_buf(ny);
    float *y1 = malloc(ny * sizeof *y1), *y3 = malloc(ny * sizeof *y3), *solo = malloc(per * sizeof *solo);
    double *ref = malloc(ny * sizeof *ref);
    op_conv_epi e = {epi == 1 ? ib : NULL, (size_t)g.cout, epi ? res : NULL, epi == 2 ? 1.4142135f : 1.0f};
    op_conv_w cw;
    CHECK(op_conv_init(&cw, &kern, &g, w, with_bias ? bias : NULL));
    size_t ws, sh;
    op_conv2d_ws(&kern, &g, H, W, &ws, &sh);
    ctx_holder c1, c3;
    ctx_make(&c1, 1, ws, sh);
    ctx_make(&c3, 3, ws, sh);
    conv_ref(x, B, H, W, w, with_bias ? bias : NULL, &g, e.img_bias, e.res, e.div, ref);
    op_conv2d(&c1.c, &cw, x, B, H, W, &e, y1);
    op_conv2d(&c3.c, &cw, x, B, H, W, &e, y3);
    op_conv_epi e1 = e; /* the last image alone */
    if (e1.img_bias) e1.img_bias += (size_t)(B - 1) * g.cout;
    if (e1.res) e1.res += (size_t)(B - 1) * per;
    op_conv2d(&c3.c, &cw, x + (size_t)(B - 1) * g.cin * H * W, 1, H, W, &e1, solo);
    check_close(label, y1, ref, ny, TOL);
    CHECK_MSG(memcmp(y1, y3, ny * sizeof *y1) == 0, "%s: 1 vs 3 threads differ", label);
    CHECK_MSG(memcmp(y1 + (size_t)(B - 1) * per, solo, per * sizeof *y1) == 0, "%s: last image alone differs", label);
    op_conv_free(&cw);
    ctx_free(&c1);
    ctx_free(&c3);
    free(x);
    free(w);
    free(bias);
    free(ib);
    free(res);
    free(y1);
    free(y3);
    free(solo);
    free(ref);
}

static void test_conv(void) {
    const op_kernels base = kern;
    printf("conv2d (%s)\n", op_kernels_name(&kern));
    for (int wino = 1; wino >= 0; wino--) {
        kern.winograd = wino;
        printf(" winograd %s\n", wino ? "on" : "off");
        conv_case("3x3 s1 p1", 2, 7, 9, (op_conv_geom){5, 6, 3, 1, 1, 1, 1, 1}, 1, 0);
        conv_case("3x3 s2 p1", 2, 8, 10, (op_conv_geom){4, 3, 3, 2, 1, 1, 1, 1}, 1, 0);
        conv_case("3x3 s2 pad (0,0,1,1) (Downsample2D padding=0)", 2, 8, 8, (op_conv_geom){4, 5, 3, 2, 0, 0, 1, 1}, 1,
                  0);
        conv_case("1x1", 3, 5, 6, (op_conv_geom){7, 9, 1, 1, 0, 0, 0, 0}, 1, 0);
        conv_case("1x1 no bias, > 256 pixels", 2, 20, 20, (op_conv_geom){3, 4, 1, 1, 0, 0, 0, 0}, 0, 0);
        /* K = 300 * 9 = 2700 -> 11 k blocks; 130 outputs -> 9 panels, the last one of 2 rows */
        conv_case("3x3 K 2700, 130 outputs", 2, 16, 16, (op_conv_geom){300, 130, 3, 1, 1, 1, 1, 1}, 1, 0);
        conv_case("3x3 s1 p1 on 1x1 input", 2, 1, 1, (op_conv_geom){3, 2, 3, 1, 1, 1, 1, 1}, 1, 0);
        /* Winograd-sized (>= 16 tiles of 4x4, >= 16 channels): 5 x 4 tiles, partial strips;
         * 18 x 17: partial tiles at the borders; 3 images: tile strips across images */
        conv_case("3x3 20 -> 35, 16x20 (winograd size)", 2, 16, 20, (op_conv_geom){20, 35, 3, 1, 1, 1, 1, 1}, 1, 0);
        conv_case("3x3 16 -> 16, 18x17 + img bias + res", 3, 18, 17, (op_conv_geom){16, 16, 3, 1, 1, 1, 1, 1}, 1, 1);
        conv_case("3x3 24 -> 32, 16x16 (res) / sqrt 2", 2, 16, 16, (op_conv_geom){24, 32, 3, 1, 1, 1, 1, 1}, 1, 2);
        conv_case("1x1 + img bias + res", 2, 9, 7, (op_conv_geom){17, 33, 1, 1, 0, 0, 0, 0}, 1, 1);
        /* 128 pixels, K 40: the strips are packed (rows 128 floats apart), 64 pixels: read in place */
        conv_case("1x1 40 -> 20, 16x8 + img bias + res", 2, 16, 8, (op_conv_geom){40, 20, 1, 1, 0, 0, 0, 0}, 1, 1);
        conv_case("1x1 40 -> 20, 8x8", 2, 8, 8, (op_conv_geom){40, 20, 1, 1, 0, 0, 0, 0}, 1, 0);
        /* F(2x2, 3x3) sizes (< 16 tiles of 4x4, >= 16 of 2x2): 8x8; 9x7 with partial tiles */
        conv_case("3x3 32 -> 48, 8x8 (winograd 2x2 size)", 2, 8, 8, (op_conv_geom){32, 48, 3, 1, 1, 1, 1, 1}, 1, 0);
        conv_case("3x3 16 -> 20, 9x7 + img bias + res", 3, 9, 7, (op_conv_geom){16, 20, 3, 1, 1, 1, 1, 1}, 1, 1);
    }
    kern = base;
}

/* ---- linear -------------------------------------------------------------------------------- */
static void test_linear(void) {
    printf("linear\n");
    int B = 3, in = 37, out = 21;
    float *x = rand_buf((size_t)B * in), *w = rand_buf((size_t)in * out), *b = rand_buf((size_t)out),
          *y = malloc(sizeof(float) * B * out);
    double ref[3 * 21];
    for (int i = 0; i < B; i++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int k = 0; k < in; k++) s += (double)w[o * in + k] * x[i * in + k];
            ref[i * out + o] = s;
        }
    op_linear(x, B, in, w, b, out, y);
    check_close("linear", y, ref, (size_t)B * out, TOL);
    free(x);
    free(w);
    free(b);
    free(y);
}

/* ---- group norm ---------------------------------------------------------------------------- */
static double silu_d(double v) { return v / (1.0 + exp(-v)); }

static void gn_case(const char *label, int B, int C, int HW, int G, int film, int silu) {
    size_t n = (size_t)B * C * HW;
    float *x = rand_buf(n), *gamma = rand_buf((size_t)C), *beta = rand_buf((size_t)C), *y = malloc(n * sizeof *y);
    float *ss = rand_buf((size_t)B * 2 * C), *y3 = malloc(n * sizeof *y3);
    for (size_t i = 0; i < n; i++) x[i] = 3.0f * x[i] + 0.5f; /* non-zero mean */
    double *ref = malloc(n * sizeof *ref);
    int cpg = C / G;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            double s = 0, s2 = 0;
            size_t off = ((size_t)b * C + (size_t)g * cpg) * HW, cnt = (size_t)cpg * HW;
            for (size_t i = 0; i < cnt; i++) s += x[off + i];
            double mean = s / cnt;
            for (size_t i = 0; i < cnt; i++) s2 += (x[off + i] - mean) * (x[off + i] - mean);
            double rstd = 1.0 / sqrt(s2 / cnt + 1e-5);
            for (int cc = 0; cc < cpg; cc++) {
                int ch = g * cpg + cc;
                for (int i = 0; i < HW; i++) {
                    size_t k = off + (size_t)cc * HW + i;
                    double v = (x[k] - mean) * rstd * gamma[ch] + beta[ch];
                    if (film) v = v * (1.0 + ss[b * 2 * C + ch]) + ss[b * 2 * C + C + ch];
                    ref[k] = silu ? silu_d(v) : v;
                }
            }
        }
    ctx_holder c1, c3;
    ctx_make(&c1, 1, 0, 0);
    ctx_make(&c3, 3, 0, 0);
    op_group_norm(&c1.c, x, B, C, HW, G, gamma, beta, 1e-5f, film ? ss : NULL, film ? ss + C : NULL, (size_t)2 * C,
                  silu, y);
    op_group_norm(&c3.c, x, B, C, HW, G, gamma, beta, 1e-5f, film ? ss : NULL, film ? ss + C : NULL, (size_t)2 * C,
                  silu, y3);
    check_close(label, y, ref, n, TOL);
    CHECK_MSG(memcmp(y, y3, n * sizeof *y) == 0, "%s: 1 vs 3 threads differ", label);
    /* in place */
    op_group_norm(&c3.c, x, B, C, HW, G, gamma, beta, 1e-5f, film ? ss : NULL, film ? ss + C : NULL, (size_t)2 * C,
                  silu, x);
    CHECK_MSG(memcmp(y, x, n * sizeof *y) == 0, "%s: in place differs", label);
    ctx_free(&c1);
    ctx_free(&c3);
    free(x);
    free(gamma);
    free(beta);
    free(y);
    free(y3);
    free(ss);
    free(ref);
}

static void test_group_norm(void) {
    printf("group norm\n");
    gn_case("GroupNorm(4, 12)", 2, 12, 30, 4, 0, 0);
    gn_case("GroupNorm(4, 12) + SiLU", 2, 12, 30, 4, 0, 1);
    gn_case("GroupNorm(3, 6) * (1 + scale) + shift, SiLU", 3, 6, 17, 3, 1, 1);
    gn_case("GroupNorm(1, 5) (one group)", 1, 5, 9, 1, 0, 0);
    gn_case("GroupNorm(8, 8) (one channel per group)", 2, 8, 4, 8, 0, 0);
}

/* ---- pointwise ----------------------------------------------------------------------------- */
static void test_pointwise(void) {
    printf("pointwise\n");
    float x[6] = {-20.0f, -1.0f, 0.0f, 0.5f, 3.0f, 30.0f}, y[6];
    double ref[6];
    for (int i = 0; i < 6; i++) ref[i] = silu_d(x[i]);
    op_silu(x, 6, y);
    check_close("silu", y, ref, 6, 1e-6);
    /* the 8-lane path (whole groups of 8) gives the bytes of the scalar one (a tail of 1),
     * clamped arguments included */
    float xv[40], yv[40], ys[40];
    for (int i = 0; i < 40; i++) xv[i] = i < 4 ? (i < 2 ? -100.0f - 50.0f * i : 90.0f + 50.0f * i) : 12.0f * frand();
    op_silu(xv, 40, yv);
    for (int i = 0; i < 40; i++) op_silu(xv + i, 1, ys + i);
    CHECK_MSG(memcmp(yv, ys, sizeof yv) == 0, "silu: 8-lane and scalar paths differ");
    float a[4] = {1, 2, 3, 4}, b[4] = {0.5f, -2, 1, 10}, s[4];
    op_add_div(a, b, 4, 1.4142135f, s);
    CHECK(s[0] == (1.0f + 0.5f) / 1.4142135f && s[3] == 14.0f / 1.4142135f);
    op_add_div(a, b, 4, 1.0f, a);
    CHECK(a[1] == 0.0f && a[3] == 14.0f);
    /* concat: (2, 1, 2) + (2, 2, 2) -> (2, 3, 2) */
    float ca[4] = {1, 2, 3, 4}, cb[8] = {5, 6, 7, 8, 9, 10, 11, 12}, cy[12];
    op_concat_channels(ca, 1, cb, 2, 2, 2, cy);
    const float want[12] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
    CHECK(memcmp(cy, want, sizeof want) == 0);
}

/* ---- resampling ---------------------------------------------------------------------------- */
/* diffusers upfirdn2d_native, literally: zero-stuff by `up`, pad (p0, p1) (negative crops),
 * correlate with the flipped kernel, keep every `down`-th sample. */
static void upfirdn_ref(const float *x, int H, int W, const double *k, int kh, int up, int down, int p0, int p1,
                        double *y, int *Ho, int *Wo) {
    int Hu = H * up + p0 + p1, Wu = W * up + p0 + p1;
    int oh = (Hu - kh) / down + 1, ow = (Wu - kh) / down + 1;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            double s = 0;
            for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kh; kx++) {
                    int uy = oy * down + ky - p0, ux = ox * down + kx - p0; /* position in the stuffed image */
                    if (uy < 0 || ux < 0 || uy >= H * up || ux >= W * up || uy % up || ux % up) continue;
                    s += k[(kh - 1 - ky) * kh + (kh - 1 - kx)] * x[(uy / up) * W + ux / up];
                }
            y[oy * ow + ox] = s;
        }
    *Ho = oh;
    *Wo = ow;
}

static void test_resample(void) {
    printf("resampling\n");
    const int B = 2, C = 3, H = 6, W = 8;
    size_t n = (size_t)B * C * H * W;
    float *x = rand_buf(n), *y = malloc(4 * n * sizeof *y), *y3 = malloc(4 * n * sizeof *y3);
    double *ref = malloc(4 * n * sizeof *ref);
    ctx_holder c1, c3;
    ctx_make(&c1, 1, 0, 0);
    ctx_make(&c3, 3, 0, 0);
    /* nearest x2 */
    op_upsample_nearest2(&c1.c, x, B, C, H, W, y);
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                ref[((size_t)p * 2 * H + i) * 2 * W + j] = x[((size_t)p * H + i / 2) * W + j / 2];
    check_close("upsample nearest x2", y, ref, 4 * n, 0);
    /* avg pool 2x2 */
    op_avgpool2(&c1.c, x, B, C, H, W, y);
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < H / 2; i++)
            for (int j = 0; j < W / 2; j++) {
                const float *q = x + ((size_t)p * H + 2 * i) * W + 2 * j;
                ref[((size_t)p * (H / 2) + i) * (W / 2) + j] = ((double)q[0] + q[1] + q[W] + q[W + 1]) / 4.0;
            }
    check_close("avg pool 2x2", y, ref, n / 4, 1e-7);
    /* FIR kernels: outer((1,3,3,1)) / 64, times factor^2 = 4 for upsampling */
    double kd[16], ku[16];
    const double a[4] = {1, 3, 3, 1};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            kd[i * 4 + j] = a[i] * a[j] / 64.0;
            ku[i * 4 + j] = a[i] * a[j] / 64.0 * 4.0;
        }
    int Ho = 0, Wo = 0;
    op_fir_upsample2(&c1.c, x, B, C, H, W, y);
    op_fir_upsample2(&c3.c, x, B, C, H, W, y3);
    for (int p = 0; p < B * C; p++) /* pad_value = 4 - 2 = 2: pad ((2 + 1) // 2 + 2 - 1, 2 // 2) = (2, 1) */
        upfirdn_ref(x + (size_t)p * H * W, H, W, ku, 4, 2, 1, 2, 1, ref + (size_t)p * 4 * H * W, &Ho, &Wo);
    CHECK(Ho == 2 * H && Wo == 2 * W);
    check_close("FIR upsample x2 (upfirdn2d_native)", y, ref, 4 * n, 1e-6);
    CHECK(memcmp(y, y3, 4 * n * sizeof *y) == 0);
    op_fir_downsample2(&c1.c, x, B, C, H, W, y);
    op_fir_downsample2(&c3.c, x, B, C, H, W, y3);
    for (int p = 0; p < B * C; p++) /* pad ((2 + 1) // 2, 2 // 2) = (1, 1), down 2 */
        upfirdn_ref(x + (size_t)p * H * W, H, W, kd, 4, 1, 2, 1, 1, ref + (size_t)p * H * W / 4, &Ho, &Wo);
    CHECK(Ho == H / 2 && Wo == W / 2);
    check_close("FIR downsample x2 (upfirdn2d_native)", y, ref, n / 4, 1e-6);
    CHECK(memcmp(y, y3, n / 4 * sizeof *y) == 0);
    ctx_free(&c1);
    ctx_free(&c3);
    free(x);
    free(y);
    free(y3);
    free(ref);
}

/* ---- attention ----------------------------------------------------------------------------- */
static void attn_case(const char *label, int B, int C, int HW, int heads) {
    size_t n = (size_t)B * C * HW;
    float *q = rand_buf(n), *k = rand_buf(n), *v = rand_buf(n), *o = malloc(n * sizeof *o),
          *o3 = malloc(n * sizeof *o3);
    double *ref = malloc(n * sizeof *ref), *p = malloc((size_t)HW * sizeof *p);
    int d = C / heads;
    float scale = (float)pow(d, -0.5);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++) {
            size_t off = ((size_t)b * C + (size_t)h * d) * HW;
            for (int i = 0; i < HW; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < HW; j++) {
                    double s = 0;
                    for (int e = 0; e < d; e++) s += (double)q[off + (size_t)e * HW + i] * k[off + (size_t)e * HW + j];
                    p[j] = s * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j < HW; j++) sum += (p[j] = exp(p[j] - mx));
                for (int e = 0; e < d; e++) {
                    double s = 0;
                    for (int j = 0; j < HW; j++) s += p[j] / sum * v[off + (size_t)e * HW + j];
                    ref[off + (size_t)e * HW + i] = s;
                }
            }
        }
    ctx_holder c1, c3;
    size_t ws, sh, per = n / (size_t)B;
    op_attention_ws(B, C, HW, heads, &ws, &sh);
    ctx_make(&c1, 1, ws, sh);
    ctx_make(&c3, 3, ws, sh);
    op_attention(&c1.c, q, k, v, per, B, C, HW, heads, scale, o);
    op_attention(&c3.c, q, k, v, per, B, C, HW, heads, scale, o3);
    check_close(label, o, ref, n, TOL);
    CHECK_MSG(memcmp(o, o3, n * sizeof *o) == 0, "%s: 1 vs 3 threads differ", label);
    op_attention(&c3.c, q + per, k + per, v + per, per, 1, C, HW, heads, scale, o3);
    CHECK_MSG(memcmp(o + per, o3, per * sizeof *o) == 0, "%s: image 1 alone differs", label);
    ctx_free(&c1);
    ctx_free(&c3);
    free(q);
    free(k);
    free(v);
    free(o);
    free(o3);
    free(ref);
    free(p);
}

static void test_attention(void) {
    printf("attention (%s)\n", op_kernels_name(&kern));
    attn_case("1 head, C 8, HW 16", 2, 8, 16, 1);
    attn_case("4 heads of 4, HW 49", 2, 16, 49, 4);
    /* HW 1024 -> blocks of 64 queries */
    attn_case("2 heads of 4, HW 1024 (query blocks)", 2, 8, 1024, 2);
    attn_case("1 head of 40, HW 100 (partial tiles)", 2, 40, 100, 1);
}

/* ---- embeddings ---------------------------------------------------------------------------- */
static void test_embeddings(void) {
    printf("embeddings\n");
    const float t[3] = {0.0f, 10.0f, 999.0f};
    for (int variant = 0; variant < 4; variant++) {
        int dim = variant == 3 ? 33 : 32, flip = variant & 1;
        float shift = variant == 2 ? 1.0f : 0.0f;
        float y[3 * 33];
        double ref[3 * 33];
        int half = dim / 2;
        for (int b = 0; b < 3; b++) {
            for (int i = 0; i < half; i++) {
                /* exponent computed as torch does in float32, the rest in double */
                float e = ((float)(-log(10000.0)) * (float)i) / ((float)half - shift);
                double f = exp((double)e), arg = (double)t[b] * f;
                ref[b * dim + (flip ? half : 0) + i] = sin(arg);
                ref[b * dim + (flip ? 0 : half) + i] = cos(arg);
            }
            if (dim % 2) ref[b * dim + dim - 1] = 0.0;
        }
        op_timestep_embedding(t, 3, dim, flip, shift, y);
        char label[64];
        snprintf(label, sizeof label, "timestep embedding dim %d flip %d shift %g", dim, flip, (double)shift);
        /* float32 rounding of t * freq: |arg| <= 999 -> 6e-5 absolute */
        check_close(label, y, ref, (size_t)3 * dim, 1e-4);
        CHECK(y[0 * dim + (flip ? 0 : half)] == 1.0f); /* t = 0: cos = 1 */
    }
    const float tf[2] = {0.25f, 10.0f};
    float w[5], y[2 * 5 * 2];
    double ref[20];
    for (int i = 0; i < 5; i++) w[i] = 16.0f * frand();
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 5; i++) {
            double p = log((double)tf[b]) * w[i] * 2.0 * 3.141592653589793;
            ref[b * 10 + i] = sin(p);
            ref[b * 10 + 5 + i] = cos(p);
        }
    op_fourier_embedding(tf, 2, w, 5, y);
    check_close("gaussian fourier projection", y, ref, 20, 1e-4);
}

int main(void) {
    op_kernels_init(&kern, GEMM_PATH_AVX512, OP_GEMM_AUTO, 1);
    printf("kernels: %s\n", op_kernels_name(&kern));
    test_pool();
    const gemm_path paths[3] = {GEMM_PATH_AVX512, GEMM_PATH_AVX2, GEMM_PATH_GENERIC};
    for (int i = 0; i < 3; i++) {
        if (!gemm_path_supported(paths[i])) {
            printf("(path %s: not supported by this CPU)\n", gemm_path_name(paths[i]));
            continue;
        }
        for (int blas = 0; blas <= op_blas_available(); blas++) {
            op_kernels_init(&kern, paths[i], blas ? OP_GEMM_BLAS : OP_GEMM_NATIVE, 1);
            CHECK(kern.path == paths[i] && kern.blas == blas);
            test_conv();
            test_attention();
        }
    }
    op_kernels_init(&kern, GEMM_PATH_AVX512, OP_GEMM_AUTO, 1);
    test_linear();
    test_group_norm();
    test_pointwise();
    test_resample();
    test_embeddings();
    return TEST_SUMMARY();
}
