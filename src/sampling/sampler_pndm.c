/* diffusers 0.30.3 PNDMScheduler (schedulers/scheduling_pndm.py) + PNDMPipeline: the PRK
 * warm-up (12 calls) then PLMS, or PLMS only with skip_prk_steps.
 *
 * Bit for bit on torch 1.13 CPU, float32: every torch op is one float operation rounded on its
 * own (src/sampling/ is compiled with -ffp-contract=off) and each expression keeps diffusers'
 * operation order. Python float constants are rounded to float where torch does (1/6 ->
 * (float)(1/6)); the timestep bookkeeping is int64 as in numpy. */
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

extern const sampler_method sampler_pndm;

/* What one call does with the model output (PNDMScheduler.step_prk / step_plms). */
typedef enum {
    PNDM_OP_PRK_FIRST,  /* counter % 4 == 0: cur = 1/6 mo; ets.append(mo); cur_sample = sample; raw mo */
    PNDM_OP_PRK_MID,    /* counter % 4 == 1, 2: cur += 1/3 mo; raw mo; base cur_sample */
    PNDM_OP_PRK_LAST,   /* counter % 4 == 3: mo = cur + 1/6 mo; cur = 0; base cur_sample */
    PNDM_OP_PLMS_FIRST, /* skip_prk, counter 0: ets = [mo]; cur_sample = sample; raw mo */
    PNDM_OP_PLMS_AVG,   /* skip_prk, counter 1: mo = (mo + ets[-1]) / 2; base cur_sample */
    PNDM_OP_PLMS2,      /* (3 e1 - e2) / 2 */
    PNDM_OP_PLMS3,      /* (23 e1 - 16 e2 + 5 e3) / 12 */
    PNDM_OP_PLMS4       /* 1/24 (55 e1 - 59 e2 + 37 e3 - 9 e4) */
} plms_op;

/* Per-call plan, fixed at creation: the operation, the alphas_cumprod indices and the float32
 * coefficients of PNDMScheduler._get_prev_sample (formula (9) of the PNDM paper). */
typedef struct plms_call {
    plms_op op;
    int push; /* ets.append(model_output) */
    int64_t t_idx, prev_idx;
    float sample_coeff;       /* (a_p / a_t) ** 0.5 */
    float alpha_diff;         /* a_p - a_t */
    float denom;              /* a_t * b_p ** 0.5 + (a_t * b_t * a_p) ** 0.5 */
    float sqrt_a_t, sqrt_b_t; /* v_prediction: mo = a_t**0.5 * mo + b_t**0.5 * sample */
} plms_call;

typedef struct plms_state {
    plms_call *plan; /* (num_calls,) */
    int v_pred;
    size_t cap;    /* floats per buffer allocated */
    float *buf;    /* one block: ets ring (4, n), cur_sample (n), cur_model_output (n) */
    float *ets[4]; /* ring of the last 4 model outputs, ets_head = newest */
    int ets_len, ets_head;
    float *cur_sample; /* (n) */
    float *cur_mo;     /* (n) */
} plms_state;

/* PNDMScheduler._get_prev_sample's scalars for one call. */
static void plms_coefficients(const sched_schedule *sch, plms_call *c) {
    const float a_t = sch->alphas_cumprod[c->t_idx];
    const float a_p = c->prev_idx >= 0 ? sch->alphas_cumprod[c->prev_idx] : sch->final_alpha_cumprod;
    const float b_t = 1 - a_t;
    const float b_p = 1 - a_p;
    c->sqrt_a_t = sqrtf(a_t);
    c->sqrt_b_t = sqrtf(b_t);
    c->sample_coeff = sqrtf(a_p / a_t);
    const float at_bt = a_t * b_t;
    c->denom = a_t * sqrtf(b_p) + sqrtf(at_bt * a_p);
    c->alpha_diff = a_p - a_t;
}

/* prev_sample = sample_coeff * sample - (a_p - a_t) * model_output / denom, with the
 * v_prediction conversion first (_get_prev_sample). Each product rounded to float. */
static inline float plms_prev(const plms_call *c, int v_pred, float base, float mo) {
    if (v_pred) {
        const float p = c->sqrt_a_t * mo, q = c->sqrt_b_t * base;
        mo = p + q;
    }
    const float a = c->sample_coeff * base;
    const float d = c->alpha_diff * mo;
    return a - d / c->denom;
}

