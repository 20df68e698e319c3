// Hand-written matchers for the pre-tokenizer regexes of byte-level BPE vocabularies. Each one splits text into
// the same pieces as Hugging Face tokenizers' regex (Oniguruma, leftmost alternative first, greedy, with
// backtracking only where the patterns need it) would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace fq::tok {

enum class PreTokenizer {
    // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    Gpt2,
    // LLaMA 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    //          \s*[\r\n]+|\s+(?!\S)|\s+
    Llama3,
    // Qwen2: as LLaMA 3 but \p{N} one digit at a time.
    Qwen2,
    // SmolLM: every \p{N} character alone, then the GPT-2 regex on the text between them (Hugging Face:
    // Digits(individual_digits=True) followed by ByteLevel; llama.cpp: "smollm").
    Gpt2Digits,
};

// Byte ranges [first, second) of the pieces of text, in order, covering it completely. Invalid UTF-8 bytes are
// single characters outside \s, \p{L} and \p{N}. The result is appended to *pieces.
void pretokenize(PreTokenizer kind, std::string_view text, std::vector<std::pair<size_t, size_t>> *pieces);

}  // namespace fq::tok
