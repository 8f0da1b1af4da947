/* dist_mpi.c - a sample set over the ranks of an MPI job (see sampleset.h).
 *
 * Rank 0 hands out chunks as ranks ask for them (dynamic: a rank on a faster host simply asks
 * more often; chunks shrink near the end so that no slow host holds a big last one), collects
 * every image's sha256 (and its pixels when there is an .npz), and writes the manifest, the .npz
 * and the one summary. Rank 0 also generates: its main thread talks MPI (thread level FUNNELED)
 * and a second thread runs its share of chunks, so a job of R ranks has R generators. Waiting is
 * done by polling with short sleeps, never in a blocking MPI call (OpenMPI spins in those, which
 * would take a core from the generators on the same host).
 *
 * Protocol (MPI_BYTE messages, one host byte order, as in any homogeneous cluster):
 *   worker -> 0  HELLO   load status, threads, host, kernel path, this rank's record of the
 *                        set's first image (model and settings must agree across hosts)
 *   0 -> worker  WORK    {start, count}: a chunk; {0, 0, status}: stop (status 0: the set is
 *                        complete and the .npz written, so parts files may be removed)
 *   worker -> 0  RESULT  {start, count, generated, skipped, busy}: sha256s [+ pixels]; asks for more
 *   worker -> 0  FAIL    {exit code}: its message is already on stderr with its rank and host
 * A rank that dies (killed, crashed) ends the job through mpirun, whose message names its rank and
 * host; images already renamed into place stay, and --skip-existing resumes. */
#define _POSIX_C_SOURCE 200809L
#include "sampleset.h"
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int launched_by_mpi(int *size) {
    const char *v;
    *size = 0;
    if ((v = getenv("OMPI_COMM_WORLD_SIZE")) || (v = getenv("PMI_SIZE")) || (v = getenv("PMIX_SIZE")))
        *size = atoi(v);
    else if (getenv("PMIX_RANK") || getenv("PMI_RANK"))
        *size = 2; /* size unknown until MPI_Init */
    return *size > 0;
}

/* Physical cores of this host (distinct package/core pairs of the online CPUs), 0 if unknown. */
static int host_physical_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    if (n <= 0 || n > 8192) return 0;
    long *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return 0;
    int found = 0;
    for (long c = 0; c < n; c++) {
        char path[128];
        long pkg = -1, core = -1;
        FILE *f;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%ld", &pkg) != 1) pkg = -1;
            fclose(f);
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", c);
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%ld", &core) != 1) core = -1;
            fclose(f);
        }
        if (pkg < 0 || core < 0) continue;
        long id = pkg * 100000 + core;
        int dup = 0;
        for (int k = 0; k < found && !dup; k++) dup = ids[k] == id;
        if (!dup) ids[found++] = id;
    }
    free(ids);
    return found;
}

int ss_dist_default_threads(const ss_dist *d) {
    int own = pndm_default_threads(); /* the cores this process may run on */
    if (!d->active || d->local_size <= 1) return own;
    int host = host_physical_cores();
    if (host <= 0) host = own;
    int share = host / d->local_size;
    if (share < 1) share = 1;
    return share < own ? share : own; /* a launcher that bound the rank to fewer cores wins */
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

#ifndef PNDM_HAVE_MPI

int ss_dist_start(ss_dist *d, int *argc, char ***argv) {
    (void)argc, (void)argv;
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
    gethostname(d->host, sizeof d->host - 1);
    int size;
    if (launched_by_mpi(&size) && size > 1)
        return cli_fail(PNDM_ERR_USAGE,
                        "started by an MPI launcher (%d processes) but this pndm-gen was built without MPI "
                        "(PNDM_MPI=OFF, or libopenmpi-dev missing at build time): rebuild with MPI, or split the "
                        "set with --shard K/R",
                        size);
    return 0;
}

int ss_dist_run(ss_dist *d, const ss_run *run, int load_rc) {
    (void)d;
    return load_rc ? load_rc : ss_run_local(run);
}

void ss_dist_end(ss_dist *d) { (void)d; }

#else /* PNDM_HAVE_MPI */

#include <mpi.h>
#include <pthread.h>

enum { TAG_HELLO = 11, TAG_WORK, TAG_RESULT, TAG_FAIL };

typedef struct {
    int64_t rc, threads, S, C;
    char host[64], kernel[16];
    char record[8192]; /* key=value lines of the first image's record */
} hello_msg;

typedef struct {
    int64_t start, count, status;
} work_msg;

typedef struct {
    int64_t start, count, generated, skipped, busy_us, rc;
    int64_t wait_us; /* time this rank waited for this chunk after sending its previous result */
    int64_t cpu_us;  /* CPU time of this rank's process so far */
} result_head;

int ss_dist_start(ss_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->local_size = 1;
    gethostname(d->host, sizeof d->host - 1);
    int size;
    if (!launched_by_mpi(&size)) return 0; /* a plain run: MPI is never touched */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return cli_fail(PNDM_ERR_INTERNAL, "MPI_Init failed");
    d->active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &d->local_size);
        MPI_Comm_free(&local);
    }
    if (provided < MPI_THREAD_FUNNELED) {
        if (d->rank == 0) cli_fail(PNDM_ERR_INTERNAL, "the MPI library offers no MPI_THREAD_FUNNELED");
        MPI_Finalize();
        d->active = 0;
        return PNDM_ERR_INTERNAL;
    }
    return 0;
}

