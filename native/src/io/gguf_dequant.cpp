// Dequantization of ggml block formats to FP32 (the layouts of ggml-common.h; block_q4_0 and friends).
//
// Numerics: each value is computed with the same float32 operations, in the same order, as ggml's reference
// dequantize_row_* and as the gguf Python package (gguf.quants), e.g. Q4_K: (d * sc) * q - (dmin * m). With an
// fp16 scale (11 significant bits) times small integers, the products are exact in float32 except (d*sc)*q of
// Q6_K, which has no add after it; so only the final add/subtract rounds and results are bit-identical to the
// references. Contraction to fused multiply-add is turned off anyway so that this holds by construction, not by
// that argument, on any target.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cstring>

#include "core/error.h"
#include "io/gguf.h"

namespace fq::gguf {

namespace {

constexpr int QK_K = 256;  // elements per K-quant super-block

inline uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

// IEEE half -> float, exact for every input (subnormals, infinities and NaN payloads included).
inline float fp16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else {
        const float v = float(mant) * 0x1p-24f;  // mant * 2^-24 is exact in float32
        return sign ? -v : v;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline float half_at(const uint8_t *p) { return fp16_to_f32(rd16(p)); }

// ---- formats of 32-element blocks ----------------------------------------------------------------------------------

// block_q4_0 (18 B): fp16 d, qs[16]; element j < 16 is the low nibble of qs[j], j >= 16 the high nibble of
// qs[j-16]; value = d * (nibble - 8).
void deq_q4_0(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 18, y += 32) {
        const float d = half_at(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; ++j) {
            y[j] = d * float(int(qs[j] & 0x0f) - 8);
            y[j + 16] = d * float(int(qs[j] >> 4) - 8);
        }
    }
}

// block_q4_1 (20 B): fp16 d, fp16 m, qs[16]; value = d * nibble + m.
void deq_q4_1(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 20, y += 32) {
        const float d = half_at(b), m = half_at(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; ++j) {
            y[j] = d * float(qs[j] & 0x0f) + m;
            y[j + 16] = d * float(qs[j] >> 4) + m;
        }
    }
}

// block_q5_0 (22 B): fp16 d, qh (u32, bit j = fifth bit of element j), qs[16]; value = d * (q5 - 16).
void deq_q5_0(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 22, y += 32) {
        const float d = half_at(b);
        uint32_t qh;
        std::memcpy(&qh, b + 2, 4);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; ++j) {
            const int lo = (qs[j] & 0x0f) | int(((qh >> j) & 1u) << 4);
            const int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * float(lo - 16);
            y[j + 16] = d * float(hi - 16);
        }
    }
}

// block_q5_1 (24 B): fp16 d, fp16 m, qh (u32), qs[16]; value = d * q5 + m.
void deq_q5_1(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 24, y += 32) {
        const float d = half_at(b), m = half_at(b + 2);
        uint32_t qh;
        std::memcpy(&qh, b + 4, 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; ++j) {
            const int lo = (qs[j] & 0x0f) | int(((qh >> j) & 1u) << 4);
            const int hi = (qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * float(lo) + m;
            y[j + 16] = d * float(hi) + m;
        }
    }
}

// block_q8_0 (34 B): fp16 d, int8 qs[32]; value = q * d.
void deq_q8_0(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 34, y += 32) {
        const float d = half_at(b);
        const int8_t *qs = reinterpret_cast<const int8_t *>(b + 2);
        for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
    }
}

// ---- K-quants: 256-element super-blocks ----------------------------------------------------------------------------

// block_q2_K (84 B): scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64] (2-bit), fp16 d,
// fp16 dmin. Element e: qs byte 32*(e/128) + e%32, bit pair (e%128)/32; value = (d*sc) * q - (dmin*m).
void deq_q2_k(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 84, y += QK_K) {
        const uint8_t *scales = b, *qs = b + 16;
        const float d = half_at(b + 80), dmin = half_at(b + 82);
        for (int e = 0; e < QK_K; ++e) {
            const uint8_t sc = scales[e / 16];
            const float dl = d * float(sc & 0x0f), ml = dmin * float(sc >> 4);
            const int q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            y[e] = dl * float(q) - ml;
        }
    }
}

// block_q3_K (110 B): hmask[32], qs[64] (low 2 bits), scales[12] (sixteen 6-bit scales), fp16 d. Element e: low
// bits as Q2_K, high bit = bit e/32 of hmask[e%32]; q = low - (high ? 0 : 4); value = (d * (sc - 32)) * q.
void deq_q3_k(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 110, y += QK_K) {
        const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
        const float d = half_at(b + 108);
        float dl[16];
        for (int s = 0; s < 16; ++s) {
            // Scale s: low nibble from byte s%8 (nibble s/8), top two bits from byte 8 + s%4 (pair s/4).
            const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0f;
            const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
            dl[s] = d * float((lo | (hi << 4)) - 32);
        }
        for (int e = 0; e < QK_K; ++e) {
            const int low = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            const int high = (hmask[e % 32] >> (e / 32)) & 1;
            y[e] = dl[e / 16] * float(low - (high ? 0 : 4));
        }
    }
}

// The eight 6-bit (scale, min) pairs of Q4_K/Q5_K, one per 32 elements, packed into 12 bytes.
inline void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// block_q4_K (144 B): fp16 d, fp16 dmin, scales[12], qs[128]. Element e: qs byte 32*(e/64) + e%32, low nibble
// when (e%64) < 32; value = (d*sc) * q - (dmin*m) with (sc, m) of sub-block e/32.
void deq_q4_k(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 144, y += QK_K) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *qs = b + 16;
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k_scale_min(scales, j, &sc, &m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            const uint8_t *q = qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) y[32 * j + l] = d1 * float((q[l] >> shift) & 0x0f) - m1;
        }
    }
}

// block_q5_K (176 B): fp16 d, fp16 dmin, scales[12], qh[32], qs[128]. As Q4_K, with a fifth bit = bit e/32 of
// qh[e%32].
void deq_q5_k(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 176, y += QK_K) {
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k_scale_min(scales, j, &sc, &m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            const uint8_t *q = qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
                y[32 * j + l] = d1 * float(v) - m1;
            }
        }
    }
}

// block_q6_K (210 B): ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d. Element e, h = e/128:
// low nibble of ql[64h + e%64] (high nibble when (e%128) >= 64), bit pair (e%128)/32 of qh[32h + e%32];
// value = (d * scale[e/16]) * (q6 - 32).
void deq_q6_k(const uint8_t *b, float *y, int64_t n_blocks) {
    for (int64_t i = 0; i < n_blocks; ++i, b += 210, y += QK_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *scales = reinterpret_cast<const int8_t *>(b + 192);
        const float d = half_at(b + 208);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, r = e % 128;
            const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
            const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
            y[e] = (d * float(scales[e / 16])) * float((lo | (hi << 4)) - 32);
        }
    }
}

}  // namespace

void dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    int64_t block_elems = 0, block_bytes = 0;
    FQ_CHECK(can_dequantize(type) && type_traits(type, &block_elems, &block_bytes), FQ_STATUS_UNSUPPORTED,
             "dequantization of tensor type %s is not supported", tensor_type_name(type));
    FQ_CHECK(n >= 0 && n % block_elems == 0, FQ_STATUS_INVALID_ARGUMENT,
             "dequantize_row: %lld elements is not a multiple of the %s block size %lld", (long long)n,
             tensor_type_name(type), (long long)block_elems);
    const uint8_t *b = static_cast<const uint8_t *>(src);
    const int64_t n_blocks = n / block_elems;
    switch (static_cast<TensorType>(type)) {
    case TensorType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case TensorType::F16:
        for (int64_t k = 0; k < n; ++k) dst[k] = half_at(b + 2 * k);
        break;
    case TensorType::BF16:
        // bf16 is the top half of a float32: widening is a 16-bit shift, exact for every input.
        for (int64_t k = 0; k < n; ++k) {
            const uint32_t bits = uint32_t(rd16(b + 2 * k)) << 16;
            std::memcpy(dst + k, &bits, 4);
        }
        break;
    case TensorType::Q4_0: deq_q4_0(b, dst, n_blocks); break;
    case TensorType::Q4_1: deq_q4_1(b, dst, n_blocks); break;
    case TensorType::Q5_0: deq_q5_0(b, dst, n_blocks); break;
    case TensorType::Q5_1: deq_q5_1(b, dst, n_blocks); break;
    case TensorType::Q8_0: deq_q8_0(b, dst, n_blocks); break;
    case TensorType::Q2_K: deq_q2_k(b, dst, n_blocks); break;
    case TensorType::Q3_K: deq_q3_k(b, dst, n_blocks); break;
    case TensorType::Q4_K: deq_q4_k(b, dst, n_blocks); break;
    case TensorType::Q5_K: deq_q5_k(b, dst, n_blocks); break;
    case TensorType::Q6_K: deq_q6_k(b, dst, n_blocks); break;
    default:
        FQ_FAIL(FQ_STATUS_UNSUPPORTED, "dequantization of tensor type %s is not supported", tensor_type_name(type));
    }
}

}  // namespace fq::gguf
