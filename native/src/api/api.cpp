// The C ABI (native/include/flatquant.h) over the C++ core. Every entry point catches everything: fq::Error keeps its
// status, std::bad_alloc becomes OUT_OF_MEMORY, anything else INTERNAL. Option and result structs are copied by their
// struct_size, so callers compiled against an older (smaller) struct keep working.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "cpu/matmul.h"
#include "eval/perplexity.h"
#include "eval/sampler.h"
#include "model/forward.h"
#include "model/model.h"
#include "api/api_internal.h"

#ifdef FQ_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef FQ_VERSION_STRING
#define FQ_VERSION_STRING "0.0.0"
#endif

struct fq_sampler {
    explicit fq_sampler(const fq::SamplerConfig &c) : sampler(c) {}
    fq::Sampler sampler;
};

using namespace fq::api;

extern "C" {

FQ_API void fq_error_init(fq_error *err) {
    if (!err) return;
    std::memset(err, 0, sizeof(*err));
    err->struct_size = sizeof(*err);
}

FQ_API int32_t fq_abi_version(void) { return FQ_ABI_VERSION; }
FQ_API const char *fq_version_string(void) { return FQ_VERSION_STRING; }
FQ_API int32_t fq_noop(void) { return 0; }

FQ_API const char *fq_status_name(int32_t status) {
    switch (status) {
        case FQ_STATUS_OK: return "FQ_STATUS_OK";
        case FQ_STATUS_INVALID_ARGUMENT: return "FQ_STATUS_INVALID_ARGUMENT";
        case FQ_STATUS_NOT_FOUND: return "FQ_STATUS_NOT_FOUND";
        case FQ_STATUS_IO: return "FQ_STATUS_IO";
        case FQ_STATUS_MODEL_FORMAT: return "FQ_STATUS_MODEL_FORMAT";
        case FQ_STATUS_UNSUPPORTED: return "FQ_STATUS_UNSUPPORTED";
        case FQ_STATUS_OUT_OF_MEMORY: return "FQ_STATUS_OUT_OF_MEMORY";
        case FQ_STATUS_DEVICE_OUT_OF_MEMORY: return "FQ_STATUS_DEVICE_OUT_OF_MEMORY";
        case FQ_STATUS_DEVICE_UNAVAILABLE: return "FQ_STATUS_DEVICE_UNAVAILABLE";
        case FQ_STATUS_CUDA: return "FQ_STATUS_CUDA";
        case FQ_STATUS_CANCELLED: return "FQ_STATUS_CANCELLED";
        case FQ_STATUS_BUSY: return "FQ_STATUS_BUSY";
        case FQ_STATUS_BUFFER_TOO_SMALL: return "FQ_STATUS_BUFFER_TOO_SMALL";
        case FQ_STATUS_NUMERIC: return "FQ_STATUS_NUMERIC";
        case FQ_STATUS_INTERNAL: return "FQ_STATUS_INTERNAL";
        default: return "FQ_STATUS_UNKNOWN";
    }
}

/* ---- cancellation ---- */

FQ_API int32_t fq_cancel_token_create(fq_cancel_token **out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = new fq_cancel_token();
    });
}
FQ_API void fq_cancel_token_cancel(fq_cancel_token *t) {
    if (t) t->cancelled.store(true);
}
FQ_API int32_t fq_cancel_token_is_cancelled(const fq_cancel_token *t) { return t && t->cancelled.load() ? 1 : 0; }
FQ_API void fq_cancel_token_reset(fq_cancel_token *t) {
    if (t) t->cancelled.store(false);
}
FQ_API void fq_cancel_token_free(fq_cancel_token *t) { delete t; }

/* ---- runtime ---- */

FQ_API void fq_runtime_options_init(fq_runtime_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    o->n_threads = 0;
    o->device = FQ_DEVICE_CPU;
}

FQ_API int32_t fq_build_has_cuda(void) {
#ifdef FQ_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

FQ_API int32_t fq_cuda_device_count(int32_t *out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
#ifdef FQ_HAVE_CUDA
        *out = fq::cuda::device_count();
#else
        *out = 0;
#endif
    });
}

