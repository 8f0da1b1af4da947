/* Model load time: pndm_model_load + pndm_model_free of each model given, RUNS rounds with the
 * models interleaved (round-robin, so a busy machine slows them alike); wall and CPU (user + sys)
 * milliseconds, median and min. --cold drops the page cache of each model's files before every
 * load (posix_fadvise DONTNEED on every file under the path, symlinks followed; no root needed,
 * nothing else evicted).
 *   load_formats [--cold] RUNS MODEL...        (bench/load_formats.py builds and runs it) */
#define _XOPEN_SOURCE 700
#include "pndm.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int drop(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (type != FTW_F) return 0;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_ms(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return 1e3 * ((double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec) +
        1e-3 * ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec);
}

int main(int argc, char **argv) {
    int a = 1, cold = 0;
    if (a < argc && strcmp(argv[a], "--cold") == 0) cold = 1, a++;
    if (argc - a < 2) {
        fprintf(stderr, "usage: load_formats [--cold] RUNS MODEL...\n");
        return 2;
    }
    const int runs = atoi(argv[a++]), n = argc - a;
    if (runs < 1 || runs > 1000) return 2;
    double *wall = calloc((size_t)(runs * n), sizeof *wall), *cpu = calloc((size_t)(runs * n), sizeof *cpu);
    size_t *params = calloc((size_t)n, sizeof *params);
    for (int r = 0; r < runs; r++)
        for (int k = 0; k < n; k++) {
            if (cold) nftw(argv[a + k], drop, 16, 0);
            struct timespec t0, t1;
            pndm_model *m = NULL;
            pndm_error err;
            double c0 = cpu_ms();
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (pndm_model_load(argv[a + k], &m, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            params[k] = pndm_model_param_count(m);
            pndm_model_free(m);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            wall[k * runs + r] = 1e3 * ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
            cpu[k * runs + r] = cpu_ms() - c0;
        }
    for (int k = 0; k < n; k++) {
        double *w = wall + k * runs, *c = cpu + k * runs;
        qsort(w, (size_t)runs, sizeof *w, cmp);
        qsort(c, (size_t)runs, sizeof *c, cmp);
        printf("%s\t%s\t%zu params\twall median %.1f ms (min %.1f)\tcpu median %.1f ms (min %.1f)\t%d runs\n",
               argv[a + k], cold ? "cold" : "warm", params[k], w[runs / 2], w[0], c[runs / 2], c[0], runs);
    }
    free(wall);
    free(cpu);
    free(params);
    return 0;
}
