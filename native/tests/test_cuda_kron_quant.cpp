// The fused transform + quantization kernel (native/src/cuda/kron_quant.h) and the attention-side transforms
// (head_transforms.h) against the CPU twin (native/src/cpu/kron_quant_ref.h, itself checked in
// test_kron_quant_ref.cpp) on random data: every factor pair of the supported models at 1, 3, 64 and 1000 tokens,
// every output format, several outputs with their own LAC, both shared-memory modes, unaligned buffers. Skipped
// without a CUDA device; argument checks run everywhere. Compiled only in builds with the CUDA backend.
//
// Tolerances (u = 2^-24; all bounds are per element, from the twin's exact values):
//  * Tensor-core accumulation. mma.sync adds FP16 x FP16 products (exact in FP32) into FP32 accumulators; inside
//    one k16 step the hardware aligns the 17 addends to the largest and truncates (the model of Fasi et al. 2021,
//    with 3 extra alignment bits measured on A100/H100 by the FTTN study, 2024): at most 17 2^-26 of the largest
//    term per step. Bound used for a K-term dot product, four times that per step and one step more:
//    |err| <= c(K) sum|terms|, c(K) = (ceil(K/16) + 1) 2^-20 (1.0e-5 for K = 160).
//  * Z = X P2: the kernel's FP32 Z lies within e1 = c(n2) sum_j'|X||P2| of the exact Z, so its FP16 rounding lies in
//    [f16(Z - e1), f16(Z + e1)] (rounding is monotone), as does the twin's f16(Z): dZ = f16(Z + e1) - f16(Z - e1)
//    bounds their difference (0 unless Z is within e1 of an FP16 rounding boundary).
//  * Y = P1^T Zh: eY = sum_i'|P1| dZ + c(n1) sum_i'|P1| (|Zh| + dZ). With P1 the identity eY = e1; with P2 the
//    identity eY = c(n1) sum|P1||X|.
//  * Scale: the kernel's row max is within E = max eY of the exact one (max is 1-Lipschitz), the twin's FP32 max
//    within u |max|; the LAC product (factor <= 1) and the division by 7 add one rounding each on each side:
//    |s - s_twin| <= ds = (E + u A)/7 + 4u s_twin, A = max(|max Y|, |min Y|).
//  * Quantized values: the kernel rounds Y' * fl(1/s'), the twin fl(fl(Y)/s). With v = Y/s (s the twin's scale)
//    the kernel's pre-rounding value is within eps = (eY + |Y| ds/s) / (s - ds) + 4u |v| of v, and so is the
//    twin's. Where [v - eps, v + eps] holds no rounding boundary, rint and the clamp give one value there and kernel
//    and twin must agree exactly; elsewhere the kernel's value must lie in the range of that interval. How many
//    elements fall there depends on the twin and the bound only (0.07-0.7% of them on this data, mostly from the FP16
//    rounding of Z near its boundaries); the test requires at most 2% so that the check keeps its power, and prints
//    how many of them the kernel actually rounded the other way.
//  * FP16 output: the kernel's value lies in [f16(Y - eY), f16(Y + eY)].
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/kron_quant_ref.h"
#include "cpu/w4a4_gemm_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/head_transforms.h"
#include "cuda/kron_quant.h"
#include "quant/kron.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;
using fq::cpu::round_to_f16;
using fq::cuda::DeviceBuffer;
using fq::cuda::KronOutFormat;
using fq::cuda::KronQuantArgs;
using fq::cuda::Stream;

constexpr double kU = 1.0 / (1 << 24);

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

double acc_bound(int k) { return (std::ceil(k / 16.0) + 1.0) * std::ldexp(1.0, -20); }

void parallel_tokens(int64_t tokens, const std::function<void(int64_t, int64_t)> &fn) {
    const int64_t n_threads = std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), tokens));
    std::vector<std::thread> pool;
    for (int64_t w = 0; w < n_threads; ++w)
        pool.emplace_back([&, w] { fn(tokens * w / n_threads, tokens * (w + 1) / n_threads); });
    for (auto &t : pool) t.join();
}

