// The whole-model inference engine on the GPU: token embedding, every decoder layer (the W4A4 layer of
// w4a4_layer.h, or its FP16 twin for a full-precision model), the final norm and the output projection, over a KV
// cache of several sequences that advance together. It serves sessions (prefill a prompt, then decode step by step)
// and whole-sequence evaluation (it is a WindowEvaluator: logits and perplexity of windows from position 0).
//
// What runs where:
//   embedding      FP16 copy of the embedding table, one gather kernel (the residual stream is FP16)
//   layers         W4A4DecoderLayer (INT4 weights and activations, fused online transforms + quantization, INT4 GEMMs
//                  with the dequantization in the epilogue, 4-bit KV cache) or F16DecoderLayer (FP16 KV cache)
//   final norm     rmsnorm_f16 on the rows whose logits are wanted (the last token of each sequence in a session)
//   output         FP16 GEMM (the engine's GemmF16Fn: gemm_f16_simple unless the caller passes a faster one), FP16
//                  logits widened to FP32
// The W4A4 engine computes the fake-quantized model of quant::quantized_forward with real integer arithmetic, the
// transforms rounded to FP16 and the activations between kernels held in FP16: its perplexity is expected within 1%
// of the fake-quantized model's, not equal to it.
//
// Exists only in builds with FQ_HAVE_CUDA; host-compiler safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cuda/w4a4_layer.h"
#include "cuda/window_evaluator.h"

namespace fq {
class Model;
struct ModelConfig;
namespace quant {
struct QuantizedModel;
}
}  // namespace fq

namespace fq::cuda {

class DecoderEngine;

// The KV cache of `batch` sequences with `capacity` positions each, for one engine. All sequences hold the same
// number of tokens (position()).
class EngineCache {
  public:
    ~EngineCache();
    int batch() const { return batch_; }
    int64_t capacity() const { return capacity_; }
    int64_t position() const { return position_; }
    void reset() { position_ = 0; }
    size_t device_bytes() const;

  private:
    friend class DecoderEngine;
    EngineCache() = default;
    struct Layer;
    std::unique_ptr<Layer[]> layers_;
    int n_layers_ = 0;
    int batch_ = 0;
    int64_t capacity_ = 0;
    int64_t position_ = 0;
};

class DecoderEngine final : public WindowEvaluator {
  public:
    // The W4A4 engine of a fake-quantized model with scheme w4a4kv4 (any method; missing transforms run as
    // identities). The model's weights are converted to INT4 codes (w / scale, exact for quantized weights) and
    // uploaded to device `device`; qm is not used after the call. Throws UNSUPPORTED (other bit widths, shapes the
    // kernels do not cover: head_dim other than 64/128, E, F or H d not multiples of 64, rope_dim != head_dim),
    // DEVICE_UNAVAILABLE, DEVICE_OUT_OF_MEMORY, CUDA.
    static std::unique_ptr<DecoderEngine> w4a4(const quant::QuantizedModel &qm, int device, GemmF16Fn gemm = {});
    // The FP16 engine of a full-precision model (the baseline of the same kernels). Throws UNSUPPORTED also for
    // q/k/v biases.
    static std::unique_ptr<DecoderEngine> f16(const Model &model, int device, GemmF16Fn gemm = {});
    ~DecoderEngine() override;

    // Why an engine cannot run a model of this configuration (empty when it can): the shapes the kernels cover.
    // Never throws.
    static std::string unsupported_reason(const ModelConfig &c, bool w4a4);

    // "cuda-w4a4" or "cuda-fp16".
    const char *name() const;
    int n_vocab() const;
    int64_t max_positions() const;  // the RoPE table's length (the model's training context)
    size_t weight_bytes() const;    // device memory of the weights

    // A cache of `batch` sequences of `capacity` positions (<= max_positions()).
    std::unique_ptr<EngineCache> make_cache(int batch, int64_t capacity);

    // Appends tokens [batch][n_new] (host) to the cache's sequences at position() and, when logits_last is not
    // nullptr, writes the logits of each sequence's last new token to logits_last [batch][n_vocab] (host) once they
    // are there. Throws INVALID_ARGUMENT (ids out of range, a full cache: the cache is then unchanged).
    // Calls are serialized per engine.
    void step(EngineCache &cache, const int32_t *tokens, int64_t n_new, float *logits_last);
    // Synchronizes the engine's stream (for timing from outside).
    void synchronize();
    // Whether single-token steps run as a CUDA graph, captured and updated every step (off by default: slower than
    // eager launches on an H100, see decoder_engine.cpp; FQ_ENGINE_GRAPHS=1 in the environment turns it on at
    // creation). The results are the same either way.
    void set_decode_graphs(bool on);

    // WindowEvaluator: windows run as a batch of sequences from position 0 through a cache of seq_len.
    void forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink) override;
    void score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
               int32_t *argmax) override;
    int64_t preferred_batch(int64_t seq_len) const override;

    struct Impl;  // the device state (decoder_engine.cpp)

  private:
    explicit DecoderEngine(std::unique_ptr<Impl> impl);
    // Runs the layers over the cache (the residual stream of every new row is left in the engine's h buffer) and
    // advances the cache.
    void run_layers(EngineCache &cache, const int32_t *tokens, int64_t n_new);
    // Windows tokens [n_seq][seq_len] from position 0 through the evaluation cache (kept for the next call).
    void run_windows(const int32_t *tokens, int64_t n_seq, int64_t seq_len);
    // The parts of a step: checks, buffers and the token upload (before any capture), then the kernels.
    void prepare_step(EngineCache &cache, const int32_t *tokens, int64_t n_new);
    void enqueue_layers(EngineCache &cache, int64_t n_new);
    void run_as_graph(const std::function<void()> &enqueue);
    std::unique_ptr<Impl> impl_;
};

}  // namespace fq::cuda
