/* Model layouts and the offline Hub cache lookup (layout.h). Mirrors diffusers 0.30
 * (DiffusionPipeline.from_pretrained -> load_sub_model, ModelMixin.from_pretrained ->
 * _fetch_index_file / _get_model_file, utils.hub_utils._add_variant) and huggingface_hub
 * (constants.HF_HUB_CACHE, snapshot_download / try_to_load_from_cache with local_files_only). */
#define _GNU_SOURCE
#include "layout.h"
#include "core.h"
#include "pndm_io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAY_MAX_JSON ((size_t)16 << 20)
#define LAY_WEIGHTS "diffusion_pytorch_model"

/* ---- small path helpers ------------------------------------------------------------------- */
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* malloc'ed "a/b" */
static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t o = la;
    if (la && a[la - 1] != '/') s[o++] = '/';
    memcpy(s + o, b, lb + 1);
    return s;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/') l--;
    const char *s = path + l;
    while (s > path && s[-1] != '/') s--;
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t l = strlen(s), k = strlen(suffix);
    return l >= k && strcmp(s + l - k, suffix) == 0;
}

static pndm_status oom(pndm_error *err, const char *what) {
    return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", what);
}

/* the folder's entries, sorted, as "a, b, c" (at most `max` names, then "..."); "" if none */
static void list_dir(const char *dir, char *buf, size_t size, int max) {
    buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    char *names[256];
    int n = 0, more = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (n == 256) {
            more = 1;
            continue;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        char q[160];
        core_quote(q, sizeof q, names[i]);
        if (i < max && o < size) o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", q);
        free(names[i]);
    }
    if ((n > max || more) && o < size) snprintf(buf + o, size - o, ", ...");
}

pndm_status lay_check_inside(const char *root, const char *path, pndm_error *err) {
    char *r = realpath(path, NULL);
    if (!r) return core_fail(err, PNDM_ERR_IO, "%s: cannot resolve: %s", path, strerror(errno));
    size_t rl = strlen(root);
    int inside = strncmp(r, root, rl) == 0 && (r[rl] == '/' || r[rl] == 0);
    pndm_status s = PNDM_OK;
    if (!inside) {
        char q[160], qr[160], qq[160];
        core_quote(q, sizeof q, path);
        core_quote(qr, sizeof qr, r);
        core_quote(qq, sizeof qq, root);
        s = core_fail(err, PNDM_ERR_MODEL, "%s: resolves to %s, outside the Hub cache folder %s (refused)", q, qr, qq);
    }
    free(r);
    return s;
}

/* ---- the Hub cache ------------------------------------------------------------------------ */
static char *home_dir(void) {
    const char *h = getenv("HOME");
    if (h) return strdup(h);
    struct passwd *pw = getpwuid(getuid());
    return strdup(pw && pw->pw_dir ? pw->pw_dir : "/");
}

/* os.path.expanduser: a leading "~" or "~/" (other users' "~name" left as is) */
static char *expand_user(const char *p) {
    if (p[0] != '~' || (p[1] && p[1] != '/')) return strdup(p);
    char *h = home_dir();
    if (!h) return NULL;
    size_t hl = strlen(h), pl = strlen(p + 1);
    char *s = malloc(hl + pl + 1);
    if (s) {
        memcpy(s, h, hl);
        memcpy(s + hl, p + 1, pl + 1);
    }
    free(h);
    return s;
}

/* os.path.expandvars: $NAME and ${NAME} of set variables; others left as they are */
static char *expand_vars(const char *p) {
    size_t cap = strlen(p) + 1, o = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (size_t i = 0; p[i];) {
        const char *val = NULL;
        size_t skip = 0;
        if (p[i] == '$') {
            size_t j = i + 1, k;
            int brace = p[j] == '{';
            if (brace) j++;
            for (k = j; p[k] &&
                 (p[k] == '_' || (p[k] >= '0' && p[k] <= '9') || (p[k] >= 'A' && p[k] <= 'Z') ||
                  (p[k] >= 'a' && p[k] <= 'z'));
                 k++) {}
            if (k > j && (!brace || p[k] == '}')) {
                char name[256];
                size_t nl = k - j < sizeof name - 1 ? k - j : sizeof name - 1;
                memcpy(name, p + j, nl);
                name[nl] = 0;
                val = getenv(name);
                skip = k - i + (brace ? 1 : 0);
            }
        }
        const char *add = val ? val : p + i;
        size_t al = val ? strlen(val) : 1;
        if (o + al + 1 > cap) {
            cap = (o + al + 1) * 2;
            char *n = realloc(s, cap);
            if (!n) {
                free(s);
                return NULL;
            }
            s = n;
        }
        memcpy(s + o, add, al);
        o += al;
        i += val ? skip : 1;
    }
    s[o] = 0;
    return s;
}

static char *expand(const char *p) {
    char *u = expand_user(p);
    if (!u) return NULL;
    char *v = expand_vars(u);
    free(u);
    return v;
}

char *lay_hub_cache_dir(void) {
    const char *v = getenv("HF_HUB_CACHE");
    if (!v) v = getenv("HUGGINGFACE_HUB_CACHE");
    if (v) return expand(v);
    char *home;
    const char *hf_home = getenv("HF_HOME");
    if (hf_home) {
        home = expand(hf_home);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME");
        char *base = xdg ? strdup(xdg) : NULL;
        if (!xdg) {
            char *h = home_dir();
            base = h ? join(h, ".cache") : NULL;
            free(h);
        }
        char *hf = base ? join(base, "huggingface") : NULL;
        free(base);
        home = hf ? expand(hf) : NULL;
        free(hf);
    }
    char *hub = home ? join(home, "hub") : NULL;
    free(home);
    return hub;
}

/* huggingface_hub.utils.validate_repo_id: [ORG/]NAME of [A-Za-z0-9_.-], word characters at both
 * ends of each part, no "--" or "..", NAME at most 96 characters. */
static int is_repo_id(const char *s) {
    if (!*s || strstr(s, "--") || strstr(s, "..")) return 0;
    const char *slash = strchr(s, '/');
    if (slash && strchr(slash + 1, '/')) return 0;
    const char *parts[2] = {s, slash ? slash + 1 : NULL};
    size_t lens[2] = {slash ? (size_t)(slash - s) : strlen(s), slash ? strlen(slash + 1) : 0};
    for (int k = 0; k < (slash ? 2 : 1); k++) {
        const char *p = parts[k];
        size_t l = lens[k];
        if (l == 0 || (k == (slash ? 1 : 0) && l > 96)) return 0;
        for (size_t i = 0; i < l; i++) {
            char c = p[i];
            int word = c == '_' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
            if (!word && c != '-' && c != '.') return 0;
            if ((i == 0 || i == l - 1) && !word) return 0;
        }
    }
    return 1;
}

/* a revision or commit as a relative path under refs/ or snapshots/: no empty, "." or ".." part */
static int safe_rel(const char *s, int allow_slash) {
    if (!*s || s[0] == '/') return 0;
    for (const char *p = s;;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.')) return 0;
        if (memchr(p, '\n', l) || memchr(p, '\r', l)) return 0;
        if (!e) return 1;
        if (!allow_slash) return 0;
        p = e + 1;
    }
}

static int is_commit_hash(const char *s) {
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return i == 40;
}

