/* fma_peak_kernels.c — the inner loops of fma_peak (see fma_peak.c).
 *
 * Compiled on its own with -O2 -mavx512f -mavx2 -mfma; fma_peak.c calls these functions only
 * after __builtin_cpu_supports has confirmed the instructions exist. Each loop runs independent
 * FMA chains (acc = acc * m + c) so that the FMA latency is hidden: 16 zmm chains (AVX-512) or
 * 12 ymm chains (AVX2), more than latency (4 cycles) x FMA pipes (2) on current x86 cores.
 * Without -ffast-math the compiler can neither reassociate nor drop the chains. */
#include <immintrin.h>

#include "fma_peak.h"

/* 16 chains x 16 lanes x 2 flops = 512 flops per iteration. */
float fma_peak_avx512(long iters, float seed) {
    const __m512 m = _mm512_set1_ps(0.99999994f), c = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(seed + 0.01f), a1 = _mm512_set1_ps(seed + 0.02f);
    __m512 a2 = _mm512_set1_ps(seed + 0.03f), a3 = _mm512_set1_ps(seed + 0.04f);
    __m512 a4 = _mm512_set1_ps(seed + 0.05f), a5 = _mm512_set1_ps(seed + 0.06f);
    __m512 a6 = _mm512_set1_ps(seed + 0.07f), a7 = _mm512_set1_ps(seed + 0.08f);
    __m512 a8 = _mm512_set1_ps(seed + 0.09f), a9 = _mm512_set1_ps(seed + 0.10f);
    __m512 a10 = _mm512_set1_ps(seed + 0.11f), a11 = _mm512_set1_ps(seed + 0.12f);
    __m512 a12 = _mm512_set1_ps(seed + 0.13f), a13 = _mm512_set1_ps(seed + 0.14f);
    __m512 a14 = _mm512_set1_ps(seed + 0.15f), a15 = _mm512_set1_ps(seed + 0.16f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c);
        a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c);
        a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c);
        a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c);
        a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c);
        a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c);
        a15 = _mm512_fmadd_ps(a15, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s,
                      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                    _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}

/* 12 chains x 8 lanes x 2 flops = 192 flops per iteration. */
float fma_peak_avx2(long iters, float seed) {
    const __m256 m = _mm256_set1_ps(0.99999994f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(seed + 0.01f), a1 = _mm256_set1_ps(seed + 0.02f);
    __m256 a2 = _mm256_set1_ps(seed + 0.03f), a3 = _mm256_set1_ps(seed + 0.04f);
    __m256 a4 = _mm256_set1_ps(seed + 0.05f), a5 = _mm256_set1_ps(seed + 0.06f);
    __m256 a6 = _mm256_set1_ps(seed + 0.07f), a7 = _mm256_set1_ps(seed + 0.08f);
    __m256 a8 = _mm256_set1_ps(seed + 0.09f), a9 = _mm256_set1_ps(seed + 0.10f);
    __m256 a10 = _mm256_set1_ps(seed + 0.11f), a11 = _mm256_set1_ps(seed + 0.12f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
