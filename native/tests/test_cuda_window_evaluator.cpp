// Whole-sequence GPU evaluation (cuda/window_evaluator.h) against the CPU fake-quantized forward
// (quant::quantized_forward, each sequence from an empty cache) and, for w16a16, against fq::forward.
//
// Agreement criterion. Both sides compute in FP32 with the same quantizer arithmetic, but products and reductions
// sum in different orders, so values differ by a few units of FP32 rounding. Without online quantization (a16, kv16)
// nothing amplifies that: every logit must agree within kTight of the logit scale (max |CPU logit|); measured
// ~1e-6. With 4-bit activations and K/V, an element whose value/scale lies within that rounding noise of a .5
// boundary gets the neighbouring code on one side, and from there its sequence's logits diverge (through K/V, every
// later row). This is a property of the quantized model, not of the GPU: on the CPU alone, moving every embedding
// value by one ulp changed W4A4KV4 logits of stories260K (rtn, 2 x 150 tokens) by up to 0.35 of the logit scale in
// about half the rows and the perplexity by up to 2.8e-2 relative, while runs without a flip moved by 4e-7. So the
// quantized whole-model cases check what survives such flips: every logit finite, most rows (aggregated over a
// model's quantized runs) within kTight, and the aggregated perplexity within 2e-2; a systematic error in any step
// breaks nearly every row. The quantizers themselves are checked bit for bit against fake_quant.h on their own
// (ties included), and the per-token step between the q/k/v products and attention against the CPU ops.
//
// score() computes per-row NLL and argmax on the device: against token_nll and the CPU's argmax on the very logits
// forward() returns (the same kernels on the same rows, so identical logits), the NLLs agree to double rounding.
//
// Skipped without a CUDA device. Also: several sequences per call, odd lengths across attention tile edges,
// one-token sequences, refused ids, targets and lengths, serialized calls from two threads, and timing prints
// (stories260K and a SmolLM2-135M-shaped random model with forward and perplexity-style score calls; FQ_SKIP_SLOW
// skips the latter; FQ_BENCH_WINEVAL=1 adds a per-step breakdown at that shape).
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"
#include "cuda/window_evaluator.h"
#include "cuda/wineval_kernels.h"
#include "eval/perplexity.h"
#include "model/decoder_ops.h"
#include "model/forward.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/fast_ops.h"
#include "quant/fakequant_forward.h"
#include "quant/kron.h"
#include "quant/reparameterize.h"
#include "support/paths.h"
#include "support/tiny_llama.h"