/* repo (models--ORG--NAME) + revision -> snapshot folder (malloc'ed in *snap) */
static pndm_status hub_snapshot(const char *repo, const char *revision, char **snap, pndm_error *err) {
    *snap = NULL;
    const char *rev = revision ? revision : "main";
    char qrev[160], qrepo[300];
    core_quote(qrev, sizeof qrev, rev);
    core_quote(qrepo, sizeof qrepo, repo);
    if (!safe_rel(rev, 1)) return core_fail(err, PNDM_ERR_USAGE, "revision '%s' is not a branch name or commit", qrev);
    char *commit = NULL;
    if (is_commit_hash(rev)) {
        commit = strdup(rev);
        if (!commit) return oom(err, repo);
    } else {
        char *refs = join(repo, "refs");
        char *ref = refs ? join(refs, rev) : NULL;
        if (!ref) {
            free(refs);
            return oom(err, repo);
        }
        if (!is_file(ref)) {
            char found[600];
            list_dir(refs, found, sizeof found, 12);
            pndm_status s =
                core_fail(err, PNDM_ERR_MODEL, "%s: revision '%s' is not in the cache (no refs/%s; cached refs: %s)",
                          qrepo, qrev, qrev, found[0] ? found : "none");
            free(refs);
            free(ref);
            return s;
        }
        size_t len = 0;
        char *root = realpath(repo, NULL);
        pndm_status s = root ? lay_check_inside(root, ref, err) : PNDM_OK;
        free(root);
        if (!s) s = pndm_read_file(ref, 4096, &commit, &len, err);
        free(refs);
        free(ref);
        if (s) return s;
        /* huggingface_hub uses the file's text as it is (it writes no newline) */
        if (!safe_rel(commit, 0)) {
            char qc[160];
            core_quote(qc, sizeof qc, commit);
            s = core_fail(err, PNDM_ERR_MODEL, "%s: refs/%s holds '%s', not a commit hash", qrepo, qrev, qc);
            free(commit);
            return s;
        }
    }
    char *snaps = join(repo, "snapshots");
    char *dir = snaps ? join(snaps, commit) : NULL;
    pndm_status s = PNDM_OK;
    if (!dir) {
        s = oom(err, repo);
    } else if (!is_dir(dir)) {
        char found[600], qc[160];
        list_dir(snaps, found, sizeof found, 6);
        core_quote(qc, sizeof qc, commit);
        s = core_fail(err, PNDM_ERR_MODEL,
                      "%s: snapshot %s (revision '%s') is not in the cache (cached snapshots: %s); fetch it with "
                      "'huggingface-cli download' or huggingface_hub.snapshot_download",
                      qrepo, qc, qrev, found[0] ? found : "none");
    }
    free(snaps);
    free(commit);
    if (s) {
        free(dir);
        return s;
    }
    *snap = dir;
    return PNDM_OK;
}

/* ---- weights in a model folder ------------------------------------------------------------ */
/* diffusers' _add_variant: "a.b" -> "a.V.b", "a.b.index.json" -> "a.b.V.index.json" */
static char *weights_name(const char *ext, int index, const char *variant) {
    char buf[512];
    if (!variant)
        snprintf(buf, sizeof buf, LAY_WEIGHTS ".%s%s", ext, index ? ".index.json" : "");
    else if (index)
        snprintf(buf, sizeof buf, LAY_WEIGHTS ".%s.%s.index.json", ext, variant);
    else
        snprintf(buf, sizeof buf, LAY_WEIGHTS ".%s.%s", variant, ext);
    return strdup(buf);
}

/* the variants present in dir, as "fp16, ema" (diffusion_pytorch_model.<V>.safetensors|bin) */
static void find_variants(const char *dir, char *buf, size_t size) {
    buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    size_t o = 0;
    int n = 0;
    struct dirent *e;
    const size_t pl = strlen(LAY_WEIGHTS ".");
    while ((e = readdir(d)) != NULL && n < 8) {
        const char *nm = e->d_name;
        if (strncmp(nm, LAY_WEIGHTS ".", pl) != 0) continue;
        const char *v = nm + pl, *dot = strchr(v, '.');
        if (!dot || dot == v) continue;
        if (strcmp(dot, ".safetensors") != 0 && strcmp(dot, ".bin") != 0) continue;
        char q[100];
        char tmp[100];
        size_t vl = (size_t)(dot - v) < sizeof tmp - 1 ? (size_t)(dot - v) : sizeof tmp - 1;
        memcpy(tmp, v, vl);
        tmp[vl] = 0;
        core_quote(q, sizeof q, tmp);
        if (strstr(buf, q)) continue;
        if (o < size) o += (size_t)snprintf(buf + o, size - o, "%s%s", n ? ", " : "", q);
        n++;
    }
    closedir(d);
}

