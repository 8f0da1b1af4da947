/* Zip reader (zip.h): end records, central directory, local headers, in the order zip.h lists.
 * Formats: PKWARE APPNOTE 6.3 sections 4.3 (structure) and 4.5.3 (zip64 extended information). */
#define _POSIX_C_SOURCE 200809L
#include "zip.h"
#include "core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_EOCD 0x06054b50u
#define ZIP_SIG_EOCD64 0x06064b50u
#define ZIP_SIG_LOC64 0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* Parser state */
typedef struct {
    zip_archive *z;
    pndm_error *err;
} zparse;

static pndm_status zp_fail(zparse *p, const char *entry, const char *fmt, ...) CORE_PRINTF(3, 4);
static pndm_status zp_fail(zparse *p, const char *entry, const char *fmt, ...) {
    char msg[640], src[160], qe[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_quote(src, sizeof src, p->z->source);
    if (entry) {
        core_quote(qe, sizeof qe, entry);
        return core_fail(p->err, PNDM_ERR_MODEL, "%s: zip entry '%s': %s", src, qe, msg);
    }
    return core_fail(p->err, PNDM_ERR_MODEL, "%s: %s", src, msg);
}

int zip_looks_like(const void *buf, size_t size) {
    const uint8_t *b = buf;
    return size >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6));
}

/* ---- CRC-32, slice-by-8 -------------------------------------------------------------------- */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
static void crc_init_cpu(void);
#endif

static void crc_init(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    crc_init_cpu();
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_tables(uint32_t c, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint32_t lo = rd32(p) ^ c, hi = rd32(p + 4);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* Carry-less multiplication folding (Gopal et al., "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ Instruction", Intel 2009), for the bit-reflected zip polynomial: four 128-bit
 * lanes folded over 64-byte blocks, folded into one, reduced 128 -> 64 -> 32 bits (Barrett).
 * The constants are x^k mod P (reflected) for the fold distances, P' and mu. n >= 64, n % 16 == 0;
 * c: the running (inverted) CRC state, as in crc_tables. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul(uint32_t c, const uint8_t *p, size_t n) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL); /* x^(512+32), x^(512-32) */
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL); /* x^(128+32), x^(128-32) */
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124LL);                /* x^64 */
    const __m128i pmu = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);  /* mu, P' */
    const __m128i lo32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
    __m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i d = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i e = _mm_loadu_si128((const __m128i *)(p + 48));
    p += 64;
    n -= 64;
#define CRC_FOLD(x, k, next)                                                                                           \
    x = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11)), next)
    while (n >= 64) {
        CRC_FOLD(a, k1k2, _mm_loadu_si128((const __m128i *)p));
        CRC_FOLD(b, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)));
        CRC_FOLD(d, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)));
        CRC_FOLD(e, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    CRC_FOLD(a, k3k4, b);
    CRC_FOLD(a, k3k4, d);
    CRC_FOLD(a, k3k4, e);
    while (n >= 16) {
        CRC_FOLD(a, k3k4, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
#undef CRC_FOLD
    /* 128 -> 64 bits */
    __m128i t = _mm_clmulepi64_si128(a, k3k4, 0x10);
    a = _mm_xor_si128(_mm_srli_si128(a, 8), t);
    t = _mm_srli_si128(a, 4);
    a = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(a, lo32), k5, 0x00), t);
    /* 64 -> 32 bits (Barrett) */
    t = _mm_clmulepi64_si128(_mm_and_si128(a, lo32), pmu, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, lo32), pmu, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(a, t), 1);
}

static int crc_have_clmul;
static void crc_init_cpu(void) {
    __builtin_cpu_init();
    crc_have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}
#endif

uint32_t zip_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_have_clmul && n >= 64) {
        size_t m = n & ~(size_t)15;
        c = crc_clmul(c, p, m);
        p += m;
        n -= m;
    }
#endif
    return ~crc_tables(c, p, n);
}

/* the portable path alone (tests compare both) */
uint32_t zip_crc32_portable(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    return ~crc_tables(~crc, data, n);
}

/* ---- end records --------------------------------------------------------------------------- */
typedef struct {
    uint64_t n_entries, cd_size, cd_offset;
    uint64_t end_start; /* first byte of the end records (zip64 record, or the EOCD) */
} zip_end;

