// A small header-only GGUF writer for tests: metadata of every value type (nested arrays included) and tensors
// stored as F32, F16 or raw pre-encoded blocks of any ggml type. It is written from the format description, not
// from the reader, so tests that read its files check the reader against an independent encoder.
//
// Typical use (a tiny LLaMA):
//   fq::test::GgufWriter w;
//   w.set("general.architecture", GgufWriter::str("llama"));
//   w.set("llama.block_count", GgufWriter::u32(1));
//   w.set("tokenizer.ggml.tokens", GgufWriter::str_array({"<unk>", "<s>", "</s>"}));
//   w.add_tensor_f32("token_embd.weight", {n_embd, n_vocab}, embd);   // dims in ggml order: dims[0] contiguous
//   w.write_file(path);                                                // or w.bytes()
//
// Layout written: "GGUF", version (3 unless set_version), n_tensors, n_kv, the key-values in insertion order,
// the tensor infos in insertion order, zero padding to the alignment, then each tensor's data at an aligned
// offset. Errors in use (bad sizes, duplicate names, unwritable file) throw std::runtime_error.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fq::test {

class GgufWriter {
  public:
    // GGUF metadata value type numbers (the specification's gguf_type).
    enum Type : uint32_t {
        UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
        ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
    };
    // ggml tensor type numbers used by add_tensor_f32/f16 (any other number may be passed to add_tensor_raw).
    static constexpr uint32_t kTensorF32 = 0, kTensorF16 = 1;

    // One encoded metadata value: its type and its payload bytes (without the type tag).
    struct Value {
        uint32_t type = UINT8;
        std::vector<uint8_t> payload;
    };

    static Value u8(uint8_t v) { return scalar(UINT8, v); }
    static Value i8(int8_t v) { return scalar(INT8, v); }
    static Value u16(uint16_t v) { return scalar(UINT16, v); }
    static Value i16(int16_t v) { return scalar(INT16, v); }
    static Value u32(uint32_t v) { return scalar(UINT32, v); }
    static Value i32(int32_t v) { return scalar(INT32, v); }
    static Value u64(uint64_t v) { return scalar(UINT64, v); }
    static Value i64(int64_t v) { return scalar(INT64, v); }
    static Value f32(float v) { return scalar(FLOAT32, v); }
    static Value f64(double v) { return scalar(FLOAT64, v); }
    static Value boolean(bool v) { return scalar(BOOL, uint8_t(v ? 1 : 0)); }
    static Value str(const std::string &s) {
        Value v{STRING, {}};
        put_string(v.payload, s);
        return v;
    }
    // An array whose elements all have type elem_type (nested arrays: elem_type ARRAY, elements from array()).
    static Value array(uint32_t elem_type, const std::vector<Value> &elems) {
        Value v{ARRAY, {}};
        put(v.payload, elem_type);
        put(v.payload, uint64_t(elems.size()));
        for (const Value &e : elems) {
            if (e.type != elem_type) throw std::runtime_error("GgufWriter::array: element of another type");
            v.payload.insert(v.payload.end(), e.payload.begin(), e.payload.end());
        }
        return v;
    }
    static Value str_array(const std::vector<std::string> &xs) { return array_of(STRING, xs, &str); }
    static Value f32_array(const std::vector<float> &xs) { return array_of(FLOAT32, xs, &f32); }
    static Value i32_array(const std::vector<int32_t> &xs) { return array_of(INT32, xs, &i32); }
    static Value u32_array(const std::vector<uint32_t> &xs) { return array_of(UINT32, xs, &u32); }

    void set_version(uint32_t version) { version_ = version; }  // 2 and 3 share the layout
    // Sets the alignment of the data section and tensor offsets, and records it as general.alignment (UINT32).
    void set_alignment(uint32_t alignment) {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            throw std::runtime_error("GgufWriter: alignment must be a power of two");
        alignment_ = alignment;
        set("general.alignment", u32(alignment));
    }

    // Adds a key, or replaces the value of an existing one in place.
    void set(const std::string &key, Value v) {
        for (auto &kv : kv_)
            if (kv.first == key) {
                kv.second = std::move(v);
                return;
            }
        kv_.emplace_back(key, std::move(v));
    }

