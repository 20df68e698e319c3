// The fused online transform + quantization of the W4A4 engine on the GPU: per token, X' = P1^T X P2 on tensor
// cores, the learned activation clip (LAC), symmetric per-token INT4 quantization, and the packed store, in one pass
// that reads each token once (its A operand feeds native/src/cuda/w4a4_gemm.h). CPU twin, with the exact rounding
// points: native/src/cpu/kron_quant_ref.h.
//
// Size letters: T tokens; a token is a row of n = n1 * n2 FP16 values read row-major as X[n1][n2]; P1 is n1 x n1,
// P2 is n2 x n2 (the Kronecker factors of spec section 2, n1 <= n2 as decompose_dim returns them; either may be
// the identity). Per token:
//   Z  = X P2 on tensor cores (FP16 x FP16, FP32 accumulation), rounded to FP16 when P1 follows (the A operand
//        of the second product; the official kernel rounds its intermediate the same way)
//   Y  = P1^T Z in FP32 accumulation
//   quantized formats, per output o (up to kKronMaxOutputs, each with its own LAC factors, all from one Y):
//     xmax = max(max Y, 0) * clip_max, xmin = min(min Y, 0) * clip_min, s = max(|xmin|, xmax) / 7 (1 where 0),
//     q = clamp(rint(Y * (1/s)), -8, 7) (half to even), and s stored as FP32 per token: the A operand and a_scale of
//     w4a4_gemm. Several outputs exist because q, k and v (and up and gate) share one transform but each has its
//     own LAC pair (spec 9.1): the transform runs once and each output costs only its store.
//   kF16: fp16(Y), the A16 configurations' input (and, with P1 the identity, the per-head q/k transform).
//
// Why FP16 factors: the tensor-core operands are FP16 whatever the caller stores, so FP32 factors would only be
// rounded inside every block again; taking them in FP16 (converted once, when a layer is loaded) halves what each
// block loads and makes that rounding visible to the twin. The factors of a trained transform are O(1/sqrt(n1)),
// far from FP16's range limits.
//
// Fusion: a block holds a group of tokens in shared memory (zero-padded to multiples of 16 on both axes), each of
// its warps owns a 16-row strip of one token's Z^T: it computes that strip of Z^T = P2^T X^T (P2's strip lives in
// registers for the whole kernel), converts the FP32 accumulators in registers into the FP16 A fragments of
// Y^T = Z^T P1 (P1^T in shared memory), reduces the strip's max/min, and after one block barrier has the token's
// scale, quantizes from registers and stages the bytes in shared memory for coalesced stores. The next group's
// tokens stream in by cp.async meanwhile. No intermediate touches global memory for any supported factor
// pair (the official kernel splits into two passes when n1 > 64).
//
// Supported factor pairs (kron_quant_supported): each call runs the smallest compiled padded shape that holds
// (n1, n2):  both factors: (32,32) (32,48) (64,64) (64,80) (96,128) (112,128) (128,160), which covers 576 = 24x24,
// 896 = 28x32, 1536 = 32x48, 3584 = 56x64, 4096 = 64x64, 4864 = 64x76, 5120 = 64x80, 11008 = 86x128,
// 13824 = 108x128, 14336 = 112x128, 18944 = 128x148;  P2 the identity (o_proj head mixing, n1 = heads,
// n2 = head_dim): (16,64) (32,128);  P1 the identity (per-head q/k transform): (16,64) (16,128).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fq::cuda {

class Stream;

enum class KronOutFormat : int32_t {
    kInt4Packed = 0,  // (T, n/2) bytes: signed INT4, element 2j in the low nibble of byte j (w4a4_gemm kInt4Packed)
    kInt8 = 1,        // (T, n) int8, one value in [-8, 7] per byte (w4a4_gemm kInt8, the sm_90 kernels' operand)
    kF16 = 2,         // (T, n) FP16 bit patterns, no quantization
};

constexpr int kKronMaxOutputs = 3;

struct KronQuantOutput {
    void *data = nullptr;    // device memory in `format`, (T, ...) as above, row-major; 16-byte alignment and
                             // n % 16 == 0 give vector stores, anything else still works
    float *scale = nullptr;  // (T) FP32 per-token scale; quantized formats only (nullptr for kF16)
    float clip_max = 1.0f;   // LAC factors sigmoid(a_max), sigmoid(a_min) rounded to FP32 (fq::cpu::lac_factor);
    float clip_min = 1.0f;   // 1 = no clipping. Finite and > 0.
};

struct KronQuantArgs {
    const uint16_t *x_f16 = nullptr;   // (T, n1*n2) FP16 bit patterns, row-major, 2-byte aligned (16 is fastest)
    const uint16_t *p1_f16 = nullptr;  // (n1, n1) FP16, row-major, or nullptr for the identity
    const uint16_t *p2_f16 = nullptr;  // (n2, n2) FP16, row-major, or nullptr for the identity (not both)
    int64_t tokens = 0;
    int n1 = 0, n2 = 0;                // n1 * n2 even
    KronOutFormat format = KronOutFormat::kInt4Packed;
    int n_outputs = 1;                 // 1..kKronMaxOutputs for quantized formats; 1 for kF16
    KronQuantOutput out[kKronMaxOutputs];
};

// Whether a compiled shape holds (n1, n2) with these identity flags. Never throws.
bool kron_quant_supported(int n1, int n2, bool has_p1, bool has_p2);

// How a call runs on the current device (for benchmarks and tests): the compiled padded shape, tokens per block,
// shared-memory stages, grid and block sizes.
struct KronQuantPlan {
    int n1_padded = 0, n2_padded = 0;
    int tokens_per_block = 0;
    int stages = 0;                 // 2: the next group loads during this one's math; 1: where 2 do not fit
    int grid_blocks = 0, block_threads = 0;
    size_t smem_bytes = 0;
};
KronQuantPlan kron_quant_plan(const KronQuantArgs &args);

// Queues the transform (+ quantization) on `stream`; returns before it finishes. All pointers are device memory.
// For kF16 the output may be the input itself (out[0].data == x_f16: every block reads its tokens whole before it
// writes them); other overlaps are not allowed. T == 0 does nothing.
// Errors: INVALID_ARGUMENT (sizes, NULL or misaligned pointers, bad clip factors or output count), UNSUPPORTED (no
// compiled shape holds (n1, n2), or it does not fit the device's shared memory), DEVICE_UNAVAILABLE, launch errors
// as FQ_CUDA_CHECK reports them.
void kron_quant(const KronQuantArgs &args, const Stream &stream);

namespace detail {
// Test hooks: force the number of shared-memory stages (1 or 2) and tokens per block (clamped to what the shape
// allows); 0 restores the automatic choice. Not thread-safe; for tests only.
void kron_quant_set_overrides(int stages, int tokens_per_block);
}  // namespace detail

}  // namespace fq::cuda
