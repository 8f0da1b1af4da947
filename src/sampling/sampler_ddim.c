/* diffusers 0.30.3 DDIMScheduler (schedulers/scheduling_ddim.py) stepped as DDIMPipeline does
 * (pipelines/ddim/pipeline_ddim.py), plus the predicted-x0 and dynamic-thresholding code that
 * DDPMScheduler shares with it.
 *
 * Bit for bit on torch 1.13 CPU, float32: 0-d tensor scalars and elementwise tensor ops, each
 * rounded once, in diffusers' order (src/sampling/ is compiled with -ffp-contract=off; the one
 * fused operation, torch.quantile's lerp, is an explicit fmaf). */
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

extern const sampler_method sampler_ddim;

/* ---- shared with DDPM -------------------------------------------------------------------- */

/* torch.clamp(a, lo, hi) for finite bounds: NaN stays NaN */
static inline float clampf_nan(float a, float lo, float hi) {
    if (a != a) return a;
    const float m = a < lo ? lo : a;
    return m > hi ? hi : m;
}

void sampler_predict_x0(pndm_prediction_type pt, float sqrt_a_t, float sqrt_b_t, const float *x, const float *mo,
                        float *x0, size_t n) {
    switch (pt) {
    case PNDM_PRED_EPSILON:
        /* (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5 */
        for (size_t i = 0; i < n; i++) {
            const float p = sqrt_b_t * mo[i];
            const float d = x[i] - p;
            x0[i] = d / sqrt_a_t;
        }
        break;
    case PNDM_PRED_SAMPLE:
        /* pred_original_sample = model_output */
        if (x0 != mo) memcpy(x0, mo, n * sizeof *x0);
        break;
    case PNDM_PRED_V:
        /* (alpha_prod_t ** 0.5) * sample - (beta_prod_t ** 0.5) * model_output */
        for (size_t i = 0; i < n; i++) {
            const float a = sqrt_a_t * x[i], b = sqrt_b_t * mo[i];
            x0[i] = a - b;
        }
        break;
    }
}

/* The k-th smallest of v[0..n) (k < n, no NaN), reordering v so that v[k] is that value and
 * v[k+1..n) >= it: quickselect with Hoare's partition around the middle element (the median of
 * three moved there), which keeps lo <= j < hi. The same values as torch's sort. */
