// The FlatQuant calibration pipeline (spec section 6.2), on the CPU threads or a CUDA GPU, one code path for the
// three methods:
//   rtn       no transforms (an empty transform set);
//   rotate    fixed Haar-random orthogonal Kronecker factors for P_a, P_ug, P_d and random orthogonal P_h, P_v, P_k
//             (QuaRot-like: random rotations flatten outliers, but they are not Hadamard matrices, so any width
//             works); no smoothing, no clipping, no training;
//   flatquant the learned transforms: for every layer in turn, FP targets from the FP layer (which also collects the
//             SmoothQuant-style statistics), the official initialization, then AdamW (betas 0.9/0.999, eps 1e-8,
//             weight decay 0.01) over epochs * (nsamples / batch) steps with a cosine schedule to flat_lr * 1e-3,
//             lr flat_lr for transforms and smoothing scales and 10 * flat_lr for clipping logits, on the loss
//             MSE(fp_out, quant_out) / detached value. Inputs of layer i + 1 are the FP outputs of layer i.
// Calibration is deterministic for a seed and a thread count (every reduction has a fixed order).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/progress.h"
#include "model/model.h"
#include "quant/quant_config.h"
#include "quant/transform_set.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant {

// One line of the calibration log: after every epoch of every layer.
struct CalibEvent {
    int32_t layer = 0, n_layer = 0;
    int32_t epoch = 0, n_epochs = 0;  // epoch is 1-based
    double mse = 0;                   // mean MSE of the epoch's steps (before each step's update)
    double lr = 0;                    // transform learning rate of the epoch's last step
    double seconds = 0;               // wall time of the epoch
};
using CalibLogFn = std::function<void(const CalibEvent &)>;

// Calibrates the scheme's transforms on model.
//   windows: [n_windows][options.seqlen] token ids (e.g. sample_windows(...)); only the first options.nsamples are
//            used, and n_windows must be at least that for flatquant. rtn and rotate ignore them.
// Progress: stage "calibrate", done/total in optimizer steps over all layers (targets count as one step per layer);
// cancellation is checked at every step (FQ_STATUS_CANCELLED). Other errors: INVALID_ARGUMENT (bad options, too few
// windows, token ids out of range), NUMERIC (a non-finite loss).
// device: a CUDA device ordinal on which the learned layers are calibrated (builds with FQ_HAVE_CUDA), or -1 for the
// CPU threads of pool.
CalibrationResult calibrate(const Model &model, ThreadPool &pool, const std::vector<int32_t> &windows,
                            const QuantScheme &scheme, const CalibOptions &options, const Progress &progress,
                            const CalibLogFn &log = {}, int device = -1);

// The per-layer seed of the transform initialization (layers are independent of each other's random draws).
uint64_t layer_seed(uint64_t seed, int32_t layer);

}  // namespace fq::quant
