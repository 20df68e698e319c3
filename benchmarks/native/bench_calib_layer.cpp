// FlatQuant calibration of one decoder layer on the GPU (cuda::CalibLayer), timed at the official settings: 128
// windows of 2048 tokens, batch 4, W4A4KV4 with every transform, smoothing scale, LWC and LAC, 15 epochs of 32
// AdamW steps. Random weights (speed does not depend on the values) of two shapes:
//   llama2-7b     E 4096, F 11008, 32 heads of 128 (no GQA), 32 layers;
//   smollm2-135m  E 576, F 1536, 9 query / 3 KV heads of 64, 30 layers.
// It times the FP-target pass over all windows and `--steps` optimizer steps (after one warm-up step), each split
// into forward + loss and backward + host AdamW, and projects seconds per epoch, per layer and per model. The inputs
// and targets of all windows are on the device as in calibrate(), so the memory figure is the real one.
//
//   bench_calib_layer [--model llama2-7b|smollm2-135m|all] [--steps N] [--windows N] [--seqlen N]
// Exit 77: no CUDA device. Needs only the library (fq_core + fq_cuda): no cuBLAS.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/calib_layer.h"
#include "cuda/calib_ops.h"
#include "cuda/cuda_backend.h"
#include "quant/calibrate.h"
#include "quant/fake_quant.h"
#include "quant/optim.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace q = fq::quant;

double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Shape {
    const char *name;
    int n_layer, E, F, H, Hkv, D;
    float rope_base;
};

// Uniform values of standard deviation `scale` from a splitmix64 stream: cheap enough for 200M weights.
void fill_random(std::vector<float> &v, size_t n, double scale, uint64_t seed, double offset = 0.0) {
    v.resize(n);
    uint64_t z = seed;
    const double k = scale * std::sqrt(3.0) * 2.0 / 18446744073709551616.0;
    for (size_t i = 0; i < n; i++) {
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
        v[i] = static_cast<float>(offset + static_cast<double>(x) * k - scale * std::sqrt(3.0));
    }
}

