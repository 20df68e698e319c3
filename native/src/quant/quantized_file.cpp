// Writing the quantized-model file (docs/quantized-model-format.md). The GGUF encoding is written here from the
// specification's layout (header, key-values, tensor infos, aligned data); the reader is io/gguf.cpp.
//
// Order of work: everything that can be refused (the model, the base file) is checked before the temporary file
// exists; the integer codes are recovered tensor by tensor while writing, and a weight that is not exactly
// scale * code (a model whose weights were never quantized the usual way) aborts the write as INTERNAL.
#include "quant/quantized_file.h"

#include <cmath>
#include <cstring>
#include <deque>

#include "core/atomic_file.h"
#include "core/error.h"
#include "cpu/w4a4_gemm_ref.h"
#include "io/gguf.h"

namespace fq::quant {

namespace {

// One tensor of the output: its directory entry and where its bytes come from.
struct OutTensor {
    std::string name;
    std::vector<uint64_t> dims;  // ggml order: dims[0] is contiguous
    uint32_t type = qfile::kTypeF32;
    uint64_t n_bytes = 0;
    uint64_t offset = 0;                // within the data section
    const void *raw = nullptr;          // bytes written as they are (base tensors, FP32 vectors)
    const QuantLinear *codes = nullptr; // or: integer codes recovered from this linear's weights when written
    int64_t rows = 0, cols = 0;         // of `codes`: [rows][cols] weights
};

// Buffered writes to a file descriptor; every failure is an IO error naming the file.
// Buffered writes into the atomic file (1 MiB at a time), counting the bytes for the alignment padding.
class Sink {
  public:
    explicit Sink(AtomicFile &file) : file_(file) { buf_.reserve(kBuf); }
    void bytes(const void *p, size_t n) {
        const uint8_t *b = static_cast<const uint8_t *>(p);
        if (n >= kBuf) {
            flush();
            file_.write(b, n);
            written_ += n;
            return;
        }
        if (buf_.size() + n > kBuf) flush();
        buf_.insert(buf_.end(), b, b + n);
    }
    template <class T> void scalar(T v) { bytes(&v, sizeof v); }
    void str(const std::string &s) {
        scalar<uint64_t>(s.size());
        bytes(s.data(), s.size());
    }
    void zeros(uint64_t n) {
        static const uint8_t z[64] = {};
        while (n > 0) {
            const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof z));
            bytes(z, k);
            n -= k;
        }
    }
    uint64_t position() const { return written_ + buf_.size(); }
    void flush() {
        file_.write(buf_.data(), buf_.size());
        written_ += buf_.size();
        buf_.clear();
    }

  private:
    static constexpr size_t kBuf = size_t(1) << 20;
    AtomicFile &file_;
    std::vector<uint8_t> buf_;
    uint64_t written_ = 0;
};

// A metadata value's encoding after its type tag, from the type the reader recorded (integers were widened on
// reading; narrowing them back restores the original bytes).
void put_value(Sink &s, const gguf::Value &v) {
    using VT = gguf::ValueType;
    switch (v.type) {
        case VT::UINT8: s.scalar<uint8_t>(static_cast<uint8_t>(v.u)); break;
        case VT::INT8: s.scalar<int8_t>(static_cast<int8_t>(v.i)); break;
        case VT::UINT16: s.scalar<uint16_t>(static_cast<uint16_t>(v.u)); break;
        case VT::INT16: s.scalar<int16_t>(static_cast<int16_t>(v.i)); break;
        case VT::UINT32: s.scalar<uint32_t>(static_cast<uint32_t>(v.u)); break;
        case VT::INT32: s.scalar<int32_t>(static_cast<int32_t>(v.i)); break;
        case VT::FLOAT32: s.scalar<float>(static_cast<float>(v.f)); break;  // widened from a float: exact
        case VT::BOOL: s.scalar<uint8_t>(v.u ? 1 : 0); break;
        case VT::STRING: s.str(v.str); break;
        case VT::UINT64: s.scalar<uint64_t>(v.u); break;
        case VT::INT64: s.scalar<int64_t>(v.i); break;
        case VT::FLOAT64: s.scalar<double>(v.f); break;
        case VT::ARRAY:
            s.scalar<uint32_t>(static_cast<uint32_t>(v.array_type));
            s.scalar<uint64_t>(v.array.size());
            for (const gguf::Value &e : v.array) put_value(s, e);
            break;
    }
}

