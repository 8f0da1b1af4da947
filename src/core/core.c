/* Errors, size arithmetic, status names and the version. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

pndm_status core_fail(pndm_error *err, pndm_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

pndm_status core_fail_prefix(pndm_error *err, const char *fmt, ...) {
    if (!err) return PNDM_ERR_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl > sizeof err->msg - 3) pl = sizeof err->msg - 3;
    memcpy(err->msg, prefix, pl);
    err->msg[pl] = ':';
    err->msg[pl + 1] = ' ';
    size_t rest = sizeof err->msg - pl - 3;
    size_t ol = strlen(old);
    if (ol > rest) ol = rest;
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = 0;
    return err->code;
}

int core_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int core_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

const char *pndm_status_name(pndm_status s) {
    switch (s) {
    case PNDM_OK: return "ok";
    case PNDM_ERR_INTERNAL: return "internal error";
    case PNDM_ERR_USAGE: return "usage error";
    case PNDM_ERR_MODEL: return "model error";
    case PNDM_ERR_IO: return "I/O error";
    case PNDM_ERR_NOMEM: return "out of memory";
    case PNDM_ERR_INPUT: return "input error";
    case PNDM_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

/* Copy `s` for a message: printable ASCII kept, other bytes as \xNN, at most ~120 chars. */
void core_quote(char *buf, size_t size, const char *s) {
    size_t o = 0;
    if (size == 0) return;
    if (!s) s = "(null)";
    for (size_t i = 0; s[i] && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 120) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 32 && c < 127 && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        }
    }
    buf[o] = 0;
}
