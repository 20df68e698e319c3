// The quantization part of the C ABI (fq_calibrate, fq_model_quantize) as a caller sees it, on the real stories260K
// model: a calibrated artifact reproduces, through the ABI, exactly the perplexity of the same calibration done in
// C++ (quant::calibrate -> build_quantized_model -> quantized forward); rtn/rotate need no artifact; a wrong-model,
// corrupt or mismatched artifact is refused with a clear error; cancellation leaves nothing behind; a quantized
// model outlives its base handle and serves sessions.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "eval/perplexity.h"
#include "flatquant.h"
#include "model/model.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/fakequant_forward.h"
#include "quant/reparameterize.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace {

using fq::test::TempDir;

std::string wikitext_valid() {
    return fq::test::read_file(fq::test::source_dir() + "/data/wikitext-2-raw/wiki.valid.raw");
}

// Small settings: 4 windows of 64 tokens, 2 epochs, batch 2 (enough for the loss to move, fast on 2 cores).
fq_calibration_options small_options(const char *method, const char *weights = "rtn") {
    fq_calibration_options o;
    fq_calibration_options_init(&o);
    o.quant = "w4a4kv4";
    o.method = method;
    o.weights = weights;
    o.nsamples = 4;
    o.seqlen = 64;
    o.batch = 2;
    o.epochs = 2;
    o.seed = 7;
    return o;
}

struct QuantAbi : ::testing::Test {
    void SetUp() override {
        if (!fq::test::file_exists(fq::test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
        fq_error_init(&err);
        fq_runtime_options ro;
        fq_runtime_options_init(&ro);
        ro.n_threads = 2;
        ASSERT_EQ(fq_runtime_create(&ro, &rt, &err), FQ_STATUS_OK) << err.message;
        ASSERT_EQ(fq_model_load(rt, fq::test::stories_path().c_str(), nullptr, &base, &err), FQ_STATUS_OK)
            << err.message;
        text = wikitext_valid();
        ASSERT_FALSE(text.empty());
        eval_text = text.substr(0, 60000);
    }
    void TearDown() override {
        fq_model_free(quantized);
        fq_model_free(base);
        fq_runtime_free(rt);
    }
    double ppl(const fq_model *m, int32_t seqlen = 128, int64_t chunks = 4) {
        fq_perplexity_options po;
        fq_perplexity_options_init(&po);
        po.seqlen = seqlen;
        po.max_chunks = chunks;
        fq_perplexity_result pr;
        fq_perplexity_result_init(&pr);
        EXPECT_EQ(fq_model_perplexity(m, eval_text.data(), (int64_t)eval_text.size(), &po, &pr, &err), FQ_STATUS_OK)
            << err.message;
        return pr.ppl;
    }
    fq_model *quantize(const char *artifact, const char *quant = nullptr, const char *method = nullptr) {
        fq_quantize_options qo;
        fq_quantize_options_init(&qo);
        qo.artifact = artifact;
        qo.quant = quant;
        qo.method = method;
        fq_model *m = nullptr;
        EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_OK) << err.message;
        return m;
    }
    fq_error err;
    fq_runtime *rt = nullptr;
    fq_model *base = nullptr, *quantized = nullptr;
    std::string text, eval_text;
};

// The in-process reference: the same calibration through the C++ pipeline, evaluated with the fake-quantized forward.
double reference_ppl(const std::string &calib_text, const std::string &eval_text, const fq_calibration_options &o) {
    using namespace fq;
    auto model = load_gguf_model(test::stories_path(), {});
    ThreadPool pool(2);
    quant::QuantScheme scheme;
    scheme.bits = quant::parse_bits(o.quant);
    scheme.method = quant::parse_method(o.method);
    scheme.weights = quant::parse_weight_quantizer(o.weights);
    quant::CalibOptions c;
    c.nsamples = o.nsamples;
    c.seqlen = o.seqlen;
    c.batch = o.batch;
    c.epochs = o.epochs;
    c.seed = o.seed;
    const auto windows = quant::calibration_windows(*model, calib_text, c);
    auto r = quant::calibrate(*model, pool, windows, scheme, c, Progress());
    auto qm = quant::build_quantized_model(*model, pool, r, windows, Progress());
    const auto ids = model->tokenizer->encode(eval_text, model->tokenizer->add_bos_default());
    const auto fwd = windows_forward_fn(model->config, quant::quantized_forward_fn(*qm, pool));
    return perplexity(model->config, windows_score_fn(model->config, fwd), ids, 128, 4, Progress()).ppl;
}

TEST_F(QuantAbi, CalibratedArtifactReproducesTheInProcessPipeline) {
    TempDir dir;
    const std::string path = dir.path + "/stories.flatquant.safetensors";
    fq_calibration_options o = small_options("flatquant");
    struct Log {
        std::vector<fq_calibration_event> events;
    } log;
    o.log = [](void *user, const fq_calibration_event *e) { static_cast<Log *>(user)->events.push_back(*e); };
    o.log_user_data = &log;
    fq_calibration_result res;
    fq_calibration_result_init(&res);
    ASSERT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), path.c_str(), &o, &res, &err), FQ_STATUS_OK)
        << err.message;
    EXPECT_EQ(res.on_gpu, 0);
    EXPECT_EQ(res.n_windows, 4);
    EXPECT_GT(res.n_tokens, 64);
    EXPECT_GT(res.final_mse, 0.0);
    EXPECT_TRUE(std::isfinite(res.final_mse));
    fq_model_info bi;
    fq_model_info_init(&bi);
    ASSERT_EQ(fq_model_get_info(base, &bi, &err), FQ_STATUS_OK);
    ASSERT_EQ(log.events.size(), static_cast<size_t>(bi.n_layer) * 2);  // every layer, every epoch
    EXPECT_EQ(log.events.back().layer, bi.n_layer - 1);
    EXPECT_EQ(log.events.back().epoch, 2);
    EXPECT_EQ(dir.files(), std::vector<std::string>{"stories.flatquant.safetensors"});  // no temporary left

    quantized = quantize(path.c_str());
    ASSERT_NE(quantized, nullptr);
    fq_model_info qi;
    fq_model_info_init(&qi);
    ASSERT_EQ(fq_model_get_info(quantized, &qi, &err), FQ_STATUS_OK);
    EXPECT_STREQ(qi.quant, "w4a4kv4");
    EXPECT_STREQ(qi.method, "flatquant");
    EXPECT_STREQ(qi.weight_quantizer, "rtn");
    EXPECT_STREQ(bi.quant, "");
    const double via_abi = ppl(quantized);
    const double reference = reference_ppl(text, eval_text, o);
    // Same data, seed and thread count: calibration is deterministic, and the artifact stores FP32 exactly.
    EXPECT_EQ(via_abi, reference);
    EXPECT_GT(via_abi, ppl(base));
}

TEST_F(QuantAbi, RtnAndRotateNeedNoArtifactAndAgreeWithTheirArtifacts) {
    TempDir dir;
    for (const char *method : {"rtn", "rotate"}) {
        fq_model *direct = quantize(nullptr, "w4a4kv4", method);
        ASSERT_NE(direct, nullptr);
        const std::string path = dir.path + "/" + method + ".safetensors";
        fq_calibration_options o = small_options(method);
        o.seed = 0;
        fq_calibration_result res;
        fq_calibration_result_init(&res);
        // rtn/rotate with RTN weights need no data: an empty text is fine.
        ASSERT_EQ(fq_calibrate(base, nullptr, 0, path.c_str(), &o, &res, &err), FQ_STATUS_OK) << err.message;
        EXPECT_EQ(res.n_windows, 0);
        fq_model *from_file = quantize(path.c_str(), "w4a4kv4", method);
        ASSERT_NE(from_file, nullptr);
        EXPECT_EQ(ppl(direct), ppl(from_file)) << method;
        fq_model_free(direct);
        fq_model_free(from_file);
    }
}

TEST_F(QuantAbi, RefusesWhatDoesNotFit) {
    TempDir dir;
    const std::string path = dir.path + "/rtn.safetensors";
    fq_calibration_options o = small_options("rtn");
    fq_calibration_result res;
    fq_calibration_result_init(&res);
    ASSERT_EQ(fq_calibrate(base, nullptr, 0, path.c_str(), &o, &res, &err), FQ_STATUS_OK) << err.message;

    fq_quantize_options qo;
    fq_quantize_options_init(&qo);
    fq_model *m = reinterpret_cast<fq_model *>(0x1);
    // flatquant needs an artifact
    qo.method = "flatquant";
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(std::string(err.message).find("artifact"), std::string::npos) << err.message;
    // unknown names
    qo.method = "awq";
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    qo.method = nullptr;
    qo.quant = "w4a5kv4x";
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    // names that contradict the artifact
    qo.artifact = path.c_str();
    qo.quant = "w4a16";
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("w4a4kv4"), std::string::npos) << err.message;
    qo.quant = nullptr;
    qo.method = "rotate";
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    // a missing or truncated artifact
    qo.method = nullptr;
    const std::string missing = dir.path + "/none.safetensors";
    qo.artifact = missing.c_str();
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_NOT_FOUND);
    const std::string bytes = fq::test::read_file(path);
    const std::string cut = dir.path + "/cut.safetensors";
    std::ofstream(cut, std::ios::binary).write(bytes.data(), (std::streamsize)(bytes.size() / 2));
    qo.artifact = cut.c_str();
    EXPECT_EQ(fq_model_quantize(base, &qo, &m, &err), FQ_STATUS_MODEL_FORMAT) << err.message;

    // an artifact of another model: the same file with one mantissa bit of its last weight flipped
    std::string other = fq::test::read_file(fq::test::stories_path());
    other[other.size() - 4] ^= 1;
    const std::string other_path = dir.path + "/other.gguf";
    std::ofstream(other_path, std::ios::binary).write(other.data(), (std::streamsize)other.size());
    fq_model *other_model = nullptr;
    ASSERT_EQ(fq_model_load(rt, other_path.c_str(), nullptr, &other_model, &err), FQ_STATUS_OK) << err.message;
    qo.artifact = path.c_str();
    EXPECT_EQ(fq_model_quantize(other_model, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("fingerprint"), std::string::npos) << err.message;
    fq_model_free(other_model);

    // quantizing or calibrating a quantized model
    quantized = quantize(path.c_str());
    ASSERT_NE(quantized, nullptr);
    qo.artifact = nullptr;
    EXPECT_EQ(fq_model_quantize(quantized, &qo, &m, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(fq_calibrate(quantized, nullptr, 0, (dir.path + "/x").c_str(), &o, &res, &err),
              FQ_STATUS_INVALID_ARGUMENT);
}

TEST_F(QuantAbi, CalibrationInputErrorsAndCancellationLeaveNothingBehind) {
    TempDir dir;
    const std::string path = dir.path + "/a.safetensors";
    fq_calibration_options o = small_options("flatquant");
    fq_calibration_result res;
    fq_calibration_result_init(&res);
    // flatquant without text
    EXPECT_EQ(fq_calibrate(base, "", 0, path.c_str(), &o, &res, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("empty"), std::string::npos) << err.message;
    // a text shorter than one window
    EXPECT_EQ(fq_calibrate(base, "Once upon a time", 16, path.c_str(), &o, &res, &err), FQ_STATUS_INVALID_ARGUMENT);
    // a directory that is not there, checked before any work
    const std::string nowhere = dir.path + "/no/such/dir/a.safetensors";
    EXPECT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), nowhere.c_str(), &o, &res, &err),
              FQ_STATUS_NOT_FOUND);
    // options out of range
    fq_calibration_options bad = o;
    bad.batch = 8;  // more than nsamples
    EXPECT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), path.c_str(), &bad, &res, &err),
              FQ_STATUS_INVALID_ARGUMENT);
    bad = o;
    bad.weights = "awq";
    EXPECT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), path.c_str(), &bad, &res, &err),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(dir.files().empty());

    // cancelled from the progress callback in the middle of calibration: CANCELLED, no artifact, no temporary
    struct Stop {
        int64_t seen = 0;
    } stop;
    o.progress = [](void *user, const char *stage, int64_t, int64_t) -> int32_t {
        auto *s = static_cast<Stop *>(user);
        return std::strcmp(stage, "calibrate") == 0 && ++s->seen > 3 ? 1 : 0;
    };
    o.progress_user_data = &stop;
    EXPECT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), path.c_str(), &o, &res, &err),
              FQ_STATUS_CANCELLED);
    EXPECT_TRUE(dir.files().empty());
    // cancelled while saving: the old artifact stays as it was
    fq_calibration_options rtn = small_options("rtn");
    ASSERT_EQ(fq_calibrate(base, nullptr, 0, path.c_str(), &rtn, &res, &err), FQ_STATUS_OK) << err.message;
    const std::string before = fq::test::read_file(path);
    rtn.method = "rotate";
    rtn.progress = [](void *, const char *stage, int64_t, int64_t) -> int32_t {
        return std::strcmp(stage, "save") == 0 ? 1 : 0;
    };
    EXPECT_EQ(fq_calibrate(base, nullptr, 0, path.c_str(), &rtn, &res, &err), FQ_STATUS_CANCELLED);
    EXPECT_EQ(fq::test::read_file(path), before);
    EXPECT_EQ(dir.files(), std::vector<std::string>{"a.safetensors"});
}

TEST_F(QuantAbi, QuantizedModelOutlivesItsBaseAndServesSessions) {
    quantized = quantize(nullptr, "w4a4kv4", "rtn");
    ASSERT_NE(quantized, nullptr);
    const double before = ppl(quantized);
    fq_model_free(base);  // allowed: the quantized model keeps the base's weights and tokenizer alive
    base = nullptr;
    EXPECT_EQ(ppl(quantized), before);

    // A session decodes the same logits as the whole-sequence forward (the K/V cache holds quantized values, which
    // is exact for per-token quantizers).
    std::vector<int32_t> ids(40);
    int64_t n = 0;
    ASSERT_EQ(fq_model_tokenize(quantized, eval_text.data(), 400, FQ_BOS_DEFAULT, ids.data(), (int64_t)ids.size(), &n,
                                &err),
              FQ_STATUS_BUFFER_TOO_SMALL);
    ids.resize((size_t)n);
    ASSERT_EQ(fq_model_tokenize(quantized, eval_text.data(), 400, FQ_BOS_DEFAULT, ids.data(), n, &n, &err),
              FQ_STATUS_OK);
    fq_model_info info;
    fq_model_info_init(&info);
    ASSERT_EQ(fq_model_get_info(quantized, &info, &err), FQ_STATUS_OK);
    const int64_t V = info.n_vocab;
    std::vector<float> all((size_t)(n * V)), last((size_t)V);
    ASSERT_EQ(fq_model_logits(quantized, ids.data(), n, all.data(), (int64_t)all.size(), &err), FQ_STATUS_OK);
    fq_session *s = nullptr;
    ASSERT_EQ(fq_session_create(quantized, nullptr, &s, &err), FQ_STATUS_OK) << err.message;
    ASSERT_EQ(fq_session_decode(s, ids.data(), n - 5, nullptr, 0, &err), FQ_STATUS_OK) << err.message;
    for (int64_t i = n - 5; i < n; ++i)
        ASSERT_EQ(fq_session_decode(s, ids.data() + i, 1, last.data(), V, &err), FQ_STATUS_OK) << err.message;
    double max_diff = 0, scale = 0;
    for (int64_t j = 0; j < V; ++j) {
        max_diff = std::max(max_diff, (double)std::fabs(last[(size_t)j] - all[(size_t)((n - 1) * V + j)]));
        scale = std::max(scale, (double)std::fabs(all[(size_t)((n - 1) * V + j)]));
    }
    EXPECT_LT(max_diff, 1e-3 * std::max(1.0, scale));
    fq_session_free(s);
}

}  // namespace

namespace {

// GPTQ on top of an existing calibration (base_artifact) equals calibrating with GPTQ weights in one go: the
// transforms are the same learned ones and GPTQ sees the same windows.
TEST_F(QuantAbi, GptqFromABaseArtifactEqualsGptqInOneGo) {
    TempDir dir;
    const std::string a = dir.path + "/fq.safetensors", b = dir.path + "/fq-gptq-from-a.safetensors",
                      c = dir.path + "/fq-gptq.safetensors";
    fq_calibration_result res;
    fq_calibration_result_init(&res);
    fq_calibration_options o = small_options("flatquant");
    ASSERT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), a.c_str(), &o, &res, &err), FQ_STATUS_OK)
        << err.message;
    const double trained_mse = res.final_mse;
    fq_calibration_options g = small_options("flatquant", "gptq");
    ASSERT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), c.c_str(), &g, &res, &err), FQ_STATUS_OK)
        << err.message;
    fq_calibration_options from = small_options(nullptr, "gptq");
    from.quant = nullptr;
    from.nsamples = 1;  // ignored: the artifact's windows are used
    from.base_artifact = a.c_str();
    ASSERT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), b.c_str(), &from, &res, &err), FQ_STATUS_OK)
        << err.message;
    EXPECT_EQ(res.final_mse, trained_mse);  // the kept transforms' loss: nothing was trained again
    fq_model *mb = quantize(b.c_str()), *mc = quantize(c.c_str());
    ASSERT_NE(mb, nullptr);
    ASSERT_NE(mc, nullptr);
    fq_model_info info;
    fq_model_info_init(&info);
    ASSERT_EQ(fq_model_get_info(mb, &info, &err), FQ_STATUS_OK);
    EXPECT_STREQ(info.weight_quantizer, "gptq");
    EXPECT_EQ(ppl(mb), ppl(mc));
    fq_model_free(mb);
    fq_model_free(mc);

    // Another text gives other windows: refused, naming both data hashes.
    const std::string other = text.substr(text.size() / 2);
    EXPECT_EQ(fq_calibrate(base, other.data(), (int64_t)other.size(), b.c_str(), &from, &res, &err),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("sha256"), std::string::npos) << err.message;
    // RTN weights from a base artifact would be a copy: refused.
    from.weights = "rtn";
    EXPECT_EQ(fq_calibrate(base, text.data(), (int64_t)text.size(), b.c_str(), &from, &res, &err),
              FQ_STATUS_INVALID_ARGUMENT);
}

}  // namespace
