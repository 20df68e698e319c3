// Causal grouped-query attention of whole sequences in FP32 (contract in wineval_kernels.h).
//
// One thread block of 256 threads per (head, sequence, tile of kBlockM = 64 queries); it walks the key tiles of
// kBlockN keys up to the diagonal with a running max and sum (the online softmax), so no [seq_len][seq_len] score
// matrix exists and the masked upper half is skipped. Thread (ty, tx) of the 16 x 16 grid owns query rows
// ty*4 .. ty*4+3: scores for keys tx + 16 c of the tile, and output columns tx*4 + 64 kk .. +3. The 16 threads of a row
// group are one half-warp, so row maxima and sums reduce with shuffles. Shared-memory rows are padded by 4 floats:
// float4 reads of 8 different rows then fall into 8 different bank quads.
//
// Numerics: scores are dot products times scale (as the CPU scales after the product), exp is expf (not __expf),
// the running maximum makes every exponent <= 0, and the output is divided by the row sum once at the end.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/wineval_kernels.h"

namespace fq::cuda::wineval {

namespace {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kBlockM = 64;
constexpr int kThreads = 256;

template <int kDMax, int kBlockN>
struct AttnShape {
    static constexpr int ld = kDMax + 4;        // row stride of the Q, K and V tiles (floats)
    static constexpr int ldp = kBlockN + 4;     // row stride of the probability tile
    static constexpr int cn = kBlockN / 16;     // score columns per thread
    static constexpr int dq = kDMax / 64;       // float4 output column groups per thread
    static constexpr size_t smem_floats = size_t{kBlockM} * ld + 2 * size_t{kBlockN} * ld + size_t{kBlockM} * ldp;
};

// Copies rows [row0, row0 + n_rows) of src [seq_len][D] into tile [n_rows][ld], zero beyond the sequence and in
// columns [D, D4). With D a multiple of 4 (every real model) thread t always moves the same float4 column of rows
// t / (D/4), + rows_per_pass, ...: no division per element, 16-byte accesses.
__device__ __forceinline__ void load_tile(float *tile, int ld, const float *src, int row0, int n_rows, int seq_len,
                                          int D, int D4) {
    if ((D & 3) == 0) {
        const int per_row = D >> 2, rows_per_pass = kThreads / per_row;
        const int r_first = threadIdx.x / per_row, c = (threadIdx.x - r_first * per_row) * 4;
        if (r_first >= rows_per_pass) return;
        for (int r = r_first; r < n_rows; r += rows_per_pass) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row0 + r < seq_len) v = *reinterpret_cast<const float4 *>(src + int64_t(row0 + r) * D + c);
            *reinterpret_cast<float4 *>(tile + r * ld + c) = v;
        }
        return;
    }
    for (int e = threadIdx.x; e < n_rows * D4; e += kThreads) {
        const int r = e / D4, d = e - r * D4;
        tile[r * ld + d] = (row0 + r < seq_len && d < D) ? src[int64_t(row0 + r) * D + d] : 0.0f;
    }
}

// grid (n_head, n_seq, n_tiles), block kThreads, dynamic shared memory AttnShape::smem_floats floats.
// q [n_seq][H][L][D], k/v [n_seq][Hk][L][D], out [n_seq*L][H*D].
template <int kDMax, int kBlockN>
__global__ void __launch_bounds__(kThreads) attention_kernel(float *out, const float *q, const float *k,
                                                             const float *v, int L, int H, int Hk, int D,
                                                             float scale) {
    using S = AttnShape<kDMax, kBlockN>;
    extern __shared__ float4 attn_sm4[];
    float *qs = reinterpret_cast<float *>(attn_sm4);  // [kBlockM][ld]
    float *ks = qs + kBlockM * S::ld;                 // [kBlockN][ld]
    float *vs = ks + kBlockN * S::ld;                 // [kBlockN][ld]
    float *ps = vs + kBlockN * S::ld;                 // [kBlockM][ldp]
    const int h = blockIdx.x, b = blockIdx.y;
    const int tile = gridDim.z - 1 - blockIdx.z;  // the longest rows first: they start early, the grid ends evenly
    const int g = h / (H / Hk);
    const int q0 = tile * kBlockM;
    const int D4 = (D + 3) & ~3;
    const float *qb = q + (int64_t(b) * H + h) * L * D;
    const float *kb = k + (int64_t(b) * Hk + g) * L * D;
    const float *vb = v + (int64_t(b) * Hk + g) * L * D;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;

    load_tile(qs, S::ld, qb, q0, kBlockM, L, D, D4);
    float o[4][4 * S::dq];
    float m_run[4], l_run[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m_run[i] = -INFINITY;
        l_run[i] = 0.0f;
#pragma unroll
        for (int c = 0; c < 4 * S::dq; c++) o[i][c] = 0.0f;
    }
    const int q_end = min(q0 + kBlockM, L);  // keys [0, q_end) are visible to some row of the tile
    for (int k0 = 0; k0 < q_end; k0 += kBlockN) {
        load_tile(ks, S::ld, kb, k0, kBlockN, L, D, D4);
        load_tile(vs, S::ld, vb, k0, kBlockN, L, D, D4);
        __syncthreads();
        float sc[4][S::cn];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int c = 0; c < S::cn; c++) sc[i][c] = 0.0f;
        for (int d = 0; d < D4; d += 4) {
            float4 qv[4], kv[S::cn];
#pragma unroll
            for (int i = 0; i < 4; i++) qv[i] = *reinterpret_cast<const float4 *>(qs + (ty * 4 + i) * S::ld + d);
#pragma unroll
            for (int c = 0; c < S::cn; c++) kv[c] = *reinterpret_cast<const float4 *>(ks + (tx + 16 * c) * S::ld + d);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int c = 0; c < S::cn; c++) {
                    float acc = sc[i][c];
                    acc = fmaf(qv[i].x, kv[c].x, acc);
                    acc = fmaf(qv[i].y, kv[c].y, acc);
                    acc = fmaf(qv[i].z, kv[c].z, acc);
                    acc = fmaf(qv[i].w, kv[c].w, acc);
                    sc[i][c] = acc;
                }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int qi = q0 + ty * 4 + i;
            float mx = -INFINITY;
#pragma unroll
            for (int c = 0; c < S::cn; c++) {
                const int kj = k0 + tx + 16 * c;
                sc[i][c] = kj <= qi ? __fmul_rn(sc[i][c], scale) : -INFINITY;
                mx = fmaxf(mx, sc[i][c]);
            }
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, off));
            // Key 0 is in the first tile and visible to every row, so m_new is finite from the first tile on.
            const float m_new = fmaxf(m_run[i], mx);
            const float corr = expf(m_run[i] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < S::cn; c++) {
                const float p = expf(sc[i][c] - m_new);
                sum += p;
                ps[(ty * 4 + i) * S::ldp + tx + 16 * c] = p;
            }
            for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(kFullMask, sum, off);
            l_run[i] = l_run[i] * corr + sum;
            m_run[i] = m_new;
#pragma unroll
            for (int c = 0; c < 4 * S::dq; c++) o[i][c] *= corr;
        }
        __syncthreads();
        for (int j = 0; j < kBlockN; j += 4) {
            float4 pv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) pv[i] = *reinterpret_cast<const float4 *>(ps + (ty * 4 + i) * S::ldp + j);
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
#pragma unroll
                for (int kk = 0; kk < S::dq; kk++) {
                    const float4 vv = *reinterpret_cast<const float4 *>(vs + (j + jj) * S::ld + kk * 64 + tx * 4);
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const float p = jj == 0 ? pv[i].x : jj == 1 ? pv[i].y : jj == 2 ? pv[i].z : pv[i].w;
                        o[i][kk * 4 + 0] = fmaf(p, vv.x, o[i][kk * 4 + 0]);
                        o[i][kk * 4 + 1] = fmaf(p, vv.y, o[i][kk * 4 + 1]);
                        o[i][kk * 4 + 2] = fmaf(p, vv.z, o[i][kk * 4 + 2]);
                        o[i][kk * 4 + 3] = fmaf(p, vv.w, o[i][kk * 4 + 3]);
                    }
                }
            }
        }
        __syncthreads();  // the next tile overwrites ks, vs and ps
    }
    const int64_t ldo = int64_t(H) * D;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int qi = q0 + ty * 4 + i;
        if (qi >= L) continue;
        float *orow = out + (int64_t(b) * L + qi) * ldo + int64_t(h) * D;
#pragma unroll
        for (int kk = 0; kk < S::dq; kk++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int col = kk * 64 + tx * 4 + c;
                if (col < D) orow[col] = __fdiv_rn(o[i][kk * 4 + c], l_run[i]);
            }
    }
}

template <int kDMax, int kBlockN>
void launch(float *out, const float *q, const float *k, const float *v, int64_t n_seq, int64_t seq_len, int n_head,
            int n_head_kv, int head_dim, float scale, cudaStream_t stream) {
    const size_t smem = AttnShape<kDMax, kBlockN>::smem_floats * sizeof(float);
    auto kernel = attention_kernel<kDMax, kBlockN>;
    FQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>(n_head), static_cast<unsigned>(n_seq),
                    static_cast<unsigned>((seq_len + kBlockM - 1) / kBlockM));
    kernel<<<grid, kThreads, smem, stream>>>(out, q, k, v, static_cast<int>(seq_len), n_head, n_head_kv, head_dim,
                                             scale);
    FQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void attention(float *out, const float *q, const float *k, const float *v, int64_t n_seq, int64_t seq_len, int n_head,
               int n_head_kv, int head_dim, float scale, void *stream) {
    FQ_CHECK(n_seq >= 0 && n_seq <= 65535 && seq_len > 0 && seq_len * int64_t{n_head} * head_dim <= INT_MAX &&
                 n_head > 0 && n_head <= 65535 && n_head_kv > 0 && n_head % n_head_kv == 0 && head_dim > 0,
             FQ_STATUS_INVALID_ARGUMENT, "attention: bad sizes (n_seq=%lld seq_len=%lld n_head=%d n_head_kv=%d)",
             static_cast<long long>(n_seq), static_cast<long long>(seq_len), n_head, n_head_kv);
    FQ_CHECK(head_dim <= kMaxHeadDim, FQ_STATUS_UNSUPPORTED, "attention: head_dim %d above %d", head_dim,
             kMaxHeadDim);
    if (n_seq == 0) return;
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    // Shared memory: 70 KiB for head_dim <= 64, 75 KiB above (within every target's opt-in limit, sm_86 included).
    if (head_dim <= 64) {
        launch<64, 64>(out, q, k, v, n_seq, seq_len, n_head, n_head_kv, head_dim, scale, s);
    } else {
        launch<128, 32>(out, q, k, v, n_seq, seq_len, n_head, n_head_kv, head_dim, scale, s);
    }
}

}  // namespace fq::cuda::wineval
