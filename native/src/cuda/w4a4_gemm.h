// W4A4 GEMM on the GPU: INT4 activations times INT4 weights, int32 accumulation, dequantization in the epilogue.
// CPU twin and the INT4 packing format: native/src/cpu/w4a4_gemm_ref.h.
//
//   D[M][N] (fp16, row-major) = (A_q[M][K] . B_q[N][K]^T) * a_scale[M] * b_scale[N] (+ bias[N])
//
// Size letters: M tokens, N output channels, K reduction length. Values are signed INT4 in [-8, 7].
//   acc = sum_k A_q[m][k] * B_q[n][k]   int32, exact (|acc| <= 64 K)
//   D   = fp16_rne(fmaf(fp32(acc) * a_scale[m], b_scale[n], bias ? bias[n] : +0))
// The epilogue order is fixed and every kernel follows it (explicit __fmul_rn / __fmaf_rn, no contraction), so each
// kernel's output equals the CPU twin's bit for bit.
//
// Scales and bias are FP32: the epilogue computes in FP32 anyway, the vectors are tiny (M + 2N values, so FP16 would
// save nothing measurable), and an FP16 scale would lose digits exactly on quiet tokens, whose absmax/7 falls below
// FP16's normal range (6.1e-5) into its subnormals.
//
// Operand formats
//   B (weights):      (N, K/2) bytes, packed INT4 (element 2j in the low nibble of byte j), row-major = K-major.
//                     Optionally also an INT8 copy (N, K), one value per byte, for the sm_90 S8S8 kernel (below).
//   A (activations):  either format, stated per call:
//     kInt4Packed     (M, K/2) bytes, packed like B: the native operand of the sm_80/86/89 INT4 tensor cores;
//     kInt8           (M, K) int8, one value in [-8, 7] per byte: the native operand of the sm_90 kernels (Hopper
//                     has no INT4 tensor cores, its INT8 wgmma computes the same integers). An activation quantizer
//                     on sm_90 should emit this form: it saves an unpacking pass. w4a4_native_act_format() says
//                     which one the current device prefers; the other one is converted through the workspace.
//
// Kernels (W4A4Kernel), chosen by w4a4_gemm for the current device and M unless one is forced:
//   kGemv      M <= 16 (decode), any sm_80+ GPU: INT4 weights streamed from memory once, 16 B per thread per load,
//              unpacked in registers to INT8 and fed to mma.sync m16n8k32 s8 (the 16 rows of the MMA are the tokens);
//              K split over the 8 warps of a block and summed exactly in int32. Activations are INT4 values too
//              (either format above), not FP16: the same quantized operand as in prefill, so decode and prefill
//              compute the same numbers.   [w4a4_gemm_sm80.cu]
//   kSm80Int4  sm_80/86/89: native INT4 mma.sync m16n8k64 s4, ldmatrix, cp.async, 128x128x128 tiles, 3 stages.
//              Its sm_90 build is empty (INT4 MMA is emulated there, ~50 TOPS); on an H100 it runs only from the
//              compute_86 PTX (CUDA_FORCE_PTX_JIT=1), for correctness checks.   [w4a4_gemm_sm80.cu]
//   kSm90S8S4  sm_90, CUTLASS 3.x: INT8 activations x INT4 weights, the weights converted to INT8 in registers and
//              fed to register-sourced wgmma (TMA, warp-specialized cooperative, 128x256x128). Weights stay INT4 in
//              memory.   [w4a4_gemm_sm90.cu]
//   kSm90S8S8  sm_90, CUTLASS 3.x: INT8 x INT8 wgmma (TMA, warp-specialized cooperative, 128x256x128, cluster 2x1),
//              the configuration of the 1515-1857 TOPS INT8 GEMM. Needs an INT8 copy of the weights, N K bytes per
//              layer on top of the N K / 2 of the packed ones (which decode keeps using): for LLaMA-2-7B's linear
//              layers 6.5 GB more, 9.7 GB in all against 13 GB in FP16. Chosen automatically when the caller
//              supplies the copy; which of S8S4 / S8S8 to use is the benchmark's call (bench_w4a4_gemm).
//
// Limits (checked before anything is launched; FQ_STATUS_UNSUPPORTED): K a multiple of 64 and at most 65536, N a
// multiple of 8, M >= 0 (any value; M == 0 does nothing), a GPU of compute capability 8.0 or newer, and for the sm_90
// kernels a build with CUTLASS. Pointers must be device memory, 16-byte aligned (INVALID_ARGUMENT otherwise).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fq::cuda {

class Stream;

enum class W4A4ActFormat : int32_t {
    kInt4Packed = 0,  // (M, K/2) bytes, two values per byte
    kInt8 = 1,        // (M, K) bytes, one value in [-8, 7] per byte
};

enum class W4A4Kernel : int32_t {
    kAuto = 0,
    kGemv = 1,
    kSm80Int4 = 2,
    kSm90S8S4 = 3,
    kSm90S8S8 = 4,
};

