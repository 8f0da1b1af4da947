/* pndm-gen: generate images with a UNet2DModel and one of the samplers (PNDM by default); compare outputs
 * (--compare) and regenerate one from its stored parameters (--reproduce).
 * A thin front over the public API in pndm.h (plus cJSON for --json).
 *
 * Exit codes: cli.c's table (0 ok, 1 internal error, 2 usage, 3 model, 4 I/O, 5 out of memory,
 * 6 input data, 8 different (--compare, --reproduce), 130 SIGINT, 143 SIGTERM). */
#define _POSIX_C_SOURCE 200809L
#include "pndm.h"
#include "pndm_io.h"
#include "cli.h"
#include "compare.h"
#include "outputs.h"
#include "record.h"
#include "sampleset.h"

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

/* ---------------------------------------------------------------------------------------- */
/* Options: one table drives parsing, --help, the man page and the completion.               */

enum {
    OPT_MODEL,
    OPT_REVISION,
    OPT_VARIANT,
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
    OPT_OVERWRITE,
    OPT_METADATA,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_JSON,
    OPT_KERNEL,
    OPT_GEMM,
    OPT_INFO,
    OPT_REPRODUCE,
    OPT_COMPARE,
    OPT_TOLERANCE,
    OPT_DIFF_IMAGE,
    /* sample sets (cli/sampleset.c) */
    OPT_NUM_IMAGES,
    OPT_START_INDEX,
    OPT_SKIP_EXISTING,
    OPT_SHARD,
    OPT_NPZ,
    OPT_MANIFEST,
    OPT_COMPLETION,
    OPT_MAN,
    OPT_HELP,
    OPT_VERSION,
    N_OPT_IDS
};

static const cli_opt OPTS[] = {
    {OPT_MODEL, 'm', "model", "PATH|ORG/NAME", "bundled Fashion-MNIST model",
     "a .safetensors/.bin file, a diffusers model or pipeline folder, or a Hub id from the local Hugging Face cache"},
    {OPT_REVISION, 0, "revision", "REV", "main", "Hub ids: a branch under refs/ or a commit hash"},
    {OPT_VARIANT, 0, "variant", "NAME", "none",
     "weights variant: diffusion_pytorch_model.NAME.safetensors (e.g. fp16)"},
    {OPT_STEPS, 'n', "steps", "N", "50",
     "inference steps (the paper's methods: their sample_speed; model calls per sampler below)"},
    {OPT_BATCH, 'b', "batch", "N", "1",
     "number of images (with -N: images per chunk, i.e. per UNet call; 16 unless given)"},
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
     "output: .png (8-bit; with a batch use a %d pattern, else NAME-<i>.png), .npy (B,H,W,C float32 in [0,1], "
     "with a NAME.json record beside it), or - (one PNG to stdout)"},
    {OPT_GRID, 0, "grid", NULL, "off", "with a .png output: one grid image of the whole batch"},
    {OPT_LATENTS, 0, "latents", "FILE.npy", "none", "also write the final latents before clamping, (B,C,H,W) float32"},
    {OPT_NOISE, 0, "save-noise", "FILE.npy", "none", "also write the initial noise, (B,C,H,W) float32"},
    {OPT_OVERWRITE, 0, "overwrite", NULL, "off", "replace outputs that exist (else they are refused before the run)"},
    {OPT_METADATA, 0, "metadata", "full|minimal|none", "full",
     "generation record in the PNGs and the .npy sidecar: full; minimal (no path, version or kernel: "
     "byte-identical files across checkouts and machines); none (no text chunks, no sidecar)"},
    {OPT_QUIET, 'q', "quiet", NULL, "off", "no progress or timing on stderr (errors, and a random seed, only)"},
    {OPT_VERBOSE, 'v', "verbose", NULL, "off", "more detail on stderr (model, kernels, memory)"},
    {OPT_JSON, 0, "json", NULL, "off", "print a machine-readable summary on stdout (an \"error\" object on failure)"},
    {OPT_KERNEL, 0, "kernel", "ISA", "auto", "ISA path of the own kernels: auto, avx512, avx2, generic (see below)"},
    {OPT_GEMM, 0, "gemm", "BACKEND", "auto", "matrix products: native, openblas or auto (see below)"},
    {OPT_INFO, 0, "info", "FILE.png", "", "print the generation parameters stored in a PNG and exit"},
    {OPT_REPRODUCE, 0, "reproduce", "FILE", "",
     "regenerate a .png (or a .npy with its .json) from its stored parameters, checking the model's weights "
     "hash, and compare the result with it"},
    {OPT_COMPARE, 0, "compare", "PATH_A PATH_B", "",
     "compare two PNG/.npy files or two folders (B is the reference) and exit 0 or 8"},
    {OPT_TOLERANCE, 0, "tolerance", "X", "0 for PNG, 1e-5 for .npy",
     "--compare/--reproduce: largest difference allowed, in 8-bit levels for PNG, relative to max(1, max|B|) "
     "for .npy"},
    {OPT_DIFF_IMAGE, 0, "diff-image", "DIR", "none",
     "--compare/--reproduce: write A | B | amplified difference images of what differs into DIR"},
    {OPT_NUM_IMAGES, 'N', "num-images", "N", "",
     "a sample set: N images in chunks of --batch, image i seeded seed+i (= -b 1 -s seed+i), -o 'DIR/%05d.png' "
     "or FILE.npz; under mpirun spread over the ranks"},
    {OPT_START_INDEX, 0, "start-index", "K", "0", "with -N: number the set's images from K (seeds seed+K...)"},
    {OPT_SKIP_EXISTING, 0, "skip-existing", NULL, "off",
     "with -N: keep the images of this set already written (checked), make the rest: resumes a stopped run"},
    {OPT_SHARD, 0, "shard", "K/R", "", "with -N: make only part K (0-based) of R of the set (Slurm arrays, xargs)"},
    {OPT_NPZ, 0, "npz", "FILE.npz", "", "with -N and PNGs: also pack the set into FILE.npz (arr_0, uint8 N,H,W,C)"},
    {OPT_MANIFEST, 0, "manifest", "FILE.jsonl", "next to the set",
     "with -N: where the manifest goes (one JSON line per image: index, seed, file, sha256)"},
    {OPT_COMPLETION, 0, "completion", "bash", "", "print a bash completion script and exit"},
    {OPT_MAN, 0, "man", NULL, "", "print the manual page (roff) and exit"},
    {OPT_HELP, 'h', "help", NULL, "", "show this help and exit"},
    {OPT_VERSION, 0, "version", NULL, "", "print the version and exit"},
};
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

