#include "quant/artifact_json.h"

#include <cstdio>
#include <limits>
#include <set>

#include "core/error.h"

namespace fq::quant::json {

const Value *Value::find(const std::string &key) const {
    for (const auto &kv : obj)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

namespace {

class Parser {
  public:
    Parser(const std::string &t, const std::string &what) : t_(t), what_(what) {}

    Value document() {
        Value v = value(0);
        ws();
        if (p_ != t_.size()) fail("trailing bytes after the JSON value");
        return v;
    }

  private:
    [[noreturn]] void fail(const char *msg) {
        FQ_FAIL(FQ_STATUS_MODEL_FORMAT, "%s: bad JSON header at byte %zu: %s", what_.c_str(), p_, msg);
    }
    void ws() {
        while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) p_++;
    }
    bool eat(char c) {
        ws();
        if (p_ < t_.size() && t_[p_] == c) {
            p_++;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) {
            char msg[32];
            std::snprintf(msg, sizeof msg, "expected '%c'", c);
            fail(msg);
        }
    }
    bool literal(const char *word) {
        const std::string w(word);
        if (t_.compare(p_, w.size(), w) != 0) return false;
        p_ += w.size();
        return true;
    }

    Value value(int depth) {
        if (depth > 16) fail("nested too deeply");
        ws();
        if (p_ >= t_.size()) fail("unexpected end");
        Value v;
        const char c = t_[p_];
        if (c == '{') {
            p_++;
            v.kind = Value::Object;
            std::set<std::string> seen;
            if (eat('}')) return v;
            do {
                ws();
                if (p_ >= t_.size() || t_[p_] != '"') fail("expected a key string");
                std::string key = string();
                if (!seen.insert(key).second) fail("duplicate key");
                expect(':');
                v.obj.emplace_back(std::move(key), value(depth + 1));
            } while (eat(','));
            expect('}');
        } else if (c == '[') {
            p_++;
            v.kind = Value::Array;
            if (eat(']')) return v;
            do {
                v.arr.push_back(value(depth + 1));
            } while (eat(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Value::String;
            v.s = string();
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v.kind = Value::Int;
            v.i = integer();
        } else if (literal("true")) {
            v.kind = Value::Bool;
            v.b = true;
        } else if (literal("false")) {
            v.kind = Value::Bool;
        } else if (!literal("null")) {
            fail("unexpected character");
        }
        return v;
    }

    int64_t integer() {
        const bool neg = t_[p_] == '-';
        if (neg) p_++;
        if (p_ >= t_.size() || t_[p_] < '0' || t_[p_] > '9') fail("bad number");
        if (t_[p_] == '0' && p_ + 1 < t_.size() && t_[p_ + 1] >= '0' && t_[p_ + 1] <= '9') fail("leading zero");
        uint64_t v = 0;
        while (p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9') {
            const uint64_t d = static_cast<uint64_t>(t_[p_++] - '0');
            if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - d) / 10) fail("number out of range");
            v = v * 10 + d;
        }
        if (p_ < t_.size() && (t_[p_] == '.' || t_[p_] == 'e' || t_[p_] == 'E')) fail("only integers are expected");
        return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    }

    void put_utf8(std::string &out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    uint32_t hex4() {
        if (p_ + 4 > t_.size()) fail("short \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            const char h = t_[p_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
            else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }

    std::string string() {
        p_++;  // opening quote
        std::string out;
        for (;;) {
            if (p_ >= t_.size()) fail("unterminated string");
            const char c = t_[p_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (p_ >= t_.size()) fail("unterminated escape");
            const char e = t_[p_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {
                        if (!(p_ + 1 < t_.size() && t_[p_] == '\\' && t_[p_ + 1] == 'u')) fail("lone surrogate");
                        p_ += 2;
                        const uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp < 0xE000) {
                        fail("lone surrogate");
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }

    const std::string &t_;
    const std::string &what_;
    size_t p_ = 0;
};

}  // namespace

Value parse(const std::string &text, const std::string &what) { return Parser(text, what).document(); }

std::string quote(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

}  // namespace fq::quant::json
