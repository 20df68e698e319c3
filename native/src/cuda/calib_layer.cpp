// CalibLayer: construction, parameter upload and the calibration forward (the chain of quant/flat_layer.cpp, op for
// op, on the device).
#include "cuda/calib_layer.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <string>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/gemm_f32.h"
#include "quant/kron.h"
#include "quant/trans_param.h"

namespace fq::cuda {

using namespace quant;

namespace {

const char *const kFactorNames[kNumFactors] = {"pa.l", "pa.r", "pug.l", "pug.r", "pd.l", "pd.r", "ph", "pv", "pk"};

DeviceBuffer upload_vec(const std::vector<float> &v, const Stream &s) {
    DeviceBuffer b(v.size() * sizeof(float));
    if (!v.empty()) b.upload(v.data(), v.size() * sizeof(float), s);
    return b;
}

}  // namespace

CalibLayer::CalibLayer(const ModelConfig &c, const LayerWeights &w, const std::vector<float> &rope_freq_factors,
                       const LayerSpec &spec, ThreadPool &pool, const Stream &stream)
    : cfg_(c), host_(c, w, rope_freq_factors, spec, pool), pool_(pool), stream_(&stream), rope_ff_(rope_freq_factors) {
    // The host object has checked the weight sizes. Offsets of every block, by the names FlatLayer gives them.
    std::map<std::string, int64_t> off;
    for (const Block &b : host_.blocks()) off[b.name] = static_cast<int64_t>(b.offset);
    auto at = [&](const std::string &name) {
        const auto it = off.find(name);
        return it == off.end() ? int64_t{-1} : it->second;
    };
    const DecomposeDims dh = decompose_dim(c.n_embd), df = decompose_dim(c.n_ff);
    fk_.fill(0);
    if (spec.pa) fk_[kPaL] = dh.n1, fk_[kPaR] = dh.n2;
    if (spec.pug) fk_[kPugL] = dh.n1, fk_[kPugR] = dh.n2;
    if (spec.pd) fk_[kPdL] = df.n1, fk_[kPdR] = df.n2;
    if (spec.ph) fk_[kPh] = c.n_head;
    if (spec.pv) fk_[kPv] = c.head_dim;
    if (spec.pk) fk_[kPk] = c.head_dim;
    int64_t mats = 0;
    for (int f = 0; f < kNumFactors; f++) {
        const std::string n = kFactorNames[f];
        f_qu_[f] = at(n + ".qu"), f_qv_[f] = at(n + ".qv"), f_s_[f] = at(n + ".s"), f_m_[f] = at(n + ".m");
        moff_[f] = fk_[f] ? mats : -1;
        mats += 2 * int64_t{fk_[f]} * fk_[f];
    }
    diag_ = {at("pa.c"), at("pug.c"), at("pd.c")};
    for (int i = 0; i < kNumLinears; i++) {
        lwc_[i] = at(std::string("lwc.") + linear_name(i));
        lac_[i] = at(std::string("lac.") + linear_name(i));
    }
    lac_k_ = at("lac.k_cache");
    lac_v_ = at("lac.v_cache");

    const std::vector<float> *src[kNumLinears] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_up, &w.w_gate, &w.w_down};
    for (int i = 0; i < kNumLinears; i++) w_[i] = upload_vec(*src[i], stream);
    b_ = {upload_vec(w.bq, stream), upload_vec(w.bk, stream), upload_vec(w.bv, stream)};
    bv_host_ = w.bv;
    g1_ = upload_vec(w.attn_norm, stream);
    g2_ = upload_vec(w.ffn_norm, stream);

    const size_t np = host_.params().size();
    sig_host_.assign(np, 0.0);
    mats_host_.assign(static_cast<size_t>(mats), 0.0f);
    dmat_pin_ = Pinned(std::max<size_t>(mats_host_.size(), 1) * sizeof(float));
    colsum_pin_ = Pinned(std::max<size_t>(bv_host_.size(), 1) * sizeof(double));
    grads_.assign(np, 0.0f);
    fgrad_.assign(np, 0.0f);
    device_ = current_device();
    params_dev_ = DeviceBuffer(np * sizeof(float));
    sig_dev_ = DeviceBuffer(np * sizeof(double));
    grads_dev_ = DeviceBuffer(np * sizeof(float));
    mats_dev_ = DeviceBuffer(mats_host_.size() * sizeof(float));
    dmat_dev_ = DeviceBuffer(mats_host_.size() * sizeof(float));
    // Last, so that nothing after it can throw and leave them to a destructor that does not run.
    for (auto &e : events_) {
        cudaEvent_t ev = nullptr;
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        e = ev;
    }
}

CalibLayer::~CalibLayer() {
    for (void *e : events_) {
        if (e) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
    }
}

CalibLayer::Pinned::Pinned(size_t n_bytes) { FQ_CUDA_CHECK(cudaMallocHost(&p_, n_bytes)); }
CalibLayer::Pinned::~Pinned() {
    if (p_) (void)cudaFreeHost(p_);
}
CalibLayer::Pinned &CalibLayer::Pinned::operator=(Pinned &&o) noexcept {
    if (this != &o) {
        if (p_) (void)cudaFreeHost(p_);
        p_ = o.p_;
        o.p_ = nullptr;
    }
    return *this;
}

size_t CalibLayer::device_bytes() const {
    size_t n = 0;
    for (const auto &b : w_) n += b.n_bytes();
    for (const auto *v : {&x1_, &rstd1_, &xs_, &xa_, &q_, &k_, &v_, &q2_, &k2_, &k3_, &v3_, &att_, &lse_, &probs_,
                          &ao_, &h1_, &x2_, &rstd2_, &x2s_, &x2t_, &up_, &gate_, &z_, &zs_, &zt_, &absmax_, &dh1_,
                          &dz_, &dgate_, &dup_, &dx2_, &datt_, &dq_, &dk_, &dv_, &dxa_, &dxq_, &dw_, &dtmp_,
                          &dscores_, &colsum_v_})
        n += v->buf.n_bytes();
    for (const LinCache &L : lc_)
        for (const auto *v : {&L.wu, &L.wt, &L.wl, &L.wc, &L.wq, &L.xq, &L.bias}) n += v->buf.n_bytes();
    return n + params_dev_.n_bytes() + sig_dev_.n_bytes() + grads_dev_.n_bytes() + mats_dev_.n_bytes() +
           dmat_dev_.n_bytes() + g1_.n_bytes() + g2_.n_bytes() + rope_cs_.n_bytes() + rope_sn_.n_bytes() +
           ws_.n_bytes();
}

float *CalibLayer::sized(DevVec &v, int64_t n_floats) {
    const size_t need = static_cast<size_t>(std::max<int64_t>(n_floats, 1)) * sizeof(float);
    if (v.buf.n_bytes() < need) {
        stream_->synchronize();
        v.buf = DeviceBuffer();
        v.buf = DeviceBuffer(need);
    }
    return v.buf.as<float>();
}

const float *CalibLayer::P(int f) const {
    return f < 0 || !fk_[f] ? nullptr : mats_dev_.as<float>() + moff_[f];
}
const float *CalibLayer::Pit(int f) const {
    return f < 0 || !fk_[f] ? nullptr : mats_dev_.as<float>() + moff_[f] + int64_t{fk_[f]} * fk_[f];
}
float *CalibLayer::dP(int f) { return f < 0 || !fk_[f] ? nullptr : dmat_dev_.as<float>() + moff_[f]; }
float *CalibLayer::dPit(int f) {
    return f < 0 || !fk_[f] ? nullptr : dmat_dev_.as<float>() + moff_[f] + int64_t{fk_[f]} * fk_[f];
}

std::vector<int> CalibLayer::factor_order() const {
    std::vector<int> order;
    for (int f = 0; f < kNumFactors; f++)
        if (fk_[f]) order.push_back(f);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return fk_[a] > fk_[b]; });
    return order;
}

void CalibLayer::lin_transform(int lin, int &fl, int &fr, int &n1, int &n2, int64_t &diag) const {
    const quant::LinearTransform t = quant::linear_transform(lin, fk_, diag_, cfg_);
    fl = t.fl, fr = t.fr, n1 = t.n1, n2 = t.n2, diag = t.diag;
}

// The factor matrices from the current parameters (FlatLayer::factor_matrices), the clipping sigmoids (the
// expression of fake_quant.cpp, so that they are bitwise the CPU op's), and their upload.
void CalibLayer::upload_params() {
    const std::vector<float> &p = host_.params();
    const bool direct = host_.spec().direct_inv;
    const std::vector<int> order = factor_order();
    const auto t0 = std::chrono::steady_clock::now();
    pool_.parallel_for(static_cast<int64_t>(order.size()), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; i++) {
            const int f = order[static_cast<size_t>(i)], k = fk_[f];
            float *m = mats_host_.data() + moff_[f], *mit = m + int64_t{k} * k;
            if (direct) {
                std::copy_n(p.data() + f_m_[f], int64_t{k} * k, m);
                inverse_t_forward(mit, m, k);
            } else {
                svd_factor_forward(m, mit, p.data() + f_qu_[f], p.data() + f_qv_[f], p.data() + f_s_[f], k);
            }
        }
    });
    host_factor_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const Block &b : host_.blocks()) {
        if (!b.clip) continue;
        for (size_t i = b.offset; i < b.offset + b.size; i++) {
            sig_host_[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(p[i])));
        }
    }
    params_dev_.upload(p.data(), p.size() * sizeof(float), *stream_);
    sig_dev_.upload(sig_host_.data(), sig_host_.size() * sizeof(double), *stream_);
    if (!mats_host_.empty()) mats_dev_.upload(mats_host_.data(), mats_host_.size() * sizeof(float), *stream_);
    // v_proj's bias as its output transform sees it: b_h <- b_h P_v per KV head (float, the CPU loop).
    LinCache &V = lc_[kLinV];
    V.bias_p = nullptr;
    if (!bv_host_.empty() && fk_[kPv]) {
        const int D = cfg_.head_dim;
        const float *pv = mats_host_.data() + moff_[kPv];
        std::vector<float> bias(bv_host_.size(), 0.0f);
        for (size_t h = 0; h < bias.size() / D; h++)
            for (int a = 0; a < D; a++) {
                float acc = 0;
                for (int b = 0; b < D; b++) acc += bv_host_[h * D + b] * pv[static_cast<size_t>(b) * D + a];
                bias[h * D + a] = acc;
            }
        float *dst = sized(V.bias, static_cast<int64_t>(bias.size()));
        FQ_CUDA_CHECK(cudaMemcpyAsync(dst, bias.data(), bias.size() * sizeof(float), cudaMemcpyHostToDevice,
                                      static_cast<cudaStream_t>(st())));
        stream_->synchronize();
        V.bias_p = dst;
    }
}

void CalibLayer::weight_forward(int lin, bool ori) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    const float *W = w_[lin].as<float>();
    const int64_t D = cfg_.head_dim, n = s.out * s.in;
    const float *raw_bias = lin < 3 && b_[lin].n_bytes() ? b_[lin].as<float>() : nullptr;
    if (ori) {
        L.wu_p = L.wt_p = L.wl_p = L.wc_p = L.wq_p = W;
        L.bias_p = raw_bias;
        return;
    }
    if (!(lin == kLinV && fk_[kPv])) L.bias_p = raw_bias;  // v_proj's transformed bias comes from upload_params
    int fl, fr, n1, n2;
    int64_t diag;
    lin_transform(lin, fl, fr, n1, n2, diag);
    const float *cur = W;
    if (diag >= 0) {
        float *wu = sized(L.wu, n);
        calib::channel_unscale_fwd(wu, W, param_dev(diag), s.out, s.in, st());
        cur = wu;
    }
    L.wu_p = cur;
    if (fl >= 0 || fr >= 0) {
        float *wt = sized(L.wt, n);
        calib::kron_fwd(wt, cur, Pit(fl), Pit(fr), s.out, n1, n2, ws_, st());
        cur = wt;
    }
    L.wt_p = cur;
    if (lwc_[lin] >= 0) {
        float *wl = sized(L.wl, n);
        calib::lwc_fwd(wl, cur, sig_dev(lwc_[lin]), s.out, s.in, st());
        cur = wl;
    }
    L.wl_p = cur;
    if (lin == kLinV && fk_[kPv]) {  // out_trans(W^T)^T: each head block W_h [D][in] becomes P_v^T W_h
        float *wc = sized(L.wc, n);
        gemm_f32_batched(true, false, D, s.in, D, 1.0f, P(kPv), D, 0, cur, s.in, D * s.in, 0.0f, wc, s.in, D * s.in,
                         s.out / D, st());
        cur = wc;
    }
    L.wc_p = cur;
    if (host_.spec().bits.w < 16) {
        float *wq = sized(L.wq, n);
        calib::weight_quant_fwd(wq, cur, s.out, s.in, host_.spec().bits.w, st());
        cur = wq;
    }
    L.wq_p = cur;
}

void CalibLayer::linear_forward(int lin, const float *x, float *y, bool ori, float beta) {
    LinCache &L = lc_[lin];
    const LinearShape s = linear_shape(cfg_, lin);
    L.x_p = x;
    L.xq_p = x;
    if (!ori && host_.spec().bits.a < 16) {
        float *xq = sized(L.xq, rows_ * s.in);
        calib::act_quant_fwd(xq, x, lac_sig(lac_[lin]), rows_, s.in, host_.spec().bits.a, true, st());
        L.xq_p = xq;
    }
    gemm_f32(false, true, rows_, s.out, s.in, 1.0f, L.xq_p, s.in, L.wq_p, s.in, beta, y, s.out, st());
    if (L.bias_p) calib::add_bias(y, L.bias_p, rows_, s.out, st());
}

void CalibLayer::forward(float *out, const float *h0, int64_t n_seq, int64_t seq_len, bool ori, SmoothStats *stats) {
    FQ_CHECK(n_seq > 0 && seq_len > 0, FQ_STATUS_INVALID_ARGUMENT, "CalibLayer::forward: empty batch");
    FQ_CHECK(out != h0, FQ_STATUS_INVALID_ARGUMENT, "CalibLayer::forward: out aliases h0");
    const int64_t E = cfg_.n_embd, F = cfg_.n_ff, H = cfg_.n_head, Hkv = cfg_.n_head_kv, D = cfg_.head_dim;
    const int64_t Q = H * D, KV = Hkv * D, rows = n_seq * seq_len;
    const LayerSpec &sp = host_.spec();
    n_seq_ = n_seq, seq_len_ = seq_len, rows_ = rows;
    const int half = cfg_.rope_dim / 2;
    if (rope_len_ != seq_len) {
        const fast::RopeTable tab = fast::rope_table(cfg_, rope_ff_, 0, seq_len);
        rope_cs_ = upload_vec(tab.cs, *stream_);
        rope_sn_ = upload_vec(tab.sn, *stream_);
        rope_len_ = seq_len;
    }
    if (!ori) upload_params();
    for (int i = 0; i < kNumLinears; i++) weight_forward(i, ori);
    const bool neox = cfg_.rope_mode == RopeMode::Neox;
    // ---- attention
    float *x1 = sized(x1_, rows * E);
    calib::rmsnorm_fwd(x1, sized(rstd1_, rows), h0, g1_.as<float>(), rows, E, cfg_.rms_eps, st());
    const float *cur = x1;
    if (!ori && diag_[0] >= 0) {
        float *xs = sized(xs_, rows * E);
        calib::channel_scale_fwd(xs, cur, param_dev(diag_[0]), rows, E, st());
        cur = xs;
    }
    xs_p_ = cur;
    if (!ori && fk_[kPaL]) {
        float *xa = sized(xa_, rows * E);
        calib::kron_fwd(xa, cur, P(kPaL), P(kPaR), rows, fk_[kPaL], fk_[kPaR], ws_, st());
        cur = xa;
    }
    xa_p_ = cur;
    float *q = sized(q_, rows * Q), *k = sized(k_, rows * KV), *v = sized(v_, rows * KV);
    linear_forward(kLinQ, xa_p_, q, ori, 0.0f);
    linear_forward(kLinK, xa_p_, k, ori, 0.0f);
    linear_forward(kLinV, xa_p_, v, ori, 0.0f);
    calib::rope(q, rows, (int)H, (int)D, half, neox, rope_cs_.as<float>(), rope_sn_.as<float>(), seq_len, false, st());
    calib::rope(k, rows, (int)Hkv, (int)D, half, neox, rope_cs_.as<float>(), rope_sn_.as<float>(), seq_len, false,
                st());
    q2_p_ = q;
    k2_p_ = k;
    if (!ori && fk_[kPk]) {  // q P_k^{-T} and k P_k per head
        float *q2 = sized(q2_, rows * Q), *k2 = sized(k2_, rows * KV);
        calib::kron_fwd(q2, q, nullptr, Pit(kPk), rows, (int)H, (int)D, ws_, st());
        calib::kron_fwd(k2, k, nullptr, P(kPk), rows, (int)Hkv, (int)D, ws_, st());
        q2_p_ = q2;
        k2_p_ = k2;
    }
    k3_p_ = k2_p_;
    v3_p_ = v;
    if (!ori && sp.bits.k < 16) {
        float *k3 = sized(k3_, rows * KV);
        calib::act_quant_fwd(k3, k2_p_, lac_sig(lac_k_), rows * Hkv, D, sp.bits.k, false, st());
        k3_p_ = k3;
    }
    if (!ori && sp.bits.v < 16) {
        float *v3 = sized(v3_, rows * KV);
        calib::act_quant_fwd(v3, v, lac_sig(lac_v_), rows * Hkv, D, sp.bits.v, false, st());
        v3_p_ = v3;
    }
    float *att = sized(att_, rows * Q);
    calib::attention_fwd(att, sized(lse_, n_seq * H * seq_len), sized(probs_, n_seq * H * seq_len * seq_len), q2_p_,
                         k3_p_, v3_p_, n_seq, seq_len, (int)H, (int)Hkv, (int)D, ws_, st());
    ao_p_ = att;
    if (!ori && fk_[kPh]) {  // P_h^T X per token, X = [H][D]
        float *ao = sized(ao_, rows * Q);
        calib::kron_fwd(ao, att, P(kPh), nullptr, rows, (int)H, (int)D, ws_, st());
        ao_p_ = ao;
    }
    float *h1 = sized(h1_, rows * E);
    calib::copy(h1, h0, rows * E, false, st());
    linear_forward(kLinO, ao_p_, h1, ori, 1.0f);
    // ---- MLP
    float *x2 = sized(x2_, rows * E);
    calib::rmsnorm_fwd(x2, sized(rstd2_, rows), h1, g2_.as<float>(), rows, E, cfg_.rms_eps, st());
    cur = x2;
    if (!ori && diag_[1] >= 0) {
        float *x2s = sized(x2s_, rows * E);
        calib::channel_scale_fwd(x2s, cur, param_dev(diag_[1]), rows, E, st());
        cur = x2s;
    }
    x2s_p_ = cur;
    if (!ori && fk_[kPugL]) {
        float *x2t = sized(x2t_, rows * E);
        calib::kron_fwd(x2t, cur, P(kPugL), P(kPugR), rows, fk_[kPugL], fk_[kPugR], ws_, st());
        cur = x2t;
    }
    x2t_p_ = cur;
    float *up = sized(up_, rows * F), *gate = sized(gate_, rows * F), *z = sized(z_, rows * F);
    linear_forward(kLinUp, x2t_p_, up, ori, 0.0f);
    linear_forward(kLinGate, x2t_p_, gate, ori, 0.0f);
    calib::swiglu_fwd(z, gate, up, rows * F, st());
    cur = z;
    if (!ori && diag_[2] >= 0) {
        float *zs = sized(zs_, rows * F);
        calib::channel_scale_fwd(zs, cur, param_dev(diag_[2]), rows, F, st());
        cur = zs;
    }
    zs_p_ = cur;
    if (!ori && fk_[kPdL]) {
        float *zt = sized(zt_, rows * F);
        calib::kron_fwd(zt, cur, P(kPdL), P(kPdR), rows, fk_[kPdL], fk_[kPdR], ws_, st());
        cur = zt;
    }
    zt_p_ = cur;
    calib::copy(out, h1, rows * E, false, st());
    linear_forward(kLinDown, zt_p_, out, ori, 1.0f);
    if (stats) {
        float *am = sized(absmax_, 2 * E + F);
        FQ_CUDA_CHECK(cudaMemsetAsync(am, 0, static_cast<size_t>(2 * E + F) * sizeof(float),
                                      static_cast<cudaStream_t>(st())));
        calib::column_absmax(am, x1, rows, E, ws_, st());
        calib::column_absmax(am + E, x2, rows, E, ws_, st());
        calib::column_absmax(am + 2 * E, z, rows, F, ws_, st());
        std::vector<float> host(static_cast<size_t>(2 * E + F));
        absmax_.buf.download(host.data(), host.size() * sizeof(float), *stream_);
        auto fold = [&](std::vector<double> &dst, const float *src, int64_t n) {
            for (int64_t j = 0; j < n; j++) dst[j] = std::max(dst[j], static_cast<double>(src[j]));
        };
        fold(stats->attn_in, host.data(), E);
        fold(stats->mlp_in, host.data() + E, E);
        fold(stats->down_in, host.data() + 2 * E, F);
    }
    last_ori_ = ori;
}

}  // namespace fq::cuda
