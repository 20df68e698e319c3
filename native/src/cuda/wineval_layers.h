// The decoder layers of a fake-quantized model on a CUDA device: quant::quantized_layer_forward from position 0 of
// whole sequences, on hidden states the caller keeps in device memory. The whole-sequence evaluator
// (window_evaluator.h) runs every layer of it; GPTQ (gptq_gpu.h) runs one layer at a time, reads each linear's
// input through a hook and replaces weights as it quantizes them. Host-compiler safe.
//
// Every weight is stored in FP32 on the device as the QuantizedModel holds it (fake-quantized or not). The q, k
// and v weights sit in one [q+2kv][E] matrix and up/gate in one [2F][E] matrix; when the three (two) linears see
// the same quantized input (no LAC, equal LAC logits, or a16) one product serves them all, otherwise each writes
// its column slice of the same output.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "cuda/cuda_backend.h"
#include "model/model.h"

namespace fq::quant {
struct QuantizedModel;
}

namespace fq::cuda::wineval {

// Called with the (activation-quantized) input of each linear just before its product, in the CPU's order
// q, k, v, o, up, gate, down: lin (quant::LinearId) and x [n][in] (device memory, row stride in; valid until the
// product, on the layer's stream, which the hook may use for its own work). Linears that share one quantized input
// get the same pointer. Returning false stops the layer there (x is then left partly updated), as
// quant::LinearInputHook does.
using DeviceLinearHook = std::function<bool(int lin, const float *x, int64_t n)>;

class DeviceLayers {
  public:
    // Uploads the layers of qm (gains, weights, biases, online transforms, LAC) to the current device and creates
    // the stream every later call runs on; qm is not used afterwards. Throws INVALID_ARGUMENT (sizes that do
    // not fit the model), UNSUPPORTED (head_dim above 128, a bias on o/up/gate/down), DEVICE_OUT_OF_MEMORY, CUDA.
    explicit DeviceLayers(const quant::QuantizedModel &qm);
    ~DeviceLayers();
    DeviceLayers(const DeviceLayers &) = delete;
    DeviceLayers &operator=(const DeviceLayers &) = delete;

    // Device floats of activation scratch per token (beside the caller's hidden states).
    static int64_t scratch_floats_per_token(const ModelConfig &c);
    // Scratch for calls of up to n_tok tokens, sequences of up to seq_len tokens (RoPE table). Grows only.
    void reserve(int64_t n_tok, int64_t seq_len);

    // Layer l on x [n_seq * seq_len][E] (device, in place): n_seq independent sequences, each from position 0,
    // n_seq * seq_len <= the reserved tokens. Returns false when the hook stopped it. Asynchronous on the stream.
    bool run(int32_t l, float *x, int64_t n_seq, int64_t seq_len, const DeviceLinearHook *hook = nullptr);

    // Replaces the weight of linear lin (quant::LinearId) of layer l by w [out][in] (host), ordered on the stream
    // (the host copy may be reused when it returns).
    void set_weight(int32_t l, int lin, const float *w);

    const ModelConfig &config() const;
    // The stream every call is ordered on (created on the device current at construction).
    const Stream &stream() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fq::cuda::wineval
