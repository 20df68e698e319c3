// Perplexity as GPTQ, QuaRot and FlatQuant compute it: one token stream, non-overlapping windows of seqlen tokens
// (the remainder dropped), each window from an empty context, the mean negative log-likelihood over every predicted
// token (seqlen - 1 per window), exponentiated.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/progress.h"
#include "model/forward.h"
#include "model/model.h"

namespace fq {
class ThreadPool;

struct PerplexityResult {
    int64_t n_tokens = 0;
    int64_t n_chunks = 0;
    int64_t n_predicted = 0;
    double nll_sum = 0;
    double ppl = 0;
};

// tokens: the whole tokenized text. max_chunks < 0 means every full window. Throws INVALID_ARGUMENT (seqlen outside
// [2, n_ctx_train], max_chunks == 0, fewer tokens than one window), CANCELLED, NUMERIC (a non-finite logit).
PerplexityResult perplexity(const Model &model, ThreadPool &pool, const std::vector<int32_t> &tokens,
                            int32_t seqlen, int64_t max_chunks, const Progress &progress);

// Scores sequences instead of returning their logits: tokens [n_seq][seq_len] and targets of the same shape
// (targets[s][r] is the id row r should predict, or -1 for none); nll [n_seq][seq_len] receives
// -log softmax(logits of row r)[target] in double (token_nll; 0 where there is no target), and argmax (may be nullptr)
// [n_seq][seq_len] the lowest id among each row's largest logits. A GPU can do this next to the logits instead of
// shipping n_vocab floats per row to the host.
using WindowsScoreFn = std::function<void(const int32_t *tokens, const int32_t *targets, int64_t n_seq,
                                          int64_t seq_len, double *nll, int32_t *argmax)>;

// A WindowsScoreFn over any whole-sequence forward, scoring the logits on the calling thread.
WindowsScoreFn windows_score_fn(const ModelConfig &config, WindowsForwardFn forward);

// The same over any scorer (the fake-quantized model, a GPU evaluator), windows_per_call windows at a time (progress
// and cancellation between calls).
PerplexityResult perplexity(const ModelConfig &config, const WindowsScoreFn &score, const std::vector<int32_t> &tokens,
                            int32_t seqlen, int64_t max_chunks, const Progress &progress, int64_t windows_per_call = 1);

// log(sum(exp(row))) - row[target], in double.
double token_nll(const float *row, int64_t n_vocab, int32_t target);

}  // namespace fq