static float select_kth(float *v, size_t n, size_t k) {
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1;
    const ptrdiff_t kk = (ptrdiff_t)k;
    while (lo < hi) {
        const ptrdiff_t mid = lo + (hi - lo) / 2;
        /* median of v[lo], v[mid], v[hi] into v[mid] */
        if (v[mid] < v[lo]) {
            float t = v[mid];
            v[mid] = v[lo];
            v[lo] = t;
        }
        if (v[hi] < v[lo]) {
            float t = v[hi];
            v[hi] = v[lo];
            v[lo] = t;
        }
        if (v[hi] < v[mid]) {
            float t = v[hi];
            v[hi] = v[mid];
            v[mid] = t;
        }
        const float pivot = v[mid];
        ptrdiff_t i = lo - 1, j = hi + 1;
        for (;;) {
            do i++;
            while (v[i] < pivot);
            do j--;
            while (v[j] > pivot);
            if (i >= j) break;
            float t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        if (kk <= j)
            hi = j;
        else
            lo = j + 1;
    }
    return v[k];
}

void sampler_threshold(float *x0, int B, size_t per, double ratio, double max_value, float *scratch) {
    /* _threshold_sample: per row of (B, C*H*W): s = torch.quantile(|x0|, ratio, dim=1) (linear
     * interpolation), s = clamp(s, 1, sample_max_value), x0 = clamp(x0, -s, s) / s */
    const float q = (float)ratio;                     // the quantile as a float32 tensor
    const float rank = q * (float)(int64_t)(per - 1); // ranks = q * (sorted.size(-1) - 1)
    const int64_t below = (int64_t)rank;              // ranks.toType(kLong)
    const int64_t above = (int64_t)ceilf(rank);       // ranks.ceil_().toType(kLong)
    const float w = rank - (float)below;              // weights = ranks - ranks_below
    const float smax = (float)max_value;
    for (int b = 0; b < B; b++) {
        float *row = x0 + (size_t)b * per;
        int has_nan = 0;
        for (size_t i = 0; i < per; i++) {
            scratch[i] = fabsf(row[i]);
            has_nan |= row[i] != row[i];
        }
        float s;
        if (has_nan) {
            s = NAN; // torch.quantile: a row with NaN gives NaN
        } else {
            const float lo = select_kth(scratch, per, (size_t)below);
            float hi = lo;
            if (above != below) { // the smallest value right of the k-th
                hi = scratch[below + 1];
                for (size_t i = (size_t)below + 2; i < per; i++)
                    if (scratch[i] < hi) hi = scratch[i];
            }
            /* values_below.lerp_(values_above, weights): torch 1.13's lerp, one fused op */
            const float diff = hi - lo;
            s = fabsf(w) < 0.5f ? fmaf(w, diff, lo) : fmaf(-diff, 1.0f - w, hi);
            s = clampf_nan(s, 1.0f, smax); // torch.clamp(s, min=1, max=sample_max_value)
        }
        if (s != s) {
            for (size_t i = 0; i < per; i++) row[i] = NAN;
            continue;
        }
        const float ns = -s;
        for (size_t i = 0; i < per; i++) {
            const float c = clampf_nan(row[i], ns, s);
            row[i] = c / s;
        }
    }
}

void sampler_clip(float *x0, size_t n, double range) {
    /* pred_original_sample.clamp(-clip_sample_range, clip_sample_range) */
    const float hi = (float)range, lo = (float)-range;
    for (size_t i = 0; i < n; i++) x0[i] = clampf_nan(x0[i], lo, hi);
}

void sampler_describe_diffusers(const pndm_sampler *s, const char *cls, char *buf, size_t size) {
    const pndm_scheduler_config *c = &s->cfg;
    char bs[32], be[32], betas[48], r[32], ratio[32], smax[32];
    sched_format_double(c->beta_start, bs, sizeof bs);
    sched_format_double(c->beta_end, be, sizeof be);
    sched_format_double(c->clip_sample_range, r, sizeof r);
    sched_format_double(c->dynamic_thresholding_ratio, ratio, sizeof ratio);
    sched_format_double(c->sample_max_value, smax, sizeof smax);
    if (s->trained_betas)
        snprintf(betas, sizeof betas, "%d values", c->num_train_timesteps);
    else
        snprintf(betas, sizeof betas, "none");
    const int ddim = strcmp(cls, "DDIMScheduler") == 0;
    char extra[96];
    if (ddim)
        snprintf(extra, sizeof extra, "set_alpha_to_one=%s, ", c->set_alpha_to_one ? "true" : "false");
    else
        snprintf(extra, sizeof extra, "variance_type=%s, ", sched_variance_name(c->variance_type));
    snprintf(buf, size,
             "%s(num_train_timesteps=%d, beta_start=%s, beta_end=%s, beta_schedule=%s, trained_betas=%s, "
             "%sclip_sample=%s, clip_sample_range=%s, thresholding=%s, dynamic_thresholding_ratio=%s, "
             "sample_max_value=%s, prediction_type=%s, timestep_spacing=%s, steps_offset=%d, "
             "rescale_betas_zero_snr=%s)",
             cls, c->num_train_timesteps, bs, be, sched_beta_schedule_name(c->beta_schedule), betas, extra,
             c->clip_sample ? "true" : "false", r, c->thresholding ? "true" : "false", ratio, smax,
             sched_prediction_name(c->prediction_type), sched_spacing_name(c->timestep_spacing), c->steps_offset,
             c->rescale_betas_zero_snr ? "true" : "false");
}

pndm_status sampler_diffusers_timesteps(pndm_sampler *s, pndm_error *err) {
    /* set_timesteps(N): the spacing's timesteps, descending; one model call each */
    const int N = s->steps;
    int64_t *base = malloc((size_t)N * sizeof *base);
    s->timesteps = malloc((size_t)N * sizeof *s->timesteps);
    s->times = malloc((size_t)N * sizeof *s->times);
    if (!base || !s->timesteps || !s->times) {
        free(base);
        return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    }
    pndm_status st = sched_spacing(&s->cfg, N, base, err);
    if (!st)
        for (int i = 0; i < N; i++) {
            s->timesteps[i] = base[N - 1 - i];
            s->times[i] = (float)s->timesteps[i];
        }
    free(base);
    s->num_calls = N;
    s->num_steps = N;
    return st;
}

/* ---- DDIM -------------------------------------------------------------------------------- */

typedef struct ddim_call {
    float sqrt_a_t, sqrt_b_t; /* alpha_prod_t ** 0.5, beta_prod_t ** 0.5 */
    float sqrt_a_p;           /* alpha_prod_t_prev ** 0.5 */
    float std;                /* std_dev_t = eta * variance ** 0.5 */
    float dir;                /* (1 - alpha_prod_t_prev - std_dev_t ** 2) ** 0.5 */
} ddim_call;

typedef struct ddim_state {
    ddim_call *plan; /* (num_calls,) */
    size_t cap;
    float *x0;    /* (n) pred_original_sample */
    float *noise; /* (n) variance_noise */
    float *sort;  /* (per) thresholding scratch */
} ddim_state;

static pndm_status ddim_create(pndm_sampler *s, pndm_error *err) {
    pndm_status st = sampler_diffusers_timesteps(s, err);
    if (st) return st;
    ddim_state *d = calloc(1, sizeof *d);
    if (!d) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->state = d;
    d->plan = calloc((size_t)s->num_calls, sizeof *d->plan);
    if (!d->plan) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    const int64_t T = s->cfg.num_train_timesteps, ratio = T / s->steps;
    const float eta = (float)s->params.eta;
    for (int i = 0; i < s->num_calls; i++) {
        const int64_t t = s->timesteps[i], prev_t = t - ratio; // timestep - T // num_inference_steps
        const float a_t = s->sched.alphas_cumprod[t];
        const float a_p = prev_t >= 0 ? s->sched.alphas_cumprod[prev_t] : s->sched.final_alpha_cumprod;
        const float b_t = 1 - a_t;
        ddim_call *c = &d->plan[i];
        c->sqrt_a_t = sqrtf(a_t);
        c->sqrt_b_t = sqrtf(b_t);
        c->sqrt_a_p = sqrtf(a_p);
        /* _get_variance: (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev) */
        const float b_p = 1 - a_p;
        const float q = b_p / b_t, r = a_t / a_p;
        const float var = q * (1 - r);
        c->std = eta * sqrtf(var);
        const float one_m = 1 - a_p;
        const float sq = c->std * c->std;
        c->dir = sqrtf(one_m - sq);
    }
    return PNDM_OK;
}

static pndm_status ddim_buffers(ddim_state *d, const pndm_sampler *s, pndm_error *err) {
    if (d->cap == s->n) return PNDM_OK;
    free(d->x0);
    d->x0 = sampler_alloc_floats(3, s->n, "the DDIM buffers", err);
    if (!d->x0) return err ? err->code : PNDM_ERR_NOMEM;
    d->noise = d->x0 + s->n;
    d->sort = d->noise + s->n;
    d->cap = s->n;
    return PNDM_OK;
}

static pndm_status ddim_step(pndm_sampler *s, int call, const float *mo, float *x, size_t n, pndm_error *err) {
    ddim_state *d = s->state;
    pndm_status st = ddim_buffers(d, s, err);
    if (st) return st;
    const ddim_call *c = &d->plan[call];
    const pndm_scheduler_config *cfg = &s->cfg;
    float *x0 = d->x0; // (B, C, H, W)
    sampler_predict_x0(cfg->prediction_type, c->sqrt_a_t, c->sqrt_b_t, x, mo, x0, n);
    if (cfg->thresholding)
        sampler_threshold(x0, s->B, s->per, cfg->dynamic_thresholding_ratio, cfg->sample_max_value, d->sort);
    else if (cfg->clip_sample)
        sampler_clip(x0, n, cfg->clip_sample_range);
    /* pred_epsilon: the model output (epsilon), from x0 (sample, or use_clipped_model_output),
     * or sqrt(a_t) * mo + sqrt(b_t) * x (v_prediction) */
    const int eps_from_x0 = cfg->prediction_type == PNDM_PRED_SAMPLE || s->params.use_clipped_model_output;
    const int eps_from_v = cfg->prediction_type == PNDM_PRED_V && !s->params.use_clipped_model_output;
    for (size_t i = 0; i < n; i++) {
        float pe = mo[i];
        if (eps_from_x0) {
            const float p = c->sqrt_a_t * x0[i];
            const float q = x[i] - p;
            pe = q / c->sqrt_b_t;
        } else if (eps_from_v) {
            const float p = c->sqrt_a_t * mo[i], q = c->sqrt_b_t * x[i];
            pe = p + q;
        }
        const float dir = c->dir * pe;       // pred_sample_direction
        const float a = c->sqrt_a_p * x0[i]; // alpha_prod_t_prev ** 0.5 * pred_original_sample
        x[i] = a + dir;                      // prev_sample
    }
    if (s->params.eta > 0) {
        /* variance_noise = randn_tensor(model_output.shape, generator); prev_sample += std * noise */
        if ((st = sampler_draw_noise(s, d->noise, err)) != PNDM_OK) return st;
        for (size_t i = 0; i < n; i++) {
            const float v = c->std * d->noise[i];
            x[i] = x[i] + v;
        }
    }
    return PNDM_OK;
}

static void ddim_destroy(pndm_sampler *s) {
    ddim_state *d = s->state;
    if (!d) return;
    free(d->plan);
    free(d->x0);
    free(d);
    s->state = NULL;
}

static void ddim_describe(const pndm_sampler *s, char *buf, size_t size) {
    sampler_describe_diffusers(s, "DDIMScheduler", buf, size);
}

static int ddim_draws_noise(const pndm_sampler *s) { return s->params.eta > 0; }

const sampler_method sampler_ddim = {
    {"ddim", "diffusers DDIMScheduler: DDIM, deterministic at --eta 0 (the default), ancestral noise above", "N",
     "diffusers 0.30.3 DDIMPipeline + DDIMScheduler", 0},
    "DDIMScheduler",
    PNDM_KEY_NUM_TRAIN_TIMESTEPS | PNDM_KEY_BETA_START | PNDM_KEY_BETA_END | PNDM_KEY_BETA_SCHEDULE |
        PNDM_KEY_TRAINED_BETAS | PNDM_KEY_CLIP_SAMPLE | PNDM_KEY_SET_ALPHA_TO_ONE | PNDM_KEY_STEPS_OFFSET |
        PNDM_KEY_PREDICTION_TYPE | PNDM_KEY_THRESHOLDING | PNDM_KEY_DYNAMIC_THRESHOLDING_RATIO |
        PNDM_KEY_CLIP_SAMPLE_RANGE | PNDM_KEY_SAMPLE_MAX_VALUE | PNDM_KEY_TIMESTEP_SPACING |
        PNDM_KEY_RESCALE_BETAS_ZERO_SNR,
    3, /* x0, the step noise, the thresholding scratch */
    ddim_create,
    ddim_step,
    NULL,
    ddim_destroy,
    ddim_describe,
    ddim_draws_noise,
    NULL,
};
