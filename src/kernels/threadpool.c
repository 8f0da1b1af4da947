/* Fork-join thread pool (pthreads). A job is a task count plus a function; tasks are claimed from
 * an atomic counter. A UNet forward runs a few hundred short jobs, so between jobs the workers
 * (and the caller, waiting for them) first poll an atomic job number for a bounded time, and only
 * then sleep on a condition variable: on an idle machine most jobs then start without a system
 * call or a wake-up latency. The polling pauses for the first TP_PAUSE rounds and yields the CPU
 * for the rest (TP_SPIN rounds in all), so that on a busy machine the thread being waited for can
 * run. */
#define _GNU_SOURCE
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define tp_relax() _mm_pause()
#else
#define tp_relax() ((void)0)
#endif

#define TP_PAUSE 256 /* polling rounds with a pause instruction (~10 us) ... */
#define TP_SPIN 512  /* ... then sched_yield() up to this many rounds, then sleep */

static void tp_wait_round(int i) {
    if (i < TP_PAUSE)
        tp_relax();
    else
        sched_yield();
}

struct tp_pool {
    int n_threads; /* including the caller */
    int n_workers; /* started worker threads = n_threads - 1 */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* new job or shutdown */
    pthread_cond_t done;     /* the last worker finished the current job */
    atomic_ulong generation; /* incremented per job (release: the job fields are set) */
    atomic_int shutdown;
    atomic_int active; /* workers still running the current job */
    /* current job */
    tp_task_fn fn;
    void *arg;
    size_t n_tasks;
    atomic_size_t next;
};

typedef struct {
    tp_pool *pool;
    int index; /* thread index 1..n_workers */
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
    for (;;) {
        /* wait for a new job: spin, then sleep */
        for (int i = 0; i < TP_SPIN && atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
             !atomic_load_explicit(&p->shutdown, memory_order_relaxed);
             i++)
            tp_wait_round(i);
        if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->shutdown) && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->shutdown)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        tp_drain(p, index);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

tp_pool *tp_create(int n_threads) {
    tp_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (n_threads < 1) n_threads = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->shutdown, 0);
    atomic_init(&p->active, 0);
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
    atomic_store(&p->shutdown, 1);
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
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->active, p->n_workers, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    tp_drain(p, 0);
    for (int i = 0; i < TP_SPIN && atomic_load_explicit(&p->active, memory_order_acquire) > 0; i++) tp_wait_round(i);
    if (atomic_load_explicit(&p->active, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ---- the default thread count ----------------------------------------------------------- */
static pthread_once_t tp_default_once = PTHREAD_ONCE_INIT;
static int tp_default = 1;

static int read_int_file(const char *path, int *v) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%d", v) == 1;
    fclose(f);
    return ok;
}

/* Physical cores among the CPUs this process may run on: distinct (package, core) pairs from
 * sysfs, else the CPU count. */
static void tp_default_init(void) {
    cpu_set_t set;
    int n_cpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n_cpus = CPU_COUNT(&set);
    if (n_cpus < 1) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_cpus = n > 0 ? (int)n : 1;
        CPU_ZERO(&set);
        for (int i = 0; i < n_cpus && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    }
    int pairs[CPU_SETSIZE][2], n_pairs = 0, complete = 1;
    for (int cpu = 0; cpu < CPU_SETSIZE && complete; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        char path[128];
        int pkg, core;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/physical_package_id", cpu);
        if (!read_int_file(path, &pkg)) {
            complete = 0;
            break;
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/core_id", cpu);
        if (!read_int_file(path, &core)) {
            complete = 0;
            break;
        }
        int seen = 0;
        for (int i = 0; i < n_pairs && !seen; i++) seen = pairs[i][0] == pkg && pairs[i][1] == core;
        if (!seen) {
            pairs[n_pairs][0] = pkg;
            pairs[n_pairs][1] = core;
            n_pairs++;
        }
    }
    int n = complete && n_pairs > 0 ? n_pairs : n_cpus;
    tp_default = n < 1 ? 1 : (n > TP_MAX_THREADS ? TP_MAX_THREADS : n);
}

int tp_default_threads(void) {
    pthread_once(&tp_default_once, tp_default_init);
    return tp_default;
}
