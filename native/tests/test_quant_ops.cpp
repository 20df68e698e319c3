// Tests of the calibration building blocks in native/src/quant/: every forward against an independent direct
// computation, every backward against central finite differences in double precision.
//
// Finite differences: h = 1e-6 on smooth ops gives a truncation error ~h^2 |f'''| ~ 1e-12 and a rounding error
// ~1e-16 |f| / h ~ 1e-10, so analytic and numeric gradients must agree to about 1e-8; the checks use
// |a - n| <= 1e-7 + 1e-6 |n|. The quantizers are not differentiable (round); their STE gradients are checked against
// finite differences of an independently written SURROGATE in which every round(v) is replaced by v + delta with
// delta = round(v0) - v0 frozen, and every clamp decision is frozen (bounds inclusive, as torch's clamp backward):
// that surrogate's true derivative is, by construction, the spec's STE formula, scale path included.
// (Longer than the usual ~600 lines: it is the one place that checks every op of native/src/quant/.)
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <functional>
#include <vector>

#include "core/error.h"
#include "quant/fake_quant.h"
#include "quant/kron.h"
#include "quant/layer_ops.h"
#include "quant/optim.h"
#include "quant/trans_param.h"

namespace fq::quant {
namespace {

using Vec = std::vector<double>;

Vec randn(size_t n, NormalRng &rng, double scale = 1.0) {
    Vec v(n);
    for (auto &x : v) x = scale * rng.next();
    return v;
}

std::vector<float> to_float(const Vec &v) { return std::vector<float>(v.begin(), v.end()); }

double dot(const Vec &a, const Vec &b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}

// Central differences of f() with respect to every element of x (x is restored).
Vec numeric_grad(Vec &x, const std::function<double()> &f, double h = 1e-6) {
    Vec g(x.size());
    for (size_t i = 0; i < x.size(); i++) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double fp = f();
        x[i] = x0 - h;
        const double fm = f();
        x[i] = x0;
        g[i] = (fp - fm) / (2 * h);
    }
    return g;
}

void expect_grad(const Vec &analytic, const Vec &numeric, const char *what, double atol = 1e-7, double rtol = 1e-6) {
    ASSERT_EQ(analytic.size(), numeric.size()) << what;
    int bad = 0;
    for (size_t i = 0; i < analytic.size() && bad < 5; i++) {
        if (!(std::fabs(analytic[i] - numeric[i]) <= atol + rtol * std::fabs(numeric[i]))) {
            ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << numeric[i];
            bad++;
        }
    }
}

// Round half to even, written without nearbyint.
double round_half_even(double v) {
    const double f = std::floor(v), d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

double sigm(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// ---- Kronecker transform ----------------------------------------------------------------------------------------------

TEST(QuantKron, DecomposeDimMatchesSpecTable) {
    const int64_t n[] = {4096, 5120, 8192, 11008, 13824, 14336, 28672, 3584, 18944, 27648, 16, 24};
    const int want[][2] = {{64, 64}, {64, 80}, {64, 128}, {86, 128}, {108, 128}, {112, 128},
                           {128, 224}, {56, 64}, {128, 148}, {144, 192}, {4, 4}, {4, 6}};
    for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
        const DecomposeDims d = decompose_dim(n[i]);
        EXPECT_EQ(d.n1, want[i][0]) << n[i];
        EXPECT_EQ(d.n2, want[i][1]) << n[i];
    }
}

TEST(QuantKron, ForwardEqualsExplicitKroneckerProduct) {
    NormalRng rng(1);
    const int n1 = 3, n2 = 5, n = 15, rows = 4;
    const Vec x = randn(rows * n, rng), p1 = randn(n1 * n1, rng), p2 = randn(n2 * n2, rng);
    // K = P1 (x) P2: K[i*n2+j][a*n2+b] = P1[i][a] P2[j][b]; y = x K.
    Vec want(rows * n, 0.0);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < n; c++)
            for (int e = 0; e < n; e++) want[r * n + c] += x[r * n + e] * p1[(e / n2) * n1 + c / n2] * p2[(e % n2) * n2 + c % n2];
    std::vector<float> y(rows * n);
    const auto xf = to_float(x), p1f = to_float(p1), p2f = to_float(p2);
    kron_transform_forward(y.data(), xf.data(), p1f.data(), p2f.data(), rows, n1, n2);
    for (int i = 0; i < rows * n; i++) EXPECT_NEAR(y[i], want[i], 1e-5 * (1 + std::fabs(want[i])));  // fp32 inputs
    // nullptr = identity on that axis.
    Vec y1(rows * n), y2(rows * n), eye2(n2 * n2, 0.0);
    for (int i = 0; i < n2; i++) eye2[i * n2 + i] = 1;
    kron_transform_forward(y1.data(), x.data(), p1.data(), static_cast<const double *>(nullptr), rows, n1, n2);
    kron_transform_forward(y2.data(), x.data(), p1.data(), eye2.data(), rows, n1, n2);
    for (int i = 0; i < rows * n; i++) EXPECT_NEAR(y1[i], y2[i], 1e-12);
    // In place.
    Vec xin = x;
    kron_transform_forward(xin.data(), xin.data(), p1.data(), p2.data(), rows, n1, n2);
    Vec yd(rows * n);
    kron_transform_forward(yd.data(), x.data(), p1.data(), p2.data(), rows, n1, n2);
    for (int i = 0; i < rows * n; i++) EXPECT_DOUBLE_EQ(xin[i], yd[i]);
}

TEST(QuantKron, WeightSideInverseKeepsTheLinearOutput) {
    // x' = x (P1 (x) P2), W' = W (P1 (x) P2)^{-T}  =>  x' W'^T = x W^T.
    NormalRng rng(2);
    const int n1 = 2, n2 = 3, n = 6, rows = 3, outs = 4;
    const Vec x = randn(rows * n, rng), w = randn(outs * n, rng), q1 = randn(4, rng), q2 = randn(9, rng);
    Vec p1(4), p1it(4), p2(9), p2it(9), s1 = {1.3, 0.7}, s2 = {1.1, 0.9, 1.5};
    svd_factor_forward(p1.data(), p1it.data(), q1.data(), randn(4, rng).data(), s1.data(), n1);
    svd_factor_forward(p2.data(), p2it.data(), q2.data(), randn(9, rng).data(), s2.data(), n2);
    Vec xt(rows * n), wt(outs * n), y0(rows * outs), y1(rows * outs);
    kron_transform_forward(xt.data(), x.data(), p1.data(), p2.data(), rows, n1, n2);
    kron_transform_forward(wt.data(), w.data(), p1it.data(), p2it.data(), outs, n1, n2);
    linear_forward(y0.data(), x.data(), w.data(), static_cast<const double *>(nullptr), rows, n, outs);
    linear_forward(y1.data(), xt.data(), wt.data(), static_cast<const double *>(nullptr), rows, n, outs);
    for (int i = 0; i < rows * outs; i++) EXPECT_NEAR(y0[i], y1[i], 1e-12);
}

TEST(QuantKron, BackwardMatchesFiniteDifferences) {
    NormalRng rng(3);
    const int n1 = 3, n2 = 4, n = 12, rows = 3;
    for (int variant = 0; variant < 3; variant++) {  // both factors, P1 only, P2 only
        Vec x = randn(rows * n, rng), p1 = randn(n1 * n1, rng), p2 = randn(n2 * n2, rng), g = randn(rows * n, rng);
        const bool use1 = variant != 2, use2 = variant != 1;
        auto loss = [&] {
            Vec y(rows * n);
            kron_transform_forward(y.data(), x.data(), use1 ? p1.data() : nullptr, use2 ? p2.data() : nullptr, rows, n1, n2);
            return dot(y, g);
        };
        Vec dx(rows * n), dp1(n1 * n1, 0.5), dp2(n2 * n2, 0.5);  // 0.5: the parameter gradients must accumulate
        kron_transform_backward(dx.data(), use1 ? dp1.data() : nullptr, use2 ? dp2.data() : nullptr, g.data(), x.data(),
                                use1 ? p1.data() : nullptr, use2 ? p2.data() : nullptr, rows, n1, n2);
        expect_grad(dx, numeric_grad(x, loss), "kron dx");
        if (use1) {
            for (auto &v : dp1) v -= 0.5;
            expect_grad(dp1, numeric_grad(p1, loss), "kron dp1");
        }
        if (use2) {
            for (auto &v : dp2) v -= 0.5;
            expect_grad(dp2, numeric_grad(p2, loss), "kron dp2");
        }
    }
}

// ---- factor parameterizations --------------------------------------------------------------------------------------------

TEST(QuantTrans, LuSolveAndAdjointSolve) {
    NormalRng rng(4);
    const int k = 7, nrhs = 3;
    const Vec a = randn(k * k, rng), x = randn(k * nrhs, rng);
    Vec b(k * nrhs, 0.0), bt(k * nrhs, 0.0);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < nrhs; j++)
            for (int p = 0; p < k; p++) {
                b[i * nrhs + j] += a[i * k + p] * x[p * nrhs + j];
                bt[i * nrhs + j] += a[p * k + i] * x[p * nrhs + j];
            }
    LuFactor lu(a.data(), k);
    lu.solve(b.data(), nrhs);
    lu.solve_transposed(bt.data(), nrhs);
    for (int i = 0; i < k * nrhs; i++) {
        EXPECT_NEAR(b[i], x[i], 1e-10);
        EXPECT_NEAR(bt[i], x[i], 1e-10);
    }
    const Vec singular(9, 1.0);
    EXPECT_THROW(LuFactor(singular.data(), 3), fq::Error);
}

