#include "quant/gptq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/fast_ops.h"

#ifdef FQ_HAVE_CUDA
#include "cuda/gptq_gpu.h"
#endif

namespace fq::quant {

HessianAccumulator::HessianAccumulator(int64_t in_features)
    : in_(in_features),
      sum_(static_cast<size_t>(in_features * in_features), 0.0),
      tmp_(static_cast<size_t>(in_features * in_features)) {}

void HessianAccumulator::add_window(const float *x, int64_t rows, ThreadPool &pool) {
    // One window's X^T X in float through the BLAS (as the official code, which accumulates in fp32), summed in double.
    fast::gemm<float>(true, false, in_, in_, rows, 1.0f, x, in_, x, in_, 0.0f, tmp_.data(), in_, pool);
    for (size_t i = 0; i < sum_.size(); i++) sum_[i] += static_cast<double>(tmp_[i]);
    windows_++;
}

std::vector<double> HessianAccumulator::hessian() const {
    std::vector<double> h(sum_);
    const double f = windows_ > 0 ? 2.0 / static_cast<double>(windows_) : 0.0;
    for (auto &v : h) v *= f;
    return h;
}

namespace {

// Dot product of a[0..n) and b[0..n) with four partial sums (independent chains; the order is fixed).
double dot(const double *a, const double *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

// In place lower Cholesky factor of a [n][n] (only the lower triangle is read; the upper is zeroed).
void cholesky_lower(std::vector<double> &a, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double *aj = a.data() + j * n;
        const double d = aj[j] - dot(aj, aj, j);
        FQ_CHECK(d > 0.0 && std::isfinite(d), FQ_STATUS_NUMERIC,
                 "GPTQ: the damped Hessian is not positive definite (pivot %lld of %lld); increase percdamp",
                 (long long)j, (long long)n);
        const double ljj = std::sqrt(d);
        aj[j] = ljj;
        for (int64_t i = j + 1; i < n; i++) {
            double *ai = a.data() + i * n;
            ai[j] = (ai[j] - dot(ai, aj, j)) / ljj;
        }
        std::fill(aj + j + 1, aj + n, 0.0);
    }
}

// U [n][n] upper triangular with U^T U = H^{-1} (what the official cholesky -> cholesky_inverse ->
// cholesky(upper=True) sequence computes), without forming H^{-1}: with J the order-reversing permutation and
// J H J = L L^T, H^{-1} = (J L^{-1} J)^T (J L^{-1} J), and J L^{-1} J is upper triangular with a positive diagonal,
// so it is that unique factor.
std::vector<double> upper_cholesky_of_inverse(const std::vector<double> &h, int64_t n) {
    std::vector<double> l(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) l[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
    cholesky_lower(l, n);
    // Rows of L^{-1}: row_i = (e_i - sum_{k<i} L[i][k] row_k) / L[i][i]; row_k is zero beyond column k.
    std::vector<double> linv(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; i++) {
        double *row = linv.data() + i * n;
        row[i] = 1.0;
        for (int64_t k = 0; k < i; k++) {
            const double c = l[i * n + k];
            if (c == 0.0) continue;
            const double *rk = linv.data() + k * n;
            for (int64_t j = 0; j <= k; j++) row[j] -= c * rk[j];
        }
        const double inv = 1.0 / l[i * n + i];
        for (int64_t j = 0; j <= i; j++) row[j] *= inv;
    }
    std::vector<double> u(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) u[i * n + j] = linv[(n - 1 - i) * n + (n - 1 - j)];
    return u;
}

}  // namespace

void gptq_quantize(float *w, int64_t out, int64_t in, const std::vector<double> &hessian, int bits, double percdamp,
                   int blocksize, ThreadPool &pool, QuantizedWeight *codes) {
    FQ_CHECK(bits >= 2 && bits <= 8, FQ_STATUS_INVALID_ARGUMENT, "GPTQ needs 2..8 bits, got %d", bits);
    FQ_CHECK(static_cast<int64_t>(hessian.size()) == in * in, FQ_STATUS_INVALID_ARGUMENT, "GPTQ: Hessian size");
    const double qmax = (1 << (bits - 1)) - 1, qlo = -qmax - 1;
    std::vector<double> W(static_cast<size_t>(out * in)), H(hessian);
    for (size_t i = 0; i < W.size(); i++) W[i] = static_cast<double>(w[i]);
    // The per-row scale of the whole weight (weight_quant_forward's formula, in float as that op computes it).
    std::vector<double> scale(static_cast<size_t>(out));
    for (int64_t i = 0; i < out; i++) {
        float mx = 0.0f, mn = 0.0f;
        for (int64_t j = 0; j < in; j++) {
            const float v = static_cast<float>(W[i * in + j]);
            mx = std::max(mx, v);
            mn = std::min(mn, v);
        }
        scale[i] = static_cast<double>(std::max(std::max(std::fabs(mn), mx), 1e-5f) / static_cast<float>(qmax));
    }
    // Dead columns (no input ever reached them) after the scales, as fasterquant orders it.
    for (int64_t j = 0; j < in; j++) {
        if (H[j * in + j] != 0.0) continue;
        H[j * in + j] = 1.0;
        for (int64_t i = 0; i < out; i++) W[i * in + j] = 0.0;
    }
    double mean_diag = 0.0;
    for (int64_t j = 0; j < in; j++) mean_diag += H[j * in + j];
    const double damp = percdamp * mean_diag / static_cast<double>(in);
    for (int64_t j = 0; j < in; j++) H[j * in + j] += damp;
    const std::vector<double> U = upper_cholesky_of_inverse(H, in);

    std::vector<double> Q(W.size()), err;
    std::vector<int8_t> code(W.size());
    for (int64_t i1 = 0; i1 < in; i1 += blocksize) {
        const int64_t i2 = std::min<int64_t>(in, i1 + blocksize), bs = i2 - i1;
        err.assign(static_cast<size_t>(out * bs), 0.0);  // [out][bs]
        for (int64_t i = i1; i < i2; i++) {
            const double d = U[i * in + i];
            for (int64_t r = 0; r < out; r++) {
                double *wr = W.data() + r * in;
                const double s = scale[r];
                const double q = std::min(std::max(std::nearbyint(wr[i] / s), qlo), qmax);
                Q[r * in + i] = s * q;
                code[r * in + i] = static_cast<int8_t>(q);
                const double e = (wr[i] - s * q) / d;
                err[r * bs + (i - i1)] = e;
                const double *ui = U.data() + i * in;
                for (int64_t j = i + 1; j < i2; j++) wr[j] -= e * ui[j];
            }
        }
        if (i2 < in) {  // W[:, i2:] -= Err [out][bs] * U[i1:i2, i2:]
            fast::gemm<double>(false, false, out, in - i2, bs, -1.0, err.data(), bs, U.data() + i1 * in + i2, in, 1.0,
                               W.data() + i2, in, pool);
        }
    }
    for (size_t i = 0; i < Q.size(); i++) w[i] = static_cast<float>(Q[i]);
    if (codes) {
        codes->codes = std::move(code);
        codes->scale.resize(static_cast<size_t>(out));
        for (int64_t i = 0; i < out; i++) codes->scale[i] = static_cast<float>(scale[i]);
    }
}

void gptq_model(QuantizedModel &qm, ThreadPool &pool, const std::vector<int32_t> &windows, const CalibOptions &o,
                CalibrationResult &r, const Progress &progress, int device) {
    const Model &model = *qm.base;
    const ModelConfig &c = model.config;
    const int bits = qm.scheme.bits.w;
    FQ_CHECK(bits < 16, FQ_STATUS_INVALID_ARGUMENT, "GPTQ asked for with 16-bit weights");
    FQ_CHECK(!qm.weights_quantized, FQ_STATUS_INVALID_ARGUMENT, "GPTQ on a model whose weights are already quantized");
    const int64_t n = o.nsamples, L = o.seqlen, E = c.n_embd, KV = c.kv_dim();
    FQ_CHECK(static_cast<int64_t>(windows.size()) >= n * L, FQ_STATUS_INVALID_ARGUMENT,
             "GPTQ needs %lld calibration tokens (%lld windows of %lld), got %zu", (long long)(n * L), (long long)n,
             (long long)L, windows.size());
    for (int64_t i = 0; i < n * L; i++) {
        FQ_CHECK(windows[i] >= 0 && windows[i] < c.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "calibration token %d at index %lld is outside the vocabulary", windows[i], (long long)i);
    }
    if (device >= 0) {
#ifdef FQ_HAVE_CUDA
        cuda::gptq_model_gpu(qm, pool, windows, o, r, progress, device);
        return;
#else
        FQ_FAIL(FQ_STATUS_UNSUPPORTED, "GPTQ on CUDA device %d is not available in this build", device);
#endif
    }
    std::vector<float> inps(static_cast<size_t>(n * L * E)), outs(inps.size()), x(static_cast<size_t>(L * E));
    std::vector<float> kc(static_cast<size_t>(L * KV)), vc(kc.size());
    for (int64_t t = 0; t < n * L; t++)
        std::copy_n(model.weights.tok_embd.data() + int64_t{windows[t]} * E, E, inps.data() + t * E);
    const std::vector<std::vector<int>> groups = {{kLinK, kLinV, kLinQ}, {kLinO}, {kLinUp, kLinGate}, {kLinDown}};
    r.gptq.assign(static_cast<size_t>(c.n_layer), {});
    progress.step("gptq", 0, c.n_layer);
    for (int32_t l = 0; l < c.n_layer; l++) {
        QuantLayer &ql = qm.layers[static_cast<size_t>(l)];
        for (const std::vector<int> &group : groups) {
            std::vector<HessianAccumulator> acc;
            for (int lin : group) acc.emplace_back(linear_shape(c, lin).in);
            const int last = *std::max_element(group.begin(), group.end());  // last one the forward reaches
            LinearInputHook hook = [&](int32_t, int lin, const float *in, int64_t rows) {
                for (size_t g = 0; g < group.size(); g++)
                    if (group[g] == lin) acc[g].add_window(in, rows, pool);
                return lin != last;
            };
            for (int64_t w = 0; w < n; w++) {
                std::copy_n(inps.data() + w * L * E, L * E, x.data());
                quantized_layer_forward(qm, l, pool, x.data(), L, 0, kc.data(), vc.data(), &hook);
                progress.check_cancelled();
            }
            for (size_t g = 0; g < group.size(); g++) {
                const int lin = group[g];
                const LinearShape s = linear_shape(c, lin);
                QuantizedWeight &qw = r.gptq[static_cast<size_t>(l)][static_cast<size_t>(lin)];
                gptq_quantize(ql.lin[lin].w.data(), s.out, s.in, acc[g].hessian(), bits, o.percdamp, o.gptq_blocksize,
                              pool, &qw);
                ql.lin[lin].scale = qw.scale;
                progress.check_cancelled();
            }
        }
        for (int64_t w = 0; w < n; w++) {  // the quantized layer's outputs feed the next layer
            std::copy_n(inps.data() + w * L * E, L * E, outs.data() + w * L * E);
            quantized_layer_forward(qm, l, pool, outs.data() + w * L * E, L, 0, kc.data(), vc.data(), nullptr);
            progress.check_cancelled();
        }
        inps.swap(outs);
        progress.step("gptq", l + 1, c.n_layer);
    }
    qm.weights_quantized = true;
}

}  // namespace fq::quant
