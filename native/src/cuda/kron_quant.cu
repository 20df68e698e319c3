// The fused online Kronecker transform + per-token INT4 quantization (contract: kron_quant.h). Kernel versions:
//   1. One warp per 16-row strip of a token's Z^T; a block holds 1..12/strips tokens. Z^T = P2^T X^T with P2^T's
//      strip as register-resident A fragments and X from shared memory by ldmatrix (B operand, no transpose);
//      the FP32 accumulators become FP16 A fragments of Y^T = Z^T P1 in registers (the C and A fragment layouts of
//      m16n8k16 coincide), P1^T from shared memory. Strip max/min -> one barrier -> scale -> quantize from
//      registers -> INT8 staging in output order -> coalesced 8/16-byte stores (FP16 output stages in the token's
//      own tile instead). Persistent blocks; the next token group arrives by cp.async into the second stage while
//      this one computes.
//   2. (this file) The same math with latency cut: the setup's global reads (P2^T fragments, P1, the first token
//      group) are all in flight at once instead of three round trips in a row; every output of a multi-LAC call is
//      quantized in one pass into its own staging area and stored after one barrier; several blocks per SM
//      (KronTile::kMinBlocks), since Nsight Compute showed version 1 latency-bound at 8-12 warps per SM (2-3 warps
//      per scheduler, under half of them eligible). Measured in a decoder layer:
//      benchmarks/results/decoder_layer-h100.md.
//
// Shared memory rows are padded by 8 halves (16 bytes): the row stride in 16-byte units is then odd, so the eight
// row addresses of every ldmatrix phase fall into different banks.
//
// Napkin math (H100, sm_90): per token every warp reads all of X and P1 from shared memory, so a token costs
// 2 (n1p n2p + n1p^2) strips bytes of ldmatrix traffic for n1p n2p (n1p + n2p) MACs: 8 MACs per byte, ~1000
// MAC/clk/SM at 128 B/clk, about what mma.sync sustains there. 14336 = (112,128): 3.4 M MACs -> ~3400 clk per token
// per SM, ~120 us for 8192 tokens on 132 SMs against ~80 us to read the 235 MB of input: the largest factors are
// compute-bound by ~1.5x, (64,64) is memory-bound. In practice both run far from these bounds (issue latency, see
// version 2).
#include "cuda/kron_quant.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

std::atomic<int> g_force_stages{0};
std::atomic<int> g_force_tokens_per_block{0};

// Compile-time geometry of one padded shape. N1P, N2P: n1 and n2 rounded up to multiples of 16.
template <int N1P, int N2P, bool HAS_P1, bool HAS_P2> struct KronTile {
    static_assert(N1P % 16 == 0 && N2P % 16 == 0 && N1P >= 16 && N2P >= 16, "padded sizes are multiples of 16");
    static_assert(HAS_P1 || HAS_P2, "at least one factor");
    static_assert(N1P <= N2P, "P1 is staged flat in a token tile (n1 * n1 <= N1P * kLdx)");
    static constexpr int kStrips = N2P / 16;                          // warps per token
    // Blocks per SM the launch bounds ask for (the kernel is latency-bound: Nsight Compute finds 2 warps per
    // scheduler of the (96,128) shape waiting on dependent MMA/ALU chains). Up to 4 strips: four small blocks per SM
    // (65536 / 4 / 128 = 128 registers each), whose barriers and store phases overlap each other's tensor-core work;
    // one-factor shapes of 8 strips: three; two-factor shapes of 5-8 strips: two blocks of one token (128 registers
    // for 8 warps: (96,128) fits without spills, (112,128) spills 16 bytes); wider ones keep one block.
    static constexpr int kMinBlocks = kStrips <= 4 ? 4 : (!HAS_P1 || !HAS_P2) ? 3 : kStrips <= 8 ? 2 : 1;
    static constexpr int kMaxTok = kMinBlocks == 4   ? 4 / kStrips
                                   : kMinBlocks == 2 ? 1
                                                     : (kStrips >= 12 ? 1 : 12 / kStrips);  // tokens per block
    static constexpr int kMaxWarps = kStrips * kMaxTok;
    static constexpr int kLdx = N2P + 8;  // token tile row stride, halves
    static constexpr int kLdp = N1P + 8;  // P1^T row stride, halves
    static constexpr int kNt = N1P / 8;   // 8-wide n tiles over i
    static constexpr int kKs1 = N2P / 16; // k steps of Z^T = P2^T X^T (over j')
    static constexpr int kKs2 = N1P / 16; // k steps of Y^T = Z^T P1 (over i')
    static constexpr size_t kTokenHalves = static_cast<size_t>(N1P) * kLdx;

    static constexpr size_t kRedBytes = (kMaxWarps * 2 * sizeof(float) + 15) / 16 * 16;

    // Layout: token tiles (stages, tokens_per_block, N1P, kLdx) halves | P1^T (N1P, kLdp) halves | strip max/min
    // (kMaxWarps, 2) floats | quantized formats: INT8 staging (outputs, tokens_per_block, stage_stride) bytes, passed
    // here as staging bytes per token (outputs * stage_stride). P1 arrives
    // flat ((n1, n1) halves, n1 <= N1P <= kLdx) in the last token stage before that stage's first use.
    static size_t smem_bytes(int tokens_per_block, int stages, size_t staging_per_token) {
        return static_cast<size_t>(stages) * tokens_per_block * kTokenHalves * sizeof(__half) +
               (HAS_P1 ? static_cast<size_t>(N1P) * kLdp * sizeof(__half) : 0) + kRedBytes +
               static_cast<size_t>(tokens_per_block) * staging_per_token;
    }
};

