// Benchmark of the fused online transform + quantization (native/src/cuda/kron_quant.h) against the FP16 GEMM of
// the layer it feeds, timed by cuBLAS in the same run on the same GPU. Prints markdown tables on stdout.
//
//   bench_kron_quant [--quick]      (--quick: 1 and 2048 tokens only; exit 77 without a CUDA device)
//
// Table 1, per factor pair (4096 = (64,64) feeding LLaMA-2-7B's qkv 4096->12288; 11008 = (86,128) feeding its down
// 11008->4096; 14336 = (112,128) feeding LLaMA-3-8B's down 14336->4096) and token count (1, 16, 256, 2048, 8192):
// the kernel's time with packed INT4, INT8 and FP16 outputs, the per-token cost, the FP16 input read rate
// (T n 2 bytes / time), and the INT4 time as a fraction of the cuBLAS FP16 GEMM (fp32 accumulation) of that layer.
// Table 2, per decoder layer of LLaMA-2-7B and LLaMA-3-8B: every online transform of the layer (P_a with 3 outputs
// for q/k/v, P_h on o_proj's input, P_ug with 2 outputs for up/gate, P_d) against the layer's four GEMMs (qkv, o,
// gate_up, down); attention is left out of the denominator, so the true fraction of a layer is smaller still.
//
// Method: CUDA events around a CUDA graph of back-to-back launches (about 1 ms of work), after warm-up; the median
// over 15 replays of the time per launch. The launches of a graph read consecutive slots of an input pool of at
// least 128 MB (more than twice the H100's 50 MB L2), so from about 256 tokens up every launch reads its activations
// from HBM; smaller calls may find them in L2, as in a model, where the previous kernel has just written them.
// Random normal data (the kernels' speed does not depend on it).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/head_transforms.h"
#include "cuda/kron_quant.h"
#include "quant/kron.h"

namespace {

using fq::cuda::KronOutFormat;
using fq::cuda::KronQuantArgs;
using fq::cuda::Stream;

#define CUBLAS_CHECK(expr)                                                                            \
    do {                                                                                              \
        const cublasStatus_t st_ = (expr);                                                            \
        if (st_ != CUBLAS_STATUS_SUCCESS) FQ_FAIL(FQ_STATUS_CUDA, "%s failed: status %d", #expr, int(st_)); \
    } while (0)

constexpr size_t kPoolBytes = size_t{128} << 20;
constexpr int kRepeats = 15;

// Normal(0, stddev) FP16 values from a counter-based hash (splitmix64 + Box-Muller): fills hundreds of MB at memory
// speed, where a host generator would take seconds per buffer.
__global__ void fill_normal_f16(__half *p, size_t n, float stddev, uint64_t seed) {
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed << 32);
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
        h ^= h >> 31;
        const float u1 = (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
        const float u2 = static_cast<float>((h >> 8) & 0xFFFFFFu) * (1.0f / 16777216.0f);
        p[i] = __float2half_rn(stddev * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
    }
}

// Device memory filled with random FP16 values of the given spread.
struct DevF16 {
    __half *ptr = nullptr;
    size_t count = 0;
    DevF16(size_t n, float stddev, uint32_t seed) : count(n) {
        FQ_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 8) * sizeof(__half)));
        fill_normal_f16<<<1024, 256>>>(ptr, n, stddev, seed);
        FQ_CUDA_CHECK(cudaGetLastError());
        FQ_CUDA_CHECK(cudaDeviceSynchronize());
    }
    ~DevF16() { cudaFree(ptr); }
    DevF16(const DevF16 &) = delete;
    DevF16 &operator=(const DevF16 &) = delete;
};

struct DevBytes {
    void *ptr = nullptr;
    explicit DevBytes(size_t n) { FQ_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 16))); }
    ~DevBytes() { cudaFree(ptr); }
    DevBytes(const DevBytes &) = delete;
    DevBytes &operator=(const DevBytes &) = delete;
};

