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

PerplexityResult perplexity(const Model &model, ThreadPool &pool, const std::vector<int32_t> &tokens,
                            int32_t seqlen, int64_t max_chunks, const Progress &progress) {
    return perplexity(model.config, windows_forward_fn(model.config, forward_fn(model, pool)), tokens, seqlen,
                      max_chunks, progress);
}

PerplexityResult perplexity(const ModelConfig &c, const WindowsForwardFn &forward, const std::vector<int32_t> &tokens,
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
    std::vector<double> nll;
    for (int64_t ch0 = 0; ch0 < res.n_chunks; ch0 += windows_per_call) {
        const int64_t nw = std::min(windows_per_call, res.n_chunks - ch0);
        const int32_t *first = tokens.data() + ch0 * seqlen;
        nll.assign(static_cast<size_t>(nw), 0.0);
        forward(first, nw, seqlen, [&](int64_t s, int64_t row0, int64_t rows, const float *lg) {
            const int32_t *window = first + s * seqlen;
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t pos = row0 + r;
                if (pos + 1 >= seqlen) continue;  // the last position predicts nothing inside the window
                nll[static_cast<size_t>(s)] += token_nll(lg + r * c.n_vocab, c.n_vocab, window[pos + 1]);
            }
        });
        for (int64_t s = 0; s < nw; ++s) {  // summed in window order: the result does not depend on the batching
            FQ_CHECK(std::isfinite(nll[static_cast<size_t>(s)]), FQ_STATUS_NUMERIC,
                     "window %lld produced a non-finite log-likelihood", (long long)(ch0 + s));
            res.nll_sum += nll[static_cast<size_t>(s)];
            res.n_predicted += seqlen - 1;
        }
        progress.step("perplexity", ch0 + nw, res.n_chunks);
    }
    res.ppl = std::exp(res.nll_sum / (double)res.n_predicted);
    return res;
}

}  // namespace fq