TEST(QuantTrans, RandomOrthogonalIsTheSignFixedQOfTheGaussianDraw) {
    const int k = 9;
    NormalRng rng(5), replay(5);
    Vec q(k * k);
    random_orthogonal(q.data(), k, rng);
    const Vec h = randn(k * k, replay);  // the same draw, row-major
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double qtq = 0, r = 0;  // (Q^T Q)[i][j] and R = (Q^T H)[i][j]
            for (int p = 0; p < k; p++) {
                qtq += q[p * k + i] * q[p * k + j];
                r += q[p * k + i] * h[p * k + j];
            }
            EXPECT_NEAR(qtq, i == j ? 1.0 : 0.0, 1e-12);
            if (i > j) {
                EXPECT_NEAR(r, 0.0, 1e-10);  // R upper triangular
            }
            if (i == j) {
                EXPECT_GT(r, 0.0);  // with the sign fix
            }
        }
    Vec q2(k * k);
    NormalRng again(5), other(6);
    random_orthogonal(q2.data(), k, again);
    EXPECT_EQ(q, q2);
    random_orthogonal(q2.data(), k, other);
    EXPECT_NE(q, q2);
}

TEST(QuantTrans, CayleyIsOrthogonalAndSolvesItsDefiningEquation) {
    NormalRng rng(7);
    const int k = 16;
    std::vector<float> qf(k * k), u(k * k);
    random_orthogonal(qf.data(), k, rng);
    cayley_forward(u.data(), qf.data(), k);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double utu = 0, lhs = 0;  // U^T U and ((I - A/2) U)[i][j] against (I + A/2)[i][j]
            for (int p = 0; p < k; p++) {
                utu += double(u[p * k + i]) * u[p * k + j];
                const double a = p < i ? qf[i * k + p] : (p > i ? -double(qf[p * k + i]) : 0.0);
                lhs += ((i == p ? 1.0 : 0.0) - 0.5 * a) * u[p * k + j];
            }
            const double aij = j < i ? qf[i * k + j] : (j > i ? -double(qf[j * k + i]) : 0.0);
            EXPECT_NEAR(utu, i == j ? 1.0 : 0.0, 1e-5);
            EXPECT_NEAR(lhs, (i == j ? 1.0 : 0.0) + 0.5 * aij, 1e-5);
        }
    // Only the strictly lower triangle of q matters.
    std::vector<float> q2 = qf, u2(k * k);
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) q2[i * k + j] += 3.0f;
    cayley_forward(u2.data(), q2.data(), k);
    EXPECT_EQ(u, u2);
}

