/* UNet2DModel: the layer plan (mirrors the constructors of diffusers 0.30.3 models/unets/unet_2d.py
 * and unet_2d_blocks.py), which is the one description of the network's structure: every layer,
 * every parameter with its state-dict name and shape, and the list of convolutions and
 * attentions that binding packs; then weight binding by state-dict name against a tensor table.
 * The compute is unet_forward.c. */
#define _DEFAULT_SOURCE
#include "unet.h"
#include "core.h"

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
    int cap, conv_cap, attn_cap;
} builder;

/* arr (*cap elements of elem bytes) grown to twice the capacity (NULL if out of memory: arr
 * unchanged) */
static void *b_grow(void *arr, int *cap, size_t elem) {
    int c = *cap ? 2 * *cap : 64;
    void *l = realloc(arr, (size_t)c * elem);
    if (l) *cap = c;
    return l;
}

static pndm_status b_reg(builder *b, const float **slot, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                         const char *prefix, const char *suffix) {
    unet_net *n = b->n;
    if (n->n_params == b->cap) {
        unet_param *p = b_grow(n->params, &b->cap, sizeof *p);
        if (!p) return core_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
        n->params = p;
    }
    size_t len = strlen(prefix) + strlen(suffix) + 2;
    char *name = malloc(len);
    if (!name) return core_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
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

/* A convolution, listed for packing (net->convs). */
static pndm_status b_conv(builder *b, unet_conv *c, int cin, int cout, int k, int stride, const int pad[4],
                          const char *prefix) {
    unet_net *n = b->n;
    if (n->n_convs == b->conv_cap) {
        unet_conv **l = b_grow(n->convs, &b->conv_cap, sizeof *l);
        if (!l) return core_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
        n->convs = l;
    }
    n->convs[n->n_convs++] = c;
    c->g.cin = cin;
    c->g.cout = cout;
    c->g.k = k;
    c->g.stride = stride;
    c->g.pad_t = pad[0];
    c->g.pad_l = pad[1];
    c->g.pad_b = pad[2];
    c->g.pad_r = pad[3];
    c->w_param = n->n_params;
    pndm_status st = b_reg(b, &c->w, 4, cout, cin, k, k, prefix, "weight");
    if (!st) n->params[c->w_param].packed = 1;
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
        return core_fail(b->err, PNDM_ERR_MODEL, "%s: '%s': %d groups (%s) do not divide its %d channels", b->src,
                         prefix, groups, origin, ch);
    nm->groups = groups;
    nm->channels = ch;
    nm->eps = eps;
    pndm_status st = b_reg(b, &nm->w, 1, ch, 0, 0, 0, prefix, "weight");
    return st ? st : b_reg(b, &nm->b, 1, ch, 0, 0, 0, prefix, "bias");
}

static int min_groups(int ch) { return ch / 4 < 32 ? ch / 4 : 32; } /* min(ch // 4, 32) */

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
 * rescale_output_factor); norm_groups 0 = no group_norm. Listed for packing (net->attns). */
static pndm_status b_attn(builder *b, unet_attn *a, int ch, int norm_groups, const char *gorigin, float rescale,
                          const char *prefix) {
    const unet_config *c = &b->n->cfg;
    int head_dim = c->attention_head_dim ? c->attention_head_dim : ch;
    if (ch % head_dim != 0)
        return core_fail(b->err, PNDM_ERR_MODEL, "%s: attention_head_dim %d does not divide the %d channels of '%s'",
                         b->src, head_dim, ch, prefix);
    unet_net *n = b->n;
    if (n->n_attns == b->attn_cap) {
        unet_attn **l = b_grow(n->attns, &b->attn_cap, sizeof *l);
        if (!l) return core_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
        n->attns = l;
    }
    n->attns[n->n_attns++] = a;
    a->channels = ch;
    a->heads = ch / head_dim;
    a->scale = (float)pow((double)head_dim, -0.5);
    a->rescale = rescale;
    a->has_norm = norm_groups > 0;
    const op_conv_geom g3 = {ch, 3 * ch, 1, 1, 0, 0, 0, 0}, g1 = {ch, ch, 1, 1, 0, 0, 0, 0};
    a->qkv.g = g3;
    a->proj.g = g1;
    a->qkv.w_param = a->proj.w_param = -1;
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
    n->params[a->q.w_param].packed = n->params[a->k.w_param].packed = 1;
    n->params[a->v.w_param].packed = n->params[a->out.w_param].packed = 1;
    return PNDM_OK;
}

static pndm_status b_alloc_block(builder *b, unet_block *blk, int n_res, int n_attn) {
    blk->n_resnets = n_res;
    blk->n_attns = n_attn;
    blk->resnets = calloc((size_t)n_res, sizeof *blk->resnets);
    blk->attns = n_attn ? calloc((size_t)n_attn, sizeof *blk->attns) : NULL;
    if (!blk->resnets || (n_attn && !blk->attns)) return core_fail(b->err, PNDM_ERR_NOMEM, "%s: out of memory", b->src);
    return PNDM_OK;
}

static const float SQRT2 = 1.41421356237309504880f; /* np.sqrt(2.0): skip blocks' output_scale_factor */

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
            if (skip)
                st = b_attn(b, &blk->attns[j], out, 32, "AttnSkipDownBlock2D uses 32", SQRT2, name);
            else
                st = b_attn(b, &blk->attns[j], out, c->norm_num_groups, "norm_num_groups", 1.0f, name);
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
    const int out = ch[L - 1 - i];                              /* reversed[i] */
    const int in = ch[L - 1 - (i + 1 < L - 1 ? i + 1 : L - 1)]; /* reversed[min(i + 1, L - 1)] */
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
    blk->sampler = UNET_SAMPLER_CONV; /* Upsample2D(use_conv=True): nearest x2 then conv */
    snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
    return b_conv(b, &blk->conv, out, out, 3, 1, PAD1, name);
}

void unet_free(unet_net *net) {
    if (!net) return;
    for (int i = 0; i < net->n_convs; i++) op_conv_free(&net->convs[i]->pk);
    for (int i = 0; i < net->n_attns; i++) {
        op_conv_free(&net->attns[i]->qkv.pk);
        op_conv_free(&net->attns[i]->proj.pk);
        free(net->attns[i]->qkv_bias);
    }
    free(net->convs);
    free(net->attns);
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
    op_kernels_init(&net->kern, GEMM_PATH_AVX512, OP_GEMM_AUTO, 1);
    builder b = {net, source, err, 0, 0, 0};
    const unet_config *c = &net->cfg;
    const int C0 = c->block_out_channels[0], L = c->n_levels;
    net->temb_dim = 4 * C0;
    net->tproj_dim = c->time_fourier ? 2 * C0 : C0;
    pndm_status st;
#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((st = (x)) != PNDM_OK) goto fail;                                                                          \
    } while (0)
    TRY(b_conv(&b, &net->conv_in, c->in_channels, C0, 3, 1, PAD1, "conv_in"));
    if (c->time_fourier) TRY(b_reg(&b, &net->fourier_w, 1, C0, 0, 0, 0, "time_proj", "weight"));
    TRY(b_linear(&b, &net->time1, net->tproj_dim, net->temb_dim, "time_embedding.linear_1"));
    TRY(b_linear(&b, &net->time2, net->temb_dim, net->temb_dim, "time_embedding.linear_2"));
    for (int i = 0; i < L; i++) TRY(b_down(&b, i));
    { /* UNetMidBlock2D(num_layers=1): resnet, [attention], resnet */
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

static int cmp_param_name(const void *a, const void *b) {
    return strcmp((*(const unet_param *const *)a)->name, (*(const unet_param *const *)b)->name);
}

/* ---- packing ------------------------------------------------------------------------------ */
typedef struct pack_state {
    unet_net *net;
    const tt_table *f;
    pndm_error *err;
    pndm_status st;
} pack_state;

/* Parameter i as float32 (*owned: a malloc'ed conversion to free with param_release). */
static pndm_status param_get(pack_state *ps, int i, const float **data, int *owned) {
    const tt_tensor *t = tt_find(ps->f, ps->net->params[i].name);
    CORE_ASSERT(t != NULL);
    return tt_tensor_f32(ps->f, t, data, owned, ps->err);
}

static void param_release(pack_state *ps, int i, const float *data, int owned) {
    const tt_tensor *t = tt_find(ps->f, ps->net->params[i].name);
    if (owned) free((void *)data);
    tt_drop_pages(ps->f, t->data, t->nbytes);
}

static void pack_conv(pack_state *ps, unet_conv *c) {
    const float *w;
    int owned;
    if ((ps->st = param_get(ps, c->w_param, &w, &owned))) return;
    const op_conv_geom g = c->g;
    int ok = op_conv_init(&c->pk, &ps->net->kern, &g, w, c->b);
    param_release(ps, c->w_param, w, owned);
    if (!ok)
        ps->st = core_fail(ps->err, PNDM_ERR_NOMEM, "%s: out of memory packing '%s'",
                           ps->f->source ? ps->f->source : "model", ps->net->params[c->w_param].name);
}

/* to_q, to_k, to_v -> one 1x1 convolution C -> 3C; to_out.0 -> a 1x1 convolution */
static void pack_attn(pack_state *ps, unet_attn *a) {
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
    const op_conv_geom g3 = a->qkv.g, g1 = a->proj.g;
    if (ok && !ps->st) ok = op_conv_init(&a->qkv.pk, &ps->net->kern, &g3, w3, a->qkv_bias);
    free(w3);
    if (ok && !ps->st) {
        const float *w;
        int owned;
        if (!(ps->st = param_get(ps, a->out.w_param, &w, &owned))) {
            ok = op_conv_init(&a->proj.pk, &ps->net->kern, &g1, w, a->out.b);
            param_release(ps, a->out.w_param, w, owned);
        }
    }
    if (!ok && !ps->st)
        ps->st = core_fail(ps->err, PNDM_ERR_NOMEM, "%s: out of memory packing attention weights",
                           ps->f->source ? ps->f->source : "model");
}

pndm_status unet_bind(unet_net *net, const tt_table *f, pndm_error *err) {
    const char *src = f->source ? f->source : "model";
    /* 1. every parameter present with its shape */
    for (int i = 0; i < net->n_params; i++) {
        const unet_param *p = &net->params[i];
        const tt_tensor *t = tt_find(f, p->name);
        char want[96], got[160];
        tt_format_shape(want, sizeof want, p->ndim, p->shape);
        if (!t)
            return core_fail(err, PNDM_ERR_MODEL, "%s: missing tensor '%s' (expected shape %s)", src, p->name, want);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            tt_format_shape(got, sizeof got, t->ndim, t->shape);
            return core_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s': got %s, expected %s", src, p->name, got, want);
        }
    }
    /* 2. no other tensor */
    const unet_param **sorted = malloc((size_t)(net->n_params ? net->n_params : 1) * sizeof *sorted);
    if (!sorted) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    for (int i = 0; i < net->n_params; i++) sorted[i] = &net->params[i];
    qsort(sorted, (size_t)net->n_params, sizeof *sorted, cmp_param_name);
    for (int i = 0; i < f->n_tensors; i++) {
        unet_param key;
        key.name = f->tensors[i].name;
        const unet_param *kp = &key;
        if (!bsearch(&kp, sorted, (size_t)net->n_params, sizeof *sorted, cmp_param_name)) {
            free(sorted);
            return core_fail(err, PNDM_ERR_MODEL, "%s: unexpected tensor '%s' (not used by this config)", src,
                             f->tensors[i].name);
        }
    }
    free(sorted);
    /* 3. the count (every file tensor is a distinct parameter, so this holds unless the
     *    registry itself has duplicates) */
    if (f->n_tensors != net->n_params)
        return core_fail(err, PNDM_ERR_MODEL, "%s: expected %d tensors, found %d", src, net->n_params, f->n_tensors);
    /* data: F32 aligned in place, anything else converted */
    net->owned = calloc((size_t)(net->n_params ? net->n_params : 1), sizeof *net->owned);
    if (!net->owned) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", src);
    for (int i = 0; i < net->n_params; i++) {
        if (net->params[i].packed) continue;
        const tt_tensor *t = tt_find(f, net->params[i].name);
        const float *data;
        int owned;
        pndm_status st = tt_tensor_f32(f, t, &data, &owned, err);
        if (st) return st;
        if (owned) net->owned[net->n_owned++] = (float *)data;
        *net->params[i].slot = data;
    }
    /* 4. packed weights, one tensor at a time */
    pack_state ps = {net, f, err, PNDM_OK};
    for (int i = 0; i < net->n_convs && !ps.st; i++) pack_conv(&ps, net->convs[i]);
    for (int i = 0; i < net->n_attns && !ps.st; i++) pack_attn(&ps, net->attns[i]);
    return ps.st;
}
