// W4A4 GEMM kernels for Hopper (sm_90a), built from CUTLASS 3.x parts. Hopper has no INT4 tensor cores, so both
// kernels compute the same integers on INT8 wgmma (s8 x s8 -> s32, bit-identical to an INT4 MMA); the per-token x
// per-channel dequantization (+ bias) is an epilogue visitor tree (EVT) applied to the int32 accumulators before the
// single FP16 store. Contract and numerics: w4a4_gemm.h.
//
//   S8S8: A int8 (M, K) x B int8 (N, K), both K-major; TMA + wgmma (SS), warp-specialized cooperative, 128x256x128,
//         cluster 2x1x1 (B tiles multicast to the two CTAs of a cluster), persistent tile scheduler. The
//         configuration of the 1515-1857 TOPS INT8 GEMM of the anchors; needs the INT8 copy of the weights.
//   S8S4: B stays packed INT4 in memory. CUTLASS's mixed-input mainloop puts the narrow operand first and converts it
//         to INT8 in registers for register-sourced wgmma (RS), so the product is computed transposed:
//         D^T (N, M) = B (N, K) . A (M, K)^T, D^T column-major = D row-major. 128 channels x 256 tokens x 128 k.
//
// Without CUTLASS headers (FQ_HAVE_CUTLASS undefined) this file keeps only stubs that report "no sm_90 kernels".
// Only the sm_90a pass generates real kernel code: CUTLASS compiles the kernel bodies to nothing for other targets,
// and the probe below tells the dispatcher which code the device actually runs.
#include "cuda/w4a4_gemm.h"

#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/cuda_backend.h"

#ifdef FQ_HAVE_CUTLASS
#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>
#endif

namespace fq::cuda {

#ifdef FQ_HAVE_CUTLASS

namespace {

using namespace cute;

__global__ void w4a4_sm90_probe_kernel(int *code_arch) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *code_arch = 900;
#elif defined(__CUDA_ARCH__)
    *code_arch = __CUDA_ARCH__ < 900 ? __CUDA_ARCH__ : 0;  // other targets: no wgmma/TMA code in this file
#endif
}

// Epilogue arithmetic with explicit rounding, so the EVT evaluates exactly the twin's
//   fp16_rne(fmaf(fp32(acc) * a_scale, b_scale, bias))
// whatever nvcc would otherwise contract. ComputeFn templates take one parameter (Sm90Compute's contract).
template <class T> struct MulRn {
    CUTLASS_HOST_DEVICE T operator()(T const &a, T const &b) const {
#ifdef __CUDA_ARCH__
        return __fmul_rn(a, b);
#else
        return a * b;
#endif
    }
};
template <int N> struct MulRn<cutlass::Array<float, N>> {
    CUTLASS_HOST_DEVICE cutlass::Array<float, N> operator()(cutlass::Array<float, N> const &a,
                                                           cutlass::Array<float, N> const &b) const {
        cutlass::Array<float, N> r;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < N; ++i) r[i] = MulRn<float>{}(a[i], b[i]);
        return r;
    }
};
template <class T> struct FmaRn {
    CUTLASS_HOST_DEVICE T operator()(T const &a, T const &b, T const &c) const {
#ifdef __CUDA_ARCH__
        return __fmaf_rn(a, b, c);
#else
        return fmaf(a, b, c);
#endif
    }
};
template <int N> struct FmaRn<cutlass::Array<float, N>> {
    CUTLASS_HOST_DEVICE cutlass::Array<float, N> operator()(cutlass::Array<float, N> const &a,
                                                           cutlass::Array<float, N> const &b,
                                                           cutlass::Array<float, N> const &c) const {
        cutlass::Array<float, N> r;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < N; ++i) r[i] = FmaRn<float>{}(a[i], b[i], c[i]);
        return r;
    }
};

namespace fusion = cutlass::epilogue::fusion;
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

// D = fp16(fma(acc * token_scale, channel_scale, channel_bias)). TokenVec / ChannelVec are the broadcast nodes that
// carry a per-token / per-channel FP32 vector along the right mode of the (M, N) tile; a null bias reads as +0.
template <class TokenVec, class ChannelVec>
using DequantEvt = fusion::Sm90EVT<fusion::Sm90Compute<FmaRn, cutlass::half_t, float, kRound>,
                                   fusion::Sm90EVT<fusion::Sm90Compute<MulRn, float, float, kRound>,
                                                   fusion::Sm90AccFetch, TokenVec>,
                                   ChannelVec, ChannelVec>;

