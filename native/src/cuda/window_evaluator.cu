// Whole-sequence evaluation of a fake-quantized model on the GPU (window_evaluator.h): the layers of
// wineval_layers.h between the embedding gather and the final norm and output projection.
//
// Layout of one call: the sequences go through the layers in chunks of at most max_tokens_ tokens (whole sequences;
// activations are allocated for one chunk) and, within a chunk, in groups of about kGroupTokens tokens, so every
// product has thousands of rows. Logits: the final norm and the output projection run in blocks of logit_rows_ rows
// into two device buffers in turn, on their own stream, for one group of sequences while the next group is in the
// layers. forward(): a third stream copies each finished block into pinned host memory while the next block is
// computed, and the host hands block b-1 to the sink meanwhile. score(): each block is scored where it lies
// (wineval::score_rows, after the product on the same stream) and only the chunk's NLLs and argmaxes come back,
// once, at the chunk's end.
#include "cuda/window_evaluator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/gemm_f32.h"
#include "cuda/wineval_kernels.h"
#include "cuda/wineval_layers.h"
#include "quant/fakequant_forward.h"

namespace fq::cuda {

namespace {

constexpr int64_t kTargetTokens = 16384;              // rows per product that keep an H100 busy
constexpr int64_t kMaxChunkTokens = 32768;            // more buys nothing and only costs memory
constexpr int64_t kGroupTokens = 8192;                // sequences per pass through the layers (see run_chunk)
constexpr size_t kLogitBlockBytes = size_t{64} << 20;  // one device (and one pinned host) logits block

DeviceBuffer upload_vec(const std::vector<float> &v, const Stream &stream) {
    DeviceBuffer buf(v.size() * sizeof(float));
    if (!v.empty()) buf.upload(v.data(), v.size() * sizeof(float), stream);
    return buf;
}

// Device outputs of score(): per chunk row, its target (-1: none), NLL and argmax.
struct ScoreOut {
    const int32_t *targets;  // [chunk tokens]
    double *nll;             // [chunk tokens]
    int32_t *argmax;         // [chunk tokens] or nullptr
};

class WindowEvaluatorImpl final : public WindowEvaluator {
  public:
    WindowEvaluatorImpl(const quant::QuantizedModel &qm, int device);
    ~WindowEvaluatorImpl() override;
    void forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink &sink) override;
    void score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
               int32_t *argmax) override;
    int64_t preferred_batch(int64_t seq_len) const override;

  private:
    void check_tokens(const int32_t *tokens, int64_t n_seq, int64_t seq_len) const;
    // The whole call, chunk by chunk: logits to the sink, or (sink nullptr) scored against targets into nll/argmax.
    void run(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink *sink,
             const int32_t *targets, double *nll, int32_t *argmax);
    void ensure_capacity(int64_t n_tok);
    void ensure_logit_buffers(bool host);
    void run_chunk(const int32_t *tokens, int64_t seq0, int64_t n_seq, int64_t seq_len, const WindowLogitsSink *sink,
                   const ScoreOut *score);
    // Final norm, output projection and delivery (sink) or scoring (score) of the chunk rows [row0, row0 + n_rows)
    // on logit_stream_, once `ready` (recorded on the layers' stream after their last layer) has passed; blocks
    // counts logits blocks of the chunk.
    void logits(int64_t row0, int64_t n_rows, cudaEvent_t ready, int64_t seq0, int64_t seq_len, int64_t &blocks,
                const WindowLogitsSink *sink, const ScoreOut *score);
    cudaStream_t sp() const { return static_cast<cudaStream_t>(layers_->stream().handle()); }

