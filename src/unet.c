/* UNet2DModel: layer plan (mirrors diffusers 0.30.3 models/unets/unet_2d.py and unet_2d_blocks.py
 * constructors), weight binding by state-dict name, and the forward pass (the forward methods of
 * the same classes; see each function). */
#define _POSIX_C_SOURCE 200809L
#include "unet.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* ============================================================================================ */
/* Plan                                                                                         */

typedef struct builder {
    unet_net *n;
    const char *src;
    pndm_error *err;
    int cap;
} builder;

static pndm_status b_reg(builder *b, const float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2,
                         int64_t d3, const char *prefix, const char *suffix) {
    unet_net *n = b->n;
    if (n->n_params == b->cap) {
        int cap = b->cap ? 2 * b->cap : 256;
        unet_param *p = realloc(n->params, (size_t)cap * sizeof *p);
        if (!p) return pndm_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
        n->params = p;
        b->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(suffix) + 2;
    char *name = malloc(len);
    if (!name) return pndm_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
    snprintf(name, len, "%s.%s", prefix, suffix);
    unet_param *p = &n->params[n->n_params++];
    p->name = name;
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    size_t count = 1;
    for (int i = 0; i < 4; i++) {
        p->shape[i] = i < ndim ? d[i] : 0;
        if (i < ndim) count *= (size_t)d[i];
    }
    p->slot = slot;
    n->param_floats += count;
    return PNDM_OK;
}

static pndm_status b_conv(builder *b, unet_conv *c, int cin, int cout, int k, int stride, const int pad[4],
                          const char *prefix) {
    c->g.cin = cin;
    c->g.cout = cout;
    c->g.k = k;
    c->g.stride = stride;
    c->g.pad_t = pad[0];
    c->g.pad_l = pad[1];
    c->g.pad_b = pad[2];
    c->g.pad_r = pad[3];
    pndm_status st = b_reg(b, &c->w, 4, cout, cin, k, k, prefix, "weight");
    return st ? st : b_reg(b, &c->b, 1, cout, 0, 0, 0, prefix, "bias");
}

static const int PAD0[4] = {0, 0, 0, 0}, PAD1[4] = {1, 1, 1, 1};

static pndm_status b_linear(builder *b, unet_linear *l, int in, int out, const char *prefix) {
    l->in = in;
    l->out = out;
    pndm_status st = b_reg(b, &l->w, 2, out, in, 0, 0, prefix, "weight");
    return st ? st : b_reg(b, &l->b, 1, out, 0, 0, 0, prefix, "bias");
}

/* GroupNorm(groups, channels): groups must divide channels (torch refuses otherwise). `origin`
 * says which option (or diffusers rule) chose the group count. */
static pndm_status b_norm(builder *b, unet_norm *nm, int groups, int ch, float eps, const char *prefix,
                          const char *origin) {
    if (groups < 1 || ch % groups != 0)
        return pndm_fail(b->err, PNDM_ERR_MODEL, "%s: '%s': %d groups (%s) do not divide its %d channels", b->src,
                         prefix, groups, origin, ch);
    nm->groups = groups;
    nm->channels = ch;
    nm->eps = eps;
    pndm_status st = b_reg(b, &nm->w, 1, ch, 0, 0, 0, prefix, "weight");
    return st ? st : b_reg(b, &nm->b, 1, ch, 0, 0, 0, prefix, "bias");
}

static int min_groups(int ch) { return ch / 4 < 32 ? ch / 4 : 32; }   /* min(ch // 4, 32) */

/* ResnetBlock2D(in, out, groups, groups_out, use_in_shortcut (-1: in != out), up/down, kernel) */
static pndm_status b_resnet(builder *b, unet_resnet *r, int cin, int cout, int groups, int groups_out,
                            const char *gorigin, int force_shortcut, unet_resample rs, float out_scale,
                            const char *prefix) {
    const unet_config *c = &b->n->cfg;
    char name[192];
    pndm_status st;
    r->cin = cin;
    r->cout = cout;
    r->resample = rs;
    r->scale_shift = c->scale_shift;
    r->out_scale = out_scale;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    if ((st = b_norm(b, &r->norm1, groups, cin, c->norm_eps, name, gorigin))) return st;
    snprintf(name, sizeof name, "%s.conv1", prefix);
    if ((st = b_conv(b, &r->conv1, cin, cout, 3, 1, PAD1, name))) return st;
    snprintf(name, sizeof name, "%s.time_emb_proj", prefix);
    if ((st = b_linear(b, &r->temb, b->n->temb_dim, c->scale_shift ? 2 * cout : cout, name))) return st;
    snprintf(name, sizeof name, "%s.norm2", prefix);
    if ((st = b_norm(b, &r->norm2, groups_out, cout, c->norm_eps, name, gorigin))) return st;
    snprintf(name, sizeof name, "%s.conv2", prefix);
    if ((st = b_conv(b, &r->conv2, cout, cout, 3, 1, PAD1, name))) return st;
    r->has_shortcut = force_shortcut || cin != cout;
    if (r->has_shortcut) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        if ((st = b_conv(b, &r->shortcut, cin, cout, 1, 1, PAD0, name))) return st;
    }
    return PNDM_OK;
}

/* Attention(ch, heads=ch // head_dim, dim_head=head_dim, norm_num_groups, residual_connection,
 * rescale_output_factor); norm_groups 0 = no group_norm. */
