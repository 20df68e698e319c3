// The quantized-model file through the C ABI, on the real stories260K model: a quantized handle saved with
// fq_model_save_quantized and loaded back with fq_model_load computes bit for bit the same logits and perplexity as
// the handle it was saved from (rtn, rotate, FlatQuant; packed 4-bit, 3-bit and 8-bit codes); the bytes on disk follow
// docs/quantized-model-format.md (codes decoded here by hand from the nibbles, base metadata and tensors kept
// byte for byte); corrupt files, a newer format and bad saves are refused with the documented statuses, and a failed or
// cancelled save leaves no file behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "api/api_internal.h"
#include "core/sha256.h"
#include "flatquant.h"
#include "io/gguf.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace {

using fq::test::TempDir;

void write_file(const std::string &path, const std::string &bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Position of the first byte after the GGUF string `s` (u64 length, then the bytes) in a file image.
size_t after_gguf_string(const std::string &image, const std::string &s) {
    std::string enc(8, '\0');
    const uint64_t n = s.size();
    std::memcpy(&enc[0], &n, 8);
    enc += s;
    const size_t at = image.find(enc);
    return at == std::string::npos ? at : at + enc.size();
}

struct QuantizedFile : ::testing::Test {
    void SetUp() override {
        if (!fq::test::file_exists(fq::test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
        fq_error_init(&err);
        fq_runtime_options ro;
        fq_runtime_options_init(&ro);
        ro.n_threads = 2;
        ASSERT_EQ(fq_runtime_create(&ro, &rt, &err), FQ_STATUS_OK) << err.message;
        ASSERT_EQ(fq_model_load(rt, fq::test::stories_path().c_str(), nullptr, &base, &err), FQ_STATUS_OK)
            << err.message;
        text = fq::test::read_file(fq::test::source_dir() + "/data/wikitext-2-raw/wiki.valid.raw");
        ASSERT_GT(text.size(), 100000u);
        eval_text = text.substr(0, 40000);
        int64_t n = 0;
        ids.resize(402);  // text_len + 2 ids always suffice
        ASSERT_EQ(fq_model_tokenize(base, eval_text.data(), 400, FQ_BOS_DEFAULT, ids.data(), 402, &n, &err),
                  FQ_STATUS_OK) << err.message;
        ids.resize(static_cast<size_t>(std::min<int64_t>(n, 96)));
    }
    void TearDown() override {
        fq_model_free(base);
        fq_runtime_free(rt);
    }
    fq_model *quantize(const char *quant, const char *method, const char *artifact = nullptr) {
        fq_quantize_options qo;
        fq_quantize_options_init(&qo);
        qo.quant = quant;
        qo.method = method;
        qo.artifact = artifact;
        fq_model *m = nullptr;
        EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_OK) << err.message;
        return m;
    }
    int32_t save(const fq_model *m, const std::string &path) {
        return fq_model_save_quantized(m, path.c_str(), nullptr, nullptr, nullptr, &err);
    }
    fq_model *load(const std::string &path, int32_t expect = FQ_STATUS_OK) {
        fq_model *m = reinterpret_cast<fq_model *>(0x1);
        EXPECT_EQ(fq_model_load(rt, path.c_str(), nullptr, &m, &err), expect) << err.message;
        if (expect != FQ_STATUS_OK) {
            EXPECT_EQ(m, nullptr);
        }
        return expect == FQ_STATUS_OK ? m : nullptr;
    }
    std::vector<float> logits(const fq_model *m) {
        std::vector<float> out(ids.size() * static_cast<size_t>(info_of(m).n_vocab));
        EXPECT_EQ(fq_model_logits(m, ids.data(), (int64_t)ids.size(), out.data(), (int64_t)out.size(), &err),
                  FQ_STATUS_OK) << err.message;
        return out;
    }
    double ppl(const fq_model *m) {
        fq_perplexity_options po;
        fq_perplexity_options_init(&po);
        po.seqlen = 128;
        po.max_chunks = 3;
        fq_perplexity_result pr;
        fq_perplexity_result_init(&pr);
        EXPECT_EQ(fq_model_perplexity(m, eval_text.data(), (int64_t)eval_text.size(), &po, &pr, &err), FQ_STATUS_OK)
            << err.message;
        return pr.ppl;
    }
    fq_model_info info_of(const fq_model *m) {
        fq_model_info i;
        fq_model_info_init(&i);
        EXPECT_EQ(fq_model_get_info(m, &i, &err), FQ_STATUS_OK) << err.message;
        return i;
    }
    // Saves m, loads the file and checks the loaded handle against m; returns the loaded handle.
    fq_model *round_trip(const fq_model *m, const std::string &path) {
        EXPECT_EQ(save(m, path), FQ_STATUS_OK) << err.message;
        fq_model *back = load(path);
        if (!back) return nullptr;
        const std::vector<float> a = logits(m), b = logits(back);
        EXPECT_EQ(a.size(), b.size());
        // Bit for bit, not approximately: the file must carry exactly the numbers the forward uses.
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << path;
        EXPECT_EQ(ppl(m), ppl(back)) << path;
        const fq_model_info mi = info_of(m), bi = info_of(back);
        EXPECT_STREQ(bi.quant, mi.quant);
        EXPECT_STREQ(bi.method, mi.method);
        EXPECT_STREQ(bi.weight_quantizer, mi.weight_quantizer);
        EXPECT_EQ(bi.quantized_file, 1);
        EXPECT_STREQ(bi.architecture, mi.architecture);
        EXPECT_EQ(bi.n_layer, mi.n_layer);
        EXPECT_EQ(bi.n_vocab, mi.n_vocab);
        EXPECT_EQ(bi.tied_embeddings, mi.tied_embeddings);
        EXPECT_EQ(bi.bos_id, mi.bos_id);
        EXPECT_EQ(bi.gguf_version, 3);
        EXPECT_EQ(bi.file_bytes, (int64_t)fq::test::read_file(path).size());
        char fp[65];
        EXPECT_EQ(fq_model_fingerprint(back, fp, sizeof fp, &err), FQ_STATUS_OK);
        EXPECT_EQ(std::string(fp), fq::sha256_file_hex(path));  // the handle's file is the quantized-model file
        return back;
    }
    fq_error err;
    fq_runtime *rt = nullptr;
    fq_model *base = nullptr;
    std::string text, eval_text;
    std::vector<int32_t> ids;
};

TEST_F(QuantizedFile, RtnAndRotateRoundTripBitForBit) {
    TempDir dir;
    for (const char *method : {"rtn", "rotate"}) {
        fq_model *m = quantize("w4a4kv4", method);
        ASSERT_NE(m, nullptr);
        EXPECT_EQ(info_of(m).quantized_file, 0);
        const std::string p1 = dir.path + "/" + method + ".gguf", p2 = dir.path + "/" + method + "-again.gguf";
        fq_model *back = round_trip(m, p1);
        ASSERT_NE(back, nullptr);
        EXPECT_STREQ(info_of(back).method, method);
        EXPECT_STREQ(info_of(back).quant, "w4a4kv4");
        // Saved again from the loaded handle: the same model, and the same bytes (the base fingerprint is carried).
        fq_model *again = round_trip(back, p2);
        ASSERT_NE(again, nullptr);
        EXPECT_EQ(logits(again), logits(m));
        EXPECT_TRUE(fq::test::read_file(p1) == fq::test::read_file(p2)) << method;
        // A loaded quantized model is quantized: it cannot be quantized or calibrated again.
        fq_quantize_options qo;
        fq_quantize_options_init(&qo);
        fq_model *twice = nullptr;
        EXPECT_EQ(fq_model_quantize(back, &qo, &twice, &err), FQ_STATUS_INVALID_ARGUMENT);
        fq_model_free(again);
        fq_model_free(back);
        fq_model_free(m);
        std::remove(p1.c_str());
        std::remove(p2.c_str());
    }
    EXPECT_TRUE(dir.files().empty());  // no temporary left by the saves
}

TEST_F(QuantizedFile, OtherWidthsRoundTrip) {
    TempDir dir;
    // 3-bit codes are packed like 4-bit ones; 8-bit codes take a byte each; w4a16 has no K/V quantizers.
    for (const char *quant : {"w3a8kv8", "w8a8", "w4a16"}) {
        fq_model *m = quantize(quant, "rotate");
        ASSERT_NE(m, nullptr);
        fq_model *back = round_trip(m, dir.path + "/" + quant + ".gguf");
        ASSERT_NE(back, nullptr);
        EXPECT_STREQ(info_of(back).quant, quant);
        fq_model_free(back);
        fq_model_free(m);
    }
}

TEST_F(QuantizedFile, FlatQuantGptqArtifactRoundTrip) {
    TempDir dir;
    const std::string artifact = dir.path + "/fq.safetensors";
    fq_calibration_options o;
    fq_calibration_options_init(&o);
    o.quant = "w4a4kv4";
    o.method = "flatquant";
    o.weights = "gptq";  // codes from the artifact (apply_gptq_codes), not RTN
    o.nsamples = 2;
    o.seqlen = 64;
    o.batch = 2;
    o.epochs = 1;
    o.seed = 3;
    fq_calibration_result res;
    fq_calibration_result_init(&res);
    ASSERT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), artifact.c_str(), &o, &res, &err), FQ_STATUS_OK)
        << err.message;
    fq_model *m = quantize(nullptr, nullptr, artifact.c_str());
    ASSERT_NE(m, nullptr);
    // Learned transforms, smoothing folded into the norms, LAC: every part of the format is exercised.
    ASSERT_TRUE(m->quant->layers[0].online.lac);
    ASSERT_TRUE(m->quant->layers[0].online.pa.present());
    ASSERT_TRUE(m->quant->layers[0].online.pk.present());
    fq_model *back = round_trip(m, dir.path + "/fq.gguf");
    ASSERT_NE(back, nullptr);
    EXPECT_STREQ(info_of(back).method, "flatquant");
    EXPECT_STREQ(info_of(back).weight_quantizer, "gptq");
    fq_model_free(back);
    fq_model_free(m);
}

