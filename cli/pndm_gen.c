/* pndm-gen: generate images with a UNet2DModel and one of the samplers (PNDM by default).
 * A thin front over the public API in pndm.h (plus cJSON for --json).
 *
 * Exit codes: 0 ok, 1 internal error, 2 usage, 3 model, 4 I/O, 5 out of memory, 6 input data,
 * 130 interrupted by SIGINT, 143 by SIGTERM. */
#define _POSIX_C_SOURCE 200809L
#include "pndm.h"
#include "pndm_io.h"
#include "cli.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_SIGINT 130
#define EXIT_SIGTERM 143

/* ---------------------------------------------------------------------------------------- */
/* Options: one table drives parsing and --help.                                            */

enum {
    OPT_MODEL,
    OPT_STEPS,
    OPT_BATCH,
    OPT_SEED,
    OPT_PER_IMAGE,
    OPT_SCHED,
    OPT_SKIP_PRK,
    OPT_SAMPLER,
    OPT_ETA,
    OPT_CLIPPED,
    OPT_THREADS,
    OPT_OUTPUT,
    OPT_GRID,
    OPT_LATENTS,
    OPT_NOISE,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_JSON,
    OPT_INFO,
    OPT_HELP,
    OPT_VERSION
};

static const cli_opt OPTS[] = {
    {OPT_MODEL, 'm', "model", "PATH", "bundled Fashion-MNIST model",
     "model: pndm .safetensors file, diffusers model folder or pipeline folder"},
    {OPT_STEPS, 'n', "steps", "N", "50",
     "inference steps (the paper's methods: their sample_speed; model calls per sampler below)"},
    {OPT_BATCH, 'b', "batch", "N", "1", "number of images"},
    {OPT_SEED, 's', "seed", "N", "random", "seed for torch.manual_seed (0 .. 2^64-1; -1 = random); always reported"},
    {OPT_PER_IMAGE, 0, "per-image-seeds", NULL, "off",
     "one generator per image, seeded seed+i (diffusers' generator list)"},
    {OPT_SCHED, 0, "scheduler-config", "FILE", "the model's", "scheduler_config.json replacing the model's"},
    {OPT_SKIP_PRK, 0, "skip-prk-steps", NULL, "off", "skip the pseudo Runge-Kutta warm-up (N+1 UNet calls)"},
    {OPT_SAMPLER, 0, "sampler", "NAME", "pndm", "sampling method (the list below)"},
    {OPT_ETA, 0, "eta", "X", "0", "ddim: weight of the per-step noise (0 = deterministic DDIM, 1 = DDPM-like)"},
    {OPT_CLIPPED, 0, "use-clipped-model-output", NULL, "off", "ddim: recompute the noise from the clipped x0"},
    {OPT_THREADS, 't', "threads", "N", "physical cores", "worker threads (results are identical for any N)"},
    {OPT_OUTPUT, 'o', "output", "PATH", "out.png",
     "output: .png (8-bit; with a batch use a %d pattern, else NAME-<i>.png) or .npy (B,H,W,C float32 in [0,1])"},
    {OPT_GRID, 0, "grid", NULL, "off", "with a .png output: one grid image of the whole batch"},
    {OPT_LATENTS, 0, "latents", "FILE.npy", "none", "also write the final latents before clamping, (B,C,H,W) float32"},
    {OPT_NOISE, 0, "save-noise", "FILE.npy", "none", "also write the initial noise, (B,C,H,W) float32"},
    {OPT_QUIET, 'q', "quiet", NULL, "off", "no progress or timing on stderr (errors only)"},
    {OPT_VERBOSE, 'v', "verbose", NULL, "off", "more detail on stderr (model, kernels, memory)"},
    {OPT_JSON, 0, "json", NULL, "off", "print a machine-readable summary on stdout"},
    {OPT_INFO, 0, "info", "FILE.png", "", "print the generation parameters stored in a PNG and exit"},
    {OPT_HELP, 'h', "help", NULL, "", "show this help and exit"},
    {OPT_VERSION, 0, "version", NULL, "", "print the version and exit"},
};
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

