// RMSNorm on the GPU. CPU twin: native/src/cpu/rmsnorm_ref.h (same formula, same argument order).
//
//   rstd[r]   = 1 / sqrt(mean_c(inp[r][c]^2) + eps)
//   out[r][c] = inp[r][c] * rstd[r] * weight[c]
//
// FP32 throughout, IEEE sqrt and division (the build never uses fast math), so the error against exact arithmetic
// is bounded by the summation order alone: see the tolerance derivation in native/tests/test_cuda_kernels.cpp.
#pragma once

#include <cstdint>

namespace fq::cuda {

class Stream;

// All pointers are device memory. Queued on `stream` (returns before the kernel finishes).
// out:    (rows, cols) FP32, row-major; may be the same memory as inp
// rstd:   (rows) FP32, or nullptr when not wanted (backward reads it)
// inp:    (rows, cols) FP32, row-major
// weight: (cols) FP32
// Throws INVALID_ARGUMENT for a bad shape, a NULL tensor or a negative eps; launch errors as FQ_CUDA_CHECK does.
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                     float eps, const Stream &stream);

}  // namespace fq::cuda
