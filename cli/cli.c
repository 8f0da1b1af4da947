/* cli.c - see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2 /* PNDM_ERR_USAGE */
#define EXIT_IO 4    /* PNDM_ERR_IO */

const char *cli_prog = "pndm";

/* ---- messages ------------------------------------------------------------------------------ */

static char last_msg[1024];
static int last_code;

static void vmessage(int code, const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    vsnprintf(last_msg, sizeof last_msg, fmt, copy);
    va_end(copy);
    last_code = code;
    fprintf(stderr, "%s: %s\n", cli_prog, last_msg);
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(EXIT_USAGE, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli_prog);
    return EXIT_USAGE;
}

int cli_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(code, fmt, ap);
    va_end(ap);
    return code;
}

const char *cli_last_error(int *code) {
    if (code) *code = last_code;
    return last_msg;
}

/* ---- options ------------------------------------------------------------------------------- */

/* Optimal string alignment distance (edits, with adjacent transpositions), names < 64 bytes. */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* " (did you mean --steps?)" for a long name close to a known one: the options it is a prefix
 * of, else the nearest within a couple of edits; "" when nothing is close. */
static void suggest(const cli_opt *opts, int n_opts, const char *name, size_t len, char *out, size_t size) {
    out[0] = 0;
    if (len == 0) return;
    const cli_opt *hit[3];
    int n = 0, best = 99;
    for (int k = 0; k < n_opts; k++)
        if (strlen(opts[k].long_name) > len && !strncmp(opts[k].long_name, name, len) && n < 3) hit[n++] = &opts[k];
    if (n == 0) {
        int limit = len <= 3 ? 1 : len <= 8 ? 2 : 3;
        for (int k = 0; k < n_opts; k++) {
            int d = edit_distance(name, len, opts[k].long_name, strlen(opts[k].long_name));
            if (d > limit || d > best) continue;
            if (d < best) n = 0, best = d;
            if (n < 3) hit[n++] = &opts[k];
        }
    }
    if (n == 0) return;
    size_t o = (size_t)snprintf(out, size, " (did you mean ");
    for (int k = 0; k < n && o < size; k++)
        o += (size_t)snprintf(out + o, size - o, "%s--%s", k == 0 ? "" : k == n - 1 ? " or " : ", ", hit[k]->long_name);
    if (o < size) snprintf(out + o, size - o, "?)");
}

/* Position inside a bundle of short options (-qv, -qn10) being read; 0 when none. */
static int short_pos = 0;

const cli_opt *cli_next(const cli_opt *opts, int n_opts, int argc, char **argv, int *i, const char **val) {
    const char *arg = argv[*i];
    const cli_opt *o = NULL;
    *val = NULL;
    if (arg[0] == '-' && arg[1] == '-' && arg[2]) {
        short_pos = 0;
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].long_name) == len && !strncmp(opts[k].long_name, name, len)) o = &opts[k];
        if (!o) {
            char hint[160];
            suggest(opts, n_opts, name, len, hint, sizeof hint);
            return cli_usage_error("unknown option '--%.*s'%s", (int)len, name, hint), NULL;
        }
        if (eq) {
            if (!o->arg) return cli_usage_error("option '--%s' takes no value", o->long_name), NULL;
            *val = eq + 1;
        }
        if (o->arg && !*val) {
            if (*i + 1 >= argc) return cli_usage_error("option '--%s' needs a value (%s)", o->long_name, o->arg), NULL;
            *val = argv[++*i];
        }
        ++*i;
        return o;
    }
    if (arg[0] == '-' && arg[1] && arg[1] != '-') {
        int pos = short_pos ? short_pos : 1;
        if (pos == 1 && arg[2]) { /* -steps: a long option typed with one dash, not -s "teps" */
            size_t len = strcspn(arg + 1, "=");
            for (int k = 0; k < n_opts; k++)
                if (strlen(opts[k].long_name) == len && !strncmp(opts[k].long_name, arg + 1, len))
                    return cli_usage_error("unknown option '%s' (did you mean --%s?)", arg, opts[k].long_name), NULL;
        }
        char c = arg[pos];
        for (int k = 0; k < n_opts && !o; k++)
            if (opts[k].short_name == c) o = &opts[k];
        if (!o) {
            short_pos = 0;
            char hint[160] = "";
            /* -steps: a long option typed with one dash */
            if (pos == 1 && arg[2]) suggest(opts, n_opts, arg + 1, strcspn(arg + 1, "="), hint, sizeof hint);
            if (pos == 1 && !arg[2]) return cli_usage_error("unknown option '%s'%s", arg, hint), NULL;
            return cli_usage_error("unknown option '-%c' in '%s'%s", c, arg, hint), NULL;
        }
        if (o->arg) {
            short_pos = 0;
            if (arg[pos + 1]) { /* -n10, -n=10 */
                *val = arg + pos + 1 + (arg[pos + 1] == '=');
            } else {
                if (*i + 1 >= argc)
                    return cli_usage_error("option '-%c' (--%s) needs a value (%s)", c, o->long_name, o->arg), NULL;
                *val = argv[++*i];
            }
            ++*i;
        } else if (arg[pos + 1]) { /* -qv: the next switch is in the same word */
            short_pos = pos + 1;
        } else {
            short_pos = 0;
            ++*i;
        }
        return o;
    }
    short_pos = 0;
    return cli_usage_error("unexpected argument '%s'", arg), NULL;
}

