#include "cpu/kron_quant_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/w4a4_gemm_ref.h"

namespace fq::cpu {

namespace {

void check_args(const void *x, int64_t tokens, int n1, int n2, const void *p1, const void *p2, const char *what) {
    FQ_CHECK(tokens >= 0 && n1 > 0 && n2 > 0, FQ_STATUS_INVALID_ARGUMENT, "%s: bad sizes tokens=%lld n1=%d n2=%d",
             what, static_cast<long long>(tokens), n1, n2);
    FQ_CHECK(p1 || p2, FQ_STATUS_INVALID_ARGUMENT, "%s: P1 and P2 are both the identity", what);
    FQ_CHECK(tokens == 0 || x, FQ_STATUS_INVALID_ARGUMENT, "%s: NULL input", what);
}

std::vector<double> f16_matrix(const uint16_t *m, int rows) {
    std::vector<double> out(static_cast<size_t>(rows) * rows);
    for (size_t i = 0; i < out.size(); ++i) out[i] = f16_bits_to_f32(m[i]);
    return out;
}

}  // namespace

float lac_factor(float logit) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logit)))); }

double round_to_f16(double v) {
    if (!std::isfinite(v) || v == 0.0) return v;
    int e2 = 0;
    std::frexp(v, &e2);  // |v| = m 2^e2, m in [0.5, 1): the leading bit has weight 2^(e2-1)
    // FP16 keeps 11 significant bits down to 2^-14 and a fixed quantum of 2^-24 below (subnormals).
    const int lead = std::max(e2 - 1, -14);
    const double quantum = std::ldexp(1.0, lead - 10);
    const double r = std::nearbyint(v / quantum) * quantum;  // v / quantum is exact (a power-of-two scaling)
    if (std::fabs(r) > 65504.0) return std::copysign(std::numeric_limits<double>::infinity(), v);
    return r;
}

void kron_transform_ref(double *y, double *z, const uint16_t *x_f16, const uint16_t *p1_f16, const uint16_t *p2_f16,
                        int64_t tokens, int n1, int n2, bool round_mid) {
    check_args(x_f16, tokens, n1, n2, p1_f16, p2_f16, "kron_transform_ref");
    FQ_CHECK(tokens == 0 || y, FQ_STATUS_INVALID_ARGUMENT, "kron_transform_ref: NULL output");
    const int64_t n = int64_t{n1} * n2;
    const std::vector<double> p1 = p1_f16 ? f16_matrix(p1_f16, n1) : std::vector<double>();
    const std::vector<double> p2 = p2_f16 ? f16_matrix(p2_f16, n2) : std::vector<double>();
    std::vector<double> xs(static_cast<size_t>(n)), zs(static_cast<size_t>(n)), zh(static_cast<size_t>(n));
    for (int64_t t = 0; t < tokens; ++t) {
        const uint16_t *xt = x_f16 + t * n;
        for (int64_t e = 0; e < n; ++e) xs[e] = f16_bits_to_f32(xt[e]);
        // Z[i][:] = sum_j' X[i][j'] P2[j'][:]. Every product of two FP16 values is exact in double; the n2 <= 2^10
        // additions err by at most n2 2^-53 sum|terms| < 2^-43 sum|terms|, nothing beside the FP32 errors checked.
        if (p2_f16) {
            std::fill(zs.begin(), zs.end(), 0.0);
            for (int i = 0; i < n1; ++i)
                for (int jp = 0; jp < n2; ++jp) {
                    const double xv = xs[static_cast<size_t>(i) * n2 + jp];
                    const double *prow = &p2[static_cast<size_t>(jp) * n2];
                    double *zrow = &zs[static_cast<size_t>(i) * n2];
                    for (int j = 0; j < n2; ++j) zrow[j] += xv * prow[j];
                }
        } else {
            zs = xs;
        }
        if (z) std::copy(zs.begin(), zs.end(), z + t * n);
        double *yt = y + t * n;
        if (!p1_f16) {
            std::copy(zs.begin(), zs.end(), yt);
            continue;
        }
        const bool rounded = p2_f16 && round_mid;
        for (int64_t e = 0; e < n; ++e) zh[e] = rounded ? round_to_f16(zs[e]) : zs[e];
        // Y[i][:] = sum_i' P1[i'][i] Zh[i'][:]
        std::fill(yt, yt + n, 0.0);
        for (int ip = 0; ip < n1; ++ip)
            for (int i = 0; i < n1; ++i) {
                const double pv = p1[static_cast<size_t>(ip) * n1 + i];
                const double *zrow = &zh[static_cast<size_t>(ip) * n2];
                double *yrow = yt + static_cast<int64_t>(i) * n2;
                for (int j = 0; j < n2; ++j) yrow[j] += pv * zrow[j];
            }
    }
}

