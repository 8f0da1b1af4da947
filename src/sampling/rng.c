/* PyTorch-identical CPU noise: torch 1.13's at::mt19937 generator and torch.randn's
 * normal_kernel (aten/src/ATen/native/cpu/DistributionTemplates.h), x86-64 AVX2 build.
 *
 * Two paths, chosen like torch's normal_kernel by the element count:
 *   n >= 16: normal_fill_AVX2 - float uniforms from 24 bits of one word each, Box-Muller on
 *            chunks of 16 (lanes j and j+8 pair up), the last 16 redrawn and recomputed when
 *            n % 16 != 0. log/sin/cos are avx_mathfun.h's Cephes polynomials log256_ps and
 *            sincos256_ps, with the FMAs GCC 12 contracts in torch's build (-mavx2 -mfma,
 *            -ffp-contract=fast) written out as fmaf() calls. Everything else must not fuse:
 *            this file is compiled with -ffp-contract=off (CMakeLists.txt).
 *   n < 16:  at::normal_distribution<double> element by element: 53-bit uniforms from
 *            random64(), glibc log/sin/cos in double, the second value of each pair cached in
 *            the generator (across calls, cleared by seeding).
 * See shared golden NOTES.md §1 for the derivation; tests/test_rng.c checks bit equality.
 */
#include "rng.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* MT19937 (at::mt19937_engine: init_genrand from the low 32 bits of the seed, standard
 * tempering).                                                                               */

enum { MT_N = 624, MT_M = 397 };
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UMASK 0x80000000u
#define MT_LMASK 0x7fffffffu

void pndm_rng_seed(pndm_rng *r, uint64_t seed) {
    r->seed = seed;
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t j = 1; j < MT_N; j++) r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + j;
    r->mti = MT_N; /* the first draw regenerates the state */
    r->has_cached = 0;
    r->cached = 0.0;
}

static uint32_t mt_twist(uint32_t u, uint32_t v) {
    return (((u & MT_UMASK) | (v & MT_LMASK)) >> 1) ^ ((v & 1u) ? MT_MATRIX_A : 0u);
}

