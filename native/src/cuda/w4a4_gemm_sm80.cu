// W4A4 GEMM kernels for sm_80/86/89 and the decode GEMV for every sm_80+ GPU, the format conversions, and the
// dispatcher w4a4_gemm() (the sm_90 kernels are in w4a4_gemm_sm90.cu). Contract: w4a4_gemm.h. Kernel versions:
//   gemv 1. M <= 16: one block of 8 warps per 16 output channels, K split over the warps in 128-element chunks.
//           Each thread loads 16 weight bytes (32 INT4) per row and chunk, unpacks them in registers to INT8 and
//           feeds mma.sync m16n8k32 s8 with the tokens as the 16 MMA rows. The k order inside a chunk is permuted
//           identically for A and B (the sum does not care), so every load is a plain 16-byte vector.
//   int4 1. sm_80/86/89: native mma.sync m16n8k64 s4, 128x128x128 block tile, 8 warps of 64x32, 3-stage cp.async
//           pipeline (48 KB, two blocks per SM on sm_86), ldmatrix from an XOR-swizzled tile (conflict-free),
//           epilogue straight from the accumulators.
#include "cuda/w4a4_gemm.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr int64_t kMaxK = 65536;  // GEMV scales both operands by 16: 256 * 64 * 65536 = 2^30 still fits int32

// ---- INT4 helpers -----------------------------------------------------------------------------------------------

// Eight packed nibbles -> 16 * (signed value) in each byte, even-indexed nibbles (0, 2, 4, 6) in `even` and odd ones
// in `odd`. Multiplying by 16 is the sign extension: the nibble lands in the top half of its byte.
__device__ __forceinline__ void nibbles_x16(uint32_t w, uint32_t &even, uint32_t &odd) {
    even = (w << 4) & 0xF0F0F0F0u;
    odd = w & 0xF0F0F0F0u;
}

// Eight packed nibbles -> eight sign-extended int8 in natural order: lo = values 0..3, hi = values 4..7.
__device__ __forceinline__ void unpack8(uint32_t w, uint32_t &lo, uint32_t &hi) {
    uint32_t x = w & 0x0F0F0F0Fu, y = (w >> 4) & 0x0F0F0F0Fu;  // values 0,2,4,6 and 1,3,5,7, unsigned
    x |= ((x >> 3) & 0x01010101u) * 0xF0u;                      // sign bit set -> fill the byte's top nibble
    y |= ((y >> 3) & 0x01010101u) * 0xF0u;
    lo = __byte_perm(x, y, 0x5140);
    hi = __byte_perm(x, y, 0x7362);
}

// Eight int8 (lo = values 0..3, hi = 4..7) -> their low nibbles packed into one word.
__device__ __forceinline__ uint32_t pack8(uint32_t lo, uint32_t hi) {
    uint32_t a = lo & 0x0F0F0F0Fu, b = hi & 0x0F0F0F0Fu;
    a |= a >> 4;  // byte 0 = v0 | v1 << 4, byte 2 = v2 | v3 << 4
    b |= b >> 4;
    return __byte_perm(a, b, 0x6420);
}

// grid-stride; values: (n_values) int8, packed: (n_values / 2) bytes. 16 values per step.
__global__ void int4_unpack_kernel1(int8_t *values, const uint8_t *packed, int64_t n_values) {
    const int64_t n_vec = n_values / 16, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec; i += stride) {
        const uint2 p = reinterpret_cast<const uint2 *>(packed)[i];
        uint4 out;
        unpack8(p.x, out.x, out.y);
        unpack8(p.y, out.z, out.w);
        reinterpret_cast<uint4 *>(values)[i] = out;
    }
    for (int64_t j = n_vec * 8 + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n_values / 2;
         j += stride) {
        const int byte = packed[j];
        values[2 * j] = static_cast<int8_t>(((byte & 0xF) ^ 8) - 8);
        values[2 * j + 1] = static_cast<int8_t>(((byte >> 4) ^ 8) - 8);
    }
}

