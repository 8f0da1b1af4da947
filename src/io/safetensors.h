/* safetensors reader: fills a tensor table (core/tensors.h) from a file (read-only mmap) or a
 * buffer, validating in a fixed order.
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
#include "tensors.h"
#include <stddef.h>

/* mmap `path` read-only and parse it into *t (which then owns the mapping). On failure *t is
 * left empty (safe to tt_free). */
pndm_status st_open(tt_table *t, const char *path, pndm_error *err);
/* Parse a buffer (not copied; must outlive t). `name` is used in messages. */
pndm_status st_parse(tt_table *t, const void *buf, size_t size, const char *name, pndm_error *err);

#endif