static pndm_status b_attn(builder *b, unet_attn *a, int ch, int norm_groups, const char *gorigin, float rescale,
                          const char *prefix) {
    const unet_config *c = &b->n->cfg;
    int head_dim = c->attention_head_dim ? c->attention_head_dim : ch;
    if (ch % head_dim != 0)
        return pndm_fail(b->err, PNDM_ERR_MODEL, "%s: attention_head_dim %d does not divide the %d channels of '%s'",
                         b->src, head_dim, ch, prefix);
    a->channels = ch;
    a->heads = ch / head_dim;
    a->scale = (float)pow((double)head_dim, -0.5);
    a->rescale = rescale;
    a->has_norm = norm_groups > 0;
    char name[192];
    pndm_status st;
    if (a->has_norm) {
        snprintf(name, sizeof name, "%s.group_norm", prefix);
        if ((st = b_norm(b, &a->norm, norm_groups, ch, c->norm_eps, name, gorigin))) return st;
    }
    snprintf(name, sizeof name, "%s.to_q", prefix);
    if ((st = b_linear(b, &a->q, ch, ch, name))) return st;
    snprintf(name, sizeof name, "%s.to_k", prefix);
    if ((st = b_linear(b, &a->k, ch, ch, name))) return st;
    snprintf(name, sizeof name, "%s.to_v", prefix);
    if ((st = b_linear(b, &a->v, ch, ch, name))) return st;
    snprintf(name, sizeof name, "%s.to_out.0", prefix);
    return b_linear(b, &a->out, ch, ch, name);
}

static pndm_status b_alloc_block(builder *b, unet_block *blk, int n_res, int n_attn) {
    blk->n_resnets = n_res;
    blk->n_attns = n_attn;
    blk->resnets = calloc((size_t)n_res, sizeof *blk->resnets);
    blk->attns = n_attn ? calloc((size_t)n_attn, sizeof *blk->attns) : NULL;
    if (!blk->resnets || (n_attn && !blk->attns)) return pndm_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
    return PNDM_OK;
}

static const float SQRT2 = 1.41421356237309504880f;   /* np.sqrt(2.0): skip blocks' output_scale_factor */

/* get_down_block(...) as UNet2DModel calls it */
static pndm_status b_down(builder *b, int i) {
    const unet_config *c = &b->n->cfg;
    unet_block *blk = &b->n->down[i];
    const int L = c->n_levels, in_ch = i == 0 ? c->block_out_channels[0] : c->block_out_channels[i - 1];
    const int out = c->block_out_channels[i], final = i == L - 1, nl = c->layers_per_block;
    const int skip = unet_block_is_skip(c->down_block_types[i]);
    const int attn = unet_block_has_attention(c->down_block_types[i]);
    char name[192];
    pndm_status st;
    blk->kind = c->down_block_types[i];
    blk->cin = in_ch;
    blk->cout = out;
    if ((st = b_alloc_block(b, blk, nl, attn ? nl : 0))) return st;
    for (int j = 0; j < nl; j++) {
        int cin = j == 0 ? in_ch : out;
        snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
        if (skip)
            st = b_resnet(b, &blk->resnets[j], cin, out, min_groups(cin), min_groups(out),
                          "skip blocks use min(channels / 4, 32)", 0, UNET_RS_NONE, SQRT2, name);
        else
            st = b_resnet(b, &blk->resnets[j], cin, out, c->norm_num_groups, c->norm_num_groups, "norm_num_groups", 0,
                          UNET_RS_NONE, 1.0f, name);
        if (st) return st;
        if (attn) {
            snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
            if (skip) st = b_attn(b, &blk->attns[j], out, 32, "AttnSkipDownBlock2D uses 32", SQRT2, name);
            else st = b_attn(b, &blk->attns[j], out, c->norm_num_groups, "norm_num_groups", 1.0f, name);
            if (st) return st;
        }
    }
    if (final) return PNDM_OK;
    if (skip) {
        blk->sampler = UNET_SAMPLER_SKIP;
        snprintf(name, sizeof name, "down_blocks.%d.resnet_down", i);
        if ((st = b_resnet(b, &blk->rs, out, out, min_groups(out), min_groups(out),
                           "skip blocks use min(channels / 4, 32)", 1, UNET_RS_FIR_DOWN, SQRT2, name)))
            return st;
        snprintf(name, sizeof name, "down_blocks.%d.skip_conv", i);
        return b_conv(b, &blk->skip_conv, 3, out, 1, 1, PAD0, name);
    }
    int resnet = blk->kind == UNET_RESNET_DOWNSAMPLE || (blk->kind == UNET_ATTN_DOWN_BLOCK && c->downsample_resnet);
    if (resnet) {
        blk->sampler = UNET_SAMPLER_RESNET;
        snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0", i);
        return b_resnet(b, &blk->rs, out, out, c->norm_num_groups, c->norm_num_groups, "norm_num_groups", 0,
                        UNET_RS_AVGPOOL, 1.0f, name);
    }
    /* Downsample2D(use_conv=True, padding=p, name="op"): padding 0 pads (0, 1, 0, 1) first */
    blk->sampler = UNET_SAMPLER_CONV;
    const int pad_asym[4] = {0, 0, 1, 1};
    snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
    return b_conv(b, &blk->conv, out, out, 3, 2, c->downsample_padding ? PAD1 : pad_asym, name);
}