FQ_API int32_t fq_runtime_create(const fq_runtime_options *opts, fq_runtime **out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = nullptr;
        fq_runtime_options o;
        fq_runtime_options_init(&o);
        o = read_options(opts, o, "fq_runtime_options");
        FQ_CHECK(o.n_threads >= 0 && o.n_threads <= 1024, FQ_STATUS_INVALID_ARGUMENT,
                 "n_threads %d must be between 0 and 1024", o.n_threads);
        FQ_CHECK(o.device >= FQ_DEVICE_CPU, FQ_STATUS_INVALID_ARGUMENT, "device %d is invalid", o.device);
        if (o.device != FQ_DEVICE_CPU) {
            int32_t n = 0;
#ifdef FQ_HAVE_CUDA
            n = fq::cuda::device_count();
#else
            FQ_FAIL(FQ_STATUS_DEVICE_UNAVAILABLE, "CUDA device %d was asked for, but this library was built without "
                    "the CUDA backend", o.device);
#endif
            FQ_CHECK(o.device < n, FQ_STATUS_DEVICE_UNAVAILABLE, "CUDA device %d was asked for, but %d device(s) are "
                     "usable", o.device, n);
        }
        auto rt = std::make_unique<fq_runtime>();
        rt->pool = std::make_unique<fq::ThreadPool>(o.n_threads);
        rt->device = o.device;
        fq::blas_set_threads(rt->pool->n_threads());
        *out = rt.release();
    });
}

FQ_API void fq_runtime_free(fq_runtime *rt) { delete rt; }
FQ_API int32_t fq_runtime_n_threads(const fq_runtime *rt) { return rt ? rt->pool->n_threads() : 0; }

/* ---- model ---- */

FQ_API void fq_model_options_init(fq_model_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    o->check_finite = 1;
}

FQ_API int32_t fq_model_load(fq_runtime *rt, const char *path, const fq_model_options *opts, fq_model **out,
                             fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = nullptr;
        FQ_REQUIRE_ARG(rt);
        FQ_REQUIRE_ARG(path);
        fq_model_options o;
        fq_model_options_init(&o);
        o = read_options(opts, o, "fq_model_options");
        fq::LoadOptions lo;
        lo.check_finite = o.check_finite != 0;
        auto m = std::make_unique<fq_model>();
        m->rt = rt;
        load_model_file(*m, path, lo);  // a GGUF model, or a quantized-model file (then a quantized handle)
        attach_forwards(*m);
        *out = m.release();
    });
}

FQ_API void fq_model_free(fq_model *m) { delete m; }

FQ_API void fq_model_info_init(fq_model_info *info) {
    if (!info) return;
    std::memset(info, 0, sizeof(*info));
    info->struct_size = sizeof(*info);
}

FQ_API int32_t fq_model_get_info(const fq_model *model, fq_model_info *out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(out);
        const fq::Model &m = *model->model;
        const fq::ModelConfig &c = m.config;
        fq_model_info i;
        fq_model_info_init(&i);
        copy_cstr(i.architecture, sizeof(i.architecture), c.architecture);
        copy_cstr(i.name, sizeof(i.name), c.name);
        copy_cstr(i.tokenizer_model, sizeof(i.tokenizer_model), m.tokenizer->model_name());
        copy_cstr(i.tokenizer_pre, sizeof(i.tokenizer_pre), m.tokenizer->pre_name());
        copy_cstr(i.weight_types, sizeof(i.weight_types), m.source.weight_types);
        i.n_params = m.source.n_params;
        i.file_bytes = m.source.file_bytes;
        i.n_vocab = c.n_vocab;
        i.n_ctx_train = c.n_ctx_train;
        i.n_embd = c.n_embd;
        i.n_layer = c.n_layer;
        i.n_head = c.n_head;
        i.n_head_kv = c.n_head_kv;
        i.head_dim = c.head_dim;
        i.n_ff = c.n_ff;
        i.rope_dim = c.rope_dim;
        i.bos_id = m.tokenizer->bos_id();
        i.eos_id = m.tokenizer->eos_id();
        i.add_bos = m.tokenizer->add_bos_default() ? 1 : 0;
        i.tied_embeddings = c.tied_embeddings ? 1 : 0;
        i.has_qkv_bias = c.qkv_bias ? 1 : 0;
        i.rope_freq_base = c.rope_freq_base;
        i.rms_eps = c.rms_eps;
        i.gguf_version = m.source.gguf_version;
        copy_cstr(i.eval_engine, sizeof(i.eval_engine), model->eval_engine);
        copy_cstr(i.session_engine, sizeof(i.session_engine), model->session_engine);
        if (model->quantized()) {
            const fq::quant::QuantScheme &q = model->quant->scheme;
            copy_cstr(i.quant, sizeof(i.quant), fq::quant::bits_name(q.bits));
            copy_cstr(i.method, sizeof(i.method), fq::quant::method_name(q.method));
            copy_cstr(i.weight_quantizer, sizeof(i.weight_quantizer), fq::quant::weight_quantizer_name(q.weights));
        }
        i.quantized_file = model->quantized_file ? 1 : 0;
        write_result(out, i, "fq_model_info");
    });
}