static pndm_status find_end(zparse *p, zip_end *e) {
    const zip_archive *z = p->z;
    const uint8_t *b = z->buf;
    size_t size = z->size;
    if (size < 22)
        return zp_fail(p, NULL, "not a zip archive: %zu bytes, too short for the end-of-central-directory record",
                       size);
    size_t lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
    size_t pos = SIZE_MAX;
    for (size_t i = size - 22 + 1; i-- > lo;) {
        if (rd32(b + i) == ZIP_SIG_EOCD && (size_t)rd16(b + i + 20) == size - i - 22) {
            pos = i;
            break;
        }
    }
    if (pos == SIZE_MAX)
        return zp_fail(p, NULL, "zip archive without an end-of-central-directory record (truncated or not a zip file)");
    const uint8_t *r = b + pos;
    uint16_t disk = rd16(r + 4), cd_disk = rd16(r + 6), n_disk = rd16(r + 8), n_all = rd16(r + 10);
    uint32_t cd_size = rd32(r + 12), cd_off = rd32(r + 16);
    e->n_entries = n_all;
    e->cd_size = cd_size;
    e->cd_offset = cd_off;
    e->end_start = pos;
    int need64 = disk == 0xffff || cd_disk == 0xffff || n_disk == 0xffff || n_all == 0xffff || cd_size == 0xffffffffu ||
        cd_off == 0xffffffffu;
    if (pos >= 20 && rd32(b + pos - 20) == ZIP_SIG_LOC64) {
        const uint8_t *l = b + pos - 20;
        uint32_t l_disk = rd32(l + 4), l_total = rd32(l + 16);
        uint64_t off64 = rd64(l + 8);
        if (l_disk != 0 || l_total > 1) return zp_fail(p, NULL, "multi-disk zip archives are not supported");
        if (off64 > (uint64_t)(pos - 20) || (uint64_t)(pos - 20) - off64 < 56)
            return zp_fail(p, NULL, "zip64 end record offset %llu is outside the file (%zu bytes)",
                           (unsigned long long)off64, size);
        const uint8_t *r64 = b + off64;
        if (rd32(r64) != ZIP_SIG_EOCD64)
            return zp_fail(p, NULL, "no zip64 end-of-central-directory record at offset %llu",
                           (unsigned long long)off64);
        uint64_t rec = rd64(r64 + 4);
        if (rec < 44 || rec > (uint64_t)(pos - 20) - off64 - 12)
            return zp_fail(p, NULL, "zip64 end record has a bad size (%llu)", (unsigned long long)rec);
        uint32_t d64 = rd32(r64 + 16), cd64 = rd32(r64 + 20);
        uint64_t nd64 = rd64(r64 + 24), na64 = rd64(r64 + 32);
        if (d64 != 0 || cd64 != 0 || nd64 != na64) return zp_fail(p, NULL, "multi-disk zip archives are not supported");
        e->n_entries = na64;
        e->cd_size = rd64(r64 + 40);
        e->cd_offset = rd64(r64 + 48);
        e->end_start = off64;
        p->z->zip64 = 1;
    } else if (need64) {
        if (disk != 0 || cd_disk != 0 || n_disk != n_all)
            return zp_fail(p, NULL, "multi-disk zip archives are not supported");
        return zp_fail(p, NULL, "zip archive needs a zip64 end record, and there is none (truncated?)");
    } else if (disk != 0 || cd_disk != 0 || n_disk != n_all) {
        return zp_fail(p, NULL, "multi-disk zip archives are not supported");
    }
    if (e->cd_offset > e->end_start || e->cd_size > e->end_start - e->cd_offset)
        return zp_fail(
            p, NULL, "central directory [%llu, +%llu) lies outside the file's %llu bytes before its end record",
            (unsigned long long)e->cd_offset, (unsigned long long)e->cd_size, (unsigned long long)e->end_start);
    if (e->n_entries > ZIP_MAX_ENTRIES)
        return zp_fail(p, NULL, "%llu entries (at most %d supported)", (unsigned long long)e->n_entries,
                       ZIP_MAX_ENTRIES);
    if (e->n_entries > e->cd_size / 46)
        return zp_fail(p, NULL, "central directory of %llu bytes cannot hold %llu entries",
                       (unsigned long long)e->cd_size, (unsigned long long)e->n_entries);
    return PNDM_OK;
}

