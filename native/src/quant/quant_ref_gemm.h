// Small row-major matrix products private to the calibration reference ops in native/src/quant/.
//
// These are plain loops with a double accumulator. The quant ops are the CPU reference that the CUDA calibration
// kernels are checked against, so accuracy and obviousness come before speed; this is not a general GEMM (the
// backend one lives in native/src/cpu/). Every function writes C (=) unless `accumulate` is set (+=).
// TC/TA/TB may differ so that double scratch matrices mix with float tensors without copies.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fq::quant::detail {

// C[m][n] = A[m][k] * B[k][n]
template <typename TC, typename TA, typename TB>
inline void ref_gemm_nn(TC *c, const TA *a, const TB *b, int64_t m, int64_t k, int64_t n, bool accumulate) {
    std::vector<double> acc(static_cast<size_t>(n));
    for (int64_t i = 0; i < m; i++) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t p = 0; p < k; p++) {
            const double aip = static_cast<double>(a[i * k + p]);
            if (aip == 0.0) continue;
            const TB *brow = b + p * n;
            for (int64_t j = 0; j < n; j++) acc[j] += aip * static_cast<double>(brow[j]);
        }
        TC *crow = c + i * n;
        for (int64_t j = 0; j < n; j++) {
            crow[j] = accumulate ? static_cast<TC>(static_cast<double>(crow[j]) + acc[j]) : static_cast<TC>(acc[j]);
        }
    }
}

// C[m][n] = A[m][k] * B[n][k]^T   (the y = x W^T of a linear layer)
template <typename TC, typename TA, typename TB>
inline void ref_gemm_nt(TC *c, const TA *a, const TB *b, int64_t m, int64_t k, int64_t n, bool accumulate) {
    for (int64_t i = 0; i < m; i++) {
        const TA *arow = a + i * k;
        for (int64_t j = 0; j < n; j++) {
            const TB *brow = b + j * k;
            double acc = 0.0;
            for (int64_t p = 0; p < k; p++) acc += static_cast<double>(arow[p]) * static_cast<double>(brow[p]);
            TC &dst = c[i * n + j];
            dst = accumulate ? static_cast<TC>(static_cast<double>(dst) + acc) : static_cast<TC>(acc);
        }
    }
}

// C[m][n] = A[k][m]^T * B[k][n]   (the dW = dY^T X of a linear layer). Rows of C are produced in blocks so the
// double accumulator stays small (block x n) even for wide weights.
template <typename TC, typename TA, typename TB>
inline void ref_gemm_tn(TC *c, const TA *a, const TB *b, int64_t m, int64_t k, int64_t n, bool accumulate) {
    constexpr int64_t kBlock = 64;
    std::vector<double> acc(static_cast<size_t>(kBlock * n));
    for (int64_t i0 = 0; i0 < m; i0 += kBlock) {
        const int64_t bi = (m - i0 < kBlock) ? (m - i0) : kBlock;
        std::fill(acc.begin(), acc.begin() + bi * n, 0.0);
        for (int64_t p = 0; p < k; p++) {
            const TB *brow = b + p * n;
            for (int64_t ii = 0; ii < bi; ii++) {
                const double api = static_cast<double>(a[p * m + i0 + ii]);
                if (api == 0.0) continue;
                double *accrow = acc.data() + ii * n;
                for (int64_t j = 0; j < n; j++) accrow[j] += api * static_cast<double>(brow[j]);
            }
        }
        for (int64_t ii = 0; ii < bi; ii++) {
            TC *crow = c + (i0 + ii) * n;
            const double *accrow = acc.data() + ii * n;
            for (int64_t j = 0; j < n; j++) {
                crow[j] = accumulate ? static_cast<TC>(static_cast<double>(crow[j]) + accrow[j])
                                     : static_cast<TC>(accrow[j]);
            }
        }
    }
}

}  // namespace fq::quant::detail
