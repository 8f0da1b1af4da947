/* Schedulers: the scheduler config (scheduler_config.json), the noise schedule (betas,
 * alphas_cumprod, timestep spacing) and the PNDM stepping method (PRK warm-up, then PLMS).
 *
 * Mirrors diffusers 0.30.3 schedulers/scheduling_pndm.py (PNDMScheduler) on torch 1.13 CPU,
 * float32, bit for bit: every torch op is one float operation rounded on its own, so this file
 * is compiled with -ffp-contract=off and each expression keeps diffusers' operation order.
 * Python float constants are rounded to float where torch does (1/6 -> (float)(1/6)); the
 * timestep bookkeeping is int64 as in numpy. */
#include "scheduler.h"
#include "core.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* CMakeLists compiles this file with -ffp-contract=off; say it here too for other builds. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ======================================================================================== */
/* Config                                                                                     */

pndm_scheduler_config pndm_scheduler_default_config(void) {
    /* PNDMScheduler.__init__ defaults */
    pndm_scheduler_config c;
    memset(&c, 0, sizeof c);
    c.num_train_timesteps = 1000;
    c.beta_start = 0.0001;
    c.beta_end = 0.02;
    c.beta_schedule = PNDM_BETA_LINEAR;
    c.trained_betas = NULL;
    c.skip_prk_steps = 0;
    c.set_alpha_to_one = 0;
    c.prediction_type = PNDM_PRED_EPSILON;
    c.timestep_spacing = PNDM_SPACING_LEADING;
    c.steps_offset = 0;
    return c;
}

void pndm_scheduler_config_free(pndm_scheduler_config *cfg) {
    if (!cfg) return;
    free(cfg->trained_betas);
    cfg->trained_betas = NULL;
}

static const char *beta_schedule_name(pndm_beta_schedule b) {
    switch (b) {
    case PNDM_BETA_LINEAR: return "linear";
    case PNDM_BETA_SCALED_LINEAR: return "scaled_linear";
    case PNDM_BETA_SQUAREDCOS_CAP_V2: return "squaredcos_cap_v2";
    }
    return "?";
}

static const char *prediction_name(pndm_prediction_type p) {
    switch (p) {
    case PNDM_PRED_EPSILON: return "epsilon";
    case PNDM_PRED_V: return "v_prediction";
    }
    return "?";
}

static const char *spacing_name(pndm_spacing s) {
    switch (s) {
    case PNDM_SPACING_LEADING: return "leading";
    case PNDM_SPACING_LINSPACE: return "linspace";
    case PNDM_SPACING_TRAILING: return "trailing";
    }
    return "?";
}

/* Shortest %g form that reads back as the same double (like Python's repr). */
static void format_double(double v, char *buf, size_t size) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

void pndm_scheduler_config_describe(const pndm_scheduler_config *cfg, char *buf, size_t size) {
    if (!buf || size == 0) return;
    if (!cfg) {
        snprintf(buf, size, "PNDMScheduler(?)");
        return;
    }
    char bs[32], be[32], betas[48];
    format_double(cfg->beta_start, bs, sizeof bs);
    format_double(cfg->beta_end, be, sizeof be);
    if (cfg->trained_betas)
        snprintf(betas, sizeof betas, "%d values", cfg->num_train_timesteps);
    else
        snprintf(betas, sizeof betas, "none");
    snprintf(buf, size,
             "PNDMScheduler(num_train_timesteps=%d, beta_start=%s, beta_end=%s, beta_schedule=%s, "
             "trained_betas=%s, skip_prk_steps=%s, set_alpha_to_one=%s, prediction_type=%s, "
             "timestep_spacing=%s, steps_offset=%d)",
             cfg->num_train_timesteps, bs, be, beta_schedule_name(cfg->beta_schedule), betas,
             cfg->skip_prk_steps ? "true" : "false", cfg->set_alpha_to_one ? "true" : "false",
             prediction_name(cfg->prediction_type), spacing_name(cfg->timestep_spacing), cfg->steps_offset);
}

static const char *src_name(const char *source) { return source ? source : "scheduler config"; }

