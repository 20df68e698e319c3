// The quantized-model file in the C ABI: fq_model_save_quantized, and the part of fq_model_load that tells a
// quantized-model file from a plain GGUF model and builds the handle for either.
#include <string>

#include "api/api_internal.h"
#include "io/gguf.h"
#include "model/gguf_loader.h"
#include "quant/quantized_file.h"

using namespace fq::api;
namespace q = fq::quant;

namespace fq::api {

void load_model_file(fq_model &m, const std::string &path, const fq::LoadOptions &opts) {
    // The header is parsed once: the metadata says which kind of file it is.
    std::unique_ptr<fq::gguf::File> file = fq::gguf::File::open(path);
    if (q::is_quantized_model_file(*file)) {
        q::LoadedQuantizedModel loaded = q::load_quantized_model_file(*file, opts);
        m.model = std::move(loaded.base);
        m.quant = std::move(loaded.qm);
        m.quantized_file = true;
    } else {
        m.model = fq::load_gguf_model(*file, opts);
    }
}

}  // namespace fq::api

extern "C" {

FQ_API int32_t fq_model_save_quantized(const fq_model *model, const char *path, fq_progress_fn progress,
                                       void *progress_user_data, fq_cancel_token *cancel, fq_error *err) {
    return guarded(err, [&] {
        FQ_REQUIRE_ARG(model);
        FQ_REQUIRE_ARG(path);
        FQ_CHECK(path[0] != '\0', FQ_STATUS_INVALID_ARGUMENT, "path is empty");
        FQ_CHECK(model->quantized(), FQ_STATUS_INVALID_ARGUMENT, "the model is full precision: only a quantized model "
                 "(fq_model_quantize, or one loaded from a quantized-model file) can be saved as one");
        const fq::Progress p(progress, progress_user_data, cancel);
        q::save_quantized_model_file(*model->quant, path, p);
    });
}

}  // extern "C"
