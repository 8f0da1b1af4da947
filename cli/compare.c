/* compare.c - see compare.h. */
#define _POSIX_C_SOURCE 200809L
#include "compare.h"
#include "cli.h"
#include "pndm_io.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE ((size_t)1 << 30)

typedef enum { K_PNG, K_NPY } kind_t;

typedef struct {
    kind_t kind;
    uint8_t *pix; // (H, W, C) for PNG
    int w, h, c;
    float *f; // the array as float32, for .npy
    int ndim;
    int64_t shape[8];
    size_t count;
} loaded;

typedef struct {
    const char *name; /* for the report */
    const char *a, *b;
    const char *status; /* same, within, different, only_in_a, only_in_b, error */
    kind_t kind;
    double max_abs, mean_abs, psnr, tol_abs;
    size_t differing, beyond, total;
    char note[1200];
    char diff_image[4096];
} result;

static void free_loaded(loaded *l) {
    free(l->pix);
    free(l->f);
    memset(l, 0, sizeof *l);
}

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && !strcmp(s + ls - lx, suffix);
}

static int is_png_name(const char *s) { return ends_with(s, ".png") || ends_with(s, ".PNG"); }
static int is_npy_name(const char *s) { return ends_with(s, ".npy"); }

/* Returns 0, or an exit code with the reason in msg. */
static int load(const char *path, loaded *l, char *msg, size_t msg_size) {
    memset(l, 0, sizeof *l);
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(path, MAX_FILE, &buf, &size, &err)) {
        snprintf(msg, msg_size, "%s", err.msg);
        return err.code;
    }
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    pndm_status st;
    if (size >= 8 && !memcmp(buf, png_magic, 8)) {
        l->kind = K_PNG;
        st = pndm_png_decode(buf, size, path, &l->pix, &l->w, &l->h, &l->c, &err);
    } else if (size >= 6 && !memcmp(buf, "\x93NUMPY", 6)) {
        l->kind = K_NPY;
        pndm_npy a;
        st = pndm_npy_parse(buf, size, path, &a, &err);
        if (!st) {
            l->ndim = a.ndim;
            memcpy(l->shape, a.shape, sizeof l->shape);
            l->count = a.count;
            st = pndm_npy_to_f32(&a, &l->f, &err);
            pndm_npy_free(&a);
        }
    } else {
        st = PNDM_ERR_INPUT;
        snprintf(err.msg, sizeof err.msg, "%s: neither a PNG image nor a .npy array", path);
    }
    free(buf);
    if (st) {
        snprintf(msg, msg_size, "%s", err.msg);
        free_loaded(l);
        return st == PNDM_ERR_MODEL ? PNDM_ERR_INPUT : (int)st;
    }
    return 0;
}

static void shape_text(const loaded *l, char *out, size_t size) {
    if (l->kind == K_PNG) {
        snprintf(out, size, "%dx%d, %d channel%s", l->w, l->h, l->c, l->c == 1 ? "" : "s");
        return;
    }
    size_t o = (size_t)snprintf(out, size, "(");
    for (int d = 0; d < l->ndim && o < size; d++)
        o += (size_t)snprintf(out + o, size - o, "%s%lld", d ? ", " : "", (long long)l->shape[d]);
    if (o < size) snprintf(out + o, size - o, "%s)", l->ndim == 1 ? "," : "");
}

/* ---- difference images --------------------------------------------------------------------- */

/* Three panels side by side: A, B, and |A - B| amplified so the largest difference is full red.
 * a, b: (h, w, c) 8-bit; d: (h, w) differences in any unit, dmax their maximum. */
static int write_diff_png(const char *path, const uint8_t *a, const uint8_t *b, const float *d, double dmax, int w,
                          int h, int c, char *msg, size_t msg_size) {
    const int W = 3 * w;
    uint8_t *img = malloc((size_t)W * (size_t)h * 3);
    if (!img) return snprintf(msg, msg_size, "out of memory"), PNDM_ERR_NOMEM;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const size_t s = ((size_t)y * w + x) * (size_t)c;
            uint8_t *p = img + ((size_t)y * W + x) * 3;
            for (int k = 0; k < 3; k++) {
                p[k] = a[s + (c == 3 ? k : 0)];
                p[3 * w + k] = b[s + (c == 3 ? k : 0)];
            }
            double v = dmax > 0 ? d[(size_t)y * w + x] / dmax * 255.0 : 0;
            uint8_t r = (uint8_t)(v > 255 ? 255 : v + 0.5);
            uint8_t *q = p + 6 * w;
            q[0] = r;
            q[1] = q[2] = (uint8_t)(r / 4);
        }
    void *png;
    size_t n;
    pndm_error err;
    pndm_png_text text[1] = {
        {"Comment", "pndm-gen --compare: A | B | |A-B| amplified (largest difference = full red)"}};
    pndm_status st = pndm_png_encode(img, W, h, 3, text, 1, &png, &n, &err);
    free(img);
    if (!st) {
        st = pndm_write_file_atomic(path, png, n, &err);
        free(png);
    }
    if (st) snprintf(msg, msg_size, "%s", err.msg);
    return st;
}

