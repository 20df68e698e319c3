#include "quant/flat_layer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/fake_quant.h"
#include "quant/kron.h"

namespace fq::quant {

using fast::gemm;

LayerSpec flatquant_layer_spec(const QuantScheme &s, const CalibOptions &o) {
    LayerSpec sp;
    sp.bits = s.bits;
    const bool wa = s.bits.w < 16 || s.bits.a < 16;
    sp.pa = sp.pug = sp.pd = sp.ph = wa;
    sp.pv = wa || s.bits.v < 16;
    sp.pk = s.bits.k < 16;
    sp.add_diag = o.add_diag;
    sp.lwc = o.lwc && s.bits.w < 16;
    sp.lac = o.lac;
    sp.direct_inv = o.direct_inv;
    return sp;
}

SmoothStats smooth_stats_init(const ModelConfig &c) {
    SmoothStats s;
    s.attn_in.assign(static_cast<size_t>(c.n_embd), kSmoothAbsmaxInit);
    s.mlp_in.assign(static_cast<size_t>(c.n_embd), kSmoothAbsmaxInit);
    s.down_in.assign(static_cast<size_t>(c.n_ff), kSmoothAbsmaxInit);
    return s;
}

namespace {

const char *const kFactorNames[kNumFactors] = {"pa.l", "pa.r", "pug.l", "pug.r", "pd.l", "pd.r", "ph", "pv", "pk"};

template <typename T>
std::vector<T> to_t(const std::vector<float> &v) {
    return std::vector<T>(v.begin(), v.end());
}

template <typename T>
void absmax_update(std::vector<double> &m, const T *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) m[j] = std::max(m[j], std::fabs(static_cast<double>(x[r * cols + j])));
}

}  // namespace

template <typename T>
FlatLayer<T>::FlatLayer(const ModelConfig &c, const LayerWeights &w, const std::vector<float> &rope_freq_factors,
                        const LayerSpec &spec, ThreadPool &pool)
    : cfg_(c), spec_(spec), pool_(pool), rope_ff_(rope_freq_factors) {
    const std::vector<float> *src[kNumLinears] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_up, &w.w_gate, &w.w_down};
    for (int i = 0; i < kNumLinears; i++) {
        const LinearShape s = linear_shape(c, i);
        FQ_CHECK(static_cast<int64_t>(src[i]->size()) == s.out * s.in, FQ_STATUS_INVALID_ARGUMENT,
                 "%s has %zu weights, expected %lld", linear_name(i), src[i]->size(), (long long)(s.out * s.in));
        w_[i] = to_t<T>(*src[i]);
    }
    b_ = {to_t<T>(w.bq), to_t<T>(w.bk), to_t<T>(w.bv)};
    g1_ = to_t<T>(w.attn_norm);
    g2_ = to_t<T>(w.ffn_norm);
    fk_.fill(0);
    for (auto *a : {&f_qu_, &f_qv_, &f_s_, &f_m_}) a->fill(-1);
    diag_.fill(-1), lwc_.fill(-1), lac_.fill(-1);
    const DecomposeDims dh = decompose_dim(c.n_embd), df = decompose_dim(c.n_ff);
    if (spec.pa) fk_[kPaL] = dh.n1, fk_[kPaR] = dh.n2;
    if (spec.pug) fk_[kPugL] = dh.n1, fk_[kPugR] = dh.n2;
    if (spec.pd) fk_[kPdL] = df.n1, fk_[kPdR] = df.n2;
    if (spec.ph) fk_[kPh] = c.n_head;
    if (spec.pv) fk_[kPv] = c.head_dim;
    if (spec.pk) fk_[kPk] = c.head_dim;
    for (int f = 0; f < kNumFactors; f++) {
        const size_t k = static_cast<size_t>(fk_[f]);
        if (k == 0) continue;
        const std::string n = kFactorNames[f];
        if (spec.direct_inv) {
            f_m_[f] = add_block(n + ".m", k * k, false);
        } else {
            f_qu_[f] = add_block(n + ".qu", k * k, false);
            f_qv_[f] = add_block(n + ".qv", k * k, false);
            f_s_[f] = add_block(n + ".s", k, false);
        }
    }
    if (spec.add_diag) {
        if (spec.pa) diag_[0] = add_block("pa.c", static_cast<size_t>(c.n_embd), false);
        if (spec.pug) diag_[1] = add_block("pug.c", static_cast<size_t>(c.n_embd), false);
        if (spec.pd) diag_[2] = add_block("pd.c", static_cast<size_t>(c.n_ff), false);
    }
    for (int i = 0; i < kNumLinears; i++) {
        if (spec.lwc) lwc_[i] = add_block(std::string("lwc.") + linear_name(i), 2 * linear_shape(c, i).out, true);
    }
    if (spec.lac) {
        for (int i = 0; i < kNumLinears; i++) lac_[i] = add_block(std::string("lac.") + linear_name(i), 2, true);
        lac_k_ = add_block("lac.k_cache", 2, true);
        lac_v_ = add_block("lac.v_cache", 2, true);
    }
    grads_.assign(params_.size(), T(0));
}