pndm_status sched_config_validate(const pndm_scheduler_config *cfg, const char *source, pndm_error *err) {
    const char *src = src_name(source);
    if (!cfg) return core_fail(err, PNDM_ERR_USAGE, "%s: NULL scheduler config", src);
    if (cfg->num_train_timesteps < 1 || cfg->num_train_timesteps > PNDM_MAX_TRAIN_TIMESTEPS)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"num_train_timesteps\": must be in 1..%d (got %d)", src,
                         PNDM_MAX_TRAIN_TIMESTEPS, cfg->num_train_timesteps);
    if (!(cfg->beta_start > 0 && cfg->beta_start < 1))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"beta_start\": must be in (0, 1) (got %g)", src,
                         cfg->beta_start);
    if (!(cfg->beta_end > 0 && cfg->beta_end < 1))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"beta_end\": must be in (0, 1) (got %g)", src, cfg->beta_end);
    if (cfg->beta_start > cfg->beta_end)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"beta_start\": %g is larger than beta_end %g", src,
                         cfg->beta_start, cfg->beta_end);
    if ((unsigned)cfg->beta_schedule > PNDM_BETA_SQUAREDCOS_CAP_V2)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"beta_schedule\": invalid value %d", src,
                         (int)cfg->beta_schedule);
    if ((unsigned)cfg->prediction_type > PNDM_PRED_V)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"prediction_type\": invalid value %d", src,
                         (int)cfg->prediction_type);
    if ((unsigned)cfg->timestep_spacing > PNDM_SPACING_TRAILING)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"timestep_spacing\": invalid value %d", src,
                         (int)cfg->timestep_spacing);
    if (cfg->steps_offset < 0 || cfg->steps_offset >= cfg->num_train_timesteps)
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: key \"steps_offset\": must be in 0..num_train_timesteps-1 = %d (got %d)", src,
                         cfg->num_train_timesteps - 1, cfg->steps_offset);
    if (cfg->trained_betas) {
        for (int i = 0; i < cfg->num_train_timesteps; i++) {
            float b = cfg->trained_betas[i];
            if (!(b >= 0 && b < 1))
                return core_fail(err, PNDM_ERR_MODEL,
                                 "%s: key \"trained_betas\": element %d must be in [0, 1) (got %g)", src, i, (double)b);
        }
    }
    return PNDM_OK;
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* Integer-valued JSON number in [lo, hi]. */
static pndm_status json_int(const cJSON *v, const char *key, long lo, long hi, const char *src, int *out,
                            pndm_error *err) {
    if (!cJSON_IsNumber(v))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": expected an integer, got %s", src, key,
                         json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": expected an integer, got %g", src, key, d);
    if (d < (double)lo || d > (double)hi)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": must be in %ld..%ld (got %.17g)", src, key, lo, hi, d);
    *out = (int)d;
    return PNDM_OK;
}

static pndm_status json_number(const cJSON *v, const char *key, const char *src, double *out, pndm_error *err) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": expected a number, got %s", src, key, json_type_name(v));
    *out = v->valuedouble;
    return PNDM_OK;
}

static pndm_status json_bool(const cJSON *v, const char *key, const char *src, int *out, pndm_error *err) {
    if (!cJSON_IsBool(v))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": expected true or false, got %s", src, key,
                         json_type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return PNDM_OK;
}

/* One of `names` (n of them); the index in *out. */
static pndm_status json_enum(const cJSON *v, const char *key, const char *const *names, int n, const char *src,
                             int *out, pndm_error *err) {
    if (!cJSON_IsString(v))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": expected a string, got %s", src, key, json_type_name(v));
    for (int i = 0; i < n; i++) {
        if (strcmp(v->valuestring, names[i]) == 0) {
            *out = i;
            return PNDM_OK;
        }
    }
    char list[160] = "";
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
    }
    return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": unsupported value \"%.100s\" (PNDMScheduler supports %s)",
                     src, key, v->valuestring, list);
}

static const char *const k_known_keys[] = {
    "num_train_timesteps", "beta_start",       "beta_end",        "beta_schedule",    "trained_betas",
    "skip_prk_steps",      "set_alpha_to_one", "prediction_type", "timestep_spacing", "steps_offset"};

