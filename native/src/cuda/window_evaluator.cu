// Whole-sequence evaluation of a fake-quantized model on the GPU (window_evaluator.h): the steps of
// quant::quantized_forward in the same order, with every weight stored in FP32 on the device (the fake-quantized
// values themselves), products through gemm_f32 and the rest through wineval_kernels.h.
//
// Layout of one call: the sequences go through the layers in chunks of at most max_tokens_ tokens (whole sequences;
// activations are allocated for one chunk) and, within a chunk, in groups of about kGroupTokens tokens, so every
// product has thousands of rows. The q, k and v weights sit in one [q+2kv][E] matrix and
// up/gate in one [2F][E] matrix; when the three (two) linears see the same quantized input (no LAC, equal LAC
// logits, or a16) one product serves them all, otherwise each writes its column slice of the same output.
// Logits: the final norm and the output projection run in blocks of logit_rows_ rows into two device buffers in
// turn, on their own stream, for one group of sequences while the next group is in the layers; a third stream
// copies each finished block into pinned host memory while the next block is computed, and the host hands block
// b-1 to the sink meanwhile.
#include "cuda/window_evaluator.h"

#include "eval/perplexity.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <cmath>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"
#include "cuda/wineval_kernels.h"
#include "quant/fakequant_forward.h"
#include "quant/fast_ops.h"

namespace fq::cuda {

namespace {

using quant::kLinDown;
using quant::kLinGate;
using quant::kLinK;
using quant::kLinO;
using quant::kLinQ;
using quant::kLinUp;
using quant::kLinV;

constexpr int64_t kTargetTokens = 16384;              // rows per product that keep an H100 busy
constexpr int64_t kMaxChunkTokens = 32768;            // more buys nothing and only costs memory
constexpr int64_t kGroupTokens = 8192;                // sequences per pass through the layers (see run_chunk)
constexpr size_t kLogitBlockBytes = size_t{64} << 20;  // one device (and one pinned host) logits block

DeviceBuffer upload_floats(const float *host, size_t n, const Stream &stream) {
    DeviceBuffer buf(n * sizeof(float));
    if (n > 0) buf.upload(host, n * sizeof(float), stream);
    return buf;
}

DeviceBuffer upload_vec(const std::vector<float> &v, const Stream &stream) {
    return upload_floats(v.data(), v.size(), stream);
}

const float *ptr_or_null(const DeviceBuffer &b) { return b.n_bytes() ? b.as<float>() : nullptr; }

// sigmoid(logit) in double rounded to float, as act_row_params applies LAC; 1 (an exact no-op) without LAC.
float lac_sig(bool lac, float logit) {
    return lac ? static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logit)))) : 1.0f;
}

struct DevKron {
    int n1 = 0, n2 = 0;
    DeviceBuffer left, right;  // [n1][n1], [n2][n2]; empty = identity
};

struct DevLayer {
    DeviceBuffer attn_norm, ffn_norm;  // [E]
    DeviceBuffer wqkv, bqkv;           // [Q + 2 KV][E], [Q + 2 KV] (empty without biases)
    DeviceBuffer wo;                   // [E][Q]
    DeviceBuffer wug;                  // [2F][E]: up rows, then gate rows
    DeviceBuffer wd;                   // [E][F]
    DevKron pa, pug, pd;
    DeviceBuffer ph;                   // [H][H] or empty
    DeviceBuffer pk_m, pk_m_inv_t;     // [D][D] or empty
    bool qkv_shared = true, ug_shared = true;  // one quantized input serves q/k/v (up/gate)
    float sig[quant::kNumLinears][2];  // LAC sigmoids {max, min} per linear input
    float k_sig[2], v_sig[2];
};

DevKron upload_kron(const quant::KronTransform &t, const Stream &s) {
    DevKron k;
    if (!t.present()) return k;
    k.n1 = t.n1;
    k.n2 = t.n2;
    k.left = upload_vec(t.left, s);
    k.right = upload_vec(t.right, s);
    return k;
}