struct KronParams {
    const __half *x;   // (tokens, n1*n2)
    const __half *p1;  // (n1, n1) or nullptr
    const __half *p2;  // (n2, n2) or nullptr
    int64_t tokens, n_tiles;
    int n1, n2, tokens_per_block, stages;
    int chunk_bytes;   // 16, 8, 4 (cp.async) or 2 (plain copies) per input load
    int p1_chunk_bytes;  // the same for the flat copy of P1
    int format;        // KronOutFormat
    int n_outputs;
    bool vec_out;      // outputs aligned for 8/16-byte stores of 8 (FP16) or 16 (INT) element units
    int stage_stride;  // bytes per token of the INT8 staging area (n rounded up to 16; 0 for kF16)
    void *out[kKronMaxOutputs];
    float *scale[kKronMaxOutputs];
    float clip_max[kKronMaxOutputs], clip_min[kKronMaxOutputs];
};

// ---- PTX wrappers (sm_80+) -----------------------------------------------------------------------------------------

#include "cuda/mma_ptx.cuh"

__device__ __forceinline__ void cp_async(void *dst, const void *src, int bytes) {
    const uint32_t d = smem_u32(dst);
    if (bytes == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));  // L2 only: read once
    } else if (bytes == 8) {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(d), "l"(src));
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src));
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// ---- pieces of the kernel ------------------------------------------------------------------------------------------

// Queues the loads of token group `tile` into `dst` ((tokens_per_block, N1P, kLdx) halves): only the n1 x n2
// region of each token, so the zero padding stays. Lanes run along a row, a warp covers 32 / (loads per row) rows
// at a time; the group's rows are contiguous in global memory (row r = t * n1 + i).
template <class Tile> __device__ void load_group(__half *dst, const KronParams &p, int64_t tile) {
    const int64_t tok0 = tile * p.tokens_per_block;
    const int n_tok = static_cast<int>(min(static_cast<int64_t>(p.tokens_per_block), p.tokens - tok0));
    const int chunk = p.chunk_bytes / 2;  // halves per load
    const int per_row = p.n2 / chunk, lane = threadIdx.x & 31;
    const bool wide = per_row >= 32;
    const int rows_per_pass = wide ? 1 : 32 / per_row, sub = wide ? 0 : lane / per_row;
    if (sub >= rows_per_pass) return;  // lanes left over where per_row does not divide 32
    const int ch0 = wide ? lane : lane - sub * per_row, ch_step = wide ? 32 : per_row;
    const int row_step = (blockDim.x >> 5) * rows_per_pass;
    const __half *src0 = p.x + tok0 * p.n1 * p.n2;
    for (int r = (threadIdx.x >> 5) * rows_per_pass + sub; r < n_tok * p.n1; r += row_step) {
        const int t = r / p.n1, i = r - t * p.n1;
        const __half *src = src0 + static_cast<int64_t>(r) * p.n2;
        __half *d = dst + t * Tile::kTokenHalves + i * Tile::kLdx;
        for (int ch = ch0; ch < per_row; ch += ch_step) {
            if (p.chunk_bytes >= 4) {
                cp_async(d + ch * chunk, src + ch * chunk, p.chunk_bytes);
            } else {
                d[ch] = src[ch];
            }
        }
    }
}

// 16 values in [-8, 7] (one per byte of v) -> 8 bytes of packed INT4, element 2j in the low nibble of byte j.
__device__ __forceinline__ uint2 pack16(uint4 v) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
    uint32_t out[2] = {0, 0};
#pragma unroll
    for (int b = 0; b < 8; ++b) {  // output byte b: value 2b in bits 0-7 of `pair`, value 2b + 1 in bits 8-15
        const uint32_t pair = w[b / 2] >> (16 * (b % 2));
        out[b / 4] |= ((pair & 0xFu) | ((pair >> 4) & 0xF0u)) << (8 * (b % 4));
    }
    return make_uint2(out[0], out[1]);
}

