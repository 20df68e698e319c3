#include "cuda/decoder_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/kron_quant_ref.h"
#include "cpu/w4a4_gemm_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/engine_kernels.h"
#include "cuda/head_transforms.h"
#include "cuda/kron_quant.h"
#include "cuda/kv4_attention.h"
#include "cuda/layer_ops_f16.h"
#include "cuda/w4a4_gemm.h"
#include "cuda/wineval_kernels.h"
#include "model/model.h"
#include "quant/fakequant_forward.h"
#include "quant/fast_ops.h"
#include "quant/kron.h"

namespace fq::cuda {

namespace q = fq::quant;

struct EngineCache::Layer {
    DeviceBuffer k, v, k_params, v_params;
    KvCacheView view;
};

EngineCache::~EngineCache() = default;

size_t EngineCache::device_bytes() const {
    size_t total = 0;
    for (int l = 0; l < n_layers_; ++l)
        total += layers_[l].k.n_bytes() + layers_[l].v.n_bytes() + layers_[l].k_params.n_bytes() +
                 layers_[l].v_params.n_bytes();
    return total;
}

struct DecoderEngine::Impl {
    bool w4a4 = true;
    int device = 0;
    DecoderLayerShape shape;
    int n_layer = 0, n_vocab = 0;
    int64_t rope_positions = 0;
    GemmF16Fn gemm;
    Stream stream;
    std::vector<DeviceBuffer> weights;  // every weight buffer the layers point into
    size_t weight_bytes = 0;
    const uint16_t *embd = nullptr;     // (V, E) FP16
    const uint16_t *out_w = nullptr;    // (V, E) FP16 (the embedding when tied)
    const float *out_norm = nullptr;    // (E) FP32
    std::vector<std::unique_ptr<W4A4DecoderLayer>> w4a4_layers;
    std::vector<std::unique_ptr<F16DecoderLayer>> f16_layers;
    // Scratch, grown on demand (after a synchronize).
    DeviceBuffer tokens, h, ws, xn, logits16, logits32, targets, nll, argmax;
    std::unique_ptr<EngineCache> eval_cache;
    std::mutex mu;
    // Decode steps as one CUDA graph: captured each step (positions are kernel arguments), then the instantiated
    // graph is updated in place (cudaGraphExecUpdate) and launched, so the GPU runs the step's ~13 kernels per layer
    // back to back. The first decode step runs eagerly (kernels set their attributes on first use, outside capture).
    // Off by default: measured on an H100, capturing and updating every step costs more host time than the launches
    // it replaces (SmolLM2 W4A4 batch 1: 2.88 ms per step against 2.67 eager; LLaMA-2-7B shape: 5.97 against 5.39;
    // benchmarks/results/engine-h100.md). A graph that pays needs kernels that read the position from device memory.
    bool graphs = false;
    bool decode_ran = false;
    cudaGraphExec_t decode_exec = nullptr;
    ~Impl() {
        if (decode_exec) cudaGraphExecDestroy(decode_exec);
    }

    template <class T> const T *upload(const T *host, size_t count) {
        DeviceBuffer b(std::max<size_t>(count * sizeof(T), 16));
        if (count) b.upload(host, count * sizeof(T), stream);
        weight_bytes += b.n_bytes();
        weights.push_back(std::move(b));
        return weights.back().as<T>();
    }
    template <class T> const T *upload(const std::vector<T> &v) { return upload(v.data(), v.size()); }
    const uint16_t *upload_f16(const float *v, size_t count) {
        std::vector<uint16_t> h(count);
        for (size_t i = 0; i < count; ++i) h[i] = cpu::f32_to_f16_bits(v[i]);
        return upload(h);
    }
    const uint16_t *upload_f16(const std::vector<float> &v) { return upload_f16(v.data(), v.size()); }

