/* State-dict key renames applied before the UNet binds the tensor table (model.h). The UNet
 * itself (src/model) knows only diffusers 0.30's current names. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "model.h"

#include <stdlib.h>
#include <string.h>

/* old attention names -> new, as ModelMixin._convert_deprecated_attention_blocks */
static const struct {
    const char *old, *new_name;
} keys_attn[] = {{"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"}, {"proj_attn", "to_out.0"}};

/* "<digits>." at p: length, else 0 */
static size_t digits_dot(const char *p) {
    size_t i = 0;
    while (p[i] >= '0' && p[i] <= '9') i++;
    return i > 0 && p[i] == '.' ? i + 1 : 0;
}

/* The new name of `name` when it is an old attention name (malloc'ed), else NULL.
 * Old names: (mid_block|down_blocks.N|up_blocks.N).attentions.M.(query|key|value|proj_attn).(weight|bias) */
static char *renamed(const char *name, int *oom) {
    const char *p = name;
    if (strncmp(p, "mid_block.", 10) == 0)
        p += 10;
    else if (strncmp(p, "down_blocks.", 12) == 0 || strncmp(p, "up_blocks.", 10) == 0) {
        p += p[0] == 'd' ? 12 : 10;
        size_t d = digits_dot(p);
        if (!d) return NULL;
        p += d;
    } else
        return NULL;
    if (strncmp(p, "attentions.", 11) != 0) return NULL;
    p += 11;
    size_t d = digits_dot(p);
    if (!d) return NULL;
    p += d;
    for (size_t i = 0; i < sizeof keys_attn / sizeof keys_attn[0]; i++) {
        size_t ol = strlen(keys_attn[i].old);
        if (strncmp(p, keys_attn[i].old, ol) != 0 || p[ol] != '.') continue;
        const char *tail = p + ol; /* ".weight" / ".bias" */
        if (strcmp(tail, ".weight") != 0 && strcmp(tail, ".bias") != 0) return NULL;
        size_t pre = (size_t)(p - name), nl = strlen(keys_attn[i].new_name), tl = strlen(tail);
        char *s = malloc(pre + nl + tl + 1);
        if (!s) {
            *oom = 1;
            return NULL;
        }
        memcpy(s, name, pre);
        memcpy(s + pre, keys_attn[i].new_name, nl);
        memcpy(s + pre + nl, tail, tl + 1);
        return s;
    }
    return NULL;
}

pndm_status model_convert_keys(tt_table *t, pndm_error *err) {
    const int n = t->n_tensors;
    char **to = calloc((size_t)(n ? n : 1), sizeof *to);
    if (!to) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", t->source);
    pndm_status s = PNDM_OK;
    int any = 0;
    /* 1. the new names, each checked against the (still sorted) table */
    for (int i = 0; i < n && !s; i++) {
        int oom = 0;
        to[i] = renamed(t->tensors[i].name, &oom);
        if (oom) s = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", t->source);
        if (!to[i]) continue;
        any = 1;
        if (tt_find(t, to[i])) {
            char src[160], qo[160], qn[160];
            core_quote(src, sizeof src, t->source);
            core_quote(qo, sizeof qo, t->tensors[i].name);
            core_quote(qn, sizeof qn, to[i]);
            s = core_fail(err, PNDM_ERR_MODEL,
                          "%s: tensor '%s' is there under its old name '%s' too (diffusers renames %s to %s): which "
                          "one is meant is ambiguous",
                          src, qn, qo, qo, qn);
        }
    }
    /* 2. rename, re-sort */
    for (int i = 0; i < n && !s; i++)
        if (to[i]) s = tt_rename(t, i, to[i], err);
    if (!s && any) s = tt_finish(t, err);
    for (int i = 0; i < n; i++) free(to[i]);
    free(to);
    return s;
}
