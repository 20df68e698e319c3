// The CPU twin of the fused transform + quantization kernel (native/src/cpu/kron_quant_ref.*) checked on its own,
// so that test_cuda_kron_quant.cpp compares the GPU against something known to be right. Runs in every build:
//  - round_to_f16 against the FP16 conversion of dequant_ref (an independent bit-level implementation);
//  - the transform against fq::quant::kron_transform_forward<double> (the calibration code's own Kronecker product),
//    for every factor pair the supported models use, with either factor the identity, and with the FP16 rounding of
//    the intermediate shown to be a no-op where Z is an FP16 value and to happen where it is not;
//  - the quantization against fq::quant::act_quant_forward<float> (sym, 4 bits, LAC), bit for bit;
//  - the packed layout and LAC arithmetic on hand-worked tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <random>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/kron_quant_ref.h"
#include "cpu/w4a4_gemm_ref.h"
#include "quant/fake_quant.h"
#include "quant/kron.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

std::vector<uint16_t> random_f16(size_t count, double stddev, std::mt19937 &rng) {
    std::normal_distribution<double> dist(0.0, stddev);
    std::vector<uint16_t> out(count);
    for (auto &h : out) h = f32_to_f16_bits(static_cast<float>(dist(rng)));
    return out;
}

std::vector<double> to_double(const std::vector<uint16_t> &h) {
    std::vector<double> out(h.size());
    for (size_t i = 0; i < h.size(); ++i) out[i] = f16_bits_to_f32(h[i]);
    return out;
}

// Hidden and FFN widths of SmolLM2-135M, Qwen2.5-0.5B/7B, LLaMA-2-7B and LLaMA-3-8B.
const int64_t kModelWidths[] = {576, 1536, 896, 4864, 3584, 18944, 4096, 11008, 14336};

TEST(KronQuantRef, RoundToF16MatchesTheBitConversion) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> mant(1.0f, 2.0f);
    std::uniform_int_distribution<int> expo(-30, 17);
    for (int k = 0; k < 200000; ++k) {
        const float v = std::ldexp(mant(rng), expo(rng)) * (k % 2 ? -1.0f : 1.0f);
        const double r = fq::cpu::round_to_f16(v);
        const float ref = f16_bits_to_f32(f32_to_f16_bits(v));
        ASSERT_EQ(r, static_cast<double>(ref)) << "v = " << v;
    }
    // Midpoints tie to even; the top of the range and beyond.
    EXPECT_EQ(fq::cpu::round_to_f16(1.0 + std::ldexp(1.0, -11)), 1.0);
    EXPECT_EQ(fq::cpu::round_to_f16(1.0 + 3 * std::ldexp(1.0, -11)), 1.0 + std::ldexp(1.0, -9));
    EXPECT_EQ(fq::cpu::round_to_f16(65519.99), 65504.0);
    EXPECT_TRUE(std::isinf(fq::cpu::round_to_f16(65520.0)));
    EXPECT_EQ(fq::cpu::round_to_f16(std::ldexp(1.0, -25)), 0.0);                  // tie to even (0)
    EXPECT_EQ(fq::cpu::round_to_f16(std::ldexp(3.0, -25)), std::ldexp(1.0, -23));  // tie to even (2 * 2^-24)
}

TEST(KronQuantRef, ModelWidthsDecomposeAsExpected) {
    const int expected[][2] = {{24, 24}, {32, 48}, {28, 32}, {64, 76}, {56, 64},
                               {128, 148}, {64, 64}, {86, 128}, {112, 128}};
    for (size_t k = 0; k < std::size(kModelWidths); ++k) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(kModelWidths[k]);
        EXPECT_EQ(d.n1, expected[k][0]) << kModelWidths[k];
        EXPECT_EQ(d.n2, expected[k][1]) << kModelWidths[k];
    }
}

// Exact transform (round_mid = false) against the calibration code's kron_transform_forward<double>.
void check_transform_against_quant(int n1, int n2, bool has_p1, bool has_p2, int64_t tokens, uint32_t seed) {
    SCOPED_TRACE(testing::Message() << "n1=" << n1 << " n2=" << n2 << " p1=" << has_p1 << " p2=" << has_p2);
    std::mt19937 rng(seed);
    const int64_t n = int64_t{n1} * n2;
    const std::vector<uint16_t> x = random_f16(static_cast<size_t>(tokens * n), 1.0, rng);
    const std::vector<uint16_t> p1 = random_f16(static_cast<size_t>(n1) * n1, 1.0 / std::sqrt(n1), rng);
    const std::vector<uint16_t> p2 = random_f16(static_cast<size_t>(n2) * n2, 1.0 / std::sqrt(n2), rng);
    std::vector<double> y(x.size()), z(x.size()), ref(x.size());
    fq::cpu::kron_transform_ref(y.data(), z.data(), x.data(), has_p1 ? p1.data() : nullptr,
                                has_p2 ? p2.data() : nullptr, tokens, n1, n2, /*round_mid=*/false);
    const std::vector<double> xd = to_double(x), p1d = to_double(p1), p2d = to_double(p2);
    fq::quant::kron_transform_forward<double>(ref.data(), xd.data(), has_p1 ? p1d.data() : nullptr,
                                              has_p2 ? p2d.data() : nullptr, tokens, n1, n2);
    // Both sum exactly representable products in double, in different orders: each is within
    // (n1 + n2) 2^-53 sum|terms| of exact, and sum|terms| <= |P1|^T |X| |P2| <= 8 sqrt(n1 n2) for this data.
    const double tol = 2.0 * (n1 + n2) * std::ldexp(1.0, -53) * 8.0 * std::sqrt(static_cast<double>(n));
    for (size_t e = 0; e < y.size(); ++e) ASSERT_NEAR(y[e], ref[e], tol) << "element " << e;
    if (!has_p1) {
        for (size_t e = 0; e < y.size(); ++e) ASSERT_EQ(z[e], y[e]);
    }
}

TEST(KronQuantRef, TransformMatchesKronTransformForward) {
    uint32_t seed = 1;
    for (int64_t width : kModelWidths) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
        check_transform_against_quant(d.n1, d.n2, true, true, 2, seed++);
    }
    // The attention-side forms: P_h over the heads (P2 the identity), P_k per head (P1 the identity).
    check_transform_against_quant(9, 64, true, false, 3, seed++);
    check_transform_against_quant(32, 128, true, false, 2, seed++);
    check_transform_against_quant(16, 128, false, true, 2, seed++);
    check_transform_against_quant(5, 64, false, true, 3, seed++);
}

TEST(KronQuantRef, MidRoundingIsANoOpOnFp16ValuesAndHappensOtherwise) {
    // X and P2 with small dyadic entries: every Z = X P2 is a short dyadic sum, exact in FP16, so the twin with
    // its FP16 rounding must equal the exact transform.
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> small(-4, 4);
    const int n1 = 8, n2 = 8;
    std::vector<uint16_t> x(64), p1(64), p2(64);
    for (auto &h : x) h = f32_to_f16_bits(static_cast<float>(small(rng)) * 0.5f);
    for (auto &h : p2) h = f32_to_f16_bits(static_cast<float>(small(rng)) * 0.25f);
    for (auto &h : p1) h = f32_to_f16_bits(static_cast<float>(small(rng)) * 0.125f);
    std::vector<double> y(64), exact(64);
    fq::cpu::kron_transform_ref(y.data(), nullptr, x.data(), p1.data(), p2.data(), 1, n1, n2, true);
    const std::vector<double> xd = to_double(x), p1d = to_double(p1), p2d = to_double(p2);
    fq::quant::kron_transform_forward<double>(exact.data(), xd.data(), p1d.data(), p2d.data(), 1, n1, n2);
    for (int e = 0; e < 64; ++e) EXPECT_EQ(y[e], exact[e]) << e;

    // n1 = 1, n2 = 2, P2 = (1 + 2^-10) I, X = (1 + 2^-10, 0), P1 = 1: Z = 1 + 2^-9 + 2^-20, whose nearest FP16 is
    // 1 + 2^-9, so Y = 1 + 2^-9 exactly with the rounding and Z without.
    const uint16_t a = f32_to_f16_bits(1.0f + std::ldexp(1.0f, -10)), one = f32_to_f16_bits(1.0f);
    const uint16_t xs[2] = {a, 0}, p2s[4] = {a, 0, 0, a}, p1s[1] = {one};
    double yr[2], yx[2], z[2];
    fq::cpu::kron_transform_ref(yr, z, xs, p1s, p2s, 1, 1, 2, true);
    fq::cpu::kron_transform_ref(yx, nullptr, xs, p1s, p2s, 1, 1, 2, false);
    EXPECT_EQ(z[0], 1.0 + std::ldexp(1.0, -9) + std::ldexp(1.0, -20));
    EXPECT_EQ(yx[0], z[0]);
    EXPECT_EQ(yr[0], 1.0 + std::ldexp(1.0, -9));
    EXPECT_EQ(yr[1], 0.0);
    // With one factor the identity nothing is rounded.
    fq::cpu::kron_transform_ref(yr, nullptr, xs, nullptr, p2s, 1, 1, 2, true);
    EXPECT_EQ(yr[0], z[0]);
}

