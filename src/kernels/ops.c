/* Kernels for the UNet (see ops.h for the determinism contract): linear, GroupNorm, pointwise,
 * resampling, attention and time embeddings. Convolutions are in conv.c, GEMM tiles in gemm.c. */
#define _POSIX_C_SOURCE 200809L
#include "blas.h"
#include "gemm.h"
#include "ops.h"

#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Work partition constants (they do not change results). */
#define OPS_ATTN_WS_TARGET (1u << 20) /* attention score floats per task (4 MiB) */
#define OPS_ATTN_QUERIES 64           /* queries per attention task */
#define OPS_PLANE_BLOCK 16            /* (image, channel) planes per task for resampling */

static int l1d_bytes = 32768;
static void l1d_init(void);

/* L1 data cache size in bytes: sysconf (glibc reads CPUID on x86), else sysfs, else 32 KiB. */
static int l1d_size(void) {
    long v = -1;
#ifdef _SC_LEVEL1_DCACHE_SIZE
    v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
    for (int i = 0; v <= 0 && i < 8; i++) {
        char path[96], buf[32];
        int level = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int ok = fscanf(f, "%d", &level) == 1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        f = fopen(path, "r");
        ok = ok && f && fscanf(f, "%31s", buf) == 1 && level == 1 && strcmp(buf, "Data") == 0;
        if (f) fclose(f);
        if (!ok) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        f = fopen(path, "r");
        long kib = 0;
        if (f && fscanf(f, "%ldK", &kib) == 1 && kib > 0) v = kib * 1024;
        if (f) fclose(f);
    }
    return v >= 8192 && v <= (1 << 24) ? (int)v : 32768;
}

static void l1d_init(void) { l1d_bytes = l1d_size(); }

void op_kernels_init(op_kernels *k, gemm_path want, op_gemm gemm, int winograd) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, l1d_init);
    k->l1d_bytes = l1d_bytes;
    /* A (kc x 16) and B (kc x 16) floats together within L1: kc = L1 / 128 bytes, a multiple of
     * 16 in [64, 256] (256 on a 32 KiB L1 and above; half of that measured no faster on Zen 2:
     * the B block streams from L2) */
    int kc = k->l1d_bytes / 128 / 16 * 16;
    k->conv_kc = kc < 64 ? 64 : kc > 256 ? 256 : kc;
    k->pack_strided = 1;
    k->path = gemm_path_best(want);
    k->tile = gemm_tile_for(k->path);
    k->winograd = winograd != 0;
    /* auto: decided by the CPU (not by a lower path asked for): OpenBLAS where the own kernels
     * have no vector path at all */
    if (gemm == OP_GEMM_AUTO)
        gemm = gemm_path_best(GEMM_PATH_AVX512) == GEMM_PATH_GENERIC ? OP_GEMM_BLAS : OP_GEMM_NATIVE;
    k->blas = gemm == OP_GEMM_BLAS && op_blas_available();
}

const char *op_kernels_name(const op_kernels *k) {
    if (!k->blas) return gemm_path_name(k->path);
    switch (k->path) {
    case GEMM_PATH_AVX512: return "avx512+openblas";
    case GEMM_PATH_AVX2: return "avx2+openblas";
    default: return "generic+openblas";
    }
}

int op_conv_out_size(int in, int k, int stride, int pad_before, int pad_after) {
    int span = in + pad_before + pad_after - k;
    return span < 0 ? 0 : span / stride + 1;
}

/* ---- linear ------------------------------------------------------------------------------- */
/* sum of a[i] * b[i] in 16 fixed lanes, combined as a fixed tree */
OPS_CLONES static float dot16(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    float s = acc[0];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void op_linear(const float *x, int B, int in, const float *w, const float *bias, int out, float *y) {
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * in;
        float *yb = y + (size_t)b * out;
        for (int o = 0; o < out; o++) {
            float v = dot16(w + (size_t)o * in, xb, in);
            yb[o] = bias ? v + bias[o] : v;
        }
    }
}

/* ---- exp ---------------------------------------------------------------------------------- */
/* exp(x) for x in [-87, 88] (clamped), Cephes expf: x = n ln2 + r, e^r by a degree-6 polynomial,
 * times 2^n through the exponent bits. About 1 ulp; branch-free so loops over it vectorise. */
static inline __attribute__((always_inline)) float exp_ops(float x) {
    x = x > -87.0f ? x : -87.0f; /* NaN -> -87 too: the int conversion below must stay defined */
    x = x < 88.0f ? x : 88.0f;
    const float magic = 12582912.0f; /* 1.5 * 2^23: (t + magic) - magic rounds t to an integer */
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
static inline __attribute__((always_inline)) float silu1(float v) { return v / (1.0f + exp_ops(-v)); }

/* The same exp and SiLU on 8 lanes (GCC/Clang vector extensions), operation for operation: the
 * same bytes as exp_ops / silu1 on each lane. Written out because the compiler vectorises the
 * scalar loops poorly: it propagates the clamp constants through exp_ops and then evaluates
 * (and divides) every branch, blending the results (two divisions per lane). */
#if defined(__GNUC__)
#define OPS_V8 1
#if !defined(__clang__)
/* only inlined helpers take and return these vectors: no ABI crosses a call */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float f32x8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t i32x8 __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) f32x8 v8_load(const float *p) {
    f32x8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void v8_store(float *p, f32x8 v) { memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) f32x8 v8_splat(float a) { return (f32x8){a, a, a, a, a, a, a, a}; }
/* m ? a : b per lane, m all ones or all zeros (a comparison's result) */
static inline __attribute__((always_inline)) f32x8 v8_sel(i32x8 m, f32x8 a, f32x8 b) {
    return (f32x8)((m & (i32x8)a) | (~m & (i32x8)b));
}

static inline __attribute__((always_inline)) f32x8 exp_v8(f32x8 x) {
    const f32x8 lo = v8_splat(-87.0f), hi = v8_splat(88.0f);
    x = v8_sel(x > lo, x, lo); /* NaN -> -87, as exp_ops */
    x = v8_sel(x < hi, x, hi);
    const f32x8 magic = v8_splat(12582912.0f);
    const f32x8 fn = (x * 1.44269504088896341f + magic) - magic;
    const i32x8 n = __builtin_convertvector(fn, i32x8);
    f32x8 r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    f32x8 p = v8_splat(1.9875691500E-4f);
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    const i32x8 bits = (n + 127) << 23;
    return p * (f32x8)bits;
}

static inline __attribute__((always_inline)) f32x8 silu_v8(f32x8 v) { return v / (1.0f + exp_v8(-v)); }
#endif

/* sum of x[i] (sq = 0) or of (x[i] - c)^2 (sq = 1) in double, 16 fixed lanes, fixed tree */
static inline __attribute__((always_inline)) double sum_lanes(const float *x, size_t n, double c, int sq) {
    double a[16] = {0};
    size_t i = 0;
    if (sq) {
        for (; i + 16 <= n; i += 16)
            for (int l = 0; l < 16; l++) {
                double d = (double)x[i + l] - c;
                a[l] += d * d;
            }
    } else {
        for (; i + 16 <= n; i += 16)
            for (int l = 0; l < 16; l++) a[l] += (double)x[i + l];
    }
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) a[l] += a[l + w];
    double t = a[0];
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

/* task = (image, group): two-pass mean and variance in double, then one fused pass
 * y = silu?(((x * a + bb) * (1 + scale) + shift)) per channel */
OPS_CLONES static void gn_task(void *arg, size_t task, int thread) {
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
        const float a = (float)(rstd * j->gamma[ch]);
        const float bb = (float)(j->beta[ch] - mean * rstd * j->gamma[ch]);
        const float *xr = x + (size_t)cc * j->HW;
        float *yr = y + (size_t)cc * j->HW;
        const int HW = j->HW;
        int i = 0;
        if (j->scale) {
            const float s1 = 1.0f + j->scale[b * j->ss_stride + (size_t)ch];
            const float sh = j->shift[b * j->ss_stride + (size_t)ch];
            if (j->silu) {
#ifdef OPS_V8
                for (; i + 8 <= HW; i += 8) v8_store(yr + i, silu_v8((v8_load(xr + i) * a + bb) * s1 + sh));
#endif
                for (; i < HW; i++) yr[i] = silu1((xr[i] * a + bb) * s1 + sh);
            } else {
                for (; i < HW; i++) yr[i] = (xr[i] * a + bb) * s1 + sh;
            }
        } else {
            if (j->silu) {
#ifdef OPS_V8
                for (; i + 8 <= HW; i += 8) v8_store(yr + i, silu_v8(v8_load(xr + i) * a + bb));
#endif
                for (; i < HW; i++) yr[i] = silu1(xr[i] * a + bb);
            } else {
                for (; i < HW; i++) yr[i] = xr[i] * a + bb;
            }
        }
    }
}

