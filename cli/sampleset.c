/* sampleset.c - sample sets for pndm-gen: see sampleset.h. */
#define _POSIX_C_SOURCE 200809L
#include "sampleset.h"
#include "cli.h"
#include "outputs.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Options and names                                                                        */

int ss_parse_shard(const char *val, ss_args *a) {
    const char *slash = strchr(val, '/');
    long long k, r;
    char kbuf[32];
    if (!slash || (size_t)(slash - val) >= sizeof kbuf) goto bad;
    memcpy(kbuf, val, (size_t)(slash - val));
    kbuf[slash - val] = 0;
    if (!cli_parse_i64(kbuf, 0, 1 << 20, &k) || !cli_parse_i64(slash + 1, 1, 1 << 20, &r)) goto bad;
    if (k >= r) return cli_usage_error("invalid --shard '%s': K counts from 0, so K must be below R", val);
    a->shard_k = (int)k;
    a->shard_r = (int)r;
    return 0;
bad:
    return cli_usage_error("invalid --shard '%s': expected K/R with 0 <= K < R (this run makes part K of R)", val);
}

static const char *ext_of(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash)) return "";
    return dot;
}

/* Copies literal text, turning %% into %; returns -1 on any other % (the caller checks first). */
static int unescape(const char *s, size_t n, char *out, size_t size) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 1 >= n || s[i + 1] != '%') return -1;
            i++;
        }
        if (o + 1 >= size) return -1;
        out[o++] = s[i];
    }
    out[o] = 0;
    return 0;
}

int ss_pattern_parse(const char *p, ss_pattern *pt, char *why, size_t why_size) {
    memset(pt, 0, sizeof *pt);
    const char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    const size_t dl = !slash ? 0 : slash == p ? 1 : (size_t)(slash - p);
    for (size_t i = 0; i < dl; i++) {
        if (p[i] != '%') continue;
        if (i + 1 >= dl || p[i + 1] != '%') {
            snprintf(why, why_size, "the directory part may not hold a %%d (the index goes in the file name)");
            return -1;
        }
        i++;
    }
    const char *spec = NULL, *spec_end = NULL;
    for (const char *c = base; *c; c++) {
        if (*c != '%') continue;
        if (c[1] == '%') {
            c++;
            continue;
        }
        const char *d = c + 1;
        int zero = 0, width = 0;
        if (*d == '0') zero = 1, d++;
        while (*d >= '0' && *d <= '9' && width <= 20) width = width * 10 + (*d++ - '0');
        if (*d != 'd' || width > 20 || spec) {
            snprintf(why, why_size, "use exactly one %%d (or %%05d) and %%%% for a literal %%");
            return -1;
        }
        spec = c;
        spec_end = d + 1;
        pt->zero = zero;
        pt->width = width;
        c = d;
    }
    if (!spec) return 0;
    /* every % is valid now: unescape fails only on length */
    if (slash)
        pt->has_dir = 1;
    else
        snprintf(pt->dir, sizeof pt->dir, ".");
    if ((slash && unescape(p, dl, pt->dir, sizeof pt->dir)) ||
        unescape(base, (size_t)(spec - base), pt->prefix, sizeof pt->prefix) ||
        unescape(spec_end, strlen(spec_end), pt->suffix, sizeof pt->suffix)) {
        snprintf(why, why_size, "name too long");
        return -1;
    }
    return 1;
}

/* 0, or -1 when the name does not fit (ss_plan_make checks the longest). */
static int pattern_base(const ss_pattern *pt, int64_t i, char *out, size_t size) {
    int n = pt->zero ? snprintf(out, size, "%s%0*" PRId64 "%s", pt->prefix, pt->width, i, pt->suffix)
                     : snprintf(out, size, "%s%*" PRId64 "%s", pt->prefix, pt->width, i, pt->suffix);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

int ss_pattern_name(const ss_pattern *pt, int64_t i, char *out, size_t size) {
    char base[PATH_MAX];
    if (pattern_base(pt, i, base, sizeof base)) return -1;
    int n = !pt->has_dir        ? snprintf(out, size, "%s", base)
        : !strcmp(pt->dir, "/") ? snprintf(out, size, "/%s", base)
                                : snprintf(out, size, "%s/%s", pt->dir, base);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

/* The index a file name (in the pattern's directory) stands for, or -1. */
static int64_t pattern_index(const ss_pattern *pt, const char *name) {
    size_t pl = strlen(pt->prefix), sl = strlen(pt->suffix), n = strlen(name);
    if (n < pl + sl + 1 || strncmp(name, pt->prefix, pl) || strcmp(name + n - sl, pt->suffix)) return -1;
    int64_t v = 0;
    int digits = 0;
    for (size_t k = pl; k < n - sl; k++) {
        char c = name[k];
        if (c == ' ' && !digits) continue;
        if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (c - '0');
        digits++;
    }
    if (!digits) return -1;
    char again[PATH_MAX];
    if (pattern_base(pt, v, again, sizeof again)) return -1;
    return strcmp(again, name) ? -1 : v;
}

void ss_name(const ss_plan *pl, int64_t i, char *out, size_t size) {
    if (ss_pattern_name(&pl->png, i, out, size)) out[0] = 0; /* cannot happen after ss_plan_make */
}

static int fits(int n, size_t size) { return n >= 0 && (size_t)n < size; }

/* The directory of `path` exists and is writable. */
static int dir_writable(const char *what, const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) != 0) return cli_fail(PNDM_ERR_IO, "%s: directory '%s' does not exist", what, dir);
    if (!S_ISDIR(st.st_mode)) return cli_fail(PNDM_ERR_IO, "%s: '%s' is not a directory", what, dir);
    if (access(dir, W_OK) != 0) return cli_fail(PNDM_ERR_IO, "%s: directory '%s' is not writable", what, dir);
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return cli_fail(PNDM_ERR_IO, "%s: '%s' exists and is not a regular file", what, path);
    return 0;
}

