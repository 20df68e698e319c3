// The GPU ops of FlatQuant calibration (native/src/cuda/calib_ops.h) against their CPU twins on random data:
// fake_quant.h / layer_ops.h / kron.h in double where the op is a product or a long sum (the GPU runs FP32 there),
// and the float CPU op where both sides do the same float arithmetic (quantizers, scales, RoPE), which must then
// agree bit for bit or to the last rounding of a double sum. Skipped without a CUDA device.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/calib_ops.h"
#include "cuda/cuda_backend.h"
#include "quant/fake_quant.h"
#include "quant/fast_ops.h"
#include "quant/kron.h"
#include "quant/layer_ops.h"
#include "quant/optim.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;
namespace calib = fq::cuda::calib;
namespace q = fq::quant;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(n);
    for (auto &x : v) x = nd(g);
    return v;
}

std::vector<double> to_d(const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); }

// Largest |a - b| relative to the largest |b| (the scale of the reference), over all elements.
template <typename A, typename B>
double rel_max_err(const std::vector<A> &a, const std::vector<B> &b) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < a.size(); i++) {
        err = std::max(err, std::fabs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::fabs(double(b[i])));
    }
    return scale > 0 ? err / scale : err;
}

class CudaCalibOps : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }
    void *st() { return stream_.handle(); }
    DeviceBuffer up(const std::vector<float> &v) {
        DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(float));
        if (!v.empty()) b.upload(v.data(), v.size() * sizeof(float), stream_);
        return b;
    }
    DeviceBuffer up_d(const std::vector<double> &v) {
        DeviceBuffer b(std::max<size_t>(v.size(), 1) * sizeof(double));
        b.upload(v.data(), v.size() * sizeof(double), stream_);
        return b;
    }
    std::vector<float> down(const DeviceBuffer &b, size_t n) {
        std::vector<float> v(n);
        b.download(v.data(), n * sizeof(float), stream_);
        return v;
    }
    Stream stream_;
    calib::Workspace ws_;
};

// ---- row and column ops ------------------------------------------------------------------------------------------

TEST_F(CudaCalibOps, RmsNormForwardAndBackwardMatchTheCpuOp) {
    for (int64_t cols : {16, 576, 4100}) {
        const int64_t rows = 37;
        const auto x = randn(rows * cols, 1), w = randn(cols, 2), g = randn(rows * cols, 3);
        const auto acc0 = randn(rows * cols, 4);
        std::vector<float> out(x.size()), rstd(rows), dinp(x.size());
        q::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), rows, cols, 1e-5);
        q::rmsnorm_backward(dinp.data(), static_cast<float *>(nullptr), g.data(), x.data(), w.data(), rstd.data(), rows,
                            cols);
        DeviceBuffer dx = up(x), dw = up(w), dg = up(g), dout(x.size() * 4), drs(rows * 4), ddin = up(acc0);
        calib::rmsnorm_fwd(dout.as<float>(), drs.as<float>(), dx.as<float>(), dw.as<float>(), rows, cols, 1e-5, st());
        EXPECT_LT(rel_max_err(down(dout, x.size()), out), 1e-6) << cols;
        EXPECT_LT(rel_max_err(down(drs, rows), rstd), 1e-6) << cols;
        // Backward from the CPU's rstd, accumulating onto acc0 (the residual branch of the layer).
        DeviceBuffer drs_cpu = up(rstd);
        calib::rmsnorm_bwd(ddin.as<float>(), dg.as<float>(), dx.as<float>(), dw.as<float>(), drs_cpu.as<float>(), rows,
                           cols, true, st());
        std::vector<float> want(x.size());
        for (size_t i = 0; i < want.size(); i++) want[i] = acc0[i] + dinp[i];
        EXPECT_LT(rel_max_err(down(ddin, x.size()), want), 1e-6) << cols;
    }
}

