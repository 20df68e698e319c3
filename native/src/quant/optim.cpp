#include "quant/optim.h"

#include <cmath>

#include "core/error.h"

namespace fq::quant {

template <typename T>
double mse_loss_forward(const T *pred, const T *target, int64_t n) {
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "mse_loss_forward: empty input");
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
        acc += d * d;
    }
    return acc / static_cast<double>(n);
}

template <typename T>
void mse_loss_backward(T *dpred, const T *pred, const T *target, int64_t n, double mse, bool normalized) {
    FQ_CHECK(n > 0, FQ_STATUS_INVALID_ARGUMENT, "mse_loss_backward: empty input");
    double scale = 2.0 / static_cast<double>(n);
    if (normalized) scale = mse > 0.0 ? scale / mse : 0.0;
    for (int64_t i = 0; i < n; i++) {
        dpred[i] = static_cast<T>(scale * (static_cast<double>(pred[i]) - static_cast<double>(target[i])));
    }
}

template <typename T>
void adamw_step(T *param, T *m, T *v, const T *grad, int64_t n, int64_t step, double lr, const AdamWConfig &cfg) {
    FQ_CHECK(step >= 1 && n >= 0, FQ_STATUS_INVALID_ARGUMENT, "adamw_step: step must start at 1");
    const double bc1 = 1.0 - std::pow(cfg.beta1, static_cast<double>(step));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(cfg.beta2, static_cast<double>(step)));
    const double step_size = lr / bc1;
    for (int64_t i = 0; i < n; i++) {
        const double g = static_cast<double>(grad[i]);
        double p = static_cast<double>(param[i]) * (1.0 - lr * cfg.weight_decay);
        const double mi = cfg.beta1 * static_cast<double>(m[i]) + (1.0 - cfg.beta1) * g;
        const double vi = cfg.beta2 * static_cast<double>(v[i]) + (1.0 - cfg.beta2) * g * g;
        p -= step_size * mi / (std::sqrt(vi) / bc2_sqrt + cfg.eps);
        m[i] = static_cast<T>(mi);
        v[i] = static_cast<T>(vi);
        param[i] = static_cast<T>(p);
    }
}

double cosine_lr(double base_lr, double eta_min, int64_t step, int64_t total_steps) {
    FQ_CHECK(total_steps > 0 && step >= 0, FQ_STATUS_INVALID_ARGUMENT, "cosine_lr: bad step %lld of %lld",
             static_cast<long long>(step), static_cast<long long>(total_steps));
    constexpr double kPi = 3.14159265358979323846;
    return eta_min + (base_lr - eta_min) * (1.0 + std::cos(kPi * static_cast<double>(step) /
                                                           static_cast<double>(total_steps))) / 2.0;
}

template double mse_loss_forward<float>(const float *, const float *, int64_t);
template double mse_loss_forward<double>(const double *, const double *, int64_t);
template void mse_loss_backward<float>(float *, const float *, const float *, int64_t, double, bool);
template void mse_loss_backward<double>(double *, const double *, const double *, int64_t, double, bool);
template void adamw_step<float>(float *, float *, float *, const float *, int64_t, int64_t, double, const AdamWConfig &);
template void adamw_step<double>(double *, double *, double *, const double *, int64_t, int64_t, double,
                                 const AdamWConfig &);

}  // namespace fq::quant
