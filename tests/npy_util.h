/* .npy fixtures read as float32 by the tests: pndm_io.h's reader and its conversion, one place. */
#ifndef PNDM_TEST_NPY_UTIL_H
#define PNDM_TEST_NPY_UTIL_H
#include "pndm_io.h"

#include <stdio.h>
#include <stdlib.h>

/* PATH as float32 (malloc'd, free()); NULL after a message naming the file when it cannot be read
 * or converted. n (may be NULL): element count; meta (may be NULL): dtype and shape, data cleared. */
static inline float *test_npy_f32(const char *path, size_t *n, pndm_npy *meta) {
    pndm_npy a;
    pndm_error err;
    float *f = NULL;
    if (pndm_npy_load(path, &a, &err) != PNDM_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, err.msg);
        return NULL;
    }
    if (pndm_npy_to_f32(&a, &f, &err) != PNDM_OK) {
        fprintf(stderr, "cannot convert %s to float32: %s\n", path, err.msg);
        f = NULL;
    }
    if (n) *n = a.count;
    if (meta) {
        *meta = a;
        meta->data = NULL;
    }
    pndm_npy_free(&a);
    return f;
}

/* the same for fixtures the test cannot go on without (they are part of the repo): exit(2) */
static inline float *test_npy_f32_or_exit(const char *path, size_t *n, pndm_npy *meta) {
    float *f = test_npy_f32(path, n, meta);
    if (!f) exit(2);
    return f;
}
#endif
