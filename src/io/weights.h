/* Weight files of any format pndm reads, into one tensor table (core/tensors.h):
 *   - wt_open: one file, the reader chosen by its first bytes (safetensors; a PyTorch .bin, zip
 *     or legacy), whatever its name says. A file that is neither says what it looks like
 *     ("not a safetensors file: it starts like a PNG image").
 *   - wt_open_index: sharded weights (diffusers' / transformers'
 *     *.safetensors.index.json or *.bin.index.json): every file the "weight_map" names, read
 *     with wt_open and merged into one table; each tensor the map lists must be in the file it
 *     names, and no tensor may appear in two shards.
 * Every file is mapped read-only; tensors are used in place wherever their layout allows. */
#ifndef PNDM_WEIGHTS_H
#define PNDM_WEIGHTS_H

#include "pndm.h"
#include "tensors.h"
#include <stddef.h>

/* mmap a regular file read-only (FIFOs and devices refused without blocking). *map is NULL
 * for an empty file. Messages name `path`. */
pndm_status wt_map_file(const char *path, void **map, size_t *size, pndm_error *err);

/* One weights file (its mapping is handed to the table). */
pndm_status wt_open(tt_table *t, const char *path, pndm_error *err);
/* The same from a buffer (not copied; must outlive t); `name` names it in messages. */
pndm_status wt_parse(tt_table *t, const void *buf, size_t size, const char *name, pndm_error *err);
/* A shard index; shard paths are taken relative to the index's folder (absolute paths and ".."
 * components are refused). root (may be NULL): a resolved folder every shard must resolve inside
 * (a Hub cache repo folder, layout.h). */
pndm_status wt_open_index(tt_table *t, const char *index_path, const char *root, pndm_error *err);

/* What a buffer looks like, for messages: "a PNG image", "a text file ('...')", "a zip
 * archive", ... or NULL when it matches no format pndm knows. */
const char *wt_describe(const void *buf, size_t size, char *scratch, size_t scratch_size);

#endif
