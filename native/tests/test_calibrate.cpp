// FlatQuant calibration on the CPU:
//  - the BLAS-backed products (fast_ops) against the double-precision reference ops of kron.h and layer_ops.h;
//  - the whole calibration layer (FlatLayer<double>): its hand-chained backward against central finite differences
//    of log(MSE), with every transform, smoothing scale and LWC on (quantizers off, so the layer is smooth), for both
//    factor forms, GQA and q/k/v biases;
//  - the calibration loop on a tiny random LLaMA: the W4A4KV4 loss falls in every layer, progress and
//    cancellation work, and it is deterministic;
//  - calibration data: the WikiText-2 rows as Hugging Face serves them, the seeded windows;
//  - end to end on the real stories260K model: W4A4KV4 perplexity of rtn / rotate / flatquant, RTN and GPTQ weights;
//  - (opt-in, FQ_BENCH_CALIB=1) timing on SmolLM2-135M-shaped layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "core/threadpool.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/fakequant_forward.h"
#include "quant/fast_ops.h"
#include "quant/flat_layer.h"
#include "quant/kron.h"
#include "quant/layer_ops.h"
#include "quant/optim.h"
#include "quant/reparameterize.h"
#include "support/paths.h"
#include "support/tiny_llama.h"

namespace fq::quant {
namespace {

std::vector<double> randn(size_t n, uint64_t seed, double scale = 1.0) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd(0.0, scale);
    std::vector<double> v(n);
    for (auto &x : v) x = nd(g);
    return v;
}

double max_abs_diff(const std::vector<double> &a, const std::vector<double> &b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); i++) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

class FastOps : public ::testing::TestWithParam<int> {};  // parameter: thread count

void check_kron_case(ThreadPool &pool, int64_t rows, int n1, int n2) {
    const int n = n1 * n2;
    const auto x = randn(rows * n, 1), g = randn(rows * n, 2), p1 = randn(n1 * n1, 3), p2 = randn(n2 * n2, 4);
    for (int mask = 0; mask < 4; mask++) {
        const double *a = (mask & 1) ? p1.data() : nullptr, *b = (mask & 2) ? p2.data() : nullptr;
        std::vector<double> ref(rows * n), got(rows * n);
        kron_transform_forward(ref.data(), x.data(), a, b, rows, n1, n2);
        fast::kron_forward(got.data(), x.data(), a, b, rows, n1, n2, pool);
        EXPECT_LT(max_abs_diff(ref, got), 1e-12) << "mask " << mask;
        got = x;  // in place
        fast::kron_forward(got.data(), got.data(), a, b, rows, n1, n2, pool);
        EXPECT_LT(max_abs_diff(ref, got), 1e-12) << "in place, mask " << mask;
        std::vector<double> rdx(rows * n), rd1(n1 * n1, 0.5), rd2(n2 * n2, 0.25);
        std::vector<double> gdx(rows * n), gd1 = rd1, gd2 = rd2;
        kron_transform_backward(rdx.data(), a ? rd1.data() : nullptr, b ? rd2.data() : nullptr, g.data(), x.data(), a,
                                b, rows, n1, n2);
        fast::kron_backward(gdx.data(), a ? gd1.data() : nullptr, b ? gd2.data() : nullptr, g.data(), x.data(), a, b,
                            rows, n1, n2, pool);
        EXPECT_LT(max_abs_diff(rdx, gdx), 1e-12) << "mask " << mask;
        EXPECT_LT(max_abs_diff(rd1, gd1), 1e-10) << "mask " << mask;
        EXPECT_LT(max_abs_diff(rd2, gd2), 1e-10) << "mask " << mask;
    }
}

// Small sizes run the serial product, large ones the BLAS.
TEST_P(FastOps, KronMatchesTheReferenceForEveryFactorCombination) {
    ThreadPool pool(GetParam());
    check_kron_case(pool, 7, 3, 5);
    check_kron_case(pool, 64, 16, 24);
}

