/* Fuzz target: the PNG decoder (pndm_png_decode). An accepted image is re-encoded and decoded
 * again: the round trip must give the same size, channels and pixels. */
#include "fuzz.h"
#include "pndm.h"
#include "pndm_io.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pndm_error err = {0};
    uint8_t *px = NULL;
    int w, h, c;
    pndm_status st = pndm_png_decode(data, size, "fuzz.png", &px, &w, &h, &c, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(px == NULL);
        return 0;
    }
    FUZZ_CHECK(w >= 1 && h >= 1 && (c == 1 || c == 3));
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    if (n <= ((size_t)1 << 22)) {
        void *enc = NULL;
        size_t enc_size = 0;
        pndm_png_text t = {"k", "v"};
        if (pndm_png_encode(px, w, h, c, &t, 1, &enc, &enc_size, &err) == PNDM_OK) {
            uint8_t *px2 = NULL;
            int w2, h2, c2;
            FUZZ_CHECK(pndm_png_decode(enc, enc_size, "roundtrip.png", &px2, &w2, &h2, &c2, &err) == PNDM_OK);
            FUZZ_CHECK(w2 == w && h2 == h && c2 == c && memcmp(px, px2, n) == 0);
            free(px2);
            free(enc);
        }
    }
    free(px);
    return 0;
}
