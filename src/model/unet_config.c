/* UNet2DModel config.json parser (diffusers 0.30.3, models/unets/unet_2d.py: UNet2DModel.__init__
 * keys and defaults). Validation order: see unet_config.h. */
#include "unet_config.h"
#include "core.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* ---- block names -------------------------------------------------------------------------- */
static const char *const block_names[] = {
    "DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D",
    "UpBlock2D",   "AttnUpBlock2D",   "ResnetUpsampleBlock2D",   "SkipUpBlock2D",   "AttnSkipUpBlock2D",
};

int unet_block_is_skip(unet_block_kind k) {
    return k == UNET_SKIP_DOWN_BLOCK || k == UNET_ATTN_SKIP_DOWN_BLOCK || k == UNET_SKIP_UP_BLOCK ||
        k == UNET_ATTN_SKIP_UP_BLOCK;
}

int unet_block_has_attention(unet_block_kind k) {
    return k == UNET_ATTN_DOWN_BLOCK || k == UNET_ATTN_SKIP_DOWN_BLOCK || k == UNET_ATTN_UP_BLOCK ||
        k == UNET_ATTN_SKIP_UP_BLOCK;
}

/* diffusers block types (get_down_block / get_up_block) that exist but are not implemented. */
static const char *const unsupported_down[] = {"CrossAttnDownBlock2D",
                                               "SimpleCrossAttnDownBlock2D",
                                               "DownEncoderBlock2D",
                                               "AttnDownEncoderBlock2D",
                                               "KDownBlock2D",
                                               "KCrossAttnDownBlock2D",
                                               NULL};
static const char *const unsupported_up[] = {"CrossAttnUpBlock2D",
                                             "SimpleCrossAttnUpBlock2D",
                                             "UpDecoderBlock2D",
                                             "AttnUpDecoderBlock2D",
                                             "KUpBlock2D",
                                             "KCrossAttnUpBlock2D",
                                             NULL};

static int in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

/* ---- keys --------------------------------------------------------------------------------- */
static const char *const known_keys[] = {"sample_size",
                                         "in_channels",
                                         "out_channels",
                                         "center_input_sample",
                                         "time_embedding_type",
                                         "freq_shift",
                                         "flip_sin_to_cos",
                                         "down_block_types",
                                         "up_block_types",
                                         "block_out_channels",
                                         "layers_per_block",
                                         "mid_block_scale_factor",
                                         "downsample_padding",
                                         "downsample_type",
                                         "upsample_type",
                                         "dropout",
                                         "act_fn",
                                         "attention_head_dim",
                                         "norm_num_groups",
                                         "attn_norm_num_groups",
                                         "norm_eps",
                                         "resnet_time_scale_shift",
                                         "add_attention",
                                         "class_embed_type",
                                         "num_class_embeds",
                                         "num_train_timesteps",
                                         NULL};

typedef struct {
    const cJSON *root;
    const char *src;
    pndm_error *err;
} cfg_parser;

/* Short rendering of a JSON value for messages. */
static void repr(const cJSON *v, char *buf, size_t size) {
    if (!v) {
        snprintf(buf, size, "nothing");
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(buf, size, "?");
        return;
    }
    if (strlen(s) > 40)
        snprintf(buf, size, "%.37s...", s);
    else
        snprintf(buf, size, "%s", s);
    cJSON_free(s);
}

static const cJSON *get(const cfg_parser *p, const char *key) { return cJSON_GetObjectItemCaseSensitive(p->root, key); }

static pndm_status bad(const cfg_parser *p, const char *key, const cJSON *v, const char *what) {
    char r[64];
    repr(v, r, sizeof r);
    return core_fail(p->err, PNDM_ERR_MODEL, "%s: option '%s' must be %s (got %s)", p->src, key, what, r);
}

static int json_is_int(const cJSON *v, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi) return 0;
    *out = (long)d;
    return 1;
}

/* Integer option in [lo, hi]; absent -> def. */
static pndm_status opt_int(const cfg_parser *p, const char *key, long def, long lo, long hi, int *out) {
    const cJSON *v = get(p, key);
    long x = def;
    if (v && !json_is_int(v, lo, hi, &x)) {
        char what[96];
        snprintf(what, sizeof what, "an integer in [%ld, %ld]", lo, hi);
        return bad(p, key, v, what);
    }
    *out = (int)x;
    return PNDM_OK;
}

