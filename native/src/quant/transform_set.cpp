#include "quant/transform_set.h"

#include <cmath>

#include "core/error.h"

namespace fq::quant {

const char *linear_name(int id) {
    static const char *const kNames[kNumLinears] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                    "up_proj", "gate_proj", "down_proj"};
    return id >= 0 && id < kNumLinears ? kNames[id] : "?";
}

LinearShape linear_shape(const ModelConfig &c, int id) {
    switch (id) {
        case kLinQ: return {c.q_dim(), c.n_embd};
        case kLinK:
        case kLinV: return {c.kv_dim(), c.n_embd};
        case kLinO: return {c.n_embd, c.q_dim()};
        case kLinUp:
        case kLinGate: return {c.n_ff, c.n_embd};
        case kLinDown: return {c.n_embd, c.n_ff};
    }
    FQ_FAIL(FQ_STATUS_INTERNAL, "linear id %d out of range", id);
}

ModelDims model_dims(const ModelConfig &c) {
    ModelDims d;
    d.n_layer = c.n_layer;
    d.n_embd = c.n_embd;
    d.n_ff = c.n_ff;
    d.n_head = c.n_head;
    d.n_head_kv = c.n_head_kv;
    d.head_dim = c.head_dim;
    d.n_vocab = c.n_vocab;
    return d;
}

bool operator==(const ModelDims &a, const ModelDims &b) {
    return a.n_layer == b.n_layer && a.n_embd == b.n_embd && a.n_ff == b.n_ff && a.n_head == b.n_head &&
           a.n_head_kv == b.n_head_kv && a.head_dim == b.head_dim && a.n_vocab == b.n_vocab;
}

namespace {

void check_finite(const std::vector<float> &v, const std::string &what) {
    for (float x : v) FQ_CHECK(std::isfinite(x), FQ_STATUS_MODEL_FORMAT, "%s holds a non-finite value", what.c_str());
}

void check_size(const std::vector<float> &v, int64_t n, const std::string &what) {
    FQ_CHECK(static_cast<int64_t>(v.size()) == n, FQ_STATUS_MODEL_FORMAT, "%s has %zu values, expected %lld",
             what.c_str(), v.size(), (long long)n);
    check_finite(v, what);
}

void check_kron(const KronTransform &t, int64_t width, const std::string &what) {
    if (!t.present()) {
        FQ_CHECK(t.n2 == 0 && t.left.empty() && t.right.empty() && t.diag.empty(), FQ_STATUS_MODEL_FORMAT,
                 "%s is absent but holds tensors", what.c_str());
        return;
    }
    FQ_CHECK(t.n1 > 0 && t.n2 > 0 && int64_t{t.n1} * t.n2 == width, FQ_STATUS_MODEL_FORMAT,
             "%s factors %d x %d do not cover %lld channels", what.c_str(), t.n1, t.n2, (long long)width);
    check_size(t.left, int64_t{t.n1} * t.n1, what + ".left");
    check_size(t.right, int64_t{t.n2} * t.n2, what + ".right");
    check_size(t.left_inv_t, int64_t{t.n1} * t.n1, what + ".left_inv_t");
    check_size(t.right_inv_t, int64_t{t.n2} * t.n2, what + ".right_inv_t");
    if (!t.diag.empty()) {
        check_size(t.diag, width, what + ".diag");
        for (float c : t.diag) FQ_CHECK(c > 0.0f, FQ_STATUS_MODEL_FORMAT, "%s.diag holds a scale <= 0", what.c_str());
    }
}

void check_single(const SingleTransform &t, int64_t k, const std::string &what) {
    if (!t.present()) {
        FQ_CHECK(t.m.empty() && t.m_inv_t.empty(), FQ_STATUS_MODEL_FORMAT, "%s is absent but holds tensors",
                 what.c_str());
        return;
    }
    FQ_CHECK(t.k == k, FQ_STATUS_MODEL_FORMAT, "%s is %d x %d, expected %lld x %lld", what.c_str(), t.k, t.k,
             (long long)k, (long long)k);
    check_size(t.m, k * k, what);
    check_size(t.m_inv_t, k * k, what + "_inv_t");
}

}  // namespace

void check_consistent(const CalibrationResult &r) {
    validate(r.scheme);
    const ModelDims &d = r.dims;
    FQ_CHECK(d.n_layer > 0 && d.n_embd > 0 && d.n_ff > 0 && d.n_head > 0 && d.n_head_kv > 0 && d.head_dim > 0,
             FQ_STATUS_MODEL_FORMAT, "calibration result: bad model dimensions");
    FQ_CHECK(static_cast<int32_t>(r.layers.size()) == d.n_layer, FQ_STATUS_MODEL_FORMAT,
             "calibration result has %zu layers, the model has %d", r.layers.size(), d.n_layer);
    ModelConfig c;
    c.n_embd = d.n_embd;
    c.n_ff = d.n_ff;
    c.n_head = d.n_head;
    c.n_head_kv = d.n_head_kv;
    c.head_dim = d.head_dim;
    for (int32_t l = 0; l < d.n_layer; l++) {
        const LayerTransforms &t = r.layers[static_cast<size_t>(l)];
        const std::string p = "layers." + std::to_string(l) + ".";
        check_kron(t.pa, d.n_embd, p + "pa");
        check_kron(t.pug, d.n_embd, p + "pug");
        check_kron(t.pd, d.n_ff, p + "pd");
        check_single(t.ph, d.n_head, p + "ph");
        check_single(t.pv, d.head_dim, p + "pv");
        check_single(t.pk, d.head_dim, p + "pk");
        for (int i = 0; i < kNumLinears; i++) {
            if (!t.lwc[i].empty()) check_size(t.lwc[i], 2 * linear_shape(c, i).out, p + linear_name(i) + ".lwc");
            for (float v : t.lac_lin[i]) {
                FQ_CHECK(std::isfinite(v), FQ_STATUS_MODEL_FORMAT, "%s%s LAC logit is not finite", p.c_str(),
                         linear_name(i));
            }
        }
        for (float v : {t.lac_k[0], t.lac_k[1], t.lac_v[0], t.lac_v[1]})
            FQ_CHECK(std::isfinite(v), FQ_STATUS_MODEL_FORMAT, "%sKV lac not finite", p.c_str());
    }
    if (r.gptq.empty()) return;
    FQ_CHECK(r.scheme.weights == WeightQuantizer::Gptq && r.scheme.bits.w < 16, FQ_STATUS_MODEL_FORMAT,
             "GPTQ weights are present but the scheme does not use GPTQ");
    FQ_CHECK(static_cast<int32_t>(r.gptq.size()) == d.n_layer, FQ_STATUS_MODEL_FORMAT,
             "GPTQ weights cover %zu layers, the model has %d", r.gptq.size(), d.n_layer);
    const int qmax = (1 << (r.scheme.bits.w - 1)) - 1;
    for (int32_t l = 0; l < d.n_layer; l++) {
        for (int i = 0; i < kNumLinears; i++) {
            const QuantizedWeight &q = r.gptq[static_cast<size_t>(l)][static_cast<size_t>(i)];
            const LinearShape s = linear_shape(c, i);
            const std::string what = "layers." + std::to_string(l) + "." + linear_name(i) + ".qweight";
            FQ_CHECK(static_cast<int64_t>(q.codes.size()) == s.out * s.in, FQ_STATUS_MODEL_FORMAT,
                     "%s has %zu codes, expected %lld", what.c_str(), q.codes.size(), (long long)(s.out * s.in));
            check_size(q.scale, s.out, what + "_scale");
            for (int8_t v : q.codes)
                FQ_CHECK(v >= -qmax - 1 && v <= qmax, FQ_STATUS_MODEL_FORMAT, "%s: code %d outside the %d-bit range",
                         what.c_str(), v, r.scheme.bits.w);
            for (float v : q.scale) FQ_CHECK(v > 0.0f, FQ_STATUS_MODEL_FORMAT, "%s: scale <= 0", what.c_str());
        }
    }
}

}  // namespace fq::quant
