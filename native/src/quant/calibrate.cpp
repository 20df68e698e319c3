#include "quant/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <new>
#include <utility>

#include "core/error.h"
#include "core/sha256.h"
#include "core/threadpool.h"
#include "quant/flat_layer.h"
#include "quant/kron.h"
#include "quant/optim.h"
#include "quant/trans_param.h"

#ifdef FQ_HAVE_CUDA
#include "cuda/calib_layer.h"
#include "cuda/calib_ops.h"
#include "cuda/cuda_backend.h"
#endif

namespace fq::quant {

uint64_t layer_seed(uint64_t seed, int32_t layer) {
    // splitmix64 of (seed, layer): well-mixed, distinct streams per layer.
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(layer) + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

namespace {

// Haar-random orthogonal m (float) and its inverse-transpose computed from the rounded matrix in double.
void random_single(SingleTransform &t, int k, NormalRng &rng) {
    t.k = k;
    t.m.resize(static_cast<size_t>(k) * k);
    t.m_inv_t.resize(t.m.size());
    random_orthogonal(t.m.data(), k, rng);
    inverse_t_forward(t.m_inv_t.data(), t.m.data(), k);
}

void random_kron(KronTransform &t, int64_t width, NormalRng &rng) {
    const DecomposeDims d = decompose_dim(width);
    SingleTransform l, r;
    random_single(l, d.n1, rng);
    random_single(r, d.n2, rng);
    t.n1 = d.n1;
    t.n2 = d.n2;
    t.left = std::move(l.m);
    t.left_inv_t = std::move(l.m_inv_t);
    t.right = std::move(r.m);
    t.right_inv_t = std::move(r.m_inv_t);
}

LayerTransforms rotation_layer(const ModelConfig &c, const LayerSpec &spec, uint64_t seed) {
    NormalRng rng(seed);
    LayerTransforms t;
    if (spec.pa) random_kron(t.pa, c.n_embd, rng);
    if (spec.pug) random_kron(t.pug, c.n_embd, rng);
    if (spec.pd) random_kron(t.pd, c.n_ff, rng);
    if (spec.ph) random_single(t.ph, c.n_head, rng);
    if (spec.pv) random_single(t.pv, c.head_dim, rng);
    if (spec.pk) random_single(t.pk, c.head_dim, rng);
    return t;
}

std::vector<float> alloc(size_t n, const char *what) {
    try {
        return std::vector<float>(n);
    } catch (const std::bad_alloc &) {
        FQ_FAIL(FQ_STATUS_OUT_OF_MEMORY, "out of host memory for the calibration %s (%zu MiB)", what,
                n * sizeof(float) >> 20);
    }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Where the learned path's activations live and which layer object computes: the runners give the loop below the
// same five operations, so the CPU and the GPU run one loop (one initialization, schedule, progress and log).
//   inputs:  [nsamples][seqlen][E], the token embeddings of the windows, then the FP outputs of each layer in turn;
//   targets: [nsamples][seqlen][E], the FP outputs of the current layer.

// CPU: host buffers and FlatLayer<float> on the pool's threads.
class CpuRunner {
  public:
    CpuRunner(const Model &model, ThreadPool &pool, const std::vector<int32_t> &windows, const CalibOptions &o)
        : model_(model), pool_(pool), L_(o.seqlen), batch_(o.batch),
          window_elems_(int64_t{o.seqlen} * model.config.n_embd) {
        const int64_t E = model.config.n_embd, n = o.nsamples;
        inps_ = alloc(static_cast<size_t>(n * window_elems_), "inputs");
        outs_ = alloc(inps_.size(), "targets");
        for (int64_t t = 0; t < n * L_; t++) {
            std::copy_n(model.weights.tok_embd.data() + int64_t{windows[static_cast<size_t>(t)]} * E, E,
                        inps_.data() + t * E);
        }
        qout_.resize(static_cast<size_t>(batch_ * window_elems_));
        dout_.resize(qout_.size());
    }
    void begin_layer(int32_t l, const LayerSpec &spec) {
        layer_ = std::make_unique<FlatLayer<float>>(model_.config, model_.weights.layers[static_cast<size_t>(l)],
                                                    model_.weights.rope_freq_factors, spec, pool_);
    }
    FlatLayer<float> &layer() { return *layer_; }
    void targets(int64_t b, int64_t nb, SmoothStats &stats) {
        layer_->forward(outs_.data() + b * window_elems_, inps_.data() + b * window_elems_, nb, L_, true, &stats);
    }
    double step_forward(int64_t b) {
        target_ = outs_.data() + b * window_elems_;
        layer_->forward(qout_.data(), inps_.data() + b * window_elems_, batch_, L_, false, nullptr);
        return mse_loss_forward(qout_.data(), target_, batch_ * window_elems_);
    }
    void step_backward(double mse) {
        mse_loss_backward(dout_.data(), qout_.data(), target_, batch_ * window_elems_, mse, true);
        layer_->backward(dout_.data());
    }
    void end_layer() { inps_.swap(outs_); }  // the FP outputs of layer l are the inputs of layer l + 1

  private:
    const Model &model_;
    ThreadPool &pool_;
    int64_t L_, batch_, window_elems_;
    std::vector<float> inps_, outs_, qout_, dout_;
    const float *target_ = nullptr;
    std::unique_ptr<FlatLayer<float>> layer_;
};

#ifdef FQ_HAVE_CUDA
// CUDA: the inputs and targets of all windows, the batch output and its gradient stay on the device; the layer is
// cuda::CalibLayer, whose parameters (and so the optimizer) stay on the host.
class CudaRunner {
  public:
    CudaRunner(const Model &model, ThreadPool &pool, const std::vector<int32_t> &windows, const CalibOptions &o,
               int device)
        : model_(model), pool_(pool), device_(device, cuda::current_device()), L_(o.seqlen), batch_(o.batch),
          window_elems_(int64_t{o.seqlen} * model.config.n_embd), stream_(cuda::Stream::create()) {
        const int64_t E = model.config.n_embd, n = o.nsamples;
        const size_t window_bytes = static_cast<size_t>(window_elems_) * sizeof(float);
        inps_ = cuda::DeviceBuffer(static_cast<size_t>(n) * window_bytes);
        outs_ = cuda::DeviceBuffer(inps_.n_bytes());
        qout_ = cuda::DeviceBuffer(static_cast<size_t>(batch_) * window_bytes);
        dout_ = cuda::DeviceBuffer(qout_.n_bytes());
        std::vector<float> host(static_cast<size_t>(window_elems_));
        for (int64_t w = 0; w < n; w++) {
            for (int64_t t = 0; t < L_; t++) {
                std::copy_n(model.weights.tok_embd.data() + int64_t{windows[static_cast<size_t>(w * L_ + t)]} * E, E,
                            host.data() + t * E);
            }
            inps_.upload(host.data(), window_bytes, stream_, static_cast<size_t>(w) * window_bytes);
        }
    }
    void begin_layer(int32_t l, const LayerSpec &spec) {
        layer_.reset();
        layer_ = std::make_unique<cuda::CalibLayer>(model_.config, model_.weights.layers[static_cast<size_t>(l)],
                                                    model_.weights.rope_freq_factors, spec, pool_, stream_);
    }
    cuda::CalibLayer &layer() { return *layer_; }
    void targets(int64_t b, int64_t nb, SmoothStats &stats) {
        layer_->forward(outs() + b * window_elems_, inps() + b * window_elems_, nb, L_, true, &stats);
    }
    double step_forward(int64_t b) {
        target_ = outs() + b * window_elems_;
        layer_->forward(qout_.as<float>(), inps() + b * window_elems_, batch_, L_, false, nullptr);
        return cuda::calib::mse_loss(qout_.as<float>(), target_, batch_ * window_elems_, layer_->workspace(),
                                     stream_.handle());
    }
    void step_backward(double mse) {
        cuda::calib::mse_loss_bwd(dout_.as<float>(), qout_.as<float>(), target_, batch_ * window_elems_, mse, true,
                                  stream_.handle());
        layer_->backward(dout_.as<float>());
    }
    void end_layer() { std::swap(inps_, outs_); }

  private:
    // Makes `device` current for the runner's lifetime and restores the caller's device afterwards.
    struct DeviceScope {
        int previous;
        DeviceScope(int device, int prev) : previous(prev) { cuda::set_device(device); }
        ~DeviceScope() {
            try {
                cuda::set_device(previous);
            } catch (const Error &) {
            }
        }
    };
    float *inps() { return inps_.as<float>(); }
    float *outs() { return outs_.as<float>(); }
    const Model &model_;
    ThreadPool &pool_;
    DeviceScope device_;
    int64_t L_, batch_, window_elems_;
    cuda::Stream stream_;
    cuda::DeviceBuffer inps_, outs_, qout_, dout_;
    const float *target_ = nullptr;
    std::unique_ptr<cuda::CalibLayer> layer_;
};
#endif

// The learned path: layer-by-layer optimization over the calibration windows.
template <class Runner>
void calibrate_flatquant(Runner &run, const Model &model, const CalibOptions &o, const Progress &progress,
                         const CalibLogFn &log, CalibrationResult &r) {
    const ModelConfig &c = model.config;
    const int64_t n = o.nsamples;
    const int64_t steps_per_epoch = n / o.batch, total_steps = int64_t{o.epochs} * steps_per_epoch;
    const int64_t progress_total = int64_t{c.n_layer} * (total_steps + 1);
    const LayerSpec spec = flatquant_layer_spec(r.scheme, o);
    const AdamWConfig adam;
    const double eta_min = o.flat_lr * 1e-3;
    int64_t done = 0;
    progress.step("calibrate", 0, progress_total);
    for (int32_t l = 0; l < c.n_layer; l++) {
        run.begin_layer(l, spec);
        auto &layer = run.layer();
        SmoothStats stats = smooth_stats_init(c);
        for (int64_t b = 0; b < n; b += o.batch) {  // FP targets and the smoothing statistics of all windows
            run.targets(b, std::min<int64_t>(o.batch, n - b), stats);
            progress.check_cancelled();
        }
        progress.step("calibrate", ++done, progress_total);
        NormalRng rng(layer_seed(o.seed, l));
        layer.init(rng, o.add_diag ? &stats : nullptr, o.diag_alpha);
        std::vector<float> &p = layer.params();
        std::vector<float> m(p.size(), 0.0f), v(p.size(), 0.0f);
        std::vector<double> epoch_mse;
        int64_t step = 0;
        for (int32_t e = 0; e < o.epochs; e++) {
            const auto t0 = std::chrono::steady_clock::now();
            double sum = 0, lr = 0;
            for (int64_t j = 0; j < steps_per_epoch; j++) {
                const double mse = run.step_forward(j * o.batch);
                FQ_CHECK(std::isfinite(mse), FQ_STATUS_NUMERIC,
                         "calibration of layer %d: the loss became non-finite at epoch %d, step %lld", l, e + 1,
                         (long long)j);
                run.step_backward(mse);
                lr = cosine_lr(o.flat_lr, eta_min, step, total_steps);
                const double lr_clip = cosine_lr(10 * o.flat_lr, eta_min, step, total_steps);
                step++;
                for (const auto &blk : layer.blocks()) {
                    adamw_step(p.data() + blk.offset, m.data() + blk.offset, v.data() + blk.offset,
                               layer.grads().data() + blk.offset, static_cast<int64_t>(blk.size), step,
                               blk.clip ? lr_clip : lr, adam);
                }
                sum += mse;
                progress.step("calibrate", ++done, progress_total);
            }
            epoch_mse.push_back(steps_per_epoch > 0 ? sum / static_cast<double>(steps_per_epoch) : 0.0);
            if (log) log(CalibEvent{l, c.n_layer, e + 1, o.epochs, epoch_mse.back(), lr, seconds_since(t0)});
        }
        r.layers[static_cast<size_t>(l)] = layer.export_eval();
        r.epoch_mse[static_cast<size_t>(l)] = std::move(epoch_mse);
        run.end_layer();
    }
}

}  // namespace

CalibrationResult calibrate(const Model &model, ThreadPool &pool, const std::vector<int32_t> &windows,
                            const QuantScheme &scheme, const CalibOptions &options, const Progress &progress,
                            const CalibLogFn &log, int device) {
    validate(scheme);
    validate(options);
    const ModelConfig &c = model.config;
    CalibrationResult r;
    r.scheme = scheme;
    r.options = options;
    r.model_fingerprint = model.fingerprint();
    r.dims = model_dims(c);
    r.layers.resize(static_cast<size_t>(c.n_layer));
    r.epoch_mse.resize(static_cast<size_t>(c.n_layer));
    const int64_t need = int64_t{options.nsamples} * options.seqlen;
    if (static_cast<int64_t>(windows.size()) >= need) {
        for (int64_t i = 0; i < need; i++) {
            FQ_CHECK(windows[i] >= 0 && windows[i] < c.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                     "calibration token %d at index %lld is outside the vocabulary [0, %d)", windows[i], (long long)i,
                     c.n_vocab);
        }
        r.data_sha256 = sha256_hex(windows.data(), static_cast<size_t>(need) * sizeof(int32_t));
        r.data_tokens = need;
    }
    switch (scheme.method) {
        case Method::Rtn:
            r.epoch_mse.clear();
            break;
        case Method::Rotate: {
            CalibOptions none = options;
            none.add_diag = none.lwc = none.lac = false;
            const LayerSpec spec = flatquant_layer_spec(scheme, none);
            for (int32_t l = 0; l < c.n_layer; l++) {
                r.layers[static_cast<size_t>(l)] = rotation_layer(c, spec, layer_seed(options.seed, l));
                progress.step("calibrate", l + 1, c.n_layer);
            }
            r.epoch_mse.clear();
            break;
        }
        case Method::FlatQuant:
            FQ_CHECK(static_cast<int64_t>(windows.size()) >= need, FQ_STATUS_INVALID_ARGUMENT,
                     "flatquant calibration needs %d windows of %d tokens (%lld ids), got %zu ids", options.nsamples,
                     options.seqlen, (long long)need, windows.size());
            FQ_CHECK(options.seqlen <= c.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                     "calibration seqlen %d exceeds the model's context %d", options.seqlen, c.n_ctx_train);
            if (device >= 0) {
#ifdef FQ_HAVE_CUDA
                CudaRunner run(model, pool, windows, options, device);
                calibrate_flatquant(run, model, options, progress, log, r);
#else
                FQ_FAIL(FQ_STATUS_UNSUPPORTED, "calibration on CUDA device %d is not available in this build", device);
#endif
            } else {
                CpuRunner run(model, pool, windows, options);
                calibrate_flatquant(run, model, options, progress, log, r);
            }
            break;
    }
    return r;
}

}  // namespace fq::quant
