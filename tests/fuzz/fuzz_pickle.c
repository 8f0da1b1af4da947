/* Fuzz target: the restricted unpickler (pk_parse) and the state-dict interpretation on top of it.
 * The first input byte picks how the rest is used:
 *   0-85    the pickle alone: pk_parse, then pk_describe on every value
 *   86-170  the pickle as data.pkl of a torch zip built here, with records data/0 .. data/3
 *           (64, 16, 4 and 0 bytes), through pt_parse
 *   171-255 the pickle after the three header pickles of a legacy torch file (magic, protocol
 *           1001, system info), the rest of the input following it as the storage key list and
 *           the storages, through pt_parse
 * Properties: no crash, no out-of-bounds read, no unbounded memory (libFuzzer's limits); nothing
 * is ever called (the unpickler has no way to); a refusal carries a message; an accepted tree
 * has its root and every item inside the node array; accepted tensors lie in the input or in
 * the table's own buffers and convert to float32. */
#include "fuzz.h"
#include "pickle.h"
#include "torchbin.h"
#include "zip.h"

#include <string.h>

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff), put16(p + 2, v >> 16); }

/* a stored zip of (name, data) records; returns its size (buf holds at least cap bytes) */
static size_t make_zip(uint8_t *buf, size_t cap, const char *const *names, const uint8_t *const *datas,
                       const size_t *sizes, int n) {
    size_t o = 0, offs[8];
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        if (o + 30 + nl + sizes[i] > cap) return 0;
        offs[i] = o;
        uint8_t *h = buf + o;
        memset(h, 0, 30);
        put32(h, 0x04034b50u);
        put16(h + 4, 20);
        put32(h + 14, zip_crc32(0, datas[i], sizes[i]));
        put32(h + 18, (uint32_t)sizes[i]);
        put32(h + 22, (uint32_t)sizes[i]);
        put16(h + 26, (unsigned)nl);
        memcpy(h + 30, names[i], nl);
        if (sizes[i]) memcpy(h + 30 + nl, datas[i], sizes[i]);
        o += 30 + nl + sizes[i];
    }
    size_t cd = o;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        if (o + 46 + nl + 22 > cap) return 0;
        uint8_t *h = buf + o;
        memset(h, 0, 46);
        put32(h, 0x02014b50u);
        put16(h + 4, 20);
        put16(h + 6, 20);
        put32(h + 16, zip_crc32(0, datas[i], sizes[i]));
        put32(h + 20, (uint32_t)sizes[i]);
        put32(h + 24, (uint32_t)sizes[i]);
        put16(h + 28, (unsigned)nl);
        put32(h + 42, (uint32_t)offs[i]);
        memcpy(h + 46, names[i], nl);
        o += 46 + nl;
    }
    uint8_t *e = buf + o;
    memset(e, 0, 22);
    put32(e, 0x06054b50u);
    put16(e + 8, (unsigned)n);
    put16(e + 10, (unsigned)n);
    put32(e + 12, (uint32_t)(o - cd));
    put32(e + 16, (uint32_t)cd);
    return o + 22;
}

static void check_table(tt_table *t, const uint8_t *lo, size_t size) {
    for (int i = 0; i < t->n_tensors; i++) {
        const tt_tensor *x = &t->tensors[i];
        const uint8_t *p = x->data;
        int inside = p >= lo && (size_t)(p - lo) <= size && x->nbytes <= size - (size_t)(p - lo);
        for (int r = 0; !inside && r < t->n_regions; r++) {
            const uint8_t *a = t->regions[r].addr;
            inside =
                p >= a && (size_t)(p - a) <= t->regions[r].size && x->nbytes <= t->regions[r].size - (size_t)(p - a);
        }
        FUZZ_CHECK(inside);
        FUZZ_CHECK(tt_find(t, x->name) == x);
        const float *v;
        int owned;
        pndm_error err;
        if (tt_tensor_f32(t, x, &v, &owned, &err) == PNDM_OK && owned) free((void *)v);
    }
}

static void run_torch(const uint8_t *buf, size_t n) {
    tt_table t;
    pndm_error err = {0};
    pndm_status st = pt_parse(&t, buf, n, "fuzz.bin", 1, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(t.n_tensors == 0);
    } else {
        check_table(&t, buf, n);
    }
    tt_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1u << 20)) return 0;
    const uint8_t mode = data[0];
    const uint8_t *p = data + 1;
    const size_t n = size - 1;
    if (mode < 86) {
        pk_doc d;
        pndm_error err = {0};
        size_t end = 0;
        pndm_status st = pk_parse(&d, p, n, "fuzz.pkl", &end, &err);
        if (st != PNDM_OK) {
            FUZZ_CHECK_ERR(st, err);
            FUZZ_CHECK(d.nodes == NULL && d.n_nodes == 0);
            return 0;
        }
        FUZZ_CHECK(end >= 1 && end <= n && d.root < d.n_nodes);
        char buf[200];
        for (uint32_t i = 0; i < d.n_nodes; i++) {
            const pk_node *x = pk_node_at(&d, i);
            FUZZ_CHECK(x->n <= x->cap || x->items == NULL);
            for (uint32_t k = 0; k < x->n; k++) FUZZ_CHECK(x->items[k] < d.n_nodes);
            FUZZ_CHECK(x->depth <= PK_MAX_DEPTH);
            pk_describe(&d, i, buf, sizeof buf);
            FUZZ_CHECK(memchr(buf, 0, sizeof buf) != NULL);
        }
        pk_free(&d);
    } else if (mode < 171) {
        static const uint8_t rec0[64] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x3c, 0x80, 0x3f};
        static const uint8_t rec1[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        static const uint8_t rec2[4] = {0, 0, 0xc0, 0x7f};
        const char *names[] = {"archive/data.pkl", "archive/data/0", "archive/data/1",
                               "archive/data/2",   "archive/data/3", "archive/version"};
        const uint8_t *datas[] = {p, rec0, rec1, rec2, rec2, (const uint8_t *)"3\n"};
        const size_t sizes[] = {n, sizeof rec0, sizeof rec1, sizeof rec2, 0, 2};
        size_t cap = n + 1024;
        uint8_t *buf = malloc(cap);
        if (!buf) return 0;
        size_t zn = make_zip(buf, cap, names, datas, sizes, 6);
        if (zn) run_torch(buf, zn);
        free(buf);
    } else {
        /* magic, protocol 1001, {'little_endian': True} */
        static const uint8_t head[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
                                       0x50, 0x19, 0x2e, 0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e, 0x80, 0x02, 0x7d,
                                       0x58, 0x0d, 0x00, 0x00, 0x00, 'l',  'i',  't',  't',  'l',  'e',  '_',
                                       'e',  'n',  'd',  'i',  'a',  'n',  0x88, 0x73, 0x2e};
        uint8_t *buf = malloc(sizeof head + n + 1);
        if (!buf) return 0;
        memcpy(buf, head, sizeof head);
        if (n) memcpy(buf + sizeof head, p, n);
        run_torch(buf, sizeof head + n);
        free(buf);
    }
    return 0;
}
