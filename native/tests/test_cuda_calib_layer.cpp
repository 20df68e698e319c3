// The GPU calibration layer (native/src/cuda/calib_layer.h) against the CPU one (quant::FlatLayer), and
// calibration on the GPU against calibration on the CPU. Skipped without a CUDA device.
//
//  - With every quantizer off the layer is smooth; its analytic gradients (FP32 on the GPU) must equal those of
//    FlatLayer<double> on the same parameters (which test_calibrate.cpp checks against finite differences) to FP32
//    accuracy, for both factor forms, GQA, q/k/v biases and both RoPE layouts; and a finite-difference check of the
//    GPU layer itself, along each block's gradient, must agree.
//  - With W4A4KV4 the GPU forward must equal FlatLayer<float>'s. The quantizers give identical codes for identical
//    inputs, but the products sum in another order, so a value within an FP32 rounding of a .5 boundary may round
//    the other way; the comparison is therefore a norm criterion plus a bound on the fraction of differing elements,
//    and the straight-through gradients are compared block by block with a tolerance for such flips.
//  - calibrate() on device 0 gives per-epoch losses close to the CPU's and a falling loss, reproducibly.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/calib_layer.h"
#include "cuda/calib_ops.h"
#include "cuda/cuda_backend.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/flat_layer.h"
#include "quant/optim.h"
#include "support/tiny_llama.h"

namespace {

using fq::cuda::CalibLayer;
using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;
namespace q = fq::quant;

std::vector<float> randn(size_t n, uint64_t seed, double scale = 1.0) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> nd(0.0, scale);
    std::vector<float> v(n);
    for (auto &x : v) x = static_cast<float>(nd(g));
    return v;
}

double norm(const std::vector<double> &v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s);
}

struct Case {
    bool direct_inv, bias;
    fq::RopeMode rope;
};

std::string case_name(const Case &c) {
    return std::string(c.direct_inv ? "DirectInverse" : "SvdCayley") + (c.bias ? "Bias" : "") +
           (c.rope == fq::RopeMode::Neox ? "Neox" : "Normal");
}

// A one-layer tiny model with GQA and every transform, the spec with all pieces on at the given bits, and the data.
struct LayerCase {
    std::unique_ptr<fq::Model> model;
    q::LayerSpec spec;
    int64_t n_seq = 2, L = 24, rows = 48, E = 0;
    std::vector<float> h0;
    LayerCase(const Case &c, const q::QuantBits &bits, const std::string &tag) {
        fq::test::TinyDims d;
        d.n_layer = 1, d.n_embd = 64, d.n_ff = 96, d.n_head = 4, d.n_head_kv = 2, d.head_dim = 16, d.rope_dim = 12;
        d.qkv_bias = c.bias;
        d.rope_mode = c.rope;
        model = fq::test::make_tiny_llama(d, 11, ::testing::TempDir() + "fq_cuda_calib_" + tag + ".bin");
        spec.bits = bits;
        spec.pa = spec.pug = spec.pd = spec.ph = spec.pv = spec.pk = true;
        spec.add_diag = spec.lwc = spec.lac = true;
        spec.direct_inv = c.direct_inv;
        E = d.n_embd;
        h0 = randn(static_cast<size_t>(rows * E), 21);
        for (int64_t r = 0; r < rows; r++) h0[r * E + 5] *= 8.0f;  // an outlier channel
    }
    const fq::ModelConfig &cfg() const { return model->config; }
    const fq::LayerWeights &weights() const { return model->weights.layers[0]; }
};

// Moves every parameter off its special initial value so that no gradient term vanishes by symmetry.
void perturb(std::vector<float> &p, const std::vector<q::FlatLayer<float>::Block> &blocks) {
    const auto noise = randn(p.size(), 41);
    for (const auto &b : blocks) {
        const bool diag = b.name.size() > 2 && b.name.compare(b.name.size() - 2, 2, ".c") == 0;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            p[i] += b.clip ? 0.7f * noise[i] : diag ? 0.1f * p[i] * noise[i] : 0.1f * noise[i];
        }
    }
}

