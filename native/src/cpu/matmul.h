// FP32 matrix products of the CPU backend: a CBLAS when the build found one (FQ_HAVE_CBLAS), otherwise a blocked,
// threaded loop nest of our own. Row-major throughout.
#pragma once

#include <cstdint>

namespace fq {
class ThreadPool;

// out[m][n] = x[m][k] . w[n][k]^T (+ out when accumulate). Linear layers: w is the [out][in] weight.
void matmul_nt(float *out, const float *x, const float *w, int64_t m, int64_t n, int64_t k, ThreadPool &pool,
               bool accumulate = false);

// out[m][n] = a[m][k] . b[k][n], with leading dimensions (in elements) lda, ldb, ldo. Single-threaded: callers
// parallelize over independent products (e.g. attention heads).
void matmul_nn_serial(float *out, int64_t ldo, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m,
                      int64_t n, int64_t k);
// out[m][n] = a[m][k] . b[n][k]^T with leading dimensions, single-threaded.
void matmul_nt_serial(float *out, int64_t ldo, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m,
                      int64_t n, int64_t k);

// Limits the threads the CBLAS may use (no-op without one or when it has no such control).
void blas_set_threads(int n);
bool blas_available();

}  // namespace fq
