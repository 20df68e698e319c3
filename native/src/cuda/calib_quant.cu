// Fake quantizers and learnable clipping of FlatQuant calibration on the GPU, forward and backward (declared in
// calib_ops.h; the CPU ops and their gradient conventions are in quant/fake_quant.h).
//
// One thread block per row. The row statistics (extrema, scale, zero point) are computed with the CPU op's float
// operations in its order, and the clipping sigmoids come from the host in double, so for the same input every
// code equals the CPU op's. Gradient sums over a row run in double in block order; the per-row LAC contributions
// are written out and summed by one block in row order, so the logit gradients are reproducible.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/calib_device.h"
#include "cuda/calib_ops.h"

namespace fq::cuda::calib {

using dev::as_stream;
using dev::block_extrema;
using dev::block_sum;
using dev::check_rows;
using dev::dsign;
using dev::Extrema;
using dev::max_share;
using dev::row_threads;
using dev::smax;
using dev::smin;

namespace {

void check_bits(int bits) {
    FQ_CHECK((bits >= 2 && bits <= 8) || bits == 16, FQ_STATUS_INVALID_ARGUMENT,
             "quantizer bits must be 2..8 or 16 (off), got %d", bits);
}

// The scale and zero point of one activation row (fake_quant.cpp act_row_params).
struct ActRow {
    float amax, amin, xmax0, xmin0, xmax, xmin, s, z;
    bool scale_has_grad;
};

__device__ ActRow act_row(float amax, float amin, bool lac, double sig_max, double sig_min, bool sym, int qmax) {
    ActRow p;
    p.amax = amax;
    p.amin = amin;
    p.xmax0 = smax(amax, 0.0f);
    p.xmin0 = smin(amin, 0.0f);
    p.xmax = p.xmax0;
    p.xmin = p.xmin0;
    if (lac) {
        p.xmax = __fmul_rn(p.xmax0, static_cast<float>(sig_max));
        p.xmin = __fmul_rn(p.xmin0, static_cast<float>(sig_min));
    }
    p.scale_has_grad = true;
    p.z = 0.0f;
    if (sym) {
        const float m = smax(fabsf(p.xmin), p.xmax);
        if (m == 0.0f) {
            p.s = 1.0f;
            p.scale_has_grad = false;
        } else {
            p.s = __fdiv_rn(m, static_cast<float>(qmax));
        }
    } else {
        if (p.xmin == 0.0f && p.xmax == 0.0f) {
            p.xmin = -1.0f;
            p.xmax = 1.0f;
            p.scale_has_grad = false;
        }
        p.s = __fdiv_rn(__fsub_rn(p.xmax, p.xmin), static_cast<float>(qmax));
        p.z = rintf(__fdiv_rn(-p.xmin, p.s));
    }
    return p;
}

// grid (rows), block (row_threads). x/out [rows][cols].
__global__ void act_quant_fwd_kernel(float *out, const float *x, bool lac, double sig_max, double sig_min, int cols,
                                     int bits, bool sym) {
    __shared__ Extrema scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = x + r * cols;
    const int qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    const float qlo = sym ? static_cast<float>(-(qmax + 1)) : 0.0f, qhi = static_cast<float>(qmax);
    const Extrema e = block_extrema(row, cols, scratch);
    const ActRow p = act_row(e.vmax, e.vmin, lac, sig_max, sig_min, sym, qmax);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float q = smin(smax(__fadd_rn(rintf(__fdiv_rn(row[j], p.s)), p.z), qlo), qhi);
        out[r * cols + j] = __fmul_rn(p.s, __fsub_rn(q, p.z));
    }
}

// Per row: dx, and (when dlac_rows) the row's LAC gradient pair dlac_rows[r] = {d logit_max, d logit_min}.
__global__ void act_quant_bwd_kernel(float *dx, bool accumulate, double2 *dlac_rows, const float *dout, const float *x,
                                     bool lac, double sig_max, double sig_min, int cols, int bits, bool sym) {
    __shared__ Extrema ext_scratch[33];
    __shared__ double sum_scratch[33];
    __shared__ int count_scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = x + r * cols, *g = dout + r * cols;
    const int qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    const float qlo = sym ? static_cast<float>(-(qmax + 1)) : 0.0f, qhi = static_cast<float>(qmax);
    const Extrema e = block_extrema(row, cols, ext_scratch);
    const ActRow p = act_row(e.vmax, e.vmin, lac, sig_max, sig_min, sym, qmax);
    double gs = 0.0;
    int n_max = 0, n_min = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = __fdiv_rn(row[j], p.s);
        const float qz = __fadd_rn(rintf(v), p.z);
        const bool inside = qz >= qlo && qz <= qhi;
        const float q = smin(smax(qz, qlo), qhi);
        gs += static_cast<double>(g[j]) *
              (static_cast<double>(__fsub_rn(q, p.z)) - (inside ? static_cast<double>(v) : 0.0));
        n_max += row[j] == p.amax;
        n_min += row[j] == p.amin;
    }
    gs = block_sum(gs, sum_scratch);
    n_max = block_sum(n_max, count_scratch);
    n_min = block_sum(n_min, count_scratch);
    double g_amax = 0.0, g_amin = 0.0, d_lmax = 0.0, d_lmin = 0.0;
    if (p.scale_has_grad) {
        double g_xmax, g_xmin;
        if (sym) {
            const double gm = gs / qmax;
            const double ax = fabs(static_cast<double>(p.xmin)), xm = static_cast<double>(p.xmax);
            g_xmax = gm * max_share(xm, ax);
            g_xmin = gm * max_share(ax, xm) * dsign(static_cast<double>(p.xmin));
        } else {
            g_xmax = gs / qmax;
            g_xmin = -gs / qmax;
        }
        const double smx = lac ? sig_max : 1.0, smn = lac ? sig_min : 1.0;
        d_lmax = g_xmax * static_cast<double>(p.xmax0) * smx * (1.0 - smx);
        d_lmin = g_xmin * static_cast<double>(p.xmin0) * smn * (1.0 - smn);
        g_amax = g_xmax * smx * max_share(static_cast<double>(p.amax), 0.0);
        g_amin = g_xmin * smn * max_share(-static_cast<double>(p.amin), 0.0);
    }
    if (dlac_rows && threadIdx.x == 0) dlac_rows[r] = make_double2(d_lmax, d_lmin);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = __fdiv_rn(row[j], p.s);
        const float qz = __fadd_rn(rintf(v), p.z);
        const bool inside = qz >= qlo && qz <= qhi;
        float val = inside ? g[j] : 0.0f;
        if (p.scale_has_grad) {
            double add = 0.0;
            if (row[j] == p.amax) add += g_amax / static_cast<double>(n_max);
            if (row[j] == p.amin) add += g_amin / static_cast<double>(n_min);
            if (add != 0.0) val = static_cast<float>(static_cast<double>(val) + add);
        }
        float *d = dx + r * cols + j;
        *d = accumulate ? __fadd_rn(*d, val) : val;
    }
}

// One block: dlac[0..1] += sum over rows (in order per thread, then the block sum) of dlac_rows.
__global__ void dlac_sum_kernel(float *dlac, const double2 *dlac_rows, int64_t rows) {
    __shared__ double scratch[33];
    double a = 0.0, b = 0.0;
    for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
        a += dlac_rows[i].x;
        b += dlac_rows[i].y;
    }
    a = block_sum(a, scratch);
    b = block_sum(b, scratch);
    if (threadIdx.x == 0) {
        dlac[0] = static_cast<float>(static_cast<double>(dlac[0]) + a);
        dlac[1] = static_cast<float>(static_cast<double>(dlac[1]) + b);
    }
}

// ---- weights -------------------------------------------------------------------------------------------------------

struct WeightRow {
    float xmax, xmin, m0, s;
};

__device__ WeightRow weight_row(const Extrema &e, int qmax) {
    WeightRow p;
    p.xmax = smax(e.vmax, 0.0f);
    p.xmin = smin(e.vmin, 0.0f);
    p.m0 = smax(fabsf(p.xmin), p.xmax);
    p.s = __fdiv_rn(smax(p.m0, 1e-5f), static_cast<float>(qmax));
    return p;
}

__global__ void weight_quant_fwd_kernel(float *out, const float *w, int cols, int bits) {
    __shared__ Extrema scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = w + r * cols;
    const int qmax = (1 << (bits - 1)) - 1;
    const float qlo = static_cast<float>(-(qmax + 1)), qhi = static_cast<float>(qmax);
    const WeightRow p = weight_row(block_extrema(row, cols, scratch), qmax);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float q = smin(smax(rintf(__fdiv_rn(row[j], p.s)), qlo), qhi);
        out[r * cols + j] = __fmul_rn(p.s, q);
    }
}

__global__ void weight_quant_bwd_kernel(float *dw, const float *dout, const float *w, int cols, int bits) {
    __shared__ Extrema ext_scratch[33];
    __shared__ double sum_scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = w + r * cols, *g = dout + r * cols;
    float *d = dw + r * cols;
    const int qmax = (1 << (bits - 1)) - 1;
    const float qlo = static_cast<float>(-(qmax + 1)), qhi = static_cast<float>(qmax);
    const Extrema e = block_extrema(row, cols, ext_scratch);
    const WeightRow p = weight_row(e, qmax);
    double gs = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = __fdiv_rn(row[j], p.s);
        const float rq = rintf(v);
        const bool inside = rq >= qlo && rq <= qhi;
        const float q = smin(smax(rq, qlo), qhi);
        gs += static_cast<double>(g[j]) * (static_cast<double>(q) - (inside ? static_cast<double>(v) : 0.0));
        d[j] = inside ? g[j] : 0.0f;
    }
    gs = block_sum(gs, sum_scratch);  // ends with a barrier: every d[j] above is written and visible
    if (threadIdx.x != 0 || !(p.m0 >= 1e-5f)) return;
    const double gm = gs / qmax;
    const double ax = fabs(static_cast<double>(p.xmin)), xm = static_cast<double>(p.xmax);
    const double g_xmax = gm * max_share(xm, ax);
    const double g_xmin = gm * max_share(ax, xm) * dsign(static_cast<double>(p.xmin));
    const double g_vmax = g_xmax * max_share(static_cast<double>(e.vmax), 0.0);
    const double g_vmin = g_xmin * max_share(-static_cast<double>(e.vmin), 0.0);
    d[e.imax] = static_cast<float>(static_cast<double>(d[e.imax]) + g_vmax);
    d[e.imin] = static_cast<float>(static_cast<double>(d[e.imin]) + g_vmin);
}

// ---- LWC -----------------------------------------------------------------------------------------------------------

__global__ void lwc_fwd_kernel(float *out, const float *w, const double *sig, int64_t rows, int cols) {
    __shared__ Extrema scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = w + r * cols;
    const Extrema e = block_extrema(row, cols, scratch);
    const float hi = __fmul_rn(e.vmax, static_cast<float>(sig[r]));
    const float lo = __fmul_rn(e.vmin, static_cast<float>(sig[rows + r]));
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[r * cols + j] = smin(smax(row[j], lo), hi);
}

__global__ void lwc_bwd_kernel(float *dw, float *dclip, const float *dout, const float *w, const double *sig,
                               int64_t rows, int cols) {
    __shared__ Extrema ext_scratch[33];
    __shared__ double sum_scratch[33];
    const int64_t r = blockIdx.x;
    const float *row = w + r * cols, *g = dout + r * cols;
    const Extrema e = block_extrema(row, cols, ext_scratch);
    const double sig_hi = sig[r], sig_lo = sig[rows + r];
    const float hi = __fmul_rn(e.vmax, static_cast<float>(sig_hi));
    const float lo = __fmul_rn(e.vmin, static_cast<float>(sig_lo));
    double g_hi = 0.0, g_lo = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = row[j];
        const bool pass = v >= lo && v <= hi;
        if (v < lo && lo < hi) g_lo += static_cast<double>(g[j]);
        if (v > hi || hi < lo) g_hi += static_cast<double>(g[j]);
        if (dw) dw[r * cols + j] = pass ? g[j] : 0.0f;
    }
    g_hi = block_sum(g_hi, sum_scratch);
    g_lo = block_sum(g_lo, sum_scratch);
    if (threadIdx.x != 0) return;
    if (dw) {
        float *d = dw + r * cols;
        d[e.imax] = static_cast<float>(static_cast<double>(d[e.imax]) + g_hi * sig_hi);
        d[e.imin] = static_cast<float>(static_cast<double>(d[e.imin]) + g_lo * sig_lo);
    }
    if (dclip) {
        dclip[r] = static_cast<float>(static_cast<double>(dclip[r]) +
                                      g_hi * static_cast<double>(e.vmax) * sig_hi * (1.0 - sig_hi));
        dclip[rows + r] = static_cast<float>(static_cast<double>(dclip[rows + r]) +
                                             g_lo * static_cast<double>(e.vmin) * sig_lo * (1.0 - sig_lo));
    }
}

}  // namespace

void act_quant_fwd(float *out, const float *x, const double *lac_sig, int64_t rows, int64_t cols, int bits, bool sym,
                   void *stream) {
    check_bits(bits);
    check_rows(rows, cols, "act_quant_fwd");
    if (bits == 16) {
        copy(out, x, rows * cols, false, stream);
        return;
    }
    if (rows == 0) return;
    const bool lac = lac_sig != nullptr;
    act_quant_fwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        out, x, lac, lac ? lac_sig[0] : 1.0, lac ? lac_sig[1] : 1.0, static_cast<int>(cols), bits, sym);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void act_quant_bwd(float *dx, bool accumulate, float *dlac, const float *dout, const float *x, const double *lac_sig,
                   int64_t rows, int64_t cols, int bits, bool sym, Workspace &ws, void *stream) {
    check_bits(bits);
    check_rows(rows, cols, "act_quant_bwd");
    FQ_CHECK(!(dlac && !lac_sig), FQ_STATUS_INVALID_ARGUMENT, "act_quant_bwd: dlac given without lac");
    FQ_CHECK(!(accumulate && dx == dout), FQ_STATUS_INVALID_ARGUMENT, "act_quant_bwd: accumulate into dout");
    if (bits == 16) {
        if (dx && dx != dout) copy(dx, dout, rows * cols, accumulate, stream);
        return;
    }
    if (rows == 0) return;
    FQ_CHECK(dx != nullptr, FQ_STATUS_INVALID_ARGUMENT, "act_quant_bwd: dx is required");
    double2 *dlac_rows = dlac ? ws.get_as<double2>(static_cast<size_t>(rows), stream) : nullptr;
    const bool lac = lac_sig != nullptr;
    act_quant_bwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        dx, accumulate, dlac_rows, dout, x, lac, lac ? lac_sig[0] : 1.0, lac ? lac_sig[1] : 1.0, static_cast<int>(cols),
        bits, sym);
    FQ_CUDA_CHECK(cudaGetLastError());
    if (dlac) {
        dlac_sum_kernel<<<1, 1024, 0, as_stream(stream)>>>(dlac, dlac_rows, rows);
        FQ_CUDA_CHECK(cudaGetLastError());
    }
}

void weight_quant_fwd(float *out, const float *w, int64_t rows, int64_t cols, int bits, void *stream) {
    check_bits(bits);
    check_rows(rows, cols, "weight_quant_fwd");
    if (bits == 16) {
        copy(out, w, rows * cols, false, stream);
        return;
    }
    if (rows == 0) return;
    weight_quant_fwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        out, w, static_cast<int>(cols), bits);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void weight_quant_bwd(float *dw, const float *dout, const float *w, int64_t rows, int64_t cols, int bits,
                      void *stream) {
    check_bits(bits);
    check_rows(rows, cols, "weight_quant_bwd");
    FQ_CHECK(dw != dout || bits == 16, FQ_STATUS_INVALID_ARGUMENT, "weight_quant_bwd: dw aliases dout");
    if (bits == 16) {
        copy(dw, dout, rows * cols, false, stream);
        return;
    }
    if (rows == 0) return;
    weight_quant_bwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        dw, dout, w, static_cast<int>(cols), bits);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void lwc_fwd(float *out, const float *w, const double *sig, int64_t rows, int64_t cols, void *stream) {
    check_rows(rows, cols, "lwc_fwd");
    if (rows == 0) return;
    lwc_fwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(out, w, sig, rows,
                                                                                           static_cast<int>(cols));
    FQ_CUDA_CHECK(cudaGetLastError());
}

void lwc_bwd(float *dw, float *dclip, const float *dout, const float *w, const double *sig, int64_t rows,
             int64_t cols, void *stream) {
    check_rows(rows, cols, "lwc_bwd");
    FQ_CHECK(dw != dout, FQ_STATUS_INVALID_ARGUMENT, "lwc_bwd: dw aliases dout");
    if (rows == 0) return;
    lwc_bwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        dw, dclip, dout, w, sig, rows, static_cast<int>(cols));
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda::calib
