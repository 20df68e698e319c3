// Reading and validating calibration artifacts (the format is described in artifact.h).
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "core/error.h"
#include "quant/artifact.h"
#include "quant/artifact_json.h"

namespace fq::quant {

namespace {

constexpr const char *kFormat = "flatquant-calibration";
constexpr int64_t kFormatVersion = 1;
constexpr int64_t kMaxHeaderBytes = 64ll << 20;

const char *const kKron[3] = {"self_attn.ln_trans", "mlp.up_gate_trans", "mlp.down_trans"};
const char *const kSingle[3] = {"self_attn.o_trans", "self_attn.vcache_trans", "self_attn.kcache_trans"};
const char *const kLinPrefix[kNumLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.up_proj",      "mlp.gate_proj",
                                             "mlp.down_proj"};

int64_t dtype_bytes(const std::string &d) { return d == "F32" ? 4 : d == "F64" ? 8 : d == "I8" ? 1 : 0; }

std::string shape_str(const std::vector<int64_t> &s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); i++) out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
}

class Reader {
  public:
    explicit Reader(const std::string &path) : path_(path) {
        f_.open(path, std::ios::binary);
        if (!f_) {
            struct stat st;
            FQ_CHECK(::stat(path.c_str(), &st) == 0, FQ_STATUS_NOT_FOUND, "artifact %s: no such file", path.c_str());
            FQ_FAIL(FQ_STATUS_IO, "artifact %s: cannot open: %s", path.c_str(), std::strerror(errno));
        }
        f_.seekg(0, std::ios::end);
        const int64_t size = static_cast<int64_t>(f_.tellg());
        FQ_CHECK(size >= 8, FQ_STATUS_MODEL_FORMAT, "artifact %s is truncated: %lld bytes, less than the header length",
                 path.c_str(), (long long)size);
        uint8_t len[8];
        read_at(0, len, 8);
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = (n << 8) | len[i];
        FQ_CHECK(n <= static_cast<uint64_t>(kMaxHeaderBytes), FQ_STATUS_MODEL_FORMAT,
                 "artifact %s: header length %llu is implausible", path.c_str(), (unsigned long long)n);
        FQ_CHECK(static_cast<int64_t>(n) <= size - 8, FQ_STATUS_MODEL_FORMAT,
                 "artifact %s is truncated: the header needs %llu bytes, %lld remain", path.c_str(),
                 (unsigned long long)n, (long long)(size - 8));
        std::string header(n, '\0');
        read_at(8, header.data(), static_cast<int64_t>(n));
        data_start_ = 8 + static_cast<int64_t>(n);
        const int64_t data_size = size - data_start_;
        const json::Value root = json::parse(header, "artifact " + path);
        FQ_CHECK(root.kind == json::Value::Object, FQ_STATUS_MODEL_FORMAT, "artifact %s: the header is not an object",
                 path.c_str());
        for (const auto &[name, v] : root.obj) {
            if (name == "__metadata__") {
                FQ_CHECK(v.kind == json::Value::Object, FQ_STATUS_MODEL_FORMAT, "artifact %s: bad __metadata__",
                         path.c_str());
                for (const auto &[k, s] : v.obj) {
                    FQ_CHECK(s.kind == json::Value::String, FQ_STATUS_MODEL_FORMAT,
                             "artifact %s: metadata %s is not a string", path.c_str(), k.c_str());
                    meta_[k] = s.s;
                }
                continue;
            }
            entries_[name] = entry(name, v);
        }
        // The data ranges must tile the data section exactly.
        std::vector<std::pair<int64_t, int64_t>> ranges;
        for (const auto &kv : entries_) ranges.emplace_back(kv.second.begin, kv.second.end);
        std::sort(ranges.begin(), ranges.end());
        int64_t at = 0;
        for (const auto &rg : ranges) {
            FQ_CHECK(rg.first == at, FQ_STATUS_MODEL_FORMAT,
                     "artifact %s: tensor data ranges overlap or leave a gap at %lld", path.c_str(), (long long)at);
            at = rg.second;
        }
        FQ_CHECK(at <= data_size, FQ_STATUS_MODEL_FORMAT,
                 "artifact %s is truncated: the tensors need %lld data bytes, the file has %lld", path.c_str(),
                 (long long)at, (long long)data_size);
        FQ_CHECK(at == data_size, FQ_STATUS_MODEL_FORMAT, "artifact %s has %lld stray bytes after the tensors",
                 path.c_str(), (long long)(data_size - at));
    }

