// The FP32 forward pass against a plain double-precision LLaMA written out below from the definitions (RMSNorm,
// RoPE on consecutive pairs, causal grouped-query attention, SwiGLU), on the real stories260K model; plus the
// properties sessions rely on (incremental decoding equals a full pass).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/model.h"
#include "support/paths.h"

namespace {

using fq::Model;
using fq::ModelConfig;

// y[n][out] = x[n][in] W[out][in]^T in double.
std::vector<double> linear(const std::vector<double> &x, const std::vector<float> &w, int64_t n, int64_t in,
                           int64_t out) {
    std::vector<double> y(n * out, 0.0);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t o = 0; o < out; ++o) {
            double s = 0;
            for (int64_t k = 0; k < in; ++k) s += x[i * in + k] * (double)w[o * in + k];
            y[i * out + o] = s;
        }
    return y;
}

std::vector<double> rmsnorm(const std::vector<double> &x, const std::vector<float> &g, int64_t n, int64_t d,
                            double eps) {
    std::vector<double> y(n * d);
    for (int64_t i = 0; i < n; ++i) {
        double ss = 0;
        for (int64_t k = 0; k < d; ++k) ss += x[i * d + k] * x[i * d + k];
        double r = 1.0 / std::sqrt(ss / d + eps);
        for (int64_t k = 0; k < d; ++k) y[i * d + k] = x[i * d + k] * r * g[k];
    }
    return y;
}

void rope(std::vector<double> &x, int64_t n, int heads, const ModelConfig &c) {
    for (int64_t p = 0; p < n; ++p)
        for (int h = 0; h < heads; ++h)
            for (int i = 0; i < c.rope_dim / 2; ++i) {
                double theta = p * std::pow((double)c.rope_freq_base, -2.0 * i / c.rope_dim);
                double *v = &x[(p * heads + h) * c.head_dim];
                double a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * std::cos(theta) - b * std::sin(theta);
                v[2 * i + 1] = a * std::sin(theta) + b * std::cos(theta);
            }
}

// Logits [n][vocab] of the whole sequence, in double.
std::vector<double> reference_logits(const Model &m, const std::vector<int32_t> &tok) {
    const ModelConfig &c = m.config;
    const int64_t n = tok.size(), E = c.n_embd, hd = c.head_dim, F = c.n_ff;
    std::vector<double> x(n * E);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < E; ++k) x[i * E + k] = m.weights.tok_embd[tok[i] * E + k];
    for (const auto &L : m.weights.layers) {
        auto h = rmsnorm(x, L.attn_norm, n, E, c.rms_eps);
        auto q = linear(h, L.wq, n, E, c.q_dim());
        auto k = linear(h, L.wk, n, E, c.kv_dim());
        auto v = linear(h, L.wv, n, E, c.kv_dim());
        rope(q, n, c.n_head, c);
        rope(k, n, c.n_head_kv, c);
        std::vector<double> att(n * c.q_dim(), 0.0);
        for (int hh = 0; hh < c.n_head; ++hh) {
            int g = hh / (c.n_head / c.n_head_kv);
            for (int64_t i = 0; i < n; ++i) {
                std::vector<double> s(i + 1);
                double mx = -1e300;
                for (int64_t j = 0; j <= i; ++j) {
                    double d = 0;
                    for (int64_t t = 0; t < hd; ++t) d += q[(i * c.n_head + hh) * hd + t] * k[(j * c.n_head_kv + g) * hd + t];
                    s[j] = d / std::sqrt((double)hd);
                    mx = std::max(mx, s[j]);
                }
                double z = 0;
                for (auto &e : s) z += (e = std::exp(e - mx));
                for (int64_t j = 0; j <= i; ++j)
                    for (int64_t t = 0; t < hd; ++t)
                        att[(i * c.n_head + hh) * hd + t] += s[j] / z * v[(j * c.n_head_kv + g) * hd + t];
            }
        }
        auto o = linear(att, L.wo, n, c.q_dim(), E);
        for (int64_t i = 0; i < n * E; ++i) x[i] += o[i];
        auto h2 = rmsnorm(x, L.ffn_norm, n, E, c.rms_eps);
        auto gt = linear(h2, L.w_gate, n, E, F);
        auto up = linear(h2, L.w_up, n, E, F);
        for (int64_t i = 0; i < n * F; ++i) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
        auto d = linear(gt, L.w_down, n, F, E);
        for (int64_t i = 0; i < n * E; ++i) x[i] += d[i];
    }
    auto h = rmsnorm(x, m.weights.output_norm, n, E, c.rms_eps);
    const std::vector<float> &out = m.weights.output.empty() ? m.weights.tok_embd : m.weights.output;
    return linear(h, out, n, E, c.n_vocab);
}