/* ---- central directory --------------------------------------------------------------------- */
/* zip64 extended information (header 0x0001): the saturated fields, in this order. */
static pndm_status read_zip64_extra(zparse *p, const char *name, const uint8_t *x, size_t xlen, uint64_t *usize,
                                    uint64_t *csize, uint64_t *offset, int need_u, int need_c, int need_o) {
    if (!need_u && !need_c && !need_o) return PNDM_OK;
    size_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if ((size_t)len > xlen - i - 4) return zp_fail(p, name, "extra field runs past its header");
        if (id == 0x0001) {
            const uint8_t *f = x + i + 4;
            size_t need = 8u * (size_t)(need_u + need_c + need_o);
            if (len < need) return zp_fail(p, name, "zip64 extra field too short (%u bytes, needs %zu)", len, need);
            if (need_u) *usize = rd64(f), f += 8;
            if (need_c) *csize = rd64(f), f += 8;
            if (need_o) *offset = rd64(f);
            return PNDM_OK;
        }
        i += 4 + (size_t)len;
    }
    return zp_fail(p, name, "sizes saturated at 0xFFFFFFFF without a zip64 extra field");
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(zip_entry *const *)a)->name, (*(zip_entry *const *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    uint64_t x = (*(zip_entry *const *)a)->header_offset, y = (*(zip_entry *const *)b)->header_offset;
    return x < y ? -1 : x > y;
}

static const char *method_name(uint16_t m) {
    switch (m) {
    case 1: return "shrink";
    case 6: return "implode";
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "LZMA";
    case 93: return "zstd";
    case 95: return "xz";
    case 99: return "AES";
    }
    return "unknown";
}

static pndm_status read_entries(zparse *p, const zip_end *e) {
    zip_archive *z = p->z;
    const uint8_t *b = z->buf;
    const size_t n = (size_t)e->n_entries; /* <= ZIP_MAX_ENTRIES */
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    z->by_name = calloc(n ? n : 1, sizeof *z->by_name);
    if (!z->entries || !z->by_name) return core_fail(p->err, PNDM_ERR_NOMEM, "%s: out of memory", z->source);
    uint64_t off = e->cd_offset, end = e->cd_offset + e->cd_size;
    for (size_t i = 0; i < n; i++) {
        if (end - off < 46 || rd32(b + off) != ZIP_SIG_CENTRAL)
            return zp_fail(p, NULL, "central directory entry %zu of %zu at offset %llu is damaged", i + 1, n,
                           (unsigned long long)off);
        const uint8_t *h = b + off;
        uint16_t flags = rd16(h + 8), method = rd16(h + 10);
        uint32_t crc = rd32(h + 16), csize32 = rd32(h + 20), usize32 = rd32(h + 24);
        uint16_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32), dstart = rd16(h + 34);
        uint32_t lho32 = rd32(h + 42);
        if ((uint64_t)46 + nlen + xlen + clen > end - off)
            return zp_fail(p, NULL, "central directory entry %zu runs past the directory", i + 1);
        zip_entry *en = &z->entries[i];
        if (memchr(h + 46, 0, nlen)) return zp_fail(p, NULL, "entry %zu has a NUL byte in its name", i + 1);
        en->name = malloc((size_t)nlen + 1);
        if (!en->name) return core_fail(p->err, PNDM_ERR_NOMEM, "%s: out of memory", z->source);
        memcpy(en->name, h + 46, nlen);
        en->name[nlen] = 0;
        z->n_entries = (int)i + 1;
        uint64_t usize = usize32, csize = csize32, lho = lho32;
        pndm_status s = read_zip64_extra(p, en->name, h + 46 + nlen, xlen, &usize, &csize, &lho, usize32 == 0xffffffffu,
                                         csize32 == 0xffffffffu, lho32 == 0xffffffffu);
        if (s) return s;
        if (dstart != 0 && dstart != 0xffff) return zp_fail(p, en->name, "on another disk (multi-disk archive)");
        en->flags = flags;
        en->method = method;
        en->crc = crc;
        en->size = usize;
        en->header_offset = lho;
        if (flags & 0x41) return zp_fail(p, en->name, "is encrypted (pndm reads only plain stored entries)");
        if (method != 0)
            return zp_fail(p, en->name,
                           "is compressed (method %u, %s); PyTorch checkpoints store their entries uncompressed, "
                           "and pndm reads only those",
                           method, method_name(method));
        if (csize != usize)
            return zp_fail(p, en->name, "stored entry with compressed size %llu != size %llu",
                           (unsigned long long)csize, (unsigned long long)usize);
        /* the local header: same name; data right after it, inside the file, before the directory */
        if (lho > e->cd_offset || e->cd_offset - lho < 30 || rd32(b + lho) != ZIP_SIG_LOCAL)
            return zp_fail(p, en->name, "local header offset %llu does not point at a local header",
                           (unsigned long long)lho);
        const uint8_t *l = b + lho;
        uint16_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
        uint64_t data = lho + 30 + (uint64_t)lnlen + lxlen;
        if (data > e->cd_offset) return zp_fail(p, en->name, "local header runs into the central directory");
        if (lnlen != nlen || memcmp(l + 30, en->name, nlen) != 0)
            return zp_fail(p, en->name, "local header names another entry");
        if (en->size > e->cd_offset - data)
            return zp_fail(p, en->name, "data [%llu, +%llu) runs past the start of the central directory (%llu)",
                           (unsigned long long)data, (unsigned long long)en->size, (unsigned long long)e->cd_offset);
        en->data = b + data;
        z->by_name[i] = en;
        off += 46 + (uint64_t)nlen + xlen + clen;
    }
    /* unique names */
    if (n > 1) qsort(z->by_name, n, sizeof *z->by_name, cmp_by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(z->by_name[i - 1]->name, z->by_name[i]->name) == 0)
            return zp_fail(p, z->by_name[i]->name, "appears twice in the archive");
    /* no overlap: [header, data end) of consecutive entries in file order */
    zip_entry **ord = calloc(n ? n : 1, sizeof *ord);
    if (!ord) return core_fail(p->err, PNDM_ERR_NOMEM, "%s: out of memory", z->source);
    for (size_t i = 0; i < n; i++) ord[i] = &z->entries[i];
    if (n > 1) qsort(ord, n, sizeof *ord, cmp_by_offset);
    pndm_status s = PNDM_OK;
    for (size_t i = 1; i < n && !s; i++) {
        uint64_t prev_end = (uint64_t)(ord[i - 1]->data - b) + ord[i - 1]->size;
        if (ord[i]->header_offset < prev_end) {
            char q[160];
            core_quote(q, sizeof q, ord[i - 1]->name);
            s = zp_fail(p, ord[i]->name, "overlaps entry '%s' (local header at %llu, inside [%llu, %llu))", q,
                        (unsigned long long)ord[i]->header_offset, (unsigned long long)ord[i - 1]->header_offset,
                        (unsigned long long)prev_end);
        }
    }
    free(ord);
    return s;
}

static pndm_status check_prefix(zparse *p) {
    zip_archive *z = p->z;
    if (z->n_entries == 0) return zp_fail(p, NULL, "empty zip archive");
    const char *first = z->entries[0].name, *slash = strchr(first, '/');
    if (!slash || slash == first)
        return zp_fail(p, first, "is not inside a folder (a PyTorch archive keeps every record under one folder)");
    size_t pl = (size_t)(slash - first) + 1;
    z->prefix = malloc(pl + 1);
    if (!z->prefix) return core_fail(p->err, PNDM_ERR_NOMEM, "%s: out of memory", z->source);
    memcpy(z->prefix, first, pl);
    z->prefix[pl] = 0;
    for (int i = 0; i < z->n_entries; i++)
        if (strncmp(z->entries[i].name, z->prefix, pl) != 0) {
            char q[160];
            core_quote(q, sizeof q, z->prefix);
            return zp_fail(p, z->entries[i].name, "is outside the archive folder '%s'", q);
        }
    return PNDM_OK;
}

pndm_status zip_open(zip_archive *z, const void *buf, size_t size, const char *source, int want_prefix,
                     pndm_error *err) {
    memset(z, 0, sizeof *z);
    z->source = strdup(source ? source : "<zip>");
    if (!z->source) return core_fail(err, PNDM_ERR_NOMEM, "out of memory");
    z->buf = buf;
    z->size = size;
    zparse p = {z, err};
    zip_end e = {0, 0, 0, 0};
    pndm_status s = find_end(&p, &e);
    if (!s) s = read_entries(&p, &e);
    if (!s && want_prefix) s = check_prefix(&p);
    if (!s && !want_prefix) {
        z->prefix = strdup("");
        if (!z->prefix) s = core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", z->source);
    }
    if (s) zip_close(z);
    return s;
}

void zip_close(zip_archive *z) {
    if (!z) return;
    for (int i = 0; i < z->n_entries; i++) free(z->entries[i].name);
    free(z->entries);
    free(z->by_name);
    free(z->prefix);
    free(z->source);
    memset(z, 0, sizeof *z);
}

const zip_entry *zip_find(const zip_archive *z, const char *name) {
    int lo = 0, hi = z->n_entries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(z->by_name[mid]->name, name);
        if (c == 0) return z->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const zip_entry *zip_find_in(const zip_archive *z, const char *rel) {
    size_t pl = strlen(z->prefix), rl = strlen(rel);
    char stack[256], *full = pl + rl + 1 <= sizeof stack ? stack : malloc(pl + rl + 1);
    if (!full) return NULL;
    memcpy(full, z->prefix, pl);
    memcpy(full + pl, rel, rl + 1);
    const zip_entry *e = zip_find(z, full);
    if (full != stack) free(full);
    return e;
}

pndm_status zip_check_crc(const zip_archive *z, const zip_entry *e, pndm_error *err) {
    if (e->crc_checked) return PNDM_OK;
    uint32_t c = zip_crc32(0, e->data, (size_t)e->size);
    if (c != e->crc) {
        char src[160], q[160];
        core_quote(src, sizeof src, z->source);
        core_quote(q, sizeof q, e->name);
        return core_fail(err, PNDM_ERR_MODEL,
                         "%s: zip entry '%s': CRC-32 %08x does not match the recorded %08x (the file is damaged)", src,
                         q, c, e->crc);
    }
    ((zip_entry *)e)->crc_checked = 1; /* the archive owns its entries */
    return PNDM_OK;
}
