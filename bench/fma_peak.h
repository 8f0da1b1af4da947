/* fma_peak.h — kernels of the FMA peak benchmark (fma_peak_kernels.c, built with
 * -mavx512f -mavx2 -mfma). Call them only after checking CPU support. */
#ifndef FMA_PEAK_H
#define FMA_PEAK_H

#define FMA_PEAK_AVX512_FLOPS_PER_ITER 512.0 /* 16 chains x 16 lanes x 2 */
#define FMA_PEAK_AVX2_FLOPS_PER_ITER 192.0   /* 12 chains x 8 lanes x 2 */

float fma_peak_avx512(long iters, float seed);
float fma_peak_avx2(long iters, float seed);

#endif
