// Small kernels of the whole-model engine (decoder_engine.h): the embedding gather, picking the rows whose logits are
// wanted, and widening FP16 logits to FP32. Device pointers; queued on `stream` (a cudaStream_t as void *).
#pragma once

#include <cstdint>

namespace fq::cuda {

// h (T, E) FP16 = table (V, E) FP16 rows tokens[t] (ids already checked). E even.
void embed_rows_f16(uint16_t *h_f16, const uint16_t *table_f16, const int32_t *tokens, int64_t n_tok, int64_t n_embd,
                    void *stream);

// out (rows, cols) FP16 = rows of in: out[r] = in[r * stride_rows + offset_rows] (the last token of each sequence of a
// batch: stride n_new, offset n_new - 1). cols even.
void gather_rows_f16(uint16_t *out_f16, const uint16_t *in_f16, int64_t rows, int64_t stride_rows, int64_t offset_rows,
                     int64_t cols, void *stream);

// out (n) FP32 = in (n) FP16, exactly.
void widen_f16_to_f32(float *out, const uint16_t *in_f16, int64_t n, void *stream);

}  // namespace fq::cuda
