// One decoder layer, W4A4 (native/src/cuda/w4a4_layer.h) against its FP16 twin with cuBLAS GEMMs, for LLaMA-2-7B and
// LLaMA-3-8B shapes with random weights. Prints markdown tables on stdout.
//
//   bench_decoder_layer [--quick] [--iterations=N]
//     --quick          prefill batch {1, 4}, decode batch {1, 64}
//     --iterations=0   run every layer once on a small case and check the outputs are finite, time nothing (a test)
//     --profile=MODEL,BATCH,prefill|decode   one call of each layer for that case only, nothing timed: for
//                      `ncu --clock-control none --metrics gpu__time_duration.sum` (per-kernel breakdown)
//   Exit 77 without a CUDA device.
//
// What runs:
//   W4A4: rmsnorm -> kron_quant (P_a, 3 LAC outputs) -> 3 W4A4 GEMMs -> RoPE -> P_k on q and k -> 4-bit KV cache
//         write -> attention over the 4-bit cache -> P_h + quant -> W4A4 o_proj -> residual + rmsnorm -> kron_quant
//         (P_ug, 2 outputs) -> up, gate W4A4 GEMMs -> SwiGLU -> kron_quant (P_d) -> W4A4 down -> residual.
//         GEMMs: the library's choice (GEMV for <= 16 tokens, CUTLASS S8S8 wgmma with the INT8 weight copy above).
//   FP16: rmsnorm -> cuBLAS qkv (fused) -> RoPE -> FP16 KV cache write -> attention over the FP16 cache (the same
//         kernels as W4A4's, FP16 tiles: split-K flash-decoding, FA2-style mma.sync prefill) -> cuBLAS o ->
//         residual + rmsnorm -> cuBLAS gate_up (fused) -> SwiGLU -> cuBLAS down -> residual.
//         cuBLAS: cublasGemmEx FP16 in/out, FP32 accumulation, default algorithm.
// Method: prefill (S = 2048 new tokens per sequence at position 0) is timed eagerly: CUDA events around one layer
// call, 2 warm-up calls, median of 5 (3 at 64 sequences). Decode (one new token per sequence at position 2047, so
// 2048 keys; the caches are pre-filled with random rows) is timed as a CUDA graph of 8 consecutive layer steps that
// cycle over 4 layer instances with their own weights and caches (so each step finds its data evicted by the others,
// as in a model, and the graph launch is amortized), replayed 30 times after warm-up, each replay preceded by a
// 2x-L2 memset; median time per step. The
// transforms' share: the same call with only the four quantizing transforms (kron_quant; P_h included) running, and
// separately the two P_k head transforms, timed the same way. Attention alone is timed the same way too.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/kv4_attention.h"
#include "cuda/layer_ops_f16.h"
#include "cuda/w4a4_gemm.h"
#include "cuda/w4a4_layer.h"

namespace {

using fq::cuda::DecoderLayerShape;
using fq::cuda::DeviceBuffer;
using fq::cuda::KvCacheFormat;
using fq::cuda::KvCacheView;
using fq::cuda::Stream;

#define CUBLAS_CHECK(expr)                                                                                   \
    do {                                                                                                     \
        const cublasStatus_t st_ = (expr);                                                                   \
        if (st_ != CUBLAS_STATUS_SUCCESS) FQ_FAIL(FQ_STATUS_CUDA, "%s failed: status %d", #expr, int(st_)); \
    } while (0)

// ---- random fills (counter-based hash: hundreds of MB at memory speed) ---------------------------------------------

__device__ __forceinline__ uint64_t mix(uint64_t i, uint64_t seed) {
    uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed << 32);
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return h ^ (h >> 31);
}

__global__ void fill_normal_f16(__half *p, size_t n, float stddev, uint64_t seed) {
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const uint64_t h = mix(i, seed);
        const float u1 = (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
        const float u2 = static_cast<float>((h >> 8) & 0xFFFFFFu) * (1.0f / 16777216.0f);
        p[i] = __float2half_rn(stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
    }
}
// Uniform in [lo, hi); integral: rounded to integers.
__global__ void fill_uniform_f32(float *p, size_t n, float lo, float hi, bool integral, uint64_t seed) {
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const float v = lo + (hi - lo) * static_cast<float>(mix(i, seed) >> 40) * (1.0f / 16777216.0f);
        p[i] = integral ? rintf(v) : v;
    }
}
// Bytes: INT4 values in [-8, 7] (one per byte), or raw random bytes.
__global__ void fill_bytes(int8_t *p, size_t n, bool int4_values, uint64_t seed) {
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const uint64_t h = mix(i, seed);
        p[i] = int4_values ? static_cast<int8_t>(static_cast<int>(h & 15) - 8) : static_cast<int8_t>(h & 255);
    }
}