void act_quant_int4_ref(int8_t *q, float *scale, double *v_pre, const double *y, int64_t tokens, int64_t n,
                        float clip_max, float clip_min) {
    FQ_CHECK(tokens >= 0 && n > 0, FQ_STATUS_INVALID_ARGUMENT, "act_quant_int4_ref: bad sizes");
    FQ_CHECK(tokens == 0 || (q && scale && y), FQ_STATUS_INVALID_ARGUMENT, "act_quant_int4_ref: NULL tensor");
    std::vector<float> yf(static_cast<size_t>(n));
    for (int64_t t = 0; t < tokens; ++t) {
        const double *yt = y + t * n;
        for (int64_t e = 0; e < n; ++e) yf[e] = static_cast<float>(yt[e]);
        const float amax = *std::max_element(yf.begin(), yf.end());
        const float amin = *std::min_element(yf.begin(), yf.end());
        const float xmax = std::max(amax, 0.0f) * clip_max;
        const float xmin = std::min(amin, 0.0f) * clip_min;
        const float m = std::max(std::fabs(xmin), xmax);
        const float s = m == 0.0f ? 1.0f : m / 7.0f;
        scale[t] = s;
        for (int64_t e = 0; e < n; ++e) {
            const float v = std::nearbyint(yf[e] / s);
            q[t * n + e] = static_cast<int8_t>(std::min(std::max(v, -8.0f), 7.0f));
            if (v_pre) v_pre[t * n + e] = yt[e] / static_cast<double>(s);
        }
    }
}

void kron_quant_ref(uint8_t *out_packed, float *scale, const uint16_t *x_f16, const uint16_t *p1_f16,
                    const uint16_t *p2_f16, int64_t tokens, int n1, int n2, float clip_max, float clip_min) {
    check_args(x_f16, tokens, n1, n2, p1_f16, p2_f16, "kron_quant_ref");
    const int64_t n = int64_t{n1} * n2;
    FQ_CHECK(n % 2 == 0, FQ_STATUS_INVALID_ARGUMENT, "kron_quant_ref: n1*n2 = %lld is odd", static_cast<long long>(n));
    FQ_CHECK(tokens == 0 || (out_packed && scale), FQ_STATUS_INVALID_ARGUMENT, "kron_quant_ref: NULL output");
    std::vector<double> y(static_cast<size_t>(n));
    std::vector<int8_t> q(static_cast<size_t>(n));
    for (int64_t t = 0; t < tokens; ++t) {
        kron_transform_ref(y.data(), nullptr, x_f16 + t * n, p1_f16, p2_f16, 1, n1, n2);
        act_quant_int4_ref(q.data(), scale + t, nullptr, y.data(), 1, n, clip_max, clip_min);
        pack_int4(out_packed + t * (n / 2), q.data(), 1, n);
    }
}

void kron_f16_ref(uint16_t *out_f16, const uint16_t *x_f16, const uint16_t *p1_f16, const uint16_t *p2_f16,
                  int64_t tokens, int n1, int n2) {
    check_args(x_f16, tokens, n1, n2, p1_f16, p2_f16, "kron_f16_ref");
    FQ_CHECK(tokens == 0 || out_f16, FQ_STATUS_INVALID_ARGUMENT, "kron_f16_ref: NULL output");
    const int64_t n = int64_t{n1} * n2;
    std::vector<double> y(static_cast<size_t>(n));
    for (int64_t t = 0; t < tokens; ++t) {
        kron_transform_ref(y.data(), nullptr, x_f16 + t * n, p1_f16, p2_f16, 1, n1, n2);
        // round_to_f16 lands on an FP16 value, so the conversion to FP32 and then to bits is exact.
        for (int64_t e = 0; e < n; ++e) out_f16[t * n + e] = f32_to_f16_bits(static_cast<float>(round_to_f16(y[e])));
    }
}

}  // namespace fq::cpu
