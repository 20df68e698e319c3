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
    const ModelConfig &c = model.config;
    FQ_CHECK(seqlen >= 2 && seqlen <= c.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
             "seqlen %d is out of range: it must be between 2 and the model's context length %d", seqlen,
             c.n_ctx_train);
    FQ_CHECK(max_chunks != 0 && max_chunks >= -1, FQ_STATUS_INVALID_ARGUMENT,
             "max_chunks is %lld: it must be at least 1 (or -1 for all)", (long long)max_chunks);
    PerplexityResult res;
    res.n_tokens = static_cast<int64_t>(tokens.size());
    int64_t available = res.n_tokens / seqlen;
    FQ_CHECK(available > 0, FQ_STATUS_INVALID_ARGUMENT,
             "the text has %lld tokens, fewer than one window of seqlen %d", (long long)res.n_tokens, seqlen);
    res.n_chunks = max_chunks < 0 ? available : std::min(available, max_chunks);

    KVCache cache;
    cache.init(c, seqlen);
    progress.step("perplexity", 0, res.n_chunks);
    for (int64_t ch = 0; ch < res.n_chunks; ++ch) {
        const int32_t *window = tokens.data() + ch * seqlen;
        cache.n_past = 0;
        double nll = 0;
        forward(model, pool, window, seqlen, cache, LogitsWanted::All, [&](int64_t row0, int64_t rows, const float *lg) {
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t pos = row0 + r;
                if (pos + 1 >= seqlen) continue;  // the last position predicts nothing inside the window
                nll += token_nll(lg + r * c.n_vocab, c.n_vocab, window[pos + 1]);
            }
        });
        FQ_CHECK(std::isfinite(nll), FQ_STATUS_NUMERIC, "window %lld produced a non-finite log-likelihood",
                 (long long)ch);
        res.nll_sum += nll;
        res.n_predicted += seqlen - 1;
        progress.step("perplexity", ch + 1, res.n_chunks);
    }
    res.ppl = std::exp(res.nll_sum / (double)res.n_predicted);
    return res;
}

}  // namespace fq
