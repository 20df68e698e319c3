// The embedding gather and the per-token step between the q/k/v products and attention (contracts in
// wineval_kernels.h). Matching the CPU bit for bit where the CPU's order allows it is the point: explicit __f*_rn
// intrinsics wherever the CPU rounds a product before an addition (nvcc would otherwise contract a*b+c into one
// FMA), the CPU's own RoPE table, and the quantizer of wineval_common.cuh.
#include "cuda/wineval_kernels.h"

#include <cuda_runtime.h>

#include <climits>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/wineval_common.cuh"

namespace fq::cuda::wineval {

namespace {

cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}

// ---- kernels -------------------------------------------------------------------------------------------------------

// grid-stride over n_tok * n_embd elements. x [n_tok][n_embd], tokens [n_tok], tok_embd [n_vocab][n_embd].
__global__ void embed_kernel(float *x, const int32_t *tokens, const float *tok_embd, int64_t n_tok, int64_t n_embd) {
    const int64_t total = n_tok * n_embd;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
        const int64_t t = i / n_embd, c = i - t * n_embd;
        x[i] = tok_embd[int64_t{tokens[t]} * n_embd + c];
    }
}

// Asymmetric fake quantization of one head row src[0, D) in shared memory by one warp, into dst (global).
__device__ void warp_quant_head(float *dst, const float *src, int D, int bits, float sig_max, float sig_min) {
    const int lane = threadIdx.x & 31;
    if (bits == 16) {
        for (int d = lane; d < D; d += 32) dst[d] = src[d];
        return;
    }
    float vmax = -INFINITY, vmin = INFINITY;
    for (int d = lane; d < D; d += 32) {
        vmax = fmaxf(vmax, src[d]);
        vmin = fminf(vmin, src[d]);
    }
    warp_max_min(vmax, vmin);
    const QuantParams p = quant_params(vmax, vmin, false, bits, sig_max, sig_min);
    for (int d = lane; d < D; d += 32) dst[d] = fake_quant(src[d], p);
}

constexpr int kQkvThreads = 128;

// grid (n_tok), block kQkvThreads, dynamic shared memory (q_dim + 2 kv_dim) + (q_dim + kv_dim) floats.
__global__ void qkv_post_kernel(QkvPostArgs a) {
    extern __shared__ float qkv_sm[];
    const int H = a.n_head, Hk = a.n_head_kv, D = a.head_dim;
    const int Q = H * D, KV = Hk * D, W = Q + 2 * KV;
    float *s = qkv_sm;       // [W]: q heads, k heads, v heads of this token
    float *t = qkv_sm + W;   // [Q + KV]: q and k after P_k
    const int64_t tok = blockIdx.x, L = a.seq_len;
    const int64_t b = tok / L, pos = tok - b * L;
    const float *row = a.qkv + tok * W;
    for (int e = threadIdx.x; e < W; e += blockDim.x) s[e] = a.bias ? __fadd_rn(row[e], a.bias[e]) : row[e];
    __syncthreads();
    // RoPE on the q and k heads (contiguous in s): pairs (2i, 2i+1) or (i, i + half) of the first rope_dim dims.
    const int half = a.rope_dim / 2;
    if (half > 0) {
        const float *cs = a.rope_cs + pos * half, *sn = a.rope_sn + pos * half;
        for (int e = threadIdx.x; e < (H + Hk) * half; e += blockDim.x) {
            const int hh = e / half, i = e - hh * half;
            float *v = s + hh * D;
            const int ia = a.rope_neox ? i : 2 * i, ib = a.rope_neox ? i + half : 2 * i + 1;
            const float x0 = v[ia], x1 = v[ib], c = cs[i], sv = sn[i];
            v[ia] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, sv));
            v[ib] = __fadd_rn(__fmul_rn(x0, sv), __fmul_rn(x1, c));
        }
        __syncthreads();
    }
    const float *qk = s;
    if (a.pk_q) {  // per head x <- x M: M = P_k^{-T} for q heads, P_k for k heads
        for (int e = threadIdx.x; e < Q + KV; e += blockDim.x) {
            const int hh = e / D, j = e - hh * D;
            const float *m = hh < H ? a.pk_q : a.pk_k;
            const float *x = s + hh * D;
            float acc = 0.0f;
            for (int k = 0; k < D; k++) acc = fmaf(x[k], __ldg(m + k * D + j), acc);
            t[e] = acc;
        }
        __syncthreads();
        qk = t;
    }
    for (int e = threadIdx.x; e < Q; e += blockDim.x) {
        const int h = e / D, d = e - h * D;
        a.q[((b * H + h) * L + pos) * D + d] = qk[e];
    }
    const int warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int g = warp; g < 2 * Hk; g += n_warps) {
        const bool is_k = g < Hk;
        const int head = is_k ? g : g - Hk;
        float *dst = (is_k ? a.k : a.v) + ((b * Hk + head) * L + pos) * D;
        const float *src = is_k ? qk + Q + head * D : s + Q + KV + head * D;
        warp_quant_head(dst, src, D, is_k ? a.k_bits : a.v_bits, is_k ? a.k_sig_max : a.v_sig_max,
                        is_k ? a.k_sig_min : a.v_sig_min);
    }
}

// Dynamic shared memory above the default 48 KiB needs the per-kernel opt-in.
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        FQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(bytes)));
}

}  // namespace

void embed_rows(float *x, const int32_t *tokens, const float *tok_embd, int64_t n_tok, int64_t n_embd, void *stream) {
    if (n_tok == 0) return;
    embed_kernel<<<grid_for(n_tok * n_embd, 256), 256, 0, as_stream(stream)>>>(x, tokens, tok_embd, n_tok, n_embd);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void qkv_post(const QkvPostArgs &a, void *stream) {
    const int64_t n_tok = a.n_seq * a.seq_len;
    FQ_CHECK(n_tok >= 0 && n_tok <= INT_MAX && a.n_head > 0 && a.n_head_kv > 0 && a.head_dim > 0 &&
                 a.rope_dim >= 0 && a.rope_dim <= a.head_dim && (a.pk_q == nullptr) == (a.pk_k == nullptr),
             FQ_STATUS_INVALID_ARGUMENT, "qkv_post: bad arguments");
    if (n_tok == 0) return;
    const int64_t Q = int64_t{a.n_head} * a.head_dim, KV = int64_t{a.n_head_kv} * a.head_dim;
    const size_t smem = sizeof(float) * static_cast<size_t>((Q + 2 * KV) + (Q + KV));
    allow_smem(qkv_post_kernel, smem);
    qkv_post_kernel<<<static_cast<unsigned>(n_tok), kQkvThreads, smem, as_stream(stream)>>>(a);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda::wineval
