#include "quant/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace fq::quant {

namespace {

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Share of the gradient that torch.maximum(a, b) gives to a (torch.minimum: call with the operands negated).
double max_share(double a, double b) { return a > b ? 1.0 : (a == b ? 0.5 : 0.0); }

double sign(double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); }

void check_sizes(int64_t rows, int64_t cols, const char *what) {
    FQ_CHECK(rows >= 0 && cols > 0, FQ_STATUS_INVALID_ARGUMENT, "%s: bad sizes rows=%lld cols=%lld", what,
             static_cast<long long>(rows), static_cast<long long>(cols));
}

// Row max/min with the first index of each (torch max(dim)/min(dim) on CPU report the first occurrence).
template <typename T>
void row_extrema(const T *row, int64_t cols, T &vmax, int64_t &imax, T &vmin, int64_t &imin) {
    vmax = row[0];
    vmin = row[0];
    imax = 0;
    imin = 0;
    for (int64_t j = 1; j < cols; j++) {
        if (row[j] > vmax) {
            vmax = row[j];
            imax = j;
        }
        if (row[j] < vmin) {
            vmin = row[j];
            imin = j;
        }
    }
}

// Scale and zero point of one activation row, in T arithmetic as the official code does them in fp32.
template <typename T>
struct ActRowParams {
    T amax, amin;        // raw row max/min
    T xmax0, xmin0;      // after torch.maximum/minimum with 0
    double sig_max = 1.0, sig_min = 1.0;
    T xmax, xmin;        // after LAC
    T s, z;              // scale and zero point
    bool scale_has_grad; // false for the overwritten rows
};

template <typename T>
ActRowParams<T> act_row_params(const T *row, int64_t cols, const T *lac, bool sym, int qmax) {
    ActRowParams<T> p;
    int64_t imax, imin;
    row_extrema(row, cols, p.amax, imax, p.amin, imin);
    p.xmax0 = std::max(p.amax, T(0));
    p.xmin0 = std::min(p.amin, T(0));
    p.xmax = p.xmax0;
    p.xmin = p.xmin0;
    if (lac) {
        p.sig_max = sigmoid(static_cast<double>(lac[0]));
        p.sig_min = sigmoid(static_cast<double>(lac[1]));
        p.xmax = static_cast<T>(p.xmax0 * static_cast<T>(p.sig_max));
        p.xmin = static_cast<T>(p.xmin0 * static_cast<T>(p.sig_min));
    }
    p.scale_has_grad = true;
    p.z = T(0);
    if (sym) {
        const T m = std::max(std::fabs(p.xmin), p.xmax);
        if (m == T(0)) {
            p.s = T(1);
            p.scale_has_grad = false;
        } else {
            p.s = m / static_cast<T>(qmax);
        }
    } else {
        if (p.xmin == T(0) && p.xmax == T(0)) {
            p.xmin = T(-1);
            p.xmax = T(1);
            p.scale_has_grad = false;
        }
        p.s = (p.xmax - p.xmin) / static_cast<T>(qmax);
        p.z = std::nearbyint(-p.xmin / p.s);
    }
    return p;
}

}  // namespace

void check_quant_bits(int bits) {
    FQ_CHECK((bits >= 2 && bits <= 8) || bits == 16, FQ_STATUS_INVALID_ARGUMENT,
             "quantizer bits must be 2..8 or 16 (off), got %d", bits);
}

// ---- smoothing -----------------------------------------------------------------------------------------------------

template <typename T>
void channel_scale_forward(T *out, const T *inp, const T *c, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "channel_scale_forward");
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = inp[r * cols + j] * c[j];
    }
}

template <typename T>
void channel_scale_backward(T *dinp, T *dc, const T *dout, const T *inp, const T *c, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "channel_scale_backward");
    std::vector<double> acc(dc ? static_cast<size_t>(cols) : 0, 0.0);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) {
            const T g = dout[r * cols + j];
            if (dc) acc[j] += static_cast<double>(g) * static_cast<double>(inp[r * cols + j]);
            if (dinp) dinp[r * cols + j] = g * c[j];
        }
    }
    if (dc) {
        for (int64_t j = 0; j < cols; j++) dc[j] = static_cast<T>(static_cast<double>(dc[j]) + acc[j]);
    }
}

template <typename T>
void channel_unscale_forward(T *out, const T *w, const T *c, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "channel_unscale_forward");
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = w[r * cols + j] / c[j];
    }
}

template <typename T>
void channel_unscale_backward(T *dw, T *dc, const T *dout, const T *w, const T *c, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "channel_unscale_backward");
    std::vector<double> acc(dc ? static_cast<size_t>(cols) : 0, 0.0);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) {
            const T g = dout[r * cols + j];
            if (dc) acc[j] += static_cast<double>(g) * static_cast<double>(w[r * cols + j]);
            if (dw) dw[r * cols + j] = g / c[j];
        }
    }
    if (dc) {
        for (int64_t j = 0; j < cols; j++) {
            const double cj = static_cast<double>(c[j]);
            dc[j] = static_cast<T>(static_cast<double>(dc[j]) - acc[j] / (cj * cj));
        }
    }
}

template <typename T>
void column_absmax_update(T *absmax, const T *x, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "column_absmax_update");
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) absmax[j] = std::max(absmax[j], std::fabs(x[r * cols + j]));
    }
}

template <typename T>
void smooth_scale_init(T *c, const T *x_absmax, const T *w_absmax, int64_t n, double alpha) {
    FQ_CHECK(n > 0 && alpha >= 0.0 && alpha <= 1.0, FQ_STATUS_INVALID_ARGUMENT, "smooth_scale_init: bad n or alpha");
    for (int64_t j = 0; j < n; j++) {
        const double v = std::pow(static_cast<double>(w_absmax[j]), 1.0 - alpha) /
                         std::pow(static_cast<double>(x_absmax[j]), alpha);
        c[j] = static_cast<T>(std::max(v, 1e-5));
    }
}

// ---- LWC -----------------------------------------------------------------------------------------------------------

template <typename T>
void lwc_forward(T *out, const T *w, const T *clip, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "lwc_forward");
    for (int64_t i = 0; i < rows; i++) {
        const T *row = w + i * cols;
        T vmax, vmin;
        int64_t imax, imin;
        row_extrema(row, cols, vmax, imax, vmin, imin);
        const T hi = vmax * static_cast<T>(sigmoid(static_cast<double>(clip[i])));
        const T lo = vmin * static_cast<T>(sigmoid(static_cast<double>(clip[rows + i])));
        for (int64_t j = 0; j < cols; j++) out[i * cols + j] = std::min(std::max(row[j], lo), hi);
    }
}

template <typename T>
void lwc_backward(T *dw, T *dclip, const T *dout, const T *w, const T *clip, int64_t rows, int64_t cols) {
    check_sizes(rows, cols, "lwc_backward");
    for (int64_t i = 0; i < rows; i++) {
        const T *row = w + i * cols;
        const T *g = dout + i * cols;
        T vmax, vmin;
        int64_t imax, imin;
        row_extrema(row, cols, vmax, imax, vmin, imin);
        const double sig_hi = sigmoid(static_cast<double>(clip[i]));
        const double sig_lo = sigmoid(static_cast<double>(clip[rows + i]));
        const T hi = vmax * static_cast<T>(sig_hi);
        const T lo = vmin * static_cast<T>(sig_lo);
        double g_hi = 0.0, g_lo = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const T v = row[j];
            const bool pass = (v >= lo) && (v <= hi);
            if (v < lo && lo < hi) g_lo += static_cast<double>(g[j]);
            if (v > hi || hi < lo) g_hi += static_cast<double>(g[j]);
            if (dw) dw[i * cols + j] = pass ? g[j] : T(0);
        }
        if (dw) {
            dw[i * cols + imax] = static_cast<T>(static_cast<double>(dw[i * cols + imax]) + g_hi * sig_hi);
            dw[i * cols + imin] = static_cast<T>(static_cast<double>(dw[i * cols + imin]) + g_lo * sig_lo);
        }
        if (dclip) {
            dclip[i] = static_cast<T>(static_cast<double>(dclip[i]) +
                                      g_hi * static_cast<double>(vmax) * sig_hi * (1.0 - sig_hi));
            dclip[rows + i] = static_cast<T>(static_cast<double>(dclip[rows + i]) +
                                             g_lo * static_cast<double>(vmin) * sig_lo * (1.0 - sig_lo));
        }
    }
}

// ---- weight quantizer ----------------------------------------------------------------------------------------------

namespace {
template <typename T>
struct WeightRowParams {
    T vmax, vmin;
    int64_t imax, imin;
    T xmax, xmin, m0, s;
};

template <typename T>
WeightRowParams<T> weight_row_params(const T *row, int64_t cols, int qmax) {
    WeightRowParams<T> p;
    row_extrema(row, cols, p.vmax, p.imax, p.vmin, p.imin);
    p.xmax = std::max(p.vmax, T(0));
    p.xmin = std::min(p.vmin, T(0));
    p.m0 = std::max(std::fabs(p.xmin), p.xmax);
    p.s = std::max(p.m0, static_cast<T>(1e-5)) / static_cast<T>(qmax);
    return p;
}
}  // namespace

template <typename T>
void weight_quant_forward(T *out, T *scale, const T *w, int64_t rows, int64_t cols, int bits) {
    check_quant_bits(bits);
    check_sizes(rows, cols, "weight_quant_forward");
    if (bits == 16) {
        if (out != w) std::copy(w, w + rows * cols, out);
        return;
    }
    const int qmax = (1 << (bits - 1)) - 1;
    const T qlo = static_cast<T>(-(qmax + 1)), qhi = static_cast<T>(qmax);
    for (int64_t i = 0; i < rows; i++) {
        const WeightRowParams<T> p = weight_row_params(w + i * cols, cols, qmax);
        if (scale) scale[i] = p.s;
        for (int64_t j = 0; j < cols; j++) {
            const T q = std::min(std::max(std::nearbyint(w[i * cols + j] / p.s), qlo), qhi);
            out[i * cols + j] = p.s * q;
        }
    }
}

template <typename T>
void weight_quant_backward(T *dw, const T *dout, const T *w, int64_t rows, int64_t cols, int bits) {
    check_quant_bits(bits);
    check_sizes(rows, cols, "weight_quant_backward");
    if (bits == 16) {
        if (dw != dout) std::copy(dout, dout + rows * cols, dw);
        return;
    }
    const int qmax = (1 << (bits - 1)) - 1;
    const T qlo = static_cast<T>(-(qmax + 1)), qhi = static_cast<T>(qmax);
    for (int64_t i = 0; i < rows; i++) {
        const T *row = w + i * cols;
        const WeightRowParams<T> p = weight_row_params(row, cols, qmax);
        double gs = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const T g = dout[i * cols + j];
            const T v = row[j] / p.s;
            const T r = std::nearbyint(v);
            const bool inside = (r >= qlo) && (r <= qhi);
            const T q = std::min(std::max(r, qlo), qhi);
            gs += static_cast<double>(g) * (static_cast<double>(q) - (inside ? static_cast<double>(v) : 0.0));
            dw[i * cols + j] = inside ? g : T(0);
        }
        // s = clamp(maximum(|xmin|, xmax), 1e-5) / qmax
        if (!(p.m0 >= static_cast<T>(1e-5))) continue;
        const double gm = gs / qmax;
        const double ax = std::fabs(static_cast<double>(p.xmin)), xm = static_cast<double>(p.xmax);
        const double g_xmax = gm * max_share(xm, ax);
        const double g_xmin = gm * max_share(ax, xm) * sign(static_cast<double>(p.xmin));
        const double g_vmax = g_xmax * max_share(static_cast<double>(p.vmax), 0.0);
        const double g_vmin = g_xmin * max_share(-static_cast<double>(p.vmin), 0.0);
        dw[i * cols + p.imax] = static_cast<T>(static_cast<double>(dw[i * cols + p.imax]) + g_vmax);
        dw[i * cols + p.imin] = static_cast<T>(static_cast<double>(dw[i * cols + p.imin]) + g_vmin);
    }
}

// ---- activation quantizer ------------------------------------------------------------------------------------------

template <typename T>
void act_quant_forward(T *out, const T *x, const T *lac, int64_t rows, int64_t cols, int bits, bool sym) {
    check_quant_bits(bits);
    check_sizes(rows, cols, "act_quant_forward");
    if (bits == 16) {
        if (out != x) std::copy(x, x + rows * cols, out);
        return;
    }
    const int qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    const T qlo = sym ? static_cast<T>(-(qmax + 1)) : T(0), qhi = static_cast<T>(qmax);
    for (int64_t r = 0; r < rows; r++) {
        const ActRowParams<T> p = act_row_params(x + r * cols, cols, lac, sym, qmax);
        for (int64_t j = 0; j < cols; j++) {
            const T q = std::min(std::max(std::nearbyint(x[r * cols + j] / p.s) + p.z, qlo), qhi);
            out[r * cols + j] = p.s * (q - p.z);
        }
    }
}

template <typename T>
void act_quant_backward(T *dx, T *dlac, const T *dout, const T *x, const T *lac, int64_t rows, int64_t cols, int bits,
                        bool sym) {
    check_quant_bits(bits);
    check_sizes(rows, cols, "act_quant_backward");
    FQ_CHECK(!(dlac && !lac), FQ_STATUS_INVALID_ARGUMENT, "act_quant_backward: dlac given without lac");
    if (bits == 16) {
        if (dx && dx != dout) std::copy(dout, dout + rows * cols, dx);
        return;
    }
    const int qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    const T qlo = sym ? static_cast<T>(-(qmax + 1)) : T(0), qhi = static_cast<T>(qmax);
    double dlac_max = 0.0, dlac_min = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const T *row = x + r * cols;
        const ActRowParams<T> p = act_row_params(row, cols, lac, sym, qmax);
        double gs = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const T g = dout[r * cols + j];
            const T v = row[j] / p.s;
            const T qz = std::nearbyint(v) + p.z;
            const bool inside = (qz >= qlo) && (qz <= qhi);
            const T q = std::min(std::max(qz, qlo), qhi);
            gs += static_cast<double>(g) *
                  (static_cast<double>(q - p.z) - (inside ? static_cast<double>(v) : 0.0));
            if (dx) dx[r * cols + j] = inside ? g : T(0);
        }
        if (!p.scale_has_grad) continue;
        // Gradients of the (clipped) range ends.
        double g_xmax, g_xmin;
        if (sym) {
            const double gm = gs / qmax;
            const double ax = std::fabs(static_cast<double>(p.xmin)), xm = static_cast<double>(p.xmax);
            g_xmax = gm * max_share(xm, ax);
            g_xmin = gm * max_share(ax, xm) * sign(static_cast<double>(p.xmin));
        } else {
            g_xmax = gs / qmax;
            g_xmin = -gs / qmax;
        }
        // LAC: xmax = xmax0 * sigmoid(a_max), xmin = xmin0 * sigmoid(a_min).
        dlac_max += g_xmax * static_cast<double>(p.xmax0) * p.sig_max * (1.0 - p.sig_max);
        dlac_min += g_xmin * static_cast<double>(p.xmin0) * p.sig_min * (1.0 - p.sig_min);
        if (!dx) continue;
        const double g_amax = g_xmax * p.sig_max * max_share(static_cast<double>(p.amax), 0.0);
        const double g_amin = g_xmin * p.sig_min * max_share(-static_cast<double>(p.amin), 0.0);
        // amax/amin share their gradient evenly among tied elements.
        int64_t n_max = 0, n_min = 0;
        for (int64_t j = 0; j < cols; j++) {
            n_max += row[j] == p.amax;
            n_min += row[j] == p.amin;
        }
        for (int64_t j = 0; j < cols; j++) {
            double add = 0.0;
            if (row[j] == p.amax) add += g_amax / static_cast<double>(n_max);
            if (row[j] == p.amin) add += g_amin / static_cast<double>(n_min);
            if (add != 0.0) dx[r * cols + j] = static_cast<T>(static_cast<double>(dx[r * cols + j]) + add);
        }
    }
    if (dlac) {
        dlac[0] = static_cast<T>(static_cast<double>(dlac[0]) + dlac_max);
        dlac[1] = static_cast<T>(static_cast<double>(dlac[1]) + dlac_min);
    }
}

#define FQ_INSTANTIATE(T)                                                                                      \
    template void channel_scale_forward<T>(T *, const T *, const T *, int64_t, int64_t);                      \
    template void channel_scale_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t);     \
    template void channel_unscale_forward<T>(T *, const T *, const T *, int64_t, int64_t);                    \
    template void channel_unscale_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t);   \
    template void column_absmax_update<T>(T *, const T *, int64_t, int64_t);                                  \
    template void smooth_scale_init<T>(T *, const T *, const T *, int64_t, double);                           \
    template void lwc_forward<T>(T *, const T *, const T *, int64_t, int64_t);                                \
    template void lwc_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t);               \
    template void weight_quant_forward<T>(T *, T *, const T *, int64_t, int64_t, int);                        \
    template void weight_quant_backward<T>(T *, const T *, const T *, int64_t, int64_t, int);                 \
    template void act_quant_forward<T>(T *, const T *, const T *, int64_t, int64_t, int, bool);               \
    template void act_quant_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, int, bool);
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant
