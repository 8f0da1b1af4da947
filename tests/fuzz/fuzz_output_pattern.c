/* Fuzz target: pndm-gen's -o patterns (ss_pattern_parse / ss_pattern_name, cli/sampleset.c, for -b
 * and -N alike). Any bytes (cut at the first NUL) are parsed or refused with a reason; a parsed
 * pattern names image i as FOLDER/PREFIX + i at the pattern's width + SUFFIX, with %% turned into %
 * and nothing else of the user's text interpreted. */
#define _POSIX_C_SOURCE 200809L /* PATH_MAX */
#include "fuzz.h"
#include "sampleset.h"

#include <limits.h>
#include <string.h>

/* the reference expansion: unescape %%, replace the one %[0][N]d by i (width N, zeros if 0) */
static int expand(const char *p, long long i, char *out, size_t size) {
    size_t o = 0;
    for (const char *c = p; *c; c++) {
        char num[64];
        const char *put = NULL;
        if (c[0] == '%' && c[1] == '%') {
            put = "%";
            c++;
        } else if (c[0] == '%') {
            const char *d = c + 1;
            const int zero = *d == '0';
            if (zero) d++;
            int width = 0;
            while (*d >= '0' && *d <= '9') width = width * 10 + (*d++ - '0');
            snprintf(num, sizeof num, zero ? "%0*lld" : "%*lld", width, i);
            put = num;
            c = d; /* at the 'd' */
        }
        char one[2] = {*c, 0};
        for (const char *q = put ? put : one; *q; q++) {
            if (o + 1 >= size) return -1;
            out[o++] = *q;
        }
    }
    out[o] = 0;
    return 0;
}

/* "a//b" and "a/b" name the same file: compare paths with runs of '/' collapsed */
static void collapse_slashes(char *s) {
    char *o = s;
    for (const char *c = s; *c; c++)
        if (!(*c == '/' && o > s && o[-1] == '/')) *o++ = *c;
    *o = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char p[PATH_MAX * 2], why[256], got[PATH_MAX * 2], want[PATH_MAX * 2];
    static ss_pattern pt;
    if (size >= sizeof p) size = sizeof p - 1;
    memcpy(p, data, size);
    p[size] = 0;
    why[0] = 0;
    const int rc = ss_pattern_parse(p, &pt, why, sizeof why);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc < 0) {
        FUZZ_CHECK(why[0] != 0);
        return 0;
    }
    if (rc == 0) return 0; /* a plain name: pndm-gen uses it as given */
    FUZZ_CHECK(pt.width >= 0 && pt.width <= 20);
    const long long idx[] = {0, 7, 123456, 2147483647LL, 9999999999LL};
    for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++) {
        if (ss_pattern_name(&pt, idx[k], got, sizeof got)) continue; /* does not fit: refused by the caller */
        FUZZ_CHECK(expand(p, idx[k], want, sizeof want) == 0);
        collapse_slashes(got);
        collapse_slashes(want);
        FUZZ_CHECK(strcmp(got, want) == 0);
    }
    return 0;
}
