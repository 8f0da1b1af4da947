// ctest-label: unit;threads
// ctest-variant: slow slow --slow
/* End-to-end PNDMPipeline parity against diffusers (tests/data/pipeline, copied from the golden
 * set): noise bit-exact, timesteps exact, final latents within 1e-5*max|ref|, images within 1e-3
 * (stand-in cases 1e-5), PNG pixels within one level on >= 99.9% of pixels.
 * Also: determinism across thread counts and batch splits.
 *
 * Without arguments (ctest label `unit`) it runs the quick cases (10 steps on c_gray and the
 * stand-in, a_dummy with skip_prk_steps at batch 1) and the determinism checks; `--slow`
 * (test_pipeline_slow, label `slow`) runs the others (50 steps; a_dummy, 3x32x32, with PRK or at
 * batch 4); `--all` runs everything. Every case is in exactly one of the two subsets. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "kernel_args.h"
#include "npy_util.h"
#include "pndm.h"
#include "pndm_io.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define DATA PNDM_TEST_DATA "/pipeline/"

static float *load_f32(const char *dir, const char *file, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, DATA "%s/%s", dir, file);
    return test_npy_f32(path, n, NULL);
}

/* the deterministic stand-in model of the manifests (double precision, no contraction) */
static pndm_status standin(const float *x, int B, int C, int S, const float *t, float *out, void *user,
                           pndm_error *err) {
    (void)user;
    (void)err;
    size_t per = (size_t)C * S * S;
    for (int b = 0; b < B; b++) {
        volatile double td = (double)t[b];
        volatile double ab = exp(-(1e-4 * td + 0.5 * (0.02 - 1e-4) * td * td / 1000.0));
        volatile double one_m = 1.0 - ab;
        volatile double den = 0.16 * ab + 1.0 - ab;
        volatile double c = sqrt(one_m) / den;
        for (size_t i = 0; i < per; i++) {
            volatile double cx = c * (double)x[b * per + i];
            volatile double arg = (double)x[b * per + i] + td / 100.0;
            out[b * per + i] = (float)(cx + 0.1 * sin(arg));
        }
    }
    return PNDM_OK;
}

typedef struct {
    int batch, steps, per_image;
    uint64_t seed;
    char model_dir[256]; /* "" = stand-in */
    int C, S;
} case_info;

