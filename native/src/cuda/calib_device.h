// Device helpers shared by the calibration kernels (calib_ops.cu, calib_quant.cu, calib_attention.cu). CUDA code:
// include it from .cu files only.
//
// Block reductions combine the per-thread values through warp shuffles and then the warp results in warp order:
// for a fixed block size the combination order is fixed, so results are reproducible run to run.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda::calib::dev {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

// Threads per block for one row of `cols` elements: a warp for head_dim-sized rows, up to 256 for wide ones.
inline int row_threads(int64_t cols) {
    if (cols <= 64) return 32;
    if (cols <= 256) return 64;
    if (cols <= 1024) return 128;
    return 256;
}

inline unsigned grid_1d(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

inline void check_rows(int64_t rows, int64_t cols, const char *what) {
    FQ_CHECK(rows >= 0 && rows <= INT_MAX && cols > 0 && cols <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT,
             "%s: bad sizes rows=%lld cols=%lld", what, static_cast<long long>(rows), static_cast<long long>(cols));
}

// std::max / std::min of the CPU code ((a < b) ? b : a and (b < a) ? b : a), so that signed zeros match too.
__device__ __forceinline__ float smax(float a, float b) { return a < b ? b : a; }
__device__ __forceinline__ float smin(float a, float b) { return b < a ? b : a; }
// Share of the gradient torch.maximum(a, b) gives to a.
__device__ __forceinline__ double max_share(double a, double b) { return a > b ? 1.0 : (a == b ? 0.5 : 0.0); }
__device__ __forceinline__ double dsign(double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `scratch` holds 33
// values; the call ends with a barrier, so scratch may be reused at once.
template <typename T>
__device__ T block_sum(T v, T *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        T s = lane < n_warps ? scratch[lane] : T(0);
        s = warp_sum(s);
        if (lane == 0) scratch[32] = s;
    }
    __syncthreads();
    const T r = scratch[32];
    __syncthreads();
    return r;
}

// Row max / min with the first index of each (the CPU's row_extrema: strict comparisons while scanning up).
struct Extrema {
    float vmax, vmin;
    int imax, imin;
};

__device__ __forceinline__ void extrema_merge(Extrema &a, const Extrema &b) {
    if (b.vmax > a.vmax || (b.vmax == a.vmax && b.imax < a.imax)) a.vmax = b.vmax, a.imax = b.imax;
    if (b.vmin < a.vmin || (b.vmin == a.vmin && b.imin < a.imin)) a.vmin = b.vmin, a.imin = b.imin;
}

// Extrema of row[0..cols) over the block; every thread gets the result. scratch: 33 entries.
__device__ inline Extrema block_extrema(const float *row, int cols, Extrema *scratch) {
    Extrema e{row[0], row[0], 0, 0};
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float x = row[j];
        if (x > e.vmax) e.vmax = x, e.imax = j;
        if (x < e.vmin) e.vmin = x, e.imin = j;
    }
    for (int o = 16; o > 0; o >>= 1) {
        Extrema other;
        other.vmax = __shfl_xor_sync(kFullMask, e.vmax, o);
        other.vmin = __shfl_xor_sync(kFullMask, e.vmin, o);
        other.imax = __shfl_xor_sync(kFullMask, e.imax, o);
        other.imin = __shfl_xor_sync(kFullMask, e.imin, o);
        extrema_merge(e, other);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = e;
    __syncthreads();
    if (threadIdx.x == 0) {
        Extrema r = scratch[0];
        for (int w = 1; w < n_warps; w++) extrema_merge(r, scratch[w]);
        scratch[32] = r;
    }
    __syncthreads();
    const Extrema r = scratch[32];
    __syncthreads();
    return r;
}

}  // namespace fq::cuda::calib::dev
