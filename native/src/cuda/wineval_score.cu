// Per-row scoring of logits next to where they are computed (contract in wineval_kernels.h): only an NLL and an
// argmax per row leave the device, not n_vocab floats.
//
// One block of kThreads threads per row, two passes over the row (the second mostly from L2): the maximum with its
// lowest index, then the sum of exp(x - max). Numerics: the maximum is exact whatever the order; each term is
// exp((double)x - (double)max) in double as token_nll computes it, and only the order of the double summation
// differs from the CPU's sequential sum (a relative difference of order n_vocab * 2^-53, ~1e-11 for 49k ids).
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/wineval_kernels.h"

namespace fq::cuda::wineval {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

constexpr int64_t kNoId = LLONG_MAX;  // a thread past the end of a short row

// (va, ia) ranks above (vb, ib): larger value, or equal value and lower id; NaN ranks below every value (the CPU's
// `row[j] > row[best]` never picks a NaN after id 0) and kNoId below everything.
__device__ __forceinline__ bool ranks_above(float va, int64_t ia, float vb, int64_t ib) {
    if (ia == kNoId) return false;
    if (ib == kNoId) return true;
    if (isnan(vb)) return !isnan(va) || ia < ib;
    return va > vb || (va == vb && ia < ib);
}

// grid-stride over rows, block kThreads. logits [rows][V], targets/nll/argmax [rows].
__global__ void score_kernel(const float *logits, int64_t rows, int64_t V, const int32_t *targets, double *nll,
                             int32_t *argmax) {
    __shared__ float w_val[kWarps];
    __shared__ int64_t w_idx[kWarps];
    __shared__ double w_sum[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *x = logits + r * V;
        // Each thread starts from its first element, so a row of -inf still yields id 0 as on the CPU.
        float best = threadIdx.x < V ? x[threadIdx.x] : -INFINITY;
        int64_t best_i = threadIdx.x < V ? int64_t{threadIdx.x} : kNoId;
        for (int64_t j = threadIdx.x + kThreads; j < V; j += kThreads) {
            const float v = x[j];
            if (ranks_above(v, j, best, best_i)) best = v, best_i = j;
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(kFullMask, best, o);
            const int64_t oi = __shfl_xor_sync(kFullMask, best_i, o);
            if (ranks_above(ov, oi, best, best_i)) best = ov, best_i = oi;
        }
        if (lane == 0) w_val[warp] = best, w_idx[warp] = best_i;
        __syncthreads();
        best = w_val[0];
        best_i = w_idx[0];
        for (int w = 1; w < kWarps; w++)
            if (ranks_above(w_val[w], w_idx[w], best, best_i)) best = w_val[w], best_i = w_idx[w];
        const double mx = static_cast<double>(best);
        double sum = 0.0;
        for (int64_t j = threadIdx.x; j < V; j += kThreads) sum += exp(static_cast<double>(x[j]) - mx);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFullMask, sum, o);
        if (lane == 0) w_sum[warp] = sum;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int w = 0; w < kWarps; w++) total += w_sum[w];
            const int32_t t = targets[r];
            nll[r] = t < 0 ? 0.0 : log(total) + mx - static_cast<double>(x[t]);
            if (argmax) argmax[r] = static_cast<int32_t>(best_i);
        }
        __syncthreads();  // w_* are rewritten for the next row
    }
}

}  // namespace

void score_rows(const float *logits, int64_t rows, int64_t n_vocab, const int32_t *targets, double *nll,
                int32_t *argmax, void *stream) {
    FQ_CHECK(rows >= 0 && n_vocab >= 1 && n_vocab <= INT_MAX && (rows == 0 || (logits && targets && nll)),
             FQ_STATUS_INVALID_ARGUMENT, "score_rows: %lld rows of %lld", static_cast<long long>(rows),
             static_cast<long long>(n_vocab));
    if (rows == 0) return;
    const unsigned grid = static_cast<unsigned>(rows < 65535 * 16 ? rows : 65535 * 16);
    score_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(logits, rows, n_vocab, targets, nll,
                                                                          argmax);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda::wineval
