#include "tokenizer/pretokenize.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace fq::tok {
namespace {

enum CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass classify(uint32_t cp) {
    if (cp < 128) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return kLetter;
        if (cp >= '0' && cp <= '9') return kNumber;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kSpace;
        return kOther;
    }
    if (cp == unicode::kInvalid) return kOther;
    if (unicode::is_white_space(cp)) return kSpace;
    if (unicode::is_letter(cp)) return kLetter;
    if (unicode::is_number(cp)) return kNumber;
    return kOther;
}

// Simple case folding of the letters the contraction alternatives use; Oniguruma's (?i) also folds U+017F
// (long s) onto 's'.
uint32_t fold(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp == 0x17F) return 's';
    return cp;
}

// The text as code points with their classes; off[k] is the byte offset of character k, off[n] the text size.
// `end` bounds the matching (a piece never extends past it), so that a matcher can run on a stretch of the text.
struct Chars {
    std::vector<uint32_t> cp;
    std::vector<CharClass> cls;
    std::vector<size_t> off;
    size_t n = 0;
    size_t end = 0;

    explicit Chars(std::string_view text) {
        cp.reserve(text.size());
        cls.reserve(text.size());
        off.reserve(text.size() + 1);
        size_t i = 0;
        while (i < text.size()) {
            size_t len;
            const uint32_t c = unicode::decode_utf8(text.data() + i, text.size() - i, &len);
            cp.push_back(c);
            cls.push_back(classify(c));
            off.push_back(i);
            i += len;
        }
        off.push_back(text.size());
        n = end = cp.size();
    }
    bool is(size_t k, CharClass c) const { return k < end && cls[k] == c; }
    bool is_newline(size_t k) const { return k < end && (cp[k] == '\r' || cp[k] == '\n'); }
    size_t run(size_t k, CharClass c) const {  // end of the run of class c starting at k
        while (k < end && cls[k] == c) ++k;
        return k;
    }
};

// Length in characters of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
size_t match_contraction(const Chars &t, size_t i, bool ignore_case) {
    if (t.cp[i] != '\'' || i + 1 >= t.end) return 0;
    auto lower = [&](size_t k) { return ignore_case ? fold(t.cp[k]) : t.cp[k]; };
    const uint32_t a = lower(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= t.end) return 0;
    const uint32_t b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S) then \s+, for a whitespace run starting at i.
size_t match_spaces(const Chars &t, size_t i) {
    const size_t j = t.run(i, kSpace);
    if (j == t.end) return j;
    // The lookahead fails before a non-space; giving back one character lets the last space start the next piece.
    return j - i >= 2 ? j - 1 : j;
}

size_t next_gpt2(const Chars &t, size_t i) {
    if (size_t k = match_contraction(t, i, false)) return i + k;
    const size_t s = (t.cp[i] == ' ' && i + 1 < t.end && t.cls[i + 1] != kSpace) ? i + 1 : i;  // optional ' '
    switch (t.cls[s]) {
        case kLetter: return t.run(s, kLetter);
        case kNumber: return t.run(s, kNumber);
        case kOther: return t.run(s, kOther);
        case kSpace: break;
    }
    return match_spaces(t, i);
}

size_t next_llama3(const Chars &t, size_t i, size_t max_digits) {
    if (size_t k = match_contraction(t, i, true)) return i + k;
    const CharClass c = t.cls[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == kLetter) return t.run(i, kLetter);
    if ((c == kSpace || c == kOther) && !t.is_newline(i) && t.is(i + 1, kLetter)) return t.run(i + 1, kLetter);
    // \p{N}{1,max_digits}
    if (c == kNumber) return std::min(t.run(i, kNumber), i + max_digits);
    // ' '?[^\s\p{L}\p{N}]+[\r\n]*
    size_t s = i;
    if (t.cp[i] == ' ' && t.is(i + 1, kOther)) s = i + 1;
    if (t.cls[s] == kOther) {
        size_t j = t.run(s, kOther);
        while (t.is_newline(j)) ++j;
        return j;
    }
    // \s*[\r\n]+ : the longest whitespace prefix that ends with a line break.
    const size_t j = t.run(i, kSpace);
    for (size_t k = j; k > i; --k) {
        if (t.is_newline(k - 1)) return k;
    }
    return match_spaces(t, i);
}

}  // namespace

void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::pair<size_t, size_t>> *pieces) {
    Chars t(text);
    size_t stretch_end = 0;  // Gpt2Digits: end of the current stretch without number characters
    size_t i = 0;
    while (i < t.n) {
        size_t j;
        switch (kind) {
            case PreTokenizer::Gpt2: j = next_gpt2(t, i); break;
            case PreTokenizer::Llama3: j = next_llama3(t, i, 3); break;
            case PreTokenizer::Qwen2: j = next_llama3(t, i, 1); break;
            case PreTokenizer::Gpt2Digits:
                // Every number character is a piece of its own; the GPT-2 regex runs on each stretch between
                // them and cannot see past its end.
                if (t.cls[i] == kNumber) {
                    j = i + 1;
                    break;
                }
                if (stretch_end <= i) {
                    stretch_end = i;
                    while (stretch_end < t.n && t.cls[stretch_end] != kNumber) ++stretch_end;
                }
                t.end = stretch_end;
                j = next_gpt2(t, i);
                break;
            default: j = t.n; break;
        }
        pieces->emplace_back(t.off[i], t.off[j]);
        i = j;
    }
}

}  // namespace fq::tok