FQ_API int32_t fq_model_fingerprint(const fq_model *model, char *buf, int64_t buf_size, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(buf);
        FQ_CHECK(buf_size >= 65, FQ_STATUS_BUFFER_TOO_SMALL, "the fingerprint needs 65 bytes, buf_size is %lld",
                 (long long)buf_size);
        copy_cstr(buf, 65, model->model->fingerprint());
    });
}

/* ---- tokenizer ---- */

FQ_API int32_t fq_model_tokenize(const fq_model *model, const char *text, int64_t text_len, int32_t add_bos,
                                 int32_t *tokens, int64_t capacity, int64_t *n_tokens, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(n_tokens);
        FQ_CHECK(capacity >= 0 && (tokens != nullptr || capacity == 0), FQ_STATUS_INVALID_ARGUMENT,
                 "tokens is NULL or capacity %lld is negative", (long long)capacity);
        const fq::Model &m = *model->model;
        std::vector<int32_t> ids = m.tokenizer->encode(text_view(text, text_len), resolve_bos(m, add_bos));
        *n_tokens = static_cast<int64_t>(ids.size());
        FQ_CHECK((int64_t)ids.size() <= capacity, FQ_STATUS_BUFFER_TOO_SMALL,
                 "the text has %zu tokens but the buffer holds %lld", ids.size(), (long long)capacity);
        std::copy(ids.begin(), ids.end(), tokens);
    });
}

FQ_API int32_t fq_model_detokenize(const fq_model *model, const int32_t *tokens, int64_t n, char *buf,
                                   int64_t capacity, int64_t *n_bytes, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(n_bytes);
        FQ_CHECK(n >= 0 && (tokens != nullptr || n == 0), FQ_STATUS_INVALID_ARGUMENT,
                 "tokens is NULL or n_tokens %lld is negative", (long long)n);
        FQ_CHECK(capacity >= 0 && (buf != nullptr || capacity == 0), FQ_STATUS_INVALID_ARGUMENT,
                 "buf is NULL or capacity %lld is negative", (long long)capacity);
        const fq::Model &m = *model->model;
        for (int64_t i = 0; i < n; ++i)
            FQ_CHECK(tokens[i] >= 0 && tokens[i] < m.config.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                     "token id %d at index %lld is outside the vocabulary [0, %d)", tokens[i], (long long)i,
                     m.config.n_vocab);
        std::string text = m.tokenizer->decode(tokens, static_cast<size_t>(n));
        *n_bytes = static_cast<int64_t>(text.size());
        FQ_CHECK((int64_t)text.size() <= capacity, FQ_STATUS_BUFFER_TOO_SMALL,
                 "the text has %zu bytes but the buffer holds %lld", text.size(), (long long)capacity);
        std::memcpy(buf, text.data(), text.size());
    });
}

/* ---- evaluation ---- */

FQ_API int32_t fq_model_logits(const fq_model *model, const int32_t *tokens, int64_t n_tokens, float *logits,
                               int64_t capacity, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(tokens);
        FQ_REQUIRE_ARG(logits);
        const fq::Model &m = *model->model;
        FQ_CHECK(n_tokens > 0 && n_tokens <= m.config.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                 "n_tokens %lld must be between 1 and the model's context length %d", (long long)n_tokens,
                 m.config.n_ctx_train);
        const int64_t V = m.config.n_vocab;
        FQ_CHECK(capacity >= n_tokens * V, FQ_STATUS_BUFFER_TOO_SMALL,
                 "logits need %lld floats but capacity is %lld", (long long)(n_tokens * V), (long long)capacity);
        model->windows(tokens, 1, n_tokens, [&](int64_t, int64_t row0, int64_t rows, const float *lg) {
            std::memcpy(logits + row0 * V, lg, sizeof(float) * rows * V);
        });
    });
}

namespace {

// One log-likelihood request: ids [0, n) of which the first n_context are the context.
struct LlRequest {
    const int32_t *ids;
    int64_t n, n_context;
};

void check_request(const fq::ModelConfig &c, const LlRequest &r, int64_t index) {
    const int64_t n_cont = r.n - r.n_context;
    FQ_CHECK(r.n_context >= 1 && n_cont >= 1, FQ_STATUS_INVALID_ARGUMENT,
             "request %lld: context (%lld tokens) and continuation (%lld tokens) must both be non-empty",
             (long long)index, (long long)r.n_context, (long long)n_cont);
    FQ_CHECK(r.n <= c.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
             "request %lld: context + continuation is %lld tokens, above the model's context length %d",
             (long long)index, (long long)r.n, c.n_ctx_train);
    // The last id is only a target (never fed to the model), so every id is checked here, not just the fed ones.
    for (int64_t i = 0; i < r.n; ++i)
        FQ_CHECK(r.ids[i] >= 0 && r.ids[i] < c.n_vocab, FQ_STATUS_INVALID_ARGUMENT,
                 "request %lld: token id %d at index %lld is outside the vocabulary [0, %d)", (long long)index,
                 r.ids[i], (long long)i, c.n_vocab);
}

// Scores requests [first, first + count) of `order` in one call of the model's scorer: each fed its first n - 1 ids,
// right-padded with id 0 to the longest (a causal model's rows never see later positions), the positions
// n_context - 1 .. n - 2 targeting the continuation.
void score_group(const fq_model &model, const std::vector<LlRequest> &reqs, const std::vector<int64_t> &order,
                 size_t first, size_t count, double *logprob, int32_t *is_greedy) {
    int64_t len = 1;
    for (size_t g = 0; g < count; ++g) len = std::max(len, reqs[order[first + g]].n - 1);
    std::vector<int32_t> fed(count * len, 0), targets(count * len, -1), argmax(count * len);
    std::vector<double> nll(count * len);
    for (size_t g = 0; g < count; ++g) {
        const LlRequest &r = reqs[order[first + g]];
        std::copy(r.ids, r.ids + r.n - 1, fed.begin() + g * len);
        for (int64_t pos = r.n_context - 1; pos < r.n - 1; ++pos) targets[g * len + pos] = r.ids[pos + 1];
    }
    model.score(fed.data(), targets.data(), static_cast<int64_t>(count), len, nll.data(), argmax.data());
    for (size_t g = 0; g < count; ++g) {
        const int64_t i = order[first + g];
        const LlRequest &r = reqs[i];
        double sum = 0;
        bool greedy = true;
        for (int64_t pos = r.n_context - 1; pos < r.n - 1; ++pos) {
            sum -= nll[g * len + pos];
            greedy = greedy && argmax[g * len + pos] == r.ids[pos + 1];
        }
        logprob[i] = sum;
        if (is_greedy) is_greedy[i] = greedy ? 1 : 0;
    }
}

// Groups of requests for one scorer call: one request each where the scorer runs sequences one by one (the CPU),
// otherwise consecutive requests in order of decreasing length while the padded group stays within about the
// token count of the scorer's preferred perplexity batch.
void score_requests(const fq_model &model, const std::vector<LlRequest> &reqs, double *logprob, int32_t *is_greedy) {
    std::vector<int64_t> order(reqs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    if (model.windows_per_call <= 1) {
        for (size_t i = 0; i < order.size(); ++i) score_group(model, reqs, order, i, 1, logprob, is_greedy);
        return;
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return reqs[a].n > reqs[b].n; });
    const int64_t budget = model.windows_per_call * std::min(2048, model.model->config.n_ctx_train);
    for (size_t first = 0; first < order.size();) {
        const int64_t len = std::max<int64_t>(1, reqs[order[first]].n - 1);  // the longest of the group
        size_t count = 1;
        while (first + count < order.size() && static_cast<int64_t>(count + 1) * len <= budget && count < 1024)
            ++count;
        score_group(model, reqs, order, first, count, logprob, is_greedy);
        first += count;
    }
}

}  // namespace

FQ_API int32_t fq_model_loglikelihood(const fq_model *model, const int32_t *context, int64_t n_context,
                                      const int32_t *continuation, int64_t n_continuation, double *logprob,
                                      int32_t *is_greedy, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(context);
        FQ_REQUIRE_ARG(continuation);
        FQ_REQUIRE_ARG(logprob);
        FQ_CHECK(n_context >= 1 && n_continuation >= 1, FQ_STATUS_INVALID_ARGUMENT,
                 "context (%lld tokens) and continuation (%lld tokens) must both be non-empty", (long long)n_context,
                 (long long)n_continuation);
        std::vector<int32_t> seq(context, context + n_context);
        seq.insert(seq.end(), continuation, continuation + n_continuation);
        const std::vector<LlRequest> reqs{{seq.data(), static_cast<int64_t>(seq.size()), n_context}};
        check_request(model->model->config, reqs[0], 0);
        score_requests(*model, reqs, logprob, is_greedy);
    });
}

FQ_API int32_t fq_model_loglikelihood_batch(const fq_model *model, const int32_t *tokens, const int64_t *offsets,
                                            const int64_t *n_context, int64_t n_requests, double *logprob,
                                            int32_t *is_greedy, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(offsets);
        FQ_REQUIRE_ARG(n_context);
        FQ_REQUIRE_ARG(logprob);
        FQ_CHECK(n_requests >= 0, FQ_STATUS_INVALID_ARGUMENT, "n_requests %lld is negative", (long long)n_requests);
        FQ_CHECK(offsets[0] == 0, FQ_STATUS_INVALID_ARGUMENT, "offsets[0] is %lld, not 0", (long long)offsets[0]);
        FQ_CHECK(tokens != nullptr || offsets[n_requests] == 0, FQ_STATUS_INVALID_ARGUMENT, "tokens is NULL");
        std::vector<LlRequest> reqs(static_cast<size_t>(n_requests));
        for (int64_t i = 0; i < n_requests; ++i) {
            FQ_CHECK(offsets[i + 1] >= offsets[i], FQ_STATUS_INVALID_ARGUMENT,
                     "offsets[%lld] = %lld is below offsets[%lld] = %lld", (long long)(i + 1),
                     (long long)offsets[i + 1], (long long)i, (long long)offsets[i]);
            reqs[i] = LlRequest{tokens + offsets[i], offsets[i + 1] - offsets[i], n_context[i]};
            check_request(model->model->config, reqs[i], i);
        }
        score_requests(*model, reqs, logprob, is_greedy);
    });
}

FQ_API void fq_perplexity_options_init(fq_perplexity_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    o->seqlen = 2048;
    o->add_bos = FQ_BOS_DEFAULT;
    o->max_chunks = -1;
}

FQ_API void fq_perplexity_result_init(fq_perplexity_result *r) {
    if (!r) return;
    std::memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
}