/* Every sampler with its model calls for `steps` steps (a PNDMScheduler-default config). */
static void print_samplers(FILE *f, int steps) {
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    fprintf(f, "\nsamplers (--sampler NAME; model calls for N steps, and for N = %d):\n", steps);
    for (int i = 0; i < pndm_sampler_count(); i++) {
        const pndm_sampler_info *in = pndm_sampler_get_info(i);
        pndm_sampler_params sp = pndm_sampler_default_params();
        sp.name = in->name;
        pndm_sampler *s = NULL;
        pndm_error err;
        char calls[32];
        if (pndm_sampler_create(&sp, &cfg, steps, &s, &err) != PNDM_OK)
            snprintf(calls, sizeof calls, "refused");
        else if (pndm_sampler_num_calls(s) == PNDM_CALLS_ADAPTIVE)
            snprintf(calls, sizeof calls, "adaptive");
        else
            snprintf(calls, sizeof calls, "%d", pndm_sampler_num_calls(s));
        pndm_sampler_free(s);
        fprintf(f, "  %-11s %-9s %s\n  %-11s %-9s calls: %s\n", in->name, calls, in->summary, "", "", in->calls);
    }
    fprintf(f,
            "  (the paper's methods: S = ceil(T / (T // N)) steps, e.g. N = 30 -> 31; counts whose first step\n"
            "   would read alphas_cump[T] are refused with the nearest counts that work)\n");
}

static void print_help(FILE *f, int steps) {
    fprintf(f,
            "usage: pndm-gen [options]\n"
            "Generate images with a diffusers UNet2DModel and the PNDM sampler (same images as\n"
            "diffusers' PNDMPipeline for the same model, seed and steps), diffusers' DDIM / DDPM\n"
            "pipelines, or any method of the PNDM paper (--sampler).\n\n"
            "options:\n");
    cli_print_options(f, OPTS, N_OPTS, 30, OPT_THREADS, pndm_default_threads());
    print_samplers(f, steps);
    fprintf(f,
            "\nexit codes: 0 ok, 1 internal error, 2 usage, 3 model/config, 4 I/O, 5 out of memory,\n"
            "            6 input data, 130 interrupted (SIGINT), 143 terminated (SIGTERM)\n"
            "examples:\n"
            "  pndm-gen --steps 50 --batch 4 --seed 42 -o out.png     # out-0.png .. out-3.png\n"
            "  pndm-gen -b 16 -s 7 --grid -o grid.png\n"
            "  pndm-gen -b 8 -s 1 -o 'img_%%03d.png' --json\n"
            "  pndm-gen --sampler f-pndm -n 50 -b 16 -s 7 --grid -o grid.png   # the paper's F-PNDM\n"
            "  pndm-gen --sampler ddim --eta 1 -n 100 -b 4 -o ddim.png\n"
            "  pndm-gen --info out-0.png                                # read the parameters back\n");
}

/* ---------------------------------------------------------------------------------------- */

static int g_quiet = 0, g_verbose = 0;
static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

static uint64_t random_seed(void) {
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &s, sizeof s) != (ssize_t)sizeof s) s = 0;
        close(fd);
    }
    if (!s) s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return s & 0x7fffffffu; /* short enough to type back in */
}

static const char *ext_of(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash)) return "";
    return dot;
}

/* Check that `path` can be created: its directory exists and is writable, and the path is not
 * a directory. Done before the (long) generation. */
static int check_writable(const char *what, const char *path) {
    struct stat st;
    if (!*path) return cli_fail(PNDM_ERR_USAGE, "%s: empty path", what);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return cli_fail(PNDM_ERR_IO, "%s: '%s' is a directory", what, path);
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) != 0) return cli_fail(PNDM_ERR_IO, "%s: directory '%s' does not exist", what, dir);
    if (!S_ISDIR(st.st_mode)) return cli_fail(PNDM_ERR_IO, "%s: '%s' is not a directory", what, dir);
    if (access(dir, W_OK) != 0) return cli_fail(PNDM_ERR_IO, "%s: directory '%s' is not writable", what, dir);
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return cli_fail(PNDM_ERR_IO, "%s: '%s' exists and is not a regular file", what, path);
    return 0;
}

/* A printf-style pattern with exactly one %d / %0Nd (and %% escapes)? Returns 1 if it has one,
 * 0 if none, -1 if malformed. */
static int pattern_kind(const char *p) {
    int n = 0;
    for (const char *c = p; *c; c++) {
        if (*c != '%') continue;
        if (c[1] == '%') {
            c++;
            continue;
        }
        const char *d = c + 1;
        if (*d == '0') d++;
        while (*d >= '0' && *d <= '9') d++;
        if (*d != 'd' || d - c > 4) return -1;
        n++;
        c = d;
    }
    return n == 0 ? 0 : (n == 1 ? 1 : -1);
}

