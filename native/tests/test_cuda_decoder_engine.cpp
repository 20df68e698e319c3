// The whole-model GPU engine (cuda/decoder_engine.h) against the CPU engines, on a random LLaMA whose shapes the W4A4
// kernels cover (E = 256, F = 512, 4 heads of 64, 2 KV heads, 2 layers).
//
// What "agree" means here. The FP16 engine differs from the FP32 CPU forward by FP16 roundings of weights and of
// every activation between kernels: its logits must agree within 2% of their rms. The W4A4 engine computes the
// fake-quantized model (quant::quantized_forward) with integer GEMMs, FP16 transforms and FP16 activations: wherever
// a value lands within that FP16 noise of an INT4 rounding boundary the two sides pick neighbouring codes, and from
// there the row's logits drift (test_cuda_w4a4_layer.cpp measures this per stage). An element-wise bound cannot tell a
// right engine from a wrong one; what can is a comparison with the size of the quantization error itself: the W4A4
// engine must be much closer to the fake-quantized CPU model than that model is to full precision (a systematic
// error, e.g. a transform applied on the wrong side, lands at or beyond the quantization error), and pick the same
// next token at most positions.
//
// Also: sessions (prefill then decode) equal whole-sequence evaluation, decode steps as CUDA graphs equal eager ones, a batch of two sequences equals each alone,
// refused ids and full caches leave the cache as it was, and unsupported schemes are refused. Skipped without a GPU.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/cuda_backend.h"
#include "cpu/dequant_ref.h"
#include "cuda/decoder_engine.h"
#include "model/forward.h"
#include "quant/calibrate.h"
#include "quant/fakequant_forward.h"
#include "quant/reparameterize.h"
#include "support/paths.h"
#include "support/tiny_llama.h"

namespace fq {
namespace {

std::vector<int32_t> random_ids(int64_t n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto &x : t) x = static_cast<int32_t>(g() % static_cast<uint64_t>(vocab));
    return t;
}

// Logits [n][V] of every position of one sequence on a CPU forward from an empty cache.
std::vector<float> cpu_logits(const ForwardFn &fwd, const ModelConfig &c, const std::vector<int32_t> &tok) {
    KVCache cache;
    cache.init(c, static_cast<int32_t>(tok.size()));
    std::vector<float> out(tok.size() * static_cast<size_t>(c.n_vocab));
    fwd(tok.data(), static_cast<int64_t>(tok.size()), cache, LogitsWanted::All,
        [&](int64_t row0, int64_t rows, const float *lg) {
            std::copy(lg, lg + rows * c.n_vocab, out.begin() + row0 * c.n_vocab);
        });
    return out;
}

std::vector<float> engine_logits(cuda::DecoderEngine &e, const std::vector<int32_t> &tok, int V) {
    std::vector<float> out(tok.size() * static_cast<size_t>(V));
    e.forward(tok.data(), 1, static_cast<int64_t>(tok.size()), [&](int64_t, int64_t row0, int64_t rows,
                                                                    const float *lg) {
        std::copy(lg, lg + rows * V, out.begin() + row0 * V);
    });
    return out;
}

double rms(const std::vector<float> &a) {
    double s = 0.0;
    for (float x : a) s += static_cast<double>(x) * x;
    return std::sqrt(s / static_cast<double>(a.size()));
}

double rms_diff(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    return std::sqrt(s / static_cast<double>(n));
}

double argmax_agreement(const std::vector<float> &a, const std::vector<float> &b, int V) {
    const size_t rows = a.size() / static_cast<size_t>(V);
    size_t same = 0;
    for (size_t r = 0; r < rows; ++r) {
        const float *x = a.data() + r * V, *y = b.data() + r * V;
        same += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
    }
    return static_cast<double>(same) / static_cast<double>(rows);
}

class CudaDecoderEngine : public ::testing::Test {
  protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        test::TinyDims d;
        d.n_layer = 2, d.n_embd = 256, d.n_ff = 512, d.n_head = 4, d.n_head_kv = 2, d.head_dim = 64;
        d.rope_dim = 64, d.n_vocab = 512, d.n_ctx = 256;
        model_ = test::make_tiny_llama(d, 11, ::testing::TempDir() + "fq_decoder_engine.bin");
    }