    int device_;
    ModelConfig c_;
    std::unique_ptr<wineval::DeviceLayers> layers_;  // and the stream the layers run on
    std::mutex mu_;
    DeviceBuffer tok_embd_, output_norm_, output_;  // [V][E], [E], [V][E] (empty when tied)
    int64_t max_tokens_ = 1;                        // activation capacity planned at construction
    int64_t logit_rows_ = 1;
    // Activations for cap_ tokens (besides the layers' scratch).
    int64_t cap_ = 0;
    DeviceBuffer tokens_, x_;          // [n] ids, [n][E] hidden states
    DeviceBuffer targets_, nll_, argmax_;  // score(): [n] int32, [n] double, [n] int32
    Stream logit_stream_;  // final norm and output projection of finished sequences, beside later layers
    Stream copy_stream_;   // device-to-host logits copies, beside the next block's product
    cudaEvent_t layers_done_[2] = {nullptr, nullptr};  // a group of sequences left its last layer (by parity)
    DeviceBuffer norm_;    // [logit_rows_][E]: final-normed rows of one logits block
    DeviceBuffer logits_[2];                        // [logit_rows_][V] each
    float *host_logits_[2] = {nullptr, nullptr};  // pinned, logit_rows_ * V floats each
    cudaEvent_t computed_[2] = {nullptr, nullptr};  // logits_[i] holds a finished block
    cudaEvent_t copied_[2] = {nullptr, nullptr};    // host_logits_[i] holds it (and logits_[i] may be reused)
};

WindowEvaluatorImpl::WindowEvaluatorImpl(const quant::QuantizedModel &qm, int device) : device_(device) {
    FQ_CHECK(qm.base != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the quantized model has no base model");
    const Model &m = *qm.base;
    c_ = m.config;
    set_device(device);
    layers_ = std::make_unique<wineval::DeviceLayers>(qm);
    logit_stream_ = Stream::create();
    copy_stream_ = Stream::create();
    const int64_t E = c_.n_embd, V = c_.n_vocab;
    FQ_CHECK(m.weights.tok_embd.size() == size_t(V * E), FQ_STATUS_INVALID_ARGUMENT, "token embeddings: bad size");
    tok_embd_ = upload_vec(m.weights.tok_embd, logit_stream_);
    output_norm_ = upload_vec(m.weights.output_norm, logit_stream_);
    if (!m.weights.output.empty()) output_ = upload_vec(m.weights.output, logit_stream_);

    logit_rows_ = std::max<int64_t>(1, std::min<int64_t>(4096, kLogitBlockBytes / (sizeof(float) * V)));
    // Activation bytes per token: x, the layers' scratch, the id, and score()'s target, NLL and argmax.
    const int64_t per_token = sizeof(float) * (E + wineval::DeviceLayers::scratch_floats_per_token(c_)) +
                              sizeof(int32_t) + (sizeof(int32_t) + sizeof(double) + sizeof(int32_t));
    uint64_t free_bytes = 0, total_bytes = 0;
    memory_info(&free_bytes, &total_bytes);
    const double budget = 0.7 * static_cast<double>(free_bytes) - 2.0 * sizeof(float) * logit_rows_ * V;
    max_tokens_ = std::clamp<int64_t>(static_cast<int64_t>(budget / per_token), 1, kMaxChunkTokens);
    for (int i = 0; i < 2; i++) {
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&computed_[i], cudaEventDisableTiming));
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&copied_[i], cudaEventDisableTiming));
        FQ_CUDA_CHECK(cudaEventCreateWithFlags(&layers_done_[i], cudaEventDisableTiming));
    }
}

WindowEvaluatorImpl::~WindowEvaluatorImpl() {
    // Nothing may still be writing into the pinned buffers when they go.
    (void)cudaSetDevice(device_);
    if (layers_) (void)cudaStreamSynchronize(sp());
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(logit_stream_.handle()));
    (void)cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_.handle()));
    for (int i = 0; i < 2; i++) {
        if (computed_[i]) (void)cudaEventDestroy(computed_[i]);
        if (copied_[i]) (void)cudaEventDestroy(copied_[i]);
        if (layers_done_[i]) (void)cudaEventDestroy(layers_done_[i]);
    }
    for (auto &h : host_logits_)
        if (h) (void)cudaFreeHost(h);
    (void)cudaGetLastError();
}

