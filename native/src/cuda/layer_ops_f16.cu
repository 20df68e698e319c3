// FP16 element-wise steps of a decoder layer (contract: layer_ops_f16.h). Memory-bound kernels: half2 accesses,
// FP32 math, one FP16 rounding per output.
#include "cuda/layer_ops_f16.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kNormThreads = 256;

bool aligned(const void *p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

__device__ float block_sum(float v, float *red) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < kNormThreads / 32; ++w) s += red[w];
    return s;
}

// grid rows, block kNormThreads. With delta: h = h + delta first (written back). With out: out = rmsnorm(h).
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_kernel(__half2 *h, const __half2 *delta, __half2 *out,
                                                                   const float2 *gain, int64_t cols2, float eps,
                                                                   float inv_cols) {
    __shared__ float red[kNormThreads / 32];
    __half2 *row = h + static_cast<int64_t>(blockIdx.x) * cols2;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols2; c += kNormThreads) {
        __half2 x = row[c];
        if (delta) {
            const float2 a = __half22float2(x), d = __half22float2(delta[static_cast<int64_t>(blockIdx.x) * cols2 + c]);
            x = __floats2half2_rn(__fadd_rn(a.x, d.x), __fadd_rn(a.y, d.y));
            row[c] = x;
        }
        const float2 f = __half22float2(x);
        ss = fmaf(f.x, f.x, ss);
        ss = fmaf(f.y, f.y, ss);
    }
    if (!out) return;
    const float rstd = 1.0f / sqrtf(__fadd_rn(block_sum(ss, red) * inv_cols, eps));
    __half2 *orow = out + static_cast<int64_t>(blockIdx.x) * cols2;
    for (int64_t c = threadIdx.x; c < cols2; c += kNormThreads) {
        const float2 f = __half22float2(row[c]), g = gain[c];
        orow[c] = __floats2half2_rn(__fmul_rn(__fmul_rn(f.x, rstd), g.x), __fmul_rn(__fmul_rn(f.y, rstd), g.y));
    }
}

// One thread per two consecutive pairs i, i + 1 (i even): idx = (token * n_heads + head) * (d/4) + i/2. Their four
// elements are one 8-byte access (normal mode: 2i .. 2i+3) or two 4-byte ones (neox: i, i+1 and i+d/2, i+d/2+1).
__global__ void rope_kernel(__half *x, int64_t ld, int64_t n_quads, int n_heads, int half_d, int64_t n_per_seq,
                            int64_t pos0, const float2 *cos_sin, bool neox) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n_quads) return;
    const int quarter = half_d / 2;
    const int i = 2 * static_cast<int>(idx % quarter);
    const int64_t th = idx / quarter;
    const int head = static_cast<int>(th % n_heads);
    const int64_t tok = th / n_heads;
    const int64_t pos = pos0 + tok % n_per_seq;
    __half *hp = x + tok * ld + static_cast<int64_t>(head) * 2 * half_d;
    float a[2], b[2];
    if (neox) {
        const float2 fa = __half22float2(*reinterpret_cast<const __half2 *>(hp + i));
        const float2 fb = __half22float2(*reinterpret_cast<const __half2 *>(hp + i + half_d));
        a[0] = fa.x, a[1] = fa.y, b[0] = fb.x, b[1] = fb.y;
    } else {
        const uint2 raw = *reinterpret_cast<const uint2 *>(hp + 2 * i);
        const float2 f0 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.x));
        const float2 f1 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.y));
        a[0] = f0.x, b[0] = f0.y, a[1] = f1.x, b[1] = f1.y;
    }
    __half ra[2], rb[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const float2 cs = cos_sin[pos * half_d + i + e];
        ra[e] = __float2half_rn(__fsub_rn(__fmul_rn(a[e], cs.x), __fmul_rn(b[e], cs.y)));
        rb[e] = __float2half_rn(__fadd_rn(__fmul_rn(a[e], cs.y), __fmul_rn(b[e], cs.x)));
    }
    if (neox) {
        *reinterpret_cast<__half2 *>(hp + i) = __halves2half2(ra[0], ra[1]);
        *reinterpret_cast<__half2 *>(hp + i + half_d) = __halves2half2(rb[0], rb[1]);
    } else {
        const __half2 p0 = __halves2half2(ra[0], rb[0]), p1 = __halves2half2(ra[1], rb[1]);
        uint2 raw;
        raw.x = *reinterpret_cast<const uint32_t *>(&p0);
        raw.y = *reinterpret_cast<const uint32_t *>(&p1);
        *reinterpret_cast<uint2 *>(hp + 2 * i) = raw;
    }
}

