// The CPU twin of the 4-bit KV cache and its attention (native/src/cpu/kv4_attention_ref.*) checked on its own, so
// that test_cuda_kv4_attention.cpp compares the GPU against something known to be right. Runs in every build:
//  - the quantized row against fq::quant::act_quant_forward<float> (asym, 4 bits, LAC), the calibration code's fake
//    quantizer: the dequantized values agree bit for bit;
//  - the packed layout, the integer zero point and the all-zero row on hand-worked rows;
//  - attention against properties that do not need a second implementation: one visible key returns its V row, equal
//    keys give the mean of the V rows, keys after a query's position do not change its output, and the GQA mapping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/dequant_ref.h"
#include "cpu/kron_quant_ref.h"
#include "cpu/kv4_attention_ref.h"
#include "quant/fake_quant.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;

std::vector<uint16_t> random_f16(size_t count, double stddev, std::mt19937 &rng) {
    std::normal_distribution<double> dist(0.0, stddev);
    std::vector<uint16_t> v(count);
    for (uint16_t &x : v) x = f32_to_f16_bits(static_cast<float>(dist(rng)));
    return v;
}

TEST(Kv4Ref, QuantizeMatchesFakeQuantizer) {
    std::mt19937 rng(7);
    for (const int d : {64, 128}) {
        for (const float logit : {4.0f, 1.5f, 0.3f}) {
            const int64_t rows = 300;
            std::vector<uint16_t> x = random_f16(static_cast<size_t>(rows) * d, 1.7, rng);
            // A few rows of one sign only, and an all-zero row: the zero point then sits at an end of the range.
            for (int j = 0; j < d; ++j) {
                x[j] = f32_to_f16_bits(std::fabs(f16_bits_to_f32(x[j])));
                x[d + j] = f32_to_f16_bits(-std::fabs(f16_bits_to_f32(x[d + j])));
                x[2 * d + j] = 0;
            }
            std::vector<uint8_t> codes(static_cast<size_t>(rows) * d / 2);
            std::vector<float> params(2 * rows);
            const float clip_max = fq::cpu::lac_factor(logit), clip_min = fq::cpu::lac_factor(logit + 0.5f);
            fq::cpu::kv4_quantize_rows_ref(codes.data(), params.data(), x.data(), d, rows, d, clip_max, clip_min);
            std::vector<float> xf(x.size()), want(x.size());
            for (size_t i = 0; i < x.size(); ++i) xf[i] = f16_bits_to_f32(x[i]);
            const float lac[2] = {logit, logit + 0.5f};
            fq::quant::act_quant_forward<float>(want.data(), xf.data(), lac, rows, d, 4, /*sym=*/false);
            for (int64_t r = 0; r < rows; ++r) {
                EXPECT_EQ(params[2 * r + 1], std::nearbyint(params[2 * r + 1])) << "zero point is an integer";
                EXPECT_GE(params[2 * r + 1], 0.0f);
                EXPECT_LE(params[2 * r + 1], 15.0f);
                for (int j = 0; j < d; ++j)
                    ASSERT_EQ(fq::cpu::kv4_value(&codes[r * d / 2], &params[2 * r], j), want[r * d + j])
                        << "d=" << d << " logit=" << logit << " row " << r << " col " << j;
            }
        }
    }
}

TEST(Kv4Ref, HandWorkedRow) {
    // Row of 4: {-1, 0, 0.5, 2}, no clipping: s = fl(3/15) = 0.2f, z = rint(fl(1/s)) = 5; fl(0.5/s) = 2.5 exactly
    // (the quotient 2.49999996 rounds to it in FP32), so rint gives 2 (half to even):
    // q = clamp(rint(x/s) + 5, 0, 15) = {0, 5, 7, 15}.
    const float vals[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
    uint16_t x[4];
    for (int j = 0; j < 4; ++j) x[j] = f32_to_f16_bits(vals[j]);
    uint8_t codes[2];
    float params[2];
    fq::cpu::kv4_quantize_rows_ref(codes, params, x, 4, 1, 4, 1.0f, 1.0f);
    EXPECT_FLOAT_EQ(params[0], 3.0f / 15.0f);
    EXPECT_EQ(params[1], 5.0f);
    EXPECT_EQ(codes[0], 0x50);  // element 0 low nibble (0), element 1 high nibble (5)
    EXPECT_EQ(codes[1], 0xF7);  // element 2 (7) low, element 3 (15) high
}

TEST(Kv4Ref, ZeroRowGetsUnitRange) {
    uint16_t x[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint8_t codes[4];
    float params[2];
    fq::cpu::kv4_quantize_rows_ref(codes, params, x, 8, 1, 8, 1.0f, 1.0f);
    EXPECT_FLOAT_EQ(params[0], 2.0f / 15.0f);
    EXPECT_EQ(params[1], std::nearbyint(1.0f / (2.0f / 15.0f)));
    for (int j = 0; j < 8; ++j) EXPECT_EQ(fq::cpu::kv4_value(codes, params, j), 0.0f);
}

// A small F16 cache for the attention properties: B=1, Hk=2, C positions, d=8.
struct SmallCache {
    int kv_heads = 2, d = 8;
    int64_t cap;
    std::vector<uint16_t> k, v;
    explicit SmallCache(int64_t c) : cap(c), k(static_cast<size_t>(2 * c * 8)), v(static_cast<size_t>(2 * c * 8)) {}
    fq::cpu::KvCacheRef ref() const {
        fq::cpu::KvCacheRef r;
        r.int4 = false;
        r.k_f16 = k.data();
        r.v_f16 = v.data();
        r.batch = 1;
        r.kv_heads = kv_heads;
        r.head_dim = d;
        r.capacity = cap;
        return r;
    }
};

TEST(Kv4Ref, AttentionProperties) {
    std::mt19937 rng(3);
    const int64_t cap = 12;
    SmallCache c(cap);
    c.k = random_f16(c.k.size(), 1.0, rng);
    c.v = random_f16(c.v.size(), 1.0, rng);
    const int H = 4, d = 8;  // GQA group 2
    const int64_t S = cap;
    std::vector<uint16_t> q = random_f16(static_cast<size_t>(S) * H * d, 1.0, rng);
    // Heads 0 and 1 share KV head 0: the same query must give the same output.
    for (int64_t s = 0; s < S; ++s)
        for (int j = 0; j < d; ++j) q[s * H * d + d + j] = q[s * H * d + j];
    std::vector<double> out(static_cast<size_t>(S) * H * d);
    fq::cpu::attention_ref(out.data(), q.data(), H * d, c.ref(), S, 0, H, 0.3);
    for (int j = 0; j < d; ++j) {
        // Query 0 sees key 0 only.
        EXPECT_DOUBLE_EQ(out[j], f16_bits_to_f32(c.v[j]));
        EXPECT_DOUBLE_EQ(out[2 * d + j], f16_bits_to_f32(c.v[cap * d + j]));  // head 2 -> KV head 1
        for (int64_t s = 0; s < S; ++s) EXPECT_EQ(out[s * H * d + j], out[s * H * d + d + j]);
    }
    // Changing the keys/values after position 5 leaves queries 0..5 alone.
    SmallCache c2 = c;
    for (int g = 0; g < 2; ++g)
        for (int64_t t = 6; t < cap; ++t)
            for (int j = 0; j < d; ++j) {
                c2.k[(g * cap + t) * d + j] ^= 0x0400;
                c2.v[(g * cap + t) * d + j] ^= 0x0400;
            }
    std::vector<double> out2(out.size());
    fq::cpu::attention_ref(out2.data(), q.data(), H * d, c2.ref(), S, 0, H, 0.3);
    for (size_t i = 0; i < static_cast<size_t>(6) * H * d; ++i) EXPECT_EQ(out[i], out2[i]);
    bool any_diff = false;
    for (size_t i = static_cast<size_t>(6) * H * d; i < out.size(); ++i) any_diff |= out[i] != out2[i];
    EXPECT_TRUE(any_diff);
    // Equal keys: the output of the query at position p is the mean of V rows 0..p.
    SmallCache c3 = c;
    for (int64_t t = 1; t < cap; ++t)
        for (int j = 0; j < d; ++j) c3.k[t * d + j] = c3.k[j];
    fq::cpu::attention_ref(out2.data(), q.data(), H * d, c3.ref(), S, 0, H, 0.3);
    for (int64_t s = 0; s < S; ++s)
        for (int j = 0; j < d; ++j) {
            double mean = 0.0;
            for (int64_t t = 0; t <= s; ++t) mean += f16_bits_to_f32(c3.v[t * d + j]);
            EXPECT_NEAR(out2[s * H * d + j], mean / static_cast<double>(s + 1), 1e-12);
        }
    // A decode-style call (one query at position pos0) equals row pos0 of the full causal call.
    std::vector<double> one(static_cast<size_t>(H) * d);
    fq::cpu::attention_ref(one.data(), q.data() + 7 * H * d, H * d, c.ref(), 1, 7, H, 0.3);
    for (int i = 0; i < H * d; ++i) EXPECT_EQ(one[i], out[7 * H * d + i]);
}

}  // namespace