__global__ void int8_pack_kernel1(uint8_t *packed, const int8_t *values, int64_t n_values) {
    const int64_t n_vec = n_values / 16, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec; i += stride) {
        const uint4 v = reinterpret_cast<const uint4 *>(values)[i];
        reinterpret_cast<uint2 *>(packed)[i] = make_uint2(pack8(v.x, v.y), pack8(v.z, v.w));
    }
    for (int64_t j = n_vec * 8 + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n_values / 2;
         j += stride) {
        packed[j] = static_cast<uint8_t>((values[2 * j] & 0xF) | ((values[2 * j + 1] & 0xF) << 4));
    }
}

// The epilogue of w4a4_gemm.h, in its fixed order (explicitly rounded intrinsics: nvcc never fuses them).
__device__ __forceinline__ __half epilogue(int32_t acc, float a_scale, float b_scale, float bias) {
    return __float2half_rn(__fmaf_rn(__fmul_rn(__int2float_rn(acc), a_scale), b_scale, bias));
}

__global__ void w4a4_sm80_probe_kernel(int *code_arch) {
#ifdef __CUDA_ARCH__
    *code_arch = __CUDA_ARCH__;
#endif
}

// ---- GEMV (M <= 16) -----------------------------------------------------------------------------------------------

constexpr int kGemvWarps = 8;
constexpr int kGemvCols = 16;  // output channels per block: two n8 MMA tiles
// 128-k chunks whose loads a warp has in flight at once. On the H100 (bench_decoder_layer --quick, decode at batch 1)
// 4 takes a LLaMA-2-7B layer from 152.0 to 147.1 us and a LLaMA-3-8B layer from 150.1 to 147.4 us against 2; 8 gains
// nothing more. -DFQ_GEMV_UNROLL=N overrides it for such measurements.
#ifndef FQ_GEMV_UNROLL
#define FQ_GEMV_UNROLL 4
#endif
constexpr int kGemvUnroll = FQ_GEMV_UNROLL;

__device__ __forceinline__ void mma_s8_16832(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                             uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// One k-group of 8 values per thread (an 8-k slice of the chunk: 4 in the a0/b0 slots, 4 in a2/b1).
// A operand for token row `r`: int8 form gives bytes x0..x7 in two words; packed form gives one word of nibbles.
// Both are brought to the (even offsets, odd offsets) split of nibbles_x16, so the MMA pairs equal k.
template <bool kAInt8> struct GemvA;
template <> struct GemvA<true> {
    static constexpr int kChunkBytes = 128;  // bytes of one row per 128-k chunk
    static constexpr int kShift = 4;         // only B carries the factor 16
    __device__ static void split(const uint32_t *w, int i, uint32_t &even, uint32_t &odd) {
        even = __byte_perm(w[2 * i], w[2 * i + 1], 0x6420);
        odd = __byte_perm(w[2 * i], w[2 * i + 1], 0x7531);
    }
};
template <> struct GemvA<false> {
    static constexpr int kChunkBytes = 64;
    static constexpr int kShift = 8;  // A and B both carry 16
    __device__ static void split(const uint32_t *w, int i, uint32_t &even, uint32_t &odd) {
        nibbles_x16(w[i], even, odd);
    }
};

// Loads `n_words` 32-bit words (n_words / 4 16-byte vectors or one 8-byte vector when 2) or zeros.
template <int kWords> __device__ __forceinline__ void load_words(uint32_t *w, const uint8_t *p, bool valid) {
    if (kWords >= 4) {
#pragma unroll
        for (int v = 0; v < kWords / 4; ++v) {
            const uint4 x = valid ? __ldg(reinterpret_cast<const uint4 *>(p) + v) : make_uint4(0, 0, 0, 0);
            w[4 * v] = x.x, w[4 * v + 1] = x.y, w[4 * v + 2] = x.z, w[4 * v + 3] = x.w;
        }
    } else {
        const uint2 x = valid ? __ldg(reinterpret_cast<const uint2 *>(p)) : make_uint2(0, 0);
        w[0] = x.x, w[1] = x.y;
    }
}

// One chunk of kSteps * 32 k (kSteps = 4: a full 128-k chunk, 2: the 64-k tail) for both n-tiles.
// a_lo/a_hi: this thread's bytes of token rows g and g + 8; b: its bytes of channels n0 + g and n0 + 8 + g.
template <bool kAInt8, int kSteps>
__device__ __forceinline__ void gemv_chunk(int (&acc)[2][4], const uint8_t *a_lo, bool a_lo_valid,
                                           const uint8_t *a_hi, bool a_hi_valid, const uint8_t *b0,
                                           bool b0_valid, const uint8_t *b1, bool b1_valid) {
    constexpr int kAWords = kAInt8 ? 2 * kSteps : kSteps;
    uint32_t wa_lo[kAWords], wa_hi[kAWords], wb0[kSteps], wb1[kSteps];
    load_words<kSteps>(wb0, b0, b0_valid);
    load_words<kSteps>(wb1, b1, b1_valid);
    load_words<kAWords>(wa_lo, a_lo, a_lo_valid);
    load_words<kAWords>(wa_hi, a_hi, a_hi_valid);
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
        uint32_t a0, a2, a1, a3, be0, bo0, be1, bo1;
        GemvA<kAInt8>::split(wa_lo, i, a0, a2);
        GemvA<kAInt8>::split(wa_hi, i, a1, a3);
        nibbles_x16(wb0[i], be0, bo0);
        nibbles_x16(wb1[i], be1, bo1);
        mma_s8_16832(acc[0], a0, a1, a2, a3, be0, bo0);
        mma_s8_16832(acc[1], a0, a1, a2, a3, be1, bo1);
    }
}

