// Builds a Model from a GGUF file: architecture hyper-parameters from the metadata, every tensor checked against the
// shape the configuration implies, dequantized to FP32, and (optionally) scanned for NaN/Inf.
#include <cmath>
#include <new>
#include <set>

#include "core/error.h"
#include "core/sha256.h"
#include "io/gguf.h"
#include "model/gguf_loader.h"
#include "model/model.h"

namespace fq {

const std::string &Model::fingerprint() const {
    std::call_once(fingerprint_once_, [this] { fingerprint_ = sha256_file_hex(source.path); });
    return fingerprint_;
}

namespace {

const std::set<std::string> kSupportedArchitectures = {"llama", "qwen2"};

int32_t positive_int(const gguf::File &f, const std::string &key, int64_t fallback, int64_t max_value) {
    int64_t v = f.get_int(key, fallback);
    FQ_CHECK(v > 0 && v <= max_value, FQ_STATUS_MODEL_FORMAT, "%s: metadata %s = %lld is out of range (1..%lld)",
             f.path().c_str(), key.c_str(), (long long)v, (long long)max_value);
    return static_cast<int32_t>(v);
}

ModelConfig read_config(const gguf::File &f) {
    ModelConfig c;
    FQ_CHECK(f.find("general.architecture") != nullptr, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata general.architecture is missing", f.path().c_str());
    c.architecture = f.get_string("general.architecture");
    if (!kSupportedArchitectures.count(c.architecture)) {
        FQ_FAIL(FQ_STATUS_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: llama, qwen2)",
                f.path().c_str(), c.architecture.c_str());
    }
    c.name = f.get_string("general.name");
    const std::string a = c.architecture + ".";
    c.n_layer = positive_int(f, a + "block_count", -1, 4096);
    c.n_embd = positive_int(f, a + "embedding_length", -1, 1 << 17);
    c.n_ff = positive_int(f, a + "feed_forward_length", -1, 1 << 20);
    c.n_head = positive_int(f, a + "attention.head_count", -1, 4096);
    c.n_head_kv = positive_int(f, a + "attention.head_count_kv", c.n_head, 4096);
    c.n_ctx_train = positive_int(f, a + "context_length", 2048, 1 << 24);
    FQ_CHECK(c.n_head % c.n_head_kv == 0, FQ_STATUS_MODEL_FORMAT,
             "%s: head_count %d is not a multiple of head_count_kv %d", f.path().c_str(), c.n_head, c.n_head_kv);
    int64_t default_head_dim = c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : -1;
    c.head_dim = positive_int(f, a + "attention.key_length", default_head_dim, 1 << 12);
    int64_t v_len = f.get_int(a + "attention.value_length", c.head_dim);
    FQ_CHECK(v_len == c.head_dim, FQ_STATUS_UNSUPPORTED, "%s: value_length %lld differs from key_length %d",
             f.path().c_str(), (long long)v_len, c.head_dim);
    c.rope_dim = positive_int(f, a + "rope.dimension_count", c.head_dim, c.head_dim);
    FQ_CHECK(c.rope_dim % 2 == 0, FQ_STATUS_MODEL_FORMAT, "%s: rope.dimension_count %d is odd", f.path().c_str(),
             c.rope_dim);
    c.rope_freq_base = static_cast<float>(f.get_float(a + "rope.freq_base", 10000.0));
    c.rms_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
    FQ_CHECK(c.rope_freq_base > 1.0f && std::isfinite(c.rope_freq_base), FQ_STATUS_MODEL_FORMAT,
             "%s: rope.freq_base %g is invalid", f.path().c_str(), c.rope_freq_base);
    FQ_CHECK(c.rms_eps > 0.0f && c.rms_eps < 1.0f, FQ_STATUS_MODEL_FORMAT, "%s: rms epsilon %g is invalid",
             f.path().c_str(), c.rms_eps);
    std::string scaling = f.get_string(a + "rope.scaling.type", "none");
    FQ_CHECK(scaling == "none" || scaling.empty(), FQ_STATUS_UNSUPPORTED,
             "%s: rope.scaling.type '%s' is not supported", f.path().c_str(), scaling.c_str());
    c.rope_mode = c.architecture == "qwen2" ? RopeMode::Neox : RopeMode::Normal;
    return c;
}

class TensorReader {
  public:
    TensorReader(const gguf::File &f, bool check_finite) : f_(f), check_finite_(check_finite) {}

