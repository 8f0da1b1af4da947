/* pndm-unet: one UNet2DModel forward on a sample from a .npy file, for parity checks against
 * diffusers (model(sample, t).sample). A thin front over the public API in pndm.h.
 *
 * Exit codes: cli.c's table, the same as pndm-gen's (0 ok, 1 internal, 2 usage, 3 model, 4 I/O,
 * 5 out of memory, 6 input data). On error: one line on stderr and no output file. */
#define _POSIX_C_SOURCE 200809L
#include "pndm.h"
#include "pndm_io.h"
#include "cli.h"
#include "outputs.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Options: one table drives parsing and --help.                                            */

enum {
    OPT_MODEL,
    OPT_SAMPLE,
    OPT_TIMESTEP,
    OPT_TIMESTEPS,
    OPT_THREADS,
    OPT_OUTPUT,
    OPT_OVERWRITE,
    OPT_QUIET,
    OPT_KERNEL,
    OPT_GEMM,
    OPT_VERBOSE,
    OPT_COMPLETION,
    OPT_MAN,
    OPT_HELP,
    OPT_VERSION
};

static const cli_opt OPTS[] = {
    {OPT_MODEL, 'm', "model", "PATH", "required",
     "pndm .safetensors, diffusers model or pipeline folder, or diffusers .safetensors with config.json beside it"},
    {OPT_SAMPLE, 'x', "sample", "FILE.npy", "required", "input sample, float32 (B, C, H, W)"},
    {OPT_TIMESTEP, 0, "timestep", "T", "", "one timestep for every batch element (integer or float, used as given)"},
    {OPT_TIMESTEPS, 0, "timesteps", "FILE.npy", "",
     "one timestep per batch element, shape (B,), int64/int32/float32/float64"},
    {OPT_THREADS, 't', "threads", "N", "physical cores", "worker threads (results are identical for any N)"},
    {OPT_OUTPUT, 'o', "output", "FILE.npy", "required",
     "output, float32 (B, C_out, H, W), written atomically; - writes the .npy to stdout"},
    {OPT_OVERWRITE, 0, "overwrite", NULL, "off", "replace the output if it exists (else it is refused)"},
    {OPT_QUIET, 'q', "quiet", NULL, "off", "nothing on stderr but errors (overrides -v)"},
    {OPT_KERNEL, 0, "kernel", "ISA", "auto", "ISA path of the own kernels: auto, avx512, avx2, generic"},
    {OPT_GEMM, 0, "gemm", "BACKEND", "auto", "matrix products: native, openblas or auto"},
    {OPT_VERBOSE, 'v', "verbose", NULL, "off", "print model, kernels, threads and time on stderr"},
    {OPT_COMPLETION, 0, "completion", "bash", "", "print a bash completion script and exit"},
    {OPT_MAN, 0, "man", NULL, "", "print the manual page (roff) and exit"},
    {OPT_HELP, 'h', "help", NULL, "", "show this help and exit"},
    {OPT_VERSION, 0, "version", NULL, "", "print the version and exit"},
};
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))

static const cli_page PAGE = {
    "pndm-unet",
    "run one UNet2DModel forward on a .npy sample (parity checks against diffusers)",
    "--model PATH --sample X.npy (--timestep T | --timesteps T.npy) -o OUT.npy",
    "Runs one forward of a diffusers UNet2DModel, like diffusers' model(sample, t).sample, and writes the output as "
    "float32 .npy. Exactly one of --timestep and --timesteps. diffusers truncates a python float timestep to an "
    "integer; pndm-unet uses T as given (like a float tensor).",
    "pndm-unet -m model/ -x sample.npy --timestep 999 -o eps.npy\n"
    "pndm-unet -m model.safetensors -x x.npy --timesteps t.npy -o - | python3 -c 'import numpy, sys; "
    "print(numpy.load(sys.stdin.buffer).shape)'",
    "The output is written to a temporary file and renamed into place; an existing output is refused unless "
    "--overwrite is given, and a device, FIFO, directory or a link to one is never replaced."};

static void print_help(FILE *f) {
    fprintf(f,
            "usage: pndm-unet --model PATH --sample X.npy (--timestep T | --timesteps T.npy) [--threads N] -o OUT.npy\n"
            "Run one UNet2DModel forward, like diffusers' model(sample, t).sample.\n\n"
            "options:\n");
    cli_print_options(f, OPTS, N_OPTS, 28, OPT_THREADS, pndm_default_threads());
    fprintf(f,
            "\nExactly one of --timestep and --timesteps. diffusers truncates a python float timestep to an\n"
            "integer; pndm-unet uses T as given (like a float tensor).\n\n" CLI_KERNEL_HELP "\n");
    cli_print_exit_codes(f);
    cli_print_env(f);
}

