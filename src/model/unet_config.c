/* UNet2DModel config.json parser (diffusers 0.30.3, models/unets/unet_2d.py: UNet2DModel.__init__
 * keys and defaults). Validation order: see unet_config.h. */
#include "unet_config.h"
#include "core.h"
#include "options.h"

#include <stddef.h>

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

/* ---- the option table ----------------------------------------------------------------------- */
/* pndm_unet_forward runs at most 2^28 pixels (16384 x 16384); a larger sample_size could never
 * be generated, and its pixel count overflows int in the workspace planning. */
#define CFG_MAX_SAMPLE 16384

/* What the table reads: the struct itself plus the values checked after reading (names, the
 * options refused by name, the doubles stored as float). */
typedef struct unet_raw {
    unet_config c;
    const char *down_names[UNET_MAX_LEVELS], *up_names[UNET_MAX_LEVELS];
    int n_down, n_up;
    int time_type, down_type, up_type, act, shift, class_type; /* ENUM indices (-1: null) */
    int num_class, num_train;
    double freq_shift, mid_scale, dropout, norm_eps;
} unet_raw;

static const char *const time_types[] = {"positional", "fourier", "learned", NULL};
static const char *const resample_types[] = {"conv", "resnet", NULL};
static const char *const acts[] = {"silu", "swish", "mish", "gelu", "relu", NULL};
static const char *const shifts[] = {"default", "scale_shift", "spatial", "ada_group", NULL};
static const char *const class_types[] = {"timestep", "identity", NULL};
enum { TIME_LEARNED = 2, RESAMPLE_RESNET = 1, SHIFT_SCALE_SHIFT = 1 };

static pndm_status parse_sample_size(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    unet_raw *u = dst;
    if (!v || cJSON_IsNull(v))
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: option 'sample_size' is required (an integer >= 1)", r->source);
    long long s = 0;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2) {
        long long h = 0, w = 0;
        if (!core_json_int(cJSON_GetArrayItem(v, 0), 1, CFG_MAX_SAMPLE, &h) ||
            !core_json_int(cJSON_GetArrayItem(v, 1), 1, CFG_MAX_SAMPLE, &w))
            return core_opt_bad(r, o->key, v, "an integer in [1, 16384] or a list of two");
        if (h != w)
            return core_fail(r->err, PNDM_ERR_MODEL,
                             "%s: option 'sample_size' [%lld, %lld]: non-square samples are not supported", r->source,
                             h, w);
        s = h;
    } else if (!core_json_int(v, 1, CFG_MAX_SAMPLE, &s)) {
        return core_opt_bad(r, o->key, v, "an integer in [1, 16384] or a list of two");
    }
    u->c.sample_size = (int)s;
    return PNDM_OK;
}

/* A list of block type names: strings naming diffusers blocks of the right direction. */
static pndm_status parse_block_list(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    unet_raw *u = dst;
    const int down = strcmp(o->key, "down_block_types") == 0;
    const char **names = down ? u->down_names : u->up_names;
    int *n = down ? &u->n_down : &u->n_up;
    if (!v) {
        for (int i = 0; i < 4; i++) names[i] = down ? default_down[i] : default_up[i];
        *n = 4;
        return PNDM_OK;
    }
    int len = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (len < 1 || len > UNET_MAX_LEVELS) {
        char what[64];
        snprintf(what, sizeof what, "a list of 1 to %d block type names", UNET_MAX_LEVELS);
        return core_opt_bad(r, o->key, v, what);
    }
    for (int i = 0; i < len; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        char shown[64];
        core_json_repr(e, shown, sizeof shown);
        if (!cJSON_IsString(e))
            return core_fail(r->err, PNDM_ERR_MODEL, "%s: option '%s': entry %d must be a block type name (got %s)",
                             r->source, o->key, i, shown);
        const char *base = block_base(e->valuestring);
        if (!in_list(base, down ? all_down : all_up)) {
            if (in_list(base, down ? all_up : all_down))
                return core_fail(r->err, PNDM_ERR_MODEL, "%s: option '%s': entry %d '%s' is not %s block type",
                                 r->source, o->key, i, e->valuestring, down ? "a down" : "an up");
            return core_fail(r->err, PNDM_ERR_MODEL, "%s: option '%s': unknown block type '%s'", r->source, o->key,
                             e->valuestring);
        }
        names[i] = e->valuestring;
    }
    *n = len;
    return PNDM_OK;
}

/* block_out_channels, then the checks that tie the three lists and sample_size together. */
static pndm_status parse_channels(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst) {
    unet_raw *u = dst;
    unet_config *cfg = &u->c;
    int n;
    if (!v) {
        n = 4;
        for (int i = 0; i < n; i++) cfg->block_out_channels[i] = default_channels[i];
    } else {
        n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (n < 1 || n > UNET_MAX_LEVELS) return core_opt_bad(r, o->key, v, "a list of 1 to 8 positive integers");
        for (int i = 0; i < n; i++) {
            long long c = 0;
            if (!core_json_int(cJSON_GetArrayItem(v, i), 1, UNET_MAX_CHANNELS, &c))
                return core_opt_bad(r, o->key, v, "a list of integers in [1, 16384]");
            cfg->block_out_channels[i] = (int)c;
        }
    }
    if (u->n_down != u->n_up)
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: down_block_types has %d entries but up_block_types has %d",
                         r->source, u->n_down, u->n_up);
    if (n != u->n_down)
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: block_out_channels has %d entries but down_block_types has %d",
                         r->source, n, u->n_down);
    cfg->n_levels = n;
    /* the UNet halves the sample n - 1 times and the up path must meet the skip connections
     * again (diffusers' PNDMPipeline fails on such a sample_size too) */
    const int div = 1 << (n - 1);
    if (cfg->sample_size % div != 0)
        return core_fail(r->err, PNDM_ERR_MODEL,
                         "%s: option 'sample_size' %d must be divisible by %d (2^(levels-1) for %d levels)", r->source,
                         cfg->sample_size, div, n);
    return PNDM_OK;
}

#define RAW(f) offsetof(unet_raw, f)
/* UNet2DModel.__init__'s keys, in its order (which is the order the checks run in). */
static const core_opt k_unet_options[] = {
    CORE_OPT_CUSTOM_ROW("sample_size", parse_sample_size),
    CORE_OPT_INT_ROW("in_channels", RAW(c.in_channels), 0, 1, UNET_MAX_CHANNELS, 3),
    CORE_OPT_INT_ROW("out_channels", RAW(c.out_channels), 0, 1, UNET_MAX_CHANNELS, 3),
    CORE_OPT_BOOL_ROW("center_input_sample", RAW(c.center_input_sample), 0),
    CORE_OPT_ENUM_ROW("time_embedding_type", RAW(time_type), 0, 0, time_types),
    CORE_OPT_NUM_ROW("freq_shift", RAW(freq_shift), 0, -1e6, 1e6, 0.0, "a number"),
    CORE_OPT_BOOL_ROW("flip_sin_to_cos", RAW(c.flip_sin_to_cos), 1),
    CORE_OPT_CUSTOM_ROW("down_block_types", parse_block_list),
    CORE_OPT_CUSTOM_ROW("up_block_types", parse_block_list),
    CORE_OPT_CUSTOM_ROW("block_out_channels", parse_channels),
    CORE_OPT_INT_ROW("layers_per_block", RAW(c.layers_per_block), 0, 1, UNET_MAX_LAYERS, 2),
    CORE_OPT_NUM_ROW("mid_block_scale_factor", RAW(mid_scale), CORE_OPT_LO_OPEN, 0.0, 1e6, 1.0, "a positive number"),
    CORE_OPT_INT_ROW("downsample_padding", RAW(c.downsample_padding), 0, 0, 1, 1),
    CORE_OPT_ENUM_ROW("downsample_type", RAW(down_type), CORE_OPT_NULLABLE, 0, resample_types),
    CORE_OPT_ENUM_ROW("upsample_type", RAW(up_type), CORE_OPT_NULLABLE, 0, resample_types),
    CORE_OPT_NUM_ROW("dropout", RAW(dropout), 0, 0.0, 1.0, 0.0, "a number in [0, 1]"),
    CORE_OPT_ENUM_ROW("act_fn", RAW(act), 0, 0, acts),
    CORE_OPT_INT_ROW("attention_head_dim", RAW(c.attention_head_dim), CORE_OPT_NULLABLE, 1, UNET_MAX_CHANNELS, 8),
    CORE_OPT_INT_ROW("norm_num_groups", RAW(c.norm_num_groups), 0, 1, UNET_MAX_CHANNELS, 32),
    CORE_OPT_INT_ROW("attn_norm_num_groups", RAW(c.attn_norm_num_groups), CORE_OPT_NULLABLE, 1, UNET_MAX_CHANNELS, 0),
    CORE_OPT_NUM_ROW("norm_eps", RAW(norm_eps), CORE_OPT_LO_OPEN, 0.0, 1.0, 1e-5, "a number in (0, 1]"),
    CORE_OPT_ENUM_ROW("resnet_time_scale_shift", RAW(shift), 0, 0, shifts),
    CORE_OPT_BOOL_ROW("add_attention", RAW(c.add_attention), 1),
    CORE_OPT_ENUM_ROW("class_embed_type", RAW(class_type), CORE_OPT_NULLABLE, -1, class_types),
    CORE_OPT_INT_ROW("num_class_embeds", RAW(num_class), CORE_OPT_NULLABLE, 1, 1 << 30, 0),
    CORE_OPT_INT_ROW("num_train_timesteps", RAW(num_train), CORE_OPT_NULLABLE, 1, 1 << 30, 0),
};
#undef RAW
#define N_UNET_OPTIONS ((int)(sizeof k_unet_options / sizeof *k_unet_options))

/* ---- parse -------------------------------------------------------------------------------- */

/* 3. options this implementation does not support, by name (after every value was read). */
static pndm_status check_supported(const cJSON *root, const unet_raw *u, const char *source, unet_config *cfg,
                                   pndm_error *err) {
    for (const cJSON *a = root->child; a; a = a->next) {
        if (!a->string || a->string[0] == '_') continue;
        if (core_opt_find(k_unet_options, N_UNET_OPTIONS, a->string) < 0)
            return core_fail(err, PNDM_ERR_MODEL, "%s: unknown option '%s' (not a UNet2DModel config key)", source,
                             a->string);
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && !(cJSON_IsString(cls) && strcmp(cls->valuestring, "UNet2DModel") == 0)) {
        char shown[64];
        core_json_repr(cls, shown, sizeof shown);
        return core_fail(err, PNDM_ERR_MODEL, "%s: _class_name %s is not supported (only UNet2DModel)", source, shown);
    }
    if (u->class_type >= 0)
        return core_fail(err, PNDM_ERR_MODEL, "%s: class_embed_type '%s' is not supported (class conditioning)", source,
                         class_types[u->class_type]);
    if (u->num_class)
        return core_fail(err, PNDM_ERR_MODEL, "%s: num_class_embeds %d is not supported (class conditioning)", source,
                         u->num_class);
    if (strcmp(acts[u->act], "silu") != 0 && strcmp(acts[u->act], "swish") != 0)
        return core_fail(err, PNDM_ERR_MODEL, "%s: act_fn '%s' is not supported (only silu)", source, acts[u->act]);
    if (u->time_type == TIME_LEARNED)
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: time_embedding_type 'learned' is not supported (only positional, fourier)", source);
    if (u->shift > SHIFT_SCALE_SHIFT)
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: resnet_time_scale_shift '%s' is not supported (only default, scale_shift)", source,
                         shifts[u->shift]);
    for (int dir = 0; dir < 2; dir++) {
        const char *const *names = dir == 0 ? u->down_names : u->up_names;
        unet_block_kind *kinds = dir == 0 ? cfg->down_block_types : cfg->up_block_types;
        for (int i = 0; i < cfg->n_levels; i++) {
            const char *base = block_base(names[i]);
            if (in_list(base, dir == 0 ? unsupported_down : unsupported_up))
                return core_fail(err, PNDM_ERR_MODEL, "%s: %s[%d] '%s' is not supported", source,
                                 dir == 0 ? "down_block_types" : "up_block_types", i, names[i]);
            for (int k = dir == 0 ? 0 : 5; k < (dir == 0 ? 5 : 10); k++)
                if (strcmp(base, block_names[k]) == 0) kinds[i] = (unet_block_kind)k;
        }
    }
    /* downsample_type / upsample_type only act on AttnDownBlock2D / AttnUpBlock2D; a plain block
     * that resamples the other way would silently disagree with the option. */
    for (int i = 0; i + 1 < cfg->n_levels; i++) {
        unet_block_kind k = cfg->down_block_types[i];
        if ((k == UNET_DOWN_BLOCK && cfg->downsample_resnet) ||
            (k == UNET_RESNET_DOWNSAMPLE && !cfg->downsample_resnet))
            return core_fail(
                err, PNDM_ERR_MODEL,
                "%s: downsample_type '%s' contradicts down_block_types[%d] '%s' (which always downsamples with a %s)",
                source, cfg->downsample_resnet ? "resnet" : "conv", i, u->down_names[i],
                k == UNET_DOWN_BLOCK ? "conv" : "resnet");
        k = cfg->up_block_types[i];
        if ((k == UNET_UP_BLOCK && cfg->upsample_resnet) || (k == UNET_RESNET_UPSAMPLE && !cfg->upsample_resnet))
            return core_fail(
                err, PNDM_ERR_MODEL,
                "%s: upsample_type '%s' contradicts up_block_types[%d] '%s' (which always upsamples with a %s)", source,
                cfg->upsample_resnet ? "resnet" : "conv", i, u->up_names[i], k == UNET_UP_BLOCK ? "conv" : "resnet");
    }
    for (int dir = 0; dir < 2; dir++) {
        const unet_block_kind *kinds = dir == 0 ? cfg->down_block_types : cfg->up_block_types;
        int n_skip = 0;
        for (int i = 0; i < cfg->n_levels; i++) n_skip += unet_block_is_skip(kinds[i]);
        if (n_skip == 0) continue;
        const char *key = dir == 0 ? "down_block_types" : "up_block_types";
        if (n_skip != cfg->n_levels)
            return core_fail(err, PNDM_ERR_MODEL, "%s: %s mixes skip blocks with other blocks (not supported)", source,
                             key);
        int ch = dir == 0 ? cfg->in_channels : cfg->out_channels;
        if (ch != 3)
            return core_fail(err, PNDM_ERR_MODEL, "%s: %s: skip blocks need %s 3 (got %d)", source, key,
                             dir == 0 ? "in_channels" : "out_channels", ch);
    }
    return PNDM_OK;
}

pndm_status unet_config_parse(const char *json, size_t len, const char *source, unet_config *cfg, pndm_error *err) {
    memset(cfg, 0, sizeof *cfg);
    /* 1. well-formed JSON, an object, no key twice (core_opts_read) */
    cJSON *root = NULL;
    pndm_status st = core_json_parse_object(json, len, source, "config", &root, err);
    if (st) return st;
    /* 2. types and values, in UNet2DModel.__init__ order */
    unet_raw u;
    memset(&u, 0, sizeof u);
    core_opt_reader r = {source, CORE_OPT_STYLE_OPTION, "UNet2DModel", err, 0};
    st = core_opts_read(&r, root, k_unet_options, N_UNET_OPTIONS, &u);
    if (!st) {
        u.c.time_fourier = u.time_type == 1;
        u.c.freq_shift = (float)u.freq_shift;
        u.c.mid_block_scale_factor = (float)u.mid_scale;
        u.c.norm_eps = (float)u.norm_eps;
        u.c.downsample_resnet = u.down_type == RESAMPLE_RESNET;
        u.c.upsample_resnet = u.up_type == RESAMPLE_RESNET;
        u.c.scale_shift = u.shift == SHIFT_SCALE_SHIFT;
        /* 3. unsupported options */
        st = check_supported(root, &u, source, &u.c, err);
    }
    if (!st) *cfg = u.c;
    cJSON_Delete(root);
    return st;
}
