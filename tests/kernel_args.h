/* The kernel choices of a golden test run, from its command line (tests/CMakeLists.txt runs the
 * golden parity tests once per GEMM backend):
 *   --gemm native|openblas|auto   --kernel generic|avx2|avx512|auto   --no-winograd
 * Models of the golden cases are loaded with test_params (pndm_model_load_ex). */
#ifndef PNDM_TEST_KERNEL_ARGS_H
#define PNDM_TEST_KERNEL_ARGS_H
#include "pndm.h"

#include <stdio.h>
#include <string.h>

static pndm_model_params test_params;

/* 0 on success; prints the problem and returns 2 on an unknown argument. */
static int test_kernel_args(int argc, char **argv) {
    test_params = pndm_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--no-winograd") == 0) {
            test_params.winograd = 0;
            continue;
        }
        if (strcmp(a, "--gemm") == 0 &&
            (strcmp(v, "native") == 0 || strcmp(v, "openblas") == 0 || strcmp(v, "auto") == 0)) {
            test_params.gemm = v[0] == 'n' ? PNDM_GEMM_NATIVE : v[0] == 'o' ? PNDM_GEMM_OPENBLAS : PNDM_GEMM_AUTO;
            i++;
            continue;
        }
        if (strcmp(a, "--kernel") == 0 &&
            (strcmp(v, "generic") == 0 || strcmp(v, "avx2") == 0 || strcmp(v, "avx512") == 0 ||
             strcmp(v, "auto") == 0)) {
            test_params.kernel = v[0] == 'g' ? PNDM_KERNEL_GENERIC
                : strcmp(v, "avx2") == 0     ? PNDM_KERNEL_AVX2
                : v[1] == 'v'                ? PNDM_KERNEL_AVX512
                                             : PNDM_KERNEL_AUTO;
            i++;
            continue;
        }
        fprintf(stderr,
                "unknown argument '%s' (--gemm native|openblas|auto, --kernel generic|avx2|avx512|auto, "
                "--no-winograd)\n",
                a);
        return 2;
    }
    return 0;
}
#endif
