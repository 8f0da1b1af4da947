/* Noise schedules (see schedule.h): diffusers 0.30.3's betas_for_alpha_bar / torch.linspace
 * betas and torch.cumprod alphas_cumprod (schedulers/scheduling_pndm.py, scheduling_ddim.py,
 * scheduling_ddpm.py __init__), the PNDM paper's float64-built tables (luping-liu/PNDM
 * runner/schedule.py:get_schedule), and set_timesteps' spacing. Compiled with
 * -ffp-contract=off (CMakeLists.txt): each float operation is one torch op, rounded once;
 * the fmaf calls are the fused operations of torch's own kernels. */
#include "schedule.h"
#include "core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* torch.linspace(a, b, n, dtype=torch.float32) as torch 1.13's CPU kernel computes it
 * (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp, linspace_kernel, one thread):
 * step = (b - a) / (n - 1) in float; the vectorised loop handles 16 elements per iteration as
 * two 8-lane Vectorized<float>::arange(base, step), base = a + step*idx (idx < n/2) or
 * b - step*(n-1-idx), each a fused multiply-add, lanes base + k*step rounded twice; the
 * remaining n % 16 elements use the scalar formula (fused). */
static void torch_linspace_f32(float a, float b, int64_t n, float *out /* (n,) */) {
    if (n == 1) {
        out[0] = a; // at::linspace: steps == 1 -> fill_(start)
        return;
    }
    const float step = (b - a) / (float)(n - 1);
    const int64_t half = n / 2;
    const int64_t vec_end = n - n % 16;
    for (int64_t idx = 0; idx < vec_end; idx += 8) {
        const float base = idx < half ? fmaf(step, (float)idx, a) : fmaf(-step, (float)(n - 1 - idx), b);
        for (int k = 0; k < 8; k++) {
            const float ks = (float)k * step;
            out[idx + k] = base + ks;
        }
    }
    for (int64_t idx = vec_end; idx < n; idx++)
        out[idx] = idx < half ? fmaf(step, (float)idx, a) : fmaf(-step, (float)(n - 1 - idx), b);
}

/* diffusers betas_for_alpha_bar(T) (alpha_transform_type "cosine", max_beta 0.999) and the
 * paper's copy of it: Python doubles (glibc cos, pow). */
static double alpha_bar_cosine(double t) {
    const double pi = 3.141592653589793; // math.pi
    return pow(cos((t + 0.008) / 1.008 * pi / 2), 2.0);
}

static double cosine_beta(int i, int T) {
    const double t1 = (double)i / (double)T, t2 = (double)(i + 1) / (double)T;
    double b = 1 - alpha_bar_cosine(t2) / alpha_bar_cosine(t1);
    return 0.999 < b ? 0.999 : b; // min(b, max_beta)
}

/* alphas = 1.0 - betas; alphas_cumprod = torch.cumprod(alphas, 0), which accumulates in double
 * on the CPU (acc_type<float> = double) and rounds each partial product */
static void cumprod_alphas(const float *betas, int T, float *acp /* (T,) */) {
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        const float alpha = 1.0f - betas[i];
        acc *= (double)alpha;
        acp[i] = (float)acc;
    }
}

/* diffusers rescale_zero_terminal_snr(betas) (scheduling_ddim.py / scheduling_ddpm.py), float32
 * torch ops; scratch holds T floats. */
static void rescale_zero_terminal_snr(float *betas, int T, float *scratch) {
    float *abs_ = scratch; // alphas_bar_sqrt (T,)
    cumprod_alphas(betas, T, abs_);
    for (int i = 0; i < T; i++) abs_[i] = sqrtf(abs_[i]);
    const float s0 = abs_[0], sT = abs_[T - 1];
    for (int i = 0; i < T; i++) abs_[i] = abs_[i] - sT; // alphas_bar_sqrt -= alphas_bar_sqrt_T
    const float d = s0 - sT;
    const float f = s0 / d;
    for (int i = 0; i < T; i++) abs_[i] = abs_[i] * f;       // *= s0 / (s0 - sT)
    for (int i = 0; i < T; i++) abs_[i] = abs_[i] * abs_[i]; // alphas_bar = alphas_bar_sqrt ** 2
    /* alphas = cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]]); betas = 1 - alphas */
    for (int i = T - 1; i >= 1; i--) betas[i] = 1.0f - abs_[i] / abs_[i - 1];
    betas[0] = 1.0f - abs_[0];
}

static pndm_status schedule_alloc(sched_schedule *s, int T, pndm_error *err) {
    memset(s, 0, sizeof *s);
    s->num_train_timesteps = T;
    s->betas = malloc((size_t)T * sizeof *s->betas);
    s->alphas_cumprod = malloc((size_t)T * sizeof *s->alphas_cumprod);
    if (!s->betas || !s->alphas_cumprod) {
        sched_schedule_free(s);
        return core_fail(err, PNDM_ERR_NOMEM, "scheduler: out of memory for %d betas", T);
    }
    return PNDM_OK;
}

