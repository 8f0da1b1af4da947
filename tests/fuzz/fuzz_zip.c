/* Fuzz target: the zip reader (zip_open with and without an archive folder, zip_find, CRC) and
 * the PyTorch checkpoint reader on top of it (pt_parse, with and without the CRC check, so that
 * mutated archives still reach the unpickler and the storage checks).
 * Properties: no crash or out-of-bounds read; a refusal carries a message and leaves nothing
 * behind; every accepted entry lies inside the input, is found by its name, and entries do not
 * overlap; with a folder, every name starts with it; every tensor pt_parse accepts lies inside
 * the input or in a buffer the table owns, is findable, converts to float32. */
#include "fuzz.h"
#include "torchbin.h"
#include "zip.h"

#include <string.h>

static void check_archive(const uint8_t *data, size_t size, int want_prefix) {
    zip_archive z;
    pndm_error err = {0};
    pndm_status st = zip_open(&z, data, size, "fuzz.zip", want_prefix, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(z.entries == NULL && z.n_entries == 0);
        zip_close(&z);
        return;
    }
    size_t pl = strlen(z.prefix);
    for (int i = 0; i < z.n_entries; i++) {
        const zip_entry *e = &z.entries[i];
        FUZZ_CHECK(e->data >= data && (size_t)(e->data - data) <= size && e->size <= size - (size_t)(e->data - data));
        FUZZ_CHECK(zip_find(&z, e->name) == e);
        FUZZ_CHECK(strncmp(e->name, z.prefix, pl) == 0);
        FUZZ_CHECK(e->method == 0 && !(e->flags & 0x41));
        pndm_status c = zip_check_crc(&z, e, &err);
        FUZZ_CHECK(c == PNDM_OK || (c == PNDM_ERR_MODEL && err.msg[0]));
        for (int j = 0; j < i; j++) { /* [data, data + size) of two entries never overlap */
            const zip_entry *f = &z.entries[j];
            if (e->size && f->size) FUZZ_CHECK(e->data + e->size <= f->data || f->data + f->size <= e->data);
        }
    }
    FUZZ_CHECK(zip_find(&z, "\x01 no such entry") == NULL);
    zip_close(&z);
}

static void check_torch(const uint8_t *data, size_t size, int verify_crc) {
    tt_table t;
    pndm_error err = {0};
    pndm_status st = pt_parse(&t, data, size, "fuzz.bin", verify_crc, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(t.n_tensors == 0 && t.tensors == NULL);
        tt_free(&t);
        return;
    }
    for (int i = 0; i < t.n_tensors; i++) {
        const tt_tensor *x = &t.tensors[i];
        const uint8_t *p = x->data;
        int inside = p >= data && (size_t)(p - data) <= size && x->nbytes <= size - (size_t)(p - data);
        for (int r = 0; !inside && r < t.n_regions; r++) {
            const uint8_t *a = t.regions[r].addr;
            inside = p >= a && (size_t)(p - a) <= t.regions[r].size && x->nbytes <= t.regions[r].size - (size_t)(p - a);
        }
        FUZZ_CHECK(inside);
        FUZZ_CHECK(tt_find(&t, x->name) == x);
        const float *v;
        int owned;
        if (tt_tensor_f32(&t, x, &v, &owned, &err) == PNDM_OK && owned) free((void *)v);
    }
    tt_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* both CRC paths agree on the input and on every suffix of it */
    FUZZ_CHECK(zip_crc32(0, data, size) == zip_crc32_portable(0, data, size));
    if (size > 7) FUZZ_CHECK(zip_crc32(0, data + 7, size - 7) == zip_crc32_portable(0, data + 7, size - 7));
    check_archive(data, size, 0);
    check_archive(data, size, 1);
    check_torch(data, size, 0);
    check_torch(data, size, 1);
    return 0;
}
