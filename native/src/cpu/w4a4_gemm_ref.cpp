// The CPU twin of the W4A4 GEMM (see w4a4_gemm_ref.h for the formats and the epilogue order). Written from the
// contract alone: unpack both operands to int8 once, take int32 dot products, apply the epilogue per element.
#include "cpu/w4a4_gemm_ref.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"

namespace fq::cpu {

namespace {

constexpr int64_t kMaxK = int64_t{1} << 18;  // 64 * 2^18 = 2^24: int32 exact and fp32(acc) exact

void check_shape(const char *what, int64_t rows, int64_t cols) {
    FQ_CHECK(rows >= 0 && cols >= 0 && cols % 2 == 0, FQ_STATUS_INVALID_ARGUMENT,
             "%s: bad shape (%lld, %lld): cols must be even", what, static_cast<long long>(rows),
             static_cast<long long>(cols));
}

inline int8_t nibble_to_int8(unsigned nibble) {
    return static_cast<int8_t>(static_cast<int>(nibble & 0xFu) - ((nibble & 0x8u) ? 16 : 0));
}

}  // namespace

void pack_int4(uint8_t *packed, const int8_t *values, int64_t rows, int64_t cols) {
    check_shape("pack_int4", rows, cols);
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; ++i) {
        FQ_CHECK(values[i] >= -8 && values[i] <= 7, FQ_STATUS_INVALID_ARGUMENT,
                 "pack_int4: value %d at (%lld, %lld) is outside [-8, 7]", values[i],
                 static_cast<long long>(i / cols), static_cast<long long>(i % cols));
    }
    for (int64_t i = 0; i < n; i += 2) {
        const unsigned lo = static_cast<unsigned>(values[i]) & 0xFu, hi = static_cast<unsigned>(values[i + 1]) & 0xFu;
        packed[i / 2] = static_cast<uint8_t>(lo | (hi << 4));
    }
}

void unpack_int4(int8_t *values, const uint8_t *packed, int64_t rows, int64_t cols) {
    check_shape("unpack_int4", rows, cols);
    const int64_t n_bytes = rows * cols / 2;
    for (int64_t j = 0; j < n_bytes; ++j) {
        values[2 * j] = nibble_to_int8(packed[j]);
        values[2 * j + 1] = nibble_to_int8(packed[j] >> 4u);
    }
}

uint16_t w4a4_epilogue(int32_t acc, float a_scale, float b_scale, float bias) {
    // Each statement rounds once, in fp32: no double intermediate, and the fused multiply-add is spelled out so
    // that neither compiler contraction nor its absence can change the result.
    const float t = static_cast<float>(acc) * a_scale;
    const float y = std::fmaf(t, b_scale, bias);
    return f32_to_f16_bits(y);
}

void w4a4_gemm_s32(int32_t *acc, const uint8_t *a_packed, const uint8_t *b_packed, int64_t m, int64_t n, int64_t k) {
    FQ_CHECK(m >= 0 && n >= 0 && k >= 0 && k % 2 == 0 && k <= kMaxK, FQ_STATUS_INVALID_ARGUMENT,
             "w4a4_gemm_s32: bad shape m=%lld n=%lld k=%lld (k even, at most %lld)", static_cast<long long>(m),
             static_cast<long long>(n), static_cast<long long>(k), static_cast<long long>(kMaxK));
    std::vector<int8_t> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(n * k));
    unpack_int4(a.data(), a_packed, m, k);
    unpack_int4(b.data(), b_packed, n, k);
    for (int64_t i = 0; i < m; ++i) {
        const int8_t *arow = a.data() + i * k;
        for (int64_t j = 0; j < n; ++j) {
            const int8_t *brow = b.data() + j * k;
            int32_t sum = 0;
            for (int64_t p = 0; p < k; ++p) sum += static_cast<int32_t>(arow[p]) * static_cast<int32_t>(brow[p]);
            acc[i * n + j] = sum;
        }
    }
}

void w4a4_gemm(uint16_t *d_f16, const uint8_t *a_packed, const uint8_t *b_packed, const float *a_scale,
               const float *b_scale, const float *bias, int64_t m, int64_t n, int64_t k) {
    std::vector<int32_t> acc(static_cast<size_t>(m * n));
    w4a4_gemm_s32(acc.data(), a_packed, b_packed, m, n, k);
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            d_f16[i * n + j] = w4a4_epilogue(acc[static_cast<size_t>(i * n + j)], a_scale[i], b_scale[j],
                                             bias != nullptr ? bias[j] : 0.0f);
        }
    }
}

}  // namespace fq::cpu
