/* The sampler interface of pndm.h over the table of methods (sampler.h): creation, the call
 * bookkeeping every method shares, the generators of a run, and the descriptions for -v and
 * the metadata. */
#define _POSIX_C_SOURCE 200809L
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- the methods ------------------------------------------------------------------------- */
/* One entry per method; a new method is one file defining its sampler_method plus its name in
 * these two lists. */
extern const sampler_method sampler_pndm, sampler_ddim, sampler_ddpm, sampler_ddim_paper, sampler_s_pndm,
    sampler_f_pndm, sampler_fon, sampler_pf;
static const sampler_method *const k_methods[] = {
    &sampler_pndm,       /* sampler_pndm.c: diffusers PNDMScheduler (the default) */
    &sampler_ddim,       /* sampler_ddim.c: diffusers DDIMScheduler + DDIMPipeline */
    &sampler_ddpm,       /* sampler_ddpm.c: diffusers DDPMScheduler + DDPMPipeline */
    &sampler_ddim_paper, /* sampler_paper.c: the paper's DDIM, S-PNDM, F-PNDM, FON */
    &sampler_s_pndm,     &sampler_f_pndm,
    &sampler_fon,        &sampler_pf, /* sampler_pf.c: the paper's PF (RK45 as scipy 1.10) */
};
#define N_METHODS ((int)(sizeof k_methods / sizeof *k_methods))

int pndm_sampler_count(void) { return N_METHODS; }

const pndm_sampler_info *pndm_sampler_get_info(int i) { return i >= 0 && i < N_METHODS ? &k_methods[i]->info : NULL; }

const sampler_method *sampler_find(const char *name) {
    if (!name) name = "pndm";
    for (int i = 0; i < N_METHODS; i++)
        if (strcmp(k_methods[i]->info.name, name) == 0) return k_methods[i];
    return NULL;
}

const pndm_sampler_info *pndm_sampler_find_info(const char *name) {
    const sampler_method *m = sampler_find(name);
    return m ? &m->info : NULL;
}

pndm_sampler_params pndm_sampler_default_params(void) {
    pndm_sampler_params p;
    memset(&p, 0, sizeof p);
    p.name = "pndm";
    p.eta = 0.0;
    p.use_clipped_model_output = 0;
    return p;
}

/* ---- creation ---------------------------------------------------------------------------- */

pndm_status pndm_sampler_create(const pndm_sampler_params *params, const pndm_scheduler_config *cfg, int steps,
                                pndm_sampler **out, pndm_error *err) {
    if (!out) return core_fail(err, PNDM_ERR_USAGE, "pndm_sampler_create: NULL output");
    *out = NULL;
    if (!cfg) return core_fail(err, PNDM_ERR_USAGE, "pndm_sampler_create: NULL config");
    pndm_sampler_params p = params ? *params : pndm_sampler_default_params();
    const sampler_method *m = sampler_find(p.name);
    if (!m) {
        char names[256] = "", q[160];
        for (int i = 0; i < N_METHODS; i++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", k_methods[i]->info.name);
        }
        core_quote(q, sizeof q, p.name);
        return core_fail(err, PNDM_ERR_USAGE, "unknown sampler '%s' (samplers: %s)", q, names);
    }
    p.name = m->info.name;
    if (!isfinite(p.eta))
        return core_fail(err, PNDM_ERR_USAGE, "sampler %s: eta must be a finite number (got %g)", p.name, p.eta);
    pndm_status st = sched_config_validate(cfg, NULL, err);
    if (st) return st;
    if (steps < 1 || steps > cfg->num_train_timesteps)
        return core_fail(err, PNDM_ERR_USAGE, "steps must be in 1..%d (num_train_timesteps) (got %d)",
                         cfg->num_train_timesteps, steps);
    pndm_sampler *s = calloc(1, sizeof *s);
    if (!s) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->m = m;
    s->params = p;
    s->cfg = *cfg;
    s->cfg.trained_betas = NULL;
    s->cfg.unknown_keys = NULL;
    /* DDIMScheduler.__init__'s own default where the file did not say (PNDMScheduler: false) */
    if (m->cls && strcmp(m->cls, "DDIMScheduler") == 0 && !(cfg->given & PNDM_KEY_SET_ALPHA_TO_ONE))
        s->cfg.set_alpha_to_one = 1;
    if (cfg->unknown_keys && !(s->unknown_keys = strdup(cfg->unknown_keys))) {
        free(s);
        return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    }
    s->trained_betas = cfg->trained_betas != NULL;
    s->steps = steps;
    s->num_steps = steps;
    s->B = 1;
    /* the schedule with the config's own trained_betas (the copy drops the pointer) */
    pndm_scheduler_config with_betas = s->cfg;
    with_betas.trained_betas = cfg->trained_betas;
    if (m->cls) {
        int flags = 0;
        if (strcmp(m->cls, "DDPMScheduler") == 0) flags |= SCHED_ALLOW_SIGMOID;
        if (strcmp(m->cls, "PNDMScheduler") != 0) flags |= SCHED_RESCALE_ZERO_SNR;
        st = sched_schedule_init(&s->sched, &with_betas, flags, err);
    } else {
        st = sched_schedule_init_paper(&s->sched, &with_betas, err);
    }
    if (!st) st = m->create(s, err);
    if (st) {
        pndm_sampler_free(s);
        return st;
    }
    *out = s;
    return PNDM_OK;
}

pndm_status pndm_sampler_create_pndm(const pndm_scheduler_config *cfg, int steps, pndm_sampler **out, pndm_error *err) {
    pndm_sampler_params p = pndm_sampler_default_params();
    return pndm_sampler_create(&p, cfg, steps, out, err);
}

static void drop_noise(pndm_sampler *s) {
    free(s->noise.gen);
    memset(&s->noise, 0, sizeof s->noise);
}

void pndm_sampler_free(pndm_sampler *s) {
    if (!s) return;
    if (s->m && s->m->destroy) s->m->destroy(s);
    sched_schedule_free(&s->sched);
    drop_noise(s);
    free(s->times);
    free(s->timesteps);
    free(s->unknown_keys);
    free(s);
}

float *sampler_alloc_floats(size_t count, size_t n, const char *what, pndm_error *err) {
    size_t total;
    if (!core_mul_size(n, count, &total) || !core_mul_size(total, sizeof(float), &total)) {
        core_fail(err, PNDM_ERR_NOMEM, "sampler: %s for samples of %zu floats is too large", what, n);
        return NULL;
    }
    float *b = calloc(1, total ? total : 1);
    if (!b) core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory for %s (%zu bytes)", what, total);
    return b;
}

/* ---- queries ----------------------------------------------------------------------------- */

const char *pndm_sampler_name(const pndm_sampler *s) { return s ? s->m->info.name : NULL; }
int pndm_sampler_num_calls(const pndm_sampler *s) { return s ? s->num_calls : 0; }
int pndm_sampler_num_steps(const pndm_sampler *s) { return s ? s->num_steps : 0; }
int pndm_sampler_calls_made(const pndm_sampler *s) { return s ? s->next_call : 0; }
int pndm_sampler_done(const pndm_sampler *s) { return s ? s->done : 1; }
int pndm_sampler_history(const pndm_sampler *s) { return s ? s->m->history : 0; }

int pndm_sampler_model_channels(const pndm_sampler *s, int C) {
    return s && s->m->model_channels ? s->m->model_channels(s, C) : C;
}

float pndm_sampler_time(const pndm_sampler *s, int call) {
    CORE_ASSERT(s && call >= 0);
    if (s->num_calls == PNDM_CALLS_ADAPTIVE) {
        CORE_ASSERT(call == s->next_call && !s->done);
        return s->next_time;
    }
    CORE_ASSERT(call < s->num_calls);
    return s->times[call];
}

int64_t pndm_sampler_timestep(const pndm_sampler *s, int call) {
    if (s && s->timesteps) {
        CORE_ASSERT(call >= 0 && call < s->num_calls);
        return s->timesteps[call];
    }
    return (int64_t)pndm_sampler_time(s, call);
}

/* ---- a run ------------------------------------------------------------------------------- */

static void restart(pndm_sampler *s) {
    s->next_call = 0;
    s->done = s->num_calls == 0;
    if (s->m->reset) s->m->reset(s);
}

pndm_status pndm_sampler_start(pndm_sampler *s, uint64_t seed, int per_image_seeds, int B, size_t n, float *sample,
                               pndm_error *err) {
    if (!s || !sample) return core_fail(err, PNDM_ERR_USAGE, "sampler start: NULL argument");
    if (B < 1 || n == 0 || n % (size_t)B != 0)
        return core_fail(err, PNDM_ERR_USAGE, "sampler start: %zu floats are not %d equal images", n, B);
    drop_noise(s);
    s->B = B;
    s->per = n / (size_t)B;
    s->n = n;
    restart(s);
    /* diffusers randn_tensor: one generator for the batch, or one per image (seed + i); a list
     * of one generator draws the same numbers as the generator itself */
    const int per_image = per_image_seeds && B > 1;
    const int keep = s->m->draws_noise && s->m->draws_noise(s);
    const int count = keep ? (per_image ? B : 1) : 0;
    if (count) {
        s->noise.gen = malloc((size_t)count * sizeof *s->noise.gen);
        if (!s->noise.gen) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory for %d generators", count);
        s->noise.count = count;
        s->noise.per_image = per_image;
    }
    if (!per_image) {
        pndm_rng one, *g = count ? &s->noise.gen[0] : &one;
        pndm_rng_seed(g, seed);
        pndm_randn(g, sample, n);
    } else {
        for (int b = 0; b < B; b++) {
            pndm_rng one, *g = count ? &s->noise.gen[b] : &one;
            pndm_rng_seed(g, seed + (uint64_t)b);
            pndm_randn(g, sample + (size_t)b * s->per, s->per);
        }
    }
    return PNDM_OK;
}

