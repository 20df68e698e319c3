// One FlatQuant decoder layer (LLaMA family) on the GPU, prefill and decode, built from the engine's kernels; and its
// FP16 twin, the baseline the W4A4 layer is measured against.
//
// Size letters: B sequences, S new tokens per sequence (1 in decode), T = B S tokens, E hidden, H query heads, Hk KV
// heads, d head_dim, F intermediate. The residual stream h is FP16 (T, E), row b*S + s = token s of sequence b at
// position pos0 + s; it is updated in place.
//
// W4A4 layer (spec 1.2-1.4 and 9.1; every "quant" is symmetric per-token INT4 with that linear's own LAC pair):
//   x  = rmsnorm(h) * attn_norm                                    rmsnorm_f16 (c_a folded into the gain)
//   aq, ak, av = quant_{q,k,v}(P_a1^T x P_a2)                      kron_quant, one transform, three outputs
//   q, k, v = W4A4 GEMMs (+ bias)                                  w4a4_gemm (FP16 out)
//   q, k = rope(q, k);  q = q P_k^{-T},  k = k P_k                 rope_f16, head_dim_transform (<= 64 tokens:
//                                                                  rope_head_transform_f16, one launch)
//   cache[pos0 ..] = quant4_asym(k), quant4_asym(v)                kv_cache_write (K/V clip ratios)
//   attn = attention(q, cache)                                     kv4_attention (decode split-K / prefill mma)
//   ao = quant_o(P_h^T attn)  (P_v is merged into W_v, W_o)        o_proj_input_transform
//   h += W_o ao;  x = rmsnorm(h) * ffn_norm                        w4a4_gemm, add_rmsnorm_f16
//   au, ag = quant_{up,gate}(P_ug1^T x P_ug2)                      kron_quant, two outputs
//   z = silu(W_gate ag) * (W_up au)                                w4a4_gemm x2, swiglu_f16
//   h += W_down quant_down(P_d1^T z P_d2)                          kron_quant, w4a4_gemm, add_rmsnorm_f16
// (c_d is merged into W_up's rows, LWC and the weight quantization into the stored INT4 weights.)
//
// FP16 layer: the same graph with FP16 weights, no transforms and no quantization, the qkv and gate/up products
// fused into one GEMM each, and an FP16 KV cache read by the same attention kernels. Its GEMM is supplied by the
// caller (the library has no vendor BLAS: the benchmark passes cuBLAS; gemm_f16_simple is the default).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "cuda/kv4_attention.h"

namespace fq::cuda {

class Stream;

struct DecoderLayerShape {
    int hidden = 0;        // E
    int n_heads = 0;       // H
    int n_kv_heads = 0;    // Hk
    int head_dim = 0;      // d (64 or 128)
    int intermediate = 0;  // F
    float rms_eps = 1e-5f;
    bool rope_neox = false;  // RoPE pairs (i, i + d/2) instead of (2i, 2i+1)
};

struct W4A4Linear {
    const uint8_t *w_packed = nullptr;  // (n, k/2) packed INT4, K-major (w4a4_gemm.h)
    const int8_t *w_s8 = nullptr;       // (n, k) int8 copy for the sm_90 S8S8 kernel, or nullptr
    const float *w_scale = nullptr;     // (n) FP32 per output channel
    const float *bias = nullptr;        // (n) FP32 or nullptr
    float clip_max = 1.0f;              // LAC factors of this linear's input quantizer: sigmoid(logit) as FP32
    float clip_min = 1.0f;
};

// Device pointers (borrowed; they must outlive the layer). Kronecker factors FP16 row-major; either factor of a pair
// may be nullptr (identity), not both.
struct W4A4LayerWeights {
    const float *attn_norm = nullptr;  // (E) FP32, c_a folded in
    const float *ffn_norm = nullptr;   // (E) FP32, c_ug folded in
    const uint16_t *pa1 = nullptr, *pa2 = nullptr;    // (na1, na1), (na2, na2); na1 na2 = E
    int na1 = 0, na2 = 0;
    const uint16_t *pug1 = nullptr, *pug2 = nullptr;  // (nu1, nu1), (nu2, nu2); nu1 nu2 = E
    int nu1 = 0, nu2 = 0;
    const uint16_t *pd1 = nullptr, *pd2 = nullptr;    // (nd1, nd1), (nd2, nd2); nd1 nd2 = F
    int nd1 = 0, nd2 = 0;
    const uint16_t *ph = nullptr;        // (H, H): o_proj's head mixing
    const uint16_t *pk = nullptr;        // (d, d) P_k for k, and
    const uint16_t *pk_inv_t = nullptr;  // (d, d) P_k^{-T} for q; both nullptr: no K transform
    W4A4Linear q, k, v, o, up, gate, down;  // (H d, E), (Hk d, E) x2, (E, H d), (F, E) x2, (E, F)
    float k_clip_max = 1.0f, k_clip_min = 1.0f, v_clip_max = 1.0f, v_clip_min = 1.0f;  // KV cache LAC
    const float *rope_cos_sin = nullptr;  // (rope_positions, d/2) pairs from rope_table, device
    int64_t rope_positions = 0;
};

// Which steps forward() runs: everything (the default), or, for measuring their share, only the quantizing online
// transforms (P_a, P_h, P_ug, P_d with their quantization: the kron_quant calls) and/or only the P_k head
// transforms (up to 64 tokens RoPE and P_k are one launch, which then counts as a whole). Partial runs read
// whatever the workspace holds and leave h alone.
enum LayerParts : unsigned {
    kLayerAll = 0,
    kLayerQuantTransforms = 1,
    kLayerHeadTransforms = 2,
};

class W4A4DecoderLayer {
  public:
    // Checks shapes and support (kron_quant shapes, GEMM limits: E, F and H d multiples of 64). Throws
    // INVALID_ARGUMENT / UNSUPPORTED.
    W4A4DecoderLayer(const DecoderLayerShape &shape, const W4A4LayerWeights &weights);

    // Device scratch memory a forward call with these arguments needs.
    size_t workspace_bytes(int64_t n_new, int64_t pos0, const KvCacheView &cache) const;

    // h: (B S, E) FP16, updated in place; cache: kInt4, B = cache.batch sequences, positions [pos0, pos0 + S) are
    // written. workspace: workspace_bytes(...) bytes of device memory, 256-byte aligned. Queued on `stream`; no
    // allocation, no synchronization (capturable in a CUDA graph once each kernel has run once).
    void forward(uint16_t *h_f16, int64_t n_new, int64_t pos0, const KvCacheView &cache, void *workspace,
                 size_t workspace_bytes, const Stream &stream, unsigned parts = kLayerAll) const;

    const DecoderLayerShape &shape() const { return shape_; }

    // Test hook: when set, forward() synchronizes the stream after each stage and passes a host copy of the tensor
    // that stage produced (before a later stage reuses its memory), so a test can check every stage on its own inputs.
    // Stages, in order: x_attn; a_q s_q a_k s_k a_v s_v; q k v (GEMM outputs); q_rot k_rot (RoPE + P_k); attn;
    // a_o s_o; o; h_mid x_ffn; a_up s_up a_gate s_gate; up gate; z; a_down s_down; down. Not for CUDA graphs.
    enum class TapKind : int32_t { kF16 = 0, kInt8 = 1, kInt4Packed = 2, kF32 = 3 };
    struct Tap {
        const char *stage;
        const void *data;  // host copy, valid during the call: (rows, cols) row-major in `kind` (kInt4Packed: cols/2
                           // bytes per row)
        int64_t rows, cols;
        TapKind kind;
    };
    void set_tap(std::function<void(const Tap &)> fn) { tap_ = std::move(fn); }

  private:
    DecoderLayerShape shape_;
    W4A4LayerWeights w_;
    std::function<void(const Tap &)> tap_;
};

// D (m, n) FP16 = A (m, k) FP16 . W (n, k)^T with FP32 accumulation, row-major; queued on the stream.
using GemmF16Fn = std::function<void(uint16_t *d_f16, const uint16_t *a_f16, const uint16_t *w_f16, int64_t m,
                                     int64_t n, int64_t k, const Stream &stream)>;

struct F16LayerWeights {
    const float *attn_norm = nullptr, *ffn_norm = nullptr;  // (E) FP32
    const uint16_t *w_qkv = nullptr;      // (H d + 2 Hk d, E) FP16: rows of q, then k, then v
    const uint16_t *w_o = nullptr;        // (E, H d)
    const uint16_t *w_gate_up = nullptr;  // (2 F, E): rows of gate, then up
    const uint16_t *w_down = nullptr;     // (E, F)
    const float *rope_cos_sin = nullptr;  // as W4A4LayerWeights
    int64_t rope_positions = 0;
};

class F16DecoderLayer {
  public:
    // gemm: the FP16 GEMM to use; empty = gemm_f16_simple.
    F16DecoderLayer(const DecoderLayerShape &shape, const F16LayerWeights &weights, GemmF16Fn gemm = {});
    size_t workspace_bytes(int64_t n_new, int64_t pos0, const KvCacheView &cache) const;
    // As W4A4DecoderLayer::forward, with a kF16 cache.
    void forward(uint16_t *h_f16, int64_t n_new, int64_t pos0, const KvCacheView &cache, void *workspace,
                 size_t workspace_bytes, const Stream &stream) const;

  private:
    DecoderLayerShape shape_;
    F16LayerWeights w_;
    GemmF16Fn gemm_;
};

}  // namespace fq::cuda
