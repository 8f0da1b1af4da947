/* pndm_io.h — the file formats of pndm: whole-file reads, atomic writes, .npy arrays and PNG
 * images with text chunks. Every writer also writes to memory, so it can be tested without files.
 * Same conventions as pndm.h (status + caller-owned pndm_error).
 *
 *     void *buf; size_t n; pndm_error err;
 *     if (pndm_png_encode(pixels, w, h, 3, text, n_text, &buf, &n, &err) == PNDM_OK)
 *         pndm_write_file_atomic("out.png", buf, n, &err), free(buf);
 */
#ifndef PNDM_IO_H
#define PNDM_IO_H

#include "pndm.h"

#ifdef __cplusplus
extern "C" {
#endif
/* Everything declared here is the library's interface: visible from libpndm.so, which is built
 * with hidden visibility for all else (internal names never leak to a program or an FFI). */
#if defined(__GNUC__) && !defined(PNDM_NO_VISIBILITY)
#pragma GCC visibility push(default)
#endif

/* ---------------------------------------------------------------------------------------- */
/* Files. Writers write to memory; pndm_write_file_atomic puts bytes on disk under a temporary */
/* name in the same directory and renames it, so no partial file is ever visible.             */

/* What may be at `path`: nothing (the file is created), a regular file (replaced), or a symbolic
 * link to a regular file (its target is replaced and the link stays). Anything else, a
 * directory, FIFO, device or socket, or a link to one, or a dangling link, is refused with
 * PNDM_ERR_IO and never renamed over; so is a missing or unwritable directory. */
pndm_status pndm_write_file_atomic(const char *path, const void *data, size_t size, pndm_error *err);
/* The same with flags: PNDM_WRITE_NO_REPLACE refuses an existing file (PNDM_ERR_IO "already
 * exists"), also one that appears while writing (the file is put in place with link(), which
 * never replaces). */
#define PNDM_WRITE_NO_REPLACE 1u
pndm_status pndm_write_file_ex(const char *path, const void *data, size_t size, unsigned flags, pndm_error *err);

/* Where a write to `path` would go, checked as the writer checks it (same messages), without
 * writing: for refusing bad or colliding outputs before a long computation. */
typedef struct pndm_output_target {
    char path[4096];           /* the file written: path itself, or a symbolic link's target */
    const char *name;          /* its file name (into path) */
    int exists;                /* a regular file is there now */
    int via_symlink;           /* path is a symbolic link */
    uint64_t dir_dev, dir_ino; /* the directory it is in */
    uint64_t dev, ino;         /* the existing file (exists only) */
} pndm_output_target;
pndm_status pndm_output_resolve(const char *path, pndm_output_target *t, pndm_error *err);
/* Two resolved outputs are the same file: the same name in the same directory (however the
 * paths spell it: ./, .., symbolic links), or the same existing file (hard links). */
int pndm_output_same(const pndm_output_target *a, const pndm_output_target *b);
/* Read a whole file (malloc'ed, NUL-terminated beyond size). max_size 0 = no limit. */
pndm_status pndm_read_file(const char *path, size_t max_size, char **data, size_t *size, pndm_error *err);

typedef enum { PNDM_NPY_F32, PNDM_NPY_F64, PNDM_NPY_I64, PNDM_NPY_I32, PNDM_NPY_U8, PNDM_NPY_U32 } pndm_npy_dtype;
typedef struct pndm_npy {
    pndm_npy_dtype dtype;
    int ndim;
    int64_t shape[8];
    size_t count; /* product of shape */
    void *data;   /* malloc'ed, native little-endian, C order */
} pndm_npy;
/* Parse .npy (format 1.0/2.0/3.0, little-endian or byte-swapped, C or Fortran order -> C). */
pndm_status pndm_npy_parse(const void *buf, size_t size, const char *source, pndm_npy *out, pndm_error *err);
pndm_status pndm_npy_load(const char *path, pndm_npy *out, pndm_error *err);
void pndm_npy_free(pndm_npy *a);
/* Convert any numeric array to a malloc'ed float32 copy. */
pndm_status pndm_npy_to_f32(const pndm_npy *a, float **out, pndm_error *err);
/* Serialize float32 data of the given shape into a malloc'ed .npy buffer. */
pndm_status pndm_npy_encode_f32(const float *data, int ndim, const int64_t *shape, void **out, size_t *out_size,
                                pndm_error *err);
/* encode + pndm_write_file_atomic */
pndm_status pndm_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape, pndm_error *err);

/* PNG: 8-bit gray (channels 1) or RGB (3), rows top to bottom, interleaved channels.
 * text: n_text key/value pairs stored as tEXt/iTXt chunks (generation parameters). */
typedef struct pndm_png_text {
    const char *key;
    const char *value;
} pndm_png_text;
pndm_status pndm_png_encode(const uint8_t *pixels, int width, int height, int channels, const pndm_png_text *text,
                            int n_text, void **out, size_t *out_size, pndm_error *err);
/* Read the text chunks back: calls fn(key, value, user) for each. */
typedef void (*pndm_png_text_fn)(const char *key, const char *value, void *user);
pndm_status pndm_png_read_text(const void *buf, size_t size, const char *source, pndm_png_text_fn fn, void *user,
                               pndm_error *err);
/* Decode an 8-bit gray/RGB PNG (golden comparisons, --info). *pixels malloc'ed. */
pndm_status pndm_png_decode(const void *buf, size_t size, const char *source, uint8_t **pixels, int *width, int *height,
                            int *channels, pndm_error *err);

/* .npz with one uint8 array, numpy.savez's format (a zip archive of stored .npy members, zip64
 * past 4 GiB), written without holding the array in memory: create reserves the whole file under
 * a temporary name in the same directory, rows (shape[0] of them, each shape[1]*...*shape[ndim-1]
 * bytes) may then be put in any order, and commit (every row put) adds the CRC-32 and the zip
 * directory, fsyncs and renames; abort (or any failed call of commit) removes the temporary file.
 * np.load(path)[name] reads the array back. A fixed timestamp: the same array gives the same bytes. */
typedef struct pndm_npz_writer pndm_npz_writer;
pndm_status pndm_npz_create_u8(const char *path, const char *name, int ndim, const int64_t *shape,
                               pndm_npz_writer **out, pndm_error *err);
pndm_status pndm_npz_put_rows(pndm_npz_writer *w, int64_t first_row, int64_t n_rows, const uint8_t *data,
                              pndm_error *err);
pndm_status pndm_npz_commit(pndm_npz_writer *w, pndm_error *err); /* frees w, success or not */
void pndm_npz_abort(pndm_npz_writer *w);                          /* NULL is fine */

/* SHA-256 of a buffer as 64 lowercase hex digits + NUL (content hashes of outputs and weights). */
void pndm_sha256_hex(const void *data, size_t size, char hex[65]);

#if defined(__GNUC__) && !defined(PNDM_NO_VISIBILITY)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* PNDM_IO_H */