void cli_print_options(FILE *f, const cli_opt *opts, int n_opts, int width, int threads_id, int threads_default) {
    for (int i = 0; i < n_opts; i++) {
        const cli_opt *o = &opts[i];
        char left[96], sh[8] = "    ";
        if (o->short_name) snprintf(sh, sizeof sh, "-%c, ", o->short_name);
        snprintf(left, sizeof left, "%s--%s%s%s", sh, o->long_name, o->arg ? " " : "", o->arg ? o->arg : "");
        if ((int)strlen(left) > width)
            fprintf(f, "  %s\n  %-*s %s", left, width, "", o->help);
        else
            fprintf(f, "  %-*s %s", width, left, o->help);
        if (o->id == threads_id && o->def && !strcmp(o->def, "physical cores"))
            fprintf(f, " (default: 0 = auto, %d here: the physical cores)", threads_default);
        else if (o->def && !strcmp(o->def, "required"))
            fputs(" (required)", f);
        else if (o->def && *o->def)
            fprintf(f, " (default: %s)", o->def);
        fputc('\n', f);
    }
}

/* ---- tables ------------------------------------------------------------------------------ */

const cli_exit_code cli_exit_codes[] = {
    {0, "success"},
    {1, "internal error (a bug: please report it)"},
    {2, "usage: unknown option, malformed or out-of-range value, conflicting options"},
    {3, "model: invalid or unsupported model, config or scheduler file; a --reproduce model mismatch"},
    {4,
     "I/O: a file cannot be read or written (missing or unwritable directory, an output that exists, a "
     "device or FIFO as output, disk full, a failed write to stdout)"},
    {5, "out of memory, or a batch larger than the machine's memory"},
    {6, "input data: a malformed .npy or PNG input, a PNG without pndm parameters"},
    {8, "--compare / --reproduce: images differ beyond the tolerance, or files are missing"},
    {130, "interrupted by SIGINT (finished files stay, temporary files are removed)"},
    {143, "terminated by SIGTERM (likewise)"},
};
const int cli_n_exit_codes = (int)(sizeof cli_exit_codes / sizeof cli_exit_codes[0]);

const cli_env_var cli_env_vars[] = {
    {"PNDM_MODEL", "the default model when no --model is given (before the installed and the source-tree copies)"},
    {"PNDM_KERNEL",
     "avx512, avx2 or generic: cap the kernel path (as --kernel, which overrides it; outputs differ across "
     "paths by float rounding; see --compare --tolerance)"},
    {"PNDM_WINOGRAD", "0: direct 3x3 convolutions instead of Winograd (for comparisons)"},
};
const int cli_n_env_vars = (int)(sizeof cli_env_vars / sizeof cli_env_vars[0]);

void cli_print_exit_codes(FILE *f) {
    fputs("exit codes:\n", f);
    for (int i = 0; i < cli_n_exit_codes; i++)
        fprintf(f, "  %3d  %s\n", cli_exit_codes[i].code, cli_exit_codes[i].meaning);
}

void cli_print_env(FILE *f) {
    fputs("environment:\n", f);
    for (int i = 0; i < cli_n_env_vars; i++) fprintf(f, "  %-14s %s\n", cli_env_vars[i].name, cli_env_vars[i].help);
}

/* ---- man page and completion ------------------------------------------------------------- */

/* roff text: backslashes and dashes escaped, a leading dot or quote protected */
static void roff(FILE *f, const char *s) {
    if (*s == '.' || *s == '\'') fputs("\\&", f);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", f);
        else if (*s == '-')
            fputs("\\-", f);
        else if (*s == '\n') {
            fputc('\n', f);
            if (s[1] == '.' || s[1] == '\'') fputs("\\&", f);
        } else
            fputc(*s, f);
    }
}

void cli_print_man(FILE *f, const cli_page *page, const cli_opt *opts, int n_opts, const char *version) {
    fprintf(f, ".TH \"");
    for (const char *c = page->name; *c; c++) fputc(*c >= 'a' && *c <= 'z' ? *c - 32 : *c, f);
    fprintf(f, "\" 1 \"\" \"pndm %s\" \"User Commands\"\n", version);
    fputs(".SH NAME\n", f);
    roff(f, page->name);
    fputs(" \\- ", f);
    roff(f, page->summary);
    fputs("\n.SH SYNOPSIS\n.B ", f);
    roff(f, page->name);
    fputc(' ', f);
    roff(f, page->synopsis);
    fputs("\n.SH DESCRIPTION\n", f);
    roff(f, page->description);
    fputs("\n.SH OPTIONS\n", f);
    for (int i = 0; i < n_opts; i++) {
        const cli_opt *o = &opts[i];
        fputs(".TP\n", f);
        if (o->short_name) fprintf(f, "\\fB\\-%c\\fR, ", o->short_name);
        fputs("\\fB\\-\\-", f);
        roff(f, o->long_name);
        fputs("\\fR", f);
        if (o->arg) {
            fputs(" \\fI", f);
            roff(f, o->arg);
            fputs("\\fR", f);
        }
        fputc('\n', f);
        roff(f, o->help);
        if (o->def && !strcmp(o->def, "required"))
            fputs(" (required)", f);
        else if (o->def && *o->def) {
            fputs(" (default: ", f);
            roff(f, !strcmp(o->def, "physical cores") ? "0 = auto: the physical cores" : o->def);
            fputc(')', f);
        }
        fputs(".\n", f);
    }
    fputs(".SH EXIT STATUS\n", f);
    for (int i = 0; i < cli_n_exit_codes; i++) {
        fprintf(f, ".TP\n.B %d\n", cli_exit_codes[i].code);
        roff(f, cli_exit_codes[i].meaning);
        fputs(".\n", f);
    }
    fputs(".SH ENVIRONMENT\n", f);
    for (int i = 0; i < cli_n_env_vars; i++) {
        fprintf(f, ".TP\n.B %s\n", cli_env_vars[i].name);
        roff(f, cli_env_vars[i].help);
        fputs(".\n", f);
    }
    if (page->notes) {
        fputs(".SH NOTES\n", f);
        roff(f, page->notes);
        fputc('\n', f);
    }
    if (page->examples) {
        fputs(".SH EXAMPLES\n.nf\n", f);
        roff(f, page->examples);
        fputs("\n.fi\n", f);
    }
    fputs(".SH SEE ALSO\n.BR pndm\\-gen (1),\n.BR pndm\\-unet (1);\nthe library's manual is its header, "
          "\\fIpndm.h\\fR.\n",
          f);
}

static int has_word(const char *s, const char *w) { return s && strstr(s, w) != NULL; }

void cli_print_bash_completion(FILE *f, const char *prog, const cli_opt *opts, int n_opts) {
    char fn[64];
    snprintf(fn, sizeof fn, "_%s", prog);
    for (char *c = fn; *c; c++)
        if (*c == '-') *c = '_';
    fprintf(f, "# bash completion for %s (generated by '%s --completion bash')\n", prog, prog);
    fprintf(f, "%s() {\n    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n", fn);
    fputs("    case \"$prev\" in\n", f);
    for (int i = 0; i < n_opts; i++) {
        const cli_opt *o = &opts[i];
        if (!o->arg) continue;
        fputs("        ", f);
        if (o->short_name) fprintf(f, "-%c|", o->short_name);
        fprintf(f, "--%s) ", o->long_name);
        if (strchr(o->arg, '|')) {
            fputs("COMPREPLY=($(compgen -W \"", f);
            for (const char *c = o->arg; *c; c++) fputc(*c == '|' ? ' ' : *c, f);
            fputs("\" -- \"$cur\")); return ;;\n", f);
        } else if (has_word(o->arg, "DIR")) {
            fputs("COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n", f);
        } else if (has_word(o->arg, "PATH") || has_word(o->arg, "FILE")) {
            fputs("COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", f);
        } else {
            fputs("return ;;\n", f); /* a number or a name: nothing to offer */
        }
    }
    fputs("    esac\n    if [[ \"$cur\" == -* ]]; then\n        COMPREPLY=($(compgen -W \"", f);
    for (int i = 0; i < n_opts; i++) fprintf(f, "%s--%s", i ? " " : "", opts[i].long_name);
    fputs("\" -- \"$cur\"))\n        return\n    fi\n    COMPREPLY=($(compgen -f -- \"$cur\"))\n}\n", f);
    fprintf(f, "complete -o filenames -F %s %s\n", fn, prog);
}

/* ---- numbers ------------------------------------------------------------------------------- */

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

/* ---- stdout -------------------------------------------------------------------------------- */

static int out_errno = 0; /* the first failed write to stdout */

void cli_guard_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        /* read-only: a write to fd 1 or 2 then fails with EBADF, as with the descriptor closed */
        int nfd = open("/dev/null", O_RDONLY);
        if (nfd >= 0 && nfd != fd) {
            dup2(nfd, fd);
            close(nfd);
        }
    }
}

static void note_out_error(void) {
    if (!out_errno && ferror(stdout)) out_errno = errno ? errno : EIO;
}

void cli_out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    if (vfprintf(stdout, fmt, ap) < 0 && !out_errno) out_errno = errno ? errno : EIO;
    va_end(ap);
    note_out_error();
}

void cli_out_write(const void *data, size_t size) {
    errno = 0;
    if (size && fwrite(data, 1, size, stdout) != size && !out_errno) out_errno = errno ? errno : EIO;
    note_out_error();
}

int cli_stdout_ok(void) {
    errno = 0;
    if (fflush(stdout) != 0 && !out_errno) out_errno = errno ? errno : EIO;
    note_out_error();
    return out_errno == 0;
}

static int out_reported = 0;

static void report_out_error(void) {
    if (out_reported) return;
    out_reported = 1;
    snprintf(last_msg, sizeof last_msg, "write error: %s", strerror(out_errno));
    last_code = EXIT_IO;
    fprintf(stderr, "%s: %s\n", cli_prog, last_msg);
}

int cli_stdout_check(void) {
    if (cli_stdout_ok()) return 0;
    report_out_error();
    return EXIT_IO;
}

int cli_finish_stdout(int rc) {
    cli_stdout_ok();
    errno = 0;
    if (fclose(stdout) != 0 && !out_errno) out_errno = errno ? errno : EIO;
    if (!out_errno) return rc;
    report_out_error();
    return rc ? rc : EXIT_IO;
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
