/* The OpenBLAS backend (CMake option PNDM_BLAS): matrix products through cblas_sgemm. */
#define _POSIX_C_SOURCE 200809L
#include "ops.h"

int op_blas_available(void) {
#ifdef PNDM_HAVE_BLAS
    return 1;
#else
    return 0;
#endif
}