static int ensure_dir(const char *dir, char *msg, size_t msg_size) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        snprintf(msg, msg_size, "--diff-image: '%s' is not a directory", dir);
        return PNDM_ERR_IO;
    }
    if (mkdir(dir, 0777) != 0) {
        snprintf(msg, msg_size, "--diff-image: cannot create '%s': %s", dir, strerror(errno));
        return PNDM_ERR_IO;
    }
    return 0;
}

/* "<dir>/<stem of name><suffix>.diff.png" */
static void diff_name(const char *dir, const char *name, const char *suffix, char *out, size_t size) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    int stem = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, size, "%s/%.*s%s.diff.png", dir, stem, base, suffix);
}

static uint8_t to_u8(float v) {
    double x = (double)v * 255.0;
    if (!(x > 0)) return 0;
    if (x >= 255) return 255;
    return (uint8_t)lrint(x);
}

/* ---- one pair ------------------------------------------------------------------------------ */

static void compare_png(const loaded *A, const loaded *B, double tol, const compare_opts *o, result *r) {
    const size_t np = (size_t)A->w * (size_t)A->h, nv = np * (size_t)A->c;
    float *d = o->diff_dir ? calloc(np ? np : 1, sizeof *d) : NULL;
    double sum = 0, sq = 0;
    int maxd = 0;
    for (size_t i = 0; i < np; i++) {
        int pd = 0;
        for (int k = 0; k < A->c; k++) {
            int x = abs((int)A->pix[i * A->c + k] - (int)B->pix[i * A->c + k]);
            sum += x;
            sq += (double)x * x;
            if (x > pd) pd = x;
        }
        if (pd) r->differing++;
        if (pd > tol) r->beyond++;
        if (pd > maxd) maxd = pd;
        if (d) d[i] = (float)pd;
    }
    r->total = np;
    r->max_abs = maxd;
    r->mean_abs = nv ? sum / (double)nv : 0;
    r->psnr = sq > 0 ? 10.0 * log10(255.0 * 255.0 / (sq / (double)nv)) : INFINITY;
    r->tol_abs = tol;
    if (o->diff_dir && maxd > 0) {
        diff_name(o->diff_dir, r->name, "", r->diff_image, sizeof r->diff_image);
        char msg[1100];
        if (!d || write_diff_png(r->diff_image, A->pix, B->pix, d, maxd, A->w, A->h, A->c, msg, sizeof msg)) {
            snprintf(r->note, sizeof r->note, "diff image not written: %s", d ? msg : "out of memory");
            r->diff_image[0] = 0;
        }
    }
    free(d);
}

