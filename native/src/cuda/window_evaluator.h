// Whole-sequence evaluation of a fake-quantized (or full-precision) model on a CUDA device: the GPU twin of
// quant::quantized_forward run from an empty context, for perplexity and log-likelihood (fq::WindowsForwardFn's
// contract, model/forward.h). Exists only in builds with FQ_HAVE_CUDA; host-compiler safe.
//
// A full-precision model is evaluated as the QuantizedModel of scheme w16a16 with no transforms (reparameterize of
// a "rtn" calibration result at 16 bits), which computes exactly what fq::forward computes.
#pragma once

#include <cstdint>
#include <memory>

#include "model/forward.h"

namespace fq::quant {
struct QuantizedModel;
}

namespace fq::cuda {

class WindowEvaluator {
  public:
    virtual ~WindowEvaluator() = default;
    // tokens [n_seq][seq_len] (host memory), each sequence from position 0; every row's logits go to the sink
    // (host memory, n_vocab floats per row). Throws INVALID_ARGUMENT (ids out of range, seq_len above the context),
    // DEVICE_OUT_OF_MEMORY, CUDA. Calls from several threads are serialized.
    virtual void forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink) = 0;
    // fq::WindowsScoreFn's contract (eval/perplexity.h): per-row NLL of the targets and argmax, computed on the
    // device next to the logits (token_nll's arithmetic: the exponentials and their sum in double, so the NLLs agree
    // with token_nll on the same logits but for the order of that sum, ~1e-15 relative); only nll and argmax come
    // back. nll [n_seq][seq_len], argmax [n_seq][seq_len] or nullptr. Throws INVALID_ARGUMENT also for a target
    // outside [-1, n_vocab).
    virtual void score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
                       int32_t *argmax) = 0;
    // How many windows of seq_len tokens one forward call should get for the GPU to be busy (at least 1).
    virtual int64_t preferred_batch(int64_t seq_len) const = 0;
};

// Uploads everything qm's forward needs (its layers as FP32, and its base model's embeddings, final norm and output
// projection) to CUDA device `device`; qm is not used after the call. Activations are allocated at the first
// forward() for the largest call seen (at most about preferred_batch windows at once; larger calls run in parts).
// Throws DEVICE_UNAVAILABLE, DEVICE_OUT_OF_MEMORY, CUDA, UNSUPPORTED (head_dim above 128; forward() also refuses
// with UNSUPPORTED an intermediate width whose transformed row exceeds the device's shared memory, above ~28k
// channels on an H100).
std::unique_ptr<WindowEvaluator> make_window_evaluator(const quant::QuantizedModel &qm, int device);

}  // namespace fq::cuda
