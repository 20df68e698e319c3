#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <climits>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace fq {
namespace tok {

void apply_merges(const MergeTable &merges, std::vector<int32_t> *symbols, MergeScratch *scratch) {
    std::vector<int32_t> &sym = *symbols;  // token id per symbol; -1 once merged into its left neighbour
    const size_t n = sym.size();
    if (n < 2) return;
    auto &prev = scratch->prev;
    auto &next = scratch->next;
    auto &heap = scratch->heap;
    prev.resize(n);
    next.resize(n);
    heap.clear();
    for (size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<int32_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<int32_t>(i) + 1 : -1;
    }
    // Min-heap on (rank, pos): std heap functions keep the largest first, so the comparison is reversed.
    auto later = [](const MergeScratch::Candidate &a, const MergeScratch::Candidate &b) {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    auto push = [&](int32_t left) {
        const int32_t right = next[static_cast<size_t>(left)];
        if (right < 0) return;
        const MergeInfo *m = merges.find(sym[static_cast<size_t>(left)], sym[static_cast<size_t>(right)]);
        if (!m) return;
        heap.push_back({m->rank, left, m->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), later);
        const MergeScratch::Candidate c = heap.back();
        heap.pop_back();
        const auto pos = static_cast<size_t>(c.pos);
        if (sym[pos] < 0 || next[pos] < 0) continue;  // stale: merged away, or nothing on the right any more
        const auto right = static_cast<size_t>(next[pos]);
        // Stale when the pair at pos changed since it was queued (the check Hugging Face makes: same result id).
        const MergeInfo *m = merges.find(sym[pos], sym[right]);
        if (!m || m->new_id != c.new_id) continue;
        sym[pos] = c.new_id;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[right] >= 0) prev[static_cast<size_t>(next[right])] = c.pos;
        if (prev[pos] >= 0) push(prev[pos]);
        push(c.pos);
    }
    size_t out = 0;
    for (size_t i = 0; i < n; ++i) {
        if (sym[i] >= 0) sym[out++] = sym[i];
    }
    sym.resize(out);
}

void AddedTokenMatcher::add(const std::string &text, int32_t id) {
    if (text.empty()) return;
    size_t node = 0;
    for (char ch : text) {
        const auto b = static_cast<unsigned char>(ch);
        auto &kids = nodes_[node].children;
        auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, INT32_MIN));
        if (it != kids.end() && it->first == b) {
            node = static_cast<size_t>(it->second);
        } else {
            const auto child = static_cast<int32_t>(nodes_.size());
            kids.insert(it, std::make_pair(b, child));
            nodes_.emplace_back();  // invalidates `kids`, which is not used afterwards
            node = static_cast<size_t>(child);
        }
    }
    nodes_[node].id = id;
    first_byte_[static_cast<unsigned char>(text[0])] = true;
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t *len) const {
    size_t node = 0;
    int32_t best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
        const auto b = static_cast<unsigned char>(text[i]);
        const auto &kids = nodes_[node].children;
        auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, INT32_MIN));
        if (it == kids.end() || it->first != b) break;
        node = static_cast<size_t>(it->second);
        if (nodes_[node].id >= 0) {
            best = nodes_[node].id;
            *len = i + 1 - pos;
        }
    }
    return best;
}

bool split_merge(const std::string &merge, std::string *left, std::string *right) {
    const size_t sp = merge.find(' ', 1);
    if (sp == std::string::npos) return false;
    *left = merge.substr(0, sp);
    *right = merge.substr(sp + 1);
    return true;
}

void load_merges(const std::vector<std::string> &merges, const VocabMap &vocab, MergeTable *table) {
    table->reserve(merges.size());
    std::string left, right;
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        if (!split_merge(merges[rank], &left, &right)) continue;
        auto l = vocab.find(left), r = vocab.find(right), lr = vocab.find(left + right);
        if (l == vocab.end() || r == vocab.end() || lr == vocab.end()) continue;
        table->set(l->second, r->second, static_cast<int32_t>(rank), lr->second);
    }
}

