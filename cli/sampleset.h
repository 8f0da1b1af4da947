/* sampleset.h - sample sets for pndm-gen (-N/--num-images): N images in chunks of --batch,
 * image i (global, 0-based from --start-index) seeded seed+i and byte-identical to
 * `pndm-gen -b 1 -s seed+i`, each chunk written as soon as it is done; --skip-existing resumes
 * after any interruption; a folder of PNGs and/or one .npz (arr_0, uint8 (N, H, W, C)) plus a
 * manifest (JSON lines: index, seed, file, sha256); spread over the ranks of an MPI job
 * (dist_mpi.c) or split statically with --shard K/R.
 *
 * The pieces, used alone (one process) or by dist_mpi.c:
 *   ss_plan    what the set is: index range, names, npz/manifest paths (no model needed)
 *   ss_worker  makes chunks [k, k+n): skips this run's existing files, generates the others
 *   ss_sink    collects every image's sha256 (and pixels for the .npz), writes manifest + .npz
 *   ss_queue   hands out chunks (guided: smaller near the end when several ranks share them)
 * Uses only the public headers (pndm.h, pndm_io.h) and cJSON, like the rest of cli/. */
#ifndef PNDM_CLI_SAMPLESET_H
#define PNDM_CLI_SAMPLESET_H

#include "pndm.h"
#include "pndm_io.h"

#include <limits.h>
#include <signal.h>
#include <stdint.h>

#define SS_MAX_IMAGES 10000000LL /* the sink keeps 65 bytes per image (sha256 hex) */

/* The options of a set run, as parsed. */
typedef struct ss_args {
    long long num_images;  /* -N; 0: not a set run */
    long long start_index; /* --start-index */
    int skip_existing;     /* --skip-existing */
    int shard_k, shard_r;  /* --shard K/R (r == 0: none) */
    const char *npz;       /* --npz FILE: also pack the PNG set into one .npz */
    const char *manifest;  /* --manifest FILE (default: next to the set) */
    int quiet;             /* -q: no note on stderr */
    int overwrite;         /* --overwrite: a file in the way is replaced, not refused */
} ss_args;

/* --shard K/R (0 <= K < R): 0, or the usage exit code after a message. */
int ss_parse_shard(const char *val, ss_args *a);

/* The PNG text chunks of one image, exactly as `pndm-gen -b 1 -s image_seed` writes them: the
 * writer and --skip-existing's check both take them from the one function pndm-gen provides, so
 * the check follows any change of the metadata. Returns 0 or an exit code (message printed). */
#define SS_TEXT_MAX 8
typedef struct ss_record {
    pndm_png_text text[SS_TEXT_MAX];
    int n;
    char store[16384]; /* the strings text[] points into */
} ss_record;
typedef int (*ss_record_fn)(void *user, uint64_t image_seed, ss_record *rec);

/* An existing file where an image of the set goes: refused (pndm-gen's default for every output,
 * before the run starts) or replaced (--overwrite). With --skip-existing a file that is this
 * run's image is kept, and only a file of another run is refused (or replaced with --overwrite). */
typedef enum { SS_EXISTING_OVERWRITE, SS_EXISTING_REFUSE } ss_existing;

/* Names of a %d pattern: DIR/PREFIX<index>SUFFIX, the index printed with `width` digits. */
typedef struct ss_pattern {
    char dir[PATH_MAX];    /* "." when the pattern has no '/' */
    char prefix[PATH_MAX]; /* literal text (%% already turned into %) */
    char suffix[PATH_MAX];
    int width, zero; /* %05d: 5, 1; %d: 0, 0 */
    int has_dir;
} ss_pattern;

/* Parse an output pattern DIR/PREFIX%0Nd SUFFIX: one %d (or %0Nd, N <= 20) in the file name, never
 * in the directory part, and %% for a literal % anywhere. Returns 1 (pattern parsed), 0 (no %d: P
 * is a plain name, PT unset) or -1 with the reason in WHY. Never hands P to printf. */
int ss_pattern_parse(const char *p, ss_pattern *pt, char *why, size_t why_size);
/* The name of index I: 0, or -1 when it does not fit in SIZE. */
int ss_pattern_name(const ss_pattern *pt, int64_t i, char *out, size_t size);

typedef struct ss_plan {
    int64_t set_start, set_count; /* the set: -N images from --start-index */
    int64_t start, count;         /* this run's part of it (the --shard, else the set) */
    int64_t chunk;                /* --batch */
    uint64_t seed;                /* image i is seeded seed + i */
    int skip_existing;
    int shard_k, shard_r;
    ss_pattern png;           /* the PNG files: -o, or the parts folder of an .npz output */
    int parts;                /* -o X.npz: PNGs in X.npz.parts/, removed once the .npz is written */
    char parts_dir[PATH_MAX]; /* with parts */
    char npz[PATH_MAX];       /* "" when there is no .npz */
    char manifest[PATH_MAX];
    const char *output; /* -o as given */
} ss_plan;

