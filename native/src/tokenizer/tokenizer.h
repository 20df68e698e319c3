// Tokenizers built from a GGUF vocabulary:
//  - "llama": SentencePiece-style (score-ordered bigram merges, "▁" for spaces, optional space prefix, byte
//    fallback tokens <0xNN>), as llama.cpp's SPM tokenizer and Hugging Face's LlamaTokenizer(Fast) do;
//  - "gpt2": byte-level BPE with the pre-tokenizer regex the model declares in tokenizer.ggml.pre.
// Control and user-defined tokens that occur literally in the text are matched first, as Hugging Face does.
// Token ids must equal Hugging Face's for the same model and text.
//
// The reference is the tokenizer that Hugging Face transformers builds from the same GGUF file
// (AutoTokenizer.from_pretrained(dir, gguf_file=...)); its choices are followed where it differs from llama.cpp:
//  - "llama": merges are derived from the vocabulary and scores as transformers' generate_merges does (or read
//    from tokenizer.ggml.merges when present) and applied as BPE, lowest rank first, leftmost on ties; "▁" is
//    prepended only to the text before the first special token and only when that text does not already start
//    with "▁" (Metaspace, prepend_scheme "first"); decode() drops one leading space.
//  - "gpt2": merges are applied to every pre-token (no whole-word vocabulary shortcut, unlike llama.cpp's
//    llama3 pre-tokenizer); tokens stored with characters outside the byte alphabet are respelled through it.
//  - Special tokens: control tokens (for "gpt2" only those spelled in the byte alphabet), user-defined tokens and
//    the BOS/EOS/UNK/PAD texts are matched literally, leftmost-longest, before anything else.
// One exception on purpose: for pre "smollm" the digits are split one by one as in SmolLM2's published
// tokenizer.json and llama.cpp (transformers' GGUF loader applies the plain GPT-2 regex there; the two differ on
// whitespace before digits and on non-ASCII digits). Unknown pre-tokenizer names are refused, not guessed.
// Other deliberate differences from Hugging Face: add_space_prefix = false is honoured (transformers ignores the
// flag); invalid UTF-8 is tokenized through byte tokens (Hugging Face only accepts valid text); decode() returns
// the exact bytes (Hugging Face replaces invalid UTF-8 in its output with U+FFFD).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fq {
namespace gguf { class File; }

// Values of tokenizer.ggml.token_type.
enum TokenType : int32_t {
    kTokenNormal = 1,
    kTokenUnknown = 2,
    kTokenControl = 3,
    kTokenUserDefined = 4,
    kTokenUnused = 5,
    kTokenByte = 6,
};

// Everything a tokenizer is built from, as stored under tokenizer.ggml.* (ids: -1 = none; flags: -1 = absent).
struct VocabData {
    std::string model;                  // tokenizer.ggml.model: "llama" or "gpt2"
    std::string pre;                    // tokenizer.ggml.pre; empty = absent ("default")
    std::string architecture;           // general.architecture (some SPM variants are refused)
    std::vector<std::string> tokens;    // [n_vocab]
    std::vector<float> scores;          // [n_vocab] for "llama"; may be empty for "gpt2"
    std::vector<int32_t> token_types;   // [n_vocab], or empty = all normal
    std::vector<std::string> merges;    // "a b" pairs, best first; empty = derive from the vocabulary
    int32_t bos_id = -1;
    int32_t eos_id = -1;
    int32_t unk_id = -1;
    int32_t pad_id = -1;
    int add_bos = -1;                   // tokenizer.ggml.add_bos_token
    int add_space_prefix = -1;          // tokenizer.ggml.add_space_prefix
};

class Tokenizer {
  public:
    // Throws fq::Error: MODEL_FORMAT (missing/inconsistent vocabulary arrays), UNSUPPORTED (unknown
    // tokenizer.ggml.model or pre-tokenizer).
    static std::unique_ptr<Tokenizer> from_gguf(const gguf::File &file);
    // Same, from arrays already read (tests, other containers). Errors as from_gguf.
    static std::unique_ptr<Tokenizer> from_vocab(const VocabData &vocab);
    virtual ~Tokenizer() = default;

    // Token ids of text (UTF-8; invalid bytes are tokenized through byte tokens). add_bos puts bos_id() first.
    // A byte that has no token at all (a byte-level vocabulary may lack some, e.g. 0xFF) is dropped, as Hugging
    // Face drops characters without a token. At most text.size() + 2 ids (for SentencePiece vocabularies: when
    // "▁" is a token, as it always is in practice). Thread-safe (const, no shared mutable state).
    virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) const = 0;
    // Text of a sequence of ids; special tokens (control tokens and the BOS/EOS/UNK/PAD ids) produce nothing, as
    // Hugging Face's decode(skip_special_tokens=True). Throws INVALID_ARGUMENT for ids outside [0, n_vocab).
    virtual std::string decode(const int32_t *ids, size_t n) const = 0;
    std::string decode(const std::vector<int32_t> &ids) const { return decode(ids.data(), ids.size()); }
    // Bytes that one token contributes to running text (no removal of the prefix space; empty for special
    // tokens), for streaming generated tokens. Throws INVALID_ARGUMENT for ids out of range.
    virtual std::string piece(int32_t id) const = 0;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos_id() const { return bos_id_; }   // -1 when none
    int32_t eos_id() const { return eos_id_; }   // -1 when none
    int32_t unk_id() const { return unk_id_; }   // -1 when none
    bool add_bos_default() const { return add_bos_; }
    const std::string &model_name() const { return model_; }  // "llama" or "gpt2"
    const std::string &pre_name() const { return pre_; }      // pre-tokenizer name ("default" when absent)
    const std::string &token_text(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
    int32_t token_type(int32_t id) const { return types_[static_cast<size_t>(id)]; }  // TokenType value

  protected:
    std::vector<std::string> tokens_;
    std::vector<int32_t> types_;
    int32_t bos_id_ = -1;
    int32_t eos_id_ = -1;
    int32_t unk_id_ = -1;
    bool add_bos_ = false;
    std::string model_;
    std::string pre_ = "default";
};

}  // namespace fq