gguf::Value str_value(const std::string &x) {
    gguf::Value v;
    v.type = gguf::ValueType::STRING;
    v.str = x;
    return v;
}

gguf::Value u32_value(uint32_t x) {
    gguf::Value v;
    v.type = gguf::ValueType::UINT32;
    v.u = x;
    v.i = x;
    return v;
}

gguf::Value bool_value(bool x) {
    gguf::Value v;
    v.type = gguf::ValueType::BOOL;
    v.u = x ? 1 : 0;
    return v;
}

// Codes of one linear, in the stored layout: [rows][cols / 2] packed nibbles (bits <= 4) or [rows][cols] int8.
// Each code is recovered as round(w / scale) and must give back w exactly.
std::vector<uint8_t> encode_codes(const OutTensor &t, int bits) {
    const QuantLinear &q = *t.codes;
    const int qmax = (1 << (bits - 1)) - 1;
    std::vector<int8_t> codes(static_cast<size_t>(t.rows * t.cols));
    for (int64_t i = 0; i < t.rows; i++) {
        const float s = q.scale[i];
        for (int64_t j = 0; j < t.cols; j++) {
            const float w = q.w[i * t.cols + j];
            const float c = std::nearbyint(w / s);
            FQ_CHECK(c >= -(qmax + 1) && c <= qmax && s * c == w, FQ_STATUS_INTERNAL,
                     "%s: weight [%lld][%lld] = %.9g is not scale %.9g times a %d-bit integer", t.name.c_str(),
                     (long long)i, (long long)j, w, s, bits);
            codes[i * t.cols + j] = static_cast<int8_t>(c);
        }
    }
    std::vector<uint8_t> out(static_cast<size_t>(t.n_bytes));
    if (bits <= 4) {
        cpu::pack_int4(out.data(), codes.data(), t.rows, t.cols);
    } else {
        std::memcpy(out.data(), codes.data(), codes.size());
    }
    return out;
}

const std::vector<float> *kron_factor(const KronTransform &k, int side) { return side == 0 ? &k.left : &k.right; }

// The directory of the layer tensors of qm, in file order. `lac_store` keeps the assembled LAC vectors alive.
void plan_layers(const QuantizedModel &qm, std::vector<OutTensor> &out, std::deque<std::vector<float>> &lac_store) {
    const ModelConfig &c = qm.base->config;
    const int bits = qm.scheme.bits.w;
    const uint64_t E = c.n_embd, H = c.n_head, D = c.head_dim;
    auto f32 = [&out](std::string name, std::vector<uint64_t> dims, const std::vector<float> &v) {
        uint64_t n = 1;
        for (uint64_t d : dims) n *= d;
        FQ_CHECK(v.size() == n, FQ_STATUS_INVALID_ARGUMENT, "%s has %zu values, expected %llu", name.c_str(),
                 v.size(), (unsigned long long)n);
        OutTensor t;
        t.name = std::move(name);
        t.dims = std::move(dims);
        t.n_bytes = n * sizeof(float);
        t.raw = v.data();
        out.push_back(std::move(t));
    };
    for (int32_t l = 0; l < c.n_layer; l++) {
        const QuantLayer &L = qm.layers[static_cast<size_t>(l)];
        const std::string p = "blk." + std::to_string(l) + ".";
        f32(p + "attn_norm.weight", {E}, L.attn_norm);
        f32(p + "ffn_norm.weight", {E}, L.ffn_norm);
        for (int lin = 0; lin < kNumLinears; lin++) {
            const LinearShape s = linear_shape(c, lin);
            const QuantLinear &q = L.lin[lin];
            const std::string base = p + qfile::linear_name(lin);
            FQ_CHECK(static_cast<int64_t>(q.w.size()) == s.out * s.in, FQ_STATUS_INVALID_ARGUMENT,
                     "%s: weight has %zu values, expected %lld", base.c_str(), q.w.size(), (long long)(s.out * s.in));
            FQ_CHECK(static_cast<int64_t>(q.scale.size()) == s.out, FQ_STATUS_INVALID_ARGUMENT,
                     "%s: %zu weight scales, expected %lld", base.c_str(), q.scale.size(), (long long)s.out);
            FQ_CHECK(bits > 4 || s.in % 2 == 0, FQ_STATUS_UNSUPPORTED,
                     "%s: rows of %lld weights cannot be packed two codes per byte", base.c_str(), (long long)s.in);
            OutTensor t;
            t.name = base + ".qweight";
            t.type = qfile::kTypeI8;
            t.dims = {static_cast<uint64_t>(bits <= 4 ? s.in / 2 : s.in), static_cast<uint64_t>(s.out)};
            t.n_bytes = t.dims[0] * t.dims[1];
            t.codes = &q;
            t.rows = s.out;
            t.cols = s.in;
            out.push_back(std::move(t));
            f32(base + ".scale", {static_cast<uint64_t>(s.out)}, q.scale);
            if (!q.bias.empty()) {
                // The forward adds biases only after q/k/v.
                FQ_CHECK(lin <= kLinV, FQ_STATUS_UNSUPPORTED, "%s has a bias, which the format does not carry",
                         base.c_str());
                f32(base + ".bias", {static_cast<uint64_t>(s.out)}, q.bias);
            }
        }
        const LayerTransforms &t = L.online;
        const KronTransform *krons[3] = {&t.pa, &t.pug, &t.pd};
        const int64_t widths[3] = {c.n_embd, c.n_embd, c.n_ff};
        for (int k = 0; k < 3; k++) {
            if (!krons[k]->present()) continue;
            const int n[2] = {krons[k]->n1, krons[k]->n2};
            FQ_CHECK(int64_t{n[0]} * n[1] == widths[k], FQ_STATUS_INVALID_ARGUMENT,
                     "%s%s: factors %d x %d do not cover %lld channels", p.c_str(), qfile::kKronNames[k], n[0], n[1],
                     (long long)widths[k]);
            for (int side = 0; side < 2; side++) {
                const uint64_t d = static_cast<uint64_t>(n[side]);
                f32(p + qfile::kKronNames[k] + (side == 0 ? ".left" : ".right"), {d, d},
                    *kron_factor(*krons[k], side));
            }
        }
        if (t.ph.present()) {
            FQ_CHECK(t.ph.k == c.n_head, FQ_STATUS_INVALID_ARGUMENT, "layer %d: P_h is %d x %d for %d heads", l,
                     t.ph.k, t.ph.k, c.n_head);
            f32(p + "flat.ph", {H, H}, t.ph.m);
        }
        if (t.pk.present()) {
            FQ_CHECK(t.pk.k == c.head_dim, FQ_STATUS_INVALID_ARGUMENT, "layer %d: P_k is %d x %d for head_dim %d", l,
                     t.pk.k, t.pk.k, c.head_dim);
            f32(p + "flat.pk", {D, D}, t.pk.m);
            f32(p + "flat.pk_inv_t", {D, D}, t.pk.m_inv_t);
        }
        FQ_CHECK(t.lac == qm.layers[0].online.lac, FQ_STATUS_UNSUPPORTED,
                 "layer %d disagrees with layer 0 on activation clipping (LAC)", l);
        if (t.lac) {
            std::vector<float> v;
            for (int lin = 0; lin < kNumLinears; lin++) v.insert(v.end(), t.lac_lin[lin].begin(), t.lac_lin[lin].end());
            v.insert(v.end(), t.lac_k.begin(), t.lac_k.end());
            v.insert(v.end(), t.lac_v.begin(), t.lac_v.end());
            lac_store.push_back(std::move(v));
            f32(p + "flat.lac", {static_cast<uint64_t>(qfile::kLacValues)}, lac_store.back());
        }
    }
}