static pndm_status plms_ensure_buffers(plms_state *st, size_t n, pndm_error *err) {
    if (st->cap == n) return PNDM_OK;
    size_t total;
    if (!core_mul_size(n, 6, &total) || !core_mul_size(total, sizeof(float), &total))
        return core_fail(err, PNDM_ERR_NOMEM, "sampler: sample of %zu floats is too large", n);
    float *b = malloc(total);
    if (!b) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory for the PNDM history (%zu bytes)", total);
    free(st->buf);
    st->buf = b;
    st->cap = n;
    for (int k = 0; k < 4; k++) st->ets[k] = b + (size_t)k * n;
    st->cur_sample = b + 4 * n;
    st->cur_mo = b + 5 * n;
    return PNDM_OK;
}

static pndm_status plms_step(pndm_sampler *s, int call, const float *mo, float *x, size_t n, pndm_error *err) {
    plms_state *st = s->state;
    pndm_status rc = plms_ensure_buffers(st, n, err);
    if (rc) return rc;
    const plms_call *c = &st->plan[call];
    const int v = st->v_pred;
    if (c->push) {
        /* self.ets = self.ets[-3:]; self.ets.append(model_output) */
        st->ets_head = (st->ets_head + 1) % 4;
        memcpy(st->ets[st->ets_head], mo, n * sizeof *mo);
        if (st->ets_len < 4) st->ets_len++;
    }
    const float *e1 = st->ets[st->ets_head];           // ets[-1]
    const float *e2 = st->ets[(st->ets_head + 3) % 4]; // ets[-2]
    const float *e3 = st->ets[(st->ets_head + 2) % 4]; // ets[-3]
    const float *e4 = st->ets[(st->ets_head + 1) % 4]; // ets[-4]
    float *cur = st->cur_sample;
    float *acc = st->cur_mo;
    const float c6 = (float)(1.0 / 6.0), c3 = (float)(1.0 / 3.0), c24 = (float)(1.0 / 24.0);

    switch (c->op) {
    case PNDM_OP_PRK_FIRST:
        /* step_prk, counter % 4 == 0: cur_model_output (the int 0) += 1/6 * model_output;
         * cur_sample = sample; prev from cur_sample with the raw model output */
        memcpy(cur, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) {
            const float t = c6 * mo[i];
            acc[i] = t + 0.0f;
            x[i] = plms_prev(c, v, cur[i], mo[i]);
        }
        break;
    case PNDM_OP_PRK_MID:
        /* counter % 4 == 1 or 2: cur_model_output += 1/3 * model_output */
        for (size_t i = 0; i < n; i++) {
            const float t = c3 * mo[i];
            acc[i] = acc[i] + t;
            x[i] = plms_prev(c, v, cur[i], mo[i]);
        }
        break;
    case PNDM_OP_PRK_LAST:
        /* counter % 4 == 3: model_output = cur_model_output + 1/6 * model_output */
        for (size_t i = 0; i < n; i++) {
            const float t = c6 * mo[i];
            const float m = acc[i] + t;
            acc[i] = 0.0f;
            x[i] = plms_prev(c, v, cur[i], m);
        }
        break;
    case PNDM_OP_PLMS_FIRST:
        /* step_plms, len(ets) == 1 and counter == 0: cur_sample = sample; raw model output */
        memcpy(cur, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = plms_prev(c, v, x[i], mo[i]);
        break;
    case PNDM_OP_PLMS_AVG:
        /* len(ets) == 1 and counter == 1: model_output = (model_output + ets[-1]) / 2;
         * sample = cur_sample */
        for (size_t i = 0; i < n; i++) {
            const float m = (mo[i] + e1[i]) / 2.0f;
            x[i] = plms_prev(c, v, cur[i], m);
        }
        break;
    case PNDM_OP_PLMS2:
        /* (3 * ets[-1] - ets[-2]) / 2 */
        for (size_t i = 0; i < n; i++) {
            const float a = 3.0f * e1[i];
            const float m = (a - e2[i]) / 2.0f;
            x[i] = plms_prev(c, v, x[i], m);
        }
        break;
    case PNDM_OP_PLMS3:
        /* (23 * ets[-1] - 16 * ets[-2] + 5 * ets[-3]) / 12 */
        for (size_t i = 0; i < n; i++) {
            const float a = 23.0f * e1[i], b = 16.0f * e2[i], d = 5.0f * e3[i];
            const float ab = a - b;
            const float m = (ab + d) / 12.0f;
            x[i] = plms_prev(c, v, x[i], m);
        }
        break;
    case PNDM_OP_PLMS4:
        /* (1 / 24) * (55 * ets[-1] - 59 * ets[-2] + 37 * ets[-3] - 9 * ets[-4]) */
        for (size_t i = 0; i < n; i++) {
            const float a = 55.0f * e1[i], b = 59.0f * e2[i], d = 37.0f * e3[i], e = 9.0f * e4[i];
            const float ab = a - b;
            const float abd = ab + d;
            const float sum = abd - e;
            const float m = c24 * sum;
            x[i] = plms_prev(c, v, x[i], m);
        }
        break;
    }
    return PNDM_OK;
}

static void plms_reset(pndm_sampler *s) {
    plms_state *st = s->state;
    st->ets_len = 0;
    st->ets_head = 0;
}

static void plms_destroy(pndm_sampler *s) {
    plms_state *st = s->state;
    if (!st) return;
    free(st->plan);
    free(st->buf);
    free(st);
    s->state = NULL;
}

int sched_pndm_call_indices(const pndm_sampler *s, int call, int64_t *t_idx, int64_t *prev_idx) {
    if (!s || s->m != &sampler_pndm || call < 0 || call >= s->num_calls) return 0;
    const plms_state *st = s->state;
    *t_idx = st->plan[call].t_idx;
    *prev_idx = st->plan[call].prev_idx;
    return 1;
}

/* PNDMScheduler.set_timesteps (second part) and a dry run of step()'s bookkeeping (counter,
 * len(ets)), which depends on nothing but the call index. */
static pndm_status plms_build_plan(pndm_sampler *s, const int64_t *base /* (steps,) */, pndm_error *err) {
    const int64_t T = s->cfg.num_train_timesteps, N = s->steps;
    const int skip = s->cfg.skip_prk_steps;
    plms_state *st = s->state;
    int64_t prk[12];
    int n_prk = 0;
    int64_t *ts;
    int calls;
    if (skip) {
        /* prk_timesteps = []; plms_timesteps = concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1] */
        calls = N >= 2 ? (int)N + 1 : 1;
        ts = malloc((size_t)calls * sizeof *ts);
        if (!ts) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
        int k = 0;
        /* ascending list, then reversed */
        int64_t *asc = malloc((size_t)calls * sizeof *asc);
        if (!asc) {
            free(ts);
            return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
        }
        for (int64_t i = 0; i + 1 < N; i++) asc[k++] = base[i];
        if (N >= 2) asc[k++] = base[N - 2];
        asc[k++] = base[N - 1];
        CORE_ASSERT(k == calls);
        for (int i = 0; i < calls; i++) ts[i] = asc[calls - 1 - i];
        free(asc);
    } else {
        /* prk_timesteps = np.array(_t[-4:]).repeat(2) + np.tile([0, T // N // 2], 4), which
         * needs at least 4 timesteps (numpy raises a broadcast error below that);
         * prk_timesteps = prk_timesteps[:-1].repeat(2)[1:-1][::-1];
         * plms_timesteps = _t[:-3][::-1] */
        if (N < 4)
            return core_fail(err, PNDM_ERR_USAGE,
                             "steps must be >= 4 for PNDM with PRK warm-up (got %lld; diffusers fails below 4; "
                             "skip_prk_steps allows fewer)",
                             (long long)N);
        const int64_t half = T / N / 2;
        int64_t p8[8], p14[14];
        for (int j = 0; j < 4; j++) {
            p8[2 * j] = base[N - 4 + j];
            p8[2 * j + 1] = base[N - 4 + j] + half;
        }
        for (int j = 0; j < 7; j++) p14[2 * j] = p14[2 * j + 1] = p8[j];
        for (int j = 0; j < 12; j++) prk[j] = p14[12 - j]; // p14[1:13] reversed
        n_prk = 12;
        calls = 12 + (int)(N - 3);
        ts = malloc((size_t)calls * sizeof *ts);
        if (!ts) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
        for (int j = 0; j < 12; j++) ts[j] = prk[j];
        for (int64_t i = 0; i < N - 3; i++) ts[12 + i] = base[N - 4 - i];
    }
    s->timesteps = ts;
    s->num_calls = calls;
    s->times = malloc((size_t)calls * sizeof *s->times);
    if (!s->times) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    for (int i = 0; i < calls; i++) s->times[i] = (float)ts[i]; // the UNet gets t as a float
    st->plan = calloc((size_t)calls, sizeof *st->plan);
    if (!st->plan) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");

    int ets_len = 0;
    for (int counter = 0; counter < calls; counter++) {
        plms_call *c = &st->plan[counter];
        const int64_t t = ts[counter];
        if (counter < n_prk && !skip) {
            /* step_prk */
            const int64_t diff = counter % 2 ? 0 : T / N / 2;
            c->prev_idx = t - diff;
            c->t_idx = prk[counter / 4 * 4];
            switch (counter % 4) {
            case 0:
                c->op = PNDM_OP_PRK_FIRST;
                c->push = 1;
                ets_len++;
                break;
            case 3: c->op = PNDM_OP_PRK_LAST; break;
            default: c->op = PNDM_OP_PRK_MID; break;
            }
        } else {
            /* step_plms */
            CORE_ASSERT(skip || ets_len >= 3);
            c->prev_idx = t - T / N;
            c->t_idx = t;
            if (counter != 1) {
                ets_len = (ets_len < 3 ? ets_len : 3) + 1;
                c->push = 1;
            } else {
                c->prev_idx = t;
                c->t_idx = t + T / N;
            }
            if (ets_len == 1 && counter == 0)
                c->op = PNDM_OP_PLMS_FIRST;
            else if (ets_len == 1 && counter == 1)
                c->op = PNDM_OP_PLMS_AVG;
            else if (ets_len == 2)
                c->op = PNDM_OP_PLMS2;
            else if (ets_len == 3)
                c->op = PNDM_OP_PLMS3;
            else
                c->op = PNDM_OP_PLMS4;
        }
        /* torch would wrap a negative index or raise on one >= T: refuse such runs */
        if (t < 0 || t >= T || c->t_idx < 0 || c->t_idx >= T || c->prev_idx >= T)
            return core_fail(err, PNDM_ERR_USAGE,
                             "steps %lld: call %d would use timestep %lld (alphas_cumprod index %lld, previous %lld) "
                             "outside 0..%lld",
                             (long long)N, counter, (long long)t, (long long)c->t_idx, (long long)c->prev_idx,
                             (long long)(T - 1));
        plms_coefficients(&s->sched, c);
        if (!(c->denom > 0) || !isfinite(c->denom) || !isfinite(c->sample_coeff) ||
            !(s->sched.alphas_cumprod[c->t_idx] > 0))
            return core_fail(
                err, PNDM_ERR_MODEL,
                "scheduler config: step %d (timestep %lld -> %lld) divides by zero: alphas_cumprod "
                "%g -> %g (betas too large or zero)",
                counter, (long long)c->t_idx, (long long)c->prev_idx, (double)s->sched.alphas_cumprod[c->t_idx],
                (double)(c->prev_idx >= 0 ? s->sched.alphas_cumprod[c->prev_idx] : s->sched.final_alpha_cumprod));
    }
    return PNDM_OK;
}

static pndm_status pndm_create(pndm_sampler *s, pndm_error *err) {
    if (s->cfg.prediction_type == PNDM_PRED_SAMPLE)
        return core_fail(
            err, PNDM_ERR_MODEL,
            "scheduler config: prediction_type \"sample\" is not supported by PNDMScheduler (only epsilon, "
            "v_prediction)");
    s->state = calloc(1, sizeof(plms_state));
    int64_t *base = malloc((size_t)s->steps * sizeof *base);
    if (!s->state || !base) {
        free(base);
        return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    }
    ((plms_state *)s->state)->v_pred = s->cfg.prediction_type == PNDM_PRED_V;
    pndm_status st = sched_spacing(&s->cfg, s->steps, base, err);
    if (!st) st = plms_build_plan(s, base, err);
    free(base);
    return st;
}

static void pndm_describe(const pndm_sampler *s, char *buf, size_t size) {
    pndm_scheduler_config c = s->cfg;
    c.trained_betas = s->trained_betas ? s->sched.betas : NULL; // only its presence is described
    pndm_scheduler_config_describe(&c, buf, size);
}

const sampler_method sampler_pndm = {
    {"pndm", "diffusers PNDMScheduler: pseudo Runge-Kutta warm-up, then pseudo linear multi-step (PLMS)",
     "N + 9 (N + 1 with skip_prk_steps)", "diffusers 0.30.3 PNDMPipeline + PNDMScheduler", 0},
    "PNDMScheduler",
    PNDM_KEY_NUM_TRAIN_TIMESTEPS | PNDM_KEY_BETA_START | PNDM_KEY_BETA_END | PNDM_KEY_BETA_SCHEDULE |
        PNDM_KEY_TRAINED_BETAS | PNDM_KEY_SKIP_PRK_STEPS | PNDM_KEY_SET_ALPHA_TO_ONE | PNDM_KEY_PREDICTION_TYPE |
        PNDM_KEY_TIMESTEP_SPACING | PNDM_KEY_STEPS_OFFSET,
    6, /* ets (4), cur_sample, cur_model_output */
    pndm_create,
    plms_step,
    plms_reset,
    plms_destroy,
    pndm_describe,
    NULL,
    NULL,
};
