/* Fuzz target: safetensors header and data (st_parse, then every accessor on what it accepted).
 * Properties: no crash or out-of-bounds read; a refusal carries a message; every accepted tensor
 * lies inside the buffer, is findable by name and converts to float32; tt_check_finite accepts
 * exactly the files whose converted values are all finite. */
#include "fuzz.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tt_table f;
    pndm_error err = {0};
    pndm_status st = st_parse(&f, data, size, "fuzz.safetensors", &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(f.n_tensors == 0 && f.tensors == NULL); /* left empty */
        tt_free(&f);
        return 0;
    }
    /* tt_check_finite agrees with the converted values */
    int finite = tt_check_finite(&f, &err) == PNDM_OK;
    if (!finite) FUZZ_CHECK(err.code == PNDM_ERR_MODEL && err.msg[0] != 0);
    int seen_nonfinite = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const tt_tensor *t = &f.tensors[i];
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data && (size_t)(p - data) <= size && t->nbytes <= size - (size_t)(p - data));
        FUZZ_CHECK(tt_find(&f, t->name) == t);
        const float *v;
        int owned;
        if (tt_tensor_f32(&f, t, &v, &owned, &err) == PNDM_OK) {
            for (size_t k = 0; k < t->count; k++)
                if (!isfinite(v[k])) seen_nonfinite = 1;
            if (owned) free((void *)v);
        } else {
            FUZZ_CHECK(err.msg[0] != 0);
        }
    }
    FUZZ_CHECK(finite == !seen_nonfinite);
    for (int i = 0; i < f.n_meta; i++) FUZZ_CHECK(tt_meta(&f, f.meta_keys[i]) != NULL);
    FUZZ_CHECK(tt_find(&f, "\x01 no such tensor") == NULL);
    tt_free(&f);
    return 0;
}