// The base model's non-layer tensors, from its file as they are. The file must still be the one the model was loaded
// from: its size and the set of those tensors are checked against what the model holds.
std::vector<OutTensor> plan_base_tensors(const gguf::File &src, const Model &base) {
    FQ_CHECK(static_cast<int64_t>(src.file_size()) == base.source.file_bytes, FQ_STATUS_IO,
             "%s has changed since the model was loaded from it (%llu bytes, then %lld)", src.path().c_str(),
             (unsigned long long)src.file_size(), (long long)base.source.file_bytes);
    FQ_CHECK((src.find_tensor("output.weight") != nullptr) == !base.config.tied_embeddings &&
                 (src.find_tensor("rope_freqs.weight") != nullptr) == !base.weights.rope_freq_factors.empty() &&
                 src.find_tensor("token_embd.weight") && src.find_tensor("output_norm.weight"),
             FQ_STATUS_IO, "%s has changed since the model was loaded from it (its non-layer tensors differ)",
             src.path().c_str());
    std::vector<OutTensor> out;
    for (const gguf::TensorInfo &ti : src.tensors()) {
        if (!qfile::is_base_tensor(ti.name)) continue;
        FQ_CHECK(gguf::type_traits(ti.type, nullptr, nullptr), FQ_STATUS_UNSUPPORTED,
                 "%s: tensor '%s' has an unknown type %s", src.path().c_str(), ti.name.c_str(),
                 gguf::tensor_type_name(ti.type));
        OutTensor t;
        t.name = ti.name;
        t.dims = ti.dims;
        t.type = ti.type;
        t.n_bytes = ti.n_bytes;
        t.raw = src.tensor_data(ti);
        out.push_back(std::move(t));
    }
    return out;
}

using KeyValues = std::vector<std::pair<std::string, gguf::Value>>;

// The base's metadata without any earlier flatquant.* keys, then this file's.
KeyValues plan_metadata(const gguf::File &src, const QuantizedModel &qm, const std::string &base_fingerprint) {
    KeyValues kv;
    for (const gguf::KeyValue &e : src.metadata())
        if (e.key.rfind(qfile::kKeyPrefix, 0) != 0) kv.emplace_back(e.key, e.value);
    kv.emplace_back(qfile::kKeyVersion, u32_value(kQuantizedFileVersion));
    kv.emplace_back(qfile::kKeyQuant, str_value(bits_name(qm.scheme.bits)));
    kv.emplace_back(qfile::kKeyMethod, str_value(method_name(qm.scheme.method)));
    kv.emplace_back(qfile::kKeyWeightQuantizer, str_value(weight_quantizer_name(qm.scheme.weights)));
    kv.emplace_back(qfile::kKeyBaseFingerprint, str_value(base_fingerprint));
    kv.emplace_back(qfile::kKeyLac, bool_value(!qm.layers.empty() && qm.layers[0].online.lac));
    return kv;
}

