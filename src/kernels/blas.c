/* The OpenBLAS backend (see blas.h). */
#define _POSIX_C_SOURCE 200809L
#include "blas.h"
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef PNDM_HAVE_BLAS
#include <cblas.h>
#include <pthread.h>

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_init_once(void) { openblas_set_num_threads(1); }
#endif

int op_blas_available(void) {
#ifdef PNDM_HAVE_BLAS
    return 1;
#else
    return 0;
#endif
}

void blas_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
#ifdef PNDM_HAVE_BLAS
    pthread_once(&blas_once, blas_init_once);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                A, lda, B, ldb, beta, C, ldc);
#else
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)beta,
        (void)C, (void)ldc;
    fprintf(stderr, "pndm: internal error: blas_sgemm in a build without OpenBLAS\n");
    abort();
#endif
}
