/* SHA-256 (FIPS 180-4), incremental: for content hashes of weights (model identity in the
 * metadata) and of written files (sample-set manifests). */
#ifndef PNDM_SHA256_H
#define PNDM_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    unsigned char buf[64];
    size_t n;     /* bytes in buf */
    int portable; /* 1: never the SHA-NI path (tests compare the two) */
} sha256_ctx;

/* The block function is chosen at run time: the x86 SHA extensions where the CPU has them,
 * else portable C (sha256_impl() says which: "sha-ni" or "portable"). Same digests. */
void sha256_init(sha256_ctx *c);
void sha256_init_portable(sha256_ctx *c);
const char *sha256_impl(void);
void sha256_update(sha256_ctx *c, const void *data, size_t size);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* One call: 64 lowercase hex digits + NUL into hex. */
void sha256_hex(const void *data, size_t size, char hex[65]);
void sha256_to_hex(const uint8_t digest[32], char hex[65]);

#endif
