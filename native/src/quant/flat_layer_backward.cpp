// FlatLayer: the backward of the calibration forward (the reverse of flat_layer.cpp's chain) and the export of the
// learned parameters in eval form.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/fake_quant.h"
#include "quant/flat_layer.h"

namespace fq::quant {

using fast::gemm;

template <typename T>
void FlatLayer<T>::linear_backward(int lin, const T *dy, T *dx, bool accumulate) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    const int64_t rows = rows_, D = cfg_.head_dim;
    // ---- input path: dxq = dy Wq, through the activation quantizer (and its LAC)
    std::vector<T> dxq(static_cast<size_t>(rows * s.in));
    gemm<T>(false, false, rows, s.in, s.out, T(1), dy, s.out, L.wq_p, s.in, T(0), dxq.data(), s.in, pool_);
    fast::act_quant_bwd(dxq.data(), grad(lac_[lin]), dxq.data(), L.x_p, param(lac_[lin]), rows, s.in, spec_.bits.a,
                        true, pool_);
    if (accumulate) {
        for (size_t i = 0; i < dxq.size(); i++) dx[i] += dxq[i];
    } else {
        std::copy(dxq.begin(), dxq.end(), dx);
    }
    // ---- weight path: dWq = dy^T xq, back through quantizer, P_v, LWC, the input transform and 1/c
    int fl, fr, n1, n2;
    int64_t diag;
    lin_transform(lin, fl, fr, n1, n2, diag);
    const bool out_trans = lin == kLinV && fk_[kPv];
    if (fl < 0 && fr < 0 && diag < 0 && lwc_[lin] < 0 && !out_trans) return;
    const size_t n = static_cast<size_t>(s.out * s.in);
    std::vector<T> dw(n), tmp(n);
    gemm<T>(true, false, s.out, s.in, rows, T(1), dy, s.out, L.xq_p, s.in, T(0), dw.data(), s.in, pool_);
    if (spec_.bits.w < 16) {
        weight_quant_backward(tmp.data(), dw.data(), L.wc_p, s.out, s.in, spec_.bits.w);
        dw.swap(tmp);
    }
    if (out_trans) {
        // Per head: Wc_h = P_v^T Wl_h, so dWl_h = P_v dWc_h and dP_v += Wl_h dWc_h^T.
        for (int64_t h = 0; h < s.out / D; h++) {
            gemm<T>(false, false, D, s.in, D, T(1), P(kPv), D, dw.data() + h * D * s.in, s.in, T(0),
                    tmp.data() + h * D * s.in, s.in, pool_);
            gemm<T>(false, true, D, D, s.in, T(1), L.wl_p + h * D * s.in, s.in, dw.data() + h * D * s.in, s.in, T(1),
                    dmat_[kPv].data(), D, pool_);
        }
        dw.swap(tmp);
        if (!b_[lin].empty()) {  // the bias b_h P_v: dP_v[b][a] += b_h[b] * sum_rows dy[h*D + a]
            std::vector<double> colsum(static_cast<size_t>(s.out), 0.0);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t o = 0; o < s.out; o++) colsum[o] += static_cast<double>(dy[r * s.out + o]);
            for (int64_t h = 0; h < s.out / D; h++)
                for (int64_t b = 0; b < D; b++)
                    for (int64_t a = 0; a < D; a++)
                        dmat_[kPv][b * D + a] +=
                            static_cast<T>(static_cast<double>(b_[lin][h * D + b]) * colsum[h * D + a]);
        }
    }
    if (lwc_[lin] >= 0) {
        lwc_backward(tmp.data(), grad(lwc_[lin]), dw.data(), L.wt_p, param(lwc_[lin]), s.out, s.in);
        dw.swap(tmp);
    }
    if (fl >= 0 || fr >= 0) {
        kron_backward_w(lin, dw, tmp, fl, fr, n1, n2, diag >= 0);
    }
    if (diag >= 0) {
        channel_unscale_backward(static_cast<T *>(nullptr), grad(diag), dw.data(), w_[lin].data(), param(diag), s.out,
                                 s.in);
    }
}

template <typename T>
void FlatLayer<T>::kron_backward_w(int lin, std::vector<T> &dw, std::vector<T> &tmp, int fl, int fr, int n1, int n2,
                                   bool need_dinp) {
    const LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    fast::kron_backward(need_dinp ? tmp.data() : static_cast<T *>(nullptr), fl >= 0 ? dmat_it_[fl].data() : nullptr,
                        fr >= 0 ? dmat_it_[fr].data() : nullptr, dw.data(), L.wu_p, Pit(fl), Pit(fr), s.out, n1, n2,
                        pool_);
    if (need_dinp) dw.swap(tmp);
}

