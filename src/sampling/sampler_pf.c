/* The PNDM paper's PF: the probability-flow ODE of the linear VP-SDE, integrated from t = 1 to
 * 1e-3 by scipy 1.10's solve_ivp(method='RK45', rtol = atol = tol) exactly as the paper's runner
 * calls it (luping-liu/PNDM runner/runner.py:sample_image, runner/method.py:gen_pflow;
 * scipy/integrate/_ivp/rk.py, common.py; shared/golden/samplers/NOTES.md §1.4).
 *
 * The solver state is float64 over the whole flattened batch (its error norm couples the images
 * of a batch: a pf image depends on the batch it was made in). Each model call is one
 * evaluation of the drift: the state is cast to float32 for the model, the drift is float32 and
 * widened again. Not bit-exact against torch: its exp is SLEEF's (within an ulp of libm's) and
 * numpy's dot/norm use BLAS summation orders; the golden traces take the same accepted and
 * rejected steps. */
#include "sampler.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

extern const sampler_method sampler_pf;

/* RK45 (Dormand-Prince 5(4)) as scipy 1.10 writes it: C, A, B, E; order 5, error order 4. */
#define PF_STAGES 6
static const double PF_C[PF_STAGES] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1};
static const double PF_A[PF_STAGES][5] = {
    {0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
};
static const double PF_B[PF_STAGES] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84};
static const double PF_E[PF_STAGES + 1] = {-71.0 / 57600,    0,           71.0 / 16695, -71.0 / 1920,
                                           17253.0 / 339200, -22.0 / 525, 1.0 / 40};
#define PF_SAFETY 0.9
#define PF_MIN_FACTOR 0.2
#define PF_MAX_FACTOR 10.0
#define PF_ERROR_EXPONENT (-1.0 / (4 + 1)) /* -1 / (error_estimator_order + 1) */

typedef enum { PF_F0, PF_F1, PF_STAGE, PF_FNEW, PF_DONE } pf_phase;

typedef struct pf_state {
    size_t n;
    double *buf;                /* one block of 12 n */
    double *y, *f, *y_new, *ev; /* state, f(t, y), candidate, the pending evaluation's state */
    double *K;                  /* (7, n) the stages */
    double *scale;              /* (n) */
    double t, t_bound, direction, rtol, atol;
    double h_abs, h, t_new, h0, d1, t_eval;
    int stage, step_rejected;
    pf_phase phase;
    int accepted, rejected, nfev, failed;
    float b0, b1; /* betas[0], betas[-1] of the paper's schedule */
    int T;
} pf_state;

/* common.py: norm(x / scale) = np.linalg.norm(x / scale) / x.size ** 0.5 */
static double rms_scaled(const double *x, const double *scale, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = x[i] / scale[i];
        s += v * v;
    }
    return sqrt(s) / pow((double)n, 0.5);
}

static void set_eval(pndm_sampler *s, pf_state *p, double t, float *x) {
    /* drift_func: th.from_numpy(x).type(th.float32); the model gets t_start * (total_step - 1) */
    p->t_eval = t;
    for (size_t i = 0; i < p->n; i++) x[i] = (float)p->ev[i];
    const float ts = (float)t; // th.ones(n) * t
    s->next_time = ts * (float)(p->T - 1);
}

static void finish(pndm_sampler *s, pf_state *p, float *x) {
    /* th.tensor(solution.y[:, -1]).type(th.float32): the last accepted state */
    for (size_t i = 0; i < p->n; i++) x[i] = (float)p->y[i];
    p->phase = PF_DONE;
    s->done = 1;
}

/* The drift of gen_pflow at (t_eval, x) given the model output e (float32 torch ops), widened
 * to float64 into out. */
