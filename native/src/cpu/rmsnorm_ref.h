// RMSNorm on the CPU: the reference twin of the CUDA kernel in native/src/cuda/rmsnorm.cu, with the same argument
// order (outputs, inputs, sizes).
//
//   rstd[r]   = 1 / sqrt(mean_c(inp[r][c]^2) + eps)
//   out[r][c] = inp[r][c] * rstd[r] * weight[c]
//
// Accumulates in double and rounds each output once, so its results are within half an FP32 ulp of the exact
// values: a yardstick for the FP32 kernel, not a copy of its arithmetic.
#pragma once

#include <cstdint>

namespace fq::cpu {

// out:    (rows, cols) FP32, row-major; may be the same memory as inp
// rstd:   (rows) FP32, or nullptr when not wanted (backward reads it)
// inp:    (rows, cols) FP32, row-major
// weight: (cols) FP32
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                     float eps);

}  // namespace fq::cpu
