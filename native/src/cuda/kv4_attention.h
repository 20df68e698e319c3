// The KV cache of the W4A4 engine on the GPU and the attention that reads it: a 4-bit cache (asymmetric per token
// and KV head, with the learned clip ratios) and, for the FP16 baseline, the same kernels over an FP16 cache. CPU
// twin, with the exact formulas and layouts: native/src/cpu/kv4_attention_ref.h.
//
// Size letters: B sequences, S new tokens per sequence (1 in decode), H query heads, Hk KV heads (GQA: query head h
// reads KV head h / (H / Hk)), d head_dim (64 or 128), C capacity (positions per sequence).
//
// Layout (KvCacheView): K and V separately, (B, Hk, C, ...) row-major, one row per (sequence, KV head, position):
//   kInt4: codes (B, Hk, C, d/2) bytes, element 2j in the low nibble of byte j; params (B, Hk, C, 2) FP32 {s, z},
//          value = s * (c - z) for code c. 72 bytes per row at d = 128 against 256 in FP16 (3.6x less to read).
//   kF16:  (B, Hk, C, d) FP16.
// All sequences of a batch advance together: the new tokens of a call sit at positions pos0 .. pos0+S-1 of every
// sequence.
//
// Kernels:
//   kv_cache_write   one warp per (token, KV head) row: min/max by shuffles, the FP32 formula of the twin (IEEE
//                    division, rint), packed stores. Bit-exact against the twin given the same FP16 input.
//   attention, S=1   "flash-decoding": grid (splits, Hk, B), each block takes one KV head, all G = H/Hk query heads
//                    of it and one slice of the keys (<= 256), so batch 1 still fills the GPU. kInt4: the slice's
//                    codes and params are requested at once by cp.async into shared memory. Scores in FP32 as
//                    s_k (q . (c - z_k)), the V sum as (p s_v) . (c - z_v); slices merged by a second small kernel
//                    (log-sum-exp). Reads each cache byte once.
//   attention, S>1   causal prefill on tensor cores (mma.sync m16n8k16, FP16 operands, FP32 accumulation): 128
//                    queries of one head per block (8 warps x 16 rows), key tiles of 64 converted on the fly into the
//                    exact small integers (c - z) as FP16, so the 4-bit scales enter as one factor per key on the
//                    scores and on the probabilities (p s_v, rounded to FP16 like FlashAttention's P); online softmax
//                    (FA2). The next tile's global loads are in flight while this one computes.
// The FP16 cache runs the same kernels with the scale/zero steps compiled out (decode reads its 32-byte pieces straight
// from global memory, which already reaches 2.5-3 TB/s): the baseline's attention has the same design and tuning as
// the W4A4 engine's.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fq::cuda {

class Stream;

enum class KvCacheFormat : int32_t {
    kF16 = 0,
    kInt4 = 1,
};

struct KvCacheView {
    KvCacheFormat format = KvCacheFormat::kInt4;
    void *k = nullptr;         // kInt4: (B, Hk, C, d/2) bytes;  kF16: (B, Hk, C, d) FP16
    void *v = nullptr;         // the same for V
    float *k_params = nullptr; // kInt4: (B, Hk, C, 2) FP32 {scale, zero}; unused for kF16
    float *v_params = nullptr;
    int batch = 0, kv_heads = 0, head_dim = 0;
    int64_t capacity = 0;
};

// Bytes of each array of a cache: codes or FP16 values of K (the same for V), and params of K (the same for V; 0 for
// kF16).
size_t kv_cache_data_bytes(KvCacheFormat format, int batch, int kv_heads, int head_dim, int64_t capacity);
size_t kv_cache_params_bytes(KvCacheFormat format, int batch, int kv_heads, int64_t capacity);

struct KvWriteArgs {
    const uint16_t *k_f16 = nullptr;  // (B*S, ld_k) FP16: row b*S + s holds Hk*d values of K, heads-major
    int64_t ld_k = 0;
    const uint16_t *v_f16 = nullptr;  // (B*S, ld_v) FP16, likewise for V
    int64_t ld_v = 0;
    int64_t n_new = 0;                // S
    int64_t pos0 = 0;                 // position of the first new token; pos0 + S <= C
    float k_clip_max = 1.0f, k_clip_min = 1.0f;  // LAC factors of the K and V cache quantizers (kInt4 only):
    float v_clip_max = 1.0f, v_clip_min = 1.0f;  // sigmoid(logit) rounded to FP32, in (0, 1]
};

// Quantizes (kInt4) or copies (kF16) the new rows into the cache, queued on `stream`.
// Errors: INVALID_ARGUMENT (sizes, NULL or misaligned pointers: K/V rows 4-byte aligned), UNSUPPORTED (head_dim
// other than 64 / 128), launch errors.
void kv_cache_write(const KvCacheView &cache, const KvWriteArgs &args, const Stream &stream);

struct AttentionArgs {
    uint16_t *out_f16 = nullptr;       // (B*S, ld_out) FP16: row b*S + s, columns [h d, (h+1) d) for query head h
    int64_t ld_out = 0;
    const uint16_t *q_f16 = nullptr;   // (B*S, ld_q) FP16, the same layout (RoPE and P_k^{-T} already applied)
    int64_t ld_q = 0;
    int n_heads = 0;                   // H, a multiple of the cache's Hk with H / Hk <= 8
    int64_t n_q = 0;                   // S
    int64_t pos0 = 0;                  // query s attends keys [0, pos0 + s]; pos0 + S <= C
    float scale = 0.0f;                // softmax scale (1 / sqrt(d)), > 0
};

// Device scratch memory `attention` needs (the split-K partial results of decode); 0 when none.
size_t attention_workspace_bytes(const KvCacheView &cache, const AttentionArgs &args);

// out = softmax(scale q k^T, causal) v over the cache, queued on `stream`. S == 1 runs the split-K decode kernel,
// S > 1 the prefill kernel. workspace: attention_workspace_bytes(...) bytes of device memory (nullptr when 0).
// Errors: INVALID_ARGUMENT (sizes, NULL or misaligned pointers: q/out rows 16-byte aligned), UNSUPPORTED
// (head_dim, group size), launch errors.
void attention(const KvCacheView &cache, const AttentionArgs &args, void *workspace, size_t workspace_bytes,
               const Stream &stream);

namespace detail {
// Test hook: force the number of key slices of the decode kernel (0: automatic). Not thread-safe.
void attention_set_decode_splits(int splits);
}  // namespace detail

}  // namespace fq::cuda