// Copies output `o` of the token group to global memory, all threads of the block together, from the staging
// area: FP16 in each token's own tile (half i*kLdx + j), INT8 values in flat order (byte i*n2 + j of the token's
// stage_stride bytes) for the quantized formats.
template <class Tile>
__device__ void store_group(const KronParams &p, int o, const __half *tiles, const unsigned char *staged,
                            int64_t tok0, int n_tok) {
    const int64_t n = static_cast<int64_t>(p.n1) * p.n2;
    const int n2 = p.n2;
    if (p.format == static_cast<int>(KronOutFormat::kF16)) {
        const int unit = p.vec_out ? 8 : 2;  // halves per store
        const int per_tok = static_cast<int>(n / unit);
        const bool row_vec = p.vec_out && n2 % 8 == 0;  // a unit never straddles a row
        for (int idx = threadIdx.x; idx < n_tok * per_tok; idx += blockDim.x) {
            const int t = idx / per_tok, e0 = (idx - t * per_tok) * unit;
            const __half *src = tiles + t * Tile::kTokenHalves;
            __half *dst = static_cast<__half *>(p.out[o]) + (tok0 + t) * n + e0;
            int i = e0 / n2, j = e0 - i * n2;
            if (row_vec) {
                *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src + i * Tile::kLdx + j);
                continue;
            }
            __align__(16) __half v[8];
            for (int k = 0; k < unit; ++k) {
                v[k] = src[i * Tile::kLdx + j];
                if (++j == n2) j = 0, ++i;
            }
            if (p.vec_out) {
                *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(v);
            } else {
                dst[0] = v[0];
                dst[1] = v[1];
            }
        }
        return;
    }
    unsigned char *out = static_cast<unsigned char *>(p.out[o]);
    const bool packed = p.format == static_cast<int>(KronOutFormat::kInt4Packed);
    if (p.vec_out) {  // n % 16 == 0: 16 values per step, 16-byte loads from the staging area
        const int per_tok = static_cast<int>(n / 16);
        for (int idx = threadIdx.x; idx < n_tok * per_tok; idx += blockDim.x) {
            const int t = idx / per_tok, e0 = (idx - t * per_tok) * 16;
            const uint4 v = *reinterpret_cast<const uint4 *>(staged + t * p.stage_stride + e0);
            if (packed) {
                *reinterpret_cast<uint2 *>(out + (tok0 + t) * (n / 2) + e0 / 2) = pack16(v);
            } else {
                *reinterpret_cast<uint4 *>(out + (tok0 + t) * n + e0) = v;
            }
        }
        return;
    }
    const int per_tok = static_cast<int>(n / 2);  // one byte pair per step
    for (int idx = threadIdx.x; idx < n_tok * per_tok; idx += blockDim.x) {
        const int t = idx / per_tok, e0 = (idx - t * per_tok) * 2;
        const unsigned char b0 = staged[t * p.stage_stride + e0], b1 = staged[t * p.stage_stride + e0 + 1];
        if (packed) {
            out[(tok0 + t) * (n / 2) + e0 / 2] = static_cast<unsigned char>((b0 & 0xF) | (b1 << 4));
        } else {
            out[(tok0 + t) * n + e0] = b0;
            out[(tok0 + t) * n + e0 + 1] = b1;
        }
    }
}

// ---- the kernel ----------------------------------------------------------------------------------------------------