void check_attention_case(ThreadPool &pool, int64_t L, int D) {
    const int64_t n_seq = 2;
    const int H = 4, Hkv = 2;
    const auto q = randn(n_seq * L * H * D, 5), k = randn(n_seq * L * Hkv * D, 6), v = randn(n_seq * L * Hkv * D, 7);
    const auto dout = randn(n_seq * L * H * D, 8);
    std::vector<double> ro(q.size()), rl(n_seq * H * L);
    attention_forward(ro.data(), rl.data(), q.data(), k.data(), v.data(), n_seq, L, H, Hkv, D);
    std::vector<double> rq(q.size()), rk(k.size()), rv(v.size());
    attention_backward(rq.data(), rk.data(), rv.data(), dout.data(), q.data(), k.data(), v.data(), rl.data(), n_seq, L,
                       H, Hkv, D);
    for (int64_t block : {1, 4, 6, 128}) {
        std::vector<double> go(q.size()), gl(rl.size()), gq(q.size()), gk(k.size()), gv(v.size());
        fast::attention_forward(go.data(), gl.data(), q.data(), k.data(), v.data(), n_seq, L, H, Hkv, D, pool, block);
        EXPECT_LT(max_abs_diff(ro, go), 1e-12) << "block " << block;
        EXPECT_LT(max_abs_diff(rl, gl), 1e-12) << "block " << block;
        fast::attention_backward(gq.data(), gk.data(), gv.data(), dout.data(), q.data(), k.data(), v.data(), go.data(),
                                 gl.data(), n_seq, L, H, Hkv, D, pool, block);
        EXPECT_LT(max_abs_diff(rq, gq), 1e-11) << "block " << block;
        EXPECT_LT(max_abs_diff(rk, gk), 1e-11) << "block " << block;
        EXPECT_LT(max_abs_diff(rv, gv), 1e-11) << "block " << block;
    }
}

TEST_P(FastOps, AttentionMatchesTheReferenceForEveryQueryBlocking) {
    ThreadPool pool(GetParam());
    check_attention_case(pool, 6, 3);
    check_attention_case(pool, 200, 16);
}

INSTANTIATE_TEST_SUITE_P(Threads, FastOps, ::testing::Values(1, 2));

// ---- the calibration layer against finite differences ------------------------------------------------------------

struct LayerCase {
    bool direct_inv;
    bool bias;
    RopeMode rope;
};

class LayerGradient : public ::testing::TestWithParam<LayerCase> {};

TEST_P(LayerGradient, EveryParameterMatchesCentralDifferencesOfLogMse) {
    const LayerCase lc = GetParam();
    test::TinyDims d;
    d.n_layer = 1;
    d.qkv_bias = lc.bias;
    d.rope_mode = lc.rope;
    auto model = test::make_tiny_llama(d, 11, ::testing::TempDir() + "fq_tiny_grad.bin");
    ThreadPool pool(2);
    LayerSpec spec;  // every piece on, quantizers off: the layer is smooth in all parameters
    spec.pa = spec.pug = spec.pd = spec.ph = spec.pv = spec.pk = true;
    spec.add_diag = spec.lwc = spec.lac = true;
    spec.direct_inv = lc.direct_inv;
    FlatLayer<double> layer(model->config, model->weights.layers[0], {}, spec, pool);
    const int64_t n_seq = 2, L = 5, rows = n_seq * L, E = d.n_embd;
    const auto h0 = randn(rows * E, 21);
    std::vector<double> target(rows * E), out(rows * E);
    SmoothStats stats = smooth_stats_init(model->config);
    layer.forward(target.data(), h0.data(), n_seq, L, /*ori=*/true, &stats);
    NormalRng rng(31);
    layer.init(rng, &stats, 0.3);
    // Move every parameter off its special initial value (s = 1, equal logits) so no term vanishes by symmetry.
    std::vector<double> &p = layer.params();
    const auto noise = randn(p.size(), 41);
    for (const auto &b : layer.blocks()) {
        const bool diag = b.name.size() > 2 && b.name.compare(b.name.size() - 2, 2, ".c") == 0;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            p[i] += b.clip ? 0.7 * noise[i] : diag ? 0.1 * p[i] * noise[i] : 0.1 * noise[i];
        }
    }
    auto log_mse = [&]() {
        layer.forward(out.data(), h0.data(), n_seq, L, false, nullptr);
        return std::log(mse_loss_forward(out.data(), target.data(), rows * E));
    };
    const double mse = std::exp(log_mse());
    ASSERT_GT(mse, 1e-8);  // LWC makes the output differ from the FP target
    std::vector<double> dout(rows * E);
    mse_loss_backward(dout.data(), out.data(), target.data(), rows * E, mse, true);
    layer.backward(dout.data());
    const std::vector<double> g = layer.grads();
    const double h = 1e-6;
    for (const auto &b : layer.blocks()) {
        int bad = 0;
        double max_num = 0;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            const double x0 = p[i];
            p[i] = x0 + h;
            const double fp = log_mse();
            p[i] = x0 - h;
            const double fm = log_mse();
            p[i] = x0;
            const double num = (fp - fm) / (2 * h);
            max_num = std::max(max_num, std::fabs(num));
            if (!(std::fabs(g[i] - num) <= 2e-7 + 2e-6 * std::fabs(num)) && bad++ < 3) {
                ADD_FAILURE() << b.name << "[" << i - b.offset << "]: analytic " << g[i] << " numeric " << num;
            }
        }
        // Without quantizers the LAC logits do nothing and P_k cancels exactly (q P_k^{-T} (k P_k)^T = q k^T).
        if (b.name.rfind("lac.", 0) != 0 && b.name.rfind("pk.", 0) != 0) {
            EXPECT_GT(max_num, 1e-6) << b.name;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Forms, LayerGradient,
                         ::testing::Values(LayerCase{false, false, RopeMode::Normal},
                                           LayerCase{true, true, RopeMode::Neox},
                                           LayerCase{false, true, RopeMode::Neox}),
                         [](const ::testing::TestParamInfo<LayerCase> &i) {
                             return std::string(i.param.direct_inv ? "DirectInverse" : "SvdCayley") +
                                    (i.param.bias ? "Bias" : "") + (i.param.rope == RopeMode::Neox ? "Neox" : "Normal");
                         });

