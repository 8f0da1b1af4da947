/* Model load time: pndm_model_load + pndm_model_free of each model given, RUNS times, median and
 * min in milliseconds; --cold drops the page cache of the model's files before every run
 * (posix_fadvise DONTNEED on each file under the path, no root needed, nothing else evicted).
 *   load_time [--cold] RUNS MODEL...        (bench/load_time.py builds and runs it) */
#define _XOPEN_SOURCE 700
#include "pndm.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int drop(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (type != FTW_F) return 0;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int a = 1, cold = 0;
    if (a < argc && strcmp(argv[a], "--cold") == 0) cold = 1, a++;
    if (argc - a < 2) {
        fprintf(stderr, "usage: load_time [--cold] RUNS MODEL...\n");
        return 2;
    }
    int runs = atoi(argv[a++]);
    if (runs < 1 || runs > 1000) return 2;
    for (; a < argc; a++) {
        double *t = malloc((size_t)runs * sizeof *t);
        size_t params = 0;
        for (int r = 0; r < runs; r++) {
            if (cold) nftw(argv[a], drop, 16, 0); /* follows symlinks: Hub blobs too */
            struct timespec t0, t1;
            pndm_model *m = NULL;
            pndm_error err;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (pndm_model_load(argv[a], &m, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            params = pndm_model_param_count(m);
            pndm_model_free(m);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            t[r] = 1e3 * ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        }
        qsort(t, (size_t)runs, sizeof *t, cmp);
        printf("%s\t%s\t%zu params\tmedian %.1f ms\tmin %.1f ms\tmax %.1f ms\t(%d runs)\n", argv[a], cold ? "cold" : "warm",
               params, t[runs / 2], t[0], t[runs - 1], runs);
        free(t);
    }
    return 0;
}
