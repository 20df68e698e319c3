// FP32 matrix products on the GPU for calibration and fake-quantized evaluation, with fast::gemm's contract
// (quant/fast_ops.h) so that GPU code mirrors the CPU code line by line. Exists only in builds with FQ_HAVE_CUDA;
// host-compiler safe (no CUDA headers; the stream travels as an opaque cudaStream_t handle).
//
// Accuracy is FP32-class (what the CPU path computes, up to summation order): never plain TF32.
#pragma once

#include <cstdint>

namespace fq::cuda {

// C[m][n] = alpha * op(A) op(B) + beta * C, all row-major device pointers. op(A) is A [m][k] (lda >= k), or A^T
// when trans_a (A stored [k][m], lda >= m); likewise B [k][n] / B^T (B stored [n][k]). beta == 0 never reads C
// (C may hold NaN); k == 0 or alpha == 0 sets C = beta * C without reading A or B (BLAS semantics). Any ld works;
// 16-byte aligned pointers with ld, strides and the contiguous extents multiples of 4 take faster kernels.
// Asynchronous on `stream`; errors throw fq::Error (INVALID_ARGUMENT for negative sizes, too small an ld or a null
// pointer that would be read).
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc, void *stream);

// batch independent products; matrix i uses a + i * stride_a, b + i * stride_b, c + i * stride_c (strides in
// floats; a stride of 0 shares that operand across the batch).
void gemm_f32_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                      int64_t ldc, int64_t stride_c, int64_t batch, void *stream);

}  // namespace fq::cuda