static void drift(const pf_state *p, const float *x, const float *e, double *out) {
    const float ts = (float)p->t_eval;
    const float b0 = p->b0, b1 = p->b1, T = (float)p->T;
    const float db = b1 - b0;
    const float m = ts * db;
    const float s1 = b0 + m;
    const float beta = s1 * T; // (beta_0 + t_start * (beta_1 - beta_0)) * total_step
    const float tsq = ts * ts;
    const float l1 = -0.25f * tsq;
    const float l2 = l1 * db;
    const float l3 = 0.5f * ts;
    const float l4 = l3 * b0;
    const float l5 = l2 - l4;
    const float lmc = l5 * T; // (-0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0) * total_step
    const float ex = expf(2.0f * lmc);
    const float std = sqrtf(1.0f - ex); // th.sqrt(1. - th.exp(2. * log_mean_coeff))
    const float k = -0.5f * beta;
    const float diffusion = sqrtf(beta);
    const float d2 = diffusion * diffusion; // diffusion ** 2
    for (size_t i = 0; i < p->n; i++) {
        const float lin = k * x[i];      // -0.5 * beta_t * img
        const float score = -e[i] / std; // - model(img, t) / std
        const float a = d2 * score;
        const float b = a * 0.5f;
        out[i] = (double)(lin - b); // drift - diffusion ** 2 * score * 0.5
    }
}

/* The evaluation for stage s of the current attempt: y + (K[:s].T @ A[s][:s]) * h at t + C[s] h */
static void eval_stage(pndm_sampler *s, pf_state *p, float *x) {
    const int st = p->stage;
    const size_t n = p->n;
    for (size_t i = 0; i < n; i++) {
        double dot = 0;
        for (int j = 0; j < st; j++) dot += p->K[(size_t)j * n + i] * PF_A[st][j];
        const double dy = dot * p->h;
        p->ev[i] = p->y[i] + dy;
    }
    set_eval(s, p, p->t + PF_C[st] * p->h, x);
}

/* One pass of the while loop of RungeKutta._step_impl: a step of h_abs from (t, y). */
static void attempt(pndm_sampler *s, pf_state *p, double min_step, float *x) {
    if (p->h_abs < min_step) { /* TOO_SMALL_STEP: solve_ivp stops, y[:, -1] is the last state */
        p->failed = 1;
        finish(s, p, x);
        return;
    }
    double h = p->h_abs * p->direction;
    double t_new = p->t + h;
    if (p->direction * (t_new - p->t_bound) > 0) t_new = p->t_bound;
    h = t_new - p->t;
    p->h = h;
    p->t_new = t_new;
    p->h_abs = fabs(h);
    memcpy(p->K, p->f, p->n * sizeof *p->K); // K[0] = f
    p->stage = 1;
    p->phase = PF_STAGE;
    eval_stage(s, p, x);
}

static double min_step_at(const pf_state *p) { return 10 * fabs(nextafter(p->t, p->direction * INFINITY) - p->t); }

/* RungeKutta._step_impl's start: h_abs clamped to [min_step, max_step = inf]. */
static void begin_step(pndm_sampler *s, pf_state *p, float *x) {
    const double min_step = min_step_at(p);
    if (p->h_abs < min_step) p->h_abs = min_step;
    p->step_rejected = 0;
    attempt(s, p, min_step, x);
}

static pndm_status pf_buffers(pf_state *p, size_t n, pndm_error *err) {
    if (p->n == n && p->buf) return PNDM_OK;
    free(p->buf);
    p->buf = NULL;
    size_t total;
    if (!core_mul_size(n, 12, &total) || !core_mul_size(total, sizeof(double), &total))
        return core_fail(err, PNDM_ERR_NOMEM, "sampler pf: samples of %zu floats are too large", n);
    p->buf = malloc(total);
    if (!p->buf) return core_fail(err, PNDM_ERR_NOMEM, "sampler pf: out of memory for the solver (%zu bytes)", total);
    p->n = n;
    p->y = p->buf;
    p->f = p->y + n;
    p->y_new = p->f + n;
    p->ev = p->y_new + n;
    p->scale = p->ev + n;
    p->K = p->scale + n;
    return PNDM_OK;
}

static void pf_reset(pndm_sampler *s) {
    pf_state *p = s->state;
    p->phase = PF_F0;
    p->t = 1.0; // t_span = (1, 1e-3)
    p->t_bound = 1e-3;
    p->direction = -1.0; // np.sign(t_bound - t0)
    p->t_eval = 1.0;
    p->accepted = p->rejected = p->nfev = p->failed = 0;
    p->h_abs = 0;
    s->next_time = 1.0f * (float)(p->T - 1);
}