// Median time in microseconds of one call of fn(i) (i = call index, for rotating inputs). The calls are captured
// into a CUDA graph of `batch` launches (about 1 ms of work) and the graph is timed, as the engine replays its
// per-token step: host launch overhead, which would dominate decode-sized calls, is left out.
template <class Fn> double time_us(const Stream &stream, Fn &&fn) {
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    for (int i = 0; i < 3; ++i) fn(i);  // warm-up; also does each kernel's one-time attribute setup
    cudaEvent_t e0, e1;
    FQ_CUDA_CHECK(cudaEventCreate(&e0));
    FQ_CUDA_CHECK(cudaEventCreate(&e1));
    FQ_CUDA_CHECK(cudaEventRecord(e0, s));
    fn(3);
    FQ_CUDA_CHECK(cudaEventRecord(e1, s));
    FQ_CUDA_CHECK(cudaEventSynchronize(e1));
    float once_ms = 0.0f;
    FQ_CUDA_CHECK(cudaEventElapsedTime(&once_ms, e0, e1));
    const int batch = std::max(1, std::min(200, static_cast<int>(1.0f / std::max(once_ms, 1e-4f))));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    FQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    for (int b = 0; b < batch; ++b) fn(4 + b);
    FQ_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    FQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    FQ_CUDA_CHECK(cudaGraphLaunch(exec, s));  // warm-up of the graph itself
    std::vector<double> per_call;
    for (int r = 0; r < kRepeats; ++r) {
        FQ_CUDA_CHECK(cudaEventRecord(e0, s));
        FQ_CUDA_CHECK(cudaGraphLaunch(exec, s));
        FQ_CUDA_CHECK(cudaEventRecord(e1, s));
        FQ_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0.0f;
        FQ_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        per_call.push_back(1000.0 * ms / batch);
    }
    FQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
    FQ_CUDA_CHECK(cudaGraphDestroy(graph));
    FQ_CUDA_CHECK(cudaEventDestroy(e0));
    FQ_CUDA_CHECK(cudaEventDestroy(e1));
    std::sort(per_call.begin(), per_call.end());
    return per_call[per_call.size() / 2];
}

// One online transform of a layer: input pool, factors, outputs.
struct Transform {
    int n1, n2;
    bool has_p1, has_p2;
    int64_t tokens;
    int n_outputs;
    size_t slot_elems = 0, n_slots = 0;
    DevF16 pool, p1, p2;
    std::vector<std::unique_ptr<DevBytes>> out_q, out_s;  // per output: data (sized for every format), scales

    static size_t slots_for(int64_t tokens, int64_t n) {
        const size_t slot = static_cast<size_t>(tokens * n) * 2;
        return std::max<size_t>(1, (kPoolBytes + slot - 1) / slot);
    }
    Transform(int n1_, int n2_, bool p1_, bool p2_, int64_t t, int outs)
        : n1(n1_), n2(n2_), has_p1(p1_), has_p2(p2_), tokens(t), n_outputs(outs),
          slot_elems(static_cast<size_t>(t) * n1_ * n2_), n_slots(slots_for(t, int64_t{n1_} * n2_)),
          pool(slot_elems * n_slots, 1.0f, 1), p1(static_cast<size_t>(n1_) * n1_, 0.1f, 2),
          p2(static_cast<size_t>(n2_) * n2_, 0.1f, 3) {
        for (int o = 0; o < outs; ++o) {
            out_q.push_back(std::make_unique<DevBytes>(slot_elems * 2));
            out_s.push_back(std::make_unique<DevBytes>(static_cast<size_t>(t) * sizeof(float)));
        }
    }
    KronQuantArgs args(int i, KronOutFormat format) const {
        KronQuantArgs a;
        a.x_f16 = reinterpret_cast<const uint16_t *>(pool.ptr + (static_cast<size_t>(i) % n_slots) * slot_elems);
        a.p1_f16 = has_p1 ? reinterpret_cast<const uint16_t *>(p1.ptr) : nullptr;
        a.p2_f16 = has_p2 ? reinterpret_cast<const uint16_t *>(p2.ptr) : nullptr;
        a.tokens = tokens;
        a.n1 = n1;
        a.n2 = n2;
        a.format = format;
        a.n_outputs = format == KronOutFormat::kF16 ? 1 : n_outputs;
        for (int o = 0; o < a.n_outputs; ++o) {
            a.out[o].data = out_q[o]->ptr;
            a.out[o].scale = static_cast<float *>(out_s[o]->ptr);
            a.out[o].clip_max = 0.98201379f;
            a.out[o].clip_min = 0.98201379f;
        }
        return a;
    }
    double time(const Stream &stream, KronOutFormat format) const {
        return time_us(stream, [&](int i) { fq::cuda::kron_quant(args(i, format), stream); });
    }
};

// The cuBLAS FP16 GEMM C[T][N] = A[T][K] W[N][K]^T with FP32 accumulation.
double gemm_us(cublasHandle_t handle, const Stream &stream, int64_t tokens, int k, int n) {
    DevF16 a(static_cast<size_t>(tokens) * k, 1.0f, 4), w(static_cast<size_t>(n) * k, 0.02f, 5);
    DevBytes c(static_cast<size_t>(tokens) * n * 2);
    const float alpha = 1.0f, beta = 0.0f;
    return time_us(stream, [&](int) {
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, static_cast<int>(tokens), k, &alpha, w.ptr,
                                  CUDA_R_16F, k, a.ptr, CUDA_R_16F, k, &beta, c.ptr, CUDA_R_16F, n,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
}

struct LayerShape {
    const char *name;
    int hidden, ffn, heads, head_dim, qkv_out;
};

int run(bool quick) {
    if (fq::cuda::device_count() == 0) {
        std::fprintf(stderr, "no CUDA device\n");
        return 77;  // ctest's SKIP_RETURN_CODE convention of benchmarks/native
    }
    const fq::cuda::DeviceProperties props = fq::cuda::device_properties(fq::cuda::current_device());
    Stream stream = Stream::create();
    cublasHandle_t handle;
    CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasSetStream(handle, static_cast<cudaStream_t>(stream.handle())));
    std::printf("# kron_quant on %s (sm_%d%d, %d SMs)\n\n", props.name.c_str(), props.sm_major, props.sm_minor,
                props.n_sms);

    const int64_t token_counts[] = {1, 16, 256, 2048, 8192};
    struct Case {
        int64_t width;
        int gemm_k, gemm_n;
        const char *layer;
    };
    const Case cases[] = {{4096, 4096, 12288, "qkv 4096->12288 (LLaMA-2-7B)"},
                          {11008, 11008, 4096, "down 11008->4096 (LLaMA-2-7B)"},
                          {14336, 14336, 4096, "down 14336->4096 (LLaMA-3-8B)"}};
    std::printf("## Fused transform + quantization per factor pair\n\n");
    std::printf("| n (n1,n2) | tokens | plan (pad, tok/blk, stages, grid) | INT4 us | INT8 us | FP16-out us | "
                "ns/token | input GB/s | cuBLAS FP16 GEMM us (layer) | INT4 / GEMM |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (const Case &c : cases) {
        const fq::quant::DecomposeDims d = fq::quant::decompose_dim(c.width);
        for (int64_t t : token_counts) {
            if (quick && t != 1 && t != 2048) continue;
            Transform tr(d.n1, d.n2, true, true, t, 1);
            const fq::cuda::KronQuantPlan plan = fq::cuda::kron_quant_plan(tr.args(0, KronOutFormat::kInt4Packed));
            const double us4 = tr.time(stream, KronOutFormat::kInt4Packed);
            const double us8 = tr.time(stream, KronOutFormat::kInt8);
            const double us16 = tr.time(stream, KronOutFormat::kF16);
            const double g = gemm_us(handle, stream, t, c.gemm_k, c.gemm_n);
            std::printf("| %lld (%d,%d) | %lld | (%d,%d), %d, %d, %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f (%s) | "
                        "%.1f%% |\n",
                        static_cast<long long>(c.width), d.n1, d.n2, static_cast<long long>(t), plan.n1_padded,
                        plan.n2_padded, plan.tokens_per_block, plan.stages, plan.grid_blocks, us4, us8, us16,
                        1000.0 * us4 / t, 2.0 * t * c.width / (us4 * 1e3), g, c.layer, 100.0 * us4 / g);
            std::fflush(stdout);
        }
    }

    const LayerShape layers[] = {{"LLaMA-2-7B", 4096, 11008, 32, 128, 12288},
                                 {"LLaMA-3-8B", 4096, 14336, 32, 128, 6144}};
    std::printf("\n## Online transforms of one decoder layer vs its four FP16 GEMMs\n\n");
    std::printf("Transforms: P_a (3 outputs: q, k, v), P_h (o_proj input), P_ug (2 outputs: up, gate), P_d; INT4 "
                "packed. GEMMs: qkv, o, gate_up, down (cuBLAS FP16). Attention is not in the denominator.\n\n");
    std::printf("| model | tokens | P_a us | P_h us | P_ug us | P_d us | transforms us | GEMMs us | "
                "transforms / GEMMs |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const LayerShape &l : layers) {
        const fq::quant::DecomposeDims dh = fq::quant::decompose_dim(l.hidden), df = fq::quant::decompose_dim(l.ffn);
        for (int64_t t : token_counts) {
            if (quick && t != 1 && t != 2048) continue;
            const double pa = Transform(dh.n1, dh.n2, true, true, t, 3).time(stream, KronOutFormat::kInt4Packed);
            const double ph =
                Transform(l.heads, l.head_dim, true, false, t, 1).time(stream, KronOutFormat::kInt4Packed);
            const double pug = Transform(dh.n1, dh.n2, true, true, t, 2).time(stream, KronOutFormat::kInt4Packed);
            const double pd = Transform(df.n1, df.n2, true, true, t, 1).time(stream, KronOutFormat::kInt4Packed);
            const double gemms = gemm_us(handle, stream, t, l.hidden, l.qkv_out) +
                                 gemm_us(handle, stream, t, l.hidden, l.hidden) +
                                 gemm_us(handle, stream, t, l.hidden, 2 * l.ffn) +
                                 gemm_us(handle, stream, t, l.ffn, l.hidden);
            const double sum = pa + ph + pug + pd;
            std::printf("| %s | %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f%% |\n", l.name,
                        static_cast<long long>(t), pa, ph, pug, pd, sum, gemms, 100.0 * sum / gemms);
            std::fflush(stdout);
        }
    }
    CUBLAS_CHECK(cublasDestroy(handle));
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    try {
        return run(quick);
    } catch (const fq::Error &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