template <typename T>
int64_t FlatLayer<T>::add_block(const std::string &name, size_t n, bool clip) {
    blocks_.push_back(Block{name, params_.size(), n, clip});
    params_.resize(params_.size() + n, T(0));
    return static_cast<int64_t>(blocks_.back().offset);
}

template <typename T>
void FlatLayer<T>::init(NormalRng &rng, const SmoothStats *stats, double diag_alpha) {
    for (int f = 0; f < kNumFactors; f++) {
        const int k = fk_[f];
        if (k == 0) continue;
        if (spec_.direct_inv) {
            random_orthogonal(param(f_m_[f]), k, rng);
        } else {
            svd_factor_init(param(f_qu_[f]), param(f_qv_[f]), param(f_s_[f]), k, rng);
        }
    }
    const std::vector<int> readers[3] = {{kLinQ, kLinK, kLinV}, {kLinUp, kLinGate}, {kLinDown}};
    for (int d = 0; d < 3; d++) {
        if (diag_[d] < 0) continue;
        const int64_t n = d == 2 ? cfg_.n_ff : cfg_.n_embd;
        T *c = param(diag_[d]);
        if (!stats) {
            std::fill(c, c + n, T(1));
            continue;
        }
        std::vector<T> wmax(static_cast<size_t>(n), T(0));
        for (int lin : readers[d]) column_absmax_update(wmax.data(), w_[lin].data(), linear_shape(cfg_, lin).out, n);
        const std::vector<double> &xd = d == 0 ? stats->attn_in : d == 1 ? stats->mlp_in : stats->down_in;
        std::vector<T> xmax(xd.begin(), xd.end());
        smooth_scale_init(c, xmax.data(), wmax.data(), n, diag_alpha);
    }
    for (const Block &b : blocks_) {
        if (b.clip) std::fill(params_.begin() + b.offset, params_.begin() + b.offset + b.size, T(kClipLogitInit));
    }
}

template <typename T>
void FlatLayer<T>::factor_matrices() {
    for (int f = 0; f < kNumFactors; f++) {
        const int k = fk_[f];
        if (k == 0) continue;
        mat_[f].resize(static_cast<size_t>(k) * k);
        mat_it_[f].resize(mat_[f].size());
        if (spec_.direct_inv) {
            std::copy_n(param(f_m_[f]), mat_[f].size(), mat_[f].begin());
            inverse_t_forward(mat_it_[f].data(), mat_[f].data(), k);
        } else {
            svd_factor_forward(mat_[f].data(), mat_it_[f].data(), param(f_qu_[f]), param(f_qv_[f]), param(f_s_[f]), k);
        }
    }
}

LinearTransform linear_transform(int lin, const std::array<int, kNumFactors> &fk, const std::array<int64_t, 3> &diag,
                                 const ModelConfig &c) {
    LinearTransform t;
    if (lin == kLinO) {
        t.fl = fk[kPh] ? kPh : -1;
        t.fr = fk[kPv] ? kPv : -1;
        t.n1 = c.n_head, t.n2 = c.head_dim;
        return t;
    }
    const bool qkv = lin == kLinQ || lin == kLinK || lin == kLinV, up_gate = lin == kLinUp || lin == kLinGate;
    const int l = qkv ? kPaL : up_gate ? kPugL : kPdL, d = qkv ? 0 : up_gate ? 1 : 2;
    if (fk[l] == 0) return t;
    t.fl = l, t.fr = l + 1, t.n1 = fk[l], t.n2 = fk[l + 1], t.diag = diag[d];
    return t;
}

template <typename T>
void FlatLayer<T>::lin_transform(int lin, int &fl, int &fr, int &n1, int &n2, int64_t &diag) const {
    const LinearTransform t = linear_transform(lin, fk_, diag_, cfg_);
    fl = t.fl, fr = t.fr, n1 = t.n1, n2 = t.n2, diag = t.diag;
}

