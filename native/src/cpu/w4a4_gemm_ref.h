// W4A4 GEMM on the CPU: the reference twin of the CUDA kernels behind native/src/cuda/w4a4_gemm.h, and the INT4
// packing helpers that define the storage format both sides share.
//
// Size letters: M tokens (rows of A and D), N output channels (rows of B, columns of D), K reduction length.
//
// INT4 storage ("packed"): signed values in [-8, 7], two per byte along a row, element 2j in the low nibble of byte
// j and element 2j+1 in the high nibble (two's complement nibbles). A (M, K) matrix packs to (M, K/2) bytes,
// row-major, rows back to back; B (N, K) likewise, so both are K-major.
//
// The product (all integer arithmetic is exact):
//   acc[m][n] = sum_k A[m][k] * B[n][k]                       int32; |acc| <= 64 K, so exact for K <= 2^18
//   t         = fp32(acc[m][n]) * a_scale[m]                  fp32 multiply, round to nearest-even (RNE)
//   y         = fma(t, b_scale[n], bias ? bias[n] : +0.0f)    one fused multiply-add, RNE
//   D[m][n]   = fp16(y)                                       RNE (overflow -> +-inf)
// fp32(acc) is exact (|acc| < 2^24), so D depends on nothing but the inputs and this fixed order of three roundings:
// every implementation that follows it (the CUDA kernels do) produces the same bits.
#pragma once

#include <cstdint>

namespace fq::cpu {

// values: (rows, cols) int8, row-major, each in [-8, 7]
// packed: (rows, cols / 2) bytes, row-major
// cols must be even (INVALID_ARGUMENT otherwise); a value outside [-8, 7] throws INVALID_ARGUMENT naming it.
void pack_int4(uint8_t *packed, const int8_t *values, int64_t rows, int64_t cols);
// The inverse: every byte is valid, nibbles sign-extended.
void unpack_int4(int8_t *values, const uint8_t *packed, int64_t rows, int64_t cols);

// The epilogue of one output element, in the order fixed above (returns the FP16 bit pattern).
uint16_t w4a4_epilogue(int32_t acc, float a_scale, float b_scale, float bias);

// acc:      (m, n) int32, row-major
// a_packed: (m, k / 2) packed INT4, row-major
// b_packed: (n, k / 2) packed INT4, row-major (K-major)
// k must be even and at most 2^18.
void w4a4_gemm_s32(int32_t *acc, const uint8_t *a_packed, const uint8_t *b_packed, int64_t m, int64_t n, int64_t k);

// d_f16:   (m, n) FP16 bit patterns, row-major
// a_scale: (m) FP32, per token;  b_scale: (n) FP32, per output channel;  bias: (n) FP32 or nullptr
// a_packed, b_packed and the limits on k as for w4a4_gemm_s32.
void w4a4_gemm(uint16_t *d_f16, const uint8_t *a_packed, const uint8_t *b_packed, const float *a_scale,
               const float *b_scale, const float *bias, int64_t m, int64_t n, int64_t k);

}  // namespace fq::cpu