// One random problem: x (T, n1*n2), P1 (n1, n1), P2 (n2, n2) as FP16, plus the twin's exact Y and its bound eY.
struct Problem {
    int n1 = 0, n2 = 0;
    int64_t tokens = 0;
    bool has_p1 = true, has_p2 = true;
    std::vector<uint16_t> x, p1, p2;
    std::vector<double> y, ey;  // (T, n)
    int64_t n() const { return int64_t{n1} * n2; }
};

Problem make_problem(int n1, int n2, int64_t tokens, bool has_p1, bool has_p2, uint32_t seed) {
    Problem pr;
    pr.n1 = n1;
    pr.n2 = n2;
    pr.tokens = tokens;
    pr.has_p1 = has_p1;
    pr.has_p2 = has_p2;
    const int64_t n = pr.n();
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    // Activations with a few outlier channels (x20), as LLM activations have; token 1 (when there are > 2) all zero.
    std::vector<double> channel_gain(static_cast<size_t>(n), 1.0);
    for (int k = 0; k < 4; ++k) channel_gain[rng() % n] = 20.0;
    pr.x.resize(static_cast<size_t>(tokens * n));
    for (int64_t t = 0; t < tokens; ++t)
        for (int64_t e = 0; e < n; ++e)
            pr.x[t * n + e] =
                (tokens > 2 && t == 1) ? 0 : f32_to_f16_bits(static_cast<float>(normal(rng) * channel_gain[e]));
    pr.p1.resize(static_cast<size_t>(n1) * n1);
    pr.p2.resize(static_cast<size_t>(n2) * n2);
    for (auto &h : pr.p1) h = f32_to_f16_bits(static_cast<float>(normal(rng) / std::sqrt(n1)));
    for (auto &h : pr.p2) h = f32_to_f16_bits(static_cast<float>(normal(rng) / std::sqrt(n2)));

    pr.y.resize(pr.x.size());
    pr.ey.resize(pr.x.size());
    const uint16_t *p1 = has_p1 ? pr.p1.data() : nullptr, *p2 = has_p2 ? pr.p2.data() : nullptr;
    std::vector<double> p1a(pr.p1.size()), p2a(pr.p2.size());
    for (size_t k = 0; k < p1a.size(); ++k) p1a[k] = std::fabs(f16_bits_to_f32(pr.p1[k]));
    for (size_t k = 0; k < p2a.size(); ++k) p2a[k] = std::fabs(f16_bits_to_f32(pr.p2[k]));
    const double c1 = acc_bound(n2), c2 = acc_bound(n1);
    parallel_tokens(tokens, [&](int64_t t0, int64_t t1) {
        std::vector<double> z(static_cast<size_t>(n)), e1(static_cast<size_t>(n)), dz(static_cast<size_t>(n)),
            zh(static_cast<size_t>(n));
        for (int64_t t = t0; t < t1; ++t) {
            fq::cpu::kron_transform_ref(&pr.y[t * n], z.data(), &pr.x[t * n], p1, p2, 1, n1, n2);
            // e1 = c1 sum_j' |X[i][j']| |P2[j'][j]| (0 without P2: Z = X exactly)
            std::fill(e1.begin(), e1.end(), 0.0);
            if (has_p2) {
                for (int i = 0; i < n1; ++i)
                    for (int jp = 0; jp < n2; ++jp) {
                        const double xa = std::fabs(f16_bits_to_f32(pr.x[t * n + i * n2 + jp]));
                        for (int j = 0; j < n2; ++j) e1[i * n2 + j] += xa * p2a[jp * n2 + j];
                    }
                for (auto &v : e1) v *= c1;
            }
            double *ey = &pr.ey[t * n];
            if (!has_p1) {
                std::copy(e1.begin(), e1.end(), ey);
                continue;
            }
            for (int64_t e = 0; e < n; ++e) {
                const bool rounded = has_p2;
                dz[e] = rounded ? round_to_f16(z[e] + e1[e]) - round_to_f16(z[e] - e1[e]) : 0.0;
                zh[e] = std::fabs(rounded ? round_to_f16(z[e]) : z[e]) + dz[e];
            }
            std::fill(ey, ey + n, 0.0);
            for (int ip = 0; ip < n1; ++ip)
                for (int i = 0; i < n1; ++i) {
                    const double pa = p1a[ip * n1 + i];
                    for (int j = 0; j < n2; ++j) ey[i * n2 + j] += pa * (dz[ip * n2 + j] + c2 * zh[ip * n2 + j]);
                }
        }
    });
    return pr;
}

template <class T> DeviceBuffer upload(const std::vector<T> &host, const Stream &stream, size_t pad_bytes = 0) {
    DeviceBuffer buf(host.size() * sizeof(T) + pad_bytes);
    if (!host.empty()) buf.upload(host.data(), host.size() * sizeof(T), stream, pad_bytes);
    return buf;
}

struct QuantCheck {
    int64_t ambiguous = 0, differing = 0, total = 0;  // near a boundary; of those, kernel != twin; all values
    void add(const QuantCheck &o) {
        ambiguous += o.ambiguous;
        differing += o.differing;
        total += o.total;
    }
};

// Checks one quantized output (values already unpacked to int8) and its scales against the twin.
void check_quantized(const Problem &pr, const std::vector<int8_t> &q, const std::vector<float> &scale,
                     float clip_max, float clip_min, QuantCheck &stats) {
    const int64_t n = pr.n();
    int faults = 0;
    for (int64_t t = 0; t < pr.tokens && faults < 10; ++t) {
        const double *y = &pr.y[t * n], *ey = &pr.ey[t * n];
        std::vector<int8_t> q_twin(static_cast<size_t>(n));
        std::vector<double> v(static_cast<size_t>(n));
        float s_twin = 0.0f;
        fq::cpu::act_quant_int4_ref(q_twin.data(), &s_twin, v.data(), y, 1, n, clip_max, clip_min);
        double e_max = 0.0, a_max = 0.0;
        for (int64_t e = 0; e < n; ++e) e_max = std::max(e_max, ey[e]), a_max = std::max(a_max, std::fabs(y[e]));
        const double s = scale[static_cast<size_t>(t)];
        const double tol_s = (e_max + kU * a_max) / 7.0 * (1.0 + 1e-6) + 4.0 * kU * s_twin;
        if (!(std::fabs(s - s_twin) <= tol_s)) {
            ADD_FAILURE() << "token " << t << ": scale " << s << ", twin " << s_twin << ", bound " << tol_s;
            ++faults;
            continue;
        }
        const double ds = tol_s;
        for (int64_t e = 0; e < n && faults < 10; ++e) {
            const double eps = (ey[e] + std::fabs(y[e]) * ds / s_twin) / (s_twin - ds) + 4.0 * kU * std::fabs(v[e]);
            const auto quant = [](double w) { return std::min(std::max(std::nearbyint(w), -8.0), 7.0); };
            const double lo = quant(v[e] - eps), hi = quant(v[e] + eps), got = q[t * n + e];
            ++stats.total;
            if (lo != hi) ++stats.ambiguous;
            if (got != q_twin[e]) ++stats.differing;
            if (got < lo || got > hi || (lo == hi && q_twin[e] != got)) {
                ADD_FAILURE() << "token " << t << " element " << e << ": q " << got << ", twin " << int(q_twin[e])
                              << ", pre-rounding " << v[e] << " +- " << eps;
                ++faults;
            }
        }
    }
}

void check_f16(const Problem &pr, const std::vector<uint16_t> &out) {
    int faults = 0;
    for (size_t e = 0; e < out.size() && faults < 10; ++e) {
        const double got = f16_bits_to_f32(out[e]);
        const double lo = round_to_f16(pr.y[e] - pr.ey[e]), hi = round_to_f16(pr.y[e] + pr.ey[e]);
        if (!(got >= lo && got <= hi)) {
            ADD_FAILURE() << "element " << e << ": " << got << " outside [" << lo << ", " << hi << "], twin "
                          << pr.y[e];
            ++faults;
        }
    }
}

struct RunOptions {
    KronOutFormat format = KronOutFormat::kInt4Packed;
    int n_outputs = 1;
    size_t x_offset_bytes = 0, out_offset_bytes = 0;  // misalign the buffers by this much
};

const float kClips[3][2] = {{0.98201379f, 0.98201379f}, {0.7310586f, 0.9241418f}, {1.0f, 0.5f}};

// Runs the kernel on `pr` and checks every output. Returns the counts of near-boundary elements.
QuantCheck run_and_check(const Problem &pr, const Stream &stream, const RunOptions &opt) {
    SCOPED_TRACE(testing::Message() << "n1=" << pr.n1 << " n2=" << pr.n2 << " tokens=" << pr.tokens
                                    << " format=" << static_cast<int>(opt.format) << " outputs=" << opt.n_outputs);
    const int64_t n = pr.n();
    DeviceBuffer d_x = upload(pr.x, stream, opt.x_offset_bytes), d_p1 = upload(pr.p1, stream),
                 d_p2 = upload(pr.p2, stream);
    const int64_t row_bytes =
        opt.format == KronOutFormat::kInt4Packed ? n / 2 : (opt.format == KronOutFormat::kInt8 ? n : 2 * n);
    const size_t out_bytes = static_cast<size_t>(pr.tokens * row_bytes);
    std::vector<DeviceBuffer> d_out, d_scale;
    KronQuantArgs a;
    a.x_f16 = reinterpret_cast<const uint16_t *>(static_cast<const char *>(d_x.data()) + opt.x_offset_bytes);
    a.p1_f16 = pr.has_p1 ? d_p1.as<uint16_t>() : nullptr;
    a.p2_f16 = pr.has_p2 ? d_p2.as<uint16_t>() : nullptr;
    a.tokens = pr.tokens;
    a.n1 = pr.n1;
    a.n2 = pr.n2;
    a.format = opt.format;
    a.n_outputs = opt.n_outputs;
    for (int o = 0; o < opt.n_outputs; ++o) {
        d_out.emplace_back(out_bytes + opt.out_offset_bytes);
        d_out.back().fill_bytes(0xA5, stream);
        d_scale.emplace_back(static_cast<size_t>(pr.tokens) * sizeof(float));
        a.out[o].data = static_cast<char *>(d_out.back().data()) + opt.out_offset_bytes;
        a.out[o].scale = opt.format == KronOutFormat::kF16 ? nullptr : d_scale.back().as<float>();
        a.out[o].clip_max = kClips[o][0];
        a.out[o].clip_min = kClips[o][1];
    }
    fq::cuda::kron_quant(a, stream);
    stream.synchronize();
    QuantCheck stats;
    for (int o = 0; o < opt.n_outputs; ++o) {
        std::vector<uint8_t> raw(out_bytes);
        d_out[o].download(raw.data(), out_bytes, stream, opt.out_offset_bytes);
        if (opt.format == KronOutFormat::kF16) {
            std::vector<uint16_t> f16(static_cast<size_t>(pr.tokens * n));
            std::memcpy(f16.data(), raw.data(), out_bytes);
            check_f16(pr, f16);
            continue;
        }
        std::vector<int8_t> q(static_cast<size_t>(pr.tokens * n));
        if (opt.format == KronOutFormat::kInt4Packed) {
            fq::cpu::unpack_int4(q.data(), raw.data(), pr.tokens, n);
        } else {
            std::memcpy(q.data(), raw.data(), out_bytes);
        }
        std::vector<float> scale(static_cast<size_t>(pr.tokens));
        d_scale[o].download(scale.data(), scale.size() * sizeof(float), stream);
        check_quantized(pr, q, scale, kClips[o][0], kClips[o][1], stats);
    }
    return stats;
}

class CudaKronQuant : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }
    void TearDown() override { fq::cuda::detail::kron_quant_set_overrides(0, 0); }
    Stream stream_;
};

const int64_t kModelWidths[] = {576, 1536, 896, 4864, 3584, 18944, 4096, 11008, 14336};
const int64_t kTokenCounts[] = {1, 3, 64, 1000};

TEST_F(CudaKronQuant, EveryModelFactorPairMatchesTwin) {
    uint32_t seed = 100;
    for (int64_t width : kModelWidths) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
        ASSERT_TRUE(fq::cuda::kron_quant_supported(d.n1, d.n2, true, true)) << width;
        QuantCheck total;
        for (int64_t tokens : kTokenCounts) {
            const Problem pr = make_problem(d.n1, d.n2, tokens, true, true, seed++);
            total.add(run_and_check(pr, stream_, RunOptions{}));
        }
        std::printf("[ kron_quant ] n=%lld (%d, %d): %lld values, %lld near a rounding boundary, %lld of those "
                    "rounded otherwise than the twin\n",
                    static_cast<long long>(width), d.n1, d.n2, static_cast<long long>(total.total),
                    static_cast<long long>(total.ambiguous), static_cast<long long>(total.differing));
        EXPECT_LE(total.ambiguous, total.total / 50) << width;
    }
}