// grid: (ceil(n / 16)), block: (32 * kGemvWarps)
// d: (m, n) FP16 row-major; a: (m, k) int8 or (m, k/2) packed; b: (n, k/2) packed; scales (m), (n); bias (n) or null.
// Thread (g = lane / 4, q = lane % 4) owns bytes [16 q, 16 q + 16) of each 64-byte row slice of a chunk: weight
// values k0 + 32 q + 8 i + j (i = MMA step, j = 0..7) -- the same k for A's slots, so the products pair up.
template <bool kAInt8>
__global__ void __launch_bounds__(32 * kGemvWarps) w4a4_gemv_kernel1(__half *d, const uint8_t *a,
                                                                      const float *a_scale, const uint8_t *b,
                                                                      const float *b_scale, const float *bias,
                                                                      int m, int n, int k) {
    __shared__ int partial[kGemvWarps][2][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int n0 = blockIdx.x * kGemvCols;
    const int64_t b_row = k / 2, a_row = kAInt8 ? k : k / 2;
    constexpr int kAChunk = GemvA<kAInt8>::kChunkBytes;

    const bool b0_valid = n0 + g < n, b1_valid = n0 + 8 + g < n;
    const bool a_lo_valid = g < m, a_hi_valid = g + 8 < m;
    const uint8_t *b0 = b + (b0_valid ? (n0 + g) * b_row : 0) + q * 16;
    const uint8_t *b1 = b + (b1_valid ? (n0 + 8 + g) * b_row : 0) + q * 16;
    const uint8_t *a_lo = a + (a_lo_valid ? g * a_row : 0) + q * (kAChunk / 4);
    const uint8_t *a_hi = a + (a_hi_valid ? (g + 8) * a_row : 0) + q * (kAChunk / 4);

    int acc[2][4] = {};
    const int n_chunks = k / 128;
    const int c_begin = warp * n_chunks / kGemvWarps, c_end = (warp + 1) * n_chunks / kGemvWarps;
#pragma unroll kGemvUnroll
    for (int c = c_begin; c < c_end; ++c) {
        gemv_chunk<kAInt8, 4>(acc, a_lo + c * kAChunk, a_lo_valid, a_hi + c * kAChunk, a_hi_valid, b0 + c * 64,
                              b0_valid, b1 + c * 64, b1_valid);
    }
    if (k % 128 != 0 && warp == kGemvWarps - 1) {
        // The 64-k tail: half the bytes per thread, so thread q starts at 8 q (B) / q * kAChunk / 8 (A).
        const int c = n_chunks;
        gemv_chunk<kAInt8, 2>(acc, a_lo - q * (kAChunk / 4) + c * kAChunk + q * (kAChunk / 8), a_lo_valid,
                              a_hi - q * (kAChunk / 4) + c * kAChunk + q * (kAChunk / 8), a_hi_valid,
                              b0 - q * 16 + c * 64 + q * 8, b0_valid, b1 - q * 16 + c * 64 + q * 8, b1_valid);
    }

#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
        for (int r = 0; r < 4; ++r) partial[warp][t][r][lane] = acc[t][r];
    __syncthreads();

    // Thread -> one accumulator slot of the 16x16 block: (t, r, l) as laid out by the MMA.
    const int t = threadIdx.x >> 7, r = (threadIdx.x >> 5) & 3, l = threadIdx.x & 31;
    int sum = 0;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) sum += partial[w][t][r][l];
    sum >>= GemvA<kAInt8>::kShift;  // exact: every product carried the factor 16 (B) or 256 (A and B)
    const int row = (l >> 2) + (r >= 2 ? 8 : 0), col = n0 + t * 8 + 2 * (l & 3) + (r & 1);
    if (row < m && col < n) {
        d[static_cast<int64_t>(row) * n + col] =
            epilogue(sum, a_scale[row], b_scale[col], bias != nullptr ? bias[col] : 0.0f);
    }
}