pndm_status sampler_draw_noise(pndm_sampler *s, float *out, pndm_error *err) {
    if (!s->noise.count)
        return core_fail(err, PNDM_ERR_USAGE,
                         "sampler %s: no generator for the step noise: start the run with pndm_sampler_start",
                         s->m->info.name);
    if (!s->noise.per_image) {
        pndm_randn(&s->noise.gen[0], out, s->n); // randn_tensor(shape, generator=g)
    } else {
        for (int b = 0; b < s->B; b++) // torch.cat([randn((1, C, H, W), generator=g[i]) ...])
            pndm_randn(&s->noise.gen[b], out + (size_t)b * s->per, s->per);
    }
    return PNDM_OK;
}

pndm_status pndm_sampler_step(pndm_sampler *s, int call, const float *model_out, float *sample, size_t n,
                              pndm_error *err) {
    if (!s || !model_out || !sample) return core_fail(err, PNDM_ERR_USAGE, "sampler step: NULL argument");
    if (s->done || call < 0 || (s->num_calls != PNDM_CALLS_ADAPTIVE && call >= s->num_calls))
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: call %d is past the last call (%d made)", call,
                         s->next_call);
    if (call != s->next_call)
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: call %d out of order (expected call %d)", call,
                         s->next_call);
    if (n == 0) return core_fail(err, PNDM_ERR_USAGE, "sampler step: empty sample");
    if (s->n != 0 && n != s->n)
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: sample size %zu differs from %zu at the first call", n,
                         s->n);
    if (s->n == 0) {
        s->n = n;
        s->B = 1;
        s->per = n;
    }
    pndm_status st = s->m->step(s, call, model_out, sample, n, err);
    if (st) return st;
    s->next_call++;
    if (s->num_calls != PNDM_CALLS_ADAPTIVE && s->next_call == s->num_calls) s->done = 1;
    return PNDM_OK;
}

void pndm_sampler_reset(pndm_sampler *s) {
    if (!s) return;
    drop_noise(s);
    s->n = 0;
    s->B = 1;
    s->per = 0;
    restart(s);
}

/* ---- descriptions ------------------------------------------------------------------------ */

void pndm_sampler_describe(const pndm_sampler *s, char *buf, size_t size) {
    if (!buf || size == 0) return;
    if (!s) {
        snprintf(buf, size, "?");
        return;
    }
    s->m->describe(s, buf, size);
}

static void append(char *buf, size_t size, size_t *len, const char *fmt, double v) {
    if (*len >= size) return;
    int k = snprintf(buf + *len, size - *len, fmt, v);
    if (k > 0) *len += (size_t)k;
    if (*len >= size) *len = size;
}

void pndm_sampler_schedule(const pndm_sampler *s, char *buf, size_t size) {
    if (!buf || size == 0) return;
    if (!s) {
        snprintf(buf, size, "?");
        return;
    }
    size_t len = 0;
    if (s->num_calls == PNDM_CALLS_ADAPTIVE) {
        snprintf(buf, size, "adaptive: model calls chosen by the solver");
        return;
    }
    int k = snprintf(buf, size, "%d steps, %d model calls at t =", s->num_steps, s->num_calls);
    len = k > 0 ? (size_t)k : 0;
    const int show = s->num_calls <= 64 ? s->num_calls : 60;
    for (int i = 0; i < show; i++) {
        char t[32];
        sched_format_double((double)s->times[i], t, sizeof t);
        if (len + strlen(t) + 8 >= size) break;
        len += (size_t)snprintf(buf + len, size - len, "%s %s", i ? "," : "", t);
    }
    if (show < s->num_calls) append(buf, size, &len, ", ... (%g more)", (double)(s->num_calls - show));
}

void pndm_sampler_ignored_keys(const pndm_sampler *s, char *buf, size_t size) {
    if (!buf || size == 0) return;
    buf[0] = 0;
    if (!s) return;
    size_t len = 0;
    for (unsigned bit = 1; bit && bit <= PNDM_KEY_RESCALE_BETAS_ZERO_SNR; bit <<= 1) {
        if (!(s->cfg.given & bit) || (s->m->keys & bit)) continue;
        const char *k = sched_key_name(bit);
        if (!k) continue;
        int w = snprintf(buf + len, size - len, "%s%s", len ? ", " : "", k);
        if (w < 0 || (size_t)w >= size - len) return;
        len += (size_t)w;
    }
    if (s->unknown_keys) snprintf(buf + len, size - len, "%s%s", len ? ", " : "", s->unknown_keys);
}

/* ---- test hooks -------------------------------------------------------------------------- */

const float *sampler_betas(const pndm_sampler *s) { return s ? s->sched.betas : NULL; }
const float *sampler_alphas_cumprod(const pndm_sampler *s) { return s ? s->sched.alphas_cumprod : NULL; }
float sampler_final_alpha_cumprod(const pndm_sampler *s) { return s ? s->sched.final_alpha_cumprod : 0.0f; }
