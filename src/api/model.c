/* Model loader: finds the UNet config, the weights and the scheduler config in one of the four
 * layouts pndm_model_load accepts, then validates in this order (first failure wins):
 *   1. the safetensors file (safetensors.c: header, dtypes, shapes, offsets);
 *   2. the UNet config (unet_config.c: JSON, values, unsupported options);
 *   3. the layer plan (unet.c: norm groups, attention heads);
 *   4. the tensors (unet.c: each present with its shape, no unexpected one, the count).
 * The scheduler config is kept as raw JSON; its parser checks it when it is used. */
#define _GNU_SOURCE
#include "model.h"
#include "pndm_io.h"
#include "safetensors.h"
#include "tensors.h"
#include "unet.h"
#include "core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_MAX_JSON ((size_t)16 << 20) /* config files larger than 16 MiB are refused */

struct pndm_model {
    char *path;              /* as given (file, folder or buffer name) */
    tt_table weights;        /* the tensor table (a mapping or the caller's buffer) */
    char weights_sha256[65]; /* the table's content hash (tt_scan), computed once at load */
    unet_net net;
    char *scheduler_json; /* NULL if none */
    char *scheduler_source;
    unet_tap_fn tap;
    void *tap_user;
    op_kernels kern; /* the kernel choices of pndm_model_params, given to the net at load */
    /* The forward context (thread pool + arena) kept between calls. A call that finds it in
     * use by another thread runs on a context of its own. */
    pthread_mutex_t ctx_mu;
    unet_ctx *ctx;
};

/* ---- paths -------------------------------------------------------------------------------- */
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* malloc'ed "a/b" (a may be empty) */
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

/* malloc'ed directory part of a file path ("." when there is none) */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Read a JSON file fully (size-limited). */
static pndm_status read_json_file(const char *path, char **text, size_t *len, pndm_error *err) {
    return pndm_read_file(path, MODEL_MAX_JSON, text, len, err);
}

/* Keep the scheduler config found at `path` (if the file exists). */
static pndm_status take_scheduler_file(pndm_model *m, const char *path, pndm_error *err) {
    if (!path || !is_file(path)) return PNDM_OK;
    size_t len;
    pndm_status st = read_json_file(path, &m->scheduler_json, &len, err);
    if (st) return st;
    m->scheduler_source = strdup(path);
    if (!m->scheduler_source) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    return PNDM_OK;
}

/* For a diffusers model folder `dir`: scheduler_config.json in it, else the pipeline layout's
 * ../scheduler/scheduler_config.json when ../model_index.json exists. */
static pndm_status take_scheduler_beside(pndm_model *m, const char *dir, pndm_error *err) {
    char *p = join(dir, "scheduler_config.json");
    char *parent = join(dir, "..");
    char *index = parent ? join(parent, "model_index.json") : NULL;
    char *pipe = parent ? join(parent, "scheduler/scheduler_config.json") : NULL;
    pndm_status st = PNDM_OK;
    if (!p || !parent || !index || !pipe)
        st = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", dir);
    else if (is_file(p))
        st = take_scheduler_file(m, p, err);
    else if (is_file(index))
        st = take_scheduler_file(m, pipe, err);
    free(p);
    free(parent);
    free(index);
    free(pipe);
    return st;
}

/* ---- shared tail: config text + opened weights -> validated model -------------------------- */
static pndm_status finish_load(pndm_model *m, const char *cfg_json, size_t cfg_len, const char *cfg_source,
                               pndm_error *err) {
    unet_config cfg;
    pndm_status st = unet_config_parse(cfg_json, cfg_len, cfg_source, &cfg, err);
    if (st) return st;
    st = unet_build(&m->net, &cfg, cfg_source, err);
    if (st) return st;
    m->net.kern = m->kern; /* before unet_bind: the packing may depend on the kernels */
    /* NaN/Inf weights are refused naming the tensor and the weights are hashed in the same pass
     * (the scan releases each tensor's pages, so the file is never resident all at once), then
     * every tensor is bound and packed. */
    st = tt_scan(&m->weights, pndm_default_threads(), m->weights_sha256, err);
    if (!st) st = unet_bind(&m->net, &m->weights, err);
    return st;
}

