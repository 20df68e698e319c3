// GPTQ with the calibration forward and the Hessians on the device (gptq_gpu.h).
#include "cuda/gptq_gpu.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <future>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"
#include "cuda/wineval_kernels.h"
#include "cuda/wineval_layers.h"
#include "quant/gptq.h"

namespace fq::cuda {

namespace {

using quant::kLinDown;
using quant::kLinGate;
using quant::kLinK;
using quant::kLinO;
using quant::kLinQ;
using quant::kLinUp;
using quant::kLinV;

constexpr int64_t kPassTokens = 16384;  // windows per layer pass: rows enough for the products to fill an H100

// sum[i] += (double)prod[w][i] for w = 0, 1, .., n_windows - 1 in that order: HessianAccumulator's double sum of
// each window's float product. sum [n], prod [n_windows][n]; grid-stride over i.
__global__ void accumulate_windows_kernel(double *sum, const float *prod, int64_t n, int64_t n_windows) {
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
        double s = sum[i];
        for (int64_t w = 0; w < n_windows; w++) s += static_cast<double>(prod[w * n + i]);
        sum[i] = s;
    }
}

void accumulate_windows(double *sum, const float *prod, int64_t n, int64_t n_windows, void *stream) {
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535 * 16);
    accumulate_windows_kernel<<<static_cast<unsigned>(blocks), threads, 0, static_cast<cudaStream_t>(stream)>>>(
        sum, prod, n, n_windows);
    FQ_CUDA_CHECK(cudaGetLastError());
}

// Makes `device` current for the scope's lifetime and restores the caller's device afterwards.
class DeviceScope {
  public:
    explicit DeviceScope(int device) : previous_(current_device()) { set_device(device); }
    ~DeviceScope() {
        try {
            set_device(previous_);
        } catch (...) {  // nothing to do about it in a destructor
        }
    }
    DeviceScope(const DeviceScope &) = delete;
    DeviceScope &operator=(const DeviceScope &) = delete;

  private:
    int previous_;
};

// The inputs one pass of a group has met so far, in the order of arrival: each distinct buffer gets a sum (slot).
struct PassInputs {
    const float *ptr[3] = {nullptr, nullptr, nullptr};
    int n = 0;
    // The slot of x, a new one when it is new (fresh set); at most 3 distinct inputs per group.
    int slot_of(const float *x, bool *fresh) {
        *fresh = false;
        for (int i = 0; i < n; i++)
            if (ptr[i] == x) return i;
        FQ_CHECK(n < 3, FQ_STATUS_INTERNAL, "GPTQ: more than three inputs in one group");
        ptr[n] = x;
        *fresh = true;
        return n++;
    }
};

}  // namespace

void gptq_model_gpu(quant::QuantizedModel &qm, ThreadPool &pool, const std::vector<int32_t> &windows,
                    const quant::CalibOptions &o, quant::CalibrationResult &r, const Progress &progress, int device) {
    FQ_CHECK(device >= 0 && device < device_count(), FQ_STATUS_DEVICE_UNAVAILABLE,
             "CUDA device %d is not available (%d devices)", device, device_count());
    const Model &model = *qm.base;
    const ModelConfig &c = model.config;
    const int bits = qm.scheme.bits.w;
    const int64_t n = o.nsamples, L = o.seqlen, E = c.n_embd, V = c.n_vocab;
    const int64_t max_in = std::max({c.n_embd, c.q_dim(), c.n_ff});
    DeviceScope scope(device);
    wineval::DeviceLayers layers(qm);
    const Stream &stream = layers.stream();
    void *sp = stream.handle();
    const int64_t per_pass = std::clamp<int64_t>(kPassTokens / L, 1, n);
    layers.reserve(per_pass * L, L);

    // The hidden states of every window [n * L][E], and one pass's copy of them for the hooked (partial) passes.
    DeviceBuffer inps(sizeof(float) * static_cast<size_t>(n * L * E)), xs(sizeof(float) * size_t(per_pass * L * E));
    {
        FQ_CHECK(model.weights.tok_embd.size() == size_t(V * E), FQ_STATUS_INVALID_ARGUMENT, "token embeddings");
        DeviceBuffer emb(sizeof(float) * model.weights.tok_embd.size()), ids(sizeof(int32_t) * size_t(n * L));
        emb.upload(model.weights.tok_embd.data(), emb.n_bytes(), stream);
        ids.upload(windows.data(), ids.n_bytes(), stream);
        wineval::embed_rows(inps.as<float>(), ids.as<int32_t>(), emb.as<float>(), n * L, E, sp);
        stream.synchronize();
    }
    DeviceBuffer prod(sizeof(float) * static_cast<size_t>(per_pass * max_in * max_in));  // [per_pass][in][in]
    DeviceBuffer sums[3];                                                                 // [in][in] doubles each
    for (auto &s : sums) s = DeviceBuffer(sizeof(double) * static_cast<size_t>(max_in * max_in));

    const std::vector<std::vector<int>> groups = {{kLinK, kLinV, kLinQ}, {kLinO}, {kLinUp, kLinGate}, {kLinDown}};
    r.gptq.assign(static_cast<size_t>(c.n_layer), {});
    progress.step("gptq", 0, c.n_layer);
    for (int32_t l = 0; l < c.n_layer; l++) {
        quant::QuantLayer &ql = qm.layers[static_cast<size_t>(l)];
        for (const std::vector<int> &group : groups) {
            const int last = *std::max_element(group.begin(), group.end());  // the last one the forward reaches
            int slot_of[3] = {-1, -1, -1};  // group member -> its sum, fixed by the first pass
            PassInputs seen;                // reset before every pass
            for (auto &s : sums) s.fill_bytes(0, stream);
            wineval::DeviceLinearHook hook = [&](int lin, const float *x, int64_t rows) {
                const auto it = std::find(group.begin(), group.end(), lin);
                if (it == group.end()) return lin != last;
                const int g = static_cast<int>(it - group.begin());
                bool fresh = false;
                const int slot = seen.slot_of(x, &fresh);
                if (fresh) {  // a member whose input is an earlier member's (same buffer) shares that sum
                    const int64_t in = quant::linear_shape(c, lin).in, n_win = rows / L;
                    // prod[w] = X_w^T X_w, X_w [L][in] the rows of window w.
                    gemm_f32_batched(true, false, in, in, L, 1.0f, x, in, L * in, x, in, L * in, 0.0f,
                                     prod.as<float>(), in, in * in, n_win, sp);
                    accumulate_windows(sums[slot].as<double>(), prod.as<float>(), in * in, n_win, sp);
                }
                FQ_CHECK(slot_of[g] < 0 || slot_of[g] == slot, FQ_STATUS_INTERNAL,
                         "GPTQ: %s changed its input between passes", quant::linear_name(lin));
                slot_of[g] = slot;
                return lin != last;
            };
            for (int64_t w0 = 0; w0 < n; w0 += per_pass) {
                const int64_t nw = std::min(per_pass, n - w0);
                FQ_CUDA_CHECK(cudaMemcpyAsync(xs.as<float>(), inps.as<float>() + w0 * L * E,
                                              sizeof(float) * static_cast<size_t>(nw * L * E),
                                              cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(sp)));
                seen = PassInputs();
                layers.run(l, xs.as<float>(), nw, L, &hook);
                progress.check_cancelled();
            }
            // H = (2 / n) * sum, as HessianAccumulator::hessian scales it; then the group's linears at once.
            std::vector<std::vector<double>> hess(group.size());
            for (size_t g = 0; g < group.size(); g++) {
                const int64_t in = quant::linear_shape(c, group[g]).in;
                hess[g].resize(static_cast<size_t>(in * in));
                FQ_CHECK(slot_of[g] >= 0, FQ_STATUS_INTERNAL, "GPTQ: the forward never reached %s",
                         quant::linear_name(group[g]));
                sums[slot_of[g]].download(hess[g].data(), sizeof(double) * hess[g].size(), stream);
                const double f = 2.0 / static_cast<double>(n);
                for (double &v : hess[g]) v *= f;
            }
            std::vector<std::future<void>> jobs;
            for (size_t g = 0; g < group.size(); g++) {
                jobs.push_back(std::async(std::launch::async, [&, g] {
                    const int lin = group[g];
                    const quant::LinearShape s = quant::linear_shape(c, lin);
                    quant::QuantizedWeight &qw = r.gptq[static_cast<size_t>(l)][static_cast<size_t>(lin)];
                    quant::gptq_quantize(ql.lin[lin].w.data(), s.out, s.in, hess[g], bits, o.percdamp,
                                         o.gptq_blocksize, pool, &qw);
                    ql.lin[lin].scale = qw.scale;
                }));
            }
            for (auto &j : jobs) j.get();  // the first failure is rethrown once every job has ended
            for (int lin : group) layers.set_weight(l, lin, ql.lin[lin].w.data());
            progress.check_cancelled();
        }
        // The quantized layer's outputs feed the next layer.
        for (int64_t w0 = 0; w0 < n; w0 += per_pass)
            layers.run(l, inps.as<float>() + w0 * L * E, std::min(per_pass, n - w0), L);
        stream.synchronize();
        progress.step("gptq", l + 1, c.n_layer);
    }
    qm.weights_quantized = true;
}

}  // namespace fq::cuda