TEST_F(CudaKronQuant, Int8AndSeveralOutputsWithTheirOwnClips) {
    for (int64_t width : {576, 4864, 11008}) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
        const Problem pr = make_problem(d.n1, d.n2, 37, true, true, static_cast<uint32_t>(width));
        RunOptions opt;
        opt.n_outputs = 3;
        opt.format = KronOutFormat::kInt8;
        run_and_check(pr, stream_, opt);
        opt.format = KronOutFormat::kInt4Packed;
        opt.n_outputs = 2;
        run_and_check(pr, stream_, opt);
    }
}

TEST_F(CudaKronQuant, Fp16OutputMatchesTwin) {
    for (int64_t width : {896, 18944, 14336}) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
        for (int64_t tokens : {1, 64}) {
            const Problem pr = make_problem(d.n1, d.n2, tokens, true, true, static_cast<uint32_t>(width + tokens));
            RunOptions opt;
            opt.format = KronOutFormat::kF16;
            run_and_check(pr, stream_, opt);
        }
    }
}

TEST_F(CudaKronQuant, SingleStageAndTokensPerBlockPaths) {
    // The one-stage mode (what GPUs with less shared memory run) and group sizes that leave a partial last group.
    for (int stages : {1, 2})
        for (int tpb : {1, 5}) {
            fq::cuda::detail::kron_quant_set_overrides(stages, tpb);
            for (int64_t width : {576, 4096, 18944}) {
                const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
                const Problem pr = make_problem(d.n1, d.n2, 23, true, true, static_cast<uint32_t>(stages * tpb));
                run_and_check(pr, stream_, RunOptions{});
            }
        }
}

TEST_F(CudaKronQuant, UnalignedBuffersTakeTheScalarPaths) {
    // x at a 2-byte offset: plain loads instead of cp.async; outputs at odd offsets: byte/half stores.
    for (KronOutFormat f : {KronOutFormat::kInt4Packed, KronOutFormat::kInt8, KronOutFormat::kF16}) {
        const Problem pr = make_problem(64, 76, 9, true, true, 77);
        RunOptions opt;
        opt.format = f;
        opt.x_offset_bytes = 2;
        opt.out_offset_bytes = f == KronOutFormat::kF16 ? 2 : 1;
        run_and_check(pr, stream_, opt);
    }
}

TEST_F(CudaKronQuant, OProjHeadMixingMatchesTwin) {
    // (heads, head_dim) of SmolLM2-135M, Qwen2.5-0.5B, Qwen2.5-7B, LLaMA-2-7B / 3-8B.
    const int shapes[][2] = {{9, 64}, {14, 64}, {28, 128}, {32, 128}};
    uint32_t seed = 500;
    for (const auto &sh : shapes) {
        ASSERT_TRUE(fq::cuda::o_proj_input_transform_supported(sh[0], sh[1]));
        for (int64_t tokens : kTokenCounts) {
            const Problem pr = make_problem(sh[0], sh[1], tokens, true, false, seed++);
            const int64_t n = pr.n();
            DeviceBuffer d_x = upload(pr.x, stream_), d_ph = upload(pr.p1, stream_);
            DeviceBuffer d_q(static_cast<size_t>(tokens * n / 2)), d_s(static_cast<size_t>(tokens) * 4);
            fq::cuda::KronQuantOutput out;
            out.data = d_q.data();
            out.scale = d_s.as<float>();
            out.clip_max = kClips[1][0];
            out.clip_min = kClips[1][1];
            fq::cuda::o_proj_input_transform(d_x.as<uint16_t>(), d_ph.as<uint16_t>(), tokens, sh[0], sh[1],
                                             KronOutFormat::kInt4Packed, &out, 1, stream_);
            std::vector<uint8_t> packed(static_cast<size_t>(tokens * n / 2));
            std::vector<int8_t> q(static_cast<size_t>(tokens * n));
            std::vector<float> scale(static_cast<size_t>(tokens));
            d_q.download(packed.data(), packed.size(), stream_);
            d_s.download(scale.data(), scale.size() * 4, stream_);
            fq::cpu::unpack_int4(q.data(), packed.data(), tokens, n);
            QuantCheck stats;
            SCOPED_TRACE(testing::Message() << "heads=" << sh[0] << " head_dim=" << sh[1] << " tokens=" << tokens);
            check_quantized(pr, q, scale, kClips[1][0], kClips[1][1], stats);
            EXPECT_LE(stats.ambiguous, stats.total / 50);
        }
    }
}

