// The fake-quantized model (reparameterization + online transforms + fake quantizers) and GPTQ:
//  - no transform, 16 bits: the quantized forward is fq::forward;
//  - random invertible (non-orthogonal) FlatQuant transforms with smoothing scales, P_h, P_v, P_k, GQA and biases at
//    16 bits: every merge and online transform cancels, so the logits equal fq::forward's (float64 merges);
//  - RTN W4A4KV4 against a direct double-precision computation written here from the quantizer definitions;
//  - the eval-mode layer equals the calibration-mode layer it was exported from (same function, other code path);
//  - GPTQ on one linear: a lower output error than RTN, and the same result as a naive float64 GPTQ (the original
//    one-column-at-a-time OBS update with explicit inverse-Hessian downdates) written here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/threadpool.h"
#include "model/forward.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/flat_layer.h"
#include "quant/gptq.h"
#include "quant/kron.h"
#include "quant/reparameterize.h"
#include "quant/trans_param.h"
#include "support/tiny_llama.h"

namespace fq::quant {
namespace {

std::vector<float> logits_of(const std::function<void(const int32_t *, int64_t, KVCache &, LogitsWanted,
                                                      const LogitsSink &)> &fwd,
                             const Model &m, const std::vector<int32_t> &tok) {
    KVCache cache;
    cache.init(m.config, static_cast<int32_t>(tok.size()));
    std::vector<float> out(tok.size() * m.config.n_vocab);
    fwd(tok.data(), static_cast<int64_t>(tok.size()), cache, LogitsWanted::All,
        [&](int64_t r0, int64_t rows, const float *lg) {
            std::copy_n(lg, rows * m.config.n_vocab, out.data() + r0 * m.config.n_vocab);
        });
    return out;
}

std::vector<float> fp_logits(const Model &m, ThreadPool &pool, const std::vector<int32_t> &tok) {
    return logits_of([&](const int32_t *t, int64_t n, KVCache &c, LogitsWanted w,
                         const LogitsSink &s) { forward(m, pool, t, n, c, w, s); },
                     m, tok);
}

double rel_max_diff(const std::vector<float> &a, const std::vector<float> &b) {
    double mx = 0, md = 0;
    for (size_t i = 0; i < a.size(); i++) {
        mx = std::max(mx, std::fabs((double)a[i]));
        md = std::max(md, std::fabs((double)a[i] - (double)b[i]));
    }
    return md / mx;
}

std::vector<int32_t> tokens(int n, int vocab, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::vector<int32_t> t(n);
    for (auto &x : t) x = static_cast<int32_t>(g() % vocab);
    return t;
}

CalibrationResult empty_result(const Model &m, const QuantScheme &s) {
    CalibrationResult r;
    r.scheme = s;
    r.dims = model_dims(m.config);
    r.layers.resize(m.config.n_layer);
    return r;
}

TEST(FakeQuant, NoTransformAt16BitsIsTheFpForward) {
    auto m = test::make_tiny_llama({}, 1, ::testing::TempDir() + "fq_fq1.bin");
    ThreadPool pool(2);
    QuantScheme s;
    s.method = Method::Rtn;
    CalibrationResult r = empty_result(*m, s);
    auto qm = build_quantized_model(*m, pool, r, {}, Progress());
    const auto tok = tokens(20, m->config.n_vocab, 2);
    const auto got = logits_of(quantized_forward_fn(*qm, pool), *m, tok);
    EXPECT_EQ(got, fp_logits(*m, pool, tok));  // the same operations in the same order
}

// A random invertible k x k matrix (orthogonal plus noise) and its inverse-transpose from the rounded matrix.
void random_factor(std::vector<float> &m, std::vector<float> &it, int k, NormalRng &rng) {
    m.resize(k * k);
    it.resize(k * k);
    random_orthogonal(m.data(), k, rng);
    for (auto &x : m) x += static_cast<float>(0.3 * rng.next());
    inverse_t_forward(it.data(), m.data(), k);
}

LayerTransforms random_transforms(const ModelConfig &c, NormalRng &rng) {
    LayerTransforms t;
    auto kron = [&](KronTransform &k, int64_t width) {
        const DecomposeDims d = decompose_dim(width);
        k.n1 = d.n1;
        k.n2 = d.n2;
        random_factor(k.left, k.left_inv_t, d.n1, rng);
        random_factor(k.right, k.right_inv_t, d.n2, rng);
        k.diag.resize(width);
        for (auto &x : k.diag) x = static_cast<float>(std::exp(0.5 * rng.next()));
    };
    kron(t.pa, c.n_embd);
    kron(t.pug, c.n_embd);
    kron(t.pd, c.n_ff);
    for (auto *st : {&t.ph, &t.pv, &t.pk}) st->k = st == &t.ph ? c.n_head : c.head_dim;
    random_factor(t.ph.m, t.ph.m_inv_t, t.ph.k, rng);
    random_factor(t.pv.m, t.pv.m_inv_t, t.pv.k, rng);
    random_factor(t.pk.m, t.pk.m_inv_t, t.pk.k, rng);
    t.lac = true;
    for (auto &l : t.lac_lin) l = {3.0f, 2.0f};
    return t;
}

TEST(FakeQuant, MergedFlatQuantTransformsAt16BitsReproduceTheFpLogits) {
    test::TinyDims d;
    d.qkv_bias = true;
    d.rope_mode = RopeMode::Neox;
    d.n_layer = 3;
    auto m = test::make_tiny_llama(d, 3, ::testing::TempDir() + "fq_fq2.bin");
    ThreadPool pool(2);
    QuantScheme s;
    s.method = Method::FlatQuant;
    CalibrationResult r = empty_result(*m, s);
    NormalRng rng(5);
    for (auto &t : r.layers) t = random_transforms(m->config, rng);
    auto qm = build_quantized_model(*m, pool, r, {}, Progress());
    const auto tok = tokens(24, m->config.n_vocab, 4);
    const auto ref = fp_logits(*m, pool, tok);
    const auto got = logits_of(quantized_forward_fn(*qm, pool), *m, tok);
    const double rel = rel_max_diff(ref, got);
    EXPECT_LT(rel, 1e-4);
    EXPECT_GT(rel, 0.0);  // the transforms really were applied (FP32 rounding differs)
    // Incremental decoding through the cache gives the same logits as one pass.
    KVCache cache;
    cache.init(m->config, 32);
    std::vector<float> last(m->config.n_vocab);
    for (size_t i = 0; i < tok.size(); i++) {
        quantized_forward(*qm, pool, &tok[i], 1, cache, LogitsWanted::Last,
                          [&](int64_t, int64_t, const float *lg) { std::copy_n(lg, last.size(), last.data()); });
        for (int j = 0; j < m->config.n_vocab; j++) ASSERT_NEAR(last[j], got[i * m->config.n_vocab + j], 1e-4);
    }
}

// ---- RTN W4A4KV4 against a direct computation ----------------------------------------------------------------------

// Per-row fake quantization from the definitions of spec section 5, in double. Records, per kind of tensor, the
// smallest distance (in quantization steps) of a rounded value from a rounding boundary: a comparison with the FP32
// library is only well-defined when that margin exceeds the FP32-vs-double discrepancy.
double g_margin_act = 1e9, g_margin_w = 1e9;

double boundary_margin(double v) { return std::fabs(std::fabs(v - std::floor(v)) - 0.5); }

void ref_quant_rows(std::vector<double> &x, int64_t rows, int64_t cols, int bits, bool sym, bool weight) {
    if (bits == 16) return;  // off
    const double qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1, lo = sym ? -qmax - 1 : 0;
    double &margin = weight ? g_margin_w : g_margin_act;
    for (int64_t r = 0; r < rows; r++) {
        double *v = &x[r * cols], mx = 0, mn = 0;
        for (int64_t j = 0; j < cols; j++) mx = std::max(mx, v[j]), mn = std::min(mn, v[j]);
        double s, z = 0;
        if (sym) {
            const double m = std::max(-mn, mx);
            s = weight ? std::max(m, 1e-5) / qmax : (m == 0 ? 1.0 : m / qmax);
        } else {
            if (mx == 0 && mn == 0) mn = -1, mx = 1;
            s = (mx - mn) / qmax;
            margin = std::min(margin, boundary_margin(-mn / s));
            z = std::nearbyint(-mn / s);
        }
        for (int64_t j = 0; j < cols; j++) {
            const double u = std::nearbyint(v[j] / s) + z;
            if (u > lo && u < qmax) margin = std::min(margin, boundary_margin(v[j] / s));
            v[j] = s * (std::min(std::max(u, lo), qmax) - z);
        }
    }
}

std::vector<double> ref_linear(const std::vector<double> &x, const std::vector<double> &w, int64_t n, int64_t in,
                               int64_t out) {
    std::vector<double> y(n * out, 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < in; k++) y[i * out + o] += x[i * in + k] * w[o * in + k];
    return y;
}

std::vector<double> ref_rmsnorm(const std::vector<double> &x, const std::vector<float> &g, int64_t n, int64_t d,
                                double eps) {
    std::vector<double> y(n * d);
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += x[i * d + k] * x[i * d + k];
        for (int64_t k = 0; k < d; k++) y[i * d + k] = x[i * d + k] / std::sqrt(ss / d + eps) * g[k];
    }
    return y;
}

// Logits of a W{wb}A{ab}KV{kvb} RTN model (no transforms), everything in double.
std::vector<double> ref_rtn_logits(const Model &m, const std::vector<int32_t> &tok, int wb, int ab, int kvb) {
    const ModelConfig &c = m.config;
    const int64_t n = tok.size(), E = c.n_embd, F = c.n_ff, D = c.head_dim, H = c.n_head, Hkv = c.n_head_kv;
    auto qw = [&](const std::vector<float> &w, int64_t out, int64_t in) {
        std::vector<double> d(w.begin(), w.end());
        ref_quant_rows(d, out, in, wb, true, true);
        return d;
    };
    auto qa = [&](std::vector<double> x, int64_t cols) {
        ref_quant_rows(x, n, cols, ab, true, false);
        return x;
    };
    std::vector<double> x(n * E);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < E; k++) x[i * E + k] = m.weights.tok_embd[tok[i] * E + k];
    for (const LayerWeights &L : m.weights.layers) {
        const auto h = qa(ref_rmsnorm(x, L.attn_norm, n, E, c.rms_eps), E);
        auto q = ref_linear(h, qw(L.wq, H * D, E), n, E, H * D);
        auto k = ref_linear(h, qw(L.wk, Hkv * D, E), n, E, Hkv * D);
        auto v = ref_linear(h, qw(L.wv, Hkv * D, E), n, E, Hkv * D);
        for (auto *t : {&q, &k}) {
            const int64_t heads = t == &q ? H : Hkv;
            for (int64_t p = 0; p < n; p++)
                for (int64_t hh = 0; hh < heads; hh++)
                    for (int i = 0; i < c.rope_dim / 2; i++) {
                        const double th = p * std::pow((double)c.rope_freq_base, -2.0 * i / c.rope_dim);
                        double *e = &(*t)[(p * heads + hh) * D];
                        const double a = e[2 * i], b = e[2 * i + 1];
                        e[2 * i] = a * std::cos(th) - b * std::sin(th);
                        e[2 * i + 1] = a * std::sin(th) + b * std::cos(th);
                    }
        }
        ref_quant_rows(k, n * Hkv, D, kvb, false, false);
        ref_quant_rows(v, n * Hkv, D, kvb, false, false);
        std::vector<double> att(n * H * D, 0.0);
        for (int64_t hh = 0; hh < H; hh++) {
            const int64_t g = hh / (H / Hkv);
            for (int64_t i = 0; i < n; i++) {
                std::vector<double> sc(i + 1);
                double mx = -1e300, z = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double dd = 0;
                    for (int64_t t = 0; t < D; t++) dd += q[(i * H + hh) * D + t] * k[(j * Hkv + g) * D + t];
                    mx = std::max(mx, sc[j] = dd / std::sqrt((double)D));
                }
                for (auto &e : sc) z += (e = std::exp(e - mx));
                for (int64_t j = 0; j <= i; j++)
                    for (int64_t t = 0; t < D; t++) att[(i * H + hh) * D + t] += sc[j] / z * v[(j * Hkv + g) * D + t];
            }
        }
        const auto o = ref_linear(qa(att, H * D), qw(L.wo, E, H * D), n, H * D, E);
        for (int64_t i = 0; i < n * E; i++) x[i] += o[i];
        const auto h2 = qa(ref_rmsnorm(x, L.ffn_norm, n, E, c.rms_eps), E);
        auto gt = ref_linear(h2, qw(L.w_gate, F, E), n, E, F);
        const auto up = ref_linear(h2, qw(L.w_up, F, E), n, E, F);
        for (int64_t i = 0; i < n * F; i++) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
        const auto dn = ref_linear(qa(gt, F), qw(L.w_down, E, F), n, F, E);
        for (int64_t i = 0; i < n * E; i++) x[i] += dn[i];
    }
    const auto hf = ref_rmsnorm(x, m.weights.output_norm, n, E, c.rms_eps);
    return ref_linear(hf, std::vector<double>(m.weights.output.begin(), m.weights.output.end()), n, E, c.n_vocab);
}