/* Integer option in [lo, hi] or null (-> 0); absent -> def. */
static pndm_status opt_int_or_null(const cfg_parser *p, const char *key, int def, long lo, long hi, int *out) {
    const cJSON *v = get(p, key);
    if (!v) {
        *out = def;
        return PNDM_OK;
    }
    if (cJSON_IsNull(v)) {
        *out = 0;
        return PNDM_OK;
    }
    long x;
    if (!json_is_int(v, lo, hi, &x)) {
        char what[96];
        snprintf(what, sizeof what, "null or an integer in [%ld, %ld]", lo, hi);
        return bad(p, key, v, what);
    }
    *out = (int)x;
    return PNDM_OK;
}

static pndm_status opt_bool(const cfg_parser *p, const char *key, int def, int *out) {
    const cJSON *v = get(p, key);
    if (!v) {
        *out = def;
        return PNDM_OK;
    }
    if (!cJSON_IsBool(v)) return bad(p, key, v, "true or false");
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return PNDM_OK;
}

/* Finite number with lo <= x <= hi (lo_open: lo < x); absent -> def. */
static pndm_status opt_num(const cfg_parser *p, const char *key, double def, double lo, int lo_open, double hi,
                           const char *what, double *out) {
    const cJSON *v = get(p, key);
    if (!v) {
        *out = def;
        return PNDM_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble > hi ||
        (lo_open ? !(v->valuedouble > lo) : !(v->valuedouble >= lo)))
        return bad(p, key, v, what);
    *out = v->valuedouble;
    return PNDM_OK;
}

/* String option (null allowed when null_ok: *out = NULL); absent -> def. */
static pndm_status opt_str(const cfg_parser *p, const char *key, const char *def, int null_ok, const char **out) {
    const cJSON *v = get(p, key);
    if (!v) {
        *out = def;
        return PNDM_OK;
    }
    if (null_ok && cJSON_IsNull(v)) {
        *out = NULL;
        return PNDM_OK;
    }
    if (!cJSON_IsString(v)) return bad(p, key, v, null_ok ? "a string or null" : "a string");
    *out = v->valuestring;
    return PNDM_OK;
}

/* One of the listed values (NULL-terminated); the first entry of `values` is the default. */
static pndm_status opt_enum(const cfg_parser *p, const char *key, const char *const *values, int null_ok,
                            const char **out) {
    pndm_status st = opt_str(p, key, values[0], null_ok, out);
    if (st || !*out) return st;
    if (in_list(*out, values)) return PNDM_OK;
    char what[200] = "one of";
    for (const char *const *v = values; *v; v++) {
        size_t l = strlen(what);
        snprintf(what + l, sizeof what - l, "%s '%s'", v == values ? "" : ",", *v);
    }
    if (null_ok) {
        size_t l = strlen(what);
        snprintf(what + l, sizeof what - l, ", null");
    }
    return bad(p, key, get(p, key), what);
}

/* A list of block type names: strings naming diffusers blocks of the right direction. */
static const char *const all_down[] = {"DownBlock2D",
                                       "AttnDownBlock2D",
                                       "ResnetDownsampleBlock2D",
                                       "SkipDownBlock2D",
                                       "AttnSkipDownBlock2D",
                                       "CrossAttnDownBlock2D",
                                       "SimpleCrossAttnDownBlock2D",
                                       "DownEncoderBlock2D",
                                       "AttnDownEncoderBlock2D",
                                       "KDownBlock2D",
                                       "KCrossAttnDownBlock2D",
                                       NULL};
static const char *const all_up[] = {"UpBlock2D",
                                     "AttnUpBlock2D",
                                     "ResnetUpsampleBlock2D",
                                     "SkipUpBlock2D",
                                     "AttnSkipUpBlock2D",
                                     "CrossAttnUpBlock2D",
                                     "SimpleCrossAttnUpBlock2D",
                                     "UpDecoderBlock2D",
                                     "AttnUpDecoderBlock2D",
                                     "KUpBlock2D",
                                     "KCrossAttnUpBlock2D",
                                     NULL};

static const char *const default_down[] = {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"};
static const char *const default_up[] = {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
static const int default_channels[] = {224, 448, 672, 896};

/* Strip diffusers' legacy "UNetRes" prefix (get_down_block / get_up_block do the same). */
static const char *block_base(const char *s) { return strncmp(s, "UNetRes", 7) == 0 ? s + 7 : s; }

static pndm_status parse_block_list(const cfg_parser *p, const char *key, int down, const char **names, int *n) {
    const cJSON *v = get(p, key);
    if (!v) {
        for (int i = 0; i < 4; i++) names[i] = down ? default_down[i] : default_up[i];
        *n = 4;
        return PNDM_OK;
    }
    int len = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (len < 1 || len > UNET_MAX_LEVELS) {
        char what[64];
        snprintf(what, sizeof what, "a list of 1 to %d block type names", UNET_MAX_LEVELS);
        return bad(p, key, v, what);
    }
    for (int i = 0; i < len; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        char r[64];
        repr(e, r, sizeof r);
        if (!cJSON_IsString(e))
            return core_fail(p->err, PNDM_ERR_MODEL, "%s: option '%s': entry %d must be a block type name (got %s)",
                             p->src, key, i, r);
        const char *base = block_base(e->valuestring);
        if (!in_list(base, down ? all_down : all_up)) {
            if (in_list(base, down ? all_up : all_down))
                return core_fail(p->err, PNDM_ERR_MODEL, "%s: option '%s': entry %d '%s' is not %s block type", p->src,
                                 key, i, e->valuestring, down ? "a down" : "an up");
            return core_fail(p->err, PNDM_ERR_MODEL, "%s: option '%s': unknown block type '%s'", p->src, key,
                             e->valuestring);
        }
        names[i] = e->valuestring;
    }
    *n = len;
    return PNDM_OK;
}

/* ---- parse -------------------------------------------------------------------------------- */
/* pndm_unet_forward runs at most 2^28 pixels (16384 x 16384); a larger sample_size could never
 * be generated, and its pixel count overflows int in the workspace planning. */
#define CFG_MAX_SAMPLE 16384

pndm_status unet_config_parse(const char *json, size_t len, const char *source, unet_config *cfg, pndm_error *err) {
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return core_fail(err, PNDM_ERR_MODEL, "%s: config is not valid JSON (error near byte %zu)", source, at);
    }
    cfg_parser p = {root, source, err};
    pndm_status st = PNDM_OK;
#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((st = (x)) != PNDM_OK) goto done;                                                                          \
    } while (0)
    if (!cJSON_IsObject(root)) {
        st = core_fail(err, PNDM_ERR_MODEL, "%s: config must be a JSON object", source);
        goto done;
    }
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0) {
                st = core_fail(err, PNDM_ERR_MODEL, "%s: duplicate key '%s'", source, a->string);
                goto done;
            }

    /* 2. types and values, in UNet2DModel.__init__ order */
    {
        const cJSON *v = get(&p, "sample_size");
        long s = 0;
        if (!v || cJSON_IsNull(v)) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: option 'sample_size' is required (an integer >= 1)", source);
            goto done;
        }
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
            long h = 0, w = 0;
            if (!json_is_int(cJSON_GetArrayItem(v, 0), 1, CFG_MAX_SAMPLE, &h) ||
                !json_is_int(cJSON_GetArrayItem(v, 1), 1, CFG_MAX_SAMPLE, &w))
                TRY(bad(&p, "sample_size", v, "an integer in [1, 16384] or a list of two"));
            if (h != w) {
                st = core_fail(err, PNDM_ERR_MODEL,
                               "%s: option 'sample_size' [%ld, %ld]: non-square samples are not supported", source, h,
                               w);
                goto done;
            }
            s = h;
        } else if (!json_is_int(v, 1, CFG_MAX_SAMPLE, &s)) {
            TRY(bad(&p, "sample_size", v, "an integer in [1, 16384] or a list of two"));
        }
        cfg->sample_size = (int)s;
    }
    TRY(opt_int(&p, "in_channels", 3, 1, UNET_MAX_CHANNELS, &cfg->in_channels));
    TRY(opt_int(&p, "out_channels", 3, 1, UNET_MAX_CHANNELS, &cfg->out_channels));
    TRY(opt_bool(&p, "center_input_sample", 0, &cfg->center_input_sample));
    static const char *const time_types[] = {"positional", "fourier", "learned", NULL};
    const char *time_type;
    TRY(opt_enum(&p, "time_embedding_type", time_types, 0, &time_type));
    double d;
    TRY(opt_num(&p, "freq_shift", 0.0, -1e6, 0, 1e6, "a number", &d));
    cfg->freq_shift = (float)d;
    TRY(opt_bool(&p, "flip_sin_to_cos", 1, &cfg->flip_sin_to_cos));
    const char *down_names[UNET_MAX_LEVELS], *up_names[UNET_MAX_LEVELS];
    int n_down, n_up;
    TRY(parse_block_list(&p, "down_block_types", 1, down_names, &n_down));
    TRY(parse_block_list(&p, "up_block_types", 0, up_names, &n_up));
    {
        const cJSON *v = get(&p, "block_out_channels");
        int n;
        if (!v) {
            n = 4;
            for (int i = 0; i < n; i++) cfg->block_out_channels[i] = default_channels[i];
        } else {
            n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
            if (n < 1 || n > UNET_MAX_LEVELS)
                TRY(bad(&p, "block_out_channels", v, "a list of 1 to 8 positive integers"));
            for (int i = 0; i < n; i++) {
                long c = 0;
                if (!json_is_int(cJSON_GetArrayItem(v, i), 1, UNET_MAX_CHANNELS, &c))
                    TRY(bad(&p, "block_out_channels", v, "a list of integers in [1, 16384]"));
                cfg->block_out_channels[i] = (int)c;
            }
        }
        if (n_down != n_up) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: down_block_types has %d entries but up_block_types has %d", source,
                           n_down, n_up);
            goto done;
        }
        if (n != n_down) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: block_out_channels has %d entries but down_block_types has %d",
                           source, n, n_down);
            goto done;
        }
        cfg->n_levels = n;
        /* the UNet halves the sample n - 1 times and the up path must meet the skip connections
         * again (diffusers' PNDMPipeline fails on such a sample_size too) */
        const int div = 1 << (n - 1);
        if (cfg->sample_size % div != 0) {
            st = core_fail(err, PNDM_ERR_MODEL,
                           "%s: option 'sample_size' %d must be divisible by %d (2^(levels-1) for %d levels)", source,
                           cfg->sample_size, div, n);
            goto done;
        }
    }
    TRY(opt_int(&p, "layers_per_block", 2, 1, UNET_MAX_LAYERS, &cfg->layers_per_block));
    TRY(opt_num(&p, "mid_block_scale_factor", 1.0, 0.0, 1, 1e6, "a positive number", &d));
    cfg->mid_block_scale_factor = (float)d;
    TRY(opt_int(&p, "downsample_padding", 1, 0, 1, &cfg->downsample_padding));
    static const char *const resample_types[] = {"conv", "resnet", NULL};
    const char *down_type, *up_type;
    TRY(opt_enum(&p, "downsample_type", resample_types, 1, &down_type));
    TRY(opt_enum(&p, "upsample_type", resample_types, 1, &up_type));
    cfg->downsample_resnet = down_type && strcmp(down_type, "resnet") == 0;
    cfg->upsample_resnet = up_type && strcmp(up_type, "resnet") == 0;
    TRY(opt_num(&p, "dropout", 0.0, 0.0, 0, 1.0, "a number in [0, 1]", &d));
    static const char *const acts[] = {"silu", "swish", "mish", "gelu", "relu", NULL};
    const char *act;
    TRY(opt_enum(&p, "act_fn", acts, 0, &act));
    TRY(opt_int_or_null(&p, "attention_head_dim", 8, 1, UNET_MAX_CHANNELS, &cfg->attention_head_dim));
    TRY(opt_int(&p, "norm_num_groups", 32, 1, UNET_MAX_CHANNELS, &cfg->norm_num_groups));
    TRY(opt_int_or_null(&p, "attn_norm_num_groups", 0, 1, UNET_MAX_CHANNELS, &cfg->attn_norm_num_groups));
    TRY(opt_num(&p, "norm_eps", 1e-5, 0.0, 1, 1.0, "a number in (0, 1]", &d));
    cfg->norm_eps = (float)d;
    static const char *const shifts[] = {"default", "scale_shift", "spatial", "ada_group", NULL};
    const char *shift;
    TRY(opt_enum(&p, "resnet_time_scale_shift", shifts, 0, &shift));
    TRY(opt_bool(&p, "add_attention", 1, &cfg->add_attention));
    static const char *const class_types[] = {"timestep", "identity", NULL};
    const char *class_type;
    TRY(opt_enum(&p, "class_embed_type", class_types, 1, &class_type));
    if (!get(&p, "class_embed_type")) class_type = NULL; /* default None */
    int num_class, num_train;
    TRY(opt_int_or_null(&p, "num_class_embeds", 0, 1, 1L << 30, &num_class));
    TRY(opt_int_or_null(&p, "num_train_timesteps", 0, 1, 1L << 30, &num_train));

    /* 3. unsupported options, by name */
    for (const cJSON *a = root->child; a; a = a->next) {
        if (!a->string || a->string[0] == '_') continue;
        if (!in_list(a->string, known_keys)) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: unknown option '%s' (not a UNet2DModel config key)", source,
                           a->string);
            goto done;
        }
    }
    {
        const cJSON *cls = get(&p, "_class_name");
        if (cls && !(cJSON_IsString(cls) && strcmp(cls->valuestring, "UNet2DModel") == 0)) {
            char r[64];
            repr(cls, r, sizeof r);
            st = core_fail(err, PNDM_ERR_MODEL, "%s: _class_name %s is not supported (only UNet2DModel)", source, r);
            goto done;
        }
    }
    if (class_type) {
        st = core_fail(err, PNDM_ERR_MODEL, "%s: class_embed_type '%s' is not supported (class conditioning)", source,
                       class_type);
        goto done;
    }
    if (num_class) {
        st = core_fail(err, PNDM_ERR_MODEL, "%s: num_class_embeds %d is not supported (class conditioning)", source,
                       num_class);
        goto done;
    }
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0) {
        st = core_fail(err, PNDM_ERR_MODEL, "%s: act_fn '%s' is not supported (only silu)", source, act);
        goto done;
    }
    if (strcmp(time_type, "learned") == 0) {
        st = core_fail(err, PNDM_ERR_MODEL,
                       "%s: time_embedding_type 'learned' is not supported (only positional, fourier)", source);
        goto done;
    }
    cfg->time_fourier = strcmp(time_type, "fourier") == 0;
    if (strcmp(shift, "default") != 0 && strcmp(shift, "scale_shift") != 0) {
        st = core_fail(err, PNDM_ERR_MODEL,
                       "%s: resnet_time_scale_shift '%s' is not supported (only default, scale_shift)", source, shift);
        goto done;
    }
    cfg->scale_shift = strcmp(shift, "scale_shift") == 0;
    for (int dir = 0; dir < 2; dir++) {
        const char **names = dir == 0 ? down_names : up_names;
        unet_block_kind *kinds = dir == 0 ? cfg->down_block_types : cfg->up_block_types;
        for (int i = 0; i < cfg->n_levels; i++) {
            const char *base = block_base(names[i]);
            if (in_list(base, dir == 0 ? unsupported_down : unsupported_up)) {
                st = core_fail(err, PNDM_ERR_MODEL, "%s: %s[%d] '%s' is not supported", source,
                               dir == 0 ? "down_block_types" : "up_block_types", i, names[i]);
                goto done;
            }
            for (int k = dir == 0 ? 0 : 5; k < (dir == 0 ? 5 : 10); k++)
                if (strcmp(base, block_names[k]) == 0) kinds[i] = (unet_block_kind)k;
        }
    }
    /* downsample_type / upsample_type only act on AttnDownBlock2D / AttnUpBlock2D; a plain block
     * that resamples the other way would silently disagree with the option. */
    for (int i = 0; i + 1 < cfg->n_levels; i++) {
        unet_block_kind k = cfg->down_block_types[i];
        if ((k == UNET_DOWN_BLOCK && cfg->downsample_resnet) ||
            (k == UNET_RESNET_DOWNSAMPLE && !cfg->downsample_resnet)) {
            st = core_fail(
                err, PNDM_ERR_MODEL,
                "%s: downsample_type '%s' contradicts down_block_types[%d] '%s' (which always downsamples with a %s)",
                source, cfg->downsample_resnet ? "resnet" : "conv", i, down_names[i],
                k == UNET_DOWN_BLOCK ? "conv" : "resnet");
            goto done;
        }
        k = cfg->up_block_types[i];
        if ((k == UNET_UP_BLOCK && cfg->upsample_resnet) || (k == UNET_RESNET_UPSAMPLE && !cfg->upsample_resnet)) {
            st = core_fail(
                err, PNDM_ERR_MODEL,
                "%s: upsample_type '%s' contradicts up_block_types[%d] '%s' (which always upsamples with a %s)", source,
                cfg->upsample_resnet ? "resnet" : "conv", i, up_names[i], k == UNET_UP_BLOCK ? "conv" : "resnet");
            goto done;
        }
    }
    for (int dir = 0; dir < 2; dir++) {
        const unet_block_kind *kinds = dir == 0 ? cfg->down_block_types : cfg->up_block_types;
        int n_skip = 0;
        for (int i = 0; i < cfg->n_levels; i++) n_skip += unet_block_is_skip(kinds[i]);
        if (n_skip == 0) continue;
        const char *key = dir == 0 ? "down_block_types" : "up_block_types";
        if (n_skip != cfg->n_levels) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: %s mixes skip blocks with other blocks (not supported)", source,
                           key);
            goto done;
        }
        int ch = dir == 0 ? cfg->in_channels : cfg->out_channels;
        if (ch != 3) {
            st = core_fail(err, PNDM_ERR_MODEL, "%s: %s: skip blocks need %s 3 (got %d)", source, key,
                           dir == 0 ? "in_channels" : "out_channels", ch);
            goto done;
        }
    }
#undef TRY
done:
    cJSON_Delete(root);
    return st;
}