// ---- the calibration loop ------------------------------------------------------------------------------------------

class CalibrationLoop : public ::testing::Test {
  protected:
    void SetUp() override {
        test::TinyDims d;
        d.n_embd = 32, d.n_ff = 48, d.n_head = 4, d.n_head_kv = 2, d.head_dim = 8, d.rope_dim = 8;
        model = test::make_tiny_llama(d, 31, ::testing::TempDir() + "fq_tiny_loop.bin");
        std::mt19937_64 g(32);
        for (int i = 0; i < 2000; i++) stream.push_back(static_cast<int32_t>(g() % model->config.n_vocab));
        opts.nsamples = 8;
        opts.seqlen = 32;
        opts.batch = 2;
        opts.epochs = 8;
        scheme.bits = parse_bits("w4a4kv4");
    }
    std::unique_ptr<Model> model;
    std::vector<int32_t> stream;
    CalibOptions opts;
    QuantScheme scheme;
    ThreadPool pool{2};
};

TEST_F(CalibrationLoop, W4A4KV4LossFallsInEveryLayer) {
    const auto windows = sample_windows(stream, opts.nsamples, opts.seqlen, opts.seed);
    std::vector<CalibEvent> events;
    int64_t last_done = -1, last_total = 0;
    auto on_progress = [](void *user, const char *stage, int64_t done, int64_t total) -> int32_t {
        auto *p = static_cast<std::pair<int64_t *, int64_t *> *>(user);
        EXPECT_STREQ(stage, "calibrate");
        EXPECT_GT(done, *p->first);
        *p->first = done;
        *p->second = total;
        return 0;
    };
    std::pair<int64_t *, int64_t *> ctx{&last_done, &last_total};
    CalibrationResult r = calibrate(*model, pool, windows, scheme, opts, Progress(on_progress, &ctx, nullptr),
                                    [&](const CalibEvent &e) { events.push_back(e); });
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(last_total, 2 * (8 * 4 + 1));  // layers x (steps + targets)
    ASSERT_EQ(events.size(), 16u);
    for (int l = 0; l < 2; l++) {
        const std::vector<double> &mse = r.epoch_mse[l];
        ASSERT_EQ(mse.size(), 8u);
        std::printf("layer %d: epoch MSE", l);
        for (double v : mse) std::printf(" %.4g", v);
        std::printf("\n");
        // STE training on a random tiny layer is noisy: the loss falls clearly, then wanders a little.
        EXPECT_LT(*std::min_element(mse.begin() + 1, mse.end()), 0.9 * mse.front()) << "layer " << l;
        EXPECT_LT(mse.back(), 0.95 * mse.front()) << "layer " << l;
        EXPECT_EQ(events[l * 8 + 7].mse, mse.back());
    }
    // Every learned piece is there: transforms with inverses, scales, LWC and LAC.
    const LayerTransforms &t = r.layers[1];
    EXPECT_TRUE(t.pa.present() && t.pug.present() && t.pd.present() && t.ph.present() && t.pv.present() &&
                t.pk.present());
    EXPECT_EQ(t.pd.diag.size(), 48u);
    EXPECT_EQ(t.lwc[kLinO].size(), 64u);
    EXPECT_TRUE(t.lac);
    EXPECT_NE(t.lac_k[0], static_cast<float>(kClipLogitInit));  // trained
}

