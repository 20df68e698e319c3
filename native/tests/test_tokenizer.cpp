// Tokenizer tests. The expected ids and pre-token pieces below come from Hugging Face, not from this code; they
// were printed by make_tokenizer_cases.py (kept with the golden generators in tools/goldens/) with transformers
// 5.23.0 / tokenizers 0.23.3: AutoTokenizer.from_pretrained(dir, gguf_file=...) on the same GGUF files (for
// stories260K.gguf a copy without its two 0xFFFFFFFF id keys, which transformers cannot load), called with
// add_special_tokens=False. For SmolLM2 the pre-tokenizer is the model's published one (Digits(individual) +
// ByteLevel, llama.cpp's "smollm"), as in tools/goldens/make_goldens.py. The LLaMA-3, Qwen2 and GPT-2 cases are
// SmolLM2's vocabulary with tokenizer.ggml.pre rewritten, loaded by transformers the same way. Pre-token pieces are
// tokenizers' Split(Regex(...), "isolated") output for each regex. `round_trips` says whether Hugging Face's decode
// (skip_special_tokens=True) gives the text back. The golden files of tools/goldens/make_goldens.py are checked
// too when present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "support/paths.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace {

using fq::Tokenizer;
using fq::VocabData;
using fq::tok::PreTokenizer;

struct IdCase {
    const char *name;
    std::string text;
    std::vector<int32_t> ids;
    bool round_trips;
};

struct PreCase {
    PreTokenizer kind;
    std::string text;
    std::vector<std::string> pieces;
};

