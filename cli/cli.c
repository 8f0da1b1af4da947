/* cli.c - see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2 /* PNDM_ERR_USAGE */

const char *cli_prog = "pndm";

static void vmessage(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli_prog);
    return EXIT_USAGE;
}

int cli_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    return code;
}

const cli_opt *cli_next(const cli_opt *opts, int n_opts, int argc, char **argv, int *i, const char **val) {
    const char *arg = argv[*i];
    const cli_opt *o = NULL;
    *val = NULL;
    if (arg[0] == '-' && arg[1] == '-' && arg[2]) {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].long_name) == len && !strncmp(opts[k].long_name, name, len)) o = &opts[k];
        if (!o) return cli_usage_error("unknown option '%s'", arg), NULL;
        if (eq) {
            if (!o->arg) return cli_usage_error("option '--%s' takes no value", o->long_name), NULL;
            *val = eq + 1;
        }
    } else if (arg[0] == '-' && arg[1] && arg[1] != '-' && !arg[2]) {
        for (int k = 0; k < n_opts && !o; k++)
            if (opts[k].short_name == arg[1]) o = &opts[k];
        if (!o) return cli_usage_error("unknown option '%s'", arg), NULL;
    } else {
        return cli_usage_error("unexpected argument '%s'", arg), NULL;
    }
    if (o->arg && !*val) {
        if (*i + 1 >= argc) return cli_usage_error("option '--%s' needs a value (%s)", o->long_name, o->arg), NULL;
        *val = argv[++*i];
    }
    ++*i;
    return o;
}

void cli_print_options(FILE *f, const cli_opt *opts, int n_opts, int width, int threads_id, int threads_default) {
    for (int i = 0; i < n_opts; i++) {
        const cli_opt *o = &opts[i];
        char left[64], sh[8] = "    ";
        if (o->short_name) snprintf(sh, sizeof sh, "-%c, ", o->short_name);
        snprintf(left, sizeof left, "%s--%s%s%s", sh, o->long_name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-*s %s", width, left, o->help);
        if (o->id == threads_id && o->def && !strcmp(o->def, "physical cores"))
            fprintf(f, " (default: %d, the physical cores)", threads_default);
        else if (o->def && !strcmp(o->def, "required"))
            fputs(" (required)", f);
        else if (o->def && *o->def)
            fprintf(f, " (default: %s)", o->def);
        fputc('\n', f);
    }
}

int cli_parse_i64(const char *s, long long lo, long long hi, long long *out) {
    /* digits with an optional '-': strtoll alone would also take " 3" and "+3" */
    if (!s || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9'))) return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = (uint64_t)v;
    return 1;
}

int cli_parse_double(const char *s, double *out) {
    if (!s || !*s || *s == ' ') return 0;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_kernel_params(const char *kernel, const char *gemm, pndm_model_params *p) {
    static const char *const kname[] = {"auto", "generic", "avx2", "avx512"};
    static const pndm_kernel kval[] = {PNDM_KERNEL_AUTO, PNDM_KERNEL_GENERIC, PNDM_KERNEL_AVX2, PNDM_KERNEL_AVX512};
    const char *env = getenv("PNDM_KERNEL");
    p->kernel = PNDM_KERNEL_AUTO;
    for (int i = 0; env && i < 4; i++)
        if (strcmp(env, kname[i]) == 0) p->kernel = kval[i];
    if (kernel) {
        int i = 0;
        while (i < 4 && strcmp(kernel, kname[i]) != 0) i++;
        if (i == 4) return cli_usage_error("--kernel must be auto, avx512, avx2 or generic (got '%s')", kernel);
        p->kernel = kval[i];
    }
    p->gemm = PNDM_GEMM_AUTO;
    if (gemm) {
        if (strcmp(gemm, "native") == 0)
            p->gemm = PNDM_GEMM_NATIVE;
        else if (strcmp(gemm, "openblas") == 0)
            p->gemm = PNDM_GEMM_OPENBLAS;
        else if (strcmp(gemm, "auto") != 0)
            return cli_usage_error("--gemm must be native, openblas or auto (got '%s')", gemm);
    }
    const char *w = getenv("PNDM_WINOGRAD");
    p->winograd = !(w && strcmp(w, "0") == 0);
    return 0;
}