static pndm_status choose_weights(const char *dir, const char *variant, lay_model *m, pndm_error *err) {
    static const struct {
        const char *ext;
        int index;
    } order[] = {{"safetensors", 1}, {"safetensors", 0}, {"bin", 0}, {"bin", 1}};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        char *name = weights_name(order[i].ext, order[i].index, variant);
        char *p = name ? join(dir, name) : NULL;
        free(name);
        if (!p) return oom(err, dir);
        if (is_file(p)) {
            m->weights = p;
            m->sharded = order[i].index;
            return PNDM_OK;
        }
        free(p);
    }
    char found[700], variants[300], q[300], qv[120];
    list_dir(dir, found, sizeof found, 10);
    find_variants(dir, variants, sizeof variants);
    core_quote(q, sizeof q, dir);
    if (variant) {
        core_quote(qv, sizeof qv, variant);
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: no weights for variant '%s' (looked for " LAY_WEIGHTS ".%s.safetensors, " LAY_WEIGHTS
                         ".%s.bin and their .index.json shards); found: %s%s%s",
                         q, qv, qv, qv, found[0] ? found : "nothing", variants[0] ? "; variants here: " : "", variants);
    }
    if (variants[0])
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: no " LAY_WEIGHTS ".safetensors or .bin, only variants: %s (choose one with --variant)", q,
                         variants);
    return core_fail(err, PNDM_ERR_MODEL,
                     "%s: no weights in the model folder (looked for " LAY_WEIGHTS ".safetensors, " LAY_WEIGHTS
                     ".bin and their .index.json shards); found: %s",
                     q, found[0] ? found : "nothing");
}

/* scheduler_config.json in `dir`, else ../scheduler/ when ../model_index.json exists */
static pndm_status scheduler_beside(const char *dir, lay_model *m, pndm_error *err) {
    char *p = join(dir, "scheduler_config.json");
    char *parent = join(dir, "..");
    char *index = parent ? join(parent, "model_index.json") : NULL;
    char *pipe = parent ? join(parent, "scheduler/scheduler_config.json") : NULL;
    pndm_status s = PNDM_OK;
    if (!p || !parent || !index || !pipe)
        s = oom(err, dir);
    else if (is_file(p))
        m->scheduler = p, p = NULL;
    else if (is_file(index) && is_file(pipe))
        m->scheduler = pipe, pipe = NULL;
    free(p);
    free(parent);
    free(index);
    free(pipe);
    return s;
}

static pndm_status model_dir(const char *dir, const char *variant, lay_model *m, pndm_error *err) {
    m->config = join(dir, "config.json");
    if (!m->config) return oom(err, dir);
    pndm_status s = choose_weights(dir, variant, m, err);
    if (!s) s = scheduler_beside(dir, m, err);
    return s;
}

/* model_index.json: "unet" must be [library, "UNet2DModel"] */
static pndm_status check_index(const char *index, pndm_error *err) {
    char *text = NULL;
    size_t len = 0;
    pndm_status st = pndm_read_file(index, LAY_MAX_JSON, &text, &len, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    char q[300];
    core_quote(q, sizeof q, index);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return core_fail(err, PNDM_ERR_MODEL, "%s: not a valid JSON object", q);
    }
    const cJSON *unet = cJSON_GetObjectItemCaseSensitive(root, "unet");
    const cJSON *cls = cJSON_IsArray(unet) && cJSON_GetArraySize(unet) == 2 ? cJSON_GetArrayItem(unet, 1) : NULL;
    if (!unet)
        st = core_fail(err, PNDM_ERR_MODEL, "%s: the pipeline has no 'unet' component", q);
    else if (!cJSON_IsString(cls))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: 'unet' must be [library, class name]", q);
    else if (strcmp(cls->valuestring, "UNet2DModel") != 0) {
        char qc[160];
        core_quote(qc, sizeof qc, cls->valuestring);
        st = core_fail(err, PNDM_ERR_MODEL, "%s: unet class '%s' is not supported (only UNet2DModel)", q, qc);
    }
    cJSON_Delete(root);
    return st;
}