// ---- INT4 tensor-core GEMM (sm_80/86/89) -------------------------------------------------------------------------

constexpr int kTileM = 128, kTileN = 128, kTileK = 128;  // K in INT4 elements
constexpr int kTileKBytes = kTileK / 2;                   // 64 bytes per row per stage
constexpr int kStages = 3;
constexpr int kStageBytes = (kTileM + kTileN) * kTileKBytes;  // 16 KB
constexpr int kInt4Smem = kStages * kStageBytes;              // 48 KB: no opt-in needed, 2 blocks/SM on sm_86

// The INT4 kernel's code exists only in the sm_80..sm_89 device passes: its sm_90a build would be the emulated
// INT4 MMA, which nothing should run, and leaving it out keeps the sm_90a compile short.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && __CUDA_ARCH__ < 900
#define FQ_W4A4_INT4_MMA 1

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of 16-byte chunk `c` (0..3) of tile row `row`: XOR swizzle over row pairs, so the 8 rows an
// ldmatrix phase reads (rows 8i..8i+7, one chunk) fall on 8 distinct 16-byte bank groups.
__device__ __forceinline__ uint32_t tile_offset(int row, int c) {
    return static_cast<uint32_t>(row * kTileKBytes + ((c ^ ((row >> 1) & 3)) << 4));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    // src-size 0 writes 16 zero bytes: rows past M or N and the K tail contribute nothing.
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void mma_s4_16864(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif  // sm_80..sm_89 device pass

// grid: (ceil(n / 128), ceil(m / 128)), block: (256), dynamic smem: kInt4Smem
// d: (m, n) FP16 row-major; a: (m, k/2) packed; b: (n, k/2) packed; scales (m), (n); bias (n) or null.
// Warp w computes rows 64 (w / 4) .. +64 and columns 32 (w % 4) .. +32 of the block tile.
__global__ void __launch_bounds__(256) w4a4_sm80_int4_kernel1(__half *d, const uint8_t *a, const float *a_scale,
                                                               const uint8_t *b, const float *b_scale,
                                                               const float *bias, int m, int n, int k) {
#ifdef FQ_W4A4_INT4_MMA
    extern __shared__ __align__(128) uint8_t smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;
    const int m0 = blockIdx.y * kTileM, n0 = blockIdx.x * kTileN;
    const int k_bytes = k / 2, n_ktiles = (k + kTileK - 1) / kTileK;
    const uint32_t smem_base = smem_u32(smem);

    // Each thread copies 2 16-byte chunks of A and 2 of B per stage: chunk i = tid + 256 j -> (row i / 4, i % 4).
    auto load_stage = [&](int stage, int kt) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const int i = tid + 256 * j, row = i >> 2, c = i & 3;
            const int kbyte = kt * kTileKBytes + c * 16;
            const bool k_in = kbyte < k_bytes;  // k % 64 == 0: a chunk is wholly inside or outside
            const uint32_t dst = smem_base + stage * kStageBytes + tile_offset(row, c);
            const bool a_ok = k_in && m0 + row < m, b_ok = k_in && n0 + row < n;
            cp_async16(dst, a_ok ? a + static_cast<int64_t>(m0 + row) * k_bytes + kbyte : a, a_ok);
            cp_async16(dst + kTileM * kTileKBytes, b_ok ? b + static_cast<int64_t>(n0 + row) * k_bytes + kbyte : b,
                       b_ok);
        }
    };

    int acc[4][4][4] = {};
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < n_ktiles) load_stage(s, s);
        asm volatile("cp.async.commit_group;\n" ::);
    }

    // ldmatrix lane roles: matrix mi = lane / 8 gets its 8 row addresses from lanes 8 mi .. 8 mi + 7.
    const int mi = lane >> 3, r8 = lane & 7;
    for (int kt = 0; kt < n_ktiles; ++kt) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2));
        __syncthreads();  // stage kt landed for everyone; stage kt - 1 is no longer read by anyone
        const int next = kt + kStages - 1;
        if (next < n_ktiles) load_stage(next % kStages, next);
        asm volatile("cp.async.commit_group;\n" ::);

        const uint32_t stage_a = smem_base + (kt % kStages) * kStageBytes;
        const uint32_t stage_b = stage_a + kTileM * kTileKBytes;
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {  // two k64 MMA steps per stage
            uint32_t af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                // matrices: (rows 0-7, chunk 2ks), (rows 8-15, 2ks), (rows 0-7, 2ks+1), (rows 8-15, 2ks+1) = a0..a3
                const int row = wm * 64 + i * 16 + (mi & 1) * 8 + r8;
                ldmatrix_x4(af[i], stage_a + tile_offset(row, 2 * ks + (mi >> 1)));
            }
