/* Tiny test harness: checks never depend on NDEBUG; each failure prints file:line.
 * A test's main ends with `return TEST_SUMMARY();` */
#ifndef PNDM_TEST_HARNESS_H
#define PNDM_TEST_HARNESS_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures_ = 0, test_checks_ = 0;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        test_checks_++;                                                                                                \
        if (!(cond)) {                                                                                                 \
            test_failures_++;                                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                                           \
    do {                                                                                                               \
        test_checks_++;                                                                                                \
        if (!(cond)) {                                                                                                 \
            test_failures_++;                                                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                                   \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                                          \
    do {                                                                                                               \
        double a_ = (a), b_ = (b);                                                                                     \
        test_checks_++;                                                                                                \
        if (!(fabs(a_ - b_) <= (tol))) {                                                                               \
            test_failures_++;                                                                                          \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%.9g %s=%.9g tol=%.3g\n", __FILE__, __LINE__, #a, a_, #b,    \
                    b_, (double)(tol));                                                                                \
        }                                                                                                              \
    } while (0)
/* substring check on an error message */
#define CHECK_CONTAINS(hay, needle)                                                                                    \
    do {                                                                                                               \
        const char *h_ = (hay);                                                                                        \
        test_checks_++;                                                                                                \
        if (!h_ || !strstr(h_, (needle))) {                                                                            \
            test_failures_++;                                                                                          \
            fprintf(stderr, "%s:%d: expected message containing '%s', got '%s'\n", __FILE__, __LINE__, (needle),       \
                    h_ ? h_ : "(null)");                                                                               \
        }                                                                                                              \
    } while (0)

/* max |a-b| over n floats */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}
static inline double test_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i]);
        if (d > m) m = d;
    }
    return m;
}
/* normalised error check: max|a-b| <= rtol * max(1, max|b|) */
#define CHECK_CLOSE_ARR(a, b, n, rtol)                                                                                 \
    do {                                                                                                               \
        double md_ = test_max_abs_diff((a), (b), (n));                                                                 \
        double mb_ = test_max_abs((b), (n));                                                                           \
        double lim_ = (rtol) * (mb_ > 1 ? mb_ : 1);                                                                    \
        test_checks_++;                                                                                                \
        if (!(md_ <= lim_)) {                                                                                          \
            test_failures_++;                                                                                          \
            fprintf(stderr, "%s:%d: arrays differ: max|err|=%.3g > %.3g (max|ref|=%.3g)\n", __FILE__, __LINE__, md_,   \
                    lim_, mb_);                                                                                        \
        }                                                                                                              \
    } while (0)

#define TEST_SUMMARY() (printf("%d checks, %d failed\n", test_checks_, test_failures_), test_failures_ ? 1 : 0)
#endif