static const cli_page PAGE = {
    "pndm-gen",
    "generate images with a diffusion model (diffusers' PNDMPipeline) on the CPU",
    "[options]",
    "Generates images with a diffusers UNet2DModel and the PNDM sampler: the same images as diffusers' "
    "PNDMPipeline for the same model, seed and steps; or with diffusers' DDIM / DDPM pipelines or any method of the "
    "PNDM paper (--sampler). Every output carries a generation record (model file name and "
    "SHA-256 of its weights, sampler, steps, seeds, scheduler settings) from which --reproduce regenerates it; "
    "--compare checks outputs against reference images with a tolerance.",
    "pndm-gen --steps 50 --batch 4 --seed 42 -o out.png       # out-0.png .. out-3.png\n"
    "pndm-gen -b 16 -s 7 --grid -o grid.png\n"
    "pndm-gen -b 8 -s 1 -o 'img_%03d.png' --json\n"
    "pndm-gen --sampler f-pndm -n 50 -b 16 -s 7 --grid -o grid.png   # the paper's F-PNDM\n"
    "pndm-gen --sampler ddim --eta 1 -n 100 -b 4 -o ddim.png\n"
    "pndm-gen --info out-0.png                                # the stored parameters\n"
    "pndm-gen --reproduce out-0.png                           # regenerate and compare\n"
    "pndm-gen --compare new/ golden/ --tolerance 1 --diff-image diffs/\n"
    "pndm-gen -m google/ddpm-cifar10-32 -b 4 -o cifar.png      # from the Hugging Face cache\n"
    "pndm-gen -N 2000 -b 64 -s 0 -o 'fid/%05d.png'            # a sample set (+ fid/manifest.jsonl)\n"
    "pndm-gen -N 2000 -b 64 -s 0 -o 'fid/%05d.png' --skip-existing   # finish it after a stop\n"
    "mpirun -n 4 pndm-gen -N 50000 -b 16 -s 0 -o set.npz     # over MPI ranks, one .npz",
    "Outputs are written to a temporary file and renamed into place: a failed or interrupted run never leaves a "
    "partial file. An existing output is refused before the run unless --overwrite is given; outputs that are the "
    "same file (however the paths spell it) are refused; a device, FIFO or directory is never replaced."};

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
            "       pndm-gen --reproduce FILE.png [-m MODEL] [-o OUT]\n"
            "       pndm-gen --compare A B [--tolerance X] [--diff-image DIR] [--json]\n"
            "Generate images with a diffusers UNet2DModel and the PNDM sampler (same images as\n"
            "diffusers' PNDMPipeline for the same model, seed and steps), diffusers' DDIM / DDPM\n"
            "pipelines, or any method of the PNDM paper (--sampler).\n\n"
            "options:\n");
    cli_print_options(f, OPTS, N_OPTS, 30, OPT_THREADS, pndm_default_threads());
    print_samplers(f, steps);
    fputs("\n" CLI_KERNEL_HELP "\n", f);
    cli_print_exit_codes(f);
    cli_print_env(f);
    fprintf(f, "examples:\n%s\n", PAGE.examples);
}

/* ---------------------------------------------------------------------------------------- */

static int g_quiet = 0, g_verbose = 0;
static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

/* Exit code for the signal received (130 SIGINT, 143 SIGTERM). */
static int signal_exit(void) { return g_signal == SIGTERM ? CLI_EXIT_SIGTERM : CLI_EXIT_SIGINT; }

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

/* NAME.png -> NAME-<i>.png */
static void numbered_name(const char *path, int i, char *out, size_t size) {
    const char *e = ext_of(path);
    snprintf(out, size, "%.*s-%d%s", (int)(e - path), path, i, e);
}