// ---- S8S8: INT8 activations x INT8 weight copy ----------------------------------------------------------------------
namespace s8s8 {
using ElementA = int8_t;                             // activations (M, K), K-major
using LayoutA = cutlass::layout::RowMajor;
constexpr int kAlignA = 16;                          // 16 bytes: TMA's minimum
using ElementB = int8_t;                             // weights (N, K), K-major
using LayoutB = cutlass::layout::ColumnMajor;
constexpr int kAlignB = 16;
using ElementD = cutlass::half_t;                    // (M, N) row-major
using LayoutD = cutlass::layout::RowMajor;
constexpr int kAlignD = 8;
using ElementAccumulator = int32_t;
using ElementCompute = float;
using ArchTag = cutlass::arch::Sm90;
using OperatorClass = cutlass::arch::OpClassTensorOp;
using TileShape = Shape<_128, _256, _128>;           // CTA tile (M, N, K)
using ClusterShape = Shape<_2, _1, _1>;              // two M tiles share each B tile (TMA multicast)
using MainloopSchedule = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecializedCooperative;
using TileScheduler = cutlass::gemm::PersistentScheduler;

using TokenVec = fusion::Sm90ColBroadcast<0, TileShape, float, float>;    // a_scale[m]
using ChannelVec = fusion::Sm90RowBroadcast<0, TileShape, float, float>;  // b_scale[n], bias[n]
using Evt = DequantEvt<TokenVec, ChannelVec>;

using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    ArchTag, OperatorClass, TileShape, ClusterShape, cutlass::epilogue::collective::EpilogueTileAuto,
    ElementAccumulator, ElementCompute, void, LayoutD, kAlignD, ElementD, LayoutD, kAlignD, EpilogueSchedule,
    Evt>::CollectiveOp;
using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    ArchTag, OperatorClass, ElementA, LayoutA, kAlignA, ElementB, LayoutB, kAlignB, ElementAccumulator, TileShape,
    ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename CollectiveEpilogue::SharedStorage))>,
    MainloopSchedule>::CollectiveOp;
using GemmKernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                        CollectiveEpilogue, TileScheduler>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
}  // namespace s8s8

// ---- S8S4: INT8 activations x packed INT4 weights, computed as D^T = B . A^T --------------------------------------
namespace s8s4 {
using ElementA = cutlass::int4b_t;                   // weights (N, K), K-major: the register-sourced, converted operand
using LayoutA = cutlass::layout::RowMajor;
constexpr int kAlignA = 32;                          // 16 bytes
using ElementB = int8_t;                             // activations (M, K), K-major
using LayoutB = cutlass::layout::ColumnMajor;
constexpr int kAlignB = 16;
using ElementD = cutlass::half_t;                    // D^T (N, M) column-major = D (M, N) row-major
using LayoutD = cutlass::layout::ColumnMajor;
constexpr int kAlignD = 8;
using ElementAccumulator = int32_t;
using ElementCompute = float;
using ArchTag = cutlass::arch::Sm90;
using OperatorClass = cutlass::arch::OpClassTensorOp;
using TileShape = Shape<_128, _256, _128>;           // 128 channels x 256 tokens x 128 k
using ClusterShape = Shape<_1, _1, _1>;
using MainloopSchedule = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecializedCooperative;
using TileScheduler = cutlass::gemm::PersistentScheduler;

using TokenVec = fusion::Sm90RowBroadcast<0, TileShape, float, float>;    // a_scale along the N' (token) mode
using ChannelVec = fusion::Sm90ColBroadcast<0, TileShape, float, float>;  // b_scale, bias along M' (channels)
using Evt = DequantEvt<TokenVec, ChannelVec>;

using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    ArchTag, OperatorClass, TileShape, ClusterShape, cutlass::epilogue::collective::EpilogueTileAuto,
    ElementAccumulator, ElementCompute, void, LayoutD, kAlignD, ElementD, LayoutD, kAlignD, EpilogueSchedule,
    Evt>::CollectiveOp;
using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    ArchTag, OperatorClass, ElementA, LayoutA, kAlignA, ElementB, LayoutB, kAlignB, ElementAccumulator, TileShape,
    ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename CollectiveEpilogue::SharedStorage))>,
    MainloopSchedule>::CollectiveOp;
using GemmKernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                        CollectiveEpilogue, TileScheduler>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
}  // namespace s8s4

void check_cutlass(cutlass::Status status, const char *what) {
    if (status == cutlass::Status::kSuccess) return;
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw_cuda_error(static_cast<int>(e), what, __FILE__, __LINE__);
    FQ_FAIL(status == cutlass::Status::kErrorInvalidProblem || status == cutlass::Status::kErrorNotSupported ||
                    status == cutlass::Status::kErrorMisalignedOperand
                ? FQ_STATUS_UNSUPPORTED
                : FQ_STATUS_CUDA,
            "w4a4_gemm: %s: %s", what, cutlassGetStatusString(status));
}

typename s8s8::Gemm::Arguments s8s8_args(uint16_t *d_f16, const int8_t *a_s8, const float *a_scale,
                                         const int8_t *b_s8, const float *b_scale, const float *bias, int m, int n,
                                         int k) {
    using Kernel = s8s8::GemmKernel;
    typename s8s8::Gemm::Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = {m, n, k, 1};
    args.mainloop.ptr_A = a_s8;
    args.mainloop.dA = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(m, k, 1));
    args.mainloop.ptr_B = b_s8;
    args.mainloop.dB = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(n, k, 1));
    args.epilogue.ptr_C = nullptr;
    args.epilogue.dC = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, make_shape(m, n, 1));
    args.epilogue.ptr_D = reinterpret_cast<cutlass::half_t *>(d_f16);
    args.epilogue.dD = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(m, n, 1));
    // EVT arguments, children first then the node's own: {{acc, token scale, mul}, channel scale, bias, fma}.
    args.epilogue.thread = {
        {{}, {a_scale, 0.0f, {}}, {}},
        {b_scale, 0.0f, {}},
        {bias, 0.0f, {}},
        {},
    };
    return args;
}