int64_t WindowEvaluatorImpl::preferred_batch(int64_t seq_len) const {
    if (seq_len <= 0) return 1;
    return std::max<int64_t>(1, std::min(kTargetTokens, max_tokens_) / seq_len);
}

void WindowEvaluatorImpl::ensure_capacity(int64_t n) {
    if (n <= cap_) return;
    cap_ = 0;
    // Free the old set first: the new one may need the memory.
    for (DeviceBuffer *b : {&tokens_, &x_, &targets_, &nll_, &argmax_}) *b = DeviceBuffer();
    tokens_ = DeviceBuffer(static_cast<size_t>(n) * sizeof(int32_t));
    x_ = DeviceBuffer(static_cast<size_t>(n * c_.n_embd) * sizeof(float));
    targets_ = DeviceBuffer(static_cast<size_t>(n) * sizeof(int32_t));
    nll_ = DeviceBuffer(static_cast<size_t>(n) * sizeof(double));
    argmax_ = DeviceBuffer(static_cast<size_t>(n) * sizeof(int32_t));
    cap_ = n;
}

void WindowEvaluatorImpl::ensure_logit_buffers(bool host) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(logit_rows_) * c_.n_vocab;
    if (!norm_.n_bytes()) {
        norm_ = DeviceBuffer(sizeof(float) * static_cast<size_t>(logit_rows_) * c_.n_embd);
        for (auto &l : logits_) l = DeviceBuffer(bytes);
    }
    if (!host || host_logits_[0]) return;
    for (auto &h : host_logits_) {
        void *p = nullptr;
        FQ_CUDA_CHECK(cudaMallocHost(&p, bytes));
        h = static_cast<float *>(p);
    }
}

void WindowEvaluatorImpl::run_chunk(const int32_t *tokens, int64_t seq0, int64_t n_seq, int64_t seq_len,
                                    const WindowLogitsSink *sink, const ScoreOut *score) {
    const int64_t n = n_seq * seq_len, E = c_.n_embd;
    const Stream &stream = layers_->stream();
    tokens_.upload(tokens, static_cast<size_t>(n) * sizeof(int32_t), stream);
    wineval::embed_rows(x_.as<float>(), tokens_.as<int32_t>(), tok_embd_.as<float>(), n, E, stream.handle());
    // Groups of sequences go through the layers one after the other; the logits of group g are computed (and
    // delivered or scored) while group g + 1 is in the layers (it is queued before the host waits on group g).
    const int64_t per_group = std::max<int64_t>(1, kGroupTokens / seq_len);
    int64_t prev_s0 = -1, prev_ns = 0, blocks = 0;
    int parity = 0;
    for (int64_t s0 = 0; s0 < n_seq; s0 += per_group, parity ^= 1) {
        const int64_t ns = std::min(per_group, n_seq - s0);
        for (int32_t l = 0; l < c_.n_layer; l++) layers_->run(l, x_.as<float>() + s0 * seq_len * E, ns, seq_len);
        FQ_CUDA_CHECK(cudaEventRecord(layers_done_[parity], sp()));
        if (prev_s0 >= 0)
            logits(prev_s0 * seq_len, prev_ns * seq_len, layers_done_[parity ^ 1], seq0, seq_len, blocks, sink, score);
        prev_s0 = s0;
        prev_ns = ns;
    }
    logits(prev_s0 * seq_len, prev_ns * seq_len, layers_done_[parity ^ 1], seq0, seq_len, blocks, sink, score);
}

