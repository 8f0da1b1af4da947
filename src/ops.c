/* Kernels for the UNet (see ops.h for the determinism contract). */
#define _POSIX_C_SOURCE 200809L
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Work partition constants. They fix which floats are summed together, so changing them may
 * change results in the last bits (but never makes them depend on threads or batch size). */
#define OPS_CONV_WS_TARGET (1u << 18)   /* im2col floats per chunk (1 MiB) */
#define OPS_CONV_CO_BLOCK 128           /* output channels per GEMM task */
#define OPS_1X1_PIX_CHUNK 256           /* pixels per task for 1x1 convolutions */
#define OPS_ATTN_WS_TARGET (1u << 18)   /* attention score floats per task */
#define OPS_PLANE_BLOCK 16              /* (image, channel) planes per task for resampling */

/* ---- BLAS setup --------------------------------------------------------------------------- */
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;
static char ops_name[96];

static void ops_init_once(void) {
    openblas_set_num_threads(1);
    const char *core = openblas_get_corename();
    snprintf(ops_name, sizeof ops_name, "openblas (%s)", core && *core ? core : "unknown core");
}

void ops_blas_init(void) { pthread_once(&ops_once, ops_init_once); }

const char *ops_kernel_name(void) {
    ops_blas_init();
    return ops_name;
}

/* ---- convolution -------------------------------------------------------------------------- */
int op_conv_out_size(int in, int k, int stride, int pad_before, int pad_after) {
    int span = in + pad_before + pad_after - k;
    return span < 0 ? 0 : span / stride + 1;
}

static int conv_is_pointwise(const op_conv_geom *g) {
    return g->k == 1 && g->stride == 1 && !g->pad_t && !g->pad_l && !g->pad_b && !g->pad_r;
}

/* Output pixels per im2col chunk: a function of the reduction length only. */
static size_t conv_chunk_pixels(size_t K) {
    size_t n = OPS_CONV_WS_TARGET / K;
    if (n < 16) n = 16;
    return n;
}

size_t op_conv2d_ws_floats(const op_conv_geom *g) {
    if (conv_is_pointwise(g)) return 0;
    size_t K = (size_t)g->cin * (size_t)g->k * (size_t)g->k;
    return K * conv_chunk_pixels(K);
}

typedef struct {
    const ops_ctx *c;
    const float *x, *w, *bias;
    const op_conv_geom *g;
    float *y;
    int H, W, Ho, Wo;
    size_t P, K, chunk, n_chunks, n_co;
} conv_job;

/* col (K, n): column j is output pixel p0 + j, row (ci, ky, kx). Each row is filled one output
 * row segment at a time: zeros where the tap falls in the padding, a (strided) copy elsewhere. */
static void conv_im2col(const conv_job *j, const float *x, size_t p0, size_t n, float *col) {
    const op_conv_geom *g = j->g;
    const int k = g->k, s = g->stride, H = j->H, W = j->W, Wo = j->Wo;
    size_t row = 0;
    for (int ci = 0; ci < g->cin; ci++) {
        const float *xc = x + (size_t)ci * H * W;
        for (int ky = 0; ky < k; ky++) {
            for (int kx = 0; kx < k; kx++, row++) {
                float *dst = col + row * n;
                /* valid output columns: 0 <= ox * s - pad_l + kx < W */
                int lo = g->pad_l - kx > 0 ? (g->pad_l - kx + s - 1) / s : 0;
                int hi = (W - 1 + g->pad_l - kx) >= 0 ? (W - 1 + g->pad_l - kx) / s + 1 : 0;   /* exclusive */
                if (hi > Wo) hi = Wo;
                size_t q = 0, p = p0;
                while (q < n) {
                    int oy = (int)(p / (size_t)Wo), ox0 = (int)(p % (size_t)Wo);
                    int cnt = Wo - ox0;
                    if ((size_t)cnt > n - q) cnt = (int)(n - q);
                    int iy = oy * s - g->pad_t + ky;
                    float *d = dst + q;
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)cnt * sizeof *d);
                    } else {
                        const float *src = xc + (size_t)iy * W;
                        int a = lo > ox0 ? lo : ox0, b = hi < ox0 + cnt ? hi : ox0 + cnt;
                        if (b < a) b = a;
                        for (int ox = ox0; ox < a; ox++) d[ox - ox0] = 0.0f;
                        if (s == 1) {
                            if (b > a) memcpy(d + (a - ox0), src + (a - g->pad_l + kx), (size_t)(b - a) * sizeof *d);
                        } else {
                            for (int ox = a; ox < b; ox++) d[ox - ox0] = src[ox * s - g->pad_l + kx];
                        }
                        for (int ox = b; ox < ox0 + cnt; ox++) d[ox - ox0] = 0.0f;
                    }
                    q += (size_t)cnt;
                    p += (size_t)cnt;
                }
            }
        }
    }
}

