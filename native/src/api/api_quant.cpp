// The quantization part of the C ABI: fq_calibrate (FlatQuant calibration to an artifact), fq_model_quantize (the
// fake-quantized view of a model) and attach_forwards, which gives every model handle its forward passes.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "api/api_internal.h"
#include "core/sha256.h"
#include "quant/artifact.h"
#include "quant/calib_data.h"
#include "quant/calibrate.h"
#include "quant/reparameterize.h"

using namespace fq::api;
namespace q = fq::quant;

namespace fq::api {
namespace {

// The whole-sequence forward of a model handle on the runtime's GPU: the quantized model itself, or for a
// full-precision model its w16a16 view with no transforms (which computes what fq::forward computes).
void attach_gpu(fq_model &m) {
#ifdef FQ_HAVE_CUDA
    const int device = m.rt->device;
    const bool w4a4kv4 = m.quant && q::bits_name(m.quant->scheme.bits) == "w4a4kv4";
    const fq::ModelConfig &c = m.model->config;
    if (!m.quant)
        m.session_engine = fq::cuda::DecoderEngine::unsupported_reason(c, false).empty() ? "cuda-fp16" : "";
    else
        m.session_engine = w4a4kv4 && fq::cuda::DecoderEngine::unsupported_reason(c, true).empty() ? "cuda-w4a4" : "";
    fq::cuda::WindowEvaluator *gpu = nullptr;
    if (m.quant && m.quantized_file && !m.session_engine.empty()) {
        // A quantized-model file runs as what it is: the real W4A4 engine evaluates and serves sessions.
        m.engine = fq::cuda::DecoderEngine::w4a4(*m.quant, device);
        gpu = m.engine.get();
        m.eval_engine = "cuda-w4a4";
    } else if (m.quant) {
        m.gpu = fq::cuda::make_window_evaluator(*m.quant, device);
        m.eval_engine = "cuda-fakequant";
    } else {
        q::QuantScheme fp;
        fp.bits = q::parse_bits("w16a16");
        fp.method = q::Method::Rtn;
        q::CalibrationResult r = q::calibrate(*m.model, *m.rt->pool, {}, fp, q::CalibOptions(), fq::Progress());
        std::unique_ptr<q::QuantizedModel> view = q::build_quantized_model(*m.model, *m.rt->pool, r, {},
                                                                           fq::Progress());
        m.gpu = fq::cuda::make_window_evaluator(*view, device);
        m.eval_engine = "cuda-fp32";
    }
    if (!gpu) gpu = m.gpu.get();
    m.windows = [gpu](const int32_t *tokens, int64_t n_seq, int64_t seq_len, const fq::WindowLogitsSink &sink) {
        gpu->forward(tokens, n_seq, seq_len, sink);
    };
    m.score = [gpu](const int32_t *tokens, const int32_t *targets, int64_t n_seq, int64_t seq_len, double *nll,
                    int32_t *argmax) { gpu->score(tokens, targets, n_seq, seq_len, nll, argmax); };
    m.windows_per_call = std::max<int64_t>(1, gpu->preferred_batch(std::min(2048, m.model->config.n_ctx_train)));
#else
    FQ_FAIL(FQ_STATUS_DEVICE_UNAVAILABLE, "CUDA device %d was asked for, but this library was built without the CUDA "
            "backend", m.rt->device);
#endif
}

// NULL or empty means "not given".
bool given(const char *s) { return s != nullptr && s[0] != '\0'; }

// The directory the artifact will be written to exists and is writable: checked before hours of calibration.
void check_output_path(const std::string &path) {
    FQ_CHECK(!path.empty(), FQ_STATUS_INVALID_ARGUMENT, "the artifact path is empty");
    FQ_CHECK(path.back() != '/', FQ_STATUS_INVALID_ARGUMENT, "the artifact path '%s' names a directory", path.c_str());
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    FQ_CHECK(access(dir.c_str(), F_OK) == 0, FQ_STATUS_NOT_FOUND, "the artifact's directory '%s' does not exist",
             dir.c_str());
    FQ_CHECK(access(dir.c_str(), W_OK) == 0, FQ_STATUS_IO, "the artifact's directory '%s' is not writable",
             dir.c_str());
}

// Names the caller gave (NULL/empty = take the artifact's) must agree with what the artifact holds.
void check_scheme_names(const char *quant, const char *method, const q::QuantScheme &artifact_scheme,
                        const char *artifact) {
    if (given(quant)) {
        const std::string asked = q::bits_name(q::parse_bits(quant)), held = q::bits_name(artifact_scheme.bits);
        FQ_CHECK(asked == held, FQ_STATUS_INVALID_ARGUMENT, "%s was asked for, but the artifact '%s' was calibrated "
                 "for %s", asked.c_str(), artifact, held.c_str());
    }
    if (given(method)) {
        const q::Method asked = q::parse_method(method);
        FQ_CHECK(asked == artifact_scheme.method, FQ_STATUS_INVALID_ARGUMENT, "method %s was asked for, but the "
                 "artifact '%s' holds method %s", q::method_name(asked), artifact,
                 q::method_name(artifact_scheme.method));
    }
}

q::CalibOptions calib_options(const fq_calibration_options &o) {
    q::CalibOptions c;
    c.nsamples = o.nsamples;
    c.seqlen = o.seqlen;
    c.batch = o.batch;
    c.epochs = o.epochs;
    c.flat_lr = o.lr;
    c.diag_alpha = o.diag_alpha;
    c.add_diag = o.add_diag != 0;
    c.lwc = o.lwc != 0;
    c.lac = o.lac != 0;
    c.direct_inv = o.direct_inv != 0;
    c.seed = o.seed;
    c.percdamp = o.percdamp;
    c.gptq_blocksize = o.gptq_blocksize;
    return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void attach_forwards(fq_model &m) {
    fq_runtime *rt = m.rt;
    if (m.quant) {
        m.forward = q::quantized_forward_fn(*m.quant, *rt->pool);
    } else {
        m.forward = fq::forward_fn(*m.model, *rt->pool);
    }
    m.windows = fq::windows_forward_fn(m.model->config, m.forward);
    m.score = fq::windows_score_fn(m.model->config, m.windows);
    m.windows_per_call = 1;
    m.eval_engine = m.session_engine = "cpu";
    if (rt->device != FQ_DEVICE_CPU) attach_gpu(m);
}

#ifdef FQ_HAVE_CUDA
fq::cuda::DecoderEngine &session_engine(const fq_model &m) {
    if (m.session_engine.empty()) {
        const fq::ModelConfig &c = m.model->config;
        const bool w4a4kv4 = m.quant && q::bits_name(m.quant->scheme.bits) == "w4a4kv4";
        FQ_FAIL(FQ_STATUS_UNSUPPORTED, "sessions on a GPU run w4a4kv4 quantized models (W4A4 engine) and "
                "full-precision ones (FP16 engine); this model has none: %s. Use a CPU runtime",
                m.quant && !w4a4kv4 ? ("it is " + q::bits_name(m.quant->scheme.bits)).c_str()
                                    : fq::cuda::DecoderEngine::unsupported_reason(c, m.quant != nullptr).c_str());
    }
    std::lock_guard<std::mutex> lock(m.engine_mu);
    if (!m.engine) {
        m.engine = m.quant ? fq::cuda::DecoderEngine::w4a4(*m.quant, m.rt->device)
                           : fq::cuda::DecoderEngine::f16(*m.model, m.rt->device);
    }
    return *m.engine;
}
#endif

}  // namespace fq::api

extern "C" {

FQ_API void fq_calibration_options_init(fq_calibration_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
    const q::CalibOptions d;
    o->nsamples = d.nsamples;
    o->seqlen = d.seqlen;
    o->batch = d.batch;
    o->epochs = d.epochs;
    o->lr = d.flat_lr;
    o->diag_alpha = d.diag_alpha;
    o->add_diag = d.add_diag ? 1 : 0;
    o->lwc = d.lwc ? 1 : 0;
    o->lac = d.lac ? 1 : 0;
    o->direct_inv = d.direct_inv ? 1 : 0;
    o->seed = d.seed;
    o->percdamp = d.percdamp;
    o->gptq_blocksize = d.gptq_blocksize;
    o->add_bos = FQ_BOS_DEFAULT;
}

FQ_API void fq_calibration_result_init(fq_calibration_result *r) {
    if (!r) return;
    std::memset(r, 0, sizeof(*r));
    r->struct_size = sizeof(*r);
}

FQ_API int32_t fq_calibrate(const fq_model *model, const char *text, int64_t text_len, const char *out_path,
                            const fq_calibration_options *opts, fq_calibration_result *out, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(out_path);
        FQ_REQUIRE_ARG(out);
        const auto t0 = std::chrono::steady_clock::now();
        FQ_CHECK(!model->quantized(), FQ_STATUS_INVALID_ARGUMENT, "calibration needs the full-precision model, but "
                 "this model is already quantized (%s %s)", q::bits_name(model->quant->scheme.bits).c_str(),
                 q::method_name(model->quant->scheme.method));
        fq_calibration_options o;
        fq_calibration_options_init(&o);
        o = read_options(opts, o, "fq_calibration_options");
        const fq::Model &m = *model->model;
        q::QuantScheme scheme;
        q::CalibOptions copt = calib_options(o);
        q::CalibrationResult base;
        const bool from_base = given(o.base_artifact);
        if (from_base) {
            base = q::load_artifact(o.base_artifact, m);
            check_scheme_names(o.quant, o.method, base.scheme, o.base_artifact);
            scheme = base.scheme;
            // The transforms' own calibration windows; only the weight quantizer's settings are the caller's.
            copt.nsamples = base.options.nsamples;
            copt.seqlen = base.options.seqlen;
            copt.seed = base.options.seed;
        } else {
            scheme.bits = q::parse_bits(given(o.quant) ? o.quant : "w4a4kv4");
            scheme.method = q::parse_method(given(o.method) ? o.method : "flatquant");
        }
        scheme.weights = q::parse_weight_quantizer(given(o.weights) ? o.weights : "rtn");
        FQ_CHECK(!from_base || scheme.weights == q::WeightQuantizer::Gptq, FQ_STATUS_INVALID_ARGUMENT,
                 "base_artifact keeps the transforms and re-quantizes the weights: it needs weights \"gptq\"");
        q::validate(scheme);
        q::validate(copt);
        check_output_path(out_path);
        const std::string_view tv = text_view(text, text_len);
        const bool needs_data = scheme.method == q::Method::FlatQuant || scheme.weights == q::WeightQuantizer::Gptq;
        fq::Progress progress(o.progress, o.progress_user_data, o.cancel);

        std::vector<int32_t> windows;
        fq_calibration_result res;
        fq_calibration_result_init(&res);
        if (needs_data) {
            FQ_CHECK(!tv.empty(), FQ_STATUS_INVALID_ARGUMENT, "the calibration text is empty (method %s with %s "
                     "weights needs %d windows of %d tokens)", q::method_name(scheme.method),
                     q::weight_quantizer_name(scheme.weights), copt.nsamples, copt.seqlen);
            FQ_CHECK(copt.seqlen <= m.config.n_ctx_train, FQ_STATUS_INVALID_ARGUMENT,
                     "calibration seqlen %d exceeds the model's context length %d", copt.seqlen, m.config.n_ctx_train);
            progress.step("tokenize", 0, 1);
            const std::vector<int32_t> stream = m.tokenizer->encode(tv, resolve_bos(m, o.add_bos));
            progress.step("tokenize", 1, 1);
            FQ_CHECK((int64_t)stream.size() > copt.seqlen, FQ_STATUS_INVALID_ARGUMENT,
                     "the calibration text has %zu tokens: windows of seqlen %d need at least %d", stream.size(),
                     copt.seqlen, copt.seqlen + 1);
            windows = q::sample_windows(stream, copt.nsamples, copt.seqlen, copt.seed);
            res.n_tokens = static_cast<int64_t>(stream.size());
            res.n_windows = copt.nsamples;
        }

        const int device = model->rt->device;
        const bool trains = scheme.method == q::Method::FlatQuant && !from_base;
        const bool on_gpu = device != FQ_DEVICE_CPU && (trains || scheme.weights == q::WeightQuantizer::Gptq);
        q::CalibLogFn log;
        if (o.log) {
            log = [&o](const q::CalibEvent &e) {
                fq_calibration_event ev;
                std::memset(&ev, 0, sizeof(ev));
                ev.struct_size = sizeof(ev);
                ev.layer = e.layer;
                ev.n_layer = e.n_layer;
                ev.epoch = e.epoch;
                ev.n_epochs = e.n_epochs;
                ev.mse = e.mse;
                ev.lr = e.lr;
                ev.seconds = e.seconds;
                o.log(o.log_user_data, &ev);
            };
        }
        q::CalibrationResult r;
        if (from_base) {
            const std::string sha = fq::sha256_hex(windows.data(), windows.size() * sizeof(int32_t));
            FQ_CHECK(sha == base.data_sha256, FQ_STATUS_INVALID_ARGUMENT,
                     "the calibration text is not the one '%s' was calibrated on (its %d windows of %d tokens have "
                     "data sha256 %s, the artifact records %s)", o.base_artifact, copt.nsamples, copt.seqlen,
                     sha.c_str(), base.data_sha256.empty() ? "none" : base.data_sha256.c_str());
            r = std::move(base);
            r.scheme.weights = scheme.weights;
            r.options.percdamp = copt.percdamp;
            r.options.gptq_blocksize = copt.gptq_blocksize;
            r.gptq.clear();
        } else {
            r = q::calibrate(m, *model->rt->pool, windows, scheme, copt, progress, log, trains ? device : -1);
        }
        if (scheme.weights == q::WeightQuantizer::Gptq) {
            // GPTQ's codes depend on the data: computed now and stored in r (the model view itself is not kept).
            q::build_quantized_model(m, *model->rt->pool, r, windows, progress, model->rt->device);
        }
        q::save_artifact(out_path, r, progress);

        res.on_gpu = on_gpu ? 1 : 0;
        res.n_layer = m.config.n_layer;
        double last = 0;
        for (const auto &per_layer : r.epoch_mse)
            if (!per_layer.empty()) last += per_layer.back();
        res.final_mse = r.epoch_mse.empty() ? 0.0 : last / static_cast<double>(r.epoch_mse.size());
        res.seconds = seconds_since(t0);
        write_result(out, res, "fq_calibration_result");
    });
}

FQ_API void fq_quantize_options_init(fq_quantize_options *o) {
    if (!o) return;
    std::memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
}

FQ_API int32_t fq_model_quantize(const fq_model *base, const fq_quantize_options *opts, fq_model **out,
                                 fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(out);
        *out = nullptr;
        FQ_REQUIRE_ARG(base);
        FQ_CHECK(!base->quantized(), FQ_STATUS_INVALID_ARGUMENT, "the model is already quantized (%s %s): quantize "
                 "its full-precision model instead", q::bits_name(base->quant->scheme.bits).c_str(),
                 q::method_name(base->quant->scheme.method));
        fq_quantize_options o;
        fq_quantize_options_init(&o);
        o = read_options(opts, o, "fq_quantize_options");
        const fq::Model &m = *base->model;
        fq::Progress progress(o.progress, o.progress_user_data, o.cancel);

        q::CalibrationResult r;
        if (given(o.artifact)) {
            progress.step("load", 0, 1);
            r = q::load_artifact(o.artifact, m);
            progress.step("load", 1, 1);
            check_scheme_names(o.quant, o.method, r.scheme, o.artifact);
        } else {
            q::QuantScheme scheme;
            scheme.bits = q::parse_bits(given(o.quant) ? o.quant : "w4a4kv4");
            scheme.method = q::parse_method(given(o.method) ? o.method : "rtn");
            FQ_CHECK(scheme.method != q::Method::FlatQuant, FQ_STATUS_INVALID_ARGUMENT,
                     "method flatquant needs a calibration artifact (make one with fq_calibrate / flatquant "
                     "calibrate); rtn and rotate need none");
            q::CalibOptions copt;
            copt.seed = o.seed;
            r = q::calibrate(m, *base->rt->pool, {}, scheme, copt, progress);
        }
        auto qm = std::make_unique<fq_model>();
        qm->rt = base->rt;
        qm->model = base->model;
        qm->quant = q::build_quantized_model(m, *base->rt->pool, r, {}, progress);
        attach_forwards(*qm);
        *out = qm.release();
    });
}

}  // extern "C"
