// The CPU twins of the CUDA kernels (native/src/cpu/rmsnorm_ref.*, dequant_ref.*) checked on their own, so that
// test_cuda_kernels.cpp compares the GPU against something known to be right. Runs in every build, GPU or not:
//  - FP16 conversions against the closed-form value of every half and the nearest-even rule at every midpoint;
//  - RMSNorm on hand-worked rows whose results are exact (or one rounding away);
//  - dequantization on hand-built blocks, and bit for bit against the GGUF reader's own decoder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/rmsnorm_ref.h"
#include "io/gguf.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;

constexpr uint32_t kQ4_1 = static_cast<uint32_t>(fq::gguf::TensorType::Q4_1);
constexpr uint32_t kQ8_0 = static_cast<uint32_t>(fq::gguf::TensorType::Q8_0);

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
}

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

// The value of a half from the IEEE 754 definition, in double: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m.
double half_value(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return s ? -mag : mag;
}

TEST(CudaTwinsF16, DecodesEveryHalfToItsValue) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const int e = (h >> 10) & 0x1F;
        const float f = f16_bits_to_f32(static_cast<uint16_t>(h));
        if (e == 0x1F) {
            if (h & 0x3FF) EXPECT_TRUE(std::isnan(f)) << h;
            else EXPECT_EQ(f, (h & 0x8000) ? -INFINITY : INFINITY) << h;
            continue;
        }
        ASSERT_EQ(static_cast<double>(f), half_value(static_cast<uint16_t>(h))) << "half 0x" << std::hex << h;
        ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
    }
}

TEST(CudaTwinsF16, EncodesEveryHalfBackAndRoundsMidpointsToEven) {
    for (uint32_t h = 0; h < 0x7C00; ++h) {  // every finite non-negative half
        const double v = half_value(static_cast<uint16_t>(h));
        ASSERT_EQ(f32_to_f16_bits(static_cast<float>(v)), h);
        ASSERT_EQ(f32_to_f16_bits(static_cast<float>(-v)), h | 0x8000u);
        // The midpoint to the next half needs 12 significant bits: exact in FP32. Ties go to the even code;
        // anything off the midpoint goes to the nearer one. Above 65504 the next "half" is infinity (0x7C00).
        const double next = h + 1 < 0x7C00 ? half_value(static_cast<uint16_t>(h + 1)) : 65536.0;
        const float mid = static_cast<float>((v + next) / 2);
        ASSERT_EQ(static_cast<double>(mid), (v + next) / 2);
        ASSERT_EQ(f32_to_f16_bits(mid), (h & 1u) ? h + 1 : h) << "midpoint above half 0x" << std::hex << h;
        ASSERT_EQ(f32_to_f16_bits(std::nextafter(mid, 0.0f)), h) << h;
        ASSERT_EQ(f32_to_f16_bits(std::nextafter(mid, INFINITY)), h + 1) << h;
    }
}

TEST(CudaTwinsF16, SpecialValues) {
    EXPECT_EQ(f32_to_f16_bits(1e9f), 0x7C00u);
    EXPECT_EQ(f32_to_f16_bits(-1e9f), 0xFC00u);
    EXPECT_EQ(f32_to_f16_bits(INFINITY), 0x7C00u);
    EXPECT_EQ(f32_to_f16_bits(1e-30f), 0x0000u);
    EXPECT_EQ(f32_to_f16_bits(-1e-30f), 0x8000u);
    EXPECT_EQ(f32_to_f16_bits(-0.0f), 0x8000u);
    const uint16_t nan = f32_to_f16_bits(NAN);
    EXPECT_EQ(nan & 0x7C00u, 0x7C00u);
    EXPECT_NE(nan & 0x03FFu, 0u);
}

TEST(CudaTwinsRmsNorm, HandWorkedRows) {
    // eps = 3.5 makes mean(x^2) + eps a perfect square: row 0: (9 + 16) / 2 + 3.5 = 16, rstd 1/4 (exact);
    // row 1: (1 + 64) / 2 + 3.5 = 36, rstd 1/6 (one rounding).
    const float inp[4] = {3.0f, 4.0f, 1.0f, -8.0f};
    const float weight[2] = {2.0f, -1.0f};
    float out[4], rstd[2];
    fq::cpu::rmsnorm_forward(out, rstd, inp, weight, 2, 2, 3.5f);
    EXPECT_EQ(rstd[0], 0.25f);
    EXPECT_EQ(out[0], 1.5f);
    EXPECT_EQ(out[1], -1.0f);
    EXPECT_EQ(rstd[1], static_cast<float>(1.0 / 6.0));
    EXPECT_EQ(out[2], static_cast<float>(2.0 / 6.0));
    EXPECT_EQ(out[3], static_cast<float>(8.0 / 6.0));

    float in_place[4] = {3.0f, 4.0f, 1.0f, -8.0f};
    fq::cpu::rmsnorm_forward(in_place, nullptr, in_place, weight, 2, 2, 3.5f);
    EXPECT_EQ(std::memcmp(in_place, out, sizeof(out)), 0);

    expect_status([&] { fq::cpu::rmsnorm_forward(out, rstd, inp, weight, 1, 0, 1e-5f); }, FQ_STATUS_INVALID_ARGUMENT);
}

TEST(CudaTwinsDequant, HandBuiltQ8_0) {
    // d = 0.5 (half 0x3800), q[j] = j - 16: value j is (j - 16) / 2, exact.
    std::vector<uint8_t> blk(34);
    blk[0] = 0x00;
    blk[1] = 0x38;
    for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    float out[32];
    uint16_t out_f16[32];
    fq::cpu::dequantize_rows_f32(out, 32, blk.data(), kQ8_0, 1, 32);
    fq::cpu::dequantize_rows_f16(out_f16, 32, blk.data(), kQ8_0, 1, 32);
    for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(out[j], (j - 16) * 0.5f) << j;
        EXPECT_EQ(f16_bits_to_f32(out_f16[j]), (j - 16) * 0.5f) << j;
    }
}

TEST(CudaTwinsDequant, HandBuiltQ4_1NibbleOrderAndRowPadding) {
    // Two rows of one block each, written into rows of 40 floats. d = 0.25 (0x3400), m = -1 (0xBC00); byte j
    // holds j in its low nibble (element j) and 15 - j in its high nibble (element j + 16).
    std::vector<uint8_t> blocks(2 * 20);
    for (int r = 0; r < 2; ++r) {
        uint8_t *b = blocks.data() + 20 * r;
        b[0] = 0x00, b[1] = 0x34, b[2] = 0x00, b[3] = 0xBC;
        for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    }
    std::vector<float> out(2 * 40, 123.0f);
    fq::cpu::dequantize_rows_f32(out.data(), 40, blocks.data(), kQ4_1, 2, 32);
    for (int r = 0; r < 2; ++r) {
        for (int j = 0; j < 16; ++j) {
            EXPECT_EQ(out[40 * r + j], j * 0.25f - 1.0f) << r << "," << j;
            EXPECT_EQ(out[40 * r + j + 16], (15 - j) * 0.25f - 1.0f) << r << "," << j;
        }
        for (int c = 32; c < 40; ++c) EXPECT_EQ(out[40 * r + c], 123.0f) << "padding written at " << r << "," << c;
    }
}

TEST(CudaTwinsDequant, MatchesTheGgufReaderBitForBit) {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
    const int64_t rows = 5, cols = 256;
    for (uint32_t type : {kQ8_0, kQ4_1}) {
        const int64_t block_bytes = type == kQ8_0 ? 34 : 20;
        std::vector<uint8_t> blocks(static_cast<size_t>(rows * cols / 32 * block_bytes));
        for (auto &b : blocks) b = static_cast<uint8_t>(byte(rng));
        for (size_t off = 0; off < blocks.size(); off += static_cast<size_t>(block_bytes)) {
            // Finite scales (random bytes could be NaN/Inf halves); some subnormal ones.
            for (int k = 0; k < (type == kQ8_0 ? 1 : 2); ++k) {
                float s = scale(rng);
                if (off % 7 == 0) s *= 1e-3f;  // below 2^-14: a subnormal half
                const uint16_t h = f32_to_f16_bits(s);
                blocks[off + 2 * k] = static_cast<uint8_t>(h & 0xFF);
                blocks[off + 2 * k + 1] = static_cast<uint8_t>(h >> 8);
            }
        }
        std::vector<float> ours(static_cast<size_t>(rows * cols)), reader(ours.size());
        fq::cpu::dequantize_rows_f32(ours.data(), cols, blocks.data(), type, rows, cols);
        for (int64_t r = 0; r < rows; ++r) {
            fq::gguf::dequantize_row(type, blocks.data() + r * (cols / 32) * block_bytes, reader.data() + r * cols,
                                     cols);
        }
        for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(bits_of(ours[i]), bits_of(reader[i])) << type << ":" << i;
    }
}

TEST(CudaTwinsDequant, RejectsBadShapesAndTypes) {
    std::vector<uint8_t> blocks(64);
    float out[64];
    expect_status([&] { fq::cpu::dequantize_rows_f32(out, 33, blocks.data(), kQ8_0, 1, 33); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::dequantize_rows_f32(out, 16, blocks.data(), kQ8_0, 1, 32); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cpu::dequantize_rows_f32(out, 32, blocks.data(), 2 /* Q4_0 */, 1, 32); },
                  FQ_STATUS_UNSUPPORTED);
}

}  // namespace
