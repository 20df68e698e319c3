// The 4-bit KV cache and the attention that reads it, on the CPU: the reference twin of
// native/src/cuda/kv4_attention.h (same argument order: outputs, inputs, sizes, options).
//
// Size letters: B sequences, S new tokens per sequence (S = 1 in decode), L visible keys, H query heads, Hk KV heads
// (H a multiple of Hk; query head h reads KV head h / (H / Hk)), d head_dim, C cache capacity in tokens.
//
// Cache format (kInt4): per (sequence, KV head, position) one row of d values, quantized asymmetrically to 4 bits
// with the learned activation clip (LAC), exactly the fake quantizer of calibration (fq::quant::act_quant_forward
// <float>, asym, 4 bits), evaluated in FP32 from the FP16 input row x:
//   xmax = max(max_j x_j, 0) * clip_max,  xmin = min(min_j x_j, 0) * clip_min          FP32 products
//   (xmin, xmax) = (-1, 1) where both are 0
//   s = (xmax - xmin) / 15,  z = rint(-xmin / s)                                      FP32, rint half to even
//   q_j = clamp(rint(x_j / s) + z, 0, 15)                                             FP32 division
//   value_j = s * (q_j - z)                                                           one FP32 rounding
// Storage: codes (B, Hk, C, d/2) bytes, element 2j in the low nibble of byte j; params (B, Hk, C, 2) FP32 {s, z}.
// z is an integer in [0, 15], stored as FP32.
// Cache format (kF16): k/v (B, Hk, C, d) FP16 bit patterns, the input rows as they are.
//
// Attention: query s of sequence b sits at position pos0 + s and sees the keys [0, pos0 + s] (causal; in decode,
// S = 1 and L = pos0 + 1). The twin computes softmax(scale q k^T) v exactly (in double) from the FP16 query and the
// cache's values (dequantized as above, exactly representable in double).
#pragma once

#include <cstdint>

namespace fq::cpu {

// codes:  (rows, d/2) bytes;  params: (rows, 2) FP32 {scale, zero};  x_f16: (rows, ld_x) FP16, the row's values in
// columns [0, d). d even. clip_max, clip_min: LAC factors in (0, 1] (1 = no clipping).
void kv4_quantize_rows_ref(uint8_t *codes, float *params, const uint16_t *x_f16, int64_t ld_x, int64_t rows, int d,
                           float clip_max, float clip_min);

// The value of element j of a quantized row (the FP32 product s * (q - z)).
float kv4_value(const uint8_t *codes, const float *params, int j);

// A cache on the host, in the device layout above (pointers to arrays the caller owns).
struct KvCacheRef {
    bool int4 = true;
    const uint8_t *k_codes = nullptr, *v_codes = nullptr;  // kInt4: (B, Hk, C, d/2)
    const float *k_params = nullptr, *v_params = nullptr;  // kInt4: (B, Hk, C, 2)
    const uint16_t *k_f16 = nullptr, *v_f16 = nullptr;     // kF16: (B, Hk, C, d)
    int batch = 0, kv_heads = 0, head_dim = 0;
    int64_t capacity = 0;
};

// K or V element j of (sequence b, KV head g, position t) as a double.
double kv_cache_value_ref(const KvCacheRef &cache, bool v, int b, int g, int64_t t, int j);

// out:   (B*S, H*d) double, row b*S + s, columns [h d, (h+1) d) for query head h
// q_f16: (B*S, ld_q) FP16, the same row and column layout (columns beyond H*d ignored)
// Positions pos0 .. pos0+S-1 must lie inside the capacity.
void attention_ref(double *out, const uint16_t *q_f16, int64_t ld_q, const KvCacheRef &cache, int64_t n_q,
                   int64_t pos0, int n_heads, double scale);

}  // namespace fq::cpu
