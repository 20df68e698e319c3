// Row-wise dequantization of GGUF Q8_0 / Q4_1 blocks on the CPU: the reference twin of
// native/src/cuda/dequant.cu, written from the block layouts alone.
//
// Block layouts (32 elements per block, little-endian, no padding):
//   Q8_0: fp16 d, int8 q[32]                    34 bytes   value[j] = d * q[j]
//   Q4_1: fp16 d, fp16 m, uint8 nibbles[16]     20 bytes   value[j] = d * q[j] + m, q[j] in [0, 15]
//         q[j] = nibbles[j] & 0xF and q[j + 16] = nibbles[j] >> 4, for j < 16
// The FP32 value is d*q (exact: 11 significant bits times at most 8) plus m rounded once, so every correct
// implementation gets the same bits; the FP16 output is that FP32 value rounded to nearest-even.
#pragma once

#include <cstdint>

namespace fq::cpu {

// IEEE binary16 <-> binary32, round to nearest-even, NaN stays NaN, overflow goes to infinity.
float f16_bits_to_f32(uint16_t h);
uint16_t f32_to_f16_bits(float f);

// out:        (rows, ld_out) FP32, row-major; columns [cols, ld_out) are not written
// blocks:     (rows, cols / 32) blocks of `ggml_type` (3 = Q4_1, 8 = Q8_0, numbered as gguf::TensorType), each row's
//             blocks contiguous, rows back to back: the data of a GGUF tensor whose dims[0] is cols
// cols % 32 == 0 and ld_out >= cols, else INVALID_ARGUMENT; another type gives UNSUPPORTED.
void dequantize_rows_f32(float *out, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols);
// Same, FP16 output (IEEE binary16 bit patterns).
void dequantize_rows_f16(uint16_t *out_f16, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols);

}  // namespace fq::cpu
