// GGUF reader: parsing and validation of the header and tensor directory, and the metadata getters. The block
// formats are decoded in gguf_dequant.cpp.
//
// Validation contract: every count, length and size read from the file is checked against the bytes that remain
// before anything is allocated or read, with overflow-checked arithmetic, so a corrupt file costs at most
// O(file size) memory and ends in fq::Error(MODEL_FORMAT).
#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/error.h"

namespace fq::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" read as a little-endian uint32
constexpr int kMaxDims = 4;               // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;         // nested arrays deeper than this are refused (bounded recursion)
// Bound on all metadata values together (array elements included). The byte checks alone would allow one Value
// (~100 bytes of memory) per byte of a u8 array; the largest real vocabularies (tokens, scores, types, merges)
// hold under 1M values.
constexpr uint64_t kMaxMetadataValues = uint64_t(1) << 22;
// Counts read from the file are only upper bounds until the entries parse, so reservations are capped by this.
constexpr uint64_t kMaxReserve = uint64_t(1) << 16;

size_t capped(uint64_t n) { return static_cast<size_t>(n < kMaxReserve ? n : kMaxReserve); }

struct TypeRow {
    uint32_t type;
    const char *name;
    int64_t block_elems;
    int64_t block_bytes;
    bool dequant;
};

// Storage sizes as in ggml's type_traits (ggml.c; Q8_1 is ggml's 36-byte block of two fp16 fields). Types absent
// here are "unknown": their data size cannot be derived, so only their offset is validated.
constexpr TypeRow kTypes[] = {
    {0, "F32", 1, 4, true},          {1, "F16", 1, 2, true},         {2, "Q4_0", 32, 18, true},
    {3, "Q4_1", 32, 20, true},       {6, "Q5_0", 32, 22, true},      {7, "Q5_1", 32, 24, true},
    {8, "Q8_0", 32, 34, true},       {9, "Q8_1", 32, 36, false},     {10, "Q2_K", 256, 84, true},
    {11, "Q3_K", 256, 110, true},    {12, "Q4_K", 256, 144, true},   {13, "Q5_K", 256, 176, true},
    {14, "Q6_K", 256, 210, true},    {15, "Q8_K", 256, 292, false},  {16, "IQ2_XXS", 256, 66, false},
    {17, "IQ2_XS", 256, 74, false},  {18, "IQ3_XXS", 256, 98, false}, {19, "IQ1_S", 256, 50, false},
    {20, "IQ4_NL", 32, 18, false},   {21, "IQ3_S", 256, 110, false}, {22, "IQ2_S", 256, 82, false},
    {23, "IQ4_XS", 256, 136, false}, {24, "I8", 1, 1, false},        {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},        {27, "I64", 1, 8, false},       {28, "F64", 1, 8, false},
    {29, "IQ1_M", 256, 56, false},   {30, "BF16", 1, 2, true},       {34, "TQ1_0", 256, 54, false},
    {35, "TQ2_0", 256, 66, false},   {39, "MXFP4", 32, 17, false},
};

const TypeRow *find_type(uint32_t type) {
    for (const TypeRow &r : kTypes)
        if (r.type == type) return &r;
    return nullptr;
}

const char *value_type_name(uint32_t t) {
    static const char *const names[] = {"UINT8",  "INT8",   "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
                                        "BOOL",   "STRING", "ARRAY",  "UINT64", "INT64", "FLOAT64"};
    return t < 13 ? names[t] : "unknown";
}

// Encoded size of a scalar value type; 0 for STRING/ARRAY/unknown.
uint64_t scalar_bytes(uint32_t t) {
    switch (static_cast<ValueType>(t)) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    default: return 0;
    }
}

}  // namespace

// Reads the file image front to back. Every read goes through need(), which refuses to pass the end.
class Parser {
  public:
    Parser(File &f, const uint8_t *p, uint64_t size) : f_(f), p_(p), size_(size) {}

    void parse();

  private:
    File &f_;
    const uint8_t *p_;
    uint64_t size_;
    uint64_t pos_ = 0;
    uint64_t n_values_ = 0;

