// GGUF reader robustness: one test per validation rule (each error names the problem, the key or tensor and the
// numbers), then a corpus of mutated files (truncations, corrupted counts, lengths, types, dims and offsets,
// random byte changes) that must each open or fail with fq::Error(MODEL_FORMAT), and never crash; every tensor of
// the ones that open is read back. Each image sits in a buffer of exactly its size, so an AddressSanitizer
// build (FQ_SANITIZE=ON) also catches any read past the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "support/gguf_test_util.h"
#include "support/gguf_writer.h"

namespace {

using fq::gguf::File;
using fq::test::expect_error;
using fq::test::GgufField;
using fq::test::GgufWriter;
using fq::test::poke;
using fq::test::walk_gguf;

constexpr int kFormat = FQ_STATUS_MODEL_FORMAT;

// A small valid file: two keys of which one an array, and three tensors of different types.
GgufWriter tiny_writer() {
    GgufWriter w;
    w.set("general.architecture", GgufWriter::str("llama"));
    w.set("dup_key_1", GgufWriter::u32(7));
    w.set("dup_key_2", GgufWriter::str_array({"a", "bc"}));
    w.add_tensor_f32("tensor_A", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
    w.add_tensor_f16("tensor_B", {8}, {1, 2, 3, 4, 5, 6, 7, 8});
    std::vector<uint8_t> q8(34, 0x11);  // one Q8_0 block
    w.add_tensor_raw("tensor_C", {32}, 8, q8);
    return w;
}

// First field of a kind at or after `from`.
const GgufField &field(const std::vector<GgufField> &fs, GgufField::Kind kind, size_t nth = 0) {
    for (const GgufField &f : fs)
        if (f.kind == kind && nth-- == 0) return f;
    throw std::runtime_error("no such field");
}

void replace_once(std::vector<uint8_t> &img, const std::string &from, const std::string &to) {
    auto it = std::search(img.begin(), img.end(), from.begin(), from.end());
    ASSERT_NE(it, img.end()) << from;
    std::copy(to.begin(), to.end(), it);
}

std::unique_ptr<File> open_image(const std::vector<uint8_t> &img) {
    return File::open_memory(img.data(), img.size(), "test.gguf");
}

TEST(GgufValidation, HeaderProblems) {
    const auto good = tiny_writer().bytes();
    auto img = good;
    img[0] = 'X';
    expect_error([&] { open_image(img); }, kFormat, {"test.gguf", "not a GGUF"});
    img = good;
    poke(img, 4, 4, 1);
    expect_error([&] { open_image(img); }, kFormat, {"version 1"});
    poke(img, 4, 4, 0x03000000);  // a big-endian v3 file
    expect_error([&] { open_image(img); }, kFormat, {"version 50331648"});
    img = good;
    poke(img, 8, 8, uint64_t(1) << 62);
    expect_error([&] { open_image(img); }, kFormat, {"tensor count 4611686018427387904"});
    img = good;
    poke(img, 16, 8, ~uint64_t(0));
    expect_error([&] { open_image(img); }, kFormat, {"metadata count 18446744073709551615"});
    expect_error([&] { open_image(std::vector<uint8_t>(img.begin(), img.begin() + 10)); }, kFormat, {"too small"});
}

TEST(GgufValidation, MetadataProblems) {
    const auto good = tiny_writer().bytes();
    const auto fs = walk_gguf(good);
    auto img = good;
    poke(img, field(fs, GgufField::STRING_LENGTH).pos, 8, uint64_t(1) << 40);  // first key's length
    expect_error([&] { open_image(img); }, kFormat, {"truncated", "metadata key", "1099511627776"});
    img = good;
    poke(img, field(fs, GgufField::VALUE_TYPE).pos, 4, 13);
    expect_error([&] { open_image(img); }, kFormat, {"'general.architecture'", "unknown value type 13"});
    img = good;
    poke(img, field(fs, GgufField::ARRAY_TYPE).pos, 4, 21);
    expect_error([&] { open_image(img); }, kFormat, {"'dup_key_2'", "unknown array element type 21"});
    img = good;
    poke(img, field(fs, GgufField::ARRAY_LENGTH).pos, 8, uint64_t(1) << 60);
    expect_error([&] { open_image(img); }, kFormat, {"'dup_key_2'", "1152921504606846976"});
    img = good;
    replace_once(img, "dup_key_2", "dup_key_1");
    expect_error([&] { open_image(img); }, kFormat, {"duplicate metadata key 'dup_key_1'"});

    // A valid array of more values than the reader keeps in memory (each costs a Value, ~100 bytes).
    std::vector<uint8_t> big = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    const uint64_t n_big = (uint64_t(1) << 22) + 1;
    auto put = [&](uint64_t v, int width) {
        for (int b = 0; b < width; ++b) big.push_back(uint8_t(v >> (8 * b)));
    };
    put(0, 8);  // tensors
    put(1, 8);  // key-values
    put(3, 8);
    big.insert(big.end(), {'b', 'i', 'g'});
    put(GgufWriter::ARRAY, 4);
    put(GgufWriter::UINT8, 4);
    put(n_big, 8);
    big.resize(big.size() + n_big, 7);
    expect_error([&] { open_image(big); }, kFormat, {"'big'", "value count"});

    GgufWriter deep;
    GgufWriter::Value v = GgufWriter::array(GgufWriter::UINT8, {GgufWriter::u8(1)});
    for (int k = 0; k < 9; ++k) v = GgufWriter::array(GgufWriter::ARRAY, {v});
    deep.set("deep", v);
    const auto deep_img = deep.bytes();
    expect_error([&] { open_image(deep_img); }, kFormat, {"'deep'", "nested"});

    for (GgufWriter::Value bad : {GgufWriter::u32(48), GgufWriter::u32(0), GgufWriter::str("32")}) {
        GgufWriter w = tiny_writer();
        w.set("general.alignment", bad);
        const auto a = w.bytes();
        expect_error([&] { open_image(a); }, kFormat, {"general.alignment"});
    }
}

TEST(GgufValidation, TensorProblems) {
    const auto good = tiny_writer().bytes();
    const auto fs = walk_gguf(good);
    auto img = good;
    poke(img, field(fs, GgufField::N_DIMS).pos, 4, 5);
    expect_error([&] { open_image(img); }, kFormat, {"'tensor_A'", "n_dims 5"});
    poke(img, field(fs, GgufField::N_DIMS).pos, 4, 0);
    expect_error([&] { open_image(img); }, kFormat, {"'tensor_A'", "n_dims 0"});
    img = good;
    poke(img, field(fs, GgufField::TENSOR_OFFSET, 1).pos, 8, 4);
    expect_error([&] { open_image(img); }, kFormat, {"'tensor_B'", "offset 4", "alignment 32"});
    poke(img, field(fs, GgufField::TENSOR_OFFSET, 1).pos, 8, uint64_t(1) << 50);
    expect_error([&] { open_image(img); }, kFormat, {"'tensor_B'", "outside the data section"});
    img = good;
    // tensor_B moved to the end of the 128-byte data section (A: 32 bytes, B: 16 padded to 32, C: 34 padded to 64).
    poke(img, field(fs, GgufField::TENSOR_OFFSET, 1).pos, 8, 128);
    expect_error([&] { open_image(img); }, kFormat, {"'tensor_B'", "outside"});
    img = good;
    replace_once(img, "tensor_B", "tensor_A");
    expect_error([&] { open_image(img); }, kFormat, {"duplicate tensor 'tensor_A'"});
    // Data cut off: the last tensor (34 bytes at data offset 64, then 30 bytes of padding) does not fit.
    expect_error([&] { open_image(std::vector<uint8_t>(good.begin(), good.end() - 31)); }, kFormat,
                 {"'tensor_C'", "+34 bytes", "97 bytes"});
    open_image(std::vector<uint8_t>(good.begin(), good.end() - 30));  // the padding itself is optional

    struct Case { std::vector<uint64_t> dims; uint32_t type; const char *what; };
    const Case cases[] = {
        {{uint64_t(1) << 32, uint64_t(1) << 32}, 0, "overflow"},
        {{uint64_t(1) << 62}, 0, "byte size overflows"},
        {{31}, 8, "not a multiple of the block size 32"},
        {{256, uint64_t(1) << 40}, 12, "outside"},
    };
    for (const Case &c : cases) {
        GgufWriter w;
        w.add_tensor_raw("bad.weight", c.dims, c.type, std::vector<uint8_t>(64, 0));
        const auto b = w.bytes();
        expect_error([&] { open_image(b); }, kFormat, {"'bad.weight'", c.what});
    }
}

TEST(GgufValidation, UnknownTensorTypesOpenButDoNotDequantize) {
    GgufWriter w;
    w.add_tensor_raw("odd.weight", {1000, 1000}, 200, std::vector<uint8_t>(16, 0));
    w.add_tensor_raw("iq.weight", {256}, 16, std::vector<uint8_t>(66, 0));  // IQ2_XXS: known size, no decoder
    w.add_tensor_raw("empty.weight", {0, 4}, 0, {});
    const auto img = w.bytes();
    auto f = open_image(img);
    EXPECT_EQ(f->find_tensor("odd.weight")->n_elements, 1000000u);
    EXPECT_EQ(f->find_tensor("iq.weight")->n_bytes, 66u);
    std::vector<float> out(256);
    expect_error([&] { f->read_f32(*f->find_tensor("odd.weight"), out.data()); }, FQ_STATUS_UNSUPPORTED,
                 {"'odd.weight'", "type200"});
    expect_error([&] { f->read_f32(*f->find_tensor("iq.weight"), out.data()); }, FQ_STATUS_UNSUPPORTED,
                 {"'iq.weight'", "IQ2_XXS"});
    f->read_f32(*f->find_tensor("empty.weight"), out.data());
    EXPECT_EQ(f->find_tensor("empty.weight")->n_elements, 0u);
}

// ---- the mutated-file corpus ----------------------------------------------------------------------------------

struct Outcomes {
    int opened = 0, refused = 0;
};

// Opens one image; on success reads every tensor. Anything but success or fq::Error(MODEL_FORMAT) fails.
void check_image(const std::vector<uint8_t> &img, Outcomes &out, std::vector<float> &scratch) {
    std::unique_ptr<File> f;
    try {
        f = open_image(img);
    } catch (const fq::Error &e) {
        ASSERT_EQ(e.status(), kFormat) << e.what();
        ++out.refused;
        return;
    }
    ++out.opened;
    for (const fq::gguf::TensorInfo &t : f->tensors()) {
        ASSERT_LE(f->data_offset() + t.offset + t.n_bytes, img.size()) << t.name;
        if (!fq::gguf::can_dequantize(t.type)) {
            expect_error([&] { f->read_f32(t, scratch.data()); }, FQ_STATUS_UNSUPPORTED, {t.name});
            continue;
        }
        // A decodable tensor's element count is bounded by its bytes (at most 8 elements per byte, Q2_K's 3.05).
        ASSERT_LE(t.n_elements, 8 * t.n_bytes + 1) << t.name;
        if (scratch.size() < t.n_elements) scratch.resize(t.n_elements);
        f->read_f32(t, scratch.data());
    }
}

void run_corpus(std::vector<uint8_t> img, const char *label) {
    SCOPED_TRACE(label);
    const auto fields = walk_gguf(img);
    uint64_t header_end = 0;
    {
        auto f = open_image(img);
        header_end = std::min<uint64_t>(f->data_offset(), img.size());
    }
    Outcomes out;
    std::vector<float> scratch;
    // Truncations: every length through the header, then strided through the data.
    for (uint64_t n = 0; n <= img.size(); n += n < header_end ? 1 : 4093) {
        check_image(std::vector<uint8_t>(img.begin(), img.begin() + n), out, scratch);
        if (::testing::Test::HasFatalFailure()) return;
    }
    // Structural fields set to telling values, in place (and restored), so the buffer keeps its exact size.
    std::mt19937_64 rng(1234);
    for (const GgufField &fd : fields) {
        uint64_t orig = 0;
        std::memcpy(&orig, img.data() + fd.pos, fd.width);
        const uint64_t values[] = {0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 30, 200, orig + 1, orig - 1, orig * 2,
                                   orig + 32, 0x7fffffffull, 0xffffffffull, uint64_t(1) << 32, uint64_t(1) << 40,
                                   uint64_t(1) << 62, ~uint64_t(0), rng()};
        for (uint64_t v : values) {
            poke(img, fd.pos, fd.width, v);
            check_image(img, out, scratch);
            if (::testing::Test::HasFatalFailure()) return;
        }
        poke(img, fd.pos, fd.width, orig);
    }
    // Random single- and multi-byte corruptions, mostly in the header.
    for (int k = 0; k < 3000; ++k) {
        const uint64_t region = k % 8 == 7 ? img.size() : header_end;
        const int n_bytes = 1 + int(rng() % 8);
        const size_t pos = size_t(rng() % region);
        std::vector<uint8_t> saved;
        for (int b = 0; b < n_bytes && pos + b < img.size(); ++b) {
            saved.push_back(img[pos + b]);
            img[pos + b] = uint8_t(rng());
        }
        check_image(img, out, scratch);
        if (::testing::Test::HasFatalFailure()) return;
        std::copy(saved.begin(), saved.end(), img.begin() + pos);
    }
    // Both outcomes must occur, or the corpus tests nothing.
    EXPECT_GT(out.opened, 100);
    EXPECT_GT(out.refused, 1000);
    std::printf("[ corpus   ] %s: %d mutants opened and fully read, %d refused with MODEL_FORMAT\n", label, out.opened,
                out.refused);
}

TEST(GgufMutations, TinyWriterFile) { run_corpus(tiny_writer().bytes(), "tiny"); }

TEST(GgufMutations, Stories260K) {
    const std::string path = fq::test::stories260k_path();
    if (path.empty()) GTEST_SKIP() << "stories260K.gguf not found (data/models, ../shared/data/models)";
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> img((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    run_corpus(std::move(img), "stories260K");
}

}  // namespace
