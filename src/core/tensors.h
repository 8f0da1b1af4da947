/* The tensor table: the one format-neutral description of a model's weights. Every weight reader
 * (io/safetensors.c, and any later format) fills one; the UNet binds against it by state-dict
 * name and never sees a file format.
 *
 *     tt_table t;
 *     tt_init(&t, "model.safetensors");           // the source names the file in messages
 *     tt_add(&t, "conv_in.weight", TT_F32, 4, shape, data, &err);   // data: little-endian, C order
 *     tt_own_mapping(&t, map, map_size);           // the table unmaps it in tt_free
 *     tt_finish(&t, &err);                         // sorts by name, refuses duplicate names
 *     const tt_tensor *w = tt_find(&t, "conv_in.weight");
 *     tt_free(&t);
 *
 * A tensor's data is contiguous (C order) and little-endian, possibly unaligned; it points into
 * memory the table owns (a read-only mapping, or a buffer a reader made, e.g. for a strided view)
 * or that the caller keeps alive (a memory buffer given to a reader). */
#ifndef PNDM_TENSORS_H
#define PNDM_TENSORS_H

#include "pndm.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { TT_F32 = 0, TT_F16 = 1, TT_BF16 = 2 } tt_dtype;

#define TT_MAX_DIMS 8

typedef struct tt_tensor {
    char *name; /* state-dict key, owned */
    tt_dtype dtype;
    int ndim;
    int64_t shape[TT_MAX_DIMS];
    size_t count;     /* product of shape */
    size_t nbytes;    /* count * dtype size */
    const void *data; /* count elements, C order, little-endian (may be unaligned) */
} tt_tensor;

typedef struct tt_region {
    void *addr;
    size_t size;
    int mapped; /* 1: munmap (pages may be dropped), 0: free */
} tt_region;

typedef struct tt_table {
    char *source; /* file path or buffer name, for messages */
    int n_tensors, cap_tensors;
    tt_tensor *tensors; /* sorted by name after tt_finish (tt_find is a binary search) */
    int n_meta;
    char **meta_keys; /* string metadata (safetensors __metadata__, ...) */
    char **meta_values;
    int n_regions;
    tt_region *regions; /* memory the table frees in tt_free */
} tt_table;

/* An empty table named `source` (copied). PNDM_ERR_NOMEM only. */
pndm_status tt_init(tt_table *t, const char *source, pndm_error *err);
void tt_free(tt_table *t);

/* Append a tensor (name copied; data referenced). The shape's element count and byte size must
 * not overflow (else PNDM_ERR_MODEL naming the tensor). Returns the new entry in *out (may be
 * NULL); the pointer is valid until the next tt_add. */
pndm_status tt_add(tt_table *t, const char *name, tt_dtype dtype, int ndim, const int64_t *shape, const void *data,
                   tt_tensor **out, pndm_error *err);
/* Add a string metadata entry (copied); a key given twice is refused (PNDM_ERR_MODEL). */
pndm_status tt_set_meta(tt_table *t, const char *key, const char *value, pndm_error *err);
/* Hand memory to the table: a read-only mapping (munmap'ed) or a malloc'ed buffer (freed). */
pndm_status tt_own_mapping(tt_table *t, void *addr, size_t size, pndm_error *err);
pndm_status tt_own_buffer(tt_table *t, void *buf, size_t size, pndm_error *err);
/* Sort by name; a name given twice is refused naming it (PNDM_ERR_MODEL). */
pndm_status tt_finish(tt_table *t, pndm_error *err);
/* Rename tensor `i` (before tt_finish). */
pndm_status tt_rename(tt_table *t, int i, const char *name, pndm_error *err);

const tt_tensor *tt_find(const tt_table *t, const char *name);
const char *tt_meta(const tt_table *t, const char *key);

const char *tt_dtype_name(tt_dtype d); /* "F32", "F16", "BF16" */
/* "[4, 3, 3, 3]" (ndim 0: "[]"), truncated to fit size bytes; for messages. */
void tt_format_shape(char *buf, size_t size, int ndim, const int64_t *shape);
size_t tt_dtype_size(tt_dtype d);

/* Tensor data as float32. F32 and 4-byte aligned: *out points at the data and *owned = 0;
 * otherwise a converted malloc'ed copy with *owned = 1. */
pndm_status tt_tensor_f32(const tt_table *t, const tt_tensor *x, const float **out, int *owned, pndm_error *err);

/* Every element of every tensor is finite? Else PNDM_ERR_MODEL naming the source, the tensor and
 * the first bad element. Releases each tensor's mapped pages after reading it. */
pndm_status tt_check_finite(const tt_table *t, pndm_error *err);
/* The same scan, and the table's content hash when weights_sha256 is not NULL (64 hex digits +
 * NUL): the weights' identity, independent of the file format, the file's tensor order and its
 * metadata. It is the SHA-256 of the text
 *     "pndm-weights-v1\n"
 *     then per tensor, in name order (bytewise): "<sha256 of its data> <dtype> [<d0>,<d1>,...] <len>:<name>\n"
 * where the data are the tensor's little-endian C-order bytes, dtype is tt_dtype_name(), len the
 * name's length in bytes (tools/pndm_format.py weights_sha256 computes the same). Tensors are
 * spread over n_threads threads (at most TT_SCAN_MAX_THREADS); the result and the error
 * reported (the first bad tensor in name order) do not depend on that. After tt_finish. */
#define TT_SCAN_MAX_THREADS 16
pndm_status tt_scan(const tt_table *t, int n_threads, char weights_sha256[65], pndm_error *err);
/* Hand back the mapped pages wholly inside [p, p + n) (a no-op outside the table's mappings); a
 * later read faults them in again from the file. */
void tt_drop_pages(const tt_table *t, const void *p, size_t n);

float tt_f16_to_f32(uint16_t h);
float tt_bf16_to_f32(uint16_t h);

#endif
