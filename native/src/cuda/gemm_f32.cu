// FP32 GEMMs for calibration and fake-quantized evaluation. Contract: gemm_f32.h.
//
// With CUTLASS (FQ_HAVE_CUTLASS): CUTLASS 2.x GemmUniversal kernels on the sm_80 tensor-core path (mma.sync
// m16n8k8 TF32, which sm_86 and sm_90 run as well) in the 3xTF32 mode (arch::OpMultiplyAddFastF32). Each FP32
// operand x is split into big = tf32(x) (truncated) and small = tf32(x - big), and a*b is formed as
// big_a*big_b + big_a*small_b + small_a*big_b with FP32 accumulation. The dropped small*small term and the rounding
// of `small` leave a relative error of a few 2^-22 per product, against 2^-11 for plain TF32, so the result is
// FP32-class (see the tolerance derivation in native/tests/test_cuda_gemm_f32.cpp).
//
// Without CUTLASS: a shared-memory tiled FP32 SIMT kernel (plain fmaf), correct for every shape but slower, so
// that every CUDA build has these functions.
//
// Layouts: every operand is row-major in the caller's view. CUTLASS sees op(A) [m][k] as RowMajor (A as stored)
// or ColumnMajor (A^T stored [k][m] is op(A) column-major with the same ld), and likewise op(B) [k][n]; C is
// RowMajor. Hence four layout pairs, each instantiated in three kernel variants (see kernel choice below).
#include "cuda/gemm_f32.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "cuda/cuda_backend.h"

#ifdef FQ_HAVE_CUTLASS
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/device/gemm_universal.h>
#include <cutlass/gemm/threadblock/threadblock_swizzle.h>
#endif

namespace fq::cuda {

namespace {

// One product of the batch loop, after argument checks; pointers are those of batch entry 0 of this chunk.
struct Problem {
    bool trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const float *a;  // [m][k] (lda) or, trans_a, [k][m] (lda); + i * stride_a for entry i
    int64_t lda, stride_a;
    const float *b;  // [k][n] (ldb) or, trans_b, [n][k] (ldb); + i * stride_b
    int64_t ldb, stride_b;
    float *c;  // [m][n] (ldc); + i * stride_c
    int64_t ldc, stride_c;
    int64_t batch;
};

// Launch limits the chunking below keeps every launch within: grid.y and grid.z are at most 65535; CUTLASS's
// GemmCoord holds int; the SIMT kernel puts m tiles of 64 on grid.y and CUTLASS puts n tiles (of >= 64) there.
constexpr int64_t kMaxBatchPerLaunch = 65535;
constexpr int64_t kMaxRowsPerLaunch = int64_t(1) << 21;  // 32768 tiles of 64
constexpr int64_t kMaxColsPerLaunch = int64_t(1) << 21;
constexpr int64_t kMaxDepthPerLaunch = int64_t(1) << 30;

// ---- C = beta * C (k == 0 or alpha == 0: the product contributes nothing and A, B are never read) --------------

// grid-stride over batch * rows * cols; c: batch x [rows][cols] (ldc, stride_c). beta == 0 writes zeros without
// reading C (it may hold NaN).
__global__ void scale_c_kernel1(float *c, int64_t rows, int64_t cols, int64_t ldc, int64_t stride_c, int64_t batch,
                                float beta) {
    const int64_t total = batch * rows * cols;
    const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
        const int64_t col = idx % cols, rest = idx / cols;
        const int64_t row = rest % rows, entry = rest / rows;
        float *p = c + entry * stride_c + row * ldc + col;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

void scale_c(const Problem &p, cudaStream_t stream) {
    const int64_t total = p.batch * p.m * p.n;
    const int64_t blocks = std::min<int64_t>((total + 255) / 256, 8192);
    scale_c_kernel1<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p.c, p.m, p.n, p.ldc, p.stride_c, p.batch,
                                                                       p.beta);
    FQ_CUDA_CHECK(cudaGetLastError());
}

#ifdef FQ_HAVE_CUTLASS

// ---- CUTLASS 3xTF32 kernels --------------------------------------------------------------------------------------
//
// Kernel choice (three variants per layout pair, twelve kernels in all, each built for every target):
//   large:   128x128x32 block tile, 2x4 warps of 64x32, 3 stages (96 KB shared memory), 16-byte (4-float)
//            accesses: the big products of calibration (tokens x hidden); 73 TFLOP/s on an H100 at 8192x4096x4096,
//            the best of the shapes tried (warps of 64x64 spill registers in 3xTF32 mode).
//   small:   64x64x16 block tile, 2x2 warps of 32x32, 4 stages (32 KB): products too small to fill the GPU with
//            large tiles, e.g. the per-row Kronecker transforms (batch = rows, m, n, k = 8..128).
//   small1:  the small tile with 4-byte accesses, for any pointer, ld and size (e.g. n1 = 86 rows of 11008).
// The 4-float variants need 16-byte aligned base pointers, leading dimensions and batch strides that are multiples
// of 4, and the contiguous extent of each operand (k or m for A, n or k for B, n for C) a multiple of 4.

template <int kTileM, int kTileN, int kTileK, int kWarpM, int kWarpN, int kStages, int kAlign, int kSwizzle>
struct TileConfig {
    template <class LayoutA, class LayoutB>
    using Gemm = cutlass::gemm::device::GemmUniversal<
        float, LayoutA, float, LayoutB, float, cutlass::layout::RowMajor, float, cutlass::arch::OpClassTensorOp,
        cutlass::arch::Sm80, cutlass::gemm::GemmShape<kTileM, kTileN, kTileK>,
        cutlass::gemm::GemmShape<kWarpM, kWarpN, kTileK>, cutlass::gemm::GemmShape<16, 8, 8>,
        cutlass::epilogue::thread::LinearCombination<float, kAlign, float, float>,
        cutlass::gemm::threadblock::GemmIdentityThreadblockSwizzle<kSwizzle>, kStages, kAlign, kAlign,
        cutlass::arch::OpMultiplyAddFastF32>;
};

constexpr int kLargeTile = 128;  // rows and columns of C per block of the large variant
using LargeTile = TileConfig<kLargeTile, kLargeTile, 32, 64, 32, 3, 4, 8>;
constexpr int kSmallTile = 64;
using SmallTile = TileConfig<kSmallTile, kSmallTile, 16, 32, 32, 4, 4, 1>;
using SmallTileAlign1 = TileConfig<kSmallTile, kSmallTile, 16, 32, 32, 4, 1, 1>;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

[[noreturn]] void throw_cutlass(cutlass::Status status, const char *what) {
    // A failed launch or device query leaves its CUDA error behind; report that one when there is one, so that
    // "no device" and "out of resources" keep their FQ_STATUS_* meaning.
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw_cuda_error(static_cast<int>(e), what, __FILE__, __LINE__);
    FQ_FAIL(FQ_STATUS_CUDA, "gemm_f32: CUTLASS %s failed: %s", what, cutlass::cutlassGetStatusString(status));
}

template <class Config, class LayoutA, class LayoutB> void run_cutlass(const Problem &p, cudaStream_t stream) {
    using Gemm = typename Config::template Gemm<LayoutA, LayoutB>;
    typename Gemm::Arguments args(cutlass::gemm::GemmUniversalMode::kBatched,
                                  cutlass::gemm::GemmCoord(static_cast<int>(p.m), static_cast<int>(p.n),
                                                           static_cast<int>(p.k)),
                                  static_cast<int>(p.batch), {p.alpha, p.beta}, p.a, p.b, p.c, p.c, p.stride_a,
                                  p.stride_b, p.stride_c, p.stride_c, p.lda, p.ldb, p.ldc, p.ldc);
    cutlass::Status status = Gemm::can_implement(args);
    if (status != cutlass::Status::kSuccess) throw_cutlass(status, "can_implement");
    Gemm gemm;
    // kBatched mode needs no workspace (no split-k reduction, no stream-k fixup).
    status = gemm.initialize(args, nullptr, stream);
    if (status != cutlass::Status::kSuccess) throw_cutlass(status, "initialize");
    status = gemm.run(stream);
    if (status != cutlass::Status::kSuccess) throw_cutlass(status, "run");
}

template <class Config> void run_layouts(const Problem &p, cudaStream_t stream) {
    using Row = cutlass::layout::RowMajor;
    using Col = cutlass::layout::ColumnMajor;
    if (!p.trans_a && !p.trans_b) run_cutlass<Config, Row, Row>(p, stream);
    else if (!p.trans_a && p.trans_b) run_cutlass<Config, Row, Col>(p, stream);
    else if (p.trans_a && !p.trans_b) run_cutlass<Config, Col, Row>(p, stream);
    else run_cutlass<Config, Col, Col>(p, stream);
}

bool aligned16(const void *ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// Whether the 4-float kernels may run this problem (see the kernel choice above).
bool fits_align4(const Problem &p) {
    const bool strides_ok = p.batch == 1 || (p.stride_a % 4 == 0 && p.stride_b % 4 == 0 && p.stride_c % 4 == 0);
    const int64_t a_contiguous = p.trans_a ? p.m : p.k, b_contiguous = p.trans_b ? p.k : p.n;
    return aligned16(p.a) && aligned16(p.b) && aligned16(p.c) && p.lda % 4 == 0 && p.ldb % 4 == 0 &&
           p.ldc % 4 == 0 && strides_ok && a_contiguous % 4 == 0 && b_contiguous % 4 == 0 && p.n % 4 == 0;
}

void run_product(const Problem &p, cudaStream_t stream) {
    if (!fits_align4(p)) {
        run_layouts<SmallTileAlign1>(p, stream);
        return;
    }
    // Large tiles (about 1.25x the throughput of small ones on an H100) once they give every SM of a big GPU (132 on
    // an H100) about two blocks, and unless they pad the product much more than small tiles would: a batch of
    // 64 x 64 products fills only a quarter of each large tile (measured: 10 against 29 TFLOP/s).
    const int64_t large_tiles = p.batch * ceil_div(p.m, kLargeTile) * ceil_div(p.n, kLargeTile);
    const int64_t small_tiles = p.batch * ceil_div(p.m, kSmallTile) * ceil_div(p.n, kSmallTile);
    const int64_t tile_ratio = (kLargeTile / kSmallTile) * (kLargeTile / kSmallTile);
    if (large_tiles >= 256 && 10 * large_tiles * tile_ratio <= 11 * small_tiles) run_layouts<LargeTile>(p, stream);
    else run_layouts<SmallTile>(p, stream);
}

#else  // !FQ_HAVE_CUTLASS

// ---- SIMT fallback -------------------------------------------------------------------------------------------------

constexpr int kSimtTile = 64;  // C tile kSimtTile x kSimtTile per block of 16 x 16 threads, 4 x 4 outputs each
constexpr int kSimtDepth = 16;

// grid (n tiles, m tiles, batch); a, b, c as in Problem (entry blockIdx.z). Tiles of op(A) and op(B) are staged
// k-major in shared memory; each thread owns rows ty + 16 i and columns tx + 16 j, so C stores are coalesced.
template <bool kTransA, bool kTransB>
__global__ void __launch_bounds__(256) gemm_f32_simt_kernel1(int64_t m, int64_t n, int64_t k, float alpha,
                                                             const float *a, int64_t lda, int64_t stride_a,
                                                             const float *b, int64_t ldb, int64_t stride_b,
                                                             float beta, float *c, int64_t ldc, int64_t stride_c) {
    __shared__ float a_tile[kSimtDepth][kSimtTile + 4];  // [kk][row of the C tile]
    __shared__ float b_tile[kSimtDepth][kSimtTile + 4];  // [kk][col of the C tile]
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kSimtTile, col0 = static_cast<int64_t>(blockIdx.x) * kSimtTile;
    a += blockIdx.z * stride_a;
    b += blockIdx.z * stride_b;
    c += blockIdx.z * stride_c;
    float acc[4][4] = {};
    for (int64_t p0 = 0; p0 < k; p0 += kSimtDepth) {
        // 1024 elements per operand tile, 4 per thread; the fastest-varying thread index follows the operand's
        // contiguous dimension.
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int idx = tid + s * 256;
            const int kk = kTransA ? idx / kSimtTile : idx % kSimtDepth;
            const int r = kTransA ? idx % kSimtTile : idx / kSimtDepth;
            const int64_t gr = row0 + r, gk = p0 + kk;
            float v = 0.0f;
            if (gr < m && gk < k) v = kTransA ? a[gk * lda + gr] : a[gr * lda + gk];
            a_tile[kk][r] = v;
        }
#pragma unroll
        for (int s = 0; s < 4; s++) {
            const int idx = tid + s * 256;
            const int kk = kTransB ? idx % kSimtDepth : idx / kSimtTile;
            const int col = kTransB ? idx / kSimtDepth : idx % kSimtTile;
            const int64_t gc = col0 + col, gk = p0 + kk;
            float v = 0.0f;
            if (gc < n && gk < k) v = kTransB ? b[gc * ldb + gk] : b[gk * ldb + gc];
            b_tile[kk][col] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kSimtDepth; kk++) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t gr = row0 + ty + 16 * i;
        if (gr >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t gc = col0 + tx + 16 * j;
            if (gc >= n) continue;
            float *out = c + gr * ldc + gc;
            *out = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *out;
        }
    }
}

template <bool kTransA, bool kTransB> void launch_simt(const Problem &p, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>((p.n + kSimtTile - 1) / kSimtTile),
                    static_cast<unsigned>((p.m + kSimtTile - 1) / kSimtTile), static_cast<unsigned>(p.batch));
    gemm_f32_simt_kernel1<kTransA, kTransB><<<grid, 256, 0, stream>>>(p.m, p.n, p.k, p.alpha, p.a, p.lda,
                                                                       p.stride_a, p.b, p.ldb, p.stride_b, p.beta,
                                                                       p.c, p.ldc, p.stride_c);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void run_product(const Problem &p, cudaStream_t stream) {
    if (!p.trans_a && !p.trans_b) launch_simt<false, false>(p, stream);
    else if (!p.trans_a && p.trans_b) launch_simt<false, true>(p, stream);
    else if (p.trans_a && !p.trans_b) launch_simt<true, false>(p, stream);
    else launch_simt<true, true>(p, stream);
}

#endif  // FQ_HAVE_CUTLASS

// Splits the problem into launches within the limits above. A split along k accumulates: the first part applies
// the caller's beta, later parts add onto C (beta = 1).
void run_chunked(const Problem &whole, cudaStream_t stream) {
    for (int64_t e0 = 0; e0 < whole.batch; e0 += kMaxBatchPerLaunch) {
        for (int64_t i0 = 0; i0 < whole.m; i0 += kMaxRowsPerLaunch) {
            for (int64_t j0 = 0; j0 < whole.n; j0 += kMaxColsPerLaunch) {
                for (int64_t p0 = 0; p0 < whole.k; p0 += kMaxDepthPerLaunch) {
                    Problem p = whole;
                    p.batch = std::min(kMaxBatchPerLaunch, whole.batch - e0);
                    p.m = std::min(kMaxRowsPerLaunch, whole.m - i0);
                    p.n = std::min(kMaxColsPerLaunch, whole.n - j0);
                    p.k = std::min(kMaxDepthPerLaunch, whole.k - p0);
                    p.beta = p0 == 0 ? whole.beta : 1.0f;
                    p.a += e0 * whole.stride_a + (whole.trans_a ? p0 * whole.lda + i0 : i0 * whole.lda + p0);
                    p.b += e0 * whole.stride_b + (whole.trans_b ? j0 * whole.ldb + p0 : p0 * whole.ldb + j0);
                    p.c += e0 * whole.stride_c + i0 * whole.ldc + j0;
                    run_product(p, stream);
                }
            }
        }
    }
}

void check_arguments(const Problem &p) {
    FQ_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0 && p.batch >= 0, FQ_STATUS_INVALID_ARGUMENT,
             "gemm_f32: negative size (m=%lld, n=%lld, k=%lld, batch=%lld)", static_cast<long long>(p.m),
             static_cast<long long>(p.n), static_cast<long long>(p.k), static_cast<long long>(p.batch));
    const int64_t a_cols = p.trans_a ? p.m : p.k, b_cols = p.trans_b ? p.k : p.n;
    FQ_CHECK(p.lda >= std::max<int64_t>(1, a_cols) && p.ldb >= std::max<int64_t>(1, b_cols) &&
                 p.ldc >= std::max<int64_t>(1, p.n),
             FQ_STATUS_INVALID_ARGUMENT, "gemm_f32: leading dimension too small (lda=%lld, ldb=%lld, ldc=%lld)",
             static_cast<long long>(p.lda), static_cast<long long>(p.ldb), static_cast<long long>(p.ldc));
    if (p.m == 0 || p.n == 0 || p.batch == 0) return;
    FQ_CHECK(p.c != nullptr, FQ_STATUS_INVALID_ARGUMENT, "gemm_f32: C is null");
    if (p.k > 0 && p.alpha != 0.0f)
        FQ_CHECK(p.a != nullptr && p.b != nullptr, FQ_STATUS_INVALID_ARGUMENT, "gemm_f32: A or B is null");
}

void gemm_any(const Problem &p, void *stream_handle) {
    check_arguments(p);
    if (p.m == 0 || p.n == 0 || p.batch == 0) return;
    cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
    // BLAS semantics: with no product term A and B are not read (NaN there does not reach C).
    if (p.k == 0 || p.alpha == 0.0f) {
        scale_c(p, stream);
        return;
    }
    run_chunked(p, stream);
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc, void *stream) {
    gemm_any(Problem{trans_a, trans_b, m, n, k, alpha, beta, a, lda, 0, b, ldb, 0, c, ldc, 0, 1}, stream);
}

void gemm_f32_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, int64_t stride_a, const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                      int64_t ldc, int64_t stride_c, int64_t batch, void *stream) {
    gemm_any(Problem{trans_a, trans_b, m, n, k, alpha, beta, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, batch},
             stream);
}

}  // namespace fq::cuda
