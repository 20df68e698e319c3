// GGUF reader tests: metadata and tensors of real files against the values the `gguf` Python package reports,
// dequantization of every supported type against goldens from that package, files built with the test writer
// (every value type, v2/v3, alignment), and one test per validation rule. The mutated-file corpus lives in
// test_gguf_mutations.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "support/gguf_test_util.h"
#include "support/gguf_writer.h"

namespace {

using fq::gguf::File;
using fq::gguf::TensorInfo;
using fq::gguf::ValueType;
using fq::test::GgufWriter;
using fq::test::expect_error;
using fq::test::source_path;
using fq::test::stories260k_path;

uint32_t bits_of(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    return b;
}

float hexf(const char *s) { return std::strtof(s, nullptr); }

std::vector<float> read_all(const File &f, const TensorInfo &t) {
    std::vector<float> out(t.n_elements);
    f.read_f32(t, out.data());
    return out;
}

double sum64(const std::vector<float> &v) {
    double s = 0;
    for (float x : v) s += x;
    return s;
}

// ---- stories260K: expected values were read with gguf.GGUFReader (gguf 0.19.0) and hard-coded here -------------

TEST(Gguf, Stories260KMetadataMatchesPythonReader) {
    const std::string path = stories260k_path();
    if (path.empty()) GTEST_SKIP() << "stories260K.gguf not found (data/models, ../shared/data/models)";
    auto f = File::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->metadata().size(), 19u);
    EXPECT_EQ(f->tensors().size(), 48u);
    EXPECT_EQ(f->alignment(), 32u);
    EXPECT_EQ(f->data_offset(), 14176u);
    EXPECT_EQ(f->metadata().front().key, "tokenizer.ggml.tokens");  // file order is kept

    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(f->require_int("llama.context_length"), 2048);
    EXPECT_EQ(f->require_int("llama.embedding_length"), 64);
    EXPECT_EQ(f->require_int("llama.feed_forward_length"), 172);
    EXPECT_EQ(f->require_int("llama.attention.head_count"), 8);
    EXPECT_EQ(f->require_int("llama.attention.head_count_kv"), 4);
    EXPECT_EQ(f->require_int("llama.block_count"), 5);
    EXPECT_EQ(f->require_int("llama.rope.dimension_count"), 8);
    EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id", -1), 1);
    EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id", -1), 2);
    EXPECT_EQ(f->get_int("tokenizer.ggml.padding_token_id", -1), 4294967295);  // UINT32 0xffffffff
    EXPECT_EQ(f->find("tokenizer.ggml.padding_token_id")->type, ValueType::UINT32);
    EXPECT_EQ(f->get_float("llama.attention.layer_norm_rms_epsilon", 0), double(9.999999747378752e-06));

    const auto tokens = f->get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 512u);
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[3], "<0x00>");
    EXPECT_EQ(tokens[259], "\xe2\x96\x81t");  // "▁t"
    EXPECT_EQ(tokens[260], "he");
    EXPECT_EQ(tokens[511], "\xe2\x80\x8a");  // U+200A
    const auto scores = f->get_float_array("tokenizer.ggml.scores");
    ASSERT_EQ(scores.size(), 512u);
    EXPECT_EQ(scores[260], -1.0f);
    EXPECT_EQ(scores[300], -41.0f);
    EXPECT_EQ(scores[511], -252.0f);
    const auto types = f->get_int32_array("tokenizer.ggml.token_type");
    ASSERT_EQ(types.size(), 512u);
    EXPECT_EQ((std::vector<int32_t>(types.begin(), types.begin() + 5)), (std::vector<int32_t>{2, 3, 3, 6, 6}));
    EXPECT_EQ(types[511], 1);
}