typename s8s4::Gemm::Arguments s8s4_args(uint16_t *d_f16, const int8_t *a_s8, const float *a_scale,
                                         const uint8_t *b_packed, const float *b_scale, const float *bias, int m,
                                         int n, int k) {
    using Kernel = s8s4::GemmKernel;
    typename s8s4::Gemm::Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
    args.problem_shape = {n, m, k, 1};  // transposed: M' = channels, N' = tokens
    args.mainloop.ptr_A = reinterpret_cast<const cutlass::int4b_t *>(b_packed);
    args.mainloop.dA = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(n, k, 1));
    args.mainloop.ptr_B = a_s8;
    args.mainloop.dB = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(m, k, 1));
    args.epilogue.ptr_C = nullptr;
    args.epilogue.dC = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, make_shape(n, m, 1));
    args.epilogue.ptr_D = reinterpret_cast<cutlass::half_t *>(d_f16);
    args.epilogue.dD = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(n, m, 1));
    args.epilogue.thread = {
        {{}, {a_scale, 0.0f, {}}, {}},
        {b_scale, 0.0f, {}},
        {bias, 0.0f, {}},
        {},
    };
    return args;
}

// The fixed host sequence: can_implement, workspace, initialize, run; every step checked.
template <class Gemm>
void run_gemm(const typename Gemm::Arguments &args, void *workspace, size_t workspace_bytes, cudaStream_t stream) {
    Gemm gemm;
    check_cutlass(gemm.can_implement(args), "CUTLASS can_implement");
    const size_t needed = Gemm::get_workspace_size(args);
    FQ_CHECK(needed <= workspace_bytes, FQ_STATUS_INVALID_ARGUMENT,
             "w4a4_gemm: CUTLASS needs %zu workspace bytes, %zu given", needed, workspace_bytes);
    check_cutlass(gemm.initialize(args, workspace, stream), "CUTLASS initialize");
    check_cutlass(gemm.run(stream), "CUTLASS run");
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

namespace detail {

bool w4a4_sm90_built_with_cutlass() { return true; }

int w4a4_sm90_code_arch() { return probe_code_arch(1, reinterpret_cast<const void *>(&w4a4_sm90_probe_kernel)); }

size_t w4a4_sm90_workspace_bytes(W4A4Kernel kernel, int64_t m, int64_t n, int64_t k) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    if (kernel == W4A4Kernel::kSm90S8S8) {
        return s8s8::Gemm::get_workspace_size(
            s8s8_args(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, mi, ni, ki));
    }
    return s8s4::Gemm::get_workspace_size(
        s8s4_args(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, mi, ni, ki));
}

void w4a4_sm90_gemm(W4A4Kernel kernel, uint16_t *d_f16, const int8_t *a_s8, const float *a_scale,
                    const uint8_t *b_packed, const int8_t *b_s8, const float *b_scale, const float *bias, int64_t m,
                    int64_t n, int64_t k, void *workspace, size_t workspace_bytes, void *cuda_stream) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    auto stream = static_cast<cudaStream_t>(cuda_stream);
    if (kernel == W4A4Kernel::kSm90S8S8) {
        FQ_CHECK(b_s8 != nullptr, FQ_STATUS_INVALID_ARGUMENT, "w4a4_gemm: the S8S8 kernel needs the INT8 weights");
        run_gemm<s8s8::Gemm>(s8s8_args(d_f16, a_s8, a_scale, b_s8, b_scale, bias, mi, ni, ki), workspace,
                             workspace_bytes, stream);
    } else {
        run_gemm<s8s4::Gemm>(s8s4_args(d_f16, a_s8, a_scale, b_packed, b_scale, bias, mi, ni, ki), workspace,
                             workspace_bytes, stream);
    }
}

}  // namespace detail

#else  // no CUTLASS: the dispatcher sees no sm_90 kernels

namespace detail {

bool w4a4_sm90_built_with_cutlass() { return false; }
int w4a4_sm90_code_arch() { return 0; }
size_t w4a4_sm90_workspace_bytes(W4A4Kernel, int64_t, int64_t, int64_t) { return 0; }
void w4a4_sm90_gemm(W4A4Kernel, uint16_t *, const int8_t *, const float *, const uint8_t *, const int8_t *,
                    const float *, const float *, int64_t, int64_t, int64_t, void *, size_t, void *) {
    FQ_FAIL(FQ_STATUS_UNSUPPORTED, "w4a4_gemm: built without CUTLASS, no sm_90 kernels");
}

}  // namespace detail

#endif  // FQ_HAVE_CUTLASS

}  // namespace fq::cuda
