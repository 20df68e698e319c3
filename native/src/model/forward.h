// The FP32 forward pass of a LLaMA-family decoder on the CPU: RMSNorm, RoPE, grouped-query causal attention over a
// KV cache, SwiGLU, residuals, final norm and the output projection.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace fq {
class ThreadPool;

// Keys and values of every layer for up to n_ctx positions. Layout: [n_layer][n_ctx][kv_dim], row-major.
struct KVCache {
    int32_t n_ctx = 0;
    int32_t n_past = 0;       // positions filled
    std::vector<float> k;     // [n_layer][n_ctx][kv_dim]
    std::vector<float> v;     // [n_layer][n_ctx][kv_dim]

    void init(const ModelConfig &c, int32_t n_ctx);  // throws OUT_OF_MEMORY
};

// Receives logits rows [row0, row0 + rows) of the current call, each n_vocab floats (row-major, valid only during
// the callback).
using LogitsSink = std::function<void(int64_t row0, int64_t rows, const float *logits)>;

enum class LogitsWanted { None, Last, All };

// Runs tokens[0..n) at positions cache.n_past .. cache.n_past + n - 1 and appends their keys/values to the cache.
// Ids must be valid and the cache must have room (checked: INVALID_ARGUMENT). The output projection runs in blocks of
// rows, so All never materializes n x n_vocab logits at once.
void forward(const Model &model, ThreadPool &pool, const int32_t *tokens, int64_t n, KVCache &cache,
             LogitsWanted wanted, const LogitsSink &sink);

// Any forward with fq::forward's contract (model and threads bound): the full-precision forward, the fake-quantized
// one (quant/fakequant_forward.h), ...
using ForwardFn = std::function<void(const int32_t *tokens, int64_t n, KVCache &cache, LogitsWanted wanted,
                                     const LogitsSink &sink)>;
ForwardFn forward_fn(const Model &model, ThreadPool &pool);

// Receives logits rows [row0, row0 + rows) of sequence seq of the current call (n_vocab floats each, valid only
// during the callback). Rows of one sequence arrive in order; sequences may interleave.
using WindowLogitsSink = std::function<void(int64_t seq, int64_t row0, int64_t rows, const float *logits)>;

// Whole-sequence evaluation, where no cache outlives the call (perplexity, log-likelihood): tokens
// [n_seq][seq_len], every sequence run from position 0 on its own, the logits of every position handed to the sink.
// Ids must be valid and seq_len within the model's context (INVALID_ARGUMENT).
using WindowsForwardFn =
    std::function<void(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink)>;

// A WindowsForwardFn over any ForwardFn: one sequence after the other, each in a fresh cache of seq_len positions.
WindowsForwardFn windows_forward_fn(const ModelConfig &config, ForwardFn forward);

}  // namespace fq