class WindowEvaluatorImpl final : public WindowEvaluator {
  public:
    WindowEvaluatorImpl(const quant::QuantizedModel &qm, int device);
    ~WindowEvaluatorImpl() override;
    void forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink) override;
    void score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
               int32_t *argmax) override {
        // The logits are scored on the host: one thread, ~4 s per 16k rows of a 49k vocabulary.
        windows_score_fn(c_, [this](const int32_t *t, int64_t n, int64_t len, const WindowLogitsSink &sink) {
            forward(t, n, len, sink);
        })(tokens, targets, n_seq, seq_len, nll, argmax);
    }
    int64_t preferred_batch(int64_t seq_len) const override;

  private:
    void ensure_capacity(int64_t n_tok);
    void ensure_rope(int64_t seq_len);
    void ensure_logit_buffers();
    void run_chunk(const int32_t *tokens, int64_t seq0, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink);
    // Layer L on the n_seq sequences whose rows start at row0 of x_ (the scratch buffers start at 0).
    void layer(const DevLayer &L, int64_t row0, int64_t n_seq, int64_t seq_len);
    // Final norm, output projection and delivery of the chunk rows [row0, row0 + n_rows) on logit_stream_, once
    // `ready` (recorded on stream_ after their last layer) has passed; blocks counts logits blocks of the chunk.
    void logits(int64_t row0, int64_t n_rows, cudaEvent_t ready, int64_t seq0, int64_t seq_len, int64_t &blocks,
                const WindowLogitsSink &sink);
    // out[n][out_cols] (ldc) (+)= in[n][in_cols] w[out_cols][in_cols]^T
    void linear(float *out, int64_t ldc, const float *in, const float *w, int64_t n, int64_t out_cols,
                int64_t in_cols, bool accumulate, void *stream = nullptr);
    // One row pass (wineval::row_pipeline) over n rows, [n1][n2] wide, writing the inputs of the linears
    // lins[0..n_lins) into xq_[0..n_lins) (fake-quantized with each one's LAC), or at a16 (or without L) the
    // unquantized row into xq_[0].
    void row_pass(wineval::RowInput input, const float *x, const float *gain, int n1, int n2, const float *p1,
                  const float *p2, const DevLayer *L, const int *lins, int n_lins, int64_t n);
    void *sp() const { return stream_.handle(); }

    int device_;
    ModelConfig c_;
    quant::QuantBits bits_;
    std::vector<float> rope_freq_factors_;
    Stream stream_;
    std::mutex mu_;
    std::vector<DevLayer> layers_;
    DeviceBuffer tok_embd_, output_norm_, output_;  // [V][E], [E], [V][E] (empty when tied)
    int64_t max_tokens_ = 1;                        // activation capacity planned at construction
    int64_t logit_rows_ = 1;
    // Activations for cap_ tokens.
    int64_t cap_ = 0;
    DeviceBuffer tokens_, x_, qkv_, qh_, kh_, vh_, att_, ug_;
    DeviceBuffer xq_[3];  // linear inputs: [n][max(E, Q, F)], then [n][E] twice (q/k/v or up/gate apart)
    Stream logit_stream_;  // final norm and output projection of finished sequences, beside later layers
    Stream copy_stream_;   // device-to-host logits copies, beside the next block's product
    cudaEvent_t layers_done_[2] = {nullptr, nullptr};  // a group of sequences left its last layer (by parity)
    DeviceBuffer norm_;    // [logit_rows_][E]: final-normed rows of one logits block
    DeviceBuffer logits_[2];
    float *host_logits_[2] = {nullptr, nullptr};  // pinned, logit_rows_ * V floats each
    cudaEvent_t computed_[2] = {nullptr, nullptr};  // logits_[i] holds a finished block
    cudaEvent_t copied_[2] = {nullptr, nullptr};    // host_logits_[i] holds it (and logits_[i] may be reused)
    int64_t rope_len_ = 0;
    DeviceBuffer rope_cs_, rope_sn_;  // [rope_len_][rope_dim / 2]
};

WindowEvaluatorImpl::WindowEvaluatorImpl(const quant::QuantizedModel &qm, int device) : device_(device) {
    FQ_CHECK(qm.base != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the quantized model has no base model");
    const Model &m = *qm.base;
    c_ = m.config;
    bits_ = qm.scheme.bits;
    FQ_CHECK(static_cast<int32_t>(qm.layers.size()) == c_.n_layer, FQ_STATUS_INVALID_ARGUMENT,
             "the quantized model has %zu layers, its base %d", qm.layers.size(), c_.n_layer);
    FQ_CHECK(c_.head_dim <= wineval::kMaxHeadDim, FQ_STATUS_UNSUPPORTED,
             "GPU evaluation supports head_dim up to %d, the model has %d", wineval::kMaxHeadDim, c_.head_dim);
    FQ_CHECK(c_.n_head_kv > 0 && c_.n_head % c_.n_head_kv == 0 && c_.rope_dim <= c_.head_dim,
             FQ_STATUS_INVALID_ARGUMENT, "bad attention shape (n_head %d, n_head_kv %d, rope_dim %d)", c_.n_head,
             c_.n_head_kv, c_.rope_dim);
    rope_freq_factors_ = m.weights.rope_freq_factors;
    set_device(device);
    stream_ = Stream::create();
    logit_stream_ = Stream::create();
    copy_stream_ = Stream::create();
    const int64_t E = c_.n_embd, Q = c_.q_dim(), KV = c_.kv_dim(), F = c_.n_ff, D = c_.head_dim, V = c_.n_vocab;
    const bool a_quant = bits_.a < 16;
    for (int32_t l = 0; l < c_.n_layer; ++l) {
        const quant::QuantLayer &src = qm.layers[static_cast<size_t>(l)];
        const quant::LayerTransforms &t = src.online;
        DevLayer L;
        L.attn_norm = upload_vec(src.attn_norm, stream_);
        L.ffn_norm = upload_vec(src.ffn_norm, stream_);
        for (int lin = 0; lin < quant::kNumLinears; lin++) {
            const quant::LinearShape s = quant::linear_shape(c_, lin);
            FQ_CHECK(static_cast<int64_t>(src.lin[lin].w.size()) == s.out * s.in, FQ_STATUS_INVALID_ARGUMENT,
                     "layer %d %s: weight has %zu values, expected %lld", l, quant::linear_name(lin),
                     src.lin[lin].w.size(), static_cast<long long>(s.out * s.in));
            L.sig[lin][0] = lac_sig(t.lac, t.lac_lin[lin][0]);
            L.sig[lin][1] = lac_sig(t.lac, t.lac_lin[lin][1]);
        }
        L.k_sig[0] = lac_sig(t.lac, t.lac_k[0]);
        L.k_sig[1] = lac_sig(t.lac, t.lac_k[1]);
        L.v_sig[0] = lac_sig(t.lac, t.lac_v[0]);
        L.v_sig[1] = lac_sig(t.lac, t.lac_v[1]);
        auto same_input = [&](int a, int b) {
            return !a_quant || (L.sig[a][0] == L.sig[b][0] && L.sig[a][1] == L.sig[b][1]);
        };
        L.qkv_shared = same_input(kLinQ, kLinK) && same_input(kLinQ, kLinV);
        L.ug_shared = same_input(kLinUp, kLinGate);
        {
            std::vector<float> w;
            w.reserve(static_cast<size_t>((Q + 2 * KV) * E));
            for (int lin : {kLinQ, kLinK, kLinV}) w.insert(w.end(), src.lin[lin].w.begin(), src.lin[lin].w.end());
            L.wqkv = upload_vec(w, stream_);
            bool any_bias = false;
            for (int lin : {kLinQ, kLinK, kLinV}) any_bias = any_bias || !src.lin[lin].bias.empty();
            if (any_bias) {
                // Adding 0 where a linear has no bias leaves its values as the CPU's (no bias add) has them.
                std::vector<float> b(static_cast<size_t>(Q + 2 * KV), 0.0f);
                const int64_t off[3] = {0, Q, Q + KV}, len[3] = {Q, KV, KV};
                for (int i = 0; i < 3; i++) {
                    const std::vector<float> &sb = src.lin[kLinQ + i].bias;
                    if (sb.empty()) continue;
                    FQ_CHECK(static_cast<int64_t>(sb.size()) == len[i], FQ_STATUS_INVALID_ARGUMENT,
                             "layer %d: bias of %s has %zu values", l, quant::linear_name(kLinQ + i), sb.size());
                    std::copy(sb.begin(), sb.end(), b.begin() + off[i]);
                }
                L.bqkv = upload_vec(b, stream_);
            }
            w.clear();
            for (int lin : {kLinUp, kLinGate}) w.insert(w.end(), src.lin[lin].w.begin(), src.lin[lin].w.end());
            L.wug = upload_vec(w, stream_);
        }
        for (int lin : {kLinO, kLinUp, kLinGate, kLinDown})
            FQ_CHECK(src.lin[lin].bias.empty(), FQ_STATUS_UNSUPPORTED, "layer %d: %s has a bias", l,
                     quant::linear_name(lin));
        L.wo = upload_vec(src.lin[kLinO].w, stream_);
        L.wd = upload_vec(src.lin[kLinDown].w, stream_);
        const std::pair<const quant::KronTransform *, int64_t> krons[3] = {{&t.pa, E}, {&t.pug, E}, {&t.pd, F}};
        for (const auto &[kt, width] : krons)
            FQ_CHECK(!kt->present() || (int64_t{kt->n1} * kt->n2 == width &&
                                        kt->left.size() == size_t(kt->n1) * kt->n1 &&
                                        kt->right.size() == size_t(kt->n2) * kt->n2),
                     FQ_STATUS_INVALID_ARGUMENT, "layer %d: a Kronecker transform does not fit width %lld", l,
                     static_cast<long long>(width));
        L.pa = upload_kron(t.pa, stream_);
        L.pug = upload_kron(t.pug, stream_);
        L.pd = upload_kron(t.pd, stream_);
        if (t.ph.present()) {
            FQ_CHECK(t.ph.k == c_.n_head && t.ph.m.size() == size_t(c_.n_head) * c_.n_head,
                     FQ_STATUS_INVALID_ARGUMENT, "layer %d: P_h does not fit %d heads", l, c_.n_head);
            L.ph = upload_vec(t.ph.m, stream_);
        }
        if (t.pk.present()) {
            FQ_CHECK(t.pk.k == D && t.pk.m.size() == size_t(D * D) && t.pk.m_inv_t.size() == size_t(D * D),
                     FQ_STATUS_INVALID_ARGUMENT, "layer %d: P_k does not fit head_dim %lld", l,
                     static_cast<long long>(D));
            L.pk_m = upload_vec(t.pk.m, stream_);
            L.pk_m_inv_t = upload_vec(t.pk.m_inv_t, stream_);
        }
        layers_.push_back(std::move(L));
    }
    FQ_CHECK(m.weights.tok_embd.size() == size_t(V * E), FQ_STATUS_INVALID_ARGUMENT, "token embeddings: bad size");
    tok_embd_ = upload_vec(m.weights.tok_embd, stream_);
    output_norm_ = upload_vec(m.weights.output_norm, stream_);
    if (!m.weights.output.empty()) output_ = upload_vec(m.weights.output, stream_);

    logit_rows_ = std::max<int64_t>(1, std::min<int64_t>(4096, kLogitBlockBytes / (sizeof(float) * V)));
    // Activation floats per token: x, the three linear-input buffers, qkv, q, k, v, att, up|gate.
    const int64_t per_token = 3 * E + std::max({E, Q, F}) + (Q + 2 * KV) + (Q + 2 * KV) + Q + 2 * F;
    uint64_t free_bytes = 0, total_bytes = 0;
    memory_info(&free_bytes, &total_bytes);
    const double budget = 0.7 * static_cast<double>(free_bytes) - 2.0 * sizeof(float) * logit_rows_ * V;
    max_tokens_ = std::clamp<int64_t>(static_cast<int64_t>(budget / (sizeof(float) * per_token + sizeof(int32_t))),
                                      1, kMaxChunkTokens);
    for (int i = 0; i < 2; i++) {
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&computed_[i], cudaEventDisableTiming));
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&copied_[i], cudaEventDisableTiming));
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&layers_done_[i], cudaEventDisableTiming));
    }
}