static void conv_task(void *arg, size_t task, int thread) {
    const conv_job *j = arg;
    const op_conv_geom *g = j->g;
    size_t per_img = j->n_chunks * j->n_co;
    size_t b = task / per_img, rem = task % per_img;
    size_t chunk = rem / j->n_co, cob = rem % j->n_co;
    size_t p0 = chunk * j->chunk;
    size_t n = j->P - p0 < j->chunk ? j->P - p0 : j->chunk;
    size_t co0 = cob * OPS_CONV_CO_BLOCK;
    size_t m = (size_t)g->cout - co0 < OPS_CONV_CO_BLOCK ? (size_t)g->cout - co0 : OPS_CONV_CO_BLOCK;
    const float *x = j->x + b * (size_t)g->cin * j->H * j->W;   // (cin, H, W)
    float *y = j->y + b * (size_t)g->cout * j->P;                // (cout, Ho*Wo)
    const float *bm;
    size_t ldb;
    if (conv_is_pointwise(g)) {
        bm = x + p0;
        ldb = j->P;
    } else {
        float *col = j->c->ws[thread];                           // (K, n)
        conv_im2col(j, x, p0, n, col);
        bm = col;
        ldb = n;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)j->K, 1.0f,
                j->w + co0 * j->K, (int)j->K, bm, (int)ldb, 0.0f, y + co0 * j->P + p0, (int)j->P);
    if (j->bias)
        for (size_t co = co0; co < co0 + m; co++) {
            float bv = j->bias[co], *yr = y + co * j->P + p0;
            for (size_t q = 0; q < n; q++) yr[q] += bv;
        }
}

void op_conv2d(const ops_ctx *c, const float *x, int B, int H, int W, const float *w,
               const float *bias, const op_conv_geom *g, float *y) {
    conv_job j;
    j.c = c;
    j.x = x;
    j.w = w;
    j.bias = bias;
    j.g = g;
    j.y = y;
    j.H = H;
    j.W = W;
    j.Ho = op_conv_out_size(H, g->k, g->stride, g->pad_t, g->pad_b);
    j.Wo = op_conv_out_size(W, g->k, g->stride, g->pad_l, g->pad_r);
    j.P = (size_t)j.Ho * (size_t)j.Wo;
    j.K = (size_t)g->cin * (size_t)g->k * (size_t)g->k;
    if (j.P == 0 || B <= 0 || g->cout <= 0) return;
    j.chunk = conv_is_pointwise(g) ? OPS_1X1_PIX_CHUNK : conv_chunk_pixels(j.K);
    if (j.chunk > j.P) j.chunk = j.P;
    j.n_chunks = (j.P + j.chunk - 1) / j.chunk;
    j.n_co = ((size_t)g->cout + OPS_CONV_CO_BLOCK - 1) / OPS_CONV_CO_BLOCK;
    tp_run(c->pool, (size_t)B * j.n_chunks * j.n_co, conv_task, &j);
}

/* ---- linear ------------------------------------------------------------------------------- */
void op_linear(const float *x, int B, int in, const float *w, const float *bias, int out, float *y) {
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * out;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x + (size_t)b * in, 1, 0.0f, yb, 1);
        if (bias)
            for (int o = 0; o < out; o++) yb[o] += bias[o];
    }
}

/* ---- exp ---------------------------------------------------------------------------------- */
/* exp(x) for x in [-87, 88] (clamped), Cephes expf: x = n ln2 + r, e^r by a degree-6 polynomial,
 * times 2^n through the exponent bits. About 1 ulp; branch-free so loops over it vectorise. */
static inline float exp_ops(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float magic = 12582912.0f;   /* 1.5 * 2^23: (t + magic) - magic rounds t to an integer */
    float fn = (x * 1.44269504088896341f + magic) - magic;
    int32_t n = (int32_t)fn;
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* ---- normalisation and pointwise ---------------------------------------------------------- */
static inline float silu1(float v) { return v / (1.0f + exp_ops(-v)); }

/* sum of x[i] (sq = 0) or of (x[i] - c)^2 (sq = 1) in double, 8 fixed lanes */
static double sum_lanes(const float *x, size_t n, double c, int sq) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    if (sq) {
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) {
                double d = (double)x[i + l] - c;
                a[l] += d * d;
            }
    } else {
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) a[l] += (double)x[i + l];
    }
    double t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++) {
        double d = (double)x[i] - c;
        t += sq ? d * d : (double)x[i];
    }
    return t;
}

typedef struct {
    const float *x, *gamma, *beta, *scale, *shift;
    float *y;
    int C, HW, G, silu;
    float eps;
    size_t ss_stride;
} gn_job;

static void gn_task(void *arg, size_t task, int thread) {
    (void)thread;
    const gn_job *j = arg;
    size_t b = task / (size_t)j->G;
    int grp = (int)(task % (size_t)j->G);
    int cpg = j->C / j->G;
    size_t off = (b * (size_t)j->C + (size_t)grp * cpg) * (size_t)j->HW;
    size_t n = (size_t)cpg * (size_t)j->HW;
    const float *x = j->x + off;
    float *y = j->y + off;
    double mean = sum_lanes(x, n, 0.0, 0) / (double)n;
    double ss = sum_lanes(x, n, mean, 1);
    double rstd = 1.0 / sqrt(ss / (double)n + (double)j->eps);
    for (int cc = 0; cc < cpg; cc++) {
        int ch = grp * cpg + cc;
        /* y = (x - mean) * rstd * gamma + beta, as x * a + bb */
        float a = (float)(rstd * j->gamma[ch]);
        float bb = (float)(j->beta[ch] - mean * rstd * j->gamma[ch]);
        float s1 = 1.0f, sh = 0.0f;
        int film = j->scale != NULL;
        if (film) {
            s1 = 1.0f + j->scale[b * j->ss_stride + (size_t)ch];
            sh = j->shift[b * j->ss_stride + (size_t)ch];
        }
        const float *xr = x + (size_t)cc * j->HW;
        float *yr = y + (size_t)cc * j->HW;
        if (film)
            for (int i = 0; i < j->HW; i++) yr[i] = (xr[i] * a + bb) * s1 + sh;
        else
            for (int i = 0; i < j->HW; i++) yr[i] = xr[i] * a + bb;
        if (j->silu)
            for (int i = 0; i < j->HW; i++) yr[i] = silu1(yr[i]);
    }
}

void op_group_norm(const ops_ctx *c, const float *x, int B, int C, int HW, int G,
                   const float *gamma, const float *beta, float eps, const float *scale,
                   const float *shift, size_t ss_stride, int silu, float *y) {
    gn_job j = {x, gamma, beta, scale, shift, y, C, HW, G, silu, eps, ss_stride};
    tp_run(c->pool, (size_t)B * (size_t)G, gn_task, &j);
}