// The whole GGUF image: header, key-values, tensor directory, then the data at the planned aligned offsets.
void write_gguf(Sink &out, const KeyValues &kv, const std::vector<OutTensor> &tensors, uint64_t align,
                uint64_t data_bytes, int weight_bits, const Progress &progress) {
    out.scalar<uint32_t>(0x46554747u);  // "GGUF"
    out.scalar<uint32_t>(3);
    out.scalar<uint64_t>(tensors.size());
    out.scalar<uint64_t>(kv.size());
    for (const auto &[key, value] : kv) {
        out.str(key);
        out.scalar<uint32_t>(static_cast<uint32_t>(value.type));
        put_value(out, value);
    }
    for (const OutTensor &t : tensors) {
        out.str(t.name);
        out.scalar<uint32_t>(static_cast<uint32_t>(t.dims.size()));
        for (uint64_t d : t.dims) out.scalar<uint64_t>(d);
        out.scalar<uint32_t>(t.type);
        out.scalar<uint64_t>(t.offset);
    }
    out.zeros((align - out.position() % align) % align);
    const uint64_t data_start = out.position();
    const int64_t n_steps = static_cast<int64_t>(tensors.size());
    for (size_t i = 0; i < tensors.size(); i++) {
        const OutTensor &t = tensors[i];
        progress.step("save", static_cast<int64_t>(i), n_steps);
        out.zeros(data_start + t.offset - out.position());
        if (t.codes) {
            const std::vector<uint8_t> bytes = encode_codes(t, weight_bits);
            out.bytes(bytes.data(), bytes.size());
        } else {
            out.bytes(t.raw, static_cast<size_t>(t.n_bytes));
        }
    }
    out.zeros(data_start + data_bytes - out.position());
    out.flush();
    progress.step("save", n_steps, n_steps);
}

}  // namespace

namespace qfile {

const char *linear_name(int lin) {
    static const char *const kNames[kNumLinears] = {"attn_q",  "attn_k",   "attn_v",  "attn_output",
                                                    "ffn_up", "ffn_gate", "ffn_down"};
    return lin >= 0 && lin < kNumLinears ? kNames[lin] : "?";
}

bool is_base_tensor(const std::string &name) {
    return name == "token_embd.weight" || name == "output_norm.weight" || name == "output.weight" ||
           name == "rope_freqs.weight";
}

}  // namespace qfile

bool is_quantized_model_file(const gguf::File &f) { return f.find(qfile::kKeyVersion) != nullptr; }

void save_quantized_model_file(const QuantizedModel &qm, const std::string &path, const Progress &progress) {
    FQ_CHECK(!path.empty(), FQ_STATUS_INVALID_ARGUMENT, "the quantized-model path is empty");
    FQ_CHECK(qm.base != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the quantized model has no base model");
    FQ_CHECK(qm.weights_quantized, FQ_STATUS_INVALID_ARGUMENT, "the model's weights are not quantized yet");
    const QuantBits &bits = qm.scheme.bits;
    FQ_CHECK(bits.w >= 2 && bits.w <= 8, FQ_STATUS_UNSUPPORTED,
             "%s keeps %d-bit weights: a quantized-model file stores weights of 2 to 8 bits",
             bits_name(bits).c_str(), bits.w);
    FQ_CHECK(bits.k == bits.v, FQ_STATUS_UNSUPPORTED, "K and V widths %d and %d differ: %s is not a name the file can "
             "carry", bits.k, bits.v, bits_name(bits).c_str());
    const Model &base = *qm.base;
    FQ_CHECK(static_cast<int32_t>(qm.layers.size()) == base.config.n_layer, FQ_STATUS_INVALID_ARGUMENT,
             "the quantized model has %zu layers, its base %d", qm.layers.size(), base.config.n_layer);

    const std::unique_ptr<gguf::File> src = gguf::File::open(base.source.path);
    // A base that is itself a quantized-model file passes on the fingerprint of the full-precision original.
    const std::string fingerprint =
        is_quantized_model_file(*src) ? src->require_string(qfile::kKeyBaseFingerprint) : base.fingerprint();
    std::vector<OutTensor> tensors = plan_base_tensors(*src, base);
    std::deque<std::vector<float>> lac_store;
    plan_layers(qm, tensors, lac_store);
    const KeyValues kv = plan_metadata(*src, qm, fingerprint);
    const uint64_t align = src->alignment();
    uint64_t data_bytes = 0;
    for (OutTensor &t : tensors) {
        t.offset = data_bytes;
        data_bytes += (t.n_bytes + align - 1) / align * align;
    }

    progress.step("save", 0, static_cast<int64_t>(tensors.size()));
    AtomicFile file(path);
    Sink out(file);
    write_gguf(out, kv, tensors, align, data_bytes, bits.w, progress);
    file.commit();
}

}  // namespace fq::quant
