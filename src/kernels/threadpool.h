/* A small fork-join thread pool: tp_run(pool, n, fn, arg) calls fn(arg, task, thread) for every
 * task in [0, n) on the pool's threads (the caller is thread 0) and returns when all are done.
 *
 * Determinism contract: tasks are claimed dynamically, so a task must compute the same bytes
 * whichever thread runs it; callers partition work by image and fixed-size blocks (never by
 * thread count) and use the thread index only to pick a private scratch buffer. */
#ifndef PNDM_THREADPOOL_H
#define PNDM_THREADPOOL_H

#include <stddef.h>

typedef struct tp_pool tp_pool;
typedef void (*tp_task_fn)(void *arg, size_t task, int thread);

/* A pool of n_threads threads in all (the caller counts as one; n_threads <= 1 starts none).
 * If the system refuses to start some threads the pool runs with fewer (tp_threads says how
 * many). NULL only when out of memory. */
tp_pool *tp_create(int n_threads);
void tp_destroy(tp_pool *p);
int tp_threads(const tp_pool *p); /* 1 for a NULL pool */
/* Runs fn for tasks 0..n-1; a NULL pool runs them in order on the caller. Not re-entrant:
 * fn must not call tp_run on the same pool. */
void tp_run(tp_pool *p, size_t n_tasks, tp_task_fn fn, void *arg);

/* Most threads a pool is given (larger requests are clamped by the callers). */
#define TP_MAX_THREADS 256
/* The number of physical cores among the CPUs this process may run on (SMT siblings count
 * once; the CPU count when sysfs does not tell), clamped to [1, TP_MAX_THREADS]. */
int tp_default_threads(void);

#endif
