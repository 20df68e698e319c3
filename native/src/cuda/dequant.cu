// Dequantization of GGUF Q8_0 / Q4_1 blocks on the GPU. Kernel versions:
//   1. one warp per 32-element block, lane j produces element j: the block's bytes are read once per warp
//      (d and m are broadcast loads) and each warp writes 128 contiguous bytes (FP32) or 64 (FP16).
//      Grid-stride over blocks, so any tensor size fits in one launch.
#include "cuda/dequant.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "io/gguf.h"

namespace fq::cuda {

namespace {

constexpr uint32_t kTypeQ4_1 = static_cast<uint32_t>(gguf::TensorType::Q4_1);
constexpr uint32_t kTypeQ8_0 = static_cast<uint32_t>(gguf::TensorType::Q8_0);
constexpr int kBlockElems = 32;
constexpr int kWarpsPerCta = 8;
constexpr int64_t kMaxCtas = int64_t{1} << 20;  // grid-stride beyond this many thread blocks

template <uint32_t Type> struct BlockTraits;
template <> struct BlockTraits<kTypeQ8_0> { static constexpr int kBytes = 2 + kBlockElems; };      // d, q[32]
template <> struct BlockTraits<kTypeQ4_1> { static constexpr int kBytes = 4 + kBlockElems / 2; };  // d, m, nibbles

__device__ __forceinline__ float load_f16(const uint8_t *p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(p)));
}

__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__half *p, float v) { *p = __float2half_rn(v); }

// grid: (min(ceil(n_blocks / kWarpsPerCta), kMaxCtas)), block: (32 * kWarpsPerCta)
// out: (n_blocks / blocks_per_row, ld_out); blocks: n_blocks blocks of Type, blocks_per_row per row.
template <uint32_t Type, class OutT>
__global__ void dequantize_rows_kernel1(OutT *out, int64_t ld_out, const uint8_t *blocks, int64_t n_blocks,
                                        int64_t blocks_per_row) {
    constexpr int kBytes = BlockTraits<Type>::kBytes;
    const int lane = threadIdx.x & 31;
    const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerCta;
    for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + (threadIdx.x >> 5); b < n_blocks;
         b += n_warps) {
        const uint8_t *blk = blocks + b * kBytes;
        const int64_t row = b / blocks_per_row;
        const int64_t col = (b - row * blocks_per_row) * kBlockElems + lane;
        const float d = load_f16(blk);
        float v;
        if constexpr (Type == kTypeQ8_0) {
            v = d * static_cast<float>(static_cast<int8_t>(blk[2 + lane]));
        } else {
            const uint8_t byte = blk[4 + (lane & 15)];
            const int q = lane < 16 ? (byte & 0x0F) : (byte >> 4);
            // d*q is exact in FP32, so the fused and the separate multiply-add round identically (once).
            v = fmaf(d, static_cast<float>(q), load_f16(blk + 2));
        }
        store(out + row * ld_out + col, v);
    }
}

template <class OutT>
void launch(OutT *out, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows, int64_t cols,
            const Stream &stream) {
    FQ_CHECK(rows >= 0 && cols > 0 && cols % kBlockElems == 0 && ld_out >= cols, FQ_STATUS_INVALID_ARGUMENT,
             "dequantize_rows: bad shape rows=%lld cols=%lld ld_out=%lld (cols must be a multiple of 32)",
             static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(ld_out));
    FQ_CHECK(rows == 0 || ld_out <= INT64_MAX / rows, FQ_STATUS_INVALID_ARGUMENT,
             "dequantize_rows: rows * ld_out overflows");
    FQ_CHECK(ggml_type == kTypeQ8_0 || ggml_type == kTypeQ4_1, FQ_STATUS_UNSUPPORTED,
             "dequantize_rows: tensor type %s is not Q4_1 or Q8_0", gguf::tensor_type_name(ggml_type));
    if (rows == 0) return;
    FQ_CHECK(out && blocks, FQ_STATUS_INVALID_ARGUMENT, "dequantize_rows: NULL tensor");
    FQ_CHECK(reinterpret_cast<uintptr_t>(blocks) % 2 == 0, FQ_STATUS_INVALID_ARGUMENT,
             "dequantize_rows: blocks are not 2-byte aligned (their fp16 scales are loaded as 16-bit words)");

    const int64_t blocks_per_row = cols / kBlockElems;
    const int64_t n_blocks = rows * blocks_per_row;
    const auto n_ctas = static_cast<unsigned>(std::min((n_blocks + kWarpsPerCta - 1) / kWarpsPerCta, kMaxCtas));
    const auto *src = static_cast<const uint8_t *>(blocks);
    auto s = static_cast<cudaStream_t>(stream.handle());
    if (ggml_type == kTypeQ8_0) {
        dequantize_rows_kernel1<kTypeQ8_0><<<n_ctas, 32 * kWarpsPerCta, 0, s>>>(out, ld_out, src, n_blocks,
                                                                                 blocks_per_row);
    } else {
        dequantize_rows_kernel1<kTypeQ4_1><<<n_ctas, 32 * kWarpsPerCta, 0, s>>>(out, ld_out, src, n_blocks,
                                                                                 blocks_per_row);
    }
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void dequantize_rows_f32(float *out, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols, const Stream &stream) {
    launch(out, ld_out, blocks, ggml_type, rows, cols, stream);
}

void dequantize_rows_f16(uint16_t *out_f16, int64_t ld_out, const void *blocks, uint32_t ggml_type, int64_t rows,
                         int64_t cols, const Stream &stream) {
    launch(reinterpret_cast<__half *>(out_f16), ld_out, blocks, ggml_type, rows, cols, stream);
}

}  // namespace fq::cuda