// transformers 5.23.0, tokenizers 0.23.3
constexpr size_t kWikiStoriesCount = 809288;
constexpr uint64_t kWikiStoriesFnv = 0xa53550d9077a76b1ull;
constexpr size_t kWikiSmolCount = 303415;
constexpr uint64_t kWikiSmolFnv = 0x8672b255a2935a9bull;
const IdCase kStoriesCases[] = {
    {"wiki_title", " = Robert Boulter = \n",
     {410, 64, 410, 461, 414, 430, 285, 413, 368, 277, 421, 413, 285, 410, 64, 410, 13},
     false},
    {"wiki_paragraph", " Robert Boulter is an English film , television and theatre actor . He had a guest @-@ s"
     "tarring role on the television series The Bill in 2000 . This ",
     {410, 461, 414, 430, 285, 413, 368, 277, 421, 413, 285, 410, 293, 261, 416, 410, 459, 416, 428, 421, 293, 415,
      272, 290, 423, 410, 432, 259, 411, 305, 435, 293, 417, 289, 269, 265, 294, 276, 261, 429, 413, 304, 410, 426,
      346, 381, 261, 298, 425, 411, 356, 410, 67, 464, 67, 349, 295, 420, 299, 352, 414, 305, 353, 265, 259, 411, 305,
      435, 293, 417, 289, 262, 285, 417, 406, 291, 368, 290, 421, 322, 410, 479, 477, 477, 477, 410, 426, 274, 415,
      293, 410},
     false},
    {"heading", " = = Heading = = \n",
     {410, 64, 410, 64, 346, 380, 299, 410, 64, 410, 64, 410, 13},
     false},
    {"unicode", "Caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d"
     "\xf0\x9f\x8f\xbd \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8"
     "\xd8\xa7 e\xcc\x81 Z\xcd\x91\xcc\xa3" "a",
     {410, 457, 412, 431, 485, 297, 412, 198, 178, 360, 410, 231, 187, 176, 233, 153, 138, 410, 243, 162, 155, 131,
      243, 162, 148, 144, 243, 162, 146, 192, 410, 218, 172, 218, 159, 218, 152, 218, 160, 410, 220, 136, 219, 180,
      219, 176, 219, 171, 219, 170, 344, 207, 132, 410, 469, 208, 148, 207, 166, 412},
     true},
    {"whitespace", "a  b   c\t\td\n\n\ne \r\n  ",
     {261, 410, 268, 410, 410, 280, 12, 12, 418, 13, 13, 13, 411, 410, 16, 13, 410, 410},
     true},
    {"digits", "12345 3.14159",
     {410, 475, 479, 472, 484, 480, 410, 472, 426, 475, 484, 475, 480, 483},
     true},
    {"digits_spaces", "a  1 x = 10  20 \xc2\xb2 \xc2\xbd \xd9\xa3",
     {261, 410, 410, 475, 410, 444, 410, 64, 410, 475, 477, 410, 410, 479, 477, 410, 197, 181, 410, 197, 192, 410,
      220, 166},
     true},
    {"code", "def f(x):\n    return x**2  # square\n",
     {279, 411, 431, 272, 489, 444, 488, 467, 13, 410, 410, 410, 410, 276, 413, 425, 420, 416, 410, 444, 497, 497,
      479, 410, 410, 38, 262, 456, 425, 412, 276, 13},
     true},
    {"chatml", "<|im_start|>user\nhi<|im_end|>\n",
     {410, 504, 506, 288, 98, 356, 295, 413, 506, 505, 425, 419, 285, 13, 415, 417, 504, 506, 288, 98, 367, 506, 505,
      13},
     true},
    {"bos_eos_literal", "<s>Once upon a time</s> <unk>",
     {1, 441, 416, 331, 407, 261, 378, 2, 410, 0},
     false},
    {"contractions", "I'LL don't we've \xc5\xbf's",
     {359, 439, 438, 438, 279, 289, 439, 413, 382, 439, 360, 410, 200, 194, 439, 419},
     true},
    {"empty", "",
     {},
     true},
};
const IdCase kSmolCases[] = {
    {"wiki_title", " = Robert Boulter = \n",
     {446, 6356, 389, 9226, 352, 446, 3717},
     true},
    {"wiki_paragraph", " Robert Boulter is an English film , television and theatre actor . He had a guest @-@ s"
     "tarring role on the television series The Bill in 2000 . This ",
     {6356, 389, 9226, 352, 314, 354, 2321, 4771, 3297, 8552, 284, 16984, 17523, 1673, 909, 761, 253, 16204, 3394, 29,
      48, 45608, 1791, 335, 260, 8552, 3086, 378, 8593, 281, 216, 34, 32, 32, 32, 1673, 669, 216},
     true},
    {"heading", " = = Heading = = \n",
     {446, 446, 909, 8200, 446, 446, 3717},
     true},
    {"unicode", "Caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d"
     "\xf0\x9f\x8f\xbd \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8"
     "\xd8\xa7 e\xcc\x81 Z\xcd\x91\xcc\xa3" "a",
     {51, 1939, 2756, 15486, 46494, 216, 28589, 29184, 40303, 218, 10813, 235, 231, 10813, 233, 138, 12960, 119,
      31838, 23970, 162, 247, 36395, 20602, 44626, 31462, 10805, 297, 151, 219, 1777, 152, 235, 151, 113, 81},
     true},
    {"whitespace", "a  b   c\t\td\n\n\ne \r\n  ",
     {81, 216, 278, 256, 265, 197, 197, 84, 1116, 198, 85, 216, 2738, 256},
     true},
    {"digits", "12345 3.14159",
     {33, 34, 35, 36, 37, 216, 35, 30, 33, 36, 33, 37, 41},
     true},
    {"digits_spaces", "a  1 x = 10  20 \xc2\xb2 \xc2\xbd \xd9\xa3",
     {81, 256, 33, 1792, 446, 216, 33, 32, 256, 34, 32, 216, 19133, 216, 16738, 216, 164, 113},
     true},
    {"code", "def f(x):\n    return x**2  # square\n",
     {1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 198},
     true},
    {"chatml", "<|im_start|>user\nhi<|im_end|>\n",
     {1, 4093, 198, 6004, 2, 198},
     false},
    {"bos_eos_literal", "<s>Once upon a time</s> <unk>",
     {44, 99, 46, 6403, 1980, 253, 655, 9617, 99, 46, 2067, 5131, 46},
     true},
    {"contractions", "I'LL don't we've \xc5\xbf's",
     {57, 23, 16421, 1326, 982, 392, 3543, 18811, 140, 506},
     true},
    {"empty", "",
     {},
     true},
};
const IdCase kLlama3Cases[] = {
    {"digits", "12345 3.14159 1234567",
     {33, 34, 35, 36, 37, 216, 35, 30, 33, 36, 33, 37, 41, 216, 33, 34, 35, 36, 37, 38, 39},
     true},
    {"contractions", "I'LL don't we've \xc5\xbf's",
     {57, 23, 16421, 1326, 982, 392, 3543, 18811, 140, 506},
     true},
    {"whitespace", "a  b \n\n  c\t\t\nd  ",
     {81, 216, 278, 38028, 216, 265, 1656, 198, 84, 256},
     true},
    {"mixed", "(hello) \xc3\xa9t\xc3\xa9 2024-11-22 x\xc2\xb2 \xe4\xb8\xad\xe6\x96\x87!!\n",
     {24, 28120, 25, 216, 19380, 2756, 216, 34, 32, 34, 36, 29, 33, 33, 29, 34, 34, 1792, 19133, 216, 28589, 29184,
      10095, 198},
     true},
};
const IdCase kQwen2Cases[] = {
    {"digits", "12345 3.14159 1234567",
     {33, 34, 35, 36, 37, 216, 35, 30, 33, 36, 33, 37, 41, 216, 33, 34, 35, 36, 37, 38, 39},
     true},
};
const IdCase kGpt2Cases[] = {
    {"digits", "12345 3.14159 1234567",
     {33, 34, 35, 36, 37, 216, 35, 30, 33, 36, 33, 37, 41, 216, 33, 34, 35, 36, 37, 38, 39},
     true},
    {"contractions", "I'LL don't we've \xc5\xbf's",
     {57, 23, 16421, 1326, 982, 392, 3543, 18811, 140, 506},
     true},
    {"whitespace", "a  b \n\n  c\t\t\nd  ",
     {81, 216, 278, 216, 8866, 265, 1656, 198, 84, 256},
     true},
    {"mixed", "(hello) \xc3\xa9t\xc3\xa9 2024-11-22 x\xc2\xb2 \xe4\xb8\xad\xe6\x96\x87!!\n",
     {24, 28120, 25, 216, 19380, 2756, 216, 34, 32, 34, 36, 29, 33, 33, 29, 34, 34, 1792, 19133, 216, 28589, 29184,
      10095, 198},
     true},
};
const PreCase kPreCases[] = {
    {PreTokenizer::Gpt2, "Hello  world!!\n\n  x \r\n\r\n\t z\xe2\x80\xa8",
     {"Hello", " ", " world", "!!", "\n\n ", " x", " \r\n\r\n\t", " z", "\xe2\x80\xa8"}},
    {PreTokenizer::Gpt2, "I'LL don't 'S \xc5\xbf's 'll",
     {"I", "'", "LL", " don", "'t", " '", "S", " \xc5\xbf", "'s", " '", "ll"}},
    {PreTokenizer::Gpt2, "12345 3.14159 a  1\t\t2 \xc2\xb2\xc2\xbd\xd9\xa3",
     {"12345", " 3", ".", "14159", " a", " ", " 1", "\t", "\t", "2", " \xc2\xb2\xc2\xbd\xd9\xa3"}},
    {PreTokenizer::Gpt2, "(hi) \xc3\xa9t\xc3\xa9\xe3\x80\x80\xe4\xb8\xad\xe6\x96\x87\xe2\x80\x8b\xc2\xa0"
     "\xc2\xa0y",
     {"(", "hi", ")", " \xc3\xa9t\xc3\xa9", "\xe3\x80\x80", "\xe4\xb8\xad\xe6\x96\x87", "\xe2\x80\x8b", "\xc2\xa0",
      "\xc2\xa0", "y"}},
    {PreTokenizer::Gpt2, "x\xcc\x81\xcc\x88 \xf0\x9f\x98\x80!\n",
     {"x", "\xcc\x81\xcc\x88", " \xf0\x9f\x98\x80!", "\n"}},
    {PreTokenizer::Llama3, "Hello  world!!\n\n  x \r\n\r\n\t z\xe2\x80\xa8",
     {"Hello", " ", " world", "!!\n\n", " ", " x", " \r\n\r\n", "\t", " z", "\xe2\x80\xa8"}},
    {PreTokenizer::Llama3, "I'LL don't 'S \xc5\xbf's 'll",
     {"I", "'LL", " don", "'t", " '", "S", " \xc5\xbf", "'s", " '", "ll"}},
    {PreTokenizer::Llama3, "12345 3.14159 a  1\t\t2 \xc2\xb2\xc2\xbd\xd9\xa3",
     {"123", "45", " ", "3", ".", "141", "59", " a", " ", " ", "1", "\t", "\t", "2", " ", "\xc2\xb2\xc2\xbd\xd9\xa3"}},
    {PreTokenizer::Llama3, "(hi) \xc3\xa9t\xc3\xa9\xe3\x80\x80\xe4\xb8\xad\xe6\x96\x87\xe2\x80\x8b\xc2\xa0"
     "\xc2\xa0y",
     {"(hi", ")", " \xc3\xa9t\xc3\xa9", "\xe3\x80\x80\xe4\xb8\xad\xe6\x96\x87", "\xe2\x80\x8b", "\xc2\xa0",
      "\xc2\xa0y"}},
    {PreTokenizer::Llama3, "x\xcc\x81\xcc\x88 \xf0\x9f\x98\x80!\n",
     {"x", "\xcc\x81\xcc\x88", " \xf0\x9f\x98\x80!\n"}},
    {PreTokenizer::Qwen2, "12345 3.14159 a  1\t\t2 \xc2\xb2\xc2\xbd\xd9\xa3",
     {"1", "2", "3", "4", "5", " ", "3", ".", "1", "4", "1", "5", "9", " a", " ", " ", "1", "\t", "\t", "2", " ",
      "\xc2\xb2", "\xc2\xbd", "\xd9\xa3"}},
    {PreTokenizer::Gpt2Digits, "Hello  world!!\n\n  x \r\n\r\n\t z\xe2\x80\xa8",
     {"Hello", " ", " world", "!!", "\n\n ", " x", " \r\n\r\n\t", " z", "\xe2\x80\xa8"}},
    {PreTokenizer::Gpt2Digits, "I'LL don't 'S \xc5\xbf's 'll",
     {"I", "'", "LL", " don", "'t", " '", "S", " \xc5\xbf", "'s", " '", "ll"}},
    {PreTokenizer::Gpt2Digits, "12345 3.14159 a  1\t\t2 \xc2\xb2\xc2\xbd\xd9\xa3",
     {"1", "2", "3", "4", "5", " ", "3", ".", "1", "4", "1", "5", "9", " a", "  ", "1", "\t\t", "2", " ", "\xc2\xb2",
      "\xc2\xbd", "\xd9\xa3"}},
    {PreTokenizer::Gpt2Digits, "(hi) \xc3\xa9t\xc3\xa9\xe3\x80\x80\xe4\xb8\xad\xe6\x96\x87\xe2\x80\x8b\xc2\xa0"
     "\xc2\xa0y",
     {"(", "hi", ")", " \xc3\xa9t\xc3\xa9", "\xe3\x80\x80", "\xe4\xb8\xad\xe6\x96\x87", "\xe2\x80\x8b", "\xc2\xa0",
      "\xc2\xa0", "y"}},
    {PreTokenizer::Gpt2Digits, "x\xcc\x81\xcc\x88 \xf0\x9f\x98\x80!\n",
     {"x", "\xcc\x81\xcc\x88", " \xf0\x9f\x98\x80!", "\n"}},
};

