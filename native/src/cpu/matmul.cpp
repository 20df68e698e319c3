#include "cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/threadpool.h"

#ifdef FQ_HAVE_CBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace fq {

bool blas_available() {
#ifdef FQ_HAVE_CBLAS
    return true;
#else
    return false;
#endif
}

void blas_set_threads(int n) {
#ifdef FQ_HAVE_CBLAS
    if (openblas_set_num_threads) openblas_set_num_threads(std::max(1, n));
#else
    (void)n;
#endif
}

namespace {

// Dot product with 8 independent accumulators so the compiler vectorizes it without -ffast-math.
[[maybe_unused]] inline float dot(const float *a, const float *b, int64_t k) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < k; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace

void matmul_nt_serial(float *out, int64_t ldo, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m,
                      int64_t n, int64_t k) {
#ifdef FQ_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, 0.0f,
                out, (int)ldo);
#else
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) out[i * ldo + j] = dot(a + i * lda, b + j * ldb, k);
#endif
}

void matmul_nn_serial(float *out, int64_t ldo, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m,
                      int64_t n, int64_t k) {
#ifdef FQ_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb,
                0.0f, out, (int)ldo);
#else
    for (int64_t i = 0; i < m; ++i) {
        float *o = out + i * ldo;
        std::fill(o, o + n, 0.0f);
        for (int64_t p = 0; p < k; ++p) {
            float av = a[i * lda + p];
            if (av == 0.0f) continue;
            const float *br = b + p * ldb;
            for (int64_t j = 0; j < n; ++j) o[j] += av * br[j];
        }
    }
#endif
}

void matmul_nt(float *out, const float *x, const float *w, int64_t m, int64_t n, int64_t k, ThreadPool &pool,
               bool accumulate) {
#ifdef FQ_HAVE_CBLAS
    (void)pool;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k,
                accumulate ? 1.0f : 0.0f, out, (int)n);
#else
    // Threads split the output columns, so each weight row is read from memory by one thread only.
    pool.parallel_for(n, [&](int64_t j0, int64_t j1) {
        for (int64_t i = 0; i < m; ++i) {
            const float *xi = x + i * k;
            float *oi = out + i * n;
            for (int64_t j = j0; j < j1; ++j) {
                float v = dot(xi, w + j * k, k);
                oi[j] = accumulate ? oi[j] + v : v;
            }
        }
    }, 16);
#endif
}

}  // namespace fq