/* get_up_block(...) as UNet2DModel calls it */
static pndm_status b_up(builder *b, int i) {
    const unet_config *c = &b->n->cfg;
    unet_block *blk = &b->n->up[i];
    const int L = c->n_levels;
    const int *ch = c->block_out_channels;
    const int prev = i == 0 ? ch[L - 1] : ch[L - i];            /* prev_output_channel */
    const int out = ch[L - 1 - i];                                  /* reversed[i] */
    const int in = ch[L - 1 - (i + 1 < L - 1 ? i + 1 : L - 1)];    /* reversed[min(i + 1, L - 1)] */
    const int final = i == L - 1, nl = c->layers_per_block + 1;
    const unet_block_kind kind = c->up_block_types[i];
    const int skip = unet_block_is_skip(kind);
    const int attn = unet_block_has_attention(kind);
    char name[192];
    pndm_status st;
    blk->kind = kind;
    blk->cin = prev;
    blk->cout = out;
    if ((st = b_alloc_block(b, blk, nl, attn ? (skip ? 1 : nl) : 0))) return st;
    for (int j = 0; j < nl; j++) {
        int res_skip = j == nl - 1 ? in : out, rin = j == 0 ? prev : out;
        snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
        if (kind == UNET_SKIP_UP_BLOCK)
            st = b_resnet(b, &blk->resnets[j], rin + res_skip, out, min_groups(rin + res_skip), min_groups(out),
                          "skip blocks use min(channels / 4, 32)", 0, UNET_RS_NONE, SQRT2, name);
        else if (kind == UNET_ATTN_SKIP_UP_BLOCK) {
            /* diffusers 0.30.3 writes groups=min(resnet_in_channels + res_skip_channels // 4, 32) */
            int g = rin + res_skip / 4 < 32 ? rin + res_skip / 4 : 32;
            st = b_resnet(b, &blk->resnets[j], rin + res_skip, out, g, min_groups(out),
                          "AttnSkipUpBlock2D uses min(in + skip / 4, 32)", 0, UNET_RS_NONE, SQRT2, name);
        } else
            st = b_resnet(b, &blk->resnets[j], rin + res_skip, out, c->norm_num_groups, c->norm_num_groups,
                          "norm_num_groups", 0, UNET_RS_NONE, 1.0f, name);
        if (st) return st;
        if (attn && !skip) {
            snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
            if ((st = b_attn(b, &blk->attns[j], out, c->norm_num_groups, "norm_num_groups", 1.0f, name))) return st;
        }
    }
    if (attn && skip) {
        snprintf(name, sizeof name, "up_blocks.%d.attentions.0", i);
        if ((st = b_attn(b, &blk->attns[0], out, 32, "AttnSkipUpBlock2D uses 32", SQRT2, name))) return st;
    }
    if (final) return PNDM_OK;
    if (skip) {
        blk->sampler = UNET_SAMPLER_SKIP;
        snprintf(name, sizeof name, "up_blocks.%d.resnet_up", i);
        if ((st = b_resnet(b, &blk->rs, out, out, min_groups(out), min_groups(out),
                           "skip blocks use min(channels / 4, 32)", 1, UNET_RS_FIR_UP, SQRT2, name)))
            return st;
        snprintf(name, sizeof name, "up_blocks.%d.skip_conv", i);
        if ((st = b_conv(b, &blk->skip_conv, out, 3, 3, 1, PAD1, name))) return st;
        snprintf(name, sizeof name, "up_blocks.%d.skip_norm", i);
        return b_norm(b, &blk->skip_norm, min_groups(out), out, c->norm_eps, name,
                      "skip blocks use min(channels / 4, 32)");
    }
    int resnet = kind == UNET_RESNET_UPSAMPLE || (kind == UNET_ATTN_UP_BLOCK && c->upsample_resnet);
    if (resnet) {
        blk->sampler = UNET_SAMPLER_RESNET;
        snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0", i);
        return b_resnet(b, &blk->rs, out, out, c->norm_num_groups, c->norm_num_groups, "norm_num_groups", 0,
                        UNET_RS_NEAREST, 1.0f, name);
    }
    blk->sampler = UNET_SAMPLER_CONV;   /* Upsample2D(use_conv=True): nearest x2 then conv */
    snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
    return b_conv(b, &blk->conv, out, out, 3, 1, PAD1, name);
}

void unet_free(unet_net *net) {
    if (!net) return;
    for (int i = 0; i < UNET_MAX_LEVELS; i++) {
        free(net->down[i].resnets);
        free(net->down[i].attns);
        free(net->up[i].resnets);
        free(net->up[i].attns);
    }
    for (int i = 0; i < net->n_params; i++) free(net->params[i].name);
    free(net->params);
    for (int i = 0; i < net->n_owned; i++) free(net->owned[i]);
    free(net->owned);
    memset(net, 0, sizeof *net);
}

pndm_status unet_build(unet_net *net, const unet_config *cfg, const char *source, pndm_error *err) {
    memset(net, 0, sizeof *net);
    net->cfg = *cfg;
    builder b = {net, source, err, 0};
    const unet_config *c = &net->cfg;
    const int C0 = c->block_out_channels[0], L = c->n_levels;
    net->temb_dim = 4 * C0;
    net->tproj_dim = c->time_fourier ? 2 * C0 : C0;
    pndm_status st;
#define TRY(x) do { if ((st = (x)) != PNDM_OK) goto fail; } while (0)
    TRY(b_conv(&b, &net->conv_in, c->in_channels, C0, 3, 1, PAD1, "conv_in"));
    if (c->time_fourier) TRY(b_reg(&b, &net->fourier_w, 1, C0, 0, 0, 0, "time_proj", "weight"));
    TRY(b_linear(&b, &net->time1, net->tproj_dim, net->temb_dim, "time_embedding.linear_1"));
    TRY(b_linear(&b, &net->time2, net->temb_dim, net->temb_dim, "time_embedding.linear_2"));
    for (int i = 0; i < L; i++) TRY(b_down(&b, i));
    {   /* UNetMidBlock2D(num_layers=1): resnet, [attention], resnet */
        const int Cm = c->block_out_channels[L - 1];
        int ag = c->attn_norm_num_groups ? c->attn_norm_num_groups : (c->scale_shift ? 0 : c->norm_num_groups);
        const char *ag_origin = c->attn_norm_num_groups ? "attn_norm_num_groups" : "norm_num_groups";
        TRY(b_resnet(&b, &net->mid_res[0], Cm, Cm, c->norm_num_groups, c->norm_num_groups, "norm_num_groups", 0,
                     UNET_RS_NONE, c->mid_block_scale_factor, "mid_block.resnets.0"));
        net->mid_has_attn = c->add_attention;
        if (c->add_attention)
            TRY(b_attn(&b, &net->mid_attn, Cm, ag, ag_origin, c->mid_block_scale_factor, "mid_block.attentions.0"));
        TRY(b_resnet(&b, &net->mid_res[1], Cm, Cm, c->norm_num_groups, c->norm_num_groups, "norm_num_groups", 0,
                     UNET_RS_NONE, c->mid_block_scale_factor, "mid_block.resnets.1"));
    }
    for (int i = 0; i < L; i++) TRY(b_up(&b, i));
    TRY(b_norm(&b, &net->norm_out, c->norm_num_groups, C0, c->norm_eps, "conv_norm_out", "norm_num_groups"));
    TRY(b_conv(&b, &net->conv_out, C0, c->out_channels, 3, 1, PAD1, "conv_out"));
    net->has_skip_up = unet_block_is_skip(c->up_block_types[0]);
#undef TRY
    return PNDM_OK;
fail:
    unet_free(net);
    return st;
}

/* ============================================================================================ */
/* Binding                                                                                      */

static void fmt_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static int cmp_param_name(const void *a, const void *b) {
    return strcmp((*(const unet_param *const *)a)->name, (*(const unet_param *const *)b)->name);
}

pndm_status unet_bind(unet_net *net, const st_file *f, pndm_error *err) {
    const char *src = f->source ? f->source : "model";
    /* 1. every parameter present with its shape */
    for (int i = 0; i < net->n_params; i++) {
        const unet_param *p = &net->params[i];
        const st_tensor *t = st_find(f, p->name);
        char want[96], got[160];
        fmt_shape(want, sizeof want, p->ndim, p->shape);
        if (!t) return pndm_fail(err, PNDM_ERR_MODEL, "%s: missing tensor '%s' (expected shape %s)", src, p->name, want);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            return pndm_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s': got %s, expected %s", src, p->name, got, want);
        }
    }
    /* 2. no other tensor */
    const unet_param **sorted = malloc((size_t)(net->n_params ? net->n_params : 1) * sizeof *sorted);
    if (!sorted) return pndm_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    for (int i = 0; i < net->n_params; i++) sorted[i] = &net->params[i];
    qsort(sorted, (size_t)net->n_params, sizeof *sorted, cmp_param_name);
    for (int i = 0; i < f->n_tensors; i++) {
        unet_param key;
        key.name = f->tensors[i].name;
        const unet_param *kp = &key;
        if (!bsearch(&kp, sorted, (size_t)net->n_params, sizeof *sorted, cmp_param_name)) {
            free(sorted);
            return pndm_fail(err, PNDM_ERR_MODEL, "%s: unexpected tensor '%s' (not used by this config)", src,
                             f->tensors[i].name);
        }
    }
    free(sorted);
    /* 3. the count (every file tensor is a distinct parameter, so this holds unless the
     *    registry itself has duplicates) */
    if (f->n_tensors != net->n_params)
        return pndm_fail(err, PNDM_ERR_MODEL, "%s: expected %d tensors, found %d", src, net->n_params, f->n_tensors);
    /* data: F32 aligned in place, anything else converted */
    net->owned = calloc((size_t)(net->n_params ? net->n_params : 1), sizeof *net->owned);
    if (!net->owned) return pndm_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    for (int i = 0; i < net->n_params; i++) {
        const st_tensor *t = st_find(f, net->params[i].name);
        const float *data;
        int owned;
        pndm_status st = st_tensor_f32(f, t, &data, &owned, err);
        if (st) return st;
        if (owned) net->owned[net->n_owned++] = (float *)data;
        *net->params[i].slot = data;
    }
    return PNDM_OK;
}

/* ============================================================================================ */
/* Forward                                                                                      */

#define FWD_ALIGN 16   /* floats (64 bytes) */
#define FWD_SLOTS 8    /* h[2], cat, t[5] */
#define FWD_MAX_STACK (UNET_MAX_LEVELS * (UNET_MAX_LAYERS + 1) + 1)

/* saturating size arithmetic for the layout */
static size_t sz_mul(size_t a, size_t b) { size_t r; return pndm_mul_size(a, b, &r) ? r : SIZE_MAX; }
static size_t sz_add(size_t a, size_t b) { size_t r; return pndm_add_size(a, b, &r) ? r : SIZE_MAX; }
static size_t sz_align(size_t n) { return n >= SIZE_MAX - FWD_ALIGN ? SIZE_MAX : (n + FWD_ALIGN - 1) / FWD_ALIGN * FWD_ALIGN; }

typedef struct fwd_layout {
    size_t slot;        /* floats per working slot: B * the largest C * H * W of any tensor */
    size_t stack;       /* skip connections (B, C, H, W) pushed by conv_in and the down blocks */
    size_t sk;          /* per skip-sample buffer: B * 3 * H * W (0 without skip blocks) */
    size_t xc;          /* centred input (0 unless center_input_sample) */
    size_t vec;         /* per small vector buffer: B * max(time dims) */
    size_t ws;          /* per-thread scratch */
    size_t total;       /* all of the above, aligned, in floats */
} fwd_layout;

typedef struct level_max {
    size_t c[UNET_MAX_LEVELS + 1];   /* largest channel count of a tensor at each level */
    size_t ws;                       /* largest per-thread scratch */
    size_t vec;                      /* largest time-projection width */
    int H, W;
} level_max;

static void lm_note(level_max *m, int lvl, int ch) {
    if ((size_t)ch > m->c[lvl]) m->c[lvl] = (size_t)ch;
}

static void lm_conv(level_max *m, const unet_conv *c) {
    size_t w = op_conv2d_ws_floats(&c->g);
    if (w > m->ws) m->ws = w;
}

static void lm_resnet(level_max *m, const unet_resnet *r, int lvl) {
    int out = lvl + (r->resample == UNET_RS_AVGPOOL || r->resample == UNET_RS_FIR_DOWN) -
              (r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP);
    lm_note(m, lvl, r->cin);
    lm_note(m, out, r->cin);
    lm_note(m, out, r->cout);
    lm_conv(m, &r->conv1);
    lm_conv(m, &r->conv2);
    if (r->has_shortcut) lm_conv(m, &r->shortcut);
    if ((size_t)r->temb.out > m->vec) m->vec = (size_t)r->temb.out;
}

static void lm_attn(level_max *m, const unet_attn *a, int lvl) {
    lm_note(m, lvl, a->channels);
    size_t w = op_attention_ws_floats((m->H >> lvl) * (m->W >> lvl));
    if (w > m->ws) m->ws = w;
}

static void lm_block(level_max *m, const unet_block *blk, int lvl, int down) {
    for (int j = 0; j < blk->n_resnets; j++) lm_resnet(m, &blk->resnets[j], lvl);
    for (int j = 0; j < blk->n_attns; j++) lm_attn(m, &blk->attns[j], lvl);
    int next = down ? lvl + 1 : lvl - 1;
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV:
        lm_note(m, next, blk->cout);
        lm_conv(m, &blk->conv);
        break;
    case UNET_SAMPLER_RESNET: lm_resnet(m, &blk->rs, lvl); break;
    case UNET_SAMPLER_SKIP:
        lm_resnet(m, &blk->rs, lvl);
        lm_conv(m, &blk->skip_conv);
        lm_note(m, lvl, 3);
        lm_note(m, next, 3);
        break;
    }
}

static int fwd_plan(const unet_net *net, int B, int H, int W, int n_threads, fwd_layout *L) {
    const unet_config *c = &net->cfg;
    const int NL = c->n_levels;
    level_max m;
    memset(&m, 0, sizeof m);
    m.H = H;
    m.W = W;
    m.vec = (size_t)(net->temb_dim > net->tproj_dim ? net->temb_dim : net->tproj_dim);
    lm_note(&m, 0, c->in_channels);
    lm_note(&m, 0, c->out_channels);
    lm_note(&m, 0, c->block_out_channels[0]);
    lm_conv(&m, &net->conv_in);
    lm_conv(&m, &net->conv_out);
    for (int i = 0; i < NL; i++) lm_block(&m, &net->down[i], i, 1);
    lm_resnet(&m, &net->mid_res[0], NL - 1);
    lm_resnet(&m, &net->mid_res[1], NL - 1);
    if (net->mid_has_attn) lm_attn(&m, &net->mid_attn, NL - 1);
    for (int i = 0; i < NL; i++) {
        const unet_block *blk = &net->up[i];
        lm_block(&m, blk, NL - 1 - i, 0);
    }
    memset(L, 0, sizeof *L);
    size_t slot = 0;
    for (int l = 0; l < NL; l++) {
        size_t e = sz_mul(m.c[l], sz_mul((size_t)(H >> l), (size_t)(W >> l)));
        if (e > slot) slot = e;
    }
    L->slot = sz_align(sz_mul((size_t)B, slot));
    /* stack: conv_in output, then each down block's resnet outputs and downsample output */
    size_t stack = sz_align(sz_mul((size_t)B, sz_mul((size_t)c->block_out_channels[0], sz_mul((size_t)H, (size_t)W))));
    for (int i = 0; i < NL; i++) {
        size_t px = sz_mul((size_t)(H >> i), (size_t)(W >> i));
        size_t e = sz_align(sz_mul((size_t)B, sz_mul((size_t)c->block_out_channels[i], px)));
        stack = sz_add(stack, sz_mul(e, (size_t)net->down[i].n_resnets));
        if (net->down[i].sampler != UNET_SAMPLER_NONE) {
            size_t px2 = sz_mul((size_t)(H >> (i + 1)), (size_t)(W >> (i + 1)));
            stack = sz_add(stack, sz_align(sz_mul((size_t)B, sz_mul((size_t)c->block_out_channels[i], px2))));
        }
    }
    L->stack = stack;
    int skip = unet_block_is_skip(c->down_block_types[0]) || net->has_skip_up;
    L->sk = skip ? sz_align(sz_mul((size_t)B, sz_mul(3, sz_mul((size_t)H, (size_t)W)))) : 0;
    L->xc = c->center_input_sample ? sz_align(sz_mul((size_t)B, sz_mul((size_t)c->in_channels, sz_mul((size_t)H, (size_t)W)))) : 0;
    L->vec = sz_align(sz_mul((size_t)B, m.vec));
    L->ws = sz_align(m.ws ? m.ws : 1);
    size_t total = sz_mul(L->slot, FWD_SLOTS);
    total = sz_add(total, L->stack);
    total = sz_add(total, sz_mul(L->sk, 2));
    total = sz_add(total, L->xc);
    total = sz_add(total, sz_mul(L->vec, 5));   /* tproj, e1, emb, emb_act, tp */
    total = sz_add(total, sz_mul(L->ws, (size_t)n_threads));
    L->total = total;
    return total != SIZE_MAX;
}

size_t unet_workspace_bytes(const unet_net *net, int B, int H, int W, int n_threads) {
    fwd_layout L;
    if (B < 1 || H < 1 || W < 1 || n_threads < 1 || !fwd_plan(net, B, H, W, n_threads, &L)) return SIZE_MAX;
    return sz_mul(L.total, sizeof(float));
}

typedef struct stack_entry {
    float *d;          /* (B, C, H, W) */
    int C, H, W;
} stack_entry;

typedef struct fwd {
    const unet_net *net;
    ops_ctx ops;
    int B;
    float *h[2];       /* hidden states, ping-pong */
    float *cat;        /* up blocks: torch.cat([hidden, res], dim=1) */
    float *t[5];       /* scratch for resnets (t[0..3]) and attention (t[0..4]) */
    float *sk[2];      /* skip samples (B, 3, H, W) */
    float *emb_act;    /* (B, temb_dim) silu(emb), what every time_emb_proj sees */
    float *tp;         /* (B, 2 * cout) a resnet's time projection */
    float *stack_mem;  /* next free float of the skip-connection stack */
    stack_entry stack[FWD_MAX_STACK];
    int n_stack;
    pndm_tap_fn tap;
    void *tap_user;
} fwd;

static float *other_h(const fwd *f, const float *p) { return p == f->h[0] ? f->h[1] : f->h[0]; }
static float *other_sk(const fwd *f, const float *p) { return p == f->sk[0] ? f->sk[1] : f->sk[0]; }

static float *stack_push(fwd *f, int C, int H, int W) {
    PNDM_ASSERT(f->n_stack < FWD_MAX_STACK);
    stack_entry *e = &f->stack[f->n_stack++];
    e->d = f->stack_mem;
    e->C = C;
    e->H = H;
    e->W = W;
    f->stack_mem += sz_align((size_t)f->B * (size_t)C * (size_t)H * (size_t)W);
    return e->d;
}

static void tap(const fwd *f, const char *name, const float *d, size_t per_image) {
    if (f->tap) f->tap(name, d, per_image, f->tap_user);
}

static void conv(const fwd *f, const unet_conv *c, const float *x, int H, int W, float *y) {
    op_conv2d(&f->ops, x, f->B, H, W, c->w, c->b, &c->g, y);
}

static void norm(const fwd *f, const unet_norm *n, const float *x, int HW, int silu, float *y) {
    op_group_norm(&f->ops, x, f->B, n->channels, HW, n->groups, n->w, n->b, n->eps, NULL, NULL, 0, silu, y);
}

static void resample(const fwd *f, unet_resample rs, const float *x, int C, int H, int W, float *y) {
    switch (rs) {
    case UNET_RS_NONE: break;
    case UNET_RS_AVGPOOL: op_avgpool2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_NEAREST: op_upsample_nearest2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_DOWN: op_fir_downsample2(&f->ops, x, f->B, C, H, W, y); break;
    case UNET_RS_FIR_UP: op_fir_upsample2(&f->ops, x, f->B, C, H, W, y); break;
    }
}

/* ResnetBlock2D.forward: x (B, cin, H, W) -> out (B, cout, H', W'); *H, *W updated when the block
 * resamples. Uses t[0..3]; out must not be x or a t[] slot. */
static void resnet_fwd(fwd *f, const unet_resnet *r, const float *x, int *H, int *W, float *out) {
    const int B = f->B;
    int H2 = *H, W2 = *W;
    float *h = f->t[0];                                     // (B, cin, H, W)
    norm(f, &r->norm1, x, H2 * W2, 1, h);                   // silu(norm1(x))
    const float *xr = x, *hr = h;
    if (r->resample != UNET_RS_NONE) {
        resample(f, r->resample, x, r->cin, H2, W2, f->t[1]);   // input_tensor = resample(x)
        resample(f, r->resample, h, r->cin, H2, W2, f->t[2]);   // hidden = resample(hidden)
        xr = f->t[1];
        hr = f->t[2];
        int up = r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP;
        H2 = up ? 2 * H2 : H2 / 2;
        W2 = up ? 2 * W2 : W2 / 2;
    }
    const int HW = H2 * W2;
    float *c1 = f->t[3];                                    // (B, cout, H2, W2)
    conv(f, &r->conv1, hr, H2, W2, c1);
    op_linear(f->emb_act, B, r->temb.in, r->temb.w, r->temb.b, r->temb.out, f->tp);   // (B, cout | 2 cout)
    float *h2 = f->t[0];                                    // (B, cout, H2, W2)
    if (r->scale_shift) {
        /* norm2(h) * (1 + scale) + shift, scale/shift = chunk(temb, 2, dim=1) */
        op_group_norm(&f->ops, c1, B, r->cout, HW, r->norm2.groups, r->norm2.w, r->norm2.b, r->norm2.eps, f->tp,
                      f->tp + r->cout, (size_t)2 * r->cout, 1, h2);
    } else {
        op_add_channel_bias(c1, B, r->cout, HW, f->tp, (size_t)r->cout);
        norm(f, &r->norm2, c1, HW, 1, h2);
    }
    conv(f, &r->conv2, h2, H2, W2, out);
    const float *sc = xr;                                   // (B, cout, H2, W2)
    if (r->has_shortcut) {
        float *dst = xr == f->t[1] ? f->t[2] : f->t[1];
        conv(f, &r->shortcut, xr, H2, W2, dst);
        sc = dst;
    }
    op_add_div(sc, out, (size_t)B * r->cout * HW, r->out_scale, out);   // (input + hidden) / scale
    *H = H2;
    *W = W2;
}

/* Attention with AttnProcessor on (B, C, HW): out = (to_out(attn(norm(x))) + x) / rescale.
 * Uses t[0..4]; out must not be x or a t[] slot. */
static void attn_fwd(fwd *f, const unet_attn *a, const float *x, int HW, float *out) {
    const int C = a->channels;
    const float *n = x;
    if (a->has_norm) {
        norm(f, &a->norm, x, HW, 0, f->t[0]);
        n = f->t[0];
    }
    op_conv_geom g = {C, C, 1, 1, 0, 0, 0, 0};
    op_conv2d(&f->ops, n, f->B, 1, HW, a->q.w, a->q.b, &g, f->t[1]);    // q (B, C, HW)
    op_conv2d(&f->ops, n, f->B, 1, HW, a->k.w, a->k.b, &g, f->t[2]);    // k
    op_conv2d(&f->ops, n, f->B, 1, HW, a->v.w, a->v.b, &g, f->t[3]);    // v
    op_attention(&f->ops, f->t[1], f->t[2], f->t[3], f->B, C, HW, a->heads, a->scale, f->t[4]);
    op_conv2d(&f->ops, f->t[4], f->B, 1, HW, a->out.w, a->out.b, &g, out);
    op_add_div(out, x, (size_t)f->B * C * HW, a->rescale, out);
}

/* Down block i: hidden (B, cin, H, W) -> (B, cout, H', W'); pushes its output states. */
static const float *down_fwd(fwd *f, int i, const float *h, int *H, int *W, const float **skip) {
    const unet_block *blk = &f->net->down[i];
    for (int j = 0; j < blk->n_resnets; j++) {
        const unet_resnet *r = &blk->resnets[j];
        if (blk->n_attns) {
            float *tmp = other_h(f, h);
            resnet_fwd(f, r, h, H, W, tmp);
            float *dst = stack_push(f, r->cout, *H, *W);
            attn_fwd(f, &blk->attns[j], tmp, *H * *W, dst);
            h = dst;
        } else {
            float *dst = stack_push(f, r->cout, *H, *W);
            resnet_fwd(f, r, h, H, W, dst);
            h = dst;
        }
    }
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: {
        float *dst = stack_push(f, blk->cout, *H / 2, *W / 2);
        conv(f, &blk->conv, h, *H, *W, dst);
        *H /= 2;
        *W /= 2;
        h = dst;
        break;
    }
    case UNET_SAMPLER_RESNET: {
        float *dst = stack_push(f, blk->cout, *H / 2, *W / 2);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_SKIP: {
        /* hidden = resnet_down(hidden); skip = FirDownsample2D(skip); hidden = skip_conv(skip) + hidden */
        int Hs = *H, Ws = *W;
        float *tmp = other_h(f, h);
        resnet_fwd(f, &blk->rs, h, H, W, tmp);
        float *sk = other_sk(f, *skip);                     // (B, 3, H/2, W/2)
        op_fir_downsample2(&f->ops, *skip, f->B, 3, Hs, Ws, sk);
        *skip = sk;
        conv(f, &blk->skip_conv, sk, *H, *W, f->t[0]);
        float *dst = stack_push(f, blk->cout, *H, *W);
        op_add_div(f->t[0], tmp, (size_t)f->B * blk->cout * *H * *W, 1.0f, dst);
        h = dst;
        break;
    }
    }
    return h;
}

/* Up block i: hidden (B, cin, H, W) + popped res states -> (B, cout, H', W'). */
static const float *up_fwd(fwd *f, int i, const float *h, int *H, int *W, float **skip) {
    const unet_block *blk = &f->net->up[i];
    int C = blk->cin;
    const int skip_block = blk->kind == UNET_SKIP_UP_BLOCK || blk->kind == UNET_ATTN_SKIP_UP_BLOCK;
    for (int j = 0; j < blk->n_resnets; j++) {
        const unet_resnet *r = &blk->resnets[j];
        PNDM_ASSERT(f->n_stack > 0);
        const stack_entry *e = &f->stack[--f->n_stack];
        PNDM_ASSERT(e->H == *H && e->W == *W && C + e->C == r->cin);
        op_concat_channels(h, C, e->d, e->C, f->B, *H * *W, f->cat);   // (B, C + Cres, H, W)
        float *dst = other_h(f, h);
        resnet_fwd(f, r, f->cat, H, W, dst);
        h = dst;
        if (blk->n_attns && !skip_block) {
            dst = other_h(f, h);
            attn_fwd(f, &blk->attns[j], h, *H * *W, dst);
            h = dst;
        }
        C = r->cout;
    }
    if (blk->n_attns && skip_block) {
        float *dst = other_h(f, h);
        attn_fwd(f, &blk->attns[0], h, *H * *W, dst);
        h = dst;
    }
    if (skip_block && *skip) {
        /* skip_sample = FirUpsample2D(skip_sample) */
        float *dst = other_sk(f, *skip);
        op_fir_upsample2(&f->ops, *skip, f->B, 3, *H / 2, *W / 2, dst);
        *skip = dst;
    }
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: {
        op_upsample_nearest2(&f->ops, h, f->B, C, *H, *W, f->t[0]);   // (B, C, 2H, 2W)
        *H *= 2;
        *W *= 2;
        float *dst = other_h(f, h);
        conv(f, &blk->conv, f->t[0], *H, *W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_RESNET: {
        float *dst = other_h(f, h);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_SKIP: {
        /* skip = skip + skip_conv(silu(skip_norm(hidden))); hidden = resnet_up(hidden) */
        const size_t n = (size_t)f->B * 3 * *H * *W;
        norm(f, &blk->skip_norm, h, *H * *W, 1, f->t[0]);
        conv(f, &blk->skip_conv, f->t[0], *H, *W, f->t[1]);           // (B, 3, H, W)
        if (*skip) {
            op_add_div(*skip, f->t[1], n, 1.0f, *skip);
        } else {
            *skip = f->sk[0];
            memcpy(*skip, f->t[1], n * sizeof(float));
        }
        float *dst = other_h(f, h);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    }
    return h;
}

pndm_status unet_forward(const unet_net *net, const float *x, int B, int H, int W, const float *t,
                         float *out, int n_threads, pndm_tap_fn tapfn, void *tap_user, pndm_error *err) {
    const unet_config *c = &net->cfg;
    fwd_layout L;
    if (n_threads < 1) n_threads = 1;
    if (!fwd_plan(net, B, H, W, n_threads, &L))
        return pndm_fail(err, PNDM_ERR_NOMEM, "UNet forward: workspace size overflows (batch %d, %dx%d)", B, H, W);
    size_t bytes = sz_mul(L.total, sizeof(float));
    float *arena = bytes == SIZE_MAX ? NULL : aligned_alloc(64, (bytes + 63) / 64 * 64);
    float **ws = calloc((size_t)n_threads, sizeof *ws);
    tp_pool *pool = n_threads > 1 ? tp_create(n_threads) : NULL;
    if (!arena || !ws || (n_threads > 1 && !pool)) {
        free(arena);
        free(ws);
        tp_destroy(pool);
        return pndm_fail(err, PNDM_ERR_NOMEM, "UNet forward: cannot allocate %zu bytes of workspace (batch %d, %dx%d)",
                         bytes, B, H, W);
    }
    ops_blas_init();
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.B = B;
    f.tap = tapfn;
    f.tap_user = tap_user;
    /* carve the arena */
    float *p = arena;
    f.h[0] = p; p += L.slot;
    f.h[1] = p; p += L.slot;
    f.cat = p; p += L.slot;
    for (int i = 0; i < 5; i++) { f.t[i] = p; p += L.slot; }
    f.sk[0] = p; p += L.sk;
    f.sk[1] = p; p += L.sk;
    float *xc = p; p += L.xc;
    float *tproj = p; p += L.vec;       // (B, tproj_dim)
    float *e1 = p; p += L.vec;          // (B, temb_dim)
    float *emb = p; p += L.vec;         // (B, temb_dim)
    f.emb_act = p; p += L.vec;          // (B, temb_dim)
    f.tp = p; p += L.vec;               // (B, 2 * cout)
    for (int i = 0; i < n_threads; i++) { ws[i] = p; p += L.ws; }
    f.stack_mem = p;
    f.ops.pool = pool;
    f.ops.ws = ws;
    f.ops.ws_floats = L.ws;

    const size_t HW = (size_t)H * W;
    /* 0. center input: sample = 2 * sample - 1.0 */
    const float *xin = x;                                   // (B, C_in, H, W)
    if (c->center_input_sample) {
        size_t n = (size_t)B * c->in_channels * HW;
        for (size_t i = 0; i < n; i++) xc[i] = 2.0f * x[i] - 1.0f;
        xin = xc;
    }
    /* 1. time: time_proj -> time_embedding (linear_1, silu, linear_2) */
    if (c->time_fourier) op_fourier_embedding(t, B, net->fourier_w, c->block_out_channels[0], tproj);
    else op_timestep_embedding(t, B, c->block_out_channels[0], c->flip_sin_to_cos, c->freq_shift, tproj);
    tap(&f, "time_proj", tproj, (size_t)net->tproj_dim);
    op_linear(tproj, B, net->time1.in, net->time1.w, net->time1.b, net->time1.out, e1);
    op_silu(e1, (size_t)B * net->temb_dim, e1);
    op_linear(e1, B, net->time2.in, net->time2.w, net->time2.b, net->time2.out, emb);
    tap(&f, "time_embedding", emb, (size_t)net->temb_dim);
    op_silu(emb, (size_t)B * net->temb_dim, f.emb_act);     // ResnetBlock2D: nonlinearity(temb)

    /* 2. conv_in; 3. down blocks */
    const float *skip_down = xin;                           // skip_sample = sample
    int h_ = H, w_ = W;
    float *h0 = stack_push(&f, c->block_out_channels[0], H, W);
    conv(&f, &net->conv_in, xin, H, W, h0);
    const float *h = h0;
    char name[32];
    for (int i = 0; i < c->n_levels; i++) {
        h = down_fwd(&f, i, h, &h_, &w_, &skip_down);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        tap(&f, name, h, (size_t)net->down[i].cout * h_ * w_);
    }
    /* 4. mid */
    {
        float *dst = other_h(&f, h);
        resnet_fwd(&f, &net->mid_res[0], h, &h_, &w_, dst);
        h = dst;
        if (net->mid_has_attn) {
            dst = other_h(&f, h);
            attn_fwd(&f, &net->mid_attn, h, h_ * w_, dst);
            h = dst;
        }
        dst = other_h(&f, h);
        resnet_fwd(&f, &net->mid_res[1], h, &h_, &w_, dst);
        h = dst;
        tap(&f, "mid_block", h, (size_t)net->mid_res[1].cout * h_ * w_);
    }
    /* 5. up blocks (skip_sample starts as None) */
    float *skip_up = NULL;
    for (int i = 0; i < c->n_levels; i++) {
        h = up_fwd(&f, i, h, &h_, &w_, &skip_up);
        snprintf(name, sizeof name, "up_blocks.%d", i);
        tap(&f, name, h, (size_t)net->up[i].cout * h_ * w_);
    }
    PNDM_ASSERT(f.n_stack == 0 && h_ == H && w_ == W);
    /* 6. post-process: conv_out(silu(conv_norm_out(h))) [+ skip] [/ t] */
    norm(&f, &net->norm_out, h, (int)HW, 1, f.t[0]);
    conv(&f, &net->conv_out, f.t[0], H, W, out);            // (B, C_out, H, W)
    const size_t per = (size_t)c->out_channels * HW;
    if (skip_up) op_add_div(out, skip_up, (size_t)B * per, 1.0f, out);
    if (c->time_fourier)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < per; i++) out[(size_t)b * per + i] /= t[b];

    tp_destroy(pool);
    free(ws);
    free(arena);
    return PNDM_OK;
}
