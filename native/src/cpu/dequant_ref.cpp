#include "cpu/dequant_ref.h"

#include <cstring>

#include "core/error.h"

namespace fq::cpu {

namespace {

constexpr uint32_t kTypeQ4_1 = 3;  // gguf::TensorType::Q4_1
constexpr uint32_t kTypeQ8_0 = 8;  // gguf::TensorType::Q8_0
constexpr int64_t kBlockElems = 32;

uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
}

float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}

uint16_t load_u16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

int64_t block_bytes(uint32_t ggml_type) {
    if (ggml_type == kTypeQ8_0) return 2 + kBlockElems;
    if (ggml_type == kTypeQ4_1) return 4 + kBlockElems / 2;
    return 0;
}

// Walks the blocks row by row and hands each element's FP32 value to store(index into out, value).
template <class Store>
void dequantize(Store store, const void *blocks, uint32_t ggml_type, int64_t rows, int64_t cols, int64_t ld_out) {
    FQ_CHECK(rows >= 0 && cols > 0 && cols % kBlockElems == 0 && ld_out >= cols, FQ_STATUS_INVALID_ARGUMENT,
             "dequantize: bad shape rows=%lld cols=%lld ld_out=%lld (cols must be a multiple of 32)",
             static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(ld_out));
    const int64_t bb = block_bytes(ggml_type);
    FQ_CHECK(bb != 0, FQ_STATUS_UNSUPPORTED, "dequantize: tensor type %u is not Q4_1 or Q8_0", ggml_type);
    const auto *src = static_cast<const uint8_t *>(blocks);
    const int64_t blocks_per_row = cols / kBlockElems;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t b = 0; b < blocks_per_row; ++b) {
            const uint8_t *blk = src + (r * blocks_per_row + b) * bb;
            const float d = f16_bits_to_f32(load_u16(blk));
            const int64_t col0 = r * ld_out + b * kBlockElems;
            if (ggml_type == kTypeQ8_0) {
                for (int j = 0; j < kBlockElems; ++j) {
                    store(col0 + j, d * static_cast<float>(static_cast<int8_t>(blk[2 + j])));
                }
            } else {
                const float m = f16_bits_to_f32(load_u16(blk + 2));
                for (int j = 0; j < kBlockElems / 2; ++j) {
                    const uint8_t byte = blk[4 + j];
                    store(col0 + j, d * static_cast<float>(byte & 0x0F) + m);
                    store(col0 + j + 16, d * static_cast<float>(byte >> 4) + m);
                }
            }
        }
    }
}

}  // namespace

float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) return bits_f32(sign | 0x7F800000u | (mant << 13));  // inf / NaN (payload kept)
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    // Zero or subnormal: mant * 2^-24, exact in FP32.
    const float v = static_cast<float>(mant) * bits_f32(0x33800000u);  // 2^-24
    return sign ? -v : v;
}

uint16_t f32_to_f16_bits(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));  // NaN, quiet
    if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to infinity
    if (abs < 0x38800000u) {
        // Below the smallest normal half (2^-14): the result is a multiple of 2^-24. Scaling by 2^24 is exact,
        // and the integer rounding below is nearest-even.
        const float scaled = bits_f32(abs) * 16777216.0f;
        const uint32_t q = static_cast<uint32_t>(scaled);
        const float rem = scaled - static_cast<float>(q);
        uint32_t r = q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++r;
        return static_cast<uint16_t>(sign | r);  // r == 0x400 is the smallest normal, encoded the same way
    }
    // Normal range: rebias the exponent, then round the 13 dropped mantissa bits to nearest-even; a carry out of
    // the mantissa correctly bumps the exponent.
    const uint32_t rebased = abs - (112u << 23);
    uint32_t h = rebased >> 13;
    const uint32_t dropped = rebased & 0x1FFFu;
    if (dropped > 0x1000u || (dropped == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

void dequantize_rows_f32(float *out, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols) {
    FQ_CHECK(rows == 0 || (out && blocks), FQ_STATUS_INVALID_ARGUMENT, "dequantize: NULL tensor");
    dequantize([out](int64_t i, float v) { out[i] = v; }, blocks, ggml_type, rows, cols, ld_out);
}

void dequantize_rows_f16(uint16_t *out_f16, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols) {
    FQ_CHECK(rows == 0 || (out_f16 && blocks), FQ_STATUS_INVALID_ARGUMENT, "dequantize: NULL tensor");
    dequantize([out_f16](int64_t i, float v) { out_f16[i] = f32_to_f16_bits(v); }, blocks, ggml_type, rows, cols,
               ld_out);
}

}  // namespace fq::cpu