template <typename T>
void FlatLayer<T>::weight_forward(int lin, bool ori) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    const T *W = w_[lin].data();
    const int D = cfg_.head_dim;
    L.bias_p = lin < 3 && !b_[lin].empty() ? b_[lin].data() : nullptr;
    if (ori) {
        L.wu_p = L.wt_p = L.wl_p = L.wc_p = L.wq_p = W;
        return;
    }
    if (lin == kLinV && L.bias_p && fk_[kPv]) {  // b_h <- b_h P_v per KV head, as v_proj's output transform
        L.bias.assign(static_cast<size_t>(s.out), T(0));
        for (int64_t h = 0; h < s.out / D; h++)
            for (int a = 0; a < D; a++) {
                T acc = 0;
                for (int b = 0; b < D; b++) acc += b_[lin][h * D + b] * mat_[kPv][static_cast<size_t>(b) * D + a];
                L.bias[h * D + a] = acc;
            }
        L.bias_p = L.bias.data();
    }
    int fl, fr, n1, n2;
    int64_t diag;
    lin_transform(lin, fl, fr, n1, n2, diag);
    const size_t n = static_cast<size_t>(s.out * s.in);
    const T *cur = W;
    if (diag >= 0) {
        L.wu.resize(n);
        channel_unscale_forward(L.wu.data(), W, param(diag), s.out, s.in);
        cur = L.wu.data();
    }
    L.wu_p = cur;
    if (fl >= 0 || fr >= 0) {
        L.wt.resize(n);
        fast::kron_forward(L.wt.data(), cur, Pit(fl), Pit(fr), s.out, n1, n2, pool_);
        cur = L.wt.data();
    }
    L.wt_p = cur;
    if (lwc_[lin] >= 0) {
        L.wl.resize(n);
        lwc_forward(L.wl.data(), cur, param(lwc_[lin]), s.out, s.in);
        cur = L.wl.data();
    }
    L.wl_p = cur;
    if (lin == kLinV && fk_[kPv]) {  // out_trans(W^T)^T: each head block W_h [D][in] becomes P_v^T W_h
        L.wc.resize(n);
        for (int64_t h = 0; h < s.out / D; h++)
            gemm<T>(true, false, D, s.in, D, T(1), P(kPv), D, cur + h * D * s.in, s.in, T(0),
                    L.wc.data() + h * D * s.in, s.in, pool_);
        cur = L.wc.data();
    }
    L.wc_p = cur;
    if (spec_.bits.w < 16) {
        L.wq.resize(n);
        weight_quant_forward(L.wq.data(), static_cast<T *>(nullptr), cur, s.out, s.in, spec_.bits.w);
        cur = L.wq.data();
    }
    L.wq_p = cur;
}

template <typename T>
void FlatLayer<T>::linear_forward(int lin, const T *x, T *y, bool ori, T beta) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    L.x_p = x;
    L.xq_p = x;
    if (!ori && spec_.bits.a < 16) {
        L.xq.resize(static_cast<size_t>(rows_ * s.in));
        fast::act_quant_fwd(L.xq.data(), x, param(lac_[lin]), rows_, s.in, spec_.bits.a, true, pool_);
        L.xq_p = L.xq.data();
    }
    gemm<T>(false, true, rows_, s.out, s.in, T(1), L.xq_p, s.in, L.wq_p, s.in, beta, y, s.out, pool_);
    if (L.bias_p) {
        for (int64_t r = 0; r < rows_; r++)
            for (int64_t o = 0; o < s.out; o++) y[r * s.out + o] += L.bias_p[o];
    }
}

