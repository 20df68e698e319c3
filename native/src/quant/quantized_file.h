// The quantized-model file (docs/quantized-model-format.md): a GGUF v3 file that holds a fake-quantized model
// without its full-precision layers. The base model's metadata and non-layer tensors (embeddings, final norm, output
// projection, RoPE factors) are kept as they were; every decoder layer is stored as integer weight codes with per-row
// scales, the norm gains with the smoothing folded in, and the online transforms and clip logits the forward applies.
//
// Round-trip contract: loading a saved QuantizedModel gives one on which quant::quantized_forward computes bit for bit
// what it computes on the saved one. Weights are stored as codes c = w / scale (exact: a quantized weight is
// fl(scale * c) with |c| <= 128) and rebuilt as scale * c in FP32, the product weight_quant_forward and
// apply_gptq_codes form; everything else is FP32 copied as is.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/progress.h"
#include "model/model.h"
#include "quant/fakequant_forward.h"

namespace fq::gguf {
class File;
}

namespace fq::quant {

// The version this build writes and the newest it reads.
constexpr uint32_t kQuantizedFileVersion = 1;

// Names and numbers of the format, shared by the writer and the reader.
namespace qfile {
constexpr uint32_t kTypeF32 = 0;  // ggml tensor types
constexpr uint32_t kTypeI8 = 24;
constexpr const char *kKeyPrefix = "flatquant.";  // every key the format adds; a re-save replaces them all
constexpr const char *kKeyVersion = "flatquant.format_version";
constexpr const char *kKeyQuant = "flatquant.quant";
constexpr const char *kKeyMethod = "flatquant.method";
constexpr const char *kKeyWeightQuantizer = "flatquant.weight_quantizer";
constexpr const char *kKeyBaseFingerprint = "flatquant.base_fingerprint";
constexpr const char *kKeyLac = "flatquant.lac";
// The transforms P_a, P_ug, P_d: "blk.N.<name>.left" / ".right".
constexpr const char *kKronNames[3] = {"flat.pa", "flat.pug", "flat.pd"};
// blk.N.flat.lac: {max, min} logits of the 7 linears in LinearId order, then of the K and V quantizers.
constexpr int kLacValues = (kNumLinears + 2) * 2;

// The GGUF name of linear `lin` (LinearId order): attn_q, attn_k, attn_v, attn_output, ffn_up, ffn_gate, ffn_down.
const char *linear_name(int lin);
// The base model's tensors the file keeps: token_embd.weight, output_norm.weight, output.weight, rope_freqs.weight.
bool is_base_tensor(const std::string &name);
}  // namespace qfile

// Writes qm (weights quantized, w <= 8 bits) as a quantized-model file. The base model's metadata and non-layer
// tensors are copied from its file (qm.base->source.path), which must still be the file it was loaded from. The write
// is atomic: path.tmp.<pid>.<n> in the same directory, fsync, rename; on any failure or cancellation the temporary file
// is removed and path is left as it was. progress gets stage "save" once per tensor.
// Throws INVALID_ARGUMENT (weights not quantized, an empty path), UNSUPPORTED (weights of 16 bits, widths the format
// cannot name, odd rows at 4 bits or less), IO (cannot create, write or rename; the base file changed), MODEL_FORMAT
// (the base file no longer parses), CANCELLED, INTERNAL (weights that are not scale * integer code).
void save_quantized_model_file(const QuantizedModel &qm, const std::string &path, const Progress &progress);

// True when the GGUF file carries flatquant.format_version (of any value): it is a quantized-model file.
bool is_quantized_model_file(const gguf::File &f);

struct LoadedQuantizedModel {
    std::shared_ptr<const Model> base;  // config, tokenizer and non-layer tensors; weights.layers sized but empty
    std::unique_ptr<QuantizedModel> qm; // qm->base points at *base; weights_quantized
};

// Reads a quantized-model file. Every tensor is checked: codes in range for the width, scales finite and positive,
// norms, transforms and clip logits finite, shapes consistent with the configuration, no tensor missing or unexpected.
// Throws NOT_FOUND, IO, MODEL_FORMAT (naming the tensor or key), UNSUPPORTED (format_version above
// kQuantizedFileVersion; architecture, tokenizer or tensor types as for GGUF models), NUMERIC (non-finite base
// tensors when opts.check_finite), OUT_OF_MEMORY. base->source describes the file: n_params counts every stored value
// (a packed byte as two codes), fingerprint() hashes the file.
LoadedQuantizedModel load_quantized_model_file(const gguf::File &f, const LoadOptions &opts);
LoadedQuantizedModel load_quantized_model_file(const std::string &path, const LoadOptions &opts);

}  // namespace fq::quant