// grid: persistent, each block walks token groups tile = blockIdx.x, + gridDim.x, ...
// block: kStrips * tokens_per_block warps; warp w owns strip (w % kStrips) of token (w / kStrips) of the group.
// dynamic shared memory: Tile::smem_bytes(tokens_per_block, stages, n_outputs * stage_stride).
template <int N1P, int N2P, bool HAS_P1, bool HAS_P2>
__global__ void __launch_bounds__(KronTile<N1P, N2P, HAS_P1, HAS_P2>::kMaxWarps * 32,
                                  KronTile<N1P, N2P, HAS_P1, HAS_P2>::kMinBlocks)
    kron_quant_kernel1(const KronParams p) {
    using Tile = KronTile<N1P, N2P, HAS_P1, HAS_P2>;
    extern __shared__ __align__(16) unsigned char smem[];
    const size_t group_halves = static_cast<size_t>(p.tokens_per_block) * Tile::kTokenHalves;
    __half *xs = reinterpret_cast<__half *>(smem);               // (stages, tokens_per_block, N1P, kLdx)
    __half *p1t = xs + p.stages * group_halves;                  // (N1P, kLdp): P1^T, zero-padded
    float *red = reinterpret_cast<float *>(p1t + (HAS_P1 ? N1P * Tile::kLdp : 0));  // (warps, 2): strip max, min
    unsigned char *staged = reinterpret_cast<unsigned char *>(red) + Tile::kRedBytes;  // (tokens_per_block, stride)
    __half *p1flat = xs + (p.stages - 1) * group_halves;        // (n1, n1): P1 as loaded, in the last stage

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const int tok_in_group = warp / Tile::kStrips, strip = warp - tok_in_group * Tile::kStrips;
    const int j0 = strip * 16;
    // ldmatrix x4 row addresses: lanes 0-7, 8-15, 16-23, 24-31 address the stored 8x8 blocks at (row, col)
    // (0, 0), (0, 8), (8, 0), (8, 8) of a 16x16 tile. Stored n-major that is the B fragments (k 0-7, k 8-15) of two
    // n tiles; stored k-major and transposed, it is the A fragment order (m 0-7, m 8-15 at k 0-7, then at k 8-15).
    const int lm_row = (lane & 7) + ((lane >> 4) & 1) * 8, lm_col = ((lane >> 3) & 1) * 8;
    const int n1 = p.n1, n2 = p.n2;
    const __half zero = __float2half_rn(0.0f);

    // Prologue: every global read of the setup is in flight at once (a decode-sized call is one token per block, and
    // three dependent round trips to memory were most of its time): the P2^T fragments (plain loads into registers),
    // P1 by cp.async into the last token stage (group 1) and, with two stages, the first token group into stage 0
    // (group 2). With one stage P1 must be out of the way first.
    // A fragments of this warp's strip of P2^T (rows j = j0 + g (+8), columns j'), for the whole kernel.
    uint32_t a2[HAS_P2 ? Tile::kKs1 : 1][4];
    if constexpr (HAS_P2) {
#pragma unroll
        for (int ks = 0; ks < Tile::kKs1; ++ks)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int j = j0 + g + (r & 1) * 8, jp = ks * 16 + 2 * c + (r >> 1) * 8;
                const __half lo = (j < n2 && jp < n2) ? p.p2[jp * n2 + j] : zero;
                const __half hi = (j < n2 && jp + 1 < n2) ? p.p2[(jp + 1) * n2 + j] : zero;
                a2[ks][r] = static_cast<uint32_t>(__half_as_ushort(lo)) |
                            (static_cast<uint32_t>(__half_as_ushort(hi)) << 16);
            }
    }
    if constexpr (HAS_P1) {
        const int n1sq = n1 * n1, chunk = p.p1_chunk_bytes / 2;
        for (int k = threadIdx.x * chunk; k < n1sq; k += blockDim.x * chunk) {
            if (chunk > 1) {
                cp_async(p1flat + k, p.p1 + k, p.p1_chunk_bytes);
            } else {
                p1flat[k] = p.p1[k];
            }
        }
    }
    cp_async_commit();
    // Zeroes the padding of token stage `st` (rows >= n1, columns n2 .. N2P): loads and staging write only the n1 x n2
    // region, so the padding stays zero and contributes exact zeros to both products and to the max/min (which are
    // taken against 0 anyway). It may run while asynchronous copies fill the n1 x n2 region.
    const auto zero_padding = [&](int st) {
        if (n1 == N1P && n2 == N2P) return;
        const int per_tile = N1P * N2P;
        __half *base = xs + st * group_halves;
        for (int k = threadIdx.x; k < p.tokens_per_block * per_tile; k += blockDim.x) {
            const int t = k / per_tile, e = k - t * per_tile, i = e / N2P, j = e - i * N2P;
            if (i >= n1 || j >= n2) base[t * Tile::kTokenHalves + i * Tile::kLdx + j] = zero;
        }
    };
    // P1 (flat, in the last stage) -> P1^T (zero-padded); then that stage's padding.
    const auto place_p1 = [&]() {
        if constexpr (HAS_P1) {
            for (int k = threadIdx.x; k < N1P * N1P; k += blockDim.x) {
                const int i = k / N1P, ip = k - i * N1P;  // consecutive threads write consecutive P1^T elements
                p1t[i * Tile::kLdp + ip] = (i < n1 && ip < n1) ? p1flat[ip * n1 + i] : zero;
            }
            __syncthreads();  // the flat copy is read before the zeroing overwrites it
        }
        zero_padding(p.stages - 1);
    };
    int stage = 0;
    int64_t tile = blockIdx.x;
    if (p.stages == 2) {
        if (tile < p.n_tiles) load_group<Tile>(xs, p, tile);
        cp_async_commit();
        zero_padding(0);
        if constexpr (HAS_P1) {
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");  // P1 has arrived (tokens may be in flight)
            __syncthreads();
        }
        place_p1();
    } else {
        cp_async_wait_all();
        __syncthreads();
        place_p1();
        __syncthreads();  // the zeros land before the token copies into the same tile
        if (tile < p.n_tiles) load_group<Tile>(xs, p, tile);
        cp_async_commit();
    }
    // The loop's first barrier orders the transposition and the zeroing before any read of them.

    for (; tile < p.n_tiles; tile += gridDim.x) {
        cp_async_wait_all();
        __syncthreads();  // this group visible; every thread is past the previous group's stores
        const int64_t next = tile + gridDim.x;
        if (p.stages == 2 && next < p.n_tiles) {
            load_group<Tile>(xs + (stage ^ 1) * group_halves, p, next);
            cp_async_commit();
        }
        __half *xt = xs + stage * group_halves + tok_in_group * Tile::kTokenHalves;  // this warp's token
        const int64_t tok0 = tile * p.tokens_per_block;
        const int n_tok = static_cast<int>(min(static_cast<int64_t>(p.tokens_per_block), p.tokens - tok0));
        const int64_t token = tok0 + tok_in_group;

        // y[nt] holds Y^T[j0 + g (+8 for 2, 3)][8 nt + 2c (+1)], FP32.
        float y[Tile::kNt][4];
        uint32_t za[Tile::kKs2][4];  // A fragments of Y^T = Z^T P1: Z^T[j0 + 16-row strip][i'], FP16
        if constexpr (HAS_P2) {
            float z[Tile::kNt][4];
#pragma unroll
            for (int nt = 0; nt < Tile::kNt; ++nt) z[nt][0] = z[nt][1] = z[nt][2] = z[nt][3] = 0.0f;
            // Z^T = P2^T X^T: B[k = j'][n = i] = X[i][j'] is X's rows as stored, so plain ldmatrix; one x4 gives
            // the B fragments of two n tiles.
#pragma unroll
            for (int ks = 0; ks < Tile::kKs1; ++ks)
#pragma unroll
                for (int nt2 = 0; nt2 < Tile::kNt / 2; ++nt2) {
                    uint32_t b[4];
                    ldsm_x4<false>(b, xt + (nt2 * 16 + lm_row) * Tile::kLdx + ks * 16 + lm_col);
                    mma_16816(z[2 * nt2], a2[ks], b[0], b[1]);
                    mma_16816(z[2 * nt2 + 1], a2[ks], b[2], b[3]);
                }
            if constexpr (HAS_P1) {
#pragma unroll
                for (int kk = 0; kk < Tile::kKs2; ++kk) {
                    za[kk][0] = f32x2_to_f16x2(z[2 * kk][0], z[2 * kk][1]);
                    za[kk][1] = f32x2_to_f16x2(z[2 * kk][2], z[2 * kk][3]);
                    za[kk][2] = f32x2_to_f16x2(z[2 * kk + 1][0], z[2 * kk + 1][1]);
                    za[kk][3] = f32x2_to_f16x2(z[2 * kk + 1][2], z[2 * kk + 1][3]);
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < Tile::kNt; ++nt)
#pragma unroll
                    for (int r = 0; r < 4; ++r) y[nt][r] = z[nt][r];
            }
        } else {
            // Z = X: A[m = j][k = i] = X[i][j] is the stored tile transposed.
#pragma unroll
            for (int kk = 0; kk < Tile::kKs2; ++kk)
                ldsm_x4<true>(za[kk], xt + (kk * 16 + lm_row) * Tile::kLdx + j0 + lm_col);
        }
        if constexpr (HAS_P1) {
#pragma unroll
            for (int nt = 0; nt < Tile::kNt; ++nt) y[nt][0] = y[nt][1] = y[nt][2] = y[nt][3] = 0.0f;
            // Y^T = Z^T P1: B[k = i'][n = i] = P1[i'][i] = P1^T[i][i'], stored n-major.
#pragma unroll
            for (int kk = 0; kk < Tile::kKs2; ++kk)
#pragma unroll
                for (int nt2 = 0; nt2 < Tile::kNt / 2; ++nt2) {
                    uint32_t b[4];
                    ldsm_x4<false>(b, p1t + (nt2 * 16 + lm_row) * Tile::kLdp + kk * 16 + lm_col);
                    mma_16816(y[2 * nt2], za[kk], b[0], b[1]);
                    mma_16816(y[2 * nt2 + 1], za[kk], b[2], b[3]);
                }
        }

        const bool quantized = p.format != static_cast<int>(KronOutFormat::kF16);
        if (quantized) {
            // Starting from 0 is the max(., 0) / min(., 0) of the LAC formula.
            float vmax = 0.0f, vmin = 0.0f;
#pragma unroll
            for (int nt = 0; nt < Tile::kNt; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) vmax = fmaxf(vmax, y[nt][r]), vmin = fminf(vmin, y[nt][r]);
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) {
                vmax = fmaxf(vmax, __shfl_xor_sync(kFullMask, vmax, off));
                vmin = fminf(vmin, __shfl_xor_sync(kFullMask, vmin, off));
            }
            if (lane == 0) {
                red[2 * warp] = vmax;
                red[2 * warp + 1] = vmin;
            }
        }
        __syncthreads();  // strip extrema visible; every warp is done reading the tiles (FP16 output stages there)
        float row_max = 0.0f, row_min = 0.0f;
        if (quantized) {
            for (int s = 0; s < Tile::kStrips; ++s) {
                row_max = fmaxf(row_max, red[2 * (tok_in_group * Tile::kStrips + s)]);
                row_min = fminf(row_min, red[2 * (tok_in_group * Tile::kStrips + s) + 1]);
            }
        }
        // Every output is quantized from registers into its own staging area, then all are stored after one
        // barrier (a round of barrier - quantize - barrier - store per output cost most of a decode-sized call).
        if (quantized) {
            for (int o = 0; o < p.n_outputs; ++o) {
                unsigned char *my_staged = staged + (o * p.tokens_per_block + tok_in_group) * p.stage_stride;
                // The twin's formula in the same FP32 operations (IEEE division, no fast math); only Y * (1/s)
                // instead of Y / s differs, by at most one rounding of the pre-rounding value.
                const float xmax = __fmul_rn(row_max, p.clip_max[o]), xmin = __fmul_rn(row_min, p.clip_min[o]);
                const float m = fmaxf(fabsf(xmin), xmax);
                const float s = m == 0.0f ? 1.0f : m / 7.0f;
                const float rs = 1.0f / s;
                if (strip == 0 && lane == 0 && token < p.tokens) p.scale[o][token] = s;
#pragma unroll
                for (int nt = 0; nt < Tile::kNt; ++nt)
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
                        const int i = nt * 8 + 2 * c + (r & 1), j = j0 + g + (r >> 1) * 8;
                        const int q = min(max(__float2int_rn(__fmul_rn(y[nt][r], rs)), -8), 7);
                        if (i < n1 && j < n2) my_staged[i * n2 + j] = static_cast<unsigned char>(q);
                    }
            }
        } else {
#pragma unroll
            for (int nt = 0; nt < Tile::kNt; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const int i = nt * 8 + 2 * c + (r & 1), j = j0 + g + (r >> 1) * 8;
                    if (i < n1 && j < n2) xt[i * Tile::kLdx + j] = __float2half_rn(y[nt][r]);
                }
        }
        __syncthreads();
        for (int o = 0; o < p.n_outputs; ++o)
            store_group<Tile>(p, o, xs + stage * group_halves, staged + o * p.tokens_per_block * p.stage_stride, tok0,
                              n_tok);
        if (p.stages == 2) {
            stage ^= 1;
        } else if (next < p.n_tiles) {
            __syncthreads();  // the stores have read the only stage
            load_group<Tile>(xs, p, next);
            cp_async_commit();
        }
    }
    cp_async_wait_all();
}

// ---- host side -----------------------------------------------------------------------------------------------------

struct DeviceInfo {
    int ordinal = 0;
    int n_sms = 0;
    int smem_optin_bytes = 0;
};

DeviceInfo current_device_info() {
    int dev = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&dev));
    static std::mutex mu;
    static DeviceInfo cache[64];
    std::lock_guard<std::mutex> lock(mu);
    if (dev >= 0 && dev < 64 && cache[dev].n_sms > 0) return cache[dev];
    DeviceInfo info;
    info.ordinal = dev;
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&info.n_sms, cudaDevAttrMultiProcessorCount, dev));
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&info.smem_optin_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (dev >= 0 && dev < 64) cache[dev] = info;
    return info;
}

// Blocks of `kernel` one SM holds at this size. The attribute and occupancy queries run once per kernel, device and
// size (they cost microseconds, as much as a decode-sized launch); the attribute is always set to the device's limit,
// never to one call's size, so concurrent callers with other sizes cannot undercut each other.
int blocks_per_sm(const void *kernel, const DeviceInfo &dev, int threads, size_t smem_bytes) {
    struct Entry {
        const void *kernel;
        int device, threads;
        size_t smem_bytes;
        int per_sm;
    };
    static std::mutex mu;
    static std::vector<Entry> cache;
    std::lock_guard<std::mutex> lock(mu);
    for (const Entry &e : cache)
        if (e.kernel == kernel && e.device == dev.ordinal && e.threads == threads && e.smem_bytes == smem_bytes)
            return e.per_sm;
    FQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dev.smem_optin_bytes));
    int per_sm = 0;
    FQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem_bytes));
    cache.push_back(Entry{kernel, dev.ordinal, threads, smem_bytes, per_sm});
    return per_sm;
}