// ---- helpers --------------------------------------------------------------------------------------------------------

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

std::string smollm_path() { return fq::test::smollm2_path(); }
std::string wikitext_path() {
    const std::string in_repo = fq::test::source_dir() + "/data/wikitext-2-raw/wiki.test.raw";
    return fq::test::file_exists(in_repo) ? in_repo : fq::test::source_dir() + "/../shared/data/wikitext-2-raw/wiki.test.raw";
}

std::unique_ptr<Tokenizer> load(const std::string &path) {
    auto file = fq::gguf::File::open(path);
    return Tokenizer::from_gguf(*file);
}

// The vocabulary arrays of a GGUF file, to build variants of it through from_vocab.
VocabData read_vocab(const std::string &path) {
    auto f = fq::gguf::File::open(path);
    VocabData v;
    v.model = f->get_string("tokenizer.ggml.model");
    v.pre = f->get_string("tokenizer.ggml.pre");
    v.tokens = f->get_string_array("tokenizer.ggml.tokens");
    v.token_types = f->get_int32_array("tokenizer.ggml.token_type");
    if (f->find("tokenizer.ggml.merges")) v.merges = f->get_string_array("tokenizer.ggml.merges");
    if (f->find("tokenizer.ggml.scores")) v.scores = f->get_float_array("tokenizer.ggml.scores");
    v.bos_id = static_cast<int32_t>(f->get_int("tokenizer.ggml.bos_token_id", -1));
    v.eos_id = static_cast<int32_t>(f->get_int("tokenizer.ggml.eos_token_id", -1));
    v.unk_id = static_cast<int32_t>(f->get_int("tokenizer.ggml.unknown_token_id", -1));
    return v;
}

int32_t id_of(const Tokenizer &tok, const std::string &text) {
    for (int32_t i = 0; i < tok.n_vocab(); ++i) {
        if (tok.token_text(i) == text) return i;
    }
    return -1;
}

uint64_t fnv1a(const std::vector<int32_t> &ids) {  // over the little-endian int32 bytes
    uint64_t h = 0xcbf29ce484222325ull;
    for (int32_t id : ids) {
        const auto u = static_cast<uint32_t>(id);
        for (int k = 0; k < 4; ++k) h = (h ^ ((u >> (8 * k)) & 0xFFu)) * 0x100000001b3ull;
    }
    return h;
}

template <size_t N>
void check_cases(const Tokenizer &tok, const IdCase (&cases)[N]) {
    for (const IdCase &c : cases) {
        const std::vector<int32_t> ids = tok.encode(c.text, false);
        EXPECT_EQ(ids, c.ids) << c.name;
        EXPECT_LE(ids.size() + 1, c.text.size() + 2) << c.name;
        if (c.round_trips) {
            EXPECT_EQ(tok.decode(ids), c.text) << c.name;
        }
        if (tok.bos_id() >= 0) {
            const std::vector<int32_t> with_bos = tok.encode(c.text, true);
            ASSERT_FALSE(with_bos.empty());
            EXPECT_EQ(with_bos[0], tok.bos_id());
            EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), c.ids) << c.name;
        }
    }
}

// ---- a minimal JSON reader for the golden files ---------------------------------------------------------------------

struct Json {
    double num = 0;  // numbers; true = 1, false = 0
    std::string str;
    std::vector<Json> arr;
    std::vector<std::pair<std::string, Json>> obj;
    const Json *get(const std::string &key) const {
        for (const auto &kv : obj) {
            if (kv.first == key) return &kv.second;
        }
        return nullptr;
    }
};

// Parses s from position *i; throws std::runtime_error on malformed input.
Json parse_json(const std::string &s, size_t *i) {
    auto ws = [&] { while (*i < s.size() && std::isspace(static_cast<unsigned char>(s[*i]))) ++*i; };
    auto hex4 = [&] {
        if (*i + 4 > s.size()) throw std::runtime_error("bad \\u escape");
        const auto v = static_cast<uint32_t>(std::stoul(s.substr(*i, 4), nullptr, 16));
        *i += 4;
        return v;
    };
    ws();
    if (*i >= s.size()) throw std::runtime_error("unexpected end of JSON");
    Json v;
    const char c = s[*i];
    if (c == '{' || c == '[') {
        ++*i;
        for (ws(); *i < s.size() && s[*i] != (c == '{' ? '}' : ']'); ws()) {
            if (c == '{') {
                std::string key = parse_json(s, i).str;
                ws();
                if (s[(*i)++] != ':') throw std::runtime_error("expected ':'");
                v.obj.emplace_back(std::move(key), parse_json(s, i));
            } else {
                v.arr.push_back(parse_json(s, i));
            }
            ws();
            if (*i < s.size() && s[*i] == ',') ++*i;
        }
        ++*i;
    } else if (c == '"') {
        for (++*i; *i < s.size() && s[*i] != '"';) {
            char ch = s[(*i)++];
            if (ch != '\\') {
                v.str.push_back(ch);
                continue;
            }
            ch = s[(*i)++];
            if (ch == 'u') {
                uint32_t cp = hex4();
                if (cp >= 0xD800 && cp < 0xDC00 && s.compare(*i, 2, "\\u") == 0) {
                    *i += 2;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
                }
                fq::unicode::append_utf8(v.str, cp);
            } else {
                const char *from = "nrtbf", *to = "\n\r\t\b\f";
                const char *k = std::strchr(from, ch);
                v.str.push_back(k ? to[k - from] : ch);  // \" \\ \/ stand for themselves
            }
        }
        ++*i;
    } else if (s.compare(*i, 4, "true") == 0 || s.compare(*i, 4, "null") == 0) {
        v.num = c == 't';
        *i += 4;
    } else if (s.compare(*i, 5, "false") == 0) {
        *i += 5;
    } else {
        size_t used = 0;
        v.num = std::stod(s.substr(*i, 64), &used);
        *i += used;
    }
    return v;
}