    const std::string &path() const { return path_; }

    const std::string &meta(const std::string &key) const {
        auto it = meta_.find(key);
        FQ_CHECK(it != meta_.end(), FQ_STATUS_MODEL_FORMAT, "artifact %s: metadata %s is missing", path_.c_str(),
                 key.c_str());
        return it->second;
    }
    int64_t meta_int(const std::string &key, int64_t lo, int64_t hi) const {
        const std::string &s = meta(key);
        char *end = nullptr;
        errno = 0;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        FQ_CHECK(!s.empty() && end && *end == '\0' && errno == 0 && v >= lo && v <= hi, FQ_STATUS_MODEL_FORMAT,
                 "artifact %s: metadata %s = '%s' is not an integer in [%lld, %lld]", path_.c_str(), key.c_str(),
                 s.c_str(), (long long)lo, (long long)hi);
        return v;
    }
    uint64_t meta_u64(const std::string &key) const {
        const std::string &s = meta(key);
        char *end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
        FQ_CHECK(!s.empty() && s[0] != '-' && end && *end == '\0' && errno == 0, FQ_STATUS_MODEL_FORMAT,
                 "artifact %s: metadata %s = '%s' is not an unsigned integer", path_.c_str(), key.c_str(), s.c_str());
        return v;
    }
    double meta_double(const std::string &key) const {
        const std::string &s = meta(key);
        char *end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        FQ_CHECK(!s.empty() && end && *end == '\0' && std::isfinite(v), FQ_STATUS_MODEL_FORMAT,
                 "artifact %s: metadata %s = '%s' is not a number", path_.c_str(), key.c_str(), s.c_str());
        return v;
    }
    bool meta_bool(const std::string &key) const { return meta_int(key, 0, 1) != 0; }

    bool has(const std::string &name) const { return entries_.count(name) != 0; }
    std::vector<int64_t> shape(const std::string &name) const { return get(name).shape; }

    template <typename T>
    std::vector<T> read(const std::string &name, const char *dtype, const std::vector<int64_t> &shape) {
        Entry &e = get(name);
        FQ_CHECK(e.dtype == dtype, FQ_STATUS_MODEL_FORMAT, "artifact %s: tensor %s is %s, expected %s", path_.c_str(),
                 name.c_str(), e.dtype.c_str(), dtype);
        FQ_CHECK(e.shape == shape, FQ_STATUS_MODEL_FORMAT, "artifact %s: tensor %s has shape %s, expected %s",
                 path_.c_str(), name.c_str(), shape_str(e.shape).c_str(), shape_str(shape).c_str());
        std::vector<T> v(static_cast<size_t>((e.end - e.begin) / static_cast<int64_t>(sizeof(T))));
        read_at(data_start_ + e.begin, v.data(), e.end - e.begin);
        e.used = true;
        return v;
    }

    void check_all_used() const {
        for (const auto &kv : entries_)
            FQ_CHECK(kv.second.used, FQ_STATUS_MODEL_FORMAT, "artifact %s: unexpected tensor %s", path_.c_str(),
                     kv.first.c_str());
    }

  private:
    struct Entry {
        std::string dtype;
        std::vector<int64_t> shape;
        int64_t begin = 0, end = 0;
        bool used = false;
    };

    Entry &get(const std::string &name) {
        auto it = entries_.find(name);
        FQ_CHECK(it != entries_.end(), FQ_STATUS_MODEL_FORMAT, "artifact %s: tensor %s is missing", path_.c_str(),
                 name.c_str());
        return it->second;
    }
    const Entry &get(const std::string &name) const { return const_cast<Reader *>(this)->get(name); }

    Entry entry(const std::string &name, const json::Value &v) const {
        auto bad = [&](const char *why) {
            FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "artifact %s: tensor %s: %s", path_.c_str(), name.c_str(), why);
        };
        if (v.kind != json::Value::Object || v.obj.size() != 3) bad("expected {dtype, shape, data_offsets}");
        const json::Value *dt = v.find("dtype"), *sh = v.find("shape"), *off = v.find("data_offsets");
        if (!dt || !sh || !off || dt->kind != json::Value::String || sh->kind != json::Value::Array ||
            off->kind != json::Value::Array || off->arr.size() != 2)
            bad("expected {dtype, shape, data_offsets}");
        Entry e;
        e.dtype = dt->s;
        const int64_t esize = dtype_bytes(e.dtype);
        if (esize == 0) bad("unsupported dtype (F32, F64 or I8 expected)");
        int64_t count = 1;
        for (const json::Value &d : sh->arr) {
            if (d.kind != json::Value::Int || d.i < 0 || d.i > (int64_t{1} << 40)) bad("bad shape");
            e.shape.push_back(d.i);
            count *= d.i;
            if (count > (int64_t{1} << 40)) bad("too many elements");
        }
        if (off->arr[0].kind != json::Value::Int || off->arr[1].kind != json::Value::Int) bad("bad data_offsets");
        e.begin = off->arr[0].i;
        e.end = off->arr[1].i;
        if (e.begin < 0 || e.end < e.begin || e.end - e.begin != count * esize)
            bad("data_offsets do not match the shape and dtype");
        return e;
    }

    void read_at(int64_t pos, void *dst, int64_t n) {
        f_.clear();
        f_.seekg(pos);
        f_.read(static_cast<char *>(dst), n);
        FQ_CHECK(f_.gcount() == n, FQ_STATUS_IO, "artifact %s: short read at byte %lld", path_.c_str(), (long long)pos);
    }

    std::string path_;
    std::ifstream f_;
    int64_t data_start_ = 0;
    std::map<std::string, std::string> meta_;
    std::map<std::string, Entry> entries_;
};

bool is_hex64(const std::string &s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

template <typename Fn>
auto as_format_error(const Reader &a, const char *key, Fn fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const Error &e) {
        FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "artifact %s: %s: %s", a.path().c_str(), key, e.what());
    }
}

