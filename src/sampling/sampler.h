/* The sampler object behind pndm_sampler_* (pndm.h) and the table of methods. Internal to
 * src/sampling/ and its tests.
 *
 * Adding a method: one file src/sampling/sampler_<family>.c defining a `const sampler_method`
 * (its create / step / reset / destroy / describe and the config keys it reads), plus one entry
 * in k_methods[] in sampler.c. The pipeline (pipeline.c), the CLI and the memory estimate only
 * use what the method reports: its calls, model times, history and model channels. */
#ifndef PNDM_SAMPLER_H
#define PNDM_SAMPLER_H

#include "pndm.h"
#include "schedule.h"

typedef struct sampler_method {
    pndm_sampler_info info;
    const char *cls; /* the diffusers class whose config defaults apply, NULL: the paper's code */
    unsigned keys;   /* PNDM_KEY_* bits the method reads (the rest are reported as ignored) */
    int history;     /* most sample-sized float buffers the method keeps (memory estimates) */
    /* Fill s->num_calls, s->num_steps, s->times (or PNDM_CALLS_ADAPTIVE and s->next_time),
     * optionally s->timesteps, and s->state. s->cfg, s->params, s->steps are set. */
    pndm_status (*create)(pndm_sampler *s, pndm_error *err);
    /* One call (already checked: in order, n consistent with the first call). */
    pndm_status (*step)(pndm_sampler *s, int call, const float *model_out, float *x, size_t n, pndm_error *err);
    void (*reset)(pndm_sampler *s);   /* clear the method's history */
    void (*destroy)(pndm_sampler *s); /* free s->state */
    void (*describe)(const pndm_sampler *s, char *buf, size_t size);
    int (*draws_noise)(const pndm_sampler *s);           /* NULL: never */
    int (*model_channels)(const pndm_sampler *s, int C); /* NULL: C */
} sampler_method;

/* diffusers randn_tensor over one generator or a list of B (NOTES.md §4). */
typedef struct sampler_noise {
    int per_image; /* 0: gen[0] draws B*per values; 1: gen[i] draws image i's per values */
    int count;     /* generators held (0 before pndm_sampler_start, or when none are needed) */
    pndm_rng *gen;
} sampler_noise;

struct pndm_sampler {
    const sampler_method *m;
    pndm_sampler_params params;
    pndm_scheduler_config cfg; /* resolved copy; trained_betas and unknown_keys are NULL here */
    char *unknown_keys;        /* owned copy of the config's, for pndm_sampler_ignored_keys */
    int trained_betas;         /* the config had trained_betas (now in sched.betas) */
    sched_schedule sched;
    int steps;          /* as requested (the paper's methods: sample_speed) */
    int num_steps;      /* steps the method takes */
    int num_calls;      /* model calls, or PNDM_CALLS_ADAPTIVE */
    float *times;       /* (num_calls,) model time of every call; NULL when adaptive */
    int64_t *timesteps; /* (num_calls,) diffusers' integer timesteps (NULL: truncated times) */
    float next_time;    /* adaptive: the model time of the pending call */
    int next_call;      /* calls are made in order */
    int done;           /* every call made (adaptive: the method says so) */
    size_t n;           /* floats per sample, fixed by start or the first step */
    int B;              /* batch (1 when stepped without start) */
    size_t per;         /* floats per image (n / B) */
    sampler_noise noise;
    void *state; /* the method's own */
};

/* The method called `name` (NULL: "pndm"), or NULL. */
const sampler_method *sampler_find(const char *name);

/* Draw one (B, C, H, W) tensor of the step noise from the run's generator(s) into out (n
 * floats). Refused (USAGE) when the run was not started with pndm_sampler_start. */
pndm_status sampler_draw_noise(pndm_sampler *s, float *out, pndm_error *err);

/* Buffers for a method's state: n floats each, zero-initialised, NOMEM naming `what`. */
float *sampler_alloc_floats(size_t count, size_t n, const char *what, pndm_error *err);

/* Shared by the diffusers samplers (sampler_ddim.c): set_timesteps (s->timesteps, s->times,
 * one call each), pred_original_sample for a prediction_type, _threshold_sample over (B, per),
 * the clip_sample clamp, and the one-line description of a DDIM/DDPMScheduler. */
pndm_status sampler_diffusers_timesteps(pndm_sampler *s, pndm_error *err);
void sampler_predict_x0(pndm_prediction_type pt, float sqrt_a_t, float sqrt_b_t, const float *x, const float *mo,
                        float *x0, size_t n);
void sampler_threshold(float *x0, int B, size_t per, double ratio, double max_value, float *scratch);
void sampler_clip(float *x0, size_t n, double range);
void sampler_describe_diffusers(const pndm_sampler *s, const char *cls, char *buf, size_t size);

/* For tests (sampler_pf.c): the solver's accepted time and float64 state (n values), and its
 * counts. Returns 0 if s is not a pf sampler. */
int sampler_pf_state(const pndm_sampler *s, double *t, const double **y, int *accepted, int *rejected, int *nfev);

/* Read-only tables, for tests: betas/alphas_cumprod have num_train_timesteps entries. */
const float *sampler_betas(const pndm_sampler *s);
const float *sampler_alphas_cumprod(const pndm_sampler *s);
float sampler_final_alpha_cumprod(const pndm_sampler *s);

/* For tests: the indices PNDM's step uses at call i (alphas_cumprod[t_idx], and prev_idx, which
 * selects final_alpha_cumprod when negative). Returns 0 if s is not a PNDM sampler. */
int sched_pndm_call_indices(const pndm_sampler *s, int call, int64_t *t_idx, int64_t *prev_idx);

#endif