/* a pipeline folder: components from their subfolders, else from the folder itself */
static pndm_status pipeline_dir(const char *dir, const char *index, const char *variant, lay_model *m,
                                pndm_error *err) {
    pndm_status s = m->root ? lay_check_inside(m->root, index, err) : PNDM_OK;
    if (!s) s = check_index(index, err);
    if (s) return s;
    char *unet = join(dir, "unet");
    char *sched = join(dir, "scheduler");
    if (!unet || !sched) {
        free(unet);
        free(sched);
        return oom(err, dir);
    }
    const char *udir = is_dir(unet) ? unet : dir;
    char *cfg = join(udir, "config.json");
    if (!cfg) {
        s = oom(err, dir);
    } else if (!is_file(cfg)) {
        char q[300], found[600];
        core_quote(q, sizeof q, dir);
        list_dir(dir, found, sizeof found, 10);
        s = core_fail(err, PNDM_ERR_MODEL,
                      "%s: pipeline folder without its unet: no unet/config.json and no config.json at the top "
                      "(found: %s)",
                      q, found[0] ? found : "nothing");
    } else {
        m->config = cfg, cfg = NULL;
        s = choose_weights(udir, variant, m, err);
    }
    if (!s) {
        char *sc = join(is_dir(sched) ? sched : dir, "scheduler_config.json");
        if (!sc)
            s = oom(err, dir);
        else if (is_file(sc))
            m->scheduler = sc;
        else
            free(sc);
    }
    free(cfg);
    free(unet);
    free(sched);
    return s;
}

/* a folder with neither index nor config: say what is there */
static pndm_status not_a_model_dir(const char *dir, pndm_error *err) {
    char q[300], found[700];
    core_quote(q, sizeof q, dir);
    list_dir(dir, found, sizeof found, 10);
    /* exactly one weights file: name it */
    DIR *d = opendir(dir);
    int n = 0;
    char one[256] = "";
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (ends_with(e->d_name, ".safetensors") || ends_with(e->d_name, ".bin")) {
                if (n++ == 0) snprintf(one, sizeof one, "%s", e->d_name);
            }
        closedir(d);
    }
    if (n == 1) {
        char qo[300];
        core_quote(qo, sizeof qo, one);
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: not a model folder (no config.json or model_index.json); it holds one weights file, "
                         "%s: give that file with -m %s/%s",
                         q, qo, q, qo);
    }
    return core_fail(err, PNDM_ERR_MODEL, "%s: not a model folder (no config.json or model_index.json); found: %s", q,
                     found[0] ? found : "nothing");
}

/* a folder (no Hub repo folder): pipeline, model folder, or neither */
static pndm_status resolve_dir(const char *dir, const char *variant, lay_model *m, pndm_error *err) {
    char *index = join(dir, "model_index.json");
    char *config = join(dir, "config.json");
    pndm_status s;
    if (!index || !config)
        s = oom(err, dir);
    else if (is_file(index))
        s = pipeline_dir(dir, index, variant, m, err);
    else if (is_file(config))
        s = model_dir(dir, variant, m, err);
    else
        s = not_a_model_dir(dir, err);
    free(index);
    free(config);
    return s;
}

/* models--ORG--NAME folder with snapshots/ */
static int is_repo_folder(const char *dir) {
    if (strncmp(base_of(dir), "models--", 8) != 0) return 0;
    char *s = join(dir, "snapshots");
    int r = s && is_dir(s);
    free(s);
    return r;
}

/* the resolved models--* folder `path` lies in (path under <repo>/snapshots/), or NULL */
static char *enclosing_repo(const char *path) {
    char *r = realpath(path, NULL);
    if (!r) return NULL;
    char *p = strstr(r, "/snapshots/");
    char *found = NULL;
    while (p) {
        *p = 0;
        if (strncmp(base_of(r), "models--", 8) == 0) found = strdup(r);
        *p = '/';
        if (found) break;
        p = strstr(p + 1, "/snapshots/");
    }
    free(r);
    return found;
}

/* every file of the layout inside the repo folder */
static pndm_status check_containment(lay_model *m, pndm_error *err) {
    if (!m->root) return PNDM_OK;
    const char *files[3] = {m->weights, m->config, m->scheduler};
    for (int i = 0; i < 3; i++) {
        if (!files[i] || (i == 1 && !is_file(files[i]))) continue;
        pndm_status s = lay_check_inside(m->root, files[i], err);
        if (s) return s;
    }
    return PNDM_OK;
}

static pndm_status resolve_repo(const char *repo, const char *revision, const char *variant, lay_model *m,
                                pndm_error *err) {
    m->root = realpath(repo, NULL);
    if (!m->root) return core_fail(err, PNDM_ERR_IO, "%s: cannot resolve: %s", repo, strerror(errno));
    pndm_status s = hub_snapshot(repo, revision, &m->snapshot, err);
    if (!s) s = lay_check_inside(m->root, m->snapshot, err);
    if (!s) s = resolve_dir(m->snapshot, variant, m, err);
    return s;
}

