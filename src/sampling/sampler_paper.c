/* The PNDM paper's own samplers, as its code computes them (luping-liu/PNDM @ e771949,
 * runner/method.py, runner/runner.py:sample_image; shared/golden/samplers/NOTES.md §1):
 *   ddim-paper  gen_order_1: DDIM (the "transfer" step)
 *   s-pndm      gen_order_2: a pseudo improved-Euler first step, then 2nd-order pseudo
 *               linear multi-step on eps
 *   f-pndm      gen_order_4: three pseudo Runge-Kutta steps, then 4th-order pseudo linear
 *               multi-step
 *   fon         gen_fon: classical RK4 / AB4 on the one-unit DDIM difference (linear part
 *               frozen at the step's start)
 * The schedule is the paper's (float64-built betas; alphas_cump without a leading 1, read at
 * t + 1); `steps` is its sample_speed: skip = T // steps, seq = range(0, T, skip), so
 * ceil(T / skip) steps from t = seq[-1] down to t = 0 -> t_next = -1. Every model time is the
 * float32 t of the runner's `th.ones(n) * i`, fractional at RK midpoints when skip is odd.
 *
 * Bit for bit on torch 1.13 CPU: each torch op is one float operation rounded once, in the
 * code's order (src/sampling/ is compiled with -ffp-contract=off); `1 / tensor` is a
 * reciprocal; Python constants (1 / 6, 1 / 24) are rounded to float. */
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

extern const sampler_method sampler_ddim_paper, sampler_s_pndm, sampler_f_pndm, sampler_fon;

/* method.py:transfer(x, t, t_next, et) for one (t, t_next) pair:
 *   at = acp[t.long() + 1]; at_next = acp[t_next.long() + 1]
 *   x + (at_next - at) * ((1 / (at.sqrt() * (at.sqrt() + at_next.sqrt()))) * x
 *                         - 1 / (at.sqrt() * (((1 - at_next) * at).sqrt() + ((1 - at) * at_next).sqrt())) * et) */
typedef struct paper_tr {
    float c1, c2, dd; /* x_next = x + dd * (c1 * x - c2 * et) */
} paper_tr;

static paper_tr transfer_coeffs(const float *acp, float t, float t_next) {
    const float at = acp[(int64_t)t + 1], an = acp[(int64_t)t_next + 1]; // .long() truncates toward 0
    const float A = sqrtf(at), Bn = sqrtf(an);
    const float s1 = A + Bn;
    const float p1 = A * s1;
    const float one_an = 1 - an, one_at = 1 - at;
    const float q1 = one_an * at, q2 = one_at * an;
    const float s2 = sqrtf(q1) + sqrtf(q2);
    const float p2 = A * s2;
    paper_tr c = {1.0f / p1, 1.0f / p2, an - at};
    return c;
}

static inline float transfer(const paper_tr *c, float x, float e) {
    const float u = c->c1 * x, v = c->c2 * e;
    const float w = u - v;
    const float d = c->dd * w;
    return x + d;
}

/* What one model call does with its output e. */
typedef enum {
    OP_DDIM,   /* x = transfer(x, t, t_next, e) */
    OP_HEUN1,  /* S-PNDM first step, call 1: e1 = e; x = transfer(x, t, t_next, e1) (the predictor) */
    OP_HEUN2,  /* call 2: x = transfer(x_start, t, t_next, (e1 + e) / 2) */
    OP_AB2,    /* 0.5 * (3 * ets[-1] - ets[-2]) */
    OP_RK1,    /* F-PNDM runge_kutta: e1; x = transfer(x_start, t, t_mid, e1) */
    OP_RK2,    /* e2; x = transfer(x_start, t, t_mid, e2) */
    OP_RK3,    /* e3; x = transfer(x_start, t, t_next, e3) */
    OP_RK4,    /* e4; x = transfer(x_start, t, t_next, (1/6) * (((e1 + 2 e2) + 2 e3) + e4)) */
    OP_AB4,    /* (1/24) * (((55 e1 - 59 e2) + 37 e3) - 9 e4) */
    OP_FON1,   /* gen_fon: d1 = transfer(x, t, t-1, e) - x; x = x_start + (d1 * h) / 2 */
    OP_FON2,   /* d2; x = x_start + (d2 * h) / 2 */
    OP_FON3,   /* d3; x = x_start + d3 * h */
    OP_FON4,   /* d4; x = x_start + (1/6.0) * (((d1 + 2 d2) + 2 d3) + d4) * h */
    OP_FON_AB4 /* d; x = x + (1/24) * (((55 d1 - 59 d2) + 37 d3) - 9 d4) * h */
} paper_op;

typedef struct paper_call {
    paper_op op;
    int push;    /* ets.append(this call's e, or FON's d) */
    paper_tr tr; /* the transfer this call applies (FON: t -> t - 1) */
    float h;     /* FON: t - t_next */
} paper_call;

typedef struct paper_state {
    paper_call *plan; /* (num_calls,) */
    size_t cap;
    float *buf;    /* one block: ets ring (4, n), x_start (n), acc (n) */
    float *ets[4]; /* the last 4 of the code's ever-growing ets list */
    int ets_head;
    float *x_start, *acc;
} paper_state;

/* ---- plan -------------------------------------------------------------------------------- */

/* (T-1) % (T // n) == 0: the first step is t = T - 1 and reads acp[T] (IndexError). */
static int crashes(int T, int n) { return n >= 1 && n <= T && (T - 1) % (T / n) == 0; }

static pndm_status paper_steps(const pndm_sampler *s, int *skip, int *steps, pndm_error *err) {
    const int T = s->cfg.num_train_timesteps, n = s->steps;
    if (crashes(T, n)) {
        int lo = n - 1, hi = n + 1;
        while (lo >= 1 && crashes(T, lo)) lo--;
        while (hi <= T && crashes(T, hi)) hi++;
        char near[96];
        if (lo >= 1 && hi <= T)
            snprintf(near, sizeof near, "%d or %d", lo, hi);
        else if (lo >= 1)
            snprintf(near, sizeof near, "%d or fewer", lo);
        else
            snprintf(near, sizeof near, "%d", hi);
        return core_fail(err, PNDM_ERR_USAGE,
                         "sampler %s: %d steps cannot be run by the paper's code: skip = %d // %d = %d makes the "
                         "first step t = %d, which reads alphas_cump[%d] past the end of its schedule (an IndexError "
                         "in runner/method.py:transfer); nearby step counts that work: %s",
                         s->m->info.name, n, T, n, T / n, T - 1, T, near);
    }
    *skip = T / n;
    *steps = (T + *skip - 1) / *skip; // len(range(0, T, skip))
    return PNDM_OK;
}