    void grow(DeviceBuffer &b, size_t bytes) {
        if (b.n_bytes() >= bytes) return;
        stream.synchronize();
        b = DeviceBuffer(std::max<size_t>(bytes, 256));
    }
};

namespace {

std::vector<uint16_t> identity_f16(int n) {
    std::vector<uint16_t> m(static_cast<size_t>(n) * n, 0);
    for (int i = 0; i < n; ++i) m[static_cast<size_t>(i) * n + i] = cpu::f32_to_f16_bits(1.0f);
    return m;
}

DecoderLayerShape layer_shape(const ModelConfig &c) {
    FQ_CHECK(c.rope_dim == c.head_dim, FQ_STATUS_UNSUPPORTED, "GPU engine: partial RoPE (rope_dim %d of head_dim %d)",
             c.rope_dim, c.head_dim);
    DecoderLayerShape s;
    s.hidden = c.n_embd;
    s.n_heads = c.n_head;
    s.n_kv_heads = c.n_head_kv;
    s.head_dim = c.head_dim;
    s.intermediate = c.n_ff;
    s.rms_eps = c.rms_eps;
    s.rope_neox = c.rope_mode == RopeMode::Neox;
    return s;
}

// The CPU engine's RoPE angles (fast::rope_table: FP32 arithmetic, frequency factors included) as {cos, sin} pairs.
std::vector<float> rope_pairs(const ModelConfig &c, const std::vector<float> &freq_factors, int64_t n_pos) {
    const q::fast::RopeTable t = q::fast::rope_table(c, freq_factors, 0, n_pos);
    std::vector<float> cs(static_cast<size_t>(n_pos * t.half * 2));
    for (size_t i = 0; i < t.cs.size(); ++i) {
        cs[2 * i] = t.cs[i];
        cs[2 * i + 1] = t.sn[i];
    }
    return cs;
}

// The common part of both engines: the shape check, the stream, embeddings, output and the RoPE table (*rope).
std::unique_ptr<DecoderEngine::Impl> new_impl(const Model &m, int device, GemmF16Fn gemm, bool w4a4,
                                              const float **rope) {
    const ModelConfig &c = m.config;
    const std::string why = DecoderEngine::unsupported_reason(c, w4a4);
    FQ_CHECK(why.empty(), FQ_STATUS_UNSUPPORTED, "the %s GPU engine does not cover this model: %s",
             w4a4 ? "W4A4" : "FP16", why.c_str());
    set_device(device);
    auto im = std::make_unique<DecoderEngine::Impl>();
    im->w4a4 = w4a4;
    im->device = device;
    im->shape = layer_shape(c);
    im->gemm = gemm ? std::move(gemm) : GemmF16Fn(gemm_f16_simple);
    im->stream = Stream::create();
    im->n_layer = c.n_layer;
    im->n_vocab = c.n_vocab;
    im->rope_positions = c.n_ctx_train;
    const size_t ve = static_cast<size_t>(c.n_vocab) * c.n_embd;
    im->embd = im->upload_f16(m.weights.tok_embd.data(), ve);
    im->out_w = m.weights.output.empty() ? im->embd : im->upload_f16(m.weights.output.data(), ve);
    im->out_norm = im->upload(m.weights.output_norm);
    *rope = im->upload(rope_pairs(c, m.weights.rope_freq_factors, im->rope_positions));
    return im;
}

float clip_factor(const q::LayerTransforms &t, const std::array<float, 2> &logits, int side) {
    return t.lac ? cpu::lac_factor(logits[static_cast<size_t>(side)]) : 1.0f;
}

}  // namespace

std::string DecoderEngine::unsupported_reason(const ModelConfig &c, bool w4a4) {
    char buf[160];
    const int group = c.n_head_kv > 0 ? c.n_head / c.n_head_kv : 0;
    if (c.head_dim != 64 && c.head_dim != 128)
        std::snprintf(buf, sizeof(buf), "head_dim %d (64 or 128)", c.head_dim);
    else if (c.rope_dim != c.head_dim)
        std::snprintf(buf, sizeof(buf), "partial RoPE (rope_dim %d of head_dim %d)", c.rope_dim, c.head_dim);
    else if (c.n_embd % 64 || c.n_ff % 64 || c.q_dim() % 64)
        std::snprintf(buf, sizeof(buf), "hidden %d, intermediate %d, heads x head_dim %d (multiples of 64)", c.n_embd,
                      c.n_ff, c.q_dim());
    else if (group * c.n_head_kv != c.n_head || !(group <= 4 || group == 6 || group == 7 || group == 8))
        std::snprintf(buf, sizeof(buf), "%d query heads over %d KV heads", c.n_head, c.n_head_kv);
    else if (!w4a4 && c.qkv_bias)
        std::snprintf(buf, sizeof(buf), "q/k/v biases (the FP16 engine has none)");
    else if (w4a4 && !o_proj_input_transform_supported(c.n_head, c.head_dim))
        std::snprintf(buf, sizeof(buf), "o_proj head transform of %d heads", c.n_head);
    else if (w4a4 && (!kron_quant_supported(q::decompose_dim(c.n_embd).n1, q::decompose_dim(c.n_embd).n2, true,
                                            true) ||
                      !kron_quant_supported(q::decompose_dim(c.n_ff).n1, q::decompose_dim(c.n_ff).n2, true, true)))
        std::snprintf(buf, sizeof(buf), "no compiled Kronecker transform for hidden %d / intermediate %d", c.n_embd,
                      c.n_ff);
    else
        return {};
    return buf;
}

std::unique_ptr<DecoderEngine> DecoderEngine::w4a4(const q::QuantizedModel &qm, int device, GemmF16Fn gemm) {
    FQ_CHECK(qm.base != nullptr && qm.weights_quantized, FQ_STATUS_INVALID_ARGUMENT,
             "GPU engine: the quantized model has no base or unquantized weights");
    const q::QuantBits &b = qm.scheme.bits;
    FQ_CHECK(b.w == 4 && b.a == 4 && b.k == 4 && b.v == 4, FQ_STATUS_UNSUPPORTED,
             "the W4A4 GPU engine runs w4a4kv4 models; this one is %s", q::bits_name(b).c_str());
    const Model &m = *qm.base;
    const ModelConfig &c = m.config;
    const float *rope = nullptr;
    std::unique_ptr<Impl> im = new_impl(m, device, std::move(gemm), true, &rope);
    const bool s8_copy = w4a4_native_act_format() == W4A4ActFormat::kInt8;

    auto kron_pair = [&](const q::KronTransform &t, int64_t n, const uint16_t **p1, const uint16_t **p2, int *n1,
                         int *n2) {
        if (t.present()) {
            *n1 = t.n1;
            *n2 = t.n2;
            *p1 = im->upload_f16(t.left);
            *p2 = im->upload_f16(t.right);
        } else {
            const q::DecomposeDims d = q::decompose_dim(n);
            *n1 = d.n1;
            *n2 = d.n2;
            *p1 = im->upload(identity_f16(d.n1));
            *p2 = im->upload(identity_f16(d.n2));
        }
    };
    for (int l = 0; l < c.n_layer; ++l) {
        const q::QuantLayer &L = qm.layers[static_cast<size_t>(l)];
        const q::LayerTransforms &t = L.online;
        W4A4LayerWeights w;
        w.attn_norm = im->upload(L.attn_norm);
        w.ffn_norm = im->upload(L.ffn_norm);
        kron_pair(t.pa, c.n_embd, &w.pa1, &w.pa2, &w.na1, &w.na2);
        kron_pair(t.pug, c.n_embd, &w.pug1, &w.pug2, &w.nu1, &w.nu2);
        kron_pair(t.pd, c.n_ff, &w.pd1, &w.pd2, &w.nd1, &w.nd2);
        w.ph = t.ph.present() ? im->upload_f16(t.ph.m) : im->upload(identity_f16(c.n_head));
        if (t.pk.present()) {
            w.pk = im->upload_f16(t.pk.m);
            w.pk_inv_t = im->upload_f16(t.pk.m_inv_t);
        }
        W4A4Linear *lins[q::kNumLinears] = {&w.q, &w.k, &w.v, &w.o, &w.up, &w.gate, &w.down};
        for (int lin = 0; lin < q::kNumLinears; ++lin) {
            const q::QuantLinear &ql = L.lin[static_cast<size_t>(lin)];
            const q::LinearShape s = q::linear_shape(c, lin);
            FQ_CHECK(static_cast<int64_t>(ql.scale.size()) == s.out &&
                         static_cast<int64_t>(ql.w.size()) == s.out * s.in,
                     FQ_STATUS_INVALID_ARGUMENT, "GPU engine: layer %d %s has no per-row weight scales", l,
                     q::linear_name(lin));
            // The fake-quantized weight is scale * code in FP32; dividing back recovers the code exactly.
            std::vector<int8_t> codes(ql.w.size());
            for (int64_t r = 0; r < s.out; ++r) {
                const float sc = ql.scale[static_cast<size_t>(r)];
                for (int64_t k = 0; k < s.in; ++k) {
                    const float v = ql.w[static_cast<size_t>(r * s.in + k)];
                    const float code = sc > 0.0f ? std::nearbyint(v / sc) : 0.0f;
                    codes[static_cast<size_t>(r * s.in + k)] = static_cast<int8_t>(std::min(7.0f, std::max(-8.0f, code)));
                }
            }
            std::vector<uint8_t> packed(codes.size() / 2);
            cpu::pack_int4(packed.data(), codes.data(), s.out, s.in);
            W4A4Linear &o = *lins[lin];
            o.w_packed = im->upload(packed);
            if (s8_copy) o.w_s8 = im->upload(codes);
            o.w_scale = im->upload(ql.scale);
            if (!ql.bias.empty()) o.bias = im->upload(ql.bias);
            o.clip_max = clip_factor(t, t.lac_lin[static_cast<size_t>(lin)], 0);
            o.clip_min = clip_factor(t, t.lac_lin[static_cast<size_t>(lin)], 1);
        }
        w.k_clip_max = clip_factor(t, t.lac_k, 0);
        w.k_clip_min = clip_factor(t, t.lac_k, 1);
        w.v_clip_max = clip_factor(t, t.lac_v, 0);
        w.v_clip_min = clip_factor(t, t.lac_v, 1);
        w.rope_cos_sin = rope;
        w.rope_positions = im->rope_positions;
        im->w4a4_layers.push_back(std::make_unique<W4A4DecoderLayer>(im->shape, w));
    }
    im->stream.synchronize();
    return std::unique_ptr<DecoderEngine>(new DecoderEngine(std::move(im)));
}

std::unique_ptr<DecoderEngine> DecoderEngine::f16(const Model &m, int device, GemmF16Fn gemm) {
    const ModelConfig &c = m.config;
    const float *rope = nullptr;
    std::unique_ptr<Impl> im = new_impl(m, device, std::move(gemm), false, &rope);
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerWeights &L = m.weights.layers[static_cast<size_t>(l)];
        F16LayerWeights w;
        w.attn_norm = im->upload(L.attn_norm);
        w.ffn_norm = im->upload(L.ffn_norm);
        std::vector<float> cat(L.wq);
        cat.insert(cat.end(), L.wk.begin(), L.wk.end());
        cat.insert(cat.end(), L.wv.begin(), L.wv.end());
        w.w_qkv = im->upload_f16(cat);
        w.w_o = im->upload_f16(L.wo);
        cat.assign(L.w_gate.begin(), L.w_gate.end());
        cat.insert(cat.end(), L.w_up.begin(), L.w_up.end());
        w.w_gate_up = im->upload_f16(cat);
        w.w_down = im->upload_f16(L.w_down);
        w.rope_cos_sin = rope;
        w.rope_positions = im->rope_positions;
        im->f16_layers.push_back(std::make_unique<F16DecoderLayer>(im->shape, w, im->gemm));
    }
    im->stream.synchronize();
    return std::unique_ptr<DecoderEngine>(new DecoderEngine(std::move(im)));
}

DecoderEngine::DecoderEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
    const char *env = std::getenv("FQ_ENGINE_GRAPHS");
    impl_->graphs = env && std::string(env) == "1";
}

void DecoderEngine::set_decode_graphs(bool on) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->graphs = on;
}
DecoderEngine::~DecoderEngine() = default;

const char *DecoderEngine::name() const { return impl_->w4a4 ? "cuda-w4a4" : "cuda-fp16"; }
int DecoderEngine::n_vocab() const { return impl_->n_vocab; }
int64_t DecoderEngine::max_positions() const { return impl_->rope_positions; }
size_t DecoderEngine::weight_bytes() const { return impl_->weight_bytes; }

std::unique_ptr<EngineCache> DecoderEngine::make_cache(int batch, int64_t capacity) {
    Impl &im = *impl_;
    FQ_CHECK(batch >= 1 && capacity >= 1 && capacity <= im.rope_positions, FQ_STATUS_INVALID_ARGUMENT,
             "GPU engine: a cache of %d sequences x %lld positions (at most %lld)", batch, (long long)capacity,
             (long long)im.rope_positions);
    set_device(im.device);
    const KvCacheFormat f = im.w4a4 ? KvCacheFormat::kInt4 : KvCacheFormat::kF16;
    const DecoderLayerShape &s = im.shape;
    std::unique_ptr<EngineCache> c(new EngineCache());
    c->layers_.reset(new EngineCache::Layer[static_cast<size_t>(im.n_layer)]);
    c->n_layers_ = im.n_layer;
    c->batch_ = batch;
    c->capacity_ = capacity;
    const size_t data = kv_cache_data_bytes(f, batch, s.n_kv_heads, s.head_dim, capacity);
    const size_t params = kv_cache_params_bytes(f, batch, s.n_kv_heads, capacity);
    for (int l = 0; l < im.n_layer; ++l) {
        EngineCache::Layer &L = c->layers_[l];
        L.k = DeviceBuffer(data);
        L.v = DeviceBuffer(data);
        if (params) {
            L.k_params = DeviceBuffer(params);
            L.v_params = DeviceBuffer(params);
        }
        L.view.format = f;
        L.view.k = L.k.data();
        L.view.v = L.v.data();
        L.view.k_params = L.k_params.as<float>();
        L.view.v_params = L.v_params.as<float>();
        L.view.batch = batch;
        L.view.kv_heads = s.n_kv_heads;
        L.view.head_dim = s.head_dim;
        L.view.capacity = capacity;
    }
    return c;
}

