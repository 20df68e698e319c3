#include "quant/trans_param.h"

#include <cmath>
#include <utility>

#include "core/error.h"
#include "quant/quant_ref_gemm.h"

namespace fq::quant {

using detail::ref_gemm_nn;
using detail::ref_gemm_nt;
using detail::ref_gemm_tn;

namespace {

constexpr double kPi = 3.14159265358979323846;

void check_k(int k, const char *what) {
    FQ_CHECK(k > 0 && k <= 65536, FQ_STATUS_INVALID_ARGUMENT, "%s: bad factor size k=%d", what, k);
}

template <typename T>
std::vector<double> to_double(const T *p, size_t n) {
    std::vector<double> out(n);
    for (size_t i = 0; i < n; i++) out[i] = static_cast<double>(p[i]);
    return out;
}

// B = I - A/2 and C = I + A/2 for A = tril(q,-1) - tril(q,-1)^T.
void cayley_operands(std::vector<double> &b, std::vector<double> &c, const double *q, int k) {
    const size_t kk = static_cast<size_t>(k) * k;
    b.assign(kk, 0.0);
    c.assign(kk, 0.0);
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            double a = 0.0;
            if (i > j) a = q[i * k + j];
            if (i < j) a = -q[j * k + i];
            const double id = (i == j) ? 1.0 : 0.0;
            b[i * k + j] = id - 0.5 * a;
            c[i * k + j] = id + 0.5 * a;
        }
    }
}

// U = B^{-1} C in double, with the LU of B kept for the backward's adjoint solve.
struct CayleyDouble {
    LuFactor lu_b;
    std::vector<double> u;
};

CayleyDouble cayley_with_lu(const double *q, int k) {
    std::vector<double> b, c;
    cayley_operands(b, c, q, k);
    LuFactor lu(b.data(), k);
    lu.solve(c.data(), k);
    return CayleyDouble{std::move(lu), std::move(c)};
}

std::vector<double> cayley_double(const double *q, int k) { return cayley_with_lu(q, k).u; }

// dq += dL/dq for U = Cayley(q), given du = dL/dU, all double.
void cayley_backward_double(std::vector<double> &dq, const double *du, const double *q, int k) {
    const CayleyDouble cay = cayley_with_lu(q, k);
    const std::vector<double> &u = cay.u;
    std::vector<double> y(du, du + static_cast<size_t>(k) * k);
    cay.lu_b.solve_transposed(y.data(), k);  // y = B^{-T} du
    // dA = y (I + U)^T / 2
    std::vector<double> da(static_cast<size_t>(k) * k);
    ref_gemm_nt(da.data(), y.data(), u.data(), k, k, k, false);
    for (size_t i = 0; i < da.size(); i++) da[i] = 0.5 * (da[i] + y[i]);
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < i; j++) dq[i * k + j] += da[i * k + j] - da[j * k + i];
    }
}

}  // namespace

// ---- random numbers ------------------------------------------------------------------------------------------------

double NormalRng::uniform_open() {
    return (static_cast<double>(gen_() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double NormalRng::next() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    const double u1 = uniform_open();
    const double u2 = uniform_open();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * kPi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * kPi * u2);
}

template <typename T>
void random_orthogonal(T *q, int k, NormalRng &rng) {
    check_k(k, "random_orthogonal");
    std::vector<double> h(static_cast<size_t>(k) * k);
    for (auto &v : h) v = rng.next();
    // Columns of Q (stored as rows of qc) by Gram-Schmidt twice ("twice is enough" for full orthogonality).
    std::vector<double> qc(static_cast<size_t>(k) * k), v(static_cast<size_t>(k));
    for (int j = 0; j < k; j++) {
        for (int i = 0; i < k; i++) v[i] = h[i * k + j];
        for (int pass = 0; pass < 2; pass++) {
            for (int p = 0; p < j; p++) {
                const double *qp = &qc[static_cast<size_t>(p) * k];
                double r = 0.0;
                for (int i = 0; i < k; i++) r += qp[i] * v[i];
                for (int i = 0; i < k; i++) v[i] -= r * qp[i];
            }
        }
        double norm = 0.0;
        for (int i = 0; i < k; i++) norm += v[i] * v[i];
        norm = std::sqrt(norm);
        FQ_CHECK(norm > 0.0 && std::isfinite(norm), FQ_STATUS_NUMERIC, "random_orthogonal: rank-deficient draw");
        // R[j][j] = norm > 0, so this Q already is the sign-fixed one.
        for (int i = 0; i < k; i++) qc[static_cast<size_t>(j) * k + i] = v[i] / norm;
    }
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) q[i * k + j] = static_cast<T>(qc[static_cast<size_t>(j) * k + i]);
    }
}

template <typename T>
void svd_factor_init(T *q_u, T *q_v, T *s, int k, NormalRng &rng) {
    random_orthogonal(q_u, k, rng);
    random_orthogonal(q_v, k, rng);
    for (int i = 0; i < k; i++) s[i] = T(1);
}

// ---- LU ------------------------------------------------------------------------------------------------------------

LuFactor::LuFactor(const double *a, int k) : k_(k) {
    check_k(k, "LuFactor");
    lu_.assign(a, a + static_cast<size_t>(k) * k);
    perm_.resize(static_cast<size_t>(k));
    for (int i = 0; i < k; i++) perm_[i] = i;
    for (int c = 0; c < k; c++) {
        int piv = c;
        double best = std::fabs(lu_[static_cast<size_t>(c) * k + c]);
        for (int r = c + 1; r < k; r++) {
            const double v = std::fabs(lu_[static_cast<size_t>(r) * k + c]);
            if (v > best) {
                best = v;
                piv = r;
            }
        }
        FQ_CHECK(best > 0.0 && std::isfinite(best), FQ_STATUS_NUMERIC,
                 "LU: matrix of size %d is singular or not finite (column %d)", k, c);
        if (piv != c) {
            for (int j = 0; j < k; j++) std::swap(lu_[static_cast<size_t>(c) * k + j], lu_[static_cast<size_t>(piv) * k + j]);
            std::swap(perm_[c], perm_[piv]);
        }
        const double d = lu_[static_cast<size_t>(c) * k + c];
        for (int r = c + 1; r < k; r++) {
            double &l = lu_[static_cast<size_t>(r) * k + c];
            l /= d;
            if (l == 0.0) continue;
            for (int j = c + 1; j < k; j++) lu_[static_cast<size_t>(r) * k + j] -= l * lu_[static_cast<size_t>(c) * k + j];
        }
    }
}

void LuFactor::solve(double *b, int nrhs) const {
    const int k = k_;
    // P A = L U, so A^{-1} b = U^{-1} L^{-1} (P b).
    std::vector<double> pb(static_cast<size_t>(k) * nrhs);
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < nrhs; j++) pb[static_cast<size_t>(i) * nrhs + j] = b[static_cast<size_t>(perm_[i]) * nrhs + j];
    }
    for (int i = 0; i < k; i++) {
        for (int p = 0; p < i; p++) {
            const double l = lu_[static_cast<size_t>(i) * k + p];
            if (l == 0.0) continue;
            for (int j = 0; j < nrhs; j++) pb[static_cast<size_t>(i) * nrhs + j] -= l * pb[static_cast<size_t>(p) * nrhs + j];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        for (int p = i + 1; p < k; p++) {
            const double u = lu_[static_cast<size_t>(i) * k + p];
            if (u == 0.0) continue;
            for (int j = 0; j < nrhs; j++) pb[static_cast<size_t>(i) * nrhs + j] -= u * pb[static_cast<size_t>(p) * nrhs + j];
        }
        const double d = lu_[static_cast<size_t>(i) * k + i];
        for (int j = 0; j < nrhs; j++) pb[static_cast<size_t>(i) * nrhs + j] /= d;
    }
    std::copy(pb.begin(), pb.end(), b);
}