static pndm_status pf_create(pndm_sampler *s, pndm_error *err) {
    pf_state *p = calloc(1, sizeof *p);
    if (!p) return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    s->state = p;
    p->T = s->cfg.num_train_timesteps;
    p->b0 = s->sched.betas[0];
    p->b1 = s->sched.betas[p->T - 1];
    /* tol = 1e-5 if sample_speed > 1 else sample_speed; validate_tol keeps rtol >= 100 eps */
    const double tol = s->steps > 1 ? 1e-5 : (double)s->steps;
    p->rtol = tol < 100 * 2.220446049250313e-16 ? 100 * 2.220446049250313e-16 : tol;
    p->atol = tol;
    s->num_calls = PNDM_CALLS_ADAPTIVE;
    s->num_steps = 0;
    pf_reset(s);
    return PNDM_OK;
}

static pndm_status pf_step(pndm_sampler *s, int call, const float *e, float *x, size_t n, pndm_error *err) {
    pf_state *p = s->state;
    if (call == 0) {
        pndm_status st = pf_buffers(p, n, err);
        if (st) return st;
        for (size_t i = 0; i < n; i++) p->y[i] = (double)x[i]; // y0 = noise.numpy() as float64
    }
    p->nfev++;
    switch (p->phase) {
    case PF_F0: {
        /* self.f = self.fun(self.t, self.y); select_initial_step(...) */
        drift(p, x, e, p->f);
        for (size_t i = 0; i < n; i++) p->scale[i] = p->atol + fabs(p->y[i]) * p->rtol;
        const double d0 = rms_scaled(p->y, p->scale, n);
        p->d1 = rms_scaled(p->f, p->scale, n);
        p->h0 = d0 < 1e-5 || p->d1 < 1e-5 ? 1e-6 : 0.01 * d0 / p->d1;
        const double hd = p->h0 * p->direction;
        for (size_t i = 0; i < n; i++) {
            const double v = hd * p->f[i];
            p->ev[i] = p->y[i] + v; // y1 = y0 + h0 * direction * f0
        }
        p->phase = PF_F1;
        set_eval(s, p, p->t + p->h0 * p->direction, x);
        break;
    }
    case PF_F1: {
        double *f1 = p->K; // scratch
        drift(p, x, e, f1);
        for (size_t i = 0; i < n; i++) f1[i] = f1[i] - p->f[i];
        const double d2 = rms_scaled(f1, p->scale, n) / p->h0;
        double h1;
        if (p->d1 <= 1e-15 && d2 <= 1e-15) {
            h1 = p->h0 * 1e-3;
            if (h1 < 1e-6) h1 = 1e-6; // max(1e-6, h0 * 1e-3)
        } else {
            h1 = pow(0.01 / (p->d1 > d2 ? p->d1 : d2), 1.0 / (4 + 1));
        }
        p->h_abs = 100 * p->h0 < h1 ? 100 * p->h0 : h1; // min(100 * h0, h1)
        begin_step(s, p, x);
        break;
    }
    case PF_STAGE:
        drift(p, x, e, p->K + (size_t)p->stage * n); // K[s] = fun(t + c * h, y + dy)
        if (p->stage < PF_STAGES - 1) {
            p->stage++;
            eval_stage(s, p, x);
        } else {
            /* y_new = y + h * np.dot(K[:-1].T, B); f_new = fun(t + h, y_new) */
            for (size_t i = 0; i < n; i++) {
                double dot = 0;
                for (int j = 0; j < PF_STAGES; j++) dot += p->K[(size_t)j * n + i] * PF_B[j];
                const double v = p->h * dot;
                p->y_new[i] = p->y[i] + v;
            }
            memcpy(p->ev, p->y_new, n * sizeof *p->ev);
            p->phase = PF_FNEW;
            set_eval(s, p, p->t + p->h, x);
        }
        break;
    case PF_FNEW: {
        double *f_new = p->K + (size_t)PF_STAGES * n;
        drift(p, x, e, f_new); // K[-1] = f_new
        /* scale = atol + max(|y|, |y_new|) * rtol; error_norm = norm(np.dot(K.T, E) * h / scale) */
        for (size_t i = 0; i < n; i++) {
            const double a = fabs(p->y[i]), b = fabs(p->y_new[i]);
            const double m = a != a || b != b ? NAN : (a > b ? a : b); // np.maximum keeps NaN
            p->scale[i] = p->atol + m * p->rtol;
            double dot = 0;
            for (int j = 0; j <= PF_STAGES; j++) dot += p->K[(size_t)j * n + i] * PF_E[j];
            p->ev[i] = dot * p->h; // scratch: the error estimate
        }
        const double err_norm = rms_scaled(p->ev, p->scale, n);
        if (err_norm < 1) {
            double factor = err_norm == 0 ? PF_MAX_FACTOR : PF_SAFETY * pow(err_norm, PF_ERROR_EXPONENT);
            if (factor > PF_MAX_FACTOR) factor = PF_MAX_FACTOR;
            if (p->step_rejected && factor > 1) factor = 1;
            p->h_abs *= factor;
            /* accepted: t = t_new, y = y_new, f = f_new */
            p->t = p->t_new;
            memcpy(p->y, p->y_new, n * sizeof *p->y);
            memcpy(p->f, f_new, n * sizeof *p->f);
            p->accepted++;
            if (p->direction * (p->t - p->t_bound) >= 0)
                finish(s, p, x);
            else
                begin_step(s, p, x);
        } else {
            double factor = PF_SAFETY * pow(err_norm, PF_ERROR_EXPONENT);
            if (!(factor > PF_MIN_FACTOR)) factor = PF_MIN_FACTOR; // max(MIN_FACTOR, ...)
            p->h_abs *= factor;
            p->step_rejected = 1;
            p->rejected++;
            attempt(s, p, min_step_at(p), x);
        }
        break;
    }
    case PF_DONE: return core_fail(err, PNDM_ERR_USAGE, "sampler pf: the integration is finished");
    }
    return PNDM_OK;
}

static void pf_destroy(pndm_sampler *s) {
    pf_state *p = s->state;
    if (!p) return;
    free(p->buf);
    free(p);
    s->state = NULL;
}

static void pf_describe(const pndm_sampler *s, char *buf, size_t size) {
    const pndm_scheduler_config *c = &s->cfg;
    const pf_state *p = s->state;
    static const char *const types[] = {"linear", "quad", "cosine", "?"};
    char bs[32], be[32], range[96] = "", tol[32];
    sched_format_double(c->beta_start, bs, sizeof bs);
    sched_format_double(c->beta_end, be, sizeof be);
    sched_format_double(p->atol, tol, sizeof tol);
    if (c->beta_schedule != PNDM_BETA_SQUAREDCOS_CAP_V2)
        snprintf(range, sizeof range, ", beta_start=%s, beta_end=%s", bs, be);
    snprintf(buf, size, "PNDM paper PF (Schedule(type=%s%s, diffusion_step=%d), RK45 rtol=atol=%s, t 1 -> 0.001)",
             types[c->beta_schedule <= PNDM_BETA_SQUAREDCOS_CAP_V2 ? c->beta_schedule : 3], range,
             c->num_train_timesteps, tol);
}

int sampler_pf_state(const pndm_sampler *s, double *t, const double **y, int *accepted, int *rejected, int *nfev) {
    if (!s || s->m != &sampler_pf) return 0;
    const pf_state *p = s->state;
    if (t) *t = p->t;
    if (y) *y = p->y;
    if (accepted) *accepted = p->accepted;
    if (rejected) *rejected = p->rejected;
    if (nfev) *nfev = p->nfev;
    return 1;
}

const sampler_method sampler_pf = {
    {"pf", "the paper's PF: probability-flow ODE, scipy RK45 (rtol = atol = 1e-5) over the whole batch",
     "adaptive (2 + 6 per solver step; N only sets the tolerance: N = 1 -> 1)",
     "luping-liu/PNDM runner/method.py gen_pflow + scipy 1.10 solve_ivp RK45", 1},
    NULL,
    PNDM_KEY_NUM_TRAIN_TIMESTEPS | PNDM_KEY_BETA_START | PNDM_KEY_BETA_END | PNDM_KEY_BETA_SCHEDULE,
    24, /* 12 float64 buffers: y, f, y_new, the evaluation, scale and the 7 stages */
    pf_create,
    pf_step,
    pf_reset,
    pf_destroy,
    pf_describe,
    NULL,
    NULL,
};