static pndm_status paper_create(pndm_sampler *s, pndm_error *err) {
    int skip = 1, S = 1;
    pndm_status st = paper_steps(s, &skip, &S, err);
    if (st) return st;
    const sampler_method *m = s->m;
    const int rk = m == &sampler_f_pndm || m == &sampler_fon; /* 4 calls in each of the first 3 steps */
    const int n_rk = rk ? (S < 3 ? S : 3) : 0;
    const int calls = m == &sampler_s_pndm ? S + 1 : S + 3 * n_rk;
    paper_state *p = calloc(1, sizeof *p);
    if (!p) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->state = p;
    p->plan = calloc((size_t)calls, sizeof *p->plan);
    s->times = malloc((size_t)calls * sizeof *s->times);
    if (!p->plan || !s->times) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->num_steps = S;
    s->num_calls = calls;
    const float *acp = s->sched.alphas_cumprod;
    int c = 0;
    /* for i, j in zip(reversed(seq), reversed(seq_next)): t = ones(n) * i; t_next = ones(n) * j */
    for (int k = 0; k < S; k++) {
        const float t = (float)((S - 1 - k) * skip), tn = k == S - 1 ? -1.0f : (float)((S - 2 - k) * skip);
        const float tsum = t + tn;
        const float tm = tsum / 2; // (t + t_next) / 2
        const paper_tr next = transfer_coeffs(acp, t, tn);
        if (m == &sampler_ddim_paper) {
            s->times[c] = t;
            p->plan[c++] = (paper_call){OP_DDIM, 1, next, 0};
        } else if (m == &sampler_s_pndm) {
            if (k == 0) { /* improved_eular: model(x, t), then model(x2, t_next) */
                s->times[c] = t;
                p->plan[c++] = (paper_call){OP_HEUN1, 1, next, 0};
                s->times[c] = tn;
                p->plan[c++] = (paper_call){OP_HEUN2, 0, next, 0};
            } else {
                s->times[c] = t;
                p->plan[c++] = (paper_call){OP_AB2, 1, next, 0};
            }
        } else if (m == &sampler_f_pndm) {
            if (k < n_rk) { /* runge_kutta at t, t_mid, t_mid, t_next */
                const paper_tr mid = transfer_coeffs(acp, t, tm);
                const float ts[4] = {t, tm, tm, tn};
                const paper_op ops[4] = {OP_RK1, OP_RK2, OP_RK3, OP_RK4};
                const paper_tr trs[4] = {mid, mid, next, next};
                for (int j = 0; j < 4; j++) {
                    s->times[c] = ts[j];
                    p->plan[c++] = (paper_call){ops[j], j == 0, trs[j], 0};
                }
            } else {
                s->times[c] = t;
                p->plan[c++] = (paper_call){OP_AB4, 1, next, 0};
            }
        } else { /* fon: d(e) = transfer(x, t, t - 1, e) - x, h = t - t_next */
            const float t1 = t - 1;
            const paper_tr unit = transfer_coeffs(acp, t, t1);
            const float h = t - tn;
            if (k < n_rk) {
                const float ts[4] = {t, tm, tm, tn};
                const paper_op ops[4] = {OP_FON1, OP_FON2, OP_FON3, OP_FON4};
                for (int j = 0; j < 4; j++) {
                    s->times[c] = ts[j];
                    p->plan[c++] = (paper_call){ops[j], j == 0, unit, h};
                }
            } else {
                s->times[c] = t;
                p->plan[c++] = (paper_call){OP_FON_AB4, 1, unit, h};
            }
        }
    }
    CORE_ASSERT(c == calls);
    return PNDM_OK;
}

/* ---- step -------------------------------------------------------------------------------- */

static pndm_status paper_buffers(paper_state *p, size_t n, pndm_error *err) {
    if (p->cap == n) return PNDM_OK;
    free(p->buf);
    p->buf = sampler_alloc_floats(6, n, "the method's history", err);
    if (!p->buf) return err ? err->code : PNDM_ERR_NOMEM;
    for (int k = 0; k < 4; k++) p->ets[k] = p->buf + (size_t)k * n;
    p->x_start = p->buf + 4 * n;
    p->acc = p->buf + 5 * n;
    p->cap = n;
    return PNDM_OK;
}

