// ctest-label: unit;e2e
/* The .npz writer read back by an independent reader written from numpy's and PKWARE's rules
 * (numpy.lib.npyio.NpzFile opens the zip with Python's zipfile and reads "<name>.npy" through
 * numpy.lib.format): end-of-central-directory record, zip64 locator and record when present,
 * the one central directory entry (stored, CRC-32, sizes, zip64 extra), the local header, the
 * member's CRC computed here bit by bit, and its .npy header (v1.0, '|u1', C order, shape,
 * 64-byte alignment) parsed by pndm_npy_parse. Also: rows in any order give the same bytes, a
 * missing row or a bad range is refused and leaves no file behind, zip64 layout (forced small);
 * and the .npz of a pndm-gen sample set: arr_0 (N, H, W, C) row i = the pixels of PNG i. */
#define _GNU_SOURCE /* memmem */
#include "harness.h"
#include "npz.h"
#include "pndm_io.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* CRC-32 (ISO-HDLC, the zip one), bit by bit: independent of zlib's table code. */
static uint32_t crc32_bits(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

/* Reads `path` as numpy.load would and returns the array named `name` (or fails a CHECK). */
static int read_npz(const char *path, const char *name, int want_zip64, pndm_npy *arr) {
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(path, 0, &buf, &size, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return 0;
    }
    const uint8_t *b = (const uint8_t *)buf;
    int ok = 0;
    char member[80];
    snprintf(member, sizeof member, "%s.npy", name);
    size_t mlen = strlen(member);
    do {
        /* end of central directory: no comment, so the last 22 bytes */
        if (size < 22 || rd32(b + size - 22) != 0x06054b50u) break;
        const uint8_t *e = b + size - 22;
        CHECK(rd16(e + 4) == 0 && rd16(e + 6) == 0 && rd16(e + 8) == 1 && rd16(e + 10) == 1 && rd16(e + 20) == 0);
        uint64_t cd_size = rd32(e + 12), cd_off = rd32(e + 16);
        int zip64 = cd_off == 0xFFFFFFFFu;
        CHECK(zip64 == want_zip64);
        if (zip64) {
            if (size < 22 + 20 + 56) break;
            const uint8_t *loc = e - 20;
            CHECK(rd32(loc) == 0x07064b50u && rd32(loc + 4) == 0 && rd32(loc + 16) == 1);
            uint64_t z = rd64(loc + 8);
            if (z + 56 != (uint64_t)(loc - b) || rd32(b + z) != 0x06064b50u) break;
            CHECK(rd64(b + z + 4) == 44 && rd64(b + z + 24) == 1 && rd64(b + z + 32) == 1);
            cd_size = rd64(b + z + 40);
            cd_off = rd64(b + z + 48);
            CHECK(cd_off + cd_size == z); /* Python's zipfile: directory right before the records */
        } else {
            CHECK(cd_off + cd_size == size - 22);
        }
        if (cd_off + 46 > size) break;
        /* the central directory entry */
        const uint8_t *c = b + cd_off;
        if (rd32(c) != 0x02014b50u) break;
        uint32_t method = rd16(c + 10), crc = rd32(c + 16);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24), lho = rd32(c + 42);
        size_t nlen = rd16(c + 28), xlen = rd16(c + 30);
        CHECK(method == 0); /* ZIP_STORED, as numpy.savez */
        CHECK(rd16(c + 6) <= 63);
        CHECK(rd16(c + 8) == 0 || rd16(c + 8) == 0x800);
        CHECK(nlen == mlen && !memcmp(c + 46, member, mlen));
        CHECK(46 + nlen + xlen + rd16(c + 32) == cd_size);
        if (usize == 0xFFFFFFFFu || csize == 0xFFFFFFFFu) { /* zip64 extra: only the saturated fields */
            const uint8_t *x = c + 46 + nlen;
            CHECK(xlen >= 4 && rd16(x) == 1);
            size_t at = 4;
            if (usize == 0xFFFFFFFFu) usize = rd64(x + at), at += 8;
            if (csize == 0xFFFFFFFFu) csize = rd64(x + at), at += 8;
            CHECK(rd16(x + 2) == at - 4);
        }
        CHECK(csize == usize);
        /* the local header */
        if (lho + 30 > size) break;
        const uint8_t *l = b + lho;
        if (rd32(l) != 0x04034b50u) break;
        CHECK(rd16(l + 8) == 0);
        CHECK(rd16(l + 26) == mlen && !memcmp(l + 30, member, mlen));
        uint64_t data_off = lho + 30 + rd16(l + 26) + rd16(l + 28);
        if (data_off + usize > cd_off) break;
        CHECK(crc32_bits(b + data_off, (size_t)usize) == crc);
        if (rd32(l + 14) != 0) CHECK(rd32(l + 14) == crc);
        /* the .npy member */
        const uint8_t *d = b + data_off;
        CHECK(usize >= 10 && !memcmp(d, "\x93NUMPY\x01\x00", 8));
        size_t hl = 10 + rd16(d + 8);
        CHECK(hl % 64 == 0 && d[hl - 1] == '\n');
        CHECK(memmem(d, hl, "'descr': '|u1'", 14) != NULL);
        CHECK(memmem(d, hl, "'fortran_order': False", 22) != NULL);
        if (pndm_npy_parse(d, (size_t)usize, path, arr, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            break;
        }
        ok = 1;
    } while (0);
    CHECK_MSG(ok, "%s: not a readable .npz", path);
    free(buf);
    return ok;
}

static int no_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    int clean = 1;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) clean = 0;
    if (d) closedir(d);
    return clean;
}

/* Writes an array of the given shape (row r filled with bytes r*31+k) row by row in the order
 * given by `perm` (NULL: in order), then checks it reads back exactly. */
static void roundtrip(const char *dir, const char *file, int ndim, const int64_t *shape, uint64_t zip64_at,
                      const int *perm, int expect_zip64, char *bytes_out, size_t *bytes_size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    pndm_error err;
    pndm_npz_writer *w = NULL;
    CHECK_MSG(npz_create_u8_ex(path, "arr_0", ndim, shape, zip64_at, &w, &err) == PNDM_OK, "%s", err.msg);
    if (!w) return;
    size_t rb = 1;
    for (int i = 1; i < ndim; i++) rb *= (size_t)shape[i];
    int64_t rows = shape[0];
    uint8_t *want = malloc((size_t)rows * rb + 1);
    for (int64_t r = 0; r < rows; r++)
        for (size_t k = 0; k < rb; k++) want[(size_t)r * rb + k] = (uint8_t)(r * 31 + (int64_t)k);
    for (int64_t i = 0; i < rows; i++) {
        int64_t r = perm ? perm[i] : i;
        CHECK(pndm_npz_put_rows(w, r, 1, want + (size_t)r * rb, &err) == PNDM_OK);
    }
    CHECK(access(path, F_OK) != 0); /* nothing under the final name before commit */
    CHECK_MSG(pndm_npz_commit(w, &err) == PNDM_OK, "%s", err.msg);
    pndm_npy a;
    if (read_npz(path, "arr_0", expect_zip64, &a)) {
        CHECK(a.dtype == PNDM_NPY_U8 && a.ndim == ndim);
        for (int i = 0; i < ndim && i < a.ndim; i++) CHECK(a.shape[i] == shape[i]);
        CHECK(a.count == (size_t)rows * rb);
        CHECK(a.count == 0 || memcmp(a.data, want, a.count) == 0);
        pndm_npy_free(&a);
    }
    if (bytes_out) {
        char *buf;
        size_t n;
        if (pndm_read_file(path, 0, &buf, &n, &err) == PNDM_OK) {
            memcpy(bytes_out, buf, n < *bytes_size ? n : *bytes_size);
            *bytes_size = n;
            free(buf);
        }
    }
    free(want);
}

/* pndm-gen -N 9 -o DIR/%d.png --npz: every row of arr_0 is the image of the PNG with its index. */
static void cli_set(const char *dir) {
    char cmd[2048], path[600];
    snprintf(cmd, sizeof cmd,
             "'%s/pndm-gen' -q -m '%s/hostile/tiny.safetensors' -n 4 -N 9 -b 4 -s 5 --start-index 2 "
             "-o '%s/set_%%d.png' --npz '%s/set.npz' >/dev/null",
             PNDM_BIN_DIR, PNDM_TEST_DATA, dir, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/set.npz", dir);
    pndm_npy a;
    if (!read_npz(path, "arr_0", 0, &a)) return;
    CHECK(a.dtype == PNDM_NPY_U8 && a.ndim == 4 && a.shape[0] == 9);
    for (int i = 0; i < 9 && a.ndim == 4; i++) {
        char *buf;
        size_t size;
        pndm_error err;
        uint8_t *px = NULL;
        int w = 0, h = 0, c = 0;
        snprintf(path, sizeof path, "%s/set_%d.png", dir, i + 2);
        if (pndm_read_file(path, 0, &buf, &size, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        CHECK(pndm_png_decode(buf, size, path, &px, &w, &h, &c, &err) == PNDM_OK);
        CHECK(h == a.shape[1] && w == a.shape[2] && c == a.shape[3]);
        size_t row = (size_t)(a.shape[1] * a.shape[2] * a.shape[3]);
        CHECK_MSG(px && memcmp(px, (uint8_t *)a.data + (size_t)i * row, row) == 0, "row %d != %s", i, path);
        free(px);
        free(buf);
        unlink(path);
    }
    pndm_npy_free(&a);
    snprintf(path, sizeof path, "%s/set.npz", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/set_manifest.2-10.jsonl", dir); /* --start-index 2: its own manifest */
    CHECK(access(path, F_OK) == 0);
    unlink(path);
}

int main(void) {
    char dir[] = "/tmp/pndm_test_npz.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    static char a1[1 << 16], a2[1 << 16];
    size_t n1 = sizeof a1, n2 = sizeof a2;

    /* an image set: (N, H, W, C) = (5, 3, 4, 3), rows in order and shuffled: same bytes */
    const int64_t s4[4] = {5, 3, 4, 3};
    const int perm[5] = {3, 0, 4, 1, 2};
    roundtrip(dir, "a.npz", 4, s4, 0xFFFFFFFFu, NULL, 0, a1, &n1);
    roundtrip(dir, "b.npz", 4, s4, 0xFFFFFFFFu, perm, 0, a2, &n2);
    CHECK(n1 == n2 && n1 < sizeof a1 && memcmp(a1, a2, n1) == 0);
    /* gray images (N, H, W, 1), a 1-D array, an empty one */
    const int64_t g4[4] = {7, 2, 2, 1}, v1[1] = {9}, e4[4] = {0, 28, 28, 1};
    roundtrip(dir, "g.npz", 4, g4, 0xFFFFFFFFu, NULL, 0, NULL, NULL);
    roundtrip(dir, "v.npz", 1, v1, 0xFFFFFFFFu, NULL, 0, NULL, NULL);
    roundtrip(dir, "e.npz", 4, e4, 0xFFFFFFFFu, NULL, 0, NULL, NULL);
    /* the zip64 layout (what an archive past 4 GiB gets), forced on a small one */
    roundtrip(dir, "z.npz", 4, s4, 0, perm, 1, NULL, NULL);
    roundtrip(dir, "z2.npz", 4, s4, 200, NULL, 1, NULL, NULL);

    /* refusals: a row outside the array, a missing row at commit, a missing directory */
    pndm_error err;
    pndm_npz_writer *w = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/bad.npz", dir);
    uint8_t row[36] = {0};
    CHECK(pndm_npz_create_u8(path, "arr_0", 4, s4, &w, &err) == PNDM_OK);
    CHECK(pndm_npz_put_rows(w, 5, 1, row, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_npz_put_rows(w, 4, 2, row, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_npz_put_rows(w, -1, 1, row, &err) == PNDM_ERR_USAGE);
    for (int r = 0; r < 4; r++) CHECK(pndm_npz_put_rows(w, r, 1, row, &err) == PNDM_OK);
    CHECK(pndm_npz_commit(w, &err) != PNDM_OK);
    CHECK_CONTAINS(err.msg, "row 4 missing");
    CHECK(access(path, F_OK) != 0);
    CHECK(pndm_npz_create_u8(path, "arr_0", 4, s4, &w, &err) == PNDM_OK);
    pndm_npz_abort(w);
    CHECK(access(path, F_OK) != 0);
    CHECK(no_temp_files(dir));
    snprintf(path, sizeof path, "%s/nodir/x.npz", dir);
    CHECK(pndm_npz_create_u8(path, "arr_0", 4, s4, &w, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "nodir/x.npz");
    const int64_t bad[2] = {2, -1};
    CHECK(pndm_npz_create_u8(path, "arr_0", 2, bad, &w, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_npz_create_u8(path, "a/b", 4, s4, &w, &err) == PNDM_ERR_USAGE);
    pndm_npz_abort(NULL);
    cli_set(dir);

    const char *names[] = {"a.npz", "b.npz", "g.npz", "v.npz", "e.npz", "z.npz", "z2.npz"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return TEST_SUMMARY();
}