WindowEvaluatorImpl::~WindowEvaluatorImpl() {
    // Nothing may still be writing into the pinned buffers when they go.
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(stream_.handle()));
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(logit_stream_.handle()));
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_.handle()));
    for (int i = 0; i < 2; i++) {
        if (computed_[i]) (void)cudaEventDestroy(computed_[i]);
        if (copied_[i]) (void)cudaEventDestroy(copied_[i]);
        if (layers_done_[i]) (void)cudaEventDestroy(layers_done_[i]);
    }
    for (auto &h : host_logits_)
        if (h) (void)cudaFreeHost(h);
    (void)cudaGetLastError();
}

int64_t WindowEvaluatorImpl::preferred_batch(int64_t seq_len) const {
    if (seq_len <= 0) return 1;
    return std::max<int64_t>(1, std::min(kTargetTokens, max_tokens_) / seq_len);
}

void WindowEvaluatorImpl::ensure_capacity(int64_t n) {
    if (n <= cap_) return;
    const int64_t E = c_.n_embd, Q = c_.q_dim(), KV = c_.kv_dim(), F = c_.n_ff;
    auto floats = [](int64_t count) { return static_cast<size_t>(count) * sizeof(float); };
    cap_ = 0;
    // Free the old set first: the new one may need the memory.
    for (DeviceBuffer *b : {&tokens_, &x_, &xq_[0], &xq_[1], &xq_[2], &qkv_, &qh_, &kh_, &vh_, &att_, &ug_})
        *b = DeviceBuffer();
    tokens_ = DeviceBuffer(static_cast<size_t>(n) * sizeof(int32_t));
    x_ = DeviceBuffer(floats(n * E));
    xq_[0] = DeviceBuffer(floats(n * std::max({E, Q, F})));
    xq_[1] = DeviceBuffer(floats(n * E));
    xq_[2] = DeviceBuffer(floats(n * E));
    qkv_ = DeviceBuffer(floats(n * (Q + 2 * KV)));
    qh_ = DeviceBuffer(floats(n * Q));
    kh_ = DeviceBuffer(floats(n * KV));
    vh_ = DeviceBuffer(floats(n * KV));
    att_ = DeviceBuffer(floats(n * Q));
    ug_ = DeviceBuffer(floats(n * 2 * F));
    cap_ = n;
}

