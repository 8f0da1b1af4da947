/* .npz writer: numpy.savez's format (numpy/lib/npyio.py savez -> _savez: a zip archive, one
 * member "<name>.npy" per array, ZIP_STORED) holding one uint8 array. The archive is laid out
 * in place in a temporary file of its final size, so rows can be written in any order by pwrite
 * and never need to be in memory together; commit computes the CRC-32 by reading the data back,
 * writes the zip headers (zip64 records when the archive reaches 4 GiB, as Python's zipfile
 * does with allowZip64), fsyncs and renames. Layout (PKWARE APPNOTE 6.3.x, sections 4.3.7,
 * 4.3.12, 4.3.14-4.3.16, 4.5.3):
 *
 *   local file header + "arr_0.npy" [+ zip64 extra: sizes]
 *   member data: .npy v1.0 header (padded to 64 bytes, as numpy.lib.format) + rows
 *   central directory header + "arr_0.npy" [+ zip64 extra: sizes]
 *   [zip64 end of central directory record + zip64 locator]
 *   end of central directory record
 *
 * The timestamp is fixed (1980-01-01 00:00, the DOS epoch) so that the same array gives the same
 * bytes. */
#define _POSIX_C_SOURCE 200809L
#include "npz.h"
#include "core.h"
#include "zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZIP_LFH_SIG 0x04034b50u
#define ZIP_CDH_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOC_SIG 0x07064b50u
#define ZIP_DOS_DATE 0x0021u /* 1980-01-01 */
#define ZIP_LFH_LEN 30u
#define ZIP_CDH_LEN 46u
#define ZIP_EOCD_LEN 22u
#define ZIP64_EOCD_LEN 56u
#define ZIP64_LOC_LEN 20u
#define ZIP64_EXTRA_LEN 20u /* tag, size, uncompressed and compressed size */

struct pndm_npz_writer {
    int fd;
    char *path, *tmp;
    char member[80]; /* "<name>.npy" */
    size_t member_len;
    int zip64;
    uint64_t lfh_len;  /* local header + name + extra */
    uint64_t npy_len;  /* .npy header */
    uint64_t data_len; /* .npy header + rows: the member's size */
    uint64_t rows, row_bytes;
    uint8_t *have; /* one bit per row */
    uint64_t rows_have;
    uint64_t total_len; /* whole archive */
};

static void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}
static void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static pndm_status io_error(pndm_error *err, const char *path, const char *what, int e) {
    return core_fail(err, PNDM_ERR_IO, "%s: %s: %s%s", path, what, strerror(e),
                     e == ENOSPC || e == EDQUOT || e == EFBIG ? " (disk full)" : "");
}

static int pwrite_all(int fd, const void *data, size_t n, uint64_t off) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

void pndm_npz_abort(pndm_npz_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->have);
    free(w);
}

