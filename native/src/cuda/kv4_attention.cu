// The KV cache writer and the attention kernels over the 4-bit (and FP16) cache (contract: kv4_attention.h).
//
// Numerics shared by the kernels: a 4-bit element enters every product as the exact small integer (q - z) (an FP16
// or FP32 value in [-15, 15]) and its FP32 scale s as one factor per key: scores are s_k (q . (c - z_k)), the
// probabilities' V sum is (p s_v) . (c - z_v). Scores live in the log2 domain (q pre-multiplied by scale * log2 e,
// exp2f), so the softmax costs one exp2 per score.
//
// Napkin math, decode (H100, ~3 TB/s): LLaMA-2-7B, batch 64, 2048 keys: 64*32*2048 rows of K and V at 72 bytes
// = 604 MB, ~0.2 ms (FP16: 2.1 GB, ~0.7 ms). The split-K grid gives >= 4 blocks per SM at batch 1 (32 heads x
// 16 slices of 128 keys), so one sequence still streams from every SM.
#include "cuda/kv4_attention.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace fq::cuda {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr float kLog2e = 1.4426950408889634f;
std::atomic<int> g_force_splits{0};

// ---- shared helpers ------------------------------------------------------------------------------------------------

#include "cuda/mma_ptx.cuh"

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
    return r;
}

// Eight 4-bit codes (element 2j in the low nibble of byte j) -> four FP16 pairs (c - z), exact: 0x6400 | c is the
// FP16 value 1024 + c, and (1024 + c) - (1024 + z) is exact. prmt's sign-replicate selectors (8 | k) supply the zero
// bytes (every byte holds a value < 16).
__device__ __forceinline__ void codes_to_f16x2(uint32_t (&out)[4], uint32_t w, __half2 bias) {
    const uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const uint32_t sel = j | ((8u | j) << 4) | ((4u + j) << 8) | ((8u | j) << 12);
        const uint32_t pair = prmt(lo, hi, sel) | 0x64006400u;
        const __half2 v = __hsub2(*reinterpret_cast<const __half2 *>(&pair), bias);
        out[j] = *reinterpret_cast<const uint32_t *>(&v);
    }
}

// Asynchronous global -> shared copies of 16 or 8 bytes (sm_80+), in commit groups.
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async8(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, off));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
    return v;
}

// ---- cache write ---------------------------------------------------------------------------------------------------

// grid: ceil(2 * B*S*Hk / 8), block 256: warp w handles row r = 2 * (token * Hk + head) + (0 for K, 1 for V).
// Lane l owns elements [l D/32, (l+1) D/32) of the row.
template <int D, bool kInt4>
__global__ void __launch_bounds__(256) kv_write_kernel(const KvCacheView c, const KvWriteArgs a, int64_t n_rows) {
    constexpr int kPer = D / 32;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
    if (r >= n_rows) return;
    const int lane = threadIdx.x & 31;
    const int which = static_cast<int>(r & 1);
    const int64_t tok = (r >> 1) / c.kv_heads;
    const int g = static_cast<int>((r >> 1) - tok * c.kv_heads);
    const int64_t b = tok / a.n_new, s = tok - b * a.n_new;
    const int64_t row = (b * c.kv_heads + g) * c.capacity + a.pos0 + s;
    const __half *src = reinterpret_cast<const __half *>(which ? a.v_f16 : a.k_f16) + tok * (which ? a.ld_v : a.ld_k) +
                        static_cast<int64_t>(g) * D + lane * kPer;
    __half2 h2[kPer / 2];
#pragma unroll
    for (int e = 0; e < kPer / 2; ++e) h2[e] = reinterpret_cast<const __half2 *>(src)[e];
    if constexpr (!kInt4) {
        __half2 *dst = reinterpret_cast<__half2 *>(which ? c.v : c.k) + (row * D + lane * kPer) / 2;
#pragma unroll
        for (int e = 0; e < kPer / 2; ++e) dst[e] = h2[e];
    } else {
        float x[kPer];
#pragma unroll
        for (int e = 0; e < kPer / 2; ++e) {
            const float2 f = __half22float2(h2[e]);
            x[2 * e] = f.x;
            x[2 * e + 1] = f.y;
        }
        float amax = x[0], amin = x[0];
#pragma unroll
        for (int e = 1; e < kPer; ++e) amax = fmaxf(amax, x[e]), amin = fminf(amin, x[e]);
        for (int off = 16; off > 0; off >>= 1) {
            amax = fmaxf(amax, __shfl_xor_sync(kFullMask, amax, off));
            amin = fminf(amin, __shfl_xor_sync(kFullMask, amin, off));
        }
        // The twin's FP32 operations one by one (explicit roundings: nothing may be contracted into an FMA).
        float xmax = __fmul_rn(fmaxf(amax, 0.0f), which ? a.v_clip_max : a.k_clip_max);
        float xmin = __fmul_rn(fminf(amin, 0.0f), which ? a.v_clip_min : a.k_clip_min);
        if (xmax == 0.0f && xmin == 0.0f) xmin = -1.0f, xmax = 1.0f;
        const float s = __fdiv_rn(__fsub_rn(xmax, xmin), 15.0f);
        const float z = rintf(__fdiv_rn(-xmin, s));
        uint32_t packed = 0;
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const float q = fminf(fmaxf(__fadd_rn(rintf(__fdiv_rn(x[e], s)), z), 0.0f), 15.0f);
            packed |= static_cast<uint32_t>(q) << (4 * e);
        }
        unsigned char *codes = static_cast<unsigned char *>(which ? c.v : c.k) + row * (D / 2) + lane * (kPer / 2);
        if constexpr (kPer == 4) {
            *reinterpret_cast<uint16_t *>(codes) = static_cast<uint16_t>(packed);
        } else {
            *codes = static_cast<unsigned char>(packed);
        }
        if (lane == 0) reinterpret_cast<float2 *>(which ? c.v_params : c.k_params)[row] = make_float2(s, z);
    }
}

// ---- decode: split-K over the keys ---------------------------------------------------------------------------------

constexpr int kDecThreads = 128;
constexpr int kDecMaxChunk = 256;  // keys per block at most (scores stay in shared memory)

struct DecodeParams {
    const __half *q;
    int64_t ld_q;
    __half *out;
    int64_t ld_out;
    KvCacheView c;
    int n_heads, n_keys, keys_per_split, n_splits;
    float scale_log2;
    float *part_o;   // (splits, B, H, D) unnormalized partial outputs
    float *part_ml;  // (splits, B, H, 2) {running max (log2 domain), sum of exp2}
};

// grid (splits, Hk, B), block kDecThreads. kInt4: the block's whole slice of K and V (codes and params, at most
// 36 KB) is requested at once by cp.async, so every byte is in flight from the start (one load per thread at a time
// would leave a decode-sized grid latency-bound: ~0.6 TB/s measured). Phase 1: 8 lanes per key, 16 keys per pass,
// each lane D/8 dimensions; phase 2: one warp per query head: max, exp2, sum; phase 3: D/8 threads per key row, 8
// dimensions each, rows in parallel, reduced through shared memory (over the consumed K/V codes). kF16 reads its
// 32-byte pieces straight from global memory (4x the bytes per load, near the HBM rate already).
template <bool kInt4, int D, int G>
__global__ void __launch_bounds__(kDecThreads) decode_kernel(const DecodeParams p) {
    constexpr int kDpl = D / 8;                   // phase 1: dimensions per lane
    constexpr int kTpr = D / 8;                   // phase 3: threads per key row
    constexpr int kRows = kDecThreads / kTpr;     // phase 3: key rows in parallel
    constexpr int kCodeBytes = kInt4 ? kDecMaxChunk * D / 2 : 0;  // K (then V) codes of the slice
    constexpr int kRedBytes = kRows * G * D * 4;
    constexpr int kUnionBytes = 2 * kCodeBytes > kRedBytes ? 2 * kCodeBytes : kRedBytes;
    __shared__ __align__(16) unsigned char pool[kUnionBytes];
    __shared__ __align__(16) float2 kv_params[kInt4 ? 2 * kDecMaxChunk : 1];  // K params, then V params
    __shared__ float sc[G][kDecMaxChunk];         // scores, then probabilities
    __shared__ float ml[G][2];
    float (*red)[G][D] = reinterpret_cast<float (*)[G][D]>(pool);  // phase 3 partial sums
    unsigned char *kcodes = pool, *vcodes = pool + kCodeBytes;
    const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int k_begin = split * p.keys_per_split;
    const int n = max(0, min(p.keys_per_split, p.n_keys - k_begin));
    const int64_t row0 = (static_cast<int64_t>(b) * p.c.kv_heads + kvh) * p.c.capacity + k_begin;
    if constexpr (kInt4) {
        for (int which = 0; which < 2; ++which) {
            const unsigned char *src = static_cast<const unsigned char *>(which ? p.c.v : p.c.k) + row0 * (D / 2);
            const float2 *psrc = reinterpret_cast<const float2 *>(which ? p.c.v_params : p.c.k_params) + row0;
            unsigned char *dst = which ? vcodes : kcodes;
            for (int i = tid; i < n * (D / 32); i += kDecThreads) cp_async16(dst + 16 * i, src + 16 * i);
            for (int i = tid; i < n; i += kDecThreads) cp_async8(&kv_params[which * kDecMaxChunk + i], psrc + i);
            cp_async_commit();
        }
        cp_async_wait<1>();  // K has arrived (V may still be in flight)
        __syncthreads();
    }

    // Phase 1: scores.
    {
        const int sub = tid & 7, slot = tid >> 3;
        float qf[G][kDpl];
#pragma unroll
        for (int gi = 0; gi < G; ++gi) {
            const __half *qh = p.q + b * p.ld_q + static_cast<int64_t>(kvh * G + gi) * D + sub * kDpl;
#pragma unroll
            for (int e = 0; e < kDpl; e += 8) {
                const uint4 raw = *reinterpret_cast<const uint4 *>(qh + e);
                const __half2 *h = reinterpret_cast<const __half2 *>(&raw);
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    const float2 f = __half22float2(h[t]);
                    qf[gi][e + 2 * t] = f.x * p.scale_log2;
                    qf[gi][e + 2 * t + 1] = f.y * p.scale_log2;
                }
            }
        }
        for (int j = slot; j < ((n + 15) & ~15); j += 16) {
            const bool live = j < n;
            float kv[kDpl];
            float s = 1.0f;
            if constexpr (kInt4) {
                const unsigned char *codes = kcodes + (live ? j : 0) * (D / 2) + sub * (kDpl / 2);
                uint32_t w[kDpl / 8];
                if constexpr (kDpl == 16) {
                    const uint2 raw = *reinterpret_cast<const uint2 *>(codes);
                    w[0] = raw.x;
                    w[1] = raw.y;
                } else {
                    w[0] = *reinterpret_cast<const uint32_t *>(codes);
                }
                const float2 sz = kv_params[live ? j : 0];
                s = sz.x;
#pragma unroll
                for (int e = 0; e < kDpl; ++e)
                    kv[e] = static_cast<float>((w[e / 8] >> (4 * (e % 8))) & 0xFu) - sz.y;
            } else {
                const __half *kr = static_cast<const __half *>(p.c.k) + (row0 + (live ? j : 0)) * D + sub * kDpl;
#pragma unroll
                for (int e = 0; e < kDpl; e += 8) {
                    const uint4 raw = *reinterpret_cast<const uint4 *>(kr + e);
                    const __half2 *h = reinterpret_cast<const __half2 *>(&raw);
#pragma unroll
                    for (int t = 0; t < 4; ++t) {
                        const float2 f = __half22float2(h[t]);
                        kv[e + 2 * t] = f.x;
                        kv[e + 2 * t + 1] = f.y;
                    }
                }
            }
#pragma unroll
            for (int gi = 0; gi < G; ++gi) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < kDpl; ++e) dot = fmaf(qf[gi][e], kv[e], dot);
                dot += __shfl_xor_sync(kFullMask, dot, 1);
                dot += __shfl_xor_sync(kFullMask, dot, 2);
                dot += __shfl_xor_sync(kFullMask, dot, 4);
                if (sub == 0 && live) sc[gi][j] = dot * s;
            }
        }
    }
    __syncthreads();
    // Phase 2: softmax pieces per query head.
    {
        const int warp = tid >> 5, lane = tid & 31;
        for (int gi = warp; gi < G; gi += kDecThreads / 32) {
            float m = -INFINITY;
            for (int j = lane; j < n; j += 32) m = fmaxf(m, sc[gi][j]);
            m = warp_max(m);
            float l = 0.0f;
            for (int j = lane; j < n; j += 32) {
                const float e = exp2f(sc[gi][j] - m);
                sc[gi][j] = e;
                l += e;
            }
            l = warp_sum(l);
            if (lane == 0) ml[gi][0] = m, ml[gi][1] = l;
        }
    }
    if constexpr (kInt4) cp_async_wait<0>();  // V has arrived
    __syncthreads();
    // Phase 3: the probabilities' sum of V rows.
    {
        const int e0 = (tid % kTpr) * 8, rs = tid / kTpr;
        float acc[G][8];
#pragma unroll
        for (int gi = 0; gi < G; ++gi)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[gi][e] = 0.0f;
        for (int j = rs; j < n; j += kRows) {
            float vv[8];
            float s = 1.0f;
            if constexpr (kInt4) {
                const uint32_t w = *reinterpret_cast<const uint32_t *>(vcodes + j * (D / 2) + e0 / 2);
                const float2 sz = kv_params[kDecMaxChunk + j];
                s = sz.x;
#pragma unroll
                for (int e = 0; e < 8; ++e) vv[e] = static_cast<float>((w >> (4 * e)) & 0xFu) - sz.y;
            } else {
                const __half *vr = static_cast<const __half *>(p.c.v) + (row0 + j) * D + e0;
                const uint4 raw = *reinterpret_cast<const uint4 *>(vr);
                const __half2 *h = reinterpret_cast<const __half2 *>(&raw);
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    const float2 f = __half22float2(h[t]);
                    vv[2 * t] = f.x;
                    vv[2 * t + 1] = f.y;
                }
            }
#pragma unroll
            for (int gi = 0; gi < G; ++gi) {
                const float w = sc[gi][j] * s;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[gi][e] = fmaf(w, vv[e], acc[gi][e]);
            }
        }
        __syncthreads();  // the partial sums overwrite the codes
#pragma unroll
        for (int gi = 0; gi < G; ++gi)
#pragma unroll
            for (int e = 0; e < 8; ++e) red[rs][gi][e0 + e] = acc[gi][e];
    }
    __syncthreads();
    for (int idx = tid; idx < G * D; idx += kDecThreads) {
        const int gi = idx / D, e = idx - gi * D;
        float o = 0.0f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) o += red[r][gi][e];
        const int h = kvh * G + gi;
        if (p.n_splits == 1) {
            p.out[b * p.ld_out + static_cast<int64_t>(h) * D + e] = __float2half_rn(o / ml[gi][1]);
        } else {
            const int64_t slot = (static_cast<int64_t>(split) * p.c.batch + b) * p.n_heads + h;
            p.part_o[slot * D + e] = o;
            if (e == 0) p.part_ml[2 * slot] = ml[gi][0], p.part_ml[2 * slot + 1] = ml[gi][1];
        }
    }
}

// grid (H, B), block D: merges the slices of one (sequence, head). A slice without keys has max -inf and weight 0.
template <int D> __global__ void __launch_bounds__(D) decode_combine_kernel(const DecodeParams p) {
    const int h = blockIdx.x, b = blockIdx.y, e = threadIdx.x;
    float m = -INFINITY;
    for (int s = 0; s < p.n_splits; ++s)
        m = fmaxf(m, p.part_ml[2 * ((static_cast<int64_t>(s) * p.c.batch + b) * p.n_heads + h)]);
    float l = 0.0f, o = 0.0f;
    for (int s = 0; s < p.n_splits; ++s) {
        const int64_t slot = (static_cast<int64_t>(s) * p.c.batch + b) * p.n_heads + h;
        const float w = exp2f(p.part_ml[2 * slot] - m);
        l = fmaf(w, p.part_ml[2 * slot + 1], l);
        o = fmaf(w, p.part_o[slot * D + e], o);
    }
    p.out[b * p.ld_out + static_cast<int64_t>(h) * D + e] = __float2half_rn(o / l);
}

// ---- prefill: causal attention on tensor cores ---------------------------------------------------------------------

constexpr int kPfThreads = 256;  // 8 warps x 16 query rows
constexpr int kPfRows = 128;     // queries per block
constexpr int kPfKeys = 64;      // keys per tile

struct PrefillParams {
    const __half *q;
    int64_t ld_q;
    __half *out;
    int64_t ld_out;
    KvCacheView c;
    int n_heads, group;
    int64_t n_q, pos0;
    float scale_log2;
};

// One key tile in flight in registers: thread t loads key t/4, quarter t%4 of its row of K and of V (kInt4: D/8
// bytes of codes each; kF16: D/2 bytes each), and threads 0-63 / 64-127 the params of key t / t-64.
template <bool kInt4, int D> struct TileRegs {
    static constexpr int kWords = kInt4 ? D / 32 : D / 8;  // 32-bit words per thread per matrix
    uint32_t k[kWords], v[kWords];
    float2 sz;
};

template <bool kInt4, int D>
__device__ __forceinline__ void prefill_load(TileRegs<kInt4, D> &r, const PrefillParams &p, int64_t row0, int kt,
                                             int64_t n_keys) {
    constexpr int kW = TileRegs<kInt4, D>::kWords;
    const int tid = threadIdx.x, key = tid >> 2, part = tid & 3;
    const int64_t kabs = static_cast<int64_t>(kt) * kPfKeys + key;
    const bool live = kabs < n_keys;
    const int64_t row = row0 + (live ? kabs : 0);
    const size_t row_bytes = kInt4 ? D / 2 : 2 * D;
    const unsigned char *kb = static_cast<const unsigned char *>(p.c.k) + row * row_bytes + part * kW * 4;
    const unsigned char *vb = static_cast<const unsigned char *>(p.c.v) + row * row_bytes + part * kW * 4;
#pragma unroll
    for (int w = 0; w < kW; w += 2) {
        const uint2 a = *reinterpret_cast<const uint2 *>(kb + 4 * w), b = *reinterpret_cast<const uint2 *>(vb + 4 * w);
        r.k[w] = live ? a.x : 0u;
        r.k[w + 1] = live ? a.y : 0u;
        r.v[w] = live ? b.x : 0u;
        r.v[w + 1] = live ? b.y : 0u;
    }
    if constexpr (kInt4) {
        r.sz = make_float2(0.0f, 0.0f);
        if (tid < 2 * kPfKeys) {
            const int pk = tid & (kPfKeys - 1);
            const int64_t pabs = static_cast<int64_t>(kt) * kPfKeys + pk;
            if (pabs < n_keys)
                r.sz = reinterpret_cast<const float2 *>(tid < kPfKeys ? p.c.k_params : p.c.v_params)[row0 + pabs];
        }
    }
}

// Registers -> shared tiles ks/vs ((kPfKeys, D + 8) halves each; kInt4: codes as exact FP16 (c - z)) and the key
// scales kscale / vscale.
template <bool kInt4, int D>
__device__ __forceinline__ void prefill_store(const TileRegs<kInt4, D> &r, __half *ks, __half *vs, float *kscale,
                                              float *vscale, const float *zs) {
    constexpr int kW = TileRegs<kInt4, D>::kWords, kLd = D + 8;
    const int tid = threadIdx.x, key = tid >> 2, part = tid & 3;
    __half *kd = ks + key * kLd + part * (D / 4), *vd = vs + key * kLd + part * (D / 4);
    if constexpr (kInt4) {
        const __half2 kz = __float2half2_rn(1024.0f + zs[key]), vz = __float2half2_rn(1024.0f + zs[kPfKeys + key]);
#pragma unroll
        for (int w = 0; w < kW; ++w) {
            uint32_t hk[4], hv[4];
            codes_to_f16x2(hk, r.k[w], kz);
            codes_to_f16x2(hv, r.v[w], vz);
            *reinterpret_cast<uint4 *>(kd + 8 * w) = make_uint4(hk[0], hk[1], hk[2], hk[3]);
            *reinterpret_cast<uint4 *>(vd + 8 * w) = make_uint4(hv[0], hv[1], hv[2], hv[3]);
        }
        (void)kscale;
        (void)vscale;
    } else {
#pragma unroll
        for (int w = 0; w < kW; w += 4) {
            *reinterpret_cast<uint4 *>(kd + 2 * w) = make_uint4(r.k[w], r.k[w + 1], r.k[w + 2], r.k[w + 3]);
            *reinterpret_cast<uint4 *>(vd + 2 * w) = make_uint4(r.v[w], r.v[w + 1], r.v[w + 2], r.v[w + 3]);
        }
    }
}

// grid (query tiles, H, B), block kPfThreads. Warp w owns query rows 16w .. 16w+15 of the tile: its Q fragments
// stay in registers, S = Q K^T and O += P V run on mma.sync, the running max / sum per row in registers (each row's
// 8-key columns are spread over the 4 lanes of a quad).
template <bool kInt4, int D>
__global__ void __launch_bounds__(kPfThreads, 1) prefill_kernel(const PrefillParams p) {
    constexpr int kLd = D + 8, kKs = D / 16, kDt = D / 8;
    // Q (kPfRows, kLd) at the start, then the K and V tiles (kPfKeys, kLd) each in the same memory.
    __shared__ __align__(16) __half tiles[kPfRows * kLd];
    __shared__ float kscale[kPfKeys], vscale[kPfKeys], zs[2 * kPfKeys];
    __half *ks = tiles, *vs = tiles + kPfKeys * kLd;
    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest query tiles first
    const int h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c4 = lane & 3;
    const int64_t q0 = static_cast<int64_t>(qt) * kPfRows;
    const int kvh = h / p.group;
    const int64_t row0 = (static_cast<int64_t>(b) * p.c.kv_heads + kvh) * p.c.capacity;
    const int64_t q_end = min(q0 + kPfRows, p.n_q);
    const int64_t n_keys = p.pos0 + q_end;  // keys any row of the tile sees
    const int n_kt = static_cast<int>((n_keys + kPfKeys - 1) / kPfKeys);

    // Q tile -> shared -> A fragments.
    for (int idx = tid; idx < kPfRows * (D / 8); idx += kPfThreads) {
        const int r = idx / (D / 8), cc = (idx - r * (D / 8)) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (q0 + r < p.n_q)
            v = *reinterpret_cast<const uint4 *>(p.q + (b * p.n_q + q0 + r) * p.ld_q + static_cast<int64_t>(h) * D +
                                                 cc);
        *reinterpret_cast<uint4 *>(tiles + r * kLd + cc) = v;
    }
    TileRegs<kInt4, D> regs;
    prefill_load(regs, p, row0, 0, n_keys);
    __syncthreads();
    uint32_t qa[kKs][4];
#pragma unroll
    for (int kk = 0; kk < kKs; ++kk)
        ldsm_x4<false>(qa[kk], tiles + (warp * 16 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
    if constexpr (kInt4) {
        if (tid < 2 * kPfKeys) (tid < kPfKeys ? kscale[tid] : vscale[tid - kPfKeys]) = regs.sz.x, zs[tid] = regs.sz.y;
    }
    __syncthreads();
    prefill_store(regs, ks, vs, kscale, vscale, zs);
    __syncthreads();

    const int64_t pos_r0 = p.pos0 + q0 + warp * 16 + g;  // positions of this thread's rows r0 and r0 + 8
    const int64_t warp_last = p.pos0 + q0 + warp * 16 + 15;
    float o[kDt][4];
#pragma unroll
    for (int dt = 0; dt < kDt; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    const int lm_row = (lane & 7) + ((lane >> 4) & 1) * 8, lm_col = ((lane >> 3) & 1) * 8;

    for (int kt = 0; kt < n_kt; ++kt) {
        if (kt + 1 < n_kt) prefill_load(regs, p, row0, kt + 1, n_keys);
        const int64_t key0 = static_cast<int64_t>(kt) * kPfKeys;
        if (key0 <= warp_last) {  // otherwise every key of the tile is masked for this warp
            float sacc[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) sacc[nt][0] = sacc[nt][1] = sacc[nt][2] = sacc[nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < kKs; ++kk)
#pragma unroll
                for (int nt2 = 0; nt2 < 4; ++nt2) {
                    uint32_t bf[4];
                    ldsm_x4<false>(bf, ks + (nt2 * 16 + lm_row) * kLd + kk * 16 + lm_col);
                    mma_16816(sacc[2 * nt2], qa[kk], bf[0], bf[1]);
                    mma_16816(sacc[2 * nt2 + 1], qa[kk], bf[2], bf[3]);
                }
            const bool diag = key0 + kPfKeys - 1 > p.pos0 + q0 + warp * 16;
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const int j = nt * 8 + 2 * c4 + (r & 1);
                    float v = sacc[nt][r] * p.scale_log2;
                    if constexpr (kInt4) v *= kscale[j];
                    if (diag && key0 + j > pos_r0 + (r >> 1) * 8) v = -INFINITY;
                    sacc[nt][r] = v;
                    mx[r >> 1] = fmaxf(mx[r >> 1], v);
                }
            float alpha[2], m_use[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(kFullMask, mx[i], 1));
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(kFullMask, mx[i], 2));
                const float m_new = fmaxf(m_run[i], mx[i]);
                m_use[i] = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet stays at zero
                alpha[i] = exp2f(m_run[i] - m_use[i]);
                m_run[i] = m_new;
                l_run[i] *= alpha[i];
            }
#pragma unroll
            for (int dt = 0; dt < kDt; ++dt) {
                o[dt][0] *= alpha[0];
                o[dt][1] *= alpha[0];
                o[dt][2] *= alpha[1];
                o[dt][3] *= alpha[1];
            }
            uint32_t pa[4][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                float pv[4];
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const float e = exp2f(sacc[nt][r] - m_use[r >> 1]);
                    l_run[r >> 1] += e;
                    pv[r] = e;
                    if constexpr (kInt4) pv[r] *= vscale[nt * 8 + 2 * c4 + (r & 1)];
                }
                pa[nt >> 1][(nt & 1) * 2] = f32x2_to_f16x2(pv[0], pv[1]);
                pa[nt >> 1][(nt & 1) * 2 + 1] = f32x2_to_f16x2(pv[2], pv[3]);
            }
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
#pragma unroll
                for (int dt2 = 0; dt2 < D / 16; ++dt2) {
                    uint32_t bf[4];
                    ldsm_x4<true>(bf, vs + (kk * 16 + (lane & 15)) * kLd + dt2 * 16 + (lane >> 4) * 8);
                    mma_16816(o[2 * dt2], pa[kk], bf[0], bf[1]);
                    mma_16816(o[2 * dt2 + 1], pa[kk], bf[2], bf[3]);
                }
        }
        __syncthreads();  // every warp is done with this tile
        if (kt + 1 < n_kt) {
            if constexpr (kInt4) {
                if (tid < 2 * kPfKeys)
                    (tid < kPfKeys ? kscale[tid] : vscale[tid - kPfKeys]) = regs.sz.x, zs[tid] = regs.sz.y;
                __syncthreads();  // zero points visible to the converting threads
            }
            prefill_store(regs, ks, vs, kscale, vscale, zs);
            __syncthreads();
        }
    }
    // The quad's partial sums, then O / l as FP16 pairs.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        l_run[i] += __shfl_xor_sync(kFullMask, l_run[i], 1);
        l_run[i] += __shfl_xor_sync(kFullMask, l_run[i], 2);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int64_t qi = q0 + warp * 16 + g + 8 * i;
        if (qi >= p.n_q) continue;
        const float inv = 1.0f / l_run[i];
        __half *dst = p.out + (b * p.n_q + qi) * p.ld_out + static_cast<int64_t>(h) * D + 2 * c4;
#pragma unroll
        for (int dt = 0; dt < kDt; ++dt)
            *reinterpret_cast<uint32_t *>(dst + dt * 8) = f32x2_to_f16x2(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
    }
}

void launch_prefill(const KvCacheView &c, const AttentionArgs &a, bool int4, cudaStream_t s) {
    PrefillParams p{};
    p.q = reinterpret_cast<const __half *>(a.q_f16);
    p.ld_q = a.ld_q;
    p.out = reinterpret_cast<__half *>(a.out_f16);
    p.ld_out = a.ld_out;
    p.c = c;
    p.n_heads = a.n_heads;
    p.group = a.n_heads / c.kv_heads;
    p.n_q = a.n_q;
    p.pos0 = a.pos0;
    p.scale_log2 = a.scale * kLog2e;
    const int64_t n_qt = (a.n_q + kPfRows - 1) / kPfRows;
    FQ_CHECK(n_qt <= INT_MAX && a.n_heads <= 65535 && c.batch <= 65535, FQ_STATUS_INVALID_ARGUMENT,
             "attention: grid too large");
    const dim3 grid(static_cast<unsigned>(n_qt), static_cast<unsigned>(a.n_heads), static_cast<unsigned>(c.batch));
    if (c.head_dim == 128) {
        if (int4) prefill_kernel<true, 128><<<grid, kPfThreads, 0, s>>>(p);
        else prefill_kernel<false, 128><<<grid, kPfThreads, 0, s>>>(p);
    } else {
        if (int4) prefill_kernel<true, 64><<<grid, kPfThreads, 0, s>>>(p);
        else prefill_kernel<false, 64><<<grid, kPfThreads, 0, s>>>(p);
    }
    FQ_CUDA_CHECK(cudaGetLastError());
}

// ---- host side -----------------------------------------------------------------------------------------------------

int device_sms() {
    int dev = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&dev));
    static std::mutex mu;
    static int cache[64] = {};
    std::lock_guard<std::mutex> lock(mu);
    if (dev >= 0 && dev < 64 && cache[dev] > 0) return cache[dev];
    int sms = 0;
    FQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    if (dev >= 0 && dev < 64) cache[dev] = sms;
    return sms;
}

bool aligned(const void *p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

void check_cache(const KvCacheView &c) {
    FQ_CHECK(c.format == KvCacheFormat::kF16 || c.format == KvCacheFormat::kInt4, FQ_STATUS_INVALID_ARGUMENT,
             "kv cache: bad format %d", static_cast<int>(c.format));
    FQ_CHECK(c.batch > 0 && c.kv_heads > 0 && c.capacity > 0 && c.capacity <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT,
             "kv cache: bad sizes batch=%d kv_heads=%d capacity=%lld", c.batch, c.kv_heads,
             static_cast<long long>(c.capacity));
    FQ_CHECK(c.head_dim == 64 || c.head_dim == 128, FQ_STATUS_UNSUPPORTED, "kv cache: head_dim %d (64 or 128)",
             c.head_dim);
    const bool int4 = c.format == KvCacheFormat::kInt4;
    FQ_CHECK(c.k && c.v && aligned(c.k, 16) && aligned(c.v, 16) &&
                 (!int4 || (c.k_params && c.v_params && aligned(c.k_params, 8) && aligned(c.v_params, 8))),
             FQ_STATUS_INVALID_ARGUMENT, "kv cache: NULL or misaligned arrays");
}

// Key slices of the decode kernel: enough blocks for ~4 per SM, slices of at least 64 and at most kDecMaxChunk keys.
int decode_splits(const KvCacheView &c, int64_t n_keys) {
    const int forced = g_force_splits.load();
    const int64_t max_splits = (n_keys + 63) / 64, min_splits = (n_keys + kDecMaxChunk - 1) / kDecMaxChunk;
    int64_t splits = forced > 0 ? forced : (4LL * device_sms() + c.batch * c.kv_heads - 1) / (c.batch * c.kv_heads);
    if (forced <= 0) splits = splits > max_splits ? max_splits : splits;
    splits = splits < min_splits ? min_splits : splits;
    splits = splits < 1 ? 1 : splits;
    const int64_t per = (n_keys + splits - 1) / splits;
    return static_cast<int>((n_keys + per - 1) / per);
}

// pointers = false: sizes only (for the workspace query).
void check_attention(const KvCacheView &c, const AttentionArgs &a, bool pointers = true) {
    if (pointers) {
        check_cache(c);
    } else {
        FQ_CHECK(c.batch > 0 && c.kv_heads > 0 && (c.head_dim == 64 || c.head_dim == 128), FQ_STATUS_INVALID_ARGUMENT,
                 "attention: bad cache shape");
    }
    FQ_CHECK(a.n_heads > 0 && a.n_heads % c.kv_heads == 0, FQ_STATUS_INVALID_ARGUMENT,
             "attention: %d query heads over %d KV heads", a.n_heads, c.kv_heads);
    const int group = a.n_heads / c.kv_heads;
    FQ_CHECK(group == 1 || group == 2 || group == 3 || group == 4 || group == 6 || group == 7 || group == 8,
             FQ_STATUS_UNSUPPORTED, "attention: GQA group %d (1, 2, 3, 4, 6, 7 or 8)", group);
    FQ_CHECK(a.n_q >= 0 && a.pos0 >= 0 && a.pos0 + a.n_q <= c.capacity && a.scale > 0.0f &&
                 std::isfinite(a.scale) && a.ld_q >= static_cast<int64_t>(a.n_heads) * c.head_dim &&
                 a.ld_out >= static_cast<int64_t>(a.n_heads) * c.head_dim,
             FQ_STATUS_INVALID_ARGUMENT, "attention: bad sizes n_q=%lld pos0=%lld", static_cast<long long>(a.n_q),
             static_cast<long long>(a.pos0));
    FQ_CHECK(!pointers || a.n_q == 0 || (a.q_f16 && a.out_f16 && aligned(a.q_f16, 16) && aligned(a.out_f16, 16) &&
                            a.ld_q % 8 == 0 && a.ld_out % 8 == 0),
             FQ_STATUS_INVALID_ARGUMENT, "attention: NULL or misaligned q/out (rows must be 16-byte aligned)");
}

template <bool kInt4, int D> const void *decode_kernel_for(int group) {
    switch (group) {
    case 1: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 1>);
    case 2: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 2>);
    case 3: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 3>);  // SmolLM2 (9 / 3 heads)
    case 4: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 4>);
    case 6: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 6>);  // Qwen2.5-1.5B
    case 7: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 7>);  // Qwen2.5-0.5B/7B
    default: return reinterpret_cast<const void *>(&decode_kernel<kInt4, D, 8>);
    }
}

}  // namespace

size_t kv_cache_data_bytes(KvCacheFormat format, int batch, int kv_heads, int head_dim, int64_t capacity) {
    const size_t rows = static_cast<size_t>(batch) * kv_heads * capacity;
    return format == KvCacheFormat::kInt4 ? rows * (head_dim / 2) : rows * head_dim * 2;
}

size_t kv_cache_params_bytes(KvCacheFormat format, int batch, int kv_heads, int64_t capacity) {
    return format == KvCacheFormat::kInt4 ? static_cast<size_t>(batch) * kv_heads * capacity * 2 * sizeof(float) : 0;
}

void kv_cache_write(const KvCacheView &c, const KvWriteArgs &a, const Stream &stream) {
    check_cache(c);
    FQ_CHECK(a.n_new >= 0 && a.pos0 >= 0 && a.pos0 + a.n_new <= c.capacity, FQ_STATUS_INVALID_ARGUMENT,
             "kv_cache_write: positions %lld + %lld beyond the capacity %lld", static_cast<long long>(a.pos0),
             static_cast<long long>(a.n_new), static_cast<long long>(c.capacity));
    if (a.n_new == 0) return;
    const int64_t width = static_cast<int64_t>(c.kv_heads) * c.head_dim;
    FQ_CHECK(a.k_f16 && a.v_f16 && aligned(a.k_f16, 4) && aligned(a.v_f16, 4) && a.ld_k >= width &&
                 a.ld_v >= width && a.ld_k % 2 == 0 && a.ld_v % 2 == 0,
             FQ_STATUS_INVALID_ARGUMENT, "kv_cache_write: NULL, misaligned or too narrow K/V rows");
    const bool int4 = c.format == KvCacheFormat::kInt4;
    FQ_CHECK(!int4 || (a.k_clip_max > 0.0f && a.k_clip_max <= 1.0f && a.k_clip_min > 0.0f && a.k_clip_min <= 1.0f &&
                       a.v_clip_max > 0.0f && a.v_clip_max <= 1.0f && a.v_clip_min > 0.0f && a.v_clip_min <= 1.0f),
             FQ_STATUS_INVALID_ARGUMENT, "kv_cache_write: clip factors must lie in (0, 1]");
    const int64_t n_rows = 2 * a.n_new * c.batch * c.kv_heads;
    const int64_t blocks = (n_rows + 7) / 8;
    FQ_CHECK(blocks <= INT_MAX, FQ_STATUS_INVALID_ARGUMENT, "kv_cache_write: too many rows");
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    const dim3 grid(static_cast<unsigned>(blocks));
    if (c.head_dim == 128) {
        if (int4) kv_write_kernel<128, true><<<grid, 256, 0, s>>>(c, a, n_rows);
        else kv_write_kernel<128, false><<<grid, 256, 0, s>>>(c, a, n_rows);
    } else {
        if (int4) kv_write_kernel<64, true><<<grid, 256, 0, s>>>(c, a, n_rows);
        else kv_write_kernel<64, false><<<grid, 256, 0, s>>>(c, a, n_rows);
    }
    FQ_CUDA_CHECK(cudaGetLastError());
}

size_t attention_workspace_bytes(const KvCacheView &c, const AttentionArgs &a) {
    check_attention(c, a, /*pointers=*/false);
    if (a.n_q != 1) return 0;
    const int splits = decode_splits(c, a.pos0 + 1);
    if (splits == 1) return 0;
    return static_cast<size_t>(splits) * c.batch * a.n_heads * (c.head_dim + 2) * sizeof(float);
}

void attention(const KvCacheView &c, const AttentionArgs &a, void *workspace, size_t workspace_bytes,
               const Stream &stream) {
    check_attention(c, a);
    if (a.n_q == 0) return;
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    const bool int4 = c.format == KvCacheFormat::kInt4;
    const int D = c.head_dim, group = a.n_heads / c.kv_heads;
    if (a.n_q == 1) {
        DecodeParams p{};
        p.q = reinterpret_cast<const __half *>(a.q_f16);
        p.ld_q = a.ld_q;
        p.out = reinterpret_cast<__half *>(a.out_f16);
        p.ld_out = a.ld_out;
        p.c = c;
        p.n_heads = a.n_heads;
        p.n_keys = static_cast<int>(a.pos0 + 1);
        p.n_splits = decode_splits(c, p.n_keys);
        p.keys_per_split = (p.n_keys + p.n_splits - 1) / p.n_splits;
        p.scale_log2 = a.scale * kLog2e;
        if (p.n_splits > 1) {
            const size_t need = static_cast<size_t>(p.n_splits) * c.batch * a.n_heads * (D + 2) * sizeof(float);
            FQ_CHECK(workspace && workspace_bytes >= need && aligned(workspace, 16), FQ_STATUS_INVALID_ARGUMENT,
                     "attention: workspace of %zu bytes given, %zu needed", workspace_bytes, need);
            p.part_o = static_cast<float *>(workspace);
            p.part_ml = p.part_o + static_cast<size_t>(p.n_splits) * c.batch * a.n_heads * D;
        }
        const void *kernel = int4 ? (D == 128 ? decode_kernel_for<true, 128>(group)
                                              : decode_kernel_for<true, 64>(group))
                                  : (D == 128 ? decode_kernel_for<false, 128>(group)
                                              : decode_kernel_for<false, 64>(group));
        const dim3 grid(static_cast<unsigned>(p.n_splits), static_cast<unsigned>(c.kv_heads),
                        static_cast<unsigned>(c.batch));
        void *args[] = {&p};
        FQ_CUDA_CHECK(cudaLaunchKernel(kernel, grid, dim3(kDecThreads), args, 0, s));
        if (p.n_splits > 1) {
            const dim3 cgrid(static_cast<unsigned>(a.n_heads), static_cast<unsigned>(c.batch));
            if (D == 128) decode_combine_kernel<128><<<cgrid, 128, 0, s>>>(p);
            else decode_combine_kernel<64><<<cgrid, 64, 0, s>>>(p);
            FQ_CUDA_CHECK(cudaGetLastError());
        }
        return;
    }
    launch_prefill(c, a, int4, s);
}

namespace detail {
void attention_set_decode_splits(int splits) { g_force_splits.store(splits > 0 ? splits : 0); }
}  // namespace detail

}  // namespace fq::cuda
