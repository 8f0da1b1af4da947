/* outputs.c - see outputs.h. */
#define _POSIX_C_SOURCE 200809L
#include "outputs.h"
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static cli_output *push(cli_outputs *o, const char *what, const char *path) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        cli_output *v = realloc(o->v, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        o->v = v;
        o->cap = cap;
    }
    cli_output *e = &o->v[o->n];
    memset(e, 0, sizeof *e);
    e->what = what;
    e->path = strdup(path);
    if (!e->path) return NULL;
    o->n++;
    return e;
}

/* The directory part of a path ("." for none). */
static void dir_part(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, size, ".");
    else if (slash == path)
        snprintf(out, size, "/");
    else
        snprintf(out, size, "%.*s", (int)(slash - path), path);
}

static int add(cli_outputs *o, const char *what, const char *path, int always) {
    if (!strcmp(path, "-")) return 0;
    cli_output *e = push(o, what, path);
    if (!e) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    e->always = always;
    o->n_outputs++;
    /* the common case of a batch: nothing there yet, in the directory of the output before */
    struct stat st;
    char dir[4096];
    const char *slash = strrchr(path, '/');
    dir_part(path, dir, sizeof dir);
    if (o->last_dir && !strcmp(dir, o->last_dir) && lstat(path, &st) != 0 && errno == ENOENT &&
        slash != path + strlen(path) - 1) {
        e->dir_dev = o->last_dev;
        e->dir_ino = o->last_ino;
        e->name = strdup(slash ? slash + 1 : path);
        return e->name ? 0 : cli_fail(PNDM_ERR_NOMEM, "out of memory");
    }
    pndm_output_target *t = malloc(sizeof *t);
    if (!t) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    pndm_error err;
    if (pndm_output_resolve(path, t, &err)) {
        free(t);
        return cli_fail(err.code, "%s: %s", what, err.msg);
    }
    e->name = strdup(t->name);
    e->dir_dev = t->dir_dev;
    e->dir_ino = t->dir_ino;
    e->exists = t->exists;
    e->dev = t->dev;
    e->ino = t->ino;
    free(o->last_dir);
    o->last_dir = t->via_symlink ? NULL : strdup(dir);
    o->last_dev = t->dir_dev;
    o->last_ino = t->dir_ino;
    free(t);
    return e->name ? 0 : cli_fail(PNDM_ERR_NOMEM, "out of memory");
}

int outputs_add(cli_outputs *o, const char *what, const char *path) { return add(o, what, path, 0); }
int outputs_add_always(cli_outputs *o, const char *what, const char *path) { return add(o, what, path, 1); }

int outputs_add_input(cli_outputs *o, const char *what, const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    cli_output *e = push(o, what, path);
    if (!e) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    e->input = 1;
    e->exists = 1;
    e->dev = (uint64_t)st.st_dev;
    e->ino = (uint64_t)st.st_ino;
    return 0;
}

static const cli_outputs *sort_set; /* qsort has no context argument */

static int by_name(const void *pa, const void *pb) {
    const cli_output *a = &sort_set->v[*(const int *)pa], *b = &sort_set->v[*(const int *)pb];
    if (a->dir_dev != b->dir_dev) return a->dir_dev < b->dir_dev ? -1 : 1;
    if (a->dir_ino != b->dir_ino) return a->dir_ino < b->dir_ino ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int by_inode(const void *pa, const void *pb) {
    const cli_output *a = &sort_set->v[*(const int *)pa], *b = &sort_set->v[*(const int *)pb];
    if (a->dev != b->dev) return a->dev < b->dev ? -1 : 1;
    if (a->ino != b->ino) return a->ino < b->ino ? -1 : 1;
    return 0;
}

static int collide(const cli_output *a, const cli_output *b) {
    if (a > b) {
        const cli_output *t = a;
        a = b;
        b = t;
    }
    if (a->input || b->input) {
        const cli_output *in = a->input ? a : b, *out = a->input ? b : a;
        return cli_usage_error("%s '%s' is the input %s '%s': it is never overwritten", out->what, out->path, in->what,
                               in->path);
    }
    if (!strcmp(a->path, b->path)) return cli_usage_error("%s and %s are both '%s'", a->what, b->what, a->path);
    return cli_usage_error("%s '%s' and %s '%s' are the same file", a->what, a->path, b->what, b->path);
}

int outputs_check(cli_outputs *o, out_policy policy, int overwrite_always) {
    int *idx = malloc((size_t)(o->n ? o->n : 1) * sizeof *idx);
    if (!idx) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    int rc = 0, m = 0;
    sort_set = o;
    /* the same name in the same directory */
    for (int k = 0; k < o->n; k++)
        if (!o->v[k].input) idx[m++] = k;
    qsort(idx, (size_t)m, sizeof *idx, by_name);
    for (int k = 1; k < m && !rc; k++)
        if (!by_name(&idx[k - 1], &idx[k])) rc = collide(&o->v[idx[k - 1]], &o->v[idx[k]]);
    /* the same existing file (hard links, an input) */
    m = 0;
    for (int k = 0; k < o->n && !rc; k++)
        if (o->v[k].exists) idx[m++] = k;
    if (!rc) qsort(idx, (size_t)m, sizeof *idx, by_inode);
    for (int k = 1; k < m && !rc; k++)
        if (!by_inode(&idx[k - 1], &idx[k]) && !(o->v[idx[k - 1]].input && o->v[idx[k]].input))
            rc = collide(&o->v[idx[k - 1]], &o->v[idx[k]]);
    free(idx);
    if (rc) return rc;
    /* existing outputs */
    int first = -1, n_exist = 0;
    for (int k = 0; k < o->n; k++) {
        cli_output *e = &o->v[k];
        if (e->input || !e->exists) continue;
        if (policy == OUT_REPLACE || (e->always && overwrite_always)) continue;
        if (policy == OUT_SKIP_EXISTING && !e->always) {
            e->skip = 1;
            continue;
        }
        if (first < 0) first = k;
        n_exist++;
    }
    if (first >= 0) {
        const cli_output *e = &o->v[first];
        char more[96] = "";
        if (n_exist > 1) snprintf(more, sizeof more, " (and %d more of the %d outputs)", n_exist - 1, o->n_outputs);
        return cli_fail(PNDM_ERR_IO,
                        "%s '%s' exists%s: not replaced (it may be another run's result); use --overwrite to "
                        "replace it, or another name",
                        e->what, e->path, more);
    }
    return 0;
}

void outputs_free(cli_outputs *o) {
    for (int k = 0; k < o->n; k++) {
        free(o->v[k].path);
        free(o->v[k].name);
    }
    free(o->v);
    free(o->last_dir);
    memset(o, 0, sizeof *o);
}

int cli_write_output(const char *path, const void *data, size_t size, int replace) {
    if (!strcmp(path, "-")) {
        if (isatty(STDOUT_FILENO))
            return cli_usage_error("-o -: stdout is a terminal; redirect it to a file or a pipe, or give -o FILE");
        cli_out_write(data, size);
        return cli_stdout_check();
    }
    pndm_error err;
    if (pndm_write_file_ex(path, data, size, replace ? 0 : PNDM_WRITE_NO_REPLACE, &err))
        return cli_fail(err.code, "%s", err.msg);
    return 0;
}
