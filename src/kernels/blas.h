/* The OpenBLAS backend (CMake option PNDM_BLAS): one row-major single-precision product
 *
 *     C (M x N) = op(A) op(B) + beta C      op(X) = X or X^T, alpha = 1
 *
 * through cblas_sgemm, with OpenBLAS held to one thread (openblas_set_num_threads(1), once, on
 * first use): pndm's own pool runs the products in parallel, each on a block whose shape depends
 * only on the tensor shapes (never on the thread count or on where an image sits in a batch), so
 * the bytes stay the same for every --threads and batch split, as on the native path. */
#ifndef PNDM_BLAS_H
#define PNDM_BLAS_H

/* Only valid when op_blas_available(); trans_a / trans_b: 0 or 1. */
void blas_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);

#endif