TEST_F(CalibrationLoop, IsDeterministicForASeedAndCancellable) {
    opts.epochs = 2;
    const auto windows = sample_windows(stream, opts.nsamples, opts.seqlen, opts.seed);
    CalibrationResult a = calibrate(*model, pool, windows, scheme, opts, Progress());
    CalibrationResult b = calibrate(*model, pool, windows, scheme, opts, Progress());
    opts.seed = 1;
    CalibrationResult c = calibrate(*model, pool, windows, scheme, opts, Progress());
    for (size_t l = 0; l < a.layers.size(); l++) {
        EXPECT_EQ(a.layers[l].pa.left, b.layers[l].pa.left);
        EXPECT_EQ(a.layers[l].pd.diag, b.layers[l].pd.diag);
        EXPECT_EQ(a.layers[l].lwc[kLinUp], b.layers[l].lwc[kLinUp]);
        EXPECT_NE(a.layers[l].pa.left, c.layers[l].pa.left);
    }
    EXPECT_EQ(a.epoch_mse, b.epoch_mse);
    int calls = 0;
    auto cancel_at_7 = [](void *user, const char *, int64_t, int64_t) -> int32_t {
        return ++*static_cast<int *>(user) >= 7 ? 1 : 0;
    };
    int32_t status = FQ_STATUS_OK;
    try {
        calibrate(*model, pool, windows, scheme, opts, Progress(cancel_at_7, &calls, nullptr));
    } catch (const Error &e) {
        status = e.status();
    }
    EXPECT_EQ(status, FQ_STATUS_CANCELLED);
    EXPECT_EQ(calls, 7);
    fq_cancel_token token;
    token.cancelled = true;
    status = FQ_STATUS_OK;
    try {
        calibrate(*model, pool, windows, scheme, opts, Progress(nullptr, nullptr, &token));
    } catch (const Error &e) {
        status = e.status();
    }
    EXPECT_EQ(status, FQ_STATUS_CANCELLED);
}