void LuFactor::solve_transposed(double *b, int nrhs) const {
    const int k = k_;
    // A^T = U^T L^T P, so A^{-T} b = P^T L^{-T} U^{-T} b.
    std::vector<double> w(b, b + static_cast<size_t>(k) * nrhs);
    for (int i = 0; i < k; i++) {  // U^T is lower triangular
        for (int p = 0; p < i; p++) {
            const double u = lu_[static_cast<size_t>(p) * k + i];
            if (u == 0.0) continue;
            for (int j = 0; j < nrhs; j++) w[static_cast<size_t>(i) * nrhs + j] -= u * w[static_cast<size_t>(p) * nrhs + j];
        }
        const double d = lu_[static_cast<size_t>(i) * k + i];
        for (int j = 0; j < nrhs; j++) w[static_cast<size_t>(i) * nrhs + j] /= d;
    }
    for (int i = k - 1; i >= 0; i--) {  // L^T is unit upper triangular
        for (int p = i + 1; p < k; p++) {
            const double l = lu_[static_cast<size_t>(p) * k + i];
            if (l == 0.0) continue;
            for (int j = 0; j < nrhs; j++) w[static_cast<size_t>(i) * nrhs + j] -= l * w[static_cast<size_t>(p) * nrhs + j];
        }
    }
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < nrhs; j++) b[static_cast<size_t>(perm_[i]) * nrhs + j] = w[static_cast<size_t>(i) * nrhs + j];
    }
}

// ---- Cayley --------------------------------------------------------------------------------------------------------

