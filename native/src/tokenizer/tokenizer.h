// Tokenizers built from a GGUF vocabulary:
//  - "llama": SentencePiece-style (score-ordered bigram merges, "▁" for spaces, optional space prefix, byte
//    fallback tokens <0xNN>), as llama.cpp's SPM tokenizer and Hugging Face's LlamaTokenizer(Fast) do;
//  - "gpt2": byte-level BPE with the pre-tokenizer regex the model declares in tokenizer.ggml.pre.
// Control and user-defined tokens that occur literally in the text are matched first, as Hugging Face does.
// Token ids must equal Hugging Face's for the same model and text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fq {
namespace gguf { class File; }

class Tokenizer {
  public:
    // Throws fq::Error: MODEL_FORMAT (missing/inconsistent vocabulary arrays), UNSUPPORTED (unknown
    // tokenizer.ggml.model or pre-tokenizer).
    static std::unique_ptr<Tokenizer> from_gguf(const gguf::File &file);
    virtual ~Tokenizer() = default;

    // Token ids of text (UTF-8; invalid bytes are tokenized through byte tokens). add_bos puts bos_id() first.
    virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
    // Text of a sequence of ids; control tokens (BOS, EOS, ...) produce nothing.
    virtual std::string decode(const int32_t *ids, size_t n) const = 0;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos_id() const { return bos_id_; }   // -1 when none
    int32_t eos_id() const { return eos_id_; }   // -1 when none
    bool add_bos_default() const { return add_bos_; }
    const std::string &model_name() const { return model_; }  // "llama" or "gpt2"
    const std::string &pre_name() const { return pre_; }      // pre-tokenizer name ("default" when absent)
    const std::string &token_text(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }

  protected:
    std::vector<std::string> tokens_;
    int32_t bos_id_ = -1;
    int32_t eos_id_ = -1;
    bool add_bos_ = false;
    std::string model_;
    std::string pre_ = "default";
};

}  // namespace fq