typedef struct {
    const char *model, *sample, *timesteps, *output, *kernel, *gemm;
    int has_t;
    double t;
    int threads; /* 0: default */
    int verbose, quiet, overwrite;
} cli_args;

/* Returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc;) {
        const char *val;
        const cli_opt *o = cli_next(OPTS, N_OPTS, argc, argv, &i, &val);
        if (!o) return PNDM_ERR_USAGE;
        switch (o->id) {
        case OPT_MODEL: a->model = val; break;
        case OPT_SAMPLE: a->sample = val; break;
        case OPT_TIMESTEP:
            if (!cli_parse_double(val, &a->t)) return cli_usage_error("--timestep: '%s' is not a finite number", val);
            a->has_t = 1;
            break;
        case OPT_TIMESTEPS: a->timesteps = val; break;
        case OPT_THREADS: {
            long long n;
            if (!cli_parse_i64(val, 0, 256, &n))
                return cli_usage_error("--threads: '%s' is not an integer in [0, 256]", val);
            a->threads = (int)n;
            break;
        }
        case OPT_OUTPUT: a->output = val; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_KERNEL: a->kernel = val; break;
        case OPT_GEMM: a->gemm = val; break;
        case OPT_VERBOSE: a->verbose = 1; break;
        case OPT_COMPLETION:
            if (strcmp(val, "bash")) return cli_usage_error("--completion: only 'bash' is supported (got '%s')", val);
            cli_print_bash_completion(stdout, "pndm-unet", OPTS, N_OPTS);
            return 0;
        case OPT_MAN: cli_print_man(stdout, &PAGE, OPTS, N_OPTS, pndm_version()); return 0;
        case OPT_HELP: print_help(stdout); return 0;
        case OPT_VERSION: cli_out("pndm-unet %s\n", pndm_version()); return 0;
        }
    }
    if (a->quiet) a->verbose = 0;
    if (!a->model) return cli_usage_error("--model is required");
    if (!a->sample) return cli_usage_error("--sample is required");
    if (!a->output) return cli_usage_error("--output is required");
    if (a->has_t == !!a->timesteps) return cli_usage_error("give exactly one of --timestep and --timesteps");
    size_t lo = strlen(a->output);
    if (strcmp(a->output, "-") && (lo < 4 || strcmp(a->output + lo - 4, ".npy")))
        return cli_usage_error("--output must be a .npy file or - (got '%s'): pndm-unet writes float32 .npy",
                               a->output);
    return -1;
}

/* Before the model is loaded: the output can be written, is none of the inputs, and replaces
 * nothing unless --overwrite. */
static int plan_output(const cli_args *a) {
    cli_outputs o = {0};
    int rc = outputs_add(&o, "--output", a->output);
    if (!rc) rc = outputs_add_input(&o, "--sample", a->sample);
    if (!rc) rc = outputs_add_input(&o, "--timesteps", a->timesteps);
    if (!rc) rc = outputs_add_input(&o, "--model", a->model);
    if (!rc) rc = outputs_check(&o, a->overwrite ? OUT_REPLACE : OUT_REFUSE, a->overwrite);
    outputs_free(&o);
    return rc;
}

