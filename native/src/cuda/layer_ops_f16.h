// The FP16 element-wise steps of a decoder layer on the GPU (the W4A4 layer and its FP16 baseline share them):
// RMSNorm, residual add (+ RMSNorm), RoPE, SwiGLU, and a plain FP16 GEMM for builds without a vendor BLAS.
//
// The residual stream and every activation between the kernels are FP16 (as in an FP16 Hugging Face model); each
// kernel computes in FP32 and rounds once to FP16 at its output (round to nearest-even). Formulas, in the order the
// kernels evaluate them (the layer test's float64 reference follows them and rounds to FP16 at the same points):
//   rmsnorm:  rstd = 1 / sqrt(sum_c x_c^2 / cols + eps);  out_c = fp16((x_c * rstd) * gain_c)
//   add:      h_c = fp16(h_c + delta_c)
//   rope:     per pair (a, b) with angle pos * theta^(-2i/d):  a' = fp16(a cos - b sin), b' = fp16(a sin + b cos);
//             pairs (2i, 2i+1) (ggml's normal mode, GGUF LLaMA) or (i, i + d/2) (neox / Hugging Face layout)
//   swiglu:   out = fp16(silu(gate) * up), silu(g) = g / (1 + exp(-g))
// All pointers are device memory; calls are queued on `stream`. Errors: INVALID_ARGUMENT (sizes, NULL or
// misaligned pointers: FP16 rows 4-byte aligned), launch errors as FQ_CUDA_CHECK reports them.
#pragma once

#include <cstdint>

namespace fq::cuda {

class Stream;

// out: (rows, cols) FP16;  inp: (rows, cols) FP16 (may be out);  gain: (cols) FP32. cols even.
void rmsnorm_f16(uint16_t *out_f16, const uint16_t *inp_f16, const float *gain, int64_t rows, int64_t cols,
                 float eps, const Stream &stream);

// h = h + delta, then (when out is not nullptr) out = rmsnorm(h). h, delta, out: (rows, cols) FP16; gain (cols) FP32.
void add_rmsnorm_f16(uint16_t *h_f16, const uint16_t *delta_f16, uint16_t *out_f16, const float *gain, int64_t rows,
                     int64_t cols, float eps, const Stream &stream);

// The RoPE table: cos_sin (n_pos, head_dim/2) float pairs {cos, sin} of pos * theta^(-2i/head_dim), computed in
// double and rounded once to FP32. Host memory; the layer uploads it.
void rope_table(float *cos_sin, int head_dim, double theta, int64_t n_pos);

// In place on x: (tokens, ld) FP16, token t = b * n_per_seq + s at position pos0 + s, its n_heads heads in columns
// [0, n_heads * head_dim). cos_sin: (>= pos0 + n_per_seq, head_dim/2) pairs as rope_table makes them (device).
// head_dim and ld multiples of 4, x 8-byte aligned (each thread rotates two pairs with 8 or 2x4-byte accesses).
void rope_f16(uint16_t *x_f16, int64_t ld, int64_t tokens, int n_heads, int head_dim, int64_t n_per_seq,
              int64_t pos0, const float *cos_sin, bool neox, const Stream &stream);

// RoPE on q and k in one launch, each optionally followed by its per-head transform x <- x P (P_k^{-T} for q, P_k
// for k: head_transforms.h), in place. One block per (token, head) row, FP32 sums on CUDA cores: for decode-sized
// calls (a few thousand rows), where four separate launches cost more than the arithmetic. The rotated value is
// rounded to FP16 before the product, as rope_f16 followed by head_dim_transform does.
struct RopeHeadArgs {
    uint16_t *q_f16 = nullptr;        // (tokens, ld_q) FP16, n_q_heads heads of head_dim
    int64_t ld_q = 0;
    int n_q_heads = 0;
    const uint16_t *p_q = nullptr;    // (head_dim, head_dim) FP16 row-major, or nullptr (RoPE only)
    uint16_t *k_f16 = nullptr;        // (tokens, ld_k) FP16, n_k_heads heads
    int64_t ld_k = 0;
    int n_k_heads = 0;
    const uint16_t *p_k = nullptr;
    int64_t tokens = 0, n_per_seq = 1, pos0 = 0;  // token t = b * n_per_seq + s at position pos0 + s
    int head_dim = 0;                 // 64 or 128
    const float *cos_sin = nullptr;   // as rope_f16
    bool neox = false;
};
void rope_head_transform_f16(const RopeHeadArgs &args, const Stream &stream);

// out: (rows, cols) FP16 (ld = cols);  gate, up: (rows, ld_in) FP16 (columns [0, cols)). out may be up.
void swiglu_f16(uint16_t *out_f16, const uint16_t *gate_f16, const uint16_t *up_f16, int64_t ld_in, int64_t rows,
                int64_t cols, const Stream &stream);

// D (m, n) FP16 = A (m, k) FP16 . W (n, k)^T, FP32 accumulation, row-major, K-major weights. The library's FP16
// product (it ships without a vendor BLAS; the benchmarks pass cuBLAS instead): a warp-per-column GEMV for m <= 8
// (k a multiple of 8, 16-byte aligned operands: decode steps stream the weights once), otherwise a simple tiled
// kernel; k even.
void gemm_f16_simple(uint16_t *d_f16, const uint16_t *a_f16, const uint16_t *w_f16, int64_t m, int64_t n, int64_t k,
                     const Stream &stream);

}  // namespace fq::cuda