const char *w4a4_kernel_name(W4A4Kernel kernel);

struct W4A4GemmArgs {
    uint16_t *d_f16 = nullptr;          // (m, n) FP16 bit patterns (__half), row-major, ld = n
    const void *a = nullptr;            // (m, k/2) packed INT4 or (m, k) int8, row-major (a_format says which)
    W4A4ActFormat a_format = W4A4ActFormat::kInt4Packed;
    const float *a_scale = nullptr;     // (m) FP32, per token
    const uint8_t *b_packed = nullptr;  // (n, k/2) packed INT4, K-major; always required
    const int8_t *b_s8 = nullptr;       // (n, k) int8 copy of the same values, K-major, or nullptr (see kSm90S8S8)
    const float *b_scale = nullptr;     // (n) FP32, per output channel
    const float *bias = nullptr;        // (n) FP32, or nullptr for none
    int64_t m = 0, n = 0, k = 0;
};

// The activation format the kernels of the current device consume without conversion (kInt8 on sm_90 builds with
// CUTLASS, kInt4Packed elsewhere). Throws DEVICE_UNAVAILABLE without a device.
// The first call of this or of the functions below on a device runs two tiny probe kernels (a cudaMalloc, launches
// and a synchronize, see detail::probe_code_arch): make that first call outside CUDA graph capture, e.g. at load.
W4A4ActFormat w4a4_native_act_format();

// The kernel w4a4_gemm would run for `args` on the current device (kernel = kAuto), or checks that a forced one can
// run there. Throws UNSUPPORTED for shapes outside the limits above, for a device older than sm_80, or for a forced
// kernel this build/device lacks.
W4A4Kernel w4a4_select_kernel(const W4A4GemmArgs &args, W4A4Kernel kernel = W4A4Kernel::kAuto);

// Device scratch memory w4a4_gemm needs for `args` with that kernel (the converted activations, CUTLASS's own);
// 0 when none. The same limits and errors as w4a4_select_kernel.
size_t w4a4_gemm_workspace_bytes(const W4A4GemmArgs &args, W4A4Kernel kernel = W4A4Kernel::kAuto);

// Queues D = the W4A4 product on `stream` (returns before it finishes). workspace: device memory of at least
// w4a4_gemm_workspace_bytes(args, kernel) bytes, 256-byte aligned (cudaMalloc's are), not used by anything else
// until the stream has passed this call; may be nullptr when that size is 0. d_f16 must not overlap the inputs.
// Errors: UNSUPPORTED (see the limits), INVALID_ARGUMENT (NULL or misaligned pointers, too small a workspace),
// launch errors as FQ_CUDA_CHECK reports them.
void w4a4_gemm(const W4A4GemmArgs &args, void *workspace, size_t workspace_bytes, const Stream &stream,
               W4A4Kernel kernel = W4A4Kernel::kAuto);

// Device-side format conversions, queued on `stream`. n_values must be even; pointers 16-byte aligned.
// values: (n_values) int8, packed: (n_values / 2) bytes in the packed INT4 format. Packing keeps the low 4 bits of
// each value, so values outside [-8, 7] do not round-trip.
void int4_unpack_to_int8(int8_t *values, const uint8_t *packed, int64_t n_values, const Stream &stream);
void int8_pack_to_int4(uint8_t *packed, const int8_t *values, int64_t n_values, const Stream &stream);

namespace detail {

// The arch (e.g. 860, 900) of the code the device actually runs from each kernel file, found by launching a probe
// kernel once per device: 0 when the file has no code for this device. Under CUDA_FORCE_PTX_JIT=1 on an H100 the
// sm80 file reports 860 (its compute_86 PTX) and the sm90 file 0 or 860, which is how the INT4 path becomes
// reachable there and the sm_90 kernels unreachable.
int w4a4_sm80_code_arch();
int w4a4_sm90_code_arch();  // 900 only where the sm_90a code with CUTLASS is what runs
// Shared by both: launches `probe_kernel` (void(int *), writes its __CUDA_ARCH__) once per device; `which` (0, 1)
// keys the cache.
int probe_code_arch(int which, const void *probe_kernel);

// Launchers of w4a4_gemm_sm90.cu (arguments checked by the caller). a_s8: (m, k) int8.
bool w4a4_sm90_built_with_cutlass();
size_t w4a4_sm90_workspace_bytes(W4A4Kernel kernel, int64_t m, int64_t n, int64_t k);
void w4a4_sm90_gemm(W4A4Kernel kernel, uint16_t *d_f16, const int8_t *a_s8, const float *a_scale,
                    const uint8_t *b_packed, const int8_t *b_s8, const float *b_scale, const float *bias, int64_t m,
                    int64_t n, int64_t k, void *workspace, size_t workspace_bytes, void *cuda_stream);

}  // namespace detail

}  // namespace fq::cuda