/* Checks a set run's options against each other and the file system, before any model is
 * loaded, and fills the plan. Returns 0 or an exit code (after a message). `seed` is the seed
 * in use (a random one when none was given; then --skip-existing is refused). */
int ss_plan_make(ss_plan *pl, const ss_args *a, const char *output, uint64_t seed, int seed_given, long long batch);
/* File name of image i (global index). */
void ss_name(const ss_plan *pl, int64_t i, char *out, size_t size);

/* Everything a set run needs from pndm-gen. */
typedef struct ss_run {
    const ss_plan *plan;
    const pndm_model *model; /* NULL on a rank whose load failed (it reports and waits) */
    pndm_gen_params gen;     /* steps, scheduler, n_threads, cancel; batch/seed set per chunk */
    int C, S;
    int unet_calls; /* per chunk, for the report */
    ss_record_fn record;
    void *record_user;
    ss_existing existing;
    int quiet, verbose, json;
    const volatile sig_atomic_t *signal;
    const char *model_path, *sched_desc;
    double t_load;
} ss_run;

/* ---- pieces shared with dist_mpi.c ----------------------------------------------------------- */

typedef struct ss_result { /* one chunk's images, in index order */
    int64_t start, count, generated, skipped;
    char (*sha)[65]; /* count: sha256 of each PNG file (of its pixels with an .npz-only output) */
    uint8_t *pixels; /* count * S*S*C bytes when the run has an .npz, else NULL */
    double busy_s;
} ss_result;

typedef struct ss_worker ss_worker;
int ss_worker_new(const ss_run *run, int need_pixels, ss_worker **out);
/* Makes [start, start+count) (count <= chunk): *res stays valid until the next call. */
int ss_worker_chunk(ss_worker *w, int64_t start, int64_t count, const ss_result **res);
void ss_worker_free(ss_worker *w);
/* Removes temporary files a killed run left for the indices of [start, start+count) (and, when
 * `own_outputs`, of the manifest and .npz). Done by every process before any chunk is handed out. */
void ss_clean_stale(const ss_plan *pl, int own_outputs);
/* After the .npz is written: removes the parts files of [start, start+count) and the folder. */
void ss_remove_parts(const ss_plan *pl, int64_t start, int64_t count);

typedef struct ss_sink ss_sink;
int ss_sink_new(const ss_run *run, ss_sink **out);
int ss_sink_add(ss_sink *s, const ss_result *r);
int ss_sink_finish(ss_sink *s); /* manifest, then the .npz; all images must be in */
int64_t ss_sink_done(const ss_sink *s);
void ss_sink_free(ss_sink *s); /* removes an unfinished .npz's temporary file */

typedef struct ss_queue {
    int64_t next, end, chunk;
    int ranks;
} ss_queue;
void ss_queue_init(ss_queue *q, const ss_plan *pl, int ranks);
int64_t ss_queue_take(ss_queue *q, int64_t *start); /* images in the next chunk; 0: none left */

typedef struct ss_rank_stats {
    int rank, threads;
    char host[64], kernel[16];
    int64_t images, generated, skipped, chunks;
    double busy_s;
    double wait_s; /* between chunks, waiting for the next one: the scheduling overhead */
    double cpu_s;  /* CPU time (user + system) of the rank's process */
} ss_rank_stats;
/* CPU time (user + system) of this process so far. */
double ss_cpu_seconds(void);

/* The first "key=value" field of two "k=v; k=v; ..." records that differs (each cut to size). */
void ss_field_diff(const char *got, const char *want, char *g_out, char *w_out, size_t size);

/* Progress line on stderr (rank 0). */
typedef struct ss_progress {
    double t0;
    int tty;
    int64_t last;
} ss_progress;
void ss_progress_show(const ss_run *run, ss_progress *p, int64_t done, int64_t total);
/* Summary on stderr, file list or --json on stdout (rank 0, after a successful run). */
void ss_report(const ss_run *run, const ss_rank_stats *st, int n_ranks, double wall_s);
/* "interrupted"/"failed" tail message with the count of images done. */
int ss_stopped(const ss_run *run, int rc, int64_t done);
/* The exit code for a received signal (130 / 143). */
int ss_signal_exit(const ss_run *run);

/* One process: the whole plan here. Returns the exit code. */
int ss_run_local(const ss_run *run);

/* ---- dist_mpi.c: MPI, when pndm-gen was started by mpirun / srun ----------------------------- */

typedef struct ss_dist {
    int active; /* MPI_Init was called */
    int rank, size, local_size;
    char host[64];
} ss_dist;
/* MPI_Init (thread level FUNNELED) only when a launcher started this process (OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_SIZE in the environment); otherwise rank 0 of 1 and MPI is never touched.
 * Returns 0 or an exit code. */
int ss_dist_start(ss_dist *d, int *argc, char ***argv);
/* --threads default for this rank: the physical cores of the host divided among its ranks. */
int ss_dist_default_threads(const ss_dist *d);
/* The set over all ranks (ss_run_local when not active). load_rc: this rank's load result. */
int ss_dist_run(ss_dist *d, const ss_run *run, int load_rc);
void ss_dist_end(ss_dist *d);

#endif
