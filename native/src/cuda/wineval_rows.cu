// The row pipeline of the evaluator (contract in wineval_kernels.h): input -> Kronecker transform -> output, one
// thread block of 256 threads per group of up to kMaxRows rows held in shared memory.
//
// The two factor products are small dense products per row (n (n1 + n2) multiply-adds). Each thread computes a
// 4 x 4 tile of outputs (4 rows i of the [n1][n2] view by 4 adjacent columns j), so one float4 read of the
// shared row or of P2 and four scalar reads serve 16 FMAs. The factors are copied into shared memory when they fit
// beside the rows (else they are read through the cache). The scalar variant (n2 not a multiple of 4) tiles 4 x 1.
// The output stage gives one warp to each row: max/min, then every quantized variant.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/wineval_common.cuh"
#include "cuda/wineval_kernels.h"

namespace fq::cuda::wineval {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxRows = kThreads / 32;  // one warp per row in the normalization and output stages
constexpr int kRowFloats = 12288;        // rows per block: as many as fit this many floats (at least 1)

__host__ __device__ inline int round4(int v) { return (v + 3) & ~3; }

// dst[r] = P1^T src[r] (left) or src[r] P2 (right) for the R rows of src, each [n1][n2].
template <bool kVec, bool kLeft>
__device__ void factor_product(float *dst, const float *src, const float *P, int R, int n1, int n2) {
    const int n = n1 * n2;
    const int TI = (n1 + 3) / 4, TJ = kVec ? n2 / 4 : n2, per_row = TI * TJ;
    const int kdim = kLeft ? n1 : n2;
    for (int t = threadIdx.x; t < R * per_row; t += kThreads) {
        const int r = t / per_row, rem = t - r * per_row, ti = rem / TJ, tj = rem - ti * TJ;
        const int i0 = ti * 4, j0 = kVec ? tj * 4 : tj;
        const float *X = src + r * n;
        // Rows past n1 are computed from row n1 - 1 (valid memory) and never stored.
        int ii[4];
#pragma unroll
        for (int u = 0; u < 4; u++) ii[u] = min(i0 + u, n1 - 1);
        float acc[4][4] = {};
        for (int k = 0; k < kdim; k++) {
            float a[4], b[4];
            if (kLeft) {  // B[i][j] = sum_k P1[k][i] X[k][j]
#pragma unroll
                for (int u = 0; u < 4; u++) a[u] = P[k * n1 + ii[u]];
                if (kVec) {
                    const float4 v = *reinterpret_cast<const float4 *>(X + k * n2 + j0);
                    b[0] = v.x, b[1] = v.y, b[2] = v.z, b[3] = v.w;
                } else {
                    b[0] = X[k * n2 + j0];
                }
            } else {  // O[i][j] = sum_k S[i][k] P2[k][j]
#pragma unroll
                for (int u = 0; u < 4; u++) a[u] = X[ii[u] * n2 + k];
                if (kVec) {
                    const float4 v = *reinterpret_cast<const float4 *>(P + k * n2 + j0);
                    b[0] = v.x, b[1] = v.y, b[2] = v.z, b[3] = v.w;
                } else {
                    b[0] = P[k * n2 + j0];
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++)
#pragma unroll
                for (int w = 0; w < (kVec ? 4 : 1); w++) acc[u][w] = fmaf(a[u], b[w], acc[u][w]);
        }
        float *Y = dst + r * n;
#pragma unroll
        for (int u = 0; u < 4; u++) {
            if (i0 + u >= n1) break;
            if (kVec) {
                *reinterpret_cast<float4 *>(Y + (i0 + u) * n2 + j0) =
                    make_float4(acc[u][0], acc[u][1], acc[u][2], acc[u][3]);
            } else {
                Y[(i0 + u) * n2 + j0] = acc[u][0];
            }
        }
    }
}

// grid (ceil(rows / r_per_block)), block kThreads, dynamic shared memory: [P1 (padded)] [P2 (padded)] when
// p_in_smem, then the rows [r_per_block][n] and, with a transform, a second such buffer.
template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    row_pipeline_kernel(RowPipeline p, int64_t rows, int r_per_block, bool p_in_smem) {
    extern __shared__ float4 rows_sm4[];
    __shared__ float row_scale[kMaxRows];
    float *sm = reinterpret_cast<float *>(rows_sm4);
    const int n1 = p.n1, n2 = p.n2, n = n1 * n2;
    const float *P1 = p.p1, *P2 = p.p2;
    float *a = sm;
    if (p_in_smem) {
        float *s1 = sm, *s2 = sm + (P1 ? round4(n1 * n1) : 0);
        if (P1)
            for (int e = threadIdx.x; e < n1 * n1; e += kThreads) s1[e] = P1[e];
        if (P2)
            for (int e = threadIdx.x; e < n2 * n2; e += kThreads) s2[e] = P2[e];
        if (P1) P1 = s1;
        if (P2) P2 = s2;
        a = s2 + (P2 ? round4(n2 * n2) : 0);
    }
    float *b = a + r_per_block * n;
    const int64_t row0 = int64_t{blockIdx.x} * r_per_block;
    const int R = static_cast<int>(min(int64_t{r_per_block}, rows - row0));

    if (p.input == RowInput::SwiGlu) {
        const float *x = p.x + row0 * 2 * n;
        for (int e = threadIdx.x; e < R * n; e += kThreads) {
            const int r = e / n, c = e - r * n;
            const float u = x[int64_t{r} * 2 * n + c], g = x[int64_t{r} * 2 * n + n + c];
            a[e] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
        }
    } else {
        const float *x = p.x + row0 * n;
        for (int e = threadIdx.x; e < R * n; e += kThreads) a[e] = x[e];
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (p.input == RowInput::RmsNorm) {
        if (warp < R) {
            const float *xr = a + warp * n;
            double ss = 0.0;
            for (int c = lane; c < n; c += 32) ss += static_cast<double>(xr[c]) * xr[c];
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(kFullMask, ss, o);
            if (lane == 0)
                row_scale[warp] = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) +
                                                               static_cast<double>(p.eps)));
        }
        __syncthreads();
        for (int e = threadIdx.x; e < R * n; e += kThreads) {
            const int r = e / n, c = e - r * n;
            a[e] = __fmul_rn(__fmul_rn(a[e], row_scale[r]), p.gain[c]);
        }
        __syncthreads();
    }
    float *src = a, *dst = b;
    if (P1) {
        factor_product<kVec, true>(dst, src, P1, R, n1, n2);
        __syncthreads();
        float *t = src;
        src = dst, dst = t;
    }
    if (P2) {
        factor_product<kVec, false>(dst, src, P2, R, n1, n2);
        __syncthreads();
        src = dst;
    }
    for (int r = warp; r < R; r += kMaxRows) {
        const float *yr = src + r * n;
        const int64_t off = (row0 + r) * n;
        if (p.bits >= 16) {
            for (int c = lane; c < n; c += 32) p.out[0][off + c] = yr[c];
            continue;
        }
        float vmax = -INFINITY, vmin = INFINITY;
        for (int c = lane; c < n; c += 32) {
            vmax = fmaxf(vmax, yr[c]);
            vmin = fminf(vmin, yr[c]);
        }
        warp_max_min(vmax, vmin);
#pragma unroll
        for (int v = 0; v < 3; v++) {  // constant indices keep p.out / p.sig_* out of local memory
            if (v >= p.n_out) break;
            const QuantParams q = quant_params(vmax, vmin, true, p.bits, p.sig_max[v], p.sig_min[v]);
            float *o = p.out[v] + off;
            for (int c = lane; c < n; c += 32) o[c] = fake_quant(yr[c], q);
        }
    }
}

size_t smem_limit() {
    int dev = 0, bytes = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&dev));
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return static_cast<size_t>(bytes) - kMaxRows * sizeof(float);
}

}  // namespace

void row_pipeline(const RowPipeline &p, int64_t rows, void *stream) {
    const int64_t n = int64_t{p.n1} * p.n2;
    FQ_CHECK(rows >= 0 && p.n1 > 0 && p.n2 > 0 && n <= INT_MAX / 2 && p.x && p.out[0] &&
                 (p.input != RowInput::RmsNorm || p.gain) && p.n_out >= 1 && p.n_out <= 3 &&
                 (p.bits == 16 || (p.bits >= 2 && p.bits <= 8)) && (p.bits == 16 || p.n_out == 1 || p.out[p.n_out - 1]),
             FQ_STATUS_INVALID_ARGUMENT, "row_pipeline: bad arguments (n1=%d n2=%d bits=%d n_out=%d)", p.n1, p.n2,
             p.bits, p.n_out);
    if (rows == 0) return;
    const bool transform = p.p1 || p.p2;
    const int r_per_block = static_cast<int>(std::clamp<int64_t>(kRowFloats / n, 1, kMaxRows));
    const size_t row_bytes = sizeof(float) * static_cast<size_t>(r_per_block * n) * (transform ? 2 : 1);
    const size_t p_bytes = sizeof(float) * ((p.p1 ? round4(p.n1 * p.n1) : 0) + (p.p2 ? round4(p.n2 * p.n2) : 0));
    const size_t limit = smem_limit();
    FQ_CHECK(row_bytes <= limit, FQ_STATUS_UNSUPPORTED,
             "row_pipeline: a row of %lld values needs %zu bytes of shared memory, the device has %zu",
             static_cast<long long>(n), row_bytes, limit);
    const bool p_in_smem = transform && row_bytes + p_bytes <= limit;
    const size_t smem = row_bytes + (p_in_smem ? p_bytes : 0);
    const int64_t blocks = (rows + r_per_block - 1) / r_per_block;
    FQ_CHECK(blocks <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT, "row_pipeline: %lld rows", static_cast<long long>(rows));
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    auto launch = [&](auto kernel) {
        // The opt-in is needed once dynamic plus static shared memory passes 48 KiB.
        if (smem + sizeof(float) * kMaxRows > 48 * 1024)
            FQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem)));
        kernel<<<static_cast<unsigned>(blocks), kThreads, smem, s>>>(p, rows, r_per_block, p_in_smem);
        FQ_CUDA_CHECK(cudaGetLastError());
    };
    if (p.n2 % 4 == 0) {
        launch(row_pipeline_kernel<true>);
    } else {
        launch(row_pipeline_kernel<false>);
    }
}

void act_quant_sym_rows(float *out, const float *x, int64_t rows, int64_t cols, int bits, float sig_max,
                        float sig_min, void *stream) {
    FQ_CHECK(cols > 0 && cols <= INT_MAX / 2 && bits >= 2 && bits <= 8, FQ_STATUS_INVALID_ARGUMENT,
             "act_quant_sym_rows: cols %lld bits %d", static_cast<long long>(cols), bits);
    RowPipeline p;
    p.x = x;
    p.n2 = static_cast<int>(cols);
    p.bits = bits;
    p.out[0] = out;
    p.sig_max[0] = sig_max;
    p.sig_min[0] = sig_min;
    row_pipeline(p, rows, stream);
}

void kron_rows(float *out, const float *x, const float *p1, const float *p2, int64_t rows, int n1, int n2,
               void *stream) {
    RowPipeline p;
    p.x = x;
    p.n1 = n1;
    p.n2 = n2;
    p.p1 = p1;
    p.p2 = p2;
    p.out[0] = out;
    row_pipeline(p, rows, stream);
}

}  // namespace fq::cuda::wineval
