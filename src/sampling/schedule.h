/* Noise schedules: betas and alphas_cumprod as diffusers' schedulers build them (float32 torch
 * ops) and as the PNDM paper's code builds them (float64 numpy, then float32, no leading 1),
 * and diffusers' timestep spacing. Internal to src/sampling/. */
#ifndef PNDM_SCHEDULE_H
#define PNDM_SCHEDULE_H

#include "pndm.h"

/* Largest num_train_timesteps accepted (diffusers has no limit; real models use <= 4000). */
#define PNDM_MAX_TRAIN_TIMESTEPS 1000000

typedef struct sched_schedule {
    int num_train_timesteps;   /* T */
    float *betas;              /* (T,) */
    float *alphas_cumprod;     /* (T,) diffusers' alphas_cumprod = the paper's alphas_cump */
    float final_alpha_cumprod; /* 1 if set_alpha_to_one else alphas_cumprod[0] (DDIM, PNDM) */
} sched_schedule;

/* What a scheduler class adds to PNDMScheduler's betas. */
enum {
    SCHED_ALLOW_SIGMOID = 1,   /* DDPMScheduler: beta_schedule "sigmoid" */
    SCHED_RESCALE_ZERO_SNR = 2 /* DDIM, DDPM: honour rescale_betas_zero_snr */
};

/* diffusers' scheduler __init__: betas, alphas_cumprod, final_alpha_cumprod from a (validated)
 * config (cfg->set_alpha_to_one as given). */
pndm_status sched_schedule_init(sched_schedule *s, const pndm_scheduler_config *cfg, int flags, pndm_error *err);
/* The paper's runner/schedule.py:get_schedule, beta_schedule mapped as linear -> "linear",
 * scaled_linear -> "quad", squaredcos_cap_v2 -> "cosine"; final_alpha_cumprod unused (0). */
pndm_status sched_schedule_init_paper(sched_schedule *s, const pndm_scheduler_config *cfg, pndm_error *err);
void sched_schedule_free(sched_schedule *s);

/* The `steps` base timesteps of set_timesteps (diffusers' `_timesteps`, ascending, before a
 * method reorders them) for the config's timestep_spacing and steps_offset. Refuses (USAGE)
 * step counts for which diffusers would produce a different number of timesteps or timesteps
 * outside 0..T-1. */
pndm_status sched_spacing(const pndm_scheduler_config *cfg, int steps, int64_t *out, pndm_error *err);

/* Checks every value of a config (the rules of pndm_scheduler_config_parse); `source` names it. */
pndm_status sched_config_validate(const pndm_scheduler_config *cfg, const char *source, pndm_error *err);

const char *sched_beta_schedule_name(pndm_beta_schedule b);
const char *sched_prediction_name(pndm_prediction_type p);
const char *sched_spacing_name(pndm_spacing s);
const char *sched_variance_name(pndm_variance_type v);
/* The config key of a PNDM_KEY_* bit (NULL if none). */
const char *sched_key_name(unsigned bit);
/* Shortest %g form that reads back as the same double (like Python's repr). */
void sched_format_double(double v, char *buf, size_t size);

#endif