/* Expand the pattern for index i (pattern_kind == 1) without handing user text to printf. */
static void expand_pattern(const char *p, int i, char *out, size_t size) {
    size_t o = 0;
    for (const char *c = p; *c && o + 1 < size; c++) {
        if (*c == '%' && c[1] == '%') {
            out[o++] = '%';
            c++;
            continue;
        }
        if (*c == '%') {
            int width = 0;
            const char *d = c + 1;
            if (*d == '0') d++;
            while (*d >= '0' && *d <= '9') width = width * 10 + (*d++ - '0');
            char num[64];
            if (width > 20) width = 20;
            snprintf(num, sizeof num, "%0*d", width & 31, i);
            for (char *q = num; *q && o + 1 < size; q++) out[o++] = *q;
            c = d;
            continue;
        }
        out[o++] = *c;
    }
    out[o] = 0;
}

/* NAME.png -> NAME-<i>.png */
static void numbered_name(const char *path, int i, char *out, size_t size) {
    const char *e = ext_of(path);
    snprintf(out, size, "%.*s-%d%s", (int)(e - path), path, i, e);
}

/* ---------------------------------------------------------------------------------------- */

typedef struct {
    double t0;
    int tty;
    int last_printed;
    int calls; /* made so far */
} progress_state;

static void on_progress(int call, int total, double t, void *user) {
    progress_state *ps = user;
    ps->calls = call;
    if (g_quiet) return;
    if (total == PNDM_CALLS_ADAPTIVE) { /* pf: the solver decides */
        if (ps->tty) {
            fprintf(stderr, "\r  UNet call %d (adaptive, t=%g)  %.1f s elapsed   ", call, t, cli_now_s() - ps->t0);
            fflush(stderr);
        } else if (call - ps->last_printed >= 50) {
            fprintf(stderr, "  UNet call %d (adaptive, t=%g) %.1f s elapsed\n", call, t, cli_now_s() - ps->t0);
            ps->last_printed = call;
        }
        return;
    }
    double el = cli_now_s() - ps->t0;
    double eta = call > 0 ? el / call * (total - call) : 0;
    if (ps->tty) {
        fprintf(stderr, "\r  UNet call %d/%d (t=%g)  %.1f s elapsed, ~%.1f s left   ", call, total, t, el, eta);
        if (call == total) fputc('\n', stderr);
        fflush(stderr);
    } else {
        int every = (total + 9) / 10; /* about ten lines per run */
        if (call == total || call - ps->last_printed >= every) {
            fprintf(stderr, "  UNet call %d/%d (t=%g) %.1f s elapsed\n", call, total, t, el);
            ps->last_printed = call;
        }
    }
}

static long long mem_available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = -1;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
        fclose(f);
    }
    if (kb > 0) return kb * 1024;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return (pages > 0 && psz > 0) ? (long long)pages * psz : -1;
}

static void print_png_text(const char *key, const char *value, void *user) {
    (void)user;
    printf("%s: %s\n", key, value);
}

