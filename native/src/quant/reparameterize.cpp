#include "quant/reparameterize.h"

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/fake_quant.h"
#include "quant/fast_ops.h"
#include "quant/gptq.h"

namespace fq::quant {

namespace {

std::vector<double> to_d(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

std::vector<float> to_f(const std::vector<double> &v) { return std::vector<float>(v.begin(), v.end()); }

std::vector<float> scaled_gain(const std::vector<float> &g, const std::vector<float> &c) {
    if (c.empty()) return g;
    std::vector<float> out(g.size());
    for (size_t i = 0; i < g.size(); i++) out[i] = static_cast<float>(static_cast<double>(g[i]) * c[i]);
    return out;
}

// w [out][in] (double, in place) <- (w diag(1/c)) (P1 (x) P2)^{-T}, from the stored inverse-transposes.
void merge_input_transform(std::vector<double> &w, int64_t out, int64_t in, const std::vector<float> &diag,
                           const std::vector<float> *l_inv_t, const std::vector<float> *r_inv_t, int n1, int n2,
                           ThreadPool &pool) {
    if (!diag.empty()) {
        for (int64_t r = 0; r < out; r++)
            for (int64_t j = 0; j < in; j++) w[r * in + j] /= static_cast<double>(diag[j]);
    }
    if (!l_inv_t && !r_inv_t) return;
    const std::vector<double> a = l_inv_t ? to_d(*l_inv_t) : std::vector<double>();
    const std::vector<double> b = r_inv_t ? to_d(*r_inv_t) : std::vector<double>();
    fast::kron_forward(w.data(), w.data(), l_inv_t ? a.data() : nullptr, r_inv_t ? b.data() : nullptr, out, n1, n2,
                       pool);
}

QuantLayer reparameterize_layer(const ModelConfig &c, const LayerWeights &lw, const LayerTransforms &t,
                                ThreadPool &pool) {
    QuantLayer ql;
    ql.attn_norm = scaled_gain(lw.attn_norm, t.pa.diag);
    ql.ffn_norm = scaled_gain(lw.ffn_norm, t.pug.diag);
    const std::vector<float> *src[kNumLinears] = {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_up, &lw.w_gate, &lw.w_down};
    const std::vector<float> *bias[3] = {&lw.bq, &lw.bk, &lw.bv};
    const int64_t D = c.head_dim;
    for (int lin = 0; lin < kNumLinears; lin++) {
        const LinearShape s = linear_shape(c, lin);
        std::vector<double> w = to_d(*src[lin]);
        if (lin == kLinUp && !t.pd.diag.empty()) {  // c_d moves onto up_proj's output rows
            for (int64_t r = 0; r < s.out; r++)
                for (int64_t j = 0; j < s.in; j++) w[r * s.in + j] *= static_cast<double>(t.pd.diag[r]);
        }
        const KronTransform *k = lin <= kLinV ? &t.pa : lin == kLinDown ? &t.pd : lin == kLinO ? nullptr : &t.pug;
        if (k) {
            if (k->present()) {
                merge_input_transform(w, s.out, s.in, k->diag, &k->left_inv_t, &k->right_inv_t, k->n1, k->n2, pool);
            }
        } else {
            merge_input_transform(w, s.out, s.in, {}, t.ph.present() ? &t.ph.m_inv_t : nullptr,
                                  t.pv.present() ? &t.pv.m_inv_t : nullptr, c.n_head, c.head_dim, pool);
        }
        if (!t.lwc[lin].empty()) {
            const std::vector<double> logits = to_d(t.lwc[lin]);
            lwc_forward(w.data(), w.data(), logits.data(), s.out, s.in);
        }
        QuantLinear &q = ql.lin[lin];
        if (lin <= kLinV) q.bias = *bias[lin];
        if (lin == kLinV && t.pv.present()) {  // v_proj's output transform: W_h <- P_v^T W_h, b_h <- b_h P_v
            const std::vector<double> pv = to_d(t.pv.m);
            std::vector<double> wt(w.size());
            for (int64_t h = 0; h < s.out / D; h++)
                fast::gemm<double>(true, false, D, s.in, D, 1.0, pv.data(), D, w.data() + h * D * s.in, s.in, 0.0,
                                   wt.data() + h * D * s.in, s.in, pool);
            w.swap(wt);
            if (!q.bias.empty()) {
                std::vector<float> b(q.bias.size());
                for (int64_t h = 0; h < s.out / D; h++)
                    for (int64_t a = 0; a < D; a++) {
                        double acc = 0;
                        for (int64_t i = 0; i < D; i++) acc += static_cast<double>(q.bias[h * D + i]) * pv[i * D + a];
                        b[h * D + a] = static_cast<float>(acc);
                    }
                q.bias.swap(b);
            }
        }
        q.w = to_f(w);
    }
    ql.online = t;  // the merged parts are not needed online
    for (KronTransform *k : {&ql.online.pa, &ql.online.pug, &ql.online.pd}) {
        k->diag.clear();
        k->left_inv_t.clear();
        k->right_inv_t.clear();
    }
    for (auto &v : ql.online.lwc) v.clear();
    ql.online.pv = SingleTransform();
    ql.online.ph.m_inv_t.clear();
    return ql;
}

}  // namespace

std::unique_ptr<QuantizedModel> reparameterize(const Model &model, const CalibrationResult &r, ThreadPool &pool) {
    const ModelConfig &c = model.config;
    FQ_CHECK(r.dims == model_dims(c), FQ_STATUS_INVALID_ARGUMENT,
             "the calibration result was made for another model shape (%d layers x %d) than this one (%d x %d)",
             r.dims.n_layer, r.dims.n_embd, c.n_layer, c.n_embd);
    FQ_CHECK(r.model_fingerprint.empty() || r.model_fingerprint == model.fingerprint(), FQ_STATUS_INVALID_ARGUMENT,
             "the calibration result belongs to the model with fingerprint %s, not to this model (%s)",
             r.model_fingerprint.c_str(), model.fingerprint().c_str());
    check_consistent(r);
    auto qm = std::make_unique<QuantizedModel>();
    qm->base = &model;
    qm->scheme = r.scheme;
    for (int32_t l = 0; l < c.n_layer; l++) {
        qm->layers.push_back(reparameterize_layer(c, model.weights.layers[static_cast<size_t>(l)],
                                                  r.layers[static_cast<size_t>(l)], pool));
    }
    return qm;
}

void quantize_weights_rtn(QuantizedModel &qm) {
    FQ_CHECK(!qm.weights_quantized, FQ_STATUS_INVALID_ARGUMENT, "the weights are already quantized");
    const int bits = qm.scheme.bits.w;
    if (bits < 16) {
        const ModelConfig &c = qm.base->config;
        for (QuantLayer &ql : qm.layers) {
            for (int lin = 0; lin < kNumLinears; lin++) {
                const LinearShape s = linear_shape(c, lin);
                QuantLinear &q = ql.lin[lin];
                q.scale.resize(static_cast<size_t>(s.out));
                weight_quant_forward(q.w.data(), q.scale.data(), q.w.data(), s.out, s.in, bits);
            }
        }
    }
    qm.weights_quantized = true;
}

void apply_gptq_codes(QuantizedModel &qm, const CalibrationResult &r) {
    FQ_CHECK(!qm.weights_quantized, FQ_STATUS_INVALID_ARGUMENT, "the weights are already quantized");
    FQ_CHECK(r.gptq.size() == qm.layers.size(), FQ_STATUS_INVALID_ARGUMENT, "no GPTQ codes for this model");
    const ModelConfig &c = qm.base->config;
    for (size_t l = 0; l < qm.layers.size(); l++) {
        for (int lin = 0; lin < kNumLinears; lin++) {
            const LinearShape s = linear_shape(c, lin);
            const QuantizedWeight &qw = r.gptq[l][static_cast<size_t>(lin)];
            QuantLinear &q = qm.layers[l].lin[lin];
            for (int64_t i = 0; i < s.out; i++) {
                for (int64_t j = 0; j < s.in; j++) {
                    q.w[i * s.in + j] = qw.scale[i] * static_cast<float>(qw.codes[i * s.in + j]);
                }
            }
            q.scale = qw.scale;
        }
    }
    qm.weights_quantized = true;
}

std::unique_ptr<QuantizedModel> build_quantized_model(const Model &model, ThreadPool &pool, CalibrationResult &r,
                                                      const std::vector<int32_t> &windows, const Progress &progress,
                                                      int device) {
    auto qm = reparameterize(model, r, pool);
    if (r.scheme.bits.w >= 16 || r.scheme.weights == WeightQuantizer::Rtn) {
        quantize_weights_rtn(*qm);
    } else if (!r.gptq.empty()) {
        apply_gptq_codes(*qm, r);
    } else {
        gptq_model(*qm, pool, windows, r.options, r, progress, device);
    }
    return qm;
}

}  // namespace fq::quant
