#include "quant/layer_ops.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "quant/quant_ref_gemm.h"

namespace fq::quant {

using detail::ref_gemm_nn;
using detail::ref_gemm_nt;
using detail::ref_gemm_tn;

// ---- RMSNorm -------------------------------------------------------------------------------------------------------

template <typename T>
void rmsnorm_forward(T *out, T *rstd, const T *inp, const T *weight, int64_t rows, int64_t cols, double eps) {
    FQ_CHECK(rows >= 0 && cols > 0, FQ_STATUS_INVALID_ARGUMENT, "rmsnorm_forward: bad sizes");
    for (int64_t r = 0; r < rows; r++) {
        const T *x = inp + r * cols;
        double ss = 0.0;
        for (int64_t j = 0; j < cols; j++) ss += static_cast<double>(x[j]) * static_cast<double>(x[j]);
        const double rs = 1.0 / std::sqrt(ss / static_cast<double>(cols) + eps);
        rstd[r] = static_cast<T>(rs);
        for (int64_t j = 0; j < cols; j++) out[r * cols + j] = static_cast<T>(static_cast<double>(x[j]) * rs) * weight[j];
    }
}

template <typename T>
void rmsnorm_backward(T *dinp, T *dweight, const T *dout, const T *inp, const T *weight, const T *rstd, int64_t rows,
                      int64_t cols) {
    FQ_CHECK(rows >= 0 && cols > 0, FQ_STATUS_INVALID_ARGUMENT, "rmsnorm_backward: bad sizes");
    std::vector<double> dw(dweight ? static_cast<size_t>(cols) : 0, 0.0);
    for (int64_t r = 0; r < rows; r++) {
        const T *x = inp + r * cols;
        const T *g = dout + r * cols;
        const double rs = static_cast<double>(rstd[r]);
        // dx = rstd * (dxhat - xhat * mean(dxhat * xhat)), dxhat = dout * weight
        double dot = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            dot += static_cast<double>(g[j]) * static_cast<double>(weight[j]) * static_cast<double>(x[j]) * rs;
        }
        const double mean_dot = dot / static_cast<double>(cols);
        for (int64_t j = 0; j < cols; j++) {
            const double xhat = static_cast<double>(x[j]) * rs;
            const double dxhat = static_cast<double>(g[j]) * static_cast<double>(weight[j]);
            if (dweight) dw[j] += static_cast<double>(g[j]) * xhat;
            if (dinp) dinp[r * cols + j] = static_cast<T>(rs * (dxhat - xhat * mean_dot));
        }
    }
    if (dweight) {
        for (int64_t j = 0; j < cols; j++) dweight[j] = static_cast<T>(static_cast<double>(dweight[j]) + dw[j]);
    }
}

// ---- RoPE ----------------------------------------------------------------------------------------------------------

namespace {
template <typename T>
void rope_rotate(T *out, const T *inp, const int32_t *pos, int64_t rows, int n_head, int head_dim, int rope_dim,
                 double base, double direction) {
    FQ_CHECK(rows >= 0 && n_head > 0 && head_dim > 0 && rope_dim >= 0 && rope_dim <= head_dim && rope_dim % 2 == 0,
             FQ_STATUS_INVALID_ARGUMENT, "rope: bad sizes (n_head=%d head_dim=%d rope_dim=%d)", n_head, head_dim,
             rope_dim);
    const int64_t width = int64_t{n_head} * head_dim;
    std::vector<double> cs(static_cast<size_t>(rope_dim / 2)), sn(static_cast<size_t>(rope_dim / 2));
    for (int64_t r = 0; r < rows; r++) {
        for (int i = 0; i < rope_dim / 2; i++) {
            const double theta = static_cast<double>(pos[r]) * std::pow(base, -2.0 * i / rope_dim);
            cs[i] = std::cos(theta);
            sn[i] = direction * std::sin(theta);
        }
        for (int h = 0; h < n_head; h++) {
            const T *x = inp + r * width + int64_t{h} * head_dim;
            T *y = out + r * width + int64_t{h} * head_dim;
            for (int i = 0; i < rope_dim / 2; i++) {
                const double x0 = static_cast<double>(x[2 * i]), x1 = static_cast<double>(x[2 * i + 1]);
                y[2 * i] = static_cast<T>(x0 * cs[i] - x1 * sn[i]);
                y[2 * i + 1] = static_cast<T>(x0 * sn[i] + x1 * cs[i]);
            }
            if (y != x) {
                for (int d = rope_dim; d < head_dim; d++) y[d] = x[d];
            }
        }
    }
}
}  // namespace

template <typename T>
void rope_forward(T *out, const T *inp, const int32_t *pos, int64_t rows, int n_head, int head_dim, int rope_dim,
                  double base) {
    rope_rotate(out, inp, pos, rows, n_head, head_dim, rope_dim, base, 1.0);
}

template <typename T>
void rope_backward(T *dinp, const T *dout, const int32_t *pos, int64_t rows, int n_head, int head_dim, int rope_dim,
                   double base) {
    rope_rotate(dinp, dout, pos, rows, n_head, head_dim, rope_dim, base, -1.0);
}

// ---- attention -----------------------------------------------------------------------------------------------------

namespace {
void check_attention(int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim) {
    FQ_CHECK(n_seq >= 0 && seq_len > 0 && n_head > 0 && n_head_kv > 0 && head_dim > 0 && n_head % n_head_kv == 0,
             FQ_STATUS_INVALID_ARGUMENT, "attention: bad sizes (n_head=%d n_head_kv=%d head_dim=%d)", n_head,
             n_head_kv, head_dim);
}

template <typename T>
double dot_d(const T *a, const T *b, int n) {
    double acc = 0.0;
    for (int i = 0; i < n; i++) acc += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return acc;
}
}  // namespace

template <typename T>
void attention_forward(T *out, T *lse, const T *q, const T *k, const T *v, int64_t n_seq, int64_t seq_len, int n_head,
                       int n_head_kv, int head_dim) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    const int group = n_head / n_head_kv;
    const int64_t qw = int64_t{n_head} * head_dim, kw = int64_t{n_head_kv} * head_dim;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    std::vector<double> s(static_cast<size_t>(seq_len)), acc(static_cast<size_t>(head_dim));
    for (int64_t b = 0; b < n_seq; b++) {
        for (int h = 0; h < n_head; h++) {
            const int hk = h / group;
            for (int64_t t = 0; t < seq_len; t++) {
                const T *qt = q + (b * seq_len + t) * qw + int64_t{h} * head_dim;
                double mx = -INFINITY;
                for (int64_t j = 0; j <= t; j++) {
                    s[j] = scale * dot_d(qt, k + (b * seq_len + j) * kw + int64_t{hk} * head_dim, head_dim);
                    mx = std::max(mx, s[j]);
                }
                double sum = 0.0;
                for (int64_t j = 0; j <= t; j++) {
                    s[j] = std::exp(s[j] - mx);
                    sum += s[j];
                }
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int64_t j = 0; j <= t; j++) {
                    const double p = s[j] / sum;
                    const T *vj = v + (b * seq_len + j) * kw + int64_t{hk} * head_dim;
                    for (int d = 0; d < head_dim; d++) acc[d] += p * static_cast<double>(vj[d]);
                }
                T *ot = out + (b * seq_len + t) * qw + int64_t{h} * head_dim;
                for (int d = 0; d < head_dim; d++) ot[d] = static_cast<T>(acc[d]);
                lse[(b * n_head + h) * seq_len + t] = static_cast<T>(mx + std::log(sum));
            }
        }
    }
}

template <typename T>
void attention_backward(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *lse,
                        int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    const int group = n_head / n_head_kv;
    const int64_t qw = int64_t{n_head} * head_dim, kw = int64_t{n_head_kv} * head_dim;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    // dk/dv collect contributions from every query head of their group and every later query: sum in double.
    std::vector<double> dk_acc(static_cast<size_t>(n_seq * seq_len * kw), 0.0);
    std::vector<double> dv_acc(dk_acc.size(), 0.0);
    std::vector<double> p(static_cast<size_t>(seq_len)), dp(static_cast<size_t>(seq_len)),
        dq_acc(static_cast<size_t>(head_dim));
    for (int64_t b = 0; b < n_seq; b++) {
        for (int h = 0; h < n_head; h++) {
            const int hk = h / group;
            for (int64_t t = 0; t < seq_len; t++) {
                const int64_t qoff = (b * seq_len + t) * qw + int64_t{h} * head_dim;
                const T *qt = q + qoff;
                const T *gt = dout + qoff;
                const double l = static_cast<double>(lse[(b * n_head + h) * seq_len + t]);
                double dsum = 0.0;  // sum_j p_j dp_j = dout_t . out_t
                for (int64_t j = 0; j <= t; j++) {
                    const int64_t koff = (b * seq_len + j) * kw + int64_t{hk} * head_dim;
                    p[j] = std::exp(scale * dot_d(qt, k + koff, head_dim) - l);
                    dp[j] = dot_d(gt, v + koff, head_dim);
                    dsum += p[j] * dp[j];
                }
                std::fill(dq_acc.begin(), dq_acc.end(), 0.0);
                for (int64_t j = 0; j <= t; j++) {
                    const int64_t koff = (b * seq_len + j) * kw + int64_t{hk} * head_dim;
                    const double ds = p[j] * (dp[j] - dsum) * scale;
                    for (int d = 0; d < head_dim; d++) {
                        dq_acc[d] += ds * static_cast<double>(k[koff + d]);
                        dk_acc[koff + d] += ds * static_cast<double>(qt[d]);
                        dv_acc[koff + d] += p[j] * static_cast<double>(gt[d]);
                    }
                }
                for (int d = 0; d < head_dim; d++) dq[qoff + d] = static_cast<T>(dq_acc[d]);
            }
        }
    }
    for (size_t i = 0; i < dk_acc.size(); i++) {
        dk[i] = static_cast<T>(dk_acc[i]);
        dv[i] = static_cast<T>(dv_acc[i]);
    }
}

// ---- SwiGLU --------------------------------------------------------------------------------------------------------

template <typename T>
void swiglu_forward(T *out, const T *gate, const T *up, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++) {
        const double g = static_cast<double>(gate[i]);
        out[i] = static_cast<T>(g / (1.0 + std::exp(-g)) * static_cast<double>(up[i]));
    }
}

template <typename T>
void swiglu_backward(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++) {
        const double g = static_cast<double>(gate[i]), u = static_cast<double>(up[i]), d = static_cast<double>(dout[i]);
        const double sg = 1.0 / (1.0 + std::exp(-g));
        if (dgate) dgate[i] = static_cast<T>(d * u * sg * (1.0 + g * (1.0 - sg)));
        if (dup) dup[i] = static_cast<T>(d * g * sg);
    }
}

// ---- linear --------------------------------------------------------------------------------------------------------

template <typename T>
void linear_forward(T *out, const T *inp, const T *weight, const T *bias, int64_t rows, int64_t in_features,
                    int64_t out_features) {
    FQ_CHECK(rows >= 0 && in_features > 0 && out_features > 0, FQ_STATUS_INVALID_ARGUMENT, "linear_forward: bad sizes");
    ref_gemm_nt(out, inp, weight, rows, in_features, out_features, false);
    if (bias) {
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t o = 0; o < out_features; o++) out[r * out_features + o] += bias[o];
        }
    }
}

template <typename T>
void linear_backward(T *dinp, T *dweight, const T *dout, const T *inp, const T *weight, int64_t rows,
                     int64_t in_features, int64_t out_features) {
    FQ_CHECK(rows >= 0 && in_features > 0 && out_features > 0, FQ_STATUS_INVALID_ARGUMENT, "linear_backward: bad sizes");
    if (dinp) ref_gemm_nn(dinp, dout, weight, rows, out_features, in_features, false);
    if (dweight) ref_gemm_tn(dweight, dout, inp, out_features, rows, in_features, true);
}

// ---- residual ------------------------------------------------------------------------------------------------------

template <typename T>
void residual_forward(T *out, const T *a, const T *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

template <typename T>
void residual_backward(T *da, T *db, const T *dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

#define FQ_INSTANTIATE(T)                                                                                           \
    template void rmsnorm_forward<T>(T *, T *, const T *, const T *, int64_t, int64_t, double);                    \
    template void rmsnorm_backward<T>(T *, T *, const T *, const T *, const T *, const T *, int64_t, int64_t);     \
    template void rope_forward<T>(T *, const T *, const int32_t *, int64_t, int, int, int, double);                \
    template void rope_backward<T>(T *, const T *, const int32_t *, int64_t, int, int, int, double);               \
    template void attention_forward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, int, int, int); \
    template void attention_backward<T>(T *, T *, T *, const T *, const T *, const T *, const T *, const T *,       \
                                        int64_t, int64_t, int, int, int);                                          \
    template void swiglu_forward<T>(T *, const T *, const T *, int64_t, int64_t);                                  \
    template void swiglu_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t);                 \
    template void linear_forward<T>(T *, const T *, const T *, const T *, int64_t, int64_t, int64_t);              \
    template void linear_backward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, int64_t);        \
    template void residual_forward<T>(T *, const T *, const T *, int64_t);                                         \
    template void residual_backward<T>(T *, T *, const T *, int64_t);
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant
