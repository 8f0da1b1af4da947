/* diffusers 0.30.3 DDPMScheduler (schedulers/scheduling_ddpm.py) stepped as DDPMPipeline does
 * (pipelines/ddpm/pipeline_ddpm.py): ancestral sampling, the variance noise drawn from the run's
 * generator(s) after each model call with t > 0.
 *
 * Bit for bit on torch 1.13 CPU, float32, except where torch evaluates log/exp with SLEEF
 * (fixed_small_log, learned_range: within an ulp of libm's). */
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

extern const sampler_method sampler_ddpm;

typedef struct ddpm_call {
    int64_t t;
    float sqrt_a_t, sqrt_b_t; /* alpha_prod_t ** 0.5, beta_prod_t ** 0.5 */
    float x0_coeff;           /* pred_original_sample_coeff = (a_p ** 0.5 * current_beta_t) / beta_prod_t */
    float x_coeff;            /* current_sample_coeff = current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t */
    float sigma;              /* fixed_*: the factor of the noise (variance ** 0.5, or exp(0.5 log v)) */
    float min_log, max_log;   /* learned_range: log(variance), log(current_beta_t) */
} ddpm_call;

typedef struct ddpm_state {
    ddpm_call *plan;
    int learned; /* variance_type learned / learned_range: the model outputs 2C channels */
    size_t cap;
    float *x0, *noise, *sort; /* (n), (n), (per) */
} ddpm_state;

static int is_learned(pndm_variance_type v) { return v == PNDM_VARIANCE_LEARNED || v == PNDM_VARIANCE_LEARNED_RANGE; }

static pndm_status ddpm_create(pndm_sampler *s, pndm_error *err) {
    const pndm_variance_type vt = s->cfg.variance_type;
    if (vt == PNDM_VARIANCE_FIXED_LARGE_LOG)
        return core_fail(err, PNDM_ERR_MODEL,
                         "scheduler config: variance_type \"fixed_large_log\" is not supported: diffusers' "
                         "DDPMScheduler.step adds sqrt(log(beta_t)) * noise, the square root of a negative number "
                         "(NaN images); use fixed_large or fixed_small_log");
    pndm_status st = sampler_diffusers_timesteps(s, err);
    if (st) return st;
    ddpm_state *d = calloc(1, sizeof *d);
    if (!d) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->state = d;
    d->learned = is_learned(vt);
    d->plan = calloc((size_t)s->num_calls, sizeof *d->plan);
    if (!d->plan) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    const int64_t T = s->cfg.num_train_timesteps, ratio = T / s->steps;
    for (int i = 0; i < s->num_calls; i++) {
        ddpm_call *c = &d->plan[i];
        const int64_t t = s->timesteps[i], prev_t = t - ratio; // previous_timestep(t)
        const float a_t = s->sched.alphas_cumprod[t];
        const float a_p = prev_t >= 0 ? s->sched.alphas_cumprod[prev_t] : 1.0f; // else self.one
        const float b_t = 1 - a_t, b_p = 1 - a_p;
        const float ca = a_t / a_p; // current_alpha_t
        const float cb = 1 - ca;    // current_beta_t
        c->t = t;
        c->sqrt_a_t = sqrtf(a_t);
        c->sqrt_b_t = sqrtf(b_t);
        const float p = sqrtf(a_p) * cb;
        c->x0_coeff = p / b_t;
        const float q = sqrtf(ca) * b_p;
        c->x_coeff = q / b_t;
        /* _get_variance(t): (1 - a_p) / (1 - a_t) * current_beta_t, clamp(min=1e-20) */
        const float one_p = 1 - a_p, one_t = 1 - a_t;
        const float r = one_p / one_t;
        float v = r * cb;
        const float vmin = (float)1e-20;
        if (v < vmin) v = vmin; // torch.clamp keeps NaN
        switch (vt) {
        case PNDM_VARIANCE_FIXED_SMALL: c->sigma = sqrtf(v); break; // variance ** 0.5
        case PNDM_VARIANCE_FIXED_SMALL_LOG: {
            const float lv = logf(v); // torch.log, then torch.exp(0.5 * variance): no square root
            const float h = 0.5f * lv;
            c->sigma = expf(h);
            break;
        }
        case PNDM_VARIANCE_FIXED_LARGE: c->sigma = sqrtf(cb); break; // variance = current_beta_t
        case PNDM_VARIANCE_LEARNED_RANGE:
            c->min_log = logf(v);
            c->max_log = logf(cb);
            break;
        default: break;
        }
    }
    return PNDM_OK;
}

static pndm_status ddpm_buffers(ddpm_state *d, const pndm_sampler *s, pndm_error *err) {
    if (d->cap == s->n) return PNDM_OK;
    free(d->x0);
    d->x0 = sampler_alloc_floats(3, s->n, "the DDPM buffers", err);
    if (!d->x0) return err ? err->code : PNDM_ERR_NOMEM;
    d->noise = d->x0 + s->n;
    d->sort = d->noise + s->n;
    d->cap = s->n;
    return PNDM_OK;
}

