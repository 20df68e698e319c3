// GPU sessions and quantized-model files through the C ABI on SmolLM2-135M (a real model whose shapes the GPU
// engines cover: 9 query heads over 3 KV heads of 64). Skipped without a CUDA device or without the model
// (FQ_SMOLLM2_GGUF or the cache, support/paths.h).
//
//   - a full-precision model: sessions run the FP16 engine; a prompt's last logits equal the FP32 whole-sequence
//     evaluation within FP16 rounding, and greedy steps pick its argmax;
//   - a quantized model (rotation, w4a4kv4): fq_model_quantize's handle evaluates fake-quantized and serves sessions
//     with the W4A4 engine; saved as a quantized-model file and loaded again, it evaluates with the W4A4 engine too,
//     and that perplexity is close to the fake-quantized one (the precise 1% check with a FlatQuant calibration is
//     benchmarks/native/bench_engine.cu's; rotation alone leaves a W4A4 model near chance, where FP16 noise in the
//     quantizers' inputs moves the perplexity more);
//   - session steps of the W4A4 engine agree with its whole-sequence evaluation (the prompt row);
//   - a batch session of two prompts gives each the logits of its own session.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "flatquant.h"
#include "support/paths.h"

namespace {

struct Handles {
    fq_runtime *rt = nullptr;
    std::vector<fq_model *> models;
    std::vector<fq_session *> sessions;
    ~Handles() {
        for (fq_session *s : sessions) fq_session_free(s);
        for (auto it = models.rbegin(); it != models.rend(); ++it) fq_model_free(*it);
        fq_runtime_free(rt);
    }
};

#define ASSERT_FQ_OK(call)                                           \
    do {                                                             \
        fq_error err_{};                                             \
        err_.struct_size = sizeof(err_);                             \
        const int32_t st_ = (call);                                  \
        (void)err_;                                                  \
        ASSERT_EQ(st_, FQ_STATUS_OK) << #call;                       \
    } while (0)

fq_model_info info_of(const fq_model *m) {
    fq_model_info i;
    fq_model_info_init(&i);
    EXPECT_EQ(fq_model_get_info(m, &i, nullptr), FQ_STATUS_OK);
    return i;
}

std::vector<int32_t> tokenize(const fq_model *m, const std::string &text) {
    std::vector<int32_t> ids(text.size() + 2);
    int64_t n = 0;
    EXPECT_EQ(fq_model_tokenize(m, text.data(), static_cast<int64_t>(text.size()), FQ_BOS_DEFAULT, ids.data(),
                                static_cast<int64_t>(ids.size()), &n, nullptr),
              FQ_STATUS_OK);
    ids.resize(static_cast<size_t>(n));
    return ids;
}

int argmax(const float *row, int n) { return static_cast<int>(std::max_element(row, row + n) - row); }

double rel_rms(const float *a, const float *b, int n) {
    double d = 0.0, r = 0.0;
    for (int i = 0; i < n; ++i) d += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]), r += a[i] * (double)a[i];
    return std::sqrt(d / r);
}

// Greedy decode of `steps` tokens after the prompt through a session; returns prompt + generated ids.
std::vector<int32_t> greedy(fq_session *s, std::vector<int32_t> ids, int steps, int V, std::vector<float> *last) {
    std::vector<float> logits(static_cast<size_t>(V));
    EXPECT_EQ(fq_session_decode(s, ids.data(), static_cast<int64_t>(ids.size()), logits.data(), V, nullptr),
              FQ_STATUS_OK);
    if (last) *last = logits;
    for (int i = 0; i < steps; ++i) {
        const int32_t next = argmax(logits.data(), V);
        ids.push_back(next);
        EXPECT_EQ(fq_session_decode(s, &next, 1, logits.data(), V, nullptr), FQ_STATUS_OK);
    }
    return ids;
}

double perplexity(const fq_model *m, const std::string &text) {
    fq_perplexity_options o;
    fq_perplexity_options_init(&o);
    o.seqlen = 1024;
    o.max_chunks = 4;
    fq_perplexity_result r;
    fq_perplexity_result_init(&r);
    EXPECT_EQ(fq_model_perplexity(m, text.data(), static_cast<int64_t>(text.size()), &o, &r, nullptr), FQ_STATUS_OK);
    return r.ppl;
}

TEST(CudaApiSessions, FullPrecisionAndW4a4SessionsOnSmolLM2) {
    if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const std::string path = fq::test::smollm2_path();
    if (path.empty()) GTEST_SKIP() << "SmolLM2-135M not available (FQ_SMOLLM2_GGUF)";
    Handles h;
    fq_runtime_options ro;
    fq_runtime_options_init(&ro);
    ro.device = 0;
    ASSERT_FQ_OK(fq_runtime_create(&ro, &h.rt, nullptr));
    fq_model *fp = nullptr;
    ASSERT_FQ_OK(fq_model_load(h.rt, path.c_str(), nullptr, &fp, nullptr));
    h.models.push_back(fp);
    fq_model_info fi = info_of(fp);
    EXPECT_STREQ(fi.eval_engine, "cuda-fp32");
    EXPECT_STREQ(fi.session_engine, "cuda-fp16");
    const int V = fi.n_vocab;

    const std::vector<int32_t> prompt = tokenize(fp, "The capital of France is Paris. The capital of Germany is");
    const int P = static_cast<int>(prompt.size());
    {
        fq_session *s = nullptr;
        ASSERT_FQ_OK(fq_session_create(fp, nullptr, &s, nullptr));
        h.sessions.push_back(s);
        std::vector<float> last;
        const std::vector<int32_t> ids = greedy(s, prompt, 8, V, &last);
        std::vector<float> whole(static_cast<size_t>(ids.size()) * V);
        ASSERT_FQ_OK(fq_model_logits(fp, ids.data(), static_cast<int64_t>(ids.size()), whole.data(),
                                     static_cast<int64_t>(whole.size()), nullptr));
        const double d = rel_rms(last.data(), whole.data() + static_cast<size_t>(P - 1) * V, V);
        std::printf("FP16 session vs FP32 evaluation, last prompt row: rms diff %.2e relative\n", d);
        EXPECT_LT(d, 2e-2);
        int agree = 0;
        for (size_t i = P; i < ids.size(); ++i) agree += argmax(&whole[(i - 1) * V], V) == ids[i];
        EXPECT_GE(agree, 7) << "greedy FP16 steps against the FP32 argmax";
        int64_t pos = 0;
        ASSERT_FQ_OK(fq_session_position(s, &pos, nullptr));
        EXPECT_EQ(pos, static_cast<int64_t>(ids.size()));
    }

    fq_quantize_options qo;
    fq_quantize_options_init(&qo);
    qo.method = "rotate";
    qo.quant = "w4a4kv4";
    fq_model *fake = nullptr;
    ASSERT_FQ_OK(fq_model_quantize(fp, &qo, &fake, nullptr));
    h.models.push_back(fake);
    fq_model_info qi = info_of(fake);
    EXPECT_STREQ(qi.eval_engine, "cuda-fakequant");
    EXPECT_STREQ(qi.session_engine, "cuda-w4a4");

    const std::string file = ::testing::TempDir() + "fq_smollm2_rotate_w4a4kv4.gguf";
    ASSERT_FQ_OK(fq_model_save_quantized(fake, file.c_str(), nullptr, nullptr, nullptr, nullptr));
    fq_model *real = nullptr;
    ASSERT_FQ_OK(fq_model_load(h.rt, file.c_str(), nullptr, &real, nullptr));
    h.models.push_back(real);
    fq_model_info ri = info_of(real);
    EXPECT_EQ(ri.quantized_file, 1);
    EXPECT_STREQ(ri.quant, "w4a4kv4");
    EXPECT_STREQ(ri.eval_engine, "cuda-w4a4");
    EXPECT_STREQ(ri.session_engine, "cuda-w4a4");

    const std::string text = fq::test::read_file(fq::test::source_dir() + "/data/wikitext-2-raw/wiki.test.raw");
    const double p_fake = perplexity(fake, text), p_real = perplexity(real, text), p_fp = perplexity(fp, text);
    std::printf("perplexity, 4 x 1024 tokens: full precision %.3f, fake-quantized %.3f, W4A4 engine %.3f (%+.2f%%)\n",
                p_fp, p_fake, p_real, 100.0 * (p_real / p_fake - 1.0));
    EXPECT_LT(std::fabs(p_real / p_fake - 1.0), 0.1);

    fq_session *s = nullptr;
    ASSERT_FQ_OK(fq_session_create(real, nullptr, &s, nullptr));
    h.sessions.push_back(s);
    std::vector<float> last;
    const std::vector<int32_t> ids = greedy(s, prompt, 16, V, &last);
    std::vector<float> whole(static_cast<size_t>(ids.size()) * V);
    ASSERT_FQ_OK(fq_model_logits(real, ids.data(), static_cast<int64_t>(ids.size()), whole.data(),
                                 static_cast<int64_t>(whole.size()), nullptr));
    // The prompt's prefill and the whole sequence run the same kernels on the same tokens (per-token quantization,
    // causal attention; the GEMMs are exact in int32): the prompt's last row agrees up to attention's summation over
    // a different number of key tiles.
    const double d = rel_rms(last.data(), whole.data() + static_cast<size_t>(P - 1) * V, V);
    int agree = 0;
    for (size_t i = P; i < ids.size(); ++i) agree += argmax(&whole[(i - 1) * V], V) == ids[i];
    // The decode steps' split-K attention sums in another order again; in a model this close to chance (rotation
    // without learned transforms) next-token choices are near ties, so their agreement is printed, not asserted.
    std::printf("W4A4 session: prompt row vs whole sequence rms diff %.2e relative; greedy steps matching the "
                "whole-sequence argmax: %d of 16\n", d, agree);
    EXPECT_LT(d, 2e-2);
    // A batch of two prompts of equal length is one engine step per call; each sequence gets exactly the logits of
    // its own session (per-token quantization, per-sequence attention, GEMMs exact in int32).
    {
        std::vector<int32_t> two(prompt);
        for (int32_t t : prompt) two.push_back((t + 1000) % V);
        fq_session_options bo;
        fq_session_options_init(&bo);
        bo.n_seq = 2;
        fq_session *batch = nullptr;
        ASSERT_FQ_OK(fq_session_create(real, &bo, &batch, nullptr));
        h.sessions.push_back(batch);
        std::vector<float> lb(2 * static_cast<size_t>(V)), l1(V);
        ASSERT_FQ_OK(fq_session_decode_batch(batch, two.data(), P, lb.data(), static_cast<int64_t>(lb.size()),
                                             nullptr));
        for (int b = 0; b < 2; ++b) {
            ASSERT_FQ_OK(fq_session_reset(s, nullptr));
            ASSERT_FQ_OK(fq_session_decode(s, two.data() + b * P, P, l1.data(), V, nullptr));
            EXPECT_EQ(rel_rms(l1.data(), lb.data() + static_cast<size_t>(b) * V, V), 0.0) << "sequence " << b;
        }
    }
    ASSERT_FQ_OK(fq_session_reset(s, nullptr));
    const int32_t bad = V;
    EXPECT_EQ(fq_session_decode(s, &bad, 1, nullptr, 0, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    std::remove(file.c_str());
}

}  // namespace

#endif  // FQ_HAVE_CUDA