void DecoderEngine::run_layers(EngineCache &cache, const int32_t *tokens, int64_t n_new) {
    prepare_step(cache, tokens, n_new);
    enqueue_layers(cache, n_new);
    cache.position_ += n_new;
}

void DecoderEngine::prepare_step(EngineCache &cache, const int32_t *tokens, int64_t n_new) {
    Impl &im = *impl_;
    FQ_CHECK(n_new >= 1, FQ_STATUS_INVALID_ARGUMENT, "GPU engine: no tokens to evaluate");
    const int64_t pos0 = cache.position_;
    FQ_CHECK(pos0 + n_new <= cache.capacity_, FQ_STATUS_INVALID_ARGUMENT,
             "context is full: %lld tokens in the cache + %lld new > %lld", (long long)pos0, (long long)n_new,
             (long long)cache.capacity_);
    const int64_t T = n_new * cache.batch_, E = im.shape.hidden;
    for (int64_t i = 0; i < T; ++i)
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < im.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld is outside the vocabulary [0, %d)", tokens[i], (long long)i, im.n_vocab);
    set_device(im.device);
    im.grow(im.tokens, static_cast<size_t>(T) * sizeof(int32_t));
    im.tokens.upload(tokens, static_cast<size_t>(T) * sizeof(int32_t), im.stream);
    im.grow(im.h, static_cast<size_t>(T * E) * 2);
    size_t need = 0;
    for (int l = 0; l < im.n_layer; ++l) {
        const KvCacheView &v = cache.layers_[l].view;
        need = std::max(need, im.w4a4 ? im.w4a4_layers[static_cast<size_t>(l)]->workspace_bytes(n_new, pos0, v)
                                      : im.f16_layers[static_cast<size_t>(l)]->workspace_bytes(n_new, pos0, v));
    }
    im.grow(im.ws, need);
}