TEST(Gguf, Stories260KTensorsMatchPythonReader) {
    const std::string path = stories260k_path();
    if (path.empty()) GTEST_SKIP() << "stories260K.gguf not found (data/models, ../shared/data/models)";
    auto f = File::open(path);
    const TensorInfo *emb = f->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->dims, (std::vector<uint64_t>{64, 512}));
    EXPECT_EQ(emb->type, 0u);
    EXPECT_EQ(emb->offset, 0u);
    EXPECT_EQ(emb->n_bytes, 131072u);
    const auto v = read_all(*f, *emb);
    EXPECT_EQ(v[0], hexf("-0x1.2dd2ap-2"));
    EXPECT_EQ(v[1], hexf("0x1.1fb0c8p-1"));
    EXPECT_EQ(v.back(), hexf("-0x1.b2359ap-2"));
    EXPECT_EQ(sum64(v), std::strtod("-0x1.782f1241d4980p+9", nullptr));  // float64 sum in file order, as numpy

    const TensorInfo *gate = f->find_tensor("blk.2.ffn_gate.weight");
    ASSERT_NE(gate, nullptr);
    EXPECT_EQ(gate->dims, (std::vector<uint64_t>{64, 172}));
    EXPECT_EQ(gate->offset, 675328u);
    const TensorInfo *down = f->find_tensor("blk.4.ffn_down.weight");
    ASSERT_NE(down, nullptr);
    EXPECT_EQ(down->dims, (std::vector<uint64_t>{172, 64}));
    EXPECT_EQ(down->offset, 1082880u);
    const TensorInfo *q = f->find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(read_all(*f, *q)[2], hexf("-0x1.24773cp-7"));
    EXPECT_EQ(f->tensors().back().name, "blk.4.ffn_norm.weight");
    EXPECT_EQ(f->tensors().back().offset, 1170944u);
    EXPECT_EQ(f->find_tensor("no.such.tensor"), nullptr);
    EXPECT_EQ(f->find("no.such.key"), nullptr);
}

// SmolLM2-135M-Instruct Q4_1 (Q8_0 embeddings, Q4_1 layers, F32 norms), when it is available (FQ_SMOLLM2_GGUF
// or the model cache). Expected values from gguf.quants.dequantize.
TEST(Gguf, SmolLM2Q4_1MatchesPythonReader) {
    const std::string path = fq::test::smollm2_path();
    if (path.empty()) GTEST_SKIP() << "SmolLM2-135M-Instruct.Q4_1.gguf not found (set FQ_SMOLLM2_GGUF)";
    auto f = File::open(path);
    EXPECT_EQ(f->tensors().size(), 272u);
    EXPECT_EQ(f->data_offset(), 1785664u);
    EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "gpt2");
    const auto merges = f->get_string_array("tokenizer.ggml.merges");
    ASSERT_EQ(merges.size(), 48900u);
    EXPECT_EQ(merges[0], "\xc4\xa0 t");  // "Ġ t"
    struct Expect { const char *name; uint32_t type; const char *first, *last, *sum; };
    const Expect cases[] = {
        {"token_embd.weight", 8, "-0x1.b468p-4", "-0x1.55ap-5", "-0x1.dfc85b1fcp+13"},
        {"blk.0.ffn_down.weight", 3, "-0x1.52cp-2", "-0x1.737p-3", "0x1.2d4584p+7"},
        {"blk.29.attn_v.weight", 3, "0x1.224p-3", "0x1.b4p-5", "-0x1.790bp+4"},
        {"output_norm.weight", 0, "0x1.c2p+0", "0x1.fcp+0", "0x1.03954p+10"},
    };
    for (const Expect &e : cases) {
        const TensorInfo *t = f->find_tensor(e.name);
        ASSERT_NE(t, nullptr) << e.name;
        EXPECT_EQ(t->type, e.type) << e.name;
        const auto v = read_all(*f, *t);
        EXPECT_EQ(v.front(), hexf(e.first)) << e.name;
        EXPECT_EQ(v.back(), hexf(e.last)) << e.name;
        EXPECT_EQ(sum64(v), std::strtod(e.sum, nullptr)) << e.name;
    }
}

// ---- dequantization goldens ----------------------------------------------------------------------------------------

struct GoldenCase {
    uint32_t type;
    uint32_t n_elements;
    std::vector<uint8_t> raw;
    std::vector<float> values;
};