static void mt_next_state(pndm_rng *r) {
    uint32_t *s = r->mt;
    int j = 0;
    for (; j < MT_N - MT_M; j++) s[j] = s[j + MT_M] ^ mt_twist(s[j], s[j + 1]);
    for (; j < MT_N - 1; j++) s[j] = s[j + MT_M - MT_N] ^ mt_twist(s[j], s[j + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ mt_twist(s[MT_N - 1], s[0]);
    r->mti = 0;
}

uint32_t pndm_rng_u32(pndm_rng *r) {
    if (r->mti >= MT_N || r->mti < 0) mt_next_state(r);
    uint32_t y = r->mt[r->mti++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* CPUGeneratorImpl::random64: first word in the high half. */
static uint64_t rng_u64(pndm_rng *r) {
    uint64_t hi = pndm_rng_u32(r);
    uint64_t lo = pndm_rng_u32(r);
    return (hi << 32) | lo;
}

/* uniform_real_distribution<float>(0, 1): 24 low bits, k / 2^24 (exact). */
static float rng_uniform_f32(pndm_rng *r) { return (float)(pndm_rng_u32(r) & 0xFFFFFFu) * (1.0f / 16777216.0f); }

/* uniform_real_distribution<double>(0, 1): 53 low bits of random64(), k / 2^53 (exact). */
static double rng_uniform_f64(pndm_rng *r) {
    return (double)(rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------------------------------- */
/* avx_mathfun.h, one lane at a time.                                                        */

#if defined(__GNUC__)
#define RNG_INLINE static inline __attribute__((always_inline))
#else
#define RNG_INLINE static inline
#endif

RNG_INLINE uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
RNG_INLINE float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* log256_ps for x in (0, 1] (the only inputs Box-Muller gives it: 1 - k/2^24). */
RNG_INLINE float rng_log_cephes(float x) {
    const float min_norm_pos = u2f(0x00800000u);
    if (x < min_norm_pos) x = min_norm_pos; /* _mm256_max_ps(x, min_norm_pos) */
    uint32_t bits = f2u(x);
    float e = (float)((int32_t)(bits >> 23) - 0x7f);
    e = e + 1.0f;
    float m = u2f((bits & ~0x7f800000u) | 0x3f000000u); /* mantissa in [0.5, 1) */
    /* if (m < SQRTHF) { e -= 1; m = m + m - 1 } else m = m - 1, as (m - 1) + (m or +0) */
    int lt = m < 0.707106781186547524f;
    float tmp = lt ? m : 0.0f;
    m = m - 1.0f;
    e = e - (lt ? 1.0f : 0.0f);
    m = m + tmp;

    float z = m * m;
    float y = 7.0376836292E-2f;
    y = fmaf(y, m, -1.1514610310E-1f);
    y = fmaf(y, m, 1.1676998740E-1f);
    y = fmaf(y, m, -1.2420140846E-1f);
    y = fmaf(y, m, 1.4249322787E-1f);
    y = fmaf(y, m, -1.6668057665E-1f);
    y = fmaf(y, m, 2.0000714765E-1f);
    y = fmaf(y, m, -2.4999993993E-1f);
    y = fmaf(y, m, 3.3333331174E-1f);
    y = y * m;
    float eq1 = e * -2.12194440e-4f;
    y = fmaf(y, z, eq1);
    float hz = z * 0.5f;
    y = y - hz;
    float out = m + y;
    return fmaf(e, 0.693359375f, out);
}

/* sincos256_ps for x >= 0 (theta = 2pi * u, u in [0, 1)). */
RNG_INLINE void rng_sincos_cephes(float x, float *s_out, float *c_out) {
    uint32_t sign_bit_sin = f2u(x) & 0x80000000u;
    x = u2f(f2u(x) & 0x7fffffffu);
    float y = x * 1.27323954473516f; /* 4/pi */
    int32_t j = (int32_t)y;          /* cvttps: truncation */
    j = (j + 1) & ~1;
    y = (float)j;
    uint32_t swap_sign_bit_sin = ((uint32_t)j & 4u) << 29;
    int poly_mask = ((uint32_t)j & 2u) == 0;

    /* extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3 */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);

    uint32_t sign_bit_cos = (~(uint32_t)(j - 2) & 4u) << 29;
    sign_bit_sin ^= swap_sign_bit_sin;

    float z = x * x;
    /* cos polynomial (0 <= x <= pi/4) */
    float c = fmaf(2.443315711809948E-5f, z, -1.388731625493765E-3f);
    c = fmaf(c, z, 4.166664568298827E-2f);
    c = c * z;
    float hz = z * 0.5f;
    c = fmaf(c, z, -hz);
    c = c + 1.0f;
    /* sin polynomial */
    float s = fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
    s = fmaf(s, z, -1.6666654611E-1f);
    s = s * z;
    s = fmaf(s, x, x);

    /* select, as the and/andnot/sub/add sequence (keeps the signs of zeros identical) */
    float ysin2 = poly_mask ? s : 0.0f;
    float ysin1 = poly_mask ? 0.0f : c;
    s = s - ysin2;
    c = c - ysin1;
    float xmm1 = ysin1 + ysin2;
    float xmm2 = c + s;
    *s_out = u2f(f2u(xmm1) ^ sign_bit_sin);
    *c_out = u2f(f2u(xmm2) ^ sign_bit_cos);
}

/* normal_fill_16_AVX2 on data[0..15] (uniforms in, normals out), mean 0, std 1. */
RNG_INLINE void rng_fill16(float *data) {
    const float two_pi = (float)(2.0f * 3.14159265358979323846); /* 6.2831855f */
    float out[16];
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - data[j];
        float u2 = data[j + 8];
        float lg = rng_log_cephes(u1);
        float radius = sqrtf(-2.0f * lg);
        float theta = two_pi * u2;
        float sn, cs;
        rng_sincos_cephes(theta, &sn, &cs);
        float n1 = radius * cs;
        float n2 = radius * sn;
        out[j] = n1 + 0.0f; /* fmadd(n, std = 1, mean = 0): turns -0 into +0 */
        out[j + 8] = n2 + 0.0f;
    }
    memcpy(data, out, sizeof out);
}

/* normal_fill_16_AVX2 on `chunks` consecutive chunks of 16. fmaf() is correctly rounded
 * everywhere, so both versions give the same bits; on x86-64 CPUs with AVX2+FMA the second one
 * turns each fmaf() into one instruction instead of a libm call (1x3x256x256: 2.5 ms instead of
 * 5.9 ms). rng_randn_portable (rng.h) forces the first, for the tests. */
static void rng_fill_chunks_generic(float *data, size_t chunks) {
    for (size_t c = 0; c < chunks; c++) rng_fill16(data + 16 * c);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define RNG_HAVE_FMA_CLONE 1
__attribute__((target("avx2,fma"))) static void rng_fill_chunks_fma(float *data, size_t chunks) {
    for (size_t c = 0; c < chunks; c++) rng_fill16(data + 16 * c);
}
#endif

static void rng_fill_chunks(float *data, size_t chunks, int allow_fma) {
#ifdef RNG_HAVE_FMA_CLONE
    if (allow_fma && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        rng_fill_chunks_fma(data, chunks);
        return;
    }
#else
    (void)allow_fma;
#endif
    rng_fill_chunks_generic(data, chunks);
}

/* at::normal_distribution<double>(0, 1) with the generator's cached second value. */
static double rng_normal_f64(pndm_rng *r) {
    if (r->has_cached) {
        r->has_cached = 0;
        return r->cached * 1.0 + 0.0;
    }
    double u1 = rng_uniform_f64(r);
    double u2 = rng_uniform_f64(r);
    double rad = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    r->cached = rad * sin(theta);
    r->has_cached = 1;
    double ret = rad * cos(theta);
    return ret * 1.0 + 0.0; /* transformation::normal(ret, mean 0, std 1) */
}

static void rng_randn(pndm_rng *r, float *out, size_t n, int allow_fma) {
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)rng_normal_f64(r);
        return;
    }
    // out: (n,) first the uniforms, then transformed in place chunk by chunk
    for (size_t i = 0; i < n; i++) out[i] = rng_uniform_f32(r);
    rng_fill_chunks(out, n / 16, allow_fma);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = rng_uniform_f32(r);
        rng_fill_chunks(tail, 1, allow_fma);
    }
}

void pndm_randn(pndm_rng *r, float *out, size_t n) { rng_randn(r, out, n, 1); }

void rng_randn_portable(pndm_rng *r, float *out, size_t n) { rng_randn(r, out, n, 0); }

void pndm_randn_batch(uint64_t seed, int per_image, int B, size_t per_image_count, float *out) {
    pndm_rng r;
    if (B <= 0) return;
    if (!per_image) {
        pndm_rng_seed(&r, seed);
        pndm_randn(&r, out, (size_t)B * per_image_count);
        return;
    }
    for (int i = 0; i < B; i++) {
        pndm_rng_seed(&r, seed + (uint64_t)i);
        pndm_randn(&r, out + (size_t)i * per_image_count, per_image_count);
    }
}
