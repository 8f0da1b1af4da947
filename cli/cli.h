/* cli.h - what pndm-gen and pndm-unet share: one option table drives parsing and --help,
 * one-line errors prefixed with the program's name, strict number parsing.
 * Uses the C library and include/pndm.h (the executables reach pndm through include/ alone). */
#ifndef PNDM_CLI_H
#define PNDM_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "pndm.h"

typedef struct {
    int id;
    char short_name; /* 0: none */
    const char *long_name;
    const char *arg; /* NULL: a switch */
    const char *def; /* shown in --help: "required", a default, or "" for nothing */
    const char *help;
} cli_opt;

/* The program name used in messages ("pndm-gen"); set once in main. */
extern const char *cli_prog;

/* Reads the option at argv[*i] (-x VALUE, --long VALUE, --long=VALUE, switches) and advances *i
 * past it and its value. Returns the option, or NULL after printing a usage error. */
const cli_opt *cli_next(const cli_opt *opts, int n_opts, int argc, char **argv, int *i, const char **val);

/* The options part of --help: "  -x, --long ARG   help (default: ...)". When the option with id
 * threads_id has def "physical cores", the number is printed (threads_default). */
void cli_print_options(FILE *f, const cli_opt *opts, int n_opts, int width, int threads_id, int threads_default);

/* "prog: message" and "Try 'prog --help'." on stderr; returns 2 (usage). */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" on stderr; returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict parsers: the whole string, no spaces or '+', range-checked; 1 on success. */
int cli_parse_i64(const char *s, long long lo, long long hi, long long *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double *out); /* finite values only */

double cli_now_s(void); /* monotonic seconds */

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
    "  OpenBLAS when built in). Output is byte-identical for any --threads on one choice.\n"                           \
    "environment: PNDM_KERNEL=avx512|avx2|generic (as --kernel), PNDM_WINOGRAD=0 (direct 3x3\n"                        \
    "  convolutions only, for comparisons), PNDM_MODEL (the default model path).\n"

#endif