std::vector<GoldenCase> load_goldens() {
    const std::string path = source_path("native/tests/golden/gguf_dequant.bin");
    if (path.empty()) return {};
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> d((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    auto u32 = [&]() {
        uint32_t v;
        if (pos + 4 > d.size()) throw std::runtime_error("golden file truncated");
        std::memcpy(&v, d.data() + pos, 4);
        pos += 4;
        return v;
    };
    if (d.size() < 12 || std::memcmp(d.data(), "FQDQ", 4) != 0) throw std::runtime_error("bad golden file");
    pos = 4;
    if (u32() != 1) throw std::runtime_error("golden file version");
    std::vector<GoldenCase> cases(u32());
    for (GoldenCase &c : cases) {
        c.type = u32();
        c.n_elements = u32();
        const uint32_t n_bytes = u32();
        if (pos + n_bytes + 4ull * c.n_elements > d.size()) throw std::runtime_error("golden file truncated");
        c.raw.assign(d.begin() + pos, d.begin() + pos + n_bytes);
        pos += n_bytes;
        c.values.resize(c.n_elements);
        std::memcpy(c.values.data(), d.data() + pos, 4ull * c.n_elements);
        pos += 4ull * c.n_elements;
    }
    return cases;
}

// Written by tools/goldens/gguf_dequant_goldens.py from gguf.quants.dequantize. Equality is exact (bit-equal
// float32): the reader performs the same float32 multiplies and adds in the same order as the numpy code, and
// fp16 -> fp32 widening is exact, so no rounding can differ (fused multiply-add is disabled in the reader).
TEST(Gguf, DequantizeRowMatchesPythonGoldens) {
    const auto cases = load_goldens();
    if (cases.empty()) GTEST_SKIP() << "golden file not found (FQ_SOURCE_DIR/native/tests/golden)";
    std::vector<uint32_t> seen;
    for (const GoldenCase &c : cases) {
        SCOPED_TRACE(fq::gguf::tensor_type_name(c.type));
        ASSERT_TRUE(fq::gguf::can_dequantize(c.type));
        int64_t be = 0, bb = 0;
        ASSERT_TRUE(fq::gguf::type_traits(c.type, &be, &bb));
        ASSERT_EQ(uint64_t(c.n_elements) / be * bb, c.raw.size());
        std::vector<float> out(c.n_elements, -12345.0f);
        fq::gguf::dequantize_row(c.type, c.raw.data(), out.data(), c.n_elements);
        int mismatches = 0;
        for (uint32_t k = 0; k < c.n_elements && mismatches < 5; ++k) {
            if (bits_of(out[k]) != bits_of(c.values[k])) {
                ++mismatches;
                ADD_FAILURE() << "element " << k << ": got " << out[k] << ", want " << c.values[k];
            }
        }
        seen.push_back(c.type);
    }
    // Every type the reader claims to decode has a golden.
    for (uint32_t t = 0; t < 64; ++t) {
        if (fq::gguf::can_dequantize(t)) {
            EXPECT_NE(std::find(seen.begin(), seen.end(), t), seen.end()) << fq::gguf::tensor_type_name(t);
        }
    }
}

// The same goldens stored as tensors of a file, read back through File::read_f32.
TEST(Gguf, ReadF32OfEveryTypeMatchesGoldens) {
    const auto cases = load_goldens();
    if (cases.empty()) GTEST_SKIP() << "golden file not found (FQ_SOURCE_DIR/native/tests/golden)";
    GgufWriter w;
    for (size_t k = 0; k < cases.size(); ++k)
        w.add_tensor_raw("t" + std::to_string(k), {cases[k].n_elements}, cases[k].type, cases[k].raw);
    const auto image = w.bytes();
    auto f = File::open_memory(image.data(), image.size());
    ASSERT_EQ(f->tensors().size(), cases.size());
    for (size_t k = 0; k < cases.size(); ++k) {
        const auto v = read_all(*f, f->tensors()[k]);
        EXPECT_EQ(0, std::memcmp(v.data(), cases[k].values.data(), 4 * v.size()))
            << fq::gguf::tensor_type_name(cases[k].type);
    }
}

TEST(Gguf, DequantizeRowRefusesUnknownTypesAndPartialBlocks) {
    std::vector<uint8_t> src(300, 0);
    std::vector<float> dst(256);
    expect_error([&] { fq::gguf::dequantize_row(16, src.data(), dst.data(), 256); }, FQ_STATUS_UNSUPPORTED,
                 {"IQ2_XXS"});
    expect_error([&] { fq::gguf::dequantize_row(77, src.data(), dst.data(), 32); }, FQ_STATUS_UNSUPPORTED, {"type77"});
    expect_error([&] { fq::gguf::dequantize_row(8, src.data(), dst.data(), 33); }, FQ_STATUS_INVALID_ARGUMENT,
                 {"33", "Q8_0"});
    EXPECT_STREQ(fq::gguf::tensor_type_name(12), "Q4_K");
    EXPECT_FALSE(fq::gguf::type_traits(4, nullptr, nullptr));  // removed Q4_2
}

// ---- files made with the writer ---------------------------------------------------------------------------------

GgufWriter every_type_writer() {
    GgufWriter w;
    w.set("u8", GgufWriter::u8(200));
    w.set("i8", GgufWriter::i8(-100));
    w.set("u16", GgufWriter::u16(60000));
    w.set("i16", GgufWriter::i16(-30000));
    w.set("u32", GgufWriter::u32(4000000000u));
    w.set("i32", GgufWriter::i32(-2000000000));
    w.set("f32", GgufWriter::f32(0.1f));
    w.set("bool", GgufWriter::boolean(true));
    w.set("str", GgufWriter::str(std::string("h\0llo", 5)));
    w.set("u64", GgufWriter::u64(18446744073709551615ull));
    w.set("i64", GgufWriter::i64(-9000000000000000000ll));
    w.set("f64", GgufWriter::f64(1e300));
    w.set("empty_str", GgufWriter::str(""));
    w.set("strs", GgufWriter::str_array({"a", "", "ccc"}));
    w.set("f32s", GgufWriter::f32_array({1.5f, -2.0f}));
    w.set("i32s", GgufWriter::i32_array({-1, 7}));
    w.set("u8s", GgufWriter::array(GgufWriter::UINT8, {GgufWriter::u8(1), GgufWriter::u8(255)}));
    w.set("u32_big", GgufWriter::u32_array({4000000000u}));
    w.set("f64s", GgufWriter::array(GgufWriter::FLOAT64, {GgufWriter::f64(0.25)}));
    w.set("empty_f32s", GgufWriter::array(GgufWriter::FLOAT32, {}));
    w.set("nested",
          GgufWriter::array(GgufWriter::ARRAY, {GgufWriter::i32_array({1, 2}), GgufWriter::str_array({"x"})}));
    w.add_tensor_f32("f32.weight", {3, 2}, {1, 2, 3, 4, 5, -6});
    w.add_tensor_f16("f16.weight", {4}, {0.5f, -1.0f, 65504.0f, 5.9604645e-08f});
    return w;
}

TEST(Gguf, WriterFileHasEveryValueType) {
    for (uint32_t version : {2u, 3u}) {
        GgufWriter w = every_type_writer();
        w.set_version(version);
        const auto image = w.bytes();
        auto f = File::open_memory(image.data(), image.size(), "every_type");
        EXPECT_EQ(f->version(), version);
        EXPECT_EQ(f->get_int("u8", 0), 200);
        EXPECT_EQ(f->get_int("i8", 0), -100);
        EXPECT_EQ(f->get_int("u16", 0), 60000);
        EXPECT_EQ(f->get_int("i16", 0), -30000);
        EXPECT_EQ(f->get_int("u32", 0), 4000000000ll);
        EXPECT_EQ(f->get_int("i32", 0), -2000000000);
        EXPECT_EQ(f->get_float("f32", 0), double(0.1f));
        EXPECT_TRUE(f->get_bool("bool", false));
        EXPECT_EQ(f->get_string("str"), std::string("h\0llo", 5));
        EXPECT_EQ(f->find("u64")->u, 18446744073709551615ull);
        EXPECT_EQ(f->get_int("i64", 0), -9000000000000000000ll);
        EXPECT_EQ(f->get_float("f64", 0), 1e300);
        EXPECT_EQ(f->get_float("i32", 0), -2e9);  // integers read as floats
        EXPECT_EQ(f->require_string("empty_str"), "");
        EXPECT_EQ(f->get_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
        EXPECT_EQ(f->get_float_array("f32s"), (std::vector<float>{1.5f, -2.0f}));
        EXPECT_EQ(f->get_float_array("f64s"), (std::vector<float>{0.25f}));
        EXPECT_TRUE(f->get_float_array("empty_f32s").empty());
        EXPECT_EQ(f->get_int32_array("i32s"), (std::vector<int32_t>{-1, 7}));
        EXPECT_EQ(f->get_int32_array("u8s"), (std::vector<int32_t>{1, 255}));
        const fq::gguf::Value *nested = f->find("nested");
        ASSERT_NE(nested, nullptr);
        ASSERT_EQ(nested->array_type, ValueType::ARRAY);
        ASSERT_EQ(nested->array.size(), 2u);
        EXPECT_EQ(nested->array[0].array_type, ValueType::INT32);
        EXPECT_EQ(nested->array[0].array[1].i, 2);
        EXPECT_EQ(nested->array[1].array[0].str, "x");
        // Fallbacks for absent keys.
        EXPECT_EQ(f->get_int("absent", 42), 42);
        EXPECT_EQ(f->get_string("absent", "fb"), "fb");
        EXPECT_FALSE(f->get_bool("absent", false));
        // Tensors: F32 verbatim, F16 exactly representable values.
        EXPECT_EQ(read_all(*f, *f->find_tensor("f32.weight")), (std::vector<float>{1, 2, 3, 4, 5, -6}));
        EXPECT_EQ(read_all(*f, *f->find_tensor("f16.weight")),
                  (std::vector<float>{0.5f, -1.0f, 65504.0f, 5.9604645e-08f}));
        EXPECT_EQ(f->find_tensor("f32.weight")->dims, (std::vector<uint64_t>{3, 2}));
    }
}

// The writer's float -> half rounding: a round trip of every finite half through the reader's widening, and
// values that must round, with the results numpy's float32 -> float16 cast gives.
TEST(Gguf, WriterHalfRounding) {
    std::vector<uint16_t> halves;
    for (uint32_t h = 0; h < 65536; ++h)
        if (((h >> 10) & 0x1f) != 0x1f) halves.push_back(uint16_t(h));
    std::vector<float> wide(halves.size());
    fq::gguf::dequantize_row(1, halves.data(), wide.data(), int64_t(halves.size()));
    for (size_t k = 0; k < halves.size(); ++k) ASSERT_EQ(GgufWriter::f32_to_f16(wide[k]), halves[k]) << k;
    const std::pair<float, uint16_t> rounded[] = {{1.0f / 3, 0x3555},     {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
                                                  {1e-8f, 0x0000},        {3e-8f, 0x0001},    {-2.5e-5f, 0x81a3},
                                                  {1.00048828125f, 0x3c00}, {1.000732421875f, 0x3c01},
                                                  {0.1f, 0x2e66}};
    for (const auto &r : rounded) EXPECT_EQ(GgufWriter::f32_to_f16(r.first), r.second) << r.first;
}

TEST(Gguf, GettersRefuseWrongTypesNamingTheKey) {
    const auto image = every_type_writer().bytes();
    auto f = File::open_memory(image.data(), image.size(), "every_type");
    const int fmt = FQ_STATUS_MODEL_FORMAT;
    expect_error([&] { f->get_string("u32"); }, fmt, {"'u32'", "UINT32", "STRING"});
    expect_error([&] { f->get_int("str", 0); }, fmt, {"'str'"});
    expect_error([&] { f->get_int("u64", 0); }, fmt, {"'u64'"});  // 2^64-1 does not fit int64
    expect_error([&] { f->get_int("bool", 0); }, fmt, {"'bool'"});
    expect_error([&] { f->get_bool("u8", false); }, fmt, {"'u8'"});
    expect_error([&] { f->get_float("str", 0); }, fmt, {"'str'"});
    expect_error([&] { f->require_int("missing.key"); }, fmt, {"missing.key"});
    expect_error([&] { f->require_string("missing.key"); }, fmt, {"missing.key"});
    expect_error([&] { f->get_string_array("missing.key"); }, fmt, {"missing.key"});
    expect_error([&] { f->get_string_array("f32s"); }, fmt, {"'f32s'", "FLOAT32"});
    expect_error([&] { f->get_string_array("str"); }, fmt, {"'str'"});
    expect_error([&] { f->get_float_array("strs"); }, fmt, {"'strs'"});
    expect_error([&] { f->get_int32_array("f32s"); }, fmt, {"'f32s'"});
    expect_error([&] { f->get_int32_array("empty_f32s"); }, fmt, {"'empty_f32s'"});
    expect_error([&] { f->get_int32_array("u32_big"); }, fmt, {"'u32_big'", "element 0"});
}

TEST(Gguf, AlignmentIsHonoured) {
    GgufWriter w;
    w.set_alignment(256);
    w.add_tensor_f32("a", {3}, {1, 2, 3});
    w.add_tensor_f32("b", {2}, {4, 5});
    const auto image = w.bytes();
    auto f = File::open_memory(image.data(), image.size());
    EXPECT_EQ(f->alignment(), 256u);
    EXPECT_EQ(f->data_offset() % 256, 0u);
    EXPECT_EQ(f->find_tensor("b")->offset, 256u);
    EXPECT_EQ(read_all(*f, *f->find_tensor("b")), (std::vector<float>{4, 5}));
}

TEST(Gguf, OpenFromDiskAndMissingFile) {
    const std::string path = ::testing::TempDir() + "gguf_open_test.gguf";
    every_type_writer().write_file(path);
    auto f = File::open(path);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(read_all(*f, *f->find_tensor("f32.weight"))[5], -6.0f);
    f.reset();
    // An empty file and a truncated one: MODEL_FORMAT, through the mmap path.
    { std::ofstream(path, std::ios::binary | std::ios::trunc); }
    expect_error([&] { File::open(path); }, FQ_STATUS_MODEL_FORMAT, {path, "too small"});
    const auto image = every_type_writer().bytes();
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char *>(image.data()), 100);
    expect_error([&] { File::open(path); }, FQ_STATUS_MODEL_FORMAT, {path});
    std::remove(path.c_str());
    expect_error([&] { File::open(path); }, FQ_STATUS_NOT_FOUND, {path});
    expect_error([&] { File::open(::testing::TempDir()); }, FQ_STATUS_IO, {});  // a directory
}

}  // namespace
