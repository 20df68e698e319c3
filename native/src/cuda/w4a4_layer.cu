// One decoder layer, W4A4 and FP16 (contract: w4a4_layer.h). Host code only: the order of the kernel calls and the
// workspace plan.
//
// Workspace of the W4A4 layer (T tokens; regions reused once their first tenant is dead):
//   x     (T, E) FP16       norm output -> attention output -> second norm output
//   a0-a2 (T, E) INT8/INT4  q/k/v GEMM inputs -> o input (a0) -> up/gate inputs (a0, a1)
//   sc    (7, T) FP32       per-token scales of the seven quantized GEMM inputs
//   q     (T, max(H d, E))  q -> o_proj output -> down output;  k, v (T, Hk d) FP16
//   up    (T, F) FP16       up output -> SwiGLU output;  gate (T, F) FP16: gate output -> down input (T, F) INT8/INT4
//   GEMM and attention scratch.
#include "cuda/w4a4_layer.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/head_transforms.h"
#include "cuda/kron_quant.h"
#include "cuda/layer_ops_f16.h"
#include "cuda/w4a4_gemm.h"

namespace fq::cuda {

namespace {

struct Carve {
    size_t off = 0;
    size_t take(size_t bytes) {
        const size_t at = off;
        off += (bytes + 255) / 256 * 256;
        return at;
    }
};

struct W4A4Plan {
    size_t x, a[3], sc, q, k, v, up, gate, gemm_ws, attn_ws, total;
    size_t gemm_ws_bytes, attn_ws_bytes;
};

enum LinearId { kQ = 0, kK, kV, kO, kUp, kGate, kDown };

// Up to this many tokens RoPE (+ P_k) on q and k run as one CUDA-core launch (rope_head_transform_f16); above it,
// as RoPE launches and the tensor-core head transforms.
constexpr int64_t kFusedRopeMaxTokens = 64;

RopeHeadArgs rope_args(uint16_t *q, int64_t ld_q, uint16_t *k, int64_t ld_k, const DecoderLayerShape &s, int64_t T,
                       int64_t n_new, int64_t pos0, const float *cos_sin) {
    RopeHeadArgs r;
    r.q_f16 = q;
    r.ld_q = ld_q;
    r.n_q_heads = s.n_heads;
    r.k_f16 = k;
    r.ld_k = ld_k;
    r.n_k_heads = s.n_kv_heads;
    r.tokens = T;
    r.n_per_seq = n_new;
    r.pos0 = pos0;
    r.head_dim = s.head_dim;
    r.cos_sin = cos_sin;
    r.neox = s.rope_neox;
    return r;
}

void check_shape(const DecoderLayerShape &s) {
    FQ_CHECK(s.hidden > 0 && s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0 &&
                 s.intermediate > 0 && s.rms_eps >= 0.0f,
             FQ_STATUS_INVALID_ARGUMENT, "decoder layer: bad shape E=%d H=%d Hk=%d F=%d", s.hidden, s.n_heads,
             s.n_kv_heads, s.intermediate);
    FQ_CHECK(s.head_dim == 64 || s.head_dim == 128, FQ_STATUS_UNSUPPORTED, "decoder layer: head_dim %d (64 or 128)",
             s.head_dim);
    FQ_CHECK(s.hidden % 64 == 0 && s.intermediate % 64 == 0 && (s.n_heads * s.head_dim) % 64 == 0,
             FQ_STATUS_UNSUPPORTED, "decoder layer: E, F and H d must be multiples of 64");
}

void check_factor_pair(const uint16_t *p1, const uint16_t *p2, int n1, int n2, int n, const char *name) {
    FQ_CHECK((p1 || p2) && n1 > 0 && n2 > 0 && static_cast<int64_t>(n1) * n2 == n, FQ_STATUS_INVALID_ARGUMENT,
             "W4A4 layer: transform %s has factors %d x %d for width %d", name, n1, n2, n);
    FQ_CHECK(kron_quant_supported(n1, n2, p1 != nullptr, p2 != nullptr), FQ_STATUS_UNSUPPORTED,
             "W4A4 layer: no compiled Kronecker shape for %s (%d, %d)", name, n1, n2);
}

int64_t tokens_of(int64_t n_new, const KvCacheView &c) { return n_new * c.batch; }

KronOutFormat kron_format(W4A4ActFormat f) {
    return f == W4A4ActFormat::kInt8 ? KronOutFormat::kInt8 : KronOutFormat::kInt4Packed;
}

W4A4GemmArgs gemm_args(const W4A4Linear &l, int64_t m, int64_t n, int64_t k, W4A4ActFormat fmt) {
    W4A4GemmArgs g;
    g.a_format = fmt;
    g.b_packed = l.w_packed;
    g.b_s8 = l.w_s8;
    g.b_scale = l.w_scale;
    g.bias = l.bias;
    g.m = m;
    g.n = n;
    g.k = k;
    return g;
}

AttentionArgs attention_args(uint16_t *out, const uint16_t *q, int64_t ld_q, const DecoderLayerShape &s,
                             int64_t n_new, int64_t pos0) {
    AttentionArgs a;
    a.out_f16 = out;
    a.ld_out = static_cast<int64_t>(s.n_heads) * s.head_dim;
    a.q_f16 = q;
    a.ld_q = ld_q;
    a.n_heads = s.n_heads;
    a.n_q = n_new;
    a.pos0 = pos0;
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
    return a;
}

void check_call(const DecoderLayerShape &s, int64_t n_new, int64_t pos0, const KvCacheView &c, KvCacheFormat want,
                int64_t rope_positions) {
    FQ_CHECK(c.format == want && c.kv_heads == s.n_kv_heads && c.head_dim == s.head_dim, FQ_STATUS_INVALID_ARGUMENT,
             "decoder layer: the KV cache does not match the layer (format, KV heads, head_dim)");
    FQ_CHECK(n_new >= 1 && pos0 >= 0 && pos0 + n_new <= c.capacity && pos0 + n_new <= rope_positions,
             FQ_STATUS_INVALID_ARGUMENT, "decoder layer: positions %lld + %lld beyond the cache or the RoPE table",
             static_cast<long long>(pos0), static_cast<long long>(n_new));
}

W4A4Plan plan_w4a4(const DecoderLayerShape &s, const W4A4LayerWeights &w, int64_t n_new, int64_t pos0,
                   const KvCacheView &c) {
    const int64_t T = tokens_of(n_new, c), E = s.hidden, F = s.intermediate;
    const int64_t qd = static_cast<int64_t>(s.n_heads) * s.head_dim;
    const int64_t kvd = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
    const W4A4ActFormat fmt = w4a4_native_act_format();
    const W4A4Linear *lin[] = {&w.q, &w.k, &w.v, &w.o, &w.up, &w.gate, &w.down};
    const int64_t ns[] = {qd, kvd, kvd, E, F, F, E}, ks[] = {E, E, E, qd, E, E, F};
    W4A4Plan p{};
    for (int i = 0; i < 7; ++i)
        p.gemm_ws_bytes =
            std::max(p.gemm_ws_bytes, w4a4_gemm_workspace_bytes(gemm_args(*lin[i], T, ns[i], ks[i], fmt)));
    p.attn_ws_bytes = attention_workspace_bytes(c, attention_args(nullptr, nullptr, qd, s, n_new, pos0));
    Carve cv_;
    p.x = cv_.take(T * std::max(E, qd) * 2);
    for (size_t &a : p.a) a = cv_.take(T * std::max(E, qd));
    p.sc = cv_.take(7 * T * sizeof(float));
    p.q = cv_.take(T * std::max(qd, E) * 2);
    p.k = cv_.take(T * kvd * 2);
    p.v = cv_.take(T * kvd * 2);
    p.up = cv_.take(T * F * 2);
    p.gate = cv_.take(T * F * 2);
    p.gemm_ws = cv_.take(p.gemm_ws_bytes);
    p.attn_ws = cv_.take(p.attn_ws_bytes);
    p.total = cv_.off;
    return p;
}

}  // namespace

W4A4DecoderLayer::W4A4DecoderLayer(const DecoderLayerShape &shape, const W4A4LayerWeights &w)
    : shape_(shape), w_(w) {
    check_shape(shape);
    check_factor_pair(w.pa1, w.pa2, w.na1, w.na2, shape.hidden, "P_a");
    check_factor_pair(w.pug1, w.pug2, w.nu1, w.nu2, shape.hidden, "P_ug");
    check_factor_pair(w.pd1, w.pd2, w.nd1, w.nd2, shape.intermediate, "P_d");
    FQ_CHECK(w.ph && o_proj_input_transform_supported(shape.n_heads, shape.head_dim), FQ_STATUS_UNSUPPORTED,
             "W4A4 layer: P_h missing or (%d heads, head_dim %d) unsupported", shape.n_heads, shape.head_dim);
    FQ_CHECK((w.pk == nullptr) == (w.pk_inv_t == nullptr), FQ_STATUS_INVALID_ARGUMENT,
             "W4A4 layer: P_k and P_k^{-T} come together");
    FQ_CHECK(!w.pk || head_dim_transform_supported(shape.head_dim), FQ_STATUS_UNSUPPORTED,
             "W4A4 layer: no head transform for head_dim %d", shape.head_dim);
    FQ_CHECK(w.attn_norm && w.ffn_norm && w.rope_cos_sin && w.rope_positions > 0, FQ_STATUS_INVALID_ARGUMENT,
             "W4A4 layer: NULL norm gains or RoPE table");
    for (const W4A4Linear *l : {&w.q, &w.k, &w.v, &w.o, &w.up, &w.gate, &w.down})
        FQ_CHECK(l->w_packed && l->w_scale && l->clip_max > 0.0f && l->clip_min > 0.0f, FQ_STATUS_INVALID_ARGUMENT,
                 "W4A4 layer: a linear lacks weights, scales or clip factors");
}

size_t W4A4DecoderLayer::workspace_bytes(int64_t n_new, int64_t pos0, const KvCacheView &cache) const {
    check_call(shape_, n_new, pos0, cache, KvCacheFormat::kInt4, w_.rope_positions);
    return plan_w4a4(shape_, w_, n_new, pos0, cache).total;
}

void W4A4DecoderLayer::forward(uint16_t *h, int64_t n_new, int64_t pos0, const KvCacheView &cache, void *workspace,
                               size_t workspace_bytes, const Stream &stream, unsigned parts) const {
    const DecoderLayerShape &s = shape_;
    check_call(s, n_new, pos0, cache, KvCacheFormat::kInt4, w_.rope_positions);
    const W4A4Plan p = plan_w4a4(s, w_, n_new, pos0, cache);
    FQ_CHECK(workspace && workspace_bytes >= p.total && reinterpret_cast<uintptr_t>(workspace) % 256 == 0,
             FQ_STATUS_INVALID_ARGUMENT, "W4A4 layer: workspace of %zu bytes given, %zu needed (256-byte aligned)",
             workspace_bytes, p.total);
    FQ_CHECK(h && reinterpret_cast<uintptr_t>(h) % 16 == 0, FQ_STATUS_INVALID_ARGUMENT,
             "W4A4 layer: NULL or misaligned h");
    const int64_t T = tokens_of(n_new, cache), E = s.hidden, F = s.intermediate;
    const int H = s.n_heads, Hk = s.n_kv_heads, d = s.head_dim;
    const int64_t qd = static_cast<int64_t>(H) * d, kvd = static_cast<int64_t>(Hk) * d;
    unsigned char *ws = static_cast<unsigned char *>(workspace);
    auto *x = reinterpret_cast<uint16_t *>(ws + p.x);
    void *a[3] = {ws + p.a[0], ws + p.a[1], ws + p.a[2]};
    auto *sc = reinterpret_cast<float *>(ws + p.sc);
    auto *q = reinterpret_cast<uint16_t *>(ws + p.q);
    auto *k = reinterpret_cast<uint16_t *>(ws + p.k);
    auto *v = reinterpret_cast<uint16_t *>(ws + p.v);
    auto *up = reinterpret_cast<uint16_t *>(ws + p.up);
    auto *gate = reinterpret_cast<uint16_t *>(ws + p.gate);
    void *gemm_ws = ws + p.gemm_ws;
    const W4A4ActFormat fmt = w4a4_native_act_format();
    const KronOutFormat kfmt = kron_format(fmt);
    const bool all = parts == kLayerAll;
    const bool do_quant_tf = all || (parts & kLayerQuantTransforms);
    const bool do_head_tf = all || (parts & kLayerHeadTransforms);

    auto out = [&](int lin, void *data, float clip_max, float clip_min) {
        KronQuantOutput o;
        o.data = data;
        o.scale = sc + lin * T;
        o.clip_max = clip_max;
        o.clip_min = clip_min;
        return o;
    };
    auto kron = [&](const uint16_t *inp, const uint16_t *p1, const uint16_t *p2, int n1, int n2,
                    std::initializer_list<KronQuantOutput> outs) {
        KronQuantArgs ka;
        ka.x_f16 = inp;
        ka.p1_f16 = p1;
        ka.p2_f16 = p2;
        ka.tokens = T;
        ka.n1 = n1;
        ka.n2 = n2;
        ka.format = kfmt;
        ka.n_outputs = static_cast<int>(outs.size());
        int i = 0;
        for (const KronQuantOutput &o : outs) ka.out[i++] = o;
        kron_quant(ka, stream);
    };
    auto gemm = [&](uint16_t *dst, int lin, const W4A4Linear &l, const void *act, int64_t n, int64_t kk) {
        W4A4GemmArgs g = gemm_args(l, T, n, kk, fmt);
        g.d_f16 = dst;
        g.a = act;
        g.a_scale = sc + lin * T;
        w4a4_gemm(g, gemm_ws, p.gemm_ws_bytes, stream);
    };
    const W4A4LayerWeights &w = w_;
    const TapKind akind = fmt == W4A4ActFormat::kInt8 ? TapKind::kInt8 : TapKind::kInt4Packed;
    auto tap = [&](const char *stage, const void *data, int64_t cols, TapKind kind) {
        if (!tap_) return;
        const size_t row_bytes = kind == TapKind::kF16    ? 2 * cols
                                 : kind == TapKind::kF32  ? 4 * cols
                                 : kind == TapKind::kInt8 ? cols
                                                          : cols / 2;
        std::vector<unsigned char> host(row_bytes * T);
        stream.synchronize();
        FQ_CUDA_CHECK(cudaMemcpy(host.data(), data, host.size(), cudaMemcpyDeviceToHost));
        tap_(Tap{stage, host.data(), T, cols, kind});
    };
    auto tap_a = [&](const char *a_name, const char *s_name, const void *data, int lin, int64_t cols) {
        tap(a_name, data, cols, akind);
        tap(s_name, sc + lin * T, 1, TapKind::kF32);
    };

    // ---- attention block ----
    if (all) {
        rmsnorm_f16(x, h, w.attn_norm, T, E, s.rms_eps, stream);
        tap("x_attn", x, E, TapKind::kF16);
    }
    if (do_quant_tf) {
        kron(x, w.pa1, w.pa2, w.na1, w.na2,
             {out(kQ, a[0], w.q.clip_max, w.q.clip_min), out(kK, a[1], w.k.clip_max, w.k.clip_min),
              out(kV, a[2], w.v.clip_max, w.v.clip_min)});
        tap_a("a_q", "s_q", a[0], kQ, E);
        tap_a("a_k", "s_k", a[1], kK, E);
        tap_a("a_v", "s_v", a[2], kV, E);
    }
    if (all) {
        gemm(q, kQ, w.q, a[0], qd, E);
        gemm(k, kK, w.k, a[1], kvd, E);
        gemm(v, kV, w.v, a[2], kvd, E);
        tap("q", q, qd, TapKind::kF16);
        tap("k", k, kvd, TapKind::kF16);
        tap("v", v, kvd, TapKind::kF16);
    }
    const bool fused_rope = T <= kFusedRopeMaxTokens;
    if (fused_rope && (all || (do_head_tf && w.pk))) {  // parts: RoPE counts with P_k where they are one launch
        RopeHeadArgs r = rope_args(q, qd, k, kvd, s, T, n_new, pos0, w.rope_cos_sin);
        r.p_q = w.pk_inv_t;
        r.p_k = w.pk;
        rope_head_transform_f16(r, stream);
    }
    if (!fused_rope && all) {
        rope_f16(q, qd, T, H, d, n_new, pos0, w.rope_cos_sin, s.rope_neox, stream);
        rope_f16(k, kvd, T, Hk, d, n_new, pos0, w.rope_cos_sin, s.rope_neox, stream);
    }
    if (!fused_rope && do_head_tf && w.pk) {
        head_dim_transform(q, q, w.pk_inv_t, T, H, d, stream);
        head_dim_transform(k, k, w.pk, T, Hk, d, stream);
    }
    if (all) {
        tap("q_rot", q, qd, TapKind::kF16);
        tap("k_rot", k, kvd, TapKind::kF16);
        KvWriteArgs kw;
        kw.k_f16 = k;
        kw.ld_k = kvd;
        kw.v_f16 = v;
        kw.ld_v = kvd;
        kw.n_new = n_new;
        kw.pos0 = pos0;
        kw.k_clip_max = w.k_clip_max;
        kw.k_clip_min = w.k_clip_min;
        kw.v_clip_max = w.v_clip_max;
        kw.v_clip_min = w.v_clip_min;
        kv_cache_write(cache, kw, stream);
        attention(cache, attention_args(x, q, qd, s, n_new, pos0), ws + p.attn_ws, p.attn_ws_bytes, stream);
        tap("attn", x, qd, TapKind::kF16);
    }
    if (do_quant_tf) {
        const KronQuantOutput o = out(kO, a[0], w.o.clip_max, w.o.clip_min);
        o_proj_input_transform(x, w.ph, T, H, d, kfmt, &o, 1, stream);
        tap_a("a_o", "s_o", a[0], kO, qd);
    }
    // ---- MLP block ----
    if (all) {
        gemm(q, kO, w.o, a[0], E, qd);
        tap("o", q, E, TapKind::kF16);
        add_rmsnorm_f16(h, q, x, w.ffn_norm, T, E, s.rms_eps, stream);
        tap("h_mid", h, E, TapKind::kF16);
        tap("x_ffn", x, E, TapKind::kF16);
    }
    if (do_quant_tf) {
        kron(x, w.pug1, w.pug2, w.nu1, w.nu2,
             {out(kUp, a[0], w.up.clip_max, w.up.clip_min), out(kGate, a[1], w.gate.clip_max, w.gate.clip_min)});
        tap_a("a_up", "s_up", a[0], kUp, E);
        tap_a("a_gate", "s_gate", a[1], kGate, E);
    }
    if (all) {
        gemm(up, kUp, w.up, a[0], F, E);
        gemm(gate, kGate, w.gate, a[1], F, E);
        tap("up", up, F, TapKind::kF16);
        tap("gate", gate, F, TapKind::kF16);
        swiglu_f16(up, gate, up, F, T, F, stream);
        tap("z", up, F, TapKind::kF16);
    }
    if (do_quant_tf) {
        kron(up, w.pd1, w.pd2, w.nd1, w.nd2, {out(kDown, gate, w.down.clip_max, w.down.clip_min)});
        tap_a("a_down", "s_down", gate, kDown, F);
    }
    if (all) {
        gemm(q, kDown, w.down, gate, E, F);
        tap("down", q, E, TapKind::kF16);
        add_rmsnorm_f16(h, q, nullptr, nullptr, T, E, s.rms_eps, stream);
    }
}

// ---- FP16 layer ----------------------------------------------------------------------------------------------------

namespace {

struct F16Plan {
    size_t x, qkv, o, gu, z, attn_ws, total, attn_ws_bytes;
};

F16Plan plan_f16(const DecoderLayerShape &s, int64_t n_new, int64_t pos0, const KvCacheView &c) {
    const int64_t T = tokens_of(n_new, c), E = s.hidden, F = s.intermediate;
    const int64_t qd = static_cast<int64_t>(s.n_heads) * s.head_dim;
    const int64_t kvd = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
    F16Plan p{};
    p.attn_ws_bytes = attention_workspace_bytes(c, attention_args(nullptr, nullptr, qd + 2 * kvd, s, n_new, pos0));
    Carve cv;
    p.x = cv.take(T * std::max(E, qd) * 2);
    p.qkv = cv.take(T * (qd + 2 * kvd) * 2);
    p.o = cv.take(T * E * 2);
    p.gu = cv.take(T * 2 * F * 2);
    p.z = cv.take(T * F * 2);
    p.attn_ws = cv.take(p.attn_ws_bytes);
    p.total = cv.off;
    return p;
}

}  // namespace

F16DecoderLayer::F16DecoderLayer(const DecoderLayerShape &shape, const F16LayerWeights &w, GemmF16Fn gemm)
    : shape_(shape), w_(w), gemm_(std::move(gemm)) {
    check_shape(shape);
    FQ_CHECK(w.attn_norm && w.ffn_norm && w.w_qkv && w.w_o && w.w_gate_up && w.w_down && w.rope_cos_sin &&
                 w.rope_positions > 0,
             FQ_STATUS_INVALID_ARGUMENT, "FP16 layer: NULL weights");
    if (!gemm_) gemm_ = gemm_f16_simple;
}

size_t F16DecoderLayer::workspace_bytes(int64_t n_new, int64_t pos0, const KvCacheView &cache) const {
    check_call(shape_, n_new, pos0, cache, KvCacheFormat::kF16, w_.rope_positions);
    return plan_f16(shape_, n_new, pos0, cache).total;
}

void F16DecoderLayer::forward(uint16_t *h, int64_t n_new, int64_t pos0, const KvCacheView &cache, void *workspace,
                              size_t workspace_bytes, const Stream &stream) const {
    const DecoderLayerShape &s = shape_;
    check_call(s, n_new, pos0, cache, KvCacheFormat::kF16, w_.rope_positions);
    const F16Plan p = plan_f16(s, n_new, pos0, cache);
    FQ_CHECK(workspace && workspace_bytes >= p.total && reinterpret_cast<uintptr_t>(workspace) % 256 == 0,
             FQ_STATUS_INVALID_ARGUMENT, "FP16 layer: workspace of %zu bytes given, %zu needed (256-byte aligned)",
             workspace_bytes, p.total);
    FQ_CHECK(h && reinterpret_cast<uintptr_t>(h) % 16 == 0, FQ_STATUS_INVALID_ARGUMENT,
             "FP16 layer: NULL or misaligned h");
    const int64_t T = tokens_of(n_new, cache), E = s.hidden, F = s.intermediate;
    const int H = s.n_heads, Hk = s.n_kv_heads, d = s.head_dim;
    const int64_t qd = static_cast<int64_t>(H) * d, kvd = static_cast<int64_t>(Hk) * d, nqkv = qd + 2 * kvd;
    unsigned char *ws = static_cast<unsigned char *>(workspace);
    auto *x = reinterpret_cast<uint16_t *>(ws + p.x);
    auto *qkv = reinterpret_cast<uint16_t *>(ws + p.qkv);
    auto *o = reinterpret_cast<uint16_t *>(ws + p.o);
    auto *gu = reinterpret_cast<uint16_t *>(ws + p.gu);
    auto *z = reinterpret_cast<uint16_t *>(ws + p.z);

    rmsnorm_f16(x, h, w_.attn_norm, T, E, s.rms_eps, stream);
    gemm_(qkv, x, w_.w_qkv, T, nqkv, E, stream);
    if (T <= kFusedRopeMaxTokens) {  // the same launch structure as the W4A4 layer's, without P_k
        rope_head_transform_f16(rope_args(qkv, nqkv, qkv + qd, nqkv, s, T, n_new, pos0, w_.rope_cos_sin), stream);
    } else {
        rope_f16(qkv, nqkv, T, H, d, n_new, pos0, w_.rope_cos_sin, s.rope_neox, stream);
        rope_f16(qkv + qd, nqkv, T, Hk, d, n_new, pos0, w_.rope_cos_sin, s.rope_neox, stream);
    }
    KvWriteArgs kw;
    kw.k_f16 = qkv + qd;
    kw.ld_k = nqkv;
    kw.v_f16 = qkv + qd + kvd;
    kw.ld_v = nqkv;
    kw.n_new = n_new;
    kw.pos0 = pos0;
    kv_cache_write(cache, kw, stream);
    attention(cache, attention_args(x, qkv, nqkv, s, n_new, pos0), ws + p.attn_ws, p.attn_ws_bytes, stream);
    gemm_(o, x, w_.w_o, T, E, qd, stream);
    add_rmsnorm_f16(h, o, x, w_.ffn_norm, T, E, s.rms_eps, stream);
    gemm_(gu, x, w_.w_gate_up, T, 2 * F, E, stream);
    swiglu_f16(z, gu, gu + F, 2 * F, T, F, stream);
    gemm_(o, z, w_.w_down, T, E, F, stream);
    add_rmsnorm_f16(h, o, nullptr, nullptr, T, E, s.rms_eps, stream);
}

}  // namespace fq::cuda
