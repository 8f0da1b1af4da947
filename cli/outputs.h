/* outputs.h - every file a run will write, checked before the run starts: each can be written
 * (pndm_output_resolve: the directory exists and is writable, nothing but a regular file or a
 * link to one is there), no two are the same file (however spelt: ./, .., symbolic links, hard
 * links), none is one of the run's inputs, and an existing one is refused unless the run may
 * replace it. Then each is written with cli_write_output, which keeps the same rules at the
 * moment of writing (an output that appeared meanwhile is not replaced).
 *
 *     cli_outputs o = {0};
 *     outputs_add_input(&o, "--scheduler-config", path);       // inputs no output may be
 *     outputs_add(&o, "output", "img_000.png");                // ... every output, in order
 *     rc = outputs_check(&o, policy);                         // 0 or an exit code (message printed)
 *     ... o.v[k].skip: an existing output kept (OUT_SKIP_EXISTING) ...
 *     outputs_free(&o);
 *
 * Existing outputs (policy):
 *   OUT_REFUSE         (default) refused before the run: "exists: use --overwrite ..."
 *   OUT_REPLACE        (--overwrite) replaced atomically
 *   OUT_SKIP_EXISTING  (--skip-existing) left alone and marked skip, for resuming a sample set;
 *                      outputs flagged `always` (a manifest, a sidecar of the whole run) are
 *                      replaced under this policy only together with --overwrite, else refused.
 * The two flags compose: --skip-existing --overwrite keeps existing images and rewrites the
 * always-written files. */
#ifndef PNDM_CLI_OUTPUTS_H
#define PNDM_CLI_OUTPUTS_H

#include "pndm_io.h"

typedef enum { OUT_REFUSE = 0, OUT_REPLACE = 1, OUT_SKIP_EXISTING = 2 } out_policy;

typedef struct {
    const char *what; /* "output", "--latents", ... for messages */
    char *path;       /* as given (owned) */
    char *name;       /* the file name in its directory, after following a symbolic link (owned) */
    uint64_t dir_dev, dir_ino, dev, ino;
    int exists; /* a regular file is there (dev, ino) */
    int input;  /* an input of the run: no output may be it */
    int always; /* rewritten on every run (OUT_SKIP_EXISTING does not skip it) */
    int skip;   /* after outputs_check: exists and is kept */
} cli_output;

typedef struct {
    cli_output *v;
    int n, cap;
    int n_outputs;
    char *last_dir; /* the directory of the last output resolved, and its identity */
    uint64_t last_dev, last_ino;
} cli_outputs;

/* Add an output (resolved now: an unwritable one is an error, exit code returned, message
 * printed) or an input (a path that need not be writable; ignored if it cannot be stat'ed).
 * `path` "-" (stdout) is not an output here. Returns 0 or an exit code. */
int outputs_add(cli_outputs *o, const char *what, const char *path);
int outputs_add_always(cli_outputs *o, const char *what, const char *path);
int outputs_add_input(cli_outputs *o, const char *what, const char *path);
/* Collisions, inputs, existing files (see the top). Returns 0 or an exit code. */
int outputs_check(cli_outputs *o, out_policy policy, int overwrite_always);
void outputs_free(cli_outputs *o);

/* Write one output: "-" goes to stdout (refused when stdout is a terminal); anything else with
 * pndm_write_file_ex (replace = 0: never replace an existing file). Returns 0 or an exit code
 * (message printed). */
int cli_write_output(const char *path, const void *data, size_t size, int replace);

#endif
