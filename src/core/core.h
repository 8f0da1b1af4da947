/* Internal helpers shared by every layer: errors, overflow-checked sizes, quoting for messages. */
#ifndef PNDM_CORE_H
#define PNDM_CORE_H

#include "pndm.h"
#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define CORE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CORE_PRINTF(a, b)
#endif

/* Fill err (may be NULL) with code and a formatted message; returns code. */
pndm_status core_fail(pndm_error *err, pndm_status code, const char *fmt, ...) CORE_PRINTF(3, 4);
/* Prefix the existing message in err with "prefix: " (keeps the code); returns err->code. */
pndm_status core_fail_prefix(pndm_error *err, const char *fmt, ...) CORE_PRINTF(2, 3);

/* Copy `s` into buf for a message: printable ASCII kept, other bytes as \xNN, at most ~120
 * characters then "...". */
void core_quote(char *buf, size_t size, const char *s);

/* Overflow-checked size arithmetic: return 0 on overflow, else 1 and the result in *out. */
int core_mul_size(size_t a, size_t b, size_t *out);
int core_add_size(size_t a, size_t b, size_t *out);

/* Programmer errors only (never for bad input): print file:line and abort. */
#define CORE_ASSERT(x)                                                                                                 \
    do {                                                                                                               \
        if (!(x)) {                                                                                                    \
            fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n", __FILE__, __LINE__, #x);                 \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