void WindowEvaluatorImpl::ensure_rope(int64_t seq_len) {
    if (seq_len <= rope_len_ || c_.rope_dim / 2 == 0) return;
    // The CPU's own table (float angles, std::cos/std::sin), so the rotation is the CPU's bit for bit.
    const quant::fast::RopeTable tab = quant::fast::rope_table(c_, rope_freq_factors_, 0, seq_len);
    rope_cs_ = upload_vec(tab.cs, stream_);
    rope_sn_ = upload_vec(tab.sn, stream_);
    rope_len_ = seq_len;
}

void WindowEvaluatorImpl::ensure_logit_buffers() {
    if (host_logits_[0]) return;
    const size_t bytes = sizeof(float) * static_cast<size_t>(logit_rows_) * c_.n_vocab;
    norm_ = DeviceBuffer(sizeof(float) * static_cast<size_t>(logit_rows_) * c_.n_embd);
    for (int i = 0; i < 2; i++) {
        logits_[i] = DeviceBuffer(bytes);
        void *p = nullptr;
        FQ_CUDA_CHECK(cudaMallocHost(&p, bytes));
        host_logits_[i] = static_cast<float *>(p);
    }
}

void WindowEvaluatorImpl::linear(float *out, int64_t ldc, const float *in, const float *w, int64_t n,
                                 int64_t out_cols, int64_t in_cols, bool accumulate, void *stream) {
    gemm_f32(false, true, n, out_cols, in_cols, 1.0f, in, in_cols, w, in_cols, accumulate ? 1.0f : 0.0f, out, ldc,
             stream ? stream : sp());
}

void WindowEvaluatorImpl::row_pass(wineval::RowInput input, const float *x, const float *gain, int n1, int n2,
                                   const float *p1, const float *p2, const DevLayer *L, const int *lins, int n_lins,
                                   int64_t n) {
    wineval::RowPipeline p;
    p.input = input;
    p.x = x;
    p.gain = gain;
    p.eps = c_.rms_eps;
    p.n1 = n1;
    p.n2 = n2;
    p.p1 = p1;
    p.p2 = p2;
    p.bits = L && bits_.a < 16 ? bits_.a : 16;
    p.n_out = p.bits < 16 ? n_lins : 1;
    for (int i = 0; i < p.n_out; i++) {
        p.out[i] = xq_[i].as<float>();
        if (p.bits < 16) {
            p.sig_max[i] = L->sig[lins[i]][0];
            p.sig_min[i] = L->sig[lins[i]][1];
        }
    }
    wineval::row_pipeline(p, n, sp());
}

void WindowEvaluatorImpl::layer(const DevLayer &L, int64_t row0, int64_t n_seq, int64_t seq_len) {
    const int64_t n = n_seq * seq_len;
    const int64_t E = c_.n_embd, Q = c_.q_dim(), KV = c_.kv_dim(), F = c_.n_ff, W = Q + 2 * KV;
    float *x = x_.as<float>() + row0 * E, *qkv = qkv_.as<float>(), *att = att_.as<float>(), *ug = ug_.as<float>();
    const float *in[3] = {xq_[0].as<float>(), xq_[1].as<float>(), xq_[2].as<float>()};
    // A Kronecker transform as row_pass takes it: [n1][n2] factors, or the identity on one row of `width`.
    auto pass = [&](wineval::RowInput input, const float *src, const float *gain, const DevKron &k, int64_t width,
                    std::initializer_list<int> lins) {
        const int n1 = k.n1 > 0 ? k.n1 : 1, n2 = k.n1 > 0 ? k.n2 : static_cast<int>(width);
        row_pass(input, src, gain, n1, n2, ptr_or_null(k.left), ptr_or_null(k.right), &L, lins.begin(),
                 static_cast<int>(lins.size()), n);
    };
    // Attention block: norm, P_a, the q/k/v inputs (one shared or three), products.
    const float *wqkv = L.wqkv.as<float>();
    if (L.qkv_shared) {
        pass(wineval::RowInput::RmsNorm, x, L.attn_norm.as<float>(), L.pa, E, {kLinQ});
        linear(qkv, W, in[0], wqkv, n, W, E, false);
    } else {
        pass(wineval::RowInput::RmsNorm, x, L.attn_norm.as<float>(), L.pa, E, {kLinQ, kLinK, kLinV});
        const int64_t off[3] = {0, Q, Q + KV}, len[3] = {Q, KV, KV};
        for (int i = 0; i < 3; i++) linear(qkv + off[i], W, in[i], wqkv + off[i] * E, n, len[i], E, false);
    }
    wineval::QkvPostArgs a;
    a.qkv = qkv;
    a.bias = ptr_or_null(L.bqkv);
    a.rope_cs = ptr_or_null(rope_cs_);
    a.rope_sn = ptr_or_null(rope_sn_);
    a.pk_q = ptr_or_null(L.pk_m_inv_t);
    a.pk_k = ptr_or_null(L.pk_m);
    a.q = qh_.as<float>();
    a.k = kh_.as<float>();
    a.v = vh_.as<float>();
    a.n_seq = n_seq;
    a.seq_len = seq_len;
    a.n_head = c_.n_head;
    a.n_head_kv = c_.n_head_kv;
    a.head_dim = c_.head_dim;
    a.rope_dim = c_.rope_dim;
    a.rope_neox = c_.rope_mode == RopeMode::Neox;
    a.k_bits = bits_.k;
    a.v_bits = bits_.v;
    a.k_sig_max = L.k_sig[0];
    a.k_sig_min = L.k_sig[1];
    a.v_sig_max = L.v_sig[0];
    a.v_sig_min = L.v_sig[1];
    wineval::qkv_post(a, sp());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));  // fq::attention's scale
    wineval::attention(att, a.q, a.k, a.v, n_seq, seq_len, c_.n_head, c_.n_head_kv, c_.head_dim, scale, sp());
    // o_proj input: P_h over the heads, then quantization (nothing to do without either).
    const float *o_in = att;
    if (L.ph.n_bytes() || bits_.a < 16) {
        const int lin_o = kLinO;
        if (L.ph.n_bytes()) {
            row_pass(wineval::RowInput::Plain, att, nullptr, c_.n_head, c_.head_dim, L.ph.as<float>(), nullptr, &L,
                     &lin_o, 1, n);
        } else {
            row_pass(wineval::RowInput::Plain, att, nullptr, 1, static_cast<int>(Q), nullptr, nullptr, &L, &lin_o, 1,
                     n);
        }
        o_in = in[0];
    }
    linear(x, E, o_in, L.wo.as<float>(), n, E, Q, true);
    // MLP block: norm, P_ug, the up/gate inputs, products; SwiGLU, P_d and the down input in one pass.
    const float *wug = L.wug.as<float>();
    if (L.ug_shared) {
        pass(wineval::RowInput::RmsNorm, x, L.ffn_norm.as<float>(), L.pug, E, {kLinUp});
        linear(ug, 2 * F, in[0], wug, n, 2 * F, E, false);
    } else {
        pass(wineval::RowInput::RmsNorm, x, L.ffn_norm.as<float>(), L.pug, E, {kLinUp, kLinGate});
        linear(ug, 2 * F, in[0], wug, n, F, E, false);
        linear(ug + F, 2 * F, in[1], wug + F * E, n, F, E, false);
    }
    pass(wineval::RowInput::SwiGlu, ug, nullptr, L.pd, F, {kLinDown});
    linear(x, E, in[0], L.wd.as<float>(), n, E, F, true);
}

void WindowEvaluatorImpl::run_chunk(const int32_t *tokens, int64_t seq0, int64_t n_seq, int64_t seq_len,
                                    const WindowLogitsSink &sink) {
    const int64_t n = n_seq * seq_len, E = c_.n_embd;
    tokens_.upload(tokens, static_cast<size_t>(n) * sizeof(int32_t), stream_);
    wineval::embed_rows(x_.as<float>(), tokens_.as<int32_t>(), tok_embd_.as<float>(), n, E, sp());
    // Groups of sequences go through the layers one after the other; the logits of group g are computed, copied and
    // handed to the sink while group g + 1 is in the layers (it is queued before the host waits on group g).
    const int64_t per_group = std::max<int64_t>(1, kGroupTokens / seq_len);
    const cudaStream_t s = static_cast<cudaStream_t>(sp());
    int64_t prev_s0 = -1, prev_ns = 0, blocks = 0;
    int parity = 0;
    for (int64_t s0 = 0; s0 < n_seq; s0 += per_group, parity ^= 1) {
        const int64_t ns = std::min(per_group, n_seq - s0);
        for (const DevLayer &L : layers_) layer(L, s0 * seq_len, ns, seq_len);
        FQ_CUDA_CHECK(cudaEventRecord(layers_done_[parity], s));
        if (prev_s0 >= 0)
            logits(prev_s0 * seq_len, prev_ns * seq_len, layers_done_[parity ^ 1], seq0, seq_len, blocks, sink);
        prev_s0 = s0;
        prev_ns = ns;
    }
    logits(prev_s0 * seq_len, prev_ns * seq_len, layers_done_[parity ^ 1], seq0, seq_len, blocks, sink);
}

