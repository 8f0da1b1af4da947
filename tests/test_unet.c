// ctest-label: unit;threads
/* UNet2DModel parity against diffusers 0.30.3 (tests/data/unet/<case>, copied from the golden
 * set), determinism (thread count, batch size), the tap, the four load layouts, F16 weights,
 * and the loader's rejection messages. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "kernel_args.h"
#include "npy_util.h"
#include "model.h"
#include "pndm.h"
#include "pndm_io.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define UDATA PNDM_TEST_DATA "/unet"
#define TOL 1e-4

typedef struct ucase {
    const char *name;
    float t_scalar; /* manifest inputs.t_scalar.value */
    int levels;
    size_t n_params; /* manifest num_parameters */
    int has_inter;   /* inter_t_batch_b0__*.npy stored */
} ucase;

static const ucase cases[] = {
    {"a_dummy", 500.0f, 2, 1002883, 1},
    {"b_cifar10_shrunk", 999.0f, 4, 740643, 1},
    {"c_gray", 250.0f, 3, 280177, 1},
    {"d_scale_shift", 42.0f, 3, 345523, 1},
    {"e_fourier_skip", 7.0f, 2, 315686, 1},
    /* extra/: made by tests/data/unet/extra/make_extra.py with diffusers 0.30.3 (see each
     * manifest.json): fourier + skip blocks over 3 levels with center_input_sample and
     * multi-head skip attention; resnet up/downsampling with plain shift, attn_norm_num_groups,
     * in != out channels, flip_sin_to_cos false; no mid attention, UNetRes* names,
     * downsample_padding 0 with scale_shift, 4 resnets per up block. */
    {"extra/f_fourier3", 2.0f, 3, 455337, 0},
    {"extra/g_misc", 333.0f, 3, 84300, 0},
    {"extra/h_noattn", 333.0f, 2, 81057, 0},
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* max|a - ref| <= TOL * max(1, max|ref|), printed */
static void compare(const char *label, const float *a, const float *ref, size_t n) {
    double md = test_max_abs_diff(a, ref, n), mr = test_max_abs(ref, n);
    printf("  %-44s max|err| %.3g  (max|ref| %.3g, limit %.3g)\n", label, md, mr, TOL * (mr > 1 ? mr : 1));
    CHECK_CLOSE_ARR(a, ref, n, TOL);
}

/* ---- tap: keep copies of batch element 0's intermediates --------------------------------- */
typedef struct tap_store {
    int n;
    char names[32][32];
    float *data[32];
    size_t count[32];
} tap_store;

static void tap_fn(const char *name, const float *data, size_t n, void *user) {
    tap_store *s = user;
    if (s->n >= 32) return;
    snprintf(s->names[s->n], sizeof s->names[s->n], "%s", name);
    s->data[s->n] = malloc(n * sizeof(float));
    memcpy(s->data[s->n], data, n * sizeof(float));
    s->count[s->n] = n;
    s->n++;
}

static void tap_clear(tap_store *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
    s->n = 0;
}

static const float *tap_get(const tap_store *s, const char *name, size_t *n) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            *n = s->count[i];
            return s->data[i];
        }
    return NULL;
}

/* ---- golden parity ------------------------------------------------------------------------ */
static void run_case(const ucase *uc) {
    char path[512];
    pndm_error err;
    pndm_model *m = NULL;
    printf("%s\n", uc->name);
    snprintf(path, sizeof path, UDATA "/%s/model", uc->name);
    if (pndm_model_load_ex(path, &test_params, &m, &err) != PNDM_OK) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        CHECK(0);
        return;
    }
    printf("  kernels: %s\n", pndm_model_kernel_path(m));
    pndm_npy xs, ts;
    snprintf(path, sizeof path, UDATA "/%s/sample.npy", uc->name);
    float *x = test_npy_f32_or_exit(path, NULL, &xs);
    snprintf(path, sizeof path, UDATA "/%s/t_batch.npy", uc->name);
    float *tb = test_npy_f32_or_exit(path, NULL, &ts);
    CHECK(xs.ndim == 4 && ts.ndim == 1 && ts.shape[0] == xs.shape[0]);
    const int B = (int)xs.shape[0], C = (int)xs.shape[1], H = (int)xs.shape[2], W = (int)xs.shape[3];
    CHECK(C == pndm_model_in_channels(m));
    CHECK_MSG(pndm_model_param_count(m) == uc->n_params, "%s: %zu parameters, diffusers counts %zu", uc->name,
              pndm_model_param_count(m), uc->n_params);
    const size_t per = (size_t)pndm_model_out_channels(m) * H * W, n = (size_t)B * per;
    float *out = malloc(n * sizeof *out), *out1 = malloc(n * sizeof *out1), *solo = malloc(per * sizeof *solo);

    /* out_t_scalar: model(sample, int t) == the same t for every element */
    float tsc[8];
    for (int b = 0; b < B; b++) tsc[b] = uc->t_scalar;
    CHECK(pndm_unet_forward(m, x, B, H, W, tsc, out, 2, &err) == PNDM_OK);
    snprintf(path, sizeof path, UDATA "/%s/out_t_scalar.npy", uc->name);
    float *ref = test_npy_f32_or_exit(path, NULL, NULL);
    compare("out_t_scalar", out, ref, n);
    free(ref);

    /* out_t_batch with the tap */
    tap_store taps = {0};
    model_set_tap(m, tap_fn, &taps);
    CHECK(pndm_unet_forward(m, x, B, H, W, tb, out, 2, &err) == PNDM_OK);
    model_set_tap(m, NULL, NULL);
    snprintf(path, sizeof path, UDATA "/%s/out_t_batch.npy", uc->name);
    ref = test_npy_f32_or_exit(path, NULL, NULL);
    compare("out_t_batch", out, ref, n);
    free(ref);
    const char *inter[16];
    char names[16][32];
    int n_inter = 0;
    inter[n_inter++] = "time_proj";
    inter[n_inter++] = "time_embedding";
    for (int i = 0; i < uc->levels; i++) {
        snprintf(names[i], sizeof names[i], "down_blocks.%d", i);
        inter[n_inter++] = names[i];
    }
    inter[n_inter++] = "mid_block";
    for (int i = 0; i < n_inter && uc->has_inter; i++) {
        pndm_npy meta;
        snprintf(path, sizeof path, UDATA "/%s/inter_t_batch_b0__%s.npy", uc->name, inter[i]);
        ref = test_npy_f32_or_exit(path, NULL, &meta);
        size_t cnt = 0;
        const float *got = tap_get(&taps, inter[i], &cnt);
        CHECK_MSG(got != NULL, "no tap '%s'", inter[i]);
        CHECK_MSG(cnt == meta.count, "tap '%s': %zu values, reference %zu", inter[i], cnt, meta.count);
        char label[64];
        snprintf(label, sizeof label, "inter %s", inter[i]);
        if (got && cnt == meta.count) compare(label, got, ref, cnt);
        free(ref);
    }
    tap_clear(&taps);

    /* determinism: 1 thread == 2 threads, bytewise; element 0 alone == element 0 of the batch */
    CHECK(pndm_unet_forward(m, x, B, H, W, tb, out1, 1, &err) == PNDM_OK);
    CHECK_MSG(memcmp(out, out1, n * sizeof *out) == 0, "%s: 1 vs 2 threads differ", uc->name);
    CHECK(pndm_unet_forward(m, x, B, H, W, tb, out1, 3, &err) == PNDM_OK);
    CHECK_MSG(memcmp(out, out1, n * sizeof *out) == 0, "%s: 3 vs 2 threads differ", uc->name);
    CHECK(pndm_unet_forward(m, x, 1, H, W, tb, solo, 2, &err) == PNDM_OK);
    CHECK_MSG(memcmp(out, solo, per * sizeof *out) == 0, "%s: element 0 alone differs from the batch", uc->name);
    float *x1 = x + (size_t)C * H * W;
    CHECK(pndm_unet_forward(m, x1, 1, H, W, tb + 1, solo, 1, &err) == PNDM_OK);
    CHECK_MSG(memcmp(out + per, solo, per * sizeof *out) == 0, "%s: element 1 alone differs from the batch", uc->name);

    if (strcmp(uc->name, "b_cifar10_shrunk") == 0) {
        /* a batch of 6 runs as two passes (UNET_MICRO_BATCH images per pass): every image must
         * still equal the same image in the batch of B */
        const int B6 = 6;
        const size_t in_per = (size_t)C * H * W;
        float *x6 = malloc((size_t)B6 * in_per * sizeof *x6), *o6 = malloc((size_t)B6 * per * sizeof *o6), t6[6];
        for (int b = 0; b < B6; b++) {
            memcpy(x6 + (size_t)b * in_per, x + (size_t)(b % B) * in_per, in_per * sizeof *x6);
            t6[b] = tb[b % B];
        }
        CHECK(pndm_unet_forward(m, x6, B6, H, W, t6, o6, 2, &err) == PNDM_OK);
        for (int b = 0; b < B6; b++)
            CHECK_MSG(memcmp(o6 + (size_t)b * per, out + (size_t)(b % B) * per, per * sizeof *out) == 0,
                      "%s: image %d of a batch of 6 differs", uc->name, b);
        free(x6);
        free(o6);
        for (int th = 1; th <= 2; th++) {
            double best = 1e9;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = now_s();
                pndm_unet_forward(m, x, B, H, W, tb, out1, th, &err);
                double dt = now_s() - t0;
                if (dt < best) best = dt;
            }
            printf("  timing: batch %d forward, %d thread(s): %.2f ms (best of 5)\n", B, th, best * 1e3);
        }
    }
    free(x);
    free(tb);
    free(out);
    free(out1);
    free(solo);
    pndm_model_free(m);
}

