/* PNDMPipeline: noise -> set_timesteps -> for each t: eps = unet(x, t); x = step(eps, t, x).
 * Mirrors diffusers 0.30.3 pipelines/pndm/pipeline_pndm.py (PNDMPipeline.__call__). */
#define _XOPEN_SOURCE 700
#include "util.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PNDM_DEFAULT_MODEL_FILE
#define PNDM_DEFAULT_MODEL_FILE "fashion_mnist.safetensors"
#endif

/* Implemented by the model loader (src/model.c): the scheduler_config JSON stored with the
 * model, or NULL; *source names where it came from. */
const char *pndm_model_scheduler_json(const pndm_model *m, const char **source);

pndm_gen_params pndm_gen_default_params(void) {
    pndm_gen_params p;
    memset(&p, 0, sizeof p);
    p.steps = 50;
    p.batch = 1;
    p.seed = 0;
    p.per_image_seeds = 0;
    p.n_threads = 0;
    return p;
}

pndm_status pndm_model_get_scheduler_config(const pndm_model *m, pndm_scheduler_config *cfg, pndm_error *err) {
    const char *source = NULL;
    const char *json = pndm_model_scheduler_json(m, &source);
    if (!json) {
        *cfg = pndm_scheduler_default_config();
        return PNDM_OK;
    }
    return pndm_scheduler_config_parse(json, strlen(json), source ? source : pndm_model_path(m), cfg, err);
}

size_t pndm_gen_latent_count(const pndm_model *m, const pndm_gen_params *p) {
    size_t s = (size_t)pndm_model_sample_size(m), n;
    if (p->batch <= 0) return 0;
    if (!pndm_mul_size((size_t)p->batch, (size_t)pndm_model_in_channels(m), &n) ||
        !pndm_mul_size(n, s, &n) || !pndm_mul_size(n, s, &n))
        return SIZE_MAX;
    return n;
}

/* Upper estimate of the bytes a generation needs besides the weights: the sample, the model
 * output, the PLMS history (4 outputs + cur_sample) and the UNet activations. The activation
 * part is bounded by the UNet's own estimate for one forward of the whole batch. */
size_t pndm_unet_workspace_estimate(const pndm_model *m, int B, int H, int W);

size_t pndm_gen_memory_estimate(const pndm_model *m, const pndm_gen_params *p) {
    size_t lat = pndm_gen_latent_count(m, p), bytes, act;
    int s = pndm_model_sample_size(m);
    if (lat == SIZE_MAX || !pndm_mul_size(lat, 4 * 9, &bytes)) return SIZE_MAX;
    act = pndm_unet_workspace_estimate(m, p->batch, s, s);
    if (act == SIZE_MAX || !pndm_add_size(bytes, act, &bytes)) return SIZE_MAX;
    return bytes;
}

pndm_status pndm_generate_custom(pndm_denoise_fn fn, void *user, int C, int S,
                                 const pndm_scheduler_config *cfg, const pndm_gen_params *p,
                                 float *noise_out, float *latents_out, pndm_error *err) {
    if (!fn || !cfg || !p || !latents_out) return pndm_fail(err, PNDM_ERR_USAGE, "pndm_generate: NULL argument");
    if (p->batch < 1) return pndm_fail(err, PNDM_ERR_USAGE, "batch must be >= 1 (got %d)", p->batch);
    if (p->steps < 1) return pndm_fail(err, PNDM_ERR_USAGE, "steps must be >= 1 (got %d)", p->steps);
    if (C < 1 || S < 1) return pndm_fail(err, PNDM_ERR_USAGE, "bad sample shape C=%d S=%d", C, S);
    const int B = p->batch;
    size_t per, n;
    if (!pndm_mul_size((size_t)C, (size_t)S, &per) || !pndm_mul_size(per, (size_t)S, &per) ||
        !pndm_mul_size(per, (size_t)B, &n) || n > SIZE_MAX / sizeof(float))
        return pndm_fail(err, PNDM_ERR_NOMEM, "batch %d is too large", B);

    pndm_sampler *sampler = NULL;
    pndm_status st = pndm_sampler_create_pndm(cfg, p->steps, &sampler, err);
    if (st) return st;
    float *eps = malloc(n * sizeof *eps);   // (B, C, S, S) model output
    float *tvec = malloc((size_t)B * sizeof *tvec);
    if (!eps || !tvec) {
        free(eps);
        free(tvec);
        pndm_sampler_free(sampler);
        return pndm_fail(err, PNDM_ERR_NOMEM, "cannot allocate %zu bytes for batch %d", n * sizeof(float), B);
    }
    float *x = latents_out;                   // (B, C, S, S) the sample, updated in place
    // diffusers randn_tensor: one generator for the batch, or one per image (seed + i)
    pndm_randn_batch(p->seed, p->per_image_seeds, B, per, x);
    if (noise_out) memcpy(noise_out, x, n * sizeof *x);

    const int calls = pndm_sampler_num_calls(sampler);
    for (int i = 0; i < calls; i++) {
        if (p->cancel && *p->cancel) {
            st = pndm_fail(err, PNDM_ERR_INTERRUPTED, "interrupted at UNet call %d of %d", i + 1, calls);
            break;
        }
        int64_t t = pndm_sampler_timestep(sampler, i);
        for (int b = 0; b < B; b++) tvec[b] = (float)t;
        st = fn(x, B, C, S, tvec, eps, user, err);      // eps = unet(x, t)
        if (st) break;
        st = pndm_sampler_step(sampler, i, eps, x, n, err);  // x = step(eps, t, x)
        if (st) break;
        if (p->progress) p->progress(i + 1, calls, t, p->progress_user);
    }
    free(eps);
    free(tvec);
    pndm_sampler_free(sampler);
    return st;
}

