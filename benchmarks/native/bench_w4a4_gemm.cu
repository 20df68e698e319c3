// W4A4 GEMM speed against cuBLAS FP16 and FP8 on LLaMA-2-7B / LLaMA-3-8B layer shapes, timed in the same run on the
// same GPU. Before anything is timed, every W4A4 kernel of this device is checked bit for bit against the CPU twin
// on one shape, and the cuBLAS calls against a double-precision reference on sampled elements; a kernel that fails
// is not timed (the exit status is then 1).
//
// Method: CUDA events around each call, 5 warm-up calls, the median of --iterations (default 30) timed calls. Each
// call reads the next of R copies of its inputs, R chosen so the copies span >= 200 MB (4x the H100's 50 MB L2), so
// no call finds its operands in L2. Random data everywhere (never zeros).
//
//   D (M, N) = A (M, K) . W (N, K)^T      FP16: cublasGemmEx, FP32 accumulation, FP16 out
//                                         FP8:  cublasLtMatmul e4m3 x e4m3, per-tensor scales, FP32 accumulation,
//                                               FP16 out; with and without CUBLASLT_MATMUL_DESC_FAST_ACCUM
//                                         W4A4: fq::cuda::w4a4_gemm, INT8-valued activations (the sm_90 native
//                                               form; packed INT4 elsewhere), per-token/per-channel FP32 scales
//
// Usage: bench_w4a4_gemm [--iterations=N] [--out=FILE.md] [--m=1,16,256,2048,8192]
//   --iterations=0 runs the checks only (what ctest does). Exit 77 (skip) without a CUDA device.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "cpu/w4a4_gemm_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/w4a4_gemm.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::W4A4ActFormat;
using fq::cuda::W4A4GemmArgs;
using fq::cuda::W4A4Kernel;

#define CUBLAS_CHECK(...)                                                                                    \
    do {                                                                                                     \
        const cublasStatus_t st_ = (__VA_ARGS__);                                                            \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            FQ_FAIL(FQ_STATUS_CUDA, "%s failed: cuBLAS status %d (%s:%d)", #__VA_ARGS__, static_cast<int>(st_), \
                    __FILE__, __LINE__);                                                                     \
    } while (0)

struct Layer {
    const char *name;
    int64_t n, k;
};
// LLaMA-2-7B then LLaMA-3-8B (q, k and v fused; gate and up fused).
const Layer kLayers[] = {{"7B qkv", 12288, 4096}, {"7B o", 4096, 4096},   {"7B gate_up", 22016, 4096},
                         {"7B down", 4096, 11008}, {"8B qkv", 6144, 4096}, {"8B gate_up", 28672, 4096},
                         {"8B down", 4096, 14336}};

// ---- device-side random fill ---------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return static_cast<uint32_t>(x);
}

// kind 0: any byte (packed INT4); 1: int8 in [-8, 7]; 2: FP16 uniform in [-1, 1) (n counts halves);
// 3: FP8 e4m3 of uniform [-1, 1).
__global__ void fill_kernel(void *p, int64_t n, uint64_t seed, int kind) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const uint32_t h = hash32(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i));
        const float u = static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
        switch (kind) {
        case 0: static_cast<uint8_t *>(p)[i] = static_cast<uint8_t>(h); break;
        case 1: static_cast<int8_t *>(p)[i] = static_cast<int8_t>(static_cast<int>(h & 15u) - 8); break;
        case 2: static_cast<__half *>(p)[i] = __float2half_rn(u); break;
        default: static_cast<__nv_fp8_e4m3 *>(p)[i] = __nv_fp8_e4m3(u); break;
        }
    }
}

void fill(DeviceBuffer &buf, int64_t n, uint64_t seed, int kind) {
    fill_kernel<<<1024, 256>>>(buf.data(), n, seed, kind);
    FQ_CUDA_CHECK(cudaGetLastError());
    FQ_CUDA_CHECK(cudaDeviceSynchronize());  // the legacy stream does not order the timed (non-blocking) stream
}

__global__ void fill_scales_kernel(float *p, int64_t n, uint64_t seed) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        p[i] = 1e-3f + 1e-2f * static_cast<float>(hash32(seed + static_cast<uint64_t>(i)) >> 8) / 16777216.0f;
}

