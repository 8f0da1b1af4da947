/* PyTorch checkpoint reader (torch.save files, e.g. diffusion_pytorch_model.bin): fills a tensor
 * table (core/tensors.h) from the file's bytes, never running anything the file says.
 *
 * Formats:
 *   - zip (torch >= 1.6): <folder>/data.pkl (a state dict pickled with persistent ids
 *     ('storage', torch.<T>Storage, key, location, numel)), <folder>/data/<key> (the storages'
 *     raw little-endian bytes, stored uncompressed), <folder>/version (1..10) and, from torch
 *     2.1, <folder>/byteorder ("little"). Read with zip.c (CRC-32 of every record used is
 *     checked, as torch's reader does) and pickle.c.
 *   - legacy (torch < 1.6, torch.save(..., _use_new_zipfile_serialization=False)): five pickles
 *     back to back (magic number 0x1950a86a20f9469cfc6c, protocol version 1001, system info with
 *     little_endian, the state dict with persistent ids ('storage', type, key, location, numel,
 *     view), the list of storage keys), then each storage as an int64 element count and its
 *     bytes, in that list's order. torch 1.13 loads these with weights_only=True too.
 *
 * The pickled object must be a dict (OrderedDict) of name -> tensor, each built by
 * torch._utils._rebuild_tensor_v2 / _rebuild_tensor (optionally wrapped in _rebuild_parameter
 * or a Parameter) from a storage, a storage offset, a size and a stride. Checks (PNDM_ERR_MODEL,
 * naming the file and the tensor): keys are strings; dtype float32/float16/bfloat16 (others
 * refused by name); at most TT_MAX_DIMS dimensions; sizes and strides non-negative integers
 * below 2^62; the view (offset + sum((size_i - 1) * stride_i)) inside its storage; no more
 * elements than the storage holds; a storage key used twice has the same type and size; the
 * storage's record exists with exactly numel * element size bytes.
 * Tensors whose view is contiguous point into the buffer (used in place, as safetensors are);
 * strided views are gathered into a buffer the table owns. */
#ifndef PNDM_TORCHBIN_H
#define PNDM_TORCHBIN_H

#include "pndm.h"
#include "tensors.h"
#include <stddef.h>

/* Parse buf (not copied; must outlive t). `name` names the file in messages. verify_crc: check
 * the CRC-32 of the zip records used (1 for files; the fuzz target also runs 0). On failure *t
 * is left empty (safe to tt_free). */
pndm_status pt_parse(tt_table *t, const void *buf, size_t size, const char *name, int verify_crc, pndm_error *err);

/* The first bytes are those of a torch zip archive (zip magic) or of a legacy torch file
 * (pickle protocol 2 + torch's magic number). */
int pt_looks_like(const void *buf, size_t size);
int pt_looks_like_legacy(const void *buf, size_t size);

#endif