class CudaCalibLayer : public ::testing::TestWithParam<Case> {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }
    DeviceBuffer up(const std::vector<float> &v) {
        DeviceBuffer b(v.size() * sizeof(float));
        b.upload(v.data(), v.size() * sizeof(float), stream_);
        return b;
    }
    std::vector<float> down(const DeviceBuffer &b, size_t n) {
        std::vector<float> v(n);
        b.download(v.data(), n * sizeof(float), stream_);
        return v;
    }
    // log(MSE) of the GPU calibration forward against target, and (when grad) the backward of the normalized loss.
    double gpu_log_mse(CalibLayer &layer, const LayerCase &s, DeviceBuffer &h0, DeviceBuffer &target, bool grad) {
        const int64_t n = s.rows * s.E;
        DeviceBuffer out(n * sizeof(float)), dout(n * sizeof(float));
        layer.forward(out.as<float>(), h0.as<float>(), s.n_seq, s.L, false, nullptr);
        const double mse = fq::cuda::calib::mse_loss(out.as<float>(), target.as<float>(), n, layer.workspace(),
                                                     stream_.handle());
        if (grad) {
            fq::cuda::calib::mse_loss_bwd(dout.as<float>(), out.as<float>(), target.as<float>(), n, mse, true,
                                          stream_.handle());
            layer.backward(dout.as<float>());
        }
        return std::log(mse);
    }
    Stream stream_;
    fq::ThreadPool pool_{2};
};

TEST_P(CudaCalibLayer, GradientsMatchTheDoubleCpuLayerWithQuantizersOff) {
    const LayerCase s(GetParam(), q::QuantBits{}, "grad");
    CalibLayer gpu(s.cfg(), s.weights(), {}, s.spec, pool_, stream_);
    q::FlatLayer<double> cpu(s.cfg(), s.weights(), {}, s.spec, pool_);
    const int64_t n = s.rows * s.E;
    // Targets and smoothing statistics from the FP layer on each side.
    std::vector<double> h0d(s.h0.begin(), s.h0.end()), target_d(n);
    q::SmoothStats stats = q::smooth_stats_init(s.cfg()), gstats = stats;
    cpu.forward(target_d.data(), h0d.data(), s.n_seq, s.L, true, &stats);
    DeviceBuffer h0 = up(s.h0), target(n * sizeof(float));
    gpu.forward(target.as<float>(), h0.as<float>(), s.n_seq, s.L, true, &gstats);
    const auto gt = down(target, n);
    double terr = 0, tmax = 0;
    for (int64_t i = 0; i < n; i++) {
        terr = std::max(terr, std::fabs(gt[i] - target_d[i]));
        tmax = std::max(tmax, std::fabs(target_d[i]));
    }
    EXPECT_LT(terr, 1e-5 * tmax);  // the FP layer
    for (size_t j = 0; j < stats.down_in.size(); j++) {
        EXPECT_NEAR(gstats.down_in[j], stats.down_in[j], 1e-5 * stats.down_in[j]);
    }
    for (size_t j = 0; j < stats.attn_in.size(); j++) {
        EXPECT_NEAR(gstats.attn_in[j], stats.attn_in[j], 1e-5 * stats.attn_in[j]);
        EXPECT_NEAR(gstats.mlp_in[j], stats.mlp_in[j], 1e-5 * stats.mlp_in[j]);
    }
    // The same parameters on both sides, from the CPU statistics.
    q::NormalRng rng(31);
    gpu.init(rng, &stats, 0.3);
    perturb(gpu.params(), gpu.blocks());
    std::copy(gpu.params().begin(), gpu.params().end(), cpu.params().begin());
    // Both sides against the same (float) target.
    std::vector<double> tf(gt.begin(), gt.end()), out(n), dout(n);
    cpu.forward(out.data(), h0d.data(), s.n_seq, s.L, false, nullptr);
    const double mse = q::mse_loss_forward(out.data(), tf.data(), n);
    q::mse_loss_backward(dout.data(), out.data(), tf.data(), n, mse, true);
    cpu.backward(dout.data());
    const double log_mse = gpu_log_mse(gpu, s, h0, target, true);
    EXPECT_NEAR(log_mse, std::log(mse), 1e-4);
    const std::vector<float> g = gpu.grads();
    double gmax = 0;
    for (double v : cpu.grads()) gmax = std::max(gmax, std::fabs(v));
    for (const auto &b : gpu.blocks()) {
        double err = 0, ref = 0;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            err = std::max(err, std::fabs(g[i] - cpu.grads()[i]));
            ref = std::max(ref, std::fabs(cpu.grads()[i]));
        }
        EXPECT_LE(err, 2e-3 * ref + 1e-4 * gmax) << b.name << ": max |gpu - cpu| " << err << ", max |cpu| " << ref;
    }
}