// ---- timing ---------------------------------------------------------------------------------------------------------

struct Timer {
    cudaStream_t stream;
    int iterations;
    template <class Fn> double median_us(int n_sets, Fn &&call) const {
        for (int i = 0; i < 5; ++i) call(i % n_sets);
        const size_t n = static_cast<size_t>(iterations);
        std::vector<cudaEvent_t> start(n), stop(n);
        for (size_t i = 0; i < n; ++i) {
            FQ_CUDA_CHECK(cudaEventCreate(&start[i]));
            FQ_CUDA_CHECK(cudaEventCreate(&stop[i]));
        }
        for (size_t i = 0; i < n; ++i) {
            FQ_CUDA_CHECK(cudaEventRecord(start[i], stream));
            call(static_cast<int>((i + 5) % static_cast<size_t>(n_sets)));
            FQ_CUDA_CHECK(cudaEventRecord(stop[i], stream));
        }
        FQ_CUDA_CHECK(cudaStreamSynchronize(stream));
        std::vector<double> us(n);
        for (size_t i = 0; i < n; ++i) {
            float ms = 0.0f;
            FQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start[i], stop[i]));
            us[i] = 1e3 * ms;
            (void)cudaEventDestroy(start[i]);
            (void)cudaEventDestroy(stop[i]);
        }
        std::sort(us.begin(), us.end());
        return us[us.size() / 2];
    }
};

// ---- cuBLAS baselines ---------------------------------------------------------------------------------------------

struct Blas {
    cublasHandle_t handle = nullptr;
    cublasLtHandle_t lt = nullptr;
    mutable DeviceBuffer lt_workspace{64u << 20};  // shared by cuBLAS and cuBLASLt (calls are serialized on one stream)
    DeviceBuffer unit_scale{sizeof(float)};
    cudaStream_t stream;

    explicit Blas(cudaStream_t s) : stream(s) {
        CUBLAS_CHECK(cublasCreate(&handle));
        CUBLAS_CHECK(cublasSetStream(handle, s));
        CUBLAS_CHECK(cublasSetWorkspace(handle, lt_workspace.data(), lt_workspace.n_bytes()));
        CUBLAS_CHECK(cublasLtCreate(&lt));
        const float one = 1.0f;
        FQ_CUDA_CHECK(cudaMemcpy(unit_scale.data(), &one, sizeof one, cudaMemcpyHostToDevice));
    }
    ~Blas() {
        cublasLtDestroy(lt);
        cublasDestroy(handle);
    }

    // d (m, n) = a (m, k) . w (n, k)^T, all row-major = column-major d^T (n, m) = w^T' . a^T: op(W) = T, op(A) = N.
    void fp16(__half *d, const __half *a, const __half *w, int m, int n, int k) const {
        const float alpha = 1.0f, beta = 0.0f;
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, CUDA_R_16F, k, a, CUDA_R_16F,
                                  k, &beta, d, CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    // The same product in e4m3 (the "TN" form FP8 requires), scales 1, FP16 out.
    struct Fp8Plan {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t lw = nullptr, la = nullptr, ld = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    Fp8Plan fp8_plan(int m, int n, int k, bool fast_accum) const {
        Fp8Plan p;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn));
        const void *scale = unit_scale.data();
        const auto a_scale_attr = CUBLASLT_MATMUL_DESC_A_SCALE_POINTER;
        const auto b_scale_attr = CUBLASLT_MATMUL_DESC_B_SCALE_POINTER;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, a_scale_attr, &scale, sizeof scale));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, b_scale_attr, &scale, sizeof scale));
        const int8_t fast = fast_accum ? 1 : 0;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.lw, CUDA_R_8F_E4M3, k, n, k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_8F_E4M3, k, m, k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.ld, CUDA_R_16F, n, m, n));
        cublasLtMatmulPreference_t pref = nullptr;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const size_t ws = lt_workspace.n_bytes();
        const auto ws_attr = CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, ws_attr, &ws, sizeof ws));
        cublasLtMatmulHeuristicResult_t result{};
        int n_results = 0;
        CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.lw, p.la, p.ld, p.ld, pref, 1, &result, &n_results));
        cublasLtMatmulPreferenceDestroy(pref);
        FQ_CHECK(n_results > 0, FQ_STATUS_UNSUPPORTED, "cuBLASLt has no FP8 algorithm for m=%d n=%d k=%d", m, n, k);
        p.algo = result.algo;
        return p;
    }
    void free_plan(Fp8Plan &p) const {
        cublasLtMatrixLayoutDestroy(p.lw);
        cublasLtMatrixLayoutDestroy(p.la);
        cublasLtMatrixLayoutDestroy(p.ld);
        cublasLtMatmulDescDestroy(p.desc);
    }
    void fp8(const Fp8Plan &p, __half *d, const void *a, const void *w) const {
        const float alpha = 1.0f, beta = 0.0f;
        CUBLAS_CHECK(cublasLtMatmul(lt, p.desc, &alpha, w, p.lw, a, p.la, &beta, d, p.ld, d, p.ld, &p.algo,
                                    lt_workspace.data(), lt_workspace.n_bytes(), stream));
    }
};

