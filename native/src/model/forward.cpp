#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/matmul.h"
#include "model/decoder_ops.h"

namespace fq {

void KVCache::init(const ModelConfig &c, int32_t ctx) {
    n_ctx = ctx;
    n_past = 0;
    size_t n = static_cast<size_t>(c.n_layer) * static_cast<size_t>(ctx) * static_cast<size_t>(c.kv_dim());
    try {
        k.assign(n, 0.0f);
        v.assign(n, 0.0f);
    } catch (const std::bad_alloc &) {
        FQ_FAIL(FQ_STATUS_OUT_OF_MEMORY, "out of host memory for a KV cache of %d positions (%zu MiB)", ctx,
                2 * n * sizeof(float) >> 20);
    }
}

void rmsnorm(float *out, const float *x, const float *weight, int64_t rows, int64_t cols, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * cols;
        double ss = 0;
        for (int64_t i = 0; i < cols; ++i) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / std::sqrt(ss / (double)cols + (double)eps));
        float *o = out + r * cols;
        for (int64_t i = 0; i < cols; ++i) o[i] = (xr[i] * scale) * weight[i];
    }
}

void add_bias(float *x, const std::vector<float> &b, int64_t rows) {
    if (b.empty()) return;
    const int64_t cols = static_cast<int64_t>(b.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < cols; ++i) x[r * cols + i] += b[i];
}

void softmax_row(float *row, int64_t n) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

// Long blocks use one matrix product per head (the BLAS threads them); short ones (decode) split the heads over the
// pool.
void attention(float *out, const float *q, const float *kc, const float *vc, int64_t n, int64_t pos0,
               const ModelConfig &c, ThreadPool &pool) {
    const int64_t hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim(), T = pos0 + n;
    const int32_t group = c.n_head / c.n_head_kv;
    const float scale = 1.0f / std::sqrt((float)hd);
    auto one_head = [&](int32_t h, std::vector<float> &scores) {
        const int32_t g = h / group;
        scores.resize(static_cast<size_t>(n * T));
        matmul_nt_serial(scores.data(), T, q + h * hd, qd, kc + g * hd, kvd, n, T, hd);
        for (int64_t i = 0; i < n; ++i) {
            float *row = scores.data() + i * T;
            const int64_t visible = pos0 + i + 1;
            for (int64_t j = 0; j < visible; ++j) row[j] *= scale;
            softmax_row(row, visible);
            std::fill(row + visible, row + T, 0.0f);
        }
        matmul_nn_serial(out + h * hd, qd, scores.data(), T, vc + g * hd, kvd, n, hd, T);
    };
    if (n >= 16 && blas_available()) {
        std::vector<float> scores;
        for (int32_t h = 0; h < c.n_head; ++h) one_head(h, scores);
    } else {
        pool.parallel_for(c.n_head, [&](int64_t h0, int64_t h1) {
            std::vector<float> scores;
            for (int64_t h = h0; h < h1; ++h) one_head(static_cast<int32_t>(h), scores);
        });
    }
}

namespace {

// Rotates the first rope_dim dimensions of each head of x[rows][n_heads * head_dim]; row r sits at position pos0 + r.
// The inverse frequencies follow Hugging Face: base^(-2i/rope_dim) computed in float32, optionally divided by the
// LLaMA-3.1 frequency factors.
void rope(float *x, int64_t rows, int32_t n_heads, const ModelConfig &c, const std::vector<float> &freq_factors,
          int64_t pos0) {
    const int32_t half = c.rope_dim / 2;
    std::vector<float> inv_freq(half);
    for (int32_t i = 0; i < half; ++i) {
        float f = 1.0f / std::pow(c.rope_freq_base, (float)(2 * i) / (float)c.rope_dim);
        if (!freq_factors.empty()) f /= freq_factors[i];
        inv_freq[i] = f;
    }
    std::vector<float> cs(half), sn(half);
    for (int64_t r = 0; r < rows; ++r) {
        float pos = (float)(pos0 + r);
        for (int32_t i = 0; i < half; ++i) {
            float theta = pos * inv_freq[i];
            cs[i] = std::cos(theta);
            sn[i] = std::sin(theta);
        }
        for (int32_t h = 0; h < n_heads; ++h) {
            float *v = x + (r * n_heads + h) * c.head_dim;
            for (int32_t i = 0; i < half; ++i) {
                int32_t a = c.rope_mode == RopeMode::Normal ? 2 * i : i;
                int32_t b = c.rope_mode == RopeMode::Normal ? 2 * i + 1 : i + half;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs[i] - x1 * sn[i];
                v[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

}  // namespace

void forward(const Model &model, ThreadPool &pool, const int32_t *tokens, int64_t n, KVCache &cache,
             LogitsWanted wanted, const LogitsSink &sink) {
    const ModelConfig &c = model.config;
    const ModelWeights &w = model.weights;
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "no tokens to evaluate");
    FQ_CHECK(cache.n_past + n <= cache.n_ctx, FQ_STATUS_INVALID_ARGUMENT,
             "context is full: %d tokens in the cache + %lld new > %d", cache.n_past, (long long)n, cache.n_ctx);
    for (int64_t i = 0; i < n; ++i) {
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < c.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld is outside the vocabulary [0, %d)", tokens[i], (long long)i, c.n_vocab);
    }
    const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, pos0 = cache.n_past;

    std::vector<float> x(n * E), xn(n * E), q(n * Q), att(n * Q), gate(n * F), up(n * F);
    for (int64_t i = 0; i < n; ++i)
        std::copy_n(w.tok_embd.data() + static_cast<int64_t>(tokens[i]) * E, E, x.data() + i * E);

    for (int32_t l = 0; l < c.n_layer; ++l) {
        const LayerWeights &L = w.layers[l];
        float *kc = cache.k.data() + (static_cast<int64_t>(l) * cache.n_ctx) * KV;
        float *vc = cache.v.data() + (static_cast<int64_t>(l) * cache.n_ctx) * KV;
        float *k_new = kc + pos0 * KV;  // [n][kv_dim]: written straight into the cache
        float *v_new = vc + pos0 * KV;

        rmsnorm(xn.data(), x.data(), L.attn_norm.data(), n, E, c.rms_eps);
        matmul_nt(q.data(), xn.data(), L.wq.data(), n, Q, E, pool);
        matmul_nt(k_new, xn.data(), L.wk.data(), n, KV, E, pool);
        matmul_nt(v_new, xn.data(), L.wv.data(), n, KV, E, pool);
        add_bias(q.data(), L.bq, n);
        add_bias(k_new, L.bk, n);
        add_bias(v_new, L.bv, n);
        rope(q.data(), n, c.n_head, c, w.rope_freq_factors, pos0);
        rope(k_new, n, c.n_head_kv, c, w.rope_freq_factors, pos0);
        attention(att.data(), q.data(), kc, vc, n, pos0, c, pool);
        matmul_nt(x.data(), att.data(), L.wo.data(), n, E, Q, pool, /*accumulate=*/true);

        rmsnorm(xn.data(), x.data(), L.ffn_norm.data(), n, E, c.rms_eps);
        matmul_nt(gate.data(), xn.data(), L.w_gate.data(), n, F, E, pool);
        matmul_nt(up.data(), xn.data(), L.w_up.data(), n, F, E, pool);
        for (int64_t i = 0; i < n * F; ++i) {
            float g = gate[i];
            gate[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
        matmul_nt(x.data(), gate.data(), L.w_down.data(), n, E, F, pool, /*accumulate=*/true);
    }
    cache.n_past += static_cast<int32_t>(n);
    if (wanted == LogitsWanted::None) return;

    const int64_t first = wanted == LogitsWanted::Last ? n - 1 : 0;
    const int64_t V = c.n_vocab;
    const int64_t block = 128;  // rows of logits per output-projection call: 128 x vocab floats at most
    std::vector<float> logits(std::min<int64_t>(block, n - first) * V);
    for (int64_t r0 = first; r0 < n; r0 += block) {
        const int64_t rows = std::min(block, n - r0);
        rmsnorm(xn.data(), x.data() + r0 * E, w.output_norm.data(), rows, E, c.rms_eps);
        matmul_nt(logits.data(), xn.data(), w.output_matrix(), rows, V, E, pool);
        sink(r0, rows, logits.data());
    }
}

ForwardFn forward_fn(const Model &model, ThreadPool &pool) {
    return [&model, &pool](const int32_t *tokens, int64_t n, KVCache &cache, LogitsWanted wanted,
                           const LogitsSink &sink) { forward(model, pool, tokens, n, cache, wanted, sink); };
}

WindowsForwardFn windows_forward_fn(const ModelConfig &config, ForwardFn fwd) {
    return [config, fwd = std::move(fwd)](const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                          const WindowLogitsSink &sink) {
        FQ_CHECK(n_seq >= 0 && seq_len >= 1 && seq_len <= config.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                 "%lld sequences of %lld tokens: seq_len must be between 1 and the model's context length %d",
                 (long long)n_seq, (long long)seq_len, config.n_ctx_train);
        KVCache cache;
        cache.init(config, static_cast<int32_t>(seq_len));
        for (int64_t s = 0; s < n_seq; ++s) {
            cache.n_past = 0;
            fwd(tokens + s * seq_len, seq_len, cache, LogitsWanted::All,
                [&](int64_t row0, int64_t rows, const float *lg) { sink(s, row0, rows, lg); });
        }
    };
}

}  // namespace fq