static pndm_status parse_object(const cJSON *root, const char *src, pndm_scheduler_config *c, pndm_error *err) {
    static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    static const char *const predictions[] = {"epsilon", "v_prediction"};
    static const char *const spacings[] = {"leading", "linspace", "trailing"};
    pndm_status st = PNDM_OK;
    int val = 0;
    const cJSON *betas = NULL;
    /* Keys PNDMScheduler does not know (clip_sample, variance_type, _class_name, ...) are
     * ignored, as ConfigMixin.from_config does; a known key may appear once. */
    for (const cJSON *v = root->child; v; v = v->next) {
        const char *key = v->string ? v->string : "";
        int known = 0;
        for (size_t k = 0; k < sizeof k_known_keys / sizeof *k_known_keys; k++)
            if (strcmp(key, k_known_keys[k]) == 0) known = 1;
        if (!known) continue;
        for (const cJSON *w = root->child; w != v; w = w->next)
            if (w->string && strcmp(w->string, key) == 0)
                return core_fail(err, PNDM_ERR_MODEL, "%s: key \"%s\": appears more than once", src, key);

        if (strcmp(key, "num_train_timesteps") == 0) {
            st = json_int(v, key, 1, PNDM_MAX_TRAIN_TIMESTEPS, src, &c->num_train_timesteps, err);
        } else if (strcmp(key, "beta_start") == 0) {
            st = json_number(v, key, src, &c->beta_start, err);
        } else if (strcmp(key, "beta_end") == 0) {
            st = json_number(v, key, src, &c->beta_end, err);
        } else if (strcmp(key, "beta_schedule") == 0) {
            st = json_enum(v, key, schedules, 3, src, &val, err);
            if (!st) c->beta_schedule = (pndm_beta_schedule)val;
        } else if (strcmp(key, "trained_betas") == 0) {
            if (cJSON_IsArray(v))
                betas = v;
            else if (!cJSON_IsNull(v))
                st = core_fail(err, PNDM_ERR_MODEL,
                               "%s: key \"trained_betas\": expected null or an array of numbers, got %s", src,
                               json_type_name(v));
        } else if (strcmp(key, "skip_prk_steps") == 0) {
            st = json_bool(v, key, src, &c->skip_prk_steps, err);
        } else if (strcmp(key, "set_alpha_to_one") == 0) {
            st = json_bool(v, key, src, &c->set_alpha_to_one, err);
        } else if (strcmp(key, "prediction_type") == 0) {
            st = json_enum(v, key, predictions, 2, src, &val, err);
            if (!st) c->prediction_type = (pndm_prediction_type)val;
        } else if (strcmp(key, "timestep_spacing") == 0) {
            st = json_enum(v, key, spacings, 3, src, &val, err);
            if (!st) c->timestep_spacing = (pndm_spacing)val;
        } else if (strcmp(key, "steps_offset") == 0) {
            st = json_int(v, key, 0, INT32_MAX, src, &c->steps_offset, err);
        }
        if (st) return st;
    }
    if (betas) {
        /* torch.tensor(trained_betas, dtype=torch.float32): each python float rounded to float */
        int n = cJSON_GetArraySize(betas);
        if (n != c->num_train_timesteps)
            return core_fail(err, PNDM_ERR_MODEL, "%s: key \"trained_betas\": has %d values, num_train_timesteps is %d",
                             src, n, c->num_train_timesteps);
        c->trained_betas = malloc((size_t)n * sizeof *c->trained_betas);
        if (!c->trained_betas) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory for trained_betas", src);
        int i = 0;
        for (const cJSON *b = betas->child; b; b = b->next, i++) {
            if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble))
                return core_fail(err, PNDM_ERR_MODEL,
                                 "%s: key \"trained_betas\": element %d: expected a number, got %s", src, i,
                                 json_type_name(b));
            c->trained_betas[i] = (float)b->valuedouble;
        }
    }
    return sched_config_validate(c, src, err);
}

pndm_status pndm_scheduler_config_parse(const char *json, size_t len, const char *source, pndm_scheduler_config *cfg,
                                        pndm_error *err) {
    const char *src = src_name(source);
    if (!json || !cfg) return core_fail(err, PNDM_ERR_USAGE, "%s: NULL argument to pndm_scheduler_config_parse", src);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= json ? (size_t)(end - json) : 0;
        return core_fail(err, PNDM_ERR_MODEL, "%s: not valid JSON (error at byte %zu)", src, pos);
    }
    /* only whitespace may follow the value */
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return core_fail(err, PNDM_ERR_MODEL, "%s: not valid JSON (unexpected data at byte %zu)", src,
                             (size_t)(p - json));
        }
    }
    if (!cJSON_IsObject(root)) {
        pndm_status st = core_fail(err, PNDM_ERR_MODEL, "%s: scheduler config must be a JSON object, got %s", src,
                                   json_type_name(root));
        cJSON_Delete(root);
        return st;
    }
    pndm_scheduler_config c = pndm_scheduler_default_config();
    pndm_status st = parse_object(root, src, &c, err);
    cJSON_Delete(root);
    if (st) {
        pndm_scheduler_config_free(&c);
        return st;
    }
    *cfg = c;
    return PNDM_OK;
}

/* ======================================================================================== */
/* Schedule                                                                                   */

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

/* diffusers betas_for_alpha_bar(T) (alpha_transform_type "cosine", max_beta 0.999), in Python
 * doubles (glibc cos, pow), then torch.tensor(betas, dtype=torch.float32). */
static double alpha_bar_cosine(double t) {
    const double pi = 3.141592653589793; // math.pi
    return pow(cos((t + 0.008) / 1.008 * pi / 2), 2.0);
}

pndm_status sched_schedule_init(sched_schedule *s, const pndm_scheduler_config *cfg, pndm_error *err) {
    memset(s, 0, sizeof *s);
    pndm_status st = sched_config_validate(cfg, NULL, err);
    if (st) return st;
    const int T = cfg->num_train_timesteps;
    s->num_train_timesteps = T;
    s->betas = malloc((size_t)T * sizeof *s->betas);
    s->alphas_cumprod = malloc((size_t)T * sizeof *s->alphas_cumprod);
    if (!s->betas || !s->alphas_cumprod) {
        sched_schedule_free(s);
        return core_fail(err, PNDM_ERR_NOMEM, "scheduler: out of memory for %d betas", T);
    }
    /* PNDMScheduler.__init__ */
    if (cfg->trained_betas) {
        memcpy(s->betas, cfg->trained_betas, (size_t)T * sizeof *s->betas);
    } else if (cfg->beta_schedule == PNDM_BETA_LINEAR) {
        torch_linspace_f32((float)cfg->beta_start, (float)cfg->beta_end, T, s->betas);
    } else if (cfg->beta_schedule == PNDM_BETA_SCALED_LINEAR) {
        /* torch.linspace(beta_start**0.5, beta_end**0.5, T) ** 2: Python float pow, then a
         * float32 square */
        torch_linspace_f32((float)pow(cfg->beta_start, 0.5), (float)pow(cfg->beta_end, 0.5), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
    } else {
        for (int i = 0; i < T; i++) {
            const double t1 = (double)i / (double)T, t2 = (double)(i + 1) / (double)T;
            double b = 1 - alpha_bar_cosine(t2) / alpha_bar_cosine(t1);
            if (0.999 < b) b = 0.999; // min(b, max_beta)
            s->betas[i] = (float)b;
        }
    }
    /* alphas = 1.0 - betas; alphas_cumprod = torch.cumprod(alphas, 0), which accumulates in
     * double on the CPU (acc_type<float> = double) and rounds each partial product */
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        const float alpha = 1.0f - s->betas[i];
        acc *= (double)alpha;
        s->alphas_cumprod[i] = (float)acc;
    }
    /* final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else alphas_cumprod[0] */
    s->final_alpha_cumprod = cfg->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
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
                             steps, (long long)out[i], (long long)(T - 1), spacing_name(cfg->timestep_spacing),
                             cfg->steps_offset);
    }
    return PNDM_OK;
}

/* ======================================================================================== */
/* Generic sampler interface                                                                  */

void pndm_sampler_free(pndm_sampler *s) {
    if (!s) return;
    if (s->ops && s->ops->destroy) s->ops->destroy(s);
    sched_schedule_free(&s->sched);
    free(s->timesteps);
    free(s);
}

int pndm_sampler_num_calls(const pndm_sampler *s) { return s ? s->num_calls : 0; }

int64_t pndm_sampler_timestep(const pndm_sampler *s, int call) {
    CORE_ASSERT(s && call >= 0 && call < s->num_calls);
    return s->timesteps[call];
}

pndm_status pndm_sampler_step(pndm_sampler *s, int call, const float *model_out, float *sample, size_t n,
                              pndm_error *err) {
    if (!s || !model_out || !sample) return core_fail(err, PNDM_ERR_USAGE, "sampler step: NULL argument");
    if (call < 0 || call >= s->num_calls)
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: call %d is outside 0..%d", call, s->num_calls - 1);
    if (call != s->next_call)
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: call %d out of order (expected call %d)", call,
                         s->next_call);
    if (n == 0) return core_fail(err, PNDM_ERR_USAGE, "sampler step: empty sample");
    if (s->n != 0 && n != s->n)
        return core_fail(err, PNDM_ERR_USAGE, "sampler step: sample size %zu differs from %zu at the first call", n,
                         s->n);
    pndm_status st = s->ops->step(s, call, model_out, sample, n, err);
    if (st) return st;
    s->n = n;
    s->next_call++;
    return PNDM_OK;
}

void pndm_sampler_reset(pndm_sampler *s) {
    if (!s) return;
    s->next_call = 0;
    s->n = 0;
    if (s->ops->reset) s->ops->reset(s);
}

const float *sampler_betas(const pndm_sampler *s) { return s ? s->sched.betas : NULL; }
const float *sampler_alphas_cumprod(const pndm_sampler *s) { return s ? s->sched.alphas_cumprod : NULL; }
float sampler_final_alpha_cumprod(const pndm_sampler *s) { return s ? s->sched.final_alpha_cumprod : 0.0f; }

/* ======================================================================================== */
/* PNDM: PRK warm-up (12 calls) then PLMS, or PLMS only with skip_prk_steps                   */

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

static const sampler_ops k_pndm_ops = {"pndm", plms_step, plms_reset, plms_destroy};

int sched_pndm_call_indices(const pndm_sampler *s, int call, int64_t *t_idx, int64_t *prev_idx) {
    if (!s || s->ops != &k_pndm_ops || call < 0 || call >= s->num_calls) return 0;
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

pndm_status pndm_sampler_create_pndm(const pndm_scheduler_config *cfg, int steps, pndm_sampler **out, pndm_error *err) {
    if (!out) return core_fail(err, PNDM_ERR_USAGE, "pndm_sampler_create_pndm: NULL output");
    *out = NULL;
    if (!cfg) return core_fail(err, PNDM_ERR_USAGE, "pndm_sampler_create_pndm: NULL config");
    pndm_status st = sched_config_validate(cfg, NULL, err);
    if (st) return st;
    if (steps < 1 || steps > cfg->num_train_timesteps)
        return core_fail(err, PNDM_ERR_USAGE, "steps must be in 1..%d (num_train_timesteps) (got %d)",
                         cfg->num_train_timesteps, steps);
    pndm_sampler *s = calloc(1, sizeof *s);
    int64_t *base = malloc((size_t)steps * sizeof *base);
    if (!s || !base) {
        free(s);
        free(base);
        return core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
    }
    s->ops = &k_pndm_ops;
    s->cfg = *cfg;
    s->cfg.trained_betas = NULL;
    s->steps = steps;
    s->state = calloc(1, sizeof(plms_state));
    if (!s->state) {
        st = core_fail(err, PNDM_ERR_NOMEM, "sampler: out of memory");
        goto fail;
    }
    ((plms_state *)s->state)->v_pred = cfg->prediction_type == PNDM_PRED_V;
    if ((st = sched_schedule_init(&s->sched, cfg, err)) != PNDM_OK) goto fail;
    if ((st = sched_spacing(cfg, steps, base, err)) != PNDM_OK) goto fail;
    if ((st = plms_build_plan(s, base, err)) != PNDM_OK) goto fail;
    free(base);
    *out = s;
    return PNDM_OK;
fail:
    free(base);
    pndm_sampler_free(s);
    return st;
}