namespace fq {
namespace {

constexpr double kTight = 1e-4;        // FP32 agreement, relative to the logit scale
constexpr double kMinTightRows = 0.5;  // quantized runs: rows within kTight, over all of a model's runs
constexpr double kMaxPplRel = 2e-2;    // quantized runs: perplexity over all of a model's runs
// score() against token_nll on identical logits: only the order of the double sum of exponentials differs
// (~n_vocab * 2^-53 relative), and exp itself (within an ulp on both sides).
constexpr double kNllTol = 1e-10;

std::vector<int32_t> random_tokens(int64_t n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto &x : t) x = static_cast<int32_t>(g() % static_cast<uint64_t>(vocab));
    return t;
}

// Logits [n_seq][seq_len][V] of a CPU forward, each sequence from an empty cache.
std::vector<float> cpu_logits(const ForwardFn &fwd, const ModelConfig &c, const std::vector<int32_t> &tok,
                              int64_t n_seq, int64_t seq_len) {
    std::vector<float> out(static_cast<size_t>(n_seq * seq_len * c.n_vocab));
    KVCache cache;
    cache.init(c, static_cast<int32_t>(seq_len));
    for (int64_t s = 0; s < n_seq; s++) {
        cache.n_past = 0;
        auto keep = [&](int64_t r0, int64_t rows, const float *lg) {
            std::copy_n(lg, rows * c.n_vocab, out.data() + (s * seq_len + r0) * c.n_vocab);
        };
        fwd(tok.data() + s * seq_len, seq_len, cache, LogitsWanted::All, keep);
    }
    return out;
}

// The same from the GPU, checking the sink contract on the way: each row once, rows of a sequence in order.
std::vector<float> gpu_logits(cuda::WindowEvaluator &ev, const ModelConfig &c, const std::vector<int32_t> &tok,
                              int64_t n_seq, int64_t seq_len) {
    std::vector<float> out(static_cast<size_t>(n_seq * seq_len * c.n_vocab), std::nanf(""));
    std::vector<int64_t> next_row(static_cast<size_t>(n_seq), 0);
    ev.forward(tok.data(), n_seq, seq_len, [&](int64_t seq, int64_t r0, int64_t rows, const float *lg) {
        ASSERT_TRUE(seq >= 0 && seq < n_seq);
        EXPECT_EQ(r0, next_row[static_cast<size_t>(seq)]) << "sequence " << seq;
        ASSERT_TRUE(rows > 0 && r0 + rows <= seq_len);
        next_row[static_cast<size_t>(seq)] = r0 + rows;
        std::copy_n(lg, rows * c.n_vocab, out.data() + (seq * seq_len + r0) * c.n_vocab);
    });
    for (int64_t s = 0; s < n_seq; s++) EXPECT_EQ(next_row[static_cast<size_t>(s)], seq_len) << "sequence " << s;
    return out;
}

// Agreement of GPU with CPU logits, summed over calls: rows within kTight, NLL of the next tokens on both sides.
struct Tally {
    int64_t rows = 0, tight_rows = 0, predicted = 0;
    double max_rel = 0, nll_ref = 0, nll_got = 0;
    bool finite = true;
    double tight_fraction() const { return rows ? static_cast<double>(tight_rows) / rows : 1.0; }
    double ppl_rel() const { return predicted ? std::fabs(std::exp((nll_got - nll_ref) / predicted) - 1.0) : 0.0; }
    void add(const Tally &t) {
        rows += t.rows, tight_rows += t.tight_rows, predicted += t.predicted;
        max_rel = std::max(max_rel, t.max_rel), nll_ref += t.nll_ref, nll_got += t.nll_got;
        finite = finite && t.finite;
    }
};

Tally compare(const std::vector<float> &ref, const std::vector<float> &got, const std::vector<int32_t> &tok,
              int64_t n_seq, int64_t seq_len, int64_t V) {
    Tally t;
    double scale = 0;
    for (float v : ref) scale = std::max(scale, std::fabs(static_cast<double>(v)));
    t.rows = n_seq * seq_len;
    for (int64_t r = 0; r < t.rows; r++) {
        double row_max = 0;
        for (int64_t j = 0; j < V; j++) {
            const double g = got[r * V + j];
            t.finite = t.finite && std::isfinite(g);
            const double d = std::fabs(static_cast<double>(ref[r * V + j]) - g) / scale;
            row_max = std::isfinite(d) ? std::max(row_max, d) : 1e30;
        }
        t.max_rel = std::max(t.max_rel, row_max);
        t.tight_rows += row_max <= kTight;
        const int64_t pos = r % seq_len;
        if (pos + 1 < seq_len) {
            const int32_t next = tok[static_cast<size_t>(r + 1)];
            t.nll_ref += token_nll(ref.data() + r * V, V, next);
            t.nll_got += token_nll(got.data() + r * V, V, next);
            t.predicted++;
        }
    }
    return t;
}

struct Case {
    const char *method;
    const char *bits;
};

quant::QuantScheme scheme_of(const Case &cs) {
    quant::QuantScheme s;
    s.method = quant::parse_method(cs.method);
    s.bits = quant::parse_bits(cs.bits);
    return s;
}

// A short calibration (flatquant: one epoch on a few windows; rtn/rotate: none needed) and the quantized model.
std::unique_ptr<quant::QuantizedModel> build(const Model &m, ThreadPool &pool, const Case &cs, int32_t calib_len) {
    quant::CalibOptions o;
    o.nsamples = 4, o.seqlen = calib_len, o.batch = 2, o.epochs = 1;
    const auto stream = random_tokens(8 * calib_len, m.config.n_vocab, 77);
    const auto windows = quant::sample_windows(stream, o.nsamples, o.seqlen, o.seed);
    quant::CalibrationResult r = quant::calibrate(m, pool, windows, scheme_of(cs), o, Progress());
    return quant::build_quantized_model(m, pool, r, windows, Progress());
}

// (n_seq, seq_len) shapes of the calls of one comparison.
using Shapes = std::vector<std::pair<int64_t, int64_t>>;

bool online_quantization(const quant::QuantizedModel &qm) {
    const quant::QuantBits &b = qm.scheme.bits;
    return b.a < 16 || b.k < 16 || b.v < 16;
}

// GPU against CPU logits of qm for every shape. Without online quantization every logit must agree within kTight;
// with it only finiteness is checked per call, and the tally goes to the caller's model-wide criteria.
Tally check_model(const quant::QuantizedModel &qm, ThreadPool &pool, const std::string &label, const Shapes &shapes,
                  bool vs_fp_forward = false) {
    const Model &m = *qm.base;
    auto ev = cuda::make_window_evaluator(qm, 0);
    Tally all;
    uint64_t seed = 100;
    for (const auto &[n_seq, seq_len] : shapes) {
        const auto tok = random_tokens(n_seq * seq_len, m.config.n_vocab, seed++);
        const ForwardFn fwd = vs_fp_forward ? forward_fn(m, pool) : quant::quantized_forward_fn(qm, pool);
        const auto ref = cpu_logits(fwd, m.config, tok, n_seq, seq_len);
        const auto got = gpu_logits(*ev, m.config, tok, n_seq, seq_len);
        const Tally t = compare(ref, got, tok, n_seq, seq_len, m.config.n_vocab);
        std::printf("%-34s %lld x %-4lld max|d|/scale %.2e  rows within %.0e: %.4f  ppl rel %.2e\n", label.c_str(),
                    (long long)n_seq, (long long)seq_len, t.max_rel, kTight, t.tight_fraction(), t.ppl_rel());
        const std::string where = label + " " + std::to_string(n_seq) + "x" + std::to_string(seq_len);
        EXPECT_TRUE(t.finite) << where;
        if (!online_quantization(qm)) {
            EXPECT_LE(t.max_rel, kTight) << where;
        }
        all.add(t);
    }
    return all;
}

void expect_quantized_agreement(const Tally &t, const std::string &what) {
    std::printf("%-34s all quantized runs: rows within %.0e: %.4f  ppl rel %.2e\n", what.c_str(), kTight,
                t.tight_fraction(), t.ppl_rel());
    EXPECT_GE(t.tight_fraction(), kMinTightRows) << what;
    EXPECT_LE(t.ppl_rel(), kMaxPplRel) << what;
}

class CudaWindowEvaluator : public ::testing::Test {
  protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = cuda::Stream::create();
    }
    ThreadPool pool{4};
    cuda::Stream stream_;
};

// Every method and width on four tiny shapes: LLaMA-like (head_dim 4, GQA), Qwen2-like (q/k/v bias, NEOX RoPE), and
// wide heads (head_dim 64 with GQA; head_dim 96 with partial NEOX RoPE and bias) whose sequences cross several
// attention tiles. Calibrated FlatQuant has different LAC per linear, so q/k/v and up/gate take separate products.
TEST_F(CudaWindowEvaluator, TinyModelsMatchTheCpuForEveryMethodAndWidth) {
    std::vector<std::pair<std::string, test::TinyDims>> models;
    models.push_back({"llama", test::TinyDims{}});
    test::TinyDims qwen;
    qwen.qkv_bias = true;
    qwen.rope_mode = RopeMode::Neox;
    models.push_back({"qwen2", qwen});
    test::TinyDims wide;
    wide.n_embd = 96, wide.n_ff = 160, wide.n_head = 2, wide.n_head_kv = 1, wide.head_dim = 64, wide.rope_dim = 64;
    wide.n_vocab = 64, wide.n_ctx = 256;
    models.push_back({"hd64", wide});
    test::TinyDims wide2 = wide;
    wide2.n_head = 3, wide2.n_head_kv = 3, wide2.head_dim = 96, wide2.rope_dim = 32;
    wide2.qkv_bias = true, wide2.rope_mode = RopeMode::Neox;
    models.push_back({"hd96", wide2});
    const Case cases[] = {{"rtn", "w4a4kv4"}, {"rotate", "w4a4kv4"}, {"flatquant", "w4a4kv4"}, {"rtn", "w4a16"},
                          {"rotate", "w4a16"}, {"flatquant", "w4a16"}, {"rotate", "w16a16"}};
    for (size_t mi = 0; mi < models.size(); mi++) {
        const test::TinyDims &d = models[mi].second;
        auto m = test::make_tiny_llama(d, 40 + mi, ::testing::TempDir() + "fq_wineval_tiny.bin");
        const Shapes shapes = d.head_dim >= 64 ? Shapes{{2, 150}, {1, 67}, {3, 1}} : Shapes{{3, 37}, {1, 5}, {2, 1}};
        Tally quantized;
        for (const Case &cs : cases) {
            auto qm = build(*m, pool, cs, 16);
            const Tally t = check_model(*qm, pool, models[mi].first + " " + cs.method + " " + cs.bits, shapes);
            if (online_quantization(*qm)) quantized.add(t);
        }
        expect_quantized_agreement(quantized, models[mi].first);
    }
}

TEST_F(CudaWindowEvaluator, FullPrecisionIsTheFpForward) {
    test::TinyDims d;
    d.qkv_bias = true;
    auto m = test::make_tiny_llama(d, 9, ::testing::TempDir() + "fq_wineval_fp.bin");
    auto qm = build(*m, pool, {"rtn", "w16a16"}, 16);
    check_model(*qm, pool, "tiny w16a16 vs fq::forward", {{3, 29}, {1, 64}}, true);
    if (!test::file_exists(test::stories_path())) return;
    auto st = load_gguf_model(test::stories_path(), {});
    auto sq = build(*st, pool, {"rtn", "w16a16"}, 32);
    check_model(*sq, pool, "stories260K w16a16 vs fq::forward", {{2, 200}}, true);
}

TEST_F(CudaWindowEvaluator, Stories260KMatchesTheCpu) {
    if (!test::file_exists(test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
    auto m = load_gguf_model(test::stories_path(), {});
    const Shapes shapes = {{4, 128}, {1, 300}, {1, 23}};
    Tally quantized;
    for (const Case &cs : {Case{"rtn", "w4a4kv4"}, Case{"rotate", "w4a4kv4"}, Case{"flatquant", "w4a4kv4"},
                           Case{"rotate", "w4a16"}, Case{"flatquant", "w4a16"}}) {
        auto qm = build(*m, pool, cs, 64);
        const Tally t = check_model(*qm, pool, std::string("stories260K ") + cs.method + " " + cs.bits, shapes);
        if (online_quantization(*qm)) quantized.add(t);
    }
    expect_quantized_agreement(quantized, "stories260K");
}

// ---- the quantizing kernels on their own, bit for bit ---------------------------------------------------------------

template <class T>
cuda::DeviceBuffer to_device(const std::vector<T> &h, const cuda::Stream &s) {
    cuda::DeviceBuffer b(h.size() * sizeof(T));
    b.upload(h.data(), h.size() * sizeof(T), s);
    return b;
}

std::vector<float> to_host(const cuda::DeviceBuffer &b, size_t n, const cuda::Stream &s) {
    std::vector<float> h(n);
    b.download(h.data(), n * sizeof(float), s);
    return h;
}

float sigmoid_f(float logit) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logit)))); }

// Per-token symmetric activation quantization: random rows, an all-zero row, a negative-only row and a row of exact
// .5 ties (max 7 at 4 bits gives the scale 1: 2.5 -> 2, -3.5 -> -4, 0.5 -> 0, 1.5 -> 2 with ties to even).
TEST_F(CudaWindowEvaluator, ActivationQuantizerIsBitExact) {
    for (int64_t cols : {5, 37, 576, 1536}) {
        const int64_t rows = 9;
        std::vector<float> x(static_cast<size_t>(rows * cols));
        std::mt19937_64 g(cols);
        std::normal_distribution<float> nd(0.0f, 2.0f);
        for (auto &v : x) v = nd(g);
        for (int64_t j = 0; j < cols; j++) {
            x[static_cast<size_t>(1 * cols + j)] = 0.0f;
            x[static_cast<size_t>(2 * cols + j)] = -std::fabs(x[static_cast<size_t>(2 * cols + j)]);
            const float ties[] = {7.0f, 2.5f, -3.5f, 0.5f, 1.5f, -0.5f, 6.5f};
            x[static_cast<size_t>(3 * cols + j)] = ties[j % 7];
        }
        const auto dx = to_device(x, stream_);
        cuda::DeviceBuffer dout(x.size() * sizeof(float));
        for (int bits : {2, 3, 4, 8}) {
            for (bool lac : {false, true}) {
                const float logits[2] = {1.5f, 0.7f};
                std::vector<float> ref(x.size());
                quant::act_quant_forward<float>(ref.data(), x.data(), lac ? logits : nullptr, rows, cols, bits, true);
                const float smax = lac ? sigmoid_f(logits[0]) : 1.0f, smin = lac ? sigmoid_f(logits[1]) : 1.0f;
                cuda::wineval::act_quant_sym_rows(dout.as<float>(), dx.as<float>(), rows, cols, bits, smax, smin,
                                                  stream_.handle());
                EXPECT_EQ(to_host(dout, x.size(), stream_), ref)
                    << "cols " << cols << " bits " << bits << " lac " << lac;
            }
        }
    }
}

