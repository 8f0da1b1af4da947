/* A zip reader for PyTorch checkpoints (torch.save's zip format, torch >= 1.6): stored entries
 * only, zip64 aware, reading from a buffer (the file's read-only mapping). Nothing outside
 * [buf, buf + size) is ever read, whatever the archive says.
 *
 * Checks, in this order (each failure: PNDM_ERR_MODEL, one message naming the file and entry):
 *   1. the end-of-central-directory record (searched in the last 64 KiB + 22 bytes; its comment
 *      length must end exactly at the end of the file), single disk; zip64 locator and record
 *      when a field is saturated (0xFFFF / 0xFFFFFFFF)
 *   2. the central directory lies inside the file, before the end records; at most
 *      ZIP_MAX_ENTRIES entries, each header and its name/extra/comment inside the directory
 *   3. per entry: a name without NUL bytes; zip64 extra fields where sizes/offset are saturated;
 *      a local header at the recorded offset with the same name; its data inside the file and
 *      before the central directory
 *   4. names unique; local header + data of the entries do not overlap each other
 *   5. with an archive prefix (torch: the first entry's folder), every entry inside it
 *   6. no encrypted entry (flag bit 0 or 6), no compressed entry (method != 0: torch writes
 *      stored entries only; deflate and others are refused by name), compressed size ==
 *      uncompressed size
 * CRC-32 is checked on demand (zip_check_crc), as torch's reader does for every record it reads.
 */
#ifndef PNDM_ZIP_H
#define PNDM_ZIP_H

#include "pndm.h"
#include <stddef.h>
#include <stdint.h>

#define ZIP_MAX_ENTRIES 1000000

typedef struct zip_entry {
    char *name;          /* NUL-terminated copy */
    const uint8_t *data; /* inside the buffer */
    uint64_t size;       /* bytes (stored: compressed == uncompressed) */
    uint32_t crc;        /* from the central directory */
    uint16_t method, flags;
    uint64_t header_offset; /* local header */
    int crc_checked;        /* set by zip_check_crc once it passed */
} zip_entry;

typedef struct zip_archive {
    char *source; /* file name for messages */
    const uint8_t *buf;
    size_t size;
    int n_entries;
    zip_entry *entries;  /* in central-directory order */
    zip_entry **by_name; /* sorted by name (zip_find) */
    char *prefix;        /* "archive/" when opened with want_prefix, else "" */
    int zip64;
} zip_archive;

/* Parse an archive held in buf (not copied; must outlive z). want_prefix: take the archive
 * folder from the first entry (text up to and including its first '/') and refuse entries
 * outside it, as torch's PyTorchStreamReader does. On failure *z is left empty (zip_close is
 * safe). */
pndm_status zip_open(zip_archive *z, const void *buf, size_t size, const char *source, int want_prefix,
                     pndm_error *err);
void zip_close(zip_archive *z);
/* Entry by full name, or NULL. */
const zip_entry *zip_find(const zip_archive *z, const char *name);
/* Entry by name relative to the archive prefix ("data.pkl" -> "archive/data.pkl"), or NULL. */
const zip_entry *zip_find_in(const zip_archive *z, const char *rel);
/* CRC-32 of the entry's data against the central directory's (once per entry). */
pndm_status zip_check_crc(const zip_archive *z, const zip_entry *e, pndm_error *err);
/* CRC-32 (ISO-HDLC, the zip polynomial) of n bytes, continuing from crc (start with 0): carry-less
 * multiplication (PCLMULQDQ) where the CPU has it, else slice-by-8 tables; the same value either
 * way (zip_crc32_portable: the tables alone, for tests). */
uint32_t zip_crc32(uint32_t crc, const void *p, size_t n);
uint32_t zip_crc32_portable(uint32_t crc, const void *p, size_t n);
/* "PK\3\4" or "PK\5\6" at the start: a zip archive by its magic. */
int zip_looks_like(const void *buf, size_t size);

#endif
