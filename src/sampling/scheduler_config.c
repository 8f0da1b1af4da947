/* scheduler_config.json -> pndm_scheduler_config: the keys of diffusers 0.30.3's
 * PNDMScheduler, DDIMScheduler and DDPMScheduler __init__ with their defaults, read by one
 * option table (core/options.h). Keys none of them has are kept by name for -v. */
#include "schedule.h"
#include "core.h"
#include "options.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

pndm_scheduler_config pndm_scheduler_default_config(void) {
    /* PNDMScheduler.__init__ defaults, plus DDIM's / DDPM's for the keys PNDM has not */
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
    c.clip_sample = 1;
    c.clip_sample_range = 1.0;
    c.thresholding = 0;
    c.dynamic_thresholding_ratio = 0.995;
    c.sample_max_value = 1.0;
    c.variance_type = PNDM_VARIANCE_FIXED_SMALL;
    c.rescale_betas_zero_snr = 0;
    return c;
}

void pndm_scheduler_config_free(pndm_scheduler_config *cfg) {
    if (!cfg) return;
    free(cfg->trained_betas);
    cfg->trained_betas = NULL;
    free(cfg->unknown_keys);
    cfg->unknown_keys = NULL;
}

const char *sched_beta_schedule_name(pndm_beta_schedule b) {
    switch (b) {
    case PNDM_BETA_LINEAR: return "linear";
    case PNDM_BETA_SCALED_LINEAR: return "scaled_linear";
    case PNDM_BETA_SQUAREDCOS_CAP_V2: return "squaredcos_cap_v2";
    case PNDM_BETA_SIGMOID: return "sigmoid";
    }
    return "?";
}

const char *sched_prediction_name(pndm_prediction_type p) {
    switch (p) {
    case PNDM_PRED_EPSILON: return "epsilon";
    case PNDM_PRED_V: return "v_prediction";
    case PNDM_PRED_SAMPLE: return "sample";
    }
    return "?";
}

const char *sched_spacing_name(pndm_spacing s) {
    switch (s) {
    case PNDM_SPACING_LEADING: return "leading";
    case PNDM_SPACING_LINSPACE: return "linspace";
    case PNDM_SPACING_TRAILING: return "trailing";
    }
    return "?";
}

static const char *const k_variance_names[] = {"fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                                               "learned",     "learned_range",   NULL};

const char *sched_variance_name(pndm_variance_type v) {
    return (unsigned)v <= PNDM_VARIANCE_LEARNED_RANGE ? k_variance_names[v] : "?";
}

void sched_format_double(double v, char *buf, size_t size) {
    if (v == floor(v) && fabs(v) < 1e15) { /* integers without an exponent: 750, not 7.5e+02 */
        snprintf(buf, size, "%.0f", v);
        return;
    }
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
    sched_format_double(cfg->beta_start, bs, sizeof bs);
    sched_format_double(cfg->beta_end, be, sizeof be);
    if (cfg->trained_betas)
        snprintf(betas, sizeof betas, "%d values", cfg->num_train_timesteps);
    else
        snprintf(betas, sizeof betas, "none");
    snprintf(buf, size,
             "PNDMScheduler(num_train_timesteps=%d, beta_start=%s, beta_end=%s, beta_schedule=%s, "
             "trained_betas=%s, skip_prk_steps=%s, set_alpha_to_one=%s, prediction_type=%s, "
             "timestep_spacing=%s, steps_offset=%d)",
             cfg->num_train_timesteps, bs, be, sched_beta_schedule_name(cfg->beta_schedule), betas,
             cfg->skip_prk_steps ? "true" : "false", cfg->set_alpha_to_one ? "true" : "false",
             sched_prediction_name(cfg->prediction_type), sched_spacing_name(cfg->timestep_spacing), cfg->steps_offset);
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
    if ((unsigned)cfg->beta_schedule > PNDM_BETA_SIGMOID)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"beta_schedule\": invalid value %d", src,
                         (int)cfg->beta_schedule);
    if ((unsigned)cfg->prediction_type > PNDM_PRED_SAMPLE)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"prediction_type\": invalid value %d", src,
                         (int)cfg->prediction_type);
    if ((unsigned)cfg->timestep_spacing > PNDM_SPACING_TRAILING)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"timestep_spacing\": invalid value %d", src,
                         (int)cfg->timestep_spacing);
    if ((unsigned)cfg->variance_type > PNDM_VARIANCE_LEARNED_RANGE)
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"variance_type\": invalid value %d", src,
                         (int)cfg->variance_type);
    if (cfg->steps_offset < 0 || cfg->steps_offset >= cfg->num_train_timesteps)
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: key \"steps_offset\": must be in 0..num_train_timesteps-1 = %d (got %d)", src,
                         cfg->num_train_timesteps - 1, cfg->steps_offset);
    if (!(cfg->clip_sample_range > 0) || !isfinite(cfg->clip_sample_range))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"clip_sample_range\": must be a number > 0 (got %g)", src,
                         cfg->clip_sample_range);
    if (!(cfg->dynamic_thresholding_ratio >= 0 && cfg->dynamic_thresholding_ratio <= 1))
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: key \"dynamic_thresholding_ratio\": must be a number in [0, 1] (got %g)", src,
                         cfg->dynamic_thresholding_ratio);
    if (!(cfg->sample_max_value > 0) || !isfinite(cfg->sample_max_value))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"sample_max_value\": must be a number > 0 (got %g)", src,
                         cfg->sample_max_value);
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