TEST_F(CudaKronQuant, QkHeadDimTransformMatchesTwinInPlaceToo) {
    // (tokens, heads, head_dim): full groups of 16 rows only, a tail only, both.
    const int shapes[][3] = {{4, 8, 128}, {5, 3, 64}, {37, 9, 64}, {1000, 2, 64}, {3, 32, 128}};
    uint32_t seed = 900;
    for (const auto &sh : shapes) {
        ASSERT_TRUE(fq::cuda::head_dim_transform_supported(sh[2]));
        // The twin sees every (token, head) row as a token of n1 = 1 row.
        const Problem pr = make_problem(1, sh[2], int64_t{sh[0]} * sh[1], false, true, seed++);
        for (bool in_place : {false, true}) {
            SCOPED_TRACE(testing::Message() << "tokens=" << sh[0] << " heads=" << sh[1] << " d=" << sh[2]
                                            << " in_place=" << in_place);
            DeviceBuffer d_x = upload(pr.x, stream_), d_p = upload(pr.p2, stream_);
            DeviceBuffer d_out_separate = in_place ? DeviceBuffer() : DeviceBuffer(pr.x.size() * 2);
            uint16_t *out = in_place ? d_x.as<uint16_t>() : d_out_separate.as<uint16_t>();
            fq::cuda::head_dim_transform(out, d_x.as<uint16_t>(), d_p.as<uint16_t>(), sh[0], sh[1], sh[2], stream_);
            std::vector<uint16_t> got(pr.x.size());
            (in_place ? d_x : d_out_separate).download(got.data(), got.size() * 2, stream_);
            check_f16(pr, got);
        }
    }
}

TEST(CudaKronQuantArgs, RejectsBadArgumentsBeforeTouchingTheDevice) {
    KronQuantArgs a;
    const uint16_t *fake = reinterpret_cast<const uint16_t *>(uintptr_t{0x1000});
    a.x_f16 = fake;
    a.p1_f16 = fake;
    a.p2_f16 = fake;
    a.tokens = 4;
    a.n1 = 64;
    a.n2 = 64;
    a.out[0].data = reinterpret_cast<void *>(uintptr_t{0x2000});
    a.out[0].scale = reinterpret_cast<float *>(uintptr_t{0x3000});
    const Stream stream;
    auto bad = a;
    bad.p1_f16 = bad.p2_f16 = nullptr;
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.n1 = 7, bad.n2 = 7;  // odd n
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.out[0].scale = nullptr;
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.out[0].clip_max = 0.0f;
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.n_outputs = 4;
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.format = KronOutFormat::kF16;
    bad.n_outputs = 2;
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.x_f16 = reinterpret_cast<const uint16_t *>(uintptr_t{0x1001});
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = a;
    bad.n1 = 128, bad.n2 = 224;  // 28672 = 128 x 224: no compiled shape
    expect_status([&] { fq::cuda::kron_quant(bad, stream); }, FQ_STATUS_UNSUPPORTED);
    bad = a;
    bad.tokens = 0;  // valid and empty: nothing happens
    EXPECT_NO_THROW(fq::cuda::kron_quant(bad, stream));
    EXPECT_TRUE(fq::cuda::kron_quant_supported(86, 128, true, true));
    EXPECT_FALSE(fq::cuda::kron_quant_supported(128, 224, true, true));
    EXPECT_FALSE(fq::cuda::head_dim_transform_supported(256));
}

}  // namespace

#endif  // FQ_HAVE_CUDA