void ss_dist_end(ss_dist *d) {
    if (d->active) MPI_Finalize();
    d->active = 0;
}

/* Wait for a message of `tag` from `src` into buf (polling, see the top). */
static void recv_poll(void *buf, int size, int src, int tag) {
    MPI_Request req;
    MPI_Irecv(buf, size, MPI_BYTE, src, tag, MPI_COMM_WORLD, &req);
    long pause = 20;
    for (;;) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        sleep_us(pause);
        if (pause < 2000) pause *= 2;
    }
}

static void send_wait(const void *buf, int size, int dst, int tag) {
    MPI_Request req;
    MPI_Isend((void *)buf, size, MPI_BYTE, dst, tag, MPI_COMM_WORLD, &req);
    long pause = 20;
    for (;;) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        sleep_us(pause);
        if (pause < 2000) pause *= 2;
    }
}

static int record_text(const ss_run *run, char *out, size_t size) {
    static ss_record rec;
    out[0] = 0;
    int rc = run->record(run->record_user, run->plan->seed + (uint64_t)run->plan->start, &rec);
    size_t o = 0;
    for (int k = 0; !rc && k < rec.n && o + 1 < size; k++)
        o += (size_t)snprintf(out + o, size - o, "%s=%s\n", rec.text[k].key, rec.text[k].value);
    return rc;
}

/* Bytes of one RESULT message: header, sha256s, pixels for the .npz. */
static size_t result_cap(const ss_run *run) {
    size_t px = (size_t)run->S * run->S * run->C;
    return sizeof(result_head) + (size_t)run->plan->chunk * (64 + (run->plan->npz[0] ? px : 0));
}

static void fill_hello(hello_msg *h, const ss_dist *d, const ss_run *run, int load_rc) {
    memset(h, 0, sizeof *h);
    h->rc = load_rc;
    h->threads = run->gen.n_threads;
    h->S = run->S;
    h->C = run->C;
    snprintf(h->host, sizeof h->host, "%s", d->host);
    snprintf(h->kernel, sizeof h->kernel, "%s", run->model ? pndm_model_kernel_path(run->model) : "?");
    if (!load_rc) h->rc = record_text(run, h->record, sizeof h->record);
    if (!h->rc && result_cap(run) > (size_t)INT_MAX)
        h->rc = cli_fail(PNDM_ERR_USAGE, "a chunk of %lld images does not fit one MPI message: use a smaller --batch",
                         (long long)run->plan->chunk);
}

/* ---- a rank other than 0 ---------------------------------------------------------------- */

static int run_worker(ss_dist *d, const ss_run *run, int load_rc) {
    const ss_plan *pl = run->plan;
    hello_msg *h = malloc(sizeof *h);
    if (!h) return PNDM_ERR_NOMEM;
    fill_hello(h, d, run, load_rc);
    ss_worker *w = NULL;
    if (!h->rc && (h->rc = ss_worker_new(run, pl->npz[0] != 0, &w)) == 0) ss_clean_stale(pl, 0);
    send_wait(h, (int)sizeof *h, 0, TAG_HELLO);
    free(h);
    size_t px = (size_t)run->S * run->S * run->C;
    size_t cap = result_cap(run);
    char *msg = malloc(cap > (size_t)INT_MAX ? 1 : cap);
    int64_t(*mine)[2] = NULL; /* the chunks made here, to remove their parts files at the end */
    size_t n_mine = 0, cap_mine = 0;
    int rc = 0, first = 1;
    for (;;) {
        work_msg wk;
        double t_wait = cli_now_s();
        recv_poll(&wk, (int)sizeof wk, 0, TAG_WORK);
        int64_t wait_us = first ? 0 : (int64_t)((cli_now_s() - t_wait) * 1e6);
        first = 0;
        if (wk.count == 0) {
            if (wk.status == 0 && pl->parts)
                for (size_t k = 0; k < n_mine; k++) ss_remove_parts(pl, mine[k][0], mine[k][1]);
            break;
        }
        const ss_result *res = NULL;
        rc = msg && w ? ss_worker_chunk(w, wk.start, wk.count, &res) : PNDM_ERR_NOMEM;
        if (rc) {
            result_head f = {wk.start, wk.count, 0, 0, 0, rc, 0, 0};
            send_wait(&f, (int)sizeof f, 0, TAG_FAIL);
            continue; /* rank 0 sends no more work, only the stop */
        }
        if (n_mine == cap_mine) {
            cap_mine = cap_mine ? 2 * cap_mine : 64;
            void *m = realloc(mine, cap_mine * sizeof *mine);
            if (m)
                mine = m;
            else
                cap_mine = n_mine;
        }
        if (n_mine < cap_mine) mine[n_mine][0] = res->start, mine[n_mine][1] = res->count, n_mine++;
        result_head rh = {res->start,
                          res->count,
                          res->generated,
                          res->skipped,
                          (int64_t)(res->busy_s * 1e6),
                          0,
                          wait_us,
                          (int64_t)(ss_cpu_seconds() * 1e6)};
        memcpy(msg, &rh, sizeof rh);
        size_t o = sizeof rh;
        for (int64_t j = 0; j < res->count; j++, o += 64) memcpy(msg + o, res->sha[j], 64);
        if (res->pixels) {
            memcpy(msg + o, res->pixels, (size_t)res->count * px);
            o += (size_t)res->count * px;
        }
        send_wait(msg, (int)o, 0, TAG_RESULT);
    }
    free(mine);
    free(msg);
    ss_worker_free(w);
    return 0; /* rank 0 reports and carries the exit code */
}

/* ---- rank 0: its generator thread ------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ss_worker *w;
    int assigned, has_result, quit;
    int64_t start, count;
    int rc;
    const ss_result *res;
    double wait_s; /* waited for chunks after the first */
} local_box;

static void *local_main(void *arg) {
    local_box *b = arg;
    pthread_mutex_lock(&b->mu);
    int first = 1;
    for (;;) {
        double t_wait = cli_now_s();
        while (!b->assigned && !b->quit) pthread_cond_wait(&b->cv, &b->mu);
        if (!first && !b->quit) b->wait_s += cli_now_s() - t_wait; /* not the idle end of the run */
        first = 0;
        if (b->quit) break;
        int64_t start = b->start, count = b->count;
        b->assigned = 0;
        pthread_mutex_unlock(&b->mu);
        const ss_result *res = NULL;
        int rc = ss_worker_chunk(b->w, start, count, &res);
        pthread_mutex_lock(&b->mu);
        b->rc = rc;
        b->res = res;
        b->has_result = 1;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- rank 0: the coordinator ------------------------------------------------------------- */

typedef struct {
    ss_rank_stats st;
    int busy; /* holds a chunk */
    int64_t start, count;
} rank_state;

/* The first line of `a` that differs from `b`'s, and that line of `b` (0: none). */
static int first_diff_line(const char *a, const char *b, char *a_out, char *b_out, size_t size) {
    while (*a || *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || strncmp(a, b, la)) {
            snprintf(a_out, size, "%.*s", (int)(la >= size ? size - 1 : la), a);
            snprintf(b_out, size, "%.*s", (int)(lb >= size ? size - 1 : lb), b);
            return 1;
        }
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    return 0;
}

static int run_coordinator(ss_dist *d, const ss_run *run, int load_rc) {
    const ss_plan *pl = run->plan;
    const int R = d->size;
    rank_state *rs = calloc((size_t)R, sizeof *rs);
    hello_msg *h = malloc(sizeof *h), *mine = malloc(sizeof *mine);
    size_t px = (size_t)run->S * run->S * run->C;
    size_t cap = result_cap(run);
    char *msg = malloc(cap > (size_t)INT_MAX ? 1 : cap);
    char(*sha)[65] = malloc((size_t)pl->chunk * sizeof *sha);
    if (!rs || !h || !mine || !msg || !sha) {
        cli_fail(PNDM_ERR_NOMEM, "out of memory");
        abort(); /* the job cannot go on; mpirun ends the other ranks */
    }
    int rc = 0, fail_rank = -1, fail_rc = 0;
    /* 1. every rank says hello: loaded, which host, which kernels, the same record */
    fill_hello(mine, d, run, load_rc);
    rs[0].st.rank = 0;
    rs[0].st.threads = (int)mine->threads;
    snprintf(rs[0].st.host, sizeof rs[0].st.host, "%s", d->host);
    snprintf(rs[0].st.kernel, sizeof rs[0].st.kernel, "%s", mine->kernel);
    if (mine->rc) fail_rank = 0, fail_rc = (int)mine->rc;
    for (int got = 1; got < R; got++) {
        MPI_Status status;
        int flag = 0;
        long pause = 20;
        while (!flag) {
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_HELLO, MPI_COMM_WORLD, &flag, &status);
            if (!flag) sleep_us(pause), pause = pause < 2000 ? pause * 2 : pause;
        }
        MPI_Recv(h, (int)sizeof *h, MPI_BYTE, status.MPI_SOURCE, TAG_HELLO, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        int r = status.MPI_SOURCE;
        rs[r].st.rank = r;
        rs[r].st.threads = (int)h->threads;
        h->host[sizeof h->host - 1] = h->kernel[sizeof h->kernel - 1] = 0;
        snprintf(rs[r].st.host, sizeof rs[r].st.host, "%s", h->host);
        snprintf(rs[r].st.kernel, sizeof rs[r].st.kernel, "%s", h->kernel);
        char why[1200], whose[1200];
        if (fail_rank >= 0) continue;
        if (h->rc) {
            fail_rank = r, fail_rc = (int)h->rc;
            cli_fail(fail_rc, "rank %d on %s could not start (exit code %d, its message is above)", r, h->host,
                     fail_rc);
        } else if (h->S != mine->S || h->C != mine->C) {
            fail_rank = r, fail_rc = PNDM_ERR_USAGE;
            cli_fail(fail_rc,
                     "rank %d on %s has a model of %lldx%lld with %lld channels, rank 0's has %lldx%lld with %lld", r,
                     h->host, (long long)h->S, (long long)h->S, (long long)h->C, (long long)mine->S, (long long)mine->S,
                     (long long)mine->C);
        } else if (strcmp(h->kernel, mine->kernel)) {
            fail_rank = r, fail_rc = PNDM_ERR_USAGE;
            cli_fail(fail_rc,
                     "rank %d on %s uses the %s kernels, rank 0 on %s the %s ones: images would differ in their "
                     "last bits; set PNDM_KERNEL to the same path (e.g. avx2) on every host",
                     r, h->host, h->kernel, d->host, mine->kernel);
        } else if (first_diff_line(h->record, mine->record, why, whose, sizeof why)) {
            char g[256], w0[256];
            ss_field_diff(why, whose, g, w0, sizeof g);
            fail_rank = r, fail_rc = PNDM_ERR_USAGE;
            cli_fail(fail_rc,
                     "rank %d on %s would write other images than rank 0 on %s (its record has '%s' where rank 0's "
                     "has '%s'): give every host the same model, options and pndm-gen",
                     r, h->host, d->host, g, w0);
        }
    }
    free(h);
    free(mine);
    /* 2. hand out chunks, collect results */
    ss_sink *sink = NULL;
    ss_worker *w = NULL;
    local_box box;
    memset(&box, 0, sizeof box);
    pthread_mutex_init(&box.mu, NULL);
    pthread_cond_init(&box.cv, NULL);
    int thread_up = 0;
    pthread_t tid;
    if (fail_rank < 0) {
        ss_clean_stale(pl, 1);
        int e = ss_worker_new(run, pl->npz[0] != 0, &w);
        if (!e) e = ss_sink_new(run, &sink);
        if (e) fail_rank = 0, fail_rc = e;
    }
    if (fail_rank < 0) {
        box.w = w;
        thread_up = pthread_create(&tid, NULL, local_main, &box) == 0;
        if (!thread_up) fail_rank = 0, fail_rc = cli_fail(PNDM_ERR_INTERNAL, "cannot start the generator thread");
    }
    ss_queue q;
    ss_queue_init(&q, pl, R);
    ss_progress prog = {cli_now_s(), isatty(STDERR_FILENO), 0};
    double t0 = cli_now_s();
    int stopping = fail_rank >= 0, interrupted = 0, busy = 0, started = 0;
    if (run->signal && *run->signal) stopping = interrupted = 1;
    /* the first chunks */
    for (int r = 0; r < R && !stopping; r++) {
        int64_t start, n = ss_queue_take(&q, &start);
        if (!n) break;
        rs[r].busy = 1, rs[r].start = start, rs[r].count = n, busy++, started = 1;
        if (r == 0) {
            pthread_mutex_lock(&box.mu);
            box.start = start, box.count = n, box.assigned = 1;
            pthread_cond_signal(&box.cv);
            pthread_mutex_unlock(&box.mu);
        } else {
            work_msg wk = {start, n, 0};
            send_wait(&wk, (int)sizeof wk, r, TAG_WORK);
        }
    }
    long pause = 20;
    while (busy > 0) {
        int r = -1, frc = 0;
        const ss_result *res = NULL;
        ss_result remote;
        /* rank 0's own result? */
        pthread_mutex_lock(&box.mu);
        if (box.has_result) {
            box.has_result = 0;
            r = 0;
            frc = box.rc;
            res = box.res;
        }
        pthread_mutex_unlock(&box.mu);
        if (r < 0) {
            int flag = 0;
            MPI_Status status;
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &status);
            if (flag && (status.MPI_TAG == TAG_RESULT || status.MPI_TAG == TAG_FAIL)) {
                int len = 0;
                MPI_Get_count(&status, MPI_BYTE, &len);
                if (len < (int)sizeof(result_head) || (size_t)len > cap) {
                    cli_fail(PNDM_ERR_INTERNAL, "bad message from rank %d", status.MPI_SOURCE);
                    abort();
                }
                MPI_Recv(msg, len, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                r = status.MPI_SOURCE;
                result_head rh;
                memcpy(&rh, msg, sizeof rh);
                if (status.MPI_TAG == TAG_FAIL) {
                    frc = rh.rc ? (int)rh.rc : PNDM_ERR_INTERNAL;
                } else {
                    memset(&remote, 0, sizeof remote);
                    remote.start = rh.start, remote.count = rh.count;
                    remote.generated = rh.generated, remote.skipped = rh.skipped;
                    remote.busy_s = rh.busy_us / 1e6;
                    rs[r].st.wait_s += rh.wait_us / 1e6;
                    rs[r].st.cpu_s = rh.cpu_us / 1e6;
                    size_t need = sizeof rh + (size_t)rh.count * (64 + (pl->npz[0] ? px : 0));
                    if (rh.count != rs[r].count || rh.start != rs[r].start || need != (size_t)len) {
                        cli_fail(PNDM_ERR_INTERNAL, "rank %d answered for another chunk", r);
                        abort();
                    }
                    for (int64_t j = 0; j < rh.count; j++) {
                        memcpy(sha[j], msg + sizeof rh + 64 * j, 64);
                        sha[j][64] = 0;
                    }
                    remote.sha = sha;
                    remote.pixels = pl->npz[0] ? (uint8_t *)msg + sizeof rh + 64 * rh.count : NULL;
                    res = &remote;
                }
            } else if (flag) {
                cli_fail(PNDM_ERR_INTERNAL, "unexpected message (tag %d) from rank %d", status.MPI_TAG,
                         status.MPI_SOURCE);
                abort();
            }
        }
        if (r < 0) {
            if (run->signal && *run->signal && !stopping) stopping = interrupted = 1;
            sleep_us(pause);
            if (pause < 1000) pause *= 2;
            continue;
        }
        pause = 20;
        rs[r].busy = 0;
        busy--;
        if (frc) {
            if (fail_rank < 0) {
                fail_rank = r, fail_rc = frc;
                if (frc == 130 || frc == 143) interrupted = 1;
            }
            stopping = 1;
        } else {
            int e = ss_sink_add(sink, res);
            if (e && fail_rank < 0) fail_rank = 0, fail_rc = e, stopping = 1;
            rs[r].st.images += res->count;
            rs[r].st.generated += res->generated;
            rs[r].st.skipped += res->skipped;
            rs[r].st.chunks++;
            rs[r].st.busy_s += res->busy_s;
            ss_progress_show(run, &prog, ss_sink_done(sink), pl->count);
        }
        if (run->signal && *run->signal) stopping = interrupted = 1;
        int64_t start, n = stopping ? 0 : ss_queue_take(&q, &start);
        if (n) {
            rs[r].busy = 1, rs[r].start = start, rs[r].count = n, busy++;
            if (r == 0) {
                pthread_mutex_lock(&box.mu);
                box.start = start, box.count = n, box.assigned = 1;
                pthread_cond_signal(&box.cv);
                pthread_mutex_unlock(&box.mu);
            } else {
                work_msg wk = {start, n, 0};
                send_wait(&wk, (int)sizeof wk, r, TAG_WORK);
            }
        }
    }
    double wall = cli_now_s() - t0;
    if (thread_up) {
        pthread_mutex_lock(&box.mu);
        box.quit = 1;
        pthread_cond_signal(&box.cv);
        pthread_mutex_unlock(&box.mu);
    }
    /* 3. the manifest and the .npz, then everyone stops */
    if (fail_rank < 0 && !interrupted) {
        rc = ss_sink_finish(sink);
        if (rc) fail_rank = 0, fail_rc = rc;
    }
    if (fail_rank < 0 && interrupted) rc = ss_signal_exit(run);
    int ok = fail_rank < 0 && !interrupted;
    for (int r = 1; r < R; r++) {
        work_msg stop = {0, 0, ok ? 0 : 1};
        send_wait(&stop, (int)sizeof stop, r, TAG_WORK);
    }
    if (thread_up) pthread_join(tid, NULL);
    rs[0].st.wait_s = box.wait_s;
    rs[0].st.cpu_s = ss_cpu_seconds(); /* its generator, the coordinator and MPI's threads */
    int64_t done = sink ? ss_sink_done(sink) : 0;
    ss_sink_free(sink);
    ss_worker_free(w);
    if (!ok) {
        if (!run->quiet && prog.tty) fputc('\n', stderr);
        if (fail_rank >= 0) rc = fail_rc;
        if (!started) { /* a rank could not start: its message (and rank 0's line about it) is above */
            if (fail_rank < 0) cli_fail(rc, "interrupted before the first chunk");
        } else {
            if (fail_rank >= 0 && !(fail_rank == 0 && (rc == 130 || rc == 143)))
                cli_fail(rc, "rank %d on %s failed (exit code %d%s)", fail_rank, rs[fail_rank].st.host, rc,
                         fail_rank == 0 ? "" : ", its message is above");
            ss_stopped(run, rc, done);
        }
    } else {
        if (pl->parts) ss_remove_parts(pl, pl->start, pl->count);
        ss_rank_stats *st = malloc((size_t)R * sizeof *st);
        if (st) {
            for (int r = 0; r < R; r++) st[r] = rs[r].st;
            ss_report(run, st, R, wall);
            free(st);
        }
    }
    free(rs);
    free(msg);
    free(sha);
    pthread_mutex_destroy(&box.mu);
    pthread_cond_destroy(&box.cv);
    return rc;
}

int ss_dist_run(ss_dist *d, const ss_run *run, int load_rc) {
    if (!d->active) return load_rc ? load_rc : ss_run_local(run);
    return d->rank == 0 ? run_coordinator(d, run, load_rc) : run_worker(d, run, load_rc);
}

#endif /* PNDM_HAVE_MPI */