template <typename T>
void cayley_forward(T *u, const T *q, int k) {
    check_k(k, "cayley_forward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> qd = to_double(q, kk);
    const std::vector<double> ud = cayley_double(qd.data(), k);
    for (size_t i = 0; i < kk; i++) u[i] = static_cast<T>(ud[i]);
}

template <typename T>
void cayley_backward(T *dq, const T *du, const T *q, int k) {
    check_k(k, "cayley_backward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> qd = to_double(q, kk), dud = to_double(du, kk);
    std::vector<double> acc(kk, 0.0);
    cayley_backward_double(acc, dud.data(), qd.data(), k);
    for (size_t i = 0; i < kk; i++) dq[i] = static_cast<T>(static_cast<double>(dq[i]) + acc[i]);
}

// ---- SVD factor ----------------------------------------------------------------------------------------------------

template <typename T>
void svd_factor_forward(T *m, T *m_inv_t, const T *q_u, const T *q_v, const T *s, int k) {
    check_k(k, "svd_factor_forward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> qu = to_double(q_u, kk), qv = to_double(q_v, kk);
    const std::vector<double> u = cayley_double(qu.data(), k), v = cayley_double(qv.data(), k);
    std::vector<double> us(kk);
    for (int pass = 0; pass < 2; pass++) {
        T *dst = pass == 0 ? m : m_inv_t;
        if (!dst) continue;
        for (int i = 0; i < k; i++) {
            for (int l = 0; l < k; l++) {
                const double sl = static_cast<double>(s[l]);
                us[static_cast<size_t>(i) * k + l] = u[static_cast<size_t>(i) * k + l] * (pass == 0 ? sl : 1.0 / sl);
            }
        }
        ref_gemm_nt(dst, us.data(), v.data(), k, k, k, false);  // (U diag) V^T
    }
}

template <typename T>
void svd_factor_backward(T *dq_u, T *dq_v, T *ds, const T *dm, const T *dm_inv_t, const T *q_u, const T *q_v,
                         const T *s, int k) {
    check_k(k, "svd_factor_backward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> qu = to_double(q_u, kk), qv = to_double(q_v, kk);
    const std::vector<double> u = cayley_double(qu.data(), k), v = cayley_double(qv.data(), k);
    const std::vector<double> d = dm ? to_double(dm, kk) : std::vector<double>(kk, 0.0);
    const std::vector<double> di = dm_inv_t ? to_double(dm_inv_t, kk) : std::vector<double>(kk, 0.0);
    std::vector<double> dv_(kk), div_(kk), dtu(kk), ditu(kk);
    ref_gemm_nn(dv_.data(), d.data(), v.data(), k, k, k, false);    // dm V
    ref_gemm_nn(div_.data(), di.data(), v.data(), k, k, k, false);  // dm_inv_t V
    ref_gemm_tn(dtu.data(), d.data(), u.data(), k, k, k, false);    // dm^T U
    ref_gemm_tn(ditu.data(), di.data(), u.data(), k, k, k, false);  // dm_inv_t^T U
    std::vector<double> gu(kk), gv(kk);
    for (int l = 0; l < k; l++) {
        const double sl = static_cast<double>(s[l]), inv = 1.0 / sl;
        double dsl = 0.0;
        for (int i = 0; i < k; i++) {
            const size_t il = static_cast<size_t>(i) * k + l;
            gu[il] = dv_[il] * sl + div_[il] * inv;
            gv[il] = dtu[il] * sl + ditu[il] * inv;
            dsl += u[il] * (dv_[il] - div_[il] * inv * inv);
        }
        if (ds) ds[l] = static_cast<T>(static_cast<double>(ds[l]) + dsl);
    }
    if (dq_u) {
        std::vector<double> acc(kk, 0.0);
        cayley_backward_double(acc, gu.data(), qu.data(), k);
        for (size_t i = 0; i < kk; i++) dq_u[i] = static_cast<T>(static_cast<double>(dq_u[i]) + acc[i]);
    }
    if (dq_v) {
        std::vector<double> acc(kk, 0.0);
        cayley_backward_double(acc, gv.data(), qv.data(), k);
        for (size_t i = 0; i < kk; i++) dq_v[i] = static_cast<T>(static_cast<double>(dq_v[i]) + acc[i]);
    }
}

// ---- direct inverse ------------------------------------------------------------------------------------------------

namespace {
std::vector<double> inverse_t_double(const double *m, int k) {
    const size_t kk = static_cast<size_t>(k) * k;
    LuFactor lu(m, k);
    std::vector<double> inv(kk, 0.0);
    for (int i = 0; i < k; i++) inv[static_cast<size_t>(i) * k + i] = 1.0;
    lu.solve(inv.data(), k);
    std::vector<double> inv_t(kk);
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) inv_t[static_cast<size_t>(j) * k + i] = inv[static_cast<size_t>(i) * k + j];
    }
    return inv_t;
}
}  // namespace

template <typename T>
void inverse_t_forward(T *m_inv_t, const T *m, int k) {
    check_k(k, "inverse_t_forward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> md = to_double(m, kk);
    const std::vector<double> it = inverse_t_double(md.data(), k);
    for (size_t i = 0; i < kk; i++) m_inv_t[i] = static_cast<T>(it[i]);
}

template <typename T>
void inverse_t_backward(T *dm, const T *dm_inv_t, const T *m, int k) {
    check_k(k, "inverse_t_backward");
    const size_t kk = static_cast<size_t>(k) * k;
    const std::vector<double> md = to_double(m, kk), g = to_double(dm_inv_t, kk);
    const std::vector<double> it = inverse_t_double(md.data(), k);
    std::vector<double> x(kk), y(kk);
    ref_gemm_nt(x.data(), it.data(), g.data(), k, k, k, false);  // M^{-T} G^T
    ref_gemm_nn(y.data(), x.data(), it.data(), k, k, k, false);  // ... M^{-T}
    for (size_t i = 0; i < kk; i++) dm[i] = static_cast<T>(static_cast<double>(dm[i]) - y[i]);
}

#define FQ_INSTANTIATE(T)                                                                                     \
    template void random_orthogonal<T>(T *, int, NormalRng &);                                               \
    template void svd_factor_init<T>(T *, T *, T *, int, NormalRng &);                                       \
    template void cayley_forward<T>(T *, const T *, int);                                                    \
    template void cayley_backward<T>(T *, const T *, const T *, int);                                        \
    template void svd_factor_forward<T>(T *, T *, const T *, const T *, const T *, int);                     \
    template void svd_factor_backward<T>(T *, T *, T *, const T *, const T *, const T *, const T *, const T *, \
                                         int);                                                               \
    template void inverse_t_forward<T>(T *, const T *, int);                                                 \
    template void inverse_t_backward<T>(T *, const T *, const T *, int);
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant
