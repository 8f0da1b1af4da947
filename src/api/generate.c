/* pndm_generate: the pipeline of sampling/pipeline.c with the model's UNet as the denoiser and
 * the model's scheduler config, plus the sizes a caller checks before allocating. */
#include "core.h"
#include "model.h"
#include "sampler.h"

#include <stdint.h>
#include <string.h>

pndm_status pndm_model_get_scheduler_config(const pndm_model *m, pndm_scheduler_config *cfg, pndm_error *err) {
    const char *source = NULL;
    const char *json = model_scheduler_json(m, &source);
    if (!json) {
        *cfg = pndm_scheduler_default_config();
        return PNDM_OK;
    }
    return pndm_scheduler_config_parse(json, strlen(json), source ? source : pndm_model_path(m), cfg, err);
}

size_t pndm_gen_latent_count(const pndm_model *m, const pndm_gen_params *p) {
    size_t s = (size_t)pndm_model_sample_size(m), n;
    if (p->batch <= 0) return 0;
    if (!core_mul_size((size_t)p->batch, (size_t)pndm_model_in_channels(m), &n) || !core_mul_size(n, s, &n) ||
        !core_mul_size(n, s, &n))
        return SIZE_MAX;
    return n;
}

/* Upper estimate of the bytes a generation needs besides the weights: the sample, the model
 * output (twice the channels for a learned variance), the sampler's history (what its method
 * reports), the generators of a per-image run, the caller's noise / image copies, and the UNet
 * activations. The activation part is bounded by the UNet's own estimate for one forward of the
 * whole batch. */
size_t pndm_gen_memory_estimate(const pndm_model *m, const pndm_gen_params *p) {
    size_t lat = pndm_gen_latent_count(m, p), bytes, act, gens;
    int s = pndm_model_sample_size(m);
    const sampler_method *method = sampler_find(p->sampler.name);
    const size_t buffers =
        3 /* sample, model output x2 */ + 4 /* the caller's */ + (size_t)(method ? method->history : 24);
    if (lat == SIZE_MAX || !core_mul_size(lat, 4 * buffers, &bytes)) return SIZE_MAX;
    if (!core_mul_size((size_t)(p->batch > 0 ? p->batch : 1), sizeof(pndm_rng), &gens) ||
        !core_add_size(bytes, gens, &bytes))
        return SIZE_MAX;
    act = model_workspace_estimate(m, p->batch, s, s);
    if (act == SIZE_MAX || !core_add_size(bytes, act, &bytes)) return SIZE_MAX;
    return bytes;
}

typedef struct {
    const pndm_model *m;
    int n_threads;
} unet_denoiser;

static pndm_status unet_denoise(const float *x, int B, int C, int S, const float *t, float *out, void *user,
                                pndm_error *err) {
    (void)C;
    const unet_denoiser *u = user;
    return pndm_unet_forward(u->m, x, B, S, S, t, out, u->n_threads, err);
}

pndm_status pndm_generate(const pndm_model *m, const pndm_gen_params *p, float *noise_out, float *latents_out,
                          pndm_error *err) {
    if (!m || !p || !latents_out) return core_fail(err, PNDM_ERR_USAGE, "pndm_generate: NULL argument");
    const int C = pndm_model_in_channels(m), S = pndm_model_sample_size(m);
    pndm_scheduler_config own;
    const pndm_scheduler_config *cfg = p->scheduler;
    int own_cfg = 0;
    if (!cfg) {
        pndm_status st = pndm_model_get_scheduler_config(m, &own, err);
        if (st) return st;
        cfg = &own;
        own_cfg = 1;
    }
    /* the sampler says how many channels the model must give: C, or 2*C (eps and the variance)
     * for ddpm with variance_type learned / learned_range */
    pndm_sampler *probe = NULL;
    pndm_status st = pndm_sampler_create(&p->sampler, cfg, p->steps, &probe, err);
    const int want = st ? C : pndm_sampler_model_channels(probe, C);
    pndm_sampler_free(probe);
    if (!st && pndm_model_out_channels(m) != want) {
        if (want == C)
            st = core_fail(err, PNDM_ERR_MODEL, "%s: out_channels (%d) != in_channels (%d): cannot sample",
                           pndm_model_path(m), pndm_model_out_channels(m), C);
        else
            st =
                core_fail(err, PNDM_ERR_MODEL,
                          "%s: variance_type %s needs a model with 2 * in_channels = %d output channels (it has %d)",
                          pndm_model_path(m), cfg->variance_type == PNDM_VARIANCE_LEARNED ? "learned" : "learned_range",
                          want, pndm_model_out_channels(m));
    }
    if (st) {
        if (own_cfg) pndm_scheduler_config_free(&own);
        return st;
    }
    unet_denoiser ctx = {m, p->n_threads};
    st = pndm_generate_custom(unet_denoise, &ctx, C, S, cfg, p, noise_out, latents_out, err);
    if (own_cfg) pndm_scheduler_config_free(&own);
    return st;
}
