#include "quant/fast_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/threadpool.h"
#include "quant/fake_quant.h"
#include "quant/layer_ops.h"

#ifdef FQ_HAVE_CBLAS
#include <cblas.h>
#endif

namespace fq::quant::fast {

// ---- GEMM ----------------------------------------------------------------------------------------------------------

namespace {

#ifdef FQ_HAVE_CBLAS
void blas_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
               float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
}
void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double *a, int lda, const double *b, int ldb,
               double beta, double *c, int ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
}
#endif

constexpr int64_t kSmallGemm = 32 * 32 * 32;
// Below this many elements a row-wise op runs on the calling thread: waking the pool costs more.
constexpr int64_t kSerialWork = 1 << 15;

template <typename T>
void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T *a, int64_t lda, const T *b,
                int64_t ldb, T beta, T *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            T acc = 0;
            for (int64_t p = 0; p < k; p++) {
                acc += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            }
            T &dst = c[i * ldc + j];
            dst = alpha * acc + (beta == T(0) ? T(0) : beta * dst);
        }
    }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T *a, int64_t lda, const T *b,
          int64_t ldb, T beta, T *c, int64_t ldc, ThreadPool &pool) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
        return;
    }
    // Small products run here, serially: a BLAS call (and waking its threads) costs more than the work.
    if (m * n * k <= kSmallGemm) {
        small_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#ifdef FQ_HAVE_CBLAS
    constexpr int64_t kMax = std::numeric_limits<int>::max();
    FQ_CHECK(m <= kMax && n <= kMax && k <= kMax && lda <= kMax && ldb <= kMax && ldc <= kMax,
             FQ_STATUS_INVALID_ARGUMENT, "gemm: sizes beyond the BLAS integer range");
    (void)pool;
    blas_gemm(trans_a, trans_b, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
#else
    // Rows of C are independent; B is read row by row (axpy form) when it is not transposed, else by dot products.
    pool.parallel_for(m, [&](int64_t i0, int64_t i1) {
        std::vector<T> acc(static_cast<size_t>(n));
        for (int64_t i = i0; i < i1; i++) {
            std::fill(acc.begin(), acc.end(), T(0));
            for (int64_t p = 0; p < k; p++) {
                const T av = trans_a ? a[p * lda + i] : a[i * lda + p];
                if (av == T(0)) continue;
                if (!trans_b) {
                    const T *br = b + p * ldb;
                    for (int64_t j = 0; j < n; j++) acc[j] += av * br[j];
                } else {
                    for (int64_t j = 0; j < n; j++) acc[j] += av * b[j * ldb + p];
                }
            }
            T *cr = c + i * ldc;
            for (int64_t j = 0; j < n; j++) cr[j] = alpha * acc[j] + (beta == T(0) ? T(0) : beta * cr[j]);
        }
    });
#endif
}

int64_t n_chunks(const ThreadPool &pool, int64_t rows, int64_t row_cost) {
    if (rows <= 0) return 0;
    if (rows * std::max<int64_t>(row_cost, 1) < kSerialWork) return 1;
    return std::min<int64_t>(rows, 4 * std::max(1, pool.n_threads()));
}

void par_rows(ThreadPool &pool, int64_t rows, int64_t row_cost,
              const std::function<void(int64_t, int64_t, int64_t)> &fn) {
    const int64_t nc = n_chunks(pool, rows, row_cost);
    if (nc == 1) {
        fn(0, rows, 0);
        return;
    }
    if (nc == 0) return;
    const int64_t step = (rows + nc - 1) / nc;
    pool.parallel_for(nc, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ch++) {
            const int64_t r0 = ch * step, r1 = std::min(rows, r0 + step);
            if (r0 < r1) fn(r0, r1, ch);
        }
    });
}

// ---- Kronecker -----------------------------------------------------------------------------------------------------

namespace {

// dst [n1][rows][n2] <- src [rows][n1][n2] (to_p = true), or back (to_p = false).
template <typename T>
void permute(T *dst, const T *src, int64_t rows, int n1, int n2, bool to_p, ThreadPool &pool) {
    par_rows(pool, rows, int64_t{n1} * n2, [&](int64_t r0, int64_t r1, int64_t) {
        for (int64_t r = r0; r < r1; r++)
            for (int i = 0; i < n1; i++) {
                const int64_t a = (r * n1 + i) * n2, b = (int64_t{i} * rows + r) * n2;
                if (to_p) {
                    std::copy_n(src + a, n2, dst + b);
                } else {
                    std::copy_n(src + b, n2, dst + a);
                }
            }
    });
}

void check_kron(int64_t rows, int n1, int n2) {
    FQ_CHECK(rows >= 0 && n1 > 0 && n2 > 0, FQ_STATUS_INVALID_ARGUMENT, "kron: bad sizes rows=%lld n1=%d n2=%d",
             (long long)rows, n1, n2);
}

}  // namespace

template <typename T>
void kron_forward(T *out, const T *inp, const T *p1, const T *p2, int64_t rows, int n1, int n2, ThreadPool &pool) {
    check_kron(rows, n1, n2);
    const int64_t n = int64_t{n1} * n2, total = rows * n;
    if (rows == 0) return;
    if (!p1 && !p2) {
        if (out != inp) std::copy_n(inp, total, out);
        return;
    }
    if (!p1) {  // one product over all (row, i) blocks: [rows*n1][n2] x P2
        if (out != inp) {
            gemm<T>(false, false, rows * n1, n2, n2, T(1), inp, n2, p2, n2, T(0), out, n2, pool);
        } else {
            std::vector<T> tmp(static_cast<size_t>(total));
            gemm<T>(false, false, rows * n1, n2, n2, T(1), inp, n2, p2, n2, T(0), tmp.data(), n2, pool);
            std::copy(tmp.begin(), tmp.end(), out);
        }
        return;
    }
    // In the permuted layout [n1][rows*n2] the left factor is one product: A = P1^T Xp; then A P2 over n1*rows rows.
    std::vector<T> xp(static_cast<size_t>(total)), ap(static_cast<size_t>(total));
    permute(xp.data(), inp, rows, n1, n2, true, pool);
    gemm<T>(true, false, n1, rows * n2, n1, T(1), p1, n1, xp.data(), rows * n2, T(0), ap.data(), rows * n2, pool);
    if (p2) {
        gemm<T>(false, false, n1 * rows, n2, n2, T(1), ap.data(), n2, p2, n2, T(0), xp.data(), n2, pool);
        permute(out, xp.data(), rows, n1, n2, false, pool);
    } else {
        permute(out, ap.data(), rows, n1, n2, false, pool);
    }
}

template <typename T>
void kron_backward(T *dinp, T *dp1, T *dp2, const T *dout, const T *inp, const T *p1, const T *p2, int64_t rows, int n1,
                   int n2, ThreadPool &pool) {
    check_kron(rows, n1, n2);
    FQ_CHECK(!(dp1 && !p1) && !(dp2 && !p2), FQ_STATUS_INVALID_ARGUMENT,
             "kron_backward: a gradient was requested for an identity factor");
    const int64_t n = int64_t{n1} * n2, total = rows * n;
    if (rows == 0) return;
    if (!p1 && !p2) {
        if (dinp && dinp != dout) std::copy_n(dout, total, dinp);
        return;
    }
    if (!p1) {
        if (dp2) gemm<T>(true, false, n2, n2, rows * n1, T(1), inp, n2, dout, n2, T(1), dp2, n2, pool);
        if (dinp) {
            std::vector<T> tmp(static_cast<size_t>(total));
            gemm<T>(false, true, rows * n1, n2, n2, T(1), dout, n2, p2, n2, T(0), tmp.data(), n2, pool);
            std::copy(tmp.begin(), tmp.end(), dinp);
        }
        return;
    }
    const int64_t wide = rows * n2;  // columns of the permuted layout
    std::vector<T> xp(static_cast<size_t>(total)), gp(static_cast<size_t>(total)), tmp(static_cast<size_t>(total));
    permute(xp.data(), inp, rows, n1, n2, true, pool);
    permute(gp.data(), dout, rows, n1, n2, true, pool);
    if (dp1) {  // dP1 += Zp Gp^T with Zp = Xp P2
        const T *zp = xp.data();
        if (p2) {
            gemm<T>(false, false, n1 * rows, n2, n2, T(1), xp.data(), n2, p2, n2, T(0), tmp.data(), n2, pool);
            zp = tmp.data();
        }
        gemm<T>(false, true, n1, n1, wide, T(1), zp, wide, gp.data(), wide, T(1), dp1, n1, pool);
    }
    if (dp2) {  // dP2 += Wp^T Gp over n1*rows rows, Wp = P1^T Xp
        gemm<T>(true, false, n1, wide, n1, T(1), p1, n1, xp.data(), wide, T(0), tmp.data(), wide, pool);
        gemm<T>(true, false, n2, n2, n1 * rows, T(1), tmp.data(), n2, gp.data(), n2, T(1), dp2, n2, pool);
    }
    if (dinp) {  // dX = P1 G P2^T
        gemm<T>(false, false, n1, wide, n1, T(1), p1, n1, gp.data(), wide, T(0), tmp.data(), wide, pool);
        const T *res = tmp.data();
        if (p2) {
            gemm<T>(false, true, n1 * rows, n2, n2, T(1), tmp.data(), n2, p2, n2, T(0), xp.data(), n2, pool);
            res = xp.data();
        }
        permute(dinp, res, rows, n1, n2, false, pool);
    }
}