static pndm_status paper_step(pndm_sampler *s, int call, const float *e, float *x, size_t n, pndm_error *err) {
    paper_state *p = s->state;
    const paper_call *c = &p->plan[call];
    if (c->op == OP_DDIM) { /* gen_order_1 keeps nothing it uses */
        for (size_t i = 0; i < n; i++) x[i] = transfer(&c->tr, x[i], e[i]);
        return PNDM_OK;
    }
    pndm_status st = paper_buffers(p, n, err);
    if (st) return st;
    float *xs = p->x_start, *acc = p->acc;
    const int fon = c->op >= OP_FON1;
    if (c->push) {
        p->ets_head = (p->ets_head + 1) % 4;
        if (!fon) memcpy(p->ets[p->ets_head], e, n * sizeof *e); // FON pushes its d below
    }
    float *e1 = p->ets[p->ets_head];                 // ets[-1]
    const float *e2 = p->ets[(p->ets_head + 3) % 4]; // ets[-2]
    const float *e3 = p->ets[(p->ets_head + 2) % 4]; // ets[-3]
    const float *e4 = p->ets[(p->ets_head + 1) % 4]; // ets[-4]
    const float c6 = (float)(1.0 / 6.0), c24 = (float)(1.0 / 24.0);
    const float h = c->h;
    switch (c->op) {
    case OP_DDIM: break;
    case OP_HEUN1:
        memcpy(xs, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = transfer(&c->tr, xs[i], e[i]); // x_2
        break;
    case OP_HEUN2:
        for (size_t i = 0; i < n; i++) {
            const float m = (e1[i] + e[i]) / 2; // (e_1 + e_2) / 2
            x[i] = transfer(&c->tr, xs[i], m);
        }
        break;
    case OP_AB2:
        for (size_t i = 0; i < n; i++) {
            const float a = 3 * e1[i];
            const float d = a - e2[i];
            const float m = 0.5f * d; // 0.5 * (3 * ets[-1] - ets[-2])
            x[i] = transfer(&c->tr, x[i], m);
        }
        break;
    case OP_RK1:
        memcpy(xs, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) {
            acc[i] = e[i];
            x[i] = transfer(&c->tr, xs[i], e[i]); // x_2 = transfer(x, t, t_mid, e_1)
        }
        break;
    case OP_RK2:
    case OP_RK3:
        for (size_t i = 0; i < n; i++) {
            const float two = 2 * e[i];
            acc[i] = acc[i] + two; // e_1 + 2 * e_2 (+ 2 * e_3)
            x[i] = transfer(&c->tr, xs[i], e[i]);
        }
        break;
    case OP_RK4:
        for (size_t i = 0; i < n; i++) {
            const float sum = acc[i] + e[i];
            const float m = c6 * sum; // (1 / 6) * (e_1 + 2 * e_2 + 2 * e_3 + e_4)
            x[i] = transfer(&c->tr, xs[i], m);
        }
        break;
    case OP_AB4:
        for (size_t i = 0; i < n; i++) {
            const float a = 55 * e1[i], b = 59 * e2[i], d = 37 * e3[i], f = 9 * e4[i];
            const float ab = a - b;
            const float abd = ab + d;
            const float sum = abd - f;
            const float m = c24 * sum; // (1 / 24) * (55 e1 - 59 e2 + 37 e3 - 9 e4)
            x[i] = transfer(&c->tr, x[i], m);
        }
        break;
    case OP_FON1:
        memcpy(xs, x, n * sizeof *x);
        for (size_t i = 0; i < n; i++) {
            const float d = transfer(&c->tr, xs[i], e[i]) - xs[i]; // delta_1 = img_ - img
            e1[i] = d;
            acc[i] = d;
            const float dh = d * h;
            x[i] = xs[i] + dh / 2.0f; // img_2 = img + delta_1 * (t - t_next) / 2.0
        }
        break;
    case OP_FON2:
    case OP_FON3:
        for (size_t i = 0; i < n; i++) {
            const float d = transfer(&c->tr, xs[i], e[i]) - xs[i];
            const float two = 2 * d;
            acc[i] = acc[i] + two;
            const float dh = d * h;
            x[i] = c->op == OP_FON2 ? xs[i] + dh / 2.0f : xs[i] + dh; // img_3, img_4
        }
        break;
    case OP_FON4:
        for (size_t i = 0; i < n; i++) {
            const float d = transfer(&c->tr, xs[i], e[i]) - xs[i];
            const float sum = acc[i] + d;
            const float delta = c6 * sum; // (1 / 6.0) * (delta_1 + 2*delta_2 + 2*delta_3 + delta_4)
            const float dh = delta * h;
            x[i] = xs[i] + dh; // img + delta * (t - t_next)
        }
        break;
    case OP_FON_AB4:
        for (size_t i = 0; i < n; i++) {
            const float d = transfer(&c->tr, x[i], e[i]) - x[i];
            e1[i] = d; // ets.append(delta1)
            const float a = 55 * e1[i], b = 59 * e2[i], dd = 37 * e3[i], f = 9 * e4[i];
            const float ab = a - b;
            const float abd = ab + dd;
            const float sum = abd - f;
            const float delta = c24 * sum;
            const float dh = delta * h;
            x[i] = x[i] + dh;
        }
        break;
    }
    return PNDM_OK;
}

static void paper_reset(pndm_sampler *s) {
    paper_state *p = s->state;
    if (p) p->ets_head = 0; // ets = [] at the first step
}

static void paper_destroy(pndm_sampler *s) {
    paper_state *p = s->state;
    if (!p) return;
    free(p->plan);
    free(p->buf);
    free(p);
    s->state = NULL;
}

static void paper_describe(const pndm_sampler *s, char *buf, size_t size) {
    static const char *const names[] = {"DDIM", "S-PNDM", "F-PNDM", "FON"};
    const sampler_method *m = s->m;
    const int i = m == &sampler_ddim_paper ? 0 : m == &sampler_s_pndm ? 1 : m == &sampler_f_pndm ? 2 : 3;
    const pndm_scheduler_config *c = &s->cfg;
    static const char *const types[] = {"linear", "quad", "cosine", "?"};
    char bs[32], be[32], range[96] = "";
    sched_format_double(c->beta_start, bs, sizeof bs);
    sched_format_double(c->beta_end, be, sizeof be);
    if (c->beta_schedule != PNDM_BETA_SQUAREDCOS_CAP_V2)
        snprintf(range, sizeof range, ", beta_start=%s, beta_end=%s", bs, be);
    snprintf(buf, size, "PNDM paper %s (Schedule(type=%s%s, diffusion_step=%d), sample_speed=%d: skip %d, %d steps)",
             names[i], types[c->beta_schedule <= PNDM_BETA_SQUAREDCOS_CAP_V2 ? c->beta_schedule : 3], range,
             c->num_train_timesteps, s->steps, c->num_train_timesteps / s->steps, s->num_steps);
}

#define PAPER_KEYS (PNDM_KEY_NUM_TRAIN_TIMESTEPS | PNDM_KEY_BETA_START | PNDM_KEY_BETA_END | PNDM_KEY_BETA_SCHEDULE)

const sampler_method sampler_ddim_paper = {
    {"ddim-paper", "the PNDM paper's DDIM (alphas at t+1, last target alphas_cump[0], no clipping)", "S",
     "luping-liu/PNDM runner/method.py gen_order_1", 0},
    NULL,
    PAPER_KEYS,
    0,
    paper_create,
    paper_step,
    paper_reset,
    paper_destroy,
    paper_describe,
    NULL,
    NULL,
};
const sampler_method sampler_s_pndm = {
    {"s-pndm", "the paper's S-PNDM: pseudo improved Euler, then 2nd-order pseudo linear multi-step", "S + 1",
     "luping-liu/PNDM runner/method.py gen_order_2", 0},
    NULL,
    PAPER_KEYS,
    4,
    paper_create,
    paper_step,
    paper_reset,
    paper_destroy,
    paper_describe,
    NULL,
    NULL,
};
const sampler_method sampler_f_pndm = {
    {"f-pndm", "the paper's F-PNDM: 3 pseudo Runge-Kutta steps, then 4th-order pseudo linear multi-step",
     "S + 9 (4 per step when S <= 3)", "luping-liu/PNDM runner/method.py gen_order_4", 0},
    NULL,
    PAPER_KEYS,
    6,
    paper_create,
    paper_step,
    paper_reset,
    paper_destroy,
    paper_describe,
    NULL,
    NULL,
};
const sampler_method sampler_fon = {
    {"fon", "the paper's FON: classical 4th-order Runge-Kutta / Adams-Bashforth on the DDIM difference",
     "S + 9 (4 per step when S <= 3)", "luping-liu/PNDM runner/method.py gen_fon", 0},
    NULL,
    PAPER_KEYS,
    6,
    paper_create,
    paper_step,
    paper_reset,
    paper_destroy,
    paper_describe,
    NULL,
    NULL,
};