/* ---- forward argument checks ------------------------------------------------------------- */
static void test_forward_args(void) {
    pndm_error err;
    pndm_model *m = NULL;
    CHECK(pndm_model_load(UDATA "/a_dummy/model", &m, &err) == PNDM_OK);
    if (!m) return;
    float x[3 * 7 * 8] = {0}, out[3 * 7 * 8], t = 1.0f;
    CHECK(pndm_unet_forward(m, x, 1, 7, 8, &t, out, 1, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "divisible by 2");
    CHECK(pndm_unet_forward(m, x, 0, 8, 8, &t, out, 1, &err) == PNDM_ERR_USAGE);
    float bad = NAN;
    CHECK(pndm_unet_forward(m, x, 1, 8, 6, &bad, out, 1, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "not finite");
    CHECK(pndm_model_in_channels(m) == 3 && pndm_model_out_channels(m) == 3 && pndm_model_sample_size(m) == 32);
    CHECK(model_workspace_estimate(m, 2, 32, 32) > 0 && model_workspace_estimate(m, 2, 32, 32) < ((size_t)1 << 30));
    /* a non-square sample runs */
    float *xr = calloc(3 * 8 * 16, sizeof *xr), *yr = calloc(3 * 8 * 16, sizeof *yr);
    CHECK(pndm_unet_forward(m, xr, 1, 8, 16, &t, yr, 2, &err) == PNDM_OK);
    CHECK(isfinite(yr[0]) && isfinite(yr[3 * 8 * 16 - 1]));
    free(xr);
    free(yr);
    pndm_model_free(m);

    /* fourier models need t > 0 */
    CHECK(pndm_model_load(UDATA "/e_fourier_skip/model", &m, &err) == PNDM_OK);
    if (!m) return;
    float xe[3 * 2 * 2 * 2] = {0}, ye[3 * 2 * 2 * 2], t0 = 0.0f;
    CHECK(pndm_unet_forward(m, xe, 1, 2, 2, &t0, ye, 1, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "t > 0");
    pndm_model_free(m);
}

/* ---- building model files in memory ------------------------------------------------------- */
typedef struct tb_tensor {
    char name[160];
    int dtype; /* TT_F32, TT_F16 */
    int ndim;
    int64_t shape[4];
    unsigned char *data;
    size_t nbytes;
} tb_tensor;

typedef struct tb_model {
    int n;
    tb_tensor t[512];
    char *config; /* config.json text */
} tb_model;

/* The tensors and config of a golden case, as F32. */
static void tb_load(tb_model *tm, const char *case_name) {
    char path[512];
    pndm_error err;
    char *buf = NULL, *cfg = NULL;
    size_t size = 0, csize = 0;
    snprintf(path, sizeof path, UDATA "/%s/model/diffusion_pytorch_model.safetensors", case_name);
    if (pndm_read_file(path, 0, &buf, &size, &err) != PNDM_OK) exit(2);
    snprintf(path, sizeof path, UDATA "/%s/model/config.json", case_name);
    if (pndm_read_file(path, 0, &cfg, &csize, &err) != PNDM_OK) exit(2);
    tt_table f;
    if (st_parse(&f, buf, size, "golden", &err) != PNDM_OK) exit(2);
    memset(tm, 0, sizeof *tm);
    for (int i = 0; i < f.n_tensors && i < 512; i++) {
        const tt_tensor *s = &f.tensors[i];
        tb_tensor *t = &tm->t[tm->n++];
        snprintf(t->name, sizeof t->name, "%s", s->name);
        t->dtype = TT_F32;
        t->ndim = s->ndim;
        for (int d = 0; d < s->ndim; d++) t->shape[d] = s->shape[d];
        t->nbytes = s->nbytes;
        t->data = malloc(s->nbytes ? s->nbytes : 1);
        memcpy(t->data, s->data, s->nbytes);
    }
    tt_free(&f);
    free(buf);
    tm->config = cfg;
}

static void tb_free(tb_model *tm) {
    for (int i = 0; i < tm->n; i++) free(tm->t[i].data);
    free(tm->config);
    memset(tm, 0, sizeof *tm);
}

static tb_tensor *tb_find(tb_model *tm, const char *name) {
    for (int i = 0; i < tm->n; i++)
        if (strcmp(tm->t[i].name, name) == 0) return &tm->t[i];
    return NULL;
}

static void tb_remove(tb_model *tm, const char *name) {
    tb_tensor *t = tb_find(tm, name);
    if (!t) return;
    free(t->data);
    *t = tm->t[--tm->n];
}

static void tb_add(tb_model *tm, const char *name, int ndim, const int64_t *shape) {
    tb_tensor *t = &tm->t[tm->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = TT_F32;
    t->ndim = ndim;
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        count *= (size_t)shape[d];
    }
    t->nbytes = count * 4;
    t->data = calloc(count ? count : 1, 4);
}

static void tb_set_config(tb_model *tm, const char *json) {
    free(tm->config);
    tm->config = strdup(json);
}

/* Set option `key` of the config to the JSON text `value` (replacing any old value). */
static void tb_config_set(tb_model *tm, const char *key, const char *value) {
    cJSON *root = cJSON_Parse(tm->config);
    cJSON *v = cJSON_Parse(value);
    if (!root || !v) exit(2);
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    cJSON_AddItemToObject(root, key, v);
    char *s = cJSON_Print(root);
    tb_set_config(tm, s);
    cJSON_free(s);
    cJSON_Delete(root);
}

/* Convert every tensor to F16 (round to nearest even) or round its values through F16 in F32. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t e = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static void tb_to_f16(tb_model *tm, int keep_f32) {
    for (int i = 0; i < tm->n; i++) {
        tb_tensor *t = &tm->t[i];
        size_t count = t->nbytes / 4;
        const float *src = (const float *)t->data;
        if (keep_f32) {
            float *dst = (float *)t->data;
            for (size_t k = 0; k < count; k++) dst[k] = tt_f16_to_f32(f32_to_f16(src[k]));
        } else {
            unsigned char *dst = malloc(count * 2 + 1);
            for (size_t k = 0; k < count; k++) {
                uint16_t h = f32_to_f16(src[k]);
                dst[2 * k] = (unsigned char)(h & 0xff);
                dst[2 * k + 1] = (unsigned char)(h >> 8);
            }
            free(t->data);
            t->data = dst;
            t->nbytes = count * 2;
            t->dtype = TT_F16;
        }
    }
}

/* Serialize as safetensors; with_meta: the pndm format (config in __metadata__). */
static unsigned char *tb_serialize(const tb_model *tm, int with_meta, const char *sched, size_t *size) {
    cJSON *h = cJSON_CreateObject();
    if (with_meta) {
        cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
        cJSON_AddStringToObject(meta, "format", "pndm");
        cJSON_AddStringToObject(meta, "pndm.version", "1");
        cJSON_AddStringToObject(meta, "pndm.unet_config", tm->config);
        if (sched) cJSON_AddStringToObject(meta, "pndm.scheduler_config", sched);
    }
    size_t off = 0;
    for (int i = 0; i < tm->n; i++) {
        const tb_tensor *t = &tm->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", t->dtype == TT_F16 ? "F16" : "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;
    *size = 8 + padded + off;
    unsigned char *buf = malloc(*size);
    uint64_t n = padded;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, js, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    cJSON_free(js);
    size_t o = 8 + padded;
    for (int i = 0; i < tm->n; i++) {
        memcpy(buf + o, tm->t[i].data, tm->t[i].nbytes);
        o += tm->t[i].nbytes;
    }
    return buf;
}

/* Load a variant from memory; returns the status and leaves the message in err. */
static pndm_status tb_try(const tb_model *tm, pndm_error *err) {
    size_t size;
    unsigned char *buf = tb_serialize(tm, 1, NULL, &size);
    pndm_model *m = NULL;
    pndm_status st = pndm_model_load_memory(buf, size, "variant.safetensors", &m, err);
    pndm_model_free(m);
    free(buf);
    return st;
}

/* Rejection of one broken variant of a_dummy: code 3 and a message containing `want`. */
#define EXPECT_REJECT(tm, want)                                                                                        \
    do {                                                                                                               \
        pndm_error e_;                                                                                                 \
        pndm_status s_ = tb_try((tm), &e_);                                                                            \
        CHECK_MSG(s_ == PNDM_ERR_MODEL, "expected model error for '%s', got %d", (want), (int)s_);                     \
        if (s_ != PNDM_OK) {                                                                                           \
            CHECK_CONTAINS(e_.msg, (want));                                                                            \
            printf("  rejected: %s\n", e_.msg);                                                                        \
        }                                                                                                              \
    } while (0)

static void test_rejections(void) {
    tb_model tm;
    printf("loader rejections\n");
    /* the untouched variant loads */
    tb_load(&tm, "a_dummy");
    {
        pndm_error e;
        CHECK_MSG(tb_try(&tm, &e) == PNDM_OK, "untouched a_dummy: %s", e.msg);
    }
    tb_remove(&tm, "conv_in.bias");
    EXPECT_REJECT(&tm, "variant.safetensors: missing tensor 'conv_in.bias' (expected shape [32])");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_remove(&tm, "down_blocks.0.resnets.0.conv1.weight");
    tb_add(&tm, "down_blocks.0.resnets.0.conv1.weight", 4, (const int64_t[]){32, 3, 3, 3});
    EXPECT_REJECT(&tm, "tensor 'down_blocks.0.resnets.0.conv1.weight': got [32, 3, 3, 3], expected [32, 32, 3, 3]");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_add(&tm, "foo", 1, (const int64_t[]){4});
    EXPECT_REJECT(&tm, "unexpected tensor 'foo'");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_config_set(&tm, "class_embed_type", "\"timestep\"");
    EXPECT_REJECT(&tm, "variant.safetensors:pndm.unet_config: class_embed_type 'timestep' is not supported");
    tb_config_set(&tm, "class_embed_type", "null");
    tb_config_set(&tm, "num_class_embeds", "10");
    EXPECT_REJECT(&tm, "num_class_embeds 10 is not supported");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_config_set(&tm, "down_block_types", "[\"DownBlock2D\", \"FooBlock2D\"]");
    EXPECT_REJECT(&tm, "option 'down_block_types': unknown block type 'FooBlock2D'");
    tb_config_set(&tm, "down_block_types", "[\"DownBlock2D\", \"CrossAttnDownBlock2D\"]");
    EXPECT_REJECT(&tm, "down_block_types[1] 'CrossAttnDownBlock2D' is not supported");
    tb_config_set(&tm, "down_block_types", "[\"DownBlock2D\", \"UpBlock2D\"]");
    EXPECT_REJECT(&tm, "entry 1 'UpBlock2D' is not a down block type");
    tb_config_set(&tm, "down_block_types", "[\"DownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\"]");
    EXPECT_REJECT(&tm, "down_block_types has 3 entries but up_block_types has 2");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_config_set(&tm, "norm_num_groups", "24");
    EXPECT_REJECT(&tm, "'down_blocks.0.resnets.0.norm1': 24 groups (norm_num_groups) do not divide its 32 channels");
    tb_config_set(&tm, "norm_num_groups", "32");
    tb_config_set(&tm, "attn_norm_num_groups", "5");
    EXPECT_REJECT(&tm,
                  "'mid_block.attentions.0.group_norm': 5 groups (attn_norm_num_groups) do not divide its 64 channels");
    tb_config_set(&tm, "attn_norm_num_groups", "null");
    tb_config_set(&tm, "attention_head_dim", "7");
    EXPECT_REJECT(&tm, "attention_head_dim 7 does not divide the 64 channels of 'down_blocks.1.attentions.0'");
    tb_free(&tm);

    tb_load(&tm, "a_dummy");
    tb_set_config(&tm, "{\"in_channels\": 3,");
    EXPECT_REJECT(&tm, "variant.safetensors:pndm.unet_config: config is not valid JSON");
    tb_set_config(&tm, "[1, 2]");
    EXPECT_REJECT(&tm, "config must be a JSON object");
    tb_set_config(&tm, "{\"sample_size\": 32, \"sample_size\": 16}");
    EXPECT_REJECT(&tm, "duplicate key 'sample_size'");
    tb_free(&tm);

    /* one of each other refusal */
    struct {
        const char *key, *value, *want;
    } opts[] = {
        {"act_fn", "\"gelu\"", "act_fn 'gelu' is not supported (only silu)"},
        {"act_fn", "\"tanh\"", "option 'act_fn' must be one of"},
        {"time_embedding_type", "\"learned\"", "time_embedding_type 'learned' is not supported"},
        {"resnet_time_scale_shift", "\"spatial\"", "resnet_time_scale_shift 'spatial' is not supported"},
        {"mid_block_type", "\"UNetMidBlock2D\"", "unknown option 'mid_block_type'"},
        {"_class_name", "\"UNet2DConditionModel\"", "_class_name \"UNet2DConditionModel\" is not supported"},
        {"layers_per_block", "0", "option 'layers_per_block' must be an integer in [1, 64] (got 0)"},
        {"layers_per_block", "2.5", "option 'layers_per_block' must be an integer"},
        {"in_channels", "\"3\"", "option 'in_channels' must be an integer"},
        {"norm_eps", "0", "option 'norm_eps' must be a number in (0, 1]"},
        {"block_out_channels", "[32]", "block_out_channels has 1 entries but down_block_types has 2"},
        {"block_out_channels", "[32, -64]", "option 'block_out_channels' must be a list of integers"},
        {"downsample_padding", "2", "option 'downsample_padding' must be an integer in [0, 1]"},
        {"downsample_type", "\"resnet\"", "downsample_type 'resnet' contradicts down_block_types[0] 'DownBlock2D'"},
        {"upsample_type", "\"fir\"", "option 'upsample_type' must be one of 'conv', 'resnet', null"},
        {"center_input_sample", "1", "option 'center_input_sample' must be true or false"},
        {"sample_size", "[32, 64]", "non-square samples are not supported"},
        {"sample_size", "null", "option 'sample_size' is required"},
        {"down_block_types", "[\"SkipDownBlock2D\", \"AttnDownBlock2D\"]", "down_block_types mixes skip blocks"},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        tb_load(&tm, "a_dummy");
        tb_config_set(&tm, opts[i].key, opts[i].value);
        EXPECT_REJECT(&tm, opts[i].want);
        tb_free(&tm);
    }

    /* skip blocks need 3 image channels */
    tb_load(&tm, "e_fourier_skip");
    {
        pndm_error e;
        CHECK_MSG(tb_try(&tm, &e) == PNDM_OK, "untouched e_fourier_skip: %s", e.msg);
    }
    tb_config_set(&tm, "out_channels", "1");
    EXPECT_REJECT(&tm, "up_block_types: skip blocks need out_channels 3 (got 1)");
    tb_free(&tm);

    /* not a pndm buffer */
    {
        pndm_error e;
        pndm_model *m = NULL;
        tb_load(&tm, "a_dummy");
        size_t size;
        unsigned char *buf = tb_serialize(&tm, 0, NULL, &size);
        CHECK(pndm_model_load_memory(buf, size, "plain.safetensors", &m, &e) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(e.msg, "plain.safetensors: not a pndm model");
        CHECK(m == NULL);
        free(buf);
        tb_free(&tm);
        /* a broken safetensors header is reported by the safetensors reader */
        CHECK(pndm_model_load_memory("abc", 3, "tiny.safetensors", &m, &e) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(e.msg, "tiny.safetensors");
    }
}

/* ---- F16 weights: converted at load, exactly like F32 weights holding the same values ------ */
static void test_f16(void) {
    tb_model a, b;
    pndm_error err;
    tb_load(&a, "c_gray");
    tb_load(&b, "c_gray");
    tb_to_f16(&a, 0);
    tb_to_f16(&b, 1);
    size_t sa, sb;
    unsigned char *ba = tb_serialize(&a, 1, NULL, &sa), *bb = tb_serialize(&b, 1, NULL, &sb);
    pndm_model *ma = NULL, *mb = NULL;
    CHECK(pndm_model_load_memory(ba, sa, "f16", &ma, &err) == PNDM_OK);
    CHECK(pndm_model_load_memory(bb, sb, "f16-as-f32", &mb, &err) == PNDM_OK);
    if (ma && mb) {
        pndm_npy xs;
        float *x = test_npy_f32_or_exit(UDATA "/c_gray/sample.npy", NULL, &xs);
        size_t n = xs.count;
        float *ya = malloc(n * sizeof *ya), *yb = malloc(n * sizeof *yb), t[2] = {10.0f, 500.0f};
        CHECK(pndm_unet_forward(ma, x, 2, 28, 28, t, ya, 2, &err) == PNDM_OK);
        CHECK(pndm_unet_forward(mb, x, 2, 28, 28, t, yb, 2, &err) == PNDM_OK);
        CHECK_MSG(memcmp(ya, yb, n * sizeof *ya) == 0, "F16 weights differ from the same values in F32");
        CHECK(pndm_model_param_count(ma) == pndm_model_param_count(mb));
        free(x);
        free(ya);
        free(yb);
    }
    pndm_model_free(ma);
    pndm_model_free(mb);
    free(ba);
    free(bb);
    tb_free(&a);
    tb_free(&b);
}

/* ---- the four layouts --------------------------------------------------------------------- */
static void write_file(const char *path, const void *data, size_t size) {
    pndm_error err;
    if (pndm_write_file_atomic(path, data, size, &err) != PNDM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
}

static void forward_a_dummy(pndm_model *m, float *y) {
    pndm_error err;
    float *x = test_npy_f32_or_exit(UDATA "/a_dummy/sample.npy", NULL, NULL);
    float t[2] = {10.0f, 980.0f};
    CHECK(pndm_unet_forward(m, x, 2, 32, 32, t, y, 0, &err) == PNDM_OK);
    free(x);
}

static void test_layouts(void) {
    const char *sched = "{\"_class_name\": \"PNDMScheduler\", \"num_train_timesteps\": 1000, \"skip_prk_steps\": true}";
    char tmpl[] = "/tmp/pndm_test_unet_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (!dir) return;
    char p[600], q[600];
    pndm_error err;
    const size_t n = 2 * 3 * 32 * 32;
    float *ref = malloc(n * sizeof *ref), *y = malloc(n * sizeof *y);
    float *golden = test_npy_f32_or_exit(UDATA "/a_dummy/out_t_batch.npy", NULL, NULL);
    tb_model tm;
    tb_load(&tm, "a_dummy");

    /* (2) a diffusers model folder: the golden one; no scheduler beside it */
    pndm_model *m = NULL;
    CHECK(pndm_model_load(UDATA "/a_dummy/model", &m, &err) == PNDM_OK);
    if (m) {
        forward_a_dummy(m, ref);
        CHECK(model_scheduler_json(m, NULL) == NULL);
        CHECK(strcmp(pndm_model_path(m), UDATA "/a_dummy/model") == 0);
        pndm_model_free(m);
    }
    CHECK_CLOSE_ARR(ref, golden, n, TOL);

    /* (1) a pndm single file with a scheduler config */
    size_t size;
    unsigned char *buf = tb_serialize(&tm, 1, sched, &size);
    snprintf(p, sizeof p, "%s/single.safetensors", dir);
    write_file(p, buf, size);
    free(buf);
    m = NULL;
    CHECK_MSG(pndm_model_load(p, &m, &err) == PNDM_OK, "%s", err.msg);
    if (m) {
        const char *src = NULL;
        const char *js = model_scheduler_json(m, &src);
        CHECK(js && strcmp(js, sched) == 0);
        CHECK(src && strstr(src, "single.safetensors:pndm.scheduler_config"));
        forward_a_dummy(m, y);
        CHECK(memcmp(y, ref, n * sizeof *y) == 0);
        pndm_model_free(m);
    }

    /* (4) a diffusers .safetensors with config.json (and scheduler_config.json) beside it */
    snprintf(q, sizeof q, "%s/plain", dir);
    mkdir(q, 0755);
    buf = tb_serialize(&tm, 0, NULL, &size);
    snprintf(p, sizeof p, "%s/plain/weights.safetensors", dir);
    write_file(p, buf, size);
    snprintf(q, sizeof q, "%s/plain/config.json", dir);
    write_file(q, tm.config, strlen(tm.config));
    snprintf(q, sizeof q, "%s/plain/scheduler_config.json", dir);
    write_file(q, sched, strlen(sched));
    m = NULL;
    CHECK_MSG(pndm_model_load(p, &m, &err) == PNDM_OK, "%s", err.msg);
    if (m) {
        const char *src = NULL;
        CHECK(model_scheduler_json(m, &src) && src && strstr(src, "plain/scheduler_config.json"));
        forward_a_dummy(m, y);
        CHECK(memcmp(y, ref, n * sizeof *y) == 0);
        pndm_model_free(m);
    }

    /* (3) a pipeline folder: model_index.json + unet/ + scheduler/ */
    snprintf(q, sizeof q, "%s/pipe", dir);
    mkdir(q, 0755);
    snprintf(q, sizeof q, "%s/pipe/unet", dir);
    mkdir(q, 0755);
    snprintf(q, sizeof q, "%s/pipe/scheduler", dir);
    mkdir(q, 0755);
    snprintf(q, sizeof q, "%s/pipe/unet/diffusion_pytorch_model.safetensors", dir);
    write_file(q, buf, size);
    snprintf(q, sizeof q, "%s/pipe/unet/config.json", dir);
    write_file(q, tm.config, strlen(tm.config));
    snprintf(q, sizeof q, "%s/pipe/scheduler/scheduler_config.json", dir);
    write_file(q, sched, strlen(sched));
    const char *index = "{\"_class_name\": \"PNDMPipeline\", \"scheduler\": [\"diffusers\", \"PNDMScheduler\"], "
                        "\"unet\": [\"diffusers\", \"UNet2DModel\"]}";
    snprintf(q, sizeof q, "%s/pipe/model_index.json", dir);
    write_file(q, index, strlen(index));
    snprintf(p, sizeof p, "%s/pipe", dir);
    m = NULL;
    CHECK_MSG(pndm_model_load(p, &m, &err) == PNDM_OK, "%s", err.msg);
    if (m) {
        const char *src = NULL;
        const char *js = model_scheduler_json(m, &src);
        CHECK(js && strcmp(js, sched) == 0 && src && strstr(src, "scheduler/scheduler_config.json"));
        forward_a_dummy(m, y);
        CHECK(memcmp(y, ref, n * sizeof *y) == 0);
        pndm_model_free(m);
    }
    /* the pipeline's unet/ folder alone also finds ../scheduler/ */
    snprintf(p, sizeof p, "%s/pipe/unet", dir);
    m = NULL;
    CHECK_MSG(pndm_model_load(p, &m, &err) == PNDM_OK, "%s", err.msg);
    if (m) {
        CHECK(model_scheduler_json(m, NULL) != NULL);
        pndm_model_free(m);
    }
    /* a pipeline whose unet is another class */
    const char *index2 = "{\"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}";
    snprintf(q, sizeof q, "%s/pipe/model_index.json", dir);
    write_file(q, index2, strlen(index2));
    snprintf(p, sizeof p, "%s/pipe", dir);
    CHECK(pndm_model_load(p, &m, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "unet class 'UNet2DConditionModel' is not supported");
    free(buf);

    /* errors: missing path, folder without config, bin weights, file without config */
    snprintf(p, sizeof p, "%s/nope", dir);
    CHECK(pndm_model_load(p, &m, &err) == PNDM_ERR_IO);
    CHECK(m == NULL);
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdir(p, 0755);
    CHECK(pndm_model_load(p, &m, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "not a model folder");
    snprintf(q, sizeof q, "%s/empty/config.json", dir);
    write_file(q, tm.config, strlen(tm.config));
    snprintf(q, sizeof q, "%s/empty/diffusion_pytorch_model.bin", dir);
    write_file(q, "x", 1);
    CHECK(pndm_model_load(p, &m, &err) == PNDM_ERR_MODEL); /* a .bin is read, and says what it holds */
    CHECK_CONTAINS(err.msg, "diffusion_pytorch_model.bin: not a safetensors file: it starts like a text file ('x')");
    snprintf(q, sizeof q, "%s/plain/config.json", dir);
    unlink(q);
    snprintf(p, sizeof p, "%s/plain/weights.safetensors", dir);
    CHECK(pndm_model_load(p, &m, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "no config.json beside it");

    tb_free(&tm);
    free(ref);
    free(y);
    free(golden);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* `test_unet --compare OUT.npy REF.npy` (used by tests/cli_unet.sh): exit 0 when the arrays
 * have the same shape and max|out - ref| <= 1e-4 * max(1, max|ref|). */
static int compare_files(const char *a, const char *b) {
    pndm_npy ma, mb;
    float *x = test_npy_f32_or_exit(a, NULL, &ma), *y = test_npy_f32_or_exit(b, NULL, &mb);
    int same_shape = ma.ndim == mb.ndim;
    for (int d = 0; same_shape && d < ma.ndim; d++) same_shape = ma.shape[d] == mb.shape[d];
    if (!same_shape) {
        fprintf(stderr, "%s and %s: shapes differ\n", a, b);
        return 1;
    }
    double md = test_max_abs_diff(x, y, ma.count), mr = test_max_abs(y, ma.count);
    int ok = md <= TOL * (mr > 1 ? mr : 1);
    printf("%s vs %s: max|err| %.3g (max|ref| %.3g) %s\n", a, b, md, mr, ok ? "ok" : "FAIL");
    free(x);
    free(y);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--compare") == 0) return compare_files(argv[2], argv[3]);
    if (test_kernel_args(argc, argv)) return 2;
    printf("kernel path (default): %s, default threads: %d\n", pndm_kernel_path(), pndm_default_threads());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
    test_forward_args();
    test_rejections();
    test_f16();
    test_layouts();
    return TEST_SUMMARY();
}