static void compare_npy(const loaded *A, const loaded *B, double tol, const compare_opts *o, result *r) {
    double bmax = 0;
    for (size_t i = 0; i < B->count; i++)
        if (isfinite(B->f[i]) && fabs(B->f[i]) > bmax) bmax = fabs(B->f[i]);
    const double scale = bmax > 1 ? bmax : 1, thr = tol * scale;
    double sum = 0, sq = 0, maxd = 0;
    for (size_t i = 0; i < A->count; i++) {
        float a = A->f[i], b = B->f[i];
        double x;
        if (isnan(a) || isnan(b))
            x = isnan(a) && isnan(b) ? 0 : INFINITY;
        else
            x = a == b ? 0 : fabs((double)a - (double)b); /* inf - inf of equal signs is 0 */
        if (x > 0) r->differing++;
        if (x > thr) r->beyond++;
        if (x > maxd) maxd = x;
        sum += x;
        sq += x * x;
    }
    r->total = A->count;
    r->max_abs = maxd;
    r->mean_abs = A->count ? sum / (double)A->count : 0;
    r->psnr = sq > 0 ? 10.0 * log10(scale * scale / (sq / (double)A->count)) : INFINITY;
    r->tol_abs = thr;
    /* difference images for arrays of images: (B, H, W, C) or (H, W, C) with C = 1 or 3 */
    int nd = A->ndim, C = nd >= 3 ? (int)A->shape[nd - 1] : 0;
    if (!o->diff_dir || maxd == 0 || (nd != 3 && nd != 4) || (C != 1 && C != 3)) return;
    const int H = (int)A->shape[nd - 3], W = (int)A->shape[nd - 2], NB = nd == 4 ? (int)A->shape[0] : 1;
    const size_t per = (size_t)H * W * C;
    uint8_t *pa = malloc(per), *pb = malloc(per);
    float *d = malloc((size_t)H * W * sizeof *d);
    int written = 0;
    for (int bi = 0; bi < NB && pa && pb && d; bi++) {
        const float *fa = A->f + per * bi, *fb = B->f + per * bi;
        double m = 0;
        for (size_t p = 0; p < (size_t)H * W; p++) {
            double pd = 0;
            for (int k = 0; k < C; k++) {
                double x = fabs((double)fa[p * C + k] - (double)fb[p * C + k]);
                if (!(x <= pd)) pd = isnan(x) ? INFINITY : x;
            }
            d[p] = (float)pd;
            if (pd > m) m = pd;
        }
        if (m == 0) continue;
        for (size_t k = 0; k < per; k++) {
            pa[k] = to_u8(fa[k]);
            pb[k] = to_u8(fb[k]);
        }
        char suffix[32] = "", path[4096], msg[1100];
        if (nd == 4) snprintf(suffix, sizeof suffix, ".%d", bi);
        diff_name(o->diff_dir, r->name, suffix, path, sizeof path);
        if (write_diff_png(path, pa, pb, d, isfinite(m) ? m : 1.0, W, H, C, msg, sizeof msg)) {
            snprintf(r->note, sizeof r->note, "diff image not written: %s", msg);
            break;
        }
        if (!written++) snprintf(r->diff_image, sizeof r->diff_image, "%s", path);
    }
    if (written > 1) snprintf(r->note, sizeof r->note, "%d diff images (one per differing image)", written);
    free(pa);
    free(pb);
    free(d);
}

/* Returns 0 or an error's exit code (the result's status says what happened). */
static int compare_pair(result *r, const compare_opts *o) {
    loaded A, B;
    char msg[1100];
    int rc = load(r->a, &A, msg, sizeof msg);
    if (!rc) {
        rc = load(r->b, &B, msg, sizeof msg);
        if (rc) free_loaded(&A);
    }
    if (rc) {
        r->status = "error";
        snprintf(r->note, sizeof r->note, "%s", msg);
        return rc;
    }
    r->kind = A.kind;
    char sa[96], sb[96];
    shape_text(&A, sa, sizeof sa);
    shape_text(&B, sb, sizeof sb);
    if (A.kind != B.kind) {
        r->status = "different";
        snprintf(r->note, sizeof r->note, "%s is a %s, %s a %s", r->a, A.kind == K_PNG ? "PNG" : ".npy", r->b,
                 B.kind == K_PNG ? "PNG" : ".npy");
    } else if (strcmp(sa, sb)) {
        r->status = "different";
        snprintf(r->note, sizeof r->note, "sizes differ: %s vs %s", sa, sb);
    } else {
        double tol = o->tolerance >= 0 ? o->tolerance : A.kind == K_PNG ? COMPARE_PNG_TOLERANCE : COMPARE_NPY_TOLERANCE;
        if (A.kind == K_PNG)
            compare_png(&A, &B, tol, o, r);
        else
            compare_npy(&A, &B, tol, o, r);
        r->status = r->differing == 0 ? "same" : r->beyond == 0 ? "within" : "different";
    }
    free_loaded(&A);
    free_loaded(&B);
    return 0;
}

