// CPU twin of the 4-bit KV cache and its attention (contract: kv4_attention_ref.h).
#include "cpu/kv4_attention_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"

namespace fq::cpu {

void kv4_quantize_rows_ref(uint8_t *codes, float *params, const uint16_t *x_f16, int64_t ld_x, int64_t rows, int d,
                           float clip_max, float clip_min) {
    FQ_CHECK(rows >= 0 && d > 0 && d % 2 == 0 && ld_x >= d, FQ_STATUS_INVALID_ARGUMENT,
             "kv4_quantize_rows_ref: bad sizes rows=%lld d=%d ld=%lld", static_cast<long long>(rows), d,
             static_cast<long long>(ld_x));
    std::vector<float> x(static_cast<size_t>(d));
    for (int64_t r = 0; r < rows; ++r) {
        for (int j = 0; j < d; ++j) x[j] = f16_bits_to_f32(x_f16[r * ld_x + j]);
        const float amax = *std::max_element(x.begin(), x.end());
        const float amin = *std::min_element(x.begin(), x.end());
        // volatile keeps each FP32 operation a separate rounding (no contraction, no excess precision).
        volatile float xmax = std::max(amax, 0.0f) * clip_max;
        volatile float xmin = std::min(amin, 0.0f) * clip_min;
        if (xmax == 0.0f && xmin == 0.0f) xmin = -1.0f, xmax = 1.0f;
        volatile float range = xmax - xmin;
        volatile float s = range / 15.0f;
        volatile float zq = -xmin / s;
        const float z = std::nearbyint(static_cast<float>(zq));
        params[2 * r] = s;
        params[2 * r + 1] = z;
        uint8_t *row = codes + r * (d / 2);
        for (int j = 0; j < d; j += 2) {
            int q[2];
            for (int e = 0; e < 2; ++e) {
                volatile float v = x[j + e] / s;
                const float qf = std::min(std::max(std::nearbyint(static_cast<float>(v)) + z, 0.0f), 15.0f);
                q[e] = static_cast<int>(qf);
            }
            row[j / 2] = static_cast<uint8_t>(q[0] | (q[1] << 4));
        }
    }
}

float kv4_value(const uint8_t *codes, const float *params, int j) {
    const int q = (codes[j / 2] >> (4 * (j & 1))) & 0xF;
    volatile float v = params[0] * (static_cast<float>(q) - params[1]);
    return v;
}

double kv_cache_value_ref(const KvCacheRef &c, bool v, int b, int g, int64_t t, int j) {
    const int64_t row = (static_cast<int64_t>(b) * c.kv_heads + g) * c.capacity + t;
    if (c.int4) {
        const uint8_t *codes = (v ? c.v_codes : c.k_codes) + row * (c.head_dim / 2);
        const float *params = (v ? c.v_params : c.k_params) + 2 * row;
        return kv4_value(codes, params, j);
    }
    return f16_bits_to_f32((v ? c.v_f16 : c.k_f16)[row * c.head_dim + j]);
}

void attention_ref(double *out, const uint16_t *q_f16, int64_t ld_q, const KvCacheRef &c, int64_t n_q, int64_t pos0,
                   int n_heads, double scale) {
    const int d = c.head_dim;
    FQ_CHECK(c.batch > 0 && c.kv_heads > 0 && n_heads % c.kv_heads == 0 && d > 0 && n_q >= 0 && pos0 >= 0 &&
                 pos0 + n_q <= c.capacity && ld_q >= static_cast<int64_t>(n_heads) * d,
             FQ_STATUS_INVALID_ARGUMENT, "attention_ref: bad sizes");
    const int group = n_heads / c.kv_heads;
    std::vector<double> q(static_cast<size_t>(d)), p;
    for (int b = 0; b < c.batch; ++b) {
        for (int64_t s = 0; s < n_q; ++s) {
            const int64_t row = b * n_q + s, n_keys = pos0 + s + 1;
            p.assign(static_cast<size_t>(n_keys), 0.0);
            for (int h = 0; h < n_heads; ++h) {
                const int g = h / group;
                for (int j = 0; j < d; ++j) q[j] = f16_bits_to_f32(q_f16[row * ld_q + static_cast<int64_t>(h) * d + j]);
                double m = -INFINITY;
                for (int64_t t = 0; t < n_keys; ++t) {
                    double dot = 0.0;
                    for (int j = 0; j < d; ++j) dot += q[j] * kv_cache_value_ref(c, false, b, g, t, j);
                    p[t] = dot * scale;
                    m = std::max(m, p[t]);
                }
                double l = 0.0;
                for (int64_t t = 0; t < n_keys; ++t) l += (p[t] = std::exp(p[t] - m));
                double *o = out + row * static_cast<int64_t>(n_heads) * d + static_cast<int64_t>(h) * d;
                for (int j = 0; j < d; ++j) o[j] = 0.0;
                for (int64_t t = 0; t < n_keys; ++t)
                    for (int j = 0; j < d; ++j) o[j] += p[t] * kv_cache_value_ref(c, true, b, g, t, j);
                for (int j = 0; j < d; ++j) o[j] /= l;
            }
        }
    }
}

}  // namespace fq::cpu