FQ_API int32_t fq_model_perplexity(const fq_model *model, const char *text, int64_t text_len,
                                   const fq_perplexity_options *opts, fq_perplexity_result *out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(out);
        auto t0 = std::chrono::steady_clock::now();
        fq_perplexity_options o;
        fq_perplexity_options_init(&o);
        o = read_options(opts, o, "fq_perplexity_options");
        const fq::Model &m = *model->model;
        std::string_view tv = text_view(text, text_len);
        FQ_CHECK(!tv.empty(), FQ_STATUS_INVALID_ARGUMENT, "the text is empty");
        fq::Progress progress(o.progress, o.progress_user_data, o.cancel);
        progress.step("tokenize", 0, 1);
        bool bos = resolve_bos(m, o.add_bos);
        std::vector<int32_t> ids = m.tokenizer->encode(tv, bos);
        progress.step("tokenize", 1, 1);
        FQ_CHECK(o.seqlen >= 2 && o.seqlen <= m.config.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                 "seqlen %d is out of range: it must be between 2 and the model's context length %d", o.seqlen,
                 m.config.n_ctx_train);
        fq::PerplexityResult pr = fq::perplexity(m.config, model->score, ids, o.seqlen, o.max_chunks, progress,
                                                 model->windows_per_call);
        fq_perplexity_result r;
        fq_perplexity_result_init(&r);
        r.bos = bos ? 1 : 0;
        r.n_tokens = pr.n_tokens;
        r.n_chunks = pr.n_chunks;
        r.n_predicted = pr.n_predicted;
        r.nll_sum = pr.nll_sum;
        r.ppl = pr.ppl;
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        write_result(out, r, "fq_perplexity_result");
    });
}

/* ---- sessions ---- */

FQ_API void fq_session_options_init(fq_session_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    o->n_seq = 1;
}

FQ_API int32_t fq_session_create(const fq_model *model, const fq_session_options *opts, fq_session **out,
                                 fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = nullptr;
        FQ_REQUIRE_ARG(model);
        fq_session_options o;
        fq_session_options_init(&o);
        o = read_options(opts, o, "fq_session_options");
        const fq::ModelConfig &c = model->model->config;
        int32_t n_ctx = o.n_ctx == 0 ? std::min(c.n_ctx_train, 4096) : o.n_ctx;
        FQ_CHECK(n_ctx > 0 && n_ctx <= c.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                 "n_ctx %d must be between 1 and the model's context length %d", o.n_ctx, c.n_ctx_train);
        const int32_t n_seq = o.n_seq;  // callers built before the field existed get the default through struct_size
        FQ_CHECK(n_seq >= 1 && n_seq <= 256, FQ_STATUS_INVALID_ARGUMENT, "n_seq %d must be between 1 and 256",
                 n_seq);
        auto s = std::make_unique<fq_session>();
        s->owner = model;
        s->n_seq = n_seq;
        if (model->rt->device == FQ_DEVICE_CPU) {
            s->caches.resize(static_cast<size_t>(n_seq));
            for (fq::KVCache &kv : s->caches) kv.init(c, n_ctx);
        } else {
#ifdef FQ_HAVE_CUDA
            s->gpu_cache = session_engine(*model).make_cache(n_seq, n_ctx);
#else
            FQ_FAIL(FQ_STATUS_DEVICE_UNAVAILABLE, "this library was built without the CUDA backend");
#endif
        }
        *out = s.release();
    });
}

FQ_API void fq_session_free(fq_session *s) { delete s; }

namespace {
// Marks the session busy for the lifetime of the guard; a second caller gets FQ_STATUS_BUSY.
struct SessionLock {
    explicit SessionLock(fq_session *s) : s_(s) {
        FQ_CHECK(!s_->busy.exchange(true), FQ_STATUS_BUSY, "the session is in use by another call");
    }
    ~SessionLock() { s_->busy.store(false); }
    fq_session *s_;
};
}  // namespace

FQ_API int32_t fq_session_reset(fq_session *s, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(s);
        SessionLock lock(s);
        for (fq::KVCache &kv : s->caches) kv.n_past = 0;
#ifdef FQ_HAVE_CUDA
        if (s->gpu_cache) s->gpu_cache->reset();
#endif
    });
}

FQ_API int32_t fq_session_position(fq_session *s, int64_t *out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(s);
        FQ_REQUIRE_ARG(out);
        SessionLock lock(s);
        *out = s->caches.empty() ? 0 : s->caches[0].n_past;
#ifdef FQ_HAVE_CUDA
        if (s->gpu_cache) *out = s->gpu_cache->position();
#endif
    });
}

