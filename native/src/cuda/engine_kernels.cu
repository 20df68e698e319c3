#include "cuda/engine_kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr int kThreads = 256;

// One block-row per output row; threads copy 32-bit pairs of FP16 values. out (rows, cols), in (.., cols).
__global__ void copy_rows_kernel(uint32_t *out, const uint32_t *in, const int32_t *row_ids, int64_t stride,
                                 int64_t offset, int64_t pairs) {
    const int64_t r = blockIdx.x;
    const int64_t src = row_ids ? static_cast<int64_t>(row_ids[r]) : r * stride + offset;
    const uint32_t *s = in + src * pairs;
    uint32_t *d = out + r * pairs;
    for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) d[j] = s[j];
}

__global__ void widen_kernel(float *out, const __half *in, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[i] = __half2float(in[i]);
}

cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

}  // namespace

void embed_rows_f16(uint16_t *h_f16, const uint16_t *table_f16, const int32_t *tokens, int64_t n_tok, int64_t n_embd,
                    void *stream) {
    if (n_tok == 0) return;
    copy_rows_kernel<<<static_cast<unsigned>(n_tok), kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<uint32_t *>(h_f16), reinterpret_cast<const uint32_t *>(table_f16), tokens, 0, 0, n_embd / 2);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void gather_rows_f16(uint16_t *out_f16, const uint16_t *in_f16, int64_t rows, int64_t stride_rows, int64_t offset_rows,
                     int64_t cols, void *stream) {
    if (rows == 0) return;
    copy_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, as_stream(stream)>>>(
        reinterpret_cast<uint32_t *>(out_f16), reinterpret_cast<const uint32_t *>(in_f16), nullptr, stride_rows,
        offset_rows, cols / 2);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void widen_f16_to_f32(float *out, const uint16_t *in_f16, int64_t n, void *stream) {
    if (n == 0) return;
    const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65536);
    widen_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(stream)>>>(
        out, reinterpret_cast<const __half *>(in_f16), n);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda
