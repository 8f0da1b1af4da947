/* A restricted unpickler for PyTorch weights (the data.pkl of torch.save). It runs the pickle
 * opcodes torch writes (protocols 2-5: PROTO, FRAME, MARK, STOP, NONE, NEWTRUE/NEWFALSE,
 * BININT/BININT1/BININT2/LONG1, BINFLOAT, BINUNICODE/SHORT_BINUNICODE/BINUNICODE8,
 * SHORT_BINSTRING/BINSTRING, SHORT_BINBYTES/BINBYTES, EMPTY_TUPLE/TUPLE/TUPLE1-3, EMPTY_LIST/
 * APPEND/APPENDS, EMPTY_DICT/SETITEM/SETITEMS, EMPTY_SET, GLOBAL/STACK_GLOBAL, REDUCE, BUILD,
 * NEWOBJ, BINPERSID, BINPUT/LONG_BINPUT/MEMOIZE, BINGET/LONG_BINGET) and builds an inert tree
 * of values. It never calls anything:
 *   - GLOBAL names are looked up in a fixed allow-list (what a state dict needs, a subset of
 *     torch 1.13's torch/_weights_only_unpickler.py: collections.OrderedDict, the
 *     torch._utils._rebuild_* functions, torch.nn.parameter.Parameter, torch.Size, the storage
 *     classes and dtypes); any other name is refused by name at the GLOBAL opcode;
 *   - REDUCE of OrderedDict with no arguments makes an empty ordered dict; REDUCE of another
 *     allowed function makes a PK_CALL node recording the function and its arguments, for the
 *     caller to interpret (torchbin.c); REDUCE of anything else (a class, a storage type, a
 *     string, ...) is refused naming it;
 *   - BINPERSID makes a PK_PERSID node holding the persistent id (torch: a storage reference);
 *   - BUILD is allowed on dicts only (the state, e.g. a state dict's _metadata, is dropped);
 *     NEWOBJ on torch.nn.parameter.Parameter only; APPEND(S) on lists, SETITEM(S) on dicts;
 *   - protocol 5 out-of-band buffers, protocol 0/1 text opcodes, INST/OBJ/NEWOBJ_EX, the
 *     extension registry and other opcodes are refused by name.
 * Limits (each refused with a message): PK_MAX_NODES values, PK_MAX_STACK stack entries,
 * PK_MAX_MEMO memo entries (a memo index may run at most PK_MEMO_GAP past the current memo),
 * PK_MAX_DEPTH levels of MARK or container nesting. Memory is O(input size); nothing is
 * recursive, so cyclic or deeply nested input is safe. */
#ifndef PNDM_PICKLE_H
#define PNDM_PICKLE_H

#include "pndm.h"
#include <stddef.h>
#include <stdint.h>

#define PK_MAX_NODES (1u << 22)
#define PK_MAX_STACK (1u << 22)
#define PK_MAX_MEMO (1u << 22)
#define PK_MEMO_GAP 65536u
#define PK_MAX_DEPTH 100

typedef enum {
    PK_NONE,
    PK_BOOL,
    PK_INT,    /* fits in int64 */
    PK_BIGINT, /* LONG1 beyond int64: v.s holds the little-endian two's-complement bytes */
    PK_FLOAT,
    PK_STR,   /* unicode (UTF-8 bytes, not validated) */
    PK_BYTES, /* SHORT_BINSTRING / BINSTRING / BINBYTES */
    PK_TUPLE,
    PK_LIST,
    PK_DICT, /* items: key, value, key, value, ... in insertion order */
    PK_SET,
    PK_GLOBAL, /* an allowed global: global */
    PK_CALL,   /* REDUCE / NEWOBJ of an allowed function: global; items[0] = the argument tuple */
    PK_PERSID  /* BINPERSID: items[0] = the persistent id */
} pk_kind;

/* The allowed globals. */
typedef enum {
    PKG_ORDERED_DICT,
    PKG_REBUILD_TENSOR_V2,
    PKG_REBUILD_TENSOR,
    PKG_REBUILD_PARAMETER,
    PKG_REBUILD_SPARSE, /* torch._utils._rebuild_sparse_tensor / _rebuild_sparse_csr_tensor */
    PKG_REBUILD_META,   /* torch._utils._rebuild_meta_tensor_no_storage */
    PKG_GET_LAYOUT,     /* torch.serialization._get_layout */
    PKG_PARAMETER,      /* torch.nn.parameter.Parameter (NEWOBJ) */
    PKG_SIZE,           /* torch.Size */
    PKG_TENSOR,         /* torch.Tensor (class, not callable here) */
    PKG_STORAGE,        /* torch.<X>Storage / torch.cuda.<X>Storage: pk_node.aux = pk_storage_types index */
    PKG_DTYPE,          /* torch.float32, ...: aux = pk_storage_types index of the same dtype */
    PKG_COUNT
} pk_global;

/* Storage classes and dtypes torch knows, with what pndm can load. */
typedef struct pk_storage_type {
    const char *storage; /* "torch.FloatStorage" */
    const char *dtype;   /* "torch.float32" */
    int elem_size;       /* bytes per element */
    int tt_dtype;        /* TT_F32 / TT_F16 / TT_BF16, or -1: not loadable */
} pk_storage_type;
extern const pk_storage_type pk_storage_types[];
extern const int pk_n_storage_types;

typedef struct pk_node {
    uint8_t kind;    /* pk_kind */
    uint8_t global;  /* PK_GLOBAL / PK_CALL: pk_global */
    uint16_t depth;  /* nesting depth (scalars 0) */
    uint16_t aux;    /* PKG_STORAGE / PKG_DTYPE: index into pk_storage_types */
    uint32_t n, cap; /* items */
    uint32_t *items; /* node ids */
    union {
        int64_t i; /* PK_BOOL, PK_INT */
        double f;
        struct {
            const uint8_t *p; /* into the input (not NUL-terminated) */
            size_t len;
        } s; /* PK_STR, PK_BYTES, PK_BIGINT */
    } v;
} pk_node;

typedef struct pk_doc {
    pk_node *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t root; /* the value STOP returned */
} pk_doc;

/* Run the pickle at buf[0..size) up to its STOP. *end (may be NULL): bytes consumed (for a file
 * holding several pickles back to back). `source` names the pickle in messages ("x.bin:
 * archive/data.pkl"). On failure *d is empty (pk_free is safe). */
pndm_status pk_parse(pk_doc *d, const void *buf, size_t size, const char *source, size_t *end, pndm_error *err);
void pk_free(pk_doc *d);

static inline const pk_node *pk_node_at(const pk_doc *d, uint32_t id) { return &d->nodes[id]; }
/* "an int", "a string 'abc'", "a call of torch._utils._rebuild_tensor_v2", ... for messages */
void pk_describe(const pk_doc *d, uint32_t id, char *buf, size_t size);
/* Dotted name of an allowed global ("collections.OrderedDict", "torch.FloatStorage", ...). */
const char *pk_global_name(const pk_node *n);
/* PK_STR / PK_BYTES equal to the C string s? */
int pk_str_is(const pk_node *n, const char *s);

#endif
