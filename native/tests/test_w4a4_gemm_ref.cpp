// The INT4 packing helpers and the CPU twin of the W4A4 GEMM (native/src/cpu/w4a4_gemm_ref.h), against references
// computed independently here: hand-written byte patterns, int64 dot products of the unpacked values, and the
// epilogue emulated in double where that emulation is exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/w4a4_gemm_ref.h"

namespace {

template <class Fn> void expect_status(Fn &&fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

std::vector<int8_t> random_int4(size_t n, std::mt19937 &rng) {
    std::uniform_int_distribution<int> dist(-8, 7);
    std::vector<int8_t> v(n);
    for (auto &x : v) x = static_cast<int8_t>(dist(rng));
    return v;
}

TEST(W4A4Pack, NibbleOrderIsLowThenHigh) {
    // Element 2j in the low nibble of byte j, 2j+1 in the high nibble, two's complement.
    const int8_t values[8] = {1, -1, -8, 7, 0, -2, 5, 0};
    uint8_t packed[4];
    fq::cpu::pack_int4(packed, values, 1, 8);
    EXPECT_EQ(packed[0], 0xF1);
    EXPECT_EQ(packed[1], 0x78);
    EXPECT_EQ(packed[2], 0xE0);
    EXPECT_EQ(packed[3], 0x05);
}

TEST(W4A4Pack, EveryByteRoundTrips) {
    std::vector<uint8_t> bytes(256), again(256);
    for (int i = 0; i < 256; ++i) bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
    std::vector<int8_t> values(512);
    fq::cpu::unpack_int4(values.data(), bytes.data(), 1, 512);
    for (int i = 0; i < 256; ++i) {
        const int lo = i & 0xF, hi = i >> 4;
        ASSERT_EQ(values[static_cast<size_t>(2 * i)], lo < 8 ? lo : lo - 16) << "byte " << i;
        ASSERT_EQ(values[static_cast<size_t>(2 * i + 1)], hi < 8 ? hi : hi - 16) << "byte " << i;
    }
    fq::cpu::pack_int4(again.data(), values.data(), 1, 512);
    EXPECT_EQ(again, bytes);
}

TEST(W4A4Pack, RandomMatrixRoundTrips) {
    std::mt19937 rng(7);
    const int64_t rows = 13, cols = 192;
    const std::vector<int8_t> values = random_int4(static_cast<size_t>(rows * cols), rng);
    std::vector<uint8_t> packed(static_cast<size_t>(rows * cols / 2));
    std::vector<int8_t> back(values.size());
    fq::cpu::pack_int4(packed.data(), values.data(), rows, cols);
    fq::cpu::unpack_int4(back.data(), packed.data(), rows, cols);
    EXPECT_EQ(back, values);
}

TEST(W4A4Pack, RejectsOutOfRangeValuesAndOddColumns) {
    int8_t values[4] = {0, 8, 0, 0};
    uint8_t packed[2];
    expect_status([&] { fq::cpu::pack_int4(packed, values, 1, 4); }, FQ_STATUS_INVALID_ARGUMENT);
    values[1] = -9;
    expect_status([&] { fq::cpu::pack_int4(packed, values, 1, 4); }, FQ_STATUS_INVALID_ARGUMENT);
    values[1] = 0;
    expect_status([&] { fq::cpu::pack_int4(packed, values, 1, 3); }, FQ_STATUS_INVALID_ARGUMENT);
    int8_t out[4];
    expect_status([&] { fq::cpu::unpack_int4(out, packed, 1, 3); }, FQ_STATUS_INVALID_ARGUMENT);
}

TEST(W4A4Epilogue, HandComputedValues) {
    // 3 * 0.5 = 1.5; 1.5 * 0.25 + 1 = 1.375 = 0x3D80 in FP16: every step exact.
    EXPECT_EQ(fq::cpu::w4a4_epilogue(3, 0.5f, 0.25f, 1.0f), 0x3D80);
    // -64 * 1 * 1 + 0 = -64 = 0xD400.
    EXPECT_EQ(fq::cpu::w4a4_epilogue(-64, 1.0f, 1.0f, 0.0f), 0xD400);
    // 2049 is not an FP16 value: round to nearest-even gives 2048 (0x6800); 2051 gives 2052 (0x6802).
    EXPECT_EQ(fq::cpu::w4a4_epilogue(2049, 1.0f, 1.0f, 0.0f), 0x6800);
    EXPECT_EQ(fq::cpu::w4a4_epilogue(2051, 1.0f, 1.0f, 0.0f), 0x6802);
    // Overflow of the FP16 range goes to infinity.
    EXPECT_EQ(fq::cpu::w4a4_epilogue(65536, 1.0f, 1.0f, 0.0f), 0x7C00);
    // The fused multiply-add rounds once: with t = b = 1 + 2^-12, t * b = 1 + 2^-11 + 2^-24 exactly, and adding
    // -(1 + 2^-11) leaves 2^-24, the smallest FP16 subnormal (0x0001). A separate fp32 multiply would round the
    // product to 1 + 2^-11 (a tie, to even) and give 0.
    const float one_plus = 1.0f + std::ldexp(1.0f, -12);
    EXPECT_EQ(fq::cpu::w4a4_epilogue(1, one_plus, one_plus, -(1.0f + std::ldexp(1.0f, -11))), 0x0001);
}

TEST(W4A4Epilogue, MatchesExactDoubleEmulationWithoutBias) {
    // Without bias every step is a product of two 24-bit significands, exact in double, so rounding the double
    // product to float is the fp32 multiply; the FP16 rounding then starts from the same float.
    std::mt19937 rng(11);
    std::uniform_int_distribution<int32_t> acc_dist(-(1 << 20), 1 << 20);
    std::uniform_real_distribution<float> scale_dist(1e-6f, 0.05f);
    for (int i = 0; i < 20000; ++i) {
        const int32_t acc = acc_dist(rng);
        const float as = scale_dist(rng), bs = scale_dist(rng) * 10.0f;
        const float t = static_cast<float>(static_cast<double>(acc) * static_cast<double>(as));
        const float y = static_cast<float>(static_cast<double>(t) * static_cast<double>(bs));
        ASSERT_EQ(fq::cpu::w4a4_epilogue(acc, as, bs, 0.0f), fq::cpu::f32_to_f16_bits(y))
            << "acc=" << acc << " a_scale=" << as << " b_scale=" << bs;
    }
}

struct GemmCase {
    int64_t m, n, k;
};

TEST(W4A4GemmRef, AccumulatorsMatchInt64DotProducts) {
    std::mt19937 rng(3);
    for (const GemmCase &c : {GemmCase{1, 8, 64}, GemmCase{7, 24, 128}, GemmCase{33, 40, 576}}) {
        SCOPED_TRACE(testing::Message() << "m=" << c.m << " n=" << c.n << " k=" << c.k);
        const std::vector<int8_t> a = random_int4(static_cast<size_t>(c.m * c.k), rng);
        const std::vector<int8_t> b = random_int4(static_cast<size_t>(c.n * c.k), rng);
        std::vector<uint8_t> ap(a.size() / 2), bp(b.size() / 2);
        fq::cpu::pack_int4(ap.data(), a.data(), c.m, c.k);
        fq::cpu::pack_int4(bp.data(), b.data(), c.n, c.k);
        std::vector<int32_t> acc(static_cast<size_t>(c.m * c.n));
        fq::cpu::w4a4_gemm_s32(acc.data(), ap.data(), bp.data(), c.m, c.n, c.k);
        for (int64_t i = 0; i < c.m; ++i) {
            for (int64_t j = 0; j < c.n; ++j) {
                int64_t ref = 0;
                for (int64_t p = 0; p < c.k; ++p)
                    ref += int64_t{a[static_cast<size_t>(i * c.k + p)]} * b[static_cast<size_t>(j * c.k + p)];
                ASSERT_EQ(acc[static_cast<size_t>(i * c.n + j)], ref) << "at (" << i << ", " << j << ")";
            }
        }
    }
}

TEST(W4A4GemmRef, ExtremeValuesReachTheBound) {
    // All -8: every product is 64, so acc = 64 k, the largest magnitude the format allows.
    const int64_t m = 2, n = 8, k = 4096;
    std::vector<uint8_t> ap(static_cast<size_t>(m * k / 2), 0x88), bp(static_cast<size_t>(n * k / 2), 0x88);
    std::vector<int32_t> acc(static_cast<size_t>(m * n));
    fq::cpu::w4a4_gemm_s32(acc.data(), ap.data(), bp.data(), m, n, k);
    for (int32_t v : acc) ASSERT_EQ(v, 64 * k);
}

TEST(W4A4GemmRef, OutputIsTheEpilogueOfTheAccumulators) {
    std::mt19937 rng(5);
    const int64_t m = 5, n = 16, k = 256;
    const std::vector<int8_t> a = random_int4(static_cast<size_t>(m * k), rng);
    const std::vector<int8_t> b = random_int4(static_cast<size_t>(n * k), rng);
    std::vector<uint8_t> ap(a.size() / 2), bp(b.size() / 2);
    fq::cpu::pack_int4(ap.data(), a.data(), m, k);
    fq::cpu::pack_int4(bp.data(), b.data(), n, k);
    std::uniform_real_distribution<float> u(0.001f, 0.1f);
    std::vector<float> as(static_cast<size_t>(m)), bs(static_cast<size_t>(n)), bias(static_cast<size_t>(n));
    for (auto &x : as) x = u(rng);
    for (auto &x : bs) x = u(rng);
    for (auto &x : bias) x = u(rng) - 0.05f;
    std::vector<uint16_t> d(static_cast<size_t>(m * n)), d_nobias(d.size());
    fq::cpu::w4a4_gemm(d.data(), ap.data(), bp.data(), as.data(), bs.data(), bias.data(), m, n, k);
    fq::cpu::w4a4_gemm(d_nobias.data(), ap.data(), bp.data(), as.data(), bs.data(), nullptr, m, n, k);
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            int32_t ref = 0;
            for (int64_t p = 0; p < k; ++p)
                ref += a[static_cast<size_t>(i * k + p)] * b[static_cast<size_t>(j * k + p)];
            const size_t o = static_cast<size_t>(i * n + j);
            ASSERT_EQ(d[o], fq::cpu::w4a4_epilogue(ref, as[static_cast<size_t>(i)], bs[static_cast<size_t>(j)],
                                                   bias[static_cast<size_t>(j)]));
            ASSERT_EQ(d_nobias[o],
                      fq::cpu::w4a4_epilogue(ref, as[static_cast<size_t>(i)], bs[static_cast<size_t>(j)], 0.0f));
        }
    }
}

TEST(W4A4GemmRef, RejectsBadShapes) {
    uint8_t a[64] = {}, b[64] = {};
    int32_t acc[4];
    expect_status([&] { fq::cpu::w4a4_gemm_s32(acc, a, b, 1, 1, 3); }, FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::w4a4_gemm_s32(acc, a, b, 1, 1, (int64_t{1} << 18) + 2); }, FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::w4a4_gemm_s32(acc, a, b, -1, 1, 64); }, FQ_STATUS_INVALID_ARGUMENT);
}

}  // namespace
