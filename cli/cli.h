/* cli.h - what pndm-gen and pndm-unet share: one option table drives parsing, --help, the man
 * page and the shell completion; one-line errors prefixed with the program's name (the last one
 * kept for --json); strict number parsing; checked writes to stdout; the exit-code and
 * environment tables. Uses the C library and include/pndm.h (the executables reach pndm through include/ alone). */
#ifndef PNDM_CLI_H
#define PNDM_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "pndm.h"

/* Exit codes beyond the pndm_status values (0 ok .. 6 input data). */
#define CLI_EXIT_DIFFERENT 8 /* --compare / --reproduce: outside the tolerance, or files missing */
#define CLI_EXIT_SIGINT 130
#define CLI_EXIT_SIGTERM 143

typedef struct {
    int id;
    char short_name; /* 0: none */
    const char *long_name;
    /* NULL: a switch. Else the value's name in --help; it also tells the completion what to
     * offer: one containing PATH, FILE or DIR completes file names (DIR: folders), one of the
     * form "a|b|c" those words. */
    const char *arg;
    const char *def; /* shown in --help: "required", a default, or "" for nothing */
    const char *help;
} cli_opt;

/* The program name used in messages ("pndm-gen"); set once in main. */
extern const char *cli_prog;

/* Reads the option at argv[*i] and advances *i past it and its value: -x VALUE, -xVALUE,
 * -x=VALUE, bundled switches (-qv, -qn10), --long VALUE, --long=VALUE. Returns the option, or
 * NULL after printing a usage error (an unknown long option gets "did you mean --steps?"). */
const cli_opt *cli_next(const cli_opt *opts, int n_opts, int argc, char **argv, int *i, const char **val);

/* The options part of --help: "  -x, --long ARG   help (default: ...)". When the option with id
 * threads_id has def "physical cores", the number is printed (threads_default). */
void cli_print_options(FILE *f, const cli_opt *opts, int n_opts, int width, int threads_id, int threads_default);

/* The exit-code and environment-variable tables, for --help, the man page and the README. */
typedef struct {
    int code;
    const char *meaning;
} cli_exit_code;
extern const cli_exit_code cli_exit_codes[];
extern const int cli_n_exit_codes;
typedef struct {
    const char *name;
    const char *help;
} cli_env_var;
extern const cli_env_var cli_env_vars[];
extern const int cli_n_env_vars;
void cli_print_exit_codes(FILE *f);
void cli_print_env(FILE *f);

/* A man page (roff) and a bash completion script, made from the option table. */
typedef struct {
    const char *name;     /* "pndm-gen" */
    const char *summary;  /* one line, for NAME */
    const char *synopsis; /* "[options]" */
    const char *description;
    const char *examples; /* lines "command  # comment", or NULL */
    const char *notes;    /* extra paragraphs (NOTES), or NULL */
} cli_page;
void cli_print_man(FILE *f, const cli_page *page, const cli_opt *opts, int n_opts, const char *version);
void cli_print_bash_completion(FILE *f, const char *prog, const cli_opt *opts, int n_opts);

/* "prog: message" and "Try 'prog --help'." on stderr; returns 2 (usage). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" on stderr; returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message cli_usage_error / cli_fail printed (without the prefix) and its code, for a
 * --json error report; "" and 0 if none. */
const char *cli_last_error(int *code);

/* Strict parsers: the whole string, no spaces or '+', range-checked; 1 on success. */
int cli_parse_i64(const char *s, long long lo, long long hi, long long *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double *out); /* finite values only */

double cli_now_s(void); /* monotonic seconds */

/* ---- stdout ----------------------------------------------------------------------------- */
/* Call first in main: a standard descriptor (0, 1, 2) that is closed is occupied by /dev/null,
 * opened so that writes to it still fail (EBADF), so no file the program opens ever becomes its
 * stdout or stderr and a closed stdout is still reported as one. */
void cli_guard_std_fds(void);
/* Everything for stdout goes through these (they remember the first write error and its errno). */
void cli_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_out_write(const void *data, size_t size);
/* Call last: flushes and closes stdout; a failure at any point is "prog: write error: <reason>"
 * ("No space left on device", "Bad file descriptor") and exit code 4 (rc is kept when it is
 * already an error). */
int cli_finish_stdout(int rc);
/* Nothing written to stdout failed so far (flushes it). */
int cli_stdout_ok(void);
/* The same as an exit code: 0, or 4 after printing "write error: ..." (once). */
int cli_stdout_check(void);

/* The kernel choices of pndm_model_params from --kernel / --gemm values (NULL: not given) and
 * the environment: PNDM_KERNEL=avx512|avx2|generic caps the ISA path (other values: the best),
 * PNDM_WINOGRAD=0 turns Winograd off; a flag overrides PNDM_KERNEL. The only place the
 * environment selects kernels. 0, or 2 after a usage error. */
int cli_kernel_params(const char *kernel, const char *gemm, pndm_model_params *p);
/* The help text of the options and variables above, for --help. */
#define CLI_KERNEL_HELP                                                                                                \
    "kernels: --kernel caps the ISA path of the own kernels (auto = the best the CPU has); --gemm\n"                   \
    "  picks the matrix-product backend: native (own tiles), openblas (single-threaded OpenBLAS on\n"                  \
    "  pndm's blocks; builds with PNDM_BLAS), auto (native on CPUs with AVX2 or AVX-512, else\n"                       \
    "  OpenBLAS when built in). Output is byte-identical for any --threads on one choice.\n"

#endif