TEST_F(CudaCalibOps, ChannelScalesAndColumnReductionsMatchTheCpuOps) {
    const int64_t rows = 301, cols = 77;
    const auto x = randn(rows * cols, 5), g = randn(rows * cols, 6);
    auto c = randn(cols, 7);
    for (auto &v : c) v = 0.5f + std::fabs(v);
    const auto dc0 = randn(cols, 8);
    DeviceBuffer dx = up(x), dg = up(g), dc = up(c), dout(x.size() * 4), ddc = up(dc0), ddc2 = up(dc0);
    // scale
    std::vector<float> out(x.size()), dinp(x.size()), dcs = dc0;
    q::channel_scale_forward(out.data(), x.data(), c.data(), rows, cols);
    q::channel_scale_backward(dinp.data(), dcs.data(), g.data(), x.data(), c.data(), rows, cols);
    calib::channel_scale_fwd(dout.as<float>(), dx.as<float>(), dc.as<float>(), rows, cols, st());
    EXPECT_EQ(down(dout, x.size()), out);
    calib::channel_scale_bwd(dg.as<float>(), ddc.as<float>(), dg.as<float>(), dx.as<float>(), dc.as<float>(), rows,
                             cols, ws_, st());  // in place, as the layer calls it
    EXPECT_EQ(down(dg, x.size()), dinp);
    EXPECT_LT(rel_max_err(down(ddc, cols), dcs), 1e-6);
    // unscale (the weight side)
    dg = up(g);
    std::vector<float> wout(x.size()), dw(x.size()), dcu = dc0;
    q::channel_unscale_forward(wout.data(), x.data(), c.data(), rows, cols);
    q::channel_unscale_backward(dw.data(), dcu.data(), g.data(), x.data(), c.data(), rows, cols);
    calib::channel_unscale_fwd(dout.as<float>(), dx.as<float>(), dc.as<float>(), rows, cols, st());
    EXPECT_EQ(down(dout, x.size()), wout);
    calib::channel_unscale_bwd(dout.as<float>(), ddc2.as<float>(), dg.as<float>(), dx.as<float>(), dc.as<float>(), rows,
                               cols, ws_, st());
    EXPECT_EQ(down(dout, x.size()), dw);
    EXPECT_LT(rel_max_err(down(ddc2, cols), dcu), 1e-6);
    // column |max| (running) and column sums
    std::vector<float> am(cols, 0.25f);
    DeviceBuffer dam = up(am);
    q::column_absmax_update(am.data(), x.data(), rows, cols);
    calib::column_absmax(dam.as<float>(), dx.as<float>(), rows, cols, ws_, st());
    EXPECT_EQ(down(dam, cols), am);
    DeviceBuffer dsum(cols * sizeof(double));
    calib::column_sum(dsum.as<double>(), dx.as<float>(), rows, cols, ws_, st());
    std::vector<double> sums(cols), want(cols, 0.0);
    dsum.download(sums.data(), cols * sizeof(double), stream_);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) want[j] += x[r * cols + j];
    EXPECT_LT(rel_max_err(sums, want), 1e-12);
}

TEST_F(CudaCalibOps, RopeMatchesTheModelTableOpBitForBit) {
    fq::ThreadPool pool(1);
    for (fq::RopeMode mode : {fq::RopeMode::Normal, fq::RopeMode::Neox}) {
        fq::ModelConfig c;
        c.head_dim = 16;
        c.rope_dim = 12;  // partial rotary: the last 4 dims pass through
        c.rope_freq_base = 10000.0f;
        c.rope_mode = mode;
        const int64_t seq = 9, rows = 2 * seq;
        const int heads = 3;
        const std::vector<float> ff = {1.0f, 2.0f, 1.5f, 4.0f, 1.0f, 8.0f};
        const auto tab = q::fast::rope_table(c, ff, 0, seq);
        std::vector<int32_t> pos(rows);
        for (int64_t r = 0; r < rows; r++) pos[r] = static_cast<int32_t>(r % seq);
        const auto x = randn(rows * heads * c.head_dim, 9);
        DeviceBuffer cs = up(tab.cs), sn = up(tab.sn), dx = up(x);
        for (bool inverse : {false, true}) {
            std::vector<float> want = x;
            q::fast::rope_apply(want.data(), pos.data(), rows, heads, c.head_dim, tab, inverse, pool);
            DeviceBuffer d = up(x);
            calib::rope(d.as<float>(), rows, heads, c.head_dim, tab.half, mode == fq::RopeMode::Neox, cs.as<float>(),
                        sn.as<float>(), seq, inverse, st());
            EXPECT_EQ(down(d, x.size()), want) << "inverse " << inverse;
        }
    }
}

