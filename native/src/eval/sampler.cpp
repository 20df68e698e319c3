#include "eval/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace fq {

namespace {
uint64_t splitmix64(uint64_t &x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Sampler::Sampler(const SamplerConfig &cfg) : cfg_(cfg) {
    FQ_CHECK(std::isfinite(cfg.temperature) && cfg.temperature >= 0.0f, FQ_STATUS_INVALID_ARGUMENT,
             "temperature %g must be >= 0", cfg.temperature);
    FQ_CHECK(cfg.top_p > 0.0f && cfg.top_p <= 1.0f, FQ_STATUS_INVALID_ARGUMENT, "top_p %g must be in (0, 1]",
             cfg.top_p);
    FQ_CHECK(cfg.top_k >= 0, FQ_STATUS_INVALID_ARGUMENT, "top_k %d must be >= 0", cfg.top_k);
    uint64_t x = cfg.seed;
    for (auto &s : s_) s = splitmix64(x);
}

uint64_t Sampler::next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double Sampler::next_uniform() { return (double)(next_u64() >> 11) * 0x1.0p-53; }

int32_t Sampler::sample(const float *logits, int32_t n_vocab) {
    FQ_CHECK(n_vocab > 0, FQ_STATUS_INVALID_ARGUMENT, "n_vocab %d must be positive", n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i)
        FQ_CHECK(!std::isnan(logits[i]), FQ_STATUS_NUMERIC, "logit %d is NaN", i);
    if (cfg_.temperature == 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; ++i)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand_.resize(n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) cand_[i] = {logits[i], i};
    // Highest logit first, lowest id first among equals: the order (and so the draw) is deterministic.
    auto by_logit = [](const std::pair<float, int32_t> &a, const std::pair<float, int32_t> &b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    size_t keep = cand_.size();
    if (cfg_.top_k > 0 && static_cast<size_t>(cfg_.top_k) < keep) {
        keep = static_cast<size_t>(cfg_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    cand_.resize(keep);
    const double mx = cand_[0].first;
    std::vector<double> p(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += p[i] = std::exp(((double)cand_[i].first - mx) / cfg_.temperature);
    if (cfg_.top_p < 1.0f) {
        double mass = 0;
        size_t n = 0;
        while (n < keep) {
            mass += p[n++] / sum;
            if (mass >= cfg_.top_p) break;
        }
        keep = n;
        sum = 0;
        for (size_t i = 0; i < keep; ++i) sum += p[i];
    }
    double u = next_uniform() * sum;
    for (size_t i = 0; i < keep; ++i) {
        u -= p[i];
        if (u < 0) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace fq