// Three variants with their own LAC from one RMS-normalized row pass, as the q/k/v inputs are made: fq::rmsnorm then
// act_quant_forward per variant, bit for bit.
TEST_F(CudaWindowEvaluator, NormalizedRowPassGivesEachLinearItsOwnQuantizedInput) {
    const int64_t rows = 13, cols = 576;
    std::mt19937_64 g(5);
    const auto x = test::tiny_randn(g, rows * cols, 3.0), gain = test::tiny_randn(g, cols, 0.2, 1.0);
    std::vector<float> xn(x.size());
    rmsnorm(xn.data(), x.data(), gain.data(), rows, cols, 1e-5f);
    const float lac[3][2] = {{4.0f, 4.0f}, {1.0f, 2.0f}, {-0.5f, 0.3f}};
    const auto dx = to_device(x, stream_), dg = to_device(gain, stream_);
    cuda::DeviceBuffer out[3];
    cuda::wineval::RowPipeline p;
    p.input = cuda::wineval::RowInput::RmsNorm;
    p.x = dx.as<float>(), p.gain = dg.as<float>(), p.eps = 1e-5f;
    p.n2 = static_cast<int>(cols), p.bits = 4, p.n_out = 3;
    for (int v = 0; v < 3; v++) {
        out[v] = cuda::DeviceBuffer(x.size() * sizeof(float));
        p.out[v] = out[v].as<float>(), p.sig_max[v] = sigmoid_f(lac[v][0]), p.sig_min[v] = sigmoid_f(lac[v][1]);
    }
    cuda::wineval::row_pipeline(p, rows, stream_.handle());
    for (int v = 0; v < 3; v++) {
        std::vector<float> ref(x.size());
        quant::act_quant_forward<float>(ref.data(), xn.data(), lac[v], rows, cols, 4, true);
        EXPECT_EQ(to_host(out[v], x.size(), stream_), ref) << "variant " << v;
    }
}

// Bias, RoPE (both pairings, partial rotary dims), P_k and the asymmetric K/V quantizers against the CPU ops that
// quantized_layer_forward runs. Without P_k every operation is the CPU's, so the outputs are equal bit for bit; with
// P_k (a product of head_dim terms, summed in another order) q and unquantized k agree to FP32 rounding.
TEST_F(CudaWindowEvaluator, QkvStepMatchesTheCpuOps) {
    struct Shape {
        int H, Hk, D, rope_dim;
        RopeMode mode;
    };
    for (const Shape sh : {Shape{4, 2, 8, 8, RopeMode::Normal}, Shape{3, 3, 96, 32, RopeMode::Neox},
                           Shape{9, 3, 64, 64, RopeMode::Normal}}) {
        ModelConfig c;
        c.n_head = sh.H, c.n_head_kv = sh.Hk, c.head_dim = sh.D, c.rope_dim = sh.rope_dim, c.rope_mode = sh.mode;
        c.rope_freq_base = 10000.0f;
        const int64_t n_seq = 2, L = 70, n = n_seq * L, Q = c.q_dim(), KV = c.kv_dim(), W = Q + 2 * KV;
        std::mt19937_64 g(sh.D);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> qkv(static_cast<size_t>(n * W)), bias(static_cast<size_t>(W)), pk(sh.D * sh.D),
            pkit(sh.D * sh.D);
        for (auto *v : {&qkv, &bias, &pk, &pkit})
            for (auto &e : *v) e = nd(g);
        const quant::fast::RopeTable tab = quant::fast::rope_table(c, {}, 0, L);
        const auto d_qkv = to_device(qkv, stream_), d_bias = to_device(bias, stream_);
        const auto d_cs = to_device(tab.cs, stream_),
                   d_sn = to_device(tab.sn, stream_), d_pk = to_device(pk, stream_), d_pkit = to_device(pkit, stream_);
        cuda::DeviceBuffer dq(static_cast<size_t>(n * Q) * 4), dk(static_cast<size_t>(n * KV) * 4),
            dv(static_cast<size_t>(n * KV) * 4);
        for (bool with_pk : {false, true}) {
            const int kv_bits = with_pk ? 16 : 3;
            const float lac_k[2] = {2.0f, 1.0f}, lac_v[2] = {0.5f, 3.0f};
            // CPU: bias, RoPE, P_k, K/V quantization per (token, head), as quantized_layer_forward does them.
            std::vector<float> q(static_cast<size_t>(n * Q)), k(static_cast<size_t>(n * KV)), v(k.size());
            for (int64_t t = 0; t < n; t++)
                for (int64_t j = 0; j < W; j++) {
                    const float e = qkv[static_cast<size_t>(t * W + j)] + bias[static_cast<size_t>(j)];
                    if (j < Q) q[static_cast<size_t>(t * Q + j)] = e;
                    else if (j < Q + KV) k[static_cast<size_t>(t * KV + j - Q)] = e;
                    else v[static_cast<size_t>(t * KV + j - Q - KV)] = e;
                }
            std::vector<int32_t> pos(static_cast<size_t>(n));
            for (int64_t t = 0; t < n; t++) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t % L);
            quant::fast::rope_apply(q.data(), pos.data(), n, sh.H, sh.D, tab, false, pool);
            quant::fast::rope_apply(k.data(), pos.data(), n, sh.Hk, sh.D, tab, false, pool);
            if (with_pk) {
                quant::kron_transform_forward<float>(q.data(), q.data(), nullptr, pkit.data(), n, sh.H, sh.D);
                quant::kron_transform_forward<float>(k.data(), k.data(), nullptr, pk.data(), n, sh.Hk, sh.D);
            }
            quant::act_quant_forward<float>(k.data(), k.data(), lac_k, n * sh.Hk, sh.D, kv_bits, false);
            quant::act_quant_forward<float>(v.data(), v.data(), lac_v, n * sh.Hk, sh.D, kv_bits, false);
            cuda::wineval::QkvPostArgs a;
            a.qkv = d_qkv.as<float>(), a.bias = d_bias.as<float>(), a.rope_cs = d_cs.as<float>();
            a.rope_sn = d_sn.as<float>();
            a.pk_q = with_pk ? d_pkit.as<float>() : nullptr, a.pk_k = with_pk ? d_pk.as<float>() : nullptr;
            a.q = dq.as<float>(), a.k = dk.as<float>(), a.v = dv.as<float>();
            a.n_seq = n_seq, a.seq_len = L, a.n_head = sh.H, a.n_head_kv = sh.Hk, a.head_dim = sh.D;
            a.rope_dim = sh.rope_dim, a.rope_neox = sh.mode == RopeMode::Neox;
            a.k_bits = a.v_bits = kv_bits;
            a.k_sig_max = sigmoid_f(lac_k[0]), a.k_sig_min = sigmoid_f(lac_k[1]);
            a.v_sig_max = sigmoid_f(lac_v[0]), a.v_sig_min = sigmoid_f(lac_v[1]);
            cuda::wineval::qkv_post(a, stream_.handle());
            const auto gq = to_host(dq, q.size(), stream_), gk = to_host(dk, k.size(), stream_),
                       gv = to_host(dv, v.size(), stream_);
            // GPU layout [seq][head][pos][D] back to the CPU's [token][head * D].
            auto cpu_index = [&](int64_t i, int heads) {
                const int64_t d = i % sh.D, p = (i / sh.D) % L, h = (i / (sh.D * L)) % heads;
                const int64_t s = i / (sh.D * L * heads);
                return static_cast<size_t>((s * L + p) * heads * sh.D + h * sh.D + d);
            };
            double err_q = 0, err_k = 0;
            int64_t diff_v = 0, diff_k = 0;
            for (size_t i = 0; i < gq.size(); i++)
                err_q = std::max(err_q, (double)std::fabs(gq[i] - q[cpu_index(i, sh.H)]));
            for (size_t i = 0; i < gk.size(); i++) {
                err_k = std::max(err_k, (double)std::fabs(gk[i] - k[cpu_index(i, sh.Hk)]));
                diff_k += gk[i] != k[cpu_index(i, sh.Hk)];
                diff_v += gv[i] != v[cpu_index(i, sh.Hk)];
            }
            const std::string where = "D " + std::to_string(sh.D) + (with_pk ? " with P_k" : "");
            if (with_pk) {
                EXPECT_LT(err_q, 1e-4) << where;
                EXPECT_LT(err_k, 1e-4) << where;
            } else {
                EXPECT_EQ(err_q, 0.0) << where;
                EXPECT_EQ(diff_k, 0) << where;
            }
            EXPECT_EQ(diff_v, 0) << where;  // V never passes through P_k
        }
    }
}