    // Reads tensor `name` whose ggml dims must equal `dims` (innermost first). Missing -> MODEL_FORMAT.
    std::vector<float> read(const std::string &name, std::vector<uint64_t> dims) {
        const gguf::TensorInfo *t = f_.find_tensor(name);
        FQ_CHECK(t != nullptr, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' is missing", f_.path().c_str(), name.c_str());
        return read(*t, dims);
    }
    std::vector<float> read_optional(const std::string &name, std::vector<uint64_t> dims) {
        const gguf::TensorInfo *t = f_.find_tensor(name);
        return t ? read(*t, dims) : std::vector<float>{};
    }
    int64_t n_used() const { return n_used_; }

  private:
    std::vector<float> read(const gguf::TensorInfo &t, const std::vector<uint64_t> &dims) {
        if (t.dims != dims) {
            FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f_.path().c_str(),
                    t.name.c_str(), shape_str(t.dims).c_str(), shape_str(dims).c_str());
        }
        std::vector<float> out;
        try {
            out.resize(t.n_elements);
        } catch (const std::bad_alloc &) {
            FQ_FAIL(FQ_STATUS_OUT_OF_MEMORY, "out of host memory reading tensor '%s' (%llu elements)", t.name.c_str(),
                    (unsigned long long)t.n_elements);
        }
        f_.read_f32(t, out.data());
        if (check_finite_) {
            for (size_t i = 0; i < out.size(); ++i) {
                if (!std::isfinite(out[i])) {
                    FQ_FAIL(FQ_STATUS_NUMERIC, "%s: tensor '%s' holds a non-finite value (%g) at element %zu",
                            f_.path().c_str(), t.name.c_str(), out[i], i);
                }
            }
        }
        n_used_ += static_cast<int64_t>(t.n_elements);
        return out;
    }
    static std::string shape_str(const std::vector<uint64_t> &d) {
        std::string s = "[";
        for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
        return s + "]";
    }
    const gguf::File &f_;
    bool check_finite_;
    int64_t n_used_ = 0;
};

}  // namespace

std::unique_ptr<Model> load_gguf_model_without_layers(const gguf::File &f, const LoadOptions &opts) {
    auto model = std::make_unique<Model>();
    ModelConfig &c = model->config;
    c = read_config(f);
    model->tokenizer = Tokenizer::from_gguf(f);
    c.n_vocab = model->tokenizer->n_vocab();

    const uint64_t E = c.n_embd, V = c.n_vocab;
    TensorReader r(f, opts.check_finite);
    ModelWeights &w = model->weights;
    w.tok_embd = r.read("token_embd.weight", {E, V});
    w.output_norm = r.read("output_norm.weight", {E});
    w.output = r.read_optional("output.weight", {E, V});
    c.tied_embeddings = w.output.empty();
    w.rope_freq_factors = r.read_optional("rope_freqs.weight", {(uint64_t)c.rope_dim / 2});
    w.layers.resize(c.n_layer);

    ModelSource &s = model->source;
    s.path = f.path();
    s.file_bytes = static_cast<int64_t>(f.file_size());
    s.gguf_version = static_cast<int32_t>(f.version());
    std::set<std::string> types;
    for (const auto &t : f.tensors()) {
        s.n_params += static_cast<int64_t>(t.n_elements);
        types.insert(gguf::tensor_type_name(t.type));
    }
    for (const auto &t : types) s.weight_types += (s.weight_types.empty() ? "" : ",") + t;
    return model;
}

std::unique_ptr<Model> load_gguf_model(const gguf::File &f, const LoadOptions &opts) {
    // A quantized-model file has the same metadata but no full-precision layers: name it rather than report its
    // first missing weight.
    FQ_CHECK(f.find("flatquant.format_version") == nullptr, FQ_STATUS_UNSUPPORTED,
             "%s is a quantized-model file, not a full-precision GGUF model (fq_model_load reads both)",
             f.path().c_str());
    std::unique_ptr<Model> model = load_gguf_model_without_layers(f, opts);
    ModelConfig &c = model->config;
    const std::string &path = f.path();
    const uint64_t E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff;
    TensorReader r(f, opts.check_finite);
    ModelWeights &w = model->weights;
    for (int32_t l = 0; l < c.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerWeights &L = w.layers[l];
        L.attn_norm = r.read(p + "attn_norm.weight", {E});
        L.wq = r.read(p + "attn_q.weight", {E, Q});
        L.wk = r.read(p + "attn_k.weight", {E, KV});
        L.wv = r.read(p + "attn_v.weight", {E, KV});
        L.bq = r.read_optional(p + "attn_q.bias", {Q});
        L.bk = r.read_optional(p + "attn_k.bias", {KV});
        L.bv = r.read_optional(p + "attn_v.bias", {KV});
        bool has_bias = !L.bq.empty() || !L.bk.empty() || !L.bv.empty();
        FQ_CHECK(!has_bias || (!L.bq.empty() && !L.bk.empty() && !L.bv.empty()), FQ_STATUS_MODEL_FORMAT,
                 "%s: layer %d has only some of the q/k/v biases", path.c_str(), l);
        if (l == 0) c.qkv_bias = has_bias;
        FQ_CHECK(has_bias == c.qkv_bias, FQ_STATUS_MODEL_FORMAT, "%s: layer %d disagrees with layer 0 on q/k/v biases",
                 path.c_str(), l);
        L.wo = r.read(p + "attn_output.weight", {Q, E});
        L.ffn_norm = r.read(p + "ffn_norm.weight", {E});
        L.w_gate = r.read(p + "ffn_gate.weight", {E, F});
        L.w_up = r.read(p + "ffn_up.weight", {E, F});
        L.w_down = r.read(p + "ffn_down.weight", {F, E});
    }
    return model;
}

std::unique_ptr<Model> load_gguf_model(const std::string &path, const LoadOptions &opts) {
    std::unique_ptr<gguf::File> file = gguf::File::open(path);
    return load_gguf_model(*file, opts);
}

}  // namespace fq