TEST_F(CudaCalibOps, SwigluAndMseMatchTheCpuOps) {
    const int64_t n = 10007;
    const auto gate = randn(n, 10, 3.0f), upv = randn(n, 11), g = randn(n, 12);
    std::vector<float> out(n), dgate(n), dup(n);
    q::swiglu_forward(out.data(), gate.data(), upv.data(), 1, n);
    q::swiglu_backward(dgate.data(), dup.data(), g.data(), gate.data(), upv.data(), 1, n);
    DeviceBuffer dga = up(gate), dup_in = up(upv), dg = up(g), dout(n * 4), d1(n * 4), d2(n * 4);
    calib::swiglu_fwd(dout.as<float>(), dga.as<float>(), dup_in.as<float>(), n, st());
    calib::swiglu_bwd(d1.as<float>(), d2.as<float>(), dg.as<float>(), dga.as<float>(), dup_in.as<float>(), n, st());
    EXPECT_LT(rel_max_err(down(dout, n), out), 1e-7);
    EXPECT_LT(rel_max_err(down(d1, n), dgate), 1e-7);
    EXPECT_LT(rel_max_err(down(d2, n), dup), 1e-7);
    const double mse = q::mse_loss_forward(gate.data(), upv.data(), n);
    const double got = calib::mse_loss(dga.as<float>(), dup_in.as<float>(), n, ws_, st());
    EXPECT_NEAR(got, mse, 1e-13 * mse);
    std::vector<float> dpred(n);
    q::mse_loss_backward(dpred.data(), gate.data(), upv.data(), n, mse, true);
    calib::mse_loss_bwd(dout.as<float>(), dga.as<float>(), dup_in.as<float>(), n, mse, true, st());
    EXPECT_EQ(down(dout, n), dpred);
}

// ---- quantizers --------------------------------------------------------------------------------------------------

// Rows with the special cases of the quantizers: tied extrema, an all-zero row, an all-positive and an
// all-negative row, and an outlier.
std::vector<float> quant_rows(int64_t rows, int64_t cols, uint32_t seed) {
    auto x = randn(rows * cols, seed);
    for (int64_t j = 0; j < cols; j++) x[0 * cols + j] = 0.0f;
    for (int64_t j = 0; j < cols; j++) x[1 * cols + j] = std::fabs(x[1 * cols + j]) + 0.1f;
    for (int64_t j = 0; j < cols; j++) x[2 * cols + j] = -std::fabs(x[2 * cols + j]) - 0.1f;
    x[3 * cols + 1] = x[3 * cols + cols - 1] = 4.0f;  // tied max
    x[3 * cols + 0] = x[3 * cols + 2] = -4.0f;        // tied min
    x[4 * cols + cols / 2] = 40.0f;
    return x;
}

TEST_F(CudaCalibOps, ActivationQuantizerGivesTheCpuCodesAndGradients) {
    const double lac_logits[2] = {1.3, 3.1};
    const double sig[2] = {1.0 / (1.0 + std::exp(-lac_logits[0])), 1.0 / (1.0 + std::exp(-lac_logits[1]))};
    const float lacf[2] = {static_cast<float>(lac_logits[0]), static_cast<float>(lac_logits[1])};
    for (int64_t cols : {8, 64, 128, 576, 1537}) {
        for (int bits : {4, 8}) {
            for (bool sym : {true, false}) {
                for (bool lac : {true, false}) {
                    SCOPED_TRACE(testing::Message() << "cols " << cols << " bits " << bits << " sym " << sym << " lac "
                                                    << lac);
                    const int64_t rows = 23;
                    const auto x = quant_rows(rows, cols, 13), g = randn(rows * cols, 14);
                    const auto acc0 = randn(rows * cols, 15);
                    const float *lp = lac ? lacf : nullptr;
                    std::vector<float> out(x.size()), dx(x.size()), dlac = {0.5f, -0.25f};
                    q::act_quant_forward(out.data(), x.data(), lp, rows, cols, bits, sym);
                    q::act_quant_backward(dx.data(), lac ? dlac.data() : nullptr, g.data(), x.data(), lp, rows, cols,
                                          bits, sym);
                    DeviceBuffer dxin = up(x), dg = up(g), dout(x.size() * 4), ddx = up(acc0), ddl = up({0.5f, -0.25f});
                    calib::act_quant_fwd(dout.as<float>(), dxin.as<float>(), lac ? sig : nullptr, rows, cols, bits, sym,
                                         st());
                    EXPECT_EQ(down(dout, x.size()), out);
                    calib::act_quant_bwd(ddx.as<float>(), true, lac ? ddl.as<float>() : nullptr, dg.as<float>(),
                                         dxin.as<float>(), lac ? sig : nullptr, rows, cols, bits, sym, ws_, st());
                    std::vector<float> want(x.size());
                    for (size_t i = 0; i < want.size(); i++) want[i] = acc0[i] + dx[i];
                    EXPECT_LT(rel_max_err(down(ddx, x.size()), want), 2e-7);
                    if (lac) {
                        EXPECT_LT(rel_max_err(down(ddl, 2), dlac), 1e-6);
                    }
                }
            }
        }
    }
}

TEST_F(CudaCalibOps, WeightQuantizerAndLwcGiveTheCpuValuesAndGradients) {
    for (int64_t cols : {16, 100, 4096}) {
        SCOPED_TRACE(testing::Message() << "cols " << cols);
        const int64_t rows = 19;
        const auto w = quant_rows(rows, cols, 16), g = randn(rows * cols, 17);
        std::vector<float> clip(2 * rows);
        std::vector<double> sig(2 * rows);
        std::mt19937 gen(18);
        for (int64_t i = 0; i < 2 * rows; i++) {
            clip[i] = static_cast<float>(q::kClipLogitInit + std::normal_distribution<double>(0, 1.5)(gen));
            sig[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(clip[i])));
        }
        DeviceBuffer dw = up(w), dg = up(g), dout(w.size() * 4), dsig = up_d(sig);
        for (int bits : {4, 8}) {
            std::vector<float> out(w.size()), dwq(w.size());
            q::weight_quant_forward(out.data(), static_cast<float *>(nullptr), w.data(), rows, cols, bits);
            q::weight_quant_backward(dwq.data(), g.data(), w.data(), rows, cols, bits);
            calib::weight_quant_fwd(dout.as<float>(), dw.as<float>(), rows, cols, bits, st());
            EXPECT_EQ(down(dout, w.size()), out) << bits;
            calib::weight_quant_bwd(dout.as<float>(), dg.as<float>(), dw.as<float>(), rows, cols, bits, st());
            EXPECT_LT(rel_max_err(down(dout, w.size()), dwq), 2e-7) << bits;
        }
        std::vector<float> lout(w.size()), ldw(w.size()), dclip(2 * rows, 0.125f);
        q::lwc_forward(lout.data(), w.data(), clip.data(), rows, cols);
        q::lwc_backward(ldw.data(), dclip.data(), g.data(), w.data(), clip.data(), rows, cols);
        DeviceBuffer ddclip = up(std::vector<float>(2 * rows, 0.125f));
        calib::lwc_fwd(dout.as<float>(), dw.as<float>(), dsig.as<double>(), rows, cols, st());
        EXPECT_EQ(down(dout, w.size()), lout);
        calib::lwc_bwd(dout.as<float>(), ddclip.as<float>(), dg.as<float>(), dw.as<float>(), dsig.as<double>(), rows,
                       cols, st());
        EXPECT_LT(rel_max_err(down(dout, w.size()), ldw), 2e-7);
        EXPECT_LT(rel_max_err(down(ddclip, 2 * rows), dclip), 1e-6);
    }
}

// ---- products ----------------------------------------------------------------------------------------------------

// FP32 products against double references: errors of order sqrt(k) * 2^-24 relative to the operand scale.
constexpr double kGemmTol = 2e-5;

TEST_F(CudaCalibOps, GemmAccumulateSumsItsSplitsInOrder) {
    const int64_t m = 24, n = 40, k = 5 * 2048 + 333;  // several full chunks and a short last one
    const auto a = randn(k * m, 19), b = randn(k * n, 20), c0 = randn(m * n, 21);
    // c += A^T B with A stored [k][m], B stored [k][n].
    std::vector<double> want(c0.begin(), c0.end());
    for (int64_t p = 0; p < k; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) want[i * n + j] += double(a[p * m + i]) * double(b[p * n + j]);
    DeviceBuffer da = up(a), db = up(b), dc = up(c0), dc2 = up(c0);
    calib::gemm_accumulate(true, false, m, n, k, da.as<float>(), m, db.as<float>(), n, dc.as<float>(), ws_, st());
    const auto got = down(dc, m * n);
    EXPECT_LT(rel_max_err(got, want), kGemmTol);
    calib::gemm_accumulate(true, false, m, n, k, da.as<float>(), m, db.as<float>(), n, dc2.as<float>(), ws_, st());
    EXPECT_EQ(down(dc2, m * n), got);  // reproducible
}

TEST_F(CudaCalibOps, KronForwardAndBackwardMatchTheReferenceForEveryFactorCombination) {
    struct Case {
        int64_t rows;
        int n1, n2;
    };
    for (const Case cs : {Case{7, 3, 5}, Case{300, 16, 24}, Case{64, 9, 64}}) {
        const int64_t n = int64_t{cs.n1} * cs.n2, rows = cs.rows;
        const auto x = randn(rows * n, 22), g = randn(rows * n, 23), p1 = randn(cs.n1 * cs.n1, 24),
                   p2 = randn(cs.n2 * cs.n2, 25);
        const auto xd = to_d(x), gd = to_d(g), p1d = to_d(p1), p2d = to_d(p2);
        DeviceBuffer dx = up(x), dg = up(g), dp1 = up(p1), dp2 = up(p2), dout(x.size() * 4);
        for (int mask = 1; mask < 4; mask++) {
            SCOPED_TRACE(testing::Message() << "rows " << rows << " n1 " << cs.n1 << " n2 " << cs.n2 << " mask "
                                            << mask);
            const bool h1 = mask & 1, h2 = mask & 2;
            std::vector<double> ref(rows * n), rdx(rows * n), rd1(cs.n1 * cs.n1, 0.5), rd2(cs.n2 * cs.n2, 0.25);
            q::kron_transform_forward(ref.data(), xd.data(), h1 ? p1d.data() : nullptr, h2 ? p2d.data() : nullptr,
                                      rows, cs.n1, cs.n2);
            q::kron_transform_backward(rdx.data(), h1 ? rd1.data() : nullptr, h2 ? rd2.data() : nullptr, gd.data(),
                                       xd.data(), h1 ? p1d.data() : nullptr, h2 ? p2d.data() : nullptr, rows, cs.n1,
                                       cs.n2);
            const float *a = h1 ? dp1.as<float>() : nullptr, *b = h2 ? dp2.as<float>() : nullptr;
            calib::kron_fwd(dout.as<float>(), dx.as<float>(), a, b, rows, cs.n1, cs.n2, ws_, st());
            EXPECT_LT(rel_max_err(down(dout, x.size()), ref), kGemmTol);
            DeviceBuffer inplace = up(x);
            calib::kron_fwd(inplace.as<float>(), inplace.as<float>(), a, b, rows, cs.n1, cs.n2, ws_, st());
            EXPECT_LT(rel_max_err(down(inplace, x.size()), ref), kGemmTol);
            DeviceBuffer gd1 = up(std::vector<float>(cs.n1 * cs.n1, 0.5f)),
                         gd2 = up(std::vector<float>(cs.n2 * cs.n2, 0.25f)), ginp = up(g);
            calib::kron_bwd(ginp.as<float>(), h1 ? gd1.as<float>() : nullptr, h2 ? gd2.as<float>() : nullptr,
                            ginp.as<float>(), dx.as<float>(), a, b, rows, cs.n1, cs.n2, ws_, st());  // in place
            EXPECT_LT(rel_max_err(down(ginp, x.size()), rdx), kGemmTol);
            if (h1) {
                EXPECT_LT(rel_max_err(down(gd1, cs.n1 * cs.n1), rd1), kGemmTol);
            }
            if (h2) {
                EXPECT_LT(rel_max_err(down(gd2, cs.n2 * cs.n2), rd2), kGemmTol);
            }
        }
    }
}

TEST_F(CudaCalibOps, CausalGqaAttentionMatchesTheReference) {
    struct Case {
        int64_t n_seq, L;
        int H, Hkv, D;
    };
    // Causal blocks of 128 query rows: one block for L <= 128, 2 and 3 (the last one short) above; GQA groups 2 and 3.
    for (const Case c :
         {Case{2, 70, 4, 2, 16}, Case{1, 130, 3, 1, 64}, Case{2, 33, 2, 2, 128}, Case{1, 300, 4, 2, 32}}) {
        SCOPED_TRACE(testing::Message() << "L " << c.L << " H " << c.H << " Hkv " << c.Hkv << " D " << c.D);
        const int64_t rows = c.n_seq * c.L, qn = rows * c.H * c.D, kn = rows * c.Hkv * c.D;
        const auto qv = randn(qn, 26), kv = randn(kn, 27), vv = randn(kn, 28), gv = randn(qn, 29);
        const auto qd = to_d(qv), kd = to_d(kv), vd = to_d(vv), gd = to_d(gv);
        std::vector<double> out(qn), lse(c.n_seq * c.H * c.L), dq(qn), dk(kn), dv(kn);
        q::attention_forward(out.data(), lse.data(), qd.data(), kd.data(), vd.data(), c.n_seq, c.L, c.H, c.Hkv, c.D);
        q::attention_backward(dq.data(), dk.data(), dv.data(), gd.data(), qd.data(), kd.data(), vd.data(), lse.data(),
                              c.n_seq, c.L, c.H, c.Hkv, c.D);
        DeviceBuffer dqi = up(qv), dki = up(kv), dvi = up(vv), dgi = up(gv), dout(qn * 4), dlse(lse.size() * 4);
        DeviceBuffer probs(c.n_seq * c.H * c.L * c.L * 4), scratch(c.H * c.L * c.L * 4);
        calib::attention_fwd(dout.as<float>(), dlse.as<float>(), probs.as<float>(), dqi.as<float>(), dki.as<float>(),
                             dvi.as<float>(), c.n_seq, c.L, c.H, c.Hkv, c.D, ws_, st());
        EXPECT_LT(rel_max_err(down(dout, qn), out), kGemmTol);
        EXPECT_LT(rel_max_err(down(dlse, lse.size()), lse), 1e-6);
        DeviceBuffer gq(qn * 4), gk(kn * 4), gvv(kn * 4);
        calib::attention_bwd(gq.as<float>(), gk.as<float>(), gvv.as<float>(), dgi.as<float>(), dqi.as<float>(),
                             dki.as<float>(), dvi.as<float>(), dout.as<float>(), probs.as<float>(),
                             scratch.as<float>(), c.n_seq, c.L, c.H, c.Hkv, c.D, ws_, st());
        EXPECT_LT(rel_max_err(down(gq, qn), dq), 1e-4);
        EXPECT_LT(rel_max_err(down(gk, kn), dk), 1e-4);
        EXPECT_LT(rel_max_err(down(gvv, kn), dv), 1e-4);
    }
}

TEST_F(CudaCalibOps, BadArgumentsAreRefusedBeforeAnyLaunch) {
    auto status = [](const std::function<void()> &fn) {
        try {
            fn();
        } catch (const fq::Error &e) {
            return e.status();
        }
        return static_cast<int32_t>(FQ_STATUS_OK);
    };
    EXPECT_EQ(status([&] { calib::act_quant_fwd(nullptr, nullptr, nullptr, 4, 8, 9, true, st()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status([&] { calib::kron_fwd(nullptr, nullptr, nullptr, nullptr, 4, 0, 2, ws_, st()); }),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(status([&] { calib::attention_fwd(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 3, 2, 8,
                                                ws_, st()); }),
              FQ_STATUS_INVALID_ARGUMENT);
}

}  // namespace

#endif  // FQ_HAVE_CUDA