// grid tokens * (Hq + Hk), block head_dim: thread j produces element j of its row.
__global__ void rope_head_kernel(const RopeHeadArgs a) {
    __shared__ float xr[128];
    const int rows_per_tok = a.n_q_heads + a.n_k_heads;
    const int64_t tok = blockIdx.x / rows_per_tok;
    const int hh = static_cast<int>(blockIdx.x - tok * rows_per_tok);
    const bool is_k = hh >= a.n_q_heads;
    const int d = a.head_dim, half_d = d / 2, j = threadIdx.x;
    __half *x = reinterpret_cast<__half *>(is_k ? a.k_f16 : a.q_f16) + tok * (is_k ? a.ld_k : a.ld_q) +
                static_cast<int64_t>(is_k ? hh - a.n_q_heads : hh) * d;
    const __half *pm = reinterpret_cast<const __half *>(is_k ? a.p_k : a.p_q);
    const int64_t pos = a.pos0 + tok % a.n_per_seq;
    // Element j is the first (a' = a cos - b sin) or second (b' = a sin + b cos) member of pair i.
    const int i = a.neox ? j % half_d : j / 2;
    const bool second = a.neox ? j >= half_d : (j & 1);
    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half_d : 2 * i + 1;
    const float va = __half2float(x[ia]), vb = __half2float(x[ib]);
    const float2 cs = reinterpret_cast<const float2 *>(a.cos_sin)[pos * half_d + i];
    const __half r = second ? __float2half_rn(__fadd_rn(__fmul_rn(va, cs.y), __fmul_rn(vb, cs.x)))
                            : __float2half_rn(__fsub_rn(__fmul_rn(va, cs.x), __fmul_rn(vb, cs.y)));
    if (!pm) {
        __syncthreads();  // every thread has read its pair before any write
        x[j] = r;
        return;
    }
    xr[j] = __half2float(r);
    __syncthreads();
    // Eight independent partial sums, so that the column's loads overlap instead of waiting on one FMA chain.
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
    for (int k = 0; k < d; k += 8)
#pragma unroll
        for (int u = 0; u < 8; ++u) acc[u] = fmaf(xr[k + u], __half2float(pm[(k + u) * d + j]), acc[u]);
    x[j] = __float2half_rn(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
}

__global__ void swiglu_kernel(__half2 *out, const __half2 *gate, const __half2 *up, int64_t ld2, int64_t rows,
                              int64_t cols2) {
    const int64_t n = rows * cols2;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t r = idx / cols2, c = idx - r * cols2;
        const float2 g = __half22float2(gate[r * ld2 + c]), u = __half22float2(up[r * ld2 + c]);
        const float sx = __fdiv_rn(g.x, __fadd_rn(1.0f, expf(-g.x))), sy = __fdiv_rn(g.y, __fadd_rn(1.0f, expf(-g.y)));
        out[r * cols2 + c] = __floats2half2_rn(__fmul_rn(sx, u.x), __fmul_rn(sy, u.y));
    }
}

// 64 x 64 output tile per block of 256 threads, 4 x 4 outputs per thread, k steps of 16 through shared memory.
constexpr int kGt = 64, kGk = 16;
__global__ void __launch_bounds__(256) gemm_f16_kernel(__half *d, const __half *a, const __half *w, int64_t m,
                                                       int64_t n, int64_t k) {
    __shared__ float as[kGk][kGt + 1], ws[kGk][kGt + 1];
    const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kGt, n0 = static_cast<int64_t>(blockIdx.x) * kGt;
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < k; k0 += kGk) {
        for (int e = threadIdx.x; e < kGt * kGk; e += 256) {
            const int r = e / kGk, kk = e - r * kGk;
            as[kk][r] = (m0 + r < m && k0 + kk < k) ? __half2float(a[(m0 + r) * k + k0 + kk]) : 0.0f;
            ws[kk][r] = (n0 + r < n && k0 + kk < k) ? __half2float(w[(n0 + r) * k + k0 + kk]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kGk; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(as[kk][ty * 4 + i], ws[kk][tx * 4 + j], acc[i][j]);
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            const int64_t r = m0 + ty * 4 + i, c = n0 + tx * 4 + j;
            if (r < m && c < n) d[r * n + c] = __float2half_rn(acc[i][j]);
        }
}

// Small m (decode): one warp per output column, 16-byte loads of the weight row (read once, the bytes that bound the
// step) and of the m <= kGemvRows activation rows (L1/L2 resident), FP32 sums reduced across the warp. The tiled
// kernel above would run n/64 blocks that each walk all of k: a few dozen blocks for a decode-sized layer.
constexpr int kGemvRows = 8, kGemvWarps = 8;
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_f16_kernel(__half *d, const __half *a, const __half *w, int m,
                                                                    int64_t n, int64_t k) {
    const int lane = threadIdx.x & 31;
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
    if (col >= n) return;
    float acc[kGemvRows] = {};
    const __half *wr = w + col * k;
    for (int64_t k0 = static_cast<int64_t>(lane) * 8; k0 < k; k0 += 256) {
        const uint4 wraw = *reinterpret_cast<const uint4 *>(wr + k0);
        const __half2 *wh = reinterpret_cast<const __half2 *>(&wraw);
        float2 wf[4];
#pragma unroll
        for (int t = 0; t < 4; ++t) wf[t] = __half22float2(wh[t]);
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
            if (r < m) {
                const uint4 araw = *reinterpret_cast<const uint4 *>(a + r * k + k0);
                const __half2 *ah = reinterpret_cast<const __half2 *>(&araw);
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    const float2 af = __half22float2(ah[t]);
                    acc[r] = fmaf(af.x, wf[t].x, acc[r]);
                    acc[r] = fmaf(af.y, wf[t].y, acc[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
        float v = acc[r];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0 && r < m) d[r * n + col] = __float2half_rn(v);
    }
}

unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 1048576 ? 1048576 : blocks));
}

}  // namespace

void rmsnorm_f16(uint16_t *out_f16, const uint16_t *inp_f16, const float *gain, int64_t rows, int64_t cols, float eps,
                 const Stream &stream) {
    FQ_CHECK(rows >= 0 && rows <= INT_MAX && cols > 0 && cols % 2 == 0 && eps >= 0.0f, FQ_STATUS_INVALID_ARGUMENT,
             "rmsnorm_f16: bad sizes rows=%lld cols=%lld", static_cast<long long>(rows), static_cast<long long>(cols));
    if (rows == 0) return;
    FQ_CHECK(out_f16 && inp_f16 && gain && aligned(out_f16, 4) && aligned(inp_f16, 4) && aligned(gain, 8),
             FQ_STATUS_INVALID_ARGUMENT, "rmsnorm_f16: NULL or misaligned pointer");
    // The add-and-normalize kernel without the add: it only reads `h`.
    add_rmsnorm_kernel<<<static_cast<unsigned>(rows), kNormThreads, 0, static_cast<cudaStream_t>(stream.handle())>>>(
        reinterpret_cast<__half2 *>(const_cast<uint16_t *>(inp_f16)), nullptr, reinterpret_cast<__half2 *>(out_f16),
        reinterpret_cast<const float2 *>(gain), cols / 2, eps, 1.0f / static_cast<float>(cols));
    FQ_CUDA_CHECK(cudaGetLastError());
}