TEST(QuantTrans, CayleyBackwardMatchesFiniteDifferences) {
    NormalRng rng(8);
    const int k = 5;
    Vec q = randn(k * k, rng), g = randn(k * k, rng);
    auto loss = [&] {
        Vec u(k * k);
        cayley_forward(u.data(), q.data(), k);
        return dot(u, g);
    };
    Vec dq(k * k, 0.0);
    cayley_backward(dq.data(), g.data(), q.data(), k);
    expect_grad(dq, numeric_grad(q, loss), "cayley dq");
    for (int i = 0; i < k; i++)
        for (int j = i; j < k; j++) EXPECT_EQ(dq[i * k + j], 0.0);
}

TEST(QuantTrans, SvdFactorInverseAndGradients) {
    NormalRng rng(9);
    const int k = 6;
    // Float: P^{-T} is exact by construction; P^{-T} P^T = (P P^{-1})^T = I.
    std::vector<float> qu(k * k), qv(k * k), s(k), m(k * k), mit(k * k), u(k * k), v(k * k);
    svd_factor_init(qu.data(), qv.data(), s.data(), k, rng);
    for (int i = 0; i < k; i++) EXPECT_EQ(s[i], 1.0f);
    for (int i = 0; i < k; i++) s[i] = float(0.5 + 0.2 * i);
    svd_factor_forward(m.data(), mit.data(), qu.data(), qv.data(), s.data(), k);
    cayley_forward(u.data(), qu.data(), k);
    cayley_forward(v.data(), qv.data(), k);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double eye = 0, want = 0;
            for (int p = 0; p < k; p++) {
                eye += double(mit[i * k + p]) * m[j * k + p];
                want += double(u[i * k + p]) * s[p] * v[j * k + p];
            }
            EXPECT_NEAR(eye, i == j ? 1.0 : 0.0, 1e-5);
            EXPECT_NEAR(m[i * k + j], want, 1e-5);
        }
    // Double: gradients of <Gm, P> + <Gi, P^{-T}> with respect to q_u, q_v and s.
    Vec du = randn(k * k, rng), dv = randn(k * k, rng), ds(k), gm = randn(k * k, rng), gi = randn(k * k, rng);
    for (int i = 0; i < k; i++) ds[i] = 0.6 + 0.15 * i;
    auto loss = [&] {
        Vec md(k * k), mid(k * k);
        svd_factor_forward(md.data(), mid.data(), du.data(), dv.data(), ds.data(), k);
        return dot(md, gm) + dot(mid, gi);
    };
    Vec gqu(k * k, 0.0), gqv(k * k, 0.0), gs(k, 0.0);
    svd_factor_backward(gqu.data(), gqv.data(), gs.data(), gm.data(), gi.data(), du.data(), dv.data(), ds.data(), k);
    expect_grad(gqu, numeric_grad(du, loss), "svd dq_u");
    expect_grad(gqv, numeric_grad(dv, loss), "svd dq_v");
    expect_grad(gs, numeric_grad(ds, loss), "svd ds");
}

TEST(QuantTrans, DirectInverseAndGradient) {
    NormalRng rng(10);
    const int k = 5;
    Vec m = randn(k * k, rng), mit(k * k), g = randn(k * k, rng);
    for (int i = 0; i < k; i++) m[i * k + i] += 3.0;  // well conditioned
    inverse_t_forward(mit.data(), m.data(), k);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double eye = 0;
            for (int p = 0; p < k; p++) eye += mit[i * k + p] * m[j * k + p];  // M^{-T} M^T
            EXPECT_NEAR(eye, i == j ? 1.0 : 0.0, 1e-12);
        }
    auto loss = [&] {
        Vec x(k * k);
        inverse_t_forward(x.data(), m.data(), k);
        return dot(x, g);
    };
    Vec dm(k * k, 0.0);
    inverse_t_backward(dm.data(), g.data(), m.data(), k);
    expect_grad(dm, numeric_grad(m, loss), "inverse_t dm");
}

// ---- smoothing scale -----------------------------------------------------------------------------------------------------

TEST(QuantSmooth, ScaleUnscaleGradientsAndInit) {
    NormalRng rng(11);
    const int rows = 3, cols = 5;
    Vec x = randn(rows * cols, rng), c(cols), g = randn(rows * cols, rng);
    for (int j = 0; j < cols; j++) c[j] = 0.5 + 0.3 * j;
    for (int unscale = 0; unscale < 2; unscale++) {
        auto loss = [&] {
            Vec y(rows * cols);
            if (unscale) channel_unscale_forward(y.data(), x.data(), c.data(), rows, cols);
            else channel_scale_forward(y.data(), x.data(), c.data(), rows, cols);
            return dot(y, g);
        };
        Vec dx(rows * cols), dc(cols, 0.0);
        if (unscale) channel_unscale_backward(dx.data(), dc.data(), g.data(), x.data(), c.data(), rows, cols);
        else channel_scale_backward(dx.data(), dc.data(), g.data(), x.data(), c.data(), rows, cols);
        expect_grad(dx, numeric_grad(x, loss), "smooth dx");
        expect_grad(dc, numeric_grad(c, loss), "smooth dc");
    }
    // SmoothQuant-style init: c = max(wmax^(1-a) / xmax^a, 1e-5).
    Vec xmax(3, kSmoothAbsmaxInit), wmax(3, 0.0);
    const Vec act = {1.0, -8.0, 0.0, -2.0, 4.0, 0.0}, w = {0.5, 0.1, 0.0, -0.25, 0.2, 0.0};
    column_absmax_update(xmax.data(), act.data(), 2, 3);
    column_absmax_update(wmax.data(), w.data(), 2, 3);
    EXPECT_EQ(xmax, (Vec{2.0, 8.0, kSmoothAbsmaxInit}));
    EXPECT_EQ(wmax, (Vec{0.5, 0.2, 0.0}));
    Vec cinit(3);
    smooth_scale_init(cinit.data(), xmax.data(), wmax.data(), 3, kSmoothAlpha);
    EXPECT_NEAR(cinit[0], std::pow(0.5, 0.7) / std::pow(2.0, 0.3), 1e-15);
    EXPECT_NEAR(cinit[1], std::pow(0.2, 0.7) / std::pow(8.0, 0.3), 1e-15);
    EXPECT_EQ(cinit[2], 1e-5);  // 0 / tiny, clamped
}

// ---- LWC and the weight quantizer ------------------------------------------------------------------------------------------

TEST(QuantWeight, LwcForwardAndGradients) {
    NormalRng rng(12);
    const int rows = 4, cols = 7;
    Vec w = randn(rows * cols, rng), clip(2 * rows), g = randn(rows * cols, rng);
    for (auto &v : clip) v = kClipLogitInit + 0.8 * rng.next();
    Vec y(rows * cols);
    lwc_forward(y.data(), w.data(), clip.data(), rows, cols);
    for (int i = 0; i < rows; i++) {
        double mx = -1e300, mn = 1e300;
        for (int j = 0; j < cols; j++) mx = std::max(mx, w[i * cols + j]), mn = std::min(mn, w[i * cols + j]);
        const double hi = mx * sigm(clip[i]), lo = mn * sigm(clip[rows + i]);
        for (int j = 0; j < cols; j++) EXPECT_DOUBLE_EQ(y[i * cols + j], std::min(std::max(w[i * cols + j], lo), hi));
    }
    auto loss = [&] {
        Vec o(rows * cols);
        lwc_forward(o.data(), w.data(), clip.data(), rows, cols);
        return dot(o, g);
    };
    Vec dw(rows * cols), dclip(2 * rows, 0.0);
    lwc_backward(dw.data(), dclip.data(), g.data(), w.data(), clip.data(), rows, cols);
    expect_grad(dw, numeric_grad(w, loss), "lwc dw");
    expect_grad(dclip, numeric_grad(clip, loss), "lwc dclip");
}

// The spec's weight quantizer written directly, and its STE surrogate (see the file comment). frozen_q/inside are
// taken at the expansion point when `freeze` is false and reused when it is true.
struct WeightSurrogate {
    int bits;
    std::vector<double> delta, q0;
    std::vector<char> inside;
    double eval(const Vec &w, int rows, int cols, bool freeze) {
        const double qmax = (1 << (bits - 1)) - 1;
        if (!freeze) delta.assign(w.size(), 0), q0.assign(w.size(), 0), inside.assign(w.size(), 0);
        double out = 0;
        for (int i = 0; i < rows; i++) {
            double mx = 0, mn = 0;  // max(rowmax, 0), min(rowmin, 0)
            for (int j = 0; j < cols; j++) mx = std::max(mx, w[i * cols + j]), mn = std::min(mn, w[i * cols + j]);
            const double s = std::max(std::max(-mn, mx), 1e-5) / qmax;
            for (int j = 0; j < cols; j++) {
                const size_t e = size_t(i) * cols + j;
                const double v = w[e] / s;
                if (!freeze) {
                    const double r = round_half_even(v);
                    delta[e] = r - v;
                    inside[e] = r >= -(qmax + 1) && r <= qmax;
                    q0[e] = std::min(std::max(r, -(qmax + 1)), qmax);
                }
                const double q = inside[e] ? v + delta[e] : q0[e];
                out += weights[e] * s * q;
            }
        }
        return out;
    }
    Vec weights;  // the loss is sum weights * out
};

TEST(QuantWeight, FakeQuantForwardIsTheDirectFormula) {
    NormalRng rng(13);
    const int rows = 5, cols = 9;
    const Vec w = randn(rows * cols, rng);
    for (int bits : {2, 3, 4, 8}) {
        Vec y(rows * cols), scale(rows);
        weight_quant_forward(y.data(), scale.data(), w.data(), rows, cols, bits);
        const double qmax = (1 << (bits - 1)) - 1;
        for (int i = 0; i < rows; i++) {
            double m = 0;
            for (int j = 0; j < cols; j++) m = std::max(m, std::fabs(w[i * cols + j]));
            EXPECT_DOUBLE_EQ(scale[i], m / qmax);
            for (int j = 0; j < cols; j++) {
                const double q = std::min(std::max(round_half_even(w[i * cols + j] / scale[i]), -qmax - 1), qmax);
                EXPECT_DOUBLE_EQ(y[i * cols + j], q * scale[i]) << bits;
            }
        }
    }
    Vec y(rows * cols);
    weight_quant_forward(y.data(), static_cast<double *>(nullptr), w.data(), rows, cols, 16);
    EXPECT_EQ(y, w);
    EXPECT_THROW(weight_quant_forward(y.data(), static_cast<double *>(nullptr), w.data(), rows, cols, 9), fq::Error);
    EXPECT_THROW(weight_quant_forward(y.data(), static_cast<double *>(nullptr), w.data(), rows, cols, 1), fq::Error);
}

TEST(QuantWeight, SteGradientMatchesTheSpecFormula) {
    NormalRng rng(14);
    const int rows = 4, cols = 11;
    for (int bits : {2, 4, 8}) {
        Vec w = randn(rows * cols, rng);
        WeightSurrogate sur{bits, {}, {}, {}, randn(rows * cols, rng)};
        sur.eval(w, rows, cols, false);
        Vec dw(rows * cols);
        weight_quant_backward(dw.data(), sur.weights.data(), w.data(), rows, cols, bits);
        expect_grad(dw, numeric_grad(w, [&] { return sur.eval(w, rows, cols, true); }, 1e-7), "weight quant dw", 1e-6);
    }
    // bits 16 passes the gradient through.
    const Vec g = {1, 2, 3}, w3 = {0.1, 0.2, 0.3};
    Vec d(3);
    weight_quant_backward(d.data(), g.data(), w3.data(), 1, 3, 16);
    EXPECT_EQ(d, g);
}

// ---- activation / KV quantizer -------------------------------------------------------------------------------------------

struct ActSurrogate {
    int bits;
    bool sym;
    Vec weights, delta, q0;
    std::vector<char> inside;
    // Also the direct forward: writes the fake-quantized values into out when given.
    double eval(const Vec &x, const double *lac, int rows, int cols, bool freeze, Vec *out = nullptr) {
        const double qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1, qlo = sym ? -qmax - 1 : 0;
        if (!freeze) delta.assign(x.size(), 0), q0.assign(x.size(), 0), inside.assign(x.size(), 0);
        double loss = 0;
        for (int r = 0; r < rows; r++) {
            double mx = 0, mn = 0;
            for (int j = 0; j < cols; j++) mx = std::max(mx, x[r * cols + j]), mn = std::min(mn, x[r * cols + j]);
            if (lac) mx *= sigm(lac[0]), mn *= sigm(lac[1]);
            double s, z = 0;
            if (sym) {
                s = std::max(-mn, mx) / qmax;
            } else {
                s = (mx - mn) / qmax;
                z = round_half_even(-mn / s);
            }
            for (int j = 0; j < cols; j++) {
                const size_t e = size_t(r) * cols + j;
                const double v = x[e] / s;
                if (!freeze) {
                    const double rq = round_half_even(v) + z;
                    delta[e] = round_half_even(v) - v;
                    inside[e] = rq >= qlo && rq <= qmax;
                    q0[e] = std::min(std::max(rq, qlo), qmax);
                }
                const double q = inside[e] ? v + delta[e] + z : q0[e];
                if (out) (*out)[e] = s * (q - z);
                loss += (weights.empty() ? 0.0 : weights[e]) * s * (q - z);
            }
        }
        return loss;
    }
};

TEST(QuantAct, ForwardIsTheDirectFormulaForTokensAndKvHeads) {
    NormalRng rng(15);
    const int tokens = 3, heads = 2, head_dim = 8, hidden = heads * head_dim;
    const Vec x = randn(tokens * hidden, rng);
    const double lac[2] = {3.1, 2.2};
    for (int bits : {2, 4, 8}) {
        for (int sym = 0; sym < 2; sym++) {
            for (int use_lac = 0; use_lac < 2; use_lac++) {
                // Per token over the hidden vector, and per (token, head) over head_dim.
                for (int per_head = 0; per_head < 2; per_head++) {
                    const int rows = per_head ? tokens * heads : tokens, cols = per_head ? head_dim : hidden;
                    Vec y(x.size()), want(x.size());
                    act_quant_forward(y.data(), x.data(), use_lac ? lac : nullptr, rows, cols, bits, sym);
                    ActSurrogate{bits, bool(sym), {}, {}, {}, {}}.eval(x, use_lac ? lac : nullptr, rows, cols, false, &want);
                    for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y[i], want[i], 1e-14) << bits << sym << use_lac;
                }
            }
        }
    }
    // Rows of zeros: sym gives s = 1, asym the range [-1, 1]; both reproduce the zeros.
    const Vec zeros(8, 0.0);
    Vec y(8, 1.0);
    act_quant_forward(y.data(), zeros.data(), lac, 1, 8, 4, false);
    EXPECT_EQ(y, zeros);
    Vec x16 = x, y16(x.size());
    act_quant_forward(y16.data(), x16.data(), lac, tokens, hidden, 16, true);
    EXPECT_EQ(y16, x16);
}

TEST(QuantAct, SteGradientMatchesTheSpecFormula) {
    NormalRng rng(16);
    const int rows = 4, cols = 10;
    for (int bits : {3, 4}) {
        for (int sym = 0; sym < 2; sym++) {
            // A min-side clip of sigmoid(0.5) = 0.62 and a negative outlier in row 0 make some values saturate.
            Vec x = randn(rows * cols, rng), lac = {kClipLogitInit + 0.5 * rng.next(), 0.5};
            x[0] = -4.0;
            ActSurrogate sur{bits, bool(sym), randn(rows * cols, rng), {}, {}, {}};
            sur.eval(x, lac.data(), rows, cols, false);
            Vec dx(rows * cols), dlac(2, 0.0);
            act_quant_backward(dx.data(), dlac.data(), sur.weights.data(), x.data(), lac.data(), rows, cols, bits, sym);
            auto f = [&] { return sur.eval(x, lac.data(), rows, cols, true); };
            expect_grad(dx, numeric_grad(x, f, 1e-7), sym ? "act sym dx" : "act asym dx", 1e-6);
            expect_grad(dlac, numeric_grad(lac, f, 1e-7), sym ? "act sym dlac" : "act asym dlac", 1e-6);
            // Saturated values get no gradient of their own.
            int saturated = 0;
            for (char in : sur.inside) saturated += !in;
            EXPECT_GT(saturated, 0);
        }
    }
}

TEST(QuantAct, TiedMaximaShareTheScaleGradientEvenly) {
    // amax spreads its gradient evenly over ties (torch), so the two maxima get identical gradients.
    const Vec x = {1.0, -0.3, 1.0, 0.2}, g = {0.3, 0.1, 0.3, -0.7};
    Vec dx(4);
    act_quant_backward(dx.data(), static_cast<double *>(nullptr), g.data(), x.data(), static_cast<const double *>(nullptr),
                       1, 4, 4, true);
    EXPECT_DOUBLE_EQ(dx[0], dx[2]);
    // By hand: s = 1/7, q = {7, -2, 7, 1}, v = {7, -2.1, 7, 1.4}; every element is inside, so
    // gs = sum g (q - v) = 0.1*0.1 + (-0.7)*(-0.4) = 0.29; ds/dxmax = 1/7 shared by the two tied maxima.
    EXPECT_NEAR(dx[0], 0.3 + 0.29 / 7 / 2, 1e-12);
    EXPECT_NEAR(dx[1], 0.1, 1e-12);
    // torch.maximum(|xmin|, xmax) with |xmin| == xmax splits the scale gradient in half between the two ends:
    // s = 0.5/7, v = {7, -7, 1.4}, q = {7, -7, 1}, gs = 1.0 * (1 - 1.4) = -0.4, d s / d m = 1/7.
    const Vec x2 = {0.5, -0.5, 0.1}, g2 = {0.2, 0.3, 1.0};
    Vec dx2(3);
    act_quant_backward(dx2.data(), static_cast<double *>(nullptr), g2.data(), x2.data(),
                       static_cast<const double *>(nullptr), 1, 3, 4, true);
    EXPECT_NEAR(dx2[0], 0.2 - 0.4 / 7 / 2, 1e-12);
    EXPECT_NEAR(dx2[1], 0.3 + 0.4 / 7 / 2, 1e-12);  // through |xmin|: times sign(xmin) = -1
    EXPECT_NEAR(dx2[2], 1.0, 1e-12);
}

// ---- decoder ops ------------------------------------------------------------------------------------------------------

TEST(QuantLayerOps, RmsNormForwardAndGradients) {
    NormalRng rng(17);
    const int rows = 3, cols = 6;
    Vec x = randn(rows * cols, rng), w = randn(cols, rng), g = randn(rows * cols, rng);
    const double eps = 1e-5;
    auto run = [&](Vec &y) {
        Vec rstd(rows);
        rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, cols, eps);
        return rstd;
    };
    Vec y(rows * cols);
    const Vec rstd = run(y);
    for (int r = 0; r < rows; r++) {
        double ms = 0;
        for (int j = 0; j < cols; j++) ms += x[r * cols + j] * x[r * cols + j] / cols;
        for (int j = 0; j < cols; j++) EXPECT_NEAR(y[r * cols + j], x[r * cols + j] / std::sqrt(ms + eps) * w[j], 1e-12);
    }
    auto loss = [&] {
        Vec o(rows * cols);
        run(o);
        return dot(o, g);
    };
    Vec dx(rows * cols), dw(cols, 0.0);
    rmsnorm_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), rows, cols);
    expect_grad(dx, numeric_grad(x, loss), "rmsnorm dx");
    expect_grad(dw, numeric_grad(w, loss), "rmsnorm dw");
}

TEST(QuantLayerOps, RopeRotatesConsecutivePairsAndPassesTheRest) {
    NormalRng rng(18);
    const int rows = 4, heads = 2, head_dim = 10, rope_dim = 6;
    const double base = 10000.0;
    Vec x = randn(rows * heads * head_dim, rng), g = randn(x.size(), rng), y(x.size());
    const std::vector<int32_t> pos = {0, 3, 7, 100};
    rope_forward(y.data(), x.data(), pos.data(), rows, heads, head_dim, rope_dim, base);
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < head_dim / 2; i++) {
                const size_t e = (size_t(r) * heads + h) * head_dim + 2 * i;
                std::complex<double> z(x[e], x[e + 1]);
                if (2 * i < rope_dim) z *= std::polar(1.0, pos[r] * std::pow(base, -2.0 * i / rope_dim));
                EXPECT_NEAR(y[e], z.real(), 1e-12);
                EXPECT_NEAR(y[e + 1], z.imag(), 1e-12);
            }
    auto loss = [&] {
        Vec o(x.size());
        rope_forward(o.data(), x.data(), pos.data(), rows, heads, head_dim, rope_dim, base);
        return dot(o, g);
    };
    Vec dx(x.size());
    rope_backward(dx.data(), g.data(), pos.data(), rows, heads, head_dim, rope_dim, base);
    expect_grad(dx, numeric_grad(x, loss), "rope dx");
}

// Naive causal GQA in double: explicit score matrix with a -inf mask and K/V repeated per query head.
Vec naive_attention(const Vec &q, const Vec &k, const Vec &v, int n_seq, int t_len, int nh, int nkv, int d) {
    Vec out(q.size(), 0.0);
    for (int b = 0; b < n_seq; b++)
        for (int h = 0; h < nh; h++) {
            const int hk = h / (nh / nkv);
            for (int t = 0; t < t_len; t++) {
                Vec s(t_len);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < t_len; j++) {
                    s[j] = -INFINITY;
                    if (j > t) continue;
                    s[j] = 0;
                    for (int e = 0; e < d; e++) s[j] += q[((b * t_len + t) * nh + h) * d + e] * k[((b * t_len + j) * nkv + hk) * d + e];
                    s[j] /= std::sqrt(double(d));
                    mx = std::max(mx, s[j]);
                }
                for (int j = 0; j < t_len; j++) sum += (s[j] = std::exp(s[j] - mx));
                for (int j = 0; j < t_len; j++)
                    for (int e = 0; e < d; e++) out[((b * t_len + t) * nh + h) * d + e] += s[j] / sum * v[((b * t_len + j) * nkv + hk) * d + e];
            }
        }
    return out;
}