/* ---- the option table ----------------------------------------------------------------------- */

static int class_is(const pndm_scheduler_config *c, const char *name) { return strcmp(c->class_name, name) == 0; }

/* Values are checked against what the file's class accepts (no class: PNDMScheduler's). */
static pndm_status parse_beta_schedule(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    static const char *const pndm[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
    static const char *const ddpm[] = {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", NULL};
    pndm_scheduler_config *c = dst;
    if (!v) return PNDM_OK;
    int i = 0;
    pndm_status st = core_opt_enum(r, o->key, v, class_is(c, "DDPMScheduler") ? ddpm : pndm, &i);
    if (!st) c->beta_schedule = (pndm_beta_schedule)i;
    return st;
}

static pndm_status parse_prediction(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    static const char *const pndm[] = {"epsilon", "v_prediction", NULL};
    static const char *const ddim[] = {"epsilon", "v_prediction", "sample", NULL};
    pndm_scheduler_config *c = dst;
    if (!v) return PNDM_OK;
    int i = 0;
    const int with_sample = class_is(c, "DDIMScheduler") || class_is(c, "DDPMScheduler");
    pndm_status st = core_opt_enum(r, o->key, v, with_sample ? ddim : pndm, &i);
    if (!st) c->prediction_type = (pndm_prediction_type)i;
    return st;
}

/* null or num_train_timesteps numbers; torch.tensor(trained_betas, dtype=torch.float32) rounds
 * each Python float to float */
static pndm_status parse_trained_betas(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    pndm_scheduler_config *c = dst;
    if (!v || cJSON_IsNull(v)) return PNDM_OK;
    if (!cJSON_IsArray(v)) return core_opt_bad(r, o->key, v, "null or an array of numbers");
    int n = cJSON_GetArraySize(v);
    if (n != c->num_train_timesteps)
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"trained_betas\": has %d values, num_train_timesteps is %d",
                         r->source, n, c->num_train_timesteps);
    c->trained_betas = malloc((size_t)n * sizeof *c->trained_betas);
    if (!c->trained_betas) return core_fail(r->err, PNDM_ERR_NOMEM, "%s: out of memory for trained_betas", r->source);
    int i = 0;
    for (const cJSON *b = v->child; b; b = b->next, i++) {
        if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble))
            return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"trained_betas\": element %d: expected a number, got %s",
                             r->source, i, core_json_type(b));
        c->trained_betas[i] = (float)b->valuedouble;
    }
    return PNDM_OK;
}

static const char *const k_spacings[] = {"leading", "linspace", "trailing", NULL};

#define CFG(f) offsetof(pndm_scheduler_config, f)
/* Row i is bit 1 << i of pndm_scheduler_config.given (PNDM_KEY_*). */
static const core_opt k_sched_options[] = {
    CORE_OPT_INT_ROW("num_train_timesteps", CFG(num_train_timesteps), 0, 1, PNDM_MAX_TRAIN_TIMESTEPS, 1000),
    CORE_OPT_NUM_ROW("beta_start", CFG(beta_start), 0, -INFINITY, INFINITY, 0.0001, "a number"),
    CORE_OPT_NUM_ROW("beta_end", CFG(beta_end), 0, -INFINITY, INFINITY, 0.02, "a number"),
    CORE_OPT_CUSTOM_ROW("beta_schedule", parse_beta_schedule),
    CORE_OPT_CUSTOM_ROW("trained_betas", parse_trained_betas),
    CORE_OPT_BOOL_ROW("skip_prk_steps", CFG(skip_prk_steps), 0),
    CORE_OPT_BOOL_ROW("set_alpha_to_one", CFG(set_alpha_to_one), 0),
    CORE_OPT_CUSTOM_ROW("prediction_type", parse_prediction),
    CORE_OPT_ENUM_ROW("timestep_spacing", CFG(timestep_spacing), 0, 0, k_spacings),
    CORE_OPT_INT_ROW("steps_offset", CFG(steps_offset), 0, 0, INT32_MAX, 0),
    CORE_OPT_BOOL_ROW("clip_sample", CFG(clip_sample), 1),
    CORE_OPT_NUM_ROW("clip_sample_range", CFG(clip_sample_range), CORE_OPT_LO_OPEN, 0, INFINITY, 1.0, "a number > 0"),
    CORE_OPT_BOOL_ROW("thresholding", CFG(thresholding), 0),
    CORE_OPT_NUM_ROW("dynamic_thresholding_ratio", CFG(dynamic_thresholding_ratio), 0, 0, 1, 0.995,
                     "a number in [0, 1]"),
    CORE_OPT_NUM_ROW("sample_max_value", CFG(sample_max_value), CORE_OPT_LO_OPEN, 0, INFINITY, 1.0, "a number > 0"),
    CORE_OPT_ENUM_ROW("variance_type", CFG(variance_type), 0, 0, k_variance_names),
    CORE_OPT_BOOL_ROW("rescale_betas_zero_snr", CFG(rescale_betas_zero_snr), 0),
};
#undef CFG
#define N_SCHED_OPTIONS ((int)(sizeof k_sched_options / sizeof *k_sched_options))

const char *sched_key_name(unsigned bit) {
    for (int i = 0; i < N_SCHED_OPTIONS; i++)
        if (bit == 1u << i) return k_sched_options[i].key;
    return NULL;
}

/* "a, b, c" of the keys no row reads (metadata keys starting with '_' are not options). */
static pndm_status collect_unknown(const cJSON *root, const char *src, char **out, pndm_error *err) {
    size_t len = 0;
    for (const cJSON *v = root->child; v; v = v->next)
        if (v->string && v->string[0] != '_' && core_opt_find(k_sched_options, N_SCHED_OPTIONS, v->string) < 0)
            len += strlen(v->string) + 2;
    if (len == 0) return PNDM_OK;
    const size_t cap = 2048; /* a hostile file can have millions of keys: keep the list short */
    char *s = malloc((len < cap ? len : cap) + 8);
    if (!s) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    size_t o = 0;
    for (const cJSON *v = root->child; v; v = v->next) {
        if (!v->string || v->string[0] == '_' || core_opt_find(k_sched_options, N_SCHED_OPTIONS, v->string) >= 0)
            continue;
        const size_t l = strlen(v->string);
        if (o + l + 2 > cap) {
            memcpy(s + o, o ? ", ..." : "...", o ? 5 : 3);
            o += o ? 5 : 3;
            break;
        }
        if (o) {
            memcpy(s + o, ", ", 2);
            o += 2;
        }
        memcpy(s + o, v->string, l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    return PNDM_OK;
}

static pndm_status parse_object(const cJSON *root, const char *src, pndm_scheduler_config *c, pndm_error *err) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && !cJSON_IsString(cls))
        return core_fail(err, PNDM_ERR_MODEL, "%s: key \"_class_name\": expected a string, got %s", src,
                         core_json_type(cls));
    if (cls) snprintf(c->class_name, sizeof c->class_name, "%s", cls->valuestring);
    const char *owner = class_is(c, "DDIMScheduler") || class_is(c, "DDPMScheduler") ? c->class_name : "PNDMScheduler";
    core_opt_reader r = {src, CORE_OPT_STYLE_KEY, owner, err, 0};
    pndm_status st = core_opts_read(&r, root, k_sched_options, N_SCHED_OPTIONS, c);
    if (st) return st;
    c->given = (unsigned)r.seen;
    if ((st = collect_unknown(root, src, &c->unknown_keys, err)) != PNDM_OK) return st;
    return sched_config_validate(c, src, err);
}

pndm_status pndm_scheduler_config_parse(const char *json, size_t len, const char *source, pndm_scheduler_config *cfg,
                                        pndm_error *err) {
    const char *src = src_name(source);
    if (!json || !cfg) return core_fail(err, PNDM_ERR_USAGE, "%s: NULL argument to pndm_scheduler_config_parse", src);
    cJSON *root = NULL;
    pndm_status st = core_json_parse_object(json, len, src, "scheduler config", &root, err);
    if (st) return st;
    pndm_scheduler_config c = pndm_scheduler_default_config();
    st = parse_object(root, src, &c, err);
    cJSON_Delete(root);
    if (st) {
        pndm_scheduler_config_free(&c);
        return st;
    }
    *cfg = c;
    return PNDM_OK;
}
