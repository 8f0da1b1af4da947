/* fma_peak.c — measured fp32 FMA peak of this machine, per core and for several threads.
 *
 * Build (what run_bench.py does; the kernels need their own object with the ISA flags):
 *   cc -O2 -mavx512f -mavx2 -mfma -c bench/fma_peak_kernels.c -o build-bench/fma_peak_kernels.o
 *   cc -O2 -std=c11 -pthread bench/fma_peak.c build-bench/fma_peak_kernels.o -o build-bench/fma_peak
 * Run:
 *   build-bench/fma_peak [--seconds S] [--repeats R] [--threads 1,2] [--json]
 *
 * Each thread runs independent FMA chains (fma_peak_kernels.c) for about S seconds; the best
 * of R repeats is reported, in GFLOP/s (one FMA = 2 flops), for the AVX-512 and the AVX2 loop,
 * each only when __builtin_cpu_supports says the CPU has it. Several threads start together at
 * a barrier; their rate is all their flops over the span from the first start to the last end.
 * Threads are not pinned: run it on an otherwise idle machine. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_peak.h"

typedef float (*fma_kernel)(long iters, float seed);

typedef struct {
    fma_kernel fn;
    long iters;
    pthread_barrier_t *barrier;
    double t0, t1;
    float sink;
} fma_job;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *fma_worker(void *arg) {
    fma_job *j = arg;
    pthread_barrier_wait(j->barrier);
    j->t0 = now_s();
    j->sink = j->fn(j->iters, (float)j->t0 * 1e-9f);
    j->t1 = now_s();
    return NULL;
}

/* One timed run of `nthreads` threads: returns GFLOP/s, or a negative value on failure. */
static double fma_run(fma_kernel fn, double flops_per_iter, long iters, int nthreads, float *sink) {
    pthread_t th[64];
    fma_job jobs[64];
    pthread_barrier_t barrier;
    if (nthreads < 1 || nthreads > 64 || pthread_barrier_init(&barrier, NULL, (unsigned)nthreads)) return -1.0;
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (fma_job){fn, iters, &barrier, 0.0, 0.0, 0.0f};
        if (pthread_create(&th[i], NULL, fma_worker, &jobs[i])) break;
        started++;
    }
    if (started < nthreads) { /* cannot happen in practice; the barrier would hang, so give up */
        fprintf(stderr, "fma_peak: cannot start %d threads\n", nthreads);
        exit(1);
    }
    double t0 = 1e300, t1 = 0.0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].t0 < t0) t0 = jobs[i].t0;
        if (jobs[i].t1 > t1) t1 = jobs[i].t1;
        *sink += jobs[i].sink;
    }
    pthread_barrier_destroy(&barrier);
    return flops_per_iter * (double)iters * nthreads / (t1 - t0) * 1e-9;
}

/* Iterations for about `seconds` on one thread. */
static long fma_calibrate(fma_kernel fn, double seconds, float *sink) {
    long iters = 1000;
    for (;;) {
        double t0 = now_s();
        *sink += fn(iters, 0.5f);
        double dt = now_s() - t0;
        if (dt > 0.02 || iters > (1L << 40)) {
            double want = (double)iters * seconds / dt;
            return want < 1000.0 ? 1000 : (long)want;
        }
        iters *= 4;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: fma_peak [--seconds S] [--repeats R] [--threads LIST] [--json]\n"
            "  --seconds S     length of one timed run per thread (default 0.5)\n"
            "  --repeats R     timed runs per case, best reported (default 5)\n"
            "  --threads LIST  comma-separated thread counts (default 1,2)\n"
            "  --json          print one JSON object on stdout instead of a table\n");
}

int main(int argc, char **argv) {
    double seconds = 0.5;
    int repeats = 5, json = 0;
    int threads[16] = {1, 2}, nthr = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            repeats = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthr = 0;
            for (char *s = argv[++i]; *s && nthr < 16;) {
                char *end;
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > 64) {
                    usage();
                    return 2;
                }
                threads[nthr++] = (int)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    usage();
                    return 2;
                }
            }
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            usage();
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (!(seconds > 0.0) || seconds > 60.0 || repeats < 1 || repeats > 1000 || nthr < 1) {
        usage();
        return 2;
    }

    __builtin_cpu_init();
    struct {
        const char *name;
        int ok;
        fma_kernel fn;
        double fpi;
    } isa[2] = {
        {"avx512", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"), fma_peak_avx512,
         FMA_PEAK_AVX512_FLOPS_PER_ITER},
        {"avx2", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), fma_peak_avx2,
         FMA_PEAK_AVX2_FLOPS_PER_ITER},
    };
    float sink = 0.0f;
    if (json) printf("{\"seconds\": %g, \"repeats\": %d, \"results\": [", seconds, repeats);
    int first = 1;
    for (int k = 0; k < 2; k++) {
        if (!isa[k].ok) {
            if (!json) printf("%-7s not supported by this CPU\n", isa[k].name);
            continue;
        }
        long iters = fma_calibrate(isa[k].fn, seconds, &sink);
        for (int t = 0; t < nthr; t++) {
            double best = 0.0;
            for (int r = 0; r < repeats; r++) {
                double g = fma_run(isa[k].fn, isa[k].fpi, iters, threads[t], &sink);
                if (g > best) best = g;
            }
            if (json)
                printf("%s{\"isa\": \"%s\", \"threads\": %d, \"gflops\": %.2f, \"gflops_per_thread\": %.2f}",
                       first ? "" : ", ", isa[k].name, threads[t], best, best / threads[t]);
            else
                printf("%-7s %2d thread%s %8.1f GFLOP/s  (%.1f per thread)\n", isa[k].name, threads[t],
                       threads[t] == 1 ? " " : "s", best, best / threads[t]);
            first = 0;
        }
    }
    if (json) printf("], \"sink\": %g}\n", (double)sink);
    return 0;
}