static int do_info(const char *path) {
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(path, 256u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    pndm_status s = pndm_png_read_text(buf, size, path, print_png_text, NULL, &err);
    free(buf);
    if (s) return cli_fail(s == PNDM_ERR_MODEL ? PNDM_ERR_INPUT : s, "%s", err.msg);
    return 0;
}

typedef struct {
    const char *model_path, *sched_path, *output, *latents_path, *noise_path, *info_path, *sampler;
    double eta;
    int eta_given, clipped;
    long long steps, batch, threads;
    uint64_t seed;
    int seed_given, per_image, skip_prk, grid, json;
} cli_args;

static int parse_args(int argc, char **argv, cli_args *a, int *exit_now) {
    memset(a, 0, sizeof *a);
    a->steps = 50;
    a->batch = 1;
    a->threads = 0;
    a->output = "out.png";
    a->sampler = "pndm";
    *exit_now = 0;
    for (int i = 1; i < argc;) {
        const char *val;
        const cli_opt *o = cli_next(OPTS, N_OPTS, argc, argv, &i, &val);
        if (!o) return PNDM_ERR_USAGE;
        switch (o->id) {
        case OPT_MODEL: a->model_path = val; break;
        case OPT_STEPS:
            if (!cli_parse_i64(val, 1, 100000, &a->steps))
                return cli_usage_error(
                    "invalid --steps '%s': expected an integer from 1 to the model's num_train_timesteps", val);
            break;
        case OPT_BATCH:
            if (!cli_parse_i64(val, 1, 1 << 20, &a->batch))
                return cli_usage_error("invalid --batch '%s': expected an integer from 1 to 1048576", val);
            break;
        case OPT_SEED:
            if (!strcmp(val, "-1") || !strcmp(val, "random")) {
                a->seed_given = 0;
                break;
            }
            if (!cli_parse_u64(val, &a->seed))
                return cli_usage_error("invalid --seed '%s': expected an integer from 0 to 2^64-1, or -1 for random",
                                       val);
            a->seed_given = 1;
            break;
        case OPT_PER_IMAGE: a->per_image = 1; break;
        case OPT_SCHED: a->sched_path = val; break;
        case OPT_SKIP_PRK: a->skip_prk = 1; break;
        case OPT_SAMPLER: {
            int known = 0;
            char names[256] = "";
            for (int k = 0; k < pndm_sampler_count(); k++) {
                const char *nm = pndm_sampler_get_info(k)->name;
                known |= !strcmp(val, nm);
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", k ? ", " : "", nm);
            }
            if (!known) return cli_usage_error("unknown --sampler '%s': one of %s (see --help)", val, names);
            a->sampler = val;
            break;
        }
        case OPT_ETA:
            if (!cli_parse_double(val, &a->eta) || a->eta < 0)
                return cli_usage_error("invalid --eta '%s': expected a number >= 0", val);
            a->eta_given = 1;
            break;
        case OPT_CLIPPED: a->clipped = 1; break;
        case OPT_THREADS:
            if (!cli_parse_i64(val, 0, 1024, &a->threads))
                return cli_usage_error("invalid --threads '%s': expected an integer from 0 (auto) to 1024", val);
            break;
        case OPT_OUTPUT: a->output = val; break;
        case OPT_GRID: a->grid = 1; break;
        case OPT_LATENTS: a->latents_path = val; break;
        case OPT_NOISE: a->noise_path = val; break;
        case OPT_QUIET: g_quiet = 1; break;
        case OPT_VERBOSE: g_verbose = 1; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_INFO: a->info_path = val; break;
        case OPT_HELP:
            print_help(stdout, (int)a->steps);
            *exit_now = 1;
            return 0;
        case OPT_VERSION:
            printf("pndm-gen %s\n", pndm_version());
            *exit_now = 1;
            return 0;
        }
    }
    /* --eta 0 is every sampler's no-op; a weight or the clipped output only make sense for ddim */
    if (((a->eta_given && a->eta != 0) || a->clipped) && strcmp(a->sampler, "ddim") != 0)
        return cli_usage_error("%s applies to --sampler ddim only (got --sampler %s)",
                               a->clipped ? "--use-clipped-model-output" : "--eta", a->sampler);
    return 0;
}

/* "; eta=1; use_clipped_model_output=1" for ddim, "" for the others (their options are all in
 * the scheduler description). */
static void sampler_options(const cli_args *a, char *buf, size_t size) {
    if (strcmp(a->sampler, "ddim") != 0) {
        buf[0] = 0;
        return;
    }
    snprintf(buf, size, "; eta=%g; use_clipped_model_output=%d", a->eta, a->clipped);
}

/* Build the PNG text chunks for image i. */
static void png_params(const cli_args *a, const char *model, const char *sched_desc, uint64_t seed, int i, char *buf,
                       size_t size) {
    char opts[96];
    sampler_options(a, opts, sizeof opts);
    snprintf(buf, size,
             "model=%s; seed=%" PRIu64 "; per_image_seeds=%d; image_index=%d; batch=%lld; steps=%lld; "
             "sampler=%s%s; scheduler={%s}; pndm-gen=%s",
             model, seed, a->per_image, i, a->batch, a->steps, a->sampler, opts, sched_desc, pndm_version());
}

static int write_png(const char *path, const uint8_t *pix, int w, int h, int c, const pndm_png_text *text, int n_text) {
    void *buf;
    size_t size;
    pndm_error err;
    if (pndm_png_encode(pix, w, h, c, text, n_text, &buf, &size, &err))
        return cli_fail(err.code, "%s: %s", path, err.msg);
    pndm_status s = pndm_write_file_atomic(path, buf, size, &err);
    free(buf);
    if (s) return cli_fail(s, "%s", err.msg);
    return 0;
}

/* Exit code for the signal received (130 SIGINT, 143 SIGTERM). */
static int signal_exit(void) { return g_signal == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT; }

/* ---------------------------------------------------------------------------------------- */
/* One run, in stages: parse -> plan outputs -> load -> generate -> write -> report. Each stage
 * returns 0 or an exit code and leaves what it made in the run; run_free releases it all.     */

typedef enum { OUT_NPY, OUT_PNG_ONE, OUT_PNG_GRID, OUT_PNG_EACH } out_kind;

typedef struct gen_run {
    cli_args a;
    /* plan_outputs */
    out_kind out;
    int pattern; /* the output name has a %d */
    /* load */
    const char *model_path;
    pndm_model *model;
    pndm_scheduler_config sched; /* the model's, or --scheduler-config's */
    int have_sched;
    char sched_desc[768]; /* the sampler with its resolved configuration */
    int sampler_calls;    /* fixed count, or PNDM_CALLS_ADAPTIVE */
    int sampler_steps;    /* the steps it takes (the paper's: ceil(T / skip)) */
    pndm_gen_params p;
    int C, S, B;
    size_t n;    /* B * C * S * S */
    size_t need; /* memory estimate, bytes */
    double t_load;
    /* generate */
    float *latents; // (B, C, S, S)
    float *noise;   // (B, C, S, S), with --save-noise
    float *images;  // (B, S, S, C) in [0, 1]
    uint8_t *pix;   // (B, S, S, C)
    double t_gen;
    int calls; /* model calls made */
    /* write */
    cJSON *files; /* paths written, in order */
    int n_written, total_files;
} gen_run;

static void run_free(gen_run *r) {
    cJSON_Delete(r->files);
    free(r->latents);
    free(r->noise);
    free(r->images);
    free(r->pix);
    if (r->have_sched) pndm_scheduler_config_free(&r->sched);
    pndm_model_free(r->model);
}

/* Output file i (0-based) of a PNG_EACH run. */
static void output_name(const gen_run *r, int i, char *out, size_t size) {
    if (r->pattern)
        expand_pattern(r->a.output, i, out, size);
    else
        numbered_name(r->a.output, i, out, size);
}

/* Everything that needs no model: names, extensions, patterns, and that the outputs can be
 * created, before the (long) load and generation. */
static int stage_plan_outputs(gen_run *r) {
    cli_args *a = &r->a;
    const char *ext = ext_of(a->output);
    int out_png = !strcmp(ext, ".png") || !strcmp(ext, ".PNG");
    int out_npy = !strcmp(ext, ".npy");
    if (!out_png && !out_npy)
        return cli_usage_error("unknown output extension '%s' in '%s': use .png or .npy", ext, a->output);
    int pk = pattern_kind(a->output);
    if (pk < 0)
        return cli_usage_error("bad output pattern '%s': use one %%d (or %%03d) and %%%% for a literal %%", a->output);
    if (pk > 0 && !out_png) return cli_usage_error("a %%d pattern needs a .png output ('%s')", a->output);
    if (a->grid && !out_png) return cli_usage_error("--grid needs a .png output");
    if (a->grid && pk > 0) return cli_usage_error("--grid writes one file: drop the %%d from '%s'", a->output);
    if (a->latents_path && strcmp(ext_of(a->latents_path), ".npy"))
        return cli_usage_error("--latents needs a .npy path (got '%s')", a->latents_path);
    if (a->noise_path && strcmp(ext_of(a->noise_path), ".npy"))
        return cli_usage_error("--save-noise needs a .npy path (got '%s')", a->noise_path);
    if (!a->seed_given) a->seed = random_seed();
    if (a->per_image && a->seed > UINT64_MAX - (uint64_t)a->batch)
        return cli_usage_error("--seed %" PRIu64 " + batch overflows 64 bits with --per-image-seeds", a->seed);
    r->pattern = pk > 0;
    r->out = out_npy ? OUT_NPY : a->grid ? OUT_PNG_GRID : (pk > 0 || a->batch > 1) ? OUT_PNG_EACH : OUT_PNG_ONE;
    int rc;
    if (r->out == OUT_PNG_EACH) {
        char p0[PATH_MAX];
        output_name(r, 0, p0, sizeof p0);
        if ((rc = check_writable("output", p0))) return rc;
    } else if ((rc = check_writable("output", a->output))) {
        return rc;
    }
    if (a->latents_path && (rc = check_writable("--latents", a->latents_path))) return rc;
    if (a->noise_path && (rc = check_writable("--save-noise", a->noise_path))) return rc;
    r->total_files = (a->noise_path != NULL) + (a->latents_path != NULL) + (r->out == OUT_PNG_EACH ? (int)a->batch : 1);
    return 0;
}

/* The scheduler config (--scheduler-config, else the model's), the model, the generation
 * parameters, and the memory check. */
static int stage_load(gen_run *r) {
    cli_args *a = &r->a;
    pndm_error err;
    if (a->sched_path) {
        char *buf;
        size_t size;
        if (pndm_read_file(a->sched_path, 64u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
        pndm_status s = pndm_scheduler_config_parse(buf, size, a->sched_path, &r->sched, &err);
        free(buf);
        if (s) return cli_fail(s, "%s", err.msg);
        r->have_sched = 1;
    }
    r->model_path = a->model_path ? a->model_path : pndm_default_model_path();
    if (!r->model_path)
        return cli_fail(PNDM_ERR_USAGE,
                        "no --model given and the bundled default model was not found "
                        "(looked for $PNDM_MODEL, the installed and the source-tree copies)");
    double t0 = cli_now_s();
    if (pndm_model_load(r->model_path, &r->model, &err)) return cli_fail(err.code, "%s", err.msg);
    r->t_load = cli_now_s() - t0;
    if (!r->have_sched) {
        if (pndm_model_get_scheduler_config(r->model, &r->sched, &err)) return cli_fail(err.code, "%s", err.msg);
        r->have_sched = 1;
    }
    if (a->skip_prk) r->sched.skip_prk_steps = 1;
    if (a->steps > r->sched.num_train_timesteps)
        return cli_usage_error("--steps %lld is larger than the scheduler's num_train_timesteps (%d)", a->steps,
                               r->sched.num_train_timesteps);

    pndm_gen_params *p = &r->p;
    *p = pndm_gen_default_params();
    p->steps = (int)a->steps;
    p->batch = (int)a->batch;
    p->seed = a->seed;
    p->per_image_seeds = a->per_image;
    p->n_threads = a->threads > 0 ? (int)a->threads : pndm_default_threads();
    p->scheduler = &r->sched;
    p->cancel = &g_signal;
    p->sampler.name = a->sampler;
    p->sampler.eta = a->eta;
    p->sampler.use_clipped_model_output = a->clipped;
    /* the sampler now: step counts it cannot run are refused before generating; it describes
     * the schedule and the config as it reads them (pndm: the PNDMScheduler config) */
    pndm_sampler *smp = NULL;
    if (pndm_sampler_create(&p->sampler, &r->sched, p->steps, &smp, &err)) return cli_fail(err.code, "%s", err.msg);
    pndm_sampler_describe(smp, r->sched_desc, sizeof r->sched_desc);
    r->sampler_calls = pndm_sampler_num_calls(smp);
    r->sampler_steps = pndm_sampler_num_steps(smp);
    char schedule[1024] = "", ignored[1024] = "";
    pndm_sampler_schedule(smp, schedule, sizeof schedule);
    pndm_sampler_ignored_keys(smp, ignored, sizeof ignored);
    pndm_sampler_free(smp);
    r->C = pndm_model_in_channels(r->model);
    r->S = pndm_model_sample_size(r->model);
    r->B = p->batch;
    r->n = pndm_gen_latent_count(r->model, p);
    r->need = pndm_gen_memory_estimate(r->model, p);
    long long avail = mem_available_bytes();
    if (r->n == SIZE_MAX || r->need == SIZE_MAX || (avail > 0 && (double)r->need > (double)avail * 0.9))
        return cli_fail(PNDM_ERR_NOMEM,
                        "batch %d needs about %.2f GiB of memory, this machine has %.2f GiB available: "
                        "use a smaller --batch",
                        r->B, r->need == SIZE_MAX ? INFINITY : (double)r->need / (1 << 30), (double)avail / (1 << 30));
    if (r->C != 1 && r->C != 3 && r->out != OUT_NPY)
        return cli_fail(PNDM_ERR_USAGE, "the model has %d channels: PNG needs 1 or 3, use a .npy output", r->C);
    if (!g_quiet) {
        fprintf(stderr,
                "pndm-gen: model %s (%d ch, %dx%d, %.2f M params), seed %" PRIu64
                "%s, %d steps, batch %d, %d threads\n",
                r->model_path, r->C, r->S, r->S, (double)pndm_model_param_count(r->model) / 1e6, a->seed,
                a->per_image ? " (+i per image)" : "", p->steps, r->B, p->n_threads);
        if (g_verbose) {
            fprintf(stderr, "pndm-gen: scheduler {%s}; kernels %s; memory estimate %.1f MiB; model loaded in %.3f s\n",
                    r->sched_desc, pndm_kernel_path(), (double)r->need / (1 << 20), r->t_load);
            fprintf(stderr, "pndm-gen: sampler %s: %s\n", a->sampler, schedule);
            fprintf(stderr, "pndm-gen: scheduler config %s (class %s); keys the %s sampler ignores: %s\n",
                    a->sched_path ? a->sched_path : "of the model",
                    r->sched.class_name[0] ? r->sched.class_name : "none", a->sampler, ignored[0] ? ignored : "none");
        }
    }
    return 0;
}

/* The pipeline, then the images (the library refuses non-finite model outputs). */
static int stage_generate(gen_run *r) {
    const size_t n = r->n;
    pndm_error err;
    r->latents = malloc(n * sizeof *r->latents);
    r->noise = r->a.noise_path ? malloc(n * sizeof *r->noise) : NULL;
    r->images = malloc(n * sizeof *r->images);
    r->pix = malloc(n);
    if (!r->latents || !r->images || !r->pix || (r->a.noise_path && !r->noise))
        return cli_fail(PNDM_ERR_NOMEM, "cannot allocate buffers for batch %d", r->B);
    progress_state ps = {cli_now_s(), isatty(STDERR_FILENO), 0, 0};
    r->p.progress = on_progress;
    r->p.progress_user = &ps;
    double t0 = cli_now_s();
    pndm_status st = pndm_generate(r->model, &r->p, r->noise, r->latents, &err);
    r->t_gen = cli_now_s() - t0;
    r->calls = ps.calls;
    if (st) {
        if (!g_quiet && ps.tty) fputc('\n', stderr);
        return cli_fail(st == PNDM_ERR_INTERRUPTED ? signal_exit() : (int)st, "%s", err.msg);
    }
    pndm_latents_to_images(r->latents, r->B, r->C, r->S, r->S, r->images);
    pndm_images_to_u8(r->images, n, r->pix);
    return 0;
}

/* Nothing more is written once a signal arrived; files already renamed into place stay. */
static int stop_if_signalled(const gen_run *r) {
    if (!g_signal) return 0;
    return cli_fail(signal_exit(), "interrupted by %s: %d of %d output files written",
                    g_signal == SIGTERM ? "SIGTERM" : "SIGINT", r->n_written, r->total_files);
}

static int write_npy(gen_run *r, const char *path, const float *data, int64_t d1, int64_t d2, int64_t d3) {
    pndm_error err;
    const int64_t shape[4] = {r->B, d1, d2, d3};
    if (pndm_npy_save_f32(path, data, 4, shape, &err)) return cli_fail(err.code, "%s", err.msg);
    cJSON_AddItemToArray(r->files, cJSON_CreateString(path));
    r->n_written++;
    return 0;
}

/* The batch as one image: a near-square grid, row-major (one image when B = 1). */
static int write_grid(gen_run *r) {
    const int B = r->B, S = r->S, C = r->C;
    int cols = 1;
    while (cols * cols < B) cols++;
    int rows = (B + cols - 1) / cols;
    int gw = cols * S, gh = rows * S;
    uint8_t *g = B == 1 ? r->pix : calloc((size_t)gw * gh * C, 1);
    if (!g) return cli_fail(PNDM_ERR_NOMEM, "cannot allocate the grid image");
    if (B > 1)
        for (int b = 0; b < B; b++)
            for (int y = 0; y < S; y++)
                memcpy(g + (((size_t)(b / cols) * S + y) * gw + (size_t)(b % cols) * S) * C,
                       r->pix + ((size_t)b * S + y) * S * C, (size_t)S * C);
    char params[1024], seedbuf[32];
    png_params(&r->a, r->model_path, r->sched_desc, r->a.seed, B == 1 ? 0 : -1, params, sizeof params);
    snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, r->a.seed);
    pndm_png_text text[3] = {{"parameters", params}, {"Software", "pndm-gen"}, {"pndm:seed", seedbuf}};
    int rc = write_png(r->a.output, g, gw, gh, C, text, 3);
    if (g != r->pix) free(g);
    if (rc) return rc;
    cJSON_AddItemToArray(r->files, cJSON_CreateString(r->a.output));
    r->n_written++;
    return 0;
}

/* One PNG per image. */
static int write_each(gen_run *r) {
    const int S = r->S, C = r->C;
    for (int b = 0; b < r->B; b++) {
        char path[PATH_MAX], params[1024], seedbuf[32];
        output_name(r, b, path, sizeof path);
        png_params(&r->a, r->model_path, r->sched_desc, r->a.seed, b, params, sizeof params);
        snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, r->a.per_image ? r->a.seed + (uint64_t)b : r->a.seed);
        pndm_png_text text[3] = {{"parameters", params}, {"Software", "pndm-gen"}, {"pndm:seed", seedbuf}};
        int rc = write_png(path, r->pix + (size_t)b * S * S * C, S, S, C, text, 3);
        if (rc) return rc;
        cJSON_AddItemToArray(r->files, cJSON_CreateString(path));
        r->n_written++;
        if (b + 1 < r->B && (rc = stop_if_signalled(r))) return rc;
    }
    return 0;
}

/* --save-noise, --latents, then the images. */
static int stage_write(gen_run *r) {
    const cli_args *a = &r->a;
    int rc;
    r->files = cJSON_CreateArray();
    if (!r->files) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    if ((rc = stop_if_signalled(r))) return rc;
    if (a->noise_path) {
        if ((rc = write_npy(r, a->noise_path, r->noise, r->C, r->S, r->S))) return rc;
        if ((rc = stop_if_signalled(r))) return rc;
    }
    if (a->latents_path) {
        if ((rc = write_npy(r, a->latents_path, r->latents, r->C, r->S, r->S))) return rc;
        if ((rc = stop_if_signalled(r))) return rc;
    }
    switch (r->out) {
    case OUT_NPY: return write_npy(r, a->output, r->images, r->S, r->S, r->C);
    case OUT_PNG_ONE:
    case OUT_PNG_GRID: return write_grid(r);
    case OUT_PNG_EACH: return write_each(r);
    }
    return 0;
}

/* Timing on stderr; the paths written, or the --json summary, on stdout. */
static int stage_report(gen_run *r) {
    const cli_args *a = &r->a;
    const int B = r->B;
    const int calls = r->calls > 0 ? r->calls : 1;
    if (!g_quiet)
        fprintf(stderr,
                "pndm-gen: %d image%s in %.2f s: %d UNet calls, %.4f s/call, %.3f images/s (seed %" PRIu64 ")\n", B,
                B == 1 ? "" : "s", r->t_gen, calls, r->t_gen / calls, B / r->t_gen, a->seed);
    if (!a->json) {
        for (int k = 0; k < cJSON_GetArraySize(r->files); k++) puts(cJSON_GetArrayItem(r->files, k)->valuestring);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "files", r->files);
    r->files = NULL;
    cJSON_AddStringToObject(j, "model", r->model_path);
    char seedbuf[32];
    snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, a->seed);
    cJSON_AddRawToObject(j, "seed", seedbuf);
    cJSON *seeds = cJSON_CreateArray();
    for (int b = 0; b < B; b++) {
        snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, a->per_image ? a->seed + (uint64_t)b : a->seed);
        cJSON_AddItemToArray(seeds, cJSON_CreateRaw(seedbuf));
    }
    cJSON_AddItemToObject(j, "image_seeds", seeds);
    cJSON_AddBoolToObject(j, "per_image_seeds", a->per_image);
    cJSON_AddNumberToObject(j, "steps", r->p.steps);
    cJSON_AddStringToObject(j, "sampler", a->sampler);
    cJSON *so = cJSON_CreateObject();
    if (!strcmp(a->sampler, "ddim")) {
        cJSON_AddNumberToObject(so, "eta", a->eta);
        cJSON_AddBoolToObject(so, "use_clipped_model_output", a->clipped);
    }
    cJSON_AddItemToObject(j, "sampler_options", so);
    cJSON_AddNumberToObject(j, "unet_calls", calls);
    cJSON_AddBoolToObject(j, "adaptive_calls", r->sampler_calls == PNDM_CALLS_ADAPTIVE);
    cJSON_AddNumberToObject(j, "sampler_steps", r->sampler_steps);
    cJSON_AddNumberToObject(j, "batch", B);
    cJSON_AddNumberToObject(j, "threads", r->p.n_threads);
    cJSON_AddStringToObject(j, "scheduler", r->sched_desc);
    cJSON *tm = cJSON_CreateObject();
    cJSON_AddNumberToObject(tm, "load_s", r->t_load);
    cJSON_AddNumberToObject(tm, "generate_s", r->t_gen);
    cJSON_AddNumberToObject(tm, "s_per_unet_call", r->t_gen / calls);
    cJSON_AddNumberToObject(tm, "images_per_s", B / r->t_gen);
    cJSON_AddItemToObject(j, "timings", tm);
    char *s = cJSON_Print(j);
    if (s) {
        puts(s);
        free(s);
    }
    cJSON_Delete(j);
    return 0;
}

int main(int argc, char **argv) {
    cli_prog = "pndm-gen";
    /* SIGINT / SIGTERM only set a flag: generation stops at the next UNet call, writing at the
     * next file, temporary files are removed, and the exit code is 130 / 143 */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* past a file-size limit (ulimit -f) write() then fails with EFBIG, reported like a full disk */
    signal(SIGXFSZ, SIG_IGN);
    gen_run r;
    memset(&r, 0, sizeof r);
    int exit_now;
    int rc = parse_args(argc, argv, &r.a, &exit_now);
    if (rc || exit_now) return rc;
    if (r.a.info_path) return do_info(r.a.info_path);
    rc = stage_plan_outputs(&r);
    if (!rc) rc = stage_load(&r);
    if (!rc) rc = stage_generate(&r);
    if (!rc) rc = stage_write(&r);
    if (!rc) rc = stage_report(&r);
    run_free(&r);
    if (rc == 0 && g_signal) rc = signal_exit();
    return rc;
}
