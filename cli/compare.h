/* compare.h - pndm-gen --compare A B: images (PNG) or arrays (.npy), two files or two folders
 * (files matched by name), with a tolerance; per file the largest and the mean absolute
 * difference, the PSNR and how many pixels (PNG) or values (.npy) differ; a text report or a
 * JSON one; amplified difference images for a person to look at.
 *
 * Tolerance: for PNG, in 8-bit levels (default 0: every pixel equal); for .npy, relative to
 * the largest magnitude of B (at least 1): |a - b| <= tol * max(1, max|b|) (default 1e-5).
 * B is the reference (the golden). Metadata (text chunks) is not compared. */
#ifndef PNDM_CLI_COMPARE_H
#define PNDM_CLI_COMPARE_H

#include <cjson/cJSON.h>

#define COMPARE_PNG_TOLERANCE 0.0
#define COMPARE_NPY_TOLERANCE 1e-5

typedef struct {
    double tolerance;     /* < 0: the defaults above */
    const char *diff_dir; /* NULL: no difference images */
    int quiet;            /* text report: only the files that differ and the summary */
} compare_opts;

/* Compares and reports (text on stdout; with json != NULL the report is added to it instead:
 * "files", "summary", "ok"). Returns 0 when everything is within the tolerance, 8 when
 * something differs or is missing, or the exit code of an error (unreadable or malformed
 * file: 4 / 6; message printed). */
int compare_paths(const char *a, const char *b, const compare_opts *o, cJSON *json);

#endif