void op_silu(const float *x, size_t n, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = silu1(x[i]);
}

void op_add_channel_bias(float *x, int B, int C, int HW, const float *v, size_t v_stride) {
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++) {
            float bv = v[(size_t)b * v_stride + (size_t)ch];
            float *xr = x + ((size_t)b * C + ch) * (size_t)HW;
            for (int i = 0; i < HW; i++) xr[i] += bv;
        }
}

void op_add_div(const float *a, const float *b, size_t n, float div, float *y) {
    if (div == 1.0f)
        for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    else
        for (size_t i = 0; i < n; i++) y[i] = (a[i] + b[i]) / div;
}

void op_concat_channels(const float *a, int Ca, const float *b, int Cb, int B, int HW, float *y) {
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW;
    for (int i = 0; i < B; i++) {
        memcpy(y + (size_t)i * (na + nb), a + (size_t)i * na, na * sizeof *y);
        memcpy(y + (size_t)i * (na + nb) + na, b + (size_t)i * nb, nb * sizeof *y);
    }
}

/* ---- resampling --------------------------------------------------------------------------- */
/* Per-plane kernels run in tasks of OPS_PLANE_BLOCK (image, channel) planes. */
typedef struct {
    const float *x;
    float *y;
    int H, W;
    size_t planes, in_sz, out_sz;
    void (*plane)(const float *x, int H, int W, float *y);
} resample_job;

static void resample_task(void *arg, size_t task, int thread) {
    (void)thread;
    const resample_job *j = arg;
    size_t p0 = task * OPS_PLANE_BLOCK, p1 = p0 + OPS_PLANE_BLOCK;
    if (p1 > j->planes) p1 = j->planes;
    for (size_t p = p0; p < p1; p++) j->plane(j->x + p * j->in_sz, j->H, j->W, j->y + p * j->out_sz);
}

static void run_planes(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y,
                       size_t out_sz, void (*plane)(const float *, int, int, float *)) {
    resample_job j;
    j.x = x;
    j.y = y;
    j.H = H;
    j.W = W;
    j.planes = (size_t)B * (size_t)C;
    j.in_sz = (size_t)H * (size_t)W;
    j.out_sz = out_sz;
    j.plane = plane;
    tp_run(c->pool, (j.planes + OPS_PLANE_BLOCK - 1) / OPS_PLANE_BLOCK, resample_task, &j);
}

static void up_nearest_plane(const float *x, int H, int W, float *y) {
    int W2 = 2 * W;
    for (int i = 0; i < H; i++) {
        float *r0 = y + (size_t)(2 * i) * W2, *r1 = r0 + W2;
        for (int jx = 0; jx < W; jx++) {
            float v = x[(size_t)i * W + jx];
            r0[2 * jx] = r0[2 * jx + 1] = v;
        }
        memcpy(r1, r0, (size_t)W2 * sizeof *y);
    }
}

void op_upsample_nearest2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y) {
    run_planes(c, x, B, C, H, W, y, (size_t)H * W * 4, up_nearest_plane);
}

static void avgpool2_plane(const float *x, int H, int W, float *y) {
    int Ho = H / 2, Wo = W / 2;
    for (int i = 0; i < Ho; i++)
        for (int jx = 0; jx < Wo; jx++) {
            const float *p = x + (size_t)(2 * i) * W + 2 * jx;
            float s = p[0] + p[1];
            s += p[W];
            s += p[W + 1];
            y[(size_t)i * Wo + jx] = s / 4.0f;
        }
}

void op_avgpool2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y) {
    run_planes(c, x, B, C, H, W, y, (size_t)(H / 2) * (W / 2), avgpool2_plane);
}

/* FIR kernel (1,3,3,1): upsample_2d uses k1 = a / sum(a) * factor = a / 4 per axis, zero-stuffed
 * input padded (2, 1): even output 2m <- x[m-1] / 4 + 3 x[m] / 4, odd 2m+1 <- 3 x[m] / 4 + x[m+1] / 4. */