/* A pndm single file (already parsed into m->weights): config from __metadata__. */
static pndm_status load_pndm_meta(pndm_model *m, const char *name, pndm_error *err) {
    const char *ver = tt_meta(&m->weights, "pndm.version");
    if (ver && strcmp(ver, "1") != 0)
        return core_fail(err, PNDM_ERR_MODEL, "%s: pndm.version '%s' is not supported (only 1)", name, ver);
    const char *cfg = tt_meta(&m->weights, "pndm.unet_config");
    if (!cfg) return core_fail(err, PNDM_ERR_MODEL, "%s: pndm model without 'pndm.unet_config' metadata", name);
    const char *sch = tt_meta(&m->weights, "pndm.scheduler_config");
    if (sch) {
        size_t l = strlen(name) + 32;
        m->scheduler_json = strdup(sch);
        m->scheduler_source = malloc(l);
        if (!m->scheduler_json || !m->scheduler_source)
            return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", name);
        snprintf(m->scheduler_source, l, "%s:pndm.scheduler_config", name);
    }
    size_t l = strlen(name) + 32;
    char *src = malloc(l);
    if (!src) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", name);
    snprintf(src, l, "%s:pndm.unet_config", name);
    pndm_status st = finish_load(m, cfg, strlen(cfg), src, err);
    free(src);
    return st;
}

static int is_pndm_file(const tt_table *f) {
    const char *fmt = tt_meta(f, "format");
    return fmt && strcmp(fmt, "pndm") == 0;
}

/* A diffusers safetensors file `weights` with its config.json `config`. */
static pndm_status load_diffusers(pndm_model *m, const char *weights, const char *config, pndm_error *err) {
    pndm_status st = st_open(&m->weights, weights, err);
    if (st) return st;
    char *text = NULL;
    size_t len = 0;
    st = read_json_file(config, &text, &len, err);
    if (!st) st = finish_load(m, text, len, config, err);
    free(text);
    return st;
}

/* A diffusers model folder: config.json + diffusion_pytorch_model.safetensors. */
static pndm_status load_model_dir(pndm_model *m, const char *dir, pndm_error *err) {
    char *config = join(dir, "config.json");
    char *weights = join(dir, "diffusion_pytorch_model.safetensors");
    char *bin = join(dir, "diffusion_pytorch_model.bin");
    pndm_status st;
    if (!config || !weights || !bin)
        st = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", dir);
    else if (!is_file(config))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: no config.json in the model folder", dir);
    else if (!is_file(weights) && is_file(bin))
        st = core_fail(err, PNDM_ERR_MODEL,
                       "%s: only safetensors weights are supported (found diffusion_pytorch_model.bin)", dir);
    else if (!is_file(weights))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: no diffusion_pytorch_model.safetensors in the model folder", dir);
    else {
        st = load_diffusers(m, weights, config, err);
        if (!st) st = take_scheduler_beside(m, dir, err);
    }
    free(config);
    free(weights);
    free(bin);
    return st;
}

/* A pipeline folder: model_index.json naming a UNet2DModel "unet", plus unet/ and scheduler/. */
static pndm_status load_pipeline_dir(pndm_model *m, const char *dir, const char *index, pndm_error *err) {
    char *text = NULL;
    size_t len = 0;
    pndm_status st = read_json_file(index, &text, &len, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return core_fail(err, PNDM_ERR_MODEL, "%s: not a valid JSON object", index);
    }
    const cJSON *unet = cJSON_GetObjectItemCaseSensitive(root, "unet");
    const cJSON *cls = cJSON_IsArray(unet) && cJSON_GetArraySize(unet) == 2 ? cJSON_GetArrayItem(unet, 1) : NULL;
    if (!unet)
        st = core_fail(err, PNDM_ERR_MODEL, "%s: the pipeline has no 'unet' component", index);
    else if (!cJSON_IsString(cls))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: 'unet' must be [library, class name]", index);
    else if (strcmp(cls->valuestring, "UNet2DModel") != 0)
        st = core_fail(err, PNDM_ERR_MODEL, "%s: unet class '%s' is not supported (only UNet2DModel)", index,
                       cls->valuestring);
    cJSON_Delete(root);
    if (st) return st;
    char *unet_dir = join(dir, "unet");
    char *sched = join(dir, "scheduler/scheduler_config.json");
    if (!unet_dir || !sched)
        st = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", dir);
    else if (!is_dir(unet_dir))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: pipeline folder without unet/", dir);
    else {
        /* load_model_dir looks for unet/scheduler_config.json, then ../scheduler/ */
        st = load_model_dir(m, unet_dir, err);
        if (!st && !m->scheduler_json) st = take_scheduler_file(m, sched, err);
    }
    free(unet_dir);
    free(sched);
    return st;
}

/* A .safetensors file: a pndm single file, or diffusers weights with config.json beside them. */
static pndm_status load_file(pndm_model *m, const char *path, pndm_error *err) {
    pndm_status st = st_open(&m->weights, path, err);
    if (st) return st;
    if (is_pndm_file(&m->weights)) return load_pndm_meta(m, path, err);
    char *dir = dir_of(path);
    char *config = dir ? join(dir, "config.json") : NULL;
    if (!dir || !config)
        st = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    else if (!is_file(config))
        st = core_fail(err, PNDM_ERR_MODEL,
                       "%s: not a pndm model file (no \"format\": \"pndm\" metadata) and no config.json beside it",
                       path);
    else {
        char *text = NULL;
        size_t len = 0;
        st = read_json_file(config, &text, &len, err);
        if (!st) st = finish_load(m, text, len, config, err);
        free(text);
        if (!st) st = take_scheduler_beside(m, dir, err);
    }
    free(dir);
    free(config);
    return st;
}

static pndm_model *model_new(const char *path) {
    pndm_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->path = strdup(path);
    if (!m->path) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->ctx_mu, NULL);
    op_kernels_init(&m->kern, GEMM_PATH_AVX512, OP_GEMM_AUTO, 1);
    return m;
}

/* pndm_model_params' kernel choices -> op_kernels (checked: unknown values and OpenBLAS in a
 * build without it are usage errors; an ISA path the CPU lacks falls back to the next below). */
static pndm_status kernels_from_params(const pndm_model_params *p, op_kernels *k, pndm_error *err) {
    gemm_path path;
    switch (p->kernel) {
    case PNDM_KERNEL_AUTO:
    case PNDM_KERNEL_AVX512: path = GEMM_PATH_AVX512; break;
    case PNDM_KERNEL_AVX2: path = GEMM_PATH_AVX2; break;
    case PNDM_KERNEL_GENERIC: path = GEMM_PATH_GENERIC; break;
    default: return core_fail(err, PNDM_ERR_USAGE, "pndm_model_load: unknown kernel path %d", (int)p->kernel);
    }
    op_gemm gemm;
    switch (p->gemm) {
    case PNDM_GEMM_AUTO: gemm = OP_GEMM_AUTO; break;
    case PNDM_GEMM_NATIVE: gemm = OP_GEMM_NATIVE; break;
    case PNDM_GEMM_OPENBLAS:
        if (!op_blas_available())
            return core_fail(
                err, PNDM_ERR_USAGE,
                "GEMM backend 'openblas' is not built in (configure with -DPNDM_BLAS=ON and libopenblas-dev)");
        gemm = OP_GEMM_BLAS;
        break;
    default: return core_fail(err, PNDM_ERR_USAGE, "pndm_model_load: unknown GEMM backend %d", (int)p->gemm);
    }
    op_kernels_init(k, path, gemm, p->winograd);
    return PNDM_OK;
}

pndm_model_params pndm_model_default_params(void) {
    pndm_model_params p;
    memset(&p, 0, sizeof p);
    p.kernel = PNDM_KERNEL_AUTO;
    p.gemm = PNDM_GEMM_AUTO;
    p.winograd = 1;
    return p;
}

pndm_status pndm_model_load(const char *path, pndm_model **out, pndm_error *err) {
    pndm_model_params p = pndm_model_default_params();
    return pndm_model_load_ex(path, &p, out, err);
}

pndm_status pndm_model_load_ex(const char *path, const pndm_model_params *params, pndm_model **out, pndm_error *err) {
    if (!out) return core_fail(err, PNDM_ERR_USAGE, "pndm_model_load: NULL output");
    pndm_model_params defaults = pndm_model_default_params();
    if (!params) params = &defaults;
    *out = NULL;
    if (!path || !*path) return core_fail(err, PNDM_ERR_USAGE, "pndm_model_load: empty model path");
    struct stat sb;
    if (stat(path, &sb) != 0) return core_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    op_kernels kern;
    pndm_status st = kernels_from_params(params, &kern, err);
    if (st) return st;
    pndm_model *m = model_new(path);
    if (!m) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    m->kern = kern;
    if (S_ISDIR(sb.st_mode)) {
        char *index = join(path, "model_index.json");
        char *config = join(path, "config.json");
        if (!index || !config)
            st = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
        else if (is_file(index))
            st = load_pipeline_dir(m, path, index, err);
        else if (is_file(config))
            st = load_model_dir(m, path, err);
        else
            st = core_fail(err, PNDM_ERR_MODEL, "%s: not a model folder (no config.json or model_index.json)", path);
        free(index);
        free(config);
    } else {
        st = load_file(m, path, err);
    }
    if (st) {
        pndm_model_free(m);
        return st;
    }
    *out = m;
    return PNDM_OK;
}

pndm_status pndm_model_load_memory(const void *data, size_t size, const char *name, pndm_model **out, pndm_error *err) {
    if (!out) return core_fail(err, PNDM_ERR_USAGE, "pndm_model_load_memory: NULL output");
    *out = NULL;
    if (!name) name = "(memory)";
    if (!data && size) return core_fail(err, PNDM_ERR_USAGE, "%s: NULL buffer", name);
    pndm_model *m = model_new(name);
    if (!m) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", name);
    pndm_status st = st_parse(&m->weights, data ? data : "", size, name, err);
    if (!st && !is_pndm_file(&m->weights))
        st = core_fail(err, PNDM_ERR_MODEL, "%s: not a pndm model (no \"format\": \"pndm\" in __metadata__)", name);
    if (!st) st = load_pndm_meta(m, name, err);
    if (st) {
        pndm_model_free(m);
        return st;
    }
    *out = m;
    return PNDM_OK;
}

void pndm_model_free(pndm_model *m) {
    if (!m) return;
    unet_ctx_free(m->ctx);
    pthread_mutex_destroy(&m->ctx_mu);
    unet_free(&m->net);
    tt_free(&m->weights);
    free(m->scheduler_json);
    free(m->scheduler_source);
    free(m->path);
    free(m);
}

/* ---- accessors ---------------------------------------------------------------------------- */
int pndm_model_in_channels(const pndm_model *m) { return m->net.cfg.in_channels; }
int pndm_model_out_channels(const pndm_model *m) { return m->net.cfg.out_channels; }
int pndm_model_sample_size(const pndm_model *m) { return m->net.cfg.sample_size; }
size_t pndm_model_param_count(const pndm_model *m) { return m->net.param_floats; }
const char *pndm_model_path(const pndm_model *m) { return m->path; }
const char *pndm_model_sha256(const pndm_model *m) { return m->weights_sha256; }

