/* PyTorch checkpoint reader (torchbin.h): the pickle's inert tree (pickle.c) interpreted as a
 * state dict, the way torch.serialization._load / _legacy_load and torch._utils._rebuild_tensor_v2
 * would rebuild it, with every size and offset checked against the bytes really there. */
#define _POSIX_C_SOURCE 200809L
#include "torchbin.h"
#include "core.h"
#include "pickle.h"
#include "zip.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PT_MAX_DIM_VALUE ((int64_t)1 << 62)

static const uint8_t pt_legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                          0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

int pt_looks_like_legacy(const void *buf, size_t size) {
    return size >= sizeof pt_legacy_magic && memcmp(buf, pt_legacy_magic, sizeof pt_legacy_magic) == 0;
}

int pt_looks_like(const void *buf, size_t size) { return zip_looks_like(buf, size) || pt_looks_like_legacy(buf, size); }

/* One tensor of the state dict, as the pickle describes it. */
typedef struct {
    const char *name; /* NUL-terminated copy */
    uint32_t persid;  /* PK_PERSID node */
    int storage;      /* index into the storages, after grouping */
    int64_t offset;   /* elements */
    int ndim;
    int64_t shape[TT_MAX_DIMS], stride[TT_MAX_DIMS];
} pt_tensor;

/* One storage (persistent id), grouped by key. */
typedef struct {
    const uint8_t *key; /* root key bytes (into the pickle) */
    size_t key_len;
    int type;       /* pk_storage_types index */
    uint64_t numel; /* elements of the root storage */
    int has_view;   /* legacy view (view key, offset, size) */
    uint64_t view_offset, view_numel;
    const char *first_tensor; /* for messages */
    const uint8_t *data;      /* numel * elem_size bytes, once resolved */
    int resolved;
} pt_storage;

typedef struct {
    tt_table *t;
    pndm_error *err;
    const char *pkl_name; /* "archive/data.pkl" or "legacy pickle" */
    pk_doc doc;
    pt_tensor *tensors;
    int n_tensors;
    pt_storage *storages;
    int n_storages;
    int *storage_of; /* per tensor: index into storages */
} pt_ctx;

static pndm_status pfail(pt_ctx *c, const char *tensor, const char *fmt, ...) CORE_PRINTF(3, 4);
static pndm_status pfail(pt_ctx *c, const char *tensor, const char *fmt, ...) {
    char msg[700], src[160], q[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_quote(src, sizeof src, c->t->source);
    if (tensor) {
        core_quote(q, sizeof q, tensor);
        return core_fail(c->err, PNDM_ERR_MODEL, "%s: tensor '%s': %s", src, q, msg);
    }
    return core_fail(c->err, PNDM_ERR_MODEL, "%s: %s", src, msg);
}

static const pk_node *node(const pt_ctx *c, uint32_t id) { return pk_node_at(&c->doc, id); }

static void describe(const pt_ctx *c, uint32_t id, char *buf, size_t size) { pk_describe(&c->doc, id, buf, size); }

/* a tuple of non-negative ints below 2^62 (or torch.Size(tuple)) -> vals */
static pndm_status int_tuple(pt_ctx *c, const char *tname, const char *what, uint32_t id, int64_t *vals, int *n) {
    const pk_node *x = node(c, id);
    if (x->kind == PK_CALL && x->global == PKG_SIZE) {
        const pk_node *args = node(c, x->items[0]);
        if (args->n == 1) x = node(c, args->items[0]);
    }
    char d[120];
    if (x->kind != PK_TUPLE && x->kind != PK_LIST) {
        describe(c, id, d, sizeof d);
        return pfail(c, tname, "%s is %s, expected a tuple of integers", what, d);
    }
    if (x->n > TT_MAX_DIMS)
        return pfail(c, tname, "%s has %u dimensions (at most %d supported)", what, x->n, TT_MAX_DIMS);
    for (uint32_t i = 0; i < x->n; i++) {
        const pk_node *e = node(c, x->items[i]);
        if (e->kind != PK_INT) {
            describe(c, x->items[i], d, sizeof d);
            return pfail(c, tname, "%s[%u] is %s, expected an integer", what, i, d);
        }
        if (e->v.i < 0) return pfail(c, tname, "%s[%u] = %lld is negative", what, i, (long long)e->v.i);
        if (e->v.i >= PT_MAX_DIM_VALUE)
            return pfail(c, tname, "%s[%u] = %lld is too large (at most 2^62)", what, i, (long long)e->v.i);
        vals[i] = e->v.i;
    }
    *n = (int)x->n;
    return PNDM_OK;
}

/* value -> tensor description (follows _rebuild_parameter / Parameter wrappers, at most 4 deep) */
static pndm_status read_tensor(pt_ctx *c, const char *tname, uint32_t id, pt_tensor *out) {
    char d[120];
    for (int depth = 0; depth < 4; depth++) {
        const pk_node *x = node(c, id);
        if (x->kind != PK_CALL) {
            describe(c, id, d, sizeof d);
            return pfail(c, tname, "is %s, not a tensor (pndm loads a state dict: tensors by name)", d);
        }
        const pk_node *args = node(c, x->items[0]);
        switch (x->global) {
        case PKG_REBUILD_PARAMETER:
        case PKG_PARAMETER:
            if (args->n < 1) return pfail(c, tname, "%s without arguments", pk_global_name(x));
            id = args->items[0];
            continue;
        case PKG_REBUILD_TENSOR_V2:
        case PKG_REBUILD_TENSOR: {
            const uint32_t want = x->global == PKG_REBUILD_TENSOR ? 4 : 6;
            if (args->n != want && !(x->global == PKG_REBUILD_TENSOR_V2 && args->n == 7))
                return pfail(c, tname, "%s with %u arguments (expected %u)", pk_global_name(x), args->n, want);
            const pk_node *st = node(c, args->items[0]), *off = node(c, args->items[1]);
            if (st->kind != PK_PERSID) {
                describe(c, args->items[0], d, sizeof d);
                return pfail(c, tname, "storage is %s, expected a storage reference", d);
            }
            if (off->kind != PK_INT || off->v.i < 0 || off->v.i >= PT_MAX_DIM_VALUE) {
                describe(c, args->items[1], d, sizeof d);
                return pfail(c, tname, "storage offset is %s, expected a non-negative integer below 2^62", d);
            }
            out->persid = args->items[0];
            out->offset = off->v.i;
            int ns = 0, nt = 0;
            pndm_status s = int_tuple(c, tname, "size", args->items[2], out->shape, &ns);
            if (!s) s = int_tuple(c, tname, "stride", args->items[3], out->stride, &nt);
            if (s) return s;
            if (ns != nt) return pfail(c, tname, "size has %d dimensions, stride %d", ns, nt);
            out->ndim = ns;
            if (want == 6) {
                const pk_node *rg = node(c, args->items[4]);
                if (rg->kind != PK_BOOL) {
                    describe(c, args->items[4], d, sizeof d);
                    return pfail(c, tname, "requires_grad is %s, expected a bool", d);
                }
            }
            return PNDM_OK;
        }
        case PKG_REBUILD_SPARSE: return pfail(c, tname, "sparse tensors are not supported");
        case PKG_REBUILD_META: return pfail(c, tname, "a meta tensor (no data) cannot be loaded");
        default: return pfail(c, tname, "is a call of %s, not a tensor", pk_global_name(x));
        }
    }
    return pfail(c, tname, "parameters nested too deeply");
}

/* the persistent id of tensor i -> its storage fields */
static pndm_status read_persid(pt_ctx *c, int i, int legacy, pt_storage *out) {
    const pt_tensor *tn = &c->tensors[i];
    const pk_node *p = node(c, node(c, tn->persid)->items[0]);
    char d[120];
    const uint32_t want = legacy ? 6 : 5;
    if (p->kind != PK_TUPLE || p->n != want) {
        describe(c, node(c, tn->persid)->items[0], d, sizeof d);
        return pfail(c, tn->name, "persistent id is %s, expected ('storage', type, key, location, size%s)", d,
                     legacy ? ", view" : "");
    }
    const pk_node *tag = node(c, p->items[0]), *type = node(c, p->items[1]), *key = node(c, p->items[2]),
                  *loc = node(c, p->items[3]), *numel = node(c, p->items[4]);
    if (!pk_str_is(tag, "storage")) {
        describe(c, p->items[0], d, sizeof d);
        return pfail(c, tn->name, "persistent id tag is %s, expected 'storage'", d);
    }
    if (type->kind != PK_GLOBAL || type->global != PKG_STORAGE) {
        describe(c, p->items[1], d, sizeof d);
        return pfail(c, tn->name, "storage type is %s, expected a torch storage class", d);
    }
    if (key->kind != PK_STR || key->v.s.len == 0 || key->v.s.len > 200 || memchr(key->v.s.p, '/', key->v.s.len) ||
        memchr(key->v.s.p, 0, key->v.s.len)) {
        describe(c, p->items[2], d, sizeof d);
        return pfail(c, tn->name, "storage key is %s, expected a short name", d);
    }
    if (loc->kind != PK_STR) {
        describe(c, p->items[3], d, sizeof d);
        return pfail(c, tn->name, "storage location is %s, expected a string like 'cpu'", d);
    }
    if (numel->kind != PK_INT || numel->v.i < 0 || numel->v.i >= PT_MAX_DIM_VALUE) {
        describe(c, p->items[4], d, sizeof d);
        return pfail(c, tn->name, "storage size is %s, expected a non-negative integer below 2^62", d);
    }
    memset(out, 0, sizeof *out);
    out->key = key->v.s.p;
    out->key_len = key->v.s.len;
    out->type = type->aux;
    out->numel = (uint64_t)numel->v.i;
    out->first_tensor = tn->name;
    if (legacy) {
        const pk_node *v = node(c, p->items[5]);
        if (v->kind == PK_TUPLE && v->n == 3) {
            const pk_node *vo = node(c, v->items[1]), *vs = node(c, v->items[2]);
            if (vo->kind != PK_INT || vs->kind != PK_INT || vo->v.i < 0 || vs->v.i < 0 ||
                (uint64_t)vo->v.i > out->numel || (uint64_t)vs->v.i > out->numel - (uint64_t)vo->v.i)
                return pfail(c, tn->name, "storage view [%lld, +%lld) outside its storage of %llu elements",
                             (long long)vo->v.i, (long long)vs->v.i, (unsigned long long)out->numel);
            out->has_view = 1;
            out->view_offset = (uint64_t)vo->v.i;
            out->view_numel = (uint64_t)vs->v.i;
        } else if (v->kind != PK_NONE) {
            describe(c, p->items[5], d, sizeof d);
            return pfail(c, tn->name, "storage view is %s, expected None or (key, offset, size)", d);
        }
    }
    return PNDM_OK;
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    size_t n = al < bl ? al : bl;
    int r = memcmp(a, b, n);
    return r ? r : (al < bl ? -1 : al > bl);
}

typedef struct {
    pt_storage s;
    int tensor;
} pt_ref;

static int ref_cmp(const void *a, const void *b) {
    const pt_ref *x = a, *y = b;
    int r = key_cmp(x->s.key, x->s.key_len, y->s.key, y->s.key_len);
    return r ? r : x->tensor - y->tensor;
}

/* root dict -> c->tensors; storages grouped by key -> c->storages */
static pndm_status read_state_dict(pt_ctx *c, int legacy) {
    const pk_node *root = node(c, c->doc.root);
    char d[120];
    if (root->kind != PK_DICT) {
        describe(c, c->doc.root, d, sizeof d);
        return pfail(c, NULL, "%s holds %s, not a state dict (a dict of tensors)", c->pkl_name, d);
    }
    int n = (int)(root->n / 2);
    c->tensors = calloc((size_t)(n ? n : 1), sizeof *c->tensors);
    c->storage_of = calloc((size_t)(n ? n : 1), sizeof *c->storage_of);
    pt_ref *refs = calloc((size_t)(n ? n : 1), sizeof *refs);
    c->storages = calloc((size_t)(n ? n : 1), sizeof *c->storages);
    if (!c->tensors || !c->storage_of || !refs || !c->storages) {
        free(refs);
        return core_fail(c->err, PNDM_ERR_NOMEM, "%s: out of memory", c->t->source);
    }
    pndm_status s = PNDM_OK;
    for (int i = 0; i < n && !s; i++) {
        const pk_node *k = node(c, root->items[2 * i]);
        if (k->kind != PK_STR) {
            describe(c, root->items[2 * i], d, sizeof d);
            s = pfail(c, NULL, "%s: state dict key %d is %s, expected a string", c->pkl_name, i, d);
            break;
        }
        char *name = malloc(k->v.s.len + 1);
        if (!name) {
            s = core_fail(c->err, PNDM_ERR_NOMEM, "%s: out of memory", c->t->source);
            break;
        }
        memcpy(name, k->v.s.p, k->v.s.len);
        name[k->v.s.len] = 0;
        c->tensors[i].name = name;
        c->n_tensors = i + 1;
        if (memchr(k->v.s.p, 0, k->v.s.len)) {
            s = pfail(c, name, "name has a NUL byte");
            break;
        }
        if ((s = read_tensor(c, name, root->items[2 * i + 1], &c->tensors[i]))) break;
        if ((s = read_persid(c, i, legacy, &refs[i].s))) break;
        refs[i].tensor = i;
    }
    if (!s && n > 1) qsort(refs, (size_t)n, sizeof *refs, ref_cmp);
    for (int i = 0; i < n && !s; i++) {
        pt_storage *prev = c->n_storages ? &c->storages[c->n_storages - 1] : NULL;
        if (prev && key_cmp(prev->key, prev->key_len, refs[i].s.key, refs[i].s.key_len) == 0) {
            int same = prev->type == refs[i].s.type && prev->numel == refs[i].s.numel &&
                prev->has_view == refs[i].s.has_view && prev->view_offset == refs[i].s.view_offset &&
                prev->view_numel == refs[i].s.view_numel;
            if (!same) {
                char q[160];
                core_quote(q, sizeof q, prev->first_tensor);
                s = pfail(c, c->tensors[refs[i].tensor].name,
                          "shares its storage with tensor '%s' but gives it another type or size", q);
                break;
            }
        } else {
            c->storages[c->n_storages++] = refs[i].s;
        }
        c->storage_of[refs[i].tensor] = c->n_storages - 1;
    }
    free(refs);
    return s;
}

/* the bytes of every storage, from the zip records */
static pndm_status resolve_zip(pt_ctx *c, const zip_archive *z, int verify_crc) {
    for (int i = 0; i < c->n_storages; i++) {
        pt_storage *st = &c->storages[i];
        char rel[220];
        snprintf(rel, sizeof rel, "data/%.*s", (int)st->key_len, (const char *)st->key);
        const zip_entry *e = zip_find_in(z, rel);
        const pk_storage_type *ty = &pk_storage_types[st->type];
        if (!e)
            return pfail(c, st->first_tensor, "its storage record '%s%s' is missing from the archive", z->prefix, rel);
        uint64_t want;
        if (__builtin_mul_overflow(st->numel, (uint64_t)ty->elem_size, &want) || want != e->size)
            return pfail(c, st->first_tensor, "storage record '%s' holds %llu bytes, but %llu elements of %s need %llu",
                         e->name, (unsigned long long)e->size, (unsigned long long)st->numel, ty->dtype + 6,
                         (unsigned long long)st->numel * (unsigned long long)ty->elem_size);
        if (verify_crc) {
            pndm_status s = zip_check_crc(z, e, c->err);
            if (s) return s;
        }
        st->data = e->data;
        st->resolved = 1;
    }
    return PNDM_OK;
}

/* tensor i -> tt_add (in place when contiguous, else a gathered copy) */
static pndm_status add_tensor(pt_ctx *c, int i) {
    const pt_tensor *tn = &c->tensors[i];
    const pt_storage *st = &c->storages[c->storage_of[i]];
    const pk_storage_type *ty = &pk_storage_types[st->type];
    if (ty->tt_dtype < 0)
        return pfail(c, tn->name, "dtype %s (%s) is not supported (only float32, float16, bfloat16)", ty->dtype + 6,
                     ty->storage);
    CORE_ASSERT(st->resolved);
    const uint64_t base = st->has_view ? st->view_offset : 0, limit = st->has_view ? st->view_numel : st->numel;
    uint64_t count = 1, maxi = (uint64_t)tn->offset;
    int zero = 0;
    for (int k = 0; k < tn->ndim; k++) {
        if (tn->shape[k] == 0) zero = 1;
        uint64_t term;
        if (!zero &&
            (__builtin_mul_overflow(count, (uint64_t)tn->shape[k], &count) ||
             __builtin_mul_overflow((uint64_t)(tn->shape[k] ? tn->shape[k] - 1 : 0), (uint64_t)tn->stride[k], &term) ||
             __builtin_add_overflow(maxi, term, &maxi)))
            return pfail(c, tn->name, "size and stride overflow 64 bits");
    }
    if (zero) count = 0;
    if (count > limit)
        return pfail(c, tn->name, "%llu elements, more than the %llu of its storage (expanded views are not supported)",
                     (unsigned long long)count, (unsigned long long)limit);
    if (count > 0 && maxi >= limit)
        return pfail(c, tn->name,
                     "view (offset %lld, sizes and strides) reaches element %llu, past the %llu of its storage",
                     (long long)tn->offset, (unsigned long long)maxi, (unsigned long long)limit);
    const size_t es = (size_t)ty->elem_size;
    if (count == 0) return tt_add(c->t, tn->name, (tt_dtype)ty->tt_dtype, tn->ndim, tn->shape, st->data, NULL, c->err);
    const uint8_t *src = st->data + (size_t)(base + (uint64_t)tn->offset) * es;
    int contiguous = 1;
    uint64_t expect = 1; /* C-order stride; the product stays <= count */
    for (int k = tn->ndim - 1; k >= 0; k--) {
        if (tn->shape[k] != 1 && (uint64_t)tn->stride[k] != expect) contiguous = 0;
        expect *= (uint64_t)tn->shape[k];
    }
    const void *data = src;
    if (!contiguous) {
        /* gather: walk the index space in C order (the view is inside the storage, checked above) */
        uint8_t *buf = malloc((size_t)count * es);
        if (!buf) return core_fail(c->err, PNDM_ERR_NOMEM, "%s: tensor '%s': out of memory", c->t->source, tn->name);
        pndm_status s = tt_own_buffer(c->t, buf, (size_t)count * es, c->err);
        if (s) {
            free(buf);
            return s;
        }
        int64_t idx[TT_MAX_DIMS] = {0};
        uint64_t off = 0;
        for (uint64_t e = 0; e < count; e++) {
            memcpy(buf + e * es, src + off * es, es);
            for (int k = tn->ndim - 1; k >= 0; k--) {
                if (++idx[k] < tn->shape[k]) {
                    off += (uint64_t)tn->stride[k];
                    break;
                }
                off -= (uint64_t)tn->stride[k] * (uint64_t)(tn->shape[k] - 1);
                idx[k] = 0;
            }
        }
        data = buf;
    }
    return tt_add(c->t, tn->name, (tt_dtype)ty->tt_dtype, tn->ndim, tn->shape, data, NULL, c->err);
}

static pndm_status add_all(pt_ctx *c) {
    pndm_status s = PNDM_OK;
    for (int i = 0; i < c->n_tensors && !s; i++) s = add_tensor(c, i);
    if (!s) s = tt_finish(c->t, c->err);
    return s;
}

static void ctx_free(pt_ctx *c) {
    for (int i = 0; i < c->n_tensors; i++) free((char *)c->tensors[i].name);
    free(c->tensors);
    free(c->storages);
    free(c->storage_of);
    pk_free(&c->doc);
}

/* ---- zip format ----------------------------------------------------------------------------- */
static pndm_status parse_zip(pt_ctx *c, const uint8_t *buf, size_t size, int verify_crc) {
    zip_archive z;
    pndm_status s = zip_open(&z, buf, size, c->t->source, 1, c->err);
    if (s) return s;
    const zip_entry *pkl = zip_find_in(&z, "data.pkl");
    char pkl_name[300];
    if (!pkl) {
        char list[300] = "";
        size_t o = 0;
        for (int i = 0; i < z.n_entries && i < 4 && o < sizeof list - 1; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s'%.60s'", i ? ", " : "", z.entries[i].name);
        s = pfail(c, NULL,
                  "a zip archive, but not a PyTorch checkpoint: no '%sdata.pkl' in it (it holds %d entr%s: %s%s)",
                  z.prefix, z.n_entries, z.n_entries == 1 ? "y" : "ies", list, z.n_entries > 4 ? ", ..." : "");
        zip_close(&z);
        return s;
    }
    snprintf(pkl_name, sizeof pkl_name, "%.280s", pkl->name);
    c->pkl_name = pkl_name;
    /* version: torch's reader requires it (1 .. kMaxSupportedFileFormatVersion = 10 in torch 1.13) */
    const zip_entry *ver = zip_find_in(&z, ".data/version");
    if (!ver) ver = zip_find_in(&z, "version");
    if (!ver) s = pfail(c, NULL, "a zip archive without a '%sversion' record: not a PyTorch checkpoint", z.prefix);
    if (!s && verify_crc) s = zip_check_crc(&z, ver, c->err);
    if (!s) {
        char txt[16];
        size_t l = ver->size < sizeof txt - 1 ? (size_t)ver->size : sizeof txt - 1;
        memcpy(txt, ver->data, l);
        txt[l] = 0;
        char *endp;
        long v = strtol(txt, &endp, 10);
        while (*endp == '\n' || *endp == '\r' || *endp == ' ') endp++;
        if (endp == txt || *endp || v < 1 || v > 10 || ver->size >= sizeof txt)
            s = pfail(c, NULL, "'%s' says format version '%s' (torch reads 1 to 10)", ver->name, txt);
    }
    const zip_entry *bo = s ? NULL : zip_find_in(&z, "byteorder");
    if (bo) {
        if (verify_crc) s = zip_check_crc(&z, bo, c->err);
        if (!s && !(bo->size == 6 && memcmp(bo->data, "little", 6) == 0))
            s = pfail(c, NULL, "'%s' is not 'little': big-endian checkpoints are not supported", bo->name);
    }
    if (!s && verify_crc) s = zip_check_crc(&z, pkl, c->err);
    char src[400];
    snprintf(src, sizeof src, "%.100s: %.280s", c->t->source, pkl->name);
    if (!s) s = pk_parse(&c->doc, pkl->data, (size_t)pkl->size, src, NULL, c->err);
    if (!s) s = read_state_dict(c, 0);
    if (!s) s = resolve_zip(c, &z, verify_crc);
    if (!s) s = add_all(c);
    zip_close(&z);
    return s;
}

/* ---- legacy format ------------------------------------------------------------------------- */
/* a small pickle at *pos (magic, protocol, sys info, key list) */
static pndm_status legacy_pickle(pt_ctx *c, const uint8_t *buf, size_t size, size_t *pos, const char *what, pk_doc *d) {
    char src[300];
    snprintf(src, sizeof src, "%.100s: legacy %s pickle", c->t->source, what);
    size_t used = 0;
    pndm_status s = pk_parse(d, buf + *pos, size - *pos, src, &used, c->err);
    if (!s) *pos += used;
    return s;
}

static pndm_status parse_legacy(pt_ctx *c, const uint8_t *buf, size_t size) {
    size_t pos = 0;
    pk_doc d;
    c->pkl_name = "the legacy pickle";
    /* 1. magic number (a LONG1 beyond int64: checked by its bytes at the start) */
    pndm_status s = legacy_pickle(c, buf, size, &pos, "magic-number", &d);
    if (s) return s;
    pk_free(&d);
    /* 2. protocol version 1001 */
    if ((s = legacy_pickle(c, buf, size, &pos, "protocol-version", &d))) return s;
    const pk_node *pv = pk_node_at(&d, d.root);
    int ok = pv->kind == PK_INT && pv->v.i == 1001;
    long long pvv = pv->kind == PK_INT ? (long long)pv->v.i : -1;
    pk_free(&d);
    if (!ok) return pfail(c, NULL, "legacy PyTorch file with protocol version %lld (only 1001 exists)", pvv);
    /* 3. system info: little_endian must be True */
    if ((s = legacy_pickle(c, buf, size, &pos, "system-info", &d))) return s;
    const pk_node *si = pk_node_at(&d, d.root);
    int little = -1;
    if (si->kind == PK_DICT)
        for (uint32_t i = 0; i + 1 < si->n; i += 2)
            if (pk_str_is(pk_node_at(&d, si->items[i]), "little_endian")) {
                const pk_node *v = pk_node_at(&d, si->items[i + 1]);
                little = v->kind == PK_BOOL ? (int)v->v.i : -1;
            }
    pk_free(&d);
    if (little == 0) return pfail(c, NULL, "big-endian legacy checkpoint: not supported");
    if (little < 0) return pfail(c, NULL, "legacy PyTorch file whose system info has no little_endian flag");
    /* 4. the state dict */
    char src[300];
    snprintf(src, sizeof src, "%.100s: legacy state-dict pickle", c->t->source);
    size_t used = 0;
    if ((s = pk_parse(&c->doc, buf + pos, size - pos, src, &used, c->err))) return s;
    pos += used;
    if ((s = read_state_dict(c, 1))) return s;
    /* 5. the storage keys, in the order of the data that follows */
    if ((s = legacy_pickle(c, buf, size, &pos, "storage-keys", &d))) return s;
    const pk_node *keys = pk_node_at(&d, d.root);
    if (keys->kind != PK_LIST) {
        pk_free(&d);
        return pfail(c, NULL, "legacy PyTorch file: the storage key list is not a list");
    }
    for (uint32_t k = 0; k < keys->n && !s; k++) {
        const pk_node *key = pk_node_at(&d, keys->items[k]);
        if (key->kind != PK_STR) {
            s = pfail(c, NULL, "legacy PyTorch file: storage key %u is not a string", k);
            break;
        }
        int found = -1;
        for (int lo = 0, hi = c->n_storages - 1; lo <= hi && found < 0;) {
            int mid = lo + (hi - lo) / 2;
            int r = key_cmp(c->storages[mid].key, c->storages[mid].key_len, key->v.s.p, key->v.s.len);
            if (r == 0)
                found = mid;
            else if (r < 0)
                lo = mid + 1;
            else
                hi = mid - 1;
        }
        char q[120];
        snprintf(q, sizeof q, "%.*s", (int)(key->v.s.len < 100 ? key->v.s.len : 100), (const char *)key->v.s.p);
        char qq[160];
        core_quote(qq, sizeof qq, q);
        /* torch asserts every listed key was referenced; a stray key: refused */
        if (found < 0) {
            s = pfail(c, NULL, "legacy PyTorch file lists storage '%s', which no tensor uses", qq);
            break;
        }
        pt_storage *st = &c->storages[found];
        if (st->resolved) {
            s = pfail(c, NULL, "legacy PyTorch file lists storage '%s' twice", qq);
            break;
        }
        const uint64_t es = (uint64_t)pk_storage_types[st->type].elem_size;
        if (size - pos < 8) {
            s = pfail(c, st->first_tensor, "storage '%s' is cut off at byte %zu (truncated file)", qq, pos);
            break;
        }
        uint64_t cnt = 0;
        for (int b = 7; b >= 0; b--) cnt = (cnt << 8) | buf[pos + (size_t)b];
        pos += 8;
        uint64_t nb;
        if (cnt != st->numel) {
            s = pfail(c, st->first_tensor, "storage '%s' holds %llu elements, its reference says %llu", qq,
                      (unsigned long long)cnt, (unsigned long long)st->numel);
            break;
        }
        if (__builtin_mul_overflow(cnt, es, &nb) || nb > size - pos) {
            s = pfail(c, st->first_tensor, "storage '%s' (%llu elements) runs past the end of the file (truncated)", qq,
                      (unsigned long long)cnt);
            break;
        }
        st->data = buf + pos;
        st->resolved = 1;
        pos += (size_t)nb;
    }
    pk_free(&d);
    for (int i = 0; i < c->n_storages && !s; i++)
        if (!c->storages[i].resolved)
            s = pfail(c, c->storages[i].first_tensor, "its storage is not in the legacy file's storage list");
    if (!s) s = add_all(c);
    return s;
}

pndm_status pt_parse(tt_table *t, const void *buf, size_t size, const char *name, int verify_crc, pndm_error *err) {
    pndm_status s = tt_init(t, name ? name : "<torch>", err);
    if (s) return s;
    pt_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.err = err;
    if (zip_looks_like(buf, size))
        s = parse_zip(&c, buf, size, verify_crc);
    else if (pt_looks_like_legacy(buf, size))
        s = parse_legacy(&c, buf, size);
    else
        s = pfail(&c, NULL, "not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file)");
    ctx_free(&c);
    if (s) tt_free(t);
    return s;
}