#pragma unroll
            for (int jj = 0; jj < 2; ++jj) {
                // matrices: (n-tile 2jj, chunk 2ks), (2jj, 2ks+1), (2jj+1, 2ks), (2jj+1, 2ks+1) = b0, b1, b0', b1'
                const int row = wn * 32 + (2 * jj + (mi >> 1)) * 8 + r8;
                uint32_t x[4];
                ldmatrix_x4(x, stage_b + tile_offset(row, 2 * ks + (mi & 1)));
                bf[2 * jj][0] = x[0], bf[2 * jj][1] = x[1], bf[2 * jj + 1][0] = x[2], bf[2 * jj + 1][1] = x[3];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_s4_16864(acc[i][j], af[i], bf[j][0], bf[j][1]);
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::);

    // Accumulator (i, j): c0, c1 = row g, columns 2q, 2q+1; c2, c3 = row g + 8.
    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int col = n0 + wn * 32 + j * 8 + 2 * q;
        if (col >= n) continue;  // n % 8 == 0, so col + 1 < n as well
        const float bs0 = b_scale[col], bs1 = b_scale[col + 1];
        const float bias0 = bias != nullptr ? bias[col] : 0.0f, bias1 = bias != nullptr ? bias[col + 1] : 0.0f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * 64 + i * 16 + g + 8 * h;
                if (row >= m) continue;
                const float as = a_scale[row];
                __half2 v;
                v.x = epilogue(acc[i][j][2 * h], as, bs0, bias0);
                v.y = epilogue(acc[i][j][2 * h + 1], as, bs1, bias1);
                *reinterpret_cast<__half2 *>(d + static_cast<int64_t>(row) * n + col) = v;
            }
        }
    }
#endif
}

// ---- host side ----------------------------------------------------------------------------------------------------

constexpr int kMaxDevices = 64;

cudaStream_t as_stream(const Stream &stream) { return static_cast<cudaStream_t>(stream.handle()); }