/* NAME.npy -> NAME.json (the record beside a .npy output) */
static void sidecar_name(const char *npy, char *out, size_t size) {
    const char *e = ext_of(npy);
    snprintf(out, size, "%.*s.json", (int)(e - npy), npy);
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

/* ---------------------------------------------------------------------------------------- */
/* Stage: parse.                                                                             */

typedef struct {
    const char *model_path, *revision, *variant, *sched_path, *output, *latents_path, *noise_path, *info_path;
    const char *reproduce_path, *compare_a, *compare_b, *diff_dir;
    const char *kernel, *gemm; /* --kernel, --gemm (NULL: not given) */
    const char *sampler;       /* --sampler ("pndm") */
    double eta;                /* ddim */
    int clipped;               /* ddim: --use-clipped-model-output */
    long long steps, batch, threads;
    uint64_t seed;
    double tolerance; /* < 0: the defaults */
    int seed_given, per_image, skip_prk, grid, json, overwrite;
    rec_metadata metadata;
    unsigned char given[N_OPT_IDS]; /* which options the command line set */
    ss_args set;                    /* -N and the other sample-set options */
} cli_args;

static const char *const METADATA_NAMES[] = {"none", "minimal", "full"};

/* One option with its value into the arguments: the parser and --reproduce (the stored record's
 * entries) both come through here. Returns 0, an exit code, or -1 to exit 0 now (--help). */
static int apply_opt(cli_args *a, const cli_opt *o, const char *val) {
    switch (o->id) {
    case OPT_MODEL: a->model_path = val; break;
    case OPT_REVISION: a->revision = val; break;
    case OPT_VARIANT: a->variant = val; break;
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
            return cli_usage_error("invalid --seed '%s': expected an integer from 0 to 2^64-1, or -1 for random", val);
        a->seed_given = 1;
        break;
    case OPT_PER_IMAGE: a->per_image = 1; break;
    case OPT_SCHED: a->sched_path = val; break;
    case OPT_SKIP_PRK: a->skip_prk = 1; break;
    case OPT_SAMPLER: {
        if (!pndm_sampler_find_info(val)) {
            char names[256] = "";
            for (int k = 0; k < pndm_sampler_count(); k++) {
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", k ? ", " : "", pndm_sampler_get_info(k)->name);
            }
            return cli_usage_error("unknown --sampler '%s': one of %s (see --help)", val, names);
        }
        a->sampler = val;
        break;
    }
    case OPT_ETA:
        if (!cli_parse_double(val, &a->eta) || !(a->eta >= 0) || !isfinite(a->eta))
            return cli_usage_error("invalid --eta '%s': expected a number >= 0", val);
        break;
    case OPT_CLIPPED: a->clipped = 1; break;
    case OPT_THREADS:
        if (!cli_parse_i64(val, 0, 1024, &a->threads))
            return cli_usage_error("invalid --threads '%s': expected an integer from 0 (auto) to 1024", val);
        break;
    case OPT_OUTPUT: a->output = val; break;
    case OPT_KERNEL: a->kernel = val; break;
    case OPT_GEMM: a->gemm = val; break;
    case OPT_GRID: a->grid = 1; break;
    case OPT_LATENTS: a->latents_path = val; break;
    case OPT_NOISE: a->noise_path = val; break;
    case OPT_OVERWRITE: a->overwrite = 1; break;
    case OPT_METADATA: {
        int k = 0;
        while (k < 3 && strcmp(val, METADATA_NAMES[k])) k++;
        if (k == 3) return cli_usage_error("invalid --metadata '%s': expected full, minimal or none", val);
        a->metadata = (rec_metadata)k;
        break;
    }
    case OPT_QUIET: g_quiet = 1; break;
    case OPT_VERBOSE: g_verbose = 1; break;
    case OPT_JSON: a->json = 1; break;
    case OPT_INFO: a->info_path = val; break;
    case OPT_REPRODUCE: a->reproduce_path = val; break;
    case OPT_COMPARE: a->compare_a = val; break;
    case OPT_TOLERANCE:
        if (!cli_parse_double(val, &a->tolerance) || a->tolerance < 0)
            return cli_usage_error("invalid --tolerance '%s': expected a number >= 0", val);
        break;
    case OPT_DIFF_IMAGE: a->diff_dir = val; break;
    case OPT_NUM_IMAGES:
        if (!cli_parse_i64(val, 1, SS_MAX_IMAGES, &a->set.num_images))
            return cli_usage_error("invalid --num-images '%s': expected an integer from 1 to %lld", val, SS_MAX_IMAGES);
        break;
    case OPT_START_INDEX:
        if (!cli_parse_i64(val, 0, 1LL << 53, &a->set.start_index))
            return cli_usage_error("invalid --start-index '%s': expected an integer from 0 to 2^53", val);
        break;
    case OPT_SKIP_EXISTING: a->set.skip_existing = 1; break;
    case OPT_SHARD:
        if (ss_parse_shard(val, &a->set)) return PNDM_ERR_USAGE;
        break;
    case OPT_NPZ: a->set.npz = val; break;
    case OPT_MANIFEST: a->set.manifest = val; break;
    case OPT_COMPLETION:
        if (strcmp(val, "bash")) return cli_usage_error("--completion: only 'bash' is supported (got '%s')", val);
        cli_print_bash_completion(stdout, "pndm-gen", OPTS, N_OPTS);
        return -1;
    case OPT_MAN: cli_print_man(stdout, &PAGE, OPTS, N_OPTS, pndm_version()); return -1;
    case OPT_HELP: print_help(stdout, (int)a->steps); return -1;
    case OPT_VERSION: cli_out("pndm-gen %s\n", pndm_version()); return -1;
    }
    return 0;
}

static void default_args(cli_args *a) {
    memset(a, 0, sizeof *a);
    a->steps = 50;
    a->batch = 1;
    a->output = "out.png";
    a->sampler = "pndm";
    a->tolerance = -1;
    a->metadata = META_FULL;
}

static int parse_args(int argc, char **argv, cli_args *a, int *exit_now) {
    default_args(a);
    *exit_now = 0;
    for (int i = 1; i < argc;) {
        const char *val;
        const cli_opt *o = cli_next(OPTS, N_OPTS, argc, argv, &i, &val);
        if (!o) return PNDM_ERR_USAGE;
        a->given[o->id] = 1;
        int rc = apply_opt(a, o, val);
        if (rc < 0) return *exit_now = 1, 0;
        if (rc) return rc;
        if (o->id == OPT_COMPARE) { /* --compare A B: the second path follows */
            if (i >= argc) return cli_usage_error("--compare needs two paths: --compare A B");
            a->compare_b = argv[i++];
        }
    }
    int modes = !!a->info_path + !!a->reproduce_path + !!a->compare_a;
    if (modes > 1) return cli_usage_error("--info, --reproduce and --compare are separate modes: give one");
    if ((a->given[OPT_TOLERANCE] || a->given[OPT_DIFF_IMAGE]) && !a->compare_a && !a->reproduce_path)
        return cli_usage_error("--tolerance and --diff-image go with --compare or --reproduce");
    if (!a->set.num_images &&
        (a->given[OPT_START_INDEX] || a->given[OPT_SKIP_EXISTING] || a->given[OPT_SHARD] || a->given[OPT_NPZ] ||
         a->given[OPT_MANIFEST]))
        return cli_usage_error("--start-index, --skip-existing, --shard, --npz and --manifest need --num-images");
    if (a->set.num_images && modes)
        return cli_usage_error("--num-images makes a sample set: not with --info, --reproduce or --compare");
    /* --eta 0 is every sampler's no-op; a weight or the clipped output only make sense for ddim */
    if (((a->given[OPT_ETA] && a->eta != 0) || a->clipped) && strcmp(a->sampler, "ddim") != 0)
        return cli_usage_error("%s applies to --sampler ddim only (got --sampler %s)",
                               a->clipped ? "--use-clipped-model-output" : "--eta", a->sampler);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* One run, in stages: parse -> [reproduce: read the record] -> plan outputs -> load ->
 * check outputs -> generate -> write -> report [-> reproduce: compare]. Each stage returns 0 or an exit code and
 * leaves what it made in the run; run_free releases it all.                                 */

typedef enum { OUT_NPY, OUT_PNG_ONE, OUT_PNG_GRID, OUT_PNG_EACH } out_kind;

typedef struct gen_run {
    cli_args a;
    /* reproduce */
    gen_record stored;         /* the record read back */
    const char *expect_sha256; /* into stored */
    const char *stored_sched;  /* describe() text it was made with, into stored */
    const char *sched_json;    /* a --scheduler-config it was made with, into stored */
    char *sched_json_text;     /* the --scheduler-config in effect, compact JSON (for the record) */
    char repro_source[PATH_MAX], repro_out[PATH_MAX];
    int pick; /* write only image `pick` of the batch (>= 0) */
    /* plan_outputs */
    out_kind out;
    int pattern; /* the output name has a %d: pat */
    ss_pattern pat;
    int to_stdout; /* -o - */
    cli_outputs outs;
    char sidecar[PATH_MAX]; /* NAME.json beside a .npy output, or "" */
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
    gen_record rec; /* how the outputs are made (build_record) */
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
    /* report */
    cJSON *compare_json; /* --reproduce --json: the comparison */
    /* a sample set (-N): its plan and the MPI job it may run in */
    ss_plan set;
    ss_dist dist;
} gen_run;

static void run_free(gen_run *r) {
    cJSON_Delete(r->files);
    cJSON_Delete(r->compare_json);
    free(r->latents);
    free(r->noise);
    free(r->images);
    free(r->pix);
    if (r->have_sched) pndm_scheduler_config_free(&r->sched);
    pndm_model_free(r->model);
    outputs_free(&r->outs);
    rec_free(&r->rec);
    rec_free(&r->stored);
    free(r->sched_json_text);
}

/* Output file i (0-based) of a PNG_EACH run. */
static void output_name(const gen_run *r, int i, char *out, size_t size) {
    if (!r->pattern)
        numbered_name(r->a.output, i, out, size);
    else if (ss_pattern_name(&r->pat, i, out, size))
        out[0] = 0; /* cannot happen: stage_plan checked the longest */
}

/* ---- stage: reproduce (read the record) ------------------------------------------------- */

/* How a stored record entry gets back into the arguments: through the option that set it
 * (RK_OPTION: its value; RK_SWITCH: 1 sets it, 0 does not), checked against the loaded model
 * (RK_CHECK, see stage_load), or for information only (RK_INFO). A new record entry needs a
 * row here (a new sampler's options: RK_OPTION with their option). */
typedef enum { RK_OPTION, RK_SWITCH, RK_CHECK, RK_INFO } rk_kind;
static const struct {
    const char *key;
    rk_kind kind;
    int opt;
} REC_KEYS[] = {
    {"steps", RK_OPTION, OPT_STEPS},
    {"seed", RK_OPTION, OPT_SEED},
    {"batch", RK_OPTION, OPT_BATCH},
    {"per_image_seeds", RK_SWITCH, OPT_PER_IMAGE},
    {"skip_prk_steps", RK_SWITCH, OPT_SKIP_PRK},
    {"grid", RK_SWITCH, OPT_GRID},
    {"sampler", RK_OPTION, OPT_SAMPLER},
    {"eta", RK_OPTION, OPT_ETA},                          /* ddim */
    {"use_clipped_model_output", RK_SWITCH, OPT_CLIPPED}, /* ddim */
    {"model", RK_CHECK, -1},                              /* finds the bundled model when -m is not given */
    {"model_sha256", RK_CHECK, -1},                       /* must match the model's */
    {"model_path", RK_CHECK, -1},                         /* the model, when -m is not given and it exists */
    {"scheduler", RK_CHECK, -1},                          /* must match the settings in effect */
    {"scheduler_config", RK_CHECK, -1}, /* replaces the model's (it was given with --scheduler-config) */
    {"image_index", RK_CHECK, -1},      /* which image of the batch */
    {"image_seed", RK_INFO, -1},
    {"pndm_version", RK_INFO, -1},
    {"kernel", RK_INFO, -1},
    {"pndm-gen", RK_INFO, -1}, /* records before the model hash: the version */
};
#define N_REC_KEYS ((int)(sizeof REC_KEYS / sizeof REC_KEYS[0]))

static const cli_opt *opt_by_id(int id) {
    for (int k = 0; k < N_OPTS; k++)
        if (OPTS[k].id == id) return &OPTS[k];
    return NULL;
}

/* The record of a .npy output: the .json beside it (FILE is the .npy or the .json). The data
 * file it describes goes to r->repro_source. */
static int read_sidecar_record(gen_run *r, const char *file) {
    char json_path[PATH_MAX], *buf = NULL, msg[512];
    size_t size;
    pndm_error err;
    const char *e = ext_of(file);
    if (!strcmp(e, ".npy")) {
        sidecar_name(file, json_path, sizeof json_path);
        snprintf(r->repro_source, sizeof r->repro_source, "%s", file);
    } else {
        snprintf(json_path, sizeof json_path, "%s", file);
        snprintf(r->repro_source, sizeof r->repro_source, "%.*s.npy", (int)(e - file), file);
    }
    if (pndm_read_file(json_path, 16u << 20, &buf, &size, &err))
        return cli_fail(err.code, "--reproduce: %s (the record of a .npy output is the .json beside it)", err.msg);
    int rc = rec_from_json_text(buf, size, &r->stored, msg, sizeof msg);
    free(buf);
    if (rc) return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: %s", json_path, msg);
    return 0;
}

static void take_parameters(const char *key, const char *value, void *user) {
    char **out = user;
    if (!strcmp(key, "parameters") && !*out) *out = strdup(value);
}

/* The record of a PNG: its "parameters" text chunk. */
static int read_png_record(gen_run *r, const char *file) {
    char *buf = NULL, *params = NULL, msg[512];
    snprintf(r->repro_source, sizeof r->repro_source, "%s", file);
    size_t size;
    pndm_error err;
    if (pndm_read_file(file, 256u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    pndm_status s = pndm_png_read_text(buf, size, file, take_parameters, &params, &err);
    free(buf);
    if (s) return free(params), cli_fail(s == PNDM_ERR_MODEL ? PNDM_ERR_INPUT : s, "%s", err.msg);
    if (!params)
        return cli_fail(PNDM_ERR_INPUT,
                        "--reproduce: %s has no \"parameters\" text chunk (not made by pndm-gen, or made with "
                        "--metadata none)",
                        file);
    int rc = rec_from_text(params, &r->stored, msg, sizeof msg);
    free(params);
    if (rc) return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: parameters: %s", file, msg);
    return 0;
}

static int stage_reproduce_read(gen_run *r) {
    cli_args *a = &r->a;
    const char *file = a->reproduce_path;
    r->pick = -1;
    const char *e = ext_of(file);
    int rc = (!strcmp(e, ".npy") || !strcmp(e, ".json")) ? read_sidecar_record(r, file) : read_png_record(r, file);
    if (rc) return rc;
    /* generation options come from the record only */
    for (int k = 0; k < N_REC_KEYS; k++)
        if (REC_KEYS[k].opt >= 0 && a->given[REC_KEYS[k].opt])
            return cli_usage_error("--reproduce takes --%s from %s's record: drop it",
                                   opt_by_id(REC_KEYS[k].opt)->long_name, file);
    if (a->given[OPT_SCHED])
        return cli_usage_error("--reproduce takes the scheduler settings from %s: drop --scheduler-config", file);
    if (a->given[OPT_LATENTS] || a->given[OPT_NOISE] || a->given[OPT_GRID])
        return cli_usage_error("--reproduce writes the image only: drop --latents / --save-noise");
    const gen_record *s = &r->stored;
    long long index = -1;
    for (int i = 0; i < s->n; i++) {
        const char *key = s->e[i].key, *val = s->e[i].value;
        int k = 0;
        while (k < N_REC_KEYS && strcmp(REC_KEYS[k].key, key)) k++;
        if (k == N_REC_KEYS)
            return cli_fail(PNDM_ERR_INPUT,
                            "--reproduce: %s: unknown key '%s' in the stored parameters (written by a newer "
                            "pndm-gen?): it cannot be reproduced faithfully",
                            file, key);
        switch (REC_KEYS[k].kind) {
        case RK_OPTION:
            if ((rc = apply_opt(a, opt_by_id(REC_KEYS[k].opt), val)) != 0)
                return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: bad stored value %s=%s", file, key, val);
            break;
        case RK_SWITCH:
            if (!strcmp(val, "1") || !strcmp(val, "true"))
                apply_opt(a, opt_by_id(REC_KEYS[k].opt), NULL);
            else if (strcmp(val, "0") && strcmp(val, "false"))
                return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: bad stored value %s=%s", file, key, val);
            break;
        case RK_CHECK:
            if (!strcmp(key, "model_sha256")) r->expect_sha256 = val;
            if (!strcmp(key, "scheduler")) r->stored_sched = val;
            if (!strcmp(key, "scheduler_config")) r->sched_json = val;
            if (!strcmp(key, "image_index") && !cli_parse_i64(val, -1, 1 << 20, &index))
                return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: bad stored value %s=%s", file, key, val);
            break;
        case RK_INFO: break;
        }
    }
    if (!rec_get(s, "seed") || !rec_get(s, "steps"))
        return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: the stored parameters lack the seed or the steps", file);
    if (index >= a->batch)
        return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: image_index %lld is outside the batch of %lld", file, index,
                        a->batch);
    /* the image alone: with one generator per image, image i is the single-image run with seed
     * + i; with one generator for the batch, the batch is regenerated and image i kept */
    if (!strcmp(ext_of(r->repro_source), ".npy") || a->grid || a->batch == 1) {
        r->pick = -1;
    } else if (index < 0) {
        return cli_fail(PNDM_ERR_INPUT, "--reproduce: %s: the stored parameters lack image_index", file);
    } else if (a->per_image) {
        a->seed += (uint64_t)index;
        a->batch = 1;
    } else {
        r->pick = (int)index;
    }
    /* the model: -m, else the stored path when it exists, else the bundled model if the name fits */
    if (!a->model_path) {
        const char *path = rec_get(s, "model_path"), *name = rec_get(s, "model");
        struct stat st;
        char old_name[PATH_MAX];
        if (!path && name && strchr(name, '/')) path = name; /* old records stored the path as "model" */
        if (path && stat(path, &st) == 0) {
            a->model_path = path;
        } else {
            const char *def = pndm_default_model_path();
            char def_name[PATH_MAX] = "";
            if (def) rec_base_name(def, def_name, sizeof def_name);
            if (name) rec_base_name(name, old_name, sizeof old_name);
            if (def && name && !strcmp(def_name, old_name))
                a->model_path = def;
            else
                return cli_usage_error("--reproduce: %s was made with model '%s'%s%s%s: give it with -m", file,
                                       name ? name : "?", r->expect_sha256 ? " (weights sha256 " : "",
                                       r->expect_sha256 ? r->expect_sha256 : "", r->expect_sha256 ? ")" : "");
        }
    }
    if (!a->given[OPT_OUTPUT]) { /* NAME.png -> NAME.reproduced.png, in the current directory */
        const char *base = strrchr(r->repro_source, '/');
        base = base ? base + 1 : r->repro_source;
        const char *dot = strrchr(base, '.');
        snprintf(r->repro_out, sizeof r->repro_out, "%.*s.reproduced%s", dot ? (int)(dot - base) : (int)strlen(base),
                 base, dot ? dot : ".png");
        a->output = r->repro_out;
    }
    if (!strcmp(a->output, "-"))
        return cli_usage_error("--reproduce compares its output with %s: give -o FILE, not -", file);
    if (strcmp(ext_of(a->output), ext_of(r->repro_source)))
        return cli_usage_error("--reproduce: -o '%s' must have the extension of %s", a->output, r->repro_source);
    return 0;
}

/* ---- stage: plan outputs ------------------------------------------------------------------ */

/* Everything that needs no model: names, extensions, patterns, the seed; a single output's
 * directory and what is at its path. */
static int stage_plan_set(gen_run *r);

static int stage_plan_outputs(gen_run *r) {
    cli_args *a = &r->a;
    if (a->set.num_images) return stage_plan_set(r);
    const int to_stdout = !strcmp(a->output, "-");
    const char *ext = to_stdout ? ".png" : ext_of(a->output);
    int out_png = !strcmp(ext, ".png") || !strcmp(ext, ".PNG");
    int out_npy = !strcmp(ext, ".npy");
    if (!out_png && !out_npy)
        return cli_usage_error("unknown output extension '%s' in '%s': use .png or .npy", ext, a->output);
    char why[200];
    int pk = to_stdout ? 0 : ss_pattern_parse(a->output, &r->pat, why, sizeof why);
    if (pk < 0)
        return cli_usage_error("bad output pattern (%s): '%s'", why, a->output); /* reason first: a long path is cut */
    if (pk > 0 && !out_png) return cli_usage_error("a %%d pattern needs a .png output ('%s')", a->output);
    char longest[PATH_MAX];
    if (pk > 0 && ss_pattern_name(&r->pat, a->batch - 1, longest, sizeof longest))
        return cli_usage_error("output pattern '%s': the file names are too long", a->output);
    if (a->grid && !out_png) return cli_usage_error("--grid needs a .png output");
    if (a->grid && pk > 0) return cli_usage_error("--grid writes one file: drop the %%d from '%s'", a->output);
    if (to_stdout && a->batch > 1 && !a->grid && r->pick < 0)
        return cli_usage_error("-o - writes one PNG to stdout: use --grid for a batch, or -o with a file name");
    if (to_stdout && a->json) return cli_usage_error("-o - writes the image to stdout: --json cannot go there too");
    if (a->latents_path && strcmp(ext_of(a->latents_path), ".npy"))
        return cli_usage_error("--latents needs a .npy path (got '%s')", a->latents_path);
    if (a->noise_path && strcmp(ext_of(a->noise_path), ".npy"))
        return cli_usage_error("--save-noise needs a .npy path (got '%s')", a->noise_path);
    if (!a->seed_given) a->seed = random_seed();
    if (a->per_image && a->seed > UINT64_MAX - (uint64_t)a->batch)
        return cli_usage_error("--seed %" PRIu64 " + batch overflows 64 bits with --per-image-seeds", a->seed);
    r->pattern = pk > 0;
    r->to_stdout = to_stdout;
    r->out = out_npy               ? OUT_NPY
        : a->grid                  ? OUT_PNG_GRID
        : r->pick >= 0             ? OUT_PNG_ONE
        : (pk > 0 || a->batch > 1) ? OUT_PNG_EACH
                                   : OUT_PNG_ONE;
    /* a single output can be checked now; a batch's files after the memory check (a million
     * names take a while) */
    if (r->out != OUT_PNG_EACH && !to_stdout) {
        pndm_output_target t;
        pndm_error err;
        if (pndm_output_resolve(a->output, &t, &err)) return cli_fail(err.code, "output: %s", err.msg);
    }
    return 0;
}

/* ---- stage: check outputs ----------------------------------------------------------------- */

/* Every output: it can be created, collides with no other output or input, and replaces
 * nothing unless asked (outputs.h), before the (long) generation. */
static int stage_check_outputs(gen_run *r) {
    const cli_args *a = &r->a;
    const int to_stdout = r->to_stdout;
    cli_outputs *o = &r->outs;
    int rc = 0;
    if (a->noise_path) rc = outputs_add(o, "--save-noise", a->noise_path);
    if (!rc && a->latents_path) rc = outputs_add(o, "--latents", a->latents_path);
    if (!rc && r->out == OUT_PNG_EACH) {
        char path[PATH_MAX];
        for (int i = 0; i < (int)a->batch && !rc; i++) {
            output_name(r, i, path, sizeof path);
            rc = outputs_add(o, "output", path);
        }
    } else if (!rc) {
        rc = outputs_add(o, "output", a->output);
    }
    if (!rc && r->out == OUT_NPY && a->metadata != META_NONE) {
        sidecar_name(a->output, r->sidecar, sizeof r->sidecar);
        rc = outputs_add(o, "the record of the .npy output", r->sidecar);
    }
    if (!rc) rc = outputs_add_input(o, "--scheduler-config", a->sched_path);
    if (!rc) rc = outputs_add_input(o, "model", r->model_path);
    if (!rc && a->reproduce_path) rc = outputs_add_input(o, "--reproduce", r->repro_source);
    if (!rc) rc = outputs_check(o, a->overwrite ? OUT_REPLACE : OUT_REFUSE, a->overwrite);
    if (rc) return rc;
    r->total_files = o->n_outputs + to_stdout;
    return 0;
}

/* ---- stage: load -------------------------------------------------------------------------- */

/* The record every output carries (record.h); per-image entries are set when each is written. */
static int build_record(gen_run *r) {
    const cli_args *a = &r->a;
    gen_record *g = &r->rec;
    char name[PATH_MAX];
    rec_base_name(r->model_path, name, sizeof name);
    int e = 0;
    e |= rec_set(g, "model", REC_STR, REC_MINIMAL, "%s", name);
    e |= rec_set(g, "model_sha256", REC_STR, REC_MINIMAL, "%s", pndm_model_sha256(r->model));
    e |= rec_set(g, "model_path", REC_STR, REC_FULL, "%s", r->model_path);
    e |= rec_set(g, "sampler", REC_STR, REC_MINIMAL, "%s", a->sampler);
    if (!strcmp(a->sampler, "ddim")) { /* its options; the other samplers have none */
        e |= rec_set(g, "eta", REC_NUM, REC_MINIMAL, "%.17g", a->eta);
        e |= rec_set(g, "use_clipped_model_output", REC_BOOL, REC_MINIMAL, "%d", a->clipped);
    }
    e |= rec_set(g, "steps", REC_NUM, REC_MINIMAL, "%d", r->p.steps);
    e |= rec_set(g, "seed", REC_NUM, REC_MINIMAL, "%" PRIu64, a->seed);
    e |= rec_set(g, "per_image_seeds", REC_BOOL, REC_MINIMAL, "%d", a->per_image);
    e |= rec_set(g, "batch", REC_NUM, REC_MINIMAL, "%d", r->B);
    if (a->grid) e |= rec_set(g, "grid", REC_BOOL, REC_MINIMAL, "1");
    if (a->skip_prk) e |= rec_set(g, "skip_prk_steps", REC_BOOL, REC_MINIMAL, "1");
    e |= rec_set(g, "scheduler", REC_STR, REC_MINIMAL, "%s", r->sched_desc);
    if (r->sched_json_text) e |= rec_set(g, "scheduler_config", REC_JSON, REC_MINIMAL, "%s", r->sched_json_text);
    e |= rec_set(g, "pndm_version", REC_STR, REC_FULL, "%s", pndm_version());
    e |= rec_set(g, "kernel", REC_STR, REC_FULL, "%s", pndm_kernel_path());
    return e ? cli_fail(PNDM_ERR_NOMEM, "out of memory") : 0;
}

/* The scheduler config in effect: --scheduler-config's file, a reproduced record's, or the
 * model's. A given one is also kept as compact JSON for the record. */
static int load_scheduler(gen_run *r) {
    const cli_args *a = &r->a;
    pndm_error err;
    char *buf = NULL;
    size_t size = 0;
    const char *source = a->sched_path;
    if (a->sched_path) {
        if (pndm_read_file(a->sched_path, 64u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    } else if (r->sched_json) {
        buf = strdup(r->sched_json);
        if (!buf) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
        size = strlen(buf);
        source = "the stored scheduler_config";
    } else {
        if (pndm_model_get_scheduler_config(r->model, &r->sched, &err)) return cli_fail(err.code, "%s", err.msg);
        r->have_sched = 1;
        return 0;
    }
    pndm_status s = pndm_scheduler_config_parse(buf, size, source, &r->sched, &err);
    if (!s) {
        r->have_sched = 1;
        cJSON *j = cJSON_ParseWithLength(buf, size);
        r->sched_json_text = j ? cJSON_PrintUnformatted(j) : NULL;
        cJSON_Delete(j);
        if (!r->sched_json_text) s = PNDM_ERR_NOMEM, snprintf(err.msg, sizeof err.msg, "out of memory");
    }
    free(buf);
    return s ? cli_fail(s, "%s", err.msg) : 0;
}

/* The model, the scheduler config, the generation parameters, the memory check, the record. */
static int stage_load(gen_run *r) {
    cli_args *a = &r->a;
    pndm_error err;
    int rc;
    r->model_path = a->model_path ? a->model_path : pndm_default_model_path();
    if (!r->model_path)
        return cli_fail(PNDM_ERR_USAGE,
                        "no --model given and the bundled default model was not found "
                        "(looked for $PNDM_MODEL, the installed and the source-tree copies)");
    pndm_model_params mp = pndm_model_default_params();
    if (cli_kernel_params(a->kernel, a->gemm, &mp)) return PNDM_ERR_USAGE;
    double t0 = cli_now_s();
    mp.revision = a->revision;
    mp.variant = a->variant;
    if (pndm_model_load_ex(r->model_path, &mp, &r->model, &err)) return cli_fail(err.code, "%s", err.msg);
    r->t_load = cli_now_s() - t0;
    if (r->expect_sha256 && strcmp(r->expect_sha256, pndm_model_sha256(r->model)))
        return cli_fail(PNDM_ERR_MODEL,
                        "--reproduce: model mismatch: %s was made with weights sha256 %s, %s has weights sha256 %s: "
                        "give the model it was made with (-m)",
                        a->reproduce_path, r->expect_sha256, r->model_path, pndm_model_sha256(r->model));
    if ((rc = load_scheduler(r))) return rc;
    if (a->skip_prk) r->sched.skip_prk_steps = 1;
    if (a->steps > r->sched.num_train_timesteps)
        return cli_usage_error("--steps %lld is larger than the scheduler's num_train_timesteps (%d)", a->steps,
                               r->sched.num_train_timesteps);
    /* the sampler now: step counts it cannot run are refused before generating; it describes
     * the schedule and the config as it reads them (pndm: the PNDMScheduler config) */
    pndm_sampler_params sp = pndm_sampler_default_params();
    sp.name = a->sampler;
    sp.eta = a->eta;
    sp.use_clipped_model_output = a->clipped;
    pndm_sampler *smp = NULL;
    if (pndm_sampler_create(&sp, &r->sched, (int)a->steps, &smp, &err)) return cli_fail(err.code, "%s", err.msg);
    pndm_sampler_describe(smp, r->sched_desc, sizeof r->sched_desc);
    r->sampler_calls = pndm_sampler_num_calls(smp);
    r->sampler_steps = pndm_sampler_num_steps(smp);
    char schedule[1024] = "", ignored[1024] = "";
    pndm_sampler_schedule(smp, schedule, sizeof schedule);
    pndm_sampler_ignored_keys(smp, ignored, sizeof ignored);
    pndm_sampler_free(smp);
    if (r->stored_sched) { /* records before the model hash wrote scheduler={...} */
        size_t l = strlen(r->stored_sched);
        int braced = l >= 2 && r->stored_sched[0] == '{' && r->stored_sched[l - 1] == '}';
        if (braced ? strncmp(r->stored_sched + 1, r->sched_desc, l - 2) || strlen(r->sched_desc) != l - 2
                   : strcmp(r->stored_sched, r->sched_desc))
            return cli_fail(PNDM_ERR_MODEL,
                            "--reproduce: scheduler settings differ: %s was made with %s, this model's are %s",
                            a->reproduce_path, r->stored_sched, r->sched_desc);
    }

    pndm_gen_params *p = &r->p;
    *p = pndm_gen_default_params();
    p->steps = (int)a->steps;
    p->batch = (int)a->batch;
    p->seed = a->seed;
    p->per_image_seeds = a->per_image;
    p->n_threads = a->threads > 0 ? (int)a->threads : pndm_default_threads();
    p->scheduler = &r->sched;
    p->cancel = &g_signal;
    p->sampler = sp;
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
    if ((rc = build_record(r))) return rc;
    if (!g_quiet) {
        fprintf(stderr,
                "pndm-gen: model %s (%d ch, %dx%d, %.2f M params), seed %" PRIu64
                "%s, %d steps, batch %d, %d threads\n",
                r->model_path, r->C, r->S, r->S, (double)pndm_model_param_count(r->model) / 1e6, a->seed,
                a->per_image ? " (+i per image)" : "", p->steps, r->B, p->n_threads);
        if (g_verbose) {
            fprintf(stderr,
                    "pndm-gen: weights sha256 %s; scheduler {%s}; kernels %s; memory estimate %.1f MiB; model "
                    "loaded in %.3f s\n",
                    pndm_model_sha256(r->model), r->sched_desc, pndm_model_kernel_path(r->model),
                    (double)r->need / (1 << 20), r->t_load);
            fprintf(stderr, "pndm-gen: sampler %s: %s\n", a->sampler, schedule);
            fprintf(stderr, "pndm-gen: scheduler config %s (class %s); keys the %s sampler ignores: %s\n",
                    a->sched_path ? a->sched_path : "of the model",
                    r->sched.class_name[0] ? r->sched.class_name : "none", a->sampler, ignored[0] ? ignored : "none");
        }
    } else if (!a->seed_given) { /* a random seed is never lost, even with -q */
        fprintf(stderr, "pndm-gen: seed %" PRIu64 " (random)\n", a->seed);
    }
    return 0;
}

/* ---- stage: generate ---------------------------------------------------------------------- */

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

/* ---- stage: write ------------------------------------------------------------------------- */

/* Nothing more is written once a signal arrived; files already renamed into place stay. */
static int stop_if_signalled(const gen_run *r) {
    if (!g_signal) return 0;
    return cli_fail(signal_exit(), "interrupted by %s: %d of %d output files written",
                    g_signal == SIGTERM ? "SIGTERM" : "SIGINT", r->n_written, r->total_files);
}

static void wrote(gen_run *r, const char *path) {
    if (!r->files) r->files = cJSON_CreateArray();
    if (strcmp(path, "-")) cJSON_AddItemToArray(r->files, cJSON_CreateString(path));
    r->n_written++;
}

static int write_bytes(gen_run *r, const char *path, const void *data, size_t size) {
    int rc = cli_write_output(path, data, size, r->a.overwrite);
    if (!rc) wrote(r, path);
    return rc;
}

static int write_npy(gen_run *r, const char *path, const float *data, int64_t d1, int64_t d2, int64_t d3) {
    pndm_error err;
    const int64_t shape[4] = {r->B, d1, d2, d3};
    void *buf;
    size_t size;
    if (pndm_npy_encode_f32(data, 4, shape, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    int rc = write_bytes(r, path, buf, size);
    free(buf);
    return rc;
}

/* The text chunks of image `index` (-1: a grid of the batch) seeded `seed`: the record with its
 * per-image entries, the software, the seed (none with --metadata none). Every PNG pndm-gen
 * writes takes them from here, and --skip-existing compares a file's against them. */
static int image_text(gen_run *r, int index, uint64_t seed, ss_record *out) {
    const cli_args *a = &r->a;
    gen_record *g = &r->rec;
    int e = 0;
    if (index >= 0) {
        e |= rec_set(g, "image_index", REC_NUM, REC_MINIMAL, "%d", index);
        e |= rec_set(g, "image_seed", REC_NUM, REC_MINIMAL, "%" PRIu64, seed);
    }
    char *params = rec_to_text(g, a->metadata);
    if (e || !params) return free(params), cli_fail(PNDM_ERR_NOMEM, "out of memory");
    size_t pl = strlen(params);
    if (pl + 64 > sizeof out->store) {
        free(params);
        return cli_fail(PNDM_ERR_USAGE, "the generation record is too long (%zu bytes)", pl);
    }
    memcpy(out->store, params, pl + 1);
    free(params);
    char *seedbuf = out->store + pl + 1;
    snprintf(seedbuf, 32, "%" PRIu64, seed);
    out->text[0] = (pndm_png_text){"parameters", out->store};
    out->text[1] = (pndm_png_text){"Software", "pndm-gen"};
    out->text[2] = (pndm_png_text){"pndm:seed", seedbuf};
    out->n = a->metadata == META_NONE ? 0 : 3;
    return 0;
}

/* One PNG with the record of image `index` (-1: a grid of the batch) in its text chunks. */
static int write_png(gen_run *r, const char *path, const uint8_t *pix, int w, int h, int index) {
    const cli_args *a = &r->a;
    pndm_error err;
    uint64_t seed = a->per_image && index > 0 ? a->seed + (uint64_t)index : a->seed;
    static ss_record rec;
    int rc = image_text(r, index, seed, &rec);
    if (rc) return rc;
    void *buf;
    size_t size;
    pndm_status s = pndm_png_encode(pix, w, h, r->C, rec.text, rec.n, &buf, &size, &err);
    if (s) return cli_fail(err.code, "%s: %s", path, err.msg);
    rc = write_bytes(r, path, buf, size);
    free(buf);
    return rc;
}

/* The batch as one image: a near-square grid, row-major; or one image (image r->pick of the
 * batch when reproducing one). */
static int write_grid(gen_run *r) {
    const int S = r->S, C = r->C, B = r->out == OUT_PNG_ONE ? 1 : r->B;
    const int first = r->pick >= 0 ? r->pick : 0;
    int cols = 1;
    while (cols * cols < B) cols++;
    int rows = (B + cols - 1) / cols;
    int gw = cols * S, gh = rows * S;
    const uint8_t *one = r->pix + (size_t)first * S * S * C;
    uint8_t *g = B == 1 ? NULL : calloc((size_t)gw * gh * C, 1);
    if (B > 1 && !g) return cli_fail(PNDM_ERR_NOMEM, "cannot allocate the grid image");
    if (B > 1)
        for (int b = 0; b < B; b++)
            for (int y = 0; y < S; y++)
                memcpy(g + (((size_t)(b / cols) * S + y) * gw + (size_t)(b % cols) * S) * C,
                       r->pix + ((size_t)b * S + y) * S * C, (size_t)S * C);
    int rc = write_png(r, r->a.output, g ? g : one, gw, gh, B == 1 ? first : -1);
    free(g);
    return rc;
}

/* One PNG per image. */
static int write_each(gen_run *r) {
    const int S = r->S, C = r->C;
    for (int b = 0; b < r->B; b++) {
        char path[PATH_MAX];
        output_name(r, b, path, sizeof path);
        int rc = write_png(r, path, r->pix + (size_t)b * S * S * C, S, S, b);
        if (rc) return rc;
        if (b + 1 < r->B && (rc = stop_if_signalled(r))) return rc;
    }
    return 0;
}

/* The .json beside a .npy output: the record of the whole batch. */
static int write_sidecar(gen_run *r) {
    cJSON *j = rec_to_json(&r->rec, r->a.metadata);
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!s) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) return free(s), cli_fail(PNDM_ERR_NOMEM, "out of memory");
    t[n] = '\n';
    t[n + 1] = 0;
    int rc = write_bytes(r, r->sidecar, t, n + 1);
    free(t);
    return rc;
}

/* --save-noise, --latents, then the images (and a .npy's record). */
static int stage_write(gen_run *r) {
    const cli_args *a = &r->a;
    int rc;
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
    case OUT_NPY: /* the record first: a .npy is never without it; it goes if the .npy fails */
        if (r->sidecar[0] && (rc = write_sidecar(r))) return rc;
        if ((rc = write_npy(r, a->output, r->images, r->S, r->S, r->C)) && r->sidecar[0]) {
            unlink(r->sidecar);
            cJSON_DeleteItemFromArray(r->files, cJSON_GetArraySize(r->files) - 1);
            r->n_written--;
        }
        return rc;
    case OUT_PNG_ONE:
    case OUT_PNG_GRID: return write_grid(r);
    case OUT_PNG_EACH: return write_each(r);
    }
    return 0;
}

/* ---- stage: report ------------------------------------------------------------------------ */

/* Model calls of the run: as made (pf: adaptive), else the sampler's count. */
static int unet_calls(const gen_run *r) {
    if (r->calls > 0) return r->calls;
    return r->sampler_calls > 0 ? r->sampler_calls : 1;
}

/* What --json prints, success or not: the files written so far, the seed (chosen or given), the
 * record once built; on failure an "error" object (code, name, message). */
static cJSON *json_summary(gen_run *r, int rc) {
    const cli_args *a = &r->a;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    if (rc) {
        int code;
        const char *msg = cli_last_error(&code);
        cJSON *e = cJSON_AddObjectToObject(j, "error");
        cJSON_AddNumberToObject(e, "code", rc);
        cJSON_AddStringToObject(e, "name",
                                rc == CLI_EXIT_SIGINT          ? "interrupted (SIGINT)"
                                    : rc == CLI_EXIT_SIGTERM   ? "terminated (SIGTERM)"
                                    : rc == CLI_EXIT_DIFFERENT ? "different"
                                                               : pndm_status_name((pndm_status)rc));
        cJSON_AddStringToObject(e, "message", msg);
    }
    cJSON_AddItemToObject(j, "files", r->files ? r->files : cJSON_CreateArray());
    r->files = NULL;
    if (r->total_files) cJSON_AddNumberToObject(j, "files_planned", r->total_files);
    if (r->model_path) cJSON_AddStringToObject(j, "model", r->model_path);
    if (r->model) cJSON_AddStringToObject(j, "model_sha256", pndm_model_sha256(r->model));
    char seedbuf[32];
    if (r->total_files || r->model) { /* the seed is known once the outputs are planned */
        snprintf(seedbuf, sizeof seedbuf, "%" PRIu64, a->seed);
        cJSON_AddRawToObject(j, "seed", seedbuf);
        cJSON_AddBoolToObject(j, "seed_random", !a->seed_given);
    }
    if (r->rec.n)
        cJSON_AddItemToObject(j, "record", rec_to_json(&r->rec, a->metadata == META_NONE ? META_FULL : a->metadata));
    if (r->model && !rc) {
        const int B = r->B, calls = unet_calls(r);
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
        cJSON_AddStringToObject(j, "kernels", pndm_model_kernel_path(r->model));
        cJSON_AddStringToObject(j, "scheduler", r->sched_desc);
        cJSON *tm = cJSON_CreateObject();
        cJSON_AddNumberToObject(tm, "load_s", r->t_load);
        cJSON_AddNumberToObject(tm, "generate_s", r->t_gen);
        cJSON_AddNumberToObject(tm, "s_per_unet_call", r->t_gen / calls);
        cJSON_AddNumberToObject(tm, "images_per_s", B / r->t_gen);
        cJSON_AddItemToObject(j, "timings", tm);
    }
    if (r->compare_json) {
        cJSON_AddItemToObject(j, "compare", r->compare_json);
        r->compare_json = NULL;
    }
    return j;
}

static void print_json(cJSON *j) {
    char *s = j ? cJSON_Print(j) : NULL;
    if (s) cli_out("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* Timing on stderr; the paths written on stdout (--json: printed by main). */
static int stage_report(gen_run *r) {
    if (!g_quiet) {
        const int calls = unet_calls(r), B = r->B;
        fprintf(stderr,
                "pndm-gen: %d image%s in %.2f s: %d UNet calls, %.4f s/call, %.3f images/s (seed %" PRIu64 ")\n", B,
                B == 1 ? "" : "s", r->t_gen, calls, r->t_gen / calls, B / r->t_gen, r->a.seed);
    }
    if (!r->a.json && !r->a.reproduce_path)
        for (int k = 0; k < cJSON_GetArraySize(r->files); k++)
            cli_out("%s\n", cJSON_GetArrayItem(r->files, k)->valuestring);
    return cli_stdout_check();
}

/* ---- stage: reproduce (compare) ----------------------------------------------------------- */

/* The regenerated output against the file it was made from. */
static int stage_reproduce_compare(gen_run *r) {
    const cli_args *a = &r->a;
    compare_opts co = {a->tolerance, a->diff_dir, 0};
    if (a->json) {
        r->compare_json = cJSON_CreateObject();
        if (!r->compare_json) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    }
    int rc = compare_paths(a->output, r->repro_source, &co, r->compare_json);
    if (rc == CLI_EXIT_DIFFERENT)
        cli_fail(rc, "--reproduce: %s differs from %s beyond the tolerance", a->output, r->repro_source);
    return rc;
}

/* ---- the other modes ---------------------------------------------------------------------- */

static void print_png_text(const char *key, const char *value, void *user) {
    (void)user;
    cli_out("%s: %s\n", key, value);
}

static int do_info(const char *path) {
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(path, 256u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    pndm_status s = pndm_png_read_text(buf, size, path, print_png_text, NULL, &err);
    free(buf);
    if (s) return cli_fail(s == PNDM_ERR_MODEL ? PNDM_ERR_INPUT : s, "%s", err.msg);
    return cli_stdout_check();
}

static int do_compare(const cli_args *a) {
    compare_opts co = {a->tolerance, a->diff_dir, g_quiet};
    cJSON *j = a->json ? cJSON_CreateObject() : NULL;
    int rc = compare_paths(a->compare_a, a->compare_b, &co, j);
    if (j) {
        if (rc && rc != CLI_EXIT_DIFFERENT && !cJSON_GetObjectItem(j, "files")) {
            int code;
            cJSON *e = cJSON_AddObjectToObject(j, "error");
            cJSON_AddNumberToObject(e, "code", rc);
            cJSON_AddStringToObject(e, "name", pndm_status_name((pndm_status)rc));
            cJSON_AddStringToObject(e, "message", cli_last_error(&code));
        }
        print_json(j);
    }
    int orc = cli_stdout_check();
    return rc ? rc : orc;
}

/* ---- sample sets (-N): the hook into cli/sampleset.c and cli/dist_mpi.c -------------------- */
/* A set run is parse -> [MPI_Init under mpirun] -> stage_plan_set -> stage_load -> the outputs
 * check -> ss_dist_run, which generates, writes and reports chunk by chunk.                   */

/* The record of the image seeded `seed`: exactly what `pndm-gen -b 1 -s seed` writes (the set's
 * record is the one-image run's, see stage_set; image_text adds image_index 0 and the seed). */
static int set_record(void *user, uint64_t seed, ss_record *out) {
    gen_run *r = user;
    if (rec_set(&r->rec, "seed", REC_NUM, REC_MINIMAL, "%" PRIu64, seed))
        return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    return image_text(r, 0, seed, out);
}

static int stage_plan_set(gen_run *r) {
    cli_args *a = &r->a;
    if (a->grid) return cli_usage_error("--grid makes one image of a batch: not with --num-images");
    if (a->latents_path || a->noise_path)
        return cli_usage_error("--latents and --save-noise are not written for a sample set (--num-images)");
    if (!strcmp(a->output, "-")) return cli_usage_error("a sample set is many files: -o - is not for --num-images");
    /* A sampler that couples the images of a batch (the paper's PF: one adaptive RK45 over the
     * whole batch) keeps "image i == -b 1 -s seed+i whatever the chunking" only in chunks of one
     * image: that is its default here, and a bigger --batch is refused. */
    const pndm_sampler_info *si = pndm_sampler_find_info(a->sampler);
    const int coupled = si && si->batch_coupled;
    if (coupled && a->given[OPT_BATCH] && a->batch > 1)
        return cli_usage_error("--sampler %s couples the images of a batch: a sample set with it is made in "
                               "chunks of one image, drop --batch %lld",
                               a->sampler, a->batch);
    if (!a->seed_given) a->seed = random_seed();
    a->set.quiet = g_quiet;
    a->set.overwrite = a->overwrite;
    if (!a->given[OPT_BATCH]) a->batch = coupled ? 1 : 16;
    if (a->batch > a->set.num_images) a->batch = a->set.num_images;
    r->out = OUT_PNG_EACH;
    int rc = ss_plan_make(&r->set, &a->set, a->output, a->seed, a->seed_given, a->batch);
    r->pattern = 1;
    r->pat = r->set.png;
    return rc;
}

/* Under mpirun every rank plans (its file system), loads and checks on its own; a rank that
 * cannot start tells rank 0, which stops the job naming it. */
static int stage_set(gen_run *r, int *argc, char ***argv) {
    static char prog[128];
    cli_args *a = &r->a;
    ss_dist *d = &r->dist;
    int rc = ss_dist_start(d, argc, argv);
    if (rc) return rc;
    if (d->active && d->rank > 0) { /* ranks other than 0 speak only to say what went wrong, and who */
        snprintf(prog, sizeof prog, "pndm-gen[rank %d on %s]", d->rank, d->host);
        cli_prog = prog;
        g_quiet = 1;
    }
    int start_rc = stage_plan_outputs(r);
    if (!start_rc && !a->threads) a->threads = ss_dist_default_threads(d);
    if (!start_rc) start_rc = stage_load(r);
    /* the set's images carry the one-image run's record: batch 1, one generator */
    if (!start_rc &&
        (rec_set(&r->rec, "batch", REC_NUM, REC_MINIMAL, "1") ||
         rec_set(&r->rec, "per_image_seeds", REC_BOOL, REC_MINIMAL, "0")))
        start_rc = cli_fail(PNDM_ERR_NOMEM, "out of memory");
    /* the manifest and the .npz: not an input, not each other, not replacing a file unless
     * --overwrite or --skip-existing (they are rewritten, identical, when a set is finished) */
    cli_outputs *o = &r->outs;
    if (!start_rc) start_rc = outputs_add(o, "manifest", r->set.manifest);
    if (!start_rc && r->set.npz[0]) start_rc = outputs_add(o, "the .npz", r->set.npz);
    if (!start_rc) start_rc = outputs_add_input(o, "--scheduler-config", a->sched_path);
    if (!start_rc) start_rc = outputs_add_input(o, "model", r->model_path);
    if (!start_rc)
        start_rc = outputs_check(o, a->overwrite || a->set.skip_existing ? OUT_REPLACE : OUT_REFUSE, a->overwrite);
    ss_run run;
    memset(&run, 0, sizeof run);
    run.plan = &r->set;
    run.model = r->model;
    run.gen = r->p;
    run.C = r->C;
    run.S = r->S;
    run.unet_calls = r->sampler_calls; /* the sampler refused what it cannot run in stage_load */
    run.record = set_record;
    run.record_user = r;
    run.existing = a->overwrite ? SS_EXISTING_OVERWRITE : SS_EXISTING_REFUSE;
    run.quiet = g_quiet;
    run.verbose = g_verbose;
    run.json = a->json;
    run.signal = &g_signal;
    run.model_path = r->model_path;
    run.sched_desc = r->sched_desc;
    run.t_load = r->t_load;
    rc = ss_dist_run(d, &run, start_rc);
    if (!rc) rc = cli_stdout_check();
    return rc;
}

/* --json was asked for, as the parser would see it (so a usage error is also reported in JSON). */
static int wants_json(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json")) return 1;
    return 0;
}

int main(int argc, char **argv) {
    cli_prog = "pndm-gen";
    cli_guard_std_fds();
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
    static gen_run r;
    memset(&r, 0, sizeof r);
    r.pick = -1;
    int exit_now;
    int rc = parse_args(argc, argv, &r.a, &exit_now);
    if (exit_now) return cli_finish_stdout(rc);
    if (!rc && r.a.info_path) return cli_finish_stdout(do_info(r.a.info_path));
    if (!rc && r.a.compare_a) return cli_finish_stdout(do_compare(&r.a));
    if (!rc && r.a.set.num_images) { /* a sample set */
        rc = stage_set(&r, &argc, &argv);
        if (rc == 0 && g_signal) rc = cli_fail(signal_exit(), "interrupted");
        if (rc && (r.a.json || (rc == PNDM_ERR_USAGE && wants_json(argc, argv))) && r.dist.rank == 0)
            print_json(json_summary(&r, rc));
        ss_dist_end(&r.dist);
        run_free(&r);
        return cli_finish_stdout(rc);
    }
    if (!rc && r.a.reproduce_path) rc = stage_reproduce_read(&r);
    if (!rc) rc = stage_plan_outputs(&r);
    if (!rc) rc = stage_load(&r);
    if (!rc) rc = stage_check_outputs(&r);
    if (!rc) rc = stage_generate(&r);
    if (!rc) rc = stage_write(&r);
    if (!rc) rc = stage_report(&r);
    if (!rc && r.a.reproduce_path) rc = stage_reproduce_compare(&r);
    if (rc == 0 && g_signal) rc = cli_fail(signal_exit(), "interrupted");
    if (r.a.json || (rc == PNDM_ERR_USAGE && wants_json(argc, argv))) print_json(json_summary(&r, rc));
    run_free(&r);
    return cli_finish_stdout(rc);
}