template <typename T>
void FlatLayer<T>::forward(T *out, const T *h0, int64_t n_seq, int64_t seq_len, bool ori, SmoothStats *stats) {
    FQ_CHECK(n_seq > 0 && seq_len > 0, FQ_STATUS_INVALID_ARGUMENT, "FlatLayer::forward: empty batch");
    const int64_t E = cfg_.n_embd, F = cfg_.n_ff, H = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim;
    const int64_t Q = H * D, KV = Hkv * D, rows = n_seq * seq_len;
    n_seq_ = n_seq, seq_len_ = seq_len, rows_ = rows;
    if (static_cast<int64_t>(rope_.cs.size()) != seq_len * rope_.half || rope_.half != cfg_.rope_dim / 2) {
        rope_ = fast::rope_table(cfg_, rope_ff_, 0, seq_len);
    }
    if (static_cast<int64_t>(pos_.size()) != rows) {
        pos_.resize(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; r++) pos_[r] = static_cast<int32_t>(r % seq_len);
    }
    if (!ori) factor_matrices();
    for (int i = 0; i < kNumLinears; i++) weight_forward(i, ori);
    auto sized = [](std::vector<T> &v, int64_t n) -> T * {
        v.resize(static_cast<size_t>(n));
        return v.data();
    };
    const double eps = cfg_.rms_eps;
    // ---- attention
    fast::rmsnorm_fwd(sized(x1_, rows * E), sized(rstd1_, rows), h0, g1_.data(), rows, E, eps, pool_);
    const T *cur = x1_.data();
    if (!ori && diag_[0] >= 0) {
        fast::channel_scale_fwd(sized(xs_, rows * E), cur, param(diag_[0]), rows, E, pool_);
        cur = xs_.data();
    }
    xs_p_ = cur;
    if (!ori && fk_[kPaL]) {
        fast::kron_forward(sized(xa_, rows * E), cur, P(kPaL), P(kPaR), rows, fk_[kPaL], fk_[kPaR], pool_);
        cur = xa_.data();
    }
    xa_p_ = cur;
    linear_forward(kLinQ, xa_p_, sized(q_, rows * Q), ori, T(0));
    linear_forward(kLinK, xa_p_, sized(k_, rows * KV), ori, T(0));
    linear_forward(kLinV, xa_p_, sized(v_, rows * KV), ori, T(0));
    fast::rope_apply(q_.data(), pos_.data(), rows, (int)H, (int)D, rope_, false, pool_);
    fast::rope_apply(k_.data(), pos_.data(), rows, (int)Hkv, (int)D, rope_, false, pool_);
    q2_p_ = q_.data();
    k2_p_ = k_.data();
    if (!ori && fk_[kPk]) {  // q P_k^{-T} and k P_k per head
        fast::kron_forward(sized(q2_, rows * Q), q_.data(), static_cast<const T *>(nullptr), Pit(kPk), rows, (int)H,
                           (int)D, pool_);
        fast::kron_forward(sized(k2_, rows * KV), k_.data(), static_cast<const T *>(nullptr), P(kPk), rows, (int)Hkv,
                           (int)D, pool_);
        q2_p_ = q2_.data();
        k2_p_ = k2_.data();
    }
    k3_p_ = k2_p_;
    v3_p_ = v_.data();
    if (!ori && spec_.bits.k < 16) {
        fast::act_quant_fwd(sized(k3_, rows * KV), k2_p_, param(lac_k_), rows * Hkv, D, spec_.bits.k, false, pool_);
        k3_p_ = k3_.data();
    }
    if (!ori && spec_.bits.v < 16) {
        fast::act_quant_fwd(sized(v3_, rows * KV), v_.data(), param(lac_v_), rows * Hkv, D, spec_.bits.v, false, pool_);
        v3_p_ = v3_.data();
    }
    fast::attention_forward(sized(att_, rows * Q), sized(lse_, rows * H), q2_p_, k3_p_, v3_p_, n_seq, seq_len, (int)H,
                            (int)Hkv, (int)D, pool_);
    ao_p_ = att_.data();
    if (!ori && fk_[kPh]) {  // P_h^T X per token, X = [H][D]
        fast::kron_forward(sized(ao_, rows * Q), att_.data(), P(kPh), static_cast<const T *>(nullptr), rows, (int)H,
                           (int)D, pool_);
        ao_p_ = ao_.data();
    }
    std::copy_n(h0, rows * E, sized(h1_, rows * E));
    linear_forward(kLinO, ao_p_, h1_.data(), ori, T(1));
    // ---- MLP
    fast::rmsnorm_fwd(sized(x2_, rows * E), sized(rstd2_, rows), h1_.data(), g2_.data(), rows, E, eps, pool_);
    cur = x2_.data();
    if (!ori && diag_[1] >= 0) {
        fast::channel_scale_fwd(sized(x2s_, rows * E), cur, param(diag_[1]), rows, E, pool_);
        cur = x2s_.data();
    }
    x2s_p_ = cur;
    if (!ori && fk_[kPugL]) {
        fast::kron_forward(sized(x2t_, rows * E), cur, P(kPugL), P(kPugR), rows, fk_[kPugL], fk_[kPugR], pool_);
        cur = x2t_.data();
    }
    x2t_p_ = cur;
    linear_forward(kLinUp, x2t_p_, sized(up_, rows * F), ori, T(0));
    linear_forward(kLinGate, x2t_p_, sized(gate_, rows * F), ori, T(0));
    fast::swiglu_fwd(sized(z_, rows * F), gate_.data(), up_.data(), rows * F, pool_);
    cur = z_.data();
    if (!ori && diag_[2] >= 0) {
        fast::channel_scale_fwd(sized(zs_, rows * F), cur, param(diag_[2]), rows, F, pool_);
        cur = zs_.data();
    }
    zs_p_ = cur;
    if (!ori && fk_[kPdL]) {
        fast::kron_forward(sized(zt_, rows * F), cur, P(kPdL), P(kPdR), rows, fk_[kPdL], fk_[kPdR], pool_);
        cur = zt_.data();
    }
    zt_p_ = cur;
    std::copy_n(h1_.data(), rows * E, out);
    linear_forward(kLinDown, zt_p_, out, ori, T(1));
    if (stats) {
        absmax_update(stats->attn_in, x1_.data(), rows, E);
        absmax_update(stats->mlp_in, x2_.data(), rows, E);
        absmax_update(stats->down_in, z_.data(), rows, F);
    }
    last_ori_ = ori;
}

template class FlatLayer<float>;
template class FlatLayer<double>;

}  // namespace fq::quant
