// GPTQ with the calibration forward and the Hessians on the GPU (cuda/gptq_gpu.h, through quant::gptq_model with a
// device) against the CPU path (the same call with device -1), from one calibration result.
//
// Agreement criterion. The two paths feed gptq_quantize (the same double-precision host code) Hessians that differ
// by FP32 rounding: X^T X summed in another order, of inputs from a layer forward whose products sum in another
// order. Per-row scales come from the weight before GPTQ, so they must be equal bit for bit on every run.
//  - Weight-only quantization (a16, kv16): nothing amplifies that rounding; a code lands one step apart only where
//    its value/scale sits within it of a rounding boundary in GPTQ's column loop (then its error feedback may move
//    a few later codes of its row). Nearly all codes equal, none two steps apart, perplexities within 1e-3.
//  - 4-bit activations and K/V: an element within rounding of a .5 boundary takes the neighbouring code on one side,
//    and through K/V the hidden states of whole sequences drift, so the Hessians differ by far more than rounding.
//    That is the CPU path's own sensitivity: on the CPU alone, moving every embedding value of stories260K by one
//    ulp before GPTQ (W4A4KV4, these windows) left 97.8% of the codes equal (rotate, 34 x 512) and 95.2%
//    (flatquant, 8 x 256), 4 of 226560 two steps apart, and moved the perplexity by 8.7e-3 and 5.7e-2. The bounds
//    for these runs leave room for that and no more.
// A GPU Hessian that is wrong in a systematic way (a missing window, a wrong scale, the wrong linear's input, a
// stale weight) moves a large share of codes, and the weight-only runs catch it at once.
//
// Skipped without a CUDA device; a timing print for a SmolLM2-135M-shaped random model (FQ_SKIP_SLOW skips it;
// FQ_GPTQ_BENCH_LAYERS / FQ_GPTQ_BENCH_WINDOWS change its 4 layers and 32 windows of 2048 tokens).
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/cuda_backend.h"
#include "cuda/window_evaluator.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/fakequant_forward.h"
#include "quant/gptq.h"
#include "quant/kron.h"
#include "quant/reparameterize.h"
#include "support/paths.h"
#include "support/tiny_llama.h"

namespace fq {
namespace {

// Per kind of run (see above): share of codes equal on both paths and share more than one step apart (over a
// model's runs), and the relative perplexity difference of the two quantized models per run.
struct Bounds {
    double min_equal, max_far, max_ppl_rel;
};
constexpr Bounds kWeightOnly = {0.999, 0.0, 1e-3};
constexpr Bounds kOnline = {0.9, 1e-4, 1e-1};

std::vector<int32_t> random_tokens(int64_t n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto &x : t) x = static_cast<int32_t>(g() % static_cast<uint64_t>(vocab));
    return t;
}

struct CodeTally {
    int64_t total = 0, equal = 0, one_step = 0, far = 0, scale_diff = 0;
    void add(const CodeTally &t) {
        total += t.total, equal += t.equal, one_step += t.one_step, far += t.far, scale_diff += t.scale_diff;
    }
    double equal_share() const { return total ? static_cast<double>(equal) / total : 1.0; }
    double far_share() const { return total ? static_cast<double>(far) / total : 0.0; }
};

// A model's runs, by kind.
struct Tallies {
    CodeTally weight_only, online;
};

CodeTally compare_codes(const ModelConfig &c, const quant::CalibrationResult &a, const quant::CalibrationResult &b) {
    CodeTally t;
    EXPECT_EQ(a.gptq.size(), static_cast<size_t>(c.n_layer));
    EXPECT_EQ(b.gptq.size(), static_cast<size_t>(c.n_layer));
    for (size_t l = 0; l < std::min(a.gptq.size(), b.gptq.size()); l++) {
        for (int lin = 0; lin < quant::kNumLinears; lin++) {
            const quant::QuantizedWeight &x = a.gptq[l][static_cast<size_t>(lin)];
            const quant::QuantizedWeight &y = b.gptq[l][static_cast<size_t>(lin)];
            const quant::LinearShape s = quant::linear_shape(c, lin);
            EXPECT_EQ(static_cast<int64_t>(x.codes.size()), s.out * s.in);
            EXPECT_EQ(y.codes.size(), x.codes.size());
            EXPECT_EQ(y.scale.size(), x.scale.size());
            for (size_t i = 0; i < std::min(x.scale.size(), y.scale.size()); i++)
                t.scale_diff += x.scale[i] != y.scale[i];
            for (size_t i = 0; i < std::min(x.codes.size(), y.codes.size()); i++) {
                const int d = std::abs(int{x.codes[i]} - int{y.codes[i]});
                t.total++;
                t.equal += d == 0;
                t.one_step += d == 1;
                t.far += d > 1;
            }
        }
    }
    return t;
}

// Perplexity of a quantized model over (up to 16) windows of seqlen tokens of `text`, evaluated on the GPU (the
// window evaluator, checked against the CPU forward in test_cuda_window_evaluator.cpp; both models alike).
double ppl_of(const quant::QuantizedModel &qm, const std::vector<int32_t> &text, int32_t seqlen) {
    auto ev = cuda::make_window_evaluator(qm, 0);
    const WindowsScoreFn score = [&](const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len,
                                     double *nll, int32_t *argmax) {
        ev->score(tokens, targets, n_seq, seq_len, nll, argmax);
    };
    return perplexity(qm.base->config, score, text, seqlen, 16, Progress(), 16).ppl;
}

struct Case {
    const char *method;
    const char *bits;
};

class CudaGptq : public ::testing::Test {
  protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
    ThreadPool pool{0};

    // One calibration on windows of `stream` (short: one epoch for flatquant), then GPTQ from it on the CPU and on
    // device 0; compares the codes and the perplexities of the two quantized models on `text` (up to 16 windows).
    void run_case(const Model &m, const std::string &label, const Case &cs, int32_t nsamples, int32_t seqlen,
                  const std::vector<int32_t> &stream, const std::vector<int32_t> &text, Tallies &tallies) {
        quant::CalibOptions o;
        o.nsamples = nsamples, o.seqlen = seqlen, o.batch = 2, o.epochs = 1;
        const auto windows = quant::sample_windows(stream, o.nsamples, o.seqlen, o.seed);
        quant::QuantScheme scheme;
        scheme.method = quant::parse_method(cs.method);
        scheme.bits = quant::parse_bits(cs.bits);
        scheme.weights = quant::WeightQuantizer::Gptq;
        const quant::CalibrationResult r = quant::calibrate(m, pool, windows, scheme, o, Progress());
        quant::CalibrationResult rc = r, rg = r;
        const auto t0 = std::chrono::steady_clock::now();
        auto qc = quant::build_quantized_model(m, pool, rc, windows, Progress(), -1);
        const auto t1 = std::chrono::steady_clock::now();
        auto qg = quant::build_quantized_model(m, pool, rg, windows, Progress(), 0);
        const auto t2 = std::chrono::steady_clock::now();
        EXPECT_TRUE(qg->weights_quantized);
        const CodeTally t = compare_codes(m.config, rc, rg);
        const double ppl_c = ppl_of(*qc, text, m.config.n_ctx_train);
        const double ppl_g = ppl_of(*qg, text, m.config.n_ctx_train);
        const double rel = std::fabs(ppl_g / ppl_c - 1.0);
        std::printf("%-30s codes %lld: equal %.5f, one step %lld, further %lld; ppl cpu %.5f gpu %.5f (rel %.1e);"
                    " %.2f s cpu, %.2f s gpu\n",
                    (label + " " + cs.method + " " + cs.bits).c_str(), (long long)t.total, t.equal_share(),
                    (long long)t.one_step, (long long)t.far, ppl_c, ppl_g, rel,
                    std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
        EXPECT_EQ(t.scale_diff, 0) << label;
        const quant::QuantBits &b = scheme.bits;
        const bool online = b.a < 16 || b.k < 16 || b.v < 16;
        EXPECT_LE(rel, (online ? kOnline : kWeightOnly).max_ppl_rel) << label << " " << cs.method << " " << cs.bits;
        (online ? tallies.online : tallies.weight_only).add(t);
        // The model's weights are its codes times the scales.
        for (size_t l = 0; l < qg->layers.size(); l++) {
            const quant::QuantizedWeight &qw = rg.gptq[l][quant::kLinDown];
            const quant::LinearShape s = quant::linear_shape(m.config, quant::kLinDown);
            for (int64_t i = 0; i < s.out * s.in; i += 7)
                EXPECT_EQ(qg->layers[l].lin[quant::kLinDown].w[size_t(i)],
                          qw.scale[size_t(i / s.in)] * static_cast<float>(qw.codes[size_t(i)]));
        }
    }

    void expect_agreement(const Tallies &t, const std::string &what) {
        for (const auto &[tally, bounds, kind] : {std::tuple(t.weight_only, kWeightOnly, "weight-only"),
                                                  std::tuple(t.online, kOnline, "W4A4KV4")}) {
            std::printf("%-30s %s runs: codes %lld, equal %.5f, further than one step %.1e\n", what.c_str(), kind,
                        (long long)tally.total, tally.equal_share(), tally.far_share());
            EXPECT_GE(tally.equal_share(), bounds.min_equal) << what << " " << kind;
            EXPECT_LE(tally.far_share(), bounds.max_far) << what << " " << kind;
        }
    }
};

// LLaMA-like (GQA) and Qwen2-like (q/k/v bias, NEOX RoPE) tiny models, rtn/rotate/flatquant (calibrated FlatQuant
// has its own LAC per linear, so q/k/v and up/gate read separate quantized inputs), with and without activation
// quantization.
TEST_F(CudaGptq, TinyModelsGiveTheCpuCodes) {
    test::TinyDims qwen;
    qwen.qkv_bias = true;
    qwen.rope_mode = RopeMode::Neox;
    const std::pair<const char *, test::TinyDims> models[] = {{"tiny llama", test::TinyDims{}}, {"tiny qwen2", qwen}};
    for (const auto &[label, d] : models) {
        auto m = test::make_tiny_llama(d, 5, ::testing::TempDir() + "fq_gptq_tiny.bin");
        const auto stream = random_tokens(512, d.n_vocab, 77);
        const auto text = random_tokens(int64_t{16} * d.n_ctx, d.n_vocab, 3);
        Tallies all;
        for (const Case &cs : {Case{"rtn", "w4a4kv4"}, Case{"rotate", "w4a4kv4"}, Case{"flatquant", "w4a4kv4"},
                               Case{"rotate", "w4a16"}, Case{"flatquant", "w3a16"}})
            run_case(*m, label, cs, 8, 32, stream, text, all);
        expect_agreement(all, label);
    }
}

// The real small model on WikiText-2 (calibration from the start of the validation text, perplexity on a later
// part): 34 windows of 512 tokens are more than one pass of the layers takes at once.
TEST_F(CudaGptq, Stories260KGivesTheCpuCodes) {
    const std::string wiki = test::read_file(test::source_dir() + "/data/wikitext-2-raw/wiki.valid.raw");
    if (!test::file_exists(test::stories_path()) || wiki.size() < 400000) GTEST_SKIP() << "data not found";
    auto m = load_gguf_model(test::stories_path(), {});
    const bool bos = m->tokenizer->add_bos_default();
    const auto stream = m->tokenizer->encode(wiki.substr(0, 200000), bos);
    const auto text = m->tokenizer->encode(wiki.substr(300000, 100000), bos);
    Tallies all;
    run_case(*m, "stories260K", {"rotate", "w4a4kv4"}, 34, 512, stream, text, all);
    run_case(*m, "stories260K", {"rotate", "w4a16"}, 34, 512, stream, text, all);
    run_case(*m, "stories260K", {"flatquant", "w4a4kv4"}, 8, 256, stream, text, all);  // a short calibration
    expect_agreement(all, "stories260K");
}

TEST_F(CudaGptq, RefusesAMissingDeviceAndTooFewWindows) {
    auto m = test::make_tiny_llama({}, 6, ::testing::TempDir() + "fq_gptq_err.bin");
    quant::CalibOptions o;
    o.nsamples = 2, o.seqlen = 16, o.batch = 1;
    quant::QuantScheme scheme;
    scheme.method = quant::Method::Rtn;
    scheme.bits = quant::parse_bits("w4a16");
    scheme.weights = quant::WeightQuantizer::Gptq;
    const auto windows = random_tokens(int64_t{o.nsamples} * o.seqlen, m->config.n_vocab, 1);
    const quant::CalibrationResult r = quant::calibrate(*m, pool, windows, scheme, o, Progress());
    auto status_of = [&](int device, const std::vector<int32_t> &w) {
        quant::CalibrationResult rr = r;
        try {
            quant::build_quantized_model(*m, pool, rr, w, Progress(), device);
        } catch (const Error &e) {
            return e.status();
        }
        return (int32_t)FQ_STATUS_OK;
    };
    EXPECT_EQ(status_of(cuda::device_count(), windows), FQ_STATUS_DEVICE_UNAVAILABLE);
    EXPECT_EQ(status_of(0, std::vector<int32_t>(windows.begin(), windows.end() - 1)), FQ_STATUS_INVALID_ARGUMENT);
    auto bad = windows;
    bad[5] = m->config.n_vocab;
    EXPECT_EQ(status_of(0, bad), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of(0, windows), FQ_STATUS_OK);
}

int env_int(const char *name, int fallback) {
    const char *v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}

// Speed does not depend on the values, so the model is assembled directly: SmolLM2-135M's layer shape with random
// weights, FlatQuant-like online transforms and LAC logits that differ per linear (q/k/v and up/gate then each
// have their own input and Hessian), windows of 2048 tokens. Also times the host's share alone: gptq_quantize of
// one layer's seven linears, one after the other, on Hessians of that shape.
TEST_F(CudaGptq, TimingSmolLM2ShapedRandomModel) {
    if (test::skip_slow()) GTEST_SKIP() << "FQ_SKIP_SLOW is set";
    test::TinyDims d;
    d.n_layer = env_int("FQ_GPTQ_BENCH_LAYERS", 4), d.n_embd = 576, d.n_ff = 1536, d.n_head = 9, d.n_head_kv = 3;
    d.head_dim = 64, d.rope_dim = 64, d.n_vocab = 49152, d.n_ctx = 2048;
    const int32_t n_windows = env_int("FQ_GPTQ_BENCH_WINDOWS", 32);
    auto m = test::make_tiny_llama(d, 12, ::testing::TempDir() + "fq_gptq_smol.bin");
    m->weights.output.clear();  // tied, as SmolLM2
    std::mt19937_64 g(13);
    auto factor = [&](int k) { return test::tiny_randn(g, static_cast<size_t>(k) * k, 1.0 / std::sqrt((double)k)); };
    auto kron = [&](quant::KronTransform &t, int64_t width) {
        const quant::DecomposeDims dd = quant::decompose_dim(width);
        t.n1 = dd.n1, t.n2 = dd.n2, t.left = factor(dd.n1), t.right = factor(dd.n2);
    };
    quant::QuantizedModel qm;
    qm.base = m.get();
    qm.scheme.bits = quant::parse_bits("w4a4kv4");
    qm.scheme.weights = quant::WeightQuantizer::Gptq;
    for (const LayerWeights &L : m->weights.layers) {
        quant::QuantLayer q;
        q.attn_norm = L.attn_norm, q.ffn_norm = L.ffn_norm;
        const std::vector<float> *w[quant::kNumLinears] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_up, &L.w_gate, &L.w_down};
        for (int i = 0; i < quant::kNumLinears; i++) q.lin[i].w = *w[i];
        quant::LayerTransforms &t = q.online;
        kron(t.pa, d.n_embd);
        kron(t.pug, d.n_embd);
        kron(t.pd, d.n_ff);
        t.ph.k = d.n_head, t.ph.m = factor(d.n_head);
        t.lac = true;
        for (int i = 0; i < quant::kNumLinears; i++) t.lac_lin[i] = {3.0f + 0.1f * i, 2.5f + 0.1f * i};
        t.lac_k = {3.0f, 3.0f}, t.lac_v = {2.0f, 2.0f};
        qm.layers.push_back(std::move(q));
    }
    quant::CalibOptions o;
    o.nsamples = n_windows, o.seqlen = 2048;
    const auto windows = random_tokens(int64_t{n_windows} * o.seqlen, d.n_vocab, 2);
    quant::CalibrationResult r;
    const auto t0 = std::chrono::steady_clock::now();
    quant::gptq_model(qm, pool, windows, o, r, Progress(), 0);
    const double s_gpu = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.gptq.size(), static_cast<size_t>(d.n_layer));
    // The host's share: one layer's linears quantized from Hessians of a window of random inputs (E or F wide).
    std::vector<std::vector<double>> hess;
    for (int64_t in : {int64_t{d.n_embd}, int64_t{d.n_ff}}) {
        quant::HessianAccumulator acc(in);
        const auto x = test::tiny_randn(g, static_cast<size_t>(o.seqlen * in), 1.0);
        acc.add_window(x.data(), o.seqlen, pool);
        hess.push_back(acc.hessian());
    }
    double s_host = 0;
    for (int lin = 0; lin < quant::kNumLinears; lin++) {
        const quant::LinearShape s = quant::linear_shape(m->config, lin);
        std::vector<float> w = test::tiny_randn(g, static_cast<size_t>(s.out * s.in), 0.05);
        const std::vector<double> &h = hess[s.in == d.n_embd ? 0 : 1];
        const auto t1 = std::chrono::steady_clock::now();
        quant::gptq_quantize(w.data(), s.out, s.in, h, 4, o.percdamp, o.gptq_blocksize, pool, nullptr);
        s_host += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    }
    std::printf("SmolLM2-shaped GPTQ on the GPU: %d layers x %d windows of 2048 tokens: %.2f s (%.2f s per layer); "
                "host gptq_quantize of one layer's 7 linears one after the other: %.2f s (%d threads)\n",
                d.n_layer, n_windows, s_gpu, s_gpu / d.n_layer, s_host, pool.n_threads());
}

}  // namespace
}  // namespace fq

#endif  // FQ_HAVE_CUDA
