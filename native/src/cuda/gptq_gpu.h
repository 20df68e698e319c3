// GPTQ of a whole model with the calibration forward and the Hessians on a CUDA device: quant::gptq_model's
// contract (quant/gptq.h), which dispatches here for a device ordinal. Exists only in builds with FQ_HAVE_CUDA;
// host-compiler safe.
//
// What runs where: the hidden states of every calibration window stay on the device; each layer runs there
// (wineval_layers.h) group by group ([k, v, q], [o], [up, gate], [down]), its hook turning each window's linear
// input X [seqlen][in] into X^T X through gemm_f32 (FP32-class products) and adding it, window after window, into a
// double sum on the device, as HessianAccumulator adds each window's float X^T X into double. Linears that read the
// same quantized input share one sum. The sums come back as H = (2 / nsamples) sum, gptq_quantize (double, on the
// host, the linears of a group concurrently) turns them into codes, and the quantized weights go back up before the
// next group; the finished layer's outputs, computed on the device, feed the next layer.
//
// Against the CPU path the Hessians differ by FP32 rounding (product and summation order, and activation-quantizer
// codes that flip on that rounding), so a small fraction of codes may land one step apart.
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

namespace fq::cuda {

// gptq_model on CUDA device `device` (the caller has checked the arguments: weights not yet quantized, w < 16,
// windows [nsamples][seqlen] of valid ids). Stores the codes in r.gptq and the quantized weights in qm. The
// calling thread's current device is restored on return. Throws DEVICE_UNAVAILABLE, DEVICE_OUT_OF_MEMORY, CUDA,
// UNSUPPORTED (shapes the evaluator's kernels do not take), NUMERIC (gptq_quantize), CANCELLED.
void gptq_model_gpu(quant::QuantizedModel &qm, ThreadPool &pool, const std::vector<int32_t> &windows,
                    const quant::CalibOptions &o, quant::CalibrationResult &r, const Progress &progress, int device);

}  // namespace fq::cuda
