/* Fuzz target: the .npy reader (pndm_npy_parse), conversion to float32 and, for float32 arrays,
 * an encode -> parse round trip that must give the same shape and bytes. */
#include "fuzz.h"
#include "pndm.h"
#include "pndm_io.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pndm_npy a;
    pndm_error err = {0};
    pndm_status st = pndm_npy_parse(data, size, "fuzz.npy", &a, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(a.data == NULL);
        return 0;
    }
    FUZZ_CHECK(a.ndim >= 0 && a.ndim <= 8);
    size_t count = 1;
    for (int i = 0; i < a.ndim; i++) count *= (size_t)a.shape[i];
    FUZZ_CHECK(count == a.count);
    float *f = NULL;
    if (pndm_npy_to_f32(&a, &f, &err) == PNDM_OK) {
        if (a.dtype == PNDM_NPY_F32) {
            FUZZ_CHECK(a.count == 0 || memcmp(f, a.data, a.count * sizeof(float)) == 0);
            void *enc = NULL;
            size_t n = 0;
            if (pndm_npy_encode_f32(f, a.ndim, a.shape, &enc, &n, &err) == PNDM_OK) {
                pndm_npy b;
                FUZZ_CHECK(pndm_npy_parse(enc, n, "roundtrip.npy", &b, &err) == PNDM_OK);
                FUZZ_CHECK(b.ndim == a.ndim && b.count == a.count && b.dtype == PNDM_NPY_F32);
                FUZZ_CHECK(memcmp(b.shape, a.shape, sizeof a.shape) == 0);
                FUZZ_CHECK(a.count == 0 || memcmp(b.data, a.data, a.count * sizeof(float)) == 0);
                pndm_npy_free(&b);
                free(enc);
            }
        }
        free(f);
    }
    pndm_npy_free(&a);
    return 0;
}