pndm_status sched_schedule_init(sched_schedule *s, const pndm_scheduler_config *cfg, int flags, pndm_error *err) {
    memset(s, 0, sizeof *s);
    pndm_status st = sched_config_validate(cfg, NULL, err);
    if (st) return st;
    if (cfg->beta_schedule == PNDM_BETA_SIGMOID && !(flags & SCHED_ALLOW_SIGMOID) && !cfg->trained_betas)
        return core_fail(err, PNDM_ERR_MODEL,
                         "scheduler config: beta_schedule \"sigmoid\" is DDPMScheduler's only (use --sampler ddpm)");
    const int T = cfg->num_train_timesteps;
    if ((st = schedule_alloc(s, T, err)) != PNDM_OK) return st;
    /* the scheduler's __init__ */
    if (cfg->trained_betas) {
        memcpy(s->betas, cfg->trained_betas, (size_t)T * sizeof *s->betas);
    } else if (cfg->beta_schedule == PNDM_BETA_LINEAR) {
        torch_linspace_f32((float)cfg->beta_start, (float)cfg->beta_end, T, s->betas);
    } else if (cfg->beta_schedule == PNDM_BETA_SCALED_LINEAR) {
        /* torch.linspace(beta_start**0.5, beta_end**0.5, T) ** 2: Python float pow, then a
         * float32 square */
        torch_linspace_f32((float)pow(cfg->beta_start, 0.5), (float)pow(cfg->beta_end, 0.5), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
    } else if (cfg->beta_schedule == PNDM_BETA_SQUAREDCOS_CAP_V2) {
        for (int i = 0; i < T; i++) s->betas[i] = (float)cosine_beta(i, T);
    } else {
        /* DDPMScheduler "sigmoid": torch.sigmoid(torch.linspace(-6, 6, T)) * (beta_end -
         * beta_start) + beta_start (torch's sigmoid uses SLEEF expf: within an ulp here) */
        torch_linspace_f32(-6.0f, 6.0f, T, s->betas);
        const float scale = (float)(cfg->beta_end - cfg->beta_start), shift = (float)cfg->beta_start;
        for (int i = 0; i < T; i++) {
            const float e = expf(-s->betas[i]);
            const float sig = 1.0f / (1.0f + e);
            const float m = sig * scale;
            s->betas[i] = m + shift;
        }
    }
    if ((flags & SCHED_RESCALE_ZERO_SNR) && cfg->rescale_betas_zero_snr)
        rescale_zero_terminal_snr(s->betas, T, s->alphas_cumprod);
    cumprod_alphas(s->betas, T, s->alphas_cumprod);
    /* final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else alphas_cumprod[0] */
    s->final_alpha_cumprod = cfg->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return PNDM_OK;
}

/* np.linspace(a, b, n) in float64 (numpy 1.24 function_base.py): step = (b - a) / (n - 1),
 * y = arange(n) * step + a, the last element set to b; n = 1: [a]. */
static void numpy_linspace_f64(double a, double b, int n, double *out /* (n,) */) {
    if (n == 1) {
        out[0] = a; // y = arange(1) * delta + start
        return;
    }
    const double delta = b - a, step = delta / (double)(n - 1);
    for (int i = 0; i < n; i++) out[i] = step == 0 ? ((double)i / (double)(n - 1)) * delta + a : (double)i * step + a;
    out[n - 1] = b;
}

pndm_status sched_schedule_init_paper(sched_schedule *s, const pndm_scheduler_config *cfg, pndm_error *err) {
    memset(s, 0, sizeof *s);
    pndm_status st = sched_config_validate(cfg, NULL, err);
    if (st) return st;
    if (cfg->trained_betas)
        return core_fail(err, PNDM_ERR_MODEL,
                         "scheduler config: trained_betas: the paper's methods build their own schedule (linear, "
                         "quad or cosine from beta_schedule); use --sampler pndm, ddim or ddpm");
    if (cfg->beta_schedule == PNDM_BETA_SIGMOID)
        return core_fail(err, PNDM_ERR_MODEL,
                         "scheduler config: beta_schedule \"sigmoid\" has no counterpart in the paper's code (linear, "
                         "quad, cosine)");
    const int T = cfg->num_train_timesteps;
    if ((st = schedule_alloc(s, T, err)) != PNDM_OK) return st;
    double *b64 = malloc((size_t)T * sizeof *b64);
    if (!b64) {
        sched_schedule_free(s);
        return core_fail(err, PNDM_ERR_NOMEM, "scheduler: out of memory for %d betas", T);
    }
    /* get_schedule: betas in float64, then th.from_numpy(betas).float() */
    if (cfg->beta_schedule == PNDM_BETA_LINEAR) {
        /* "linear": np.linspace(beta_start, beta_end, T, dtype=np.float64) */
        numpy_linspace_f64(cfg->beta_start, cfg->beta_end, T, b64);
    } else if (cfg->beta_schedule == PNDM_BETA_SCALED_LINEAR) {
        /* "quad": np.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=np.float64) ** 2 */
        numpy_linspace_f64(pow(cfg->beta_start, 0.5), pow(cfg->beta_end, 0.5), T, b64);
        for (int i = 0; i < T; i++) b64[i] = b64[i] * b64[i];
    } else {
        /* "cosine": betas_for_alpha_bar(T, lambda t: cos((t + 0.008) / 1.008 * pi / 2) ** 2) */
        for (int i = 0; i < T; i++) b64[i] = cosine_beta(i, T);
    }
    for (int i = 0; i < T; i++) s->betas[i] = (float)b64[i];
    free(b64);
    /* alphas = 1.0 - betas; alphas_cump = alphas.cumprod(dim=0): no leading 1 */
    cumprod_alphas(s->betas, T, s->alphas_cumprod);
    s->final_alpha_cumprod = 0.0f;
    return PNDM_OK;
}

void sched_schedule_free(sched_schedule *s) {
    if (!s) return;
    free(s->betas);
    free(s->alphas_cumprod);
    s->betas = s->alphas_cumprod = NULL;
}

pndm_status sched_spacing(const pndm_scheduler_config *cfg, int steps, int64_t *out, pndm_error *err) {
    const int64_t T = cfg->num_train_timesteps, N = steps;
    if (N < 1 || N > T)
        return core_fail(err, PNDM_ERR_USAGE, "steps must be in 1..num_train_timesteps = %lld (got %d)", (long long)T,
                         steps);
    /* PNDMScheduler.set_timesteps, first part (the same in DDIM/DDPM) */
    switch (cfg->timestep_spacing) {
    case PNDM_SPACING_LINSPACE: {
        /* np.linspace(0, T - 1, N).round().astype(np.int64): y = arange(N) * step + 0.0, last
         * element set to stop; round half to even */
        if (N == 1) {
            out[0] = 0;
            break;
        }
        const double step = (double)(T - 1) / (double)(N - 1);
        for (int64_t i = 0; i < N - 1; i++) out[i] = (int64_t)rint((double)i * step + 0.0);
        out[N - 1] = T - 1;
        break;
    }
    case PNDM_SPACING_LEADING: {
        /* step_ratio = T // N; (np.arange(0, N) * step_ratio).round() + steps_offset */
        const int64_t ratio = T / N;
        for (int64_t i = 0; i < N; i++) out[i] = i * ratio + cfg->steps_offset;
        break;
    }
    case PNDM_SPACING_TRAILING: {
        /* np.round(np.arange(T, 0, -T / N))[::-1].astype(np.int64) - 1, with numpy's float
         * arange: length ceil((0 - T) / -ratio), element 1 = T + (-ratio), the rest
         * T + i * ((T - ratio) - T) (numpy's DOUBLE_fill). The length can come out as N + 1 (a
         * last element near 0, timestep -1): diffusers then runs an extra step at t = -1 whose
         * alphas_cumprod[-1] wraps around, so those step counts are refused. */
        const double ratio = (double)T / (double)N;
        const double len_d = ceil((double)(0 - T) / -ratio);
        if (len_d != (double)N)
            return core_fail(err, PNDM_ERR_USAGE,
                             "steps %d with timestep_spacing \"trailing\" and num_train_timesteps %lld: diffusers "
                             "makes %.0f timesteps including -1 (a rounding quirk of np.arange); choose another "
                             "step count",
                             steps, (long long)T, len_d);
        const double start = (double)T, next = (double)T + -ratio, delta = next - start;
        for (int64_t i = 0; i < N; i++) {
            const double v = i == 0 ? start : i == 1 ? next : start + (double)i * delta;
            out[N - 1 - i] = (int64_t)rint(v) - 1;
        }
        break;
    }
    default:
        return core_fail(err, PNDM_ERR_USAGE, "scheduler config: invalid timestep_spacing %d",
                         (int)cfg->timestep_spacing);
    }
    for (int64_t i = 0; i < N; i++) {
        if (out[i] < 0 || out[i] >= T)
            return core_fail(err, PNDM_ERR_USAGE,
                             "steps %d: timestep %lld is outside 0..%lld (timestep_spacing \"%s\", steps_offset %d)",
                             steps, (long long)out[i], (long long)(T - 1), sched_spacing_name(cfg->timestep_spacing),
                             cfg->steps_offset);
    }
    return PNDM_OK;
}
