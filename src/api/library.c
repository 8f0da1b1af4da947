/* Facts about the library and the machine it runs on: version, default thread count, kernel
 * path, where the bundled default model is. */
#define _XOPEN_SOURCE 700
#include "core.h"
#include "ops.h"
#include "threadpool.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PNDM_DEFAULT_MODEL_FILE
#define PNDM_DEFAULT_MODEL_FILE "fashion_mnist.safetensors"
#endif

const char *pndm_version(void) {
#ifdef PNDM_VERSION_STRING
    return PNDM_VERSION_STRING;
#else
    return "unknown";
#endif
}

int pndm_default_threads(void) { return tp_default_threads(); }

const char *pndm_kernel_path(void) {
    op_kernels k; /* what pndm_model_default_params() gives a model on this CPU */
    op_kernels_init(&k, GEMM_PATH_AVX512, OP_GEMM_AUTO, 1);
    return op_kernels_name(&k);
}

static int default_file_exists(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *pndm_default_model_path(void) {
    static char exe_rel[4096];
    const char *env = getenv("PNDM_MODEL");
    if (env && *env) return env;
    /* <prefix>/bin/pndm-gen -> <prefix>/share/pndm/<model>, wherever the prefix was moved to */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(exe_rel, sizeof exe_rel, "%.2000s/../share/pndm/%s", exe, PNDM_DEFAULT_MODEL_FILE);
            if (default_file_exists(exe_rel)) {
                static char resolved[PATH_MAX];
                return realpath(exe_rel, resolved) ? resolved : exe_rel;
            }
        }
    }
#ifdef PNDM_INSTALLED_MODEL
    if (default_file_exists(PNDM_INSTALLED_MODEL)) return PNDM_INSTALLED_MODEL;
#endif
#ifdef PNDM_SOURCE_MODEL
    if (default_file_exists(PNDM_SOURCE_MODEL)) return PNDM_SOURCE_MODEL;
#endif
    return NULL;
}