typedef struct { const pndm_model *m; int n_threads; } unet_ctx;

static pndm_status unet_denoise(const float *x, int B, int C, int S, const float *t, float *out, void *user,
                                pndm_error *err) {
    (void)C;
    const unet_ctx *u = user;
    return pndm_unet_forward(u->m, x, B, S, S, t, out, u->n_threads, err);
}

pndm_status pndm_generate(const pndm_model *m, const pndm_gen_params *p, float *noise_out,
                          float *latents_out, pndm_error *err) {
    if (!m || !p || !latents_out) return pndm_fail(err, PNDM_ERR_USAGE, "pndm_generate: NULL argument");
    const int C = pndm_model_in_channels(m), S = pndm_model_sample_size(m);
    if (pndm_model_out_channels(m) != C)
        return pndm_fail(err, PNDM_ERR_MODEL, "%s: out_channels (%d) != in_channels (%d): cannot sample",
                         pndm_model_path(m), pndm_model_out_channels(m), C);
    pndm_scheduler_config own;
    const pndm_scheduler_config *cfg = p->scheduler;
    int own_cfg = 0;
    if (!cfg) {
        pndm_status st = pndm_model_get_scheduler_config(m, &own, err);
        if (st) return st;
        cfg = &own;
        own_cfg = 1;
    }
    unet_ctx ctx = {m, p->n_threads};
    pndm_status st = pndm_generate_custom(unet_denoise, &ctx, C, S, cfg, p, noise_out, latents_out, err);
    if (own_cfg) pndm_scheduler_config_free(&own);
    return st;
}

/* diffusers: image = (image / 2 + 0.5).clamp(0, 1); image.cpu().permute(0, 2, 3, 1).numpy() */
void pndm_latents_to_images(const float *latents, int B, int C, int H, int W, float *images) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = latents[(((size_t)b * C + c) * H + y) * W + x] / 2.0f + 0.5f;
                    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);   // clamp; NaN stays NaN
                    images[(((size_t)b * H + y) * W + x) * C + c] = v;
                }
}

/* diffusers numpy_to_pil: (images * 255).round().astype("uint8"); np.round is half-to-even,
 * which is rintf in the default rounding mode. */
void pndm_images_to_u8(const float *images, size_t n, uint8_t *pixels) {
    for (size_t i = 0; i < n; i++) {
        float v = images[i] * 255.0f;
        v = rintf(v);
        if (!(v >= 0.0f)) v = 0.0f;  /* NaN -> 0 (numpy casts NaN to 0 on x86) */
        if (v > 255.0f) v = 255.0f;
        pixels[i] = (uint8_t)v;
    }
}

static int file_exists(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *pndm_default_model_path(void) {
    static char exe_rel[4096];
    const char *env = getenv("PNDM_MODEL");
    if (env && *env) return env;
    /* <prefix>/bin/pndm-gen -> <prefix>/share/pndm/<model>, wherever the prefix was moved to */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(exe_rel, sizeof exe_rel, "%.2000s/../share/pndm/%s", exe, PNDM_DEFAULT_MODEL_FILE);
            if (file_exists(exe_rel)) {
                static char resolved[PATH_MAX];
                return realpath(exe_rel, resolved) ? resolved : exe_rel;
            }
        }
    }
#ifdef PNDM_INSTALLED_MODEL
    if (file_exists(PNDM_INSTALLED_MODEL)) return PNDM_INSTALLED_MODEL;
#endif
#ifdef PNDM_SOURCE_MODEL
    if (file_exists(PNDM_SOURCE_MODEL)) return PNDM_SOURCE_MODEL;
#endif
    return NULL;
}
