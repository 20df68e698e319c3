// Causal grouped-query attention of FlatQuant calibration on the GPU, forward and backward (declared in
// calib_ops.h; the CPU twins are fast::attention_forward/backward in quant/fast_ops.h).
//
// Score-materializing, through gemm_f32: with GQA the K/V heads are first expanded to one per query head, so that
// the heads of a sequence form one batch with uniform strides. Queries go in blocks of causal_block(L) rows, each
// against the keys it can see ([0, t1) for rows [t0, t1)): the scores above the block diagonal are never computed,
// which leaves about 56% of the dense work at L = 2048 for 8 launches per product and sequence. A row kernel turns
// the scores into probabilities (causal mask, max, exp, sum in double, lse); the backward reuses them. dK and dV
// collect the blocks in order (and, with GQA, the query heads of a group in order), so the sums are reproducible.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/calib_device.h"
#include "cuda/calib_ops.h"
#include "cuda/gemm_f32.h"

namespace fq::cuda::calib {

using dev::as_stream;
using dev::block_sum;
using dev::kFullMask;

namespace {

constexpr int kRowThreads = 256;

__device__ float block_max(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = scratch[0];
        for (int w = 1; w < n_warps; w++) m = fmaxf(m, scratch[w]);
        scratch[32] = m;
    }
    __syncthreads();
    const float r = scratch[32];
    __syncthreads();
    return r;
}

// grid (seq_len, n_head), block (kRowThreads). probs [n_head][L][L]: scaled scores in, probabilities out (0 above
// the diagonal); lse [n_head][L].
__global__ void softmax_rows_kernel(float *probs, float *lse, int L) {
    __shared__ float fscratch[33];
    __shared__ double dscratch[33];
    const int t = blockIdx.x, h = blockIdx.y;
    float *row = probs + (static_cast<int64_t>(h) * L + t) * L;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max(mx, fscratch);
    double sum = 0.0;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) {
        const float e = expf(__fsub_rn(row[j], mx));
        row[j] = e;
        sum += static_cast<double>(e);
    }
    sum = block_sum(sum, dscratch);
    const float inv = static_cast<float>(1.0 / sum);
    for (int j = threadIdx.x; j < L; j += blockDim.x) row[j] = j <= t ? __fmul_rn(row[j], inv) : 0.0f;
    if (threadIdx.x == 0) lse[static_cast<int64_t>(h) * L + t] = static_cast<float>(static_cast<double>(mx) + log(sum));
}

// grid (seq_len, n_head), block (kRowThreads). ds [n_head][L][L]: dP = dO V^T in, dS = P * (dP - dout_t . out_t)
// out; probs as the forward left them; dout/out [L][qw] of this sequence (head h at columns h*D).
__global__ void softmax_grad_kernel(float *ds, const float *probs, const float *dout, const float *out, int L, int qw,
                                    int D) {
    __shared__ double scratch[33];
    const int t = blockIdx.x, h = blockIdx.y;
    const float *go = dout + static_cast<int64_t>(t) * qw + h * D, *oo = out + static_cast<int64_t>(t) * qw + h * D;
    double dsum = 0.0;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dsum += static_cast<double>(go[d]) * static_cast<double>(oo[d]);
    const float dsf = static_cast<float>(block_sum(dsum, scratch));
    const int64_t off = (static_cast<int64_t>(h) * L + t) * L;
    const float *p = probs + off;
    float *row = ds + off;
    for (int j = threadIdx.x; j < L; j += blockDim.x) row[j] = j <= t ? __fmul_rn(p[j], __fsub_rn(row[j], dsf)) : 0.0f;
}

void check_attention(int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim) {
    FQ_CHECK(n_seq >= 0 && seq_len > 0 && seq_len <= 65535 && n_head > 0 && n_head <= 65535 && n_head_kv > 0 &&
                 head_dim > 0 && n_head % n_head_kv == 0,
             FQ_STATUS_INVALID_ARGUMENT, "attention: bad sizes (seq_len=%lld n_head=%d n_head_kv=%d head_dim=%d)",
             (long long)seq_len, n_head, n_head_kv, head_dim);
}

