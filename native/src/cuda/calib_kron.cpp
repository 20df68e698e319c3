// Kronecker transforms of FlatQuant calibration on the GPU and the split-k parameter-gradient products (declared in
// calib_ops.h). The structure is fast_ops.cpp's kron_forward / kron_backward step for step: in the permuted layout
// Xp [n1][rows*n2] the left factor is one product P1^T Xp, and the right factor one product over n1*rows rows of n2,
// so everything runs as a few large fq::cuda::gemm_f32 calls plus two layout passes.
#include <algorithm>

#include "core/error.h"
#include "cuda/calib_ops.h"
#include "cuda/gemm_f32.h"

namespace fq::cuda::calib {

namespace {

// Split-k: each part covers kChunkTarget..2*kChunkTarget of k, at most kMaxParts parts; a product with a short k is
// one part. The partition depends only on k.
constexpr int64_t kChunkTarget = 2048;
constexpr int64_t kMaxParts = 256;

int64_t split_parts(int64_t k) { return std::min(kMaxParts, std::max<int64_t>(1, k / kChunkTarget)); }

// Writes the partial products of c = op(A) op(B) over the k chunks into parts [n_written][m][n]; returns n_written.
int64_t gemm_partials(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                      int64_t ldb, float *parts, void *stream) {
    const int64_t want = split_parts(k), chunk = (k + want - 1) / want, full = k / chunk, rest = k - full * chunk;
    // Moving along k: columns of A (rows of A^T's storage when transposed), rows of B (columns when transposed).
    const int64_t step_a = ta ? chunk * lda : chunk, step_b = tb ? chunk : chunk * ldb;
    if (full > 0) {
        gemm_f32_batched(ta, tb, m, n, chunk, 1.0f, a, lda, step_a, b, ldb, step_b, 0.0f, parts, n, m * n, full,
                         stream);
    }
    if (rest > 0) {
        gemm_f32(ta, tb, m, n, rest, 1.0f, a + full * step_a, lda, b + full * step_b, ldb, 0.0f, parts + full * m * n,
                 n, stream);
    }
    return full + (rest > 0 ? 1 : 0);
}

void check_kron(int64_t rows, int n1, int n2) {
    FQ_CHECK(rows >= 0 && n1 > 0 && n2 > 0, FQ_STATUS_INVALID_ARGUMENT, "kron: bad sizes rows=%lld n1=%d n2=%d",
             (long long)rows, n1, n2);
}

}  // namespace

void gemm_accumulate(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float *c, Workspace &ws, void *stream) {
    FQ_CHECK(m >= 0 && n >= 0 && k >= 0, FQ_STATUS_INVALID_ARGUMENT, "gemm_accumulate: bad sizes");
    if (m == 0 || n == 0 || k == 0) return;
    float *parts = ws.get_as<float>(static_cast<size_t>(split_parts(k) + 1) * m * n, stream);
    const int64_t n_parts = gemm_partials(trans_a, trans_b, m, n, k, a, lda, b, ldb, parts, stream);
    sum_partials(c, parts, n_parts, m * n, stream);
}

void kron_fwd(float *out, const float *inp, const float *p1, const float *p2, int64_t rows, int n1, int n2,
              Workspace &ws, void *stream) {
    check_kron(rows, n1, n2);
    const int64_t n = int64_t{n1} * n2, total = rows * n;
    if (rows == 0) return;
    if (!p1 && !p2) {
        copy(out, inp, total, false, stream);
        return;
    }
    if (!p1) {  // one product over all (row, i) blocks: [rows*n1][n2] x P2
        float *dst = out == inp ? ws.get_as<float>(static_cast<size_t>(total), stream) : out;
        gemm_f32(false, false, rows * n1, n2, n2, 1.0f, inp, n2, p2, n2, 0.0f, dst, n2, stream);
        copy(out, dst, total, false, stream);
        return;
    }
    float *xp = ws.get_as<float>(2 * static_cast<size_t>(total), stream), *ap = xp + total;
    const int64_t wide = rows * n2;
    kron_permute(xp, inp, rows, n1, n2, true, stream);
    gemm_f32(true, false, n1, wide, n1, 1.0f, p1, n1, xp, wide, 0.0f, ap, wide, stream);
    if (p2) {
        gemm_f32(false, false, n1 * rows, n2, n2, 1.0f, ap, n2, p2, n2, 0.0f, xp, n2, stream);
        kron_permute(out, xp, rows, n1, n2, false, stream);
    } else {
        kron_permute(out, ap, rows, n1, n2, false, stream);
    }
}

void kron_bwd(float *dinp, float *dp1, float *dp2, const float *dout, const float *inp, const float *p1,
              const float *p2, int64_t rows, int n1, int n2, Workspace &ws, void *stream) {
    check_kron(rows, n1, n2);
    FQ_CHECK(!(dp1 && !p1) && !(dp2 && !p2), FQ_STATUS_INVALID_ARGUMENT,
             "kron_bwd: a gradient was requested for an identity factor");
    const int64_t n = int64_t{n1} * n2, total = rows * n;
    if (rows == 0) return;
    if (!p1 && !p2) {
        if (dinp) copy(dinp, dout, total, false, stream);
        return;
    }
    const int64_t k_max = std::max(rows * n1, rows * n2), nn = std::max<int64_t>(int64_t{n1} * n1, int64_t{n2} * n2);
    const size_t part_floats = static_cast<size_t>(split_parts(k_max) + 1) * nn;
    if (!p1) {
        float *tmp = ws.get_as<float>(static_cast<size_t>(total) + part_floats, stream), *parts = tmp + total;
        if (dp2) {  // dP2 += X^T G over all rows*n1 blocks of n2
            const int64_t np = gemm_partials(true, false, n2, n2, rows * n1, inp, n2, dout, n2, parts, stream);
            sum_partials(dp2, parts, np, int64_t{n2} * n2, stream);
        }
        if (dinp) {
            gemm_f32(false, true, rows * n1, n2, n2, 1.0f, dout, n2, p2, n2, 0.0f, tmp, n2, stream);
            copy(dinp, tmp, total, false, stream);
        }
        return;
    }
    const int64_t wide = rows * n2;  // columns of the permuted layout
    float *xp = ws.get_as<float>(3 * static_cast<size_t>(total) + part_floats, stream);
    float *gp = xp + total, *tmp = gp + total, *parts = tmp + total;
    kron_permute(xp, inp, rows, n1, n2, true, stream);
    kron_permute(gp, dout, rows, n1, n2, true, stream);
    if (dp1) {  // dP1 += Zp Gp^T with Zp = Xp P2
        const float *zp = xp;
        if (p2) {
            gemm_f32(false, false, n1 * rows, n2, n2, 1.0f, xp, n2, p2, n2, 0.0f, tmp, n2, stream);
            zp = tmp;
        }
        const int64_t np = gemm_partials(false, true, n1, n1, wide, zp, wide, gp, wide, parts, stream);
        sum_partials(dp1, parts, np, int64_t{n1} * n1, stream);
    }
    if (dp2) {  // dP2 += Wp^T Gp over n1*rows rows, Wp = P1^T Xp
        gemm_f32(true, false, n1, wide, n1, 1.0f, p1, n1, xp, wide, 0.0f, tmp, wide, stream);
        const int64_t np = gemm_partials(true, false, n2, n2, n1 * rows, tmp, n2, gp, n2, parts, stream);
        sum_partials(dp2, parts, np, int64_t{n2} * n2, stream);
    }
    if (dinp) {  // dX = P1 G P2^T
        gemm_f32(false, false, n1, wide, n1, 1.0f, p1, n1, gp, wide, 0.0f, tmp, wide, stream);
        const float *res = tmp;
        if (p2) {
            gemm_f32(false, true, n1 * rows, n2, n2, 1.0f, tmp, n2, p2, n2, 0.0f, xp, n2, stream);
            res = xp;
        }
        kron_permute(dinp, res, rows, n1, n2, false, stream);
    }
}

}  // namespace fq::cuda::calib