void DecoderEngine::enqueue_layers(EngineCache &cache, int64_t n_new) {
    Impl &im = *impl_;
    const int64_t pos0 = cache.position_;
    const int64_t T = n_new * cache.batch_, E = im.shape.hidden;
    auto *h = im.h.as<uint16_t>();
    embed_rows_f16(h, im.embd, im.tokens.as<int32_t>(), T, E, im.stream.handle());
    for (int l = 0; l < im.n_layer; ++l) {
        const KvCacheView &v = cache.layers_[l].view;
        if (im.w4a4)
            im.w4a4_layers[static_cast<size_t>(l)]->forward(h, n_new, pos0, v, im.ws.data(), im.ws.n_bytes(),
                                                             im.stream);
        else
            im.f16_layers[static_cast<size_t>(l)]->forward(h, n_new, pos0, v, im.ws.data(), im.ws.n_bytes(),
                                                           im.stream);
    }
}

void DecoderEngine::step(EngineCache &cache, const int32_t *tokens, int64_t n_new, float *logits_last) {
    Impl &im = *impl_;
    std::lock_guard<std::mutex> lock(im.mu);
    FQ_CHECK(tokens != nullptr, FQ_STATUS_INVALID_ARGUMENT, "GPU engine: NULL tokens");
    prepare_step(cache, tokens, n_new);
    const int64_t B = cache.batch_, E = im.shape.hidden, V = im.n_vocab;
    if (logits_last) {
        im.grow(im.xn, static_cast<size_t>(B * E) * 2);
        im.grow(im.logits16, static_cast<size_t>(B * V) * 2);
        im.grow(im.logits32, static_cast<size_t>(B * V) * 4);
    }
    auto enqueue = [&] {
        enqueue_layers(cache, n_new);
        if (!logits_last) return;
        auto *xn = im.xn.as<uint16_t>();
        gather_rows_f16(xn, im.h.as<uint16_t>(), B, n_new, n_new - 1, E, im.stream.handle());
        rmsnorm_f16(xn, xn, im.out_norm, B, E, im.shape.rms_eps, im.stream);
        im.gemm(im.logits16.as<uint16_t>(), xn, im.out_w, B, V, E, im.stream);
        widen_f16_to_f32(im.logits32.as<float>(), im.logits16.as<uint16_t>(), B * V, im.stream.handle());
    };
    if (im.graphs && n_new == 1 && im.decode_ran) {
        try {
            run_as_graph(enqueue);
        } catch (const Error &) {
            // Nothing captured has run: do the step eagerly, and from now on without graphs.
            im.graphs = false;
            enqueue();
        }
    } else {
        enqueue();
        if (n_new == 1) im.decode_ran = true;
    }
    cache.position_ += n_new;
    if (logits_last) im.logits32.download(logits_last, static_cast<size_t>(B * V) * sizeof(float), im.stream);
    else im.stream.synchronize();
}

void DecoderEngine::run_as_graph(const std::function<void()> &enqueue) {
    Impl &im = *impl_;
    auto stream = static_cast<cudaStream_t>(im.stream.handle());
    FQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        enqueue();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);  // leaves the stream usable again
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    FQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExecUpdateResultInfo info;
    if (!im.decode_exec || cudaGraphExecUpdate(im.decode_exec, graph, &info) != cudaSuccess) {
        // Another topology (the first graph, another batch, attention splitting its keys differently): build anew.
        cudaGetLastError();
        if (im.decode_exec) cudaGraphExecDestroy(im.decode_exec);
        im.decode_exec = nullptr;
        const cudaError_t e = cudaGraphInstantiate(&im.decode_exec, graph, 0);
        if (e != cudaSuccess) {
            cudaGraphDestroy(graph);
            FQ_CUDA_CHECK(e);
        }
    }
    cudaGraphDestroy(graph);
    FQ_CUDA_CHECK(cudaGraphLaunch(im.decode_exec, stream));
}

void DecoderEngine::synchronize() { impl_->stream.synchronize(); }

namespace {
constexpr int64_t kLogitRowsPerBlock = 1024;  // rows of logits produced at once (FP16 + FP32: 6 V bytes per row)
}

int64_t DecoderEngine::preferred_batch(int64_t seq_len) const {
    return std::max<int64_t>(1, std::min<int64_t>(16, 8192 / std::max<int64_t>(1, seq_len)));
}

// Both evaluation entry points: windows [n_seq][seq_len] in batches through a cache of seq_len, then the final
// norm and output projection over blocks of rows; `rows_done(batch_first_seq, row0, rows, logits32_device)`.
namespace {
template <class F>
void for_each_logit_block(DecoderEngine::Impl &im, int64_t n_seq, int64_t seq_len, int64_t batch, const F &visit,
                          const std::function<void(int64_t s0, int64_t nb)> &run) {
    for (int64_t s0 = 0; s0 < n_seq; s0 += batch) {
        const int64_t nb = std::min(batch, n_seq - s0);
        run(s0, nb);
        const int64_t T = nb * seq_len, E = im.shape.hidden, V = im.n_vocab;
        const int64_t R = std::min(T, kLogitRowsPerBlock);
        im.grow(im.xn, static_cast<size_t>(R * E) * 2);
        im.grow(im.logits16, static_cast<size_t>(R * V) * 2);
        im.grow(im.logits32, static_cast<size_t>(R * V) * 4);
        for (int64_t r0 = 0; r0 < T; r0 += R) {
            const int64_t rows = std::min(R, T - r0);
            auto *xn = im.xn.as<uint16_t>();
            gather_rows_f16(xn, im.h.as<uint16_t>() + r0 * E, rows, 1, 0, E, im.stream.handle());
            rmsnorm_f16(xn, xn, im.out_norm, rows, E, im.shape.rms_eps, im.stream);
            im.gemm(im.logits16.as<uint16_t>(), xn, im.out_w, rows, V, E, im.stream);
            widen_f16_to_f32(im.logits32.as<float>(), im.logits16.as<uint16_t>(), rows * V, im.stream.handle());
            visit(s0, r0, rows);
        }
    }
}
}  // namespace

void DecoderEngine::run_windows(const int32_t *tokens, int64_t n_seq, int64_t seq_len) {
    Impl &im = *impl_;
    if (!im.eval_cache || im.eval_cache->batch() != n_seq || im.eval_cache->capacity() != seq_len)
        im.eval_cache = make_cache(static_cast<int>(n_seq), seq_len);
    im.eval_cache->reset();
    run_layers(*im.eval_cache, tokens, seq_len);
}

void DecoderEngine::forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink) {
    Impl &im = *impl_;
    std::lock_guard<std::mutex> lock(im.mu);
    FQ_CHECK(n_seq >= 0 && seq_len >= 1 && seq_len <= im.rope_positions, FQ_STATUS_INVALID_ARGUMENT,
             "GPU engine: %lld windows of %lld tokens (at most %lld)", (long long)n_seq, (long long)seq_len,
             (long long)im.rope_positions);
    const int64_t batch = preferred_batch(seq_len), V = im.n_vocab;
    std::vector<float> host;
    for_each_logit_block(
        im, n_seq, seq_len, batch,
        [&](int64_t s0, int64_t r0, int64_t rows) {
            host.resize(static_cast<size_t>(rows * V));
            im.logits32.download(host.data(), host.size() * sizeof(float), im.stream);
            // A block may span windows: hand each window its own rows.
            for (int64_t r = r0; r < r0 + rows;) {
                const int64_t seq = r / seq_len, in_seq = r % seq_len;
                const int64_t n = std::min(r0 + rows - r, seq_len - in_seq);
                sink(s0 + seq, in_seq, n, host.data() + (r - r0) * V);
                r += n;
            }
        },
        [&](int64_t s0, int64_t nb) { run_windows(tokens + s0 * seq_len, nb, seq_len); });
}

void DecoderEngine::score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
                          int32_t *argmax) {
    Impl &im = *impl_;
    std::lock_guard<std::mutex> lock(im.mu);
    FQ_CHECK(n_seq >= 0 && seq_len >= 1 && seq_len <= im.rope_positions, FQ_STATUS_INVALID_ARGUMENT,
             "GPU engine: %lld windows of %lld tokens (at most %lld)", (long long)n_seq, (long long)seq_len,
             (long long)im.rope_positions);
    for (int64_t i = 0; i < n_seq * seq_len; ++i)
        FQ_CHECK(targets[i] >= -1 && targets[i] < im.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "target id %d at index %lld is outside [-1, %d)", targets[i], (long long)i, im.n_vocab);
    const int64_t batch = preferred_batch(seq_len), V = im.n_vocab;
    for_each_logit_block(
        im, n_seq, seq_len, batch,
        [&](int64_t s0, int64_t r0, int64_t rows) {
            const int64_t first = s0 * seq_len + r0;
            im.grow(im.targets, static_cast<size_t>(rows) * sizeof(int32_t));
            im.grow(im.nll, static_cast<size_t>(rows) * sizeof(double));
            im.grow(im.argmax, static_cast<size_t>(rows) * sizeof(int32_t));
            im.targets.upload(targets + first, static_cast<size_t>(rows) * sizeof(int32_t), im.stream);
            wineval::score_rows(im.logits32.as<float>(), rows, V, im.targets.as<int32_t>(), im.nll.as<double>(),
                                argmax ? im.argmax.as<int32_t>() : nullptr, im.stream.handle());
            im.nll.download(nll + first, static_cast<size_t>(rows) * sizeof(double), im.stream);
            if (argmax)
                im.argmax.download(argmax + first, static_cast<size_t>(rows) * sizeof(int32_t), im.stream);
        },
        [&](int64_t s0, int64_t nb) { run_windows(tokens + s0 * seq_len, nb, seq_len); });
}

}  // namespace fq::cuda
