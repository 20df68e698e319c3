// The decoder layers on the device (wineval_layers.h): the steps of quant::quantized_layer_forward in the same
// order, products through gemm_f32 and the rest through wineval_kernels.h.
#include "cuda/wineval_layers.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"
#include "cuda/wineval_kernels.h"
#include "quant/fakequant_forward.h"
#include "quant/fast_ops.h"

namespace fq::cuda::wineval {

namespace {

using quant::kLinDown;
using quant::kLinGate;
using quant::kLinK;
using quant::kLinO;
using quant::kLinQ;
using quant::kLinUp;
using quant::kLinV;

DeviceBuffer upload_vec(const std::vector<float> &v, const Stream &stream) {
    DeviceBuffer buf(v.size() * sizeof(float));
    if (!v.empty()) buf.upload(v.data(), v.size() * sizeof(float), stream);
    return buf;
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

}  // namespace

struct DeviceLayers::Impl {
    ModelConfig c;
    quant::QuantBits bits;
    std::vector<float> rope_freq_factors;
    Stream stream;
    std::vector<DevLayer> layers;
    int64_t cap = 0;  // scratch tokens
    DeviceBuffer qkv, qh, kh, vh, att, ug;
    DeviceBuffer xq[3];  // linear inputs: [n][max(E, Q, F)], then [n][E] twice (q/k/v or up/gate apart)
    int64_t rope_len = 0;
    DeviceBuffer rope_cs, rope_sn;  // [rope_len][rope_dim / 2]