void generate_merges(const std::vector<std::pair<std::string, double>> &scored_tokens, const VocabMap &vocab,
                     bool descending, MergeTable *table) {
    struct Candidate {
        int32_t left, right, merged;
        double score;
        int32_t left_chars, right_chars;
    };
    std::vector<Candidate> all, local;
    std::vector<size_t> cuts;  // character boundaries (byte offsets) inside one token
    for (const auto &[text, score] : scored_tokens) {
        auto merged = vocab.find(text);
        if (merged == vocab.end()) continue;
        cuts.clear();
        for (size_t i = 0; i < text.size();) {
            size_t len;
            unicode::decode_utf8(text.data() + i, text.size() - i, &len);
            i += len;
            if (i < text.size()) cuts.push_back(i);
        }
        local.clear();
        for (size_t k = 0; k < cuts.size(); ++k) {
            auto l = vocab.find(text.substr(0, cuts[k]));
            if (l == vocab.end()) continue;
            auto r = vocab.find(text.substr(cuts[k]));
            if (r == vocab.end()) continue;
            local.push_back({l->second, r->second, merged->second, score, static_cast<int32_t>(k + 1),
                             static_cast<int32_t>(cuts.size() - k)});
        }
        std::sort(local.begin(), local.end(), [](const Candidate &a, const Candidate &b) {
            return a.left != b.left ? a.left < b.left : a.right < b.right;
        });
        all.insert(all.end(), local.begin(), local.end());
    }
    auto key_less = [](const Candidate &a, const Candidate &b) {
        if (a.score != b.score) return a.score < b.score;
        if (a.left_chars != b.left_chars) return a.left_chars < b.left_chars;
        return a.right_chars < b.right_chars;
    };
    // Python's sorted(..., reverse=True) is stable too: equal keys keep their order in both directions.
    if (descending) {
        std::stable_sort(all.begin(), all.end(), [&](const Candidate &a, const Candidate &b) { return key_less(b, a); });
    } else {
        std::stable_sort(all.begin(), all.end(), key_less);
    }
    table->reserve(all.size());
    for (size_t rank = 0; rank < all.size(); ++rank) {
        table->set(all[rank].left, all[rank].right, static_cast<int32_t>(rank), all[rank].merged);
    }
}

}  // namespace tok

namespace {

// Ids are stored as uint32; 4294967295 (and anything that is not a valid int32) means "none".
int32_t read_id(const gguf::File &file, std::string_view key) {
    if (!file.find(key)) return -1;
    const int64_t v = file.get_int(key, -1);
    return (v < 0 || v > INT32_MAX) ? -1 : static_cast<int32_t>(v);
}

int read_flag(const gguf::File &file, std::string_view key) {
    if (!file.find(key)) return -1;
    return file.get_bool(key, false) ? 1 : 0;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File &file) {
    VocabData v;
    v.model = file.get_string("tokenizer.ggml.model");
    FQ_CHECK(!v.model.empty(), FQ_STATUS_MODEL_FORMAT, "%s: no tokenizer.ggml.model", file.path().c_str());
    v.pre = file.get_string("tokenizer.ggml.pre");
    v.architecture = file.get_string("general.architecture");
    v.tokens = file.get_string_array("tokenizer.ggml.tokens");
    if (file.find("tokenizer.ggml.scores")) v.scores = file.get_float_array("tokenizer.ggml.scores");
    if (file.find("tokenizer.ggml.token_type")) v.token_types = file.get_int32_array("tokenizer.ggml.token_type");
    if (file.find("tokenizer.ggml.merges")) v.merges = file.get_string_array("tokenizer.ggml.merges");
    v.bos_id = read_id(file, "tokenizer.ggml.bos_token_id");
    v.eos_id = read_id(file, "tokenizer.ggml.eos_token_id");
    v.unk_id = read_id(file, "tokenizer.ggml.unknown_token_id");
    v.pad_id = read_id(file, "tokenizer.ggml.padding_token_id");
    v.add_bos = read_flag(file, "tokenizer.ggml.add_bos_token");
    v.add_space_prefix = read_flag(file, "tokenizer.ggml.add_space_prefix");
    return from_vocab(v);
}

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(const VocabData &v) {
    const size_t n = v.tokens.size();
    FQ_CHECK(n > 0 && n <= static_cast<size_t>(INT32_MAX), FQ_STATUS_MODEL_FORMAT,
             "tokenizer.ggml.tokens has %zu entries", n);
    FQ_CHECK(v.token_types.empty() || v.token_types.size() == n, FQ_STATUS_MODEL_FORMAT,
             "tokenizer.ggml.token_type has %zu entries for %zu tokens", v.token_types.size(), n);
    FQ_CHECK(v.scores.empty() || v.scores.size() == n, FQ_STATUS_MODEL_FORMAT,
             "tokenizer.ggml.scores has %zu entries for %zu tokens", v.scores.size(), n);
    if (v.model == "llama") {
        // Hugging Face builds these from the same arrays with different rules (renamed space tokens, file order
        // as merge order, a normalizer instead of the prefix); they are not implemented here.
        const std::string &a = v.architecture;
        FQ_CHECK(a != "gemma" && a != "gemma2" && a != "gemma3" && a != "phi3", FQ_STATUS_UNSUPPORTED,
                 "SentencePiece vocabulary of architecture '%s' is not supported", a.c_str());
        return tok::make_spm(v);
    }
    if (v.model == "gpt2") return tok::make_bpe(v);
    FQ_FAIL(FQ_STATUS_UNSUPPORTED, "tokenizer.ggml.model '%s' is not supported (only 'llama' and 'gpt2')",
            v.model.c_str());
}

}  // namespace fq