void read_layer(Reader &a, const CalibrationResult &r, int32_t l, LayerTransforms &t,
                std::array<QuantizedWeight, kNumLinears> *codes) {
    const ModelDims &d = r.dims;
    ModelConfig c;
    c.n_embd = d.n_embd, c.n_ff = d.n_ff, c.n_head = d.n_head, c.n_head_kv = d.n_head_kv, c.head_dim = d.head_dim;
    const std::string p = "layers." + std::to_string(l) + ".";
    for (int i = 0; i < 3; i++) {
        const std::string b = p + kKron[i] + ".";
        if (!a.has(b + "matrix_left")) continue;
        KronTransform &k = i == 0 ? t.pa : i == 1 ? t.pug : t.pd;
        const std::vector<int64_t> sl = a.shape(b + "matrix_left"), sr = a.shape(b + "matrix_right");
        const int64_t width = i == 2 ? d.n_ff : d.n_embd;
        FQ_CHECK(sl.size() == 2 && sr.size() == 2 && sl[0] * sr[0] == width && sl[0] > 0, FQ_STATUS_MODEL_FORMAT,
                 "artifact %s: %s factors %s x %s do not cover %lld channels", a.path().c_str(), (p + kKron[i]).c_str(),
                 shape_str(sl).c_str(), shape_str(sr).c_str(), (long long)width);
        k.n1 = static_cast<int>(sl[0]);
        k.n2 = static_cast<int>(sr[0]);
        k.left = a.read<float>(b + "matrix_left", "F32", {k.n1, k.n1});
        k.right = a.read<float>(b + "matrix_right", "F32", {k.n2, k.n2});
        k.left_inv_t = a.read<float>(b + "matrix_left_inv", "F32", {k.n1, k.n1});
        k.right_inv_t = a.read<float>(b + "matrix_right_inv", "F32", {k.n2, k.n2});
        if (a.has(b + "diag_scale")) k.diag = a.read<float>(b + "diag_scale", "F32", {width});
    }
    for (int i = 0; i < 3; i++) {
        const std::string b = p + kSingle[i] + ".";
        if (!a.has(b + "matrix")) continue;
        SingleTransform &s = i == 0 ? t.ph : i == 1 ? t.pv : t.pk;
        s.k = i == 0 ? d.n_head : d.head_dim;
        s.m = a.read<float>(b + "matrix", "F32", {s.k, s.k});
        s.m_inv_t = a.read<float>(b + "matrix_inv_t", "F32", {s.k, s.k});
    }
    t.lac = a.has(p + kLinPrefix[0] + ".act_quantizer.clip_factor_a_max");
    auto pair = [&](const std::string &name) {
        const std::vector<float> hi = a.read<float>(name + "clip_factor_a_max", "F32", {1});
        const std::vector<float> lo = a.read<float>(name + "clip_factor_a_min", "F32", {1});
        return std::array<float, 2>{hi[0], lo[0]};
    };
    for (int i = 0; i < kNumLinears; i++) {
        const std::string b = p + kLinPrefix[i] + ".";
        const LinearShape s = linear_shape(c, i);
        if (a.has(b + "clip_factor_w_max")) {
            t.lwc[i] = a.read<float>(b + "clip_factor_w_max", "F32", {s.out, 1});
            const std::vector<float> lo = a.read<float>(b + "clip_factor_w_min", "F32", {s.out, 1});
            t.lwc[i].insert(t.lwc[i].end(), lo.begin(), lo.end());
        }
        if (t.lac) t.lac_lin[i] = pair(b + "act_quantizer.");
        if (codes) {
            QuantizedWeight &q = (*codes)[static_cast<size_t>(i)];
            q.codes = a.read<int8_t>(b + "qweight", "I8", {s.out, s.in});
            q.scale = a.read<float>(b + "wscale", "F32", {s.out});
        }
    }
    if (t.lac) {
        t.lac_k = pair(p + "self_attn.k_cache_quantizer.");
        t.lac_v = pair(p + "self_attn.v_cache_quantizer.");
    }
}

}  // namespace

CalibrationResult read_artifact(const std::string &path) {
    Reader a(path);
    FQ_CHECK(a.meta("format") == kFormat, FQ_STATUS_MODEL_FORMAT,
             "%s is not a FlatQuant calibration artifact (format '%s')", path.c_str(), a.meta("format").c_str());
    const int64_t version = a.meta_int("format_version", 1, 1 << 30);
    FQ_CHECK(version <= kFormatVersion, FQ_STATUS_UNSUPPORTED,
             "artifact %s has format_version %lld; this build reads up to %lld", path.c_str(), (long long)version,
             (long long)kFormatVersion);
    CalibrationResult r;
    r.scheme.method = as_format_error(a, "metadata method", [&] { return parse_method(a.meta("method")); });
    r.scheme.weights = as_format_error(a, "metadata weight_quantizer",
                                       [&] { return parse_weight_quantizer(a.meta("weight_quantizer")); });
    r.scheme.bits.w = static_cast<int>(a.meta_int("w_bits", 2, 16));
    r.scheme.bits.a = static_cast<int>(a.meta_int("a_bits", 2, 16));
    r.scheme.bits.k = static_cast<int>(a.meta_int("k_bits", 2, 16));
    r.scheme.bits.v = static_cast<int>(a.meta_int("v_bits", 2, 16));
    as_format_error(a, "metadata bits", [&] { validate(r.scheme); return 0; });
    CalibOptions &o = r.options;
    o.nsamples = static_cast<int32_t>(a.meta_int("nsamples", 1, 1 << 20));
    o.seqlen = static_cast<int32_t>(a.meta_int("seqlen", 2, 1 << 20));
    o.batch = static_cast<int32_t>(a.meta_int("batch", 1, 1 << 20));
    o.epochs = static_cast<int32_t>(a.meta_int("epochs", 0, 100000));
    o.flat_lr = a.meta_double("flat_lr");
    o.diag_alpha = a.meta_double("diag_alpha");
    o.add_diag = a.meta_bool("add_diag");
    o.lwc = a.meta_bool("lwc");
    o.lac = a.meta_bool("lac");
    o.direct_inv = a.meta_bool("direct_inv");
    o.seed = a.meta_u64("seed");
    o.percdamp = a.meta_double("percdamp");
    o.gptq_blocksize = static_cast<int32_t>(a.meta_int("gptq_blocksize", 1, 4096));
    as_format_error(a, "metadata calibration options", [&] { validate(o); return 0; });
    r.data_sha256 = a.meta("data_sha256");
    r.data_tokens = a.meta_int("data_tokens", 0, int64_t{1} << 50);
    FQ_CHECK(r.data_sha256.empty() || is_hex64(r.data_sha256), FQ_STATUS_MODEL_FORMAT, "artifact %s: bad data_sha256",
             path.c_str());
    r.model_fingerprint = a.meta("model_fingerprint");
    FQ_CHECK(is_hex64(r.model_fingerprint), FQ_STATUS_MODEL_FORMAT, "artifact %s: bad model_fingerprint '%s'",
             path.c_str(), r.model_fingerprint.c_str());
    ModelDims &d = r.dims;
    d.n_layer = static_cast<int32_t>(a.meta_int("n_layer", 1, 4096));
    d.n_embd = static_cast<int32_t>(a.meta_int("n_embd", 1, 1 << 17));
    d.n_ff = static_cast<int32_t>(a.meta_int("n_ff", 1, 1 << 20));
    d.n_head = static_cast<int32_t>(a.meta_int("n_head", 1, 4096));
    d.n_head_kv = static_cast<int32_t>(a.meta_int("n_head_kv", 1, 4096));
    d.head_dim = static_cast<int32_t>(a.meta_int("head_dim", 1, 1 << 12));
    d.n_vocab = static_cast<int32_t>(a.meta_int("n_vocab", 1, 1 << 30));
    FQ_CHECK(d.n_head % d.n_head_kv == 0, FQ_STATUS_MODEL_FORMAT, "artifact %s: n_head %% n_head_kv != 0",
             path.c_str());
    const bool has_codes = a.has("layers.0." + std::string(kLinPrefix[0]) + ".qweight");
    r.layers.resize(static_cast<size_t>(d.n_layer));
    if (has_codes) r.gptq.resize(static_cast<size_t>(d.n_layer));
    for (int32_t l = 0; l < d.n_layer; l++) {
        read_layer(a, r, l, r.layers[static_cast<size_t>(l)], has_codes ? &r.gptq[static_cast<size_t>(l)] : nullptr);
    }
    if (a.has("calibration.epoch_mse")) {
        const std::vector<int64_t> s = a.shape("calibration.epoch_mse");
        FQ_CHECK(s.size() == 2 && s[0] == d.n_layer, FQ_STATUS_MODEL_FORMAT, "artifact %s: bad calibration.epoch_mse",
                 path.c_str());
        const std::vector<double> v = a.read<double>("calibration.epoch_mse", "F64", s);
        for (int64_t l = 0; l < s[0]; l++) r.epoch_mse.emplace_back(v.begin() + l * s[1], v.begin() + (l + 1) * s[1]);
    }
    a.check_all_used();
    as_format_error(a, "tensors", [&] { check_consistent(r); return 0; });
    return r;
}

CalibrationResult load_artifact(const std::string &path, const Model &model) {
    CalibrationResult r = read_artifact(path);
    const std::string &fp = model.fingerprint();
    FQ_CHECK(r.model_fingerprint == fp, FQ_STATUS_INVALID_ARGUMENT,
             "artifact %s was calibrated on the model with fingerprint %s, but this model (%s) has fingerprint %s",
             path.c_str(), r.model_fingerprint.c_str(), model.source.path.c_str(), fp.c_str());
    FQ_CHECK(r.dims == model_dims(model.config), FQ_STATUS_INVALID_ARGUMENT,
             "artifact %s was made for different model dimensions", path.c_str());
    return r;
}

}  // namespace fq::quant