int run_shape(const Shape &sh, int steps, int n_windows, int seqlen) {
    fq::ModelConfig c;
    c.architecture = "llama";
    c.name = sh.name;
    c.n_embd = sh.E, c.n_ff = sh.F, c.n_head = sh.H, c.n_head_kv = sh.Hkv, c.head_dim = sh.D, c.rope_dim = sh.D;
    c.n_layer = sh.n_layer, c.n_ctx_train = 8192, c.rope_freq_base = sh.rope_base, c.rms_eps = 1e-5f;
    const int64_t E = sh.E, F = sh.F, Q = int64_t{sh.H} * sh.D, KV = int64_t{sh.Hkv} * sh.D;
    q::CalibOptions o;  // the official defaults: batch 4, 15 epochs, flat_lr 5e-3, every learnable piece on
    o.nsamples = n_windows;
    o.seqlen = seqlen;
    q::QuantScheme scheme;
    scheme.bits = q::parse_bits("w4a4kv4");
    const q::LayerSpec spec = q::flatquant_layer_spec(scheme, o);

    auto t0 = Clock::now();
    fq::LayerWeights w;
    fill_random(w.attn_norm, E, 0.1, 1, 1.0);
    fill_random(w.ffn_norm, E, 0.1, 2, 1.0);
    fill_random(w.wq, Q * E, 1.0 / std::sqrt(double(E)), 3);
    fill_random(w.wk, KV * E, 1.0 / std::sqrt(double(E)), 4);
    fill_random(w.wv, KV * E, 1.0 / std::sqrt(double(E)), 5);
    fill_random(w.wo, E * Q, 1.0 / std::sqrt(double(Q)), 6);
    fill_random(w.w_up, F * E, 1.0 / std::sqrt(double(E)), 7);
    fill_random(w.w_gate, F * E, 1.0 / std::sqrt(double(E)), 8);
    fill_random(w.w_down, E * F, 1.0 / std::sqrt(double(F)), 9);
    const double t_weights = secs(t0);

    fq::ThreadPool pool(0);
    fq::cuda::Stream stream = fq::cuda::Stream::create();
    const int64_t L = seqlen, window = L * E, batch = o.batch, steps_per_epoch = n_windows / batch;
    fq::cuda::DeviceBuffer inps(static_cast<size_t>(n_windows) * window * sizeof(float));
    fq::cuda::DeviceBuffer outs(inps.n_bytes()), qout(batch * window * sizeof(float)), dout(qout.n_bytes());
    {  // four distinct random windows (an outlier channel each), repeated over all windows
        std::vector<float> host;
        for (int64_t wi = 0; wi < n_windows; wi++) {
            if (wi < 4) {
                fill_random(host, static_cast<size_t>(window), 1.0, 100 + wi);
                for (int64_t t = 0; t < L; t++) host[t * E + 7] *= 20.0f;
            }
            inps.upload(host.data(), window * sizeof(float), stream, static_cast<size_t>(wi * window) * sizeof(float));
        }
    }
    t0 = Clock::now();
    fq::cuda::CalibLayer layer(c, w, {}, spec, pool, stream);
    const double t_setup = secs(t0);

    // FP targets and smoothing statistics of all windows.
    q::SmoothStats stats = q::smooth_stats_init(c);
    t0 = Clock::now();
    for (int64_t b = 0; b < n_windows; b += batch) {
        layer.forward(outs.as<float>() + b * window, inps.as<float>() + b * window, std::min(batch, n_windows - b), L,
                      true, &stats);
    }
    stream.synchronize();
    const double t_targets = secs(t0);

    q::NormalRng rng(q::layer_seed(o.seed, 0));
    layer.init(rng, &stats, o.diag_alpha);
    std::vector<float> &p = layer.params();
    std::vector<float> m(p.size(), 0.0f), v(p.size(), 0.0f);
    const int64_t total_steps = int64_t{o.epochs} * steps_per_epoch;
    double t_fwd = 0, t_bwd = 0, t_adam = 0, first_mse = 0, last_mse = 0, host0 = 0;
    const int warm = 1;
    for (int s = 0; s < warm + steps; s++) {
        if (s == warm) host0 = layer.host_factor_seconds();
        const int64_t b = (s % steps_per_epoch) * batch;
        const float *target = outs.as<float>() + b * window;
        auto ts = Clock::now();
        layer.forward(qout.as<float>(), inps.as<float>() + b * window, batch, L, false, nullptr);
        const double mse = fq::cuda::calib::mse_loss(qout.as<float>(), target, batch * window, layer.workspace(),
                                                     stream.handle());
        const double tf = secs(ts);
        if (!std::isfinite(mse)) {
            std::fprintf(stderr, "%s: non-finite loss at step %d\n", sh.name, s);
            return 1;
        }
        ts = Clock::now();
        fq::cuda::calib::mse_loss_bwd(dout.as<float>(), qout.as<float>(), target, batch * window, mse, true,
                                      stream.handle());
        layer.backward(dout.as<float>());
        const double tb = secs(ts);
        ts = Clock::now();
        const double lr = q::cosine_lr(o.flat_lr, o.flat_lr * 1e-3, s, total_steps);
        const double lr_clip = q::cosine_lr(10 * o.flat_lr, o.flat_lr * 1e-3, s, total_steps);
        for (const auto &blk : layer.blocks()) {
            q::adamw_step(p.data() + blk.offset, m.data() + blk.offset, v.data() + blk.offset,
                          layer.grads().data() + blk.offset, static_cast<int64_t>(blk.size), s + 1,
                          blk.clip ? lr_clip : lr, q::AdamWConfig{});
        }
        const double ta = secs(ts);
        if (s == 0) first_mse = mse;
        last_mse = mse;
        if (s >= warm) t_fwd += tf, t_bwd += tb, t_adam += ta;
    }
    uint64_t free_b = 0, total_b = 0;
    fq::cuda::memory_info(&free_b, &total_b);
    const double step = (t_fwd + t_bwd + t_adam) / steps;
    const double host_factor = (layer.host_factor_seconds() - host0) / steps;
    const double epoch = step * steps_per_epoch;
    const double per_layer = t_targets + o.epochs * epoch;
    std::printf("| %s | %d x %d | %.3f | %.3f | %.3f | %.4f | %.4f | %.2f | %.1f | %.1f | %.2f | %.1f / %.1f |\n",
                sh.name, n_windows, seqlen, t_targets, t_fwd / steps, t_bwd / steps, host_factor, t_adam / steps, epoch,
                per_layer,
                per_layer * sh.n_layer / 60.0, per_layer * sh.n_layer / 3600.0,
                static_cast<double>(layer.device_bytes()) / (1 << 30),
                static_cast<double>(total_b - free_b) / (1 << 30));
    std::fprintf(stderr, "%s: weights %.1f s, layer setup %.2f s, %d timed steps, MSE %.4g -> %.4g\n", sh.name,
                 t_weights, t_setup, steps, first_mse, last_mse);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::string which = "all";
    int steps = 8, windows = 128, seqlen = 2048;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto val = [&](const char *key) { return a.rfind(key, 0) == 0 ? a.substr(std::strlen(key)) : std::string(); };
        if (!val("--model=").empty()) which = val("--model=");
        else if (!val("--steps=").empty()) steps = std::atoi(val("--steps=").c_str());
        else if (!val("--windows=").empty()) windows = std::atoi(val("--windows=").c_str());
        else if (!val("--seqlen=").empty()) seqlen = std::atoi(val("--seqlen=").c_str());
        else {
            std::fprintf(stderr, "usage: %s [--model=llama2-7b|smollm2-135m|all] [--steps=N] [--windows=N] "
                                 "[--seqlen=N]\n", argv[0]);
            return 2;
        }
    }
    if (fq::cuda::device_count() == 0) {
        std::fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    if (steps < 1 || windows < 4 || seqlen < 1) return 2;
    const Shape shapes[] = {{"llama2-7b", 32, 4096, 11008, 32, 32, 128, 10000.0f},
                            {"smollm2-135m", 30, 576, 1536, 9, 3, 64, 100000.0f}};
    const fq::cuda::DeviceProperties props = fq::cuda::device_properties(0);
    std::printf("GPU: %s (%d SMs)\n\n", props.name.c_str(), props.n_sms);
    std::printf("| model | windows x tokens | FP targets (s) | forward+loss / step (s) | backward / step (s) | "
                "host factor math, within those (s) | host AdamW / step (s) | epoch (s) | layer, 15 epochs (s) | "
                "model (min) | model (h) | layer GPU memory / in use (GiB) |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    try {
        for (const Shape &sh : shapes) {
            if (which != "all" && which != sh.name) continue;
            rc |= run_shape(sh, steps, windows, seqlen);
        }
    } catch (const fq::Error &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return rc;
}