namespace {
// Both decode entry points: tokens [n_seq][n_tokens], logits [n_seq][n_vocab] or NULL.
void session_decode(fq_session *s, const int32_t *tokens, int64_t n_tokens, float *logits, int64_t capacity) {
    FQ_REQUIRE_ARG(s);
    FQ_REQUIRE_ARG(tokens);
    FQ_CHECK(n_tokens > 0, FQ_STATUS_INVALID_ARGUMENT, "n_tokens %lld must be positive", (long long)n_tokens);
    SessionLock lock(s);
    const fq::Model &m = *s->owner->model;
    const int64_t V = m.config.n_vocab, B = s->n_seq;
    if (logits)
        FQ_CHECK(capacity >= B * V, FQ_STATUS_BUFFER_TOO_SMALL, "logits need %lld floats but capacity is %lld",
                 (long long)(B * V), (long long)capacity);
#ifdef FQ_HAVE_CUDA
    if (s->gpu_cache) {
        s->owner->engine->step(*s->gpu_cache, tokens, n_tokens, logits);
        return;
    }
#endif
    // Every sequence is checked before any advances, so a refused call leaves the whole batch as it was.
    for (int64_t i = 0; i < B * n_tokens; ++i)
        FQ_CHECK(tokens[i] >= 0 && tokens[i] < V, FQ_STATUS_INVALID_ARGUMENT,
                 "token id %d at index %lld is outside the vocabulary [0, %lld)", tokens[i], (long long)i,
                 (long long)V);
    const fq::KVCache &kv0 = s->caches[0];
    FQ_CHECK(kv0.n_past + n_tokens <= kv0.n_ctx, FQ_STATUS_INVALID_ARGUMENT,
             "context is full: %d tokens in the cache + %lld new > %d", kv0.n_past, (long long)n_tokens, kv0.n_ctx);
    for (int64_t b = 0; b < B; ++b) {
        float *row = logits ? logits + b * V : nullptr;
        s->owner->forward(tokens + b * n_tokens, n_tokens, s->caches[static_cast<size_t>(b)],
                          row ? fq::LogitsWanted::Last : fq::LogitsWanted::None,
                          [&](int64_t, int64_t, const float *lg) { std::memcpy(row, lg, sizeof(float) * V); });
    }
}
}  // namespace

FQ_API int32_t fq_session_decode(fq_session *s, const int32_t *tokens, int64_t n_tokens, float *logits,
                                 int64_t capacity, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(s);
        FQ_CHECK(s->n_seq == 1, FQ_STATUS_INVALID_ARGUMENT, "this session decodes %d sequences together: use "
                 "fq_session_decode_batch", s->n_seq);
        session_decode(s, tokens, n_tokens, logits, capacity);
    });
}

FQ_API int32_t fq_session_decode_batch(fq_session *s, const int32_t *tokens, int64_t n_tokens, float *logits,
                                       int64_t capacity, fq_error *err) {
    return guarded(err, [&] { session_decode(s, tokens, n_tokens, logits, capacity); });
}

/* ---- sampling ---- */

FQ_API void fq_sampler_options_init(fq_sampler_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    o->temperature = 0.0f;
    o->top_p = 1.0f;
    o->top_k = 0;
    o->seed = 0;
}

FQ_API int32_t fq_sampler_create(const fq_sampler_options *opts, fq_sampler **out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = nullptr;
        fq_sampler_options o;
        fq_sampler_options_init(&o);
        o = read_options(opts, o, "fq_sampler_options");
        fq::SamplerConfig c;
        c.temperature = o.temperature;
        c.top_p = o.top_p;
        c.top_k = o.top_k;
        c.seed = o.seed;
        *out = new fq_sampler(c);
    });
}

FQ_API void fq_sampler_free(fq_sampler *s) { delete s; }

FQ_API int32_t fq_sampler_sample(fq_sampler *s, const float *logits, int32_t n_vocab, int32_t *out_token,
                                 fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(s);
        FQ_REQUIRE_ARG(logits);
        FQ_REQUIRE_ARG(out_token);
        *out_token = s->sampler.sample(logits, n_vocab);
    });
}

}  // extern "C"