/* ---- folders ------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The PNG and .npy regular files of a folder, sorted (malloc'ed names). */
static int list_dir(const char *dir, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return cli_fail(PNDM_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_png_name(e->d_name) && !is_npy_name(e->d_name)) continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **v = realloc(*out, (size_t)cap * sizeof *v);
            if (!v) break;
            *out = v;
        }
        if (!((*out)[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(*out, (size_t)*n, sizeof **out, cmp_str);
    return 0;
}

/* ---- report -------------------------------------------------------------------------------- */

static void fmt_num(double v, char *out, size_t size) {
    if (isinf(v))
        snprintf(out, size, "inf");
    else if (v == floor(v) && fabs(v) < 1e9)
        snprintf(out, size, "%.0f", v);
    else
        snprintf(out, size, "%.3g", v);
}

static void report_text(const result *r, const compare_opts *o) {
    const char *label = !strcmp(r->status, "same") ? "same"
        : !strcmp(r->status, "within")             ? "within"
        : !strcmp(r->status, "only_in_a")          ? "ONLY IN A"
        : !strcmp(r->status, "only_in_b")          ? "ONLY IN B"
        : !strcmp(r->status, "error")              ? "ERROR"
                                                   : "DIFFERENT";
    if (o->quiet && !strcmp(r->status, "same")) return;
    cli_out("%-10s %s", label, r->name);
    if (r->total && strcmp(r->status, "same")) {
        char mx[32], tl[32], ps[32];
        fmt_num(r->max_abs, mx, sizeof mx);
        fmt_num(r->tol_abs, tl, sizeof tl);
        snprintf(ps, sizeof ps, isinf(r->psnr) ? "inf" : "%.1f", r->psnr);
        const int png = r->kind == K_PNG;
        cli_out(": max |A-B| %s%s %s tolerance %s%s, %zu of %zu %s differ (%zu beyond the tolerance), mean %.3g, "
                "PSNR %s dB",
                mx, png ? (r->max_abs == 1 ? " level" : " levels") : "", r->beyond ? ">" : "<=", tl,
                png ? "" : " (relative to max(1, max|B|))", r->differing, r->total, png ? "pixels" : "values",
                r->beyond, r->mean_abs, ps);
    } else if (r->total) {
        cli_out(" (%zu %s)", r->total, r->kind == K_PNG ? "pixels" : "values");
    }
    if (r->note[0]) cli_out("%s%s", r->total && strcmp(r->status, "same") ? "; " : ": ", r->note);
    if (r->diff_image[0]) cli_out("; diff image: %s", r->diff_image);
    cli_out("\n");
}

static cJSON *result_json(const result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", r->name);
    if (r->a) cJSON_AddStringToObject(j, "a", r->a);
    if (r->b) cJSON_AddStringToObject(j, "b", r->b);
    cJSON_AddStringToObject(j, "status", r->status);
    if (r->total) {
        cJSON_AddStringToObject(j, "kind", r->kind == K_PNG ? "png" : "npy");
        cJSON_AddNumberToObject(j, "max_abs_diff", r->max_abs);
        cJSON_AddNumberToObject(j, "mean_abs_diff", r->mean_abs);
        if (isinf(r->psnr))
            cJSON_AddNullToObject(j, "psnr_db");
        else
            cJSON_AddNumberToObject(j, "psnr_db", r->psnr);
        cJSON_AddNumberToObject(j, "differing", (double)r->differing);
        cJSON_AddNumberToObject(j, "beyond_tolerance", (double)r->beyond);
        cJSON_AddNumberToObject(j, "total", (double)r->total);
        cJSON_AddStringToObject(j, "unit", r->kind == K_PNG ? "pixels" : "values");
        cJSON_AddNumberToObject(j, "tolerance_abs", r->tol_abs);
    }
    if (r->note[0]) cJSON_AddStringToObject(j, "note", r->note);
    if (r->diff_image[0]) cJSON_AddStringToObject(j, "diff_image", r->diff_image);
    return j;
}

int compare_paths(const char *a, const char *b, const compare_opts *o, cJSON *json) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0) return cli_fail(PNDM_ERR_IO, "--compare: %s: %s", a, strerror(errno));
    if (stat(b, &sb) != 0) return cli_fail(PNDM_ERR_IO, "--compare: %s: %s", b, strerror(errno));
    if (S_ISDIR(sa.st_mode) != S_ISDIR(sb.st_mode))
        return cli_usage_error("--compare: '%s' is a %s and '%s' a %s: give two files or two folders", a,
                               S_ISDIR(sa.st_mode) ? "folder" : "file", b, S_ISDIR(sb.st_mode) ? "folder" : "file");
    char msg[1100];
    if (o->diff_dir) {
        int rc = ensure_dir(o->diff_dir, msg, sizeof msg);
        if (rc) return cli_fail(rc, "%s", msg);
    }
    result *res = NULL;
    int n = 0;
    char **la = NULL, **lb = NULL;
    int na = 0, nb = 0;
    if (!S_ISDIR(sa.st_mode)) {
        res = calloc(1, sizeof *res);
        if (!res) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
        res[0].name = a;
        res[0].a = a;
        res[0].b = b;
        n = 1;
    } else {
        int rc = list_dir(a, &la, &na);
        if (!rc) rc = list_dir(b, &lb, &nb);
        res = calloc((size_t)(na + nb) + 1, sizeof *res);
        if (rc || !res) {
            for (int k = 0; k < na; k++) free(la[k]);
            for (int k = 0; k < nb; k++) free(lb[k]);
            free(la);
            free(lb);
            free(res);
            return rc ? rc : cli_fail(PNDM_ERR_NOMEM, "out of memory");
        }
        for (int i = 0, j = 0; i < na || j < nb;) { /* merge the sorted name lists */
            int c = i >= na ? 1 : j >= nb ? -1 : strcmp(la[i], lb[j]);
            result *r = &res[n++];
            r->name = c <= 0 ? la[i] : lb[j];
            if (c <= 0) {
                char *p = malloc(strlen(a) + strlen(la[i]) + 2);
                if (p) sprintf(p, "%s/%s", a, la[i]);
                r->a = p;
            }
            if (c >= 0) {
                char *p = malloc(strlen(b) + strlen(lb[j]) + 2);
                if (p) sprintf(p, "%s/%s", b, lb[j]);
                r->b = p;
            }
            r->status = c < 0 ? "only_in_a" : c > 0 ? "only_in_b" : NULL;
            if (c <= 0) i++;
            if (c >= 0) j++;
        }
    }
    int worst_error = 0, n_same = 0, n_within = 0, n_diff = 0, n_missing = 0, n_error = 0;
    for (int k = 0; k < n; k++) {
        result *r = &res[k];
        if (!r->status) {
            if (!r->a || !r->b) {
                r->status = "error";
                snprintf(r->note, sizeof r->note, "out of memory");
                worst_error = PNDM_ERR_NOMEM;
            } else {
                int rc = compare_pair(r, o);
                if (rc && !worst_error) worst_error = rc;
            }
        }
        const char *s = r->status;
        n_same += !strcmp(s, "same");
        n_within += !strcmp(s, "within");
        n_diff += !strcmp(s, "different");
        n_missing += !strncmp(s, "only", 4);
        n_error += !strcmp(s, "error");
        if (!json) report_text(r, o);
    }
    const int ok = n_diff == 0 && n_missing == 0 && n_error == 0 && n > 0;
    if (json) {
        cJSON_AddStringToObject(json, "a", a);
        cJSON_AddStringToObject(json, "b", b);
        cJSON *t = cJSON_AddObjectToObject(json, "tolerance");
        cJSON_AddNumberToObject(t, "png_levels", o->tolerance >= 0 ? o->tolerance : COMPARE_PNG_TOLERANCE);
        cJSON_AddNumberToObject(t, "npy_relative", o->tolerance >= 0 ? o->tolerance : COMPARE_NPY_TOLERANCE);
        cJSON *files = cJSON_AddArrayToObject(json, "files");
        for (int k = 0; k < n; k++) cJSON_AddItemToArray(files, result_json(&res[k]));
        cJSON *s = cJSON_AddObjectToObject(json, "summary");
        cJSON_AddNumberToObject(s, "files", n);
        cJSON_AddNumberToObject(s, "same", n_same);
        cJSON_AddNumberToObject(s, "within_tolerance", n_within);
        cJSON_AddNumberToObject(s, "different", n_diff);
        cJSON_AddNumberToObject(s, "missing", n_missing);
        cJSON_AddNumberToObject(s, "errors", n_error);
        cJSON_AddBoolToObject(json, "ok", ok);
    } else {
        cli_out("%s: %d file%s: %d same, %d within the tolerance, %d different, %d missing, %d unreadable: %s\n",
                cli_prog, n, n == 1 ? "" : "s", n_same, n_within, n_diff, n_missing, n_error,
                ok           ? "OK"
                    : n == 0 ? "NOTHING COMPARED"
                             : "DIFFERENT");
    }
    if (S_ISDIR(sa.st_mode))
        for (int k = 0; k < n; k++) {
            free((char *)res[k].a);
            free((char *)res[k].b);
        }
    for (int k = 0; k < na; k++) free(la[k]);
    for (int k = 0; k < nb; k++) free(lb[k]);
    free(la);
    free(lb);
    free(res);
    if (worst_error) return worst_error;
    return ok ? 0 : CLI_EXIT_DIFFERENT;
}
