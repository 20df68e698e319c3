#include "quant/fakequant_forward.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/matmul.h"
#include "model/decoder_ops.h"
#include "quant/fast_ops.h"

namespace fq::quant {

namespace {

const float *lac_of(const LayerTransforms &t, const std::array<float, 2> &v) { return t.lac ? v.data() : nullptr; }

// In place x [rows][n1*n2] <- x (left (x) right) when the transform is present.
void online_kron(float *x, const KronTransform &t, int64_t rows, ThreadPool &pool) {
    if (t.present()) fast::kron_forward(x, x, t.left.data(), t.right.data(), rows, t.n1, t.n2, pool);
}

}  // namespace

bool quantized_layer_forward(const QuantizedModel &qm, int32_t layer, ThreadPool &pool, float *x, int64_t n,
                             int64_t pos0, float *k_cache, float *v_cache, const LinearInputHook *hook) {
    const ModelConfig &c = qm.base->config;
    const QuantLayer &L = qm.layers[static_cast<size_t>(layer)];
    const LayerTransforms &t = L.online;
    const QuantBits &bits = qm.scheme.bits;
    const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, H = c.n_head, D = c.head_dim;
    // The input of linear `lin`, activation-quantized with its own LAC (q/k/v and up/gate share x but not LAC).
    std::vector<float> xq;
    auto quantized_input = [&](int lin, const float *in, int64_t cols) -> const float * {
        const float *p = in;
        if (bits.a < 16) {
            xq.resize(static_cast<size_t>(n * cols));
            fast::act_quant_fwd(xq.data(), in, lac_of(t, t.lac_lin[lin]), n, cols, bits.a, true, pool);
            p = xq.data();
        }
        return p;
    };
    auto stop = [&](int lin, const float *in) { return hook && *hook && !(*hook)(layer, lin, in, n); };

    std::vector<float> xn(n * E), q(n * Q), att(n * Q);
    float *k_new = k_cache + pos0 * KV, *v_new = v_cache + pos0 * KV;
    rmsnorm(xn.data(), x, L.attn_norm.data(), n, E, c.rms_eps);
    online_kron(xn.data(), t.pa, n, pool);
    float *dst[3] = {q.data(), k_new, v_new};
    for (int lin = kLinQ; lin <= kLinV; lin++) {
        const float *in = quantized_input(lin, xn.data(), E);
        if (stop(lin, in)) return false;
        const LinearShape s = linear_shape(c, lin);
        matmul_nt(dst[lin], in, L.lin[lin].w.data(), n, s.out, E, pool);
        add_bias(dst[lin], L.lin[lin].bias, n);
    }
    const fast::RopeTable rope = fast::rope_table(c, qm.base->weights.rope_freq_factors, pos0, n);
    std::vector<int32_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) pos[i] = static_cast<int32_t>(i);
    fast::rope_apply(q.data(), pos.data(), n, c.n_head, c.head_dim, rope, false, pool);
    fast::rope_apply(k_new, pos.data(), n, c.n_head_kv, c.head_dim, rope, false, pool);
    if (t.pk.present()) {
        fast::kron_forward(q.data(), q.data(), static_cast<const float *>(nullptr), t.pk.m_inv_t.data(), n, c.n_head,
                           c.head_dim, pool);
        fast::kron_forward(k_new, k_new, static_cast<const float *>(nullptr), t.pk.m.data(), n, c.n_head_kv,
                           c.head_dim, pool);
    }
    fast::act_quant_fwd(k_new, k_new, lac_of(t, t.lac_k), n * c.n_head_kv, D, bits.k, false, pool);
    fast::act_quant_fwd(v_new, v_new, lac_of(t, t.lac_v), n * c.n_head_kv, D, bits.v, false, pool);
    attention(att.data(), q.data(), k_cache, v_cache, n, pos0, c, pool);
    if (t.ph.present()) {
        fast::kron_forward(att.data(), att.data(), t.ph.m.data(), static_cast<const float *>(nullptr), n, (int)H,
                           (int)D, pool);
    }
    {
        const float *in = quantized_input(kLinO, att.data(), Q);
        if (stop(kLinO, in)) return false;
        matmul_nt(x, in, L.lin[kLinO].w.data(), n, E, Q, pool, /*accumulate=*/true);
    }
    std::vector<float> gate(n * F), up(n * F);
    rmsnorm(xn.data(), x, L.ffn_norm.data(), n, E, c.rms_eps);
    online_kron(xn.data(), t.pug, n, pool);
    {
        const float *in = quantized_input(kLinUp, xn.data(), E);
        if (stop(kLinUp, in)) return false;
        matmul_nt(up.data(), in, L.lin[kLinUp].w.data(), n, F, E, pool);
        in = quantized_input(kLinGate, xn.data(), E);
        if (stop(kLinGate, in)) return false;
        matmul_nt(gate.data(), in, L.lin[kLinGate].w.data(), n, F, E, pool);
    }
    for (int64_t i = 0; i < n * F; ++i) {
        float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
    online_kron(gate.data(), t.pd, n, pool);
    const float *in = quantized_input(kLinDown, gate.data(), F);
    if (stop(kLinDown, in)) return false;
    matmul_nt(x, in, L.lin[kLinDown].w.data(), n, E, F, pool, /*accumulate=*/true);
    return true;
}

void quantized_forward(const QuantizedModel &qm, ThreadPool &pool, const int32_t *tokens, int64_t n, KVCache &cache,
                       LogitsWanted wanted, const LogitsSink &sink) {
    FQ_CHECK(qm.base != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the quantized model has no base model");
    const Model &model = *qm.base;
    const ModelConfig &c = model.config;
    const ModelWeights &w = model.weights;
    FQ_CHECK(static_cast<int32_t>(qm.layers.size()) == c.n_layer, FQ_STATUS_INVALID_ARGUMENT,
             "the quantized model has %zu layers, its base %d", qm.layers.size(), c.n_layer);
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "no tokens to evaluate");
    FQ_CHECK(cache.n_past + n <= cache.n_ctx, FQ_STATUS_INVALID_ARGUMENT,
             "context is full: %d tokens in the cache + %lld new > %d", cache.n_past, (long long)n, cache.n_ctx);
    for (int64_t i = 0; i < n; ++i) {
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < c.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld is outside the vocabulary [0, %d)", tokens[i], (long long)i, c.n_vocab);
    }
    const int64_t E = c.n_embd, KV = c.kv_dim(), pos0 = cache.n_past;
    std::vector<float> x(n * E), xn;
    for (int64_t i = 0; i < n; ++i)
        std::copy_n(w.tok_embd.data() + static_cast<int64_t>(tokens[i]) * E, E, x.data() + i * E);
    for (int32_t l = 0; l < c.n_layer; ++l) {
        float *kc = cache.k.data() + (static_cast<int64_t>(l) * cache.n_ctx) * KV;
        float *vc = cache.v.data() + (static_cast<int64_t>(l) * cache.n_ctx) * KV;
        quantized_layer_forward(qm, l, pool, x.data(), n, pos0, kc, vc, nullptr);
    }
    cache.n_past += static_cast<int32_t>(n);
    if (wanted == LogitsWanted::None) return;
    const int64_t first = wanted == LogitsWanted::Last ? n - 1 : 0;
    const int64_t V = c.n_vocab, block = 128;
    std::vector<float> logits(std::min<int64_t>(block, n - first) * V);
    xn.resize(static_cast<size_t>(std::min<int64_t>(block, n - first) * E));
    for (int64_t r0 = first; r0 < n; r0 += block) {
        const int64_t rows = std::min(block, n - r0);
        rmsnorm(xn.data(), x.data() + r0 * E, w.output_norm.data(), rows, E, c.rms_eps);
        matmul_nt(logits.data(), xn.data(), w.output_matrix(), rows, V, E, pool);
        sink(r0, rows, logits.data());
    }
}

ForwardFn quantized_forward_fn(const QuantizedModel &qm, ThreadPool &pool) {
    return [&qm, &pool](const int32_t *tokens, int64_t n, KVCache &cache, LogitsWanted wanted,
                        const LogitsSink &sink) { quantized_forward(qm, pool, tokens, n, cache, wanted, sink); };
}

}  // namespace fq::quant