static int run(const cli_args *a) {
    pndm_error err;
    pndm_model *m = NULL;
    pndm_npy xs = {0}, ts = {0};
    float *x = NULL, *t = NULL, *y = NULL;
    int rc = plan_output(a);
    if (rc) return rc;
    pndm_model_params mp = pndm_model_default_params();
    if (cli_kernel_params(a->kernel, a->gemm, &mp)) return PNDM_ERR_USAGE;
    double t0 = cli_now_s();
    if (pndm_model_load_ex(a->model, &mp, &m, &err) != PNDM_OK) {
        rc = cli_fail(err.code, "%s", err.msg);
        goto done;
    }
    /* the sample: (B, C_in, H, W) floats */
    if (pndm_npy_load(a->sample, &xs, &err) != PNDM_OK) {
        rc = cli_fail(err.code, "%s", err.msg);
        goto done;
    }
    if (xs.dtype != PNDM_NPY_F32 && xs.dtype != PNDM_NPY_F64) {
        rc = cli_fail(PNDM_ERR_INPUT, "%s: sample must be float32 (or float64)", a->sample);
        goto done;
    }
    if (xs.ndim != 4 || xs.shape[0] < 1 || xs.shape[1] < 1 || xs.shape[2] < 1 || xs.shape[3] < 1 ||
        xs.shape[0] > INT_MAX || xs.shape[2] > INT_MAX || xs.shape[3] > INT_MAX) {
        rc = cli_fail(PNDM_ERR_INPUT, "%s: sample must have shape (B, C, H, W) with every size >= 1 (got %d dims)",
                      a->sample, xs.ndim);
        goto done;
    }
    const int B = (int)xs.shape[0], H = (int)xs.shape[2], W = (int)xs.shape[3];
    if (xs.shape[1] != pndm_model_in_channels(m)) {
        rc = cli_fail(PNDM_ERR_INPUT, "%s: sample has %lld channels, the model takes %d", a->sample,
                      (long long)xs.shape[1], pndm_model_in_channels(m));
        goto done;
    }
    if (pndm_npy_to_f32(&xs, &x, &err) != PNDM_OK) {
        rc = cli_fail(err.code, "%s", err.msg);
        goto done;
    }
    for (size_t i = 0; i < xs.count; i++)
        if (!isfinite(x[i])) {
            rc = cli_fail(PNDM_ERR_INPUT, "%s: element %zu of the sample is not finite", a->sample, i);
            goto done;
        }
    /* timesteps: B floats */
    t = malloc((size_t)B * sizeof *t);
    if (!t) {
        rc = cli_fail(PNDM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (a->has_t) {
        for (int b = 0; b < B; b++) t[b] = (float)a->t;
    } else {
        float *tv = NULL;
        if (pndm_npy_load(a->timesteps, &ts, &err) != PNDM_OK) {
            rc = cli_fail(err.code, "%s", err.msg);
            goto done;
        }
        if (ts.dtype == PNDM_NPY_U8 || ts.dtype == PNDM_NPY_U32) {
            rc = cli_fail(PNDM_ERR_INPUT, "%s: timesteps must be int64, int32, float32 or float64", a->timesteps);
            goto done;
        }
        if (ts.ndim != 1 || ts.shape[0] != B) {
            rc = cli_fail(PNDM_ERR_INPUT, "%s: timesteps must have shape (%d,) (one per batch element)", a->timesteps,
                          B);
            goto done;
        }
        if (pndm_npy_to_f32(&ts, &tv, &err) != PNDM_OK) {
            rc = cli_fail(err.code, "%s", err.msg);
            goto done;
        }
        memcpy(t, tv, (size_t)B * sizeof *t);
        free(tv);
        for (int b = 0; b < B; b++)
            if (!isfinite(t[b])) {
                rc = cli_fail(PNDM_ERR_INPUT, "%s: timestep %d is not finite", a->timesteps, b);
                goto done;
            }
    }
    const int C_out = pndm_model_out_channels(m);
    const size_t n = (size_t)B * (size_t)C_out * (size_t)H * (size_t)W;
    y = malloc(n * sizeof *y); // (B, C_out, H, W)
    if (!y) {
        rc = cli_fail(PNDM_ERR_NOMEM, "cannot allocate the output (%zu floats)", n);
        goto done;
    }
    double t1 = cli_now_s();
    pndm_status st = pndm_unet_forward(m, x, B, H, W, t, y, a->threads, &err);
    if (st != PNDM_OK) {
        /* the library's argument errors are about the input files here (a size not divisible
         * by 2^(levels-1), a timestep out of range), except a bad --timestep value */
        if (st == PNDM_ERR_USAGE && !(a->has_t && strstr(err.msg, "timestep"))) st = PNDM_ERR_INPUT;
        rc = cli_fail(st, "%s", err.msg);
        goto done;
    }
    double t2 = cli_now_s();
    const int64_t shape[4] = {B, C_out, H, W};
    /* SIGINT / SIGTERM / SIGHUP wait until the output is in place (or its temporary file is
     * removed), then act as usual: an interrupt never leaves a temporary file behind */
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    void *npy = NULL;
    size_t npy_size = 0;
    if (pndm_npy_encode_f32(y, 4, shape, &npy, &npy_size, &err) != PNDM_OK)
        rc = cli_fail(err.code, "%s", err.msg);
    else
        rc = cli_write_output(a->output, npy, npy_size, a->overwrite);
    free(npy);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    if (rc) goto done;
    if (a->verbose)
        fprintf(
            stderr,
            "pndm-unet: %s, %zu parameters, kernels %s, %d threads; load %.1f ms, forward (%d, %d, %d, %d) %.1f ms\n",
            pndm_model_path(m), pndm_model_param_count(m), pndm_model_kernel_path(m),
            a->threads > 0 ? a->threads : pndm_default_threads(), (t1 - t0) * 1e3, B, (int)xs.shape[1], H, W,
            (t2 - t1) * 1e3);
    if (strcmp(a->output, "-")) cli_out("%s\n", a->output);
done:
    free(x);
    free(t);
    free(y);
    pndm_npy_free(&xs);
    pndm_npy_free(&ts);
    pndm_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    cli_prog = "pndm-unet";
    cli_guard_std_fds();
    /* past a file-size limit (ulimit -f) write() then fails with EFBIG instead of killing us */
    signal(SIGXFSZ, SIG_IGN);
    cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return cli_finish_stdout(rc);
    return cli_finish_stdout(run(&a));
}