// ---- checks ---------------------------------------------------------------------------------------------------------

template <class T> std::vector<T> to_host(const DeviceBuffer &b, size_t n) {
    std::vector<T> h(n);
    FQ_CUDA_CHECK(cudaMemcpy(h.data(), b.data(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

DeviceBuffer to_device(const void *p, size_t bytes) {
    DeviceBuffer b(bytes);
    FQ_CUDA_CHECK(cudaMemcpy(b.data(), p, bytes, cudaMemcpyHostToDevice));
    return b;
}

float half_to_float(uint16_t h) {
    __half_raw r;
    r.x = h;
    return __half2float(__half(r));
}

// A W4A4 kernel against the twin, bit for bit, on one (m, n, k) with bias. Returns false (and says why) on any
// difference.
bool check_w4a4(W4A4Kernel kernel, int64_t m, int64_t n, int64_t k, const fq::cuda::Stream &stream) {
    std::mt19937 rng(static_cast<uint32_t>(m * 31 + n));
    std::uniform_int_distribution<int> q(-8, 7);
    std::uniform_real_distribution<float> sc(1e-3f, 1e-2f);
    std::vector<int8_t> a(static_cast<size_t>(m * k)), w(static_cast<size_t>(n * k));
    for (auto &x : a) x = static_cast<int8_t>(q(rng));
    for (auto &x : w) x = static_cast<int8_t>(q(rng));
    std::vector<uint8_t> a_packed(a.size() / 2), w_packed(w.size() / 2);
    fq::cpu::pack_int4(a_packed.data(), a.data(), m, k);
    fq::cpu::pack_int4(w_packed.data(), w.data(), n, k);
    std::vector<float> as(static_cast<size_t>(m)), ws(static_cast<size_t>(n)), bias(static_cast<size_t>(n));
    for (auto &x : as) x = sc(rng);
    for (auto &x : ws) x = sc(rng);
    for (auto &x : bias) x = sc(rng) * 50.0f - 0.25f;
    std::vector<uint16_t> ref(static_cast<size_t>(m * n));
    fq::cpu::w4a4_gemm(ref.data(), a_packed.data(), w_packed.data(), as.data(), ws.data(), bias.data(), m, n, k);

    const W4A4ActFormat fmt = fq::cuda::w4a4_native_act_format();
    const bool a_int8 = fmt == W4A4ActFormat::kInt8;
    DeviceBuffer d_a = a_int8 ? to_device(a.data(), a.size()) : to_device(a_packed.data(), a_packed.size());
    DeviceBuffer d_w = to_device(w_packed.data(), w_packed.size()), d_w8 = to_device(w.data(), w.size());
    DeviceBuffer d_as = to_device(as.data(), as.size() * 4), d_ws = to_device(ws.data(), ws.size() * 4);
    DeviceBuffer d_bias = to_device(bias.data(), bias.size() * 4), d_d(ref.size() * 2);
    W4A4GemmArgs g;
    g.d_f16 = d_d.as<uint16_t>();
    g.a = d_a.data(), g.a_format = fmt, g.a_scale = d_as.as<float>();
    g.b_packed = d_w.as<uint8_t>(), g.b_s8 = d_w8.as<int8_t>(), g.b_scale = d_ws.as<float>();
    g.bias = d_bias.as<float>();
    g.m = m, g.n = n, g.k = k;
    const size_t ws_bytes = fq::cuda::w4a4_gemm_workspace_bytes(g, kernel);
    DeviceBuffer d_work(ws_bytes);
    fq::cuda::w4a4_gemm(g, d_work.data(), ws_bytes, stream, kernel);
    stream.synchronize();
    const std::vector<uint16_t> out = to_host<uint16_t>(d_d, ref.size());
    const char *name = fq::cuda::w4a4_kernel_name(kernel);
    int64_t bad = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] != ref[i] && ++bad <= 5)
            std::fprintf(stderr, "  %s: D[%zu][%zu] = %g, twin %g\n", name, i / static_cast<size_t>(n),
                         i % static_cast<size_t>(n), half_to_float(out[i]), half_to_float(ref[i]));
    }
    std::fprintf(stderr, "check %-48s m=%lld n=%lld k=%lld: %s (%lld of %zu differ)\n", name,
                 static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k),
                 bad == 0 ? "bit-exact" : "WRONG", static_cast<long long>(bad), out.size());
    return bad == 0;
}

// cuBLAS results on 64 sampled elements against a double reference from the same (rounded) inputs. Catches a wrong
// operand layout, which would otherwise time a different product. Tolerance: FP32 accumulation of k products of
// values <= 1 plus one FP16 rounding: 2^-9 relative to |ref| + 1e-3 sqrt(k) absolute, generous for both.
template <class In>
bool check_blas(const char *what, const DeviceBuffer &d, const DeviceBuffer &a, const DeviceBuffer &w, int m, int n,
                int k, float (*to_float)(In)) {
    const size_t mz = static_cast<size_t>(m), nz = static_cast<size_t>(n), kz = static_cast<size_t>(k);
    const std::vector<uint16_t> out = to_host<uint16_t>(d, mz * nz);
    const std::vector<In> ha = to_host<In>(a, mz * kz), hw = to_host<In>(w, nz * kz);
    std::mt19937 rng(5);
    int bad = 0;
    for (int s = 0; s < 64; ++s) {
        const size_t i = rng() % mz, j = rng() % nz;
        double ref = 0.0;
        for (size_t p = 0; p < kz; ++p)
            ref += static_cast<double>(to_float(ha[i * kz + p])) * static_cast<double>(to_float(hw[j * kz + p]));
        const double got = half_to_float(out[i * nz + j]);
        if (!(std::fabs(got - ref) <= std::ldexp(std::fabs(ref), -9) + 1e-3 * std::sqrt(k)) && ++bad <= 3)
            std::fprintf(stderr, "  %s: D[%zu][%zu] = %g, reference %g\n", what, i, j, got, ref);
    }
    std::fprintf(stderr, "check %-48s m=%d n=%d k=%d: %s\n", what, m, n, k, bad == 0 ? "ok" : "WRONG");
    return bad == 0;
}

float f16_in(uint16_t h) { return half_to_float(h); }
float f8_in(uint8_t b) {
    __nv_fp8_e4m3 v;
    v.__x = b;
    return static_cast<float>(v);
}

// Every W4A4 kernel this device runs (each checked against the twin; failures are left out and reported), then
// cuBLAS FP16 and FP8 on a small problem.
std::vector<W4A4Kernel> run_checks(const Blas &blas, const fq::cuda::Stream &stream, bool &all_ok) {
    std::vector<W4A4Kernel> good;
    for (W4A4Kernel kern : {W4A4Kernel::kGemv, W4A4Kernel::kSm80Int4, W4A4Kernel::kSm90S8S4, W4A4Kernel::kSm90S8S8}) {
        const int64_t m = kern == W4A4Kernel::kGemv ? 16 : 300, n = 1032, k = 4096;  // ragged tiles in m and n
        W4A4GemmArgs probe;
        probe.m = m, probe.n = n, probe.k = k;
        int8_t dummy = 0;
        probe.b_s8 = &dummy;
        try {
            fq::cuda::w4a4_select_kernel(probe, kern);
        } catch (const fq::Error &) {
            continue;  // not on this device or build
        }
        if (check_w4a4(kern, m, n, k, stream)) good.push_back(kern);
        else all_ok = false;
    }
    const int m = 96, n = 256, k = 4096;
    const int64_t mk = int64_t{m} * k, nk = int64_t{n} * k;
    DeviceBuffer a(static_cast<size_t>(mk) * 2), w(static_cast<size_t>(nk) * 2), d(static_cast<size_t>(m) * n * 2);
    fill(a, mk, 1, 2);
    fill(w, nk, 2, 2);
    blas.fp16(d.as<__half>(), a.as<__half>(), w.as<__half>(), m, n, k);
    stream.synchronize();
    all_ok &= check_blas<uint16_t>("cublas_fp16", d, a, w, m, n, k, f16_in);
    DeviceBuffer a8(static_cast<size_t>(mk)), w8(static_cast<size_t>(nk));
    fill(a8, mk, 3, 3);
    fill(w8, nk, 4, 3);
    Blas::Fp8Plan plan = blas.fp8_plan(m, n, k, false);
    blas.fp8(plan, d.as<__half>(), a8.data(), w8.data());
    stream.synchronize();
    blas.free_plan(plan);
    all_ok &= check_blas<uint8_t>("cublaslt_fp8_e4m3", d, a8, w8, m, n, k, f8_in);
    return good;
}

// ---- timed runs ---------------------------------------------------------------------------------------------------

// Copies of a call's inputs so that r * set_bytes >= 200 MB (at most 64 copies).
int rotation(size_t set_bytes) {
    return static_cast<int>(std::min<size_t>(64, std::max<size_t>(1, (size_t{200} << 20) / set_bytes + 1)));
}

struct Shape {
    int m, n, k;
    int64_t mk() const { return int64_t{m} * k; }
    int64_t nk() const { return int64_t{n} * k; }
};

double time_fp16(const Blas &blas, const Timer &timer, const Shape &s, DeviceBuffer &d) {
    const int r = rotation(static_cast<size_t>(s.mk() + s.nk()) * 2);
    std::vector<DeviceBuffer> as, ws;
    for (int i = 0; i < r; ++i) {
        as.emplace_back(static_cast<size_t>(s.mk()) * 2);
        ws.emplace_back(static_cast<size_t>(s.nk()) * 2);
        fill(as.back(), s.mk(), 10 + i, 2);
        fill(ws.back(), s.nk(), 100 + i, 2);
    }
    return timer.median_us(r, [&](int i) {
        const size_t c = static_cast<size_t>(i);
        blas.fp16(d.as<__half>(), as[c].as<__half>(), ws[c].as<__half>(), s.m, s.n, s.k);
    });
}

// NaN where cuBLASLt has no FP8 algorithm for the shape (reported as n/a, not fatal).
double time_fp8(const Blas &blas, const Timer &timer, const Shape &s, DeviceBuffer &d, bool fast_accum) {
    const int r = rotation(static_cast<size_t>(s.mk() + s.nk()));
    std::vector<DeviceBuffer> as, ws;
    for (int i = 0; i < r; ++i) {
        as.emplace_back(static_cast<size_t>(s.mk()));
        ws.emplace_back(static_cast<size_t>(s.nk()));
        fill(as.back(), s.mk(), 20 + i, 3);
        fill(ws.back(), s.nk(), 200 + i, 3);
    }
    try {
        Blas::Fp8Plan plan = blas.fp8_plan(s.m, s.n, s.k, fast_accum);
        const double t = timer.median_us(r, [&](int i) {
            const size_t c = static_cast<size_t>(i);
            blas.fp8(plan, d.as<__half>(), as[c].data(), ws[c].data());
        });
        blas.free_plan(plan);
        return t;
    } catch (const fq::Error &e) {
        std::fprintf(stderr, "FP8 m=%d n=%d k=%d: %s\n", s.m, s.n, s.k, e.what());
        (void)cudaGetLastError();
        return std::nan("");
    }
}

// W4A4 times per kernel (NaN for a kernel that does not take this shape, e.g. the GEMV above M = 16).
std::vector<double> time_w4a4(const std::vector<W4A4Kernel> &kernels, const Timer &timer,
                              const fq::cuda::Stream &stream, const Shape &s, DeviceBuffer &d) {
    const W4A4ActFormat fmt = fq::cuda::w4a4_native_act_format();
    const bool a_int8 = fmt == W4A4ActFormat::kInt8;
    const size_t a_bytes = static_cast<size_t>(a_int8 ? s.mk() : s.mk() / 2);
    const int r = rotation(a_bytes + static_cast<size_t>(s.nk() / 2));
    std::vector<DeviceBuffer> as, wp, w8;
    for (int i = 0; i < r; ++i) {
        as.emplace_back(a_bytes);
        wp.emplace_back(static_cast<size_t>(s.nk() / 2));
        fill(as.back(), static_cast<int64_t>(a_bytes), 30 + i, a_int8 ? 1 : 0);
        fill(wp.back(), s.nk() / 2, 300 + i, 0);
    }
    const bool any_s8s8 = std::find(kernels.begin(), kernels.end(), W4A4Kernel::kSm90S8S8) != kernels.end();
    for (int i = 0; any_s8s8 && i < rotation(a_bytes + static_cast<size_t>(s.nk())); ++i) {
        w8.emplace_back(static_cast<size_t>(s.nk()));
        fill(w8.back(), s.nk(), 400 + i, 1);
    }
    DeviceBuffer a_scale(static_cast<size_t>(s.m) * 4), b_scale(static_cast<size_t>(s.n) * 4);
    fill_scales_kernel<<<256, 256>>>(a_scale.as<float>(), s.m, 7);
    fill_scales_kernel<<<256, 256>>>(b_scale.as<float>(), s.n, 8);
    FQ_CUDA_CHECK(cudaGetLastError());
    FQ_CUDA_CHECK(cudaDeviceSynchronize());

    std::vector<double> times;
    for (W4A4Kernel kern : kernels) {
        W4A4GemmArgs g;
        g.d_f16 = d.as<uint16_t>(), g.a = as[0].data(), g.a_format = fmt, g.a_scale = a_scale.as<float>();
        g.b_packed = wp[0].as<uint8_t>(), g.b_s8 = w8.empty() ? nullptr : w8[0].as<int8_t>();
        g.b_scale = b_scale.as<float>(), g.m = s.m, g.n = s.n, g.k = s.k;
        try {
            fq::cuda::w4a4_select_kernel(g, kern);
        } catch (const fq::Error &) {
            times.push_back(std::nan(""));
            continue;
        }
        const size_t ws_bytes = fq::cuda::w4a4_gemm_workspace_bytes(g, kern);
        DeviceBuffer work(ws_bytes);
        // With the INT8 copy, the rotation is over (A, INT8 B) pairs: w8 may have more or fewer copies than wp.
        const int n_sets = kern == W4A4Kernel::kSm90S8S8 ? static_cast<int>(w8.size()) : r;
        times.push_back(timer.median_us(n_sets, [&](int i) {
            W4A4GemmArgs gi = g;
            gi.a = as[static_cast<size_t>(i % r)].data();
            gi.b_packed = wp[static_cast<size_t>(i % r)].as<uint8_t>();
            if (!w8.empty()) gi.b_s8 = w8[static_cast<size_t>(i) % w8.size()].as<int8_t>();
            fq::cuda::w4a4_gemm(gi, work.data(), ws_bytes, stream, kern);
        }));
    }
    return times;
}

std::string fmt_num(double v, const char *fmt) {
    if (std::isnan(v)) return "n/a";
    char b[32];
    std::snprintf(b, sizeof b, fmt, v);
    return b;
}

std::vector<int> parse_list(const std::string &s) {
    std::vector<int> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    int iterations = 30;
    std::string out_path;
    std::vector<int> ms = {1, 16, 256, 2048, 8192};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--iterations=", 0) == 0) {
            iterations = std::stoi(arg.substr(13));
        } else if (arg.rfind("--out=", 0) == 0) {
            out_path = arg.substr(6);
        } else if (arg.rfind("--m=", 0) == 0) {
            ms = parse_list(arg.substr(4));
        } else {
            std::fprintf(stderr, "usage: %s [--iterations=N] [--out=FILE.md] [--m=1,16,...]\n", argv[0]);
            return 2;
        }
    }
    if (fq::cuda::device_count() == 0) {
        std::fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    try {
        const fq::cuda::DeviceProperties prop = fq::cuda::device_properties(0);
        const fq::cuda::Stream stream = fq::cuda::Stream::create();
        const Blas blas(static_cast<cudaStream_t>(stream.handle()));
        bool all_ok = true;
        const std::vector<W4A4Kernel> kernels = run_checks(blas, stream, all_ok);
        if (iterations == 0) return all_ok ? 0 : 1;

        const Timer timer{static_cast<cudaStream_t>(stream.handle()), iterations};
        const bool a_int8 = fq::cuda::w4a4_native_act_format() == W4A4ActFormat::kInt8;
        std::ostringstream md;
        md << "## W4A4 GEMM vs cuBLAS on " << prop.name << " (sm_" << prop.sm_major << prop.sm_minor << ", "
           << prop.n_sms << " SMs)\n\n"
           << "Median of " << iterations << " calls after 5 warm-up calls, CUDA events, inputs rotated over >= 200 MB "
           << "(L2: " << (prop.l2_cache_bytes >> 20) << " MB), random data. TOPS = 2 M N K / time. W4A4: "
           << (a_int8 ? "INT8-valued" : "packed INT4") << " activations (this device's native form), packed INT4 "
           << "weights (S8S8: their INT8 copy), FP32 scales, FP16 out; for M <= 16 the GEMV. FP8: cuBLASLt e4m3, "
           << "per-tensor scales, FP16 out, default and fast accumulation. Reproduce: `tools/device/bench_gemm.sh`."
           << "\n\n| M | layer (K->N) | FP16 us | FP8 us | FP8 fast us | W4A4 kernel | W4A4 us | W4A4 TOPS | vs FP16 "
           << "| vs FP8 | vs FP8 fast |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        for (int m : ms) {
            for (const Layer &layer : kLayers) {
                const Shape s{m, static_cast<int>(layer.n), static_cast<int>(layer.k)};
                DeviceBuffer d(static_cast<size_t>(s.m) * static_cast<size_t>(s.n) * 2);
                const double t16 = time_fp16(blas, timer, s, d);
                const double t8 = time_fp8(blas, timer, s, d, false), t8f = time_fp8(blas, timer, s, d, true);
                const std::vector<double> t4 = time_w4a4(kernels, timer, stream, s, d);
                for (size_t i = 0; i < kernels.size(); ++i) {
                    if (std::isnan(t4[i])) continue;
                    const double tops = 2.0 * m * static_cast<double>(s.n) * s.k / (t4[i] * 1e-6) / 1e12;
                    char row[512];
                    std::snprintf(row, sizeof row,
                                  "| %d | %s (%d->%d) | %.1f | %s | %s | %s | %.1f | %.0f | %.2fx | %s | %s |\n", m,
                                  layer.name, s.k, s.n, t16, fmt_num(t8, "%.1f").c_str(),
                                  fmt_num(t8f, "%.1f").c_str(), fq::cuda::w4a4_kernel_name(kernels[i]), t4[i], tops,
                                  t16 / t4[i], fmt_num(t8 / t4[i], "%.2fx").c_str(),
                                  fmt_num(t8f / t4[i], "%.2fx").c_str());
                    md << row;
                    std::fputs(row, stdout);
                    std::fflush(stdout);
                }
            }
        }
        if (!out_path.empty()) {
            FILE *f = std::fopen(out_path.c_str(), "w");
            FQ_CHECK(f != nullptr, FQ_STATUS_IO, "cannot write %s", out_path.c_str());
            std::fputs(md.str().c_str(), f);
            std::fclose(f);
        }
        return all_ok ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "bench_w4a4_gemm: %s\n", e.what());
        return 1;
    }
}
