/* Internal helpers shared by every module: errors, checked allocation, file I/O. */
#ifndef PNDM_UTIL_H
#define PNDM_UTIL_H

#include "pndm.h"
#include <stdio.h>
#include <stdlib.h>

#if defined(__GNUC__)
#define PNDM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PNDM_PRINTF(a, b)
#endif

/* Fill err (may be NULL) with code and a formatted message; returns code. */
pndm_status pndm_fail(pndm_error *err, pndm_status code, const char *fmt, ...) PNDM_PRINTF(3, 4);
/* Prefix the existing message in err with "prefix: " (keeps the code); returns err->code. */
pndm_status pndm_fail_prefix(pndm_error *err, const char *fmt, ...) PNDM_PRINTF(2, 3);
/* Clear err to PNDM_OK. */
void pndm_error_clear(pndm_error *err);

/* Overflow-checked size arithmetic: return 0 on overflow, else 1 and the result in *out. */
int pndm_mul_size(size_t a, size_t b, size_t *out);
int pndm_add_size(size_t a, size_t b, size_t *out);

/* Programmer errors only (never for bad input): print file:line and abort. */
#define PNDM_ASSERT(x) do { if (!(x)) { fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n", __FILE__, __LINE__, #x); abort(); } } while (0)

#endif