// ---- attention -----------------------------------------------------------------------------------------------------

namespace {
void check_attention(int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim) {
    FQ_CHECK(n_seq >= 0 && seq_len > 0 && n_head > 0 && n_head_kv > 0 && head_dim > 0 && n_head % n_head_kv == 0,
             FQ_STATUS_INVALID_ARGUMENT, "attention: bad sizes (n_head=%d n_head_kv=%d head_dim=%d)", n_head, n_head_kv,
             head_dim);
}
}  // namespace

template <typename T>
void attention_forward(T *out, T *lse, const T *q, const T *k, const T *v, int64_t n_seq, int64_t seq_len, int n_head,
                       int n_head_kv, int head_dim, ThreadPool &pool, int64_t block) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    FQ_CHECK(block > 0, FQ_STATUS_INVALID_ARGUMENT, "attention: block %lld", (long long)block);
    const int group = n_head / n_head_kv;
    const int64_t L = seq_len, D = head_dim, qw = int64_t{n_head} * D, kw = int64_t{n_head_kv} * D;
    const T scale = T(1.0 / std::sqrt(static_cast<double>(head_dim)));
    std::vector<T> s(static_cast<size_t>(std::min(block, L) * L));
    for (int64_t b = 0; b < n_seq; b++) {
        for (int h = 0; h < n_head; h++) {
            const int64_t g = h / group;
            const T *qb = q + b * L * qw + h * D, *kb = k + b * L * kw + g * D, *vb = v + b * L * kw + g * D;
            T *lse_bh = lse + (b * n_head + h) * L;
            // Query rows [t0, t1) see keys [0, t1): the block's scores are [t1 - t0][t1] (row stride t1).
            for (int64_t t0 = 0; t0 < L; t0 += block) {
                const int64_t t1 = std::min(L, t0 + block), nq = t1 - t0;
                gemm<T>(false, true, nq, t1, D, scale, qb + t0 * qw, qw, kb, kw, T(0), s.data(), t1, pool);
                par_rows(pool, nq, t1, [&](int64_t i0, int64_t i1, int64_t) {
                    for (int64_t i = i0; i < i1; i++) {
                        const int64_t t = t0 + i;
                        T *row = s.data() + i * t1;
                        T mx = row[0];
                        for (int64_t j = 1; j <= t; j++) mx = std::max(mx, row[j]);
                        double sum = 0.0;
                        for (int64_t j = 0; j <= t; j++) sum += static_cast<double>(row[j] = std::exp(row[j] - mx));
                        const T inv = T(1.0 / sum);
                        for (int64_t j = 0; j <= t; j++) row[j] *= inv;
                        std::fill(row + t + 1, row + t1, T(0));
                        lse_bh[t] = static_cast<T>(static_cast<double>(mx) + std::log(sum));
                    }
                });
                gemm<T>(false, false, nq, D, t1, T(1), s.data(), t1, vb, kw, T(0), out + b * L * qw + t0 * qw + h * D,
                        qw, pool);
            }
        }
    }
}

template <typename T>
void attention_backward(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *out,
                        const T *lse, int64_t n_seq, int64_t seq_len, int n_head, int n_head_kv, int head_dim,
                        ThreadPool &pool, int64_t block) {
    check_attention(n_seq, seq_len, n_head, n_head_kv, head_dim);
    FQ_CHECK(block > 0, FQ_STATUS_INVALID_ARGUMENT, "attention: block %lld", (long long)block);
    const int group = n_head / n_head_kv;
    const int64_t L = seq_len, D = head_dim, qw = int64_t{n_head} * D, kw = int64_t{n_head_kv} * D;
    const T scale = T(1.0 / std::sqrt(static_cast<double>(head_dim)));
    std::fill(dk, dk + n_seq * L * kw, T(0));
    std::fill(dv, dv + n_seq * L * kw, T(0));
    const size_t blk = static_cast<size_t>(std::min(block, L) * L);
    std::vector<T> p(blk), dp(blk);
    for (int64_t b = 0; b < n_seq; b++) {
        for (int h = 0; h < n_head; h++) {
            const int64_t g = h / group;
            const int64_t qo = b * L * qw + h * D, ko = b * L * kw + g * D;
            const T *lse_bh = lse + (b * n_head + h) * L;
            for (int64_t t0 = 0; t0 < L; t0 += block) {
                const int64_t t1 = std::min(L, t0 + block), nq = t1 - t0, qb = qo + t0 * qw;
                gemm<T>(false, true, nq, t1, D, scale, q + qb, qw, k + ko, kw, T(0), p.data(), t1, pool);
                gemm<T>(false, true, nq, t1, D, T(1), dout + qb, qw, v + ko, kw, T(0), dp.data(), t1, pool);
                par_rows(pool, nq, t1, [&](int64_t i0, int64_t i1, int64_t) {
                    for (int64_t i = i0; i < i1; i++) {
                        const int64_t t = t0 + i;
                        T *pr = p.data() + i * t1, *dr = dp.data() + i * t1;
                        double dsum = 0.0;  // sum_j p_j dp_j = dout_t . out_t
                        const T *go = dout + qo + t * qw, *oo = out + qo + t * qw;
                        for (int64_t d = 0; d < D; d++) dsum += static_cast<double>(go[d]) * static_cast<double>(oo[d]);
                        const T ds = static_cast<T>(dsum);
                        for (int64_t j = 0; j <= t; j++) {
                            pr[j] = std::exp(pr[j] - lse_bh[t]);
                            dr[j] = pr[j] * (dr[j] - ds);
                        }
                        std::fill(pr + t + 1, pr + t1, T(0));
                        std::fill(dr + t + 1, dr + t1, T(0));
                    }
                });
                gemm<T>(true, false, t1, D, nq, T(1), p.data(), t1, dout + qb, qw, T(1), dv + ko, kw, pool);
                gemm<T>(false, false, nq, D, t1, scale, dp.data(), t1, k + ko, kw, T(0), dq + qb, qw, pool);
                gemm<T>(true, false, t1, D, nq, scale, dp.data(), t1, q + qb, qw, T(1), dk + ko, kw, pool);
            }
        }
    }
}

// ---- RoPE ----------------------------------------------------------------------------------------------------------

RopeTable rope_table(const ModelConfig &c, const std::vector<float> &freq_factors, int64_t pos0, int64_t n_pos) {
    RopeTable t;
    t.half = c.rope_dim / 2;
    t.mode = c.rope_mode;
    std::vector<float> inv_freq(static_cast<size_t>(t.half));
    for (int i = 0; i < t.half; i++) {
        float f = 1.0f / std::pow(c.rope_freq_base, (float)(2 * i) / (float)c.rope_dim);
        if (!freq_factors.empty()) f /= freq_factors[static_cast<size_t>(i)];
        inv_freq[static_cast<size_t>(i)] = f;
    }
    t.cs.resize(static_cast<size_t>(n_pos * t.half));
    t.sn.resize(t.cs.size());
    for (int64_t p = 0; p < n_pos; p++) {
        const float pos = (float)(pos0 + p);
        for (int i = 0; i < t.half; i++) {
            const float theta = pos * inv_freq[static_cast<size_t>(i)];
            t.cs[static_cast<size_t>(p * t.half + i)] = std::cos(theta);
            t.sn[static_cast<size_t>(p * t.half + i)] = std::sin(theta);
        }
    }
    return t;
}

template <typename T>
void rope_apply(T *x, const int32_t *pos, int64_t rows, int n_head, int head_dim, const RopeTable &tab, bool inverse,
                ThreadPool &pool) {
    const int half = tab.half;
    const int64_t n_pos = half > 0 ? static_cast<int64_t>(tab.cs.size()) / half : 0;
    par_rows(pool, rows, int64_t{n_head} * head_dim, [&](int64_t r0, int64_t r1, int64_t) {
        for (int64_t r = r0; r < r1; r++) {
            FQ_CHECK(pos[r] >= 0 && pos[r] < n_pos, FQ_STATUS_INTERNAL, "rope: position %d outside the table", pos[r]);
            const float *cs = tab.cs.data() + int64_t{pos[r]} * half, *sn = tab.sn.data() + int64_t{pos[r]} * half;
            for (int h = 0; h < n_head; h++) {
                T *v = x + (r * n_head + h) * head_dim;
                for (int i = 0; i < half; i++) {
                    const int a = tab.mode == RopeMode::Normal ? 2 * i : i;
                    const int b = tab.mode == RopeMode::Normal ? 2 * i + 1 : i + half;
                    const T c = static_cast<T>(cs[i]), s = inverse ? -static_cast<T>(sn[i]) : static_cast<T>(sn[i]);
                    const T x0 = v[a], x1 = v[b];
                    v[a] = x0 * c - x1 * s;
                    v[b] = x0 * s + x1 * c;
                }
            }
        }
    });
}

// ---- row-parallel wrappers ------------------------------------------------------------------------------------------

template <typename T>
void act_quant_fwd(T *out, const T *x, const T *lac, int64_t rows, int64_t cols, int bits, bool sym, ThreadPool &pool) {
    if (bits == 16) {
        if (out != x) std::copy_n(x, rows * cols, out);
        return;
    }
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t) {
        act_quant_forward(out + r0 * cols, x + r0 * cols, lac, r1 - r0, cols, bits, sym);
    });
}

template <typename T>
void act_quant_bwd(T *dx, T *dlac, const T *dout, const T *x, const T *lac, int64_t rows, int64_t cols, int bits,
                   bool sym, ThreadPool &pool) {
    if (bits == 16) {
        if (dx && dx != dout) std::copy_n(dout, rows * cols, dx);
        return;
    }
    std::vector<T> part(static_cast<size_t>(2 * n_chunks(pool, rows, cols)), T(0));
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t ch) {
        act_quant_backward(dx ? dx + r0 * cols : nullptr, dlac ? part.data() + 2 * ch : nullptr, dout + r0 * cols,
                           x + r0 * cols, lac, r1 - r0, cols, bits, sym);
    });
    if (dlac) {
        double s0 = 0, s1 = 0;
        for (size_t c = 0; c < part.size(); c += 2) {
            s0 += static_cast<double>(part[c]);
            s1 += static_cast<double>(part[c + 1]);
        }
        dlac[0] = static_cast<T>(static_cast<double>(dlac[0]) + s0);
        dlac[1] = static_cast<T>(static_cast<double>(dlac[1]) + s1);
    }
}

template <typename T>
void channel_scale_fwd(T *out, const T *inp, const T *c, int64_t rows, int64_t cols, ThreadPool &pool) {
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t) {
        channel_scale_forward(out + r0 * cols, inp + r0 * cols, c, r1 - r0, cols);
    });
}

template <typename T>
void channel_scale_bwd(T *dinp, T *dc, const T *dout, const T *inp, const T *c, int64_t rows, int64_t cols,
                       ThreadPool &pool) {
    const int64_t nc = n_chunks(pool, rows, cols);
    std::vector<T> part(dc ? static_cast<size_t>(nc * cols) : 0, T(0));
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t ch) {
        channel_scale_backward(dinp ? dinp + r0 * cols : nullptr, dc ? part.data() + ch * cols : nullptr,
                               dout + r0 * cols, inp + r0 * cols, c, r1 - r0, cols);
    });
    if (!dc) return;
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t ch = 0; ch < nc; ch++) s += static_cast<double>(part[static_cast<size_t>(ch * cols + j)]);
        dc[j] = static_cast<T>(static_cast<double>(dc[j]) + s);
    }
}

template <typename T>
void rmsnorm_fwd(T *out, T *rstd, const T *inp, const T *weight, int64_t rows, int64_t cols, double eps,
                 ThreadPool &pool) {
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t) {
        rmsnorm_forward(out + r0 * cols, rstd + r0, inp + r0 * cols, weight, r1 - r0, cols, eps);
    });
}

template <typename T>
void rmsnorm_bwd(T *dinp, const T *dout, const T *inp, const T *weight, const T *rstd, int64_t rows, int64_t cols,
                 ThreadPool &pool) {
    par_rows(pool, rows, cols, [&](int64_t r0, int64_t r1, int64_t) {
        rmsnorm_backward(dinp + r0 * cols, static_cast<T *>(nullptr), dout + r0 * cols, inp + r0 * cols, weight,
                         rstd + r0, r1 - r0, cols);
    });
}

template <typename T>
void swiglu_fwd(T *out, const T *gate, const T *up, int64_t n, ThreadPool &pool) {
    par_rows(pool, n, 1, [&](int64_t i0, int64_t i1, int64_t) {
        swiglu_forward(out + i0, gate + i0, up + i0, 1, i1 - i0);
    });
}

template <typename T>
void swiglu_bwd(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t n, ThreadPool &pool) {
    par_rows(pool, n, 1, [&](int64_t i0, int64_t i1, int64_t) {
        swiglu_backward(dgate + i0, dup + i0, dout + i0, gate + i0, up + i0, 1, i1 - i0);
    });
}

#define FQ_INSTANTIATE(T)                                                                                             \
    template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T *, int64_t, const T *, int64_t, T, T *,   \
                          int64_t, ThreadPool &);                                                                     \
    template void kron_forward<T>(T *, const T *, const T *, const T *, int64_t, int, int, ThreadPool &);             \
    template void kron_backward<T>(T *, T *, T *, const T *, const T *, const T *, const T *, int64_t, int, int,      \
                                   ThreadPool &);                                                                     \
    template void attention_forward<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, int, int, int,    \
                                       ThreadPool &, int64_t);                                                        \
    template void attention_backward<T>(T *, T *, T *, const T *, const T *, const T *, const T *, const T *,        \
                                        const T *, int64_t, int64_t, int, int, int, ThreadPool &, int64_t);           \
    template void rope_apply<T>(T *, const int32_t *, int64_t, int, int, const RopeTable &, bool, ThreadPool &);      \
    template void act_quant_fwd<T>(T *, const T *, const T *, int64_t, int64_t, int, bool, ThreadPool &);             \
    template void act_quant_bwd<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, int, bool,            \
                                   ThreadPool &);                                                                     \
    template void channel_scale_fwd<T>(T *, const T *, const T *, int64_t, int64_t, ThreadPool &);                    \
    template void channel_scale_bwd<T>(T *, T *, const T *, const T *, const T *, int64_t, int64_t, ThreadPool &);    \
    template void rmsnorm_fwd<T>(T *, T *, const T *, const T *, int64_t, int64_t, double, ThreadPool &);             \
    template void rmsnorm_bwd<T>(T *, const T *, const T *, const T *, const T *, int64_t, int64_t, ThreadPool &);    \
    template void swiglu_fwd<T>(T *, const T *, const T *, int64_t, ThreadPool &);                                    \
    template void swiglu_bwd<T>(T *, T *, const T *, const T *, const T *, int64_t, ThreadPool &);
FQ_INSTANTIATE(float)
FQ_INSTANTIATE(double)
#undef FQ_INSTANTIATE

}  // namespace fq::quant::fast
