// The fake-quantized model and its forward pass (spec section 1.4): reparameterized weights that are already
// fake-quantized, the online transforms P_a, P_ug, P_d (Kronecker), P_h (head mixer) and P_k (on Q/K after RoPE),
// per-token activation fake quantization with the learned LAC before every linear, and K/V fake quantization.
// Everything else (embeddings, final norm, output projection, tokenizer) is the base model's.
//
// The forward has the contract of fq::forward (model/forward.h): tokens at positions cache.n_past.., keys/values
// appended to the KVCache, logits through a LogitsSink. The cache holds K after RoPE, P_k and fake quantization and V
// after fake quantization (each is quantized per token and head, so caching the quantized values is exact).
// With no transforms and every width at 16 it computes exactly what fq::forward computes.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "quant/quant_config.h"
#include "quant/transform_set.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant {

struct QuantLinear {
    std::vector<float> w;      // [out][in]: merged transforms, clipped, and (once quantized) fake-quantized
    std::vector<float> bias;   // [out] or empty
    std::vector<float> scale;  // [out] per-row weight scale once quantized with w < 16; empty before/otherwise
};

struct QuantLayer {
    std::vector<float> attn_norm;  // [E] input_layernorm gain with c_a folded in
    std::vector<float> ffn_norm;   // [E] post_attention_layernorm gain with c_ug folded in
    std::array<QuantLinear, kNumLinears> lin;
    // The online parts: pa/pug/pd left/right, ph.m, pk.m/m_inv_t and the LAC logits (diag and LWC are merged).
    LayerTransforms online;
};

struct QuantizedModel {
    const Model *base = nullptr;  // must outlive this object
    QuantScheme scheme;
    std::vector<QuantLayer> layers;
    bool weights_quantized = false;  // false between reparameterization and weight quantization
};

// Called with the (activation-quantized) input of every linear just before its product: layer, LinearId, x [n][in].
// Returning false stops the layer there (the residual stream is then left partly updated); GPTQ uses this to collect
// Hessians group by group.
using LinearInputHook = std::function<bool(int32_t layer, int lin, const float *x, int64_t n)>;

// One decoder layer on x [n][E] (in place) at positions pos0..pos0+n-1, with that layer's cache rows
// k_cache/v_cache [n_ctx][kv_dim] (rows [0, pos0) already filled; rows [pos0, pos0+n) are written).
// Returns false when the hook stopped it.
bool quantized_layer_forward(const QuantizedModel &qm, int32_t layer, ThreadPool &pool, float *x, int64_t n,
                             int64_t pos0, float *k_cache, float *v_cache, const LinearInputHook *hook);

// fq::forward's contract on the fake-quantized model. Throws INVALID_ARGUMENT (bad ids, full cache).
void quantized_forward(const QuantizedModel &qm, ThreadPool &pool, const int32_t *tokens, int64_t n, KVCache &cache,
                       LogitsWanted wanted, const LogitsSink &sink);

// The same as an fq::ForwardFn (model/forward.h; model and pool bound), for evaluation code that takes any forward.
ForwardFn quantized_forward_fn(const QuantizedModel &qm, ThreadPool &pool);

}  // namespace fq::quant