unsigned grid_for(int64_t n_items, int threads) {
    const int64_t blocks = (n_items + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

size_t round_up_256(size_t x) { return (x + 255) / 256 * 256; }

// Compute capability of the current device as 10 major + minor, cached per device (decode calls this per token).
int device_cc() {
    static std::atomic<int> cache[kMaxDevices];
    int dev = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= 0 && dev < kMaxDevices && cache[dev].load(std::memory_order_relaxed) != 0) return cache[dev];
    int major = 0, minor = 0;
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (dev >= 0 && dev < kMaxDevices) cache[dev].store(major * 10 + minor, std::memory_order_relaxed);
    return major * 10 + minor;
}

void check_shape(const W4A4GemmArgs &args) {
    FQ_CHECK(args.m >= 0 && args.n > 0 && args.k > 0, FQ_STATUS_INVALID_ARGUMENT,
             "w4a4_gemm: bad shape m=%lld n=%lld k=%lld", static_cast<long long>(args.m),
             static_cast<long long>(args.n), static_cast<long long>(args.k));
    FQ_CHECK(args.k % 64 == 0 && args.k <= kMaxK && args.n % 8 == 0 && args.m <= INT_MAX && args.n <= INT_MAX,
             FQ_STATUS_UNSUPPORTED,
             "w4a4_gemm: unsupported shape m=%lld n=%lld k=%lld (k must be a multiple of 64 and at most %lld, n a "
             "multiple of 8)",
             static_cast<long long>(args.m), static_cast<long long>(args.n), static_cast<long long>(args.k),
             static_cast<long long>(kMaxK));
}

bool kernel_available(W4A4Kernel kernel, const W4A4GemmArgs &args, int sm80_code, int sm90_code) {
    switch (kernel) {
    case W4A4Kernel::kGemv: return sm80_code >= 800 && args.m <= 16;
    case W4A4Kernel::kSm80Int4: return sm80_code >= 800 && sm80_code < 900;
    case W4A4Kernel::kSm90S8S4: return sm90_code == 900;
    case W4A4Kernel::kSm90S8S8: return sm90_code == 900 && args.b_s8 != nullptr;
    default: return false;
    }
}

}  // namespace

namespace detail {

// Launches `probe` (a kernel writing its __CUDA_ARCH__) once per device and file; 0 when no code of the file can run
// on the device (no image: the file was built without code this device accepts).
int probe_code_arch(int which, const void *probe) {
    static std::mutex mu;
    static int cache[2][kMaxDevices];
    static bool done[2][kMaxDevices];
    int dev = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&dev));
    FQ_CHECK(dev >= 0 && dev < kMaxDevices, FQ_STATUS_UNSUPPORTED, "w4a4: device ordinal %d", dev);
    std::lock_guard<std::mutex> lock(mu);
    if (done[which][dev]) return cache[which][dev];
    cudaStream_t s = nullptr;
    int *d_arch = nullptr, arch = 0;
    FQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaError_t e = cudaMalloc(&d_arch, sizeof(int));
    if (e == cudaSuccess) e = cudaMemsetAsync(d_arch, 0, sizeof(int), s);
    if (e == cudaSuccess) {
        void *params[] = {&d_arch};
        e = cudaLaunchKernel(probe, dim3(1), dim3(1), params, 0, s);
        if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
            (void)cudaGetLastError();  // not sticky: this file simply has nothing for this device
            e = cudaSuccess;
        } else if (e == cudaSuccess) {
            e = cudaMemcpyAsync(&arch, d_arch, sizeof(int), cudaMemcpyDeviceToHost, s);
        }
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (d_arch != nullptr) (void)cudaFree(d_arch);
    (void)cudaStreamDestroy(s);
    if (e != cudaSuccess) throw_cuda_error(static_cast<int>(e), "w4a4 probe kernel", __FILE__, __LINE__);
    cache[which][dev] = arch;
    done[which][dev] = true;
    return arch;
}

int w4a4_sm80_code_arch() { return probe_code_arch(0, reinterpret_cast<const void *>(&w4a4_sm80_probe_kernel)); }

}  // namespace detail

const char *w4a4_kernel_name(W4A4Kernel kernel) {
    switch (kernel) {
    case W4A4Kernel::kAuto: return "auto";
    case W4A4Kernel::kGemv: return "gemv_s8_mma_int4w";
    case W4A4Kernel::kSm80Int4: return "sm80_s4_mma_128x128x128_3stage";
    case W4A4Kernel::kSm90S8S4: return "sm90_cutlass_s8xs4_rs_wgmma_128x256x128_coop";
    case W4A4Kernel::kSm90S8S8: return "sm90_cutlass_s8xs8_wgmma_128x256x128_coop_2x1";
    }
    return "unknown";
}

W4A4ActFormat w4a4_native_act_format() {
    return detail::w4a4_sm90_code_arch() == 900 ? W4A4ActFormat::kInt8 : W4A4ActFormat::kInt4Packed;
}

W4A4Kernel w4a4_select_kernel(const W4A4GemmArgs &args, W4A4Kernel kernel) {
    check_shape(args);
    const int cc = device_cc();
    FQ_CHECK(cc >= 80, FQ_STATUS_UNSUPPORTED,
             "w4a4_gemm: needs a GPU of compute capability 8.0 or newer (this is %d.%d)", cc / 10, cc % 10);
    const int sm80_code = detail::w4a4_sm80_code_arch(), sm90_code = detail::w4a4_sm90_code_arch();
    if (kernel != W4A4Kernel::kAuto) {
        FQ_CHECK(kernel_available(kernel, args, sm80_code, sm90_code), FQ_STATUS_UNSUPPORTED,
                 "w4a4_gemm: kernel %s cannot run here (device sm_%d, code sm_%d / sm_%d%s, m=%lld%s)",
                 w4a4_kernel_name(kernel), cc, sm80_code / 10, sm90_code / 10,
                 detail::w4a4_sm90_built_with_cutlass() ? "" : ", built without CUTLASS",
                 static_cast<long long>(args.m), args.b_s8 != nullptr ? "" : ", no INT8 weight copy");
        return kernel;
    }
    const W4A4Kernel order[] = {W4A4Kernel::kGemv, W4A4Kernel::kSm90S8S8, W4A4Kernel::kSm90S8S4,
                                W4A4Kernel::kSm80Int4};
    for (W4A4Kernel candidate : order)
        if (kernel_available(candidate, args, sm80_code, sm90_code)) return candidate;
    FQ_FAIL(FQ_STATUS_UNSUPPORTED, "w4a4_gemm: no kernel for m=%lld on sm_%d (code sm_%d / sm_%d%s)",
            static_cast<long long>(args.m), cc, sm80_code / 10, sm90_code / 10,
            detail::w4a4_sm90_built_with_cutlass() ? "" : ", built without CUTLASS");
}

namespace {

size_t workspace_bytes_for(const W4A4GemmArgs &args, W4A4Kernel chosen) {
    const auto mk = static_cast<size_t>(args.m) * static_cast<size_t>(args.k);
    switch (chosen) {
    case W4A4Kernel::kGemv: return 0;
    case W4A4Kernel::kSm80Int4: return args.a_format == W4A4ActFormat::kInt8 ? round_up_256(mk / 2) : 0;
    default:
        return (args.a_format == W4A4ActFormat::kInt4Packed ? round_up_256(mk) : 0) +
               detail::w4a4_sm90_workspace_bytes(chosen, args.m, args.n, args.k);
    }
}

}  // namespace

size_t w4a4_gemm_workspace_bytes(const W4A4GemmArgs &args, W4A4Kernel kernel) {
    return workspace_bytes_for(args, w4a4_select_kernel(args, kernel));
}