// ---- scoring on the device ------------------------------------------------------------------------------------------

// Targets of perplexity-style windows: each row's next token, none (-1) for the last row and for every 7th row.
std::vector<int32_t> next_token_targets(const std::vector<int32_t> &tok, int64_t n_seq, int64_t seq_len) {
    std::vector<int32_t> t(tok.size(), -1);
    for (int64_t s = 0; s < n_seq; s++)
        for (int64_t r = 0; r + 1 < seq_len; r++)
            if ((s * seq_len + r) % 7 != 3) t[static_cast<size_t>(s * seq_len + r)] = tok[size_t(s * seq_len + r + 1)];
    return t;
}

// The CPU's scoring (windows_score_fn's loop) of logits [rows][V] against device results nll / argmax; returns the
// largest |difference| relative to max(1, |nll|) and counts argmax mismatches.
double check_scores(const std::vector<float> &logits, int64_t V, const std::vector<int32_t> &targets,
                    const std::vector<double> &nll, const std::vector<int32_t> *argmax, int64_t *argmax_diff) {
    double worst = 0;
    *argmax_diff = 0;
    for (size_t r = 0; r < targets.size(); r++) {
        const float *row = logits.data() + r * V;
        const int32_t t = targets[r];
        if (t < 0) {
            EXPECT_EQ(nll[r], 0.0) << "row " << r;
        } else {
            const double ref = token_nll(row, V, t);
            const double d = ref == nll[r] ? 0.0 : std::fabs(ref - nll[r]) / std::max(1.0, std::fabs(ref));
            worst = std::max(worst, std::isnan(d) ? 1e30 : d);
        }
        if (argmax) {
            int64_t best = 0;
            for (int64_t j = 1; j < V; ++j)
                if (row[j] > row[best]) best = j;
            *argmax_diff += (*argmax)[r] != best;
        }
    }
    return worst;
}

// The scorer on logits given to it: random rows at the SmolLM2 vocabulary and at odd widths, a maximum repeated at
// three ids (the lowest must win), a row of equal values, a row of -inf but one id, and magnitudes of 1e4.
TEST_F(CudaWindowEvaluator, ScoreRowsMatchesTokenNllAndTheLowestArgmax) {
    for (int64_t V : {int64_t{49152}, int64_t{1001}, int64_t{7}}) {
        const int64_t rows = 37;
        std::mt19937_64 g(V);
        std::vector<float> lg = test::tiny_randn(g, static_cast<size_t>(rows * V), 4.0);
        auto row = [&](int64_t r) { return lg.data() + r * V; };
        for (int64_t j : {int64_t{1}, V / 2, V - 1}) row(1)[j] = 30.0f;
        std::fill(row(2), row(2) + V, 0.25f);
        std::fill(row(3), row(3) + V, -INFINITY);
        row(3)[V / 2] = 1.0f;
        for (int64_t j = 0; j < V; j++) row(4)[j] *= 2500.0f;
        std::vector<int32_t> targets(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; r++) targets[size_t(r)] = r % 5 == 4 ? -1 : static_cast<int32_t>(g() % V);
        targets[3] = static_cast<int32_t>(V / 2);
        const auto d_lg = to_device(lg, stream_), d_t = to_device(targets, stream_);
        cuda::DeviceBuffer d_nll(rows * sizeof(double)), d_arg(rows * sizeof(int32_t));
        cuda::wineval::score_rows(d_lg.as<float>(), rows, V, d_t.as<int32_t>(), d_nll.as<double>(),
                                  d_arg.as<int32_t>(), stream_.handle());
        std::vector<double> nll(static_cast<size_t>(rows));
        std::vector<int32_t> arg(static_cast<size_t>(rows));
        d_nll.download(nll.data(), nll.size() * sizeof(double), stream_);
        d_arg.download(arg.data(), arg.size() * sizeof(int32_t), stream_);
        int64_t arg_diff = 0;
        EXPECT_LE(check_scores(lg, V, targets, nll, &arg, &arg_diff), kNllTol) << "V " << V;
        EXPECT_EQ(arg_diff, 0) << "V " << V;
        EXPECT_EQ(arg[1], 1) << "V " << V;
        EXPECT_EQ(arg[2], 0) << "V " << V;
        EXPECT_EQ(arg[3], V / 2) << "V " << V;
        EXPECT_EQ(nll[3], 0.0) << "V " << V;
    }
}

// score() against the CPU's scoring of forward()'s logits for the same windows: several groups of sequences and
// logits blocks per call, rows without a target, argmax omitted or not.
TEST_F(CudaWindowEvaluator, ScoreMatchesTheCpuScoringOfForwardLogits) {
    auto tiny = test::make_tiny_llama({}, 21, ::testing::TempDir() + "fq_wineval_score.bin");
    auto st = test::file_exists(test::stories_path()) ? load_gguf_model(test::stories_path(), {}) : nullptr;
    for (const Model *m : {tiny.get(), st.get()}) {
        if (!m) continue;
        const char *label = m == tiny.get() ? "tiny" : "stories260K";
        const int64_t L = m->config.n_ctx_train, V = m->config.n_vocab;
        for (const Case &cs : {Case{"flatquant", "w4a4kv4"}, Case{"rtn", "w16a16"}}) {
            auto qm = build(*m, pool, cs, 16);
            auto ev = cuda::make_window_evaluator(*qm, 0);
            for (const auto &[n_seq, seq_len] : Shapes{{2 * 8192 / L + 3, L}, {3, 37}, {1, 1}}) {
                const auto tok = random_tokens(n_seq * seq_len, static_cast<int>(V), 31);
                const auto targets = next_token_targets(tok, n_seq, seq_len);
                std::vector<double> nll(tok.size(), -1.0), nll2(tok.size(), -1.0);
                std::vector<int32_t> arg(tok.size(), -1);
                ev->score(tok.data(), targets.data(), n_seq, seq_len, nll.data(), arg.data());
                ev->score(tok.data(), targets.data(), n_seq, seq_len, nll2.data(), nullptr);
                const auto logits = gpu_logits(*ev, m->config, tok, n_seq, seq_len);
                int64_t arg_diff = 0;
                const double worst = check_scores(logits, V, targets, nll, &arg, &arg_diff);
                std::printf("score %s %s %s %lld x %lld: max |nll - token_nll| / max(1, nll) %.2e\n", label,
                            cs.method, cs.bits, (long long)n_seq, (long long)seq_len, worst);
                EXPECT_LE(worst, kNllTol) << label;
                EXPECT_EQ(arg_diff, 0) << label;
                EXPECT_EQ(nll2, nll) << label;
            }
        }
    }
}

TEST_F(CudaWindowEvaluator, ScoreRefusesTargetsOutsideTheVocabulary) {
    auto m = test::make_tiny_llama({}, 3, ::testing::TempDir() + "fq_wineval_score_err.bin");
    auto qm = build(*m, pool, {"rtn", "w4a4kv4"}, 16);
    auto ev = cuda::make_window_evaluator(*qm, 0);
    const int64_t V = m->config.n_vocab;
    auto tok = random_tokens(2 * 10, static_cast<int>(V), 1);
    auto targets = next_token_targets(tok, 2, 10);
    std::vector<double> nll(tok.size());
    auto status_of = [&](std::string *msg) {
        try {
            ev->score(tok.data(), targets.data(), 2, 10, nll.data(), nullptr);
        } catch (const Error &e) {
            if (msg) *msg = e.what();
            return e.status();
        }
        return (int32_t)FQ_STATUS_OK;
    };
    std::string msg;
    targets[13] = static_cast<int32_t>(V);
    EXPECT_EQ(status_of(&msg), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(msg.find("target id 40 at row 13"), std::string::npos) << msg;
    targets[13] = -2;
    EXPECT_EQ(status_of(nullptr), FQ_STATUS_INVALID_ARGUMENT);
    targets[13] = -1;
    tok[4] = -1;
    EXPECT_EQ(status_of(nullptr), FQ_STATUS_INVALID_ARGUMENT);
    tok[4] = 0;
    EXPECT_EQ(status_of(nullptr), FQ_STATUS_OK);  // still usable
    EXPECT_EQ(nll[13], 0.0);
}

// ---- refusals, threads, timing ----------------------------------------------------------------------------------

TEST_F(CudaWindowEvaluator, RefusesBadIdsAndLengths) {
    auto m = test::make_tiny_llama({}, 3, ::testing::TempDir() + "fq_wineval_err.bin");
    auto qm = build(*m, pool, {"rtn", "w4a4kv4"}, 16);
    auto ev = cuda::make_window_evaluator(*qm, 0);
    auto status_of = [&](std::vector<int32_t> tok, int64_t n_seq, int64_t len, std::string *msg) {
        try {
            ev->forward(tok.data(), n_seq, len, [](int64_t, int64_t, int64_t, const float *) {});
        } catch (const Error &e) {
            if (msg) *msg = e.what();
            return e.status();
        }
        return (int32_t)FQ_STATUS_OK;
    };
    auto tok = random_tokens(2 * 10, m->config.n_vocab, 1);
    tok[13] = m->config.n_vocab + 5;
    std::string msg;
    EXPECT_EQ(status_of(tok, 2, 10, &msg), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(msg.find("token id 45"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index 13 (sequence 1, position 3)"), std::string::npos) << msg;
    tok[13] = -1;
    EXPECT_EQ(status_of(tok, 2, 10, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    const auto long_tok = random_tokens(m->config.n_ctx_train + 1, m->config.n_vocab, 2);
    EXPECT_EQ(status_of(long_tok, 1, m->config.n_ctx_train + 1, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of(long_tok, 1, 0, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    // Still usable after the refusals; a full-context sequence is fine.
    EXPECT_EQ(status_of(long_tok, 1, m->config.n_ctx_train, nullptr), FQ_STATUS_OK);
    EXPECT_GE(ev->preferred_batch(2048), 1);
    EXPECT_GE(ev->preferred_batch(1), 1);
}

TEST_F(CudaWindowEvaluator, CallsFromTwoThreadsAreSerialized) {
    auto m = test::make_tiny_llama({}, 4, ::testing::TempDir() + "fq_wineval_thr.bin");
    auto qm = build(*m, pool, {"rotate", "w4a4kv4"}, 16);
    auto ev = cuda::make_window_evaluator(*qm, 0);
    const auto tok = random_tokens(4 * 33, m->config.n_vocab, 5);
    const auto ref = gpu_logits(*ev, m->config, tok, 4, 33);
    std::vector<float> a, b;
    std::thread t1([&] { a = gpu_logits(*ev, m->config, tok, 4, 33); });
    std::thread t2([&] { b = gpu_logits(*ev, m->config, tok, 4, 33); });
    t1.join();
    t2.join();
    EXPECT_EQ(a, ref);  // the GPU path is deterministic
    EXPECT_EQ(b, ref);
}

// Evaluation throughput: n_seq x seq_len tokens per call, logits discarded by the sink.
double tokens_per_second(cuda::WindowEvaluator &ev, const ModelConfig &c, int64_t n_seq, int64_t seq_len) {
    const auto tok = random_tokens(n_seq * seq_len, c.n_vocab, 8);
    auto sink = [](int64_t, int64_t, int64_t, const float *) {};
    ev.forward(tok.data(), n_seq, seq_len, sink);  // warm-up: buffers, tables, kernel loading
    const int reps = 3;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; i++) ev.forward(tok.data(), n_seq, seq_len, sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return reps * n_seq * seq_len / s;
}

TEST_F(CudaWindowEvaluator, TimingStories260K) {
    if (!test::file_exists(test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
    auto m = load_gguf_model(test::stories_path(), {});
    auto qm = build(*m, pool, {"rotate", "w4a4kv4"}, 64);
    auto ev = cuda::make_window_evaluator(*qm, 0);
    const int64_t L = m->config.n_ctx_train, b = ev->preferred_batch(L);
    std::printf("stories260K w4a4kv4 rotate: %lld x %lld tokens per call: %.0f tokens/s\n", (long long)b,
                (long long)L, tokens_per_second(*ev, m->config, b, L));
}

// Speed does not depend on the values, so the fake-quantized model is assembled directly (no reparameterization):
// the base weights as they are, random Kronecker / P_h / P_k factors, and LAC logits that differ per linear (the
// calibrated FlatQuant case, where q/k/v and up/gate each get their own quantized input and product).
TEST_F(CudaWindowEvaluator, TimingSmolLM2ShapedRandomModel) {
    if (test::skip_slow()) GTEST_SKIP() << "FQ_SKIP_SLOW is set";
    test::TinyDims d;
    d.n_layer = 30, d.n_embd = 576, d.n_ff = 1536, d.n_head = 9, d.n_head_kv = 3, d.head_dim = 64, d.rope_dim = 64;
    d.n_vocab = 49152, d.n_ctx = 2048;
    auto m = test::make_tiny_llama(d, 12, ::testing::TempDir() + "fq_wineval_smol.bin");
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
    qm.weights_quantized = true;
    for (LayerWeights &L : m->weights.layers) {
        quant::QuantLayer q;
        q.attn_norm = L.attn_norm, q.ffn_norm = L.ffn_norm;
        std::vector<float> *w[quant::kNumLinears] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_up, &L.w_gate, &L.w_down};
        for (int i = 0; i < quant::kNumLinears; i++) q.lin[i].w = std::move(*w[i]);
        quant::LayerTransforms &t = q.online;
        kron(t.pa, d.n_embd);
        kron(t.pug, d.n_embd);
        kron(t.pd, d.n_ff);
        t.ph.k = d.n_head, t.ph.m = factor(d.n_head);
        t.pk.k = d.head_dim, t.pk.m = factor(d.head_dim), t.pk.m_inv_t = factor(d.head_dim);
        t.lac = true;
        for (int i = 0; i < quant::kNumLinears; i++) t.lac_lin[i] = {3.0f + 0.1f * i, 2.5f + 0.1f * i};
        t.lac_k = {3.0f, 3.0f}, t.lac_v = {2.0f, 2.0f};
        qm.layers.push_back(std::move(q));
    }
    auto ev = cuda::make_window_evaluator(qm, 0);
    std::printf("SmolLM2-shaped w4a4kv4 flatquant-like: preferred batch at 2048: %lld\n",
                (long long)ev->preferred_batch(2048));
    std::printf("SmolLM2-shaped w4a4kv4 flatquant-like: 8 x 2048 tokens per call: %.0f tokens/s\n",
                tokens_per_second(*ev, m->config, 8, 2048));
    std::printf("SmolLM2-shaped w4a4kv4 flatquant-like: 1 x 128 tokens per call: %.0f tokens/s\n",
                tokens_per_second(*ev, m->config, 1, 128));
    // Perplexity-style calls (8 x 2048 next-token targets): score() on the device, and the host scoring of
    // forward()'s logits (windows_score_fn on the calling thread, what score() did before), which also checks
    // score() at this vocabulary.
    const int64_t n_seq = 8, L = 2048, V = d.n_vocab;
    const auto tok = random_tokens(n_seq * L, d.n_vocab, 9);
    const auto targets = next_token_targets(tok, n_seq, L);
    std::vector<double> nll(tok.size()), nll_host(tok.size());
    std::vector<int32_t> arg(tok.size()), arg_host(tok.size());
    auto seconds = [](const std::function<void()> &fn) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    ev->score(tok.data(), targets.data(), n_seq, L, nll.data(), arg.data());  // warm-up
    const double t_dev =
        seconds([&] { ev->score(tok.data(), targets.data(), n_seq, L, nll.data(), arg.data()); });
    const WindowsScoreFn host = windows_score_fn(m->config, [&](const int32_t *t, int64_t ns, int64_t len,
                                                                const WindowLogitsSink &sink) {
        ev->forward(t, ns, len, sink);
    });
    const double t_host =
        seconds([&] { host(tok.data(), targets.data(), n_seq, L, nll_host.data(), arg_host.data()); });
    std::printf("SmolLM2-shaped w4a4kv4 flatquant-like: score 8 x 2048: %.3f s on the device (%.0f tokens/s), "
                "%.3f s scored on the host from forward()\n", t_dev, n_seq * L / t_dev, t_host);
    double worst = 0;
    for (size_t i = 0; i < nll.size(); i++)
        worst = std::max(worst, std::fabs(nll[i] - nll_host[i]) / std::max(1.0, std::fabs(nll_host[i])));
    EXPECT_LE(worst, kNllTol) << "V " << V;
    EXPECT_EQ(arg, arg_host);
}

// Opt-in (FQ_BENCH_WINEVAL=1): the steps of one forward at the SmolLM2-135M shape, 8 x 2048 tokens, each timed alone
// (milliseconds for all 30 layers; logits: the whole output projection).
TEST_F(CudaWindowEvaluator, BenchStepsAtSmolLM2Shape) {
    if (!std::getenv("FQ_BENCH_WINEVAL")) GTEST_SKIP() << "set FQ_BENCH_WINEVAL=1 to run";
    const int64_t n_seq = 8, L = 2048, n = n_seq * L, E = 576, F = 1536, H = 9, Hk = 3, D = 64, V = 49152;
    const int layers = 30;
    std::mt19937_64 g(3);
    auto dev_rand = [&](int64_t count) {
        return to_device(test::tiny_randn(g, static_cast<size_t>(count), 0.05), stream_);
    };
    auto a = dev_rand(n * 2 * F), b = dev_rand(n * 3 * F), w = dev_rand(V * E);
    auto p1 = dev_rand(64 * 64), p2 = dev_rand(64 * 64);
    auto ms = [&](const std::function<void()> &fn, int reps) {
        fn();
        stream_.synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) fn();
        stream_.synchronize();
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    };
    void *sp = stream_.handle();
    float *A = a.as<float>(), *B = b.as<float>(), *Wt = w.as<float>();
    auto gemm = [&](int64_t out, int64_t in) {
        return ms([&] { cuda::gemm_f32(false, true, n, out, in, 1.0f, A, in, Wt, in, 0.0f, B, out, sp); }, 3);
    };
    const double t_qkv = gemm((H + 2 * Hk) * D, E), t_o = gemm(E, E), t_ug = gemm(2 * F, E), t_d = gemm(E, F);
    const double t_att = ms([&] {
        cuda::wineval::attention(B, A, A + n * H * D, A + n * (H + Hk) * D, n_seq, L, H, Hk, D, 0.125f, sp);
    }, 3);
    // The four row passes of a layer, FlatQuant-style (transforms, separate LAC per linear).
    float *outs[3] = {B, B + n * E, B + 2 * n * E};
    auto pass = [&](cuda::wineval::RowInput input, int n1, int n2, bool left_only, int n_out) {
        cuda::wineval::RowPipeline p;
        p.input = input, p.x = A, p.gain = p1.as<float>(), p.eps = 1e-5f;
        p.n1 = n1, p.n2 = n2, p.p1 = p1.as<float>(), p.p2 = left_only ? nullptr : p2.as<float>();
        p.bits = 4, p.n_out = n_out;
        for (int v = 0; v < n_out; v++) p.out[v] = outs[v], p.sig_max[v] = 0.9f, p.sig_min[v] = 0.8f;
        cuda::wineval::row_pipeline(p, n, sp);
    };
    const double t_rows = ms([&] {
        pass(cuda::wineval::RowInput::RmsNorm, 24, 24, false, 3);
        pass(cuda::wineval::RowInput::Plain, 9, 64, true, 1);
        pass(cuda::wineval::RowInput::RmsNorm, 24, 24, false, 2);
        pass(cuda::wineval::RowInput::SwiGlu, 32, 48, false, 1);
    }, 3);
    const double t_logits = ms([&] {
        for (int64_t r0 = 0; r0 < n; r0 += 341)
            cuda::gemm_f32(false, true, std::min<int64_t>(341, n - r0), V, E, 1.0f, A + r0 * E, E, Wt, E, 0.0f, B, V,
                           sp);
    }, 1);
    std::printf("SmolLM2 shape, %lld tokens, ms for 30 layers: qkv %.1f  o %.1f  up|gate %.1f  down %.1f"
                "  attention %.1f"
                "  row passes (norm, transform, quantize) %.1f; logits %.1f\n",
                (long long)n, layers * t_qkv, layers * t_o, layers * t_ug, layers * t_d, layers * t_att,
                layers * t_rows, t_logits);
}

// The real default model, when present: a few windows against the CPU, and perplexity through WindowsForwardFn.
TEST_F(CudaWindowEvaluator, SmolLM2MatchesTheCpu) {
    const std::string path = test::smollm2_path();
    if (path.empty()) GTEST_SKIP() << "SmolLM2 GGUF not available (FQ_SMOLLM2_GGUF)";
    auto m = load_gguf_model(path, {});
    Tally quantized;
    for (const Case &cs : {Case{"rtn", "w4a4kv4"}, Case{"rotate", "w4a4kv4"}, Case{"rtn", "w16a16"}}) {
        auto qm = build(*m, pool, cs, 64);
        const Tally t = check_model(*qm, pool, std::string("SmolLM2 ") + cs.method + " " + cs.bits, {{2, 256}},
                                    qm->scheme.bits.w == 16);
        if (online_quantization(*qm)) quantized.add(t);
    }
    // Without learned transforms SmolLM2 at W4A4KV4 is near chance (perplexity 373 rotated, 11527 plain): nearly every
    // value sits close to a rounding boundary somewhere in 30 layers, so the first FP32-order difference flips codes
    // in almost every row (measured on an H100: 3% of the rows within 1e-4, perplexity 16% apart on random tokens).
    // What is left to check at this model size is finiteness (above) and a perplexity of the same size; stories260K
    // above carries the tight model-wide criteria, and bench_engine compares the calibrated model's perplexity.
    std::printf("SmolLM2 all quantized runs: rows within %.0e: %.4f  ppl rel %.2e\n", kTight,
                quantized.tight_fraction(), quantized.ppl_rel());
    EXPECT_LE(quantized.ppl_rel(), 0.3);
}

}  // namespace
}  // namespace fq

#endif  // FQ_HAVE_CUDA