TEST_F(CalibrationLoop, BadInputsAreRefused) {
    auto status_of = [](const std::function<void()> &fn) {
        try {
            fn();
        } catch (const Error &e) {
            return e.status();
        }
        return (int32_t)FQ_STATUS_OK;
    };
    const auto windows = sample_windows(stream, opts.nsamples, opts.seqlen, opts.seed);
    std::vector<int32_t> short_windows(windows.begin(), windows.end() - 1), bad_ids = windows;
    bad_ids[5] = model->config.n_vocab;
    EXPECT_EQ(status_of([&] { calibrate(*model, pool, short_windows, scheme, opts, Progress()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { calibrate(*model, pool, bad_ids, scheme, opts, Progress()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    CalibOptions o = opts;
    o.batch = 0;
    EXPECT_EQ(status_of([&] { calibrate(*model, pool, windows, scheme, o, Progress()); }), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { parse_bits("w4a5kv17"); }), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { parse_bits("w4"); }), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { parse_method("quarot"); }), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status_of([&] { sample_windows(std::vector<int32_t>(32, 1), 2, 32, 0); }), FQ_STATUS_INVALID_ARGUMENT);
}

TEST(CalibConfig, BitStringsParse) {
    const QuantBits a = parse_bits("w4a4kv4"), b = parse_bits("W4A16"), c = parse_bits("w8a8");
    EXPECT_TRUE(a.w == 4 && a.a == 4 && a.k == 4 && a.v == 4);
    EXPECT_TRUE(b.w == 4 && b.a == 16 && b.k == 16 && b.v == 16);
    EXPECT_TRUE(c.w == 8 && c.a == 8 && c.k == 16);
    EXPECT_EQ(bits_name(parse_bits("w4a8kv8")), "w4a8kv8");
    EXPECT_EQ(bits_name(b), "w4a16");
}

TEST(CalibData, WikiTextRowsAndWindows) {
    const std::string raw = test::read_file(test::source_dir() + "/../shared/data/wikitext-2-raw/wiki.valid.raw");
    if (raw.empty()) GTEST_SKIP() << "shared WikiText-2 data not found";
    const std::string joined = wikitext_rows_joined(raw);
    EXPECT_EQ(sha256_hex(joined.data(), joined.size()),
              "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e");  // shared/data/SOURCES.md
    EXPECT_EQ(wikitext_rows_joined(" \n a\r\nb\n  \n"), "\n\n a\r\n\n\nb\n\n\n");
    const auto off = window_offsets(1000, 64, 100, 7);
    for (int64_t o : off) EXPECT_TRUE(o >= 0 && o <= 1000 - 100 - 1);
    EXPECT_EQ(off, window_offsets(1000, 64, 100, 7));
    EXPECT_NE(off, window_offsets(1000, 64, 100, 8));
    if (!test::file_exists(test::stories_path())) return;
    auto model = load_gguf_model(test::stories_path(), {});
    CalibOptions o;
    o.nsamples = 3;
    o.seqlen = 20;
    const std::string text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
    const auto w = calibration_windows(*model, text, o);
    const auto stream = model->tokenizer->encode(text, model->tokenizer->add_bos_default());
    ASSERT_EQ(w.size(), 60u);
    const auto offs = window_offsets(static_cast<int64_t>(stream.size()), 3, 20, o.seed);
    for (int i = 0; i < 3; i++)
        EXPECT_TRUE(std::equal(w.begin() + 20 * i, w.begin() + 20 * (i + 1), stream.begin() + offs[i]));
}

// ---- end to end on the real stories260K model ----------------------------------------------------------------------

// TinyStories-like text: stories sampled from the model itself (temperature 1, from BOS), n_seq x len tokens.
std::vector<int32_t> sample_stories(const Model &m, ThreadPool &pool, int n_seq, int len, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> out;
    const int64_t V = m.config.n_vocab;
    std::vector<double> p(V);
    for (int s = 0; s < n_seq; s++) {
        KVCache cache;
        cache.init(m.config, len);
        int32_t tok = m.tokenizer->bos_id();
        for (int i = 0; i < len; i++) {
            out.push_back(tok);
            if (i + 1 == len) break;
            forward(m, pool, &tok, 1, cache, LogitsWanted::Last, [&](int64_t, int64_t, const float *lg) {
                double mx = lg[0], z = 0;
                for (int64_t j = 1; j < V; j++) mx = std::max(mx, (double)lg[j]);
                for (int64_t j = 0; j < V; j++) z += (p[j] = std::exp(lg[j] - mx));
                double u = std::uniform_real_distribution<double>(0.0, z)(g);
                int64_t j = 0;
                while (j + 1 < V && (u -= p[j]) > 0) j++;
                tok = static_cast<int32_t>(j);
            });
        }
    }
    return out;
}

// Perplexity as fq::perplexity computes it, over any forward.
double perplexity_of(const ForwardFn &fwd, const Model &m, const std::vector<int32_t> &tokens, int32_t seqlen) {
    KVCache cache;
    cache.init(m.config, seqlen);
    double nll = 0;
    int64_t count = 0;
    for (size_t w = 0; (w + 1) * seqlen <= tokens.size(); w++) {
        const int32_t *win = tokens.data() + w * seqlen;
        cache.n_past = 0;
        fwd(win, seqlen, cache, LogitsWanted::All, [&](int64_t r0, int64_t rows, const float *lg) {
            for (int64_t r = 0; r < rows; r++) {
                if (r0 + r + 1 >= seqlen) continue;
                nll += token_nll(lg + r * m.config.n_vocab, m.config.n_vocab, win[r0 + r + 1]);
                count++;
            }
        });
    }
    return std::exp(nll / count);
}

TEST(Stories260K, ShortCalibrationBeatsRtnAtW4A4KV4) {
    if (!test::file_exists(test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
    if (test::skip_slow()) GTEST_SKIP() << "FQ_SKIP_SLOW is set";
    auto model = load_gguf_model(test::stories_path(), {});
    ThreadPool pool(2);
    const auto calib_text = sample_stories(*model, pool, 8, 192, 1);
    const auto eval_text = sample_stories(*model, pool, 8, 128, 2);
    CalibOptions o;
    o.nsamples = 8;
    o.seqlen = 128;
    o.batch = 4;
    o.epochs = 2;
    const auto windows = sample_windows(calib_text, o.nsamples, o.seqlen, o.seed);
    const double fp = perplexity(*model, pool, eval_text, 128, -1, Progress()).ppl;
    std::map<std::string, double> ppl;
    for (const char *method : {"rtn", "rotate", "flatquant"}) {
        for (const char *wq : {"rtn", "gptq"}) {
            QuantScheme s;
            s.bits = parse_bits("w4a4kv4");
            s.method = parse_method(method);
            s.weights = parse_weight_quantizer(wq);
            CalibrationResult r = calibrate(*model, pool, windows, s, o, Progress());
            auto qm = build_quantized_model(*model, pool, r, windows, Progress());
            const std::string key = std::string(method) + "+" + wq;
            ppl[key] = perplexity_of(quantized_forward_fn(*qm, pool), *model, eval_text, 128);
            std::printf("stories260K W4A4KV4 %-15s ppl %.3f (FP %.3f)\n", key.c_str(), ppl[key], fp);
            EXPECT_TRUE(std::isfinite(ppl[key]));
            EXPECT_GT(ppl[key], fp * 0.98);
        }
    }
    EXPECT_LE(ppl["flatquant+rtn"], ppl["rtn+rtn"] * 1.02);
    EXPECT_LE(ppl["flatquant+gptq"], ppl["rtn+gptq"] * 1.02);
}

// ---- timing (opt-in) ----------------------------------------------------------------------------------------------

// Wall and CPU time of calibration on SmolLM2-135M-shaped layers (random weights: speed does not depend on the
// values). Runs only with FQ_BENCH_CALIB=1; FQ_BENCH_NSAMPLES / FQ_BENCH_SEQLEN / FQ_BENCH_LAYERS / FQ_BENCH_THREADS
// override 16 windows x 512 tokens, 2 layers, 2 threads. Batch 4, 2 epochs, W4A4KV4, then GPTQ on the same windows.
TEST(CalibrationBench, SmolLM2ShapedLayers) {
    if (!std::getenv("FQ_BENCH_CALIB")) GTEST_SKIP() << "set FQ_BENCH_CALIB=1 to run";
    auto env = [](const char *k, int dflt) { return std::getenv(k) ? std::atoi(std::getenv(k)) : dflt; };
    test::TinyDims d;
    d.n_layer = env("FQ_BENCH_LAYERS", 2);
    d.n_embd = 576, d.n_ff = 1536, d.n_head = 9, d.n_head_kv = 3, d.head_dim = 64, d.rope_dim = 64;
    d.n_vocab = 4096, d.n_ctx = 8192;
    auto model = test::make_tiny_llama(d, 5, ::testing::TempDir() + "fq_bench_model.bin");
    ThreadPool pool(env("FQ_BENCH_THREADS", 2));
    CalibOptions o;
    o.nsamples = env("FQ_BENCH_NSAMPLES", 16);
    o.seqlen = env("FQ_BENCH_SEQLEN", 512);
    o.batch = 4;
    o.epochs = 2;
    std::mt19937_64 g(6);
    std::vector<int32_t> windows(static_cast<size_t>(o.nsamples) * o.seqlen);
    for (auto &t : windows) t = static_cast<int32_t>(g() % d.n_vocab);
    QuantScheme s;
    s.bits = parse_bits("w4a4kv4");
    s.weights = WeightQuantizer::Gptq;
    auto cpu = [] {
        timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return ts.tv_sec + 1e-9 * ts.tv_nsec;
    };
    double c_last = cpu();
    const auto t_start = std::chrono::steady_clock::now();
    CalibrationResult r = calibrate(*model, pool, windows, s, o, Progress(), [&](const CalibEvent &e) {
        std::printf("layer %d epoch %d: %.2f s wall (%.2f s CPU incl. the FP targets before epoch 1), MSE %.4g\n",
                    e.layer, e.epoch, e.seconds, cpu() - c_last, e.mse);
        c_last = cpu();
    });
    const double t_cal = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double c0 = cpu();
    const auto t0 = std::chrono::steady_clock::now();
    auto qm = build_quantized_model(*model, pool, r, windows, Progress());
    std::printf("calibration %.1f s wall; GPTQ of %d layers: %.1f s wall, %.1f s CPU\n", t_cal, d.n_layer,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), cpu() - c0);
    // Fake-quantized evaluation speed (the perplexity path: every position's logits).
    KVCache cache;
    cache.init(model->config, o.seqlen);
    const auto t1 = std::chrono::steady_clock::now();
    quantized_forward(*qm, pool, windows.data(), o.seqlen, cache, LogitsWanted::All,
                      [](int64_t, int64_t, const float *) {});
    const double te = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("fake-quantized forward of %d tokens through %d layers: %.2f s (%.0f token-layers/s)\n", o.seqlen,
                d.n_layer, te, o.seqlen * d.n_layer / te);
}

}  // namespace
}  // namespace fq::quant
