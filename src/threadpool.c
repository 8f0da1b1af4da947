/* Fork-join thread pool (pthreads). Workers sleep on a condition variable between jobs; a job
 * is a task count plus a function, and tasks are claimed from an atomic counter. */
#define _POSIX_C_SOURCE 200809L
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct tp_pool {
    int n_threads;            /* including the caller */
    int n_workers;            /* started worker threads = n_threads - 1 */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* new job or shutdown */
    pthread_cond_t done;      /* a worker finished its share */
    unsigned long generation; /* incremented per job */
    int shutdown;
    int active;               /* workers still running the current job */
    /* current job */
    tp_task_fn fn;
    void *arg;
    size_t n_tasks;
    atomic_size_t next;
};

typedef struct {
    tp_pool *pool;
    int index;                /* thread index 1..n_workers */
} tp_worker_arg;

static void tp_drain(tp_pool *p, int thread) {
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->arg, t, thread);
    }
}

static void *tp_worker(void *varg) {
    tp_worker_arg *wa = varg;
    tp_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        tp_drain(p, index);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

tp_pool *tp_create(int n_threads) {
    tp_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (n_threads < 1) n_threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    p->n_threads = 1;
    if (n_threads > 1) {
        p->workers = calloc((size_t)(n_threads - 1), sizeof *p->workers);
        if (!p->workers) {
            tp_destroy(p);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            tp_worker_arg *wa = malloc(sizeof *wa);
            if (!wa) break;
            wa->pool = p;
            wa->index = i + 1;
            if (pthread_create(&p->workers[i], NULL, tp_worker, wa) != 0) {
                free(wa);
                break;
            }
            p->n_workers++;
        }
        p->n_threads = 1 + p->n_workers;
    }
    return p;
}

void tp_destroy(tp_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int tp_threads(const tp_pool *p) { return p ? p->n_threads : 1; }

void tp_run(tp_pool *p, size_t n_tasks, tp_task_fn fn, void *arg) {
    if (n_tasks == 0) return;
    if (!p || p->n_workers == 0 || n_tasks == 1) {
        for (size_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->active = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    tp_drain(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
