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

}  // namespace fq
