// The kernels of the whole-sequence evaluator (window_evaluator.h) besides the products, each the GPU twin of
// steps of quant::quantized_layer_forward (quant/fakequant_forward.cpp) with the CPU's arithmetic:
// IEEE division and sqrt, round-half-to-even (rintf = std::nearbyint), no contraction of the products that the CPU
// rounds separately. Only summation orders differ from the CPU. Host-compiler safe; `stream` is a cudaStream_t.
// Every pointer is device memory, row-major; launches are asynchronous and launch errors throw fq::Error.
#pragma once

#include <cstdint>

namespace fq::cuda::wineval {

// x [n_tok][n_embd] <- rows tok_embd[tokens[i]]; tokens [n_tok] (already checked), tok_embd [n_vocab][n_embd].
void embed_rows(float *x, const int32_t *tokens, const float *tok_embd, int64_t n_tok, int64_t n_embd, void *stream);

// One pass over each row of [rows][n]: read it (as it is, RMS-normalized, or as SwiGLU of an up|gate row), apply a
// Kronecker transform, and write it (as it is, or as up to three per-token symmetric fake-quantized variants with
// their own LAC, for linears that read the same row). This is the CPU's sequence rmsnorm -> kron_forward ->
// act_quant_forward (or swiglu -> kron_forward -> act_quant_forward) without the round trips through memory.
//   RmsNorm: (x * float(1 / sqrt(mean_double(x^2) + eps))) * gain, as fq::rmsnorm.
//   SwiGlu:  g / (1 + exp(-g)) * u with u, g the two halves of the input row.
//   Transform: per row P1^T X P2 with X read as [n1][n2] (kron.h; left factor first, as fast::kron_forward);
//              p1 / p2 nullptr for an identity factor (n1 = 1, n2 = n and both nullptr: no transform).
//   Quantizer: fake_quant.h act_quant_forward, sym; sig_max / sig_min = float(sigmoid(LAC logit)), or 1 without
//              LAC (multiplying by 1 is exact, so that is the CPU's no-LAC path too).
enum class RowInput { Plain, RmsNorm, SwiGlu };
struct RowPipeline {
    RowInput input = RowInput::Plain;
    const float *x = nullptr;     // Plain, RmsNorm: [rows][n]; SwiGlu: [rows][2n], up in [0, n), gate in [n, 2n)
    const float *gain = nullptr;  // RmsNorm: [n]
    float eps = 0.0f;
    int n1 = 1, n2 = 0;           // n = n1 * n2
    const float *p1 = nullptr;    // [n1][n1] or nullptr
    const float *p2 = nullptr;    // [n2][n2] or nullptr
    int bits = 16;                // 16: out[0] gets the row unquantized; 2..8: n_out quantized variants
    int n_out = 1;                // 1..3
    float *out[3] = {nullptr, nullptr, nullptr};  // [rows][n] each; may alias x for Plain and RmsNorm input
    float sig_max[3] = {1.0f, 1.0f, 1.0f}, sig_min[3] = {1.0f, 1.0f, 1.0f};
};
// Throws UNSUPPORTED when a row (with its factors) does not fit the device's shared memory.
void row_pipeline(const RowPipeline &p, int64_t rows, void *stream);

// Shorthands of row_pipeline: out = act_quant_forward(x) (sym, one LAC), and out = per row P1^T X P2.
void act_quant_sym_rows(float *out, const float *x, int64_t rows, int64_t cols, int bits, float sig_max,
                        float sig_min, void *stream);
void kron_rows(float *out, const float *x, const float *p1, const float *p2, int64_t rows, int n1, int n2,
               void *stream);

// Everything between the q/k/v products and attention, per token: bias, RoPE, P_k, K/V asymmetric fake quantization
// per (token, KV head) over head_dim.
struct QkvPostArgs {
    const float *qkv = nullptr;   // [n_tok][q_dim + 2 kv_dim]: q, k, v products of each token (no bias yet)
    const float *bias = nullptr;  // [q_dim + 2 kv_dim] or nullptr
    const float *rope_cs = nullptr, *rope_sn = nullptr;  // [>= seq_len][rope_dim / 2]: fast::rope_table at pos0 0
    const float *pk_q = nullptr;  // P_k^{-T} [head_dim][head_dim] applied to q heads (x <- x P_k^{-T}), or nullptr
    const float *pk_k = nullptr;  // P_k [head_dim][head_dim] applied to k heads, or nullptr (both or neither)
    float *q = nullptr;           // out: [n_seq][n_head][seq_len][head_dim]
    float *k = nullptr;           // out: [n_seq][n_head_kv][seq_len][head_dim], fake-quantized
    float *v = nullptr;           // out: [n_seq][n_head_kv][seq_len][head_dim], fake-quantized
    int64_t n_seq = 0, seq_len = 0;
    int n_head = 0, n_head_kv = 0, head_dim = 0, rope_dim = 0;
    bool rope_neox = false;
    int k_bits = 16, v_bits = 16;  // 16: off
    float k_sig_max = 1, k_sig_min = 1, v_sig_max = 1, v_sig_min = 1;
};
void qkv_post(const QkvPostArgs &a, void *stream);

// Causal grouped-query attention of n_seq independent sequences (fq::attention's contract from position 0):
// q [n_seq][n_head][seq_len][head_dim], k/v [n_seq][n_head_kv][seq_len][head_dim] (head-major, as qkv_post writes
// them), out [n_seq * seq_len][n_head * head_dim] (token-major, the o_proj input). scale = 1/sqrt(head_dim) as the
// CPU computes it. FP32 with an online (running-max) softmax; head_dim <= kMaxHeadDim.
constexpr int kMaxHeadDim = 128;
void attention(float *out, const float *q, const float *k, const float *v, int64_t n_seq, int64_t seq_len, int n_head,
               int n_head_kv, int head_dim, float scale, void *stream);

// Scores rows of logits [rows][n_vocab] as token_nll and windows_score_fn (eval/perplexity.cpp) do, in double:
// nll[r] = log(sum_j exp(x_j - m)) + m - x_target with m the row maximum and the exponentials and their sum in
// double (0 where targets[r] < 0), argmax[r] (when argmax is not nullptr) = the lowest id among the largest values.
// targets [rows] (each -1 or in [0, n_vocab), already checked), nll [rows], argmax [rows].
void score_rows(const float *logits, int64_t rows, int64_t n_vocab, const int32_t *targets, double *nll,
                int32_t *argmax, void *stream);

}  // namespace fq::cuda::wineval