pndm_status npz_create_u8_ex(const char *path, const char *name, int ndim, const int64_t *shape, uint64_t zip64_at,
                             pndm_npz_writer **out, pndm_error *err) {
    *out = NULL;
    if (!path || !*path) return core_fail(err, PNDM_ERR_USAGE, "npz: empty output path");
    if (!name || !*name || strlen(name) > 64 || strchr(name, '/'))
        return core_fail(err, PNDM_ERR_USAGE, "%s: bad array name", path);
    if (ndim < 1 || ndim > 8) return core_fail(err, PNDM_ERR_USAGE, "%s: bad ndim %d", path, ndim);
    /* the .npy header (numpy.lib.format.write_array_header_1_0, padded to a multiple of 64) */
    char dict[320];
    int pos = snprintf(dict, sizeof dict, "{'descr': '|u1', 'fortran_order': False, 'shape': (");
    size_t row_bytes = 1, rows = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (i > 0 && !core_mul_size(row_bytes, (size_t)shape[i], &row_bytes)))
            return core_fail(err, PNDM_ERR_USAGE, "%s: bad shape", path);
        if (i == 0) rows = (size_t)shape[0];
        pos += snprintf(dict + pos, sizeof dict - (size_t)pos, "%lld%s", (long long)shape[i],
                        (ndim == 1 || i < ndim - 1) ? ", " : "");
    }
    pos += snprintf(dict + pos, sizeof dict - (size_t)pos, "), }");
    size_t npy_len = ((10 + (size_t)pos + 1 + 63) / 64) * 64, bytes;
    if (!core_mul_size(rows, row_bytes, &bytes) || bytes > UINT64_MAX / 2)
        return core_fail(err, PNDM_ERR_USAGE, "%s: array too large", path);

    pndm_npz_writer *w = calloc(1, sizeof *w);
    if (!w) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->member_len = (size_t)snprintf(w->member, sizeof w->member, "%s.npy", name);
    w->rows = rows;
    w->row_bytes = row_bytes;
    w->npy_len = npy_len;
    w->data_len = (uint64_t)npy_len + (uint64_t)bytes;
    uint64_t big = ZIP_LFH_LEN + w->member_len + ZIP64_EXTRA_LEN + w->data_len + ZIP_CDH_LEN + w->member_len +
        ZIP64_EXTRA_LEN + ZIP64_EOCD_LEN + ZIP64_LOC_LEN + ZIP_EOCD_LEN;
    w->zip64 = big >= zip64_at;
    w->lfh_len = ZIP_LFH_LEN + w->member_len + (w->zip64 ? ZIP64_EXTRA_LEN : 0);
    w->total_len = w->lfh_len + w->data_len + ZIP_CDH_LEN + w->member_len + ZIP_EOCD_LEN +
        (w->zip64 ? ZIP64_EXTRA_LEN + ZIP64_EOCD_LEN + ZIP64_LOC_LEN : 0);
    size_t plen = strlen(path);
    w->path = malloc(plen + 1);
    w->tmp = malloc(plen + 32);
    w->have = calloc(rows / 8 + 1, 1);
    if (!w->path || !w->tmp || !w->have) {
        free(w->tmp);
        w->tmp = NULL;
        pndm_npz_abort(w);
        return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(w->path, path, plen + 1);
    snprintf(w->tmp, plen + 32, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        pndm_status s = io_error(err, path, "cannot create file", errno);
        free(w->tmp);
        w->tmp = NULL;
        pndm_npz_abort(w);
        return s;
    }
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(w->fd, 0666 & ~um);
    /* reserve the whole archive now: a full disk is reported here, not after hours of work */
    int e = posix_fallocate(w->fd, 0, (off_t)w->total_len);
    if (e == EOPNOTSUPP || e == EINVAL) e = ftruncate(w->fd, (off_t)w->total_len) ? errno : 0;
    if (e) {
        pndm_status s = io_error(err, path, "cannot reserve space", e);
        pndm_npz_abort(w);
        return s;
    }
    /* the .npy header now; the zip headers at commit, when the CRC is known */
    uint8_t hdr[512];
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    put16(hdr + 8, (uint32_t)(npy_len - 10));
    memcpy(hdr + 10, dict, (size_t)pos);
    memset(hdr + 10 + pos, ' ', npy_len - 10 - (size_t)pos - 1);
    hdr[npy_len - 1] = '\n';
    if (pwrite_all(w->fd, hdr, npy_len, w->lfh_len)) {
        pndm_status s = io_error(err, path, "write failed", errno);
        pndm_npz_abort(w);
        return s;
    }
    *out = w;
    return PNDM_OK;
}

pndm_status pndm_npz_create_u8(const char *path, const char *name, int ndim, const int64_t *shape,
                               pndm_npz_writer **out, pndm_error *err) {
    return npz_create_u8_ex(path, name, ndim, shape, 0xFFFFFFFFu, out, err);
}

pndm_status pndm_npz_put_rows(pndm_npz_writer *w, int64_t first_row, int64_t n_rows, const uint8_t *data,
                              pndm_error *err) {
    if (!w || first_row < 0 || n_rows < 0 || (uint64_t)first_row > w->rows ||
        (uint64_t)n_rows > w->rows - (uint64_t)first_row)
        return core_fail(err, PNDM_ERR_USAGE, "%s: rows %lld..%lld outside the array's %llu rows", w ? w->path : "npz",
                         (long long)first_row, (long long)(first_row + n_rows - 1),
                         w ? (unsigned long long)w->rows : 0ULL);
    uint64_t off = w->lfh_len + w->npy_len + (uint64_t)first_row * w->row_bytes;
    if (pwrite_all(w->fd, data, (size_t)((uint64_t)n_rows * w->row_bytes), off))
        return io_error(err, w->path, "write failed", errno);
    for (uint64_t r = (uint64_t)first_row; r < (uint64_t)(first_row + n_rows); r++) {
        uint8_t bit = (uint8_t)(1u << (r & 7));
        if (!(w->have[r >> 3] & bit)) w->rows_have++;
        w->have[r >> 3] |= bit;
    }
    return PNDM_OK;
}

pndm_status pndm_npz_commit(pndm_npz_writer *w, pndm_error *err) {
    if (!w) return core_fail(err, PNDM_ERR_USAGE, "pndm_npz_commit: NULL writer");
    pndm_status s = PNDM_OK;
    if (w->rows_have != w->rows) {
        uint64_t r = 0;
        while (r < w->rows && (w->have[r >> 3] >> (r & 7) & 1)) r++;
        s = core_fail(err, PNDM_ERR_INTERNAL, "%s: %llu of %llu rows written (row %llu missing)", w->path,
                      (unsigned long long)w->rows_have, (unsigned long long)w->rows, (unsigned long long)r);
        pndm_npz_abort(w);
        return s;
    }
    /* CRC-32 of the member as it is on disk */
    uint32_t crc = 0;
    size_t bsize = 1u << 20;
    uint8_t *buf = malloc(bsize);
    if (!buf) {
        pndm_npz_abort(w);
        return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", w->path);
    }
    for (uint64_t done = 0; done < w->data_len;) {
        size_t want = (size_t)(w->data_len - done < bsize ? w->data_len - done : bsize);
        ssize_t got = pread(w->fd, buf, want, (off_t)(w->lfh_len + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            free(buf);
            s = io_error(err, w->path, "cannot read back", got < 0 ? errno : EIO);
            pndm_npz_abort(w);
            return s;
        }
        crc = zip_crc32(crc, buf, (size_t)got);
        done += (uint64_t)got;
    }
    free(buf);

    const uint32_t ver = w->zip64 ? 45 : 20;
    const uint32_t size32 = w->zip64 ? 0xFFFFFFFFu : (uint32_t)w->data_len;
    uint8_t h[ZIP_CDH_LEN + 80 + ZIP64_EXTRA_LEN + ZIP64_EOCD_LEN + ZIP64_LOC_LEN + ZIP_EOCD_LEN];
    uint8_t *p = h;
    /* local file header (4.3.7) */
    put32(p, ZIP_LFH_SIG);
    put16(p + 4, ver);
    put16(p + 6, 0);  /* flags */
    put16(p + 8, 0);  /* stored */
    put16(p + 10, 0); /* 00:00 */
    put16(p + 12, ZIP_DOS_DATE);
    put32(p + 14, (uint32_t)crc);
    put32(p + 18, size32);
    put32(p + 22, size32);
    put16(p + 26, (uint32_t)w->member_len);
    put16(p + 28, w->zip64 ? ZIP64_EXTRA_LEN : 0);
    memcpy(p + 30, w->member, w->member_len);
    p += 30 + w->member_len;
    if (w->zip64) { /* zip64 extended information (4.5.3): uncompressed, then compressed size */
        put16(p, 0x0001);
        put16(p + 2, 16);
        put64(p + 4, w->data_len);
        put64(p + 12, w->data_len);
        p += ZIP64_EXTRA_LEN;
    }
    if (pwrite_all(w->fd, h, (size_t)(p - h), 0)) {
        s = io_error(err, w->path, "write failed", errno);
        pndm_npz_abort(w);
        return s;
    }
    /* central directory (4.3.12) */
    const uint64_t cd_off = w->lfh_len + w->data_len;
    p = h;
    put32(p, ZIP_CDH_SIG);
    put16(p + 4, (3u << 8) | ver); /* made by: UNIX */
    put16(p + 6, ver);
    put16(p + 8, 0);
    put16(p + 10, 0);
    put16(p + 12, 0);
    put16(p + 14, ZIP_DOS_DATE);
    put32(p + 16, (uint32_t)crc);
    put32(p + 20, size32);
    put32(p + 24, size32);
    put16(p + 28, (uint32_t)w->member_len);
    put16(p + 30, w->zip64 ? ZIP64_EXTRA_LEN : 0);
    put16(p + 32, 0);              /* comment */
    put16(p + 34, 0);              /* disk */
    put16(p + 36, 0);              /* internal attributes */
    put32(p + 38, 0100644u << 16); /* external: a regular file, rw-r--r-- */
    put32(p + 42, 0);              /* local header at offset 0 */
    memcpy(p + 46, w->member, w->member_len);
    p += 46 + w->member_len;
    if (w->zip64) {
        put16(p, 0x0001);
        put16(p + 2, 16);
        put64(p + 4, w->data_len);
        put64(p + 12, w->data_len);
        p += ZIP64_EXTRA_LEN;
    }
    const uint64_t cd_len = (uint64_t)(p - h);
    if (w->zip64) {
        /* zip64 end of central directory record (4.3.14) and locator (4.3.15) */
        const uint64_t z_off = cd_off + cd_len;
        put32(p, ZIP64_EOCD_SIG);
        put64(p + 4, ZIP64_EOCD_LEN - 12);
        put16(p + 12, (3u << 8) | 45);
        put16(p + 14, 45);
        put32(p + 16, 0);
        put32(p + 20, 0);
        put64(p + 24, 1);
        put64(p + 32, 1);
        put64(p + 40, cd_len);
        put64(p + 48, cd_off);
        p += ZIP64_EOCD_LEN;
        put32(p, ZIP64_LOC_SIG);
        put32(p + 4, 0);
        put64(p + 8, z_off);
        put32(p + 16, 1);
        p += ZIP64_LOC_LEN;
    }
    /* end of central directory record (4.3.16) */
    put32(p, ZIP_EOCD_SIG);
    put16(p + 4, 0);
    put16(p + 6, 0);
    put16(p + 8, 1);
    put16(p + 10, 1);
    put32(p + 12, (uint32_t)cd_len);
    put32(p + 16, w->zip64 ? 0xFFFFFFFFu : (uint32_t)cd_off);
    put16(p + 20, 0);
    p += ZIP_EOCD_LEN;
    CORE_ASSERT(cd_off + (uint64_t)(p - h) == w->total_len);
    if (pwrite_all(w->fd, h, (size_t)(p - h), cd_off)) {
        s = io_error(err, w->path, "write failed", errno);
        pndm_npz_abort(w);
        return s;
    }
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS) {
        s = io_error(err, w->path, "write failed", errno);
        pndm_npz_abort(w);
        return s;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        s = io_error(err, w->path, "write failed", errno);
        pndm_npz_abort(w);
        return s;
    }
    if (rename(w->tmp, w->path) != 0) {
        s = io_error(err, w->path, "cannot rename temporary file", errno);
        pndm_npz_abort(w);
        return s;
    }
    free(w->tmp);
    w->tmp = NULL;
    pndm_npz_abort(w); /* frees the rest */
    return PNDM_OK;
}