    std::unique_ptr<quant::QuantizedModel> quantized(const char *method, const char *bits) {
        quant::QuantScheme s;
        s.method = quant::parse_method(method);
        s.bits = quant::parse_bits(bits);
        quant::CalibrationResult r = quant::calibrate(*model_, pool_, {}, s, quant::CalibOptions(), Progress());
        return quant::build_quantized_model(*model_, pool_, r, {}, Progress());
    }

    ThreadPool pool_{2};
    std::unique_ptr<Model> model_;
};

TEST_F(CudaDecoderEngine, Fp16EngineMatchesTheFp32CpuForward) {
    const ModelConfig &c = model_->config;
    auto e = cuda::DecoderEngine::f16(*model_, 0);
    EXPECT_STREQ(e->name(), "cuda-fp16");
    const auto tok = random_ids(150, c.n_vocab, 5);
    const auto ref = cpu_logits(forward_fn(*model_, pool_), c, tok);
    const auto got = engine_logits(*e, tok, c.n_vocab);
    const double rel = rms_diff(ref.data(), got.data(), ref.size()) / rms(ref);
    std::printf("fp16 engine vs FP32 CPU: rms diff %.3e of the logits' rms\n", rel);
    EXPECT_LT(rel, 2e-2);
    EXPECT_GT(argmax_agreement(ref, got, c.n_vocab), 0.97);
}

TEST_F(CudaDecoderEngine, W4a4EngineComputesTheFakeQuantizedModel) {
    const ModelConfig &c = model_->config;
    const auto tok = random_ids(200, c.n_vocab, 6);
    const auto fp = cpu_logits(forward_fn(*model_, pool_), c, tok);
    // The noise floor: the same CPU model with its embeddings rounded to FP16 (one rounding of the kind the engine
    // does at every step).
    Model rounded;
    rounded.config = c;
    rounded.weights = model_->weights;
    for (float &x : rounded.weights.tok_embd) x = cpu::f16_bits_to_f32(cpu::f32_to_f16_bits(x));
    for (const char *method : {"rotate", "rtn"}) {
        auto qm = quantized(method, "w4a4kv4");
        auto e = cuda::DecoderEngine::w4a4(*qm, 0);
        EXPECT_STREQ(e->name(), "cuda-w4a4");
        const auto fake = cpu_logits(quant::quantized_forward_fn(*qm, pool_), c, tok);
        const quant::QuantizedModel *base_qm = qm.get();
        quant::QuantizedModel qr = *base_qm;
        qr.base = &rounded;
        const auto floor_logits = cpu_logits(quant::quantized_forward_fn(qr, pool_), c, tok);
        const auto got = engine_logits(*e, tok, c.n_vocab);
        const double quant_err = rms_diff(fp.data(), fake.data(), fp.size());
        const double floor_err = rms_diff(fake.data(), floor_logits.data(), fp.size());
        const double engine_err = rms_diff(fake.data(), got.data(), fp.size());
        const double agree = argmax_agreement(fake, got, c.n_vocab);
        const double floor_agree = argmax_agreement(fake, floor_logits, c.n_vocab);
        std::printf("%s w4a4kv4: |fake - fp| %.4f; |engine - fake| %.4f, argmax agreement %.3f; FP16 embeddings on "
                    "the CPU: |rounded - fake| %.4f, agreement %.3f\n",
                    method, quant_err, engine_err, agree, floor_err, floor_agree);
        for (float x : got) ASSERT_TRUE(std::isfinite(x));
        EXPECT_LT(engine_err, 0.9 * quant_err) << method;
        EXPECT_LT(engine_err, 3.0 * floor_err + 1e-3) << method;
        EXPECT_GT(agree, floor_agree - 0.15) << method;
    }
}

