// fq::cuda::gemm_f32 / gemm_f32_batched against a double-precision CPU product. Skipped when the machine has no
// CUDA device; argument checks run everywhere, since they happen before anything touches the GPU. Compiled only in
// builds with the CUDA backend; empty otherwise.
//
// Tolerance. Write S = |alpha| sum_p |a_ip b_pj| and u = 2^-24. The 3xTF32 kernels split each operand x into
// big = x truncated to TF32 (|x - big| < 2^-10 |x|) and small = TF32(x - big) (rounding error <= 2^-21 |x|); the
// three tensor-core products are exact in FP32 and the dropped small*small term is below 2^-20 |ab|, so the
// products themselves are off by at most (16 + 8 + 8) u |ab| each, 32 u S in all, independently of k. The FP32
// accumulation then adds roundings whose sum grows like sqrt(k) u S for data of mixed signs (all tests use
// uniform(-1, 1) data); the SIMT fallback (plain fmaf) has the same accumulation term and no product term. The
// epilogue (alpha * acc + beta * c) adds a rounding of each term. Hence
//   |C - C_ref| <= u (48 + 8 sqrt(k)) S + 2 u |beta c| + 2 u |C_ref|,
// with head room of about 1.5x on the product term and 2-4x on the statistical one. Plain TF32 (errors of
// 2^-11 |ab| per product) exceeds it for every k below about 4096 (at k = 7, by a factor of ~70); the test
// NotPlainTf32 checks that case directly with data whose low mantissa bits TF32 would drop.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;

constexpr double kUnitRoundoff = 1.0 / (1 << 24);
constexpr float kSentinel = 12345.0f;  // marks C elements outside the product (ld padding, gaps between entries)

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

DeviceBuffer upload(const std::vector<float> &host, const Stream &stream) {
    DeviceBuffer buf(host.size() * sizeof(float));
    buf.upload(host.data(), host.size() * sizeof(float), stream);
    return buf;
}

std::vector<float> download(const DeviceBuffer &buf, size_t n, const Stream &stream) {
    std::vector<float> host(n);
    buf.download(host.data(), n * sizeof(float), stream);
    return host;
}

struct GemmCase {
    bool trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    int64_t ld_pad = 0;        // added to every leading dimension (ld > width)
    int64_t batch = 1;         // 1 calls gemm_f32, more gemm_f32_batched
    bool share_a = false;      // stride_a = 0
    bool share_b = false;      // stride_b = 0
    int64_t stride_gap = 0;    // floats between consecutive batch entries of each operand
    bool batched_api = false;  // use gemm_f32_batched even for batch == 1
    int64_t row_step = 1;      // check C rows 0, row_step, ... and the last (big products)
};

struct Operand {
    int64_t rows, cols, ld, stride;
    std::vector<float> data;
    float at(int64_t e, int64_t r, int64_t c) const { return data[static_cast<size_t>(e * stride + r * ld + c)]; }
};

Operand make_operand(int64_t rows, int64_t cols, int64_t pad, int64_t gap, int64_t batch, bool shared,
                     std::mt19937 &rng, float fill_between) {
    Operand op{rows, cols, cols + pad, 0, {}};
    op.stride = shared ? 0 : rows * op.ld + gap;
    const int64_t entries = shared ? 1 : batch;
    op.data.assign(static_cast<size_t>(std::max<int64_t>(1, (entries - 1) * op.stride + rows * op.ld)), fill_between);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    for (int64_t e = 0; e < entries; ++e)
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) op.data[static_cast<size_t>(e * op.stride + r * op.ld + c)] = unit(rng);
    return op;
}

// Runs one case and checks every (sampled) element of C against the double product, and that nothing outside C
// changed. Returns the largest |C - C_ref| / tolerance seen, for the log.
double check_gemm(const Stream &stream, const GemmCase &g, uint32_t seed, bool nan_in_c = false) {
    SCOPED_TRACE(testing::Message() << "trans_a=" << g.trans_a << " trans_b=" << g.trans_b << " m=" << g.m
                                    << " n=" << g.n << " k=" << g.k << " alpha=" << g.alpha << " beta=" << g.beta
                                    << " ld_pad=" << g.ld_pad << " batch=" << g.batch << " share_a=" << g.share_a
                                    << " share_b=" << g.share_b << " gap=" << g.stride_gap);
    std::mt19937 rng(seed);
    // a: [m][k] or, trans_a, [k][m]; b: [k][n] or, trans_b, [n][k]; c: [m][n]; each with ld = width + ld_pad.
    const Operand a = make_operand(g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.ld_pad, g.stride_gap, g.batch,
                                   g.share_a, rng, std::numeric_limits<float>::quiet_NaN());
    const Operand b = make_operand(g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ld_pad, g.stride_gap, g.batch,
                                   g.share_b, rng, std::numeric_limits<float>::quiet_NaN());
    Operand c = make_operand(g.m, g.n, g.ld_pad, g.stride_gap, g.batch, false, rng, kSentinel);  // pad: sentinel
    const std::vector<float> c0 = c.data;
    if (nan_in_c)
        for (int64_t e = 0; e < g.batch; ++e)
            for (int64_t r = 0; r < g.m; ++r)
                for (int64_t j = 0; j < g.n; ++j)
                    c.data[static_cast<size_t>(e * c.stride + r * c.ld + j)] = std::numeric_limits<float>::quiet_NaN();

    DeviceBuffer d_a = upload(a.data, stream), d_b = upload(b.data, stream), d_c = upload(c.data, stream);
    if (g.batch == 1 && !g.batched_api)
        fq::cuda::gemm_f32(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, d_a.as<float>(), a.ld, d_b.as<float>(), b.ld,
                           g.beta, d_c.as<float>(), c.ld, stream.handle());
    else
        fq::cuda::gemm_f32_batched(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, d_a.as<float>(), a.ld, a.stride,
                                   d_b.as<float>(), b.ld, b.stride, g.beta, d_c.as<float>(), c.ld, c.stride, g.batch,
                                   stream.handle());
    const std::vector<float> out = download(d_c, c.data.size(), stream);

    const double u = kUnitRoundoff, product_tol = u * (48.0 + 8.0 * std::sqrt(static_cast<double>(g.k)));
    std::vector<char> inside(out.size(), 0);
    double worst = 0.0;
    int faults = 0;
    for (int64_t e = 0; e < g.batch; ++e) {
        for (int64_t r = 0; r < g.m; ++r) {
            const bool checked = r % g.row_step == 0 || r == g.m - 1;
            for (int64_t j = 0; j < g.n; ++j) {
                const size_t ci = static_cast<size_t>(e * c.stride + r * c.ld + j);
                inside[ci] = 1;
                if (!checked || faults >= 10) continue;
                double dot = 0.0, abs_dot = 0.0;
                for (int64_t p = 0; p < g.k; ++p) {
                    const double av = g.trans_a ? a.at(g.share_a ? 0 : e, p, r) : a.at(g.share_a ? 0 : e, r, p);
                    const double bv = g.trans_b ? b.at(g.share_b ? 0 : e, j, p) : b.at(g.share_b ? 0 : e, p, j);
                    dot += av * bv;
                    abs_dot += std::fabs(av * bv);
                }
                const double beta_c = g.beta == 0.0f ? 0.0 : static_cast<double>(g.beta) * c0[ci];
                const double ref = static_cast<double>(g.alpha) * dot + beta_c;
                const double s = std::fabs(static_cast<double>(g.alpha)) * abs_dot;
                const double tol = product_tol * s + 2 * u * std::fabs(beta_c) + 2 * u * std::fabs(ref) + 1e-30;
                const double err = std::fabs(static_cast<double>(out[ci]) - ref);
                worst = std::max(worst, err / tol);
                if (!(err <= tol)) {
                    ADD_FAILURE() << "C[" << e << "][" << r << "][" << j << "] = " << out[ci] << ", reference " << ref
                                  << ", error " << err << " > " << tol;
                    ++faults;
                }
            }
        }
    }
    for (size_t i = 0; i < out.size() && faults < 20; ++i) {
        if (!inside[i] && !(out[i] == kSentinel)) {
            ADD_FAILURE() << "element " << i << " outside C was written: " << out[i];
            ++faults;
        }
    }
    return worst;
}

class CudaGemmF32 : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }
    Stream stream_;
};

TEST_F(CudaGemmF32, EveryTransposeOddSizes) {
    // Sizes 1, 7, 33, 129, 1000 in every position; ld padding and alpha/beta varied along the way.
    struct Size {
        int64_t m, n, k;
    };
    const Size sizes[] = {{1, 1, 1}, {7, 33, 129}, {33, 7, 1000}, {129, 1000, 7}, {1000, 129, 33}, {1, 1000, 1}};
    uint32_t seed = 100;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
            for (const Size &s : sizes) {
                GemmCase g{ta != 0, tb != 0, s.m, s.n, s.k, 1.0f, 0.0f};
                worst = std::max(worst, check_gemm(stream_, g, seed++));
                g.alpha = -1.5f;
                g.beta = 0.75f;
                g.ld_pad = 3;
                worst = std::max(worst, check_gemm(stream_, g, seed++));
            }
    std::printf("[ gemm_f32 ] odd sizes: worst error %.3f of the tolerance\n", worst);
}

TEST_F(CudaGemmF32, AlignedShapesEveryKernel) {
    // Multiples of 4 take the 16-byte kernels: small products the small tile, >= 256 large tiles the large one
    // (m = 2047 leaves a ragged last tile where the layout allows it).
    uint32_t seed = 200;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            GemmCase small{ta != 0, tb != 0, 96, 160, 64, 1.0f, 1.0f};
            worst = std::max(worst, check_gemm(stream_, small, seed++));
            small.ld_pad = 8;
            small.beta = 0.0f;
            worst = std::max(worst, check_gemm(stream_, small, seed++, /*nan_in_c=*/true));
            GemmCase large{ta != 0, tb != 0, ta ? 2044 : 2047, 2052, 260, 0.5f, -2.0f};
            large.row_step = 61;
            worst = std::max(worst, check_gemm(stream_, large, seed++));
            large.beta = 0.0f;
            large.ld_pad = 4;
            worst = std::max(worst, check_gemm(stream_, large, seed++, /*nan_in_c=*/true));
        }
    std::printf("[ gemm_f32 ] aligned shapes: worst error %.3f of the tolerance\n", worst);
}

TEST_F(CudaGemmF32, BetaZeroNeverReadsC) {
    uint32_t seed = 300;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            check_gemm(stream_, GemmCase{ta != 0, tb != 0, 33, 129, 7, 2.0f, 0.0f}, seed++, /*nan_in_c=*/true);
            GemmCase batched{ta != 0, tb != 0, 8, 12, 16, 1.0f, 0.0f};
            batched.batch = 5;
            check_gemm(stream_, batched, seed++, /*nan_in_c=*/true);
        }
}

TEST_F(CudaGemmF32, BatchedStridesAndSharing) {
    uint32_t seed = 400;
    double worst = 0.0;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            GemmCase g{ta != 0, tb != 0, 17, 24, 9, 1.25f, -0.5f};
            g.batch = 6;
            g.stride_gap = 5;
            worst = std::max(worst, check_gemm(stream_, g, seed++));
            g.share_a = true;  // one A for every entry, e.g. a transform applied to every row's matrix
            worst = std::max(worst, check_gemm(stream_, g, seed++));
            g.share_a = false;
            g.share_b = true;
            g.ld_pad = 2;
            worst = std::max(worst, check_gemm(stream_, g, seed++));
            // Aligned batched products, many enough for the large tile.
            GemmCase big{ta != 0, tb != 0, 256, 256, 64, 1.0f, 0.0f};
            big.batch = 64;
            big.share_b = true;
            big.row_step = 37;
            worst = std::max(worst, check_gemm(stream_, big, seed++));
        }
    // Kronecker-style products per row: P1^T X with P1 [n1][n1] shared and X [n1][n2] per row, and X P2; n1 = 86,
    // n2 = 128 (11008 = 86 * 128) is not a multiple of 4 in the transposed operand.
    GemmCase left{true, false, 64, 64, 64, 1.0f, 0.0f};
    left.batch = 300;
    left.share_a = true;
    worst = std::max(worst, check_gemm(stream_, left, seed++));
    GemmCase right{false, false, 86, 128, 128, 1.0f, 0.0f};
    right.batch = 40;
    right.share_b = true;
    worst = std::max(worst, check_gemm(stream_, right, seed++));
    GemmCase left86{true, false, 86, 128, 86, 1.0f, 0.0f};
    left86.batch = 40;
    left86.share_a = true;
    worst = std::max(worst, check_gemm(stream_, left86, seed++));
    std::printf("[ gemm_f32 ] batched: worst error %.3f of the tolerance\n", worst);
}

TEST_F(CudaGemmF32, HugeBatchOfTinyProducts) {
    // More entries than a grid dimension holds (65535).
    GemmCase aligned{false, true, 4, 4, 4, 1.0f, 0.5f};
    aligned.batch = 70000;
    aligned.share_b = true;
    check_gemm(stream_, aligned, 500);
    GemmCase odd{true, false, 3, 5, 2, -1.0f, 0.0f};
    odd.batch = 70000;
    check_gemm(stream_, odd, 501, /*nan_in_c=*/true);
}

TEST_F(CudaGemmF32, LongRowsAndColumnsSplitIntoLaunches) {
    // m or n beyond 2^21 is split into several launches.
    GemmCase tall{false, false, (int64_t(1) << 21) + 5, 1, 3, 1.0f, 0.0f};
    tall.row_step = 4099;
    check_gemm(stream_, tall, 600);
    GemmCase wide{true, true, 2, (int64_t(1) << 21) + 3, 2, 1.0f, 1.0f};
    check_gemm(stream_, wide, 601);
}

TEST_F(CudaGemmF32, NotPlainTf32) {
    // a = 1 + x 2^-12, b = 1 + y 2^-12 with x, y integers in [0, 1024): every bit below 2^-10 is lost by TF32, which
    // would be off by up to 2^-10 per product; every product here is exact in FP32 up to one rounding.
    const int64_t m = 64, n = 64, k = 16;
    std::mt19937 rng(700);
    std::uniform_int_distribution<int> bits(0, 1023);
    std::vector<float> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(k * n));
    for (auto &v : a) v = 1.0f + std::ldexp(static_cast<float>(bits(rng)), -12);
    for (auto &v : b) v = 1.0f + std::ldexp(static_cast<float>(bits(rng)), -12);
    DeviceBuffer d_a = upload(a, stream_), d_b = upload(b, stream_), d_c(static_cast<size_t>(m * n) * sizeof(float));
    fq::cuda::gemm_f32(false, false, m, n, k, 1.0f, d_a.as<float>(), k, d_b.as<float>(), n, 0.0f, d_c.as<float>(), n,
                       stream_.handle());
    const std::vector<float> c = download(d_c, static_cast<size_t>(m * n), stream_);
    double worst = 0.0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double ref = 0.0;
            for (int64_t p = 0; p < k; ++p)
                ref += static_cast<double>(a[static_cast<size_t>(i * k + p)]) * b[static_cast<size_t>(p * n + j)];
            worst = std::max(worst, std::fabs(c[static_cast<size_t>(i * n + j)] - ref) / ref);
        }
    // FP32-class: a few u; plain TF32 would be near 2^-11 = 2048 u.
    EXPECT_LE(worst, 64 * kUnitRoundoff);
    std::printf("[ gemm_f32 ] low-mantissa data: worst relative error %.2f u\n", worst / kUnitRoundoff);
}