TEST(FakeQuant, RtnW4A4KV4MatchesADirectComputation) {
    test::TinyDims d;
    d.n_layer = 1;
    auto m = test::make_tiny_llama(d, 7, ::testing::TempDir() + "fq_fq3.bin");
    ThreadPool pool(2);
    for (const char *cfg : {"w4a4kv4", "w4a16", "w3a4kv3", "w6a6kv6"}) {
        QuantScheme s;
        s.method = Method::Rtn;
        s.bits = parse_bits(cfg);
        CalibrationResult r = empty_result(*m, s);
        auto qm = build_quantized_model(*m, pool, r, {}, Progress());
        // Only sequences whose every rounding sits clear of a tie are comparable: FP32 puts a value off by about
        // 1e-6 of its size, i.e. up to 1e-6 * 2^(bits-1) steps. (Ties do occur exactly: the first token's attention
        // output is a dequantized V row, whose ratios can be exact halves.)
        const double thr_a = 1e-5 * (1 << (std::min(s.bits.a, s.bits.k) - 1)), thr_w = 1e-6 * (1 << (s.bits.w - 1));
        int compared = 0;
        for (uint64_t seed = 1; seed < 200 && compared < 3; seed++) {
            const auto tok = tokens(8, m->config.n_vocab, seed);
            g_margin_act = g_margin_w = 1e9;
            const auto ref = ref_rtn_logits(*m, tok, s.bits.w, s.bits.a, s.bits.k);
            ASSERT_GT(g_margin_w, thr_w) << cfg << ": a weight sits on a rounding tie; pick another model seed";
            if (g_margin_act < thr_a) continue;
            compared++;
            const auto got = logits_of(quantized_forward_fn(*qm, pool), *m, tok);
            std::vector<float> reff(ref.begin(), ref.end());
            EXPECT_LT(rel_max_diff(reff, got), 1e-5) << cfg << " seed " << seed;
            EXPECT_GT(rel_max_diff(reff, fp_logits(*m, pool, tok)), 1e-3) << cfg;  // quantization changed the logits
        }
        EXPECT_EQ(compared, 3) << cfg << ": too few token sequences without near-ties";
    }
}

// ---- calibration-mode layer vs. eval-mode layer --------------------------------------------------------------------

TEST(FakeQuant, EvalLayerComputesTheCalibrationLayerFunction) {
    test::TinyDims d;
    d.n_layer = 1;
    d.qkv_bias = true;
    auto m = test::make_tiny_llama(d, 9, ::testing::TempDir() + "fq_fq4.bin");
    ThreadPool pool(2);
    QuantScheme s;
    s.bits = parse_bits("w4a4kv4");
    CalibOptions o;
    FlatLayer<float> layer(m->config, m->weights.layers[0], {}, flatquant_layer_spec(s, o), pool);
    const int64_t L = 12, E = d.n_embd;
    std::vector<float> h0(L * E), out(L * E);
    std::mt19937_64 g(10);
    std::normal_distribution<float> nd;
    for (auto &v : h0) v = nd(g);
    SmoothStats stats = smooth_stats_init(m->config);
    layer.forward(out.data(), h0.data(), 1, L, true, &stats);
    NormalRng rng(11);
    layer.init(rng, &stats, 0.3);
    for (const auto &b : layer.blocks()) {  // clip logits spread out, as after training
        if (b.clip)
            for (size_t i = b.offset; i < b.offset + b.size; i++) layer.params()[i] += 1.5f * nd(g);
    }
    layer.forward(out.data(), h0.data(), 1, L, false, nullptr);
    CalibrationResult r = empty_result(*m, s);
    r.layers[0] = layer.export_eval();
    auto qm = build_quantized_model(*m, pool, r, {}, Progress());
    std::vector<float> x = h0, kc(L * m->config.kv_dim()), vc(kc.size());
    ASSERT_TRUE(quantized_layer_forward(*qm, 0, pool, x.data(), L, 0, kc.data(), vc.data(), nullptr));
    double num = 0, den = 0;
    for (int64_t i = 0; i < L * E; i++) {
        num += std::pow((double)x[i] - out[i], 2);
        den += std::pow((double)out[i] - h0[i], 2);
    }
    EXPECT_LT(std::sqrt(num / den), 2e-3);  // FP32 rounding of the two merge orders, rare code flips
}

