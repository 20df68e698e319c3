// The ops of FlatQuant calibration on the GPU, forward and backward: the device twins of the CPU ops that
// quant::FlatLayer chains (quant/fake_quant.h, quant/layer_ops.h, quant/fast_ops.h, quant/optim.h), with the same
// contracts, argument order and numerics, so that cuda/calib_layer.cpp mirrors quant/flat_layer.cpp line by line.
// Exists only in builds with FQ_HAVE_CUDA; host-compiler safe (no CUDA headers).
//
// Numerics. Where the CPU op works in float, the kernel does the same float operations in the same order (IEEE
// division and sqrt, no contraction into FMA where it would change a rounding), and where the CPU op accumulates in
// double so does the kernel; only the order of the long sums differs. The quantizers therefore produce the very
// codes of the CPU op for the same input. Every parameter-gradient reduction is two-level with a fixed partition
// (per-row or per-chunk partials in double, then one fixed-order sum), never float atomics, so a run is bitwise
// reproducible on one GPU.
//
// Conventions: all tensor pointers are device memory, row-major; rows = tokens (tokens * kv heads for the K/V
// quantizers), cols = channels. Input gradients are written (=) unless stated, parameter gradients accumulated
// (+=) into float device memory (the layer's gradient vector). Every call is queued on `stream` (a cudaStream_t)
// and returns before the work finishes, except where it returns a value. Bad sizes throw INVALID_ARGUMENT.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/cuda_backend.h"

namespace fq::cuda::calib {

// Device scratch of one owner (a layer, a test), grown on demand. Ops that need scratch take one and use it only
// for the duration of their queued work, so consecutive ops on one stream may share it.
class Workspace {
  public:
    // At least n_bytes of scratch (contents undefined). Growing waits for `stream` first: queued work may still be
    // using the old block.
    void *get(size_t n_bytes, void *stream);
    template <class T> T *get_as(size_t n, void *stream) { return static_cast<T *>(get(n * sizeof(T), stream)); }
    size_t n_bytes() const { return buf_.n_bytes(); }

  private:
    DeviceBuffer buf_;
};

// ---- elementwise and row ops (calib_ops.cu) ------------------------------------------------------------------------

// dst [n] = src [n] (device to device); dst += src when accumulate.
void copy(float *dst, const float *src, int64_t n, bool accumulate, void *stream);
// y [rows][cols] += bias [cols] per row.
void add_bias(float *y, const float *bias, int64_t rows, int64_t cols, void *stream);

// RMSNorm (layer_ops.h rmsnorm_forward/backward; sums of squares and the backward in double).
// out/inp [rows][cols], weight [cols], rstd [rows]. Backward: dinp (=, or += when accumulate), no gain gradient.
void rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                 double eps, void *stream);
void rmsnorm_bwd(float *dinp, const float *dout, const float *inp, const float *weight, const float *rstd,
                 int64_t rows, int64_t cols, bool accumulate, void *stream);

// Smoothing scales (fake_quant.h channel_scale_* / channel_unscale_*). c [cols] device.
// out[r][j] = inp[r][j] * c[j];  backward: dinp = dout * c (nullptr to skip; may alias dout), dc += sum_r dout*inp.
void channel_scale_fwd(float *out, const float *inp, const float *c, int64_t rows, int64_t cols, void *stream);
void channel_scale_bwd(float *dinp, float *dc, const float *dout, const float *inp, const float *c, int64_t rows,
                       int64_t cols, Workspace &ws, void *stream);
// out[r][j] = w[r][j] / c[j];  backward: dw = dout / c (nullptr to skip), dc -= sum_r dout*w / c^2.
void channel_unscale_fwd(float *out, const float *w, const float *c, int64_t rows, int64_t cols, void *stream);
void channel_unscale_bwd(float *dw, float *dc, const float *dout, const float *w, const float *c, int64_t rows,
                         int64_t cols, Workspace &ws, void *stream);

// absmax [cols] = max(absmax, max_r |x[r][j]|) (column_absmax_update).
void column_absmax(float *absmax, const float *x, int64_t rows, int64_t cols, Workspace &ws, void *stream);
// out [cols] (double, =) = sum_r x[r][j].
void column_sum(double *out, const float *x, int64_t rows, int64_t cols, Workspace &ws, void *stream);

// RoPE in place with the model's table (fast::rope_apply): x [rows][n_head*head_dim], row r at position
// r % seq_len; cs/sn [seq_len][half] (fast::RopeTable on the device); neox pairs i with i + half, else 2i with 2i+1.
void rope(float *x, int64_t rows, int n_head, int head_dim, int half, bool neox, const float *cs, const float *sn,
          int64_t seq_len, bool inverse, void *stream);

