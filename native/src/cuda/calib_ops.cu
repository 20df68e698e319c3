// Elementwise, row and column ops of FlatQuant calibration on the GPU (declared in calib_ops.h).
//
// Row ops run one thread block per row (row_threads(cols) threads); column reductions run a (32 columns) x (8 row
// lanes) block per column strip and row split, writing double partials [split][cols] that one more kernel sums in
// split order. Both partitions depend only on the sizes, which makes every sum reproducible.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/calib_device.h"
#include "cuda/calib_ops.h"

namespace fq::cuda::calib {

using dev::as_stream;
using dev::block_sum;
using dev::check_rows;
using dev::grid_1d;
using dev::row_threads;

void *Workspace::get(size_t n_bytes, void *stream) {
    if (n_bytes > buf_.n_bytes()) {
        FQ_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
        buf_ = DeviceBuffer();
        // Some headroom, so that slowly growing requests do not reallocate at every call.
        buf_ = DeviceBuffer(n_bytes + n_bytes / 8);
    }
    return buf_.data();
}

namespace {

constexpr int kThreads = 256;

// ---- copies --------------------------------------------------------------------------------------------------------

__global__ void copy_kernel(float *dst, const float *src, int64_t n, bool accumulate) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        dst[i] = accumulate ? dst[i] + src[i] : src[i];
    }
}

// y [rows][cols] += bias [cols]
__global__ void add_bias_kernel(float *y, const float *bias, int64_t n, int64_t cols) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        y[i] += bias[i % cols];
    }
}

// ---- RMSNorm -------------------------------------------------------------------------------------------------------

// grid (rows), block (row_threads). out/inp [rows][cols], rstd [rows], weight [cols].
__global__ void rmsnorm_fwd_kernel(float *out, float *rstd, const float *inp, const float *weight, int cols,
                                   double eps) {
    __shared__ double scratch[33];
    const int64_t r = blockIdx.x;
    const float *x = inp + r * cols;
    double ss = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) ss += static_cast<double>(x[j]) * static_cast<double>(x[j]);
    ss = block_sum(ss, scratch);
    const double rs = 1.0 / sqrt(ss / static_cast<double>(cols) + eps);
    if (threadIdx.x == 0) rstd[r] = static_cast<float>(rs);
    float *y = out + r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        y[j] = __fmul_rn(static_cast<float>(static_cast<double>(x[j]) * rs), weight[j]);
    }
}

// dinp = rstd * (dout*w - xhat * mean(dout*w*xhat)), xhat = x * rstd, in double (layer_ops.h rmsnorm_backward).
__global__ void rmsnorm_bwd_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                   const float *rstd, int cols, bool accumulate) {
    __shared__ double scratch[33];
    const int64_t r = blockIdx.x;
    const float *x = inp + r * cols, *g = dout + r * cols;
    const double rs = static_cast<double>(rstd[r]);
    double dot = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        dot += static_cast<double>(g[j]) * static_cast<double>(weight[j]) * static_cast<double>(x[j]) * rs;
    }
    const double mean_dot = block_sum(dot, scratch) / static_cast<double>(cols);
    float *d = dinp + r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        const double xhat = static_cast<double>(x[j]) * rs;
        const double dxhat = static_cast<double>(g[j]) * static_cast<double>(weight[j]);
        const float v = static_cast<float>(rs * (dxhat - xhat * mean_dot));
        d[j] = accumulate ? d[j] + v : v;
    }
}

// ---- per-channel scales ---------------------------------------------------------------------------------------------

// out = inp * c[j] (scale) or w / c[j] (unscale); dinp = dout * c or dout / c likewise.
__global__ void channel_kernel(float *out, const float *inp, const float *c, int64_t n, int64_t cols, bool divide) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const float cj = c[i % cols];
        out[i] = divide ? __fdiv_rn(inp[i], cj) : __fmul_rn(inp[i], cj);
    }
}

enum ColMode : int { kColDot = 0, kColSum = 1, kColAbsMax = 2 };
enum ColFinal : int { kAddTo = 0, kSubOverSquare = 1, kMaxTo = 2, kStoreDouble = 3 };

constexpr int kColLanes = 8;

// grid (ceil(cols/32), n_split), block (32, kColLanes). part [n_split][cols] (double).
// Dot: sum a*b; Sum: sum a; AbsMax: max |a|.
__global__ void column_partial_kernel(double *part, const float *a, const float *b, int64_t rows, int cols,
                                      int64_t rows_per_split, int mode) {
    __shared__ double s[kColLanes][33];
    const int j = blockIdx.x * 32 + threadIdx.x;
    const int64_t r0 = blockIdx.y * rows_per_split;
    const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
    double acc = 0.0;
    if (j < cols) {
        for (int64_t r = r0 + threadIdx.y; r < r1; r += kColLanes) {
            const double v = static_cast<double>(a[r * cols + j]);
            if (mode == kColDot) {
                acc += v * static_cast<double>(b[r * cols + j]);
            } else if (mode == kColSum) {
                acc += v;
            } else {
                acc = fmax(acc, fabs(v));
            }
        }
    }
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double t = s[0][threadIdx.x];
        for (int y = 1; y < kColLanes; y++) t = mode == kColAbsMax ? fmax(t, s[y][threadIdx.x]) : t + s[y][threadIdx.x];
        part[blockIdx.y * int64_t{cols} + j] = t;
    }
}

// Sums (or maxes) the partials of column j in split order and applies the final op.
__global__ void column_final_kernel(float *dst_f, double *dst_d, const float *c, const double *part, int n_split,
                                    int cols, int mode, int final_op) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double t = part[j];
    for (int s = 1; s < n_split; s++) {
        const double v = part[int64_t{s} * cols + j];
        t = mode == kColAbsMax ? fmax(t, v) : t + v;
    }
    if (final_op == kAddTo) {
        dst_f[j] = static_cast<float>(static_cast<double>(dst_f[j]) + t);
    } else if (final_op == kSubOverSquare) {
        const double cj = static_cast<double>(c[j]);
        dst_f[j] = static_cast<float>(static_cast<double>(dst_f[j]) - t / (cj * cj));
    } else if (final_op == kMaxTo) {
        dst_f[j] = dst_f[j] < static_cast<float>(t) ? static_cast<float>(t) : dst_f[j];
    } else {
        dst_d[j] = t;
    }
}

void column_reduce(float *dst_f, double *dst_d, const float *c, const float *a, const float *b, int64_t rows,
                   int64_t cols, int mode, int final_op, Workspace &ws, void *stream) {
    check_rows(rows, cols, "column reduction");
    if (rows == 0) return;
    const int64_t n_split = std::min<int64_t>(128, std::max<int64_t>(1, (rows + 63) / 64));
    const int64_t per = (rows + n_split - 1) / n_split;
    double *part = ws.get_as<double>(static_cast<size_t>(n_split * cols), stream);
    const dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>(n_split));
    column_partial_kernel<<<grid, dim3(32, kColLanes), 0, as_stream(stream)>>>(part, a, b, rows, static_cast<int>(cols),
                                                                             per, mode);
    FQ_CUDA_CHECK(cudaGetLastError());
    column_final_kernel<<<static_cast<unsigned>((cols + kThreads - 1) / kThreads), kThreads, 0, as_stream(stream)>>>(
        dst_f, dst_d, c, part, static_cast<int>(n_split), static_cast<int>(cols), mode, final_op);
    FQ_CUDA_CHECK(cudaGetLastError());
}

// ---- RoPE, SwiGLU ---------------------------------------------------------------------------------------------------

// One thread per rotated pair. The products and sums round separately, as on the CPU (no FMA contraction).
__global__ void rope_kernel(float *x, int64_t rows, int n_head, int head_dim, int half, bool neox, const float *cs,
                            const float *sn, int64_t seq_len, bool inverse) {
    const int64_t n = rows * n_head * half;
    for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
         idx += int64_t{gridDim.x} * blockDim.x) {
        const int i = static_cast<int>(idx % half);
        const int64_t t = idx / half;
        const int h = static_cast<int>(t % n_head);
        const int64_t r = t / n_head, pos = r % seq_len;
        const float c = cs[pos * half + i], s = inverse ? -sn[pos * half + i] : sn[pos * half + i];
        float *v = x + (r * n_head + h) * head_dim;
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
}

__global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const double g = static_cast<double>(gate[i]);
        out[i] = static_cast<float>(g / (1.0 + exp(-g)) * static_cast<double>(up[i]));
    }
}

__global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                  int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const double g = static_cast<double>(gate[i]), u = static_cast<double>(up[i]), d = static_cast<double>(dout[i]);
        const double sg = 1.0 / (1.0 + exp(-g));
        dgate[i] = static_cast<float>(d * u * sg * (1.0 + g * (1.0 - sg)));
        dup[i] = static_cast<float>(d * g * sg);
    }
}

// ---- MSE -----------------------------------------------------------------------------------------------------------

// grid (G), block (kThreads): part[block] = sum over its grid-stride slice of (pred - target)^2 in double.
__global__ void mse_partial_kernel(double *part, const float *pred, const float *target, int64_t n) {
    __shared__ double scratch[33];
    double acc = 0.0;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
        acc += d * d;
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// One block: out[0] = sum of part[0..n_part) (strided per thread, then the block sum).
__global__ void sum_doubles_kernel(double *out, const double *part, int n_part) {
    __shared__ double scratch[33];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n_part; i += blockDim.x) acc += part[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = acc;
}

__global__ void mse_bwd_kernel(float *dpred, const float *pred, const float *target, int64_t n, double scale) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        dpred[i] = static_cast<float>(scale * (static_cast<double>(pred[i]) - static_cast<double>(target[i])));
    }
}

// ---- Kronecker layout, partial sums ------------------------------------------------------------------------------

// to_p: dst [n1][rows][n2] <- src [rows][n1][n2]; else the inverse. grid (ceil(rows / rows_per_block), n1): block
// (x, i) moves the n2-long runs of rows [x * rows_per_block, ...) at position i, contiguous on both sides.
__global__ void permute_kernel(float *dst, const float *src, int64_t rows, int n1, int n2, int rows_per_block,
                               bool to_p) {
    const int i = blockIdx.y;
    const int64_t r0 = int64_t{blockIdx.x} * rows_per_block;
    const int n_rows = static_cast<int>(rows - r0 < rows_per_block ? rows - r0 : rows_per_block);
    const int n = n_rows * n2;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const int rr = e / n2, j = e - rr * n2;
        const int64_t a = ((r0 + rr) * n1 + i) * n2 + j, p = (int64_t{i} * rows + r0 + rr) * n2 + j;
        if (to_p) {
            dst[p] = src[a];
        } else {
            dst[a] = src[p];
        }
    }
}

__global__ void sum_partials_kernel(float *c, const float *parts, int64_t n_parts, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        double s = 0.0;
        for (int64_t p = 0; p < n_parts; p++) s += static_cast<double>(parts[p * n + i]);
        c[i] = static_cast<float>(static_cast<double>(c[i]) + s);
    }
}

}  // namespace

// ---- host wrappers -------------------------------------------------------------------------------------------------

void copy(float *dst, const float *src, int64_t n, bool accumulate, void *stream) {
    if (n <= 0 || dst == src) return;
    copy_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(dst, src, n, accumulate);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void add_bias(float *y, const float *bias, int64_t rows, int64_t cols, void *stream) {
    check_rows(rows, cols, "add_bias");
    if (rows == 0) return;
    add_bias_kernel<<<grid_1d(rows * cols, kThreads), kThreads, 0, as_stream(stream)>>>(y, bias, rows * cols, cols);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                 double eps, void *stream) {
    check_rows(rows, cols, "rmsnorm_fwd");
    if (rows == 0) return;
    rmsnorm_fwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        out, rstd, inp, weight, static_cast<int>(cols), eps);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_bwd(float *dinp, const float *dout, const float *inp, const float *weight, const float *rstd,
                 int64_t rows, int64_t cols, bool accumulate, void *stream) {
    check_rows(rows, cols, "rmsnorm_bwd");
    if (rows == 0) return;
    rmsnorm_bwd_kernel<<<static_cast<unsigned>(rows), row_threads(cols), 0, as_stream(stream)>>>(
        dinp, dout, inp, weight, rstd, static_cast<int>(cols), accumulate);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void channel_scale_fwd(float *out, const float *inp, const float *c, int64_t rows, int64_t cols, void *stream) {
    check_rows(rows, cols, "channel_scale_fwd");
    if (rows == 0) return;
    channel_kernel<<<grid_1d(rows * cols, kThreads), kThreads, 0, as_stream(stream)>>>(out, inp, c, rows * cols, cols,
                                                                                       false);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void channel_scale_bwd(float *dinp, float *dc, const float *dout, const float *inp, const float *c, int64_t rows,
                       int64_t cols, Workspace &ws, void *stream) {
    // The reduction reads dout before dinp (which may be the same memory) is written.
    if (dc) column_reduce(dc, nullptr, nullptr, dout, inp, rows, cols, kColDot, kAddTo, ws, stream);
    if (dinp) channel_scale_fwd(dinp, dout, c, rows, cols, stream);
}

void channel_unscale_fwd(float *out, const float *w, const float *c, int64_t rows, int64_t cols, void *stream) {
    check_rows(rows, cols, "channel_unscale_fwd");
    if (rows == 0) return;
    channel_kernel<<<grid_1d(rows * cols, kThreads), kThreads, 0, as_stream(stream)>>>(out, w, c, rows * cols, cols,
                                                                                       true);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void channel_unscale_bwd(float *dw, float *dc, const float *dout, const float *w, const float *c, int64_t rows,
                         int64_t cols, Workspace &ws, void *stream) {
    if (dc) column_reduce(dc, nullptr, c, dout, w, rows, cols, kColDot, kSubOverSquare, ws, stream);
    if (dw) channel_unscale_fwd(dw, dout, c, rows, cols, stream);
}

void column_absmax(float *absmax, const float *x, int64_t rows, int64_t cols, Workspace &ws, void *stream) {
    column_reduce(absmax, nullptr, nullptr, x, nullptr, rows, cols, kColAbsMax, kMaxTo, ws, stream);
}

void column_sum(double *out, const float *x, int64_t rows, int64_t cols, Workspace &ws, void *stream) {
    column_reduce(nullptr, out, nullptr, x, nullptr, rows, cols, kColSum, kStoreDouble, ws, stream);
}

void rope(float *x, int64_t rows, int n_head, int head_dim, int half, bool neox, const float *cs, const float *sn,
          int64_t seq_len, bool inverse, void *stream) {
    FQ_CHECK(rows >= 0 && n_head > 0 && head_dim > 0 && half >= 0 && 2 * half <= head_dim && seq_len > 0,
             FQ_STATUS_INVALID_ARGUMENT, "rope: bad sizes (n_head=%d head_dim=%d half=%d)", n_head, head_dim, half);
    if (rows == 0 || half == 0) return;
    rope_kernel<<<grid_1d(rows * n_head * half, kThreads), kThreads, 0, as_stream(stream)>>>(
        x, rows, n_head, head_dim, half, neox, cs, sn, seq_len, inverse);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void swiglu_fwd(float *out, const float *gate, const float *up, int64_t n, void *stream) {
    if (n <= 0) return;
    swiglu_fwd_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(out, gate, up, n);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n,
                void *stream) {
    if (n <= 0) return;
    swiglu_bwd_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(dgate, dup, dout, gate, up, n);
    FQ_CUDA_CHECK(cudaGetLastError());
}

double mse_loss(const float *pred, const float *target, int64_t n, Workspace &ws, void *stream) {
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "mse_loss: empty input");
    const int n_part = static_cast<int>(std::min<int64_t>(1024, (n + 8 * kThreads - 1) / (8 * kThreads)));
    double *part = ws.get_as<double>(static_cast<size_t>(n_part) + 1, stream);
    mse_partial_kernel<<<n_part, kThreads, 0, as_stream(stream)>>>(part + 1, pred, target, n);
    FQ_CUDA_CHECK(cudaGetLastError());
    sum_doubles_kernel<<<1, kThreads, 0, as_stream(stream)>>>(part, part + 1, n_part);
    FQ_CUDA_CHECK(cudaGetLastError());
    double sum = 0.0;
    FQ_CUDA_CHECK(cudaMemcpyAsync(&sum, part, sizeof(double), cudaMemcpyDeviceToHost, as_stream(stream)));
    FQ_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
    return sum / static_cast<double>(n);
}

void mse_loss_bwd(float *dpred, const float *pred, const float *target, int64_t n, double mse, bool normalized,
                  void *stream) {
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "mse_loss_bwd: empty input");
    double scale = 2.0 / static_cast<double>(n);
    if (normalized) scale = mse > 0.0 ? scale / mse : 0.0;
    mse_bwd_kernel<<<grid_1d(n, kThreads), kThreads, 0, as_stream(stream)>>>(dpred, pred, target, n, scale);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void kron_permute(float *dst, const float *src, int64_t rows, int n1, int n2, bool to_p, void *stream) {
    FQ_CHECK(rows >= 0 && n1 > 0 && n1 <= 65535 && n2 > 0 && n2 <= 4096, FQ_STATUS_INVALID_ARGUMENT,
             "kron_permute: bad sizes");
    if (rows == 0) return;
    const int per = std::max(1, 2048 / n2);  // rows per block: about 2048 elements
    const dim3 grid(static_cast<unsigned>((rows + per - 1) / per), static_cast<unsigned>(n1));
    permute_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(dst, src, rows, n1, n2, per, to_p);
    FQ_CUDA_CHECK(cudaGetLastError());
}

void sum_partials(float *c, const float *parts, int64_t n_parts, int64_t n, void *stream) {
    FQ_CHECK(n_parts >= 0 && n >= 0, FQ_STATUS_INVALID_ARGUMENT, "sum_partials: bad sizes");
    if (n == 0 || n_parts == 0) return;
    sum_partials_kernel<<<grid_1d(n, 128), 128, 0, as_stream(stream)>>>(c, parts, n_parts, n);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fq::cuda::calib
