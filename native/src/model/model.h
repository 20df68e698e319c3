// The model: configuration, FP32 weights and tokenizer of a LLaMA-family decoder. Where the weights came from (a GGUF
// file today, safetensors later) does not matter past the loader: everything downstream reads Model.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fq {

// How RoPE pairs the dimensions of a head: GGUF "llama" weights are permuted so that consecutive pairs (2i, 2i+1)
// rotate together (ggml's normal mode); Qwen2 GGUFs keep Hugging Face's layout, which pairs i with i + rope_dim/2.
enum class RopeMode { Normal, Neox };

struct ModelConfig {
    std::string architecture;  // "llama", "qwen2"
    std::string name;
    int32_t n_vocab = 0;
    int32_t n_ctx_train = 0;
    int32_t n_embd = 0;
    int32_t n_layer = 0;
    int32_t n_head = 0;
    int32_t n_head_kv = 0;
    int32_t head_dim = 0;
    int32_t n_ff = 0;
    int32_t rope_dim = 0;
    float rope_freq_base = 10000.0f;
    float rms_eps = 1e-5f;
    RopeMode rope_mode = RopeMode::Normal;
    bool tied_embeddings = false;
    bool qkv_bias = false;

    int32_t q_dim() const { return n_head * head_dim; }
    int32_t kv_dim() const { return n_head_kv * head_dim; }
};

// Row-major FP32 weights; W[out][in] so that a linear layer is y = x W^T.
struct LayerWeights {
    std::vector<float> attn_norm;  // [n_embd]
    std::vector<float> wq;         // [q_dim][n_embd]
    std::vector<float> wk;         // [kv_dim][n_embd]
    std::vector<float> wv;         // [kv_dim][n_embd]
    std::vector<float> bq, bk, bv; // [q_dim], [kv_dim], [kv_dim]; empty without biases
    std::vector<float> wo;         // [n_embd][q_dim]
    std::vector<float> ffn_norm;   // [n_embd]
    std::vector<float> w_gate;     // [n_ff][n_embd]
    std::vector<float> w_up;       // [n_ff][n_embd]
    std::vector<float> w_down;     // [n_embd][n_ff]
};

struct ModelWeights {
    std::vector<float> tok_embd;           // [n_vocab][n_embd]
    std::vector<LayerWeights> layers;      // [n_layer]
    std::vector<float> output_norm;        // [n_embd]
    std::vector<float> output;             // [n_vocab][n_embd]; empty when tied to tok_embd
    std::vector<float> rope_freq_factors;  // [rope_dim/2] divisors of the RoPE frequencies (LLaMA-3.1); may be empty

    const float *output_matrix() const { return output.empty() ? tok_embd.data() : output.data(); }
};

// What the file said about itself, for fq_model_info.
struct ModelSource {
    std::string path;
    int64_t file_bytes = 0;
    int64_t n_params = 0;
    int32_t gguf_version = 0;
    std::string weight_types;  // e.g. "Q4_1,Q8_0,F32"
};

class Model {
  public:
    ModelConfig config;
    ModelWeights weights;
    ModelSource source;
    std::unique_ptr<Tokenizer> tokenizer;

    // SHA-256 of the model file, computed on first use (thread-safe).
    const std::string &fingerprint() const;

  private:
    mutable std::once_flag fingerprint_once_;
    mutable std::string fingerprint_;
};

struct LoadOptions {
    bool check_finite = true;
};

// Loads a GGUF model. Throws fq::Error (NOT_FOUND, IO, MODEL_FORMAT, UNSUPPORTED, NUMERIC, OUT_OF_MEMORY).
std::unique_ptr<Model> load_gguf_model(const std::string &path, const LoadOptions &opts);

}  // namespace fq
