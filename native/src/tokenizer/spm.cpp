// SentencePiece-style vocabulary ("llama"), tokenized as Hugging Face's GGUF conversion does: BPE over the
// characters of the text with merges recovered from the scores, "▁" (U+2581) for every space, one "▁" in front of
// the text, and <0xNN> byte tokens for characters the vocabulary lacks.
#include <cstdio>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace fq::tok {
namespace {

constexpr uint32_t kSpaceMark = 0x2581;   // "▁"
constexpr char kSpaceMarkUtf8[] = "\xE2\x96\x81";

// Byte value of a "<0xNN>" token (any case of hex digits, as Hugging Face's ByteFallback decoder), or -1.
int parse_byte_token(const std::string &t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    int v = 0;
    for (size_t k = 3; k < 5; ++k) {
        const char c = t[k];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

class SpmTokenizer final : public Tokenizer {
  public:
    explicit SpmTokenizer(const VocabData &v);
    std::vector<int32_t> encode(std::string_view text, bool add_bos) const override;
    std::string decode(const int32_t *ids, size_t n) const override;
    std::string piece(int32_t id) const override;
    using Tokenizer::decode;

  private:
    void encode_segment(std::string_view text, bool at_start, std::vector<int32_t> *symbols,
                        MergeScratch *scratch, std::vector<int32_t> *out) const;
    void push_char(uint32_t cp, const char *bytes, size_t n_bytes, std::vector<int32_t> *symbols) const;

    VocabMap vocab_;
    std::unordered_map<uint32_t, int32_t> char_ids_;  // tokens of exactly one code point
    int32_t byte_ids_[256];                           // token "<0xNN>" of each byte value, -1 when missing
    MergeTable merges_;
    AddedTokenMatcher added_;
    std::vector<uint8_t> silent_;  // [n_vocab] 1 for special tokens, which decode to nothing
    bool add_space_prefix_ = true;
};

SpmTokenizer::SpmTokenizer(const VocabData &v) {
    FQ_CHECK(v.scores.size() == v.tokens.size() || !v.merges.empty(), FQ_STATUS_MODEL_FORMAT,
             "SentencePiece vocabulary without tokenizer.ggml.scores or tokenizer.ggml.merges");
    tokens_ = v.tokens;
    const size_t n = tokens_.size();
    types_ = v.token_types.empty() ? std::vector<int32_t>(n, kTokenNormal) : v.token_types;
    model_ = "llama";
    if (!v.pre.empty()) pre_ = v.pre;
    auto valid = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n ? id : -1; };
    bos_id_ = valid(v.bos_id);
    eos_id_ = valid(v.eos_id);
    unk_id_ = valid(v.unk_id);
    const int32_t pad_id = valid(v.pad_id);
    // llama.cpp and Hugging Face both add BOS to SentencePiece vocabularies that do not say otherwise.
    add_bos_ = v.add_bos != 0;
    add_space_prefix_ = v.add_space_prefix != 0;

    vocab_.reserve(n);
    for (size_t i = 0; i < n; ++i) vocab_[tokens_[i]] = static_cast<int32_t>(i);
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto it = vocab_.find(name);
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }
    for (const auto &[text, id] : vocab_) {
        size_t len;
        if (text.empty()) continue;
        const uint32_t cp = unicode::decode_utf8(text.data(), text.size(), &len);
        if (cp != unicode::kInvalid && len == text.size()) char_ids_[cp] = id;
    }

    if (!v.merges.empty()) {
        load_merges(v.merges, vocab_, &merges_);
    } else {
        // dict(zip(tokens, scores)): first-occurrence order, last score.
        std::vector<std::pair<std::string, double>> scored;
        std::unordered_map<std::string, size_t> slot;
        for (size_t i = 0; i < n; ++i) {
            auto [it, fresh] = slot.emplace(tokens_[i], scored.size());
            if (fresh) scored.emplace_back(tokens_[i], v.scores[i]);
            else scored[it->second].second = v.scores[i];
        }
        generate_merges(scored, vocab_, /*descending=*/true, &merges_);
    }

    silent_.assign(n, 0);
    auto add_special = [&](int32_t id) {
        if (id < 0) return;
        silent_[static_cast<size_t>(id)] = 1;
        added_.add(tokens_[static_cast<size_t>(id)], vocab_.at(tokens_[static_cast<size_t>(id)]));
    };
    for (size_t i = 0; i < n; ++i) {
        const int32_t t = types_[i];
        if (t == kTokenControl) add_special(static_cast<int32_t>(i));
        if (t == kTokenUserDefined) added_.add(tokens_[i], vocab_.at(tokens_[i]));
    }
    for (int32_t id : {bos_id_, eos_id_, unk_id_, pad_id}) add_special(id);
}

void SpmTokenizer::push_char(uint32_t cp, const char *bytes, size_t n_bytes, std::vector<int32_t> *symbols) const {
    if (cp != unicode::kInvalid) {
        auto it = char_ids_.find(cp);
        if (it != char_ids_.end()) {
            symbols->push_back(it->second);
            return;
        }
    }
    // Byte fallback applies to the whole character or not at all; without it the character is dropped (the
    // converted Hugging Face model has no unknown token).
    for (size_t k = 0; k < n_bytes; ++k) {
        if (byte_ids_[static_cast<unsigned char>(bytes[k])] < 0) return;
    }
    for (size_t k = 0; k < n_bytes; ++k) symbols->push_back(byte_ids_[static_cast<unsigned char>(bytes[k])]);
}

void SpmTokenizer::encode_segment(std::string_view text, bool at_start, std::vector<int32_t> *symbols,
                                  MergeScratch *scratch, std::vector<int32_t> *out) const {
    symbols->clear();
    // Metaspace with prepend_scheme "first": only the segment at offset 0, and only when it does not already
    // begin with "▁" once spaces are replaced.
    const bool starts_with_mark = text[0] == ' ' || text.substr(0, 3) == std::string_view(kSpaceMarkUtf8, 3);
    if (add_space_prefix_ && at_start && !starts_with_mark) push_char(kSpaceMark, kSpaceMarkUtf8, 3, symbols);
    size_t i = 0;
    while (i < text.size()) {
        size_t len;
        const uint32_t cp = unicode::decode_utf8(text.data() + i, text.size() - i, &len);
        if (cp == ' ') {
            push_char(kSpaceMark, kSpaceMarkUtf8, 3, symbols);
        } else {
            push_char(cp, text.data() + i, len, symbols);
        }
        i += len;
    }
    apply_merges(merges_, symbols, scratch);
    out->insert(out->end(), symbols->begin(), symbols->end());
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos) const {
    std::vector<int32_t> out;
    if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
    std::vector<int32_t> symbols;
    MergeScratch scratch;
    added_.split(
        text,
        [&](std::string_view segment, size_t offset) {
            encode_segment(segment, offset == 0, &symbols, &scratch, &out);
        },
        [&](int32_t id) { out.push_back(id); });
    return out;
}

std::string SpmTokenizer::piece(int32_t id) const {
    FQ_CHECK(id >= 0 && id < n_vocab(), FQ_STATUS_INVALID_ARGUMENT, "token id %d outside [0, %d)", id, n_vocab());
    if (silent_[static_cast<size_t>(id)]) return {};
    const std::string &t = tokens_[static_cast<size_t>(id)];
    const int b = parse_byte_token(t);
    if (b >= 0) return std::string(1, static_cast<char>(b));
    std::string out;
    out.reserve(t.size());
    for (size_t i = 0; i < t.size();) {
        if (t.compare(i, 3, kSpaceMarkUtf8) == 0) {
            out.push_back(' ');
            i += 3;
        } else {
            out.push_back(t[i++]);
        }
    }
    return out;
}

std::string SpmTokenizer::decode(const int32_t *ids, size_t n) const {
    std::string out;
    for (size_t k = 0; k < n; ++k) out += piece(ids[k]);
    // Hugging Face's decoder strips one leading space: the one the prefix added.
    if (add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

}  // namespace

std::unique_ptr<Tokenizer> make_spm(const VocabData &vocab) { return std::make_unique<SpmTokenizer>(vocab); }

}  // namespace fq::tok