const char *model_scheduler_json(const pndm_model *m, const char **source) {
    if (source) *source = m->scheduler_source;
    return m->scheduler_json;
}

void model_set_tap(pndm_model *m, unet_tap_fn fn, void *user) {
    m->tap = fn;
    m->tap_user = user;
}

const char *pndm_model_kernel_path(const pndm_model *m) { return m ? op_kernels_name(&m->net.kern) : NULL; }

size_t model_workspace_estimate(const pndm_model *m, int B, int H, int W) {
    return unet_workspace_bytes(&m->net, B, H, W, pndm_default_threads());
}

/* ---- forward ------------------------------------------------------------------------------ */
/* NaN/Inf weights (or finite weights that overflow float32) give non-finite outputs, which
 * would end up as black pixels: the one place they are refused. */
static pndm_status model_check_finite(const float *out, int B, size_t per_image, pndm_error *err) {
    for (int b = 0; b < B; b++) {
        const float *o = out + (size_t)b * per_image;
        for (size_t i = 0; i < per_image; i++)
            if (!isfinite(o[i]))
                return core_fail(err, PNDM_ERR_MODEL,
                                 "the model produced non-finite values (NaN/Inf) in image %d (element %zu): its "
                                 "weights contain NaN/Inf or overflow float32",
                                 b, i);
    }
    return PNDM_OK;
}

pndm_status pndm_unet_forward(const pndm_model *m, const float *x, int B, int H, int W, const float *t, float *out,
                              int n_threads, pndm_error *err) {
    if (!m || !x || !t || !out) return core_fail(err, PNDM_ERR_USAGE, "pndm_unet_forward: NULL argument");
    const unet_config *c = &m->net.cfg;
    const int div = 1 << (c->n_levels - 1);
    if (B < 1) return core_fail(err, PNDM_ERR_USAGE, "%s: batch must be >= 1 (got %d)", m->path, B);
    if (H > UNET_MAX_SAMPLE || W > UNET_MAX_SAMPLE || (size_t)H * (size_t)W > ((size_t)1 << 28))
        return core_fail(err, PNDM_ERR_USAGE, "%s: sample size %dx%d is too large", m->path, H, W);
    if (H < 1 || W < 1 || H % div || W % div)
        return core_fail(err, PNDM_ERR_USAGE, "%s: sample size %dx%d must be positive and divisible by %d (%d levels)",
                         m->path, H, W, div, c->n_levels);
    for (int b = 0; b < B; b++) {
        if (!isfinite(t[b])) return core_fail(err, PNDM_ERR_USAGE, "%s: timestep[%d] is not finite", m->path, b);
        if (c->time_fourier && !(t[b] > 0.0f))
            return core_fail(err, PNDM_ERR_USAGE, "%s: timestep[%d] = %g: a fourier-embedding model needs t > 0",
                             m->path, b, (double)t[b]);
    }
    if (n_threads <= 0) n_threads = pndm_default_threads();
    if (n_threads > TP_MAX_THREADS) n_threads = TP_MAX_THREADS;
    pndm_model *mm = (pndm_model *)m; /* only the context cache is written, under ctx_mu */
    const int cached = pthread_mutex_trylock(&mm->ctx_mu) == 0;
    unet_ctx *own = NULL, *ctx;
    if (cached)
        ctx = mm->ctx ? mm->ctx : (mm->ctx = unet_ctx_new());
    else
        ctx = own = unet_ctx_new();
    pndm_status st = ctx ? unet_forward(&m->net, ctx, x, B, H, W, t, out, n_threads, m->tap, m->tap_user, err)
                         : core_fail(err, PNDM_ERR_NOMEM, "UNet forward: out of memory");
    if (cached) pthread_mutex_unlock(&mm->ctx_mu);
    unet_ctx_free(own);
    if (!st) st = model_check_finite(out, B, (size_t)c->out_channels * (size_t)H * (size_t)W, err);
    if (st && err) core_fail_prefix(err, "%s", m->path);
    return st;
}