    uint64_t remaining() const { return size_ - pos_; }
    void need(uint64_t n, const char *what, const std::string &ctx) {
        if (n > remaining())
            FQ_FAIL(FQ_STATUS_MODEL_FORMAT,
                    "%s: truncated GGUF: %s%s%s needs %llu bytes at offset %llu, file has %llu", f_.path_.c_str(),
                    what, ctx.empty() ? "" : " of ", ctx.c_str(), (unsigned long long)n, (unsigned long long)pos_,
                    (unsigned long long)size_);
    }
    template <class T> T rd(const char *what, const std::string &ctx) {
        need(sizeof(T), what, ctx);
        T v;
        std::memcpy(&v, p_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::string rd_string(const char *what, const std::string &ctx) {
        uint64_t len = rd<uint64_t>(what, ctx);
        need(len, what, ctx);
        std::string s(reinterpret_cast<const char *>(p_ + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }
    void count_values(uint64_t n, const std::string &key) {
        FQ_CHECK(n <= kMaxMetadataValues - n_values_, FQ_STATUS_MODEL_FORMAT,
                 "%s: metadata key '%s' brings the value count to more than %llu", f_.path_.c_str(), key.c_str(),
                 (unsigned long long)kMaxMetadataValues);
        n_values_ += n;
    }
    Value rd_value(uint32_t type, const std::string &key, int depth);
    void parse_tensor_info(uint64_t index);
    void finish_tensors();
};

Value Parser::rd_value(uint32_t type, const std::string &key, int depth) {
    Value v;
    v.type = static_cast<ValueType>(type);
    const char *what = "metadata value";
    switch (v.type) {
    case ValueType::UINT8: v.u = rd<uint8_t>(what, key); break;
    case ValueType::UINT16: v.u = rd<uint16_t>(what, key); break;
    case ValueType::UINT32: v.u = rd<uint32_t>(what, key); break;
    case ValueType::UINT64: v.u = rd<uint64_t>(what, key); break;
    case ValueType::BOOL: v.u = rd<uint8_t>(what, key) != 0; break;
    case ValueType::INT8: v.i = rd<int8_t>(what, key); break;
    case ValueType::INT16: v.i = rd<int16_t>(what, key); break;
    case ValueType::INT32: v.i = rd<int32_t>(what, key); break;
    case ValueType::INT64: v.i = rd<int64_t>(what, key); break;
    case ValueType::FLOAT32: v.f = rd<float>(what, key); break;
    case ValueType::FLOAT64: v.f = rd<double>(what, key); break;
    case ValueType::STRING: v.str = rd_string(what, key); break;
    case ValueType::ARRAY: {
        FQ_CHECK(depth < kMaxArrayDepth, FQ_STATUS_MODEL_FORMAT, "%s: metadata key '%s': arrays nested deeper than %d",
                 f_.path_.c_str(), key.c_str(), kMaxArrayDepth);
        uint32_t et = rd<uint32_t>("array element type", key);
        FQ_CHECK(et <= static_cast<uint32_t>(ValueType::FLOAT64), FQ_STATUS_MODEL_FORMAT,
                 "%s: metadata key '%s': unknown array element type %u", f_.path_.c_str(), key.c_str(), et);
        uint64_t n = rd<uint64_t>("array length", key);
        // Smallest encoding of one element: a scalar's size, a string's length field, an array's type + length.
        uint64_t min_bytes = scalar_bytes(et);
        if (et == static_cast<uint32_t>(ValueType::STRING)) min_bytes = 8;
        if (et == static_cast<uint32_t>(ValueType::ARRAY)) min_bytes = 12;
        FQ_CHECK(n <= remaining() / min_bytes, FQ_STATUS_MODEL_FORMAT,
                 "%s: metadata key '%s': array of %llu %s elements needs at least %llu bytes per element, only "
                 "%llu bytes remain at offset %llu",
                 f_.path_.c_str(), key.c_str(), (unsigned long long)n, value_type_name(et),
                 (unsigned long long)min_bytes, (unsigned long long)remaining(), (unsigned long long)pos_);
        count_values(n, key);
        v.array_type = static_cast<ValueType>(et);
        v.array.reserve(capped(n));
        for (uint64_t k = 0; k < n; ++k) v.array.push_back(rd_value(et, key, depth + 1));
        break;
    }
    default:
        FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "%s: metadata key '%s': unknown value type %u at offset %llu",
                f_.path_.c_str(), key.c_str(), type, (unsigned long long)(pos_ - 4));
    }
    // Widen across signedness where the value fits, so getters need not care how the writer typed an integer.
    if (v.is_integer() && v.type != ValueType::BOOL) {
        bool is_signed = v.type == ValueType::INT8 || v.type == ValueType::INT16 || v.type == ValueType::INT32 ||
                         v.type == ValueType::INT64;
        if (is_signed && v.i >= 0) v.u = static_cast<uint64_t>(v.i);
        if (!is_signed && v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            v.i = static_cast<int64_t>(v.u);
    }
    return v;
}

void Parser::parse_tensor_info(uint64_t index) {
    TensorInfo t;
    std::string ctx = "tensor #" + std::to_string(index);
    t.name = rd_string("tensor name", ctx);
    ctx = "tensor '" + t.name + "'";
    uint32_t n_dims = rd<uint32_t>("n_dims", ctx);
    FQ_CHECK(n_dims >= 1 && n_dims <= kMaxDims, FQ_STATUS_MODEL_FORMAT, "%s: %s has n_dims %u (must be 1..%d)",
             f_.path_.c_str(), ctx.c_str(), n_dims, kMaxDims);
    t.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t dim = rd<uint64_t>("dimension", ctx);
        const uint64_t max_elems = uint64_t(std::numeric_limits<int64_t>::max());
        uint64_t prod = 0;
        FQ_CHECK(!__builtin_mul_overflow(t.n_elements, dim, &prod) && dim <= max_elems && prod <= max_elems,
                 FQ_STATUS_MODEL_FORMAT, "%s: %s: dimension %u = %llu makes the element count overflow",
                 f_.path_.c_str(), ctx.c_str(), d, (unsigned long long)dim);
        t.n_elements = prod;
        t.dims.push_back(dim);
    }
    t.type = rd<uint32_t>("tensor type", ctx);
    t.offset = rd<uint64_t>("tensor data offset", ctx);
    f_.tensors_.push_back(std::move(t));
}

void Parser::finish_tensors() {
    const char *path = f_.path_.c_str();
    uint64_t data_off = 0;
    FQ_CHECK(!__builtin_add_overflow(pos_, uint64_t(f_.alignment_ - 1), &data_off), FQ_STATUS_MODEL_FORMAT,
             "%s: header size overflows", path);
    data_off -= data_off % f_.alignment_;
    f_.data_offset_ = data_off;
    // Tensor data may be absent only when there is none to hold.
    const uint64_t data_bytes = data_off <= size_ ? size_ - data_off : 0;
    for (TensorInfo &t : f_.tensors_) {
        const char *name = t.name.c_str();
        FQ_CHECK(t.offset % f_.alignment_ == 0, FQ_STATUS_MODEL_FORMAT,
                 "%s: tensor '%s' data offset %llu is not a multiple of the alignment %u", path, name,
                 (unsigned long long)t.offset, f_.alignment_);
        const TypeRow *tr = find_type(t.type);
        if (tr) {
            FQ_CHECK(t.dims[0] % uint64_t(tr->block_elems) == 0, FQ_STATUS_MODEL_FORMAT,
                     "%s: tensor '%s' of type %s has a row of %llu elements, not a multiple of the block size %lld",
                     path, name, tr->name, (unsigned long long)t.dims[0], (long long)tr->block_elems);
            FQ_CHECK(!__builtin_mul_overflow(t.n_elements / uint64_t(tr->block_elems), uint64_t(tr->block_bytes),
                                             &t.n_bytes),
                     FQ_STATUS_MODEL_FORMAT, "%s: tensor '%s' of %llu elements: its byte size overflows", path, name,
                     (unsigned long long)t.n_elements);
        } else {
            t.n_bytes = 0;  // unknown size: only the start is checked below
        }
        FQ_CHECK(t.offset <= data_bytes && t.n_bytes <= data_bytes - t.offset, FQ_STATUS_MODEL_FORMAT,
                 "%s: tensor '%s' data [%llu, +%llu bytes) lies outside the data section of %llu bytes at file "
                 "offset %llu",
                 path, name, (unsigned long long)t.offset, (unsigned long long)t.n_bytes,
                 (unsigned long long)data_bytes, (unsigned long long)data_off);
    }
}

void Parser::parse() {
    const char *path = f_.path_.c_str();
    FQ_CHECK(size_ >= 24, FQ_STATUS_MODEL_FORMAT, "%s: file of %llu bytes is too small for a GGUF header", path,
             (unsigned long long)size_);
    uint32_t magic = rd<uint32_t>("magic", "");
    FQ_CHECK(magic == kMagic, FQ_STATUS_MODEL_FORMAT, "%s: not a GGUF file (magic 0x%08x)", path, magic);
    f_.version_ = rd<uint32_t>("version", "");
    FQ_CHECK(f_.version_ == 2 || f_.version_ == 3, FQ_STATUS_MODEL_FORMAT,
             "%s: GGUF version %u is not supported (2 and 3 are; a big-endian file also shows a wrong version)",
             path, f_.version_);
    const uint64_t n_tensors = rd<uint64_t>("tensor count", "");
    const uint64_t n_kv = rd<uint64_t>("metadata count", "");
    // Smallest encodings: a key-value is a length, a type and one byte; a tensor info is a name length, n_dims,
    // one dimension, a type and an offset.
    FQ_CHECK(n_kv <= remaining() / 13, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata count %llu cannot fit in the %llu bytes that remain", path, (unsigned long long)n_kv,
             (unsigned long long)remaining());
    FQ_CHECK(n_tensors <= remaining() / 32, FQ_STATUS_MODEL_FORMAT,
             "%s: tensor count %llu cannot fit in the %llu bytes that remain", path, (unsigned long long)n_tensors,
             (unsigned long long)remaining());
    count_values(n_kv, "<header>");

    std::unordered_set<std::string> seen;
    f_.kv_.reserve(capped(n_kv));
    for (uint64_t k = 0; k < n_kv; ++k) {
        KeyValue kv;
        kv.key = rd_string("metadata key", "metadata #" + std::to_string(k));
        FQ_CHECK(seen.insert(kv.key).second, FQ_STATUS_MODEL_FORMAT, "%s: duplicate metadata key '%s'", path,
                 kv.key.c_str());
        uint32_t type = rd<uint32_t>("value type", kv.key);
        kv.value = rd_value(type, kv.key, 0);
        f_.kv_.push_back(std::move(kv));
    }

    if (const Value *a = f_.find("general.alignment")) {
        FQ_CHECK(a->is_integer() && a->type != ValueType::BOOL && a->i > 0 && a->i <= (int64_t(1) << 30) &&
                     (a->i & (a->i - 1)) == 0,
                 FQ_STATUS_MODEL_FORMAT, "%s: general.alignment (%s %lld) must be a power of two up to 2^30", path,
                 value_type_name(uint32_t(a->type)), (long long)a->i);
        f_.alignment_ = static_cast<uint32_t>(a->i);
    }

    seen.clear();
    f_.tensors_.reserve(capped(n_tensors));
    for (uint64_t k = 0; k < n_tensors; ++k) {
        parse_tensor_info(k);
        FQ_CHECK(seen.insert(f_.tensors_.back().name).second, FQ_STATUS_MODEL_FORMAT, "%s: duplicate tensor '%s'",
                 path, f_.tensors_.back().name.c_str());
    }
    finish_tensors();
}

// ---- File ---------------------------------------------------------------------------------------------------------

std::unique_ptr<File> File::open(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        FQ_CHECK(e != ENOENT && e != ENOTDIR, FQ_STATUS_NOT_FOUND, "%s: no such file", path.c_str());
        FQ_FAIL(FQ_STATUS_IO, "%s: cannot open: %s", path.c_str(), std::strerror(e));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        FQ_FAIL(FQ_STATUS_IO, "%s: cannot stat: %s", path.c_str(), std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        FQ_FAIL(FQ_STATUS_IO, "%s: not a regular file", path.c_str());
    }
    std::unique_ptr<File> f(new File());  // from here on, the destructor releases the mapping on every throw
    f->path_ = path;
    f->size_ = static_cast<uint64_t>(st.st_size);
    if (f->size_ > 0) {
        void *m = ::mmap(nullptr, static_cast<size_t>(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
        int e = errno;
        ::close(fd);
        FQ_CHECK(m != MAP_FAILED, FQ_STATUS_IO, "%s: cannot map %llu bytes: %s", path.c_str(),
                 (unsigned long long)f->size_, std::strerror(e));
        f->base_ = static_cast<const uint8_t *>(m);
        f->owns_mapping_ = true;
    } else {
        ::close(fd);
    }
    Parser(*f, f->base_, f->size_).parse();
    return f;
}

std::unique_ptr<File> File::open_memory(const void *data, uint64_t size, const std::string &name) {
    FQ_CHECK(data != nullptr || size == 0, FQ_STATUS_INVALID_ARGUMENT, "%s: null buffer", name.c_str());
    std::unique_ptr<File> f(new File());
    f->path_ = name;
    f->size_ = size;
    f->base_ = static_cast<const uint8_t *>(data);
    Parser(*f, f->base_, f->size_).parse();
    return f;
}

File::~File() {
    if (owns_mapping_ && base_) ::munmap(const_cast<uint8_t *>(base_), static_cast<size_t>(size_));
}

const Value *File::find(std::string_view key) const {
    for (const KeyValue &kv : kv_)
        if (kv.key == key) return &kv.value;
    return nullptr;
}

const TensorInfo *File::find_tensor(std::string_view name) const {
    for (const TensorInfo &t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

bool Value::is_integer() const {
    switch (type) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::UINT16: case ValueType::INT16:
    case ValueType::UINT32: case ValueType::INT32: case ValueType::UINT64: case ValueType::INT64:
    case ValueType::BOOL: return true;
    default: return false;
    }
}

bool Value::is_float() const { return type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }

namespace {
bool is_plain_int(const Value &v) { return v.is_integer() && v.type != ValueType::BOOL; }
// An integer Value's int64 value; false for UINT64 values above INT64_MAX.
bool int_value(const Value &v, int64_t *out) {
    if (!is_plain_int(v)) return false;
    bool is_unsigned = v.type == ValueType::UINT8 || v.type == ValueType::UINT16 || v.type == ValueType::UINT32 ||
                       v.type == ValueType::UINT64;
    if (is_unsigned && v.u > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    *out = v.i;
    return true;
}
[[noreturn]] void wrong_type(const std::string &path, std::string_view key, const Value &v, const char *want) {
    FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "%s: metadata key '%.*s' is %s, expected %s", path.c_str(), int(key.size()),
            key.data(), value_type_name(uint32_t(v.type)), want);
}
}  // namespace

std::string File::get_string(std::string_view key, const std::string &fallback) const {
    const Value *v = find(key);
    if (!v) return fallback;
    if (v->type != ValueType::STRING) wrong_type(path_, key, *v, "STRING");
    return v->str;
}

int64_t File::get_int(std::string_view key, int64_t fallback) const {
    const Value *v = find(key);
    if (!v) return fallback;
    int64_t out = 0;
    if (!int_value(*v, &out)) wrong_type(path_, key, *v, "an integer that fits int64");
    return out;
}

double File::get_float(std::string_view key, double fallback) const {
    const Value *v = find(key);
    if (!v) return fallback;
    if (v->is_float()) return v->f;
    int64_t n = 0;
    if (int_value(*v, &n)) return static_cast<double>(n);
    wrong_type(path_, key, *v, "a number");
}

bool File::get_bool(std::string_view key, bool fallback) const {
    const Value *v = find(key);
    if (!v) return fallback;
    if (v->type != ValueType::BOOL) wrong_type(path_, key, *v, "BOOL");
    return v->u != 0;
}

int64_t File::require_int(std::string_view key) const {
    FQ_CHECK(find(key), FQ_STATUS_MODEL_FORMAT, "%s: required metadata key '%.*s' is missing", path_.c_str(),
             int(key.size()), key.data());
    return get_int(key, 0);
}

std::string File::require_string(std::string_view key) const {
    FQ_CHECK(find(key), FQ_STATUS_MODEL_FORMAT, "%s: required metadata key '%.*s' is missing", path_.c_str(),
             int(key.size()), key.data());
    return get_string(key);
}

namespace {
const Value &require_array(const File &f, std::string_view key, const char *want) {
    const Value *v = f.find(key);
    FQ_CHECK(v, FQ_STATUS_MODEL_FORMAT, "%s: required metadata array '%.*s' is missing", f.path().c_str(),
             int(key.size()), key.data());
    FQ_CHECK(v->type == ValueType::ARRAY, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata key '%.*s' is %s, expected an array of %s", f.path().c_str(), int(key.size()), key.data(),
             value_type_name(uint32_t(v->type)), want);
    return *v;
}
}  // namespace

std::vector<std::string> File::get_string_array(std::string_view key) const {
    const Value &v = require_array(*this, key, "STRING");
    FQ_CHECK(v.array_type == ValueType::STRING, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata array '%.*s' holds %s, expected STRING", path_.c_str(), int(key.size()), key.data(),
             value_type_name(uint32_t(v.array_type)));
    std::vector<std::string> out;
    out.reserve(v.array.size());
    for (const Value &e : v.array) out.push_back(e.str);
    return out;
}

std::vector<float> File::get_float_array(std::string_view key) const {
    const Value &v = require_array(*this, key, "FLOAT32");
    FQ_CHECK(v.array_type == ValueType::FLOAT32 || v.array_type == ValueType::FLOAT64, FQ_STATUS_MODEL_FORMAT,
             "%s: metadata array '%.*s' holds %s, expected FLOAT32", path_.c_str(), int(key.size()), key.data(),
             value_type_name(uint32_t(v.array_type)));
    std::vector<float> out;
    out.reserve(v.array.size());
    for (const Value &e : v.array) out.push_back(static_cast<float>(e.f));
    return out;
}

std::vector<int32_t> File::get_int32_array(std::string_view key) const {
    const Value &v = require_array(*this, key, "integers");
    std::vector<int32_t> out;
    out.reserve(v.array.size());
    for (size_t k = 0; k < v.array.size(); ++k) {
        int64_t n = 0;
        FQ_CHECK(int_value(v.array[k], &n) && n >= std::numeric_limits<int32_t>::min() &&
                     n <= std::numeric_limits<int32_t>::max(),
                 FQ_STATUS_MODEL_FORMAT, "%s: metadata array '%.*s' element %zu (%s) is not an int32", path_.c_str(),
                 int(key.size()), key.data(), k, value_type_name(uint32_t(v.array[k].type)));
        out.push_back(static_cast<int32_t>(n));
    }
    // An empty array of a non-integer type is still the wrong type.
    Value elem_type;
    elem_type.type = v.array_type;
    FQ_CHECK(!v.array.empty() || is_plain_int(elem_type), FQ_STATUS_MODEL_FORMAT,
             "%s: metadata array '%.*s' holds %s, expected integers", path_.c_str(), int(key.size()), key.data(),
             value_type_name(uint32_t(v.array_type)));
    return out;
}

const uint8_t *File::tensor_data(const TensorInfo &t) const { return base_ + data_offset_ + t.offset; }

void File::read_f32(const TensorInfo &t, float *out) const {
    FQ_CHECK(can_dequantize(t.type), FQ_STATUS_UNSUPPORTED, "%s: tensor '%s' has type %s, which cannot be read as FP32",
             path_.c_str(), t.name.c_str(), tensor_type_name(t.type));
    if (t.n_elements == 0) return;
    dequantize_row(t.type, tensor_data(t), out, static_cast<int64_t>(t.n_elements));
}

const char *tensor_type_name(uint32_t type) {
    if (const TypeRow *r = find_type(type)) return r->name;
    // Unknown numbers are rendered into a per-thread buffer, valid until this thread's next such call.
    static thread_local char buf[24];
    std::snprintf(buf, sizeof buf, "type%u", type);
    return buf;
}

bool type_traits(uint32_t type, int64_t *block_elems, int64_t *block_bytes) {
    const TypeRow *r = find_type(type);
    if (!r) return false;
    if (block_elems) *block_elems = r->block_elems;
    if (block_bytes) *block_bytes = r->block_bytes;
    return true;
}

bool can_dequantize(uint32_t type) {
    const TypeRow *r = find_type(type);
    return r && r->dequant;
}

}  // namespace fq::gguf
