// RMSNorm forward on the GPU. Kernel versions (the number stays in the name, as in a dev/ scratch file):
//   1. one thread block of 256 per row: strided sum of squares, warp shuffles, then one warp over the warp sums;
//      a second strided pass scales. Memory-bound; the second pass re-reads the row from L1/L2.
#include "cuda/rmsnorm.h"

#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr int kRmsThreads = 256;  // the tolerance in test_cuda_kernels.cpp assumes this many partial sums
constexpr unsigned kFullMask = 0xFFFFFFFFu;

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

// grid: (rows), block: (kRmsThreads)
// out: (rows, cols), rstd: (rows) or nullptr, inp: (rows, cols), weight: (cols); out may alias inp because
// every element is read (pass 1) before any is written (pass 2) and pass 2 reads and writes it in the same thread.
__global__ void rmsnorm_forward_kernel1(float *out, float *rstd, const float *inp, const float *weight, int64_t cols,
                                        float eps) {
    __shared__ float warp_sums[kRmsThreads / 32];
    __shared__ float row_rstd;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const float *x = inp + static_cast<int64_t>(blockIdx.x) * cols;

    float sum_sq = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += kRmsThreads) sum_sq = fmaf(x[c], x[c], sum_sq);
    sum_sq = warp_sum(sum_sq);
    if (lane == 0) warp_sums[warp] = sum_sq;
    __syncthreads();
    if (warp == 0) {
        float s = lane < kRmsThreads / 32 ? warp_sums[lane] : 0.0f;
        s = warp_sum(s);
        // IEEE sqrt and division rather than rsqrtf (2 ulp): one rounding each keeps the bound tight.
        if (lane == 0) row_rstd = 1.0f / sqrtf(s / static_cast<float>(cols) + eps);
    }
    __syncthreads();
    const float rs = row_rstd;

    float *y = out + static_cast<int64_t>(blockIdx.x) * cols;
    for (int64_t c = threadIdx.x; c < cols; c += kRmsThreads) y[c] = x[c] * rs * weight[c];
    if (rstd != nullptr && threadIdx.x == 0) rstd[blockIdx.x] = rs;
}

}  // namespace

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                     float eps, const Stream &stream) {
    FQ_CHECK(rows >= 0 && rows <= INT_MAX && cols > 0 && cols < (int64_t{1} << 24), FQ_STATUS_INVALID_ARGUMENT,
             "rmsnorm_forward: bad shape (%lld, %lld)", static_cast<long long>(rows), static_cast<long long>(cols));
    FQ_CHECK(std::isfinite(eps) && eps >= 0.0f, FQ_STATUS_INVALID_ARGUMENT, "rmsnorm_forward: eps %g", eps);
    FQ_CHECK(rows == 0 || (out && inp && weight), FQ_STATUS_INVALID_ARGUMENT, "rmsnorm_forward: NULL tensor");
    if (rows == 0) return;
    rmsnorm_forward_kernel1<<<static_cast<unsigned>(rows), kRmsThreads, 0,
                              static_cast<cudaStream_t>(stream.handle())>>>(out, rstd, inp, weight, cols, eps);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda
