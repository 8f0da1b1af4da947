/* npz.h - internal side of the .npz writer (pndm_io.h has the API): the zip64 threshold, so that
 * tests can write a small archive in the zip64 layout that real archives use past 4 GiB. */
#ifndef PNDM_IO_NPZ_H
#define PNDM_IO_NPZ_H

#include "pndm_io.h"

/* ZIP32 fields hold values up to 0xFFFFFFFE; an archive whose member or central-directory offset
 * reaches zip64_at bytes is written with zip64 records (pndm_npz_create_u8 uses 0xFFFFFFFF). */
pndm_status npz_create_u8_ex(const char *path, const char *name, int ndim, const int64_t *shape, uint64_t zip64_at,
                             pndm_npz_writer **out, pndm_error *err);

#endif