static int read_case(const char *name, case_info *ci) {
    char path[1024], *buf;
    size_t size;
    pndm_error err;
    snprintf(path, sizeof path, DATA "%s/manifest.json", name);
    if (pndm_read_file(path, 0, &buf, &size, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j) return 0;
    memset(ci, 0, sizeof *ci);
    ci->batch = cJSON_GetObjectItem(j, "batch_size")->valueint;
    ci->steps = cJSON_GetObjectItem(j, "num_inference_steps")->valueint;
    const char *gen = cJSON_GetObjectItem(j, "generator")->valuestring;
    const char *p;
    if ((p = strstr(gen, "for s in ["))) {
        ci->per_image = 1;
        ci->seed = strtoull(p + strlen("for s in ["), NULL, 10);
    } else if ((p = strstr(gen, "manual_seed("))) {
        ci->seed = strtoull(p + strlen("manual_seed("), NULL, 10);
    }
    cJSON *md = cJSON_GetObjectItem(j, "model_dir");
    if (md && cJSON_IsString(md)) {
        /* "../../unet/<name>/model" -> tests/data/unet/<name>/model */
        const char *u = strstr(md->valuestring, "unet/");
        snprintf(ci->model_dir, sizeof ci->model_dir, PNDM_TEST_DATA "/%s", u ? u : md->valuestring);
    } else {
        cJSON *s = cJSON_GetObjectItem(j, "standin");
        ci->C = cJSON_GetObjectItem(s, "in_channels")->valueint;
        ci->S = cJSON_GetObjectItem(s, "sample_size")->valueint;
    }
    cJSON_Delete(j);
    return 1;
}

static int load_sched(const char *name, pndm_scheduler_config *cfg) {
    char path[1024], *buf;
    size_t size;
    pndm_error err;
    snprintf(path, sizeof path, DATA "%s/scheduler_config.json", name);
    if (pndm_read_file(path, 0, &buf, &size, &err)) return 0;
    pndm_status s = pndm_scheduler_config_parse(buf, size, path, cfg, &err);
    free(buf);
    if (s) fprintf(stderr, "%s\n", err.msg);
    return s == PNDM_OK;
}

static void run_case(const char *name) {
    case_info ci;
    CHECK_MSG(read_case(name, &ci), "%s: manifest", name);
    pndm_scheduler_config cfg;
    if (!load_sched(name, &cfg)) {
        CHECK_MSG(0, "%s: scheduler config", name);
        return;
    }
    pndm_model *m = NULL;
    pndm_error err;
    if (ci.model_dir[0]) {
        pndm_status s = pndm_model_load_ex(ci.model_dir, &test_params, &m, &err);
        CHECK_MSG(s == PNDM_OK, "%s: load %s: %s", name, ci.model_dir, err.msg);
        if (s) {
            pndm_scheduler_config_free(&cfg);
            return;
        }
        ci.C = pndm_model_in_channels(m);
        ci.S = pndm_model_sample_size(m);
    }
    pndm_gen_params p = pndm_gen_default_params();
    p.steps = ci.steps;
    p.batch = ci.batch;
    p.seed = ci.seed;
    p.per_image_seeds = ci.per_image;
    p.n_threads = 2;
    p.scheduler = &cfg;
    size_t n = (size_t)ci.batch * ci.C * ci.S * ci.S;
    float *noise = malloc(n * sizeof *noise), *lat = malloc(n * sizeof *lat), *img = malloc(n * sizeof *img);
    uint8_t *pix = malloc(n);
    pndm_status s = m ? pndm_generate(m, &p, noise, lat, &err)
                      : pndm_generate_custom(standin, NULL, ci.C, ci.S, &cfg, &p, noise, lat, &err);
    CHECK_MSG(s == PNDM_OK, "%s: generate: %s", name, err.msg);

    size_t rn;
    /* noise: bit-exact */
    float *ref = load_f32(name, "init_noise.npy", &rn);
    CHECK(ref && rn == n);
    if (ref && rn == n) CHECK_MSG(memcmp(ref, noise, n * sizeof *ref) == 0, "%s: init noise not bit-exact", name);
    free(ref);
    /* timesteps: exact */
    pndm_sampler *smp = NULL;
    CHECK(pndm_sampler_create_pndm(&cfg, ci.steps, &smp, &err) == PNDM_OK);
    float *ts = load_f32(name, "timesteps.npy", &rn);
    CHECK(ts && smp && (int)rn == pndm_sampler_num_calls(smp));
    if (ts && smp && (int)rn == pndm_sampler_num_calls(smp))
        for (size_t i = 0; i < rn; i++)
            CHECK_MSG((float)pndm_sampler_timestep(smp, (int)i) == ts[i], "%s: timestep %zu", name, i);
    free(ts);
    pndm_sampler_free(smp);
    /* final latents: max|err| <= 1e-5 * max|ref| */
    ref = load_f32(name, "final_latents.npy", &rn);
    CHECK(ref && rn == n);
    double lat_err = 0, lat_max = 0, img_err = 0;
    if (ref && rn == n) {
        lat_err = test_max_abs_diff(lat, ref, n);
        lat_max = test_max_abs(ref, n);
        CHECK_MSG(lat_err <= 1e-5 * (lat_max > 1 ? lat_max : 1), "%s: latents max|err| %.3g (max|ref| %.3g)", name,
                  lat_err, lat_max);
    }
    free(ref);
    /* images */
    pndm_latents_to_images(lat, ci.batch, ci.C, ci.S, ci.S, img);
    ref = load_f32(name, "images.npy", &rn);
    CHECK(ref && rn == n);
    double img_tol = m ? 1e-3 : 1e-5;
    if (ref && rn == n) {
        img_err = test_max_abs_diff(img, ref, n);
        CHECK_MSG(img_err <= img_tol, "%s: images max|err| %.3g > %.3g", name, img_err, img_tol);
    }
    free(ref);
    /* PNG pixels vs the PIL-written files */
    pndm_images_to_u8(img, n, pix);
    size_t diff1 = 0, total = 0;
    int maxd = 0;
    for (int b = 0; b < ci.batch; b++) {
        char path[1024], *buf;
        size_t size;
        snprintf(path, sizeof path, DATA "%s/image_%d.png", name, b);
        if (pndm_read_file(path, 0, &buf, &size, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        uint8_t *px = NULL;
        int w, h, c;
        s = pndm_png_decode(buf, size, path, &px, &w, &h, &c, &err);
        free(buf);
        CHECK_MSG(s == PNDM_OK && w == ci.S && h == ci.S && c == ci.C, "%s: decode %s", name, path);
        if (s) continue;
        size_t per = (size_t)ci.S * ci.S * ci.C;
        for (size_t i = 0; i < per; i++) {
            int d = abs((int)px[i] - (int)pix[b * per + i]);
            if (d > maxd) maxd = d;
            diff1 += d > 0;
            total++;
            CHECK_MSG(d <= 1, "%s: image %d pixel %zu differs by %d levels", name, b, i, d);
        }
        free(px);
    }
    CHECK_MSG(total > 0, "%s: no PNG compared", name);
    if (m) CHECK_MSG((double)diff1 <= 0.001 * (double)total, "%s: %zu of %zu PNG pixels differ", name, diff1, total);
    printf(
        "%-28s latents max|err| %.3g (rel %.2g of %.3g), images max|err| %.3g, PNG pixels differing %zu/%zu (max %d)\n",
        name, lat_err, lat_max > 0 ? lat_err / lat_max : 0, lat_max, img_err, diff1, total, maxd);
    free(noise);
    free(lat);
    free(img);
    free(pix);
    pndm_scheduler_config_free(&cfg);
    pndm_model_free(m);
}

/* Same bytes for any thread count, and image i of a batch == image i generated alone. */
static void determinism(void) {
    pndm_model *m = NULL;
    pndm_error err;
    if (pndm_model_load_ex(PNDM_TEST_DATA "/unet/c_gray/model", &test_params, &m, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    pndm_gen_params p = pndm_gen_default_params();
    p.steps = 5;
    p.batch = 3;
    p.seed = 11;
    p.per_image_seeds = 1;
    p.scheduler = &cfg;
    size_t n = pndm_gen_latent_count(m, &p), per = n / 3;
    float *a = malloc(n * 4), *b = malloc(n * 4), *one = malloc(per * 4);
    p.n_threads = 1;
    CHECK(pndm_generate(m, &p, NULL, a, &err) == PNDM_OK);
    p.n_threads = 2;
    CHECK(pndm_generate(m, &p, NULL, b, &err) == PNDM_OK);
    CHECK_MSG(memcmp(a, b, n * 4) == 0, "1 vs 2 threads differ");
    p.n_threads = 3;
    CHECK(pndm_generate(m, &p, NULL, b, &err) == PNDM_OK);
    CHECK_MSG(memcmp(a, b, n * 4) == 0, "1 vs 3 threads differ");
    for (int i = 0; i < 3; i++) {
        pndm_gen_params q = p;
        q.batch = 1;
        q.seed = 11 + (uint64_t)i;
        q.n_threads = 2;
        CHECK(pndm_generate(m, &q, NULL, one, &err) == PNDM_OK);
        CHECK_MSG(memcmp(one, a + i * per, per * 4) == 0, "image %d alone differs from image %d of the batch", i, i);
    }
    /* cancel flag stops the run with PNDM_ERR_INTERRUPTED */
    volatile int cancel = 1;
    p.cancel = &cancel;
    CHECK(pndm_generate(m, &p, NULL, b, &err) == PNDM_ERR_INTERRUPTED);
    free(a);
    free(b);
    free(one);
    pndm_model_free(m);
}

typedef struct {
    const char *name;
    int slow; /* in the --slow subset */
} pcase;

static const pcase cases[] = {
    {"standin_default_s20_b2", 0},  {"standin_skip_prk_s10_b1", 0}, {"a_dummy_default_s10_b1", 1},
    {"a_dummy_default_s10_b4", 1},  {"a_dummy_default_s50_b1", 1},  {"a_dummy_default_s50_b4", 1},
    {"a_dummy_skip_prk_s10_b1", 0}, {"a_dummy_skip_prk_s10_b4", 1}, {"a_dummy_skip_prk_s50_b1", 1},
    {"a_dummy_skip_prk_s50_b4", 1}, {"c_gray_default_s10_b1", 0},   {"c_gray_default_s10_b4", 0},
    {"c_gray_default_s50_b1", 1},   {"c_gray_default_s50_b4", 1},   {"c_gray_listgen_s10_b3", 0},
    {"c_gray_skip_prk_s10_b1", 0},  {"c_gray_skip_prk_s10_b4", 0},  {"c_gray_skip_prk_s50_b1", 1},
    {"c_gray_skip_prk_s50_b4", 1},
};

int main(int argc, char **argv) {
    int quick = 1, slow = 0;
    /* [--slow | --all] first, then the kernel choices (kernel_args.h) */
    if (argc >= 2 && strcmp(argv[1], "--slow") == 0) {
        quick = 0;
        slow = 1;
        argc--, argv++;
    } else if (argc >= 2 && strcmp(argv[1], "--all") == 0) {
        slow = 1;
        argc--, argv++;
    }
    if (test_kernel_args(argc, argv)) {
        fprintf(stderr, "usage: test_pipeline [--slow | --all] [kernel choices]\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].slow ? slow : quick) run_case(cases[i].name);
    if (quick) determinism();

    return TEST_SUMMARY();
}