// SwiGLU (layer_ops.h, double inside): out [n] = silu(gate) * up; backward dgate, dup (=).
void swiglu_fwd(float *out, const float *gate, const float *up, int64_t n, void *stream);
void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                void *stream);

// optim.h mse_loss_forward (waits for the stream and returns the value) and mse_loss_backward.
double mse_loss(const float *pred, const float *target, int64_t n, Workspace &ws, void *stream);
void mse_loss_bwd(float *dpred, const float *pred, const float *target, int64_t n, double mse, bool normalized,
                  void *stream);

// The Kronecker layouts of fast::kron_*: dst [n1][rows][n2] <- src [rows][n1][n2] (to_p), or back.
void kron_permute(float *dst, const float *src, int64_t rows, int n1, int n2, bool to_p, void *stream);
// c [n] += sum_p parts[p][n] for p = 0..n_parts-1 in order, summed in double.
void sum_partials(float *c, const float *parts, int64_t n_parts, int64_t n, void *stream);

// ---- quantizers and clipping (calib_quant.cu; fake_quant.h semantics, codes identical to the CPU op) ----------------

// Activation fake quantization per row with LAC. lac_sig: HOST pointer to {sigmoid(logit_max), sigmoid(logit_min)}
// (computed in double on the host exactly as the CPU op does), or nullptr when LAC is off. bits 16: a copy.
void act_quant_fwd(float *out, const float *x, const double *lac_sig, int64_t rows, int64_t cols, int bits, bool sym,
                   void *stream);
// dx (=, or += when accumulate; may alias dout when not accumulating), dlac [2] (device, +=, nullptr to skip; only
// with lac_sig).
void act_quant_bwd(float *dx, bool accumulate, float *dlac, const float *dout, const float *x, const double *lac_sig,
                   int64_t rows, int64_t cols, int bits, bool sym, Workspace &ws, void *stream);

// Weight fake quantization, symmetric per output row. w/out [rows][cols]; dw must not alias dout.
void weight_quant_fwd(float *out, const float *w, int64_t rows, int64_t cols, int bits, void *stream);
void weight_quant_bwd(float *dw, const float *dout, const float *w, int64_t rows, int64_t cols, int bits,
                      void *stream);

// LWC per output row. sig [2][rows] (device, double) = sigmoid of the clip logits [2][rows] (host-computed).
// Backward: dw (=, nullptr to skip; must not alias dout), dclip [2][rows] (device, +=).
void lwc_fwd(float *out, const float *w, const double *sig, int64_t rows, int64_t cols, void *stream);
void lwc_bwd(float *dw, float *dclip, const float *dout, const float *w, const double *sig, int64_t rows,
             int64_t cols, void *stream);

// ---- products through fq::cuda::gemm_f32 (calib_kron.cpp, calib_attention.cu) ---------------------------------------

// c [m][n] += op(A) op(B) (gemm_f32's operand conventions) with the long k split into fixed chunks whose partial
// products are summed in order (sum_partials): the parameter-gradient reductions dP += X^T G over all tokens.
void gemm_accumulate(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float *c, Workspace &ws, void *stream);

// fast::kron_forward / kron_backward: per row P1^T X P2 (p1 [n1][n1] / p2 [n2][n2] may be nullptr = identity; out
// may alias inp). Backward: dinp (=, nullptr to skip, may alias dout), dp1/dp2 (+=, nullptr to skip).
void kron_fwd(float *out, const float *inp, const float *p1, const float *p2, int64_t rows, int n1, int n2,
              Workspace &ws, void *stream);
void kron_bwd(float *dinp, float *dp1, float *dp2, const float *dout, const float *inp, const float *p1,
              const float *p2, int64_t rows, int n1, int n2, Workspace &ws, void *stream);

// Causal GQA attention (layer_ops.h semantics): q/out [n_seq*seq_len][n_head*D], k/v [n_seq*seq_len][n_head_kv*D],
// lse [n_seq][n_head][seq_len]. The scores are materialized: probs [n_seq][n_head][seq_len][seq_len] receives the
// softmax probabilities (0 above the diagonal), which the backward reads instead of recomputing them.
// Scores and products in FP32 through the GEMM, the softmax sums and the row terms in double. With GQA the K/V heads
// are expanded in ws.
void attention_fwd(float *out, float *lse, float *probs, const float *q, const float *k, const float *v,
                   int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim, Workspace &ws,
                   void *stream);
// dq, dk, dv (=). out and probs as the forward left them; dscores [n_head][seq_len][seq_len] is scratch.
void attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                   const float *out, const float *probs, float *dscores, int64_t n_seq, int64_t seq_len, int n_head,
                   int n_head_kv, int head_dim, Workspace &ws, void *stream);

}  // namespace fq::cuda::calib
