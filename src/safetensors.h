/* safetensors reader: validation in a fixed order, read-only mmap, f16/bf16 -> f32.
 *
 * Validation order (each failure: PNDM_ERR_MODEL, one message naming the file and the tensor):
 *   1. file size >= 8; header length N (u64 LE) with 8 + N <= file size and N <= 100 MiB
 *   2. header is well-formed JSON, an object
 *   3. for each entry (except "__metadata__", an object of string -> string):
 *      an object with "dtype" (string, one of F32, F16, BF16; others refused by name; known but
 *      unsupported like F64/I64 refused by name too), "shape" (array of 0..8 non-negative integers,
 *      product * dtype size without size_t overflow), "data_offsets" ([begin, end] integers,
 *      0 <= begin <= end <= data size, end - begin == product(shape) * dtype size)
 *   4. duplicate names refused; tensors sorted by begin offset must not overlap
 */
#ifndef PNDM_SAFETENSORS_H
#define PNDM_SAFETENSORS_H

#include "pndm.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t count;         /* product of shape */
    size_t nbytes;        /* count * dtype size */
    const void *data;     /* points into the mapping / buffer (may be unaligned) */
} st_tensor;

typedef struct st_file {
    char *source;         /* file path or buffer name, for messages */
    int n_tensors;
    st_tensor *tensors;   /* sorted by name (st_find is a binary search) */
    int n_meta;
    char **meta_keys;
    char **meta_values;
    /* ownership */
    void *map;            /* mmap'ed region (NULL for memory buffers) */
    size_t map_size;
} st_file;

/* mmap `path` read-only and parse it. On failure *f is left empty (safe to st_close). */
pndm_status st_open(st_file *f, const char *path, pndm_error *err);
/* Parse a buffer (not copied; must outlive f). `name` is used in messages. */
pndm_status st_parse(st_file *f, const void *buf, size_t size, const char *name, pndm_error *err);
void st_close(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
/* __metadata__ value, or NULL */
const char *st_meta(const st_file *f, const char *key);

/* Tensor data as float32. If the tensor is F32 and 4-byte aligned, *out points into the mapping
 * and *owned = 0; otherwise a converted malloc'ed copy is returned and *owned = 1. */
pndm_status st_tensor_f32(const st_file *f, const st_tensor *t, const float **out, int *owned, pndm_error *err);

/* Every element of every tensor is finite (no NaN or Inf)? Else PNDM_ERR_MODEL naming the file,
 * the tensor and the first bad element. Reads all tensor data once (a few ms per 100 MB). */
pndm_status st_check_finite(const st_file *f, pndm_error *err);
/* Hand back the mapped pages wholly inside [p, p + n) (no-op for memory buffers and ranges outside
 * the mapping); a later read faults them in again from the file. */
void st_drop_pages(const st_file *f, const void *p, size_t n);

float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);

#endif
