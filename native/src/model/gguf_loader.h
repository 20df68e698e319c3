// The GGUF model loader in parts, for file formats that share the LLaMA-family metadata and non-layer tensors of a
// plain GGUF model but store their decoder layers differently (the quantized-model file, quant/quantized_file.h).
#pragma once

#include <memory>

#include "model/model.h"

namespace fq {
namespace gguf {
class File;
}

// Everything of a model except its decoder layers: configuration (qkv_bias left false: only layers tell), tokenizer,
// token embedding, final norm, output projection (empty when tied) and RoPE factors, every tensor checked against the
// shape the configuration implies and dequantized to FP32; weights.layers is sized n_layer with every vector empty.
// source describes the whole file (every tensor counted). Throws as load_gguf_model.
std::unique_ptr<Model> load_gguf_model_without_layers(const gguf::File &f, const LoadOptions &opts);

// load_gguf_model on a file already opened (the File need not outlive the Model).
std::unique_ptr<Model> load_gguf_model(const gguf::File &f, const LoadOptions &opts);

}  // namespace fq
