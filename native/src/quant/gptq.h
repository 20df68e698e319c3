// GPTQ weight quantization (spec section 7.3; the official gptq_utils.gptq_fwrd / fasterquant): per linear, a
// Hessian H = (2 / n_windows) sum_tokens x x^T of its transformed, activation-quantized inputs, then column-by-column
// rounding with the error fed back through the upper Cholesky factor of H^{-1}, in lazy blocks. The per-row scale is
// the RTN scale of the whole (LWC-clamped) weight, as fasterquant's find_params on W; rounding and range are those of
// weight_quant_forward (symmetric, [-(qmax+1), qmax]). All linear algebra in double.
#pragma once

#include <cstdint>
#include <vector>

#include "core/progress.h"
#include "quant/fakequant_forward.h"
#include "quant/quant_config.h"
#include "quant/transform_set.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant {

// Running Hessian of one linear's inputs.
class HessianAccumulator {
  public:
    explicit HessianAccumulator(int64_t in_features);
    // Adds one window's inputs x [rows][in] (float).
    void add_window(const float *x, int64_t rows, ThreadPool &pool);
    // H [in][in] = (2 / windows) * sum x x^T.
    std::vector<double> hessian() const;
    int64_t windows() const { return windows_; }

  private:
    int64_t in_;
    int64_t windows_ = 0;
    std::vector<double> sum_;   // [in][in] sum over tokens of x x^T
    std::vector<float> tmp_;    // [in][in] one window's product
};

// Quantizes w [out][in] in place with GPTQ given H [in][in] (symmetric positive semi-definite). Columns whose
// Hessian diagonal is 0 ("dead") are zeroed, as fasterquant does. codes (optional) receives the integer codes and
// per-row scales. Throws NUMERIC when H + damp I is not positive definite.
void gptq_quantize(float *w, int64_t out, int64_t in, const std::vector<double> &hessian, int bits, double percdamp,
                   int blocksize, ThreadPool &pool, QuantizedWeight *codes);

// Sequential GPTQ of every layer of a reparameterized (not yet weight-quantized) model over the calibration
// windows [nsamples][seqlen]: groups [k, v, q], [o], [up, gate], [down] in that order, each group's Hessians taken
// with the earlier groups already quantized; each layer's quantized outputs feed the next. Stores the codes in
// r.gptq. Progress stage "gptq" (one step per layer); cancellable. device: a CUDA device ordinal on which the layer
// forwards and the Hessians run (cuda/gptq_gpu.h; builds with FQ_HAVE_CUDA, UNSUPPORTED otherwise), or -1 for the
// CPU.
void gptq_model(QuantizedModel &qm, ThreadPool &pool, const std::vector<int32_t> &windows, const CalibOptions &o,
                CalibrationResult &r, const Progress &progress, int device = -1);

}  // namespace fq::quant