template <typename T>
void FlatLayer<T>::backward(const T *dout) {
    FQ_CHECK(!last_ori_ && rows_ > 0, FQ_STATUS_INTERNAL, "FlatLayer::backward without a calibration forward");
    const int64_t E = cfg_.n_embd, F = cfg_.n_ff, H = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim;
    const int64_t Q = H * D, KV = Hkv * D, rows = rows_;
    std::fill(grads_.begin(), grads_.end(), T(0));
    for (int f = 0; f < kNumFactors; f++) {
        dmat_[f].assign(mat_[f].size(), T(0));
        dmat_it_[f].assign(mat_[f].size(), T(0));
    }
    auto dm = [&](int f) { return fk_[f] ? dmat_[f].data() : nullptr; };
    // ---- MLP: out = h1 + down(zt)
    std::vector<T> dh1(dout, dout + rows * E), dz(static_cast<size_t>(rows * F));
    linear_backward(kLinDown, dout, dz.data(), false);
    if (fk_[kPdL])
        fast::kron_backward(dz.data(), dm(kPdL), dm(kPdR), dz.data(), zs_p_, P(kPdL), P(kPdR), rows, fk_[kPdL],
                            fk_[kPdR], pool_);
    if (diag_[2] >= 0)
        fast::channel_scale_bwd(dz.data(), grad(diag_[2]), dz.data(), z_.data(), param(diag_[2]), rows, F, pool_);
    std::vector<T> dgate(static_cast<size_t>(rows * F)), dup(static_cast<size_t>(rows * F));
    fast::swiglu_bwd(dgate.data(), dup.data(), dz.data(), gate_.data(), up_.data(), rows * F, pool_);
    std::vector<T> dx2(static_cast<size_t>(rows * E));
    linear_backward(kLinUp, dup.data(), dx2.data(), false);
    linear_backward(kLinGate, dgate.data(), dx2.data(), true);
    if (fk_[kPugL])
        fast::kron_backward(dx2.data(), dm(kPugL), dm(kPugR), dx2.data(), x2s_p_, P(kPugL), P(kPugR), rows, fk_[kPugL],
                            fk_[kPugR], pool_);
    if (diag_[1] >= 0)
        fast::channel_scale_bwd(dx2.data(), grad(diag_[1]), dx2.data(), x2_.data(), param(diag_[1]), rows, E, pool_);
    std::vector<T> dh1n(static_cast<size_t>(rows * E));
    fast::rmsnorm_bwd(dh1n.data(), dx2.data(), h1_.data(), g2_.data(), rstd2_.data(), rows, E, pool_);
    for (size_t i = 0; i < dh1.size(); i++) dh1[i] += dh1n[i];
    // ---- attention: h1 = h0 + o(ao)
    std::vector<T> datt(static_cast<size_t>(rows * Q));
    linear_backward(kLinO, dh1.data(), datt.data(), false);
    if (fk_[kPh])
        fast::kron_backward(datt.data(), dm(kPh), static_cast<T *>(nullptr), datt.data(), att_.data(), P(kPh),
                            static_cast<const T *>(nullptr), rows, (int)H, (int)D, pool_);
    std::vector<T> dq(static_cast<size_t>(rows * Q)), dk(static_cast<size_t>(rows * KV)), dv(dk.size());
    fast::attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), q2_p_, k3_p_, v3_p_, att_.data(),
                             lse_.data(), n_seq_, seq_len_, (int)H, (int)Hkv, (int)D, pool_);
    fast::act_quant_bwd(dv.data(), grad(lac_v_), dv.data(), v_.data(), param(lac_v_), rows * Hkv, D, spec_.bits.v,
                        false, pool_);
    fast::act_quant_bwd(dk.data(), grad(lac_k_), dk.data(), k2_p_, param(lac_k_), rows * Hkv, D, spec_.bits.k, false,
                        pool_);
    if (fk_[kPk]) {
        fast::kron_backward(dk.data(), static_cast<T *>(nullptr), dmat_[kPk].data(), dk.data(), k_.data(),
                            static_cast<const T *>(nullptr), P(kPk), rows, (int)Hkv, (int)D, pool_);
        fast::kron_backward(dq.data(), static_cast<T *>(nullptr), dmat_it_[kPk].data(), dq.data(), q_.data(),
                            static_cast<const T *>(nullptr), Pit(kPk), rows, (int)H, (int)D, pool_);
    }
    fast::rope_apply(dq.data(), pos_.data(), rows, (int)H, (int)D, rope_, true, pool_);
    fast::rope_apply(dk.data(), pos_.data(), rows, (int)Hkv, (int)D, rope_, true, pool_);
    std::vector<T> dxa(static_cast<size_t>(rows * E));
    linear_backward(kLinQ, dq.data(), dxa.data(), false);
    linear_backward(kLinK, dk.data(), dxa.data(), true);
    linear_backward(kLinV, dv.data(), dxa.data(), true);
    if (fk_[kPaL]) {
        const bool need = diag_[0] >= 0;
        fast::kron_backward(need ? dxa.data() : static_cast<T *>(nullptr), dm(kPaL), dm(kPaR), dxa.data(), xs_p_,
                            P(kPaL), P(kPaR), rows, fk_[kPaL], fk_[kPaR], pool_);
    }
    if (diag_[0] >= 0)
        fast::channel_scale_bwd(static_cast<T *>(nullptr), grad(diag_[0]), dxa.data(), x1_.data(), param(diag_[0]),
                                rows, E, pool_);
    // ---- factor parameters from dL/dP and dL/dP^{-T}
    for (int f = 0; f < kNumFactors; f++) {
        const int k = fk_[f];
        if (k == 0) continue;
        if (spec_.direct_inv) {
            T *g = grad(f_m_[f]);
            for (size_t i = 0; i < dmat_[f].size(); i++) g[i] += dmat_[f][i];
            inverse_t_backward(g, dmat_it_[f].data(), param(f_m_[f]), k);
        } else {
            svd_factor_backward(grad(f_qu_[f]), grad(f_qv_[f]), grad(f_s_[f]), dmat_[f].data(), dmat_it_[f].data(),
                                param(f_qu_[f]), param(f_qv_[f]), param(f_s_[f]), k);
        }
    }
}

template <typename T>
void FlatLayer<T>::compute_factor(int f, std::vector<T> &m, std::vector<T> &m_inv_t) const {
    const int k = fk_[f];
    m.resize(static_cast<size_t>(k) * k);
    m_inv_t.resize(m.size());
    if (spec_.direct_inv) {
        std::copy_n(param(f_m_[f]), m.size(), m.begin());
        inverse_t_forward(m_inv_t.data(), m.data(), k);
    } else {
        svd_factor_forward(m.data(), m_inv_t.data(), param(f_qu_[f]), param(f_qv_[f]), param(f_s_[f]), k);
    }
}

template <typename T>
LayerTransforms FlatLayer<T>::export_eval() const {
    auto to_f = [](const T *p, size_t n) {
        std::vector<float> out(n);
        for (size_t i = 0; i < n; i++) out[i] = static_cast<float>(p[i]);
        return out;
    };
    LayerTransforms t;
    std::vector<T> m, mi;
    auto kron = [&](KronTransform &kt, int fl, int64_t diag, int64_t width) {
        if (!fk_[fl]) return;
        kt.n1 = fk_[fl];
        kt.n2 = fk_[fl + 1];
        compute_factor(fl, m, mi);
        kt.left = to_f(m.data(), m.size());
        kt.left_inv_t = to_f(mi.data(), mi.size());
        compute_factor(fl + 1, m, mi);
        kt.right = to_f(m.data(), m.size());
        kt.right_inv_t = to_f(mi.data(), mi.size());
        if (diag >= 0) kt.diag = to_f(param(diag), static_cast<size_t>(width));
    };
    auto single = [&](SingleTransform &st, int f) {
        if (!fk_[f]) return;
        st.k = fk_[f];
        compute_factor(f, m, mi);
        st.m = to_f(m.data(), m.size());
        st.m_inv_t = to_f(mi.data(), mi.size());
    };
    kron(t.pa, kPaL, diag_[0], cfg_.n_embd);
    kron(t.pug, kPugL, diag_[1], cfg_.n_embd);
    kron(t.pd, kPdL, diag_[2], cfg_.n_ff);
    single(t.ph, kPh);
    single(t.pv, kPv);
    single(t.pk, kPk);
    for (int i = 0; i < kNumLinears; i++) {
        if (lwc_[i] >= 0) t.lwc[i] = to_f(param(lwc_[i]), static_cast<size_t>(2 * linear_shape(cfg_, i).out));
        if (lac_[i] >= 0) t.lac_lin[i] = {static_cast<float>(param(lac_[i])[0]), static_cast<float>(param(lac_[i])[1])};
    }
    t.lac = spec_.lac;
    if (lac_k_ >= 0) t.lac_k = {static_cast<float>(param(lac_k_)[0]), static_cast<float>(param(lac_k_)[1])};
    if (lac_v_ >= 0) t.lac_v = {static_cast<float>(param(lac_v_)[0]), static_cast<float>(param(lac_v_)[1])};
    return t;
}

#define FQ_INSTANTIATE(T)                                                                                         \
    template void FlatLayer<T>::linear_backward(int, const T *, T *, bool);                                       \
    template void FlatLayer<T>::kron_backward_w(int, std::vector<T> &, std::vector<T> &, int, int, int, int, bool); \
    template void FlatLayer<T>::backward(const T *);                                                              \
    template void FlatLayer<T>::compute_factor(int, std::vector<T> &, std::vector<T> &) const;                    \
    template LayerTransforms FlatLayer<T>::export_eval() const;
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant
