/* load_time.c - what pndm_model_load costs: wall and process CPU time of N loads of one model
 * (the weights id, pndm_model_sha256, is computed in the load's NaN/Inf scan), medians.
 *   cc -O2 -Iinclude bench/load_time.c build/libpndm.a -lpng -lcjson -lpthread -lm -o load_time
 *   ./load_time build-bench/models/cifar10.safetensors 9      (bench/make_models.py makes it) */
#include "pndm.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: load_time MODEL [N]\n"), 2;
    int n = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1 || n > 1000) n = 7;
    double *wall = malloc(sizeof *wall * (size_t)n), *cpu = malloc(sizeof *cpu * (size_t)n);
    if (!wall || !cpu) return 1;
    char id[65] = "";
    for (int i = 0; i < n; i++) {
        pndm_error err;
        pndm_model *m;
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        if (pndm_model_load(argv[1], &m, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        wall[i] = now(CLOCK_MONOTONIC) - w0;
        cpu[i] = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        snprintf(id, sizeof id, "%s", pndm_model_sha256(m));
        pndm_model_free(m);
    }
    qsort(wall, (size_t)n, sizeof *wall, cmp);
    qsort(cpu, (size_t)n, sizeof *cpu, cmp);
    printf("%s: %d loads, median wall %.1f ms, median process CPU %.1f ms, weights sha256 %s\n", argv[1], n,
           1e3 * wall[n / 2], 1e3 * cpu[n / 2], id);
    free(wall);
    free(cpu);
    return 0;
}