TEST(KronQuantRef, QuantizationMatchesActQuantForwardBitForBit) {
    std::mt19937 rng(11);
    const float logits[][2] = {{4.0f, 4.0f}, {1.0f, 2.5f}, {-1.0f, 6.0f}, {30.0f, 30.0f}};
    for (int64_t width : {576, 4096, 11008}) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(width);
        const int64_t tokens = 4, n = width;
        const std::vector<uint16_t> x = random_f16(static_cast<size_t>(tokens * n), 1.0, rng);
        std::vector<uint16_t> xz = x;
        for (int64_t e = 0; e < n; ++e) xz[static_cast<size_t>(n + e)] = 0;  // token 1 all zero: s = 1
        const std::vector<uint16_t> p1 = random_f16(static_cast<size_t>(d.n1) * d.n1, 1.0 / std::sqrt(d.n1), rng);
        const std::vector<uint16_t> p2 = random_f16(static_cast<size_t>(d.n2) * d.n2, 1.0 / std::sqrt(d.n2), rng);
        std::vector<double> y(xz.size());
        fq::cpu::kron_transform_ref(y.data(), nullptr, xz.data(), p1.data(), p2.data(), tokens, d.n1, d.n2);
        std::vector<float> yf(y.size()), ref(y.size());
        for (size_t e = 0; e < y.size(); ++e) yf[e] = static_cast<float>(y[e]);
        for (const auto &lg : logits) {
            SCOPED_TRACE(testing::Message() << "width=" << width << " logits=" << lg[0] << "," << lg[1]);
            std::vector<int8_t> q(y.size());
            std::vector<float> scale(static_cast<size_t>(tokens));
            std::vector<double> v(y.size());
            fq::cpu::act_quant_int4_ref(q.data(), scale.data(), v.data(), y.data(), tokens, n,
                                        fq::cpu::lac_factor(lg[0]), fq::cpu::lac_factor(lg[1]));
            fq::quant::act_quant_forward<float>(ref.data(), yf.data(), lg, tokens, n, 4, true);
            EXPECT_EQ(scale[1], 1.0f);
            for (size_t e = 0; e < y.size(); ++e) {
                const size_t t = e / static_cast<size_t>(n);
                ASSERT_EQ(scale[t] * static_cast<float>(q[e]), ref[e]) << "element " << e;
                ASSERT_NEAR(v[e], y[e] / scale[t], 1e-12 * std::fabs(v[e]));
            }
        }
    }
}

TEST(KronQuantRef, HandWorkedTokens) {
    // n1 = 1, n2 = 4, P1 = 1, P2 = I: Y = X = (7, -3.5, 0.5, 1.5).
    const uint16_t one = f32_to_f16_bits(1.0f), zero = 0;
    const uint16_t p1[1] = {one}, p2[16] = {one, zero, zero, zero, zero, one, zero, zero,
                                            zero, zero, one, zero, zero, zero, zero, one};
    const uint16_t x[4] = {f32_to_f16_bits(7.0f), f32_to_f16_bits(-3.5f), f32_to_f16_bits(0.5f),
                           f32_to_f16_bits(1.5f)};
    uint8_t packed[2];
    float scale = 0.0f;
    // No clipping: s = 7 / 7 = 1, q = (7, -4, 0, 2) (half to even), bytes 0xC7 and 0x20.
    fq::cpu::kron_quant_ref(packed, &scale, x, p1, p2, 1, 1, 4, 1.0f, 1.0f);
    EXPECT_EQ(scale, 1.0f);
    EXPECT_EQ(packed[0], 0xC7);
    EXPECT_EQ(packed[1], 0x20);
    // clip_max = 0.5: xmax = 3.5, xmin = -3.5, s = 0.5, q = (14 -> 7, -7, 1, 3): bytes 0x97 and 0x31.
    fq::cpu::kron_quant_ref(packed, &scale, x, p1, p2, 1, 1, 4, 0.5f, 1.0f);
    EXPECT_EQ(scale, 0.5f);
    EXPECT_EQ(packed[0], 0x97);
    EXPECT_EQ(packed[1], 0x31);
    // clip_min = 0.25 (xmin = -0.875) and clip_max = 0.1 (xmax = 0.7): s = 0.125, q = (56 -> 7, -28 -> -8, 4, 12
    // -> 7): bytes 0x87 and 0x74.
    fq::cpu::kron_quant_ref(packed, &scale, x, p1, p2, 1, 1, 4, 0.1f, 0.25f);
    EXPECT_EQ(scale, 0.875f / 7.0f);
    EXPECT_EQ(packed[0], 0x87);
    EXPECT_EQ(packed[1], 0x74);
    uint16_t f16[4];
    fq::cpu::kron_f16_ref(f16, x, nullptr, p2, 1, 1, 4);
    for (int e = 0; e < 4; ++e) EXPECT_EQ(f16[e], x[e]);
    EXPECT_FLOAT_EQ(fq::cpu::lac_factor(4.0f), 0.98201379f);
    EXPECT_EQ(fq::cpu::lac_factor(0.0f), 0.5f);
}

TEST(KronQuantRef, PackedOutputIsTheQuantizedValues) {
    std::mt19937 rng(5);
    const int n1 = 28, n2 = 32;
    const int64_t tokens = 3, n = n1 * n2;
    const std::vector<uint16_t> x = random_f16(static_cast<size_t>(tokens * n), 2.0, rng);
    const std::vector<uint16_t> p1 = random_f16(n1 * n1, 0.2, rng), p2 = random_f16(n2 * n2, 0.2, rng);
    std::vector<uint8_t> packed(static_cast<size_t>(tokens * n / 2));
    std::vector<float> scale(tokens), scale_ref(tokens);
    fq::cpu::kron_quant_ref(packed.data(), scale.data(), x.data(), p1.data(), p2.data(), tokens, n1, n2, 0.9f, 0.8f);
    std::vector<double> y(static_cast<size_t>(tokens * n));
    std::vector<int8_t> q(y.size()), unpacked(y.size());
    fq::cpu::kron_transform_ref(y.data(), nullptr, x.data(), p1.data(), p2.data(), tokens, n1, n2);
    fq::cpu::act_quant_int4_ref(q.data(), scale_ref.data(), nullptr, y.data(), tokens, n, 0.9f, 0.8f);
    fq::cpu::unpack_int4(unpacked.data(), packed.data(), tokens, n);
    EXPECT_EQ(unpacked, q);
    EXPECT_EQ(scale, scale_ref);
}

TEST(KronQuantRef, RejectsBadArguments) {
    const uint16_t x[4] = {0, 0, 0, 0}, p[4] = {0, 0, 0, 0};
    double y[4];
    uint8_t packed[2];
    float scale;
    expect_status([&] { fq::cpu::kron_transform_ref(y, nullptr, x, nullptr, nullptr, 1, 2, 2); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::kron_transform_ref(y, nullptr, x, p, p, 1, 0, 2); }, FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::kron_quant_ref(packed, &scale, x, p, nullptr, 1, 1, 3, 1.0f, 1.0f); },
                  FQ_STATUS_INVALID_ARGUMENT);  // n = 3 is odd
    expect_status([&] { fq::cpu::kron_quant_ref(nullptr, &scale, x, p, p, 1, 2, 2, 1.0f, 1.0f); },
                  FQ_STATUS_INVALID_ARGUMENT);
}

}  // namespace
