// Internals shared by the C ABI's translation units (api.cpp, api_quant.cpp): the handle structs behind the opaque
// types of flatquant.h and the helpers every entry point uses. Not installed, not public.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "eval/perplexity.h"
#include "flatquant.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/fakequant_forward.h"

#ifdef FQ_HAVE_CUDA
#include "cuda/decoder_engine.h"
#include "cuda/window_evaluator.h"
#endif

struct fq_runtime {
    std::unique_ptr<fq::ThreadPool> pool;
    int32_t device = FQ_DEVICE_CPU;
};

// A full-precision model, or the fake-quantized view of one (fq_model_quantize), which shares the base's weights,
// embeddings and tokenizer and keeps them alive.
struct fq_model {
    fq_runtime *rt = nullptr;
    std::shared_ptr<const fq::Model> model;                 // the full-precision model (the base of a quantized one)
    std::unique_ptr<fq::quant::QuantizedModel> quant;       // null for a full-precision model
    fq::ForwardFn forward;                                  // incremental forward (sessions), on the CPU threads
    fq::WindowsForwardFn windows;                           // whole-sequence forward (CPU or the runtime's GPU)
    fq::WindowsScoreFn score;                               // whole-sequence scoring (next to the logits on a GPU)
    int64_t windows_per_call = 1;                           // perplexity windows per call of `score`
    bool quantized_file = false;                            // loaded from a quantized-model file
#ifdef FQ_HAVE_CUDA
    std::unique_ptr<fq::cuda::WindowEvaluator> gpu;         // when rt->device is a CUDA device
    // The sessions' engine on a CUDA runtime (W4A4 for w4a4kv4 models, FP16 for full-precision ones): built at the
    // first session, or at load where it also evaluates (a quantized-model file). Guarded by engine_mu.
    mutable std::mutex engine_mu;
    mutable std::unique_ptr<fq::cuda::DecoderEngine> engine;
#endif
    std::string eval_engine = "cpu", session_engine = "cpu";  // fq_model_info's names
    bool quantized() const { return quant != nullptr; }
};

struct fq_session {
    const fq_model *owner = nullptr;
    int32_t n_seq = 1;                                     // sequences decoded together
    std::vector<fq::KVCache> caches;                       // CPU runtime: one per sequence
#ifdef FQ_HAVE_CUDA
    std::unique_ptr<fq::cuda::EngineCache> gpu_cache;      // CUDA runtime: the owner's engine's cache of n_seq
#endif
    std::atomic<bool> busy{false};
};

namespace fq::api {

inline void copy_cstr(char *dst, size_t cap, const std::string &src) {
    size_t n = std::min(cap - 1, src.size());
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

inline void set_error(fq_error *err, int32_t code, const std::string &msg, int32_t cuda_error = 0,
                      const std::string &cuda_name = {}) {
    if (!err) return;
    err->code = code;
    err->cuda_error = cuda_error;
    copy_cstr(err->cuda_error_name, sizeof(err->cuda_error_name), cuda_name);
    copy_cstr(err->message, sizeof(err->message), msg);
}

template <class F>
int32_t guarded(fq_error *err, F &&body) {
    try {
        body();
        if (err) {
            err->code = FQ_STATUS_OK;
            err->cuda_error = 0;
            err->cuda_error_name[0] = '\0';
            err->message[0] = '\0';
        }
        return FQ_STATUS_OK;
    } catch (const fq::Error &e) {
        set_error(err, e.status(), e.what(), e.cuda_error(), e.cuda_error_name());
        return e.status();
    } catch (const std::bad_alloc &) {
        set_error(err, FQ_STATUS_OUT_OF_MEMORY, "out of host memory");
        return FQ_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        set_error(err, FQ_STATUS_INTERNAL, std::string("internal error: ") + e.what());
        return FQ_STATUS_INTERNAL;
    } catch (...) {
        set_error(err, FQ_STATUS_INTERNAL, "internal error: unknown exception");
        return FQ_STATUS_INTERNAL;
    }
}

// Copies a caller's option struct over our defaults, honouring its struct_size: fields beyond an older caller's
// struct keep their defaults.
template <class T>
T read_options(const T *in, const T &defaults, const char *what) {
    T out = defaults;
    if (!in) return out;
    FQ_CHECK(in->struct_size >= sizeof(uint32_t) && in->struct_size <= (1u << 16), FQ_STATUS_INVALID_ARGUMENT,
             "%s.struct_size = %u is invalid: call the _init function first", what, in->struct_size);
    std::memcpy(&out, in, std::min<size_t>(in->struct_size, sizeof(T)));
    return out;
}

template <class T>
void write_result(T *out, const T &value, const char *what) {
    FQ_CHECK(out->struct_size >= sizeof(uint32_t) && out->struct_size <= (1u << 16), FQ_STATUS_INVALID_ARGUMENT,
             "%s.struct_size = %u is invalid: call the _init function first", what, out->struct_size);
    uint32_t size = out->struct_size;
    std::memcpy(out, &value, std::min<size_t>(size, sizeof(T)));
    out->struct_size = size;
}

#define FQ_REQUIRE_ARG(ptr) FQ_CHECK((ptr) != nullptr, FQ_STATUS_INVALID_ARGUMENT, "%s must not be NULL", #ptr)

inline std::string_view text_view(const char *text, int64_t len) {
    FQ_CHECK(len >= 0, FQ_STATUS_INVALID_ARGUMENT, "text_len %lld is negative", (long long)len);
    FQ_CHECK(text != nullptr || len == 0, FQ_STATUS_INVALID_ARGUMENT, "text is NULL but text_len is %lld",
             (long long)len);
    return len == 0 ? std::string_view() : std::string_view(text, static_cast<size_t>(len));
}

inline bool resolve_bos(const fq::Model &m, int32_t add_bos) {
    FQ_CHECK(add_bos >= -1 && add_bos <= 1, FQ_STATUS_INVALID_ARGUMENT, "add_bos %d must be -1, 0 or 1", add_bos);
    bool bos = add_bos == FQ_BOS_DEFAULT ? m.tokenizer->add_bos_default() : add_bos == FQ_BOS_YES;
    FQ_CHECK(!bos || m.tokenizer->bos_id() >= 0, FQ_STATUS_INVALID_ARGUMENT, "a BOS token was asked for, but the "
             "model has none");
    return bos;
}

// Connects a model handle to its forward passes: the CPU forwards, and on a CUDA runtime the GPU evaluator of the
// whole-sequence forward (built from the quantized model, or from a w16a16 view of a full-precision one).
void attach_forwards(fq_model &m);

// Loads the file at path into m.model: a GGUF model, or a quantized-model file (then also m.quant, and
// m.quantized_file is set). Defined in api_qfile.cpp.
void load_model_file(fq_model &m, const std::string &path, const fq::LoadOptions &opts);

#ifdef FQ_HAVE_CUDA
// The model's session engine, built on first use. Throws UNSUPPORTED when it has none (session_engine is empty).
fq::cuda::DecoderEngine &session_engine(const fq_model &m);
#endif

}  // namespace fq::api