TEST(QuantLayerOps, AttentionMatchesNaiveAndGradients) {
    NormalRng rng(19);
    const int n_seq = 2, t_len = 5, nh = 4, nkv = 2, d = 3;
    Vec q = randn(n_seq * t_len * nh * d, rng), k = randn(n_seq * t_len * nkv * d, rng), v = randn(k.size(), rng);
    const Vec want = naive_attention(q, k, v, n_seq, t_len, nh, nkv, d);
    // FP32 op against the double reference: inputs rounded to fp32 (rel 6e-8), accumulation in double inside, so
    // the outputs agree to a few fp32 ulps.
    const auto qf = to_float(q), kf = to_float(k), vf = to_float(v);
    std::vector<float> of(q.size()), lf(n_seq * nh * t_len);
    attention_forward(of.data(), lf.data(), qf.data(), kf.data(), vf.data(), n_seq, t_len, nh, nkv, d);
    for (size_t i = 0; i < q.size(); i++) EXPECT_NEAR(of[i], want[i], 2e-6 * (1 + std::fabs(want[i])));
    const Vec g = randn(q.size(), rng);
    Vec lse(n_seq * nh * t_len);
    auto loss = [&] {
        Vec o(q.size());
        attention_forward(o.data(), lse.data(), q.data(), k.data(), v.data(), n_seq, t_len, nh, nkv, d);
        return dot(o, g);
    };
    loss();
    Vec dq(q.size()), dk(k.size()), dv(v.size());
    attention_backward(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(), lse.data(), n_seq, t_len,
                       nh, nkv, d);
    expect_grad(dq, numeric_grad(q, loss), "attention dq");
    expect_grad(dk, numeric_grad(k, loss), "attention dk");
    expect_grad(dv, numeric_grad(v, loss), "attention dv");
}

TEST(QuantLayerOps, SwigluLinearResidualGradients) {
    NormalRng rng(20);
    const int rows = 3, in = 4, out = 5;
    Vec gate = randn(rows * out, rng), up = randn(rows * out, rng), g = randn(rows * out, rng);
    auto swi = [&] {
        Vec o(rows * out);
        swiglu_forward(o.data(), gate.data(), up.data(), rows, out);
        return dot(o, g);
    };
    Vec dg(rows * out), du(rows * out);
    swiglu_backward(dg.data(), du.data(), g.data(), gate.data(), up.data(), rows, out);
    expect_grad(dg, numeric_grad(gate, swi), "swiglu dgate");
    expect_grad(du, numeric_grad(up, swi), "swiglu dup");

    Vec x = randn(rows * in, rng), w = randn(out * in, rng), b = randn(out, rng);
    auto lin = [&] {
        Vec o(rows * out);
        linear_forward(o.data(), x.data(), w.data(), b.data(), rows, in, out);
        return dot(o, g);
    };
    Vec y(rows * out);
    linear_forward(y.data(), x.data(), w.data(), b.data(), rows, in, out);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            EXPECT_NEAR(y[r * out + o], s, 1e-12);
        }
    Vec dx(rows * in), dw(out * in, 0.0);
    linear_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rows, in, out);
    expect_grad(dx, numeric_grad(x, lin), "linear dx");
    expect_grad(dw, numeric_grad(w, lin), "linear dw");

    Vec a = {1, 2}, c = {3, 4}, r(2), da = {1, 1}, dc = {0, 0};
    residual_forward(r.data(), a.data(), c.data(), 2);
    EXPECT_EQ(r, (Vec{4, 6}));
    residual_backward(da.data(), dc.data(), Vec{0.5, -1}.data(), 2);
    EXPECT_EQ(da, (Vec{1.5, 0}));  // accumulated
    EXPECT_EQ(dc, (Vec{0.5, -1}));
}

