// One decoder layer under FlatQuant calibration: its learnable parameters, the calibration-time forward (spec
// section 1.2) over a batch of windows and the backward of that forward, built from the ops of fake_quant.h,
// layer_ops.h, trans_param.h and the BLAS-backed products of fast_ops.h (the chain is the one of
// native/tests/test_quant_layer.cpp, which checks the ops themselves).
//
// T is float for calibration and double for gradient checks. The model's weights are frozen: gradients reach the
// transform factors (through both the activation path and the transformed weights), the smoothing scales, the LWC
// and the LAC logits.
//
// Size letters: rows = n_seq * seq_len tokens (windows one after another, each at positions 0..seq_len-1),
// E = n_embd, F = n_ff, H / Hkv = query / KV heads, D = head_dim.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/fast_ops.h"
#include "quant/quant_config.h"
#include "quant/trans_param.h"
#include "quant/transform_set.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant {

// Which pieces a layer has (the official creation rules of spec section 1.1, or anything a test asks for).
struct LayerSpec {
    QuantBits bits;
    bool pa = false, pug = false, pd = false;  // Kronecker transforms (hidden / hidden / intermediate)
    bool ph = false, pv = false, pk = false;   // single-axis transforms
    bool add_diag = false;                     // smoothing scales on the present Kronecker transforms
    bool lwc = false, lac = false, direct_inv = false;
};
// FlatQuant's rules: P_a, P_h, P_ug, P_d when w or a < 16; P_v when additionally v < 16; P_k when k < 16; LWC only
// where weights are quantized.
LayerSpec flatquant_layer_spec(const QuantScheme &s, const CalibOptions &o);

// Running per-channel |x| maxima of the inputs of the three smoothed transforms (start: kSmoothAbsmaxInit).
struct SmoothStats {
    std::vector<double> attn_in;  // [E] q/k/v input (the input_layernorm output)
    std::vector<double> mlp_in;   // [E] up/gate input
    std::vector<double> down_in;  // [F] down_proj input
};
SmoothStats smooth_stats_init(const ModelConfig &c);

// The factors of the layer in a fixed order.
enum FactorId : int { kPaL = 0, kPaR, kPugL, kPugR, kPdL, kPdR, kPh, kPv, kPk, kNumFactors };

// The input transform of linear `lin`'s weight path: left/right factor ids (or -1), the Kronecker split n1 x n2 and
// the offset of its smoothing scales (or -1), given the factor sizes fk (0 = absent) and the parameter offsets of the
// smoothing scales of P_a, P_ug, P_d. o_proj's is P_h (x) P_v over heads x head_dim. Shared by the CPU and GPU layers.
struct LinearTransform {
    int fl = -1, fr = -1, n1 = 1, n2 = 1;
    int64_t diag = -1;
};
LinearTransform linear_transform(int lin, const std::array<int, kNumFactors> &fk, const std::array<int64_t, 3> &diag,
                                 const ModelConfig &c);

template <typename T>
class FlatLayer {
  public:
    // Copies the layer's weights to T. rope_freq_factors as in ModelWeights (may be empty).
    FlatLayer(const ModelConfig &c, const LayerWeights &w, const std::vector<float> &rope_freq_factors,
              const LayerSpec &spec, ThreadPool &pool);

    struct Block {
        std::string name;  // e.g. "pa.l.qu", "pd.c", "lwc.q_proj", "lac.k_cache"
        size_t offset, size;
        bool clip;  // LWC/LAC logits: the 10x learning-rate group
    };
    const std::vector<Block> &blocks() const { return blocks_; }
    std::vector<T> &params() { return params_; }
    const std::vector<T> &params() const { return params_; }
    const std::vector<T> &grads() const { return grads_; }
    const LayerSpec &spec() const { return spec_; }

    // The official initialization: every factor from rng in FactorId order (SVD: svd_factor_init, i.e. U = Cayley of
    // a Haar draw and s = 1; direct: a Haar-random orthogonal matrix), smoothing scales sq_style from stats and the
    // weight maxima (all 1 when stats is nullptr), clipping logits kClipLogitInit.
    void init(NormalRng &rng, const SmoothStats *stats, double diag_alpha);

    // out [rows][E] = the layer applied to h0 [rows][E]. ori: the original FP layer (no transform, quantizer or
    // clip), which also updates stats when given; otherwise the quantized calibration forward, which keeps what
    // backward needs.
    void forward(T *out, const T *h0, int64_t n_seq, int64_t seq_len, bool ori, SmoothStats *stats);
    // grads (=) from dout [rows][E] = dLoss/d(out) of the last non-ori forward.
    void backward(const T *dout);

    // The current parameters in eval form (matrices, inverse-transposes, scales, logits) as FP32.
    LayerTransforms export_eval() const;

  private:
    struct LinCache {
        std::vector<T> wu, wt, wl, wc, wq, bias;  // weight path: /c, transformed, clipped, out-transformed, quantized
        const T *wu_p = nullptr, *wt_p = nullptr, *wl_p = nullptr, *wc_p = nullptr, *wq_p = nullptr;
        const T *bias_p = nullptr;                // effective bias [out] or nullptr
        std::vector<T> xq;                        // act-quantized input [rows][in]
        const T *x_p = nullptr, *xq_p = nullptr;  // input before / after act quantization
    };

    const T *P(int f) const { return f < 0 || mat_[f].empty() ? nullptr : mat_[f].data(); }
    const T *Pit(int f) const { return f < 0 || mat_it_[f].empty() ? nullptr : mat_it_[f].data(); }
    void compute_factor(int f, std::vector<T> &m, std::vector<T> &m_inv_t) const;
    T *param(int64_t off) { return off < 0 ? nullptr : params_.data() + off; }
    const T *param(int64_t off) const { return off < 0 ? nullptr : params_.data() + off; }
    T *grad(int64_t off) { return off < 0 ? nullptr : grads_.data() + off; }
    int64_t add_block(const std::string &name, size_t n, bool clip);
    void factor_matrices();
    void weight_forward(int lin, bool ori);
    void linear_forward(int lin, const T *x, T *y, bool ori, T beta);
    // dx (+= when accumulate, else =) gets the linear's input gradient; parameter gradients are accumulated.
    void linear_backward(int lin, const T *dy, T *dx, bool accumulate);
    // The weight-path Kronecker backward of one linear: dw (the gradient w.r.t. the transformed weight) becomes the
    // gradient w.r.t. W / c when need_dinp; the factor gradients go to dmat_it_.
    void kron_backward_w(int lin, std::vector<T> &dw, std::vector<T> &tmp, int fl, int fr, int n1, int n2,
                         bool need_dinp);
    // The input transform of a linear's weight path: factor ids (or -1) and the Kronecker split.
    void lin_transform(int lin, int &fl, int &fr, int &n1, int &n2, int64_t &diag) const;

    ModelConfig cfg_;
    LayerSpec spec_;
    ThreadPool &pool_;
    std::array<std::vector<T>, kNumLinears> w_;  // frozen weights [out][in]
    std::array<std::vector<T>, 3> b_;            // q/k/v biases or empty
    std::vector<T> g1_, g2_;                     // RMSNorm gains [E]
    std::vector<float> rope_ff_;
    fast::RopeTable rope_;
    std::vector<int32_t> pos_;

    std::vector<T> params_, grads_;
    std::vector<Block> blocks_;
    std::array<int, kNumFactors> fk_{};                                   // factor sizes (0 = absent)
    std::array<int64_t, kNumFactors> f_qu_{}, f_qv_{}, f_s_{}, f_m_{};    // parameter offsets, -1 if absent
    std::array<int64_t, 3> diag_{};                                       // pa.c, pug.c, pd.c
    std::array<int64_t, kNumLinears> lwc_{}, lac_{};
    int64_t lac_k_ = -1, lac_v_ = -1;
    std::array<std::vector<T>, kNumFactors> mat_, mat_it_, dmat_, dmat_it_;

    // Forward state of the last non-ori call.
    int64_t n_seq_ = 0, seq_len_ = 0, rows_ = 0;
    std::array<LinCache, kNumLinears> lc_;
    bool last_ori_ = true;
    std::vector<T> x1_, rstd1_, xs_, xa_, q_, k_, v_, q2_, k2_, k3_, v3_, att_, lse_, ao_, h1_;  // q_, k_ after RoPE
    std::vector<T> x2_, rstd2_, x2s_, x2t_, up_, gate_, z_, zs_, zt_;
    const T *xs_p_ = nullptr, *xa_p_ = nullptr, *q2_p_ = nullptr, *k2_p_ = nullptr, *k3_p_ = nullptr;
    const T *v3_p_ = nullptr, *ao_p_ = nullptr;
    const T *x2s_p_ = nullptr, *x2t_p_ = nullptr, *zs_p_ = nullptr, *zt_p_ = nullptr;
};

}  // namespace fq::quant