// {scale, zero} pairs of a 4-bit cache: scales in [0.02, 0.06), integer zero points in [4, 11].
__global__ void fill_kv_params(float2 *p, size_t rows, uint64_t seed) {
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const uint64_t h = mix(i, seed);
        p[i] = make_float2(0.02f + 0.04f * static_cast<float>(h >> 40) * (1.0f / 16777216.0f),
                           static_cast<float>(4 + (h & 7)));
    }
}

uint64_t g_seed = 1;
void normal_f16(void *p, size_t n, float stddev) {
    fill_normal_f16<<<1024, 256>>>(static_cast<__half *>(p), n, stddev, g_seed++);
    FQ_CUDA_CHECK(cudaGetLastError());
}
void uniform_f32(void *p, size_t n, float lo, float hi, bool integral = false) {
    fill_uniform_f32<<<1024, 256>>>(static_cast<float *>(p), n, lo, hi, integral, g_seed++);
    FQ_CUDA_CHECK(cudaGetLastError());
}

struct ModelSpec {
    const char *name;
    int E, H, Hk, d, F, na1, na2, nd1, nd2;
};
constexpr ModelSpec kModels[] = {
    {"LLaMA-2-7B", 4096, 32, 32, 128, 11008, 64, 64, 86, 128},
    {"LLaMA-3-8B", 4096, 32, 8, 128, 14336, 64, 64, 112, 128},
};
constexpr int64_t kCtx = 2048;
constexpr int kDecodeInstances = 4;  // decode: layers with their own weights and caches, cycled through
constexpr int kDecodeSteps = 8;      // decode: layer steps per timed graph

DecoderLayerShape shape_of(const ModelSpec &m) {
    DecoderLayerShape s;
    s.hidden = m.E;
    s.n_heads = m.H;
    s.n_kv_heads = m.Hk;
    s.head_dim = m.d;
    s.intermediate = m.F;
    return s;
}

// ---- layers with random weights ------------------------------------------------------------------------------------

struct Owned {
    std::vector<std::unique_ptr<DeviceBuffer>> bufs;
    void *alloc(size_t bytes) {
        bufs.push_back(std::make_unique<DeviceBuffer>(std::max<size_t>(bytes, 256)));
        return bufs.back()->data();
    }
};

struct W4A4Model {
    Owned mem;
    fq::cuda::W4A4LayerWeights w;
    std::unique_ptr<fq::cuda::W4A4DecoderLayer> layer;
    W4A4Model(const ModelSpec &m, const DeviceBuffer &rope, const Stream &s) {
        auto f16 = [&](int n) {
            void *p = mem.alloc(static_cast<size_t>(n) * n * 2);
            normal_f16(p, static_cast<size_t>(n) * n, 1.0f / std::sqrt(static_cast<float>(n)));
            return static_cast<const uint16_t *>(p);
        };
        auto lin = [&](int64_t n, int64_t k) {
            fq::cuda::W4A4Linear l;
            auto *s8 = static_cast<int8_t *>(mem.alloc(static_cast<size_t>(n * k)));
            fill_bytes<<<1024, 256>>>(s8, static_cast<size_t>(n * k), true, g_seed++);
            FQ_CUDA_CHECK(cudaGetLastError());
            auto *packed = static_cast<uint8_t *>(mem.alloc(static_cast<size_t>(n * k / 2)));
            fq::cuda::int8_pack_to_int4(packed, s8, n * k, s);
            auto *scale = static_cast<float *>(mem.alloc(static_cast<size_t>(n) * 4));
            uniform_f32(scale, static_cast<size_t>(n), 0.002f, 0.004f);
            l.w_packed = packed;
            l.w_s8 = s8;
            l.w_scale = scale;
            l.clip_max = 0.9f;
            l.clip_min = 0.95f;
            return l;
        };
        auto gain = [&]() {
            auto *g = static_cast<float *>(mem.alloc(static_cast<size_t>(m.E) * 4));
            uniform_f32(g, static_cast<size_t>(m.E), 0.8f, 1.2f);
            return g;
        };
        const int64_t qd = static_cast<int64_t>(m.H) * m.d, kvd = static_cast<int64_t>(m.Hk) * m.d;
        w.attn_norm = gain();
        w.ffn_norm = gain();
        w.pa1 = f16(m.na1);
        w.pa2 = f16(m.na2);
        w.pug1 = f16(m.na1);
        w.pug2 = f16(m.na2);
        w.pd1 = f16(m.nd1);
        w.pd2 = f16(m.nd2);
        w.na1 = w.nu1 = m.na1;
        w.na2 = w.nu2 = m.na2;
        w.nd1 = m.nd1;
        w.nd2 = m.nd2;
        w.ph = f16(m.H);
        w.pk = f16(m.d);
        w.pk_inv_t = f16(m.d);
        w.q = lin(qd, m.E);
        w.k = lin(kvd, m.E);
        w.v = lin(kvd, m.E);
        w.o = lin(m.E, qd);
        w.up = lin(m.F, m.E);
        w.gate = lin(m.F, m.E);
        w.down = lin(m.E, m.F);
        w.k_clip_max = w.v_clip_max = 0.95f;
        w.k_clip_min = w.v_clip_min = 0.9f;
        w.rope_cos_sin = rope.as<float>();
        w.rope_positions = kCtx;
        layer = std::make_unique<fq::cuda::W4A4DecoderLayer>(shape_of(m), w);
        s.synchronize();
    }
};

struct F16Model {
    Owned mem;
    fq::cuda::F16LayerWeights w;
    std::unique_ptr<fq::cuda::F16DecoderLayer> layer;
    F16Model(const ModelSpec &m, const DeviceBuffer &rope, fq::cuda::GemmF16Fn gemm) {
        auto mat = [&](int64_t n, int64_t k) {
            void *p = mem.alloc(static_cast<size_t>(n * k) * 2);
            normal_f16(p, static_cast<size_t>(n * k), 1.0f / std::sqrt(static_cast<float>(k)));
            return static_cast<const uint16_t *>(p);
        };
        auto gain = [&]() {
            auto *g = static_cast<float *>(mem.alloc(static_cast<size_t>(m.E) * 4));
            uniform_f32(g, static_cast<size_t>(m.E), 0.8f, 1.2f);
            return g;
        };
        const int64_t qd = static_cast<int64_t>(m.H) * m.d, kvd = static_cast<int64_t>(m.Hk) * m.d;
        w.attn_norm = gain();
        w.ffn_norm = gain();
        w.w_qkv = mat(qd + 2 * kvd, m.E);
        w.w_o = mat(m.E, qd);
        w.w_gate_up = mat(2 * static_cast<int64_t>(m.F), m.E);
        w.w_down = mat(m.E, m.F);
        w.rope_cos_sin = rope.as<float>();
        w.rope_positions = kCtx;
        layer = std::make_unique<fq::cuda::F16DecoderLayer>(shape_of(m), w, std::move(gemm));
        FQ_CUDA_CHECK(cudaDeviceSynchronize());
    }
};

struct Cache {
    Owned mem;
    KvCacheView view;
    // Rows [0, filled) get random contents: FP16 normal values, or random codes with scales in [0.02, 0.06) and
    // integer zero points in [4, 11].
    Cache(KvCacheFormat f, int batch, int kv_heads, int d, int64_t cap, int64_t filled) {
        view.format = f;
        view.batch = batch;
        view.kv_heads = kv_heads;
        view.head_dim = d;
        view.capacity = cap;
        const size_t data = fq::cuda::kv_cache_data_bytes(f, batch, kv_heads, d, cap);
        const size_t params = fq::cuda::kv_cache_params_bytes(f, batch, kv_heads, cap);
        view.k = mem.alloc(data);
        view.v = mem.alloc(data);
        view.k_params = static_cast<float *>(mem.alloc(params));
        view.v_params = static_cast<float *>(mem.alloc(params));
        (void)filled;  // the whole capacity is filled: rows past `filled` are overwritten or never read
        if (f == KvCacheFormat::kF16) {
            normal_f16(view.k, data / 2, 1.0f);
            normal_f16(view.v, data / 2, 1.0f);
        } else {
            fill_bytes<<<1024, 256>>>(static_cast<int8_t *>(view.k), data, false, g_seed++);
            fill_bytes<<<1024, 256>>>(static_cast<int8_t *>(view.v), data, false, g_seed++);
            FQ_CUDA_CHECK(cudaGetLastError());
            for (float *p : {view.k_params, view.v_params})
                fill_kv_params<<<1024, 256>>>(reinterpret_cast<float2 *>(p), params / 8, g_seed++);
            FQ_CUDA_CHECK(cudaGetLastError());
        }
        FQ_CUDA_CHECK(cudaDeviceSynchronize());
    }
};

// ---- timing --------------------------------------------------------------------------------------------------------

struct Timer {
    cudaEvent_t e0, e1;
    Timer() {
        FQ_CUDA_CHECK(cudaEventCreate(&e0));
        FQ_CUDA_CHECK(cudaEventCreate(&e1));
    }
    ~Timer() {
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Microseconds of one eager call of fn: `warm` warm-up calls, then the median of `reps` timed ones.
double time_eager(const Stream &stream, const std::function<void()> &fn, int warm, int reps) {
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    Timer t;
    for (int i = 0; i < warm; ++i) fn();
    std::vector<double> us;
    for (int r = 0; r < reps; ++r) {
        FQ_CUDA_CHECK(cudaEventRecord(t.e0, s));
        fn();
        FQ_CUDA_CHECK(cudaEventRecord(t.e1, s));
        FQ_CUDA_CHECK(cudaEventSynchronize(t.e1));
        float ms = 0.0f;
        FQ_CUDA_CHECK(cudaEventElapsedTime(&ms, t.e0, t.e1));
        us.push_back(1000.0 * ms);
    }
    return median(us);
}

// Microseconds of fn captured as a CUDA graph, each of `reps` replays after an L2-flushing memset; median.
double time_graph(const Stream &stream, const std::function<void()> &fn, DeviceBuffer &flush, int reps) {
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    fn();  // outside capture: one-time attribute setup and probes
    stream.synchronize();
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    FQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    fn();
    FQ_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    FQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    Timer t;
    std::vector<double> us;
    for (int r = 0; r < reps + 3; ++r) {
        FQ_CUDA_CHECK(cudaMemsetAsync(flush.data(), r & 0xFF, flush.n_bytes(), s));
        FQ_CUDA_CHECK(cudaEventRecord(t.e0, s));
        FQ_CUDA_CHECK(cudaGraphLaunch(exec, s));
        FQ_CUDA_CHECK(cudaEventRecord(t.e1, s));
        FQ_CUDA_CHECK(cudaEventSynchronize(t.e1));
        float ms = 0.0f;
        FQ_CUDA_CHECK(cudaEventElapsedTime(&ms, t.e0, t.e1));
        if (r >= 3) us.push_back(1000.0 * ms);
    }
    FQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
    FQ_CUDA_CHECK(cudaGraphDestroy(graph));
    return median(us);
}

// ---- one configuration ---------------------------------------------------------------------------------------------

struct Result {
    double f16_us = 0, w4_us = 0, tf_us = 0, pk_us = 0, att_f16_us = 0, att_kv4_us = 0;
    bool ok = false;
};

bool all_finite(const DeviceBuffer &h, size_t count, const Stream &s) {
    std::vector<uint16_t> v(count);
    h.download(v.data(), count * 2, s);
    for (uint16_t x : v)
        if ((x & 0x7C00u) == 0x7C00u) return false;
    return true;
}

Result run_config(const ModelSpec &m, std::vector<std::unique_ptr<F16Model>> &f16m,
                  std::vector<std::unique_ptr<W4A4Model>> &w4m, int batch, int64_t S, int64_t pos0, bool decode,
                  int iterations, DeviceBuffer &flush, const Stream &s) {
    Result r;
    const int64_t T = batch * S;
    const size_t h_bytes = static_cast<size_t>(T) * m.E * 2;
    const int n_inst = static_cast<int>(f16m.size());  // decode: layer instances cycled through, each with its cache
    const int reps = decode ? 30 : (batch >= 64 ? 3 : 5);
    // Decode: one graph of kDecodeSteps consecutive layer steps over the instances (so each step finds weights and
    // cache evicted by the others, as in a model), time / steps; prefill: one eager call.
    auto timed = [&](const std::function<void(int)> &fn) {
        if (!decode) return time_eager(s, [&]() { fn(0); }, 2, reps);
        return time_graph(s, [&]() { for (int i = 0; i < kDecodeSteps; ++i) fn(i % n_inst); }, flush, reps) /
               kDecodeSteps;
    };
    for (const KvCacheFormat f : {KvCacheFormat::kF16, KvCacheFormat::kInt4}) {
        const bool int4 = f == KvCacheFormat::kInt4;
        uint64_t free_b = 0, total_b = 0;
        fq::cuda::memory_info(&free_b, &total_b);
        std::vector<std::unique_ptr<Cache>> caches;
        for (int i = 0; i < n_inst; ++i) caches.push_back(std::make_unique<Cache>(f, batch, m.Hk, m.d, kCtx, pos0));
        const size_t ws_bytes = int4 ? w4m[0]->layer->workspace_bytes(S, pos0, caches[0]->view)
                                     : f16m[0]->layer->workspace_bytes(S, pos0, caches[0]->view);
        if (ws_bytes + h_bytes + (256u << 20) > free_b) return r;  // does not fit: ok stays false
        DeviceBuffer h(h_bytes), ws(ws_bytes);
        normal_f16(h.data(), h_bytes / 2, 1.0f);
        FQ_CUDA_CHECK(cudaDeviceSynchronize());
        auto layer = [&](int i, unsigned parts) {
            if (int4) w4m[i]->layer->forward(h.as<uint16_t>(), S, pos0, caches[i]->view, ws.data(), ws_bytes, s, parts);
            else f16m[i]->layer->forward(h.as<uint16_t>(), S, pos0, caches[i]->view, ws.data(), ws_bytes, s);
        };
        if (iterations <= 0) {  // check (0) or one call per format for a profiler (-1)
            layer(0, fq::cuda::kLayerAll);
            s.synchronize();
            FQ_CHECK(all_finite(h, static_cast<size_t>(T) * m.E, s), FQ_STATUS_CUDA,
                     "%s %s layer: non-finite output", m.name, int4 ? "W4A4" : "FP16");
            continue;
        }
        // Attention alone, on the q and output buffers of a scratch area (values do not matter for timing).
        const int64_t qd = static_cast<int64_t>(m.H) * m.d;
        DeviceBuffer q(static_cast<size_t>(T) * qd * 2), o(static_cast<size_t>(T) * qd * 2);
        normal_f16(q.data(), static_cast<size_t>(T) * qd, 1.0f);
        fq::cuda::AttentionArgs aa;
        aa.out_f16 = o.as<uint16_t>();
        aa.ld_out = qd;
        aa.q_f16 = q.as<uint16_t>();
        aa.ld_q = qd;
        aa.n_heads = m.H;
        aa.n_q = S;
        aa.pos0 = pos0;
        aa.scale = 1.0f / std::sqrt(static_cast<float>(m.d));
        const size_t aws_bytes = fq::cuda::attention_workspace_bytes(caches[0]->view, aa);
        DeviceBuffer aws(aws_bytes);
        const double att = timed([&](int i) { fq::cuda::attention(caches[i]->view, aa, aws.data(), aws_bytes, s); });
        const double full = timed([&](int i) { layer(i, fq::cuda::kLayerAll); });
        if (int4) {
            r.w4_us = full;
            r.att_kv4_us = att;
            r.tf_us = timed([&](int i) { layer(i, fq::cuda::kLayerQuantTransforms); });
            r.pk_us = timed([&](int i) { layer(i, fq::cuda::kLayerHeadTransforms); });
        } else {
            r.f16_us = full;
            r.att_f16_us = att;
        }
    }
    r.ok = true;
    return r;
}

}  // namespace

int main(int argc, char **argv) {
    bool quick = false;
    int iterations = 1;
    std::string profile;  // "<model>,<batch>,<prefill|decode>": one call of each layer, for a profiler
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--quick")) quick = true;
        else if (!std::strncmp(argv[i], "--iterations=", 13)) iterations = std::atoi(argv[i] + 13);
        else if (!std::strncmp(argv[i], "--profile=", 10)) profile = argv[i] + 10, iterations = -1;
        else {
            std::fprintf(stderr,
                         "usage: bench_decoder_layer [--quick] [--iterations=N] [--profile=MODEL,BATCH,MODE]\n");
            return 2;
        }
    }
    int profile_batch = 0;
    bool profile_decode = false;
    if (!profile.empty()) {
        const size_t c1 = profile.find(','), c2 = profile.rfind(',');
        if (c1 == std::string::npos || c2 == c1) {
            std::fprintf(stderr, "--profile=MODEL,BATCH,prefill|decode\n");
            return 2;
        }
        profile_batch = std::atoi(profile.c_str() + c1 + 1);
        profile_decode = profile.compare(c2 + 1, std::string::npos, "decode") == 0;
        profile = profile.substr(0, c1);
    }
    if (fq::cuda::device_count() == 0) {
        std::fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    try {
        const fq::cuda::DeviceProperties prop = fq::cuda::device_properties(0);
        Stream stream = Stream::create();
        cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
        cublasHandle_t blas = nullptr;
        DeviceBuffer blas_ws(64u << 20);
        CUBLAS_CHECK(cublasCreate(&blas));
        CUBLAS_CHECK(cublasSetStream(blas, s));
        CUBLAS_CHECK(cublasSetWorkspace(blas, blas_ws.data(), blas_ws.n_bytes()));
        // d (m, n) = a (m, k) . w (n, k)^T, row-major = column-major d^T (n, m) = op(W) a^T with op(W) = T.
        fq::cuda::GemmF16Fn gemm = [blas](uint16_t *d, const uint16_t *a, const uint16_t *w, int64_t m, int64_t n,
                                          int64_t k, const Stream &) {
            const float alpha = 1.0f, beta = 0.0f;
            CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                      static_cast<int>(k), &alpha, w, CUDA_R_16F, static_cast<int>(k), a, CUDA_R_16F,
                                      static_cast<int>(k), &beta, d, CUDA_R_16F, static_cast<int>(n),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        };
        std::vector<float> rope_host(static_cast<size_t>(kCtx) * 128);
        fq::cuda::rope_table(rope_host.data(), 128, 10000.0, kCtx);
        DeviceBuffer rope(rope_host.size() * 4);
        rope.upload(rope_host.data(), rope_host.size() * 4, stream);
        DeviceBuffer flush(2 * std::max<size_t>(prop.l2_cache_bytes, 32u << 20));

        std::vector<int> prefill_b = iterations == 0 ? std::vector<int>{1}
                                     : quick         ? std::vector<int>{1, 4}
                                                     : std::vector<int>{1, 4, 16, 64};
        std::vector<int> decode_b = iterations == 0 ? std::vector<int>{1, 16}
                                    : quick         ? std::vector<int>{1, 64}
                                                    : std::vector<int>{1, 16, 64};
        if (!profile.empty()) {
            prefill_b = profile_decode ? std::vector<int>{} : std::vector<int>{profile_batch};
            decode_b = profile_decode ? std::vector<int>{profile_batch} : std::vector<int>{};
        }
        const int64_t prefill_s = iterations == 0 ? 160 : kCtx;
        if (iterations > 0) {
            std::printf("## Decoder layer: W4A4 vs FP16 on %s (sm_%d%d, %d SMs)\n\n", prop.name.c_str(), prop.sm_major,
                        prop.sm_minor, prop.n_sms);
            std::printf("Random weights and inputs. W4A4 GEMMs: %s activations; FP16 GEMMs: cuBLAS (cublasGemmEx, "
                        "FP32 accumulation), qkv and gate_up fused. Attention: the same kernels over a 4-bit or an "
                        "FP16 cache. Prefill: eager, median of 5 (3 at batch 64); decode: CUDA graph of 8 consecutive "
                        "layer steps cycling over 4 layers with their own weights and caches, L2 flushed before each "
                        "of 30 replays, median per step. tf = the four quantizing transforms (kron_quant: P_a x3 "
                        "outputs, P_h, P_ug x2, P_d); P_k = the two head transforms on q and k (up to 64 tokens fused "
                        "with RoPE into one launch, timed together).\n\n",
                        fq::cuda::w4a4_native_act_format() == fq::cuda::W4A4ActFormat::kInt8 ? "INT8-valued"
                                                                                              : "packed INT4");
        }
        for (const bool decode : {false, true}) {
            if ((decode ? decode_b : prefill_b).empty()) continue;
            if (iterations > 0) {
                if (!decode) {
                    std::printf("### Prefill: %lld new tokens per sequence\n\n", static_cast<long long>(prefill_s));
                    std::printf("| model | batch | tokens | FP16 ms | W4A4 ms | speedup | tf ms | tf share | P_k ms | "
                                "P_k share | attention FP16 ms | attention KV4 ms |\n");
                } else {
                    std::printf("\n### Decode: one token per sequence, KV length %lld\n\n",
                                static_cast<long long>(kCtx));
                    std::printf("| model | batch | FP16 us | W4A4 us | speedup | tf us | tf share | P_k us | P_k share "
                                "| attention FP16 us | attention KV4 us |\n");
                }
                std::printf(decode ? "|---|---|---|---|---|---|---|---|---|---|---|\n"
                                   : "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            }
            for (const ModelSpec &m : kModels) {
                if (!profile.empty() && profile.find(m.name) == std::string::npos) continue;
                std::vector<std::unique_ptr<F16Model>> f16m;
                std::vector<std::unique_ptr<W4A4Model>> w4m;
                for (int i = 0; i < (decode && iterations > 0 ? kDecodeInstances : 1); ++i) {
                    f16m.push_back(std::make_unique<F16Model>(m, rope, gemm));
                    w4m.push_back(std::make_unique<W4A4Model>(m, rope, stream));
                }
                for (const int b : decode ? decode_b : prefill_b) {
                    const int64_t S = decode ? 1 : prefill_s, pos0 = decode ? kCtx - 1 : 0;
                    const Result r = run_config(m, f16m, w4m, b, S, pos0, decode, iterations, flush, stream);
                    if (iterations <= 0) continue;
                    if (!r.ok) {
                        std::printf("| %s | %d | (does not fit in memory) |\n", m.name, b);
                        continue;
                    }
                    const double scale = decode ? 1.0 : 1e-3;
                    if (decode) {
                        std::printf("| %s | %d | %.1f | %.1f | %.2fx | %.1f | %.1f%% | %.1f | %.1f%% | %.1f | %.1f |\n",
                                    m.name, b, r.f16_us, r.w4_us, r.f16_us / r.w4_us, r.tf_us,
                                    100.0 * r.tf_us / r.w4_us, r.pk_us, 100.0 * r.pk_us / r.w4_us, r.att_f16_us,
                                    r.att_kv4_us);
                    } else {
                        std::printf("| %s | %d | %lld | %.3f | %.3f | %.2fx | %.3f | %.1f%% | %.3f | %.1f%% | %.3f | "
                                    "%.3f |\n",
                                    m.name, b, static_cast<long long>(b * S), r.f16_us * scale, r.w4_us * scale,
                                    r.f16_us / r.w4_us, r.tf_us * scale, 100.0 * r.tf_us / r.w4_us, r.pk_us * scale,
                                    100.0 * r.pk_us / r.w4_us, r.att_f16_us * scale, r.att_kv4_us * scale);
                    }
                    std::fflush(stdout);
                }
            }
        }
        cublasDestroy(blas);
        if (iterations == 0) std::printf("bench_decoder_layer checks: every layer ran, outputs finite\n");
    } catch (const fq::Error &e) {
        std::fprintf(stderr, "bench_decoder_layer: %s\n", e.what());
        return 1;
    }
    return 0;
}
