// Kronecker-factored transforms of FlatQuant (spec sections 2.1-2.3), forward and backward.
//
// Row-vector convention: a token is a row x in R^n, n = n1*n2, read row-major as X[n1][n2] (element i*n2 + j is
// X[i][j]). kron_transform computes, per row, X' = P1^T X P2, which is vec_r(X') = x (P1 (x) P2), the official
// kronecker_matmul. The same function transforms
//   - activations: x' = x (P1 (x) P2)                      with (P1, P2) = the factors,
//   - weights:     W' = W (P1 (x) P2)^{-T}, row by row      with (P1^{-T}, P2^{-T}),
//   - a single axis: P1 = nullptr or P2 = nullptr means the identity on that axis, e.g. the o_proj head mixer
//     P_h^T X (n1 = heads, n2 = head_dim, P2 = nullptr) or a per-head k P_k (P1 = nullptr).
//
// Sizes: rows = tokens (or weight rows), n1 x n2 = the factor sizes. All buffers row-major.
#pragma once

#include <cstdint>

namespace fq::quant {

struct DecomposeDims {
    int n1;  // left factor size (the smaller one)
    int n2;  // right factor size
};

// The official get_decompose_dim: the factor pair n = (a-b)(a+b) closest to a square, found by increasing a from
// ceil(sqrt(n)) until a^2 - n is a perfect square; returns (a-b, a+b). 4096 -> (64,64), 11008 -> (86,128).
DecomposeDims decompose_dim(int64_t n);

// out[rows][n1*n2] = per row P1^T X P2.
//   inp [rows][n1*n2], p1 [n1][n1] or nullptr (identity), p2 [n2][n2] or nullptr (identity).
// out may alias inp (each row is computed into scratch first).
template <typename T>
void kron_transform_forward(T *out, const T *inp, const T *p1, const T *p2, int64_t rows, int n1, int n2);

// Backward of kron_transform_forward. With G = dout row as [n1][n2]:
//   dinp = P1 G P2^T           (written, =; nullptr to skip; may alias dout)
//   dp1 += sum_rows (X P2) G^T (accumulated; nullptr to skip, must be nullptr when p1 is)
//   dp2 += sum_rows (P1^T X)^T G
//   dout [rows][n1*n2], inp = the forward input, p1/p2 as in the forward.
template <typename T>
void kron_transform_backward(T *dinp, T *dp1, T *dp2, const T *dout, const T *inp, const T *p1, const T *p2,
                             int64_t rows, int n1, int n2);

// out[cols][rows] = inp[rows][cols]^T. out must not alias inp. Used for the v_proj output transform, which the
// official code applies as out_trans(W^T)^T.
template <typename T>
void transpose(T *out, const T *inp, int64_t rows, int64_t cols);

}  // namespace fq::quant
