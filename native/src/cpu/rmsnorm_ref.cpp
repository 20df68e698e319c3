#include "cpu/rmsnorm_ref.h"

#include <cmath>

#include "core/error.h"

namespace fq::cpu {

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t rows, int64_t cols,
                     float eps) {
    FQ_CHECK(rows >= 0 && cols > 0, FQ_STATUS_INVALID_ARGUMENT, "rmsnorm: bad shape (%lld, %lld)",
             static_cast<long long>(rows), static_cast<long long>(cols));
    FQ_CHECK(rows == 0 || (out && inp && weight), FQ_STATUS_INVALID_ARGUMENT, "rmsnorm: NULL tensor");
    for (int64_t r = 0; r < rows; ++r) {
        const float *x = inp + r * cols;
        double sum_sq = 0.0;
        for (int64_t c = 0; c < cols; ++c) sum_sq += static_cast<double>(x[c]) * x[c];
        const double rs = 1.0 / std::sqrt(sum_sq / static_cast<double>(cols) + static_cast<double>(eps));
        float *y = out + r * cols;
        for (int64_t c = 0; c < cols; ++c) y[c] = static_cast<float>(static_cast<double>(x[c]) * rs * weight[c]);
        if (rstd) rstd[r] = static_cast<float>(rs);
    }
}

}  // namespace fq::cpu
