// Internals shared by the SentencePiece-style and the byte-level BPE tokenizers: the BPE merge loop, the
// matcher of special (added) tokens, and the two constructors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fq::tok {

struct MergeInfo {
    int32_t rank;    // position in the merge list: lower merges first
    int32_t new_id;  // token of the concatenation
};

// Merge ranks keyed by the pair of token ids.
class MergeTable {
  public:
    // A later set() of the same pair replaces the earlier one, as in Hugging Face's BPE builder.
    void set(int32_t left, int32_t right, int32_t rank, int32_t new_id) {
        map_[key(left, right)] = MergeInfo{rank, new_id};
    }
    const MergeInfo *find(int32_t left, int32_t right) const {
        auto it = map_.find(key(left, right));
        return it == map_.end() ? nullptr : &it->second;
    }
    void reserve(size_t n) { map_.reserve(n); }
    size_t size() const { return map_.size(); }

  private:
    static uint64_t key(int32_t l, int32_t r) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    }
    std::unordered_map<uint64_t, MergeInfo> map_;
};

// Reusable buffers of apply_merges (one per encode call, so encode stays thread-safe).
struct MergeScratch {
    struct Candidate {
        int32_t rank;
        int32_t pos;  // index of the left symbol
        int32_t new_id;
    };
    std::vector<int32_t> prev, next;
    std::vector<Candidate> heap;
};

// Merges adjacent symbols of one word in place until no pair has a merge: always the pair of lowest rank, the
// leftmost one among equal ranks (Hugging Face tokenizers' BPE word merge).
void apply_merges(const MergeTable &merges, std::vector<int32_t> *symbols, MergeScratch *scratch);

// Literal matcher of special and user-defined tokens: the leftmost occurrence, the longest one at that position
// (Hugging Face's added-vocabulary split, LeftmostLongest).
class AddedTokenMatcher {
  public:
    void add(const std::string &text, int32_t id);  // empty texts are ignored; a repeated text keeps its last id
    bool empty() const { return nodes_.size() <= 1; }
    // Calls on_text(std::string_view segment, size_t offset) for each stretch of text without special tokens and
    // on_token(int32_t id) for each special token, in text order.
    template <class OnText, class OnToken>
    void split(std::string_view text, OnText on_text, OnToken on_token) const {
        size_t start = 0, i = 0;
        while (i < text.size()) {
            size_t len = 0;
            int32_t id = -1;
            if (first_byte_[static_cast<unsigned char>(text[i])]) id = longest_at(text, i, &len);
            if (id < 0) {
                ++i;
                continue;
            }
            if (i > start) on_text(text.substr(start, i - start), start);
            on_token(id);
            i += len;
            start = i;
        }
        if (text.size() > start) on_text(text.substr(start), start);
    }

  private:
    struct Node {
        int32_t id = -1;
        std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    };
    int32_t longest_at(std::string_view text, size_t pos, size_t *len) const;
    std::vector<Node> nodes_{1};
    bool first_byte_[256] = {};
};

// Splits "a b" (the first space after the first character) into its two halves; false when there is none.
bool split_merge(const std::string &merge, std::string *left, std::string *right);

using VocabMap = std::unordered_map<std::string, int32_t>;  // token text -> id (the last id of a repeated text)

// Merges given as "a b" strings, best first. Merges naming a text that is not in the vocabulary are skipped.
void load_merges(const std::vector<std::string> &merges, const VocabMap &vocab, MergeTable *table);

// Merges recovered from a vocabulary, as Hugging Face's generate_merges does: every split of every token into two
// tokens, ordered by the token's score (then by the lengths of the left and right halves in characters), best
// first when descending, lowest first otherwise; ties keep vocabulary order. scored_tokens: (text, score) in
// vocabulary order, each text once.
void generate_merges(const std::vector<std::pair<std::string, double>> &scored_tokens, const VocabMap &vocab,
                     bool descending, MergeTable *table);

std::unique_ptr<Tokenizer> make_spm(const VocabData &vocab);
std::unique_ptr<Tokenizer> make_bpe(const VocabData &vocab);

}  // namespace fq::tok