    void *sp() const { return stream.handle(); }
    DevLayer upload_layer(const quant::QuantLayer &src, int32_t l);
    void ensure_rope(int64_t seq_len);
    // out[n][out_cols] (ldc) (+)= in[n][in_cols] w[out_cols][in_cols]^T
    void linear(float *out, int64_t ldc, const float *in, const float *w, int64_t n, int64_t out_cols,
                int64_t in_cols, bool accumulate) {
        gemm_f32(false, true, n, out_cols, in_cols, 1.0f, in, in_cols, w, in_cols, accumulate ? 1.0f : 0.0f, out,
                 ldc, sp());
    }
    // One row pass (wineval::row_pipeline) over n rows, [n1][n2] wide, writing the inputs of the linears
    // lins[0..n_lins) into xq[0..n_lins) (fake-quantized with each one's LAC), or at a16 the unquantized row into
    // xq[0].
    void row_pass(RowInput input, const float *x, const float *gain, int n1, int n2, const float *p1,
                  const float *p2, const DevLayer &L, const int *lins, int n_lins, int64_t n);
    bool run(const DevLayer &L, float *x, int64_t n_seq, int64_t seq_len, const DeviceLinearHook *hook);
};

DevLayer DeviceLayers::Impl::upload_layer(const quant::QuantLayer &src, int32_t l) {
    const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, D = c.head_dim;
    const quant::LayerTransforms &t = src.online;
    DevLayer L;
    FQ_CHECK(static_cast<int64_t>(src.attn_norm.size()) == E && static_cast<int64_t>(src.ffn_norm.size()) == E,
             FQ_STATUS_INVALID_ARGUMENT, "layer %d: norm gains do not have %lld values", l, static_cast<long long>(E));
    L.attn_norm = upload_vec(src.attn_norm, stream);
    L.ffn_norm = upload_vec(src.ffn_norm, stream);
    for (int lin = 0; lin < quant::kNumLinears; lin++) {
        const quant::LinearShape s = quant::linear_shape(c, lin);
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
    const bool a_quant = bits.a < 16;
    auto same_input = [&](int a, int b) {
        return !a_quant || (L.sig[a][0] == L.sig[b][0] && L.sig[a][1] == L.sig[b][1]);
    };
    L.qkv_shared = same_input(kLinQ, kLinK) && same_input(kLinQ, kLinV);
    L.ug_shared = same_input(kLinUp, kLinGate);
    std::vector<float> w;
    w.reserve(static_cast<size_t>((Q + 2 * KV) * E));
    for (int lin : {kLinQ, kLinK, kLinV}) w.insert(w.end(), src.lin[lin].w.begin(), src.lin[lin].w.end());
    L.wqkv = upload_vec(w, stream);
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
        L.bqkv = upload_vec(b, stream);
    }
    w.clear();
    for (int lin : {kLinUp, kLinGate}) w.insert(w.end(), src.lin[lin].w.begin(), src.lin[lin].w.end());
    L.wug = upload_vec(w, stream);
    for (int lin : {kLinO, kLinUp, kLinGate, kLinDown})
        FQ_CHECK(src.lin[lin].bias.empty(), FQ_STATUS_UNSUPPORTED, "layer %d: %s has a bias", l,
                 quant::linear_name(lin));
    L.wo = upload_vec(src.lin[kLinO].w, stream);
    L.wd = upload_vec(src.lin[kLinDown].w, stream);
    const std::pair<const quant::KronTransform *, int64_t> krons[3] = {{&t.pa, E}, {&t.pug, E}, {&t.pd, F}};
    for (const auto &[kt, width] : krons)
        FQ_CHECK(!kt->present() || (int64_t{kt->n1} * kt->n2 == width && kt->left.size() == size_t(kt->n1) * kt->n1 &&
                                    kt->right.size() == size_t(kt->n2) * kt->n2),
                 FQ_STATUS_INVALID_ARGUMENT, "layer %d: a Kronecker transform does not fit width %lld", l,
                 static_cast<long long>(width));
    L.pa = upload_kron(t.pa, stream);
    L.pug = upload_kron(t.pug, stream);
    L.pd = upload_kron(t.pd, stream);
    if (t.ph.present()) {
        FQ_CHECK(t.ph.k == c.n_head && t.ph.m.size() == size_t(c.n_head) * c.n_head, FQ_STATUS_INVALID_ARGUMENT,
                 "layer %d: P_h does not fit %d heads", l, c.n_head);
        L.ph = upload_vec(t.ph.m, stream);
    }
    if (t.pk.present()) {
        FQ_CHECK(t.pk.k == D && t.pk.m.size() == size_t(D * D) && t.pk.m_inv_t.size() == size_t(D * D),
                 FQ_STATUS_INVALID_ARGUMENT, "layer %d: P_k does not fit head_dim %lld", l, static_cast<long long>(D));
        L.pk_m = upload_vec(t.pk.m, stream);
        L.pk_m_inv_t = upload_vec(t.pk.m_inv_t, stream);
    }
    return L;
}

DeviceLayers::DeviceLayers(const quant::QuantizedModel &qm) : impl_(std::make_unique<Impl>()) {
    FQ_CHECK(qm.base != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the quantized model has no base model");
    Impl &m = *impl_;
    m.c = qm.base->config;
    m.bits = qm.scheme.bits;
    m.rope_freq_factors = qm.base->weights.rope_freq_factors;
    m.stream = Stream::create();
    const ModelConfig &c = m.c;
    FQ_CHECK(static_cast<int32_t>(qm.layers.size()) == c.n_layer, FQ_STATUS_INVALID_ARGUMENT,
             "the quantized model has %zu layers, its base %d", qm.layers.size(), c.n_layer);
    FQ_CHECK(c.head_dim <= kMaxHeadDim, FQ_STATUS_UNSUPPORTED,
             "GPU evaluation supports head_dim up to %d, the model has %d", kMaxHeadDim, c.head_dim);
    FQ_CHECK(c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && c.rope_dim <= c.head_dim, FQ_STATUS_INVALID_ARGUMENT,
             "bad attention shape (n_head %d, n_head_kv %d, rope_dim %d)", c.n_head, c.n_head_kv, c.rope_dim);
    for (int32_t l = 0; l < c.n_layer; ++l) m.layers.push_back(m.upload_layer(qm.layers[static_cast<size_t>(l)], l));
}

DeviceLayers::~DeviceLayers() = default;

const ModelConfig &DeviceLayers::config() const { return impl_->c; }

const Stream &DeviceLayers::stream() const { return impl_->stream; }

int64_t DeviceLayers::scratch_floats_per_token(const ModelConfig &c) {
    const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
    // The three linear-input buffers, qkv, q, k, v, att, up|gate.
    return 2 * E + std::max({E, Q, F}) + (Q + 2 * KV) + (Q + 2 * KV) + Q + 2 * F;
}

void DeviceLayers::reserve(int64_t n, int64_t seq_len) {
    Impl &m = *impl_;
    m.ensure_rope(seq_len);
    if (n <= m.cap) return;
    const int64_t E = m.c.n_embd, Q = m.c.q_dim(), KV = m.c.kv_dim(), F = m.c.n_ff;
    auto floats = [](int64_t count) { return static_cast<size_t>(count) * sizeof(float); };
    m.cap = 0;
    // Free the old set first: the new one may need the memory.
    for (DeviceBuffer *b : {&m.xq[0], &m.xq[1], &m.xq[2], &m.qkv, &m.qh, &m.kh, &m.vh, &m.att, &m.ug})
        *b = DeviceBuffer();
    m.xq[0] = DeviceBuffer(floats(n * std::max({E, Q, F})));
    m.xq[1] = DeviceBuffer(floats(n * E));
    m.xq[2] = DeviceBuffer(floats(n * E));
    m.qkv = DeviceBuffer(floats(n * (Q + 2 * KV)));
    m.qh = DeviceBuffer(floats(n * Q));
    m.kh = DeviceBuffer(floats(n * KV));
    m.vh = DeviceBuffer(floats(n * KV));
    m.att = DeviceBuffer(floats(n * Q));
    m.ug = DeviceBuffer(floats(n * 2 * F));
    m.cap = n;
}

void DeviceLayers::Impl::ensure_rope(int64_t seq_len) {
    if (seq_len <= rope_len || c.rope_dim / 2 == 0) return;
    // The CPU's own table (float angles, std::cos/std::sin), so the rotation is the CPU's bit for bit.
    const quant::fast::RopeTable tab = quant::fast::rope_table(c, rope_freq_factors, 0, seq_len);
    rope_cs = upload_vec(tab.cs, stream);
    rope_sn = upload_vec(tab.sn, stream);
    rope_len = seq_len;
}

void DeviceLayers::set_weight(int32_t l, int lin, const float *w) {
    Impl &m = *impl_;
    FQ_CHECK(l >= 0 && l < m.c.n_layer && lin >= 0 && lin < quant::kNumLinears && w != nullptr,
             FQ_STATUS_INVALID_ARGUMENT, "set_weight: layer %d linear %d", l, lin);
    DevLayer &L = m.layers[static_cast<size_t>(l)];
    const quant::LinearShape s = quant::linear_shape(m.c, lin);
    const int64_t Q = m.c.q_dim(), KV = m.c.kv_dim(), F = m.c.n_ff;
    // q/k/v and up/gate are row blocks of one fused matrix whose rows all have s.in columns.
    DeviceBuffer *dst = lin <= kLinV ? &L.wqkv : lin == kLinO ? &L.wo : lin == kLinDown ? &L.wd : &L.wug;
    const int64_t row0 = lin == kLinK ? Q : lin == kLinV ? Q + KV : lin == kLinGate ? F : 0;
    dst->upload(w, sizeof(float) * static_cast<size_t>(s.out * s.in), m.stream,
                sizeof(float) * static_cast<size_t>(row0 * s.in));
}

void DeviceLayers::Impl::row_pass(RowInput input, const float *x, const float *gain, int n1, int n2,
                                  const float *p1, const float *p2, const DevLayer &L, const int *lins, int n_lins,
                                  int64_t n) {
    RowPipeline p;
    p.input = input;
    p.x = x;
    p.gain = gain;
    p.eps = c.rms_eps;
    p.n1 = n1;
    p.n2 = n2;
    p.p1 = p1;
    p.p2 = p2;
    p.bits = bits.a < 16 ? bits.a : 16;
    p.n_out = p.bits < 16 ? n_lins : 1;
    for (int i = 0; i < p.n_out; i++) {
        p.out[i] = xq[i].as<float>();
        if (p.bits < 16) {
            p.sig_max[i] = L.sig[lins[i]][0];
            p.sig_min[i] = L.sig[lins[i]][1];
        }
    }
    row_pipeline(p, n, sp());
}

bool DeviceLayers::run(int32_t l, float *x, int64_t n_seq, int64_t seq_len, const DeviceLinearHook *hook) {
    Impl &m = *impl_;
    FQ_CHECK(l >= 0 && l < m.c.n_layer && n_seq >= 1 && seq_len >= 1 && n_seq * seq_len <= m.cap &&
                 (m.c.rope_dim / 2 == 0 || seq_len <= m.rope_len),
             FQ_STATUS_INVALID_ARGUMENT, "DeviceLayers::run: layer %d, %lld x %lld tokens (%lld reserved)", l,
             static_cast<long long>(n_seq), static_cast<long long>(seq_len), static_cast<long long>(m.cap));
    return m.run(m.layers[static_cast<size_t>(l)], x, n_seq, seq_len, hook);
}

bool DeviceLayers::Impl::run(const DevLayer &L, float *x, int64_t n_seq, int64_t seq_len,
                             const DeviceLinearHook *hook) {
    const int64_t n = n_seq * seq_len;
    const int64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, W = Q + 2 * KV;
    float *qkv_out = qkv.as<float>(), *att_out = att.as<float>(), *ug_out = ug.as<float>();
    const float *in[3] = {xq[0].as<float>(), xq[1].as<float>(), xq[2].as<float>()};
    auto stop = [&](int lin, const float *input) { return hook && *hook && !(*hook)(lin, input, n); };
    // A Kronecker transform as row_pass takes it: [n1][n2] factors, or the identity on one row of `width`.
    auto pass = [&](RowInput input, const float *src, const float *gain, const DevKron &k, int64_t width,
                    std::initializer_list<int> lins) {
        const int n1 = k.n1 > 0 ? k.n1 : 1, n2 = k.n1 > 0 ? k.n2 : static_cast<int>(width);
        row_pass(input, src, gain, n1, n2, ptr_or_null(k.left), ptr_or_null(k.right), L, lins.begin(),
                 static_cast<int>(lins.size()), n);
    };
    // Attention block: norm, P_a, the q/k/v inputs (one shared or three), products.
    const float *wqkv = L.wqkv.as<float>();
    if (L.qkv_shared) {
        pass(RowInput::RmsNorm, x, L.attn_norm.as<float>(), L.pa, E, {kLinQ});
        for (int lin : {kLinQ, kLinK, kLinV})
            if (stop(lin, in[0])) return false;
        linear(qkv_out, W, in[0], wqkv, n, W, E, false);
    } else {
        pass(RowInput::RmsNorm, x, L.attn_norm.as<float>(), L.pa, E, {kLinQ, kLinK, kLinV});
        const int64_t off[3] = {0, Q, Q + KV}, len[3] = {Q, KV, KV};
        for (int i = 0; i < 3; i++) {
            if (stop(kLinQ + i, in[i])) return false;
            linear(qkv_out + off[i], W, in[i], wqkv + off[i] * E, n, len[i], E, false);
        }
    }
    QkvPostArgs a;
    a.qkv = qkv_out;
    a.bias = ptr_or_null(L.bqkv);
    a.rope_cs = ptr_or_null(rope_cs);
    a.rope_sn = ptr_or_null(rope_sn);
    a.pk_q = ptr_or_null(L.pk_m_inv_t);
    a.pk_k = ptr_or_null(L.pk_m);
    a.q = qh.as<float>();
    a.k = kh.as<float>();
    a.v = vh.as<float>();
    a.n_seq = n_seq;
    a.seq_len = seq_len;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_head_kv;
    a.head_dim = c.head_dim;
    a.rope_dim = c.rope_dim;
    a.rope_neox = c.rope_mode == RopeMode::Neox;
    a.k_bits = bits.k;
    a.v_bits = bits.v;
    a.k_sig_max = L.k_sig[0];
    a.k_sig_min = L.k_sig[1];
    a.v_sig_max = L.v_sig[0];
    a.v_sig_min = L.v_sig[1];
    qkv_post(a, sp());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));  // fq::attention's scale
    attention(att_out, a.q, a.k, a.v, n_seq, seq_len, c.n_head, c.n_head_kv, c.head_dim, scale, sp());
    // o_proj input: P_h over the heads, then quantization (nothing to do without either).
    const float *o_in = att_out;
    if (L.ph.n_bytes() || bits.a < 16) {
        const int lin_o = kLinO;
        if (L.ph.n_bytes()) {
            row_pass(RowInput::Plain, att_out, nullptr, c.n_head, c.head_dim, L.ph.as<float>(), nullptr, L, &lin_o, 1,
                     n);
        } else {
            row_pass(RowInput::Plain, att_out, nullptr, 1, static_cast<int>(Q), nullptr, nullptr, L, &lin_o, 1, n);
        }
        o_in = in[0];
    }
    if (stop(kLinO, o_in)) return false;
    linear(x, E, o_in, L.wo.as<float>(), n, E, Q, true);
    // MLP block: norm, P_ug, the up/gate inputs, products; SwiGLU, P_d and the down input in one pass.
    const float *wug = L.wug.as<float>();
    if (L.ug_shared) {
        pass(RowInput::RmsNorm, x, L.ffn_norm.as<float>(), L.pug, E, {kLinUp});
        if (stop(kLinUp, in[0]) || stop(kLinGate, in[0])) return false;
        linear(ug_out, 2 * F, in[0], wug, n, 2 * F, E, false);
    } else {
        pass(RowInput::RmsNorm, x, L.ffn_norm.as<float>(), L.pug, E, {kLinUp, kLinGate});
        if (stop(kLinUp, in[0])) return false;
        linear(ug_out, 2 * F, in[0], wug, n, F, E, false);
        if (stop(kLinGate, in[1])) return false;
        linear(ug_out + F, 2 * F, in[1], wug + F * E, n, F, E, false);
    }
    pass(RowInput::SwiGlu, ug_out, nullptr, L.pd, F, {kLinDown});
    if (stop(kLinDown, in[0])) return false;
    linear(x, E, in[0], L.wd.as<float>(), n, E, F, true);
    return true;
}

}  // namespace fq::cuda::wineval
