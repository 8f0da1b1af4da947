/* PNG writer and readers (libpng), all in memory.
 *
 * libpng reports errors by longjmp. Each entry point keeps its state in a context struct owned
 * by the caller and runs libpng inside a separate function that only touches that struct
 * through a pointer, so nothing the longjmp skips over is an indeterminate local.
 *
 * Text: keys are PNG keywords (Latin-1). Strings cross the API as UTF-8. A value whose characters
 * all fit Latin-1 (no C1 controls) is written as tEXt, anything else as uncompressed iTXt;
 * tEXt/zTXt text read back is converted from Latin-1 to UTF-8. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "pndm_io.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#define PNG_MAX_DIM 1000000                    /* libpng's default user limit */
#define PNG_MAX_DECODE_BYTES ((size_t)1 << 30) /* decoded pixels */

/* ---------------------------------------------------------------------------------------- */
/* Shared: error handlers, UTF-8 <-> Latin-1.                                                 */

typedef struct {
    char msg[256]; /* libpng's error message */
    int nomem;     /* our own allocation failed inside a callback */
} png_errstate;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_errstate *e = png_get_error_ptr(png);
    if (e) snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* the library never prints */
}

/* Decode one UTF-8 code point at s; returns its length (0 if invalid) and the value in *cp. */
static size_t png_utf8_decode(const unsigned char *s, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0; /* also stops at the terminating NUL */
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

static int png_utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        size_t n = png_utf8_decode(p, &cp);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

/* UTF-8 -> malloc'ed Latin-1 if every character is allowed by `ok`; NULL otherwise (or on OOM,
 * with *nomem set). */
static char *png_utf8_to_latin1(const char *s, int (*ok)(uint32_t), int *nomem) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    if (!out) {
        *nomem = 1;
        return NULL;
    }
    size_t o = 0;
    while (*p) {
        uint32_t cp;
        size_t n = png_utf8_decode(p, &cp);
        if (!n || !ok(cp)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(unsigned char)cp;
        p += n;
    }
    out[o] = 0;
    return out;
}

/* malloc'ed UTF-8 copy of a Latin-1 string */
static char *png_latin1_to_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    char *out = malloc(2 * len + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (; *p; p++) {
        if (*p < 0x80) {
            out[o++] = (char)*p;
        } else {
            out[o++] = (char)(0xc0 | (*p >> 6));
            out[o++] = (char)(0x80 | (*p & 0x3f));
        }
    }
    out[o] = 0;
    return out;
}

/* PNG keyword characters: Latin-1 32..126 and 161..255 */
static int png_key_char_ok(uint32_t cp) { return (cp >= 32 && cp <= 126) || (cp >= 161 && cp <= 255); }
/* tEXt text: Latin-1 without C0/C1 controls except newline and tab */
static int png_text_char_ok(uint32_t cp) {
    return cp == '\n' || cp == '\t' || (cp >= 32 && cp <= 126) || (cp >= 160 && cp <= 255);
}

/* ---------------------------------------------------------------------------------------- */
/* Encoder.                                                                                   */

typedef struct {
    png_errstate e;
    /* input */
    const uint8_t *pixels;
    int width, height, channels;
    png_text *text;
    int n_text;
    /* output buffer */
    unsigned char *buf;
    size_t size, cap;
} png_enc;

static void png_enc_write(png_structp png, png_bytep data, size_t len) {
    png_enc *c = png_get_io_ptr(png);
    if (len > SIZE_MAX - c->size) {
        c->e.nomem = 1;
        png_error(png, "output too large");
    }
    if (c->size + len > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->size + len) cap = cap > SIZE_MAX / 2 ? c->size + len : cap * 2;
        unsigned char *nb = realloc(c->buf, cap);
        if (!nb) {
            c->e.nomem = 1;
            png_error(png, "out of memory");
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->size, data, len);
    c->size += len;
}

static void png_enc_flush(png_structp png) { (void)png; }

/* Runs libpng; 0 on success, 1 after a libpng error (message in c->e). */
static int png_enc_run(png_enc *c) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c->e, png_on_error, png_on_warning);
    if (!png) {
        c->e.nomem = 1;
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        c->e.nomem = 1;
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return 1;
    }
    png_set_write_fn(png, c, png_enc_write, png_enc_flush);
    png_set_IHDR(png, info, (png_uint_32)c->width, (png_uint_32)c->height, 8,
                 c->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (c->n_text > 0) png_set_text(png, info, c->text, c->n_text);
    png_write_info(png, info);
    size_t stride = (size_t)c->width * (size_t)c->channels;
    for (int y = 0; y < c->height; y++) png_write_row(png, c->pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

pndm_status pndm_png_encode(const uint8_t *pixels, int width, int height, int channels, const pndm_png_text *text,
                            int n_text, void **out, size_t *out_size, pndm_error *err) {
    *out = NULL;
    *out_size = 0;
    if (!pixels) return core_fail(err, PNDM_ERR_USAGE, "PNG: no pixel data");
    if (width < 1 || height < 1 || width > PNG_MAX_DIM || height > PNG_MAX_DIM)
        return core_fail(err, PNDM_ERR_USAGE, "PNG: image size %dx%d out of range (1..%d)", width, height, PNG_MAX_DIM);
    if (channels != 1 && channels != 3)
        return core_fail(err, PNDM_ERR_USAGE, "PNG: %d channels not supported (1 = gray, 3 = RGB)", channels);
    if (n_text < 0 || (n_text > 0 && !text))
        return core_fail(err, PNDM_ERR_USAGE, "PNG: invalid text chunk list (%d entries)", n_text);

    png_enc c;
    memset(&c, 0, sizeof c);
    c.pixels = pixels;
    c.width = width;
    c.height = height;
    c.channels = channels;
    pndm_status s = PNDM_OK;
    if (n_text > 0) {
        c.text = calloc((size_t)n_text, sizeof *c.text);
        if (!c.text) return core_fail(err, PNDM_ERR_NOMEM, "PNG: out of memory");
    }
    /* Convert keys and values; c.text[i].key/text are malloc'ed (freed below). */
    for (int i = 0; i < n_text && s == PNDM_OK; i++) {
        const char *k = text[i].key, *v = text[i].value ? text[i].value : "";
        png_text *t = &c.text[i];
        c.n_text = i + 1;
        if (!k) k = "";
        int nomem = 0;
        t->key = png_utf8_to_latin1(k, png_key_char_ok, &nomem);
        size_t kl = t->key ? strlen(t->key) : 0;
        if (nomem) {
            s = core_fail(err, PNDM_ERR_NOMEM, "PNG: out of memory");
        } else if (!t->key || kl == 0 || kl > 79 || t->key[0] == ' ' || t->key[kl - 1] == ' ' || strstr(t->key, "  ")) {
            s = core_fail(err, PNDM_ERR_USAGE,
                          "PNG: text key '%.100s' is not a PNG keyword (1-79 Latin-1 printable characters, "
                          "no leading, trailing or double spaces)",
                          k);
        } else if (!png_utf8_valid(v)) {
            s = core_fail(err, PNDM_ERR_USAGE, "PNG: text value of key '%s' is not valid UTF-8", t->key);
        } else {
            t->text = png_utf8_to_latin1(v, png_text_char_ok, &nomem);
            if (nomem) {
                s = core_fail(err, PNDM_ERR_NOMEM, "PNG: out of memory");
            } else if (t->text) {
                t->compression = PNG_TEXT_COMPRESSION_NONE; /* tEXt */
                t->text_length = strlen(t->text);
            } else {
                t->text = strdup(v);
                if (!t->text) {
                    s = core_fail(err, PNDM_ERR_NOMEM, "PNG: out of memory");
                } else {
                    t->compression = PNG_ITXT_COMPRESSION_NONE; /* iTXt, UTF-8 */
                    t->itxt_length = strlen(t->text);
                    t->lang = NULL;
                    t->lang_key = NULL;
                }
            }
        }
    }
    if (s == PNDM_OK && png_enc_run(&c) != 0) {
        if (c.e.nomem)
            s = core_fail(err, PNDM_ERR_NOMEM, "PNG: out of memory while encoding %dx%d image", width, height);
        else
            s = core_fail(err, PNDM_ERR_INTERNAL, "PNG: libpng failed to encode %dx%d image: %s", width, height,
                          c.e.msg);
    }
    for (int i = 0; i < c.n_text; i++) {
        free(c.text[i].key);
        free(c.text[i].text);
    }
    free(c.text);
    if (s != PNDM_OK) {
        free(c.buf);
        return s;
    }
    *out = c.buf;
    *out_size = c.size;
    return PNDM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Readers.                                                                                   */

typedef struct {
    png_errstate e;
    const unsigned char *buf;
    size_t size, pos;
    /* decode */
    int want_pixels;
    uint8_t *pixels;
    png_bytep *rows;
    int width, height, channels;
    char detail[160]; /* our own refusal (unsupported format, too large) */
    /* text */
    pndm_png_text_fn fn;
    void *user;
} png_dec;

static void png_dec_read(png_structp png, png_bytep data, size_t len) {
    png_dec *c = png_get_io_ptr(png);
    if (len > c->size - c->pos) png_error(png, "unexpected end of data (truncated file)");
    memcpy(data, c->buf + c->pos, len);
    c->pos += len;
}

static void png_dec_text(png_dec *c, png_structp png, png_infop info) {
    png_textp t = NULL;
    int n = png_get_text(png, info, &t, NULL);
    for (int i = 0; i < n && t; i++) {
        if (!t[i].key) continue;
        char *k = png_latin1_to_utf8(t[i].key);
        const char *raw = t[i].text ? t[i].text : "";
        int itxt = t[i].compression == PNG_ITXT_COMPRESSION_NONE || t[i].compression == PNG_ITXT_COMPRESSION_zTXt;
        char *v = itxt ? NULL : png_latin1_to_utf8(raw);
        if (!k || (!itxt && !v)) {
            free(k);
            free(v);
            c->e.nomem = 1;
            png_error(png, "out of memory");
        }
        c->fn(k, itxt ? raw : v, c->user);
        free(k);
        free(v);
    }
}

/* 0 on success, 1 on a libpng error or refusal. */
static int png_dec_run(png_dec *c) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c->e, png_on_error, png_on_warning);
    if (!png) {
        c->e.nomem = 1;
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    png_infop end_info = info ? png_create_info_struct(png) : NULL;
    if (!info || !end_info) {
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        c->e.nomem = 1;
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end_info);
        return 1;
    }
    png_set_read_fn(png, c, png_dec_read);
    png_set_user_limits(png, PNG_MAX_DIM, PNG_MAX_DIM);
    /* decompressed text (zTXt, iTXt) may be a few times larger than the file; libpng drops
     * longer ones with a warning */
    size_t chunk_max = c->size < (size_t)2000000 ? 4 * c->size : (size_t)8000000;
    png_set_chunk_malloc_max(png, chunk_max < 65536 ? 65536 : chunk_max);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    /* Everything becomes 8-bit gray or RGB: expand palettes and low bit depths, scale 16 -> 8
     * bits, drop alpha (as PIL's convert("RGB") does); gamma and colour chunks are ignored. */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    /* palette_to_rgb also turns a tRNS chunk into alpha: strip that too */
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    if ((ch != 1 && ch != 3) || out_depth != 8) {
        snprintf(c->detail, sizeof c->detail, "unsupported pixel format (colour type %d, bit depth %d)", color, depth);
        png_error(png, c->detail);
    }
    size_t stride = (size_t)w * (size_t)ch; /* w <= 1e6: no overflow */
    if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row size after conversion");

    /* also for the text reader, which inflates every row to reach the chunks after IDAT */
    if (stride != 0 && (size_t)h > PNG_MAX_DECODE_BYTES / stride) {
        snprintf(c->detail, sizeof c->detail, "image %ux%u too large to decode (limit %zu bytes)", (unsigned)w,
                 (unsigned)h, PNG_MAX_DECODE_BYTES);
        png_error(png, c->detail);
    }
    if (c->want_pixels) {
        c->pixels = malloc(stride * h);
        c->rows = malloc(sizeof *c->rows * h);
        if (!c->pixels || !c->rows) {
            c->e.nomem = 1;
            png_error(png, "out of memory");
        }
        for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pixels + (size_t)y * stride;
        png_read_image(png, c->rows);
    } else {
        /* text after the image data needs the image read; one row at a time */
        c->pixels = malloc(stride);
        if (!c->pixels) {
            c->e.nomem = 1;
            png_error(png, "out of memory");
        }
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++) png_read_row(png, c->pixels, NULL);
    }
    png_read_end(png, end_info);
    if (c->fn) {
        /* every chunk through IEND has been read and checked: deliver the texts */
        png_dec_text(c, png, info);
        png_dec_text(c, png, end_info);
    }
    c->width = (int)w;
    c->height = (int)h;
    c->channels = ch;
    png_destroy_read_struct(&png, &info, &end_info);
    return 0;
}

static uint32_t png_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static pndm_status png_dec_start(png_dec *c, const void *buf, size_t size, const char *source, pndm_error *err) {
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->size = size;
    if (!buf || size < 8 || png_sig_cmp((png_const_bytep)buf, 0, 8) != 0)
        return core_fail(err, PNDM_ERR_INPUT, "%s: not a PNG file (bad signature)", source);
    /* libpng allocates (and clears) an ancillary chunk's declared length before reading it, up to
     * 2^31 bytes; walk the chunk list first so that no length runs past the end of the data */
    const unsigned char *b = buf;
    size_t pos = 8;
    while (size - pos >= 12) {
        uint32_t len = png_be32(b + pos);
        if (len > 0x7fffffffu || (size_t)len > size - pos - 12) {
            char type[5];
            for (int i = 0; i < 4; i++) {
                unsigned char ch = b[pos + 4 + (size_t)i];
                type[i] = (char)((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ? ch : '?');
            }
            type[4] = 0;
            return core_fail(err, PNDM_ERR_INPUT,
                             "%s: invalid PNG: chunk '%s' at offset %zu declares %u bytes, only %zu follow "
                             "(truncated file?)",
                             source, type, pos, (unsigned)len, size - pos - 12);
        }
        if (memcmp(b + pos + 4, "IEND", 4) == 0) return PNDM_OK;
        pos += 12 + (size_t)len;
    }
    /* a chunk header (length + type) with no room for its data and CRC: libpng would allocate
     * the declared length before finding the data missing */
    if (size - pos >= 8)
        return core_fail(err, PNDM_ERR_INPUT, "%s: invalid PNG: the chunk at offset %zu is cut short (truncated file?)",
                         source, pos);
    return PNDM_OK;
}

static pndm_status png_dec_finish(png_dec *c, int failed, const char *source, pndm_error *err) {
    free(c->rows);
    c->rows = NULL;
    if (!failed) return PNDM_OK;
    free(c->pixels);
    c->pixels = NULL;
    if (c->e.nomem) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory reading PNG", source);
    return core_fail(err, PNDM_ERR_INPUT, "%s: invalid PNG: %s", source, c->e.msg);
}

pndm_status pndm_png_read_text(const void *buf, size_t size, const char *source, pndm_png_text_fn fn, void *user,
                               pndm_error *err) {
    if (!source) source = "<png>";
    png_dec c;
    pndm_status s = png_dec_start(&c, buf, size, source, err);
    if (s != PNDM_OK) return s;
    /* texts are delivered after the whole file (through IEND) has been read and checked */
    c.fn = fn;
    c.user = user;
    int failed = png_dec_run(&c);
    s = png_dec_finish(&c, failed, source, err);
    free(c.pixels);
    return s;
}

pndm_status pndm_png_decode(const void *buf, size_t size, const char *source, uint8_t **pixels, int *width, int *height,
                            int *channels, pndm_error *err) {
    *pixels = NULL;
    *width = *height = *channels = 0;
    if (!source) source = "<png>";
    png_dec c;
    pndm_status s = png_dec_start(&c, buf, size, source, err);
    if (s != PNDM_OK) return s;
    c.want_pixels = 1;
    int failed = png_dec_run(&c);
    s = png_dec_finish(&c, failed, source, err);
    if (s != PNDM_OK) return s;
    *pixels = c.pixels;
    *width = c.width;
    *height = c.height;
    *channels = c.channels;
    return PNDM_OK;
}
