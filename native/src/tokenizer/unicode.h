// Unicode helpers of the tokenizers: strict UTF-8 decoding, general categories (table generated from the Unicode
// version that Hugging Face tokenizers' regex engine uses), White_Space, and the GPT-2 byte <-> character map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fq::unicode {

// General categories, numbered as in tools/unicode/gen_unicode_tables.py.
enum class Category : uint8_t {
    Cn = 0, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc,
    Cf, Cs, Co,
};

// Stands for one byte that is not part of a valid UTF-8 sequence. It is in no category (not a letter, number or
// space), so the pre-tokenizers treat it like punctuation.
constexpr uint32_t kInvalid = 0xFFFFFFFFu;

// Decodes the sequence starting at s[0] (n >= 1 bytes available). Returns the code point and sets *len to its byte
// length. Overlong forms, surrogates, values above U+10FFFF and truncated sequences give kInvalid with *len = 1,
// so that every byte of the input is covered exactly once.
uint32_t decode_utf8(const char *s, size_t n, size_t *len);
void append_utf8(std::string &out, uint32_t cp);  // cp must be a valid scalar value

Category category(uint32_t cp);  // Cn for kInvalid
bool is_letter(uint32_t cp);     // \p{L}
bool is_number(uint32_t cp);     // \p{N}
bool is_white_space(uint32_t cp);  // \s in Oniguruma: the White_Space property
const char *unicode_version();

// GPT-2's reversible map of the 256 byte values onto printable characters: bytes that are printable Latin-1
// characters map to themselves, the others to U+0100 + k in byte order.
uint32_t byte_to_char(uint8_t b);
int char_to_byte(uint32_t cp);  // -1 when cp is not in the map

}  // namespace fq::unicode
