// CalibLayer: the backward of the calibration forward (the chain of quant/flat_layer_backward.cpp, op for op, on the
// device), then the factor parameters' gradients on the host from the downloaded dL/dP and dL/dP^{-T}.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <utility>
#include <utility>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/calib_layer.h"
#include "cuda/gemm_f32.h"
#include "quant/trans_param.h"

namespace fq::cuda {

using namespace quant;

void CalibLayer::linear_backward(int lin, const float *dy, float *dx, bool accumulate) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    const int64_t rows = rows_, D = cfg_.head_dim;
    const LayerSpec &sp = host_.spec();
    // ---- input path: dxq = dy Wq, through the activation quantizer (and its LAC)
    float *dxq = sized(dxq_, rows * s.in);
    gemm_f32(false, false, rows, s.in, s.out, 1.0f, dy, s.out, L.wq_p, s.in, 0.0f, dxq, s.in, st());
    calib::act_quant_bwd(dx, accumulate, grad(lac_[lin]), dxq, L.x_p, lac_sig(lac_[lin]), rows, s.in, sp.bits.a, true,
                         ws_, st());
    // ---- weight path: dWq = dy^T xq, back through quantizer, P_v, LWC, the input transform and 1/c
    int fl, fr, n1, n2;
    int64_t diag;
    lin_transform(lin, fl, fr, n1, n2, diag);
    const bool out_trans = lin == kLinV && fk_[kPv];
    if (fl < 0 && fr < 0 && diag < 0 && lwc_[lin] < 0 && !out_trans) return;
    const int64_t n = s.out * s.in;
    float *dw = sized(dw_, n), *tmp = sized(dtmp_, n);
    gemm_f32(true, false, s.out, s.in, rows, 1.0f, dy, s.out, L.xq_p, s.in, 0.0f, dw, s.in, st());
    if (sp.bits.w < 16) {
        calib::weight_quant_bwd(tmp, dw, L.wc_p, s.out, s.in, sp.bits.w, st());
        std::swap(dw, tmp);
    }
    if (out_trans) {
        // Per head: Wc_h = P_v^T Wl_h, so dWl_h = P_v dWc_h and dP_v += Wl_h dWc_h^T (heads in order).
        gemm_f32_batched(false, false, D, s.in, D, 1.0f, P(kPv), D, 0, dw, s.in, D * s.in, 0.0f, tmp, s.in, D * s.in,
                         s.out / D, st());
        for (int64_t h = 0; h < s.out / D; h++) {
            calib::gemm_accumulate(false, true, D, D, s.in, L.wl_p + h * D * s.in, s.in, dw + h * D * s.in, s.in,
                                   dP(kPv), ws_, st());
        }
        std::swap(dw, tmp);
        if (!bv_host_.empty()) {  // the bias b_h P_v: its P_v gradient needs the column sums of dy (host, later)
            float *cs = sized(colsum_v_, 2 * s.out);
            calib::column_sum(reinterpret_cast<double *>(cs), dy, rows, s.out, ws_, st());
        }
    }
    if (lwc_[lin] >= 0) {
        calib::lwc_bwd(tmp, grad(lwc_[lin]), dw, L.wt_p, sig_dev(lwc_[lin]), s.out, s.in, st());
        std::swap(dw, tmp);
    }
    if (fl >= 0 || fr >= 0) {
        calib::kron_bwd(diag >= 0 ? tmp : nullptr, dPit(fl), dPit(fr), dw, L.wu_p, Pit(fl), Pit(fr), s.out, n1, n2,
                        ws_, st());
        if (diag >= 0) std::swap(dw, tmp);
    }
    if (diag >= 0) {
        calib::channel_unscale_bwd(nullptr, grad(diag), dw, w_[lin].as<float>(), param_dev(diag), s.out, s.in, ws_,
                                   st());
    }
}

void CalibLayer::backward(const float *dout) {
    FQ_CHECK(!last_ori_ && rows_ > 0, FQ_STATUS_INTERNAL, "CalibLayer::backward without a calibration forward");
    const int64_t E = cfg_.n_embd, F = cfg_.n_ff, H = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim;
    const int64_t Q = H * D, KV = Hkv * D, rows = rows_;
    const LayerSpec &sp = host_.spec();
    const cudaStream_t cs = static_cast<cudaStream_t>(st());
    FQ_CUDA_CHECK(cudaMemsetAsync(grads_dev_.data(), 0, grads_dev_.n_bytes(), cs));
    if (dmat_dev_.n_bytes()) FQ_CUDA_CHECK(cudaMemsetAsync(dmat_dev_.data(), 0, dmat_dev_.n_bytes(), cs));
    // A factor's dL/dP and dL/dP^{-T} are final at a known point of the chain; from there its parameters' gradients
    // are computed on a host thread while the GPU goes on (the factors of the MLP and of o_proj early, P_k after
    // attention, P_v after v_proj, P_a at the end).
    std::fill(fgrad_.begin(), fgrad_.end(), 0.0f);
    std::vector<std::future<void>> tasks;
    int n_stages = 0;
    auto stage = [&](std::initializer_list<int> factors) {
        bool any = false;
        for (int f : factors) {
            if (!fk_[f]) continue;
            any = true;
            const size_t off = static_cast<size_t>(moff_[f]), n = 2 * static_cast<size_t>(fk_[f]) * fk_[f];
            FQ_CUDA_CHECK(cudaMemcpyAsync(dmat_pin_.as<float>() + off, dmat_dev_.as<float>() + off, n * sizeof(float),
                                          cudaMemcpyDeviceToHost, cs));
            if (f == kPv && !bv_host_.empty()) {
                FQ_CUDA_CHECK(cudaMemcpyAsync(colsum_pin_.data(), colsum_v_.buf.data(),
                                              bv_host_.size() * sizeof(double), cudaMemcpyDeviceToHost, cs));
            }
        }
        if (!any) return;
        cudaEvent_t ev = static_cast<cudaEvent_t>(events_[static_cast<size_t>(n_stages++)]);
        FQ_CUDA_CHECK(cudaEventRecord(ev, cs));
        for (int f : factors) {
            if (!fk_[f]) continue;
            tasks.push_back(std::async(std::launch::async, [this, f, ev] {
                set_device(device_);
                FQ_CUDA_CHECK(cudaEventSynchronize(ev));
                factor_grads(f);
            }));
        }
    };
    // ---- MLP: out = h1 + down(zt)
    float *dh1 = sized(dh1_, rows * E), *dz = sized(dz_, rows * F);
    calib::copy(dh1, dout, rows * E, false, st());
    linear_backward(kLinDown, dout, dz, false);
    if (fk_[kPdL])
        calib::kron_bwd(dz, dP(kPdL), dP(kPdR), dz, zs_p_, P(kPdL), P(kPdR), rows, fk_[kPdL], fk_[kPdR], ws_, st());
    stage({kPdL, kPdR});
    if (diag_[2] >= 0)
        calib::channel_scale_bwd(dz, grad(diag_[2]), dz, z_.buf.as<float>(), param_dev(diag_[2]), rows, F, ws_, st());
    float *dgate = sized(dgate_, rows * F), *dup = sized(dup_, rows * F);
    calib::swiglu_bwd(dgate, dup, dz, gate_.buf.as<float>(), up_.buf.as<float>(), rows * F, st());
    float *dx2 = sized(dx2_, rows * E);
    linear_backward(kLinUp, dup, dx2, false);
    linear_backward(kLinGate, dgate, dx2, true);
    if (fk_[kPugL])
        calib::kron_bwd(dx2, dP(kPugL), dP(kPugR), dx2, x2s_p_, P(kPugL), P(kPugR), rows, fk_[kPugL], fk_[kPugR], ws_,
                        st());
    stage({kPugL, kPugR});
    if (diag_[1] >= 0)
        calib::channel_scale_bwd(dx2, grad(diag_[1]), dx2, x2_.buf.as<float>(), param_dev(diag_[1]), rows, E, ws_,
                                 st());
    calib::rmsnorm_bwd(dh1, dx2, h1_.buf.as<float>(), g2_.as<float>(), rstd2_.buf.as<float>(), rows, E, true, st());
    // ---- attention: h1 = h0 + o(ao)
    float *datt = sized(datt_, rows * Q);
    linear_backward(kLinO, dh1, datt, false);
    const float *att = att_.buf.as<float>();
    if (fk_[kPh]) calib::kron_bwd(datt, dP(kPh), nullptr, datt, att, P(kPh), nullptr, rows, (int)H, (int)D, ws_, st());
    stage({kPh});
    float *dq = sized(dq_, rows * Q), *dk = sized(dk_, rows * KV), *dv = sized(dv_, rows * KV);
    calib::attention_bwd(dq, dk, dv, datt, q2_p_, k3_p_, v3_p_, att, probs_.buf.as<float>(),
                         sized(dscores_, H * seq_len_ * seq_len_), n_seq_, seq_len_, (int)H, (int)Hkv, (int)D, ws_,
                         st());
    calib::act_quant_bwd(dv, false, grad(lac_v_), dv, v_.buf.as<float>(), lac_sig(lac_v_), rows * Hkv, D, sp.bits.v,
                         false, ws_, st());
    calib::act_quant_bwd(dk, false, grad(lac_k_), dk, k2_p_, lac_sig(lac_k_), rows * Hkv, D, sp.bits.k, false, ws_,
                         st());
    const float *q_rot = q_.buf.as<float>(), *k_rot = k_.buf.as<float>();
    if (fk_[kPk]) {
        calib::kron_bwd(dk, nullptr, dP(kPk), dk, k_rot, nullptr, P(kPk), rows, (int)Hkv, (int)D, ws_, st());
        calib::kron_bwd(dq, nullptr, dPit(kPk), dq, q_rot, nullptr, Pit(kPk), rows, (int)H, (int)D, ws_, st());
    }
    stage({kPk});
    const int half = cfg_.rope_dim / 2;
    const bool neox = cfg_.rope_mode == RopeMode::Neox;
    calib::rope(dq, rows, (int)H, (int)D, half, neox, rope_cs_.as<float>(), rope_sn_.as<float>(), seq_len_, true, st());
    calib::rope(dk, rows, (int)Hkv, (int)D, half, neox, rope_cs_.as<float>(), rope_sn_.as<float>(), seq_len_, true,
                st());
    float *dxa = sized(dxa_, rows * E);
    linear_backward(kLinV, dv, dxa, false);  // v first: after it P_v is final
    stage({kPv});
    linear_backward(kLinQ, dq, dxa, true);
    linear_backward(kLinK, dk, dxa, true);
    if (fk_[kPaL]) {
        const bool need = diag_[0] >= 0;
        calib::kron_bwd(need ? dxa : nullptr, dP(kPaL), dP(kPaR), dxa, xs_p_, P(kPaL), P(kPaR), rows, fk_[kPaL],
                        fk_[kPaR], ws_, st());
    }
    if (diag_[0] >= 0)
        calib::channel_scale_bwd(nullptr, grad(diag_[0]), dxa, x1_.buf.as<float>(), param_dev(diag_[0]), rows, E, ws_,
                                 st());
    stage({kPaL, kPaR});
    grads_dev_.download(grads_.data(), grads_.size() * sizeof(float), *stream_);
    const auto t0 = std::chrono::steady_clock::now();
    for (auto &t : tasks) t.get();
    host_factor_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The device left the factor blocks at 0: they are the host's.
    for (int f = 0; f < kNumFactors; f++) {
        const int64_t k = fk_[f], kk = k * k;
        const std::pair<int64_t, int64_t> blocks[] = {{f_qu_[f], kk}, {f_qv_[f], kk}, {f_s_[f], k}, {f_m_[f], kk}};
        for (const auto &[off, n] : blocks) {
            if (k > 0 && off >= 0) std::copy_n(fgrad_.begin() + off, n, grads_.begin() + off);
        }
    }
}

// One factor's parameter gradients (FlatLayer::backward's last loop) into fgrad_, from its dL/dP and dL/dP^{-T} in
// dmat_pin_ (and, for P_v with a v bias, the bias term from the column sums of dL/dv).
void CalibLayer::factor_grads(int f) {
    const std::vector<float> &p = host_.params();
    const int k = fk_[f], D = cfg_.head_dim;
    float *dm = dmat_pin_.as<float>() + moff_[f];
    const float *dmit = dm + int64_t{k} * k;
    if (f == kPv && !bv_host_.empty()) {  // dP_v[b][a] += b_h[b] * sum_rows dy[h*D + a]
        const double *colsum = colsum_pin_.as<double>();
        for (size_t h = 0; h < bv_host_.size() / D; h++)
            for (int b = 0; b < D; b++)
                for (int a = 0; a < D; a++)
                    dm[b * D + a] += static_cast<float>(static_cast<double>(bv_host_[h * D + b]) * colsum[h * D + a]);
    }
    if (host_.spec().direct_inv) {
        float *g = fgrad_.data() + f_m_[f];
        for (int64_t j = 0; j < int64_t{k} * k; j++) g[j] += dm[j];
        inverse_t_backward(g, dmit, p.data() + f_m_[f], k);
    } else {
        svd_factor_backward(fgrad_.data() + f_qu_[f], fgrad_.data() + f_qv_[f], fgrad_.data() + f_s_[f], dm, dmit,
                            p.data() + f_qu_[f], p.data() + f_qv_[f], p.data() + f_s_[f], k);
    }
}

}  // namespace fq::cuda
