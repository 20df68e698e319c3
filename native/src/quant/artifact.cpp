#include "quant/artifact.h"


#include <cstring>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "quant/artifact_json.h"

namespace fq::quant {

namespace {

constexpr const char *kFormat = "flatquant-calibration";
constexpr int kFormatVersion = 1;

bool little_endian() {
    const uint16_t one = 1;
    uint8_t b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

const char *const kKron[3] = {"self_attn.ln_trans", "mlp.up_gate_trans", "mlp.down_trans"};
const char *const kSingle[3] = {"self_attn.o_trans", "self_attn.vcache_trans", "self_attn.kcache_trans"};
const char *const kLinPrefix[kNumLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.up_proj",      "mlp.gate_proj",
                                             "mlp.down_proj"};

std::string layer_prefix(int32_t l) { return "layers." + std::to_string(l) + "."; }

const KronTransform &kron_of(const LayerTransforms &t, int i) { return i == 0 ? t.pa : i == 1 ? t.pug : t.pd; }
const SingleTransform &single_of(const LayerTransforms &t, int i) { return i == 0 ? t.ph : i == 1 ? t.pv : t.pk; }

std::string num(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

// ---- writing -------------------------------------------------------------------------------------------------------

struct OutTensor {
    std::string name;
    const char *dtype;
    std::vector<int64_t> shape;
    const void *data;
    size_t bytes;
};

void add_f32(std::vector<OutTensor> &out, std::string name, std::vector<int64_t> shape, const float *p, size_t n) {
    out.push_back(OutTensor{std::move(name), "F32", std::move(shape), p, n * sizeof(float)});
}

std::map<std::string, std::string> metadata_of(const CalibrationResult &r) {
    const CalibOptions &o = r.options;
    const ModelDims &d = r.dims;
    return {{"format", kFormat},
            {"format_version", std::to_string(kFormatVersion)},
            {"method", method_name(r.scheme.method)},
            {"bits", bits_name(r.scheme.bits)},
            {"w_bits", std::to_string(r.scheme.bits.w)},
            {"a_bits", std::to_string(r.scheme.bits.a)},
            {"k_bits", std::to_string(r.scheme.bits.k)},
            {"v_bits", std::to_string(r.scheme.bits.v)},
            {"weight_quantizer", weight_quantizer_name(r.scheme.weights)},
            {"nsamples", std::to_string(o.nsamples)},
            {"seqlen", std::to_string(o.seqlen)},
            {"batch", std::to_string(o.batch)},
            {"epochs", std::to_string(o.epochs)},
            {"flat_lr", num(o.flat_lr)},
            {"diag_alpha", num(o.diag_alpha)},
            {"add_diag", o.add_diag ? "1" : "0"},
            {"lwc", o.lwc ? "1" : "0"},
            {"lac", o.lac ? "1" : "0"},
            {"direct_inv", o.direct_inv ? "1" : "0"},
            {"seed", std::to_string(o.seed)},
            {"percdamp", num(o.percdamp)},
            {"gptq_blocksize", std::to_string(o.gptq_blocksize)},
            {"data_sha256", r.data_sha256},
            {"data_tokens", std::to_string(r.data_tokens)},
            {"model_fingerprint", r.model_fingerprint},
            {"n_layer", std::to_string(d.n_layer)},
            {"n_embd", std::to_string(d.n_embd)},
            {"n_ff", std::to_string(d.n_ff)},
            {"n_head", std::to_string(d.n_head)},
            {"n_head_kv", std::to_string(d.n_head_kv)},
            {"head_dim", std::to_string(d.head_dim)},
            {"n_vocab", std::to_string(d.n_vocab)}};
}

std::vector<OutTensor> tensors_of(const CalibrationResult &r, const std::vector<double> &epoch_mse, int64_t epochs) {
    std::vector<OutTensor> out;
    ModelConfig c;
    c.n_embd = r.dims.n_embd, c.n_ff = r.dims.n_ff, c.n_head = r.dims.n_head, c.n_head_kv = r.dims.n_head_kv;
    c.head_dim = r.dims.head_dim;
    for (int32_t l = 0; l < r.dims.n_layer; l++) {
        const LayerTransforms &t = r.layers[static_cast<size_t>(l)];
        const std::string p = layer_prefix(l);
        for (int i = 0; i < 3; i++) {
            const KronTransform &k = kron_of(t, i);
            if (!k.present()) continue;
            const std::string b = p + kKron[i] + ".";
            add_f32(out, b + "matrix_left", {k.n1, k.n1}, k.left.data(), k.left.size());
            add_f32(out, b + "matrix_right", {k.n2, k.n2}, k.right.data(), k.right.size());
            add_f32(out, b + "matrix_left_inv", {k.n1, k.n1}, k.left_inv_t.data(), k.left_inv_t.size());
            add_f32(out, b + "matrix_right_inv", {k.n2, k.n2}, k.right_inv_t.data(), k.right_inv_t.size());
            if (!k.diag.empty()) add_f32(out, b + "diag_scale", {(int64_t)k.diag.size()}, k.diag.data(), k.diag.size());
        }
        for (int i = 0; i < 3; i++) {
            const SingleTransform &s = single_of(t, i);
            if (!s.present()) continue;
            add_f32(out, p + kSingle[i] + ".matrix", {s.k, s.k}, s.m.data(), s.m.size());
            add_f32(out, p + kSingle[i] + ".matrix_inv_t", {s.k, s.k}, s.m_inv_t.data(), s.m_inv_t.size());
        }
        for (int i = 0; i < kNumLinears; i++) {
            const std::string b = p + kLinPrefix[i] + ".";
            const int64_t rows = linear_shape(c, i).out;
            if (!t.lwc[i].empty()) {
                add_f32(out, b + "clip_factor_w_max", {rows, 1}, t.lwc[i].data(), rows);
                add_f32(out, b + "clip_factor_w_min", {rows, 1}, t.lwc[i].data() + rows, rows);
            }
            if (t.lac) {
                add_f32(out, b + "act_quantizer.clip_factor_a_max", {1}, &t.lac_lin[i][0], 1);
                add_f32(out, b + "act_quantizer.clip_factor_a_min", {1}, &t.lac_lin[i][1], 1);
            }
            if (!r.gptq.empty()) {
                const QuantizedWeight &q = r.gptq[static_cast<size_t>(l)][static_cast<size_t>(i)];
                out.push_back(OutTensor{b + "qweight", "I8", {rows, linear_shape(c, i).in}, q.codes.data(),
                                        q.codes.size()});
                add_f32(out, b + "wscale", {rows}, q.scale.data(), q.scale.size());
            }
        }
        if (t.lac) {
            add_f32(out, p + "self_attn.k_cache_quantizer.clip_factor_a_max", {1}, &t.lac_k[0], 1);
            add_f32(out, p + "self_attn.k_cache_quantizer.clip_factor_a_min", {1}, &t.lac_k[1], 1);
            add_f32(out, p + "self_attn.v_cache_quantizer.clip_factor_a_max", {1}, &t.lac_v[0], 1);
            add_f32(out, p + "self_attn.v_cache_quantizer.clip_factor_a_min", {1}, &t.lac_v[1], 1);
        }
    }
    if (!epoch_mse.empty()) {
        out.push_back(OutTensor{"calibration.epoch_mse", "F64", {r.dims.n_layer, epochs}, epoch_mse.data(),
                                epoch_mse.size() * sizeof(double)});
    }
    return out;
}

}  // namespace

void save_artifact(const std::string &path, const CalibrationResult &r, const Progress &progress) {
    FQ_CHECK(little_endian(), FQ_STATUS_UNSUPPORTED, "artifacts are written on little-endian hosts only");
    FQ_CHECK(!path.empty(), FQ_STATUS_INVALID_ARGUMENT, "empty artifact path");
    check_consistent(r);
    // The epoch log as one rectangular tensor (layers calibrated with the same epoch count).
    std::vector<double> epoch_mse;
    int64_t epochs = 0;
    if (!r.epoch_mse.empty() && !r.epoch_mse[0].empty()) {
        epochs = static_cast<int64_t>(r.epoch_mse[0].size());
        bool rect = static_cast<int32_t>(r.epoch_mse.size()) == r.dims.n_layer;
        for (const auto &row : r.epoch_mse) rect = rect && static_cast<int64_t>(row.size()) == epochs;
        if (rect)
            for (const auto &row : r.epoch_mse) epoch_mse.insert(epoch_mse.end(), row.begin(), row.end());
    }
    const std::vector<OutTensor> tensors = tensors_of(r, epoch_mse, epochs);
    std::string header = "{\"__metadata__\":{";
    bool first = true;
    for (const auto &kv : metadata_of(r)) {
        header += (first ? "" : ",") + json::quote(kv.first) + ":" + json::quote(kv.second);
        first = false;
    }
    header += "}";
    size_t offset = 0;
    for (const OutTensor &t : tensors) {
        header += "," + json::quote(t.name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (size_t i = 0; i < t.shape.size(); i++) header += (i ? "," : "") + std::to_string(t.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.bytes) + "]}";
        offset += t.bytes;
    }
    header += "}";
    header.append((8 - header.size() % 8) % 8, ' ');
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));

    // The temporary file is removed on every exit but a completed commit (errors and cancellation).
    AtomicFile file(path);
    file.write(len, 8);
    file.write(header.data(), header.size());
    for (size_t i = 0; i < tensors.size(); i++) {
        progress.step("save", static_cast<int64_t>(i), static_cast<int64_t>(tensors.size()));
        file.write(tensors[i].data, tensors[i].bytes);
    }
    progress.step("save", static_cast<int64_t>(tensors.size()), static_cast<int64_t>(tensors.size()));
    file.commit();
}

}  // namespace fq::quant