// Query rows per causal block: 8 blocks of at least 128 rows (one block, i.e. dense, for short sequences).
int64_t causal_block(int64_t L) { return std::max<int64_t>(128, (L / 8 + 63) / 64 * 64); }

// dst [rows][H][D] = src [rows][H/group][D] (each KV head repeated for its query heads).
__global__ void expand_heads_kernel(float *dst, const float *src, int64_t rows, int H, int group, int D) {
    const int64_t n = rows * H * D;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int d = static_cast<int>(i % D);
        const int64_t t = i / D;
        const int h = static_cast<int>(t % H);
        const int64_t r = t / H;
        dst[i] = src[(r * (H / group) + h / group) * D + d];
    }
}

// dst [rows][H/group][D] = sum over the group's query heads, in order, of src [rows][H][D].
__global__ void reduce_heads_kernel(float *dst, const float *src, int64_t rows, int H, int group, int D) {
    const int Hkv = H / group;
    const int64_t n = rows * Hkv * D;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const int d = static_cast<int>(i % D);
        const int64_t t = i / D;
        const int g = static_cast<int>(t % Hkv);
        const int64_t r = t / Hkv;
        const float *s0 = src + (r * H + int64_t{g} * group) * D + d;
        float acc = s0[0];
        for (int j = 1; j < group; j++) acc = __fadd_rn(acc, s0[int64_t{j} * D]);
        dst[i] = acc;
    }
}

// The expanded K and V of all sequences ([rows][H][D] each) in ws, or k and v themselves without GQA.
struct Kv {
    const float *k, *v;
    float *scratch;  // after the expanded pair: room for two more [rows][H][D] arrays (backward)
};

Kv expand_kv(const float *k, const float *v, int64_t rows, int H, int Hkv, int D, int extra, Workspace &ws,
             void *stream) {
    const int group = H / Hkv;
    const int64_t n = rows * H * D;
    const int arrays = (group > 1 ? 2 : 0) + extra;
    float *buf = arrays > 0 ? ws.get_as<float>(static_cast<size_t>(arrays) * n, stream) : nullptr;
    if (group == 1) return Kv{k, v, buf};
    for (int i = 0; i < 2; i++) {
        expand_heads_kernel<<<dev::grid_1d(n, 256), 256, 0, as_stream(stream)>>>(buf + i * n, i == 0 ? k : v, rows, H,
                                                                                group, D);
        FQ_CUDA_CHECK(cudaGetLastError());
    }
    return Kv{buf, buf + n, buf + 2 * n};
}

}  // namespace

void attention_fwd(float *out, float *lse, float *probs, const float *q, const float *k, const float *v,
                   int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim, Workspace &ws,
                   void *stream) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    const int64_t L = seq_len, D = head_dim, H = n_head, qw = H * D, LL = L * L, blk = causal_block(L);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    const Kv kv = expand_kv(k, v, n_seq * L, n_head, n_head_kv, head_dim, 0, ws, stream);
    const dim3 rows_grid(static_cast<unsigned>(L), static_cast<unsigned>(H));
    for (int64_t b = 0; b < n_seq; b++) {
        float *pb = probs + b * H * LL;
        const int64_t o = b * L * qw;  // the sequence's first row in q/out and in the expanded k/v
        for (int64_t t0 = 0; t0 < L; t0 += blk) {
            const int64_t t1 = std::min(L, t0 + blk);
            gemm_f32_batched(false, true, t1 - t0, t1, D, scale, q + o + t0 * qw, qw, D, kv.k + o, qw, D, 0.0f,
                             pb + t0 * L, L, LL, H, stream);
        }
        softmax_rows_kernel<<<rows_grid, kRowThreads, 0, as_stream(stream)>>>(pb, lse + b * H * L, static_cast<int>(L));
        FQ_CUDA_CHECK(cudaGetLastError());
        for (int64_t t0 = 0; t0 < L; t0 += blk) {
            const int64_t t1 = std::min(L, t0 + blk);
            gemm_f32_batched(false, false, t1 - t0, D, t1, 1.0f, pb + t0 * L, L, LL, kv.v + o, qw, D, 0.0f,
                             out + o + t0 * qw, qw, D, H, stream);
        }
    }
}

void attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                   const float *out, const float *probs, float *dscores, int64_t n_seq, int64_t seq_len, int n_head,
                   int n_head_kv, int head_dim, Workspace &ws, void *stream) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    const int group = n_head / n_head_kv;
    const int64_t L = seq_len, D = head_dim, H = n_head, qw = H * D, LL = L * L, blk = causal_block(L);
    const int64_t rows = n_seq * L, n_full = rows * qw;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    const Kv kv = expand_kv(k, v, rows, n_head, n_head_kv, head_dim, group > 1 ? 2 : 0, ws, stream);
    // dK, dV per query head (GQA: reduced over the group at the end), accumulated over the query blocks.
    float *dkf = group > 1 ? kv.scratch : dk, *dvf = group > 1 ? kv.scratch + n_full : dv;
    FQ_CUDA_CHECK(cudaMemsetAsync(dkf, 0, static_cast<size_t>(n_full) * sizeof(float), as_stream(stream)));
    FQ_CUDA_CHECK(cudaMemsetAsync(dvf, 0, static_cast<size_t>(n_full) * sizeof(float), as_stream(stream)));
    const dim3 rows_grid(static_cast<unsigned>(L), static_cast<unsigned>(H));
    for (int64_t b = 0; b < n_seq; b++) {
        const float *pb = probs + b * H * LL;
        const int64_t o = b * L * qw;
        for (int64_t t0 = 0; t0 < L; t0 += blk) {  // dP = dO V^T
            const int64_t t1 = std::min(L, t0 + blk);
            gemm_f32_batched(false, true, t1 - t0, t1, D, 1.0f, dout + o + t0 * qw, qw, D, kv.v + o, qw, D, 0.0f,
                             dscores + t0 * L, L, LL, H, stream);
        }
        softmax_grad_kernel<<<rows_grid, kRowThreads, 0, as_stream(stream)>>>(
            dscores, pb, dout + o, out + o, static_cast<int>(L), static_cast<int>(qw), static_cast<int>(D));
        FQ_CUDA_CHECK(cudaGetLastError());
        for (int64_t t0 = 0; t0 < L; t0 += blk) {
            const int64_t t1 = std::min(L, t0 + blk), nq = t1 - t0;
            gemm_f32_batched(false, false, nq, D, t1, scale, dscores + t0 * L, L, LL, kv.k + o, qw, D, 0.0f,
                             dq + o + t0 * qw, qw, D, H, stream);
            gemm_f32_batched(true, false, t1, D, nq, scale, dscores + t0 * L, L, LL, q + o + t0 * qw, qw, D, 1.0f,
                             dkf + o, qw, D, H, stream);
            gemm_f32_batched(true, false, t1, D, nq, 1.0f, pb + t0 * L, L, LL, dout + o + t0 * qw, qw, D, 1.0f,
                             dvf + o, qw, D, H, stream);
        }
    }
    if (group > 1) {
        const int64_t n = rows * n_head_kv * D;
        for (int i = 0; i < 2; i++) {
            reduce_heads_kernel<<<dev::grid_1d(n, 256), 256, 0, as_stream(stream)>>>(
                i == 0 ? dk : dv, i == 0 ? dkf : dvf, rows, n_head, group, head_dim);
            FQ_CUDA_CHECK(cudaGetLastError());
        }
    }
}

}  // namespace fq::cuda::calib
