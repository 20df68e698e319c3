// Row-wise dequantization of GGUF Q8_0 / Q4_1 blocks on the GPU. CPU twin: native/src/cpu/dequant_ref.h, which
// also spells out the block layouts. Results are bit-identical to the twin's: d*q is exact in FP32, so the only
// rounding is the one addition of m (Q4_1) and, for FP16 output, one round-to-nearest-even of that FP32 value.
#pragma once

#include <cstdint>

namespace fq::cuda {

class Stream;

// All pointers are device memory. Queued on `stream` (returns before the kernel finishes).
// out:     (rows, ld_out) FP32, row-major; columns [cols, ld_out) are not written (lets rows land inside a wider
//          matrix, e.g. q, k and v side by side)
// blocks:  (rows, cols / 32) blocks of `ggml_type` (gguf::TensorType Q4_1 or Q8_0), each row's blocks contiguous,
//          rows back to back: the bytes of a GGUF tensor whose dims[0] is cols; 2-byte aligned
// Throws INVALID_ARGUMENT (cols not a multiple of 32, ld_out < cols, NULL or misaligned pointers), UNSUPPORTED
// (another type); launch errors as FQ_CUDA_CHECK does.
void dequantize_rows_f32(float *out, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols, const Stream &stream);
// Same, FP16 output: out_f16 holds IEEE binary16 bit patterns (a __half array).
void dequantize_rows_f16(uint16_t *out_f16, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols, const Stream &stream);

}  // namespace fq::cuda