// Largest load that never straddles a row and keeps every source address aligned to it.
int chunk_bytes_for(const KronQuantArgs &a) {
    const int64_t n = static_cast<int64_t>(a.n1) * a.n2;
    const auto addr = reinterpret_cast<uintptr_t>(a.x_f16);
    int cb = 16;
    while (cb > 2 && ((2 * a.n2) % cb != 0 || (2 * n) % cb != 0 || addr % cb != 0)) cb /= 2;
    return cb;
}

// The same for a flat copy of n_halves halves from `src`.
int flat_chunk_bytes(const void *src, int64_t n_halves) {
    const auto addr = reinterpret_cast<uintptr_t>(src);
    int cb = 16;
    while (cb > 2 && ((2 * n_halves) % cb != 0 || addr % cb != 0)) cb /= 2;
    return cb;
}

bool outputs_vectorizable(const KronQuantArgs &a) {
    const int64_t n = static_cast<int64_t>(a.n1) * a.n2;
    const bool f16 = a.format == KronOutFormat::kF16;
    if (n % (f16 ? 8 : 16) != 0) return false;
    const uintptr_t align = a.format == KronOutFormat::kInt4Packed ? 8 : 16;
    for (int o = 0; o < a.n_outputs; ++o)
        if (reinterpret_cast<uintptr_t>(a.out[o].data) % align != 0) return false;
    return true;
}

// Plans (and, with a stream, launches) one compiled shape.
template <int N1P, int N2P, bool HAS_P1, bool HAS_P2>
KronQuantPlan run_shape(const KronQuantArgs &a, const Stream *stream) {
    using Tile = KronTile<N1P, N2P, HAS_P1, HAS_P2>;
    auto *kernel = &kron_quant_kernel1<N1P, N2P, HAS_P1, HAS_P2>;
    const DeviceInfo dev = current_device_info();
    KronQuantPlan plan;
    plan.n1_padded = N1P;
    plan.n2_padded = N2P;
    // Enough groups to give every SM one before groups grow: decode-sized calls spread over the GPU.
    int64_t tpb = (a.tokens + dev.n_sms - 1) / dev.n_sms;
    if (const int forced = g_force_tokens_per_block.load()) tpb = forced;
    tpb = tpb < 1 ? 1 : (tpb > Tile::kMaxTok ? Tile::kMaxTok : tpb);
    int stages = g_force_stages.load() == 1 ? 1 : 2;
    const int64_t n = static_cast<int64_t>(a.n1) * a.n2;
    const size_t stage_stride = a.format == KronOutFormat::kF16 ? 0 : static_cast<size_t>((n + 15) / 16 * 16);
    const size_t staging_per_token = stage_stride * static_cast<size_t>(a.n_outputs);
    const auto fits = [&](int64_t t, int s) {
        return Tile::smem_bytes(static_cast<int>(t), s, staging_per_token) <= static_cast<size_t>(dev.smem_optin_bytes);
    };
    if (!fits(tpb, stages) && g_force_stages.load() == 0) stages = 1;
    while (tpb > 1 && !fits(tpb, stages)) --tpb;
    FQ_CHECK(fits(tpb, stages), FQ_STATUS_UNSUPPORTED,
             "kron_quant: shape (%d, %d) needs %zu bytes of shared memory, the device allows %d", a.n1, a.n2,
             Tile::smem_bytes(static_cast<int>(tpb), stages, staging_per_token), dev.smem_optin_bytes);
    plan.tokens_per_block = static_cast<int>(tpb);
    plan.stages = stages;
    plan.block_threads = Tile::kStrips * plan.tokens_per_block * 32;
    plan.smem_bytes = Tile::smem_bytes(plan.tokens_per_block, stages, staging_per_token);
    const int per_sm = blocks_per_sm(reinterpret_cast<const void *>(kernel), dev, plan.block_threads, plan.smem_bytes);
    FQ_CHECK(per_sm >= 1, FQ_STATUS_UNSUPPORTED, "kron_quant: shape (%d, %d) cannot run on this device", a.n1, a.n2);
    const int64_t n_tiles = (a.tokens + tpb - 1) / tpb;
    const int64_t max_grid = static_cast<int64_t>(per_sm) * dev.n_sms;
    plan.grid_blocks = static_cast<int>(n_tiles < max_grid ? n_tiles : max_grid);
    if (!stream || a.tokens == 0) return plan;

    KronParams p{};
    p.x = reinterpret_cast<const __half *>(a.x_f16);
    p.p1 = reinterpret_cast<const __half *>(a.p1_f16);
    p.p2 = reinterpret_cast<const __half *>(a.p2_f16);
    p.tokens = a.tokens;
    p.n_tiles = n_tiles;
    p.n1 = a.n1;
    p.n2 = a.n2;
    p.tokens_per_block = plan.tokens_per_block;
    p.stages = stages;
    p.chunk_bytes = chunk_bytes_for(a);
    p.p1_chunk_bytes = flat_chunk_bytes(a.p1_f16, static_cast<int64_t>(a.n1) * a.n1);
    p.format = static_cast<int>(a.format);
    p.n_outputs = a.n_outputs;
    p.vec_out = outputs_vectorizable(a);
    p.stage_stride = static_cast<int>(stage_stride);
    for (int o = 0; o < a.n_outputs; ++o) {
        p.out[o] = a.out[o].data;
        p.scale[o] = a.out[o].scale;
        p.clip_max[o] = a.out[o].clip_max;
        p.clip_min[o] = a.out[o].clip_min;
    }
    kernel<<<plan.grid_blocks, plan.block_threads, plan.smem_bytes, static_cast<cudaStream_t>(stream->handle())>>>(p);
    FQ_CUDA_CHECK(cudaGetLastError());
    return plan;
}

using RunFn = KronQuantPlan (*)(const KronQuantArgs &, const Stream *);
struct Variant {
    int n1p, n2p;
    bool has_p1, has_p2;
    RunFn run;
};

// Every compiled shape (see kron_quant.h for the factor pairs each one serves). Each costs compile time on four
// targets: add one only for a model that needs it.
constexpr Variant kVariants[] = {
    {32, 32, true, true, &run_shape<32, 32, true, true>},
    {32, 48, true, true, &run_shape<32, 48, true, true>},
    {64, 64, true, true, &run_shape<64, 64, true, true>},
    {64, 80, true, true, &run_shape<64, 80, true, true>},
    {96, 128, true, true, &run_shape<96, 128, true, true>},
    {112, 128, true, true, &run_shape<112, 128, true, true>},
    {128, 160, true, true, &run_shape<128, 160, true, true>},
    {16, 64, true, false, &run_shape<16, 64, true, false>},
    {32, 128, true, false, &run_shape<32, 128, true, false>},
    {16, 64, false, true, &run_shape<16, 64, false, true>},
    {16, 128, false, true, &run_shape<16, 128, false, true>},
};

const Variant *find_variant(int n1, int n2, bool has_p1, bool has_p2) {
    const Variant *best = nullptr;
    for (const Variant &v : kVariants) {
        if (v.has_p1 != has_p1 || v.has_p2 != has_p2 || v.n1p < n1 || v.n2p < n2) continue;
        if (!best || v.n1p * v.n2p < best->n1p * best->n2p) best = &v;
    }
    return best;
}

const Variant &validate(const KronQuantArgs &a) {
    FQ_CHECK(a.tokens >= 0 && a.n1 > 0 && a.n2 > 0 && (static_cast<int64_t>(a.n1) * a.n2) % 2 == 0,
             FQ_STATUS_INVALID_ARGUMENT, "kron_quant: bad sizes tokens=%lld n1=%d n2=%d",
             static_cast<long long>(a.tokens), a.n1, a.n2);
    FQ_CHECK(a.p1_f16 || a.p2_f16, FQ_STATUS_INVALID_ARGUMENT, "kron_quant: P1 and P2 are both the identity");
    const bool f16 = a.format == KronOutFormat::kF16;
    FQ_CHECK(f16 || a.format == KronOutFormat::kInt4Packed || a.format == KronOutFormat::kInt8,
             FQ_STATUS_INVALID_ARGUMENT, "kron_quant: bad format %d", static_cast<int>(a.format));
    FQ_CHECK(a.n_outputs >= 1 && a.n_outputs <= (f16 ? 1 : kKronMaxOutputs), FQ_STATUS_INVALID_ARGUMENT,
             "kron_quant: %d outputs", a.n_outputs);
    const auto misaligned = [](const void *ptr, uintptr_t align) {
        return reinterpret_cast<uintptr_t>(ptr) % align != 0;
    };
    FQ_CHECK(!misaligned(a.x_f16, 2) && !misaligned(a.p1_f16, 2) && !misaligned(a.p2_f16, 2),
             FQ_STATUS_INVALID_ARGUMENT, "kron_quant: misaligned FP16 input");
    for (int o = 0; o < a.n_outputs; ++o) {
        const KronQuantOutput &out = a.out[o];
        FQ_CHECK(f16 || (std::isfinite(out.clip_max) && out.clip_max > 0.0f && std::isfinite(out.clip_min) &&
                         out.clip_min > 0.0f),
                 FQ_STATUS_INVALID_ARGUMENT, "kron_quant: clip factors %g, %g", out.clip_max, out.clip_min);
        FQ_CHECK(a.tokens == 0 || (out.data && (f16 || out.scale)), FQ_STATUS_INVALID_ARGUMENT,
                 "kron_quant: NULL output %d", o);
        FQ_CHECK(!misaligned(out.data, f16 ? 2 : 1) && !misaligned(out.scale, 4), FQ_STATUS_INVALID_ARGUMENT,
                 "kron_quant: misaligned output %d", o);
    }
    FQ_CHECK(a.tokens == 0 || a.x_f16, FQ_STATUS_INVALID_ARGUMENT, "kron_quant: NULL input");
    const Variant *v = find_variant(a.n1, a.n2, a.p1_f16 != nullptr, a.p2_f16 != nullptr);
    FQ_CHECK(v != nullptr, FQ_STATUS_UNSUPPORTED, "kron_quant: no compiled shape holds (%d, %d)%s", a.n1, a.n2,
             a.p1_f16 ? (a.p2_f16 ? "" : " with P2 the identity") : " with P1 the identity");
    return *v;
}

}  // namespace

bool kron_quant_supported(int n1, int n2, bool has_p1, bool has_p2) {
    return n1 > 0 && n2 > 0 && find_variant(n1, n2, has_p1, has_p2) != nullptr;
}

KronQuantPlan kron_quant_plan(const KronQuantArgs &args) { return validate(args).run(args, nullptr); }

void kron_quant(const KronQuantArgs &args, const Stream &stream) {
    const Variant &v = validate(args);
    if (args.tokens == 0) return;
    v.run(args, &stream);
}

namespace detail {
void kron_quant_set_overrides(int stages, int tokens_per_block) {
    g_force_stages.store(stages == 1 || stages == 2 ? stages : 0);
    g_force_tokens_per_block.store(tokens_per_block > 0 ? tokens_per_block : 0);
}
}  // namespace detail

}  // namespace fq::cuda
