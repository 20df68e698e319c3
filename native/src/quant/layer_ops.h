// The plain decoder-layer ops that calibration chains around the FlatQuant transforms, forward and backward
// (CPU reference, llm.c style: outputs, then inputs, then sizes; forward writes what backward needs).
//
// Only what calibration needs has a gradient: the model's own weights (RMSNorm gains, linear weights and biases)
// are frozen, so no gradient is produced for them, EXCEPT the linear weight operand, because during calibration it
// is the transformed, clipped and fake-quantized weight whose gradient flows back into the transforms.
// Input gradients are written (=) unless stated; parameter gradients are accumulated (+=).
//
// Size letters: rows = tokens (n_seq * seq_len, sequences stored one after another), C = channels,
// n_head / n_head_kv = query / key-value heads, head_dim = D. All buffers row-major.
#pragma once

#include <cstdint>

namespace fq::quant {

// ---- RMSNorm (LlamaRMSNorm): out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps) ---------------------------------
// out/inp [rows][C], weight [C], rstd [rows] (saved for backward).
template <typename T>
void rmsnorm_forward(T *out, T *rstd, const T *inp, const T *weight, int64_t rows, int64_t cols, double eps);
// dinp (=); dweight (+=) is optional (nullptr: the gain is frozen during calibration).
template <typename T>
void rmsnorm_backward(T *dinp, T *dweight, const T *dout, const T *inp, const T *weight, const T *rstd, int64_t rows,
                      int64_t cols);

// ---- RoPE, GGUF/ggml "normal" layout -------------------------------------------------------------------------------
// Per head, consecutive pairs (x[2i], x[2i+1]) for 2i < rope_dim are rotated by theta_i = pos * base^(-2i/rope_dim):
//   y[2i] = x[2i] cos - x[2i+1] sin,  y[2i+1] = x[2i] sin + x[2i+1] cos;  dims >= rope_dim pass through.
// (GGUF LLaMA q/k weights are permuted by the converter so that this equals HF's rotate_half layout.)
// inp/out [rows][n_head * head_dim] (may alias), pos [rows] = the position of each token.
// Angles, cos and sin are computed in double.
template <typename T>
void rope_forward(T *out, const T *inp, const int32_t *pos, int64_t rows, int n_head, int head_dim, int rope_dim,
                  double base);
// dinp = R^T dout (the inverse rotation); may alias dout.
template <typename T>
void rope_backward(T *dinp, const T *dout, const int32_t *pos, int64_t rows, int n_head, int head_dim, int rope_dim,
                   double base);

// ---- causal grouped-query attention ------------------------------------------------------------------------------------
// out[t] = softmax_j<=t(q[t] . k[j] / sqrt(D)) v[j], per query head h using kv head h / (n_head / n_head_kv).
// q/out [n_seq*seq_len][n_head*D], k/v [n_seq*seq_len][n_head_kv*D], lse [n_seq][n_head][seq_len] = the
// log-sum-exp of each softmax row (saved so backward can rebuild the probabilities without storing them).
// Scores, softmax and the weighted sum accumulate in double.
template <typename T>
void attention_forward(T *out, T *lse, const T *q, const T *k, const T *v, int64_t n_seq, int64_t seq_len, int n_head,
                       int n_head_kv, int head_dim);
// dq, dk, dv (=) from dout; the probabilities are recomputed from q, k and lse.
template <typename T>
void attention_backward(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *lse,
                        int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim);

// ---- SwiGLU: out = silu(gate) * up, silu(g) = g * sigmoid(g) -----------------------------------------------------------
// out/gate/up [rows][cols].
template <typename T>
void swiglu_forward(T *out, const T *gate, const T *up, int64_t rows, int64_t cols);
template <typename T>
void swiglu_backward(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t rows, int64_t cols);

// ---- linear: out = inp W^T + b ------------------------------------------------------------------------------------------
// out [rows][out_features], inp [rows][in_features], weight [out_features][in_features], bias [out_features] or
// nullptr.
template <typename T>
void linear_forward(T *out, const T *inp, const T *weight, const T *bias, int64_t rows, int64_t in_features,
                    int64_t out_features);
// dinp = dout W (=, nullptr to skip); dweight += dout^T inp (nullptr to skip). No bias gradient: biases are frozen.
template <typename T>
void linear_backward(T *dinp, T *dweight, const T *dout, const T *inp, const T *weight, int64_t rows,
                     int64_t in_features, int64_t out_features);

// ---- residual: out = a + b --------------------------------------------------------------------------------------------
template <typename T>
void residual_forward(T *out, const T *a, const T *b, int64_t n);
// da += dout, db += dout. Accumulates into BOTH inputs (the exception to the "=" rule), because a residual is where
// the gradient paths of a block meet; zero da/db first when they have no other contribution.
template <typename T>
void residual_backward(T *da, T *db, const T *dout, int64_t n);

}  // namespace fq::quant