void WindowEvaluatorImpl::logits(int64_t row0, int64_t n_rows, cudaEvent_t ready, int64_t seq0, int64_t seq_len,
                                 int64_t &blocks, const WindowLogitsSink &sink) {
    const int64_t E = c_.n_embd, V = c_.n_vocab;
    const float *w_out = output_.n_bytes() ? output_.as<float>() : tok_embd_.as<float>();
    const cudaStream_t ls = static_cast<cudaStream_t>(logit_stream_.handle());
    const cudaStream_t cs = static_cast<cudaStream_t>(copy_stream_.handle());
    FQ_CUDA_CHECK(cudaStreamWaitEvent(ls, ready, 0));
    // Hands chunk rows [g0, g0 + rows), sitting in host_logits_[buf], to the sink sequence by sequence.
    auto deliver = [&](int buf, int64_t g0, int64_t rows) {
        FQ_CUDA_CHECK(cudaEventSynchronize(copied_[buf]));
        for (int64_t g = g0; g < g0 + rows;) {
            const int64_t seq = g / seq_len, r0 = g - seq * seq_len;
            const int64_t cnt = std::min(g0 + rows - g, seq_len - r0);
            sink(seq0 + seq, r0, cnt, host_logits_[buf] + (g - g0) * V);
            g += cnt;
        }
    };
    int64_t prev_g0 = -1, prev_rows = 0;
    for (int64_t g0 = row0; g0 < row0 + n_rows; g0 += logit_rows_, blocks++) {
        const int buf = static_cast<int>(blocks & 1);
        const int64_t rows = std::min(logit_rows_, row0 + n_rows - g0);
        wineval::RowPipeline p;  // the final norm (unquantized)
        p.input = wineval::RowInput::RmsNorm;
        p.x = x_.as<float>() + g0 * E;
        p.gain = output_norm_.as<float>();
        p.eps = c_.rms_eps;
        p.n2 = static_cast<int>(E);
        p.out[0] = norm_.as<float>();
        wineval::row_pipeline(p, rows, ls);
        // logits_[buf] was last read by the copy of block blocks - 2.
        if (blocks >= 2) FQ_CUDA_CHECK(cudaStreamWaitEvent(ls, copied_[buf], 0));
        float *lg = logits_[buf].as<float>();
        linear(lg, V, norm_.as<float>(), w_out, rows, V, E, false, ls);
        FQ_CUDA_CHECK(cudaEventRecord(computed_[buf], ls));
        // host_logits_[buf] went to the sink (block blocks - 2) before this point, synchronously.
        FQ_CUDA_CHECK(cudaStreamWaitEvent(cs, computed_[buf], 0));
        FQ_CUDA_CHECK(cudaMemcpyAsync(host_logits_[buf], lg, sizeof(float) * static_cast<size_t>(rows * V),
                                      cudaMemcpyDeviceToHost, cs));
        FQ_CUDA_CHECK(cudaEventRecord(copied_[buf], cs));
        if (prev_g0 >= 0) deliver(buf ^ 1, prev_g0, prev_rows);
        prev_g0 = g0;
        prev_rows = rows;
    }
    if (prev_g0 >= 0) deliver(static_cast<int>((blocks - 1) & 1), prev_g0, prev_rows);
}

void WindowEvaluatorImpl::forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                  const WindowLogitsSink &sink) {
    FQ_CHECK(n_seq >= 0 && seq_len >= 1 && seq_len <= c_.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
             "%lld sequences of %lld tokens: seq_len must be between 1 and the model's context length %d",
             static_cast<long long>(n_seq), static_cast<long long>(seq_len), c_.n_ctx_train);
    FQ_CHECK(n_seq == 0 || tokens != nullptr, FQ_STATUS_INVALID_ARGUMENT, "no tokens given");
    const int64_t total = n_seq * seq_len;
    for (int64_t i = 0; i < total; ++i) {
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < c_.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld (sequence %lld, position %lld) is outside the vocabulary [0, %d)",
                 tokens[i], static_cast<long long>(i), static_cast<long long>(i / seq_len),
                 static_cast<long long>(i % seq_len), c_.n_vocab);
    }
    if (n_seq == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    set_device(device_);
    const int64_t per_chunk = std::max<int64_t>(1, max_tokens_ / seq_len);
    ensure_capacity(std::min(n_seq, per_chunk) * seq_len);
    ensure_rope(seq_len);
    ensure_logit_buffers();
    try {
        for (int64_t s0 = 0; s0 < n_seq; s0 += per_chunk)
            run_chunk(tokens + s0 * seq_len, s0, std::min(per_chunk, n_seq - s0), seq_len, sink);
    } catch (...) {
        // A throwing sink (or a failed launch) leaves copies in flight into the pinned buffers: let them land.
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(sp()));
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(logit_stream_.handle()));
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_.handle()));
        (void)cudaGetLastError();
        throw;
    }
}

}  // namespace

std::unique_ptr<WindowEvaluator> make_window_evaluator(const quant::QuantizedModel &qm, int device) {
    FQ_CHECK(device >= 0 && device < device_count(), FQ_STATUS_DEVICE_UNAVAILABLE,
             "CUDA device %d is not available (%d devices)", device, device_count());
    return std::make_unique<WindowEvaluatorImpl>(qm, device);
}

}  // namespace fq::cuda
