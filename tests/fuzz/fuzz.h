/* Shared by the fuzz targets: the libFuzzer entry point each target defines, and small helpers.
 * Every target is built twice: as a libFuzzer binary (-DPNDM_FUZZ=ON, clang) and linked with
 * replay.c into a plain program that feeds a corpus to the same function (ctest, label fuzz). */
#ifndef PNDM_FUZZ_H
#define PNDM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code under test must keep: report and abort (a crash for libFuzzer, a failure
 * for the replay driver). Never compiled out. */
#define FUZZ_CHECK(x)                                                                                                  \
    do {                                                                                                               \
        if (!(x)) {                                                                                                    \
            fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #x);                              \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* An error must carry a message and the same code as returned. */
#define FUZZ_CHECK_ERR(st, err)                                                                                        \
    do {                                                                                                               \
        FUZZ_CHECK((err).code == (st));                                                                                \
        FUZZ_CHECK((err).msg[0] != 0);                                                                                 \
    } while (0)

#endif
