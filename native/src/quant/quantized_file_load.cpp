// Reading the quantized-model file (docs/quantized-model-format.md). The base model's parts come from the GGUF model
// loader (model/gguf_loader.h); the layers are read here. Nothing in the file is trusted: every tensor's type and
// shape is checked against the configuration, every code against the width, every float for finiteness, and a tensor
// the format does not define is refused, so a corrupt file ends in MODEL_FORMAT naming what is wrong.
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "cpu/w4a4_gemm_ref.h"
#include "io/gguf.h"
#include "model/gguf_loader.h"
#include "quant/quantized_file.h"

namespace fq::quant {

namespace {

std::string shape_str(const std::vector<uint64_t> &d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

// Reads the layer tensors of one file and remembers which ones it has read.
class LayerTensors {
  public:
    explicit LayerTensors(const gguf::File &f) : f_(f) {}

    const gguf::TensorInfo *find(const std::string &name) {
        const gguf::TensorInfo *t = f_.find_tensor(name);
        if (t) used_.insert(name);
        return t;
    }
    const gguf::TensorInfo &require(const std::string &name) {
        const gguf::TensorInfo *t = find(name);
        FQ_CHECK(t != nullptr, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' is missing", f_.path().c_str(), name.c_str());
        return *t;
    }
    void check(const gguf::TensorInfo &t, uint32_t type, const std::vector<uint64_t> &dims) const {
        FQ_CHECK(t.type == type, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' has type %s, expected %s", f_.path().c_str(),
                 t.name.c_str(), gguf::tensor_type_name(t.type), gguf::tensor_type_name(type));
        FQ_CHECK(t.dims == dims, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f_.path().c_str(),
                 t.name.c_str(), shape_str(t.dims).c_str(), shape_str(dims).c_str());
    }
    // An F32 tensor of exactly `dims`, every value finite.
    std::vector<float> f32(const gguf::TensorInfo &t, const std::vector<uint64_t> &dims) const {
        check(t, qfile::kTypeF32, dims);
        std::vector<float> v(static_cast<size_t>(t.n_elements));
        std::memcpy(v.data(), f_.tensor_data(t), v.size() * sizeof(float));
        for (size_t i = 0; i < v.size(); i++) {
            FQ_CHECK(std::isfinite(v[i]), FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' holds a non-finite value (%g) at "
                     "element %zu", f_.path().c_str(), t.name.c_str(), v[i], i);
        }
        return v;
    }
    std::vector<float> f32(const std::string &name, const std::vector<uint64_t> &dims) {
        return f32(require(name), dims);
    }
    // A square F32 matrix whose side is whatever the file says (checked by the caller).
    const gguf::TensorInfo *square(const std::string &name) {
        const gguf::TensorInfo *t = find(name);
        if (t) {
            FQ_CHECK(t->dims.size() == 2 && t->dims[0] == t->dims[1] && t->dims[0] > 0 && t->dims[0] <= (1u << 20),
                     FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' has shape %s, expected a square matrix",
                     f_.path().c_str(), name.c_str(), shape_str(t->dims).c_str());
        }
        return t;
    }
    // Every tensor of the file is a base tensor or one this reader asked for.
    void check_all_used() const {
        for (const gguf::TensorInfo &t : f_.tensors()) {
            FQ_CHECK(qfile::is_base_tensor(t.name) || used_.count(t.name), FQ_STATUS_MODEL_FORMAT,
                     "%s: tensor '%s' is not part of the quantized-model format", f_.path().c_str(), t.name.c_str());
        }
    }
    const gguf::File &file() const { return f_; }

  private:
    const gguf::File &f_;
    std::set<std::string> used_;
};

// The weights of one linear: codes in range, w = scale * code exactly as weight_quant_forward forms it.
void read_linear(LayerTensors &r, const std::string &base, const LinearShape &s, int bits, QuantLinear &q) {
    const uint64_t out = static_cast<uint64_t>(s.out), in = static_cast<uint64_t>(s.in);
    const char *path = r.file().path().c_str();
    q.scale = r.f32(base + ".scale", {out});
    for (size_t i = 0; i < q.scale.size(); i++) {
        FQ_CHECK(q.scale[i] > 0.0f, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s.scale' holds a scale <= 0 (%g) at row %zu",
                 path, base.c_str(), q.scale[i], i);
    }
    const gguf::TensorInfo &t = r.require(base + ".qweight");
    FQ_CHECK(bits > 4 || in % 2 == 0, FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s': rows of %llu codes cannot be packed",
             path, t.name.c_str(), (unsigned long long)in);
    r.check(t, qfile::kTypeI8, {bits <= 4 ? in / 2 : in, out});
    std::vector<int8_t> codes(static_cast<size_t>(out * in));
    if (bits <= 4) {
        cpu::unpack_int4(codes.data(), r.file().tensor_data(t), s.out, s.in);
    } else {
        std::memcpy(codes.data(), r.file().tensor_data(t), codes.size());
    }
    const int qmax = (1 << (bits - 1)) - 1;
    q.w.resize(codes.size());
    for (uint64_t i = 0; i < out; i++) {
        const float sc = q.scale[i];
        for (uint64_t j = 0; j < in; j++) {
            const int8_t c = codes[i * in + j];
            FQ_CHECK(c >= -(qmax + 1) && c <= qmax, FQ_STATUS_MODEL_FORMAT,
                     "%s: tensor '%s' holds code %d at [%llu][%llu], outside the %d-bit range [%d, %d]", path,
                     t.name.c_str(), c, (unsigned long long)i, (unsigned long long)j, bits, -(qmax + 1), qmax);
            q.w[i * in + j] = sc * static_cast<float>(c);
        }
    }
}

// P_a, P_ug or P_d: both factors or neither, covering `width` channels.
void read_kron(LayerTensors &r, const std::string &name, int64_t width, KronTransform &k) {
    const gguf::TensorInfo *left = r.square(name + ".left"), *right = r.square(name + ".right");
    const char *path = r.file().path().c_str();
    FQ_CHECK((left == nullptr) == (right == nullptr), FQ_STATUS_MODEL_FORMAT,
             "%s: tensor '%s.%s' is missing (the transform has only one factor)", path, name.c_str(),
             left ? "right" : "left");
    if (!left) return;
    const uint64_t n1 = left->dims[0], n2 = right->dims[0];
    FQ_CHECK(n1 * n2 == static_cast<uint64_t>(width), FQ_STATUS_MODEL_FORMAT,
             "%s: tensors '%s.left' and '.right' are %llu x %llu and %llu x %llu, which do not cover %lld channels",
             path, name.c_str(), (unsigned long long)n1, (unsigned long long)n1, (unsigned long long)n2,
             (unsigned long long)n2, (long long)width);
    k.n1 = static_cast<int>(n1);
    k.n2 = static_cast<int>(n2);
    k.left = r.f32(*left, {n1, n1});
    k.right = r.f32(*right, {n2, n2});
}

std::vector<float> read_square(LayerTensors &r, const gguf::TensorInfo *t, int64_t k) {
    return r.f32(*t, {static_cast<uint64_t>(k), static_cast<uint64_t>(k)});
}

QuantScheme read_scheme(const gguf::File &f) {
    const char *keys[3] = {qfile::kKeyQuant, qfile::kKeyMethod, qfile::kKeyWeightQuantizer};
    std::string values[3];
    for (int i = 0; i < 3; i++) values[i] = f.require_string(keys[i]);
    QuantScheme s;
    try {
        s.bits = parse_bits(values[0]);
        s.method = parse_method(values[1]);
        s.weights = parse_weight_quantizer(values[2]);
        validate(s);
    } catch (const Error &e) {
        FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "%s: metadata %s / %s / %s = '%s' / '%s' / '%s' is not a valid scheme: %s",
                f.path().c_str(), keys[0], keys[1], keys[2], values[0].c_str(), values[1].c_str(), values[2].c_str(),
                e.what());
    }
    FQ_CHECK(s.bits.w <= 8, FQ_STATUS_MODEL_FORMAT, "%s: metadata %s = '%s' has no weight codes to store",
             f.path().c_str(), keys[0], values[0].c_str());
    return s;
}

}  // namespace

LoadedQuantizedModel load_quantized_model_file(const gguf::File &f, const LoadOptions &opts) {
    const char *path = f.path().c_str();
    FQ_CHECK(is_quantized_model_file(f), FQ_STATUS_MODEL_FORMAT, "%s: not a quantized-model file (no %s)", path,
             qfile::kKeyVersion);
    const gguf::Value *ver = f.find(qfile::kKeyVersion);
    FQ_CHECK(ver->is_integer() && ver->type != gguf::ValueType::BOOL && ver->u >= 1, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata %s must be a positive integer", path, qfile::kKeyVersion);
    FQ_CHECK(ver->u <= kQuantizedFileVersion, FQ_STATUS_UNSUPPORTED,
             "%s: quantized-model format version %llu is newer than this library reads (up to %u)", path,
             (unsigned long long)ver->u, kQuantizedFileVersion);
    const QuantScheme scheme = read_scheme(f);
    FQ_CHECK(f.find(qfile::kKeyLac) != nullptr, FQ_STATUS_MODEL_FORMAT, "%s: required metadata key '%s' is missing",
             path, qfile::kKeyLac);
    const bool lac = f.get_bool(qfile::kKeyLac, false);
    const std::string fingerprint = f.require_string(qfile::kKeyBaseFingerprint);
    FQ_CHECK(fingerprint.size() == 64 && fingerprint.find_first_not_of("0123456789abcdef") == std::string::npos,
             FQ_STATUS_MODEL_FORMAT, "%s: metadata %s = '%s' is not a SHA-256 in hex", path,
             qfile::kKeyBaseFingerprint, fingerprint.c_str());

    std::unique_ptr<Model> base = load_gguf_model_without_layers(f, opts);
    ModelConfig &c = base->config;
    auto qm = std::make_unique<QuantizedModel>();
    qm->scheme = scheme;
    qm->layers.resize(static_cast<size_t>(c.n_layer));
    LayerTensors r(f);
    const uint64_t E = c.n_embd;
    for (int32_t l = 0; l < c.n_layer; l++) {
        QuantLayer &L = qm->layers[static_cast<size_t>(l)];
        const std::string p = "blk." + std::to_string(l) + ".";
        L.attn_norm = r.f32(p + "attn_norm.weight", {E});
        L.ffn_norm = r.f32(p + "ffn_norm.weight", {E});
        for (int lin = 0; lin < kNumLinears; lin++) {
            const LinearShape s = linear_shape(c, lin);
            const std::string name = p + qfile::linear_name(lin);
            read_linear(r, name, s, scheme.bits.w, L.lin[lin]);
            // Biases only after q/k/v (what the forward adds); anything else is left unread and refused below.
            if (lin <= kLinV) {
                if (const gguf::TensorInfo *b = r.find(name + ".bias")) L.lin[lin].bias = r.f32(*b, {(uint64_t)s.out});
            }
        }
        const bool has_bias = !L.lin[kLinQ].bias.empty();
        FQ_CHECK(has_bias == !L.lin[kLinK].bias.empty() && has_bias == !L.lin[kLinV].bias.empty(),
                 FQ_STATUS_MODEL_FORMAT, "%s: layer %d has only some of the q/k/v biases", path, l);
        if (l == 0) c.qkv_bias = has_bias;
        FQ_CHECK(has_bias == c.qkv_bias, FQ_STATUS_MODEL_FORMAT, "%s: layer %d disagrees with layer 0 on q/k/v biases",
                 path, l);

        LayerTransforms &t = L.online;
        const int64_t widths[3] = {c.n_embd, c.n_embd, c.n_ff};
        KronTransform *krons[3] = {&t.pa, &t.pug, &t.pd};
        for (int k = 0; k < 3; k++) read_kron(r, p + qfile::kKronNames[k], widths[k], *krons[k]);
        if (const gguf::TensorInfo *ph = r.square(p + "flat.ph")) {
            t.ph.k = c.n_head;
            t.ph.m = read_square(r, ph, c.n_head);
        }
        const gguf::TensorInfo *pk = r.square(p + "flat.pk"), *pk_inv_t = r.square(p + "flat.pk_inv_t");
        FQ_CHECK((pk == nullptr) == (pk_inv_t == nullptr), FQ_STATUS_MODEL_FORMAT,
                 "%s: tensor '%sflat.%s' is missing (P_k needs both)", path, p.c_str(), pk ? "pk_inv_t" : "pk");
        if (pk) {
            t.pk.k = c.head_dim;
            t.pk.m = read_square(r, pk, c.head_dim);
            t.pk.m_inv_t = read_square(r, pk_inv_t, c.head_dim);
        }
        t.lac = lac;
        if (lac) {
            const std::vector<float> v = r.f32(p + "flat.lac", {static_cast<uint64_t>(qfile::kLacValues)});
            for (int lin = 0; lin < kNumLinears; lin++) t.lac_lin[lin] = {v[2 * lin], v[2 * lin + 1]};
            t.lac_k = {v[2 * kNumLinears], v[2 * kNumLinears + 1]};
            t.lac_v = {v[2 * kNumLinears + 2], v[2 * kNumLinears + 3]};
        }
    }
    r.check_all_used();
    qm->weights_quantized = true;

    // The file as a whole: every stored value, a packed byte counting as its two codes.
    int64_t n_params = 0;
    for (const gguf::TensorInfo &t : f.tensors()) {
        const bool packed = scheme.bits.w <= 4 && t.name.size() > 8 &&
                            t.name.compare(t.name.size() - 8, 8, ".qweight") == 0;
        n_params += static_cast<int64_t>(t.n_elements) * (packed ? 2 : 1);
    }
    base->source.n_params = n_params;

    LoadedQuantizedModel out;
    out.base = std::move(base);
    qm->base = out.base.get();
    out.qm = std::move(qm);
    return out;
}

LoadedQuantizedModel load_quantized_model_file(const std::string &path, const LoadOptions &opts) {
    std::unique_ptr<gguf::File> f = gguf::File::open(path);
    return load_quantized_model_file(*f, opts);
}

}  // namespace fq::quant