static pndm_status check_variant(const char *variant, pndm_error *err) {
    if (!variant) return PNDM_OK;
    char q[160];
    core_quote(q, sizeof q, variant);
    if (!*variant || strchr(variant, '/') || strcmp(variant, "..") == 0 || strcmp(variant, ".") == 0)
        return core_fail(err, PNDM_ERR_USAGE, "variant '%s' is not a name like fp16 or ema", q);
    return PNDM_OK;
}

pndm_status lay_resolve(const char *spec, const char *revision, const char *variant, lay_model *m, pndm_error *err) {
    memset(m, 0, sizeof *m);
    pndm_status s = check_variant(variant, err);
    if (s) return s;
    struct stat st;
    if (stat(spec, &st) == 0) {
        int repo = S_ISDIR(st.st_mode) && is_repo_folder(spec);
        if (revision && !repo) {
            char q[300], qr[160];
            core_quote(q, sizeof q, spec);
            core_quote(qr, sizeof qr, revision);
            s = core_fail(err, PNDM_ERR_USAGE,
                          "revision '%s': %s is a local path, not a Hub id or a models--* cache folder", qr, q);
        } else if (repo) {
            s = resolve_repo(spec, revision, variant, m, err);
        } else if (S_ISDIR(st.st_mode)) {
            m->root = enclosing_repo(spec);
            s = resolve_dir(spec, variant, m, err);
        } else {
            char q[300];
            core_quote(q, sizeof q, spec);
            if (variant) {
                char qv[160];
                core_quote(qv, sizeof qv, variant);
                s = core_fail(err, PNDM_ERR_USAGE,
                              "variant '%s': %s is a weights file (--variant picks " LAY_WEIGHTS ".<variant>.* in a "
                              "model folder)",
                              qv, q);
            } else {
                char *dir = dir_of(spec);
                m->weights = strdup(spec);
                m->config = dir ? join(dir, "config.json") : NULL;
                m->given_file = 1;
                m->sharded = ends_with(spec, ".index.json");
                if (!dir || !m->weights || !m->config)
                    s = oom(err, spec);
                else if (!is_file(m->config)) {
                    free(m->config);
                    m->config = NULL;
                }
                if (!s) s = scheduler_beside(dir, m, err);
                if (!s) m->root = enclosing_repo(dir);
                free(dir);
            }
        }
    } else {
        int e = errno;
        char *cache = NULL, *repo = NULL;
        if ((e == ENOENT || e == ENOTDIR) && is_repo_id(spec)) {
            cache = lay_hub_cache_dir();
            if (!cache) return oom(err, spec);
            size_t l = strlen(spec);
            char *name = malloc(l + 16);
            if (!name) {
                free(cache);
                return oom(err, spec);
            }
            strcpy(name, "models--");
            size_t o = 8;
            for (size_t i = 0; i < l; i++) {
                if (spec[i] == '/') {
                    name[o++] = '-';
                    name[o++] = '-';
                } else
                    name[o++] = spec[i];
            }
            name[o] = 0;
            repo = join(cache, name);
            free(name);
            if (!repo) {
                free(cache);
                return oom(err, spec);
            }
        }
        if (repo && is_dir(repo)) {
            s = resolve_repo(repo, revision, variant, m, err);
        } else if (repo && strchr(spec, '/')) {
            char q[300], qr[600];
            core_quote(q, sizeof q, spec);
            core_quote(qr, sizeof qr, repo);
            s = core_fail(err, PNDM_ERR_MODEL,
                          "%s: no such file or folder, and not in the Hugging Face cache (looked for %s; the cache is "
                          "$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). pndm never downloads: "
                          "fetch it with 'huggingface-cli download %s' (or huggingface_hub.snapshot_download)",
                          q, qr, q);
        } else {
            s = core_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", spec, strerror(e));
        }
        free(cache);
        free(repo);
    }
    if (!s) s = check_containment(m, err);
    if (s) lay_free(m);
    return s;
}

void lay_free(lay_model *m) {
    if (!m) return;
    free(m->weights);
    free(m->config);
    free(m->scheduler);
    free(m->root);
    free(m->snapshot);
    memset(m, 0, sizeof *m);
}
