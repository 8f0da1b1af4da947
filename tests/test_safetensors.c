// ctest-label: unit
/* safetensors reader: valid files from a tiny writer (F32/F16/BF16, metadata, alignment), exact
 * f16/bf16 conversion, a table of hostile headers (code + message), truncation and byte-flip
 * sweeps, st_open on files and on a real diffusers checkpoint. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "pndm_io.h"
#include "safetensors.h"

#include <stdint.h>
#include <unistd.h>

/* ---- tiny writer: 8-byte LE length, header padded with spaces to a multiple of 8, data ---- */
static unsigned char *build(const char *header, size_t hlen, const void *data, size_t data_size, size_t *size) {
    size_t padded = (hlen + 7) / 8 * 8;
    *size = 8 + padded + data_size;
    unsigned char *b = malloc(*size ? *size : 1);
    if (!b) abort();
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, header, hlen);
    memset(b + 8 + hlen, ' ', padded - hlen);
    if (data_size) memcpy(b + 8 + padded, data, data_size);
    return b;
}

static unsigned char *build_str(const char *header, size_t data_size, size_t *size) {
    unsigned char *zeros = calloc(data_size ? data_size : 1, 1);
    unsigned char *b = build(header, strlen(header), zeros, data_size, size);
    free(zeros);
    return b;
}

static void put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- valid file ---- */
static void test_valid(void) {
    /* data layout: a F32 [2,3] @0..24, h F16 [8] @24..40, b BF16 [4] @40..48, 2-byte hole,
     * u F32 [2] @50..58 (unaligned), z F32 [0,3] @58..58 */
    unsigned char data[58];
    memset(data, 0xAB, sizeof data);
    float a[6] = {0.0f, 0.5f, -1.0f, 1.5f, 3.25f, -1e-3f};
    memcpy(data, a, sizeof a);
    static const uint16_t h[8] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7c00, 0xfc00, 0x7e00, 0x7bff};
    for (int i = 0; i < 8; i++) put_u16(data + 24 + 2 * i, h[i]);
    static const uint16_t bf[4] = {0x3f80, 0xc0a0, 0xff80, 0x0001};
    for (int i = 0; i < 4; i++) put_u16(data + 40 + 2 * i, bf[i]);
    float u[2] = {7.0f, -0.125f};
    memcpy(data + 50, u, sizeof u);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\",\"config\":\"{\\\"a\\\": 1}\"},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[40,48]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[58,58]},"
                      "\"h\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[24,40]},"
                      "\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[50,58]}}";
    size_t size;
    unsigned char *buf = build(hdr, strlen(hdr), data, sizeof data, &size);
    tt_table f;
    pndm_error err = {0};
    pndm_status s = st_parse(&f, buf, size, "valid.safetensors", &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s != PNDM_OK) {
        free(buf);
        return;
    }
    CHECK(f.n_tensors == 5);
    CHECK(f.n_meta == 2);
    CHECK(tt_meta(&f, "format") && strcmp(tt_meta(&f, "format"), "pt") == 0);
    CHECK(tt_meta(&f, "config") && strcmp(tt_meta(&f, "config"), "{\"a\": 1}") == 0);
    CHECK(tt_meta(&f, "nope") == NULL);
    CHECK(tt_find(&f, "nope") == NULL);
    CHECK(tt_find(&f, "") == NULL);

    const tt_tensor *ta = tt_find(&f, "a");
    CHECK(ta != NULL);
    if (ta) {
        CHECK(ta->dtype == TT_F32 && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3);
        CHECK(ta->count == 6 && ta->nbytes == 24);
        CHECK((const unsigned char *)ta->data == buf + size - sizeof data);
        const float *v;
        int owned = -1;
        CHECK(tt_tensor_f32(&f, ta, &v, &owned, &err) == PNDM_OK);
        CHECK(owned == 0 && v == ta->data); /* aligned F32: used in place */
        for (int i = 0; i < 6; i++) CHECK(f32_bits(v[i]) == f32_bits(a[i]));
        if (owned) free((void *)v);
    }
    const tt_tensor *th = tt_find(&f, "h");
    CHECK(th && th->dtype == TT_F16 && th->count == 8 && th->nbytes == 16);
    if (th) {
        const float *v;
        int owned = -1;
        CHECK(tt_tensor_f32(&f, th, &v, &owned, &err) == PNDM_OK);
        CHECK(owned == 1);
        CHECK(v[0] == 1.0f);
        CHECK(v[1] == -2.0f);
        CHECK(v[2] == ldexpf(1.0f, -24));    /* smallest subnormal */
        CHECK(v[3] == ldexpf(1023.0f, -24)); /* largest subnormal */
        CHECK(isinf(v[4]) && v[4] > 0);
        CHECK(isinf(v[5]) && v[5] < 0);
        CHECK(isnan(v[6]));
        CHECK(v[7] == 65504.0f);
        if (owned) free((void *)v);
    }
    const tt_tensor *tb = tt_find(&f, "b");
    CHECK(tb && tb->dtype == TT_BF16 && tb->count == 4);
    if (tb) {
        const float *v;
        int owned = -1;
        CHECK(tt_tensor_f32(&f, tb, &v, &owned, &err) == PNDM_OK);
        CHECK(owned == 1);
        CHECK(v[0] == 1.0f);
        CHECK(v[1] == -5.0f);
        CHECK(isinf(v[2]) && v[2] < 0);
        CHECK(v[3] == ldexpf(1.0f, -133)); /* float subnormal 0x00010000 */
        if (owned) free((void *)v);
    }
    const tt_tensor *tu = tt_find(&f, "u");
    CHECK(tu && tu->dtype == TT_F32 && tu->count == 2);
    if (tu) {
        const float *v;
        int owned = -1;
        CHECK(tt_tensor_f32(&f, tu, &v, &owned, &err) == PNDM_OK);
        CHECK(owned == 1); /* offset 50: not 4-byte aligned, so copied */
        CHECK(v[0] == 7.0f && v[1] == -0.125f);
        if (owned) free((void *)v);
    }
    const tt_tensor *tz = tt_find(&f, "z");
    CHECK(tz && tz->count == 0 && tz->nbytes == 0 && tz->ndim == 2 && tz->shape[1] == 3);
    if (tz) {
        const float *v;
        int owned = -1;
        CHECK(tt_tensor_f32(&f, tz, &v, &owned, &err) == PNDM_OK);
        if (owned) free((void *)v);
    }
    /* every tensor is found by its own name */
    for (int i = 0; i < f.n_tensors; i++) CHECK(tt_find(&f, f.tensors[i].name) == &f.tensors[i]);
    tt_free(&f);
    CHECK(f.n_tensors == 0 && f.tensors == NULL && f.source == NULL);
    tt_free(&f); /* twice is harmless */

    /* every proper prefix is refused (the last tensor ends at the end of the data) */
    int prefix_bad = 0;
    for (size_t n = 0; n < size; n++) {
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        pndm_error e2 = {0};
        tt_table g;
        pndm_status s2 = st_parse(&g, cut, n, "cut.safetensors", &e2);
        if (s2 != PNDM_ERR_MODEL || g.n_tensors != 0 || strncmp(e2.msg, "cut.safetensors: ", 17) != 0) prefix_bad++;
        tt_free(&g);
        free(cut);
    }
    CHECK_MSG(prefix_bad == 0, "%d of %zu prefixes not refused cleanly", prefix_bad, size);

    /* byte flips: any outcome but a crash; accepted files keep every tensor inside the buffer */
    uint32_t rng = 12345;
    int accepted = 0, refused = 0, bad = 0;
    for (int it = 0; it < 4000; it++) {
        unsigned char *m = malloc(size);
        memcpy(m, buf, size);
        int flips = 1 + it % 3;
        for (int k = 0; k < flips; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t pos = (rng >> 8) % (8 + strlen(hdr) + 2); /* mostly the header */
            rng = rng * 1664525u + 1013904223u;
            m[pos] = (unsigned char)(rng >> 24);
        }
        tt_table g;
        pndm_error e2 = {0};
        pndm_status s2 = st_parse(&g, m, size, "flip", &e2);
        if (s2 == PNDM_OK) {
            accepted++;
            for (int i = 0; i < g.n_tensors; i++) {
                const unsigned char *d = g.tensors[i].data;
                if (d < m || d + g.tensors[i].nbytes > m + size) bad++;
                const float *v;
                int owned;
                if (tt_tensor_f32(&g, &g.tensors[i], &v, &owned, &e2) == PNDM_OK && owned) free((void *)v);
            }
        } else if (s2 == PNDM_ERR_MODEL && g.n_tensors == 0 && e2.msg[0]) {
            refused++;
        } else {
            bad++;
        }
        tt_free(&g);
        free(m);
    }
    CHECK_MSG(bad == 0 && accepted + refused == 4000, "flips: %d accepted, %d refused, %d bad", accepted, refused, bad);
    CHECK(refused > 1000); /* most flips break something */
    free(buf);
}

/* exact IEEE half -> float over all 65536 values, against a double-based reference */
static void test_f16_exhaustive(void) {
    int wrong = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int sign = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
        float got = tt_f16_to_f32((uint16_t)h);
        if (e == 31) {
            if (m == 0) {
                if (!(isinf(got) && (signbit(got) != 0) == sign)) wrong++;
            } else if (!isnan(got) || (signbit(got) != 0) != sign)
                wrong++;
            continue;
        }
        double ref = e == 0 ? ldexp((double)m, -24) : ldexp(1.0 + m / 1024.0, e - 15);
        if (sign) ref = -ref;
        if ((double)got != ref || (signbit(got) != 0) != sign) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d half values converted wrongly", wrong);
    /* nan payload bits survive */
    CHECK(f32_bits(tt_f16_to_f32(0x7e01)) == 0x7fc02000u);
    /* bf16 is the top half of a float */
    CHECK(f32_bits(tt_bf16_to_f32(0x7fc1)) == 0x7fc10000u);
    CHECK(tt_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(signbit(tt_bf16_to_f32(0x8000)) && tt_bf16_to_f32(0x8000) == 0.0f);
}

/* ---- hostile inputs ---- */
typedef struct {
    const char *what;
    const char *header; /* JSON text, or NULL to use raw */
    size_t data_size;
    const unsigned char *raw;
    size_t raw_size;
    const char *phrase;
} hostile_case;

static void run_case(const hostile_case *c) {
    size_t size;
    unsigned char *buf;
    if (c->header) {
        buf = build_str(c->header, c->data_size, &size);
    } else {
        size = c->raw_size;
        buf = malloc(size ? size : 1);
        if (size) memcpy(buf, c->raw, size);
    }
    tt_table f;
    pndm_error err = {PNDM_OK, ""};
    pndm_status s = st_parse(&f, buf, size, "hostile.safetensors", &err);
    CHECK_MSG(s == PNDM_ERR_MODEL, "%s: status %d (%s)", c->what, (int)s, err.msg);
    CHECK_MSG(err.code == PNDM_ERR_MODEL, "%s: err.code %d", c->what, (int)err.code);
    CHECK_MSG(strncmp(err.msg, "hostile.safetensors: ", 21) == 0, "%s: message lacks the source: %s", c->what, err.msg);
    CHECK_CONTAINS(err.msg, c->phrase);
    if (getenv("PNDM_TEST_VERBOSE")) printf("%-22s %s\n", c->what, err.msg);
    CHECK_MSG(f.n_tensors == 0 && f.tensors == NULL && f.n_meta == 0 && f.source == NULL, "%s: file not left empty",
              c->what);
    tt_free(&f);
    free(buf);
}

static void test_hostile(void) {
    static const unsigned char seven[7] = {1, 0, 0, 0, 0, 0, 0};
    static const unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    static const unsigned char over_cap[16] = {0x01, 0x00, 0x40, 0x06, 0, 0, 0, 0, '{', '}'}; /* 100 MiB + 1 */
    static const unsigned char past_end[18] = {100, 0,   0,   0,   0,   0,   0,   0,   '{',
                                               '}', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
    static const unsigned char zero_len[8] = {0};
    static const unsigned char with_nul[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', 0, ' ', ' ', ' ', ' '};
    const hostile_case cases[] = {
        {"empty", NULL, 0, seven, 0, "file too small (0 bytes)"},
        {"7 bytes", NULL, 0, seven, 7, "file too small (7 bytes)"},
        {"length 2^64-1", NULL, 0, huge, 10, "header length 18446744073709551615 exceeds the 100 MiB limit"},
        {"length 100MiB+1", NULL, 0, over_cap, 10, "header length 104857601 exceeds the 100 MiB limit"},
        {"length > file", NULL, 0, past_end, 18, "header length 100 runs past the end of the file (18 bytes)"},
        {"length 0", NULL, 0, zero_len, 8, "header is empty"},
        {"NUL in header", NULL, 0, with_nul, 16, "NUL byte at header offset 3"},
        {"not JSON", "hello world", 0, NULL, 0, "header is not valid JSON"},
        {"truncated JSON", "{\"a\": {\"dtype\": \"F32\"", 0, NULL, 0, "header is not valid JSON"},
        {"trailing data", "{} x", 0, NULL, 0, "trailing data at header offset 3"},
        {"array header", "[1, 2]", 0, NULL, 0, "header is an array, expected a JSON object"},
        {"string header", "\"x\"", 0, NULL, 0, "header is a string, expected a JSON object"},
        {"entry not object", "{\"w\": 5}", 0, NULL, 0, "tensor 'w': header entry is a number, expected an object"},
        {"entry null", "{\"w\": null}", 0, NULL, 0, "tensor 'w': header entry is null"},
        {"missing dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "tensor 'w': missing \"dtype\""},
        {"dtype number", "{\"w\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "\"dtype\" is a number, expected a string"},
        {"unknown dtype", "{\"w\": {\"dtype\": \"Q7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "tensor 'w': unknown dtype 'Q7'"},
        {"F64", "{\"w\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8, NULL, 0,
         "tensor 'w': dtype F64 is not supported"},
        {"I64", "{\"w\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8, NULL, 0,
         "dtype I64 is not supported (only F32, F16, BF16)"},
        {"lowercase f32", "{\"w\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "unknown dtype 'f32'"},
        {"missing shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "tensor 'w': missing \"shape\""},
        {"shape string", "{\"w\": {\"dtype\": \"F32\", \"shape\": \"4\", \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "\"shape\" is a string, expected an array"},
        {"9 dims", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4, NULL,
         0, "shape has 9 dimensions (at most 8"},
        {"negative dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "shape[1] = -3 is not a non-negative integer"},
        {"fractional dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "shape[0] = 2.5 is not a non-negative integer"},
        {"string dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "shape[0] is a string"},
        {"huge dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "below 2^53"},
        {"count overflow",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "shape [4294967296, 4294967296] x F32 overflows"},
        {"bytes overflow",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [2147483648, 2147483648], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "x F32 overflows"},
        {"missing offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, NULL, 0,
         "tensor 'w': missing \"data_offsets\""},
        {"offsets object", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {}}}", 4, NULL, 0,
         "\"data_offsets\" is an object"},
        {"offsets length", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, NULL, 0,
         "\"data_offsets\" has 1 element, expected 2"},
        {"negative offset", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-1, 3]}}", 4, NULL, 0,
         "data_offsets[0] = -1 is not a non-negative integer"},
        {"fractional offset", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.5]}}", 8, NULL, 0,
         "data_offsets[1] = 4.5"},
        {"reversed offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, NULL, 0,
         "data_offsets [8, 4] are reversed"},
        {"offsets past data", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [4, 20]}}", 16, NULL, 0,
         "data_offsets [4, 20] end beyond the 16 bytes of tensor data"},
        {"huge offsets",
         "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [9007199254740000, 9007199254740004]}}", 4,
         NULL, 0, "end beyond the 4 bytes"},
        {"size mismatch",
         "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3, 3, 3], \"data_offsets\": [0, 100]}}", 432, NULL,
         0, "tensor 'conv_in.weight': data_offsets [0, 100] give 100 bytes, shape [4, 3, 3, 3] x F32 needs 432"},
        {"overlap",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
         " \"b\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [12, 20]}}",
         20, NULL, 0, "tensor 'b': data_offsets [12, 20] overlap those of tensor 'a' [0, 16]"},
        {"same range",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
         8, NULL, 0, "overlap"},
        {"duplicate name",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         8, NULL, 0, "tensor 'a': name appears twice"},
        {"metadata array", "{\"__metadata__\": [\"x\"]}", 0, NULL, 0,
         "\"__metadata__\" is an array, expected an object"},
        {"metadata number value", "{\"__metadata__\": {\"format\": \"pt\", \"k\": 5}}", 0, NULL, 0,
         "\"__metadata__\" value of 'k' is a number, expected a string"},
        {"metadata nested", "{\"__metadata__\": {\"k\": {\"x\": \"y\"}}}", 0, NULL, 0, "value of 'k' is an object"},
        {"metadata duplicate key", "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, NULL, 0, "has key 'k' twice"},
        {"metadata twice", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, NULL, 0,
         "\"__metadata__\" appears twice"},
        {"control chars in name", "{\"a\\u0001\\nb\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, NULL, 0,
         "tensor 'a\\x01\\x0ab': missing \"dtype\""},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) run_case(&cases[i]);
    CHECK(n >= 20);

    /* deep nesting stops at cJSON's nesting limit instead of overflowing the stack */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = 0;
    hostile_case dc = {"deep nesting", deep, 0, NULL, 0, "header is not valid JSON"};
    run_case(&dc);
    free(deep);

    /* exact full message from the brief's example */
    size_t size;
    unsigned char *b = build_str(
        "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3, 3, 3], \"data_offsets\": [0, 100]}}", 432, &size);
    tt_table f;
    pndm_error err;
    CHECK(st_parse(&f, b, size, "m.safetensors", &err) == PNDM_ERR_MODEL);
    CHECK(strcmp(err.msg,
                 "m.safetensors: tensor 'conv_in.weight': data_offsets [0, 100] give 100 bytes, "
                 "shape [4, 3, 3, 3] x F32 needs 432") == 0);
    free(b);

    /* NULL error pointer is allowed */
    b = build_str("[]", 0, &size);
    CHECK(st_parse(&f, b, size, "x", NULL) == PNDM_ERR_MODEL);
    free(b);

    /* accepted edge cases: empty object, padding with newlines, empty tensors anywhere, holes */
    b = build_str("{}", 0, &size);
    CHECK(st_parse(&f, b, size, "x", &err) == PNDM_OK && f.n_tensors == 0);
    tt_free(&f);
    free(b);
    b = build_str("{\"e\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [2, 2]},"
                  " \"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}\n",
                  12, &size);
    CHECK_MSG(st_parse(&f, b, size, "x", &err) == PNDM_OK, "%s", err.msg);
    CHECK(f.n_tensors == 2 && tt_find(&f, "s") && tt_find(&f, "s")->count == 1 && tt_find(&f, "s")->ndim == 0);
    tt_free(&f);
    free(b);
}

/* ---- files ---- */
static void test_open(void) {
    tt_table f;
    pndm_error err;
    CHECK(st_open(&f, "/nonexistent/dir/x.safetensors", &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "/nonexistent/dir/x.safetensors: cannot open");
    CHECK(f.n_tensors == 0);
    tt_free(&f);
    CHECK(st_open(&f, PNDM_TEST_DATA, &err) == PNDM_ERR_IO);
    CHECK_CONTAINS(err.msg, "not a regular file");

    char path[] = "/tmp/pndm_test_st_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        close(fd); /* empty file */
        CHECK(st_open(&f, path, &err) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(err.msg, "file too small (0 bytes)");
        CHECK_CONTAINS(err.msg, path);
        size_t size;
        unsigned char *b =
            build_str("{\"x\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 6]}}", 6, &size);
        b[size - 6] = 0x80;
        b[size - 5] = 0x3f; /* 1.0 */
        CHECK(pndm_write_file_atomic(path, b, size, &err) == PNDM_OK);
        CHECK_MSG(st_open(&f, path, &err) == PNDM_OK, "%s", err.msg);
        CHECK(f.n_regions == 1 && f.regions[0].mapped && f.regions[0].size == size && f.n_tensors == 1);
        const tt_tensor *t = tt_find(&f, "x");
        if (t) {
            const float *v;
            int owned;
            CHECK(tt_tensor_f32(&f, t, &v, &owned, &err) == PNDM_OK);
            CHECK(owned && v[0] == 1.0f && v[1] == 0.0f && v[2] == 0.0f);
            if (owned) free((void *)v);
        }
        tt_free(&f);
        CHECK(f.regions == NULL && f.n_regions == 0);
        /* truncated on disk */
        CHECK(pndm_write_file_atomic(path, b, size - 1, &err) == PNDM_OK);
        CHECK(st_open(&f, path, &err) == PNDM_ERR_MODEL);
        CHECK_CONTAINS(err.msg, "tensor 'x': data_offsets [0, 6] end beyond the 5 bytes");
        tt_free(&f);
        free(b);
        unlink(path);
    }

    /* a real diffusers checkpoint (save_pretrained, safe_serialization=True) */
    const char *real = PNDM_TEST_DATA "/unet/a_dummy/model/diffusion_pytorch_model.safetensors";
    pndm_status s = st_open(&f, real, &err);
    CHECK_MSG(s == PNDM_OK, "%s", err.msg);
    if (s == PNDM_OK) {
        CHECK(f.n_tensors == 208);
        CHECK(tt_meta(&f, "format") && strcmp(tt_meta(&f, "format"), "pt") == 0);
        const tt_tensor *w = tt_find(&f, "conv_in.weight");
        CHECK(w && w->dtype == TT_F32 && w->ndim == 4 && w->shape[0] == 32 && w->shape[1] == 3 && w->shape[2] == 3 &&
              w->shape[3] == 3 && w->nbytes == 3456);
        const tt_tensor *bias = tt_find(&f, "conv_in.bias");
        CHECK(bias && bias->ndim == 1 && bias->shape[0] == 32);
        if (bias) {
            const float *v;
            int owned;
            CHECK(tt_tensor_f32(&f, bias, &v, &owned, &err) == PNDM_OK);
            CHECK(owned == 0); /* F32, aligned: in place in the mapping */
            CHECK(v[0] == 0.13795970380306244f && v[1] == -0.10218541324138641f);
            if (owned) free((void *)v);
        }
        size_t total = 0;
        for (int i = 0; i < f.n_tensors; i++) total += f.tensors[i].nbytes;
        CHECK(f.n_regions == 1 && total + 8 + 21144 == f.regions[0].size); /* tensors tile the data exactly */
        tt_free(&f);
    }
}

int main(void) {
    test_valid();
    test_f16_exhaustive();
    test_hostile();
    test_open();
    return TEST_SUMMARY();
}
