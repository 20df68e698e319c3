// From a model and its calibration result to the fake-quantized model (spec sections 1.3 and 7).
//
// Reparameterization, every merge in float64 and rounded to FP32 once per tensor:
//   input_layernorm gain      g1 <- g1 * c_a                 post_attention_layernorm gain  g2 <- g2 * c_ug
//   q/k/v   W <- clip((W diag(1/c_a)) (P_a1 (x) P_a2)^{-T})  then v: W_h <- P_v^T W_h per KV head, b_v,h <- b_v,h P_v
//   o       W <- clip(W (P_h (x) P_v)^{-T})
//   up      W[j,:] <- c_d[j] W[j,:], then W <- clip((W diag(1/c_ug)) (P_ug)^{-T});  gate the same without c_d
//   down    W <- clip((W diag(1/c_d)) (P_d)^{-T})
// where clip is the LWC clamp with the learned logits (baked in). P_a, P_ug, P_d, P_h and P_k stay online.
// Weight quantization then makes every linear weight fake-quantized: RTN (per-row symmetric, weight_quant_forward)
// or GPTQ (gptq.h; codes kept in the CalibrationResult so that a saved artifact reproduces them without data).
#pragma once

#include <memory>
#include <vector>

#include "core/progress.h"
#include "quant/fakequant_forward.h"
#include "quant/transform_set.h"

namespace fq {
class ThreadPool;
}

namespace fq::quant {

// The reparameterized model with weights merged and clipped but not yet quantized. Throws INVALID_ARGUMENT when r
// does not fit the model (dimensions, fingerprint).
std::unique_ptr<QuantizedModel> reparameterize(const Model &model, const CalibrationResult &r, ThreadPool &pool);

// RTN of every linear weight (w < 16; a no-op at 16 bits).
void quantize_weights_rtn(QuantizedModel &qm);

// Installs stored GPTQ codes: w = scale * code.
void apply_gptq_codes(QuantizedModel &qm, const CalibrationResult &r);

// The whole post-calibration pipeline: reparameterize, then RTN, stored GPTQ codes, or (GPTQ without codes) GPTQ
// on the calibration windows [nsamples][seqlen], whose codes are then stored in r. windows may be empty unless GPTQ
// has to run (INVALID_ARGUMENT otherwise). device: where GPTQ runs its forwards and Hessians (gptq_model), -1 the CPU.
std::unique_ptr<QuantizedModel> build_quantized_model(const Model &model, ThreadPool &pool, CalibrationResult &r,
                                                      const std::vector<int32_t> &windows, const Progress &progress,
                                                      int device = -1);

}  // namespace fq::quant
