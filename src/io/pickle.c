/* Restricted unpickler (pickle.h). Opcode semantics follow CPython's Lib/pickle.py
 * (_Unpickler.load_*), restricted as torch 1.13's torch/_weights_only_unpickler.py restricts
 * them, except that nothing is ever called: an allowed function applied by REDUCE becomes a
 * PK_CALL node. */
#define _POSIX_C_SOURCE 200809L
#include "pickle.h"
#include "core.h"
#include "tensors.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const pk_storage_type pk_storage_types[] = {
    {"torch.FloatStorage", "torch.float32", 4, TT_F32},
    {"torch.HalfStorage", "torch.float16", 2, TT_F16},
    {"torch.BFloat16Storage", "torch.bfloat16", 2, TT_BF16},
    {"torch.DoubleStorage", "torch.float64", 8, -1},
    {"torch.LongStorage", "torch.int64", 8, -1},
    {"torch.IntStorage", "torch.int32", 4, -1},
    {"torch.ShortStorage", "torch.int16", 2, -1},
    {"torch.CharStorage", "torch.int8", 1, -1},
    {"torch.ByteStorage", "torch.uint8", 1, -1},
    {"torch.BoolStorage", "torch.bool", 1, -1},
    {"torch.ComplexFloatStorage", "torch.complex64", 8, -1},
    {"torch.ComplexDoubleStorage", "torch.complex128", 16, -1},
    {"torch.ComplexHalfStorage", "torch.complex32", 4, -1},
    {"torch.QUInt8Storage", "torch.quint8", 1, -1},
    {"torch.QInt8Storage", "torch.qint8", 1, -1},
    {"torch.QInt32Storage", "torch.qint32", 4, -1},
    {"torch.QUInt4x2Storage", "torch.quint4x2", 1, -1},
    {"torch.QUInt2x4Storage", "torch.quint2x4", 1, -1},
    {"torch.UntypedStorage", "torch.uint8", 1, -1},
};
const int pk_n_storage_types = (int)(sizeof pk_storage_types / sizeof pk_storage_types[0]);

/* torch.<dtype> globals, mapped onto the storage table's dtypes */
static const struct {
    const char *name;
    int storage;
} pk_dtypes[] = {
    {"float32", 0}, {"float", 0},      {"float16", 1},     {"half", 1},       {"bfloat16", 2},
    {"float64", 3}, {"double", 3},     {"int64", 4},       {"long", 4},       {"int32", 5},
    {"int", 5},     {"int16", 6},      {"short", 6},       {"int8", 7},       {"uint8", 8},
    {"bool", 9},    {"complex64", 10}, {"complex128", 11}, {"complex32", 12},
};

static const struct {
    const char *name;
    pk_global g;
} pk_functions[] = {
    {"collections.OrderedDict", PKG_ORDERED_DICT},
    {"torch._utils._rebuild_tensor_v2", PKG_REBUILD_TENSOR_V2},
    {"torch._utils._rebuild_tensor", PKG_REBUILD_TENSOR},
    {"torch._utils._rebuild_parameter", PKG_REBUILD_PARAMETER},
    {"torch._utils._rebuild_sparse_tensor", PKG_REBUILD_SPARSE},
    {"torch._utils._rebuild_sparse_csr_tensor", PKG_REBUILD_SPARSE},
    {"torch._utils._rebuild_meta_tensor_no_storage", PKG_REBUILD_META},
    {"torch.serialization._get_layout", PKG_GET_LAYOUT},
    {"torch.nn.parameter.Parameter", PKG_PARAMETER},
    {"torch.Size", PKG_SIZE},
    {"torch.Tensor", PKG_TENSOR},
};

/* what REDUCE may apply (OrderedDict is handled apart) */
static int pk_callable(pk_global g) {
    return g == PKG_ORDERED_DICT || g == PKG_REBUILD_TENSOR_V2 || g == PKG_REBUILD_TENSOR ||
        g == PKG_REBUILD_PARAMETER || g == PKG_REBUILD_SPARSE || g == PKG_REBUILD_META || g == PKG_GET_LAYOUT ||
        g == PKG_SIZE;
}

const char *pk_global_name(const pk_node *n) {
    if (n->global == PKG_STORAGE) return pk_storage_types[n->aux].storage;
    if (n->global == PKG_DTYPE) return pk_storage_types[n->aux].dtype;
    for (size_t i = 0; i < sizeof pk_functions / sizeof pk_functions[0]; i++)
        if (pk_functions[i].g == n->global) return pk_functions[i].name;
    return "?";
}

int pk_str_is(const pk_node *n, const char *s) {
    if (n->kind != PK_STR && n->kind != PK_BYTES) return 0;
    size_t l = strlen(s);
    return n->v.s.len == l && memcmp(n->v.s.p, s, l) == 0;
}

/* ---- the machine --------------------------------------------------------------------------- */
typedef struct {
    pk_doc *d;
    const uint8_t *b;
    size_t size, pos, op_pos;
    const char *source;
    pndm_error *err;
    uint32_t *stack;
    size_t n_stack, cap_stack;
    size_t *marks; /* stack heights at MARK */
    int n_marks;
    uint32_t *memo; /* node id + 1; 0 = empty */
    size_t n_memo;  /* slots allocated */
    size_t memo_used;
} pk_vm;

static pndm_status vfail(pk_vm *m, const char *fmt, ...) CORE_PRINTF(2, 3);
static pndm_status vfail(pk_vm *m, const char *fmt, ...) {
    char msg[700], src[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_quote(src, sizeof src, m->source);
    return core_fail(m->err, PNDM_ERR_MODEL, "%s: pickle offset %zu: %s", src, m->op_pos, msg);
}

static pndm_status nomem(pk_vm *m) {
    return core_fail(m->err, PNDM_ERR_NOMEM, "%s: out of memory unpickling", m->source);
}

static pndm_status new_node(pk_vm *m, pk_kind kind, uint32_t *id) {
    pk_doc *d = m->d;
    if (d->n_nodes >= PK_MAX_NODES) return vfail(m, "more than %u values (not a state dict)", PK_MAX_NODES);
    if (d->n_nodes == d->cap_nodes) {
        uint32_t cap = d->cap_nodes ? d->cap_nodes * 2 : 256;
        pk_node *n = realloc(d->nodes, (size_t)cap * sizeof *n);
        if (!n) return nomem(m);
        d->nodes = n;
        d->cap_nodes = cap;
    }
    pk_node *n = &d->nodes[d->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    *id = d->n_nodes++;
    return PNDM_OK;
}

static pndm_status push(pk_vm *m, uint32_t id) {
    if (m->n_stack == m->cap_stack) {
        if (m->cap_stack >= PK_MAX_STACK) return vfail(m, "stack deeper than %u entries", PK_MAX_STACK);
        size_t cap = m->cap_stack ? m->cap_stack * 2 : 256;
        uint32_t *s = realloc(m->stack, cap * sizeof *s);
        if (!s) return nomem(m);
        m->stack = s;
        m->cap_stack = cap;
    }
    m->stack[m->n_stack++] = id;
    return PNDM_OK;
}

/* entries above the innermost MARK */
static size_t floor_of(const pk_vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static pndm_status pop(pk_vm *m, uint32_t *id, const char *op) {
    if (m->n_stack <= floor_of(m)) return vfail(m, "%s on an empty stack", op);
    *id = m->stack[--m->n_stack];
    return PNDM_OK;
}

static pndm_status top(pk_vm *m, uint32_t *id, const char *op) {
    if (m->n_stack <= floor_of(m)) return vfail(m, "%s on an empty stack", op);
    *id = m->stack[m->n_stack - 1];
    return PNDM_OK;
}

static pndm_status need(pk_vm *m, size_t n, const char *what) {
    if (m->size - m->pos < n)
        return vfail(m, "%s needs %zu bytes, only %zu left (truncated pickle)", what, n, m->size - m->pos);
    return PNDM_OK;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static pndm_status set_depth(pk_vm *m, uint32_t container, uint32_t child) {
    pk_node *c = &m->d->nodes[container];
    unsigned d = (unsigned)m->d->nodes[child].depth + 1;
    if (d > PK_MAX_DEPTH) return vfail(m, "values nested deeper than %d levels", PK_MAX_DEPTH);
    if (d > c->depth) c->depth = (uint16_t)d;
    return PNDM_OK;
}

static pndm_status add_item(pk_vm *m, uint32_t container, uint32_t item) {
    pk_node *c = &m->d->nodes[container];
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 4;
        if (cap < c->cap) return vfail(m, "container too large");
        uint32_t *it = realloc(c->items, (size_t)cap * sizeof *it);
        if (!it) return nomem(m);
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return set_depth(m, container, item);
}

/* a container of kind from the n stack entries above `from` (which are removed) */
static pndm_status make_seq(pk_vm *m, pk_kind kind, size_t from, uint32_t *out) {
    uint32_t id = 0;
    pndm_status s = new_node(m, kind, &id);
    if (s) return s;
    size_t n = m->n_stack - from;
    if (n) {
        pk_node *c = &m->d->nodes[id];
        c->items = malloc(n * sizeof *c->items);
        if (!c->items) return nomem(m);
        c->cap = (uint32_t)n;
        for (size_t i = 0; i < n; i++) {
            c->items[c->n++] = m->stack[from + i];
            if ((s = set_depth(m, id, m->stack[from + i]))) return s;
        }
    }
    m->n_stack = from;
    *out = id;
    return PNDM_OK;
}

static pndm_status push_int(pk_vm *m, pk_kind kind, int64_t v) {
    uint32_t id = 0;
    pndm_status s = new_node(m, kind, &id);
    if (s) return s;
    m->d->nodes[id].v.i = v;
    return push(m, id);
}

static pndm_status push_str(pk_vm *m, pk_kind kind, size_t len) {
    pndm_status s = need(m, len, "string");
    if (s) return s;
    uint32_t id = 0;
    if ((s = new_node(m, kind, &id))) return s;
    m->d->nodes[id].v.s.p = m->b + m->pos;
    m->d->nodes[id].v.s.len = len;
    m->pos += len;
    return push(m, id);
}

/* module + "." + name against the allow-list */
static pndm_status push_global(pk_vm *m, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl) {
    char full[600];
    if (ml + nl + 2 > sizeof full) return vfail(m, "global name of %zu bytes (not a state dict)", ml + nl + 1);
    memcpy(full, mod, ml);
    full[ml] = '.';
    memcpy(full + ml + 1, name, nl);
    full[ml + 1 + nl] = 0;
    if (memchr(full, 0, ml + 1 + nl)) return vfail(m, "global name with a NUL byte");
    int g = -1, aux = 0;
    for (size_t i = 0; i < sizeof pk_functions / sizeof pk_functions[0]; i++)
        if (strcmp(full, pk_functions[i].name) == 0) g = (int)pk_functions[i].g;
    const char *cls = NULL;
    if (g < 0 && strncmp(full, "torch.", 6) == 0) {
        cls = full + 6;
        if (strncmp(cls, "cuda.", 5) == 0) cls += 5;
        for (int i = 0; i < pk_n_storage_types; i++)
            if (strcmp(cls, pk_storage_types[i].storage + 6) == 0) g = PKG_STORAGE, aux = i;
        if (g < 0 && cls == full + 6)
            for (size_t i = 0; i < sizeof pk_dtypes / sizeof pk_dtypes[0]; i++)
                if (strcmp(cls, pk_dtypes[i].name) == 0) g = PKG_DTYPE, aux = pk_dtypes[i].storage;
    }
    if (g < 0) {
        char q[200];
        core_quote(q, sizeof q, full);
        return vfail(m,
                     "global '%s' is not allowed in a weights file (refused without running anything: a state dict "
                     "needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter, "
                     "torch storage classes and dtypes)",
                     q);
    }
    uint32_t id = 0;
    pndm_status s = new_node(m, PK_GLOBAL, &id);
    if (s) return s;
    m->d->nodes[id].global = (uint8_t)g;
    m->d->nodes[id].aux = (uint16_t)aux;
    return push(m, id);
}

static pndm_status read_line(pk_vm *m, const uint8_t **p, size_t *len) {
    size_t max = m->size - m->pos;
    if (max > 512) max = 512;
    const uint8_t *nl = memchr(m->b + m->pos, '\n', max);
    if (!nl) return vfail(m, "GLOBAL name without a newline within 512 bytes (truncated pickle?)");
    *p = m->b + m->pos;
    *len = (size_t)(nl - (m->b + m->pos));
    m->pos += *len + 1;
    return PNDM_OK;
}

static pndm_status memo_put(pk_vm *m, uint64_t idx) {
    uint32_t id = 0;
    pndm_status s = top(m, &id, "memo put");
    if (s) return s;
    if (idx >= PK_MAX_MEMO || idx > m->memo_used + PK_MEMO_GAP)
        return vfail(m, "memo index %llu out of range (memo holds %zu values; at most %u)", (unsigned long long)idx,
                     m->memo_used, PK_MAX_MEMO);
    if (idx >= m->n_memo) {
        size_t cap = m->n_memo ? m->n_memo : 256;
        while (cap <= idx) cap *= 2;
        if (cap > PK_MAX_MEMO) cap = PK_MAX_MEMO;
        uint32_t *nm = realloc(m->memo, cap * sizeof *nm);
        if (!nm) return nomem(m);
        memset(nm + m->n_memo, 0, (cap - m->n_memo) * sizeof *nm);
        m->memo = nm;
        m->n_memo = cap;
    }
    if (!m->memo[idx]) m->memo_used++;
    m->memo[idx] = id + 1;
    return PNDM_OK;
}

static pndm_status memo_get(pk_vm *m, uint64_t idx) {
    if (idx >= m->n_memo || !m->memo[idx]) return vfail(m, "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx] - 1);
}

static const char *kind_name(pk_kind k) {
    switch (k) {
    case PK_NONE: return "None";
    case PK_BOOL: return "a bool";
    case PK_INT: return "an int";
    case PK_BIGINT: return "a big int";
    case PK_FLOAT: return "a float";
    case PK_STR: return "a string";
    case PK_BYTES: return "bytes";
    case PK_TUPLE: return "a tuple";
    case PK_LIST: return "a list";
    case PK_DICT: return "a dict";
    case PK_SET: return "a set";
    case PK_GLOBAL: return "a global";
    case PK_CALL: return "a call";
    case PK_PERSID: return "a persistent id";
    }
    return "a value";
}

void pk_describe(const pk_doc *d, uint32_t id, char *buf, size_t size) {
    const pk_node *n = &d->nodes[id];
    char q[80];
    switch (n->kind) {
    case PK_INT: snprintf(buf, size, "the int %lld", (long long)n->v.i); return;
    case PK_STR:
    case PK_BYTES: {
        char tmp[48];
        size_t l = n->v.s.len < sizeof tmp - 1 ? n->v.s.len : sizeof tmp - 1;
        memcpy(tmp, n->v.s.p, l);
        tmp[l] = 0;
        core_quote(q, sizeof q, tmp);
        snprintf(buf, size, "%s '%s%s'", n->kind == PK_STR ? "the string" : "the bytes", q,
                 n->v.s.len > l ? "..." : "");
        return;
    }
    case PK_GLOBAL: snprintf(buf, size, "the global %s", pk_global_name(n)); return;
    case PK_CALL: snprintf(buf, size, "a call of %s", pk_global_name(n)); return;
    case PK_TUPLE:
    case PK_LIST:
    case PK_DICT: {
        unsigned k = n->kind == PK_DICT ? n->n / 2 : n->n;
        snprintf(buf, size, "%s of %u item%s", kind_name(n->kind), k, k == 1 ? "" : "s");
        return;
    }
    default: snprintf(buf, size, "%s", kind_name(n->kind)); return;
    }
}

/* names of the refused opcodes, for messages */
static const char *refused_opcode(uint8_t op) {
    switch (op) {
    case 0x97: return "NEXT_BUFFER (protocol 5 out-of-band buffer)";
    case 0x98: return "READONLY_BUFFER (protocol 5 out-of-band buffer)";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 'P': return "PERSID (protocol 0)";
    case 'I': return "INT (protocol 0)";
    case 'L': return "LONG (protocol 0)";
    case 'S': return "STRING (protocol 0)";
    case 'V': return "UNICODE (protocol 0)";
    case 'F': return "FLOAT (protocol 0)";
    case 'g': return "GET (protocol 0)";
    case 'p': return "PUT (protocol 0)";
    case 'l': return "LIST (protocol 0)";
    case 'd': return "DICT (protocol 0)";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 0x8b: return "LONG4";
    case 0x8e: return "BINBYTES8";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    }
    return NULL;
}

static pndm_status op_reduce(pk_vm *m) {
    uint32_t args = 0, fn = 0;
    pndm_status s = pop(m, &args, "REDUCE");
    if (!s) s = top(m, &fn, "REDUCE");
    if (s) return s;
    const pk_node *f = &m->d->nodes[fn];
    char what[120];
    if (f->kind != PK_GLOBAL) {
        pk_describe(m->d, fn, what, sizeof what);
        return vfail(m, "REDUCE applies %s (only allowed torch functions may be called)", what);
    }
    if (!pk_callable((pk_global)f->global))
        return vfail(m, "REDUCE of %s is not allowed in a weights file (nothing was run)", pk_global_name(f));
    if (m->d->nodes[args].kind != PK_TUPLE) {
        pk_describe(m->d, args, what, sizeof what);
        return vfail(m, "REDUCE of %s with %s as its arguments (expected a tuple)", pk_global_name(f), what);
    }
    uint32_t id = 0;
    if (f->global == PKG_ORDERED_DICT) {
        if (m->d->nodes[args].n != 0) return vfail(m, "OrderedDict built from arguments (torch.save passes none)");
        if ((s = new_node(m, PK_DICT, &id))) return s;
    } else {
        uint8_t g = f->global;
        if ((s = new_node(m, PK_CALL, &id))) return s;
        m->d->nodes[id].global = g;
        if ((s = add_item(m, id, args))) return s;
    }
    m->stack[m->n_stack - 1] = id;
    return PNDM_OK;
}

static pndm_status op_newobj(pk_vm *m) {
    uint32_t args = 0, cls = 0;
    pndm_status s = pop(m, &args, "NEWOBJ");
    if (!s) s = pop(m, &cls, "NEWOBJ");
    if (s) return s;
    const pk_node *c = &m->d->nodes[cls];
    char what[120];
    if (c->kind != PK_GLOBAL || c->global != PKG_PARAMETER) {
        pk_describe(m->d, cls, what, sizeof what);
        return vfail(m, "NEWOBJ of %s (only torch.nn.parameter.Parameter may be instantiated)", what);
    }
    if (m->d->nodes[args].kind != PK_TUPLE) return vfail(m, "NEWOBJ with arguments that are not a tuple");
    uint32_t id = 0;
    if ((s = new_node(m, PK_CALL, &id))) return s;
    m->d->nodes[id].global = PKG_PARAMETER;
    if ((s = add_item(m, id, args))) return s;
    return push(m, id);
}

static pndm_status op_build(pk_vm *m) {
    uint32_t state = 0, inst = 0;
    pndm_status s = pop(m, &state, "BUILD");
    if (!s) s = top(m, &inst, "BUILD");
    if (s) return s;
    if (m->d->nodes[inst].kind != PK_DICT) {
        char what[120];
        pk_describe(m->d, inst, what, sizeof what);
        return vfail(m, "BUILD on %s (allowed on dicts only)", what);
    }
    return PNDM_OK; /* an OrderedDict's attributes (a state dict's _metadata): not needed */
}

static pndm_status op_setitems(pk_vm *m, size_t from) {
    size_t n = m->n_stack - from;
    if (n % 2) return vfail(m, "SETITEMS with an odd number (%zu) of keys and values", n);
    if (from <= floor_of(m)) return vfail(m, "SETITEM(S) without a dict below its keys and values");
    uint32_t dict = m->stack[from - 1];
    if (m->d->nodes[dict].kind != PK_DICT) {
        char what[120];
        pk_describe(m->d, dict, what, sizeof what);
        return vfail(m, "SETITEM(S) on %s (allowed on dicts only)", what);
    }
    pndm_status s;
    for (size_t i = from; i < m->n_stack; i++)
        if ((s = add_item(m, dict, m->stack[i]))) return s;
    m->n_stack = from;
    return PNDM_OK;
}

static pndm_status op_appends(pk_vm *m, size_t from) {
    if (from <= floor_of(m)) return vfail(m, "APPEND(S) without a list below its values");
    uint32_t list = m->stack[from - 1];
    if (m->d->nodes[list].kind != PK_LIST) {
        char what[120];
        pk_describe(m->d, list, what, sizeof what);
        return vfail(m, "APPEND(S) on %s (allowed on lists only)", what);
    }
    pndm_status s;
    for (size_t i = from; i < m->n_stack; i++)
        if ((s = add_item(m, list, m->stack[i]))) return s;
    m->n_stack = from;
    return PNDM_OK;
}

static pndm_status pop_mark(pk_vm *m, size_t *from, const char *op) {
    if (m->n_marks == 0) return vfail(m, "%s without a MARK", op);
    *from = m->marks[--m->n_marks];
    return PNDM_OK;
}

static pndm_status run(pk_vm *m, size_t *end) {
    pndm_status s = PNDM_OK;
    for (;;) {
        if (s) return s;
        m->op_pos = m->pos;
        if (m->pos >= m->size) return vfail(m, "pickle ends without STOP (truncated)");
        uint8_t op = m->b[m->pos++];
        uint32_t id = 0, a = 0, b2 = 0, c = 0;
        size_t from = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if ((s = need(m, 1, "PROTO"))) break;
            if (m->b[m->pos] > 5) s = vfail(m, "pickle protocol %u is not supported (2 to 5)", m->b[m->pos]);
            m->pos++;
            break;
        case 0x95: /* FRAME: a length hint; the opcodes that follow are read as usual */
            if ((s = need(m, 8, "FRAME"))) break;
            if (rd_le(m->b + m->pos, 8) > m->size - m->pos - 8) s = vfail(m, "FRAME runs past the end (truncated)");
            m->pos += 8;
            break;
        case '.': /* STOP */
            if ((s = pop(m, &id, "STOP"))) break;
            m->d->root = id;
            if (end) *end = m->pos;
            return PNDM_OK;
        case '(': /* MARK */
            if (m->n_marks >= PK_MAX_DEPTH) {
                s = vfail(m, "MARKs nested deeper than %d levels", PK_MAX_DEPTH);
                break;
            }
            m->marks[m->n_marks++] = m->n_stack;
            break;
        case 'N': s = push_int(m, PK_NONE, 0); break;
        case 0x88: s = push_int(m, PK_BOOL, 1); break;
        case 0x89: s = push_int(m, PK_BOOL, 0); break;
        case 'J': /* BININT */
            if ((s = need(m, 4, "BININT"))) break;
            s = push_int(m, PK_INT, (int64_t)(int32_t)(uint32_t)rd_le(m->b + m->pos, 4));
            m->pos += 4;
            break;
        case 'K': /* BININT1 */
            if ((s = need(m, 1, "BININT1"))) break;
            s = push_int(m, PK_INT, m->b[m->pos++]);
            break;
        case 'M': /* BININT2 */
            if ((s = need(m, 2, "BININT2"))) break;
            s = push_int(m, PK_INT, (int64_t)rd_le(m->b + m->pos, 2));
            m->pos += 2;
            break;
        case 0x8a: { /* LONG1: n bytes, little-endian two's complement */
            if ((s = need(m, 1, "LONG1"))) break;
            size_t n = m->b[m->pos++];
            if ((s = need(m, n, "LONG1"))) break;
            if (n <= 8) {
                uint64_t v = n ? rd_le(m->b + m->pos, (int)n) : 0;
                if (n && n < 8 && (m->b[m->pos + n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
                m->pos += n;
                s = push_int(m, PK_INT, (int64_t)v);
            } else {
                s = push_str(m, PK_BIGINT, n);
            }
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if ((s = need(m, 8, "BINFLOAT"))) break;
            uint64_t v = 0;
            for (int i = 0; i < 8; i++) v = (v << 8) | m->b[m->pos + i];
            m->pos += 8;
            if ((s = new_node(m, PK_FLOAT, &id))) break;
            memcpy(&m->d->nodes[id].v.f, &v, sizeof v);
            s = push(m, id);
            break;
        }
        case 'X': /* BINUNICODE */
        case 'T': /* BINSTRING */
        case 'B': /* BINBYTES */
            if ((s = need(m, 4, "string length"))) break;
            {
                uint64_t n = rd_le(m->b + m->pos, 4);
                m->pos += 4;
                s = push_str(m, op == 'X' ? PK_STR : PK_BYTES, (size_t)n);
            }
            break;
        case 0x8d: /* BINUNICODE8 */
            if ((s = need(m, 8, "string length"))) break;
            {
                uint64_t n = rd_le(m->b + m->pos, 8);
                m->pos += 8;
                if (n > m->size - m->pos) {
                    s = vfail(m, "string of %llu bytes runs past the end (truncated)", (unsigned long long)n);
                    break;
                }
                s = push_str(m, PK_STR, (size_t)n);
            }
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
        case 'C':  /* SHORT_BINBYTES */
            if ((s = need(m, 1, "string length"))) break;
            s = push_str(m, op == 0x8c ? PK_STR : PK_BYTES, m->b[m->pos++]);
            break;
        case ')': /* EMPTY_TUPLE */
            if ((s = new_node(m, PK_TUPLE, &id))) break;
            s = push(m, id);
            break;
        case 't': /* TUPLE */
            if ((s = pop_mark(m, &from, "TUPLE"))) break;
            if ((s = make_seq(m, PK_TUPLE, from, &id))) break;
            s = push(m, id);
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
        {
            size_t k = (size_t)(op - 0x84);
            if (m->n_stack < floor_of(m) + k) {
                s = vfail(m, "TUPLE%zu with fewer than %zu values on the stack", k, k);
                break;
            }
            if ((s = make_seq(m, PK_TUPLE, m->n_stack - k, &id))) break;
            s = push(m, id);
            break;
        }
        case ']': /* EMPTY_LIST */
            if ((s = new_node(m, PK_LIST, &id))) break;
            s = push(m, id);
            break;
        case '}': /* EMPTY_DICT */
            if ((s = new_node(m, PK_DICT, &id))) break;
            s = push(m, id);
            break;
        case 0x8f: /* EMPTY_SET */
            if ((s = new_node(m, PK_SET, &id))) break;
            s = push(m, id);
            break;
        case 'a': /* APPEND */
            if (m->n_stack < floor_of(m) + 2) {
                s = vfail(m, "APPEND without a list and a value");
                break;
            }
            s = op_appends(m, m->n_stack - 1);
            break;
        case 'e': /* APPENDS */
            if ((s = pop_mark(m, &from, "APPENDS"))) break;
            s = op_appends(m, from);
            break;
        case 's': /* SETITEM */
            if (m->n_stack < floor_of(m) + 3) {
                s = vfail(m, "SETITEM without a dict, a key and a value");
                break;
            }
            s = op_setitems(m, m->n_stack - 2);
            break;
        case 'u': /* SETITEMS */
            if ((s = pop_mark(m, &from, "SETITEMS"))) break;
            s = op_setitems(m, from);
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const uint8_t *mod = NULL, *name = NULL;
            size_t ml = 0, nl = 0;
            if ((s = read_line(m, &mod, &ml))) break;
            if ((s = read_line(m, &name, &nl))) break;
            s = push_global(m, mod, ml, name, nl);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((s = pop(m, &b2, "STACK_GLOBAL"))) break;
            if ((s = pop(m, &a, "STACK_GLOBAL"))) break;
            if (m->d->nodes[a].kind != PK_STR || m->d->nodes[b2].kind != PK_STR) {
                s = vfail(m, "STACK_GLOBAL of values that are not strings");
                break;
            }
            s = push_global(m, m->d->nodes[a].v.s.p, m->d->nodes[a].v.s.len, m->d->nodes[b2].v.s.p,
                            m->d->nodes[b2].v.s.len);
            break;
        case 'R': s = op_reduce(m); break;
        case 0x81: s = op_newobj(m); break;
        case 'b': s = op_build(m); break;
        case 'Q': /* BINPERSID */
            if ((s = pop(m, &a, "BINPERSID"))) break;
            if ((s = new_node(m, PK_PERSID, &c))) break;
            if ((s = add_item(m, c, a))) break;
            s = push(m, c);
            break;
        case 'q': /* BINPUT */
            if ((s = need(m, 1, "BINPUT"))) break;
            s = memo_put(m, m->b[m->pos++]);
            break;
        case 'r': /* LONG_BINPUT */
            if ((s = need(m, 4, "LONG_BINPUT"))) break;
            s = memo_put(m, rd_le(m->b + m->pos, 4));
            m->pos += 4;
            break;
        case 0x94: /* MEMOIZE */ s = memo_put(m, m->memo_used); break;
        case 'h': /* BINGET */
            if ((s = need(m, 1, "BINGET"))) break;
            s = memo_get(m, m->b[m->pos++]);
            break;
        case 'j': /* LONG_BINGET */
            if ((s = need(m, 4, "LONG_BINGET"))) break;
            s = memo_get(m, rd_le(m->b + m->pos, 4));
            m->pos += 4;
            break;
        default: {
            const char *r = refused_opcode(op);
            if (r)
                s = vfail(m, "opcode %s is not allowed in a weights file", r);
            else
                s = vfail(m, "unknown pickle opcode 0x%02x", op);
            break;
        }
        }
    }
}

pndm_status pk_parse(pk_doc *d, const void *buf, size_t size, const char *source, size_t *end, pndm_error *err) {
    memset(d, 0, sizeof *d);
    pk_vm m = {.d = d, .b = buf, .size = size, .source = source ? source : "<pickle>", .err = err};
    m.marks = malloc(PK_MAX_DEPTH * sizeof *m.marks);
    pndm_status s = m.marks ? run(&m, end) : nomem(&m);
    free(m.marks);
    free(m.stack);
    free(m.memo);
    if (s) pk_free(d);
    return s;
}

void pk_free(pk_doc *d) {
    if (!d) return;
    for (uint32_t i = 0; i < d->n_nodes; i++) free(d->nodes[i].items);
    free(d->nodes);
    memset(d, 0, sizeof *d);
}
