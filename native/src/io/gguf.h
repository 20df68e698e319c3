// GGUF reader (versions 2 and 3): header, metadata of every value type, tensor directory, and dequantization of
// tensor data to FP32. The file is memory-mapped read-only; every offset and size read from it is validated against
// the file size before use, so a truncated, corrupt or absurdly sized file gives FQ_STATUS_MODEL_FORMAT, never a
// crash or a huge allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fq::gguf {

// Metadata value types, numbered as in the GGUF specification.
enum class ValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
    ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// Tensor element types, numbered as in ggml (only the ones we read are listed).
enum class TensorType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11, Q4_K = 12,
    Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

// "Q4_K" (static storage), or "type<N>" for unknown numbers (a per-thread buffer, valid until the next call).
const char *tensor_type_name(uint32_t type);

// One metadata value. Scalars are widened: integers to int64/uint64, floats to double. Arrays hold their
// elements in `array` (strings in `str`), with `array_type` giving the element type.
struct Value {
    ValueType type = ValueType::UINT8;
    uint64_t u = 0;       // unsigned integers and BOOL (0/1) (also set for signed ones >= 0)
    int64_t i = 0;        // signed integers (also set for unsigned ones that fit)
    double f = 0;         // FLOAT32 / FLOAT64
    std::string str;      // STRING
    ValueType array_type = ValueType::UINT8;
    std::vector<Value> array;  // ARRAY

    bool is_integer() const;  // any integer type, BOOL included
    bool is_float() const;
};

struct KeyValue {
    std::string key;
    Value value;
};

struct TensorInfo {
    std::string name;
    std::vector<uint64_t> dims;  // ggml order: dims[0] is the innermost (contiguous) dimension
    uint32_t type = 0;           // TensorType value
    uint64_t offset = 0;         // from the start of the data section
    uint64_t n_elements = 0;     // product of dims (validated not to overflow int64)
    uint64_t n_bytes = 0;        // size of the stored data; 0 for a type of unknown size (see type_traits)
};

class File {
  public:
    // Opens and validates the whole header and tensor directory. Throws fq::Error:
    // NOT_FOUND (no such file), IO (cannot open/map), MODEL_FORMAT (bad magic, unsupported version, truncated,
    // inconsistent sizes, duplicate names, unknown value types, arrays nested deeper than 8, n_dims outside 1..4,
    // a row not a multiple of the type's block, tensor data misaligned or outside the file). Tensors of an unknown
    // type are accepted (only their offset is checked); reading them gives UNSUPPORTED.
    static std::unique_ptr<File> open(const std::string &path);
    // Parses a GGUF image already in memory (fuzzing, tests). Nothing is copied: data[size] must stay valid and
    // unchanged while the File lives. `name` stands in for the path in messages. Same errors as open(), less
    // NOT_FOUND/IO.
    static std::unique_ptr<File> open_memory(const void *data, uint64_t size, const std::string &name = "<memory>");
    ~File();
    File(const File &) = delete;
    File &operator=(const File &) = delete;

    const std::string &path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data section

    const std::vector<KeyValue> &metadata() const { return kv_; }
    const Value *find(std::string_view key) const;  // nullptr when absent

    // Typed getters. Throw MODEL_FORMAT when the key exists with an incompatible type; return the fallback when
    // the key is absent. require_* throw MODEL_FORMAT naming the key when it is absent.
    std::string get_string(std::string_view key, const std::string &fallback = {}) const;
    int64_t get_int(std::string_view key, int64_t fallback) const;
    double get_float(std::string_view key, double fallback) const;
    bool get_bool(std::string_view key, bool fallback) const;
    int64_t require_int(std::string_view key) const;
    std::string require_string(std::string_view key) const;
    // Arrays: throw MODEL_FORMAT when the key is absent or of another element type.
    std::vector<std::string> get_string_array(std::string_view key) const;
    std::vector<float> get_float_array(std::string_view key) const;     // FLOAT32/FLOAT64 elements
    std::vector<int32_t> get_int32_array(std::string_view key) const;   // any integer elements that fit

    const std::vector<TensorInfo> &tensors() const { return tensors_; }
    const TensorInfo *find_tensor(std::string_view name) const;  // nullptr when absent

    // Raw stored bytes of a tensor (inside the mapping, valid while this File lives).
    const uint8_t *tensor_data(const TensorInfo &t) const;

    // Dequantizes the whole tensor to FP32 into out[n_elements], in ggml element order. Throws UNSUPPORTED for
    // tensor types this reader cannot dequantize (check can_dequantize(t.type) before allocating `out`: for a type
    // of unknown size, n_elements is not bounded by the file size).
    void read_f32(const TensorInfo &t, float *out) const;

  private:
    File() = default;
    std::string path_;
    uint32_t version_ = 0;
    uint64_t size_ = 0;
    uint32_t alignment_ = 32;
    const uint8_t *base_ = nullptr;   // mapping of the whole file (or the caller's buffer for open_memory)
    bool owns_mapping_ = false;       // base_ is our mmap and is unmapped by the destructor
    uint64_t data_offset_ = 0;        // start of the tensor data section
    std::vector<KeyValue> kv_;
    std::vector<TensorInfo> tensors_;
    friend class Parser;
};

// Dequantization of one row of `n` elements of the given type (n must be a multiple of the type's block size).
// Exposed for tests and for the GPU upload path.
void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
// Block size (elements) and bytes per block of a type; returns false for unknown types. Every ggml type with a
// known storage size is listed, including those dequantize_row cannot decode.
bool type_traits(uint32_t type, int64_t *block_elems, int64_t *block_bytes);
// True when dequantize_row / File::read_f32 decode this type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool can_dequantize(uint32_t type);

}  // namespace fq::gguf