void w4a4_gemm(const W4A4GemmArgs &args, void *workspace, size_t workspace_bytes, const Stream &stream,
               W4A4Kernel kernel) {
    const W4A4Kernel chosen = w4a4_select_kernel(args, kernel);
    if (args.m == 0) return;
    FQ_CHECK(args.d_f16 && args.a && args.a_scale && args.b_packed && args.b_scale, FQ_STATUS_INVALID_ARGUMENT,
             "w4a4_gemm: NULL tensor");
    FQ_CHECK(aligned16(args.d_f16) && aligned16(args.a) && aligned16(args.b_packed) && aligned16(args.b_s8),
             FQ_STATUS_INVALID_ARGUMENT, "w4a4_gemm: d, a, b_packed and b_s8 must be 16-byte aligned");
    FQ_CHECK(args.a_format == W4A4ActFormat::kInt4Packed || args.a_format == W4A4ActFormat::kInt8,
             FQ_STATUS_INVALID_ARGUMENT, "w4a4_gemm: bad activation format %d", static_cast<int>(args.a_format));
    const size_t needed = workspace_bytes_for(args, chosen);
    FQ_CHECK(workspace_bytes >= needed && (needed == 0 || (workspace != nullptr &&
                                                           reinterpret_cast<uintptr_t>(workspace) % 256 == 0)),
             FQ_STATUS_INVALID_ARGUMENT, "w4a4_gemm: workspace of %zu bytes at %p; %s needs %zu, 256-byte aligned",
             workspace_bytes, workspace, w4a4_kernel_name(chosen), needed);

    const int m = static_cast<int>(args.m), n = static_cast<int>(args.n), k = static_cast<int>(args.k);
    const cudaStream_t s = as_stream(stream);
    auto *d = reinterpret_cast<__half *>(args.d_f16);
    const auto *a = static_cast<const uint8_t *>(args.a);
    const bool a_int8 = args.a_format == W4A4ActFormat::kInt8;
    switch (chosen) {
    case W4A4Kernel::kGemv: {
        const dim3 grid(static_cast<unsigned>((n + kGemvCols - 1) / kGemvCols));
        if (a_int8) {
            w4a4_gemv_kernel1<true><<<grid, 32 * kGemvWarps, 0, s>>>(d, a, args.a_scale, args.b_packed,
                                                                     args.b_scale, args.bias, m, n, k);
        } else {
            w4a4_gemv_kernel1<false><<<grid, 32 * kGemvWarps, 0, s>>>(d, a, args.a_scale, args.b_packed,
                                                                      args.b_scale, args.bias, m, n, k);
        }
        FQ_CUDA_CHECK(cudaGetLastError());
        return;
    }
    case W4A4Kernel::kSm80Int4: {
        const uint8_t *a_packed = a;
        if (a_int8) {
            int8_pack_to_int4(static_cast<uint8_t *>(workspace), static_cast<const int8_t *>(args.a),
                              args.m * args.k, stream);
            a_packed = static_cast<const uint8_t *>(workspace);
        }
        const dim3 grid(static_cast<unsigned>((n + kTileN - 1) / kTileN),
                        static_cast<unsigned>((m + kTileM - 1) / kTileM));
        FQ_CHECK(grid.y <= 65535u, FQ_STATUS_UNSUPPORTED, "w4a4_gemm: m=%d needs more than 65535 row tiles", m);
        w4a4_sm80_int4_kernel1<<<grid, 256, kInt4Smem, s>>>(d, a_packed, args.a_scale, args.b_packed, args.b_scale,
                                                             args.bias, m, n, k);
        FQ_CUDA_CHECK(cudaGetLastError());
        return;
    }
    default: {
        const int8_t *a_s8 = static_cast<const int8_t *>(args.a);
        auto *ws = static_cast<uint8_t *>(workspace);
        size_t ws_bytes = workspace_bytes;
        if (!a_int8) {
            const size_t a_bytes = round_up_256(static_cast<size_t>(args.m) * static_cast<size_t>(args.k));
            int4_unpack_to_int8(reinterpret_cast<int8_t *>(ws), a, args.m * args.k, stream);
            a_s8 = reinterpret_cast<const int8_t *>(ws);
            ws += a_bytes;
            ws_bytes -= a_bytes;
        }
        detail::w4a4_sm90_gemm(chosen, args.d_f16, a_s8, args.a_scale, args.b_packed, args.b_s8, args.b_scale,
                               args.bias, args.m, args.n, args.k, ws, ws_bytes, stream.handle());
        return;
    }
    }
}

void int4_unpack_to_int8(int8_t *values, const uint8_t *packed, int64_t n_values, const Stream &stream) {
    FQ_CHECK(n_values >= 0 && n_values % 2 == 0, FQ_STATUS_INVALID_ARGUMENT, "int4_unpack_to_int8: n_values %lld",
             static_cast<long long>(n_values));
    if (n_values == 0) return;
    FQ_CHECK(values && packed && aligned16(values) && aligned16(packed), FQ_STATUS_INVALID_ARGUMENT,
             "int4_unpack_to_int8: NULL or misaligned pointer");
    int4_unpack_kernel1<<<grid_for(n_values / 16 + 1, 256), 256, 0, as_stream(stream)>>>(values, packed, n_values);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void int8_pack_to_int4(uint8_t *packed, const int8_t *values, int64_t n_values, const Stream &stream) {
    FQ_CHECK(n_values >= 0 && n_values % 2 == 0, FQ_STATUS_INVALID_ARGUMENT, "int8_pack_to_int4: n_values %lld",
             static_cast<long long>(n_values));
    if (n_values == 0) return;
    FQ_CHECK(values && packed && aligned16(values) && aligned16(packed), FQ_STATUS_INVALID_ARGUMENT,
             "int8_pack_to_int4: NULL or misaligned pointer");
    int8_pack_kernel1<<<grid_for(n_values / 16 + 1, 256), 256, 0, as_stream(stream)>>>(packed, values, n_values);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda
