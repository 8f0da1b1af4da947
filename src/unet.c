/* UNet2DModel: layer plan (mirrors diffusers 0.30.3 models/unets/unet_2d.py and unet_2d_blocks.py
 * constructors), weight binding by state-dict name, and the forward pass (the forward methods of
 * the same classes; see each function). */
#define _DEFAULT_SOURCE
#include "unet.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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
    p->packed = 0;
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
    c->w_param = b->n->n_params;
    pndm_status st = b_reg(b, &c->w, 4, cout, cin, k, k, prefix, "weight");
    if (!st) b->n->params[c->w_param].packed = 1;
    return st ? st : b_reg(b, &c->b, 1, cout, 0, 0, 0, prefix, "bias");
}

static const int PAD0[4] = {0, 0, 0, 0}, PAD1[4] = {1, 1, 1, 1};

static pndm_status b_linear(builder *b, unet_linear *l, int in, int out, const char *prefix) {
    l->in = in;
    l->out = out;
    l->w_param = b->n->n_params;
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
    if ((st = b_linear(b, &a->out, ch, ch, name))) return st;
    b->n->params[a->q.w_param].packed = b->n->params[a->k.w_param].packed = 1;
    b->n->params[a->v.w_param].packed = b->n->params[a->out.w_param].packed = 1;
    return PNDM_OK;
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

/* Every convolution and attention of the net (also of a partly built one). */
typedef void (*conv_visit)(unet_conv *c, void *arg);
typedef void (*attn_visit)(unet_attn *a, void *arg);

static void visit_resnet(unet_resnet *r, conv_visit fc, void *arg) {
    fc(&r->conv1, arg);
    fc(&r->conv2, arg);
    if (r->has_shortcut) fc(&r->shortcut, arg);
}

static void visit_block(unet_block *blk, conv_visit fc, attn_visit fa, void *arg) {
    if (blk->resnets)
        for (int j = 0; j < blk->n_resnets; j++) visit_resnet(&blk->resnets[j], fc, arg);
    if (blk->attns)
        for (int j = 0; j < blk->n_attns; j++) fa(&blk->attns[j], arg);
    switch (blk->sampler) {
    case UNET_SAMPLER_NONE: break;
    case UNET_SAMPLER_CONV: fc(&blk->conv, arg); break;
    case UNET_SAMPLER_RESNET: visit_resnet(&blk->rs, fc, arg); break;
    case UNET_SAMPLER_SKIP:
        visit_resnet(&blk->rs, fc, arg);
        fc(&blk->skip_conv, arg);
        break;
    }
}

static void visit_net(unet_net *net, conv_visit fc, attn_visit fa, void *arg) {
    fc(&net->conv_in, arg);
    for (int i = 0; i < UNET_MAX_LEVELS; i++) visit_block(&net->down[i], fc, fa, arg);
    visit_resnet(&net->mid_res[0], fc, arg);
    fa(&net->mid_attn, arg);
    visit_resnet(&net->mid_res[1], fc, arg);
    for (int i = 0; i < UNET_MAX_LEVELS; i++) visit_block(&net->up[i], fc, fa, arg);
    fc(&net->conv_out, arg);
}

static void free_conv(unet_conv *c, void *arg) {
    (void)arg;
    op_conv_free(&c->pk);
}

static void free_attn(unet_attn *a, void *arg) {
    (void)arg;
    op_conv_free(&a->qkv);
    op_conv_free(&a->proj);
    free(a->qkv_bias);
    a->qkv_bias = NULL;
}

void unet_free(unet_net *net) {
    if (!net) return;
    visit_net(net, free_conv, free_attn, NULL);
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

/* ---- packing ------------------------------------------------------------------------------ */
typedef struct pack_state {
    unet_net *net;
    const st_file *f;
    pndm_error *err;
    pndm_status st;
} pack_state;

/* Parameter i as float32 (*owned: a malloc'ed conversion to free with param_release). */
static pndm_status param_get(pack_state *ps, int i, const float **data, int *owned) {
    const st_tensor *t = st_find(ps->f, ps->net->params[i].name);
    PNDM_ASSERT(t != NULL);
    return st_tensor_f32(ps->f, t, data, owned, ps->err);
}

static void param_release(pack_state *ps, int i, const float *data, int owned) {
    const st_tensor *t = st_find(ps->f, ps->net->params[i].name);
    if (owned) free((void *)data);
    st_drop_pages(ps->f, t->data, t->nbytes);
}

static void pack_conv(unet_conv *c, void *arg) {
    pack_state *ps = arg;
    if (ps->st) return;
    const float *w;
    int owned;
    if ((ps->st = param_get(ps, c->w_param, &w, &owned))) return;
    int ok = op_conv_init(&c->pk, &c->g, w, c->b);
    param_release(ps, c->w_param, w, owned);
    if (!ok) ps->st = pndm_fail(ps->err, PNDM_ERR_NOMEM, "%s: out of memory packing '%s'", ps->f->source ? ps->f->source : "model",
                                ps->net->params[c->w_param].name);
}

/* to_q, to_k, to_v -> one 1x1 convolution C -> 3C; to_out.0 -> a 1x1 convolution */
static void pack_attn(unet_attn *a, void *arg) {
    pack_state *ps = arg;
    if (ps->st || a->channels == 0) return;
    const int C = a->channels;
    const unet_linear *lin[3] = {&a->q, &a->k, &a->v};
    float *w3 = malloc((size_t)3 * C * C * sizeof *w3);
    a->qkv_bias = malloc((size_t)3 * C * sizeof *a->qkv_bias);
    int ok = w3 && a->qkv_bias;
    for (int i = 0; i < 3 && ok && !ps->st; i++) {
        const float *w;
        int owned;
        if ((ps->st = param_get(ps, lin[i]->w_param, &w, &owned))) break;
        memcpy(w3 + (size_t)i * C * C, w, (size_t)C * C * sizeof *w3);
        memcpy(a->qkv_bias + (size_t)i * C, lin[i]->b, (size_t)C * sizeof *w3);
        param_release(ps, lin[i]->w_param, w, owned);
    }
    const op_conv_geom g3 = {C, 3 * C, 1, 1, 0, 0, 0, 0}, g1 = {C, C, 1, 1, 0, 0, 0, 0};
    if (ok && !ps->st) ok = op_conv_init(&a->qkv, &g3, w3, a->qkv_bias);
    free(w3);
    if (ok && !ps->st) {
        const float *w;
        int owned;
        if (!(ps->st = param_get(ps, a->out.w_param, &w, &owned))) {
            ok = op_conv_init(&a->proj, &g1, w, a->out.b);
            param_release(ps, a->out.w_param, w, owned);
        }
    }
    if (!ok && !ps->st) ps->st = pndm_fail(ps->err, PNDM_ERR_NOMEM, "%s: out of memory packing attention weights",
                                           ps->f->source ? ps->f->source : "model");
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
        if (net->params[i].packed) continue;
        const st_tensor *t = st_find(f, net->params[i].name);
        const float *data;
        int owned;
        pndm_status st = st_tensor_f32(f, t, &data, &owned, err);
        if (st) return st;
        if (owned) net->owned[net->n_owned++] = (float *)data;
        *net->params[i].slot = data;
    }
    /* 4. packed weights, one tensor at a time */
    pack_state ps = {net, f, err, PNDM_OK};
    visit_net(net, pack_conv, pack_attn, &ps);
    return ps.st;
}


/* ============================================================================================ */
/* Forward                                                                                      */

#define FWD_ALIGN 16   /* floats (64 bytes) */
#define FWD_MAX_STACK (UNET_MAX_LEVELS * (UNET_MAX_LAYERS + 1) + 1)

/* saturating size arithmetic for the layout */
static size_t sz_mul(size_t a, size_t b) { size_t r; return pndm_mul_size(a, b, &r) ? r : SIZE_MAX; }
static size_t sz_add(size_t a, size_t b) { size_t r; return pndm_add_size(a, b, &r) ? r : SIZE_MAX; }
static size_t sz_align(size_t n) { return n >= SIZE_MAX - FWD_ALIGN ? SIZE_MAX : (n + FWD_ALIGN - 1) / FWD_ALIGN * FWD_ALIGN; }
static size_t sz_max(size_t a, size_t b) { return a > b ? a : b; }

/* Working buffers of a pass, each sized for the largest tensor the forward puts in it. A resnet
 * (T1..T3) and an attention (QKV, ATT) never run at once: those two groups share memory. */
enum {
    BUF_H0, BUF_H1,   /* hidden states, ping-pong */
    BUF_CAT,          /* up blocks: torch.cat([hidden, res], dim=1) */
    BUF_T0,           /* norm outputs; upsampled hidden of an Upsample2D */
    BUF_T1, BUF_T2,   /* resampled input / hidden of a resnet, its shortcut */
    BUF_T3,           /* a resnet's conv1 output */
    BUF_QKV,          /* attention: q, k, v (B, 3C, HW) */
    BUF_ATT,          /* attention output before to_out */
    BUF_N
};

/* Floats of buffers [b0, b1) laid out one after the other for MB images. */
static size_t bufs_floats(const size_t *buf, int b0, int b1, int MB) {
    size_t n = 0;
    for (int b = b0; b < b1; b++) n = sz_add(n, sz_align(sz_mul(buf[b], (size_t)MB)));
    return n;
}

/* All working buffers: H0..T0, then T1..T3 and QKV..ATT overlaid. */
static size_t work_floats(const size_t *buf, int MB) {
    return sz_add(bufs_floats(buf, BUF_H0, BUF_T1, MB),
                  sz_max(bufs_floats(buf, BUF_T1, BUF_QKV, MB), bufs_floats(buf, BUF_QKV, BUF_N, MB)));
}

typedef struct fwd_layout {
    int MB;                 /* images per pass */
    size_t buf[BUF_N];      /* floats per image */
    size_t stack;           /* skip connections pushed by conv_in and the down blocks (MB images) */
    size_t sk;              /* per skip-sample buffer, per image: 3 * H * W (0 without skip blocks) */
    size_t xc;              /* centred input, per image (0 unless center_input_sample) */
    size_t vec;             /* per small vector buffer, per image: the largest time dimension */
    size_t ws;              /* per-thread scratch */
    size_t shared;          /* scratch shared by the threads (MB images) */
    size_t total;           /* floats of the arena */
} fwd_layout;

/* ---- layout: a walk over the net that mirrors the forward below ----------------------------- */
typedef struct planner {
    fwd_layout *L;
    int stack_c[FWD_MAX_STACK];   /* channels of the pushed skip connections */
    int n_stack;
} planner;

static void pl_buf(planner *p, int b, int C, int H, int W) {
    p->L->buf[b] = sz_max(p->L->buf[b], sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W)));
}

static void pl_hidden(planner *p, int C, int H, int W) {
    pl_buf(p, BUF_H0, C, H, W);
    pl_buf(p, BUF_H1, C, H, W);
}

static void pl_push(planner *p, int C, int H, int W) {
    PNDM_ASSERT(p->n_stack < FWD_MAX_STACK);
    p->stack_c[p->n_stack++] = C;
    p->L->stack = sz_add(p->L->stack, sz_align(sz_mul((size_t)p->L->MB, sz_mul((size_t)C, sz_mul((size_t)H, (size_t)W)))));
}

static void pl_conv(planner *p, const op_conv_geom *g, int H, int W) {
    size_t a, s;
    op_conv2d_ws(g, H, W, &a, &s);
    p->L->ws = sz_max(p->L->ws, a);
    p->L->shared = sz_max(p->L->shared, s);
}

static void pl_resnet(planner *p, const unet_resnet *r, int *H, int *W) {
    pl_buf(p, BUF_T0, r->cin, *H, *W);
    if (r->resample != UNET_RS_NONE) {
        int up = r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP;
        *H = up ? 2 * *H : *H / 2;
        *W = up ? 2 * *W : *W / 2;
        pl_buf(p, BUF_T1, r->cin, *H, *W);
        pl_buf(p, BUF_T2, r->cin, *H, *W);
    }
    pl_conv(p, &r->conv1.g, *H, *W);
    pl_buf(p, BUF_T3, r->cout, *H, *W);
    pl_buf(p, BUF_T0, r->cout, *H, *W);
    pl_conv(p, &r->conv2.g, *H, *W);
    if (r->has_shortcut) {
        pl_conv(p, &r->shortcut.g, *H, *W);
        pl_buf(p, BUF_T1, r->cout, *H, *W);
        pl_buf(p, BUF_T2, r->cout, *H, *W);
    }
    p->L->vec = sz_max(p->L->vec, (size_t)r->temb.out);
}

static void pl_attn(planner *p, const unet_attn *a, int HW) {
    pl_buf(p, BUF_T0, a->channels, 1, HW);
    pl_buf(p, BUF_QKV, 3 * a->channels, 1, HW);
    pl_buf(p, BUF_ATT, a->channels, 1, HW);
    const op_conv_geom g3 = {a->channels, 3 * a->channels, 1, 1, 0, 0, 0, 0};
    const op_conv_geom g1 = {a->channels, a->channels, 1, 1, 0, 0, 0, 0};
    pl_conv(p, &g3, 1, HW);
    pl_conv(p, &g1, 1, HW);
    size_t ws, sh;
    op_attention_ws(p->L->MB, a->channels, HW, a->heads, &ws, &sh);
    p->L->ws = sz_max(p->L->ws, ws);
    p->L->shared = sz_max(p->L->shared, sh);
}

static int fwd_plan(const unet_net *net, int MB, int H, int W, int n_threads, fwd_layout *L) {
    const unet_config *c = &net->cfg;
    planner pl;
    planner *p = &pl;
    memset(L, 0, sizeof *L);
    /* sizes pndm_unet_forward accepts: every level at least 1x1, H * W well inside int */
    const int div = 1 << (c->n_levels - 1);
    if (MB < 1 || H < div || W < div || H % div || W % div || (size_t)H * (size_t)W > ((size_t)1 << 28)) return 0;
    memset(p, 0, sizeof *p);
    p->L = L;
    L->MB = MB;
    L->vec = (size_t)(net->temb_dim > net->tproj_dim ? net->temb_dim : net->tproj_dim);
    int h = H, w = W, C = c->block_out_channels[0];
    pl_conv(p, &net->conv_in.g, h, w);
    pl_push(p, C, h, w);
    for (int i = 0; i < c->n_levels; i++) {           /* down_fwd */
        const unet_block *blk = &net->down[i];
        for (int j = 0; j < blk->n_resnets; j++) {
            pl_resnet(p, &blk->resnets[j], &h, &w);
            if (blk->n_attns) {
                pl_hidden(p, blk->resnets[j].cout, h, w);
                pl_attn(p, &blk->attns[j], h * w);
            }
            pl_push(p, blk->resnets[j].cout, h, w);
        }
        switch (blk->sampler) {
        case UNET_SAMPLER_NONE: break;
        case UNET_SAMPLER_CONV:
            pl_conv(p, &blk->conv.g, h, w);
            h /= 2;
            w /= 2;
            pl_push(p, blk->cout, h, w);
            break;
        case UNET_SAMPLER_RESNET:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_push(p, blk->cout, h, w);
            break;
        case UNET_SAMPLER_SKIP:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, blk->cout, h, w);
            pl_conv(p, &blk->skip_conv.g, h, w);
            pl_push(p, blk->cout, h, w);
            break;
        }
        C = blk->cout;
    }
    pl_resnet(p, &net->mid_res[0], &h, &w);                 /* mid */
    if (net->mid_has_attn) pl_attn(p, &net->mid_attn, h * w);
    pl_resnet(p, &net->mid_res[1], &h, &w);
    pl_hidden(p, net->mid_res[1].cout, h, w);
    C = net->mid_res[1].cout;
    for (int i = 0; i < c->n_levels; i++) {           /* up_fwd */
        const unet_block *blk = &net->up[i];
        for (int j = 0; j < blk->n_resnets; j++) {
            PNDM_ASSERT(p->n_stack > 0);
            pl_buf(p, BUF_CAT, C + p->stack_c[--p->n_stack], h, w);
            pl_resnet(p, &blk->resnets[j], &h, &w);
            C = blk->resnets[j].cout;
            pl_hidden(p, C, h, w);
        }
        for (int j = 0; j < blk->n_attns; j++) pl_attn(p, &blk->attns[j], h * w);
        switch (blk->sampler) {
        case UNET_SAMPLER_NONE: break;
        case UNET_SAMPLER_CONV:
            h *= 2;
            w *= 2;
            pl_buf(p, BUF_T0, C, h, w);
            pl_conv(p, &blk->conv.g, h, w);
            pl_hidden(p, C, h, w);
            break;
        case UNET_SAMPLER_RESNET:
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, C, h, w);
            break;
        case UNET_SAMPLER_SKIP:
            pl_buf(p, BUF_T0, C, h, w);
            pl_conv(p, &blk->skip_conv.g, h, w);
            pl_resnet(p, &blk->rs, &h, &w);
            pl_hidden(p, C, h, w);
            break;
        }
    }
    pl_buf(p, BUF_T0, c->block_out_channels[0], h, w);     /* conv_norm_out */
    pl_conv(p, &net->conv_out.g, h, w);
    const size_t px = sz_mul((size_t)H, (size_t)W);
    int skip = unet_block_is_skip(c->down_block_types[0]) || net->has_skip_up;
    L->sk = skip ? sz_mul(3, px) : 0;
    L->xc = c->center_input_sample ? sz_mul((size_t)c->in_channels, px) : 0;
    size_t total = 0;
    total = sz_add(total, work_floats(L->buf, MB));
    total = sz_add(total, L->stack);
    total = sz_add(total, sz_mul(sz_align(sz_mul(L->sk, (size_t)MB)), 2));
    total = sz_add(total, sz_align(sz_mul(L->xc, (size_t)MB)));
    total = sz_add(total, sz_mul(sz_align(sz_mul(L->vec, (size_t)MB)), 5));   /* tproj, e1, emb, emb_act, tp */
    total = sz_add(total, sz_align(L->shared));
    total = sz_add(total, sz_mul(sz_align(L->ws ? L->ws : 1), (size_t)n_threads));
    L->total = total;
    return total != SIZE_MAX;
}

static int micro_batch(int B) { return B < UNET_MICRO_BATCH ? B : UNET_MICRO_BATCH; }

size_t unet_workspace_bytes(const unet_net *net, int B, int H, int W, int n_threads) {
    fwd_layout L;
    if (B < 1 || H < 1 || W < 1 || n_threads < 1 || !fwd_plan(net, micro_batch(B), H, W, n_threads, &L)) return SIZE_MAX;
    return sz_mul(L.total, sizeof(float));
}

/* ---- context ------------------------------------------------------------------------------ */
struct unet_ctx {
    tp_pool *pool;        /* NULL for one thread */
    int n_threads;        /* 0: not set up */
    float **ws;           /* (n_threads) */
    float *arena;
    size_t arena_floats;
};

unet_ctx *unet_ctx_new(void) { return calloc(1, sizeof(unet_ctx)); }

void unet_ctx_free(unet_ctx *ctx) {
    if (!ctx) return;
    tp_destroy(ctx->pool);
    free(ctx->ws);
    free(ctx->arena);
    free(ctx);
}

/* A pool of n_threads threads and an arena of at least `floats` floats. */
static int ctx_prepare(unet_ctx *ctx, int n_threads, size_t floats) {
    if (ctx->n_threads != n_threads) {
        tp_destroy(ctx->pool);
        free(ctx->ws);
        ctx->pool = NULL;
        ctx->n_threads = 0;
        ctx->ws = calloc((size_t)n_threads, sizeof *ctx->ws);
        if (!ctx->ws || (n_threads > 1 && !(ctx->pool = tp_create(n_threads)))) return 0;
        ctx->n_threads = n_threads;
    }
    if (floats > ctx->arena_floats) {
        free(ctx->arena);
        ctx->arena_floats = 0;
        ctx->arena = floats > SIZE_MAX / sizeof(float) - 64 ? NULL : aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        if (!ctx->arena) return 0;
        ctx->arena_floats = floats;
    }
    return 1;
}

/* ---- one pass of up to MB images ---------------------------------------------------------- */
typedef struct stack_entry {
    float *d;          /* (B, C, H, W) */
    int C, H, W;
} stack_entry;

typedef struct fwd {
    const unet_net *net;
    ops_ctx ops;
    int B;                 /* images in this pass */
    float *buf[BUF_N];     /* see BUF_* */
    size_t cap[BUF_N];     /* floats per image */
    float *sk[2];          /* skip samples (B, 3, H, W) */
    float *emb_act;        /* (B, temb_dim) silu(emb), what every time_emb_proj sees */
    float *tp;             /* (B, 2 * cout) a resnet's time projection */
    float *stack_mem;      /* next free float of the skip-connection stack */
    stack_entry stack[FWD_MAX_STACK];
    int n_stack;
    pndm_tap_fn tap;
    void *tap_user;
} fwd;

/* Working buffer b for a (B, C, H, W) tensor. */
static float *buf(const fwd *f, int b, int C, int H, int W) {
    PNDM_ASSERT((size_t)C * (size_t)H * (size_t)W <= f->cap[b]);
    return f->buf[b];
}

static float *other_h(const fwd *f, const float *p) { return p == f->buf[BUF_H0] ? f->buf[BUF_H1] : f->buf[BUF_H0]; }
static float *hidden(const fwd *f, const float *p, int C, int H, int W) {
    float *d = other_h(f, p);
    return buf(f, d == f->buf[BUF_H0] ? BUF_H0 : BUF_H1, C, H, W);
}
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

/* y = (conv(x) + bias [+ per-image bias] [+ res]) / div */
static void conv(const fwd *f, const op_conv_w *cw, const float *x, int H, int W, const float *img_bias,
                 size_t ib_stride, const float *res, float div, float *y) {
    op_conv_epi e = {img_bias, ib_stride, res, div};
    op_conv2d(&f->ops, cw, x, f->B, H, W, &e, y);
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
 * resamples. Uses T0..T3; out must not be x or one of them. */
static void resnet_fwd(fwd *f, const unet_resnet *r, const float *x, int *H, int *W, float *out) {
    const int B = f->B;
    int H2 = *H, W2 = *W;
    float *h = buf(f, BUF_T0, r->cin, H2, W2);              // (B, cin, H, W)
    norm(f, &r->norm1, x, H2 * W2, 1, h);                   // silu(norm1(x))
    const float *xr = x, *hr = h;
    if (r->resample != UNET_RS_NONE) {
        int up = r->resample == UNET_RS_NEAREST || r->resample == UNET_RS_FIR_UP;
        int H3 = up ? 2 * H2 : H2 / 2, W3 = up ? 2 * W2 : W2 / 2;
        float *xs = buf(f, BUF_T1, r->cin, H3, W3), *hs = buf(f, BUF_T2, r->cin, H3, W3);
        resample(f, r->resample, x, r->cin, H2, W2, xs);    // input_tensor = resample(x)
        resample(f, r->resample, h, r->cin, H2, W2, hs);    // hidden = resample(hidden)
        xr = xs;
        hr = hs;
        H2 = H3;
        W2 = W3;
    }
    const int HW = H2 * W2;
    op_linear(f->emb_act, B, r->temb.in, r->temb.w, r->temb.b, r->temb.out, f->tp);   // (B, cout | 2 cout)
    float *c1 = buf(f, BUF_T3, r->cout, H2, W2);            // (B, cout, H2, W2)
    if (r->scale_shift) {
        /* norm2(conv1(h)) * (1 + scale) + shift, scale/shift = chunk(temb, 2, dim=1) */
        conv(f, &r->conv1.pk, hr, H2, W2, NULL, 0, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        op_group_norm(&f->ops, c1, B, r->cout, HW, r->norm2.groups, r->norm2.w, r->norm2.b, r->norm2.eps, f->tp,
                      f->tp + r->cout, (size_t)2 * r->cout, 1, h2);
        hr = h2;
    } else {
        /* norm2(conv1(h) + temb[:, :, None, None]) */
        conv(f, &r->conv1.pk, hr, H2, W2, f->tp, (size_t)r->cout, NULL, 1.0f, c1);
        float *h2 = buf(f, BUF_T0, r->cout, H2, W2);
        norm(f, &r->norm2, c1, HW, 1, h2);
        hr = h2;
    }
    const float *sc = xr;                                   // (B, cout, H2, W2)
    if (r->has_shortcut) {
        float *dst = xr == f->buf[BUF_T1] ? buf(f, BUF_T2, r->cout, H2, W2) : buf(f, BUF_T1, r->cout, H2, W2);
        conv(f, &r->shortcut.pk, xr, H2, W2, NULL, 0, NULL, 1.0f, dst);
        sc = dst;
    }
    conv(f, &r->conv2.pk, hr, H2, W2, NULL, 0, sc, r->out_scale, out);   // (input + conv2(h)) / scale
    *H = H2;
    *W = W2;
}

/* Attention with AttnProcessor on (B, C, HW): out = (to_out(attn(norm(x))) + x) / rescale.
 * Uses T0, QKV, ATT; out must not be x or one of them. */
static void attn_fwd(fwd *f, const unet_attn *a, const float *x, int HW, float *out) {
    const int C = a->channels;
    const float *n = x;
    if (a->has_norm) {
        float *t0 = buf(f, BUF_T0, C, 1, HW);
        norm(f, &a->norm, x, HW, 0, t0);
        n = t0;
    }
    float *qkv = buf(f, BUF_QKV, 3 * C, 1, HW);            // [q; k; v] (B, 3C, HW)
    conv(f, &a->qkv, n, 1, HW, NULL, 0, NULL, 1.0f, qkv);
    float *att = buf(f, BUF_ATT, C, 1, HW);                 // (B, C, HW)
    const size_t chw = (size_t)C * HW;
    op_attention(&f->ops, qkv, qkv + chw, qkv + 2 * chw, 3 * chw, f->B, C, HW, a->heads, a->scale, att);
    conv(f, &a->proj, att, 1, HW, NULL, 0, x, a->rescale, out);
}

/* Down block i: hidden (B, cin, H, W) -> (B, cout, H', W'); pushes its output states. */
static const float *down_fwd(fwd *f, int i, const float *h, int *H, int *W, const float **skip) {
    const unet_block *blk = &f->net->down[i];
    for (int j = 0; j < blk->n_resnets; j++) {
        const unet_resnet *r = &blk->resnets[j];
        if (blk->n_attns) {
            int H2 = *H, W2 = *W;
            float *tmp = hidden(f, h, r->cout, H2, W2);
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
        conv(f, &blk->conv.pk, h, *H, *W, NULL, 0, NULL, 1.0f, dst);
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
        float *tmp = hidden(f, h, blk->cout, Hs / 2, Ws / 2);
        resnet_fwd(f, &blk->rs, h, H, W, tmp);
        float *sk = other_sk(f, *skip);                     // (B, 3, H/2, W/2)
        op_fir_downsample2(&f->ops, *skip, f->B, 3, Hs, Ws, sk);
        *skip = sk;
        float *dst = stack_push(f, blk->cout, *H, *W);
        conv(f, &blk->skip_conv.pk, sk, *H, *W, NULL, 0, tmp, 1.0f, dst);
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
        float *cat = buf(f, BUF_CAT, r->cin, *H, *W);       // (B, C + Cres, H, W)
        op_concat_channels(h, C, e->d, e->C, f->B, *H * *W, cat);
        float *dst = hidden(f, h, r->cout, *H, *W);
        resnet_fwd(f, r, cat, H, W, dst);
        h = dst;
        if (blk->n_attns && !skip_block) {
            dst = hidden(f, h, r->cout, *H, *W);
            attn_fwd(f, &blk->attns[j], h, *H * *W, dst);
            h = dst;
        }
        C = r->cout;
    }
    if (blk->n_attns && skip_block) {
        float *dst = hidden(f, h, C, *H, *W);
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
        float *up = buf(f, BUF_T0, C, 2 * *H, 2 * *W);     // (B, C, 2H, 2W)
        op_upsample_nearest2(&f->ops, h, f->B, C, *H, *W, up);
        *H *= 2;
        *W *= 2;
        float *dst = hidden(f, h, C, *H, *W);
        conv(f, &blk->conv.pk, up, *H, *W, NULL, 0, NULL, 1.0f, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_RESNET: {
        float *dst = hidden(f, h, C, 2 * *H, 2 * *W);
        resnet_fwd(f, &blk->rs, h, H, W, dst);
        h = dst;
        break;
    }
    case UNET_SAMPLER_SKIP: {
        /* skip = skip + skip_conv(silu(skip_norm(hidden))); hidden = resnet_up(hidden) */
        float *n = buf(f, BUF_T0, C, *H, *W);
        norm(f, &blk->skip_norm, h, *H * *W, 1, n);
        float *dst = *skip ? other_sk(f, *skip) : f->sk[0];   // (B, 3, H, W)
        conv(f, &blk->skip_conv.pk, n, *H, *W, NULL, 0, *skip, 1.0f, dst);
        *skip = dst;
        float *hd = hidden(f, h, C, 2 * *H, 2 * *W);
        resnet_fwd(f, &blk->rs, h, H, W, hd);
        h = hd;
        break;
    }
    }
    return h;
}

/* One pass: x (B, C_in, H, W), t (B) -> out (B, C_out, H, W), B <= L->MB. */
static void forward_pass(fwd *f, const fwd_layout *L, float *mem, const float *x, int B, int H, int W,
                         const float *t, float *out) {
    const unet_net *net = f->net;
    const unet_config *c = &net->cfg;
    const size_t HW = (size_t)H * W;
    f->B = B;
    f->n_stack = 0;
    /* carve the arena (T1..T3 and QKV..ATT overlaid) */
    float *p = mem;
    for (int b = 0; b < BUF_N; b++) {
        if (b == BUF_QKV) p = f->buf[BUF_T1];
        f->buf[b] = p;
        f->cap[b] = L->buf[b];
        p += sz_align(L->buf[b] * (size_t)L->MB);
    }
    p = mem + work_floats(L->buf, L->MB);
    f->sk[0] = p; p += sz_align(L->sk * (size_t)L->MB);
    f->sk[1] = p; p += sz_align(L->sk * (size_t)L->MB);
    float *xc = p; p += sz_align(L->xc * (size_t)L->MB);
    const size_t vec = sz_align(L->vec * (size_t)L->MB);
    float *tproj = p; p += vec;         // (B, tproj_dim)
    float *e1 = p; p += vec;            // (B, temb_dim)
    float *emb = p; p += vec;           // (B, temb_dim)
    f->emb_act = p; p += vec;           // (B, temb_dim)
    f->tp = p; p += vec;                // (B, 2 * cout)
    f->stack_mem = p;                   // the shared and per-thread scratch follow the stack

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
    tap(f, "time_proj", tproj, (size_t)net->tproj_dim);
    op_linear(tproj, B, net->time1.in, net->time1.w, net->time1.b, net->time1.out, e1);
    op_silu(e1, (size_t)B * net->temb_dim, e1);
    op_linear(e1, B, net->time2.in, net->time2.w, net->time2.b, net->time2.out, emb);
    tap(f, "time_embedding", emb, (size_t)net->temb_dim);
    op_silu(emb, (size_t)B * net->temb_dim, f->emb_act);     // ResnetBlock2D: nonlinearity(temb)

    /* 2. conv_in; 3. down blocks */
    const float *skip_down = xin;                           // skip_sample = sample
    int h_ = H, w_ = W;
    float *h0 = stack_push(f, c->block_out_channels[0], H, W);
    conv(f, &net->conv_in.pk, xin, H, W, NULL, 0, NULL, 1.0f, h0);
    const float *h = h0;
    char name[32];
    for (int i = 0; i < c->n_levels; i++) {
        h = down_fwd(f, i, h, &h_, &w_, &skip_down);
        snprintf(name, sizeof name, "down_blocks.%d", i);
        tap(f, name, h, (size_t)net->down[i].cout * h_ * w_);
    }
    /* 4. mid */
    {
        const int Cm = net->mid_res[0].cout;
        float *dst = hidden(f, h, Cm, h_, w_);
        resnet_fwd(f, &net->mid_res[0], h, &h_, &w_, dst);
        h = dst;
        if (net->mid_has_attn) {
            dst = hidden(f, h, Cm, h_, w_);
            attn_fwd(f, &net->mid_attn, h, h_ * w_, dst);
            h = dst;
        }
        dst = hidden(f, h, Cm, h_, w_);
        resnet_fwd(f, &net->mid_res[1], h, &h_, &w_, dst);
        h = dst;
        tap(f, "mid_block", h, (size_t)net->mid_res[1].cout * h_ * w_);
    }
    /* 5. up blocks (skip_sample starts as None) */
    float *skip_up = NULL;
    for (int i = 0; i < c->n_levels; i++) {
        h = up_fwd(f, i, h, &h_, &w_, &skip_up);
        snprintf(name, sizeof name, "up_blocks.%d", i);
        tap(f, name, h, (size_t)net->up[i].cout * h_ * w_);
    }
    PNDM_ASSERT(f->n_stack == 0 && h_ == H && w_ == W);
    /* 6. post-process: conv_out(silu(conv_norm_out(h))) [+ skip] [/ t] */
    float *n = buf(f, BUF_T0, c->block_out_channels[0], H, W);
    norm(f, &net->norm_out, h, (int)HW, 1, n);
    conv(f, &net->conv_out.pk, n, H, W, NULL, 0, skip_up, 1.0f, out);   // (B, C_out, H, W)
    const size_t per = (size_t)c->out_channels * HW;
    if (c->time_fourier)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < per; i++) out[(size_t)b * per + i] /= t[b];
}

pndm_status unet_forward(const unet_net *net, unet_ctx *ctx, const float *x, int B, int H, int W, const float *t,
                         float *out, int n_threads, pndm_tap_fn tapfn, void *tap_user, pndm_error *err) {
    const unet_config *c = &net->cfg;
    fwd_layout L;
    if (n_threads < 1) n_threads = 1;
    const int MB = micro_batch(B);
    if (!fwd_plan(net, MB, H, W, n_threads, &L))
        return pndm_fail(err, PNDM_ERR_NOMEM, "UNet forward: workspace size overflows (batch %d, %dx%d)", B, H, W);
    if (!ctx_prepare(ctx, n_threads, L.total))
        return pndm_fail(err, PNDM_ERR_NOMEM, "UNet forward: cannot allocate %zu bytes of workspace (batch %d, %dx%d)",
                         sz_mul(L.total, sizeof(float)), B, H, W);
    fwd f;
    memset(&f, 0, sizeof f);
    f.net = net;
    f.tap = tapfn;
    f.tap_user = tap_user;
    /* scratch at the end of the arena: shared, then one block per thread */
    float *scratch = ctx->arena + (L.total - sz_align(L.shared) - sz_mul(sz_align(L.ws ? L.ws : 1), (size_t)n_threads));
    f.ops.pool = ctx->pool;
    f.ops.shared = scratch;
    f.ops.shared_floats = L.shared;
    scratch += sz_align(L.shared);
    for (int i = 0; i < n_threads; i++) ctx->ws[i] = scratch + (size_t)i * sz_align(L.ws ? L.ws : 1);
    f.ops.ws = ctx->ws;
    f.ops.ws_floats = L.ws;
    const size_t in_img = (size_t)c->in_channels * H * W, out_img = (size_t)c->out_channels * H * W;
    for (int b0 = 0; b0 < B; b0 += MB) {
        const int nb = B - b0 < MB ? B - b0 : MB;
        forward_pass(&f, &L, ctx->arena, x + (size_t)b0 * in_img, nb, H, W, t + b0, out + (size_t)b0 * out_img);
        f.tap = NULL;   /* the tap sees batch element 0 only */
    }
    return PNDM_OK;
}