class StoriesForward : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!fq::test::file_exists(fq::test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
        model = fq::load_gguf_model(fq::test::stories_path(), {});
    }
    std::vector<float> run_all(const std::vector<int32_t> &tok) {
        fq::KVCache cache;
        cache.init(model->config, static_cast<int32_t>(tok.size()));
        std::vector<float> out(tok.size() * model->config.n_vocab);
        fq::forward(*model, pool, tok.data(), tok.size(), cache, fq::LogitsWanted::All,
                    [&](int64_t r0, int64_t rows, const float *lg) {
                        std::copy_n(lg, rows * model->config.n_vocab, out.data() + r0 * model->config.n_vocab);
                    });
        return out;
    }
    std::unique_ptr<Model> model;
    fq::ThreadPool pool{2};
};

TEST_F(StoriesForward, MatchesDoublePrecisionReference) {
    std::vector<int32_t> tok = {1, 403, 407, 261, 378, 429, 260, 290, 285, 367, 400, 15, 272, 320, 442, 302, 340,
                                415, 283, 260, 411, 29, 87, 349, 384, 462, 370, 260, 402, 265, 334, 30};
    auto got = run_all(tok);
    auto ref = reference_logits(*model, tok);
    // FP32 with reordered sums over 64-172 terms per product and 5 layers: a few 1e-6 of the logit scale.
    double max_ref = 0, max_err = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(ref[i]));
        max_err = std::max(max_err, std::fabs(ref[i] - got[i]));
    }
    EXPECT_LT(max_err / max_ref, 2e-5) << "max abs error " << max_err << " over logits up to " << max_ref;
}

TEST_F(StoriesForward, IncrementalDecodingEqualsOnePass) {
    std::vector<int32_t> tok = {1, 403, 407, 261, 378, 429, 260, 290, 285, 367, 400, 15, 272, 320, 442, 302, 340};
    const int64_t V = model->config.n_vocab;
    auto full = run_all(tok);
    fq::KVCache cache;
    cache.init(model->config, 64);
    // A prefill of 5 tokens, then one token at a time (the decode path splits heads over threads, not the BLAS).
    std::vector<float> last(V);
    auto keep_last = [&](int64_t, int64_t, const float *lg) { std::copy_n(lg, V, last.data()); };
    fq::forward(*model, pool, tok.data(), 5, cache, fq::LogitsWanted::Last, keep_last);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], full[4 * V + j], 1e-4);
    for (size_t i = 5; i < tok.size(); ++i) {
        fq::forward(*model, pool, &tok[i], 1, cache, fq::LogitsWanted::Last, keep_last);
        for (int64_t j = 0; j < V; ++j) ASSERT_NEAR(last[j], full[i * V + j], 1e-4) << "position " << i;
    }
    EXPECT_EQ(cache.n_past, (int32_t)tok.size());
}

TEST_F(StoriesForward, PerplexityIsTheMeanTokenNll) {
    std::vector<int32_t> tok;
    for (int i = 0; i < 3 * 40 + 7; ++i) tok.push_back((i * 37 + 11) % model->config.n_vocab);
    auto res = fq::perplexity(*model, pool, tok, 40, -1, fq::Progress());
    EXPECT_EQ(res.n_chunks, 3);
    EXPECT_EQ(res.n_predicted, 3 * 39);
    double nll = 0;
    for (int ch = 0; ch < 3; ++ch) {
        std::vector<int32_t> w(tok.begin() + ch * 40, tok.begin() + (ch + 1) * 40);
        auto ref = reference_logits(*model, w);
        const int64_t V = model->config.n_vocab;
        for (int p = 0; p + 1 < 40; ++p) {
            double mx = -1e300, z = 0;
            for (int64_t j = 0; j < V; ++j) mx = std::max(mx, ref[p * V + j]);
            for (int64_t j = 0; j < V; ++j) z += std::exp(ref[p * V + j] - mx);
            nll += std::log(z) + mx - ref[p * V + w[p + 1]];
        }
    }
    EXPECT_NEAR(res.nll_sum, nll, 1e-4 * std::fabs(nll));
    EXPECT_NEAR(res.ppl, std::exp(nll / (3 * 39)), 1e-4 * res.ppl);
    auto two = fq::perplexity(*model, pool, tok, 40, 2, fq::Progress());
    EXPECT_EQ(two.n_chunks, 2);
}

TEST_F(StoriesForward, BadArgumentsAreRefused) {
    std::vector<int32_t> tok(100, 5);
    auto status_of = [&](auto &&fn) {
        try {
            fn();
        } catch (const fq::Error &e) {
            return e.status();
        }
        return (int32_t)FQ_STATUS_OK;
    };
    EXPECT_EQ(status_of([&] { fq::perplexity(*model, pool, tok, 40, 0, fq::Progress()); }), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { fq::perplexity(*model, pool, tok, 4096, -1, fq::Progress()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { fq::perplexity(*model, pool, tok, 200, -1, fq::Progress()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    fq::KVCache cache;
    cache.init(model->config, 4);
    std::vector<int32_t> bad = {1, 600};
    EXPECT_EQ(status_of([&] { fq::forward(*model, pool, bad.data(), 2, cache, fq::LogitsWanted::None, {}); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { fq::forward(*model, pool, tok.data(), 5, cache, fq::LogitsWanted::None, {}); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(cache.n_past, 0);
}

}  // namespace
