// The heavy products of FlatQuant calibration and fake-quantized evaluation, through a BLAS (FQ_HAVE_CBLAS) or a
// threaded loop nest, for float (production) and double (gradient checks).
//
// These are the fast twins of reference ops elsewhere in native/src/quant/, with the same contracts:
//   - kron_forward/kron_backward        = kron.h's kron_transform_forward/backward (per row P1^T X P2);
//   - attention_forward/backward        = layer_ops.h's attention_forward/backward (causal GQA, lse saved);
// and tests compare them. Row-wise elementwise ops from fake_quant.h and layer_ops.h are reused as they are,
// split over the thread pool by rows (par_rows); their parameter gradients are reduced per fixed chunk and summed in
// chunk order, so results are deterministic for a given thread count.
//
// All buffers are row-major. Sizes: rows = tokens (or weight rows), n1 x n2 = Kronecker factor sizes.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant::fast {

// C[m][n] = alpha * op(A) op(B) + beta * C. op(A) is A [m][k] (lda >= k), or A^T when trans_a (A stored [k][m],
// lda >= m); likewise B [k][n] / B^T (B stored [n][k]). With a BLAS the BLAS threads the product; without one the
// rows of C are split over the pool.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T *a, int64_t lda, const T *b,
          int64_t ldb, T beta, T *c, int64_t ldc, ThreadPool &pool);

// Fixed partition of [0, rows) into at most 4 * n_threads contiguous chunks, or one chunk when rows * row_cost is
// small (the same partition for the same arguments and pool).
int64_t n_chunks(const ThreadPool &pool, int64_t rows, int64_t row_cost);
// fn(r0, r1, chunk) for every chunk of that partition, in parallel.
void par_rows(ThreadPool &pool, int64_t rows, int64_t row_cost,
              const std::function<void(int64_t, int64_t, int64_t)> &fn);

// ---- Kronecker transform (kron.h semantics) -------------------------------------------------------------------------
// out[rows][n1*n2] = per row P1^T X P2; p1 [n1][n1] / p2 [n2][n2] may be nullptr (identity). out may alias inp.
template <typename T>
void kron_forward(T *out, const T *inp, const T *p1, const T *p2, int64_t rows, int n1, int n2, ThreadPool &pool);
// dinp (=, nullptr to skip, may alias dout) = P1 G P2^T; dp1 += sum_r (X P2) G^T; dp2 += sum_r (P1^T X)^T G.
template <typename T>
void kron_backward(T *dinp, T *dp1, T *dp2, const T *dout, const T *inp, const T *p1, const T *p2, int64_t rows, int n1,
                   int n2, ThreadPool &pool);

// ---- causal grouped-query attention (layer_ops.h semantics) ---------------------------------------------------------
// n_seq independent sequences of seq_len tokens. q/out [n_seq*seq_len][n_head*D], k/v [n_seq*seq_len][n_head_kv*D],
// lse [n_seq][n_head][seq_len]. Scores, softmax and products run in T; the softmax sums in double. Queries go in
// blocks of `block` rows, each against only the keys it can see, so the causal half of the scores is mostly skipped
// and the score buffer is block x seq_len.
template <typename T>
void attention_forward(T *out, T *lse, const T *q, const T *k, const T *v, int64_t n_seq, int64_t seq_len, int n_head,
                       int n_head_kv, int head_dim, ThreadPool &pool, int64_t block = 128);
// dq, dk, dv (=). out is the forward output (for the softmax-gradient row terms dout . out).
template <typename T>
void attention_backward(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *out,
                        const T *lse, int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim,
                        ThreadPool &pool, int64_t block = 128);

// ---- RoPE with the model's conventions (as fq::forward computes it) -------------------------------------------------
// Per-position cos/sin tables of the model: angle = float(pos) * inv_freq[i], inv_freq in float as Hugging Face
// computes it (optionally divided by the LLaMA-3.1 frequency factors). cs/sn [n_pos][rope_dim/2].
struct RopeTable {
    int half = 0;
    RopeMode mode = RopeMode::Normal;
    std::vector<float> cs, sn;
};
RopeTable rope_table(const ModelConfig &c, const std::vector<float> &freq_factors, int64_t pos0, int64_t n_pos);
// x [rows][n_head*head_dim] in place; row r uses table position pos[r]. inverse = true applies the transposed
// rotation (the backward of the forward one).
template <typename T>
void rope_apply(T *x, const int32_t *pos, int64_t rows, int n_head, int head_dim, const RopeTable &tab, bool inverse,
                ThreadPool &pool);

// ---- row-parallel wrappers of the fake_quant.h / layer_ops.h ops ----------------------------------------------------
template <typename T>
void act_quant_fwd(T *out, const T *x, const T *lac, int64_t rows, int64_t cols, int bits, bool sym, ThreadPool &pool);
template <typename T>
void act_quant_bwd(T *dx, T *dlac, const T *dout, const T *x, const T *lac, int64_t rows, int64_t cols, int bits,
                   bool sym, ThreadPool &pool);
template <typename T>
void channel_scale_fwd(T *out, const T *inp, const T *c, int64_t rows, int64_t cols, ThreadPool &pool);
template <typename T>
void channel_scale_bwd(T *dinp, T *dc, const T *dout, const T *inp, const T *c, int64_t rows, int64_t cols,
                       ThreadPool &pool);
template <typename T>
void rmsnorm_fwd(T *out, T *rstd, const T *inp, const T *weight, int64_t rows, int64_t cols, double eps,
                 ThreadPool &pool);
template <typename T>
void rmsnorm_bwd(T *dinp, const T *dout, const T *inp, const T *weight, const T *rstd, int64_t rows, int64_t cols,
                 ThreadPool &pool);
template <typename T>
void swiglu_fwd(T *out, const T *gate, const T *up, int64_t n, ThreadPool &pool);
template <typename T>
void swiglu_bwd(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t n, ThreadPool &pool);

}  // namespace fq::quant::fast
