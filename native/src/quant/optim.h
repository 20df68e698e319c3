// Calibration objective and optimizer (spec section 6.2; the official train_utils.cali_flat_quant).
#pragma once

#include <cstdint>

namespace fq::quant {

// ---- loss ------------------------------------------------------------------------------------------------------------
// MSE = mean((pred - target)^2) over n elements (torch.nn.MSELoss), accumulated in double.
// pred/target [n] (the layer output, all tokens of the batch).
template <typename T>
double mse_loss_forward(const T *pred, const T *target, int64_t n);

// dpred (=) = d loss / d pred:
//   normalized = false: loss = MSE,             dpred = 2 (pred - target) / n
//   normalized = true:  loss = MSE / MSE.detach() (value 1, the official objective), i.e. the gradient of log MSE:
//                       dpred = 2 (pred - target) / (n * MSE)
// mse is the value returned by mse_loss_forward. When mse == 0 the normalized gradient is set to 0 (torch would
// produce 0/0 = NaN; the output already equals the target, so there is nothing to learn).
template <typename T>
void mse_loss_backward(T *dpred, const T *pred, const T *target, int64_t n, double mse, bool normalized);

// ---- AdamW (torch.optim.AdamW, decoupled weight decay, non-amsgrad) -------------------------------------------------------
struct AdamWConfig {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;
};

// One step on n parameters, step = 1 for the first call (the bias corrections use it):
//   p  <- p * (1 - lr * wd)
//   m  <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
//   p  <- p - (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// param/m/v [n] are updated in place (m, v start at 0); grad [n]. Arithmetic in double, stored as T.
template <typename T>
void adamw_step(T *param, T *m, T *v, const T *grad, int64_t n, int64_t step, double lr, const AdamWConfig &cfg);

// ---- learning-rate schedule --------------------------------------------------------------------------------------------
// CosineAnnealingLR (closed form), the lr used by optimizer step number `step` (0-based; the scheduler is stepped
// after every optimizer step): eta_min + (base_lr - eta_min) * (1 + cos(pi * step / total_steps)) / 2.
// The official loop uses total_steps = epochs * (nsamples / batch) and eta_min = flat_lr * 1e-3 for EVERY param group
// (transforms at flat_lr, clipping logits at 10 * flat_lr).
double cosine_lr(double base_lr, double eta_min, int64_t step, int64_t total_steps);

}  // namespace fq::quant