// The float instantiations run the same code with fp32 storage (accumulations stay in double), so on O(1) data
// their results match the double ones to about cond * 6e-8; 2e-5 relative + 2e-5 absolute leaves margin for the
// cond ~ 10-100 of these random matrices.
TEST(QuantLayerOps, Fp32InstantiationsAgreeWithDouble) {
    NormalRng rng(22);
    auto expect_match = [](const std::vector<float> &f, const Vec &d, const char *what) {
        ASSERT_EQ(f.size(), d.size());
        for (size_t i = 0; i < d.size(); i++) EXPECT_NEAR(f[i], d[i], 2e-5 * (1 + std::fabs(d[i]))) << what << i;
    };
    const int k = 6, rows = 4, n1 = 2, n2 = 3;
    const Vec qu = randn(k * k, rng), qv = randn(k * k, rng), gm = randn(k * k, rng), gi = randn(k * k, rng);
    Vec s(k);
    for (int i = 0; i < k; i++) s[i] = 0.8 + 0.1 * i;
    Vec dqu(k * k, 0.0), dqv(k * k, 0.0), ds(k, 0.0);
    std::vector<float> fqu(k * k, 0.0f), fqv(k * k, 0.0f), fds(k, 0.0f);
    svd_factor_backward(dqu.data(), dqv.data(), ds.data(), gm.data(), gi.data(), qu.data(), qv.data(), s.data(), k);
    svd_factor_backward(fqu.data(), fqv.data(), fds.data(), to_float(gm).data(), to_float(gi).data(), to_float(qu).data(),
                        to_float(qv).data(), to_float(s).data(), k);
    expect_match(fqu, dqu, "svd dq_u");
    expect_match(fds, ds, "svd ds");
    const Vec x = randn(rows * n1 * n2, rng), p1 = randn(n1 * n1, rng), p2 = randn(n2 * n2, rng), g = randn(x.size(), rng);
    Vec dx(x.size()), dp1(n1 * n1, 0.0), dp2(n2 * n2, 0.0);
    std::vector<float> fdx(x.size()), fdp1(n1 * n1, 0.0f), fdp2(n2 * n2, 0.0f);
    kron_transform_backward(dx.data(), dp1.data(), dp2.data(), g.data(), x.data(), p1.data(), p2.data(), rows, n1, n2);
    kron_transform_backward(fdx.data(), fdp1.data(), fdp2.data(), to_float(g).data(), to_float(x).data(),
                            to_float(p1).data(), to_float(p2).data(), rows, n1, n2);
    expect_match(fdx, dx, "kron dx");
    expect_match(fdp1, dp1, "kron dp1");
    expect_match(fdp2, dp2, "kron dp2");
    const Vec clip = {4.0, 3.0, 4.5, 2.0, 4.0, 3.5, 1.0, 4.0};  // [2][rows]
    Vec dw(x.size()), dclip(2 * rows, 0.0);
    std::vector<float> fdw(x.size()), fdclip(2 * rows, 0.0f);
    lwc_backward(dw.data(), dclip.data(), g.data(), x.data(), clip.data(), rows, n1 * n2);
    lwc_backward(fdw.data(), fdclip.data(), to_float(g).data(), to_float(x).data(), to_float(clip).data(), rows, n1 * n2);
    expect_match(fdw, dw, "lwc dw");
    expect_match(fdclip, dclip, "lwc dclip");
}

// ---- loss, AdamW, schedule -------------------------------------------------------------------------------------------------

TEST(QuantOptim, MseAndNormalizedGradient) {
    NormalRng rng(21);
    Vec p = randn(12, rng);
    const Vec t = randn(12, rng);
    const double mse = mse_loss_forward(p.data(), t.data(), 12);
    double want = 0;
    for (int i = 0; i < 12; i++) want += (p[i] - t[i]) * (p[i] - t[i]) / 12;
    EXPECT_NEAR(mse, want, 1e-14);
    Vec g(12), gn(12);
    mse_loss_backward(g.data(), p.data(), t.data(), 12, mse, false);
    mse_loss_backward(gn.data(), p.data(), t.data(), 12, mse, true);
    expect_grad(g, numeric_grad(p, [&] { return mse_loss_forward(p.data(), t.data(), 12); }), "mse");
    // loss / loss.detach() has the gradient of log(loss).
    expect_grad(gn, numeric_grad(p, [&] { return std::log(mse_loss_forward(p.data(), t.data(), 12)); }), "log mse");
}

TEST(QuantOptim, AdamWMatchesHandComputedSteps) {
    // p0 = 1, lr = 0.1, wd = 0.01, grads 0.5 then -0.25, betas (0.9, 0.999), eps 1e-8.
    // Step 1: p = 1 * (1 - 0.001) = 0.999; m = 0.05; v = 0.00025; m_hat = 0.5, v_hat = 0.25;
    //         p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002
    // Step 2: p = 0.899000002 * 0.999 = 0.898101002; m = 0.045 - 0.025 = 0.02; v = 0.00024975 + 0.0000625 = 0.00031225;
    //         m_hat = 0.02 / (1 - 0.81) = 0.1052632; v_hat = 0.00031225 / (1 - 0.998001) = 0.1562031, sqrt = 0.3952254;
    //         p = 0.898101002 - 0.1 * 0.1052632 / 0.3952254 = 0.8714673
    // The op stores float, so the expected values hold to a few fp32 ulps (6e-8 near 0.9).
    float p = 1.0f, m = 0.0f, v = 0.0f;
    const AdamWConfig cfg;
    float g = 0.5f;
    adamw_step(&p, &m, &v, &g, 1, 1, 0.1, cfg);
    EXPECT_NEAR(p, 0.899000002, 3e-7);
    EXPECT_NEAR(m, 0.05, 1e-8);
    EXPECT_NEAR(v, 0.00025, 1e-10);
    g = -0.25f;
    adamw_step(&p, &m, &v, &g, 1, 2, 0.1, cfg);
    EXPECT_NEAR(p, 0.8714673, 3e-7);
    // Weight decay alone (zero gradient, zero moments) shrinks by exactly (1 - lr * wd).
    double pd = 2.0, md = 0.0, vd = 0.0, gd = 0.0;
    adamw_step(&pd, &md, &vd, &gd, 1, 1, 0.5, cfg);
    EXPECT_DOUBLE_EQ(pd, 2.0 * (1 - 0.5 * 0.01));
}

TEST(QuantOptim, CosineScheduleMatchesTorchRecursion) {
    const double base = 5e-3, eta = 5e-6;
    const int64_t total = 480;
    EXPECT_DOUBLE_EQ(cosine_lr(base, eta, 0, total), base);
    EXPECT_NEAR(cosine_lr(base, eta, total / 2, total), (base + eta) / 2, 1e-15);
    EXPECT_NEAR(cosine_lr(base, eta, total, total), eta, 1e-15);
    // torch's CosineAnnealingLR.get_lr recursion, stepped once per iteration.
    double lr = base;
    const double pi = 3.14159265358979323846;
    for (int64_t t = 1; t <= total; t++) {
        lr = (1 + std::cos(pi * t / total)) / (1 + std::cos(pi * (t - 1) / total)) * (lr - eta) + eta;
        ASSERT_NEAR(cosine_lr(base, eta, t, total), lr, 1e-12) << t;
    }
}

}  // namespace
}  // namespace fq::quant
