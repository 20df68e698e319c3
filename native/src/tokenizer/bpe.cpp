// Byte-level BPE vocabulary ("gpt2"): the text is cut by the pre-tokenizer regex the model declares, every piece
// is spelled in GPT-2's byte alphabet (one character per byte) and merged by rank.
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace fq::tok {
namespace {

struct PreInfo {
    const char *name;
    PreTokenizer kind;
    bool add_bos;  // llama.cpp's default when the file has no tokenizer.ggml.add_bos_token
};

// Names transformers maps to these regexes when it converts a GGUF vocabulary (it gives any other name the GPT-2
// regex; only the names below are accepted here). "smollm" follows SmolLM2's own tokenizer.json (digits one by
// one). add_bos follows llama.cpp's per-name defaults.
constexpr PreInfo kPreTokenizers[] = {
    {"default", PreTokenizer::Gpt2, false},       {"gpt2", PreTokenizer::Gpt2, false},
    {"gpt-2", PreTokenizer::Gpt2, false},         {"smollm", PreTokenizer::Gpt2Digits, false},
    {"llama3", PreTokenizer::Llama3, true},       {"llama-v3", PreTokenizer::Llama3, true},
    {"llama-bpe", PreTokenizer::Llama3, true},    {"falcon3", PreTokenizer::Llama3, true},
    {"falcon-h1", PreTokenizer::Llama3, true},    {"pixtral", PreTokenizer::Llama3, true},
    {"midm-2.0", PreTokenizer::Llama3, true},     {"lfm2", PreTokenizer::Llama3, true},
    {"jina-v5-nano", PreTokenizer::Llama3, true}, {"dbrx", PreTokenizer::Llama3, false},
    {"smaug-bpe", PreTokenizer::Llama3, false},   {"qwen2", PreTokenizer::Qwen2, false},
    {"deepseek-r1-qwen", PreTokenizer::Qwen2, false}, {"megrez", PreTokenizer::Qwen2, false},
};

// True when every character of text is one of GPT-2's 256 byte characters.
bool in_byte_alphabet(const std::string &text) {
    for (size_t i = 0; i < text.size();) {
        size_t len;
        const uint32_t cp = unicode::decode_utf8(text.data() + i, text.size() - i, &len);
        if (cp == unicode::kInvalid || unicode::char_to_byte(cp) < 0) return false;
        i += len;
    }
    return true;
}

std::string to_byte_alphabet(std::string_view bytes) {
    std::string out;
    for (char c : bytes) unicode::append_utf8(out, unicode::byte_to_char(static_cast<uint8_t>(c)));
    return out;
}

class BpeTokenizer final : public Tokenizer {
  public:
    explicit BpeTokenizer(const VocabData &v);
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
    std::string decode(const int32_t *ids, size_t n) const override;
    std::string piece(int32_t id) const override;
    using Tokenizer::decode;

  private:
    PreTokenizer kind_ = PreTokenizer::Gpt2;
    VocabMap vocab_;          // spelled in the byte alphabet
    int32_t byte_ids_[256];  // token of each single byte, -1 when missing
    MergeTable merges_;
    AddedTokenMatcher added_;
    std::vector<uint8_t> silent_;  // [n_vocab] 1 for special tokens, which decode to nothing
};

BpeTokenizer::BpeTokenizer(const VocabData &v) {
    const std::string pre = v.pre.empty() ? "default" : v.pre;
    const PreInfo *info = nullptr;
    for (const PreInfo &p : kPreTokenizers) {
        if (pre == p.name) info = &p;
    }
    FQ_CHECK(info != nullptr, FQ_STATUS_UNSUPPORTED, "BPE pre-tokenizer '%s' is not supported", pre.c_str());
    kind_ = info->kind;
    pre_ = pre;
    model_ = "gpt2";
    add_bos_ = v.add_bos >= 0 ? v.add_bos != 0 : info->add_bos;

    tokens_ = v.tokens;
    const size_t n = tokens_.size();
    types_ = v.token_types.empty() ? std::vector<int32_t>(n, kTokenNormal) : v.token_types;
    auto valid = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n ? id : -1; };
    bos_id_ = valid(v.bos_id);
    eos_id_ = valid(v.eos_id);
    unk_id_ = valid(v.unk_id);
    const int32_t pad_id = valid(v.pad_id);

    // Tokens stored with characters outside the byte alphabet (e.g. a literal space) are respelled, as Hugging
    // Face's conversion does, so that they can be reached.
    std::vector<std::pair<std::string, double>> ordered;  // first-occurrence order, last id (for generate_merges)
    vocab_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const std::string &t = tokens_[i];
        std::string spelled = in_byte_alphabet(t) ? t : to_byte_alphabet(t);
        auto [it, fresh] = vocab_.emplace(spelled, static_cast<int32_t>(i));
        if (!fresh) it->second = static_cast<int32_t>(i);
        if (v.merges.empty() && fresh) ordered.emplace_back(std::move(spelled), 0.0);
    }
    for (int b = 0; b < 256; ++b) {
        std::string ch;
        unicode::append_utf8(ch, unicode::byte_to_char(static_cast<uint8_t>(b)));
        auto it = vocab_.find(ch);
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }
    if (!v.merges.empty()) {
        load_merges(v.merges, vocab_, &merges_);
    } else {
        // Without merges Hugging Face ranks the recovered merges by the id of the merged token, lowest first.
        for (auto &entry : ordered) entry.second = vocab_.at(entry.first);
        generate_merges(ordered, vocab_, /*descending=*/false, &merges_);
    }

    silent_.assign(n, 0);
    auto add_special = [&](int32_t id) {
        if (id < 0) return;
        silent_[static_cast<size_t>(id)] = 1;
        const std::string &text = tokens_[static_cast<size_t>(id)];
        auto it = vocab_.find(text);  // the id Hugging Face's added vocabulary resolves the text to
        added_.add(text, it != vocab_.end() ? it->second : id);
    };
    for (size_t i = 0; i < n; ++i) {
        const int32_t t = types_[i];
        // A control token outside the byte alphabet is a mislabelled ordinary token; Hugging Face skips it.
        if (t == kTokenControl && in_byte_alphabet(tokens_[i])) add_special(static_cast<int32_t>(i));
        if (t == kTokenUserDefined) {
            auto it = vocab_.find(tokens_[i]);  // Hugging Face adds it only when its own spelling is a token
            if (it != vocab_.end()) added_.add(tokens_[i], it->second);
        }
    }
    for (int32_t id : {bos_id_, eos_id_, unk_id_, pad_id}) add_special(id);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos) const {
    std::vector<int32_t> out;
    if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
    std::vector<std::pair<size_t, size_t>> pieces;
    std::vector<int32_t> symbols;
    MergeScratch scratch;
    added_.split(
        text,
        [&](std::string_view segment, size_t) {
            pieces.clear();
            pretokenize(kind_, segment, &pieces);
            for (const auto &[first, last] : pieces) {
                symbols.clear();
                for (size_t k = first; k < last; ++k) {
                    // A byte without a token is dropped, as by Hugging Face's BPE without an unknown token.
                    const int32_t id = byte_ids_[static_cast<unsigned char>(segment[k])];
                    if (id >= 0) symbols.push_back(id);
                }
                apply_merges(merges_, &symbols, &scratch);
                out.insert(out.end(), symbols.begin(), symbols.end());
            }
        },
        [&](int32_t id) { out.push_back(id); });
    return out;
}

std::string BpeTokenizer::piece(int32_t id) const {
    FQ_CHECK(id >= 0 && id < n_vocab(), FQ_STATUS_INVALID_ARGUMENT, "token id %d outside [0, %d)", id, n_vocab());
    if (silent_[static_cast<size_t>(id)]) return {};
    const std::string &t = tokens_[static_cast<size_t>(id)];
    std::string out;
    out.reserve(t.size());
    for (size_t i = 0; i < t.size();) {
        size_t len;
        const uint32_t cp = unicode::decode_utf8(t.data() + i, t.size() - i, &len);
        const int b = cp == unicode::kInvalid ? -1 : unicode::char_to_byte(cp);
        if (b < 0) return t;  // not spelled in the byte alphabet: its text as stored (Hugging Face's decoder too)
        out.push_back(static_cast<char>(b));
        i += len;
    }
    return out;
}

std::string BpeTokenizer::decode(const int32_t *ids, size_t n) const {
    std::string out;
    for (size_t k = 0; k < n; ++k) out += piece(ids[k]);
    return out;
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe(const VocabData &vocab) { return std::make_unique<BpeTokenizer>(vocab); }

}  // namespace fq::tok
