/* Kernel micro-benchmark: op_conv2d and op_attention on the layer shapes of W1 (the cifar10
 * architecture, batch 4), timed in CPU time of the calling thread (1 thread: less sensitive to
 * other processes than wall time) and in wall time with N threads. Not part of ctest; build:
 *   cmake --build build --target pndm-kernel-bench && build/pndm-kernel-bench [--threads N]
 *       [--reps R] [--gemm native|openblas] [--kernel avx512|avx2|generic] [--no-winograd]
 *       [--only I] [--kc N] [--pack-strided 0|1]   (one shape; overrides of the cache-derived blocking, for experiments)
 * Prints one line per shape: ms per call (CPU, 1 thread), effective GFLOP/s (direct-convolution
 * FLOPs / time), and the wall time with N threads. */
#define _POSIX_C_SOURCE 200809L
#include "ops.h"
#include "threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct shape {
    const char *name;
    int cin, cout, k, stride, H, W, count; /* count: how many such convolutions one W1 forward runs */
} shape;

/* The convolutions of one forward of the cifar10 UNet (block_out_channels 128, 256, 256, 256;
 * 2 resnets per down level, 3 per up level), grouped by shape. */
static const shape SHAPES[] = {
    {"3x3 128->128 32x32 (wino 4)", 128, 128, 3, 1, 32, 32, 7},
    {"3x3 256->128 32x32 (wino 4)", 256, 128, 3, 1, 32, 32, 2},
    {"3x3 256->256 16x16 (wino 4)", 256, 256, 3, 1, 16, 16, 9},
    {"3x3 512->256 16x16 (wino 4)", 512, 256, 3, 1, 16, 16, 3},
    {"3x3 256->256 8x8 (wino 2)", 256, 256, 3, 1, 8, 8, 9},
    {"3x3 256->256 4x4 (direct)", 256, 256, 3, 1, 4, 4, 12},
    {"3x3 s2 256->256 16->8 (direct)", 256, 256, 3, 2, 16, 16, 1},
    {"1x1 512->256 16x16", 512, 256, 1, 1, 16, 16, 3},
    {"1x1 256->768 16x16 (qkv)", 256, 768, 1, 1, 16, 16, 3},
};

int main(int argc, char **argv) {
    int threads = 2, reps = 5, wino = 1, kc = 0, pack = -1, only = -1;
    gemm_path path = GEMM_PATH_AVX512;
    op_gemm gemm = OP_GEMM_NATIVE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-winograd"))
            wino = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kc") && i + 1 < argc)
            kc = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pack-strided") && i + 1 < argc)
            pack = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gemm") && i + 1 < argc)
            gemm = !strcmp(argv[++i], "openblas") ? OP_GEMM_BLAS : OP_GEMM_NATIVE;
        else if (!strcmp(argv[i], "--kernel") && i + 1 < argc) {
            const char *v = argv[++i];
            path = !strcmp(v, "generic") ? GEMM_PATH_GENERIC : !strcmp(v, "avx2") ? GEMM_PATH_AVX2 : GEMM_PATH_AVX512;
        } else {
            fprintf(stderr,
                    "usage: %s [--threads N] [--reps R] [--gemm native|openblas] [--kernel ISA] [--no-winograd] "
                    "[--kc N] [--pack-strided 0|1] [--only SHAPE_INDEX]\n",
                    argv[0]);
            return 2;
        }
    }
    op_kernels k;
    op_kernels_init(&k, path, gemm, wino);
    if (kc > 0) k.conv_kc = kc; /* overrides of the cache-derived blocking, for experiments */
    if (pack >= 0) k.pack_strided = pack;
    const int B = 4;
    printf("kernels %s, L1d %d KiB, direct k block %d, 1x1 packed %d; batch %d, %d reps, %d threads for the wall "
           "column\n",
           op_kernels_name(&k), k.l1d_bytes / 1024, k.conv_kc, k.pack_strided, B, reps, threads);
    printf("%-32s %10s %10s %10s %8s\n", "shape", "cpu ms/1t", "GFLOP/s", "wall ms/Nt", "x/fwd");
    tp_pool *pool = threads > 1 ? tp_create(threads) : NULL;
    double total_cpu = 0;
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        if (only >= 0 && (size_t)only != s) continue;
        const shape *sh = &SHAPES[s];
        op_conv_geom g = {sh->cin, sh->cout, sh->k, sh->stride, sh->k / 2, sh->k / 2, sh->k / 2, sh->k / 2};
        const int Ho = op_conv_out_size(sh->H, g.k, g.stride, g.pad_t, g.pad_b);
        const int Wo = op_conv_out_size(sh->W, g.k, g.stride, g.pad_l, g.pad_r);
        size_t nx = (size_t)B * sh->cin * sh->H * sh->W, ny = (size_t)B * sh->cout * Ho * Wo;
        size_t nw = (size_t)sh->cout * sh->cin * sh->k * sh->k;
        float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *w = malloc(nw * sizeof *w);
        float *bias = calloc((size_t)sh->cout, sizeof *bias);
        for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < nw; i++) w[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        op_conv_w cw;
        if (!op_conv_init(&cw, &k, &g, w, bias)) return 1;
        size_t ws, shf;
        op_conv2d_ws(&k, &g, sh->H, sh->W, &ws, &shf);
        float **wsp = calloc((size_t)threads, sizeof *wsp);
        float *mem = aligned_alloc(64, ((ws + 16) * (size_t)threads + shf + 16) * sizeof(float));
        for (int t = 0; t < threads; t++) wsp[t] = mem + (size_t)t * (ws + 16);
        ops_ctx c1 = {&k, NULL, wsp, ws, mem + (size_t)threads * (ws + 16), shf};
        ops_ctx cn = c1;
        cn.pool = pool;
        op_conv2d(&c1, &cw, x, B, sh->H, sh->W, NULL, y); /* warm-up */
        double best = 1e30, bestw = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = cpu_s();
            op_conv2d(&c1, &cw, x, B, sh->H, sh->W, NULL, y);
            double t = cpu_s() - t0;
            if (t < best) best = t;
            t0 = wall_s();
            op_conv2d(&cn, &cw, x, B, sh->H, sh->W, NULL, y);
            t = wall_s() - t0;
            if (t < bestw) bestw = t;
        }
        const double flops = 2.0 * B * (double)sh->cout * Ho * Wo * sh->cin * sh->k * sh->k;
        printf("%-32s %10.3f %10.1f %10.3f %8d\n", sh->name, best * 1e3, flops / best / 1e9, bestw * 1e3, sh->count);
        total_cpu += best * sh->count;
        op_conv_free(&cw);
        free(x), free(y), free(w), free(bias), free(wsp), free(mem);
    }
    printf("convolutions of one forward (sum of count x cpu ms): %.1f ms on 1 thread\n", total_cpu * 1e3);
    tp_destroy(pool);
    return 0;
}
