// ctest-label: unit;threads
/* Concurrent use of the library as pndm.h allows it: pndm_unet_forward from several threads at
 * once on one model and on two models, and pndm_generate beside them; every result must be
 * byte-identical to the same call made alone. The threads start before any forward has run in
 * the process, so whatever the kernels initialise lazily is first touched concurrently: under
 * ThreadSanitizer (the `threads` label, CONTRIBUTING.md) this is the race check of everything
 * forwards share (the model, the kernel choices, the thread pools). */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "npy_util.h"
#include "pndm.h"
#include "pndm_io.h"

#include <pthread.h>
#include <stdint.h>

#define UDATA PNDM_TEST_DATA "/unet"
#define REPS 2

/* one model's test input: sample (B, C, H, W), t (B) */
typedef struct input {
    pndm_model *m;
    float *x, *t;
    int B, H, W;
    size_t out_n;
} input;

static int input_load(input *in, const char *name) {
    char path[512];
    pndm_error err;
    snprintf(path, sizeof path, UDATA "/%s/model", name);
    if (pndm_model_load(path, &in->m, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return 0;
    }
    pndm_npy meta;
    size_t n, nt;
    snprintf(path, sizeof path, UDATA "/%s/sample.npy", name);
    in->x = test_npy_f32_or_exit(path, &n, &meta);
    snprintf(path, sizeof path, UDATA "/%s/t_batch.npy", name);
    in->t = test_npy_f32_or_exit(path, &nt, NULL);
    in->B = (int)meta.shape[0];
    in->H = (int)meta.shape[2];
    in->W = (int)meta.shape[3];
    in->out_n = (size_t)in->B * pndm_model_out_channels(in->m) * in->H * in->W;
    CHECK((size_t)in->B == nt);
    return 1;
}

static void input_free(input *in) {
    pndm_model_free(in->m);
    free(in->x);
    free(in->t);
}

typedef struct job {
    const input *in; /* a forward of this input, REPS times ... */
    int gen;         /* ... or a 4-step pndm_generate of 2 images with this model */
    int n_threads;
    pthread_barrier_t *start;
    float *out[REPS]; /* results */
    size_t n;
    pndm_status st;
} job;

static pndm_gen_params gen_params(const pndm_model *m, pndm_scheduler_config *cfg, int n_threads, size_t *n) {
    pndm_gen_params p = pndm_gen_default_params();
    p.steps = 4;
    p.batch = 2;
    p.seed = 5;
    p.n_threads = n_threads;
    p.scheduler = cfg;
    *n = pndm_gen_latent_count(m, &p);
    return p;
}

static void run_job(job *j) {
    pndm_error err;
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    j->st = PNDM_OK;
    for (int r = 0; r < REPS && !j->st; r++) {
        if (j->gen) {
            pndm_gen_params p = gen_params(j->in->m, &cfg, j->n_threads, &j->n);
            j->out[r] = malloc(j->n * sizeof(float));
            j->st = pndm_generate(j->in->m, &p, NULL, j->out[r], &err);
        } else {
            j->n = j->in->out_n;
            j->out[r] = malloc(j->n * sizeof(float));
            j->st = pndm_unet_forward(j->in->m, j->in->x, j->in->B, j->in->H, j->in->W, j->in->t, j->out[r],
                                      j->n_threads, &err);
        }
        if (j->st) fprintf(stderr, "%s\n", err.msg);
    }
}

static void *thread_main(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start);
    run_job(j);
    return NULL;
}

static void job_free(job *j) {
    for (int r = 0; r < REPS; r++) free(j->out[r]);
}

int main(void) {
    input a, b;
    if (!input_load(&a, "c_gray") || !input_load(&b, "e_fourier_skip")) return TEST_SUMMARY();
    /* two forwards on one model (the second gets its own workspace), one on another model, a
     * generation beside them on the first model (the fourier model cannot run a PNDM loop down to
 * t = 0); the pools have 2 threads each */
    job jobs[] = {
        {&a, 0, 2, NULL, {NULL}, 0, 0},
        {&a, 0, 2, NULL, {NULL}, 0, 0},
        {&b, 0, 2, NULL, {NULL}, 0, 0},
        {&a, 1, 2, NULL, {NULL}, 0, 0},
    };
    enum { N = sizeof jobs / sizeof jobs[0] };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i].start = &start;
        CHECK(pthread_create(&th[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    /* the same calls alone, one after the other */
    for (int i = 0; i < N; i++) {
        CHECK_MSG(jobs[i].st == PNDM_OK, "concurrent job %d failed", i);
        job alone = jobs[i];
        memset(alone.out, 0, sizeof alone.out);
        run_job(&alone);
        CHECK_MSG(alone.st == PNDM_OK && alone.n == jobs[i].n, "job %d alone failed", i);
        for (int r = 0; r < REPS && alone.st == PNDM_OK && jobs[i].st == PNDM_OK; r++)
            CHECK_MSG(memcmp(alone.out[r], jobs[i].out[r], alone.n * sizeof(float)) == 0,
                      "job %d (%s, %s) repetition %d: concurrent result differs from the same call alone", i,
                      jobs[i].in == &a ? "c_gray" : "e_fourier_skip", jobs[i].gen ? "generate" : "forward", r);
        job_free(&alone);
        job_free(&jobs[i]);
    }
    printf("%d concurrent jobs x %d calls: each byte-identical to the call alone\n", N, REPS);
    input_free(&a);
    input_free(&b);
    return TEST_SUMMARY();
}