void WindowEvaluatorImpl::logits(int64_t row0, int64_t n_rows, cudaEvent_t ready, int64_t seq0, int64_t seq_len,
                                 int64_t &blocks, const WindowLogitsSink *sink, const ScoreOut *score) {
    const int64_t E = c_.n_embd, V = c_.n_vocab;
    const float *w_out = output_.n_bytes() ? output_.as<float>() : tok_embd_.as<float>();
    const cudaStream_t ls = static_cast<cudaStream_t>(logit_stream_.handle());
    const cudaStream_t cs = static_cast<cudaStream_t>(copy_stream_.handle());
    FQ_CUDA_CHECK(cudaStreamWaitEvent(ls, ready, 0));
    // Hands chunk rows [g0, g0 + rows), sitting in host_logits_[buf], to the sink sequence by sequence.
    auto deliver = [&](int buf, int64_t g0, int64_t rows) {
        FQ_CUDA_CHECK(cudaEventSynchronize(copied_[buf]));
        for (int64_t g = g0; g < g0 + rows;) {
            const int64_t seq = g / seq_len, r0 = g - seq * seq_len;
            const int64_t cnt = std::min(g0 + rows - g, seq_len - r0);
            (*sink)(seq0 + seq, r0, cnt, host_logits_[buf] + (g - g0) * V);
            g += cnt;
        }
    };
    int64_t prev_g0 = -1, prev_rows = 0;
    for (int64_t g0 = row0; g0 < row0 + n_rows; g0 += logit_rows_, blocks++) {
        const int buf = static_cast<int>(blocks & 1);
        const int64_t rows = std::min(logit_rows_, row0 + n_rows - g0);
        wineval::RowPipeline p;  // the final norm (unquantized)
        p.input = wineval::RowInput::RmsNorm;
        p.x = x_.as<float>() + g0 * E;
        p.gain = output_norm_.as<float>();
        p.eps = c_.rms_eps;
        p.n2 = static_cast<int>(E);
        p.out[0] = norm_.as<float>();
        wineval::row_pipeline(p, rows, ls);
        // logits_[buf] was last read by the copy of block blocks - 2 (scoring reads it on ls itself).
        if (sink && blocks >= 2) FQ_CUDA_CHECK(cudaStreamWaitEvent(ls, copied_[buf], 0));
        float *lg = logits_[buf].as<float>();
        gemm_f32(false, true, rows, V, E, 1.0f, norm_.as<float>(), E, w_out, E, 0.0f, lg, V, ls);
        if (score) {
            wineval::score_rows(lg, rows, V, score->targets + g0, score->nll + g0,
                                score->argmax ? score->argmax + g0 : nullptr, ls);
            continue;
        }
        FQ_CUDA_CHECK(cudaEventRecord(computed_[buf], ls));
        // host_logits_[buf] went to the sink (block blocks - 2) before this point, synchronously.
        FQ_CUDA_CHECK(cudaStreamWaitEvent(cs, computed_[buf], 0));
        FQ_CUDA_CHECK(cudaMemcpyAsync(host_logits_[buf], lg, sizeof(float) * static_cast<size_t>(rows * V),
                                      cudaMemcpyDeviceToHost, cs));
        FQ_CUDA_CHECK(cudaEventRecord(copied_[buf], cs));
        if (prev_g0 >= 0) deliver(buf ^ 1, prev_g0, prev_rows);
        prev_g0 = g0;
        prev_rows = rows;
    }
    if (prev_g0 >= 0) deliver(static_cast<int>((blocks - 1) & 1), prev_g0, prev_rows);
}

void WindowEvaluatorImpl::check_tokens(const int32_t *tokens, int64_t n_seq, int64_t seq_len) const {
    FQ_CHECK(n_seq >= 0 && seq_len >= 1 && seq_len <= c_.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
             "%lld sequences of %lld tokens: seq_len must be between 1 and the model's context length %d",
             static_cast<long long>(n_seq), static_cast<long long>(seq_len), c_.n_ctx_train);
    FQ_CHECK(n_seq == 0 || tokens != nullptr, FQ_STATUS_INVALID_ARGUMENT, "no tokens given");
    const int64_t total = n_seq * seq_len;
    for (int64_t i = 0; i < total; ++i) {
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < c_.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld (sequence %lld, position %lld) is outside the vocabulary [0, %d)",
                 tokens[i], static_cast<long long>(i), static_cast<long long>(i / seq_len),
                 static_cast<long long>(i % seq_len), c_.n_vocab);
    }
}

void WindowEvaluatorImpl::forward(const int32_t *tokens, int64_t n_seq, int64_t seq_len,
                                  const WindowLogitsSink &sink) {
    check_tokens(tokens, n_seq, seq_len);
    FQ_CHECK(static_cast<bool>(sink), FQ_STATUS_INVALID_ARGUMENT, "no logits sink given");
    run(tokens, n_seq, seq_len, &sink, nullptr, nullptr, nullptr);
}

void WindowEvaluatorImpl::score(const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len,
                                double *nll, int32_t *argmax) {
    check_tokens(tokens, n_seq, seq_len);
    const int64_t total = n_seq * seq_len, V = c_.n_vocab;
    FQ_CHECK(total == 0 || (targets != nullptr && nll != nullptr), FQ_STATUS_INVALID_ARGUMENT,
             "no targets or no NLL buffer given");
    for (int64_t i = 0; i < total; ++i) {
        FQ_CHECK(targets[i] >= -1 && targets[i] < V, FQ_STATUS_INVALID_ARGUMENT,
                 "target id %d at row %lld is outside the vocabulary [0, %lld)", targets[i], static_cast<long long>(i),
                 static_cast<long long>(V));
    }
    run(tokens, n_seq, seq_len, nullptr, targets, nll, argmax);
}

void WindowEvaluatorImpl::run(const int32_t *tokens, int64_t n_seq, int64_t seq_len, const WindowLogitsSink *sink,
                              const int32_t *targets, double *nll, int32_t *argmax) {
    if (n_seq == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    set_device(device_);
    const int64_t per_chunk = std::max<int64_t>(1, max_tokens_ / seq_len);
    const int64_t chunk_tokens = std::min(n_seq, per_chunk) * seq_len;
    ensure_capacity(chunk_tokens);
    layers_->reserve(chunk_tokens, seq_len);
    ensure_logit_buffers(sink != nullptr);
    try {
        for (int64_t s0 = 0; s0 < n_seq; s0 += per_chunk) {
            const int64_t ns = std::min(per_chunk, n_seq - s0), n = ns * seq_len, at = s0 * seq_len;
            if (sink) {
                run_chunk(tokens + at, s0, ns, seq_len, sink, nullptr);
                continue;
            }
            targets_.upload(targets + at, sizeof(int32_t) * static_cast<size_t>(n), layers_->stream());
            const ScoreOut out{targets_.as<int32_t>(), nll_.as<double>(), argmax ? argmax_.as<int32_t>() : nullptr};
            run_chunk(tokens + at, s0, ns, seq_len, nullptr, &out);
            // The downloads wait for logit_stream_, so the next chunk may overwrite x_ and the targets.
            nll_.download(nll + at, sizeof(double) * static_cast<size_t>(n), logit_stream_);
            if (argmax) argmax_.download(argmax + at, sizeof(int32_t) * static_cast<size_t>(n), logit_stream_);
        }
    } catch (...) {
        // A throwing sink (or a failed launch) leaves copies in flight into the pinned buffers: let them land.
        (void)cudaStreamSynchronize(sp());
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(logit_stream_.handle()));
        (void)cudaStreamSynchronize(static_cast<cudaStream_t>(copy_stream_.handle()));
        (void)cudaGetLastError();
        throw;
    }
}

}  // namespace

std::unique_ptr<WindowEvaluator> make_window_evaluator(const quant::QuantizedModel &qm, int device) {
    FQ_CHECK(device >= 0 && device < device_count(), FQ_STATUS_DEVICE_UNAVAILABLE,
             "CUDA device %d is not available (%d devices)", device, device_count());
    return std::make_unique<WindowEvaluatorImpl>(qm, device);
}

}  // namespace fq::cuda
