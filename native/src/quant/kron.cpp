#include "quant/kron.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "quant/quant_ref_gemm.h"

namespace fq::quant {

using detail::ref_gemm_nn;
using detail::ref_gemm_nt;
using detail::ref_gemm_tn;

namespace {

int64_t isqrt_floor(int64_t v) {
    int64_t r = static_cast<int64_t>(std::sqrt(static_cast<double>(v)));
    while (r * r > v) r--;
    while ((r + 1) * (r + 1) <= v) r++;
    return r;
}

void check_dims(int64_t rows, int n1, int n2) {
    FQ_CHECK(rows >= 0 && n1 > 0 && n2 > 0, FQ_STATUS_INVALID_ARGUMENT, "kron_transform: bad sizes rows=%lld n1=%d n2=%d",
             static_cast<long long>(rows), n1, n2);
}

}  // namespace

DecomposeDims decompose_dim(int64_t n) {
    FQ_CHECK(n >= 1 && n <= (int64_t{1} << 40), FQ_STATUS_INVALID_ARGUMENT, "decompose_dim: bad n=%lld",
             static_cast<long long>(n));
    int64_t a = isqrt_floor(n);
    if (a * a < n) a++;
    for (;;) {
        const int64_t t = a * a - n;
        const int64_t b = isqrt_floor(t);
        if (b * b == t) return DecomposeDims{static_cast<int>(a - b), static_cast<int>(a + b)};
        a++;
    }
}

template <typename T>
void kron_transform_forward(T *out, const T *inp, const T *p1, const T *p2, int64_t rows, int n1, int n2) {
    check_dims(rows, n1, n2);
    const int64_t n = int64_t{n1} * n2;
    std::vector<double> z(static_cast<size_t>(n)), y(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; r++) {
        const T *x = inp + r * n;
        // Z[n1][n2] = X P2
        if (p2) {
            ref_gemm_nn(z.data(), x, p2, n1, n2, n2, false);
        } else {
            for (int64_t i = 0; i < n; i++) z[i] = static_cast<double>(x[i]);
        }
        // Y[n1][n2] = P1^T Z
        if (p1) {
            ref_gemm_tn(y.data(), p1, z.data(), n1, n1, n2, false);
        } else {
            y = z;
        }
        T *o = out + r * n;
        for (int64_t i = 0; i < n; i++) o[i] = static_cast<T>(y[i]);
    }
}

template <typename T>
void kron_transform_backward(T *dinp, T *dp1, T *dp2, const T *dout, const T *inp, const T *p1, const T *p2,
                             int64_t rows, int n1, int n2) {
    check_dims(rows, n1, n2);
    FQ_CHECK(!(dp1 && !p1) && !(dp2 && !p2), FQ_STATUS_INVALID_ARGUMENT,
             "kron_transform_backward: a gradient was requested for an identity factor");
    const int64_t n = int64_t{n1} * n2;
    std::vector<double> g(static_cast<size_t>(n)), h(static_cast<size_t>(n)), tmp(static_cast<size_t>(n));
    // Parameter gradients are summed over all rows in double and added once at the end.
    std::vector<double> acc1(dp1 ? static_cast<size_t>(n1) * n1 : 0), acc2(dp2 ? static_cast<size_t>(n2) * n2 : 0);
    for (int64_t r = 0; r < rows; r++) {
        const T *x = inp + r * n;
        for (int64_t i = 0; i < n; i++) g[i] = static_cast<double>(dout[r * n + i]);
        if (dp1) {
            // Z = X P2; dP1 += Z G^T   ([n1][n2] x [n2][n1])
            if (p2) {
                ref_gemm_nn(tmp.data(), x, p2, n1, n2, n2, false);
            } else {
                for (int64_t i = 0; i < n; i++) tmp[i] = static_cast<double>(x[i]);
            }
            ref_gemm_nt(acc1.data(), tmp.data(), g.data(), n1, n2, n1, true);
        }
        if (dp2) {
            // W = P1^T X; dP2 += W^T G   ([n2][n1] x [n1][n2])
            if (p1) {
                ref_gemm_tn(tmp.data(), p1, x, n1, n1, n2, false);
            } else {
                for (int64_t i = 0; i < n; i++) tmp[i] = static_cast<double>(x[i]);
            }
            ref_gemm_tn(acc2.data(), tmp.data(), g.data(), n2, n1, n2, true);
        }
        if (dinp) {
            // H = P1 G, dX = H P2^T
            if (p1) {
                ref_gemm_nn(h.data(), p1, g.data(), n1, n1, n2, false);
            } else {
                h = g;
            }
            if (p2) {
                ref_gemm_nt(tmp.data(), h.data(), p2, n1, n2, n2, false);
            } else {
                tmp = h;
            }
            T *d = dinp + r * n;
            for (int64_t i = 0; i < n; i++) d[i] = static_cast<T>(tmp[i]);
        }
    }
    if (dp1) {
        for (size_t i = 0; i < acc1.size(); i++) dp1[i] = static_cast<T>(static_cast<double>(dp1[i]) + acc1[i]);
    }
    if (dp2) {
        for (size_t i = 0; i < acc2.size(); i++) dp2[i] = static_cast<T>(static_cast<double>(dp2[i]) + acc2[i]);
    }
}

template <typename T>
void transpose(T *out, const T *inp, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) out[j * rows + i] = inp[i * cols + j];
    }
}

#define FQ_INSTANTIATE(T)                                                                                        \
    template void kron_transform_forward<T>(T *, const T *, const T *, const T *, int64_t, int, int);           \
    template void kron_transform_backward<T>(T *, T *, T *, const T *, const T *, const T *, const T *, int64_t, \
                                             int, int);                                                         \
    template void transpose<T>(T *, const T *, int64_t, int64_t);
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant
