// The online Kronecker transform and per-token INT4 quantization of the W4A4 engine on the CPU: the reference twin
// of native/src/cuda/kron_quant.h (same argument order: outputs, inputs, sizes, options).
//
// Size letters: T tokens; a token is a row of n = n1 * n2 values read row-major as X[n1][n2] (element i*n2 + j is
// X[i][j]); P1 is n1 x n1, P2 is n2 x n2.
//
// What the GPU kernel computes, with its rounding points (the twin computes every sum exactly, in double, and
// rounds only where the kernel's data format forces it):
//   X, P1, P2   FP16 inputs (exact in double)
//   Z  = X P2                        exact sum
//   Zh = fp16(Z)                     round to nearest-even, ONLY when both P1 and P2 are given: the kernel feeds Z
//                                    to the second tensor-core product as FP16 (as the official kernel does)
//   Y  = P1^T Zh                     exact sum   (P1 = nullptr: Y = Z;  P2 = nullptr: Y = P1^T X, no rounding)
// so that vec_r(Y) = vec_r(X) (P1 (x) P2) up to the one FP16 rounding of Z. Then, per token, with
// yf = fp32(Y) and the learned activation clip (LAC) factors cmax = sigmoid(a_max), cmin = sigmoid(a_min) in FP32:
//   xmax = max(max_j yf_j, 0) * cmax,  xmin = min(min_j yf_j, 0) * cmin      (FP32 products)
//   s    = max(|xmin|, xmax) / 7, or 1 where that is 0                      (FP32 division)
//   q_j  = clamp(rint(yf_j / s), -8, 7)                                     (FP32 division, half to even)
// which is fq::quant::act_quant_forward<float> (sym, 4 bits) applied to fp32(Y). The INT4 storage format is the
// one of native/src/cpu/w4a4_gemm_ref.h (two values per byte, element 2j in the low nibble of byte j).
#pragma once

#include <cstdint>

namespace fq::cpu {

// LAC factor sigmoid(logit), computed in double and rounded once to FP32: the value both the twin and the GPU
// kernel multiply by. A quantizer without LAC uses 1.
float lac_factor(float logit);

// y:       (T, n1*n2) double, row-major: P1^T fp16(X P2) per token as above
// z:       (T, n1*n2) double, or nullptr: the exact X P2 before its FP16 rounding (X where p2 is nullptr)
// x_f16:   (T, n1*n2) FP16 bit patterns, row-major
// p1_f16:  (n1, n1) FP16, row-major, or nullptr for the identity
// p2_f16:  (n2, n2) FP16, row-major, or nullptr for the identity; p1 and p2 may not both be nullptr
// round_mid: whether Z is rounded to FP16 before the P1 product when both factors are given (true is what the
//          kernel does; false gives the plain exact transform, for checking against fq::quant::kron_transform_forward)
void kron_transform_ref(double *y, double *z, const uint16_t *x_f16, const uint16_t *p1_f16, const uint16_t *p2_f16,
                        int64_t tokens, int n1, int n2, bool round_mid = true);

// Per-token symmetric INT4 quantization with LAC, as above.
// q:      (T, n) int8, values in [-8, 7]
// scale:  (T) FP32
// v_pre:  (T, n) double, or nullptr: y / s, the value that is rounded (before the clamp); the distance of this
//         value to a rounding boundary tells how much slack a check of another implementation has
// y:      (T, n) double
void act_quant_int4_ref(int8_t *q, float *scale, double *v_pre, const double *y, int64_t tokens, int64_t n,
                        float clip_max, float clip_min);

// The composition, in the kernel's output formats:
// out_packed: (T, n/2) bytes, packed INT4; scale: (T) FP32; n = n1*n2 must be even.
void kron_quant_ref(uint8_t *out_packed, float *scale, const uint16_t *x_f16, const uint16_t *p1_f16,
                    const uint16_t *p2_f16, int64_t tokens, int n1, int n2, float clip_max, float clip_min);
// out_f16: (T, n1*n2) FP16 bit patterns: fp16(Y), rounded once from the double value.
void kron_f16_ref(uint16_t *out_f16, const uint16_t *x_f16, const uint16_t *p1_f16, const uint16_t *p2_f16,
                  int64_t tokens, int n1, int n2);

// v rounded to the nearest FP16 value, ties to even, in one step (no double rounding through FP32); beyond the
// FP16 range it becomes +-infinity. Exact in double.
double round_to_f16(double v);

}  // namespace fq::cpu