    // dims in ggml order (dims[0] is the contiguous one); data holds the product of dims values.
    void add_tensor_f32(const std::string &name, const std::vector<uint64_t> &dims, const std::vector<float> &data) {
        check_count(name, dims, data.size());
        std::vector<uint8_t> bytes(data.size() * 4);
        if (!data.empty()) std::memcpy(bytes.data(), data.data(), bytes.size());
        add_tensor_raw(name, dims, kTensorF32, std::move(bytes));
    }
    // Stores F16, rounding each value to the nearest half (ties to even; overflow to infinity).
    void add_tensor_f16(const std::string &name, const std::vector<uint64_t> &dims, const std::vector<float> &data) {
        check_count(name, dims, data.size());
        std::vector<uint8_t> bytes(data.size() * 2);
        for (size_t k = 0; k < data.size(); ++k) {
            const uint16_t h = f32_to_f16(data[k]);
            std::memcpy(bytes.data() + 2 * k, &h, 2);
        }
        add_tensor_raw(name, dims, kTensorF16, std::move(bytes));
    }
    // Pre-encoded data of any ggml type (blocks laid out as ggml stores them); the byte count is not checked.
    void add_tensor_raw(const std::string &name, const std::vector<uint64_t> &dims, uint32_t ggml_type,
                        std::vector<uint8_t> bytes) {
        for (const Tensor &t : tensors_)
            if (t.name == name) throw std::runtime_error("GgufWriter: duplicate tensor " + name);
        tensors_.push_back(Tensor{name, dims, ggml_type, std::move(bytes)});
    }

    // The whole file image.
    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> out;
        put(out, uint32_t(0x46554747u));  // "GGUF"
        put(out, version_);
        put(out, uint64_t(tensors_.size()));
        put(out, uint64_t(kv_.size()));
        for (const auto &kv : kv_) {
            put_string(out, kv.first);
            put(out, kv.second.type);
            out.insert(out.end(), kv.second.payload.begin(), kv.second.payload.end());
        }
        uint64_t offset = 0;  // from the start of the data section
        for (const Tensor &t : tensors_) {
            put_string(out, t.name);
            put(out, uint32_t(t.dims.size()));
            for (uint64_t d : t.dims) put(out, d);
            put(out, t.type);
            put(out, offset);
            offset = pad(offset + t.data.size());
        }
        out.resize(pad(out.size()), 0);
        for (const Tensor &t : tensors_) {
            out.insert(out.end(), t.data.begin(), t.data.end());
            out.resize(pad(out.size()), 0);
        }
        return out;
    }

    void write_file(const std::string &path) const {
        const std::vector<uint8_t> image = bytes();
        FILE *f = std::fopen(path.c_str(), "wb");
        if (!f) throw std::runtime_error("GgufWriter: cannot create " + path);
        const size_t n = std::fwrite(image.data(), 1, image.size(), f);
        const bool ok = n == image.size() && std::fclose(f) == 0;
        if (!ok) throw std::runtime_error("GgufWriter: cannot write " + path);
    }

    // IEEE float -> half, round to nearest even.
    static uint16_t f32_to_f16(float x) {
        uint32_t b;
        std::memcpy(&b, &x, 4);
        const uint16_t sign = uint16_t((b >> 16) & 0x8000u);
        const uint32_t abs = b & 0x7fffffffu;
        if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));  // Inf/NaN
        if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: overflow
        if (abs < 0x38800000u) {
            // Half subnormal (or zero): value / 2^-24, rounded to nearest even, is the mantissa.
            float a;
            std::memcpy(&a, &abs, 4);
            return uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)));
        }
        const uint32_t mant_round = abs + 0xfffu + ((abs >> 13) & 1u);  // ties to even on the 13 dropped bits
        return uint16_t(sign | uint16_t((mant_round - 0x38000000u) >> 13));
    }

  private:
    struct Tensor {
        std::string name;
        std::vector<uint64_t> dims;
        uint32_t type;
        std::vector<uint8_t> data;
    };

    template <class T> static void put(std::vector<uint8_t> &out, T v) {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));  // GGUF is little-endian, as is every host this project targets
        out.insert(out.end(), b, b + sizeof(T));
    }
    static void put_string(std::vector<uint8_t> &out, const std::string &s) {
        put(out, uint64_t(s.size()));
        out.insert(out.end(), s.begin(), s.end());
    }
    template <class T> static Value scalar(uint32_t type, T v) {
        Value out{type, {}};
        put(out.payload, v);
        return out;
    }
    template <class T, class F> static Value array_of(uint32_t type, const std::vector<T> &xs, F make) {
        std::vector<Value> elems;
        elems.reserve(xs.size());
        for (const T &x : xs) elems.push_back(make(x));
        return array(type, elems);
    }
    static void check_count(const std::string &name, const std::vector<uint64_t> &dims, size_t n) {
        uint64_t prod = 1;
        for (uint64_t d : dims) prod *= d;
        if (prod != n) throw std::runtime_error("GgufWriter: tensor " + name + " has dims and data of different sizes");
    }
    uint64_t pad(uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }

    uint32_t version_ = 3;
    uint32_t alignment_ = 32;
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<Tensor> tensors_;
};

}  // namespace fq::test
