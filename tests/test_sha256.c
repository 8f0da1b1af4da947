// ctest-label: unit
/* SHA-256 against the FIPS 180-4 / NIST example vectors, incremental updates split at every
 * offset (block-boundary handling), and the public pndm_sha256_hex. */
#include "harness.h"
#include "pndm_io.h"
#include "sha256.h"

#include <stdlib.h>
#include <string.h>

static void check_hex(const char *msg, size_t len, const char *want) {
    char hex[65];
    sha256_hex(msg, len, hex);
    CHECK_MSG(strcmp(hex, want) == 0, "sha256(%zu bytes) = %s, want %s", len, hex, want);
}

int main(void) {
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
        "nopqrstu";
    check_hex(four, strlen(four), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* one million 'a' */
    char *a = malloc(1000000);
    CHECK(a != NULL);
    if (a) {
        memset(a, 'a', 1000000);
        check_hex(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        /* incremental, split at every offset of the first 200 bytes: same digest as one call */
        char whole[65];
        sha256_hex(a, 1000, whole);
        for (size_t cut = 0; cut <= 200; cut++) {
            sha256_ctx c;
            uint8_t d[32];
            char hex[65];
            sha256_init(&c);
            sha256_update(&c, a, cut);
            sha256_update(&c, a + cut, 1000 - cut);
            sha256_final(&c, d);
            sha256_to_hex(d, hex);
            CHECK_MSG(strcmp(hex, whole) == 0, "split at %zu", cut);
        }
        free(a);
    }
    /* the run-time path (SHA-NI where the CPU has it) against the portable one, on every length
     * up to 300 bytes and on a few large buffers fed in uneven pieces */
    printf("sha256 implementation: %s\n", sha256_impl());
    unsigned char *r = malloc(1 << 20);
    CHECK(r != NULL);
    if (r) {
        uint32_t s = 12345;
        for (size_t i = 0; i < (1u << 20); i++) r[i] = (unsigned char)((s = s * 1103515245u + 12345u) >> 24);
        for (size_t len = 0; len <= (1u << 20); len = len < 300 ? len + 1 : len * 3 + 7) {
            sha256_ctx c1, c2;
            uint8_t d1[32], d2[32];
            sha256_init(&c1);
            sha256_init_portable(&c2);
            for (size_t o = 0, step = 1; o < len; o += step, step = step * 2 + 3) {
                size_t k = len - o < step ? len - o : step;
                sha256_update(&c1, r + o, k);
            }
            sha256_update(&c2, r, len);
            sha256_final(&c1, d1);
            sha256_final(&c2, d2);
            CHECK_MSG(memcmp(d1, d2, 32) == 0, "%s and portable differ at %zu bytes", sha256_impl(), len);
        }
        free(r);
    }
    char hex[65];
    pndm_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    return TEST_SUMMARY();
}
