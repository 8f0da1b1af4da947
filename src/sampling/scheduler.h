/* Internal to scheduler.c and its tests: the noise schedule (betas, alphas_cumprod, timestep
 * spacing) kept apart from the stepping method, and the sampler object with its method table.
 * A further method (DDIM, DDPM) is one more sampler_ops plus a pndm_sampler_create_*
 * function; the pipeline only uses the public pndm_sampler_* calls. */
#ifndef PNDM_SCHEDULER_H
#define PNDM_SCHEDULER_H

#include "pndm.h"

/* Largest num_train_timesteps accepted (diffusers has no limit; real models use <= 4000). */
#define PNDM_MAX_TRAIN_TIMESTEPS 1000000

/* The training noise schedule, as diffusers' scheduler __init__ builds it. */
typedef struct sched_schedule {
    int num_train_timesteps;   /* T */
    float *betas;              /* (T,) */
    float *alphas_cumprod;     /* (T,) */
    float final_alpha_cumprod; /* 1 if set_alpha_to_one else alphas_cumprod[0] */
} sched_schedule;

/* Build betas and alphas_cumprod from a (validated) config. */
pndm_status sched_schedule_init(sched_schedule *s, const pndm_scheduler_config *cfg, pndm_error *err);
void sched_schedule_free(sched_schedule *s);

/* The `steps` base timesteps of set_timesteps (diffusers' `_timesteps`, ascending, before a
 * method reorders them) for the config's timestep_spacing and steps_offset. Refuses (USAGE)
 * step counts for which diffusers would produce a different number of timesteps. */
pndm_status sched_spacing(const pndm_scheduler_config *cfg, int steps, int64_t *out, pndm_error *err);

/* Checks every value of a config (the rules of pndm_scheduler_config_parse); `source` names it. */
pndm_status sched_config_validate(const pndm_scheduler_config *cfg, const char *source, pndm_error *err);

typedef struct sampler_ops {
    const char *name;
    /* One step for call `call` (already checked: in order, n > 0 and consistent). */
    pndm_status (*step)(pndm_sampler *s, int call, const float *model_out, float *sample, size_t n, pndm_error *err);
    void (*reset)(pndm_sampler *s);   /* clear the method's history */
    void (*destroy)(pndm_sampler *s); /* free the method's state */
} sampler_ops;

struct pndm_sampler {
    const sampler_ops *ops;
    pndm_scheduler_config cfg; /* copy; trained_betas is NULL here (the betas live in sched) */
    sched_schedule sched;
    int steps; /* num_inference_steps */
    int num_calls;
    int64_t *timesteps; /* (num_calls,) timestep given to the model at each call */
    int next_call;      /* calls are made in order */
    size_t n;           /* floats per sample, fixed by the first step after create/reset */
    void *state;        /* the method's own */
};

/* Read-only tables, for tests: betas/alphas_cumprod have num_train_timesteps entries. */
const float *sampler_betas(const pndm_sampler *s);
const float *sampler_alphas_cumprod(const pndm_sampler *s);
float sampler_final_alpha_cumprod(const pndm_sampler *s);

/* For tests: the indices PNDM's step uses at call i (alphas_cumprod[t_idx], and prev_idx, which
 * selects final_alpha_cumprod when negative). Returns 0 if s is not a PNDM sampler. */
int sched_pndm_call_indices(const pndm_sampler *s, int call, int64_t *t_idx, int64_t *prev_idx);

#endif