void add_rmsnorm_f16(uint16_t *h_f16, const uint16_t *delta_f16, uint16_t *out_f16, const float *gain, int64_t rows,
                     int64_t cols, float eps, const Stream &stream) {
    FQ_CHECK(rows >= 0 && rows <= INT_MAX && cols > 0 && cols % 2 == 0 && eps >= 0.0f, FQ_STATUS_INVALID_ARGUMENT,
             "add_rmsnorm_f16: bad sizes rows=%lld cols=%lld", static_cast<long long>(rows),
             static_cast<long long>(cols));
    if (rows == 0) return;
    FQ_CHECK(h_f16 && delta_f16 && aligned(h_f16, 4) && aligned(delta_f16, 4) &&
                 (!out_f16 || (gain && aligned(out_f16, 4) && aligned(gain, 8))),
             FQ_STATUS_INVALID_ARGUMENT, "add_rmsnorm_f16: NULL or misaligned pointer");
    add_rmsnorm_kernel<<<static_cast<unsigned>(rows), kNormThreads, 0, static_cast<cudaStream_t>(stream.handle())>>>(
        reinterpret_cast<__half2 *>(h_f16), reinterpret_cast<const __half2 *>(delta_f16),
        reinterpret_cast<__half2 *>(out_f16), reinterpret_cast<const float2 *>(gain), cols / 2, eps,
        1.0f / static_cast<float>(cols));
    FQ_CUDA_CHECK(cudaGetLastError());
}

void rope_table(float *cos_sin, int head_dim, double theta, int64_t n_pos) {
    FQ_CHECK(cos_sin && head_dim > 0 && head_dim % 2 == 0 && theta > 0.0 && n_pos >= 0, FQ_STATUS_INVALID_ARGUMENT,
             "rope_table: bad arguments");
    const int half_d = head_dim / 2;
    for (int64_t pos = 0; pos < n_pos; ++pos)
        for (int i = 0; i < half_d; ++i) {
            const double angle = static_cast<double>(pos) * std::pow(theta, -2.0 * i / head_dim);
            cos_sin[2 * (pos * half_d + i)] = static_cast<float>(std::cos(angle));
            cos_sin[2 * (pos * half_d + i) + 1] = static_cast<float>(std::sin(angle));
        }
}

void rope_f16(uint16_t *x_f16, int64_t ld, int64_t tokens, int n_heads, int head_dim, int64_t n_per_seq,
              int64_t pos0, const float *cos_sin, bool neox, const Stream &stream) {
    FQ_CHECK(tokens >= 0 && n_heads > 0 && head_dim > 0 && head_dim % 2 == 0 && n_per_seq > 0 && pos0 >= 0 &&
                 ld >= static_cast<int64_t>(n_heads) * head_dim,
             FQ_STATUS_INVALID_ARGUMENT, "rope_f16: bad sizes");
    if (tokens == 0) return;
    FQ_CHECK(x_f16 && cos_sin && aligned(cos_sin, 8), FQ_STATUS_INVALID_ARGUMENT, "rope_f16: NULL pointer");
    FQ_CHECK(head_dim % 4 == 0 && ld % 4 == 0 && aligned(x_f16, 8), FQ_STATUS_INVALID_ARGUMENT,
             "rope_f16: head_dim and ld must be multiples of 4, rows 8-byte aligned");
    const int64_t n_quads = tokens * n_heads * (head_dim / 4);
    FQ_CHECK((n_quads + 255) / 256 <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT, "rope_f16: too many pairs");
    rope_kernel<<<static_cast<unsigned>((n_quads + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream.handle())>>>(
        reinterpret_cast<__half *>(x_f16), ld, n_quads, n_heads, head_dim / 2, n_per_seq, pos0,
        reinterpret_cast<const float2 *>(cos_sin), neox);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void rope_head_transform_f16(const RopeHeadArgs &a, const Stream &stream) {
    FQ_CHECK(a.tokens >= 0 && a.n_q_heads >= 0 && a.n_k_heads >= 0 && (a.head_dim == 64 || a.head_dim == 128) &&
                 a.n_per_seq > 0 && a.pos0 >= 0 && a.ld_q >= static_cast<int64_t>(a.n_q_heads) * a.head_dim &&
                 a.ld_k >= static_cast<int64_t>(a.n_k_heads) * a.head_dim,
             FQ_STATUS_INVALID_ARGUMENT, "rope_head_transform_f16: bad sizes");
    const int64_t rows = a.tokens * (a.n_q_heads + a.n_k_heads);
    if (rows == 0) return;
    FQ_CHECK((a.n_q_heads == 0 || a.q_f16) && (a.n_k_heads == 0 || a.k_f16) && a.cos_sin && aligned(a.cos_sin, 8),
             FQ_STATUS_INVALID_ARGUMENT, "rope_head_transform_f16: NULL pointer");
    FQ_CHECK(rows <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT, "rope_head_transform_f16: too many rows");
    rope_head_kernel<<<static_cast<unsigned>(rows), a.head_dim, 0, static_cast<cudaStream_t>(stream.handle())>>>(a);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void swiglu_f16(uint16_t *out_f16, const uint16_t *gate_f16, const uint16_t *up_f16, int64_t ld_in, int64_t rows,
                int64_t cols, const Stream &stream) {
    FQ_CHECK(rows >= 0 && cols > 0 && cols % 2 == 0 && ld_in >= cols && ld_in % 2 == 0, FQ_STATUS_INVALID_ARGUMENT,
             "swiglu_f16: bad sizes");
    if (rows == 0) return;
    FQ_CHECK(out_f16 && gate_f16 && up_f16 && aligned(out_f16, 4) && aligned(gate_f16, 4) && aligned(up_f16, 4),
             FQ_STATUS_INVALID_ARGUMENT, "swiglu_f16: NULL or misaligned pointer");
    swiglu_kernel<<<grid_for(rows * cols / 2, 256), 256, 0, static_cast<cudaStream_t>(stream.handle())>>>(
        reinterpret_cast<__half2 *>(out_f16), reinterpret_cast<const __half2 *>(gate_f16),
        reinterpret_cast<const __half2 *>(up_f16), ld_in / 2, rows, cols / 2);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void gemm_f16_simple(uint16_t *d_f16, const uint16_t *a_f16, const uint16_t *w_f16, int64_t m, int64_t n, int64_t k,
                     const Stream &stream) {
    FQ_CHECK(m >= 0 && n > 0 && k > 0 && (m + kGt - 1) / kGt <= 65535 && (n + kGt - 1) / kGt <= INT_MAX,
             FQ_STATUS_INVALID_ARGUMENT, "gemm_f16_simple: bad sizes");
    if (m == 0) return;
    FQ_CHECK(d_f16 && a_f16 && w_f16, FQ_STATUS_INVALID_ARGUMENT, "gemm_f16_simple: NULL pointer");
    const bool vec = k % 8 == 0 && reinterpret_cast<uintptr_t>(a_f16) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(w_f16) % 16 == 0;
    if (m <= kGemvRows && vec) {
        const int64_t blocks = (n + kGemvWarps - 1) / kGemvWarps;
        FQ_CHECK(blocks <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT, "gemm_f16_simple: n %lld too large", (long long)n);
        gemv_f16_kernel<<<static_cast<unsigned>(blocks), 32 * kGemvWarps, 0,
                          static_cast<cudaStream_t>(stream.handle())>>>(
            reinterpret_cast<__half *>(d_f16), reinterpret_cast<const __half *>(a_f16),
            reinterpret_cast<const __half *>(w_f16), static_cast<int>(m), n, k);
        FQ_CUDA_CHECK(cudaGetLastError());
        return;
    }
    const dim3 grid(static_cast<unsigned>((n + kGt - 1) / kGt), static_cast<unsigned>((m + kGt - 1) / kGt));
    gemm_f16_kernel<<<grid, 256, 0, static_cast<cudaStream_t>(stream.handle())>>>(
        reinterpret_cast<__half *>(d_f16), reinterpret_cast<const __half *>(a_f16),
        reinterpret_cast<const __half *>(w_f16), m, n, k);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda
