#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace fq::unicode {
namespace {

#include "tokenizer/unicode_tables.inc"

constexpr size_t kNumRanges = sizeof(kCategoryRanges) / sizeof(kCategoryRanges[0]);

// ASCII is most of the text we see; its categories are looked up directly.
struct AsciiTable {
    std::array<Category, 128> cat{};
    AsciiTable() {
        size_t r = 0;
        for (uint32_t cp = 0; cp < 128; ++cp) {
            while (r + 1 < kNumRanges && (kCategoryRanges[r + 1] >> 5) <= cp) ++r;
            cat[cp] = static_cast<Category>(kCategoryRanges[r] & 31u);
        }
    }
};
const AsciiTable &ascii_table() {
    static const AsciiTable t;
    return t;
}

struct ByteMap {
    std::array<uint32_t, 256> to_char{};
    std::array<int16_t, 324> from_char{};  // every mapped character is below U+0144
    ByteMap() {
        from_char.fill(-1);
        uint32_t next = 0x100;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t c = printable ? static_cast<uint32_t>(b) : next++;
            to_char[static_cast<size_t>(b)] = c;
            from_char[c] = static_cast<int16_t>(b);
        }
    }
};
const ByteMap &byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace

uint32_t decode_utf8(const char *s, size_t n, size_t *len) {
    const auto *u = reinterpret_cast<const unsigned char *>(s);
    *len = 1;
    const unsigned c0 = u[0];
    if (c0 < 0x80) return c0;
    size_t need;
    uint32_t cp, min_cp;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
        need = 2; cp = c0 & 0x1Fu; min_cp = 0x80;
    } else if (c0 >= 0xE0 && c0 <= 0xEF) {
        need = 3; cp = c0 & 0x0Fu; min_cp = 0x800;
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
        need = 4; cp = c0 & 0x07u; min_cp = 0x10000;
    } else {
        return kInvalid;
    }
    if (n < need) return kInvalid;
    for (size_t k = 1; k < need; ++k) {
        if ((u[k] & 0xC0u) != 0x80u) return kInvalid;
        cp = (cp << 6) | (u[k] & 0x3Fu);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
    *len = need;
    return cp;
}

void append_utf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

Category category(uint32_t cp) {
    if (cp < 128) return ascii_table().cat[cp];
    if (cp > 0x10FFFF) return Category::Cn;
    // Last range whose first code point is <= cp.
    const uint32_t key = (cp << 5) | 31u;
    const uint32_t *it = std::upper_bound(kCategoryRanges, kCategoryRanges + kNumRanges, key);
    return static_cast<Category>(*(it - 1) & 31u);
}

bool is_letter(uint32_t cp) {
    const Category c = category(cp);
    return c >= Category::Lu && c <= Category::Lo;
}

bool is_number(uint32_t cp) {
    const Category c = category(cp);
    return c >= Category::Nd && c <= Category::No;
}

bool is_white_space(uint32_t cp) {
    if (cp < 128) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    for (uint32_t w : kWhiteSpace) {
        if (w == cp) return true;
    }
    return false;
}

const char *unicode_version() { return FQ_UNICODE_VERSION; }

uint32_t byte_to_char(uint8_t b) { return byte_map().to_char[b]; }

int char_to_byte(uint32_t cp) {
    if (cp >= byte_map().from_char.size()) return -1;
    return byte_map().from_char[cp];
}

}  // namespace fq::unicode