static void fir_up_plane(const float *x, int H, int W, float *y) {
    int Ho = 2 * H, Wo = 2 * W;
    for (int oy = 0; oy < Ho; oy++) {
        int m = oy / 2;
        int ys[2];
        float wy[2];
        if (oy % 2 == 0) { ys[0] = m - 1; wy[0] = 1.0f; ys[1] = m; wy[1] = 3.0f; }
        else { ys[0] = m; wy[0] = 3.0f; ys[1] = m + 1; wy[1] = 1.0f; }
        for (int ox = 0; ox < Wo; ox++) {
            int n = ox / 2;
            int xs[2];
            float wx[2];
            if (ox % 2 == 0) { xs[0] = n - 1; wx[0] = 1.0f; xs[1] = n; wx[1] = 3.0f; }
            else { xs[0] = n; wx[0] = 3.0f; xs[1] = n + 1; wx[1] = 1.0f; }
            float s = 0.0f;
            for (int a = 0; a < 2; a++) {
                if (ys[a] < 0 || ys[a] >= H) continue;
                for (int b = 0; b < 2; b++) {
                    if (xs[b] < 0 || xs[b] >= W) continue;
                    s += (wy[a] * wx[b] / 16.0f) * x[(size_t)ys[a] * W + xs[b]];
                }
            }
            y[(size_t)oy * Wo + ox] = s;
        }
    }
}

void op_fir_upsample2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y) {
    run_planes(c, x, B, C, H, W, y, (size_t)H * W * 4, fir_up_plane);
}

/* downsample_2d: k1 = a / 8 per axis, input padded (1, 1), stride 2:
 * out[m] = (x[2m-1] + 3 x[2m] + 3 x[2m+1] + x[2m+2]) / 8 per axis. */
static void fir_down_plane(const float *x, int H, int W, float *y) {
    static const float a[4] = {1.0f, 3.0f, 3.0f, 1.0f};
    int Ho = H / 2, Wo = W / 2;
    for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox++) {
            float s = 0.0f;
            for (int ky = 0; ky < 4; ky++) {
                int iy = 2 * oy - 1 + ky;
                if (iy < 0 || iy >= H) continue;
                for (int kx = 0; kx < 4; kx++) {
                    int ix = 2 * ox - 1 + kx;
                    if (ix < 0 || ix >= W) continue;
                    s += (a[ky] * a[kx] / 64.0f) * x[(size_t)iy * W + ix];
                }
            }
            y[(size_t)oy * Wo + ox] = s;
        }
}

void op_fir_downsample2(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y) {
    run_planes(c, x, B, C, H, W, y, (size_t)(H / 2) * (W / 2), fir_down_plane);
}

/* ---- attention ---------------------------------------------------------------------------- */
static size_t attn_rows(int HW) {
    size_t r = OPS_ATTN_WS_TARGET / (size_t)HW;
    if (r < 1) r = 1;
    if (r > (size_t)HW) r = (size_t)HW;
    return r;
}

size_t op_attention_ws_floats(int HW) { return attn_rows(HW) * (size_t)HW; }

/* In-place softmax of n floats (torch: exp(x - max) / sum, here times 1 / sum). Fixed 8-lane
 * partial max and sum, so the loops vectorise and the order never depends on anything but n. */