int ss_plan_make(ss_plan *pl, const ss_args *a, const char *output, uint64_t seed, int seed_given, long long batch) {
    memset(pl, 0, sizeof *pl);
    pl->output = output;
    if (a->num_images < 1 || a->num_images > SS_MAX_IMAGES)
        return cli_usage_error("invalid --num-images %lld: expected 1 to %lld", a->num_images, SS_MAX_IMAGES);
    if (a->skip_existing && !seed_given)
        return cli_usage_error("--skip-existing needs the --seed of the set (a random seed cannot match the files "
                               "already there)");
    pl->set_start = a->start_index;
    pl->set_count = a->num_images;
    pl->seed = seed;
    pl->chunk = batch;
    pl->skip_existing = a->skip_existing;
    if ((uint64_t)(pl->set_start + pl->set_count - 1) > UINT64_MAX - seed)
        return cli_usage_error("--seed %" PRIu64 " + image index %lld overflows 64 bits", seed,
                               (long long)(pl->set_start + pl->set_count - 1));
    pl->start = pl->set_start;
    pl->count = pl->set_count;
    if (a->shard_r) {
        pl->shard_k = a->shard_k;
        pl->shard_r = a->shard_r;
        /* part k of r: a contiguous block, [N*k/R, N*(k+1)/R) */
        int64_t lo = pl->set_count * a->shard_k / a->shard_r, hi = pl->set_count * (a->shard_k + 1) / a->shard_r;
        pl->start = pl->set_start + lo;
        pl->count = hi - lo;
    }
    const char *ext = ext_of(output);
    char why[160], base[PATH_MAX];
    if (!strcmp(ext, ".npz")) {
        if (a->npz) return cli_usage_error("-o '%s' is already the .npz: drop --npz", output);
        if (a->shard_r)
            return cli_usage_error("--shard writes part of a set, an .npz holds all of it: write the shards as PNGs "
                                   "(-o 'DIR/%%05d.png'), then pack them with one run of --skip-existing --npz FILE");
        pl->parts = 1;
        snprintf(pl->npz, sizeof pl->npz, "%s", output);
        if ((size_t)snprintf(pl->parts_dir, sizeof pl->parts_dir, "%s.parts", output) >= sizeof pl->parts_dir)
            return cli_usage_error("output path too long");
        char pat[2 * PATH_MAX + 8];
        size_t o = 0;
        for (const char *c = pl->parts_dir; *c; c++) { /* a % of the user's path is literal */
            if (*c == '%') pat[o++] = '%';
            pat[o++] = *c;
        }
        snprintf(pat + o, sizeof pat - o, "/%%d.png");
        if (ss_pattern_parse(pat, &pl->png, why, sizeof why) < 0)
            return cli_usage_error("output path (%s): '%s'", why, output);
        struct stat st;
        if (lstat(pl->parts_dir, &st) == 0 && !S_ISDIR(st.st_mode))
            return cli_fail(PNDM_ERR_IO, "'%s' (where the images wait for the .npz) exists and is not a directory",
                            pl->parts_dir);
        int rc = dir_writable("output", output);
        if (rc) return rc;
        if (!fits(snprintf(base, sizeof base, "%.*s.manifest", (int)(ext - output), output), sizeof base))
            return cli_usage_error("output path too long");
    } else if (!strcmp(ext, ".png") || !strcmp(ext, ".PNG")) {
        const int pk = ss_pattern_parse(output, &pl->png, why, sizeof why);
        if (pk == 0)
            return cli_usage_error("with --num-images, -o needs a %%d pattern for the image index, e.g. "
                                   "'set/%%05d.png' (or an .npz): '%s' has none",
                                   output);
        if (pk < 0)
            return cli_usage_error("bad output pattern (%s): '%s'", why, output); /* reason first: a long path is cut */
        char p0[PATH_MAX];
        ss_pattern_name(&pl->png, pl->start, p0, sizeof p0);
        /* the set's folder is made when its parent exists (one level, like mkdir) */
        struct stat st;
        if (pl->png.has_dir && stat(pl->png.dir, &st) != 0 && errno == ENOENT && mkdir(pl->png.dir, 0777) == 0 &&
            !a->quiet)
            fprintf(stderr, "%s: created '%s'\n", cli_prog, pl->png.dir);
        int rc = dir_writable("output", p0);
        if (rc) return rc;
        if (a->npz) {
            if (strcmp(ext_of(a->npz), ".npz")) return cli_usage_error("--npz needs a .npz path (got '%s')", a->npz);
            if (a->shard_r)
                return cli_usage_error("--npz holds the whole set: pack the shards with one run of --skip-existing "
                                       "--npz after they are done");
            snprintf(pl->npz, sizeof pl->npz, "%s", a->npz);
            if ((rc = dir_writable("--npz", a->npz))) return rc;
        }
        /* set/%05d.png -> set/manifest.jsonl; fid/img_%05d.png -> fid/img_manifest.jsonl;
         * x%d.png -> x.manifest.jsonl */
        ss_pattern m = pl->png;
        size_t sl = strlen(m.suffix);
        if (sl >= 4) m.suffix[sl - 4] = 0;
        char mb[PATH_MAX];
        size_t pl_len = strlen(m.prefix);
        const char *sep = pl_len && isalnum((unsigned char)m.prefix[pl_len - 1]) ? "." : "";
        if (!fits(snprintf(mb, sizeof mb, "%s%smanifest%s", m.prefix, sep, m.suffix), sizeof mb) ||
            !fits(m.has_dir ? snprintf(base, sizeof base, "%s/%s", !strcmp(m.dir, "/") ? "" : m.dir, mb)
                            : snprintf(base, sizeof base, "%s", mb),
                  sizeof base))
            return cli_usage_error("output path too long");
        char last[PATH_MAX];
        if (ss_pattern_name(&pl->png, pl->set_start + pl->set_count - 1, last, sizeof last))
            return cli_usage_error("output path too long");
    } else {
        return cli_usage_error("with --num-images, -o takes a %%d .png pattern ('set/%%05d.png') or an .npz file "
                               "(got '%s')",
                               output);
    }
    /* without --skip-existing or --overwrite an image of the set already there is refused now,
     * before the run, like every other output of pndm-gen */
    if (!a->skip_existing && !a->overwrite) {
        char name[PATH_MAX], first[PATH_MAX] = "";
        int64_t there = 0;
        struct stat st;
        for (int64_t i = pl->start; i < pl->start + pl->count; i++) {
            ss_pattern_name(&pl->png, i, name, sizeof name);
            if (lstat(name, &st) == 0 && there++ == 0) snprintf(first, sizeof first, "%s", name);
        }
        if (there)
            return cli_fail(PNDM_ERR_IO,
                            "%s%s exist%s: use --skip-existing to keep the images of this set already there "
                            "(files of another run are refused), or --overwrite to replace them",
                            first, there > 1 ? " and other images of the set" : "", there > 1 ? "" : "s");
    }
    if (a->manifest) {
        if (strcmp(ext_of(a->manifest), ".jsonl"))
            return cli_usage_error("--manifest needs a .jsonl path (got '%s')", a->manifest);
        snprintf(pl->manifest, sizeof pl->manifest, "%s", a->manifest);
    } else {
        /* a set from --start-index K (another machine continuing one) and a shard get their own
         * manifest, never another part's: manifest[.K-L][.shard-k-of-r].jsonl */
        char range[64] = "", shard[64] = "";
        if (pl->set_start)
            snprintf(range, sizeof range, ".%lld-%lld", (long long)pl->set_start,
                     (long long)(pl->set_start + pl->set_count - 1));
        if (a->shard_r) snprintf(shard, sizeof shard, ".shard-%d-of-%d", a->shard_k, a->shard_r);
        if (!fits(snprintf(pl->manifest, sizeof pl->manifest, "%s%s%s.jsonl", base, range, shard), sizeof pl->manifest))
            return cli_usage_error("output path too long");
    }
    return dir_writable("manifest", pl->manifest);
}