std::string unhex(const std::string &h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

// Golden file tokens.json (tools/goldens/make_goldens.py): {"n_vocab", "bos_id", "eos_id", "add_bos_default",
// "add_special_tokens": false, "cases": [{"name", "text_hex", "ids", "decoded_hex", ...}]}; decoded_hex is
// Hugging Face's decode with skip_special_tokens=True.
void check_golden(const std::string &folder, const std::string &model_path) {
    const std::string path = fq::test::source_dir() + "/native/tests/golden/" + folder + "/tokens.json";
    if (!fq::test::file_exists(path)) GTEST_SKIP() << "no golden file " << path;
    if (model_path.empty() || !fq::test::file_exists(model_path)) GTEST_SKIP() << "model not available: " << model_path;
    const std::string text = fq::test::read_file(path);
    size_t pos = 0;
    const Json root = parse_json(text, &pos);
    auto tok = load(model_path);
    ASSERT_NE(root.get("n_vocab"), nullptr);
    EXPECT_EQ(tok->n_vocab(), static_cast<int32_t>(root.get("n_vocab")->num));
    EXPECT_EQ(tok->bos_id(), static_cast<int32_t>(root.get("bos_id")->num));
    EXPECT_EQ(tok->eos_id(), static_cast<int32_t>(root.get("eos_id")->num));
    EXPECT_EQ(tok->add_bos_default(), root.get("add_bos_default")->num != 0);
    const Json *cases = root.get("cases");
    ASSERT_NE(cases, nullptr);
    ASSERT_FALSE(cases->arr.empty());
    for (const Json &c : cases->arr) {
        const std::string name = c.get("name")->str;
        const std::string input = unhex(c.get("text_hex")->str);
        std::vector<int32_t> expected;
        for (const Json &id : c.get("ids")->arr) expected.push_back(static_cast<int32_t>(id.num));
        const std::vector<int32_t> ids = tok->encode(input, false);
        EXPECT_EQ(ids, expected) << folder << " case " << name;
        if (const Json *dec = c.get("decoded_hex")) {
            EXPECT_EQ(tok->decode(expected), unhex(dec->str)) << name;
        }
    }
}

}  // namespace

// ---- Unicode tables and helpers -------------------------------------------------------------------------------------

TEST(TokenizerUnicode, CategoriesMatchTheUnicodeDatabase) {
    using fq::unicode::Category;
    using fq::unicode::category;
    EXPECT_STREQ(fq::unicode::unicode_version(), "16.0.0");
    EXPECT_EQ(category('A'), Category::Lu);
    EXPECT_EQ(category('z'), Category::Ll);
    EXPECT_EQ(category('7'), Category::Nd);
    EXPECT_EQ(category(' '), Category::Zs);
    EXPECT_EQ(category('\n'), Category::Cc);
    EXPECT_EQ(category(0x00E9), Category::Ll);   // é
    EXPECT_EQ(category(0x0301), Category::Mn);   // combining acute
    EXPECT_EQ(category(0x01C5), Category::Lt);   // ǅ
    EXPECT_EQ(category(0x02B0), Category::Lm);   // ʰ
    EXPECT_EQ(category(0x4E2D), Category::Lo);   // 中
    EXPECT_EQ(category(0x0663), Category::Nd);   // Arabic-Indic three
    EXPECT_EQ(category(0x2160), Category::Nl);   // Roman numeral one
    EXPECT_EQ(category(0x00BD), Category::No);   // ½
    EXPECT_EQ(category(0x1F600), Category::So);  // 😀
    EXPECT_EQ(category(0x1C89), Category::Lu);   // Cyrillic TJE, new in Unicode 16.0
    EXPECT_EQ(category(0x0378), Category::Cn);   // unassigned
    EXPECT_EQ(category(0xE000), Category::Co);
    EXPECT_EQ(category(0x10FFFF), Category::Cn);
    EXPECT_EQ(category(fq::unicode::kInvalid), Category::Cn);
    for (uint32_t cp : {0x09u, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au, 0x2028u, 0x202Fu, 0x3000u})
        EXPECT_TRUE(fq::unicode::is_white_space(cp)) << cp;
    for (uint32_t cp : {0x1Cu, 0x200Bu, 0x180Eu, 0xFEFFu, 0x41u}) EXPECT_FALSE(fq::unicode::is_white_space(cp)) << cp;
}

TEST(TokenizerUnicode, Utf8DecodingIsStrict) {
    auto dec = [](const std::string &s, size_t *len) { return fq::unicode::decode_utf8(s.data(), s.size(), len); };
    size_t len = 0;
    EXPECT_EQ(dec("\xF0\x9F\x98\x80", &len), 0x1F600u);
    EXPECT_EQ(len, 4u);
    EXPECT_EQ(dec("\xE4\xB8\xAD", &len), 0x4E2Du);
    EXPECT_EQ(len, 3u);
    // overlong, surrogate, above U+10FFFF, truncated, stray continuation byte: one invalid byte each
    for (const char *bad : {"\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xB8", "\x80", "\xFF"}) {
        EXPECT_EQ(dec(bad, &len), fq::unicode::kInvalid) << bad;
        EXPECT_EQ(len, 1u);
    }
}

TEST(TokenizerUnicode, Gpt2ByteMapIsTheReversibleGpt2Alphabet) {
    // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100.. in byte order.
    EXPECT_EQ(fq::unicode::byte_to_char('A'), 0x41u);
    EXPECT_EQ(fq::unicode::byte_to_char(0x00), 0x100u);
    EXPECT_EQ(fq::unicode::byte_to_char('\n'), 0x10Au);  // Ċ
    EXPECT_EQ(fq::unicode::byte_to_char(' '), 0x120u);   // Ġ
    EXPECT_EQ(fq::unicode::byte_to_char(0x7F), 0x121u);
    EXPECT_EQ(fq::unicode::byte_to_char(0xAD), 0x143u);
    for (int b = 0; b < 256; ++b) EXPECT_EQ(fq::unicode::char_to_byte(fq::unicode::byte_to_char(uint8_t(b))), b);
    EXPECT_EQ(fq::unicode::char_to_byte(0x144), -1);
    EXPECT_EQ(fq::unicode::char_to_byte(' '), -1);
}

// ---- pre-tokenizers -------------------------------------------------------------------------------------------------

TEST(TokenizerPreTokenize, PiecesMatchHuggingFaceRegexes) {
    for (const PreCase &c : kPreCases) {
        std::vector<std::pair<size_t, size_t>> ranges;
        fq::tok::pretokenize(c.kind, c.text, &ranges);
        std::vector<std::string> pieces;
        for (const auto &r : ranges) pieces.push_back(c.text.substr(r.first, r.second - r.first));
        EXPECT_EQ(pieces, c.pieces) << "kind " << int(c.kind) << " text '" << c.text << "'";
    }
}

TEST(TokenizerPreTokenize, InvalidBytesArePunctuationAndCovered) {
    const std::string text = "ab\xFF\xFE cd\xC3";
    std::vector<std::pair<size_t, size_t>> ranges;
    fq::tok::pretokenize(PreTokenizer::Gpt2, text, &ranges);
    const std::vector<std::pair<size_t, size_t>> expected = {{0, 2}, {2, 4}, {4, 7}, {7, 8}};
    EXPECT_EQ(ranges, expected);
}

// ---- the merge loop and a hand-built SentencePiece vocabulary --------------------------------------------------------

TEST(TokenizerMerges, LowestRankFirstAndLeftmostOnTies) {
    fq::tok::MergeTable merges;
    merges.set(0, 0, /*rank=*/1, /*new_id=*/10);  // a a -> aa
    merges.set(1, 2, 0, 11);                      // b c -> bc
    merges.set(0, 11, 2, 12);                     // a bc -> abc
    fq::tok::MergeScratch scratch;
    std::vector<int32_t> s = {0, 0, 0};  // aaa: the left pair merges first
    fq::tok::apply_merges(merges, &s, &scratch);
    EXPECT_EQ(s, (std::vector<int32_t>{10, 0}));
    s = {0, 1, 2, 0, 0};  // a b c a a: bc (rank 0), then aa (rank 1), then a+bc (rank 2)
    fq::tok::apply_merges(merges, &s, &scratch);
    EXPECT_EQ(s, (std::vector<int32_t>{12, 10}));
}

VocabData tiny_spm() {
    VocabData v;
    v.model = "llama";
    // Expected results below follow Hugging Face's recovered merges: ab (-1), bb (-1.5), ▁a (-2), then for ▁ab the
    // split with the longer left part (▁a + b) before ▁ + ab.
    v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "a", "\xE2\x96\x81" "ab", "bb",
                "<0x7A>", "<0xC3>", "<0xA9>"};
    v.scores = {0, 0, 0, 0, 0, 0, -1, -2, -3, -1.5f, 0, 0, 0};
    v.token_types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6, 6};
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    return v;
}

TEST(TokenizerSpm, HandBuiltVocabulary) {
    auto tok = Tokenizer::from_vocab(tiny_spm());
    using V = std::vector<int32_t>;
    EXPECT_TRUE(tok->add_bos_default());  // absent flag: SentencePiece vocabularies get BOS
    EXPECT_EQ(tok->encode("ab", false), V({8}));
    EXPECT_EQ(tok->encode("abb", false), V({8, 5}));
    EXPECT_EQ(tok->encode("bbb", false), V({3, 9, 5}));       // ▁b is no token; the left bb merges first
    EXPECT_EQ(tok->encode(" a", false), V({7}));              // already starts with ▁: no second one
    EXPECT_EQ(tok->encode("a b", false), V({7, 3, 5}));
    EXPECT_EQ(tok->encode("z\xC3\xA9q", false), V({3, 10, 11, 12}));  // byte fallback; q has no byte token
    EXPECT_EQ(tok->encode("<s>a</s>", true), V({1, 1, 4, 2}));         // no prefix after a special token
    EXPECT_EQ(tok->encode("a<unk>", false), V({7, 0}));
    EXPECT_EQ(tok->decode(V{1, 7, 3, 5, 2}), "a b");
    EXPECT_EQ(tok->decode(V{10, 11, 12, 0}), "z\xC3\xA9");
    EXPECT_EQ(tok->piece(7), " a");
    EXPECT_EQ(tok->piece(1), "");
    VocabData no_prefix = tiny_spm();
    no_prefix.add_space_prefix = 0;
    no_prefix.add_bos = 0;
    auto tok2 = Tokenizer::from_vocab(no_prefix);
    EXPECT_FALSE(tok2->add_bos_default());
    EXPECT_EQ(tok2->encode("ab", false), V({6}));
    EXPECT_EQ(tok2->decode(V{3, 6}), " ab");
}

TEST(TokenizerBpe, HandBuiltByteLevelVocabulary) {
    VocabData v;
    v.model = "gpt2";
    for (int b = 0; b < 256; ++b) {  // ids 0..255: the byte characters in byte order
        std::string ch;
        fq::unicode::append_utf8(ch, fq::unicode::byte_to_char(uint8_t(b)));
        v.tokens.push_back(ch);
    }
    const std::string G = "\xC4\xA0";  // Ġ (space)
    const std::string a_uml = "\xC3\xA4", cedilla = "\xC2\xB8", n_acute = "\xC5\x83";  // bytes E4 B8 AD
    // 260 is stored in the byte alphabet; 261 ("中" = E4 B8 AD) is stored as plain text and must be respelled.
    v.tokens.insert(v.tokens.end(), {G + "t", "he", G + "the", "<|end|>", a_uml + cedilla, "\xE4\xB8\xAD"});
    v.token_types.assign(v.tokens.size(), 1);
    v.token_types[259] = 3;
    v.merges = {G + " t", "h e", G + "t he", a_uml + " " + cedilla, a_uml + cedilla + " " + n_acute};
    v.eos_id = 259;
    auto tok = Tokenizer::from_vocab(v);
    using V = std::vector<int32_t>;
    EXPECT_FALSE(tok->add_bos_default());
    EXPECT_EQ(tok->pre_name(), "default");
    EXPECT_EQ(tok->encode(" the<|end|>x", false), V({258, 259, 'x'}));
    EXPECT_EQ(tok->encode("\xE4\xB8\xAD\xE4\xB8", false), V({261, 260}));
    EXPECT_EQ(tok->decode(V{261}), "\xE4\xB8\xAD");
    EXPECT_EQ(tok->decode(V{258, 259, 'x'}), " thex");
    EXPECT_EQ(tok->encode("\xFF", false), V({0xFF}));
}

// ---- the real vocabularies ------------------------------------------------------------------------------------------

TEST(TokenizerStories, MetadataAndHuggingFaceIds) {
    auto tok = load(fq::test::stories_path());
    EXPECT_EQ(tok->model_name(), "llama");
    EXPECT_EQ(tok->n_vocab(), 512);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->unk_id(), 0);
    EXPECT_TRUE(tok->add_bos_default());  // the file has no add_bos_token
    EXPECT_EQ(tok->token_type(3), fq::kTokenByte);
    check_cases(*tok, kStoriesCases);
}

TEST(TokenizerSmolLM2, MetadataAndHuggingFaceIds) {
    if (smollm_path().empty()) GTEST_SKIP() << "SmolLM2 GGUF not available (set FQ_SMOLLM2_GGUF)";
    auto tok = load(smollm_path());
    EXPECT_EQ(tok->model_name(), "gpt2");
    EXPECT_EQ(tok->pre_name(), "smollm");
    EXPECT_EQ(tok->n_vocab(), 49152);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_FALSE(tok->add_bos_default());
    check_cases(*tok, kSmolCases);
    // Control tokens decode to nothing, and the token count stays within the C ABI's text_len + 2 bound.
    EXPECT_EQ(tok->decode(tok->encode("<|im_start|>user\nhi<|im_end|>", true)), "user\nhi");
    EXPECT_EQ(tok->piece(1), "");
}

TEST(TokenizerSmolLM2, OtherPreTokenizersOnTheSameVocabulary) {
    if (smollm_path().empty()) GTEST_SKIP() << "SmolLM2 GGUF not available (set FQ_SMOLLM2_GGUF)";
    VocabData v = read_vocab(smollm_path());
    struct Variant {
        const char *pre;
        const IdCase *cases;
        size_t n;
        bool add_bos;  // llama.cpp's default when the file is silent
    };
    const Variant variants[] = {{"llama-bpe", kLlama3Cases, std::size(kLlama3Cases), true},
                                {"qwen2", kQwen2Cases, std::size(kQwen2Cases), false},
                                {"default", kGpt2Cases, std::size(kGpt2Cases), false}};
    for (const Variant &var : variants) {
        v.pre = var.pre;
        auto tok = Tokenizer::from_vocab(v);
        EXPECT_EQ(tok->add_bos_default(), var.add_bos) << var.pre;
        for (size_t k = 0; k < var.n; ++k) {
            EXPECT_EQ(tok->encode(var.cases[k].text, false), var.cases[k].ids) << var.pre << " " << var.cases[k].name;
            if (var.cases[k].round_trips) {
                EXPECT_EQ(tok->decode(tok->encode(var.cases[k].text, false)), var.cases[k].text) << var.pre;
            }
        }
    }
}

TEST(TokenizerInvalidUtf8, BytesBecomeByteTokensAndDecodeBack) {
    const std::string text = "ok\xFF\xC3(\xE4\xB8 \xED\xA0\x80!";  // stray, truncated and surrogate sequences
    auto stories = load(fq::test::stories_path());
    std::vector<int32_t> ids = stories->encode(text, false);
    EXPECT_LE(ids.size(), text.size() + 1);
    for (const char *byte_token : {"<0xFF>", "<0xC3>", "<0xE4>", "<0xB8>", "<0xED>", "<0xA0>", "<0x80>"}) {
        const int32_t id = id_of(*stories, byte_token);
        EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end()) << byte_token;
    }
    EXPECT_EQ(stories->decode(ids), text);
    if (smollm_path().empty()) return;
    auto smol = load(smollm_path());
    ids = smol->encode(text, false);
    EXPECT_LE(ids.size(), text.size());
    // SmolLM2's vocabulary has no token for byte 0xFF (nor for 0xC0, 0xC1, 0xF1, 0xF2, 0xF5..0xFE and five control
    // characters): such bytes are dropped, as Hugging Face drops characters without a token. The others survive.
    ASSERT_EQ(id_of(*smol, "\xC3\xBF"), -1);
    EXPECT_EQ(smol->decode(ids), "ok\xC3(\xE4\xB8 \xED\xA0\x80!");
    EXPECT_EQ(smol->encode("\x04\xF1", false), std::vector<int32_t>());
}

TEST(TokenizerErrors, RefusedVocabularies) {
    VocabData v = tiny_spm();
    v.model = "bert";
    expect_status([&] { Tokenizer::from_vocab(v); }, FQ_STATUS_UNSUPPORTED);
    v = tiny_spm();
    v.architecture = "gemma2";
    expect_status([&] { Tokenizer::from_vocab(v); }, FQ_STATUS_UNSUPPORTED);
    v = tiny_spm();
    v.token_types.pop_back();
    expect_status([&] { Tokenizer::from_vocab(v); }, FQ_STATUS_MODEL_FORMAT);
    v = tiny_spm();
    v.scores.clear();
    expect_status([&] { Tokenizer::from_vocab(v); }, FQ_STATUS_MODEL_FORMAT);
    v = tiny_spm();
    v.tokens.clear();
    v.scores.clear();
    v.token_types.clear();
    expect_status([&] { Tokenizer::from_vocab(v); }, FQ_STATUS_MODEL_FORMAT);
    VocabData b;
    b.model = "gpt2";
    b.pre = "some-new-pre";
    b.tokens = {"a", "b"};
    expect_status([&] { Tokenizer::from_vocab(b); }, FQ_STATUS_UNSUPPORTED);
    auto tok = Tokenizer::from_vocab(tiny_spm());
    const int32_t bad[] = {4, 13};
    expect_status([&] { tok->decode(bad, 2); }, FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { tok->piece(-1); }, FQ_STATUS_INVALID_ARGUMENT);
}

TEST(TokenizerWikiText, WholeTestSplitMatchesHuggingFace) {
    const std::string text = fq::test::read_file(wikitext_path());
    ASSERT_EQ(text.size(), 1290590u) << wikitext_path();
    auto stories = load(fq::test::stories_path());
    std::vector<int32_t> ids = stories->encode(text, false);
    EXPECT_EQ(ids.size(), kWikiStoriesCount);
    EXPECT_EQ(fnv1a(ids), kWikiStoriesFnv);
    if (smollm_path().empty()) GTEST_SKIP() << "SmolLM2 GGUF not available (set FQ_SMOLLM2_GGUF)";
    auto smol = load(smollm_path());
    const auto t0 = std::chrono::steady_clock::now();
    ids = smol->encode(text, false);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(ids.size(), kWikiSmolCount);
    EXPECT_EQ(fnv1a(ids), kWikiSmolFnv);
    // Speed is a benchmark's business, not a test's (a loaded CI machine or a sanitizer build is slow): printed only.
    std::printf("[ tokenizer ] SmolLM2 BPE, WikiText-2 test: %zu ids in %.2f s\n", ids.size(), seconds);
    EXPECT_EQ(smol->decode(ids), text);  // byte-level BPE loses nothing
}

TEST(TokenizerThreads, ConcurrentEncodesAgree) {
    auto tok = load(fq::test::stories_path());
    const std::string text = kStoriesCases[1].text;
    std::vector<std::vector<int32_t>> out(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < out.size(); ++t) {
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 20; ++rep) out[t] = tok->encode(text, false);
        });
    }
    for (auto &th : threads) th.join();
    for (const auto &ids : out) EXPECT_EQ(ids, kStoriesCases[1].ids);
}

TEST(TokenizerGoldens, StoriesTokensJson) { check_golden("stories260K", fq::test::stories_path()); }
TEST(TokenizerGoldens, SmolLM2TokensJson) { check_golden("smollm2-135m-instruct-q4_1", smollm_path()); }