static pndm_status ddpm_step(pndm_sampler *s, int call, const float *mo, float *x, size_t n, pndm_error *err) {
    ddpm_state *d = s->state;
    pndm_status st = ddpm_buffers(d, s, err);
    if (st) return st;
    const ddpm_call *c = &d->plan[call];
    const pndm_scheduler_config *cfg = &s->cfg;
    const size_t per = s->per;
    const int B = s->B;
    float *x0 = d->x0; // (B, C, H, W)
    /* model_output, predicted_variance = torch.split(model_output, C, dim=1) for learned types:
     * image b's eps is mo[b][:C], its variance mo[b][C:] */
    const size_t stride = d->learned ? 2 * per : per;
    for (int b = 0; b < B; b++)
        sampler_predict_x0(cfg->prediction_type, c->sqrt_a_t, c->sqrt_b_t, x + (size_t)b * per, mo + (size_t)b * stride,
                           x0 + (size_t)b * per, per);
    if (cfg->thresholding)
        sampler_threshold(x0, B, per, cfg->dynamic_thresholding_ratio, cfg->sample_max_value, d->sort);
    else if (cfg->clip_sample)
        sampler_clip(x0, n, cfg->clip_sample_range);
    /* pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample */
    for (size_t i = 0; i < n; i++) {
        const float a = c->x0_coeff * x0[i], b = c->x_coeff * x[i];
        x[i] = a + b;
    }
    if (c->t <= 0) {
        for (size_t i = 0; i < n; i++) x[i] = x[i] + 0.0f; // pred_prev_sample + variance (the int 0)
        return PNDM_OK;
    }
    /* t > 0: variance_noise = randn_tensor(model_output.shape, generator) (after the split) */
    if ((st = sampler_draw_noise(s, d->noise, err)) != PNDM_OK) return st;
    const float *z = d->noise;
    switch (cfg->variance_type) {
    case PNDM_VARIANCE_LEARNED:
        /* (predicted_variance ** 0.5) * variance_noise */
        for (int b = 0; b < B; b++) {
            const float *pv = mo + (size_t)b * stride + per;
            float *xb = x + (size_t)b * per;
            const float *zb = z + (size_t)b * per;
            for (size_t i = 0; i < per; i++) {
                const float v = sqrtf(pv[i]) * zb[i];
                xb[i] = xb[i] + v;
            }
        }
        break;
    case PNDM_VARIANCE_LEARNED_RANGE:
        /* frac = (pv + 1) / 2; variance = frac * max_log + (1 - frac) * min_log;
         * torch.exp(0.5 * variance) * variance_noise */
        for (int b = 0; b < B; b++) {
            const float *pv = mo + (size_t)b * stride + per;
            float *xb = x + (size_t)b * per;
            const float *zb = z + (size_t)b * per;
            for (size_t i = 0; i < per; i++) {
                const float p1 = pv[i] + 1;
                const float frac = p1 / 2;
                const float hi = frac * c->max_log;
                const float lo = (1 - frac) * c->min_log;
                const float var = hi + lo;
                const float h = 0.5f * var;
                const float v = expf(h) * zb[i];
                xb[i] = xb[i] + v;
            }
        }
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            const float v = c->sigma * z[i];
            x[i] = x[i] + v;
        }
        break;
    }
    return PNDM_OK;
}

static void ddpm_destroy(pndm_sampler *s) {
    ddpm_state *d = s->state;
    if (!d) return;
    free(d->plan);
    free(d->x0);
    free(d);
    s->state = NULL;
}

static void ddpm_describe(const pndm_sampler *s, char *buf, size_t size) {
    sampler_describe_diffusers(s, "DDPMScheduler", buf, size);
}

static int ddpm_draws_noise(const pndm_sampler *s) {
    for (int i = 0; i < s->num_calls; i++)
        if (s->timesteps[i] > 0) return 1;
    return 0;
}

static int ddpm_model_channels(const pndm_sampler *s, int C) { return is_learned(s->cfg.variance_type) ? 2 * C : C; }

const sampler_method sampler_ddpm = {
    {"ddpm", "diffusers DDPMScheduler: ancestral sampling (DDPMPipeline uses 1000 steps)", "N",
     "diffusers 0.30.3 DDPMPipeline + DDPMScheduler", 0},
    "DDPMScheduler",
    PNDM_KEY_NUM_TRAIN_TIMESTEPS | PNDM_KEY_BETA_START | PNDM_KEY_BETA_END | PNDM_KEY_BETA_SCHEDULE |
        PNDM_KEY_TRAINED_BETAS | PNDM_KEY_VARIANCE_TYPE | PNDM_KEY_CLIP_SAMPLE | PNDM_KEY_PREDICTION_TYPE |
        PNDM_KEY_THRESHOLDING | PNDM_KEY_DYNAMIC_THRESHOLDING_RATIO | PNDM_KEY_CLIP_SAMPLE_RANGE |
        PNDM_KEY_SAMPLE_MAX_VALUE | PNDM_KEY_TIMESTEP_SPACING | PNDM_KEY_STEPS_OFFSET | PNDM_KEY_RESCALE_BETAS_ZERO_SNR,
    3, /* x0, the step noise, the thresholding scratch */
    ddpm_create,
    ddpm_step,
    NULL,
    ddpm_destroy,
    ddpm_describe,
    ddpm_draws_noise,
    ddpm_model_channels,
};