/* ---------------------------------------------------------------------------------------- */
/* Stale temporary files: pndm_write_file_atomic writes NAME.tmp.XXXXXX and renames it; a     */
/* process killed in between leaves it. Removed for this run's names only.                   */

static int is_tmp_of(const char *entry, char *base_out, size_t size) {
    size_t n = strlen(entry);
    if (n < 12 || strncmp(entry + n - 11, ".tmp.", 5) || n - 11 >= size) return 0;
    memcpy(base_out, entry, n - 11);
    base_out[n - 11] = 0;
    return 1;
}

static void clean_exact(const char *path) {
    char dir[PATH_MAX], want[PATH_MAX], base[PATH_MAX], full[PATH_MAX * 2];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    snprintf(want, sizeof want, "%s", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (is_tmp_of(e->d_name, base, sizeof base) && !strcmp(base, want)) {
            snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
            unlink(full);
        }
    closedir(d);
}

void ss_clean_stale(const ss_plan *pl, int own_outputs) {
    DIR *d = opendir(pl->png.dir);
    if (d) {
        struct dirent *e;
        char base[PATH_MAX], full[PATH_MAX * 2];
        while ((e = readdir(d))) {
            if (!is_tmp_of(e->d_name, base, sizeof base)) continue;
            int64_t i = pattern_index(&pl->png, base);
            if (i < pl->start || i >= pl->start + pl->count) continue;
            snprintf(full, sizeof full, "%s/%s", pl->png.dir, e->d_name);
            unlink(full);
        }
        closedir(d);
    }
    if (own_outputs) {
        clean_exact(pl->manifest);
        if (pl->npz[0]) clean_exact(pl->npz);
    }
}

void ss_remove_parts(const ss_plan *pl, int64_t start, int64_t count) {
    if (!pl->parts) return;
    char name[PATH_MAX];
    for (int64_t i = start; i < start + count; i++) {
        ss_name(pl, i, name, sizeof name);
        unlink(name);
    }
    rmdir(pl->parts_dir); /* fails while another rank's files are still there: that rank removes it */
}

/* ---------------------------------------------------------------------------------------- */
/* Worker                                                                                   */

enum { IMG_NEED, IMG_HAVE };

struct ss_worker {
    const ss_run *run;
    int need_pixels;
    size_t px;    /* S*S*C */
    float *lat;   // (B, C, S, S)
    float *img;   // (B, S, S, C)
    uint8_t *pix; // (B, S, S, C)
    int *state;   // B
    int *replace; // B: an existing file is replaced (--overwrite)
    char (*sha)[65];
    ss_record rec; /* one image's text chunks */
    uint8_t *rpix; // (B, S, S, C), with need_pixels
    ss_result res;
};

void ss_worker_free(ss_worker *w) {
    if (!w) return;
    free(w->lat);
    free(w->img);
    free(w->pix);
    free(w->state);
    free(w->replace);
    free(w->sha);
    free(w->rpix);
    free(w);
}

int ss_worker_new(const ss_run *run, int need_pixels, ss_worker **out) {
    const ss_plan *pl = run->plan;
    *out = NULL;
    ss_worker *w = calloc(1, sizeof *w);
    if (!w) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    w->run = run;
    w->need_pixels = need_pixels;
    w->px = (size_t)run->S * run->S * run->C;
    size_t B = (size_t)pl->chunk;
    w->lat = malloc(B * w->px * sizeof *w->lat);
    w->img = malloc(B * w->px * sizeof *w->img);
    w->pix = malloc(B * w->px);
    w->state = malloc(B * sizeof *w->state);
    w->replace = malloc(B * sizeof *w->replace);
    w->sha = malloc(B * sizeof *w->sha);
    w->rpix = need_pixels ? malloc(B * w->px) : NULL;
    if (!w->lat || !w->img || !w->pix || !w->state || !w->replace || !w->sha || (need_pixels && !w->rpix)) {
        ss_worker_free(w);
        return cli_fail(PNDM_ERR_NOMEM, "cannot allocate buffers for a chunk of %lld images", (long long)B);
    }
    if (pl->parts && mkdir(pl->parts_dir, 0777) != 0 && errno != EEXIST) {
        ss_worker_free(w);
        return cli_fail(PNDM_ERR_IO, "cannot create '%s': %s", pl->parts_dir, strerror(errno));
    }
    *out = w;
    return 0;
}

/* The text chunks of a PNG on disk. */
typedef struct {
    int n, overflow;
    char *key[SS_TEXT_MAX], *value[SS_TEXT_MAX];
} found_text;

static void collect_text(const char *key, const char *value, void *user) {
    found_text *f = user;
    if (f->n >= SS_TEXT_MAX) {
        f->overflow = 1;
        return;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) { /* out of memory: counts as a mismatch */
        free(k);
        free(v);
        f->overflow = 1;
        return;
    }
    f->key[f->n] = k;
    f->value[f->n] = v;
    f->n++;
}

static void found_free(found_text *f) {
    for (int k = 0; k < f->n; k++) free(f->key[k]), free(f->value[k]);
}

void ss_field_diff(const char *got, const char *want, char *g_out, char *w_out, size_t size) {
    const char *g = got, *w = want;
    for (;;) {
        const char *ge = strstr(g, "; "), *we = strstr(w, "; ");
        size_t gl = ge ? (size_t)(ge - g) : strlen(g), wl = we ? (size_t)(we - w) : strlen(w);
        if (gl != wl || strncmp(g, w, gl) || !ge || !we) {
            snprintf(g_out, size, "%.*s", (int)(gl > 200 ? 200 : gl), g);
            snprintf(w_out, size, "%.*s", (int)(wl > 200 ? 200 : wl), w);
            return;
        }
        g = ge + 2;
        w = we + 2;
    }
}

static void field_diff(const char *got, const char *want, char *out, size_t size) {
    char g[256], w[256];
    ss_field_diff(got, want, g, w, sizeof g);
    snprintf(out, size, "it has '%s' where this run has '%s'", g, w);
}

/* 0 when the texts equal this run's record, else a description in `why`. */
static int texts_match(const found_text *f, const ss_record *rec, char *why, size_t size) {
    if (f->n == 0 && rec->n > 0) {
        snprintf(why, size, "it has no pndm-gen parameters");
        return -1;
    }
    for (int k = 0; k < rec->n && k < f->n; k++) {
        if (strcmp(f->key[k], rec->text[k].key)) {
            snprintf(why, size, "its text chunk '%.100s' is not this run's '%.100s'", f->key[k], rec->text[k].key);
            return -1;
        }
        if (strcmp(f->value[k], rec->text[k].value)) {
            field_diff(f->value[k], rec->text[k].value, why, size);
            return -1;
        }
    }
    if (f->n != rec->n || f->overflow) {
        snprintf(why, size, "it has %d text chunks, this run writes %d", f->n, rec->n);
        return -1;
    }
    return 0;
}

static void pixels_sha(const uint8_t *p, size_t n, char hex[65]) { pndm_sha256_hex(p, n, hex); }

/* The file for image i (slot j of the chunk), if there is one: this run's image (kept: its sha256
 * and pixels taken from it) or in the way (refused, or replaced under SS_EXISTING_OVERWRITE). */
static int check_existing(ss_worker *w, const char *name, int64_t i, int j) {
    const ss_run *run = w->run;
    const ss_plan *pl = run->plan;
    struct stat st;
    if (lstat(name, &st) != 0) {
        if (errno == ENOENT) return 0;
        return cli_fail(PNDM_ERR_IO, "%s: cannot stat: %s", name, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return cli_fail(PNDM_ERR_IO, "%s is in the way: it is not a regular file (image %lld of this set goes there)",
                        name, (long long)i);
    if (!pl->skip_existing) {
        if (run->existing == SS_EXISTING_OVERWRITE) return w->replace[j] = 1, 0;
        return cli_fail(PNDM_ERR_IO,
                        "%s exists: use --skip-existing to keep the images of this set already there (files of "
                        "another run are refused), or --overwrite to replace them",
                        name);
    }
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(name, 256u << 20, &buf, &size, &err)) return cli_fail(err.code, "%s", err.msg);
    found_text f = {0};
    char why[600];
    int bad = 0;
    if (pndm_png_read_text(buf, size, name, collect_text, &f, &err)) {
        snprintf(why, sizeof why, "not a complete PNG: %.400s", err.msg);
        bad = 1;
    } else {
        int rc = run->record(run->record_user, pl->seed + (uint64_t)i, &w->rec);
        if (rc) {
            found_free(&f);
            free(buf);
            return rc;
        }
        bad = texts_match(&f, &w->rec, why, sizeof why) != 0;
    }
    found_free(&f);
    uint8_t *px = NULL;
    int wd = 0, ht = 0, ch = 0;
    if (!bad && pndm_png_decode(buf, size, name, &px, &wd, &ht, &ch, &err)) {
        snprintf(why, sizeof why, "not a readable PNG: %.400s", err.msg);
        bad = 1;
    }
    if (!bad && (wd != run->S || ht != run->S || ch != run->C)) {
        snprintf(why, sizeof why, "it is %dx%d with %d channel%s, this model makes %dx%d with %d", wd, ht, ch,
                 ch == 1 ? "" : "s", run->S, run->S, run->C);
        bad = 1;
    }
    if (bad) {
        free(px);
        free(buf);
        if (run->existing == SS_EXISTING_OVERWRITE) return w->replace[j] = 1, 0; /* --overwrite: remade */
        return cli_fail(PNDM_ERR_IO,
                        "%s is in the way: it is not image %lld of this set (%s); move it away, write the set "
                        "elsewhere, or replace it with --overwrite",
                        name, (long long)i, why);
    }
    if (pl->parts)
        pixels_sha(px, w->px, w->sha[j]);
    else
        pndm_sha256_hex(buf, size, w->sha[j]);
    if (w->need_pixels) memcpy(w->rpix + (size_t)j * w->px, px, w->px);
    free(px);
    free(buf);
    w->state[j] = IMG_HAVE;
    return 0;
}

/* Images [a, b) of the chunk (all to be made), as one pndm_generate call with per-image seeds. */
static int generate_run(ss_worker *w, int64_t start, int a, int b) {
    const ss_run *run = w->run;
    const ss_plan *pl = run->plan;
    pndm_gen_params p = run->gen;
    p.batch = b - a;
    p.seed = pl->seed + (uint64_t)(start + a);
    p.per_image_seeds = 1; /* image i: its own generator seeded seed + i, as with -b 1 -s seed+i */
    p.progress = NULL;
    pndm_error err;
    if (run->signal && *run->signal) return ss_signal_exit(run);
    pndm_status st = pndm_generate(run->model, &p, NULL, w->lat, &err);
    if (st == PNDM_ERR_INTERRUPTED) return ss_signal_exit(run);
    if (st) return cli_fail(st, "%s", err.msg);
    pndm_latents_to_images(w->lat, p.batch, run->C, run->S, run->S, w->img);
    pndm_images_to_u8(w->img, (size_t)p.batch * w->px, w->pix);
    /* every finished image is written, even after a signal: it is done */
    for (int j = a; j < b; j++) {
        int64_t i = start + j;
        const uint8_t *px = w->pix + (size_t)(j - a) * w->px;
        char name[PATH_MAX];
        ss_name(pl, i, name, sizeof name);
        int rc = run->record(run->record_user, pl->seed + (uint64_t)i, &w->rec);
        if (rc) return rc;
        void *png;
        size_t size;
        if (pndm_png_encode(px, run->S, run->S, run->C, w->rec.text, w->rec.n, &png, &size, &err))
            return cli_fail(err.code, "%s: %s", name, err.msg);
        if (pl->parts)
            pixels_sha(px, w->px, w->sha[j]);
        else
            pndm_sha256_hex(png, size, w->sha[j]);
        /* a file that was not there is never replaced, should one appear meanwhile */
        rc = cli_write_output(name, png, size, w->replace[j]);
        free(png);
        if (rc) return rc;
        if (w->need_pixels) memcpy(w->rpix + (size_t)j * w->px, px, w->px);
        w->state[j] = IMG_HAVE;
        w->res.generated++;
    }
    return 0;
}

int ss_worker_chunk(ss_worker *w, int64_t start, int64_t count, const ss_result **res) {
    const ss_plan *pl = w->run->plan;
    *res = NULL;
    if (count < 1 || count > pl->chunk || start < pl->start || start + count > pl->start + pl->count)
        return cli_fail(PNDM_ERR_INTERNAL, "bad chunk [%lld, %lld)", (long long)start, (long long)(start + count));
    double t0 = cli_now_s();
    memset(&w->res, 0, sizeof w->res);
    w->res.start = start;
    w->res.count = count;
    int rc;
    char name[PATH_MAX];
    for (int j = 0; j < (int)count; j++) {
        w->state[j] = IMG_NEED;
        w->replace[j] = 0;
        ss_name(pl, start + j, name, sizeof name);
        if ((rc = check_existing(w, name, start + j, j))) return rc;
        if (w->state[j] == IMG_HAVE) w->res.skipped++;
    }
    for (int j = 0; j < (int)count;) {
        if (w->state[j] != IMG_NEED) {
            j++;
            continue;
        }
        int a = j;
        while (j < (int)count && w->state[j] == IMG_NEED) j++;
        if ((rc = generate_run(w, start, a, j))) return rc;
    }
    w->res.sha = w->sha;
    w->res.pixels = w->need_pixels ? w->rpix : NULL;
    w->res.busy_s = cli_now_s() - t0;
    *res = &w->res;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Sink: the manifest and the .npz                                                          */

struct ss_sink {
    const ss_run *run;
    int64_t n, done;
    uint8_t (*sha)[32];
    uint8_t *have;
    pndm_npz_writer *npz;
};

int ss_sink_new(const ss_run *run, ss_sink **out) {
    const ss_plan *pl = run->plan;
    *out = NULL;
    ss_sink *s = calloc(1, sizeof *s);
    if (!s) return cli_fail(PNDM_ERR_NOMEM, "out of memory");
    s->run = run;
    s->n = pl->count;
    s->sha = calloc((size_t)s->n + 1, sizeof *s->sha);
    s->have = calloc((size_t)s->n / 8 + 1, 1);
    if (!s->sha || !s->have) {
        long long n = (long long)s->n;
        ss_sink_free(s);
        return cli_fail(PNDM_ERR_NOMEM, "out of memory for the manifest of %lld images", n);
    }
    if (pl->npz[0]) {
        const int64_t shape[4] = {s->n, run->S, run->S, run->C};
        pndm_error err;
        if (pndm_npz_create_u8(pl->npz, "arr_0", 4, shape, &s->npz, &err)) {
            ss_sink_free(s);
            return cli_fail(err.code, "%s", err.msg);
        }
    }
    *out = s;
    return 0;
}

void ss_sink_free(ss_sink *s) {
    if (!s) return;
    pndm_npz_abort(s->npz);
    free(s->sha);
    free(s->have);
    free(s);
}

int64_t ss_sink_done(const ss_sink *s) { return s->done; }

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

int ss_sink_add(ss_sink *s, const ss_result *r) {
    const ss_plan *pl = s->run->plan;
    int64_t first = r->start - pl->start;
    if (first < 0 || r->count < 0 || first + r->count > s->n)
        return cli_fail(PNDM_ERR_INTERNAL, "result outside the set: [%lld, %lld)", (long long)r->start,
                        (long long)(r->start + r->count));
    for (int64_t j = 0; j < r->count; j++) {
        int64_t k = first + j;
        for (int b = 0; b < 32; b++) {
            int hi = hexval(r->sha[j][2 * b]), lo = hexval(r->sha[j][2 * b + 1]);
            if (hi < 0 || lo < 0)
                return cli_fail(PNDM_ERR_INTERNAL, "bad sha256 for image %lld", (long long)(r->start + j));
            s->sha[k][b] = (uint8_t)(hi << 4 | lo);
        }
        if (!(s->have[k >> 3] >> (k & 7) & 1)) s->done++;
        s->have[k >> 3] |= (uint8_t)(1u << (k & 7));
    }
    if (s->npz) {
        pndm_error err;
        if (!r->pixels) return cli_fail(PNDM_ERR_INTERNAL, "result without pixels for the .npz");
        if (pndm_npz_put_rows(s->npz, first, r->count, r->pixels, &err)) return cli_fail(err.code, "%s", err.msg);
    }
    return 0;
}

/* The manifest: one JSON object per line, in index order; written like every output (temporary
 * file in the same directory, fsync, rename). */
static int write_manifest(ss_sink *s) {
    const ss_plan *pl = s->run->plan;
    const char *path = pl->manifest;
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return cli_fail(PNDM_ERR_IO, "%s: cannot create file: %s", path, strerror(errno));
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return cli_fail(PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    int ok = 1;
    char name[PATH_MAX], hex[65], num[32];
    for (int64_t k = 0; k < s->n && ok; k++) {
        int64_t i = pl->start + k;
        for (int b = 0; b < 32; b++) snprintf(hex + 2 * b, 3, "%02x", s->sha[k][b]);
        cJSON *o = cJSON_CreateObject();
        snprintf(num, sizeof num, "%" PRId64, i);
        cJSON_AddRawToObject(o, "index", num);
        snprintf(num, sizeof num, "%" PRIu64, pl->seed + (uint64_t)i);
        cJSON_AddRawToObject(o, "seed", num);
        if (pl->parts) { /* the images live in the .npz: the row and the sha256 of its bytes */
            cJSON_AddStringToObject(o, "file", pl->npz);
            snprintf(num, sizeof num, "%" PRId64, k);
            cJSON_AddRawToObject(o, "row", num);
        } else {
            ss_name(pl, i, name, sizeof name);
            cJSON_AddStringToObject(o, "file", name);
        }
        cJSON_AddStringToObject(o, "sha256", hex);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!line || fputs(line, f) < 0 || fputc('\n', f) < 0) ok = 0;
        free(line);
    }
    if (ok && fflush(f) != 0) ok = 0;
    if (ok && fsync(fd) != 0 && errno != EINVAL && errno != EROFS) ok = 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) ok = 0, saved = errno;
    if (!ok) {
        unlink(tmp);
        return cli_fail(PNDM_ERR_IO, "%s: write failed: %s%s", path, strerror(saved),
                        saved == ENOSPC || saved == EDQUOT || saved == EFBIG ? " (disk full)" : "");
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cli_fail(PNDM_ERR_IO, "%s: cannot rename temporary file: %s", path, strerror(e));
    }
    return 0;
}

int ss_sink_finish(ss_sink *s) {
    if (s->done != s->n)
        return cli_fail(PNDM_ERR_INTERNAL, "%lld of %lld images collected", (long long)s->done, (long long)s->n);
    int rc = write_manifest(s);
    if (rc) return rc;
    if (s->npz) {
        pndm_error err;
        pndm_status st = pndm_npz_commit(s->npz, &err);
        s->npz = NULL;
        if (st) return cli_fail(st, "%s", err.msg);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Queue, progress, report                                                                  */

void ss_queue_init(ss_queue *q, const ss_plan *pl, int ranks) {
    q->next = pl->start;
    q->end = pl->start + pl->count;
    q->chunk = pl->chunk;
    q->ranks = ranks < 1 ? 1 : ranks;
}

int64_t ss_queue_take(ss_queue *q, int64_t *start) {
    int64_t rem = q->end - q->next;
    if (rem <= 0) return 0;
    int64_t n = q->chunk;
    if (q->ranks > 1) {
        /* guided self-scheduling: near the end, chunks shrink to about a 2R-th of what is left,
         * so a slow host does not hold the last big chunk while the others wait (the images do
         * not depend on how the set is split) */
        int64_t g = (rem + 2 * q->ranks - 1) / (2 * q->ranks);
        if (g < n) n = g;
    }
    if (n > rem) n = rem;
    if (n < 1) n = 1;
    *start = q->next;
    q->next += n;
    return n;
}

void ss_progress_show(const ss_run *run, ss_progress *p, int64_t done, int64_t total) {
    if (run->quiet || total <= 0) return;
    double el = cli_now_s() - p->t0;
    double rate = el > 0 ? done / el : 0, eta = rate > 0 ? (total - done) / rate : 0;
    if (p->tty) {
        fprintf(stderr, "\r  %lld/%lld images (%.0f%%), %.2f images/s, ~%.0f s left   ", (long long)done,
                (long long)total, 100.0 * done / total, rate, eta);
        if (done == total) fputc('\n', stderr);
        fflush(stderr);
    } else if (done == total || done - p->last >= (total + 9) / 10) {
        fprintf(stderr, "  %lld/%lld images, %.1f s elapsed\n", (long long)done, (long long)total, el);
        p->last = done;
    }
}

double ss_cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int ss_signal_exit(const ss_run *run) { return run->signal && *run->signal == SIGTERM ? 143 : 130; }

int ss_stopped(const ss_run *run, int rc, int64_t done) {
    const ss_plan *pl = run->plan;
    if (rc == 130 || rc == 143)
        cli_fail(rc,
                 "interrupted by %s: %lld of %lld images done; rerun the same command with --skip-existing to "
                 "finish",
                 rc == 143 ? "SIGTERM" : "SIGINT", (long long)done, (long long)pl->count);
    else
        cli_fail(rc,
                 "stopped: %lld of %lld images done; once the problem is fixed, rerun the same command with "
                 "--skip-existing to finish",
                 (long long)done, (long long)pl->count);
    return rc;
}

void ss_report(const ss_run *run, const ss_rank_stats *st, int n_ranks, double wall_s) {
    const ss_plan *pl = run->plan;
    int64_t gen = 0, skip = 0;
    for (int r = 0; r < n_ranks; r++) gen += st[r].generated, skip += st[r].skipped;
    double ips = wall_s > 0 ? gen / wall_s : 0;
    if (!run->quiet) {
        fprintf(stderr, "pndm-gen: %lld images in %.2f s (%lld generated, %lld already there), %.3f images/s",
                (long long)pl->count, wall_s, (long long)gen, (long long)skip, ips);
        if (n_ranks > 1) fprintf(stderr, " on %d ranks", n_ranks);
        fprintf(stderr, "; manifest %s%s%s\n", pl->manifest, pl->npz[0] ? ", " : "", pl->npz);
        if (n_ranks > 1)
            for (int r = 0; r < n_ranks; r++)
                fprintf(stderr,
                        "  rank %d on %s: %lld images (%lld generated) in %lld chunks, %d threads, %.2f s busy\n",
                        st[r].rank, st[r].host, (long long)st[r].images, (long long)st[r].generated,
                        (long long)st[r].chunks, st[r].threads, st[r].busy_s);
    }
    char name[PATH_MAX];
    if (!run->json) {
        if (!pl->parts)
            for (int64_t i = pl->start; i < pl->start + pl->count; i++) {
                ss_name(pl, i, name, sizeof name);
                cli_out("%s\n", name);
            }
        if (pl->npz[0]) cli_out("%s\n", pl->npz);
        cli_out("%s\n", pl->manifest);
        return;
    }
    char num[32];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "images", (double)pl->count);
    cJSON_AddNumberToObject(j, "generated", (double)gen);
    cJSON_AddNumberToObject(j, "skipped", (double)skip);
    cJSON_AddNumberToObject(j, "start_index", (double)pl->start);
    cJSON_AddNumberToObject(j, "set_start_index", (double)pl->set_start);
    cJSON_AddNumberToObject(j, "set_images", (double)pl->set_count);
    if (pl->shard_r) {
        snprintf(num, sizeof num, "%d/%d", pl->shard_k, pl->shard_r);
        cJSON_AddStringToObject(j, "shard", num);
    } else {
        cJSON_AddNullToObject(j, "shard");
    }
    snprintf(num, sizeof num, "%" PRIu64, pl->seed);
    cJSON_AddRawToObject(j, "seed", num);
    cJSON_AddStringToObject(j, "image_seeds", "seed + index");
    cJSON_AddNumberToObject(j, "steps", run->gen.steps);
    cJSON_AddNumberToObject(j, "unet_calls_per_chunk", run->unet_calls);
    cJSON_AddNumberToObject(j, "batch", (double)pl->chunk);
    cJSON_AddStringToObject(j, "model", run->model_path ? run->model_path : "");
    cJSON_AddStringToObject(j, "scheduler", run->sched_desc ? run->sched_desc : "");
    if (pl->parts)
        cJSON_AddNullToObject(j, "pattern");
    else
        cJSON_AddStringToObject(j, "pattern", pl->output);
    if (pl->npz[0])
        cJSON_AddStringToObject(j, "npz", pl->npz);
    else
        cJSON_AddNullToObject(j, "npz");
    cJSON_AddStringToObject(j, "manifest", pl->manifest);
    cJSON *ranks = cJSON_CreateArray();
    for (int r = 0; r < n_ranks; r++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", st[r].rank);
        cJSON_AddStringToObject(o, "host", st[r].host);
        cJSON_AddNumberToObject(o, "threads", st[r].threads);
        cJSON_AddStringToObject(o, "kernel", st[r].kernel);
        cJSON_AddNumberToObject(o, "images", (double)st[r].images);
        cJSON_AddNumberToObject(o, "generated", (double)st[r].generated);
        cJSON_AddNumberToObject(o, "skipped", (double)st[r].skipped);
        cJSON_AddNumberToObject(o, "chunks", (double)st[r].chunks);
        cJSON_AddNumberToObject(o, "busy_s", st[r].busy_s);
        cJSON_AddNumberToObject(o, "wait_s", st[r].wait_s);
        cJSON_AddNumberToObject(o, "cpu_s", st[r].cpu_s);
        cJSON_AddNumberToObject(o, "images_per_s", st[r].busy_s > 0 ? st[r].generated / st[r].busy_s : 0);
        cJSON_AddItemToArray(ranks, o);
    }
    cJSON_AddItemToObject(j, "ranks", ranks);
    cJSON *tm = cJSON_CreateObject();
    cJSON_AddNumberToObject(tm, "load_s", run->t_load);
    cJSON_AddNumberToObject(tm, "wall_s", wall_s);
    cJSON_AddNumberToObject(tm, "images_per_s", ips);
    cJSON_AddItemToObject(j, "timings", tm);
    char *s = cJSON_Print(j);
    if (s) cli_out("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

/* ---------------------------------------------------------------------------------------- */
/* One process                                                                              */

int ss_run_local(const ss_run *run) {
    const ss_plan *pl = run->plan;
    ss_clean_stale(pl, 1);
    ss_worker *w = NULL;
    ss_sink *s = NULL;
    int rc = ss_worker_new(run, pl->npz[0] != 0, &w);
    if (!rc) rc = ss_sink_new(run, &s);
    ss_rank_stats st;
    memset(&st, 0, sizeof st);
    st.threads = run->gen.n_threads;
    gethostname(st.host, sizeof st.host - 1);
    snprintf(st.kernel, sizeof st.kernel, "%s", pndm_model_kernel_path(run->model));
    ss_queue q;
    ss_queue_init(&q, pl, 1);
    ss_progress prog = {cli_now_s(), isatty(STDERR_FILENO), 0};
    double t0 = cli_now_s();
    int64_t start, n;
    while (!rc && (n = ss_queue_take(&q, &start)) > 0) {
        if (run->signal && *run->signal) {
            rc = ss_signal_exit(run);
            break;
        }
        const ss_result *res;
        if ((rc = ss_worker_chunk(w, start, n, &res))) break;
        if ((rc = ss_sink_add(s, res))) break;
        st.images += res->count;
        st.generated += res->generated;
        st.skipped += res->skipped;
        st.chunks++;
        st.busy_s += res->busy_s;
        ss_progress_show(run, &prog, ss_sink_done(s), pl->count);
    }
    if (!rc && run->signal && *run->signal) rc = ss_signal_exit(run);
    if (!rc) rc = ss_sink_finish(s);
    double wall = cli_now_s() - t0;
    int64_t done = s ? ss_sink_done(s) : 0;
    ss_sink_free(s);
    ss_worker_free(w);
    if (rc) {
        if (!run->quiet && prog.tty) fputc('\n', stderr);
        return ss_stopped(run, rc, done);
    }
    ss_remove_parts(pl, pl->start, pl->count);
    st.cpu_s = ss_cpu_seconds();
    ss_report(run, &st, 1, wall);
    return 0;
}