// The bytes on disk, read with the GGUF reader and decoded here by hand, against the in-memory model and the base file.
TEST_F(QuantizedFile, FileHoldsWhatTheFormatSays) {
    TempDir dir;
    fq_model *m = quantize("w4a4kv4", "rotate");
    ASSERT_NE(m, nullptr);
    const std::string path = dir.path + "/q.gguf";
    ASSERT_EQ(save(m, path), FQ_STATUS_OK) << err.message;
    auto f = fq::gguf::File::open(path);
    auto b = fq::gguf::File::open(fq::test::stories_path());
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->get_int("flatquant.format_version", 0), 1);
    EXPECT_EQ(f->find("flatquant.format_version")->type, fq::gguf::ValueType::UINT32);
    EXPECT_EQ(f->get_string("flatquant.quant"), "w4a4kv4");
    EXPECT_EQ(f->get_string("flatquant.method"), "rotate");
    EXPECT_EQ(f->get_string("flatquant.weight_quantizer"), "rtn");
    EXPECT_EQ(f->get_bool("flatquant.lac", true), false);
    EXPECT_EQ(f->get_string("flatquant.base_fingerprint"), fq::sha256_file_hex(fq::test::stories_path()));
    // Every key of the base, with its type and value.
    for (const auto &kv : b->metadata()) {
        const fq::gguf::Value *v = f->find(kv.key);
        ASSERT_NE(v, nullptr) << kv.key;
        EXPECT_EQ(v->type, kv.value.type) << kv.key;
        EXPECT_EQ(v->u, kv.value.u) << kv.key;
        EXPECT_EQ(v->i, kv.value.i) << kv.key;
        EXPECT_EQ(v->str, kv.value.str) << kv.key;
        EXPECT_EQ(v->array.size(), kv.value.array.size()) << kv.key;
        for (size_t k = 0; k < v->array.size() && k < kv.value.array.size(); ++k) {
            EXPECT_EQ(v->array[k].str, kv.value.array[k].str) << kv.key;
            EXPECT_EQ(v->array[k].i, kv.value.array[k].i) << kv.key;
            EXPECT_EQ(std::memcmp(&v->array[k].f, &kv.value.array[k].f, sizeof(double)), 0) << kv.key;
        }
    }
    // The base's non-layer tensors, byte for byte with their type.
    for (const char *name : {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"}) {
        const fq::gguf::TensorInfo *bt = b->find_tensor(name), *ft = f->find_tensor(name);
        ASSERT_EQ(bt == nullptr, ft == nullptr) << name;
        if (!bt) continue;
        EXPECT_EQ(ft->type, bt->type);
        EXPECT_EQ(ft->dims, bt->dims);
        EXPECT_EQ(std::memcmp(f->tensor_data(*ft), b->tensor_data(*bt), bt->n_bytes), 0) << name;
    }
    EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight"), nullptr);  // no full-precision layer weights
    // Every linear of every layer: I8 [in/2][out] nibbles, element 2j low; w = scale * code in FP32.
    const fq::quant::QuantizedModel &qm = *m->quant;
    const fq::ModelConfig &c = m->model->config;
    const char *names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_gate", "ffn_down"};
    for (int32_t l = 0; l < c.n_layer; ++l) {
        for (int lin = 0; lin < 7; ++lin) {
            const std::string p = "blk." + std::to_string(l) + "." + names[lin];
            const fq::gguf::TensorInfo *qt = f->find_tensor(p + ".qweight"), *st = f->find_tensor(p + ".scale");
            ASSERT_NE(qt, nullptr) << p;
            ASSERT_NE(st, nullptr) << p;
            const fq::quant::QuantLinear &ql = qm.layers[l].lin[lin];
            const uint64_t out = ql.scale.size(), in = ql.w.size() / out;
            EXPECT_EQ(fq::gguf::tensor_type_name(qt->type), std::string("I8"));
            ASSERT_EQ(qt->dims, (std::vector<uint64_t>{in / 2, out})) << p;
            ASSERT_EQ(st->type, 0u);
            const uint8_t *codes = f->tensor_data(*qt);
            std::vector<float> scale(out);
            std::memcpy(scale.data(), f->tensor_data(*st), out * sizeof(float));
            for (uint64_t i = 0; i < out; ++i) {
                ASSERT_EQ(scale[i], ql.scale[i]) << p;
                for (uint64_t j = 0; j < in; ++j) {
                    const uint8_t byte = codes[i * (in / 2) + j / 2];
                    const int nib = j % 2 == 0 ? (byte & 0xF) : (byte >> 4);
                    const int code = nib >= 8 ? nib - 16 : nib;
                    ASSERT_EQ(scale[i] * static_cast<float>(code), ql.w[i * in + j]) << p << " [" << i << "][" << j
                                                                                    << "]";
                }
            }
        }
        // rotate: P_a, P_ug, P_d and P_h online; norms as in memory.
        const std::string p = "blk." + std::to_string(l) + ".";
        const fq::quant::LayerTransforms &t = qm.layers[l].online;
        ASSERT_TRUE(t.pa.present());
        const fq::gguf::TensorInfo *left = f->find_tensor(p + "flat.pa.left");
        ASSERT_NE(left, nullptr);
        EXPECT_EQ(left->dims, (std::vector<uint64_t>{(uint64_t)t.pa.n1, (uint64_t)t.pa.n1}));
        EXPECT_EQ(std::memcmp(f->tensor_data(*left), t.pa.left.data(), t.pa.left.size() * 4), 0);
        EXPECT_EQ(f->find_tensor(p + "flat.pd.right") != nullptr, t.pd.present());
        EXPECT_EQ(f->find_tensor(p + "flat.ph") != nullptr, t.ph.present());
        EXPECT_EQ(f->find_tensor(p + "flat.lac"), nullptr);  // no LAC without calibration
        const fq::gguf::TensorInfo *norm = f->find_tensor(p + "attn_norm.weight");
        ASSERT_NE(norm, nullptr);
        EXPECT_EQ(std::memcmp(f->tensor_data(*norm), qm.layers[l].attn_norm.data(), c.n_embd * 4), 0);
    }
    fq_model *back = load(path);
    ASSERT_NE(back, nullptr);
    EXPECT_NE(std::string(info_of(back).weight_types).find("I8"), std::string::npos) << info_of(back).weight_types;
    fq_model_free(back);
    fq_model_free(m);
}

TEST_F(QuantizedFile, CorruptFilesAreRefused) {
    TempDir dir;
    fq_model *m = quantize("w3a8kv8", "rtn");
    ASSERT_NE(m, nullptr);
    const std::string good = dir.path + "/good.gguf", bad = dir.path + "/bad.gguf";
    ASSERT_EQ(save(m, good), FQ_STATUS_OK) << err.message;
    fq_model_free(m);
    const std::string image = fq::test::read_file(good);
    auto f = fq::gguf::File::open(good);
    auto data_at = [&](const std::string &name) {
        const fq::gguf::TensorInfo *t = f->find_tensor(name);
        EXPECT_NE(t, nullptr) << name;
        return static_cast<size_t>(f->data_offset() + t->offset);
    };
    auto expect_refused = [&](const std::string &bytes, int32_t status, const char *named) {
        write_file(bad, bytes);
        load(bad, status);
        if (named) {
            EXPECT_NE(std::string(err.message).find(named), std::string::npos) << err.message;
        }
    };

    // truncated: the data section ends early
    expect_refused(image.substr(0, image.size() * 2 / 3), FQ_STATUS_MODEL_FORMAT, nullptr);
    // a code tensor with a wrong shape: its row dimension halved in the tensor directory
    {
        std::string s = image;
        const size_t at = after_gguf_string(s, "blk.1.ffn_gate.qweight");
        ASSERT_NE(at, std::string::npos);
        uint64_t row = 0;
        std::memcpy(&row, &s[at + 4], 8);
        row /= 2;
        std::memcpy(&s[at + 4], &row, 8);
        expect_refused(s, FQ_STATUS_MODEL_FORMAT, "blk.1.ffn_gate.qweight");
    }
    // a NaN scale
    {
        std::string s = image;
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(&s[data_at("blk.0.attn_k.scale") + 3 * sizeof(float)], &nan, sizeof nan);
        expect_refused(s, FQ_STATUS_MODEL_FORMAT, "blk.0.attn_k.scale");
    }
    // a 3-bit code outside [-4, 3]: the nibble 7
    {
        std::string s = image;
        s[data_at("blk.0.ffn_down.qweight") + 5] = 0x07;
        expect_refused(s, FQ_STATUS_MODEL_FORMAT, "blk.0.ffn_down.qweight");
    }
    // a non-finite transform
    {
        std::string s = image;
        const float inf = std::numeric_limits<float>::infinity();
        std::memcpy(&s[data_at("blk.1.attn_norm.weight")], &inf, sizeof inf);
        expect_refused(s, FQ_STATUS_MODEL_FORMAT, "blk.1.attn_norm.weight");
    }
    // a tensor the format does not define (a scale renamed): the scale is then missing
    {
        std::string s = image;
        const size_t at = after_gguf_string(s, "blk.0.attn_v.scale");
        ASSERT_NE(at, std::string::npos);
        s[at - 1] = 'f';
        expect_refused(s, FQ_STATUS_MODEL_FORMAT, "blk.0.attn_v.scale");
    }
    // a newer format version
    {
        std::string s = image;
        const size_t at = after_gguf_string(s, "flatquant.format_version");
        ASSERT_NE(at, std::string::npos);
        uint32_t type = 0, version = 0;
        std::memcpy(&type, &s[at], 4);
        std::memcpy(&version, &s[at + 4], 4);
        ASSERT_EQ(type, 4u);  // UINT32
        ASSERT_EQ(version, 1u);
        version = 2;
        std::memcpy(&s[at + 4], &version, 4);
        expect_refused(s, FQ_STATUS_UNSUPPORTED, "version 2");
    }
    // the untouched file still loads
    fq_model *ok = load(good);
    fq_model_free(ok);
}

TEST_F(QuantizedFile, BadSavesLeaveNothingBehind) {
    TempDir dir;
    const std::string path = dir.path + "/q.gguf";
    // a full-precision model, NULL arguments
    EXPECT_EQ(save(base, path), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("full precision"), std::string::npos) << err.message;
    fq_model *m = quantize("w4a4kv4", "rtn");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(fq_model_save_quantized(m, nullptr, nullptr, nullptr, nullptr, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(fq_model_save_quantized(nullptr, path.c_str(), nullptr, nullptr, nullptr, &err),
              FQ_STATUS_INVALID_ARGUMENT);
    // 16-bit weights: nothing to pack
    fq_model *w16 = quantize("w16a4", "rtn");
    ASSERT_NE(w16, nullptr);
    EXPECT_EQ(save(w16, path), FQ_STATUS_UNSUPPORTED);
    fq_model_free(w16);
    // a directory that is not there
    EXPECT_EQ(save(m, dir.path + "/missing/q.gguf"), FQ_STATUS_IO);
    EXPECT_TRUE(dir.files().empty());

    // cancelled through the token in the middle of writing: the file that was there stays as it was, no temporary
    write_file(path, "an older file");
    fq_cancel_token *token = nullptr;
    ASSERT_EQ(fq_cancel_token_create(&token, &err), FQ_STATUS_OK);
    struct Seen {
        fq_cancel_token *token;
        int64_t calls = 0, last_done = -1, total = 0;
        bool ordered = true;
    } seen{token};
    auto progress = [](void *user, const char *stage, int64_t done, int64_t total) -> int32_t {
        auto *s = static_cast<Seen *>(user);
        s->ordered = s->ordered && std::strcmp(stage, "save") == 0 && done >= s->last_done && done <= total;
        s->last_done = done;
        s->total = total;
        if (++s->calls == 10) fq_cancel_token_cancel(s->token);
        return 0;
    };
    EXPECT_EQ(fq_model_save_quantized(m, path.c_str(), progress, &seen, token, &err), FQ_STATUS_CANCELLED);
    EXPECT_TRUE(seen.ordered);
    EXPECT_GT(seen.total, 10);
    EXPECT_EQ(fq::test::read_file(path), "an older file");
    EXPECT_EQ(dir.files(), std::vector<std::string>{"q.gguf"});
    // the same save, not cancelled, replaces it; the callback sees every tensor
    fq_cancel_token_reset(token);
    seen = Seen{nullptr};
    auto count = [](void *user, const char *, int64_t done, int64_t total) -> int32_t {
        auto *s = static_cast<Seen *>(user);
        s->calls++;
        s->last_done = done;
        s->total = total;
        return 0;
    };
    ASSERT_EQ(fq_model_save_quantized(m, path.c_str(), count, &seen, token, &err), FQ_STATUS_OK) << err.message;
    EXPECT_EQ(seen.last_done, seen.total);
    EXPECT_EQ(dir.files(), std::vector<std::string>{"q.gguf"});
    fq_model *back = load(path);
    EXPECT_NE(back, nullptr);
    fq_model_free(back);
    fq_cancel_token_free(token);
    fq_model_free(m);
}

}  // namespace
