#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/forward.h"

namespace fq {

double token_nll(const float *row, int64_t n_vocab, int32_t target) {
    float mx = row[0];
    for (int64_t j = 1; j < n_vocab; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int64_t j = 0; j < n_vocab; ++j) sum += std::exp((double)row[j] - (double)mx);
    return std::log(sum) + (double)mx - (double)row[target];
}

WindowsScoreFn windows_score_fn(const ModelConfig &c, WindowsForwardFn forward) {
    return [V = int64_t{c.n_vocab}, forward = std::move(forward)](const int32_t *tokens, const int32_t *targets,
                                                                 int64_t n_seq, int64_t seq_len, double *nll,
                                                                 int32_t *argmax) {
        forward(tokens, n_seq, seq_len, [&](int64_t s, int64_t row0, int64_t rows, const float *lg) {
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t at = s * seq_len + row0 + r;
                const float *row = lg + r * V;
                const int32_t target = targets[at];
                FQ_CHECK(target >= -1 && target < V, FQ_STATUS_INVALID_ARGUMENT,
                         "target id %d at row %lld is outside the vocabulary [0, %lld)", target, (long long)at,
                         (long long)V);
                nll[at] = target < 0 ? 0.0 : token_nll(row, V, target);
                if (argmax) {
                    int64_t best = 0;
                    for (int64_t j = 1; j < V; ++j)
                        if (row[j] > row[best]) best = j;
                    argmax[at] = static_cast<int32_t>(best);
                }
            }
        });
    };
}

PerplexityResult perplexity(const Model &model, ThreadPool &pool, const std::vector<int32_t> &tokens,
                            int32_t seqlen, int64_t max_chunks, const Progress &progress) {
    return perplexity(model.config,
                      windows_score_fn(model.config, windows_forward_fn(model.config, forward_fn(model, pool))),
                      tokens, seqlen, max_chunks, progress);
}

PerplexityResult perplexity(const ModelConfig &c, const WindowsScoreFn &score, const std::vector<int32_t> &tokens,
                            int32_t seqlen, int64_t max_chunks, const Progress &progress, int64_t windows_per_call) {
    FQ_CHECK(seqlen >= 2 && seqlen <= c.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
             "seqlen %d is out of range: it must be between 2 and the model's context length %d", seqlen,
             c.n_ctx_train);
    FQ_CHECK(max_chunks != 0 && max_chunks >= -1, FQ_STATUS_INVALID_ARGUMENT,
             "max_chunks is %lld: it must be at least 1 (or -1 for all)", (long long)max_chunks);
    FQ_CHECK(windows_per_call >= 1, FQ_STATUS_INVALID_ARGUMENT, "windows_per_call %lld must be positive",
             (long long)windows_per_call);
    PerplexityResult res;
    res.n_tokens = static_cast<int64_t>(tokens.size());
    int64_t available = res.n_tokens / seqlen;
    FQ_CHECK(available > 0, FQ_STATUS_INVALID_ARGUMENT,
             "the text has %lld tokens, fewer than one window of seqlen %d", (long long)res.n_tokens, seqlen);
    res.n_chunks = max_chunks < 0 ? available : std::min(available, max_chunks);

    progress.step("perplexity", 0, res.n_chunks);
    std::vector<int32_t> targets;
    std::vector<double> nll;
    for (int64_t ch0 = 0; ch0 < res.n_chunks; ch0 += windows_per_call) {
        const int64_t nw = std::min(windows_per_call, res.n_chunks - ch0);
        const int32_t *first = tokens.data() + ch0 * seqlen;
        // Row r of a window predicts token r + 1 of the same window; the last row predicts nothing.
        targets.assign(static_cast<size_t>(nw * seqlen), -1);
        for (int64_t s = 0; s < nw; ++s)
            std::copy(first + s * seqlen + 1, first + (s + 1) * seqlen, targets.begin() + s * seqlen);
        nll.assign(targets.size(), 0.0);
        score(first, targets.data(), nw, seqlen, nll.data(), nullptr);
        for (int64_t s = 0; s < nw; ++s) {  // summed window by window in order: independent of the batching
            double window_nll = 0;
            for (int64_t r = 0; r + 1 < seqlen; ++r) window_nll += nll[static_cast<size_t>(s * seqlen + r)];
            FQ_CHECK(std::isfinite(window_nll), FQ_STATUS_NUMERIC, "window %lld produced a non-finite log-likelihood",
                     (long long)(ch0 + s));
            res.nll_sum += window_nll;
            res.n_predicted += seqlen - 1;
        }
        progress.step("perplexity", ch0 + nw, res.n_chunks);
    }
    res.ppl = std::exp(res.nll_sum / (double)res.n_predicted);
    return res;
}

}  // namespace fq