void op_group_norm(const ops_ctx *c, const float *x, int B, int C, int HW, int G, const float *gamma, const float *beta,
                   float eps, const float *scale, const float *shift, size_t ss_stride, int silu, float *y) {
    gn_job j = {x, gamma, beta, scale, shift, y, C, HW, G, silu, eps, ss_stride};
    tp_run(c->pool, (size_t)B * (size_t)G, gn_task, &j);
}

OPS_CLONES void op_silu(const float *x, size_t n, float *y) {
    size_t i = 0;
#ifdef OPS_V8
    for (; i + 8 <= n; i += 8) v8_store(y + i, silu_v8(v8_load(x + i)));
#endif
    for (; i < n; i++) y[i] = silu1(x[i]);
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

static void run_planes(const ops_ctx *c, const float *x, int B, int C, int H, int W, float *y, size_t out_sz,
                       void (*plane)(const float *, int, int, float *)) {
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
        if (oy % 2 == 0) {
            ys[0] = m - 1;
            wy[0] = 1.0f;
            ys[1] = m;
            wy[1] = 3.0f;
        } else {
            ys[0] = m;
            wy[0] = 3.0f;
            ys[1] = m + 1;
            wy[1] = 1.0f;
        }
        for (int ox = 0; ox < Wo; ox++) {
            int n = ox / 2;
            int xs[2];
            float wx[2];
            if (ox % 2 == 0) {
                xs[0] = n - 1;
                wx[0] = 1.0f;
                xs[1] = n;
                wx[1] = 3.0f;
            } else {
                xs[0] = n;
                wx[0] = 3.0f;
                xs[1] = n + 1;
                wx[1] = 1.0f;
            }
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
/* Per (image, head, block of nq queries): S^T = k_h^T q_h (keys x queries, one GEMM on the
 * channel-major tensors as they are), scaled, softmax down each column (over the keys), then
 * o_h = v_h S^T with v_h packed once per head (phase 1) into panels of 16 channels (keys x 16). */
static int attn_nq(int HW) {
    int nq = OPS_ATTN_QUERIES;
    while (nq > 16 && (size_t)HW * (size_t)nq > OPS_ATTN_WS_TARGET) nq -= 16;
    int hw16 = (HW + 15) / 16 * 16;
    return nq < hw16 ? nq : hw16;
}

static size_t attn_head_panels(int C, int heads) {
    int d = C / heads;
    return (size_t)heads * (size_t)((d + GEMM_MR - 1) / GEMM_MR);
}

void op_attention_ws(int B, int C, int HW, int heads, size_t *per_thread, size_t *shared) {
    /* scores (HW, nq) and two tail panels (d, 16); the v panels of every head */
    *per_thread = (size_t)HW * (size_t)attn_nq(HW) + 2 * (size_t)(C / heads) * 16;
    *shared = (size_t)B * attn_head_panels(C, heads) * (size_t)HW * GEMM_MR;
}

typedef struct {
    const float *q, *k, *v;
    float *o;
    const ops_ctx *c;
    size_t qkv_stride;
    int C, HW, heads, d, pd, nq, n_qb;
    float scale;
    gemm_tile_fn tile;
} attn_job;

/* phase 1, task (image, head, channel panel): vp = panel of v_h, (HW, 16) */
static void attn_pack_task(void *arg, size_t task, int thread) {
    (void)thread;
    const attn_job *j = arg;
    size_t bh = task / (size_t)j->pd;
    int cp = (int)(task % (size_t)j->pd), c0 = cp * GEMM_MR;
    size_t b = bh / (size_t)j->heads, h = bh % (size_t)j->heads;
    const float *vh = j->v + b * j->qkv_stride + (h * (size_t)j->d + (size_t)c0) * (size_t)j->HW;
    int rows = j->d - c0 < GEMM_MR ? j->d - c0 : GEMM_MR;
    gemm_pack_panel(vh, (size_t)j->HW, 1, rows, j->HW, j->c->shared + task * (size_t)j->HW * GEMM_MR);
}

/* Softmax of scale * s down each of the nq columns of s (rows, ld), in place: exp(x - max) times
 * 1 / sum, every column summed in key order. */
OPS_CLONES static void softmax_cols(float *s, int rows, int nq, int ld, float scale) {
    for (int i0 = 0; i0 < nq; i0 += 16) {
        float mx[16], sum[16];
        const int w = nq - i0 < 16 ? nq - i0 : 16;
        for (int l = 0; l < 16; l++) {
            mx[l] = -INFINITY;
            sum[l] = 0.0f;
        }
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * ld + i0;
            for (int l = 0; l < w; l++) {
                sr[l] *= scale;
                mx[l] = sr[l] > mx[l] ? sr[l] : mx[l];
            }
        }
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * ld + i0;
            for (int l = 0; l < w; l++) {
                sr[l] = exp_ops(sr[l] - mx[l]);
                sum[l] += sr[l];
            }
        }
        for (int l = 0; l < 16; l++) sum[l] = 1.0f / sum[l];
        for (int r = 0; r < rows; r++) {
            float *sr = s + (size_t)r * ld + i0;
            for (int l = 0; l < w; l++) sr[l] *= sum[l];
        }
    }
}

/* Where task (image, head, query block) of an attention job reads and writes: head h of image b
 * in q, k, v and o, each (d, HW), and the block's queries i0 .. i0 + nqv - 1. */
typedef struct attn_block {
    const float *q, *k, *v;
    float *o;
    size_t bh; /* b * heads + h */
    int i0, nqv;
} attn_block;

static attn_block attn_block_of(const attn_job *j, size_t task) {
    const size_t per_img = (size_t)j->heads * (size_t)j->n_qb;
    const size_t b = task / per_img, rem = task % per_img;
    const size_t hoff = rem / (size_t)j->n_qb * (size_t)j->d * (size_t)j->HW;
    attn_block a;
    a.bh = task / (size_t)j->n_qb;
    a.i0 = (int)(rem % (size_t)j->n_qb) * j->nq;
    a.nqv = j->HW - a.i0 < j->nq ? j->HW - a.i0 : j->nq;
    a.q = j->q + b * j->qkv_stride + hoff;
    a.k = j->k + b * j->qkv_stride + hoff;
    a.v = j->v + b * j->qkv_stride + hoff;
    a.o = j->o + b * (size_t)j->C * (size_t)j->HW + hoff;
    return a;
}

/* OpenBLAS, task (image, head, query block): S^T = k_h^T q_h, softmax, o_h = v_h S^T as two
 * products on the channel-major tensors as they are (no packing) */
static void attn_blas_task(void *arg, size_t task, int thread) {
    const attn_job *j = arg;
    const attn_block a = attn_block_of(j, task);
    const int HW = j->HW, d = j->d, nq = j->nq, i0 = a.i0, nqv = a.nqv;
    const float *qh = a.q, *kh = a.k;
    const float *vh = a.v;
    float *oh = a.o;
    float *st = j->c->ws[thread]; // S^T (HW, nq)
    blas_sgemm(1, 0, HW, nqv, d, kh, HW, qh + i0, HW, 0.0f, st, nq);
    softmax_cols(st, HW, nqv, nq, j->scale);
    blas_sgemm(0, 0, d, nqv, HW, vh, HW, st, nq, 0.0f, oh + i0, HW);
}

/* phase 2, task (image, head, query block) */
static void attn_task(void *arg, size_t task, int thread) {
    const attn_job *j = arg;
    const attn_block a = attn_block_of(j, task);
    const int HW = j->HW, d = j->d, nq = j->nq, i0 = a.i0, nqv = a.nqv;
    const float *qh = a.q, *kh = a.k;
    float *oh = a.o;
    float *st = j->c->ws[thread];                                // S^T (HW, nq)
    float *ta = st + (size_t)HW * nq, *tb = ta + (size_t)d * 16; // tail panels (d, 16)
    if (nqv < nq) memset(st, 0, (size_t)HW * nq * sizeof *st);
    /* S^T[jk][i] = sum_c k[c][jk] q[c][i0 + i] */
    for (int q0 = 0; q0 < nqv; q0 += 16) {
        const int cols = nqv - q0 < 16 ? nqv - q0 : 16;
        const float *bq = qh + i0 + q0;
        size_t ldb = (size_t)HW;
        if (cols < 16) {
            gemm_pack_panel(bq, 1, (size_t)HW, cols, d, tb);
            bq = tb;
            ldb = 16;
        }
        for (int k0 = 0; k0 < HW; k0 += 16) {
            const int rows = HW - k0 < 16 ? HW - k0 : 16;
            const float *ak = kh + k0;
            size_t lda = (size_t)HW;
            if (rows < 16) {
                gemm_pack_panel(ak, 1, (size_t)HW, rows, d, ta);
                ak = ta;
                lda = 16;
            }
            j->tile(d, ak, lda, bq, ldb, st + (size_t)k0 * nq + q0, (size_t)nq, rows, cols, GEMM_FIRST, NULL);
        }
    }
    softmax_cols(st, HW, nqv, nq, j->scale);
    /* o[c][i0 + i] = sum_jk v[c][jk] S^T[jk][i] */
    const float *vp = j->c->shared + a.bh * (size_t)j->pd * HW * GEMM_MR;
    for (int cp = 0; cp < j->pd; cp++) {
        const int rows = d - cp * GEMM_MR < GEMM_MR ? d - cp * GEMM_MR : GEMM_MR;
        for (int q0 = 0; q0 < nqv; q0 += 16) {
            const int cols = nqv - q0 < 16 ? nqv - q0 : 16;
            j->tile(HW, vp + (size_t)cp * HW * GEMM_MR, GEMM_MR, st + q0, (size_t)nq,
                    oh + (size_t)cp * GEMM_MR * HW + i0 + q0, (size_t)HW, rows, cols, GEMM_FIRST, NULL);
        }
    }
}

void op_attention(const ops_ctx *c, const float *q, const float *k, const float *v, size_t qkv_stride, int B, int C,
                  int HW, int heads, float scale, float *o) {
    attn_job j;
    j.qkv_stride = qkv_stride;
    j.q = q;
    j.k = k;
    j.v = v;
    j.o = o;
    j.c = c;
    j.C = C;
    j.HW = HW;
    j.heads = heads;
    j.d = C / heads;
    j.pd = (j.d + GEMM_MR - 1) / GEMM_MR;
    j.scale = scale;
    j.nq = attn_nq(HW);
    j.n_qb = (HW + j.nq - 1) / j.nq;
    j.tile = c->k->tile;
    if (c->k->blas) {
        tp_run(c->pool, (size_t)B * (size_t)heads * (size_t)j.n_qb, attn_blas_task, &j);
        return;
    }
    tp_run(c->pool, (size_t)B * (size_t)heads * (size_t)j.pd, attn_pack_task, &j);
    tp_run(c->pool, (size_t)B * (size_t)heads * (size_t)j.n_qb, attn_task, &j);
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
            if (flip_sin_to_cos) {
                yb[i] = cv;
                yb[half + i] = sv;
            } else {
                yb[i] = sv;
                yb[half + i] = cv;
            }
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
