// The calibration artifact: a save/load round trip reproduces the fake-quantized model exactly (learned transforms,
// clips and GPTQ codes); truncated, corrupt or inconsistent files are refused with MODEL_FORMAT; an artifact of
// another model is refused naming both fingerprints; a failed or cancelled write leaves neither a temporary file nor
// a damaged target.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/artifact.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/reparameterize.h"
#include "support/tiny_llama.h"

namespace fq::quant {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const std::string &p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string &p, const std::string &b) { std::ofstream(p, std::ios::binary) << b; }

int32_t status_of(const std::function<void()> &fn, std::string *message = nullptr) {
    try {
        fn();
    } catch (const Error &e) {
        if (message) *message = e.what();
        return e.status();
    }
    return FQ_STATUS_OK;
}

std::vector<float> all_logits(const QuantizedModel &qm, ThreadPool &pool, const std::vector<int32_t> &tok) {
    const int64_t V = qm.base->config.n_vocab;
    KVCache cache;
    cache.init(qm.base->config, static_cast<int32_t>(tok.size()));
    std::vector<float> out(tok.size() * V);
    quantized_forward(qm, pool, tok.data(), static_cast<int64_t>(tok.size()), cache, LogitsWanted::All,
                      [&](int64_t r0, int64_t rows, const float *lg) {
                          std::copy_n(lg, rows * V, out.data() + r0 * V);
                      });
    return out;
}

class ArtifactTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir = fs::path(::testing::TempDir()) / ("fq_artifact_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir);
        model = test::make_tiny_llama(dims(), 21, (dir / "model_a.bin").string());
        std::mt19937_64 g(22);
        for (int i = 0; i < 400; i++) stream.push_back(static_cast<int32_t>(g() % model->config.n_vocab));
        opts.nsamples = 4;
        opts.seqlen = 16;
        opts.batch = 2;
        opts.epochs = 2;
        windows = sample_windows(stream, opts.nsamples, opts.seqlen, opts.seed);
    }
    void TearDown() override { fs::remove_all(dir); }

    static test::TinyDims dims() {
        test::TinyDims d;
        d.qkv_bias = true;
        return d;
    }
    // Names of the files in dir other than the model stand-ins.
    std::vector<std::string> stray_files() const {
        std::vector<std::string> out;
        for (const auto &e : fs::directory_iterator(dir)) {
            const std::string n = e.path().filename().string();
            if (n.rfind("model_", 0) != 0) out.push_back(n);
        }
        return out;
    }
    CalibrationResult calibrated(const char *bits, WeightQuantizer wq) {
        QuantScheme s;
        s.bits = parse_bits(bits);
        s.weights = wq;
        return calibrate(*model, pool, windows, s, opts, Progress());
    }

    fs::path dir;
    std::unique_ptr<Model> model;
    std::vector<int32_t> stream, windows;
    CalibOptions opts;
    ThreadPool pool{2};
};

TEST_F(ArtifactTest, RoundTripReproducesTheQuantizedModelExactly) {
    const std::vector<int32_t> tok(stream.begin(), stream.begin() + 24);
    for (WeightQuantizer wq : {WeightQuantizer::Rtn, WeightQuantizer::Gptq}) {
        CalibrationResult r = calibrated("w4a4kv4", wq);
        auto qm = build_quantized_model(*model, pool, r, windows, Progress());  // GPTQ fills r.gptq
        ASSERT_EQ(r.gptq.empty(), wq == WeightQuantizer::Rtn);
        const std::string path = (dir / "a.fqcal").string();
        save_artifact(path, r, Progress());
        CalibrationResult back = load_artifact(path, *model);
        EXPECT_EQ(back.scheme.method, r.scheme.method);
        EXPECT_EQ(back.scheme.weights, wq);
        EXPECT_EQ(bits_name(back.scheme.bits), "w4a4kv4");
        EXPECT_EQ(back.options.flat_lr, r.options.flat_lr);
        EXPECT_EQ(back.options.seqlen, r.options.seqlen);
        EXPECT_EQ(back.data_sha256, r.data_sha256);
        EXPECT_EQ(back.epoch_mse, r.epoch_mse);
        for (size_t l = 0; l < r.layers.size(); l++) {
            EXPECT_EQ(back.layers[l].pa.left_inv_t, r.layers[l].pa.left_inv_t);
            EXPECT_EQ(back.layers[l].pd.diag, r.layers[l].pd.diag);
            EXPECT_EQ(back.layers[l].pv.m, r.layers[l].pv.m);
            EXPECT_EQ(back.layers[l].lwc[kLinDown], r.layers[l].lwc[kLinDown]);
            EXPECT_EQ(back.layers[l].lac_v, r.layers[l].lac_v);
        }
        auto qm2 = build_quantized_model(*model, pool, back, {}, Progress());  // no data needed: codes are stored
        EXPECT_EQ(all_logits(*qm, pool, tok), all_logits(*qm2, pool, tok));
        EXPECT_TRUE(stray_files() == std::vector<std::string>{"a.fqcal"});
    }
}

TEST_F(ArtifactTest, EveryMethodRoundTrips) {
    for (const char *method : {"rtn", "rotate"}) {
        QuantScheme s;
        s.bits = parse_bits("w4a8kv8");
        s.method = parse_method(method);
        CalibrationResult r = calibrate(*model, pool, {}, s, opts, Progress());
        const std::string path = (dir / (std::string(method) + ".fqcal")).string();
        save_artifact(path, r);
        CalibrationResult back = load_artifact(path, *model);
        EXPECT_EQ(back.scheme.method, s.method);
        EXPECT_EQ(back.layers[1].pug.right, r.layers[1].pug.right) << method;
        EXPECT_EQ(back.layers[1].pk.m_inv_t, r.layers[1].pk.m_inv_t) << method;
        const std::vector<int32_t> tok(stream.begin(), stream.begin() + 10);
        EXPECT_EQ(all_logits(*build_quantized_model(*model, pool, r, {}, Progress()), pool, tok),
                  all_logits(*build_quantized_model(*model, pool, back, {}, Progress()), pool, tok));
    }
}

TEST_F(ArtifactTest, TruncatedOrCorruptFilesAreRefused) {
    CalibrationResult r = calibrated("w4a4kv4", WeightQuantizer::Rtn);
    const std::string good_path = (dir / "good.fqcal").string(), bad = (dir / "bad.fqcal").string();
    save_artifact(good_path, r);
    const std::string good = read_bytes(good_path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | static_cast<uint8_t>(good[i]);
    const std::string header = good.substr(8, n);
    auto expect_refused = [&](const std::string &bytes, int32_t status, const char *what) {
        write_bytes(bad, bytes);
        std::string msg;
        EXPECT_EQ(status_of([&] { load_artifact(bad, *model); }, &msg), status) << what << ": " << msg;
    };
    for (size_t len : {size_t(0), size_t(5), size_t(8), size_t(8 + n / 2), size_t(8 + n), good.size() - 1})
        expect_refused(good.substr(0, len), FQ_STATUS_MODEL_FORMAT, "truncated");
    expect_refused(good + "xx", FQ_STATUS_MODEL_FORMAT, "trailing bytes");
    std::string huge = good;
    huge[7] = '\x7f';
    expect_refused(huge, FQ_STATUS_MODEL_FORMAT, "header length");
    std::string json_bad = good;
    json_bad[8] = '[';
    expect_refused(json_bad, FQ_STATUS_MODEL_FORMAT, "JSON");
    auto with_header = [&](std::string h) {
        h.resize(n, ' ');
        return good.substr(0, 8) + h + good.substr(8 + n);
    };
    std::string h = header;
    const size_t shape_at = h.find("\"shape\":[4,4]");
    ASSERT_NE(shape_at, std::string::npos);
    h.replace(shape_at, 13, "\"shape\":[4,3]");
    expect_refused(with_header(h), FQ_STATUS_MODEL_FORMAT, "shape vs offsets");
    h = header;
    h.replace(h.find("\"F32\""), 5, "\"F16\"");
    expect_refused(with_header(h), FQ_STATUS_MODEL_FORMAT, "dtype");
    h = header;
    h.replace(h.find("flatquant-calibration"), 21, "flatquant-calibratiox");
    expect_refused(with_header(h), FQ_STATUS_MODEL_FORMAT, "format");
    h = header;
    h.replace(h.find("\"format_version\":\"1\""), 20, "\"format_version\":\"2\"");
    expect_refused(with_header(h), FQ_STATUS_UNSUPPORTED, "version");
    h = header;
    h.replace(h.find("\"n_embd\":\"16\""), 13, "\"n_embd\":\"17\"");
    expect_refused(with_header(h), FQ_STATUS_MODEL_FORMAT, "dimensions vs tensors");
    h = header;
    h.replace(h.find("ln_trans.matrix_left\""), 21, "ln_trans.matrix_lefx\"");
    expect_refused(with_header(h), FQ_STATUS_MODEL_FORMAT, "unknown tensor name");
    std::string nan_data = good;
    const float qnan = std::nanf("");
    std::memcpy(&nan_data[8 + n], &qnan, 4);
    expect_refused(nan_data, FQ_STATUS_MODEL_FORMAT, "NaN");
    EXPECT_EQ(status_of([&] { load_artifact((dir / "missing.fqcal").string(), *model); }), FQ_STATUS_NOT_FOUND);
    EXPECT_EQ(status_of([&] { load_artifact(good_path, *model); }), FQ_STATUS_OK);
}

TEST_F(ArtifactTest, AnArtifactOfAnotherModelIsRefusedNamingBothFingerprints) {
    CalibrationResult r = calibrated("w4a4kv4", WeightQuantizer::Rtn);
    const std::string path = (dir / "a.fqcal").string();
    save_artifact(path, r);
    auto other = test::make_tiny_llama(dims(), 99, (dir / "model_b.bin").string());
    std::string msg;
    EXPECT_EQ(status_of([&] { load_artifact(path, *other); }, &msg), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(msg.find(model->fingerprint()), std::string::npos) << msg;
    EXPECT_NE(msg.find(other->fingerprint()), std::string::npos) << msg;
    // Same file, other shape: refused too.
    test::TinyDims d = dims();
    d.n_layer = 3;
    auto reshaped = test::make_tiny_llama(d, 21, (dir / "model_c.bin").string());
    ASSERT_EQ(reshaped->fingerprint(), model->fingerprint());
    EXPECT_EQ(status_of([&] { load_artifact(path, *reshaped); }), FQ_STATUS_INVALID_ARGUMENT);
    // A calibration result is checked the same way when it is turned into a quantized model.
    EXPECT_EQ(status_of([&] { build_quantized_model(*other, pool, r, {}, Progress()); }), FQ_STATUS_INVALID_ARGUMENT);
}

TEST_F(ArtifactTest, FailedOrCancelledWritesLeaveNoTemporaryFile) {
    CalibrationResult r = calibrated("w4a4kv4", WeightQuantizer::Rtn);
    const std::string path = (dir / "a.fqcal").string();
    save_artifact(path, r);
    const std::string before = read_bytes(path);
    fq_cancel_token token;
    token.cancelled = true;
    EXPECT_EQ(status_of([&] { save_artifact(path, r, Progress(nullptr, nullptr, &token)); }), FQ_STATUS_CANCELLED);
    EXPECT_TRUE(stray_files() == std::vector<std::string>{"a.fqcal"});
    EXPECT_EQ(read_bytes(path), before);  // the old artifact is untouched
    // Cancelled half-way through the tensors by the progress callback (called once per tensor).
    int calls = 0;
    auto cancel_at_5 = [](void *user, const char *stage, int64_t, int64_t) -> int32_t {
        EXPECT_STREQ(stage, "save");
        return ++*static_cast<int *>(user) >= 5 ? 1 : 0;
    };
    EXPECT_EQ(status_of([&] { save_artifact((dir / "b.fqcal").string(), r, Progress(cancel_at_5, &calls, nullptr)); }),
              FQ_STATUS_CANCELLED);
    EXPECT_EQ(calls, 5);
    EXPECT_FALSE(fs::exists(dir / "b.fqcal"));
    // Failed writes: a missing directory, and a target that cannot be replaced (a directory).
    EXPECT_EQ(status_of([&] { save_artifact((dir / "no" / "such.fqcal").string(), r); }), FQ_STATUS_IO);
    fs::create_directories(dir / "blocked.fqcal" / "inside");
    EXPECT_EQ(status_of([&] { save_artifact((dir / "blocked.fqcal").string(), r); }), FQ_STATUS_IO);
    std::vector<std::string> left = stray_files();
    std::sort(left.begin(), left.end());
    EXPECT_TRUE((left == std::vector<std::string>{"a.fqcal", "blocked.fqcal"})) << left.size();
}

}  // namespace
}  // namespace fq::quant