static void softmax_row(float *x, size_t n) {
    float m8[8];
    for (int l = 0; l < 8; l++) m8[l] = x[0];
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) m8[l] = x[i + l] > m8[l] ? x[i + l] : m8[l];
    float mx = m8[0];
    for (int l = 1; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (i = 0; i < n; i++) x[i] = exp_ops(x[i] - mx);
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (i = 0; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s8[l] += x[i + l];
    float sum = 0.0f;
    for (int l = 0; l < 8; l++) sum += s8[l];
    for (; i < n; i++) sum += x[i];
    float inv = 1.0f / sum;
    for (i = 0; i < n; i++) x[i] *= inv;
}

typedef struct {
    const float *q, *k, *v;
    float *o;
    const ops_ctx *c;
    int C, HW, heads, d;
    float scale;
    size_t rows, n_chunks;
} attn_job;

static void attn_task(void *arg, size_t task, int thread) {
    const attn_job *j = arg;
    size_t per_img = (size_t)j->heads * j->n_chunks;
    size_t b = task / per_img, rem = task % per_img;
    size_t h = rem / j->n_chunks, ch = rem % j->n_chunks;
    size_t i0 = ch * j->rows;
    size_t rows = (size_t)j->HW - i0 < j->rows ? (size_t)j->HW - i0 : j->rows;
    size_t HW = (size_t)j->HW;
    size_t off = (b * (size_t)j->C + h * (size_t)j->d) * HW;    // head h of image b: (d, HW)
    const float *qh = j->q + off, *kh = j->k + off, *vh = j->v + off;
    float *oh = j->o + off;
    float *s = j->c->ws[thread];                                 // (rows, HW) scores
    /* s = scale * q_h[:, i0:i0+rows]^T k_h (torch.baddbmm(beta=0, alpha=scale)) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)HW, j->d, j->scale,
                qh + i0, (int)HW, kh, (int)HW, 0.0f, s, (int)HW);
    for (size_t r = 0; r < rows; r++) softmax_row(s + r * HW, HW);
    /* o_h[:, i0:i0+rows] = v_h s^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->d, (int)rows, (int)HW, 1.0f, vh, (int)HW,
                s, (int)HW, 0.0f, oh + i0, (int)HW);
}

void op_attention(const ops_ctx *c, const float *q, const float *k, const float *v, int B, int C,
                  int HW, int heads, float scale, float *o) {
    attn_job j;
    j.q = q;
    j.k = k;
    j.v = v;
    j.o = o;
    j.c = c;
    j.C = C;
    j.HW = HW;
    j.heads = heads;
    j.d = C / heads;
    j.scale = scale;
    j.rows = attn_rows(HW);
    j.n_chunks = ((size_t)HW + j.rows - 1) / j.rows;
    tp_run(c->pool, (size_t)B * (size_t)heads * j.n_chunks, attn_task, &j);
}

/* ---- time embeddings ---------------------------------------------------------------------- */
/* Float operation order of diffusers/torch: exponent = (-ln(max_period) * arange) / (half -
 * shift) in float32, exp, t * freq in float32; exp/sin/cos are evaluated in double and rounded
 * (torch uses ~1-ulp SLEEF float versions). */
void op_timestep_embedding(const float *t, int B, int dim, int flip_sin_to_cos, float shift, float *y) {
    int half = dim / 2;
    const float neg_log = (float)(-log(10000.0));
    const float denom = (float)half - shift;
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * dim;
        for (int i = 0; i < half; i++) {
            float e = (neg_log * (float)i) / denom;
            float f = (float)exp((double)e);
            float arg = t[b] * f;
            float sv = (float)sin((double)arg), cv = (float)cos((double)arg);
            if (flip_sin_to_cos) { yb[i] = cv; yb[half + i] = sv; }
            else { yb[i] = sv; yb[half + i] = cv; }
        }
        if (dim % 2) yb[dim - 1] = 0.0f;
    }
}

/* x_proj = log(t)[:, None] * W[None, :] * 2 * np.pi, evaluated left to right in float32. */
void op_fourier_embedding(const float *t, int B, const float *w, int n, float *y) {
    const float pi_f = (float)3.141592653589793;
    for (int b = 0; b < B; b++) {
        float lt = (float)log((double)t[b]);
        float *yb = y + (size_t)b * 2 * n;
        for (int i = 0; i < n; i++) {
            float p = ((lt * w[i]) * 2.0f) * pi_f;
            yb[i] = (float)sin((double)p);
            yb[n + i] = (float)cos((double)p);
        }
    }
}
