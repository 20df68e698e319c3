// The FP32 pieces of a decoder layer on the CPU, shared by the full-precision forward (model/forward.cpp) and the
// fake-quantized one (quant/fakequant_forward.cpp), so that both compute the same arithmetic operation for operation.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace fq {
class ThreadPool;

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, x and out [rows][cols]; the mean is accumulated in double.
void rmsnorm(float *out, const float *x, const float *weight, int64_t rows, int64_t cols, float eps);

// x[rows][b.size()] += b per row; nothing when b is empty.
void add_bias(float *x, const std::vector<float> &b, int64_t rows);

// Softmax of row[0..n) in place (max-subtracted, FP32 like Hugging Face's eager attention).
void softmax_row(float *row, int64_t n);

// Causal grouped-query attention of n new queries q[n][q_dim] against the cache rows [0, pos0 + n) of one layer
// (kc, vc: [n_ctx][kv_dim]), writing out[n][q_dim].
void attention(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t pos0,
               const ModelConfig &c, ThreadPool &pool);

}  // namespace fq