// ---- GPTQ ---------------------------------------------------------------------------------------------------------

// The original sequential formulation: quantize column i, spread its error with row i of the current inverse
// Hessian, then remove i from the inverse (OBS downdate). Same scales and rounding as the library.
std::vector<double> naive_gptq(std::vector<double> w, int64_t out, int64_t in, std::vector<double> h, int bits,
                               double percdamp) {
    const double qmax = (1 << (bits - 1)) - 1;
    std::vector<double> scale(out), q(out * in);
    for (int64_t r = 0; r < out; r++) {
        float mx = 0, mn = 0;
        for (int64_t j = 0; j < in; j++) {
            mx = std::max(mx, (float)w[r * in + j]);
            mn = std::min(mn, (float)w[r * in + j]);
        }
        scale[r] = std::max(std::max(-mn, mx), 1e-5f) / (float)qmax;
    }
    for (int64_t j = 0; j < in; j++)
        if (h[j * in + j] == 0) {
            h[j * in + j] = 1;
            for (int64_t r = 0; r < out; r++) w[r * in + j] = 0;
        }
    double mean = 0;
    for (int64_t j = 0; j < in; j++) mean += h[j * in + j] / in;
    for (int64_t j = 0; j < in; j++) h[j * in + j] += percdamp * mean;
    // Gauss-Jordan inverse.
    std::vector<double> a = h, inv(in * in, 0.0);
    for (int64_t i = 0; i < in; i++) inv[i * in + i] = 1;
    for (int64_t c = 0; c < in; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < in; r++)
            if (std::fabs(a[r * in + c]) > std::fabs(a[p * in + c])) p = r;
        for (int64_t j = 0; j < in; j++) {
            std::swap(a[c * in + j], a[p * in + j]);
            std::swap(inv[c * in + j], inv[p * in + j]);
        }
        const double d = a[c * in + c];
        for (int64_t j = 0; j < in; j++) a[c * in + j] /= d, inv[c * in + j] /= d;
        for (int64_t r = 0; r < in; r++) {
            if (r == c) continue;
            const double f = a[r * in + c];
            for (int64_t j = 0; j < in; j++) a[r * in + j] -= f * a[c * in + j], inv[r * in + j] -= f * inv[c * in + j];
        }
    }
    for (int64_t i = 0; i < in; i++) {
        const double hii = inv[i * in + i];
        for (int64_t r = 0; r < out; r++) {
            const double s = scale[r], wv = w[r * in + i];
            const double qv = s * std::min(std::max(std::nearbyint(wv / s), -qmax - 1), qmax);
            q[r * in + i] = qv;
            for (int64_t j = i + 1; j < in; j++) w[r * in + j] -= (wv - qv) / hii * inv[i * in + j];
        }
        std::vector<double> row(inv.begin() + i * in, inv.begin() + (i + 1) * in), col(in);
        for (int64_t a2 = 0; a2 < in; a2++) col[a2] = inv[a2 * in + i];
        for (int64_t a2 = 0; a2 < in; a2++)
            for (int64_t b2 = 0; b2 < in; b2++) inv[a2 * in + b2] -= col[a2] * row[b2] / hii;
    }
    return q;
}

