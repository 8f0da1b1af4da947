// ctest-label: unit
#define _GNU_SOURCE /* memmem */
/* PNG writer/readers: round trips of small asymmetric images (checked with libpng's own
 * simplified reader, so a bug shared by our encoder and decoder cannot hide), text chunks
 * (tEXt / iTXt, ASCII, Latin-1, UTF-8), format conversions on decode, a golden PIL-written PNG
 * against its float images, and garbage / truncated / corrupted input. */
#include "harness.h"
#include "pndm.h"
#include "pndm_io.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>

/* ---- helpers ---- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

/* count chunks of a type in a PNG buffer (walks the chunk list) */
static int count_chunks(const unsigned char *b, size_t n, const char *type) {
    int count = 0;
    for (size_t pos = 8; pos + 12 <= n;) {
        uint32_t len = be32(b + pos);
        if (memcmp(b + pos + 4, type, 4) == 0) count++;
        if (len > n - pos - 12) break;
        pos += 12 + (size_t)len;
    }
    return count;
}

/* independent decoder: libpng's simplified API */
static int ref_decode(const void *buf, size_t size, int gray, unsigned char **out, int *w, int *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, size)) return 0;
    img.format = gray ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    *out = malloc(PNG_IMAGE_SIZE(img));
    if (!*out || !png_image_finish_read(&img, NULL, *out, 0, NULL)) {
        png_image_free(&img);
        free(*out);
        return 0;
    }
    *w = (int)img.width;
    *h = (int)img.height;
    return 1;
}

/* write an arbitrary-format PNG with libpng (for decoder conversion tests) */
typedef struct {
    unsigned char *buf;
    size_t size;
} membuf;
static void mem_write(png_structp png, png_bytep data, size_t len) {
    membuf *m = png_get_io_ptr(png);
    m->buf = realloc(m->buf, m->size + len);
    memcpy(m->buf + m->size, data, len);
    m->size += len;
}
static void mem_flush(png_structp png) { (void)png; }

static membuf write_raw(int w, int h, int depth, int color, int interlace, const unsigned char *data, size_t stride,
                        const png_color *pal, int npal, const unsigned char *trans, int ntrans) {
    static membuf m; /* static: survives the longjmp */
    m.buf = NULL;
    m.size = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.buf);
        m.buf = NULL;
        m.size = 0;
        return m;
    }
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trans) png_set_tRNS(png, info, trans, ntrans, NULL);
    png_write_info(png, info);
    if (depth == 16) png_set_swap(png); /* our rows hold native little-endian uint16 */
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++) png_write_row(png, data + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return m;
}

/* ---- round trips ---- */
static void roundtrip(int w, int h, int ch) {
    size_t n = (size_t)w * h * ch;
    uint8_t *px = malloc(n);
    /* every value distinct and position-dependent: catches flips, transposes, channel swaps */
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(17 + 23 * i);
    void *png = NULL;
    size_t size = 0;
    pndm_error err;
    pndm_status s = pndm_png_encode(px, w, h, ch, NULL, 0, &png, &size, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s != PNDM_OK) {
        free(px);
        return;
    }
    const unsigned char *b = png;
    CHECK(size > 33 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0);
    CHECK(be32(b + 16) == (uint32_t)w && be32(b + 20) == (uint32_t)h); /* IHDR */
    CHECK(b[24] == 8 && b[25] == (ch == 1 ? 0 : 2));
    CHECK(count_chunks(b, size, "tEXt") == 0 && count_chunks(b, size, "tIME") == 0);

    unsigned char *ref = NULL;
    int rw = 0, rh = 0;
    CHECK(ref_decode(png, size, ch == 1, &ref, &rw, &rh));
    CHECK(rw == w && rh == h);
    if (ref) CHECK(memcmp(ref, px, n) == 0);
    free(ref);

    uint8_t *out = NULL;
    int ow, oh, oc;
    s = pndm_png_decode(png, size, "rt.png", &out, &ow, &oh, &oc, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    CHECK(ow == w && oh == h && oc == ch);
    if (out) CHECK(memcmp(out, px, n) == 0);
    /* deterministic output: same bytes again */
    void *png2 = NULL;
    size_t size2 = 0;
    CHECK(pndm_png_encode(px, w, h, ch, NULL, 0, &png2, &size2, &err) == PNDM_OK);
    CHECK(size2 == size && png2 && memcmp(png, png2, size) == 0);
    free(png2);
    free(out);
    free(png);
    free(px);
}

/* ---- text ---- */
typedef struct {
    int n;
    char key[8][96];
    char value[8][256];
} text_seen;
static void on_text(const char *key, const char *value, void *user) {
    text_seen *t = user;
    if (t->n < 8) {
        snprintf(t->key[t->n], sizeof t->key[0], "%s", key);
        snprintf(t->value[t->n], sizeof t->value[0], "%s", value);
    }
    t->n++;
}

static void test_text(void) {
    uint8_t px[3 * 2 * 3];
    for (int i = 0; i < 18; i++) px[i] = (uint8_t)(i * 14);
    const pndm_png_text text[] = {
        {"Software", "pndm 0.1.0"},
        {"parameters", "steps=50 seed=42 batch=1\nscheduler: PNDM (beta linear 0.0001..0.02)"},
        {"Comment", "caf\xc3\xa9 \xc3\xb1 \xc2\xbd"},                                     /* Latin-1 range: tEXt */
        {"prompt", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe2\x9c\x93 \xf0\x9f\x98\x80"}, /* needs iTXt */
        {"Gr\xc3\xbc\xc3\x9f"
         "e",
         "ok"}, /* Latin-1 key */
        {"empty", ""},
    };
    void *png = NULL;
    size_t size = 0;
    pndm_error err;
    pndm_status s = pndm_png_encode(px, 3, 2, 3, text, 6, &png, &size, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s != PNDM_OK) return;
    CHECK(count_chunks(png, size, "tEXt") == 5);
    CHECK(count_chunks(png, size, "iTXt") == 1);
    /* Latin-1 on disk: "caf\xe9" */
    CHECK(memmem(png, size, "caf\xe9 \xf1 \xbd", 7) != NULL);
    CHECK(memmem(png, size,
                 "Gr\xfc\xdf"
                 "e",
                 5) != NULL);

    text_seen seen;
    memset(&seen, 0, sizeof seen);
    s = pndm_png_read_text(png, size, "text.png", on_text, &seen, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    CHECK(seen.n == 6);
    for (int i = 0; i < 6 && i < seen.n; i++) {
        CHECK_MSG(strcmp(seen.key[i], text[i].key) == 0, "key %d: '%s'", i, seen.key[i]);
        CHECK_MSG(strcmp(seen.value[i], text[i].value) == 0, "value %d: '%s' vs '%s'", i, seen.value[i], text[i].value);
    }
    /* the pixels are unaffected */
    uint8_t *out = NULL;
    int w, h, c;
    CHECK(pndm_png_decode(png, size, "text.png", &out, &w, &h, &c, &err) == PNDM_OK);
    CHECK(w == 3 && h == 2 && c == 3 && out && memcmp(out, px, sizeof px) == 0);
    free(out);
    /* truncated: refused, and no text reported */
    memset(&seen, 0, sizeof seen);
    CHECK(pndm_png_read_text(png, size - 5, "cut.png", on_text, &seen, &err) == PNDM_ERR_INPUT);
    CHECK_CONTAINS(err.msg, "cut.png: invalid PNG");
    CHECK(seen.n == 0);
    free(png);

    /* text chunks after the image data are found too (written by libpng here) */
    {
        png_structp wp = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        png_infop wi = png_create_info_struct(wp);
        membuf m = {NULL, 0};
        if (!setjmp(png_jmpbuf(wp))) {
            png_set_write_fn(wp, &m, mem_write, mem_flush);
            png_set_IHDR(wp, wi, 1, 1, 8, PNG_COLOR_TYPE_GRAY, 0, 0, 0);
            png_write_info(wp, wi);
            png_byte row[1] = {9};
            png_write_row(wp, row);
            png_text t;
            memset(&t, 0, sizeof t);
            t.compression = PNG_TEXT_COMPRESSION_zTXt;
            t.key = (char *)"late";
            t.text = (char *)"after IDAT, compressed \xe9";
            png_set_text(wp, wi, &t, 1);
            png_write_end(wp, wi);
        }
        png_destroy_write_struct(&wp, &wi);
        memset(&seen, 0, sizeof seen);
        CHECK(m.buf && count_chunks(m.buf, m.size, "zTXt") == 1);
        CHECK(pndm_png_read_text(m.buf, m.size, "late.png", on_text, &seen, &err) == PNDM_OK);
        CHECK(seen.n == 1 && strcmp(seen.key[0], "late") == 0 &&
              strcmp(seen.value[0], "after IDAT, compressed \xc3\xa9") == 0);
        free(m.buf);
    }

    /* invalid keys and values are refused before anything is written */
    const pndm_png_text bad[][1] = {
        {{"", "x"}},
        {{" lead", "x"}},
        {{"trail ", "x"}},
        {{"dou  ble", "x"}},
        {{"0123456789012345678901234567890123456789012345678901234567890123456789012345678X", "x"}}, /* 80 */
        {{"\xe6\x97\xa5", "x"}},
        {{"tab\there", "x"}},
        {{"ok", "bad \xff utf8"}},
        {{"ok", "\xc3"}},
        {{"ok", "\xed\xa0\x80 surrogate"}},
        {{"ok", "\xc0\x80 overlong"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *o = (void *)1;
        size_t os = 1;
        s = pndm_png_encode(px, 3, 2, 3, bad[i], 1, &o, &os, &err);
        CHECK_MSG(s == PNDM_ERR_USAGE, "bad text %zu: status %d", i, (int)s);
        CHECK(o == NULL && os == 0);
        CHECK_CONTAINS(err.msg, i < 7 ? "is not a PNG keyword" : "is not valid UTF-8");
    }
    /* a 79-character key is fine */
    const pndm_png_text k79[1] = {
        {"012345678901234567890123456789012345678901234567890123456789012345678901234567X", "v"}};
    CHECK(pndm_png_encode(px, 3, 2, 3, k79, 1, &png, &size, &err) == PNDM_OK);
    free(png);
}

/* ---- decoder conversions ---- */
static void test_conversions(void) {
    uint8_t *out = NULL;
    int w, h, c;
    pndm_error err;
    /* palette with tRNS, 2x2 -> RGB (alpha dropped) */
    {
        png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {1, 2, 3}};
        unsigned char trans[3] = {0, 128, 255};
        unsigned char idx[4] = {2, 0, 1, 1};
        membuf m = write_raw(2, 2, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, idx, 2, pal, 3, trans, 3);
        CHECK(m.buf != NULL);
        CHECK(pndm_png_decode(m.buf, m.size, "pal.png", &out, &w, &h, &c, &err) == PNDM_OK);
        static const uint8_t want[12] = {1, 2, 3, 10, 20, 30, 200, 100, 50, 200, 100, 50};
        CHECK(w == 2 && h == 2 && c == 3 && out && memcmp(out, want, 12) == 0);
        free(out);
        free(m.buf);
    }
    /* 16-bit gray, 3x1: k*257 -> k */
    {
        uint16_t v[3] = {0, 257 * 100, 65535};
        membuf m =
            write_raw(3, 1, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, (unsigned char *)v, 6, NULL, 0, NULL, 0);
        CHECK(pndm_png_decode(m.buf, m.size, "g16.png", &out, &w, &h, &c, &err) == PNDM_OK);
        CHECK(w == 3 && h == 1 && c == 1 && out && out[0] == 0 && out[1] == 100 && out[2] == 255);
        free(out);
        free(m.buf);
    }
    /* RGBA, Adam7 interlaced, 3x2 -> RGB */
    {
        unsigned char rgba[24];
        for (int i = 0; i < 24; i++) rgba[i] = (unsigned char)(5 + 11 * i);
        membuf m = write_raw(3, 2, 8, PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_ADAM7, rgba, 12, NULL, 0, NULL, 0);
        CHECK(pndm_png_decode(m.buf, m.size, "rgba.png", &out, &w, &h, &c, &err) == PNDM_OK);
        CHECK(w == 3 && h == 2 && c == 3);
        int bad = 0;
        for (int p = 0; p < 6 && out; p++)
            for (int k = 0; k < 3; k++) bad += out[3 * p + k] != rgba[4 * p + k];
        CHECK(out && bad == 0);
        free(out);
        free(m.buf);
    }
    /* 1-bit gray, 10x1 -> 0/255 */
    {
        unsigned char bits[2] = {0xA5, 0xC0}; /* 1010 0101 11 */
        membuf m = write_raw(10, 1, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, bits, 2, NULL, 0, NULL, 0);
        CHECK(pndm_png_decode(m.buf, m.size, "g1.png", &out, &w, &h, &c, &err) == PNDM_OK);
        static const uint8_t want[10] = {255, 0, 255, 0, 0, 255, 0, 255, 255, 255};
        CHECK(w == 10 && h == 1 && c == 1 && out && memcmp(out, want, 10) == 0);
        free(out);
        free(m.buf);
    }
    /* gray + alpha 8-bit, 2x1 -> gray */
    {
        unsigned char ga[4] = {77, 0, 99, 255};
        membuf m = write_raw(2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, ga, 4, NULL, 0, NULL, 0);
        CHECK(pndm_png_decode(m.buf, m.size, "ga.png", &out, &w, &h, &c, &err) == PNDM_OK);
        CHECK(w == 2 && h == 1 && c == 1 && out && out[0] == 77 && out[1] == 99);
        free(out);
        free(m.buf);
    }
}

/* ---- golden PNG written by PIL from the pipeline's float images ---- */
static void test_golden(void) {
    char *png = NULL;
    size_t size = 0;
    pndm_error err;
    const char *path = PNDM_TEST_DATA "/png/standin_default_s20_b2_image_0.png";
    pndm_status s = pndm_read_file(path, 0, &png, &size, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s != PNDM_OK) return;
    pndm_npy img;
    s = pndm_npy_load(PNDM_TEST_DATA "/png/standin_default_s20_b2_images.npy", &img, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s != PNDM_OK) {
        free(png);
        return;
    }
    CHECK(img.dtype == PNDM_NPY_F32 && img.ndim == 4 && img.shape[0] == 2 && img.shape[1] == 32 && img.shape[2] == 32 &&
          img.shape[3] == 3);
    uint8_t *px = NULL;
    int w, h, c;
    s = pndm_png_decode(png, size, path, &px, &w, &h, &c, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    CHECK(w == 32 && h == 32 && c == 3);
    if (px && w == 32 && h == 32 && c == 3) {
        const float *f = img.data; /* (B, H, W, C): image 0 first */
        int differ = 0, distinct = 0;
        int seen[256] = {0};
        for (int i = 0; i < 32 * 32 * 3; i++) {
            /* numpy: (images * 255).round().astype("uint8"), float32 multiply, half to even */
            float r = rintf(f[i] * 255.0f);
            differ += px[i] != (uint8_t)r;
            if (!seen[px[i]]++) distinct++;
        }
        CHECK_MSG(differ == 0, "%d of 3072 golden pixels differ", differ);
        CHECK(distinct > 50); /* a real image, not a flat one */
        /* and our encoder reproduces the same pixels */
        void *re = NULL;
        size_t rs = 0;
        uint8_t *px2 = NULL;
        int w2, h2, c2;
        CHECK(pndm_png_encode(px, 32, 32, 3, NULL, 0, &re, &rs, &err) == PNDM_OK);
        CHECK(pndm_png_decode(re, rs, "re.png", &px2, &w2, &h2, &c2, &err) == PNDM_OK);
        CHECK(px2 && memcmp(px, px2, 3072) == 0);
        free(px2);
        free(re);
    }
    text_seen seen;
    memset(&seen, 0, sizeof seen);
    CHECK(pndm_png_read_text(png, size, path, on_text, &seen, &err) == PNDM_OK && seen.n == 0);
    free(px);
    pndm_npy_free(&img);
    free(png);
}

/* ---- hostile input ---- */
static void expect_bad(const void *buf, size_t size, const char *phrase, const char *what) {
    uint8_t *out = (uint8_t *)1;
    int w = -1, h = -1, c = -1;
    pndm_error err = {PNDM_OK, ""};
    pndm_status s = pndm_png_decode(buf, size, "bad.png", &out, &w, &h, &c, &err);
    CHECK_MSG(s == PNDM_ERR_INPUT, "%s: status %d (%s)", what, (int)s, err.msg);
    CHECK_MSG(out == NULL && w == 0 && h == 0 && c == 0, "%s: outputs not cleared", what);
    CHECK_MSG(strncmp(err.msg, "bad.png: ", 9) == 0, "%s: %s", what, err.msg);
    if (phrase) CHECK_CONTAINS(err.msg, phrase);
    if (getenv("PNDM_TEST_VERBOSE")) printf("%-16s %s\n", what, err.msg);
    text_seen seen;
    memset(&seen, 0, sizeof seen);
    s = pndm_png_read_text(buf, size, "bad.png", on_text, &seen, &err);
    CHECK_MSG(s == PNDM_ERR_INPUT && seen.n == 0, "%s: read_text status %d", what, (int)s);
}

static void test_hostile(void) {
    expect_bad("", 0, "not a PNG file", "empty");
    expect_bad(NULL, 0, "not a PNG file", "NULL");
    expect_bad("GIF89a\0\0\0\0", 10, "not a PNG file (bad signature)", "gif");
    expect_bad("\x89PNG\r\n\x1a\n", 8, "unexpected end of data", "signature only");
    expect_bad("\x89PNG\r\n\x1a\nhello world, this is not a chunk", 40, "invalid PNG", "junk");

    uint8_t px[5 * 3];
    for (int i = 0; i < 15; i++) px[i] = (uint8_t)(i * 17);
    const pndm_png_text t[1] = {{"k", "some text value"}};
    void *png = NULL;
    size_t size = 0;
    pndm_error err;
    CHECK(pndm_png_encode(px, 5, 3, 1, t, 1, &png, &size, &err) == PNDM_OK);
    unsigned char *b = png;
    /* every truncation is refused */
    int bad = 0;
    for (size_t n = 0; n < size; n++) {
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, b, n);
        uint8_t *out = NULL;
        int w, h, c;
        pndm_status s = pndm_png_decode(cut, n, "cut.png", &out, &w, &h, &c, &err);
        if (s != PNDM_ERR_INPUT || out) bad++;
        free(out);
        free(cut);
    }
    CHECK_MSG(bad == 0, "%d of %zu truncations not refused", bad, size);

    /* a corrupted IDAT CRC */
    unsigned char *m = malloc(size);
    memcpy(m, b, size);
    size_t pos = 8;
    while (pos + 12 <= size && memcmp(m + pos + 4, "IDAT", 4) != 0) pos += 12 + be32(m + pos);
    CHECK(pos + 12 <= size);
    if (pos + 12 <= size) {
        m[pos + 8 + be32(m + pos) + 3] ^= 0x55;
        expect_bad(m, size, "CRC", "IDAT crc");
    }
    free(m);

    /* an IHDR claiming 1000000 x 1000000 (valid CRC): refused before any allocation */
    m = malloc(size);
    memcpy(m, b, size);
    put_be32(m + 16, 1000000);
    put_be32(m + 20, 1000000);
    put_be32(m + 29, crc32_png(m + 12, 17));
    expect_bad(m, size, "too large to decode", "huge IHDR");
    /* beyond the user limits */
    put_be32(m + 16, 1000001);
    put_be32(m + 29, crc32_png(m + 12, 17));
    expect_bad(m, size, "invalid PNG", "too wide");
    /* bad colour type 5 */
    put_be32(m + 16, 5);
    put_be32(m + 20, 3);
    m[25] = 5;
    put_be32(m + 29, crc32_png(m + 12, 17));
    expect_bad(m, size, "invalid PNG", "colour type 5");
    free(m);

    /* random byte flips: OK or a clean refusal, never a crash (ASan) */
    uint32_t rng = 777;
    int ok = 0, refused = 0, other = 0;
    for (int it = 0; it < 3000; it++) {
        m = malloc(size);
        memcpy(m, b, size);
        for (int k = 0; k < 1 + it % 4; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t p = (rng >> 8) % size;
            rng = rng * 1664525u + 1013904223u;
            m[p] = (unsigned char)(rng >> 24);
        }
        uint8_t *out = NULL;
        int w = 0, h = 0, c = 0;
        pndm_status s = pndm_png_decode(m, size, "flip.png", &out, &w, &h, &c, &err);
        if (s == PNDM_OK && out && w > 0 && h > 0 && (c == 1 || c == 3)) {
            unsigned long long sum = 0; /* reading every byte: ASan checks the extent */
            for (size_t i = 0; i < (size_t)w * h * c; i++) sum += out[i];
            CHECK(sum <= 255ull * (size_t)w * h * c);
            ok++;
        } else if (s == PNDM_ERR_INPUT && !out) {
            refused++;
        } else {
            other++;
        }
        free(out);
        text_seen seen;
        memset(&seen, 0, sizeof seen);
        s = pndm_png_read_text(m, size, "flip.png", on_text, &seen, &err);
        if (s != PNDM_OK && s != PNDM_ERR_INPUT) other++;
        free(m);
    }
    CHECK_MSG(other == 0, "flips: %d ok, %d refused, %d other", ok, refused, other);
    if (getenv("PNDM_TEST_VERBOSE")) printf("flips: %d ok, %d refused\n", ok, refused);
    CHECK(refused > 1500); /* CRCs catch most flips */
    free(png);

    /* encoder argument checks */
    void *o = NULL;
    size_t os = 0;
    CHECK(pndm_png_encode(px, 5, 3, 4, NULL, 0, &o, &os, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "4 channels not supported");
    CHECK(pndm_png_encode(px, 0, 3, 1, NULL, 0, &o, &os, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "image size 0x3 out of range");
    CHECK(pndm_png_encode(NULL, 5, 3, 1, NULL, 0, &o, &os, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_png_encode(px, 5, 3, 1, NULL, 2, &o, &os, &err) == PNDM_ERR_USAGE);
    CHECK(o == NULL && os == 0);
}

/* test_png --poke IN.png OUT.png X Y DELTA: IN with pixel (X, Y) changed by DELTA levels in
 * every channel (the other way where it would leave 0..255), re-encoded without text chunks; for the CLI tests (cli_golden.sh). */
static int poke(int argc, char **argv) {
    if (argc != 7) return fprintf(stderr, "usage: test_png --poke IN.png OUT.png X Y DELTA\n"), 2;
    char *buf;
    size_t size;
    pndm_error err;
    uint8_t *pix;
    int w, h, c;
    if (pndm_read_file(argv[2], 0, &buf, &size, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    pndm_status st = pndm_png_decode(buf, size, argv[2], &pix, &w, &h, &c, &err);
    free(buf);
    if (st) return fprintf(stderr, "%s\n", err.msg), 1;
    int x = atoi(argv[4]), y = atoi(argv[5]), d = atoi(argv[6]);
    if (x < 0 || y < 0 || x >= w || y >= h) return fprintf(stderr, "pixel outside the %dx%d image\n", w, h), 2;
    for (int k = 0; k < c; k++) {
        int v = pix[((size_t)y * w + x) * c + k];
        v = v + d <= 255 && v + d >= 0 ? v + d : v - d; /* |change| = |DELTA| */
        pix[((size_t)y * w + x) * c + k] = (uint8_t)v;
    }
    void *png;
    size_t n;
    st = pndm_png_encode(pix, w, h, c, NULL, 0, &png, &n, &err);
    free(pix);
    if (!st) st = pndm_write_file_atomic(argv[3], png, n, &err), free(png);
    if (st) return fprintf(stderr, "%s\n", err.msg), 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--poke")) return poke(argc, argv);
    roundtrip(3, 2, 3);
    roundtrip(5, 3, 1);
    roundtrip(1, 1, 1);
    roundtrip(67, 41, 3);
    test_text();
    test_conversions();
    test_golden();
    test_hostile();
    return TEST_SUMMARY();
}