TEST_F(CudaDecoderEngine, SessionStepsEqualWholeSequenceEvaluation) {
    const ModelConfig &c = model_->config;
    const int V = c.n_vocab;
    auto qm = quantized("rotate", "w4a4kv4");
    for (int which = 0; which < 2; ++which) {
        auto e = which == 0 ? cuda::DecoderEngine::w4a4(*qm, 0) : cuda::DecoderEngine::f16(*model_, 0);
        e->set_decode_graphs(true);
        const auto tok = random_ids(70, V, 9);
        const auto whole = engine_logits(*e, tok, V);
        // Prefill 64 tokens (the prefill kernels), then six single steps (decode kernels: GEMV, split-K attention).
        auto cache = e->make_cache(1, 128);
        std::vector<float> last(static_cast<size_t>(V));
        e->step(*cache, tok.data(), 64, last.data());
        double worst = rms_diff(last.data(), whole.data() + 63 * V, V) / rms(whole);
        for (int i = 64; i < 70; ++i) {
            e->step(*cache, tok.data() + i, 1, last.data());
            worst = std::max(worst, rms_diff(last.data(), whole.data() + static_cast<size_t>(i) * V, V) / rms(whole));
        }
        EXPECT_EQ(cache->position(), 70);
        // The decode steps above ran as CUDA graphs (all but the first); eagerly they compute the same bits.
        {
            e->set_decode_graphs(false);
            auto eager = e->make_cache(1, 128);
            std::vector<float> l2(static_cast<size_t>(V));
            e->step(*eager, tok.data(), 64, l2.data());
            for (int i = 64; i < 70; ++i) e->step(*eager, tok.data() + i, 1, l2.data());
            EXPECT_EQ(rms_diff(last.data(), l2.data(), V), 0.0) << e->name() << ": graph and eager steps differ";
        }
        std::printf("%s: session vs whole sequence, worst row rms diff %.3e\n", e->name(), worst);
        // The same arithmetic but for attention's summation order (prefill tiles vs split-K decode) and, W4A4, the
        // INT4 boundary flips that order can cause.
        EXPECT_LT(worst, which == 0 ? 0.3 : 2e-3) << e->name();
    }
}

TEST_F(CudaDecoderEngine, ABatchOfSequencesEqualsEachAlone) {
    const int V = model_->config.n_vocab;
    auto qm = quantized("rotate", "w4a4kv4");
    auto e = cuda::DecoderEngine::w4a4(*qm, 0);
    const auto a = random_ids(33, V, 1), b = random_ids(33, V, 2);
    std::vector<int32_t> both(a);
    both.insert(both.end(), b.begin(), b.end());
    auto cache2 = e->make_cache(2, 64);
    std::vector<float> l2(2 * static_cast<size_t>(V)), la(V), lb(V);
    e->step(*cache2, both.data(), 33, l2.data());
    auto ca = e->make_cache(1, 64), cb = e->make_cache(1, 64);
    e->step(*ca, a.data(), 33, la.data());
    e->step(*cb, b.data(), 33, lb.data());
    // Per-token quantization and per-sequence attention: a batch changes nothing but which GEMM kernel runs (all
    // exact in int32), so the logits are identical.
    EXPECT_EQ(rms_diff(l2.data(), la.data(), V), 0.0);
    EXPECT_EQ(rms_diff(l2.data() + V, lb.data(), V), 0.0);
}

TEST_F(CudaDecoderEngine, RefusesBadInput) {
    const int V = model_->config.n_vocab;
    auto qm = quantized("rtn", "w4a4kv4");
    auto e = cuda::DecoderEngine::w4a4(*qm, 0);
    auto cache = e->make_cache(1, 8);
    std::vector<int32_t> tok = random_ids(6, V, 3);
    e->step(*cache, tok.data(), 6, nullptr);
    const int32_t bad = V;
    try {
        e->step(*cache, &bad, 1, nullptr);
        FAIL() << "an id outside the vocabulary was accepted";
    } catch (const Error &err) {
        EXPECT_EQ(err.status(), FQ_STATUS_INVALID_ARGUMENT);
    }
    try {
        e->step(*cache, tok.data(), 3, nullptr);
        FAIL() << "a full cache was accepted";
    } catch (const Error &err) {
        EXPECT_EQ(err.status(), FQ_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(err.what()).find("context is full"), std::string::npos) << err.what();
    }
    EXPECT_EQ(cache->position(), 6);
    auto w4a16 = quantized("rtn", "w4a16");
    try {
        cuda::DecoderEngine::w4a4(*w4a16, 0);
        FAIL() << "a w4a16 model was accepted";
    } catch (const Error &err) {
        EXPECT_EQ(err.status(), FQ_STATUS_UNSUPPORTED);
    }
}

}  // namespace
}  // namespace fq

#endif  // FQ_HAVE_CUDA