TEST(Gptq, LowersTheOutputErrorAndMatchesTheNaiveAlgorithm) {
    const int64_t N = 96, in = 20, out = 6;
    std::mt19937_64 g(12);
    std::normal_distribution<double> nd;
    // Correlated inputs (a random mixing of independent sources) with one dead column.
    std::vector<double> mix(in * in);
    for (auto &v : mix) v = nd(g);
    std::vector<float> x(N * in, 0.0f), w(out * in);
    for (int64_t t = 0; t < N; t++) {
        std::vector<double> src(in);
        for (auto &v : src) v = nd(g);
        for (int64_t j = 0; j < in; j++) {
            double acc = 0;
            for (int64_t k = 0; k < in; k++) acc += mix[j * in + k] * src[k] * (k < 4 ? 3.0 : 0.5);
            x[t * in + j] = j == 7 ? 0.0f : (float)acc;
        }
    }
    for (auto &v : w) v = (float)nd(g);
    ThreadPool pool(2);
    for (int bits : {4, 3}) {
        HessianAccumulator acc(in);
        acc.add_window(x.data(), N / 2, pool);
        acc.add_window(x.data() + (N / 2) * in, N / 2, pool);
        const std::vector<double> h = acc.hessian();
        std::vector<float> q = w, rtn(w.size());
        QuantizedWeight codes;
        gptq_quantize(q.data(), out, in, h, bits, 0.01, 8, pool, &codes);
        weight_quant_forward(rtn.data(), static_cast<float *>(nullptr), w.data(), out, in, bits);
        auto err = [&](const std::vector<float> &qq) {
            double e = 0;
            for (int64_t t = 0; t < N; t++)
                for (int64_t o = 0; o < out; o++) {
                    double d = 0;
                    for (int64_t j = 0; j < in; j++) {
                        d += (double)x[t * in + j] * ((double)w[o * in + j] - qq[o * in + j]);
                    }
                    e += d * d;
                }
            return std::sqrt(e);
        };
        EXPECT_LT(err(q), 0.8 * err(rtn)) << bits << " bits";
        const auto ref = naive_gptq(std::vector<double>(w.begin(), w.end()), out, in, h, bits, 0.01);
        for (int64_t i = 0; i < out * in; i++) {
            ASSERT_NEAR(q[i], ref[i], 1e-6 * (1 + std::fabs(ref[i]))) << "element " << i << ", " << bits << " bits";
            EXPECT_EQ(codes.scale[i / in] * (float)codes.codes[i], q[i]);
        }
    }
}

}  // namespace
}  // namespace fq::quant