TEST_F(CudaGemmF32, DegenerateSizes) {
    // Nothing to do: no pointer is touched, null ones included.
    EXPECT_NO_THROW(fq::cuda::gemm_f32(false, false, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, nullptr, 5,
                                       stream_.handle()));
    EXPECT_NO_THROW(fq::cuda::gemm_f32(true, true, 4, 0, 3, 1.0f, nullptr, 4, nullptr, 3, 0.0f, nullptr, 1,
                                       stream_.handle()));
    EXPECT_NO_THROW(fq::cuda::gemm_f32_batched(false, false, 2, 2, 2, 1.0f, nullptr, 2, 4, nullptr, 2, 4, 0.0f,
                                               nullptr, 2, 4, 0, stream_.handle()));
    // k == 0: C = beta C, A and B never read (null here); with beta == 0 NaN in C becomes 0.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> c = {1.0f, -2.0f, 3.0f, kSentinel, 4.0f, 5.0f, -6.0f, kSentinel};  // [2][3], ldc 4
    DeviceBuffer d_c = upload(c, stream_);
    fq::cuda::gemm_f32(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, -0.5f, d_c.as<float>(), 4,
                       stream_.handle());
    EXPECT_EQ(download(d_c, c.size(), stream_),
              (std::vector<float>{-0.5f, 1.0f, -1.5f, kSentinel, -2.0f, -2.5f, 3.0f, kSentinel}));
    std::vector<float> c_nan = {nan, nan, nan, kSentinel, nan, nan, nan, kSentinel};
    DeviceBuffer d_c_nan = upload(c_nan, stream_);
    fq::cuda::gemm_f32(true, false, 2, 3, 0, 1.0f, nullptr, 2, nullptr, 3, 0.0f, d_c_nan.as<float>(), 4,
                       stream_.handle());
    EXPECT_EQ(download(d_c_nan, c.size(), stream_),
              (std::vector<float>{0, 0, 0, kSentinel, 0, 0, 0, kSentinel}));
    // alpha == 0: A and B are not read either (NaN there does not reach C).
    std::vector<float> ab_nan(6, nan);
    DeviceBuffer d_a = upload(ab_nan, stream_), d_b = upload(ab_nan, stream_), d_c2 = upload(c, stream_);
    fq::cuda::gemm_f32(false, false, 2, 3, 2, 0.0f, d_a.as<float>(), 2, d_b.as<float>(), 3, 2.0f, d_c2.as<float>(), 4,
                       stream_.handle());
    EXPECT_EQ(download(d_c2, c.size(), stream_),
              (std::vector<float>{2.0f, -4.0f, 6.0f, kSentinel, 8.0f, 10.0f, -12.0f, kSentinel}));
}

// Speed, for the log only (no assertion): the calibration-sized product and a batch of Kronecker factors.
TEST_F(CudaGemmF32, TimingPrint) {
    const int64_t m = 8192, n = 4096, k = 4096;
    std::mt19937 rng(800);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::vector<float> host(static_cast<size_t>(m * k));
    for (auto &v : host) v = unit(rng);
    DeviceBuffer d_a = upload(host, stream_);  // [m][k], also read as [k][m]
    host.resize(static_cast<size_t>(k * n));
    DeviceBuffer d_b = upload(host, stream_);  // [k][n], also read as [n][k]
    DeviceBuffer d_c(static_cast<size_t>(m * n) * sizeof(float));
    auto time_ms = [&](const std::function<void()> &fn, int iterations) {
        fn();
        stream_.synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iterations; ++i) fn();
        stream_.synchronize();
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iterations;
    };
    for (int variant = 0; variant < 3; ++variant) {
        const bool ta = variant == 2, tb = variant == 1;
        const double ms = time_ms(
            [&] {
                fq::cuda::gemm_f32(ta, tb, m, n, k, 1.0f, d_a.as<float>(), ta ? m : k, d_b.as<float>(), tb ? k : n,
                                   0.0f, d_c.as<float>(), n, stream_.handle());
            },
            10);
        std::printf("[ gemm_f32 ] %s m=%lld n=%lld k=%lld: %.3f ms, %.1f TFLOP/s\n", ta ? "TN" : tb ? "NT" : "NN",
                    static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k), ms,
                    2.0 * m * n * k / (ms * 1e-3) / 1e12);
    }
    // Per-row Kronecker factor products P1^T X: rows x [n1][n2] (X) times a shared [n1][n1] (P1). n1 = 86 (11008 =
    // 86 x 128) takes the 4-byte kernel.
    struct Kron {
        int64_t rows, n1, n2;
    };
    for (const Kron &kr : {Kron{8192, 64, 64}, Kron{2048, 86, 128}}) {
        const double kron_ms = time_ms(
            [&] {
                fq::cuda::gemm_f32_batched(true, false, kr.n1, kr.n2, kr.n1, 1.0f, d_b.as<float>(), kr.n1, 0,
                                           d_a.as<float>(), kr.n2, kr.n1 * kr.n2, 0.0f, d_c.as<float>(), kr.n2,
                                           kr.n1 * kr.n2, kr.rows, stream_.handle());
            },
            10);
        std::printf("[ gemm_f32 ] batched P1^T X, %lld x [%lld][%lld]: %.3f ms, %.1f TFLOP/s\n",
                    static_cast<long long>(kr.rows), static_cast<long long>(kr.n1), static_cast<long long>(kr.n2),
                    kron_ms, 2.0 * kr.rows * kr.n1 * kr.n1 * kr.n2 / (kron_ms * 1e-3) / 1e12);
    }
}

TEST(CudaGemmF32Arguments, RejectedBeforeAnyDeviceWork) {
    float dummy = 0.0f;
    const int32_t invalid = FQ_STATUS_INVALID_ARGUMENT;
    expect_status([&] { fq::cuda::gemm_f32(false, false, -1, 2, 2, 1.0f, &dummy, 2, &dummy, 2, 0.0f, &dummy, 2,
                                           nullptr); }, invalid);
    expect_status([&] { fq::cuda::gemm_f32(false, false, 2, 2, 3, 1.0f, &dummy, 2, &dummy, 2, 0.0f, &dummy, 2,
                                           nullptr); }, invalid);  // lda < k
    expect_status([&] { fq::cuda::gemm_f32(true, false, 5, 2, 3, 1.0f, &dummy, 3, &dummy, 2, 0.0f, &dummy, 2,
                                           nullptr); }, invalid);  // trans_a: lda < m
    expect_status([&] { fq::cuda::gemm_f32(false, true, 2, 4, 3, 1.0f, &dummy, 3, &dummy, 2, 0.0f, &dummy, 4,
                                           nullptr); }, invalid);  // trans_b: ldb < k
    expect_status([&] { fq::cuda::gemm_f32(false, false, 2, 4, 3, 1.0f, &dummy, 3, &dummy, 4, 0.0f, &dummy, 3,
                                           nullptr); }, invalid);  // ldc < n
    expect_status([&] { fq::cuda::gemm_f32(false, false, 2, 2, 2, 1.0f, &dummy, 2, &dummy, 2, 0.0f, nullptr, 2,
                                           nullptr); }, invalid);  // null C
    expect_status([&] { fq::cuda::gemm_f32(false, false, 2, 2, 2, 1.0f, nullptr, 2, &dummy, 2, 0.0f, &dummy, 2,
                                           nullptr); }, invalid);  // null A
    expect_status([&] { fq::cuda::gemm_f32_batched(false, false, 2, 2, 2, 1.0f, &dummy, 2, 4, &dummy, 2, 4, 0.0f,
                                                   &dummy, 2, 4, -1, nullptr); }, invalid);
}

}  // namespace

#endif  // FQ_HAVE_CUDA