// Finite differences along each block's gradient direction u. With the quantizers off only LWC makes the loss
// depend on the parameters (the transforms are exact equivalences), and log MSE then has kinks (a row's arg-max
// changing, an element entering the clamp) at parameter changes of ~1e-4, below which FP32 rounding dominates the
// GPU forward: in exact arithmetic a step of 2e-3 already moves the central difference by up to ~20% from the
// derivative. So the check is twofold:
//   - the GPU's central difference at step 2e-3 equals the double CPU layer's at the same (float) parameters: the
//     GPU forward follows the reference at finite distances, kinks included;
//   - the double CPU layer's central difference at step 1e-6 (the derivative) equals the GPU's analytic g . u.
TEST_P(CudaCalibLayer, FiniteDifferencesMatchTheDoubleCpuLayer) {
    const LayerCase s(GetParam(), q::QuantBits{}, "fd");
    CalibLayer gpu(s.cfg(), s.weights(), {}, s.spec, pool_, stream_);
    q::FlatLayer<double> cpu(s.cfg(), s.weights(), {}, s.spec, pool_);
    const int64_t n = s.rows * s.E;
    DeviceBuffer h0 = up(s.h0), target(n * sizeof(float));
    q::SmoothStats stats = q::smooth_stats_init(s.cfg());
    gpu.forward(target.as<float>(), h0.as<float>(), s.n_seq, s.L, true, &stats);
    const std::vector<float> tf = down(target, n);
    const std::vector<double> h0d(s.h0.begin(), s.h0.end()), td(tf.begin(), tf.end());
    std::vector<double> out(n);
    auto cpu_f = [&](const std::vector<double> &params) {
        cpu.params() = params;
        cpu.forward(out.data(), h0d.data(), s.n_seq, s.L, false, nullptr);
        return std::log(q::mse_loss_forward(out.data(), td.data(), n));
    };
    q::NormalRng rng(31);
    gpu.init(rng, &stats, 0.3);
    perturb(gpu.params(), gpu.blocks());
    gpu_log_mse(gpu, s, h0, target, true);
    const std::vector<float> g = gpu.grads();
    std::vector<float> &p = gpu.params();
    const std::vector<float> p0 = p;
    const std::vector<double> p0d(p0.begin(), p0.end());
    int checked = 0;
    for (const auto &b : gpu.blocks()) {
        if (b.name.rfind("lac.", 0) == 0 || b.name.rfind("pk.", 0) == 0) continue;  // no gradient without quantizers
        double gn = 0;
        for (size_t i = b.offset; i < b.offset + b.size; i++) gn += double(g[i]) * g[i];
        gn = std::sqrt(gn);
        ASSERT_GT(gn, 1e-3) << b.name;
        double f_gpu[2], f_cpu[2], f_lim[2];
        for (int side = 0; side < 2; side++) {
            const double sgn = side == 0 ? 1.0 : -1.0;
            std::vector<double> pd = p0d, pl = p0d;
            for (size_t i = b.offset; i < b.offset + b.size; i++) {
                p[i] = static_cast<float>(p0[i] + sgn * 2e-3 * g[i] / gn);
                pd[i] = p[i];
                pl[i] = p0d[i] + sgn * 1e-6 * g[i] / gn;
            }
            f_gpu[side] = gpu_log_mse(gpu, s, h0, target, false);
            f_cpu[side] = cpu_f(pd);
            f_lim[side] = cpu_f(pl);
            p = p0;
        }
        const double d_gpu = f_gpu[0] - f_gpu[1], d_cpu = f_cpu[0] - f_cpu[1];
        EXPECT_NEAR(d_gpu, d_cpu, 0.02 * std::fabs(d_cpu) + 5e-6) << b.name << ": step 2e-3";
        EXPECT_NEAR(gn, (f_lim[0] - f_lim[1]) / 2e-6, 2e-3 * gn + 1e-5) << b.name << ": derivative";
        checked++;
    }
    EXPECT_GE(checked, s.spec.direct_inv ? 18 : 34);  // every factor, smoothing and LWC block
}

TEST_P(CudaCalibLayer, W4A4KV4ForwardAndGradientsMatchTheFloatCpuLayer) {
    const LayerCase s(GetParam(), q::QuantBits{4, 4, 4, 4}, "w4a4");
    CalibLayer gpu(s.cfg(), s.weights(), {}, s.spec, pool_, stream_);
    q::FlatLayer<float> cpu(s.cfg(), s.weights(), {}, s.spec, pool_);
    const int64_t n = s.rows * s.E;
    std::vector<float> target(n), out(n), dout(n);
    q::SmoothStats stats = q::smooth_stats_init(s.cfg());
    cpu.forward(target.data(), s.h0.data(), s.n_seq, s.L, true, &stats);
    q::NormalRng r1(31), r2(31);
    cpu.init(r1, &stats, 0.3);
    gpu.init(r2, &stats, 0.3);
    ASSERT_EQ(cpu.params(), gpu.params());  // one initialization code
    perturb(cpu.params(), cpu.blocks());
    gpu.params() = cpu.params();
    cpu.forward(out.data(), s.h0.data(), s.n_seq, s.L, false, nullptr);
    const double mse = q::mse_loss_forward(out.data(), target.data(), n);
    q::mse_loss_backward(dout.data(), out.data(), target.data(), n, mse, true);
    cpu.backward(dout.data());
    DeviceBuffer h0 = up(s.h0), dtarget = up(target), gout(n * sizeof(float)), gdout = up(dout);
    gpu.forward(gout.as<float>(), h0.as<float>(), s.n_seq, s.L, false, nullptr);
    const auto go = down(gout, n);
    // Output: the layer's own contribution (out - h0) must agree in norm, and almost every element closely.
    std::vector<double> diff(n), contrib(n);
    int64_t far = 0;
    for (int64_t i = 0; i < n; i++) {
        diff[i] = double(go[i]) - out[i];
        contrib[i] = double(out[i]) - s.h0[i];
        far += std::fabs(diff[i]) > 1e-4 * (std::fabs(contrib[i]) + 1e-2);
    }
    EXPECT_LT(norm(diff), 1e-3 * norm(contrib));
    EXPECT_LT(far, n / 50) << far << " of " << n << " output elements differ by more than 1e-4 relative";
    const double gmse = fq::cuda::calib::mse_loss(gout.as<float>(), dtarget.as<float>(), n, gpu.workspace(),
                                                  stream_.handle());
    EXPECT_NEAR(gmse, mse, 1e-3 * mse);
    // Gradients from the same dout.
    gpu.backward(gdout.as<float>());
    std::vector<double> all_diff, all_ref;
    for (const auto &b : gpu.blocks()) {
        std::vector<double> d, r;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            ASSERT_TRUE(std::isfinite(gpu.grads()[i])) << b.name;
            d.push_back(double(gpu.grads()[i]) - cpu.grads()[i]);
            r.push_back(cpu.grads()[i]);
        }
        EXPECT_LE(norm(d), 0.05 * norm(r) + 1e-6) << b.name;
        all_diff.insert(all_diff.end(), d.begin(), d.end());
        all_ref.insert(all_ref.end(), r.begin(), r.end());
    }
    EXPECT_LE(norm(all_diff), 1e-2 * norm(all_ref));
    // Reproducible: the same forward and backward again give bitwise the same gradients.
    const std::vector<float> g1 = gpu.grads();
    gpu.forward(gout.as<float>(), h0.as<float>(), s.n_seq, s.L, false, nullptr);
    gpu.backward(gdout.as<float>());
    EXPECT_EQ(gpu.grads(), g1);
    EXPECT_EQ(down(gout, n), go);
}

INSTANTIATE_TEST_SUITE_P(Forms, CudaCalibLayer,
                         ::testing::Values(Case{false, false, fq::RopeMode::Normal},
                                           Case{true, true, fq::RopeMode::Neox},
                                           Case{false, true, fq::RopeMode::Neox}),
                         [](const ::testing::TestParamInfo<Case> &i) { return case_name(i.param); });

// ---- the calibration loop -------------------------------------------------------------------------------------------

class CudaCalibration : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        fq::test::TinyDims d;
        d.n_embd = 32, d.n_ff = 48, d.n_head = 4, d.n_head_kv = 2, d.head_dim = 8, d.rope_dim = 8;
        model = fq::test::make_tiny_llama(d, 31, ::testing::TempDir() + "fq_cuda_tiny_loop.bin");
        std::mt19937_64 g(32);
        std::vector<int32_t> stream;
        for (int i = 0; i < 2000; i++) stream.push_back(static_cast<int32_t>(g() % model->config.n_vocab));
        opts.nsamples = 8;
        opts.seqlen = 32;
        opts.batch = 2;
        opts.epochs = 8;
        scheme.bits = q::parse_bits("w4a4kv4");
        windows = q::sample_windows(stream, opts.nsamples, opts.seqlen, opts.seed);
    }
    std::unique_ptr<fq::Model> model;
    std::vector<int32_t> windows;
    q::CalibOptions opts;
    q::QuantScheme scheme;
    fq::ThreadPool pool{2};
};

TEST_F(CudaCalibration, LossesFollowTheCpuAndFallAndRunsAreReproducible) {
    std::vector<q::CalibEvent> events;
    int64_t last_done = 0, last_total = 0;
    auto on_progress = [](void *user, const char *, int64_t done, int64_t total) -> int32_t {
        auto *p = static_cast<std::pair<int64_t *, int64_t *> *>(user);
        *p->first = done;
        *p->second = total;
        return 0;
    };
    std::pair<int64_t *, int64_t *> ctx{&last_done, &last_total};
    const q::CalibrationResult cpu = q::calibrate(*model, pool, windows, scheme, opts, fq::Progress());
    const q::CalibrationResult gpu =
        q::calibrate(*model, pool, windows, scheme, opts, fq::Progress(on_progress, &ctx, nullptr),
                     [&](const q::CalibEvent &e) { events.push_back(e); }, 0);
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(last_total, 2 * (8 * 4 + 1));
    ASSERT_EQ(events.size(), 16u);
    for (int l = 0; l < 2; l++) {
        const std::vector<double> &c = cpu.epoch_mse[l], &g = gpu.epoch_mse[l];
        ASSERT_EQ(g.size(), 8u);
        std::printf("layer %d epoch MSE, CPU / GPU:", l);
        for (size_t e = 0; e < g.size(); e++) std::printf(" %.4g/%.4g", c[e], g[e]);
        std::printf("\n");
        // The first epoch starts from identical parameters. From there the two runs drift apart through rounding
        // flips (a code that rounds the other way changes the STE gradient), which the straight-through training
        // amplifies: the epochs agree loosely, their means closely.
        EXPECT_NEAR(g[0], c[0], 0.01 * c[0]) << "layer " << l;
        double gm = 0, cm = 0;
        for (size_t e = 0; e < g.size(); e++) {
            EXPECT_NEAR(g[e], c[e], 0.25 * c[e]) << "layer " << l << " epoch " << e;
            gm += g[e], cm += c[e];
        }
        EXPECT_NEAR(gm, cm, 0.1 * cm) << "layer " << l;
        EXPECT_LT(*std::min_element(g.begin() + 1, g.end()), 0.9 * g.front()) << "layer " << l;
        EXPECT_LT(g.back(), 0.95 * g.front()) << "layer " << l;
        EXPECT_EQ(events[l * 8 + 7].mse, g.back());
    }
    const q::LayerTransforms &t = gpu.layers[1];
    EXPECT_TRUE(t.pa.present() && t.pug.present() && t.pd.present() && t.ph.present() && t.pv.present() &&
                t.pk.present());
    EXPECT_EQ(t.pd.diag.size(), 48u);
    EXPECT_NE(t.lac_k[0], static_cast<float>(q::kClipLogitInit));
    // A second GPU run is bitwise the same.
    const q::CalibrationResult again = q::calibrate(*model, pool, windows, scheme, opts, fq::Progress(), {}, 0);
    EXPECT_EQ(again.epoch_mse, gpu.epoch_mse);
    for (size_t l = 0; l < gpu.layers.size(); l++) {
        EXPECT_EQ(again.layers[l].pa.left, gpu.layers[l].pa.left);
        EXPECT_EQ(again.layers[l].lwc[q::kLinUp], gpu.layers[l].lwc[q::kLinUp]);
    }
}

TEST_F(CudaCalibration, AMissingDeviceIsReported) {
    int32_t status = FQ_STATUS_OK;
    try {
        q::calibrate(*model, pool, windows, scheme, opts, fq::Progress(), {}, fq::cuda::device_count() + 3);
    } catch (const fq::Error &e) {
        status = e.status();
    }
    EXPECT_EQ(status, FQ_STATUS_DEVICE_UNAVAILABLE);
}

}  // namespace

#endif  // FQ_HAVE_CUDA
