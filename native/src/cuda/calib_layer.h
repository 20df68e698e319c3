// One decoder layer under FlatQuant calibration on a CUDA device: the GPU twin of quant::FlatLayer<float>
// (quant/flat_layer.h), with the same parameters, forward chain (spec section 1.2) and backward, built from the
// device ops of cuda/calib_ops.h. Exists only in builds with FQ_HAVE_CUDA; host-compiler safe.
//
// Split of the work:
//   - device: the frozen weights, every activation and weight-path intermediate that backward reads, the products
//     (fq::cuda::gemm_f32), the quantizers and every reduction over tokens or weight rows;
//   - host: the parameter vector itself, owned by a quant::FlatLayer<float> (so the block layout, init and
//     export_eval are the CPU code's), the k x k factor matrices built from it and their backward into the
//     parameters (trans_param.h), the clipping sigmoids, and AdamW (the caller's). Each calibration forward
//     uploads the parameters, sigmoids and factor matrices (a few hundred KB); each backward downloads the
//     parameter gradients and dL/dP, dL/dP^{-T} of every factor.
//
// Size letters as in flat_layer.h: rows = n_seq * seq_len tokens, E = n_embd, F = n_ff, H / Hkv = query / KV heads,
// D = head_dim. Activation pointers passed in or out are device memory [rows][E]. All device work is queued on the
// stream given at construction (which must outlive the layer); forward with stats and backward wait for it (they
// return host results). Not thread-safe: one caller at a time.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "cuda/calib_ops.h"
#include "cuda/cuda_backend.h"
#include "quant/flat_layer.h"

namespace fq::cuda {

class CalibLayer {
  public:
    using Block = quant::FlatLayer<float>::Block;

    // Uploads the layer's weights to the current device. rope_freq_factors as in ModelWeights (may be empty).
    // pool serves the host parameter object only. Throws DEVICE_OUT_OF_MEMORY, INVALID_ARGUMENT (weight sizes).
    CalibLayer(const ModelConfig &c, const LayerWeights &w, const std::vector<float> &rope_freq_factors,
               const quant::LayerSpec &spec, ThreadPool &pool, const Stream &stream);
    ~CalibLayer();
    CalibLayer(const CalibLayer &) = delete;
    CalibLayer &operator=(const CalibLayer &) = delete;

    // The parameters, exactly as quant::FlatLayer<float> lays them out and initializes them.
    const std::vector<Block> &blocks() const { return host_.blocks(); }
    std::vector<float> &params() { return host_.params(); }
    const std::vector<float> &params() const { return host_.params(); }
    const std::vector<float> &grads() const { return grads_; }
    const quant::LayerSpec &spec() const { return host_.spec(); }
    void init(quant::NormalRng &rng, const quant::SmoothStats *stats, double diag_alpha) {
        host_.init(rng, stats, diag_alpha);
    }
    quant::LayerTransforms export_eval() const { return host_.export_eval(); }

    // out [rows][E] = the layer applied to h0 [rows][E] (both device memory; out must not alias h0). ori: the
    // original FP layer, which also folds the per-channel |x| maxima of its three smoothed inputs into stats when
    // given (waiting for the stream); otherwise the quantized calibration forward with the current params(), which
    // keeps what backward needs.
    void forward(float *out, const float *h0, int64_t n_seq, int64_t seq_len, bool ori, quant::SmoothStats *stats);
    // grads() (=) from dout [rows][E] (device) = dLoss/d(out) of the last non-ori forward. Waits for the stream.
    void backward(const float *dout);

    // Scratch shared with the caller's ops on the same stream (e.g. the loss).
    calib::Workspace &workspace() { return ws_; }
    // Device memory held by the layer now (weights, caches, scratch), in bytes.
    size_t device_bytes() const;
    // Wall time the calling thread has spent so far on the host's factor math, during which the GPU waits: P and
    // P^{-T} before each calibration forward, and the wait for the factor parameters' gradients at the end of each
    // backward (most of that math overlaps the backward's device work).
    double host_factor_seconds() const { return host_factor_s_; }

  private:
    // A device array that grows on demand (waiting for the stream before it reallocates).
    struct DevVec {
        DeviceBuffer buf;
    };
    // Page-locked host memory (cudaMallocHost), so that device-to-host copies into it do not block the caller.
    class Pinned {
      public:
        Pinned() = default;
        explicit Pinned(size_t n_bytes);
        ~Pinned();
        Pinned(const Pinned &) = delete;
        Pinned &operator=(const Pinned &) = delete;
        Pinned(Pinned &&o) noexcept : p_(o.p_) { o.p_ = nullptr; }
        Pinned &operator=(Pinned &&o) noexcept;
        void *data() { return p_; }
        template <class T> T *as() { return static_cast<T *>(p_); }

      private:
        void *p_ = nullptr;
    };
    static constexpr int kStages = 6;  // backward points at which factor gradients move to the host
    struct LinCache {
        DevVec wu, wt, wl, wc, wq, xq, bias;
        const float *wu_p = nullptr, *wt_p = nullptr, *wl_p = nullptr, *wc_p = nullptr, *wq_p = nullptr;
        const float *bias_p = nullptr, *x_p = nullptr, *xq_p = nullptr;
    };

    void *st() const { return stream_->handle(); }
    float *sized(DevVec &v, int64_t n_floats);
    const float *P(int f) const;
    const float *Pit(int f) const;
    float *dP(int f);
    float *dPit(int f);
    float *grad(int64_t off) { return off < 0 ? nullptr : grads_dev_.as<float>() + off; }
    const float *param_dev(int64_t off) const { return off < 0 ? nullptr : params_dev_.as<float>() + off; }
    const double *sig_dev(int64_t off) const { return off < 0 ? nullptr : sig_dev_.as<double>() + off; }
    const double *lac_sig(int64_t off) const { return off < 0 ? nullptr : sig_host_.data() + off; }
    void lin_transform(int lin, int &fl, int &fr, int &n1, int &n2, int64_t &diag) const;
    void upload_params();
    void weight_forward(int lin, bool ori);
    void linear_forward(int lin, const float *x, float *y, bool ori, float beta);
    void linear_backward(int lin, const float *dy, float *dx, bool accumulate);
    void factor_grads(int f);

    // The present factors, largest first: their k x k math runs one factor per pool thread.
    std::vector<int> factor_order() const;

    ModelConfig cfg_;
    quant::FlatLayer<float> host_;
    ThreadPool &pool_;
    const Stream *stream_;
    calib::Workspace ws_;

    // Parameter layout (offsets into params(), -1 when absent), as FlatLayer builds it.
    std::array<int, quant::kNumFactors> fk_{};
    std::array<int64_t, quant::kNumFactors> f_qu_{}, f_qv_{}, f_s_{}, f_m_{}, moff_{};
    std::array<int64_t, 3> diag_{};
    std::array<int64_t, quant::kNumLinears> lwc_{}, lac_{};
    int64_t lac_k_ = -1, lac_v_ = -1;
    double host_factor_s_ = 0;

    // Frozen weights on the device.
    std::array<DeviceBuffer, quant::kNumLinears> w_;  // [out][in]
    std::array<DeviceBuffer, 3> b_;                   // q/k/v biases [out] or empty
    std::vector<float> bv_host_;                      // v bias [KV] (its P_v transform is built on the host)
    DeviceBuffer g1_, g2_;                            // RMSNorm gains [E]
    std::vector<float> rope_ff_;
    int64_t rope_len_ = 0;
    DeviceBuffer rope_cs_, rope_sn_;                  // [seq_len][rope_dim/2]

    // Parameters and their gradients: host mirrors and device copies.
    std::vector<double> sig_host_;                    // sigmoid of the clipping logits, same layout as params()
    std::vector<float> mats_host_;                    // per factor: P [k][k] then P^{-T} [k][k], at moff_
    Pinned dmat_pin_;                                 // dL/dP, dL/dP^{-T} in the layout of mats_host_
    Pinned colsum_pin_;                               // [KV] doubles, the download of colsum_v_
    std::vector<float> grads_, fgrad_;                // fgrad_: the factor blocks, filled by host threads
    std::array<void *, kStages> events_{};            // cudaEvent_t, one per stage of the backward
    int device_ = 0;
    DeviceBuffer params_dev_, sig_dev_, mats_dev_, dmat_dev_, grads_dev_;
    DevVec colsum_v_;                                 // [KV] doubles: column sums of dL/dv for the P_v bias term

    // Forward state of the last non-ori call.
    int64_t n_seq_ = 0, seq_len_ = 0, rows_ = 0;
    bool last_ori_ = true;
    std::array<LinCache, quant::kNumLinears> lc_;
    DevVec x1_, rstd1_, xs_, xa_, q_, k_, v_, q2_, k2_, k3_, v3_, att_, lse_, probs_, ao_, h1_;
    DevVec x2_, rstd2_, x2s_, x2t_, up_, gate_, z_, zs_, zt_, absmax_;
    const float *xs_p_ = nullptr, *xa_p_ = nullptr, *q2_p_ = nullptr, *k2_p_ = nullptr, *k3_p_ = nullptr;
    const float *v3_p_ = nullptr, *ao_p_ = nullptr;
    const float *x2s_p_ = nullptr, *x2t_p_ = nullptr, *zs_p_ = nullptr, *zt_p_ = nullptr;
    // Backward scratch.
    DevVec dh1_, dz_, dgate_, dup_, dx2_, datt_, dq_, dk_, dv_, dxa_, dxq_, dw_, dtmp_, dscores_;
};

}  // namespace fq::cuda
