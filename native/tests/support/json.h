// A small JSON reader for the tests' golden files (objects, arrays, strings with escapes, numbers, true/false/null).
// Throws std::runtime_error on malformed input.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fq::test {

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<Json> arr;
    std::map<std::string, Json> obj;

    const Json &operator[](const std::string &key) const {
        auto it = obj.find(key);
        if (kind != Object || it == obj.end()) throw std::runtime_error("json: no key " + key);
        return it->second;
    }
    const Json &operator[](size_t i) const {
        if (kind != Array || i >= arr.size()) throw std::runtime_error("json: index out of range");
        return arr[i];
    }
    bool has(const std::string &key) const { return kind == Object && obj.count(key); }
    size_t size() const { return kind == Array ? arr.size() : obj.size(); }
    int64_t as_int() const { return static_cast<int64_t>(num); }
    std::vector<int32_t> as_int32s() const {
        std::vector<int32_t> v;
        for (const auto &e : arr) v.push_back(static_cast<int32_t>(e.num));
        return v;
    }

    static Json parse(const std::string &text) {
        size_t pos = 0;
        Json j = parse_value(text, pos);
        skip_ws(text, pos);
        if (pos != text.size()) throw std::runtime_error("json: trailing characters");
        return j;
    }

  private:
    static void skip_ws(const std::string &s, size_t &p) {
        while (p < s.size() && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) ++p;
    }
    static void expect(const std::string &s, size_t &p, const char *lit) {
        for (const char *c = lit; *c; ++c, ++p)
            if (p >= s.size() || s[p] != *c) throw std::runtime_error(std::string("json: expected ") + lit);
    }
    static void put_utf8(std::string &out, uint32_t cp) {
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
    static uint32_t hex4(const std::string &s, size_t &p) {
        if (p + 4 > s.size()) throw std::runtime_error("json: bad \\u escape");
        uint32_t v = static_cast<uint32_t>(std::stoul(s.substr(p, 4), nullptr, 16));
        p += 4;
        return v;
    }
    static std::string parse_string(const std::string &s, size_t &p) {
        std::string out;
        ++p;  // opening quote
        while (p < s.size() && s[p] != '"') {
            char c = s[p++];
            if (c != '\\') {
                out += c;
                continue;
            }
            if (p >= s.size()) break;
            char e = s[p++];
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
                    uint32_t cp = hex4(s, p);
                    if (cp >= 0xD800 && cp < 0xDC00 && p + 6 <= s.size() && s[p] == '\\' && s[p + 1] == 'u') {
                        p += 2;
                        uint32_t lo = hex4(s, p);
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: throw std::runtime_error("json: bad escape");
            }
        }
        if (p >= s.size()) throw std::runtime_error("json: unterminated string");
        ++p;
        return out;
    }
    static Json parse_value(const std::string &s, size_t &p) {
        skip_ws(s, p);
        if (p >= s.size()) throw std::runtime_error("json: unexpected end");
        Json j;
        char c = s[p];
        if (c == '{') {
            j.kind = Object;
            ++p;
            skip_ws(s, p);
            if (s[p] == '}') return ++p, j;
            for (;;) {
                skip_ws(s, p);
                std::string key = parse_string(s, p);
                skip_ws(s, p);
                expect(s, p, ":");
                j.obj[key] = parse_value(s, p);
                skip_ws(s, p);
                if (s[p] == ',') { ++p; continue; }
                expect(s, p, "}");
                return j;
            }
        }
        if (c == '[') {
            j.kind = Array;
            ++p;
            skip_ws(s, p);
            if (s[p] == ']') return ++p, j;
            for (;;) {
                j.arr.push_back(parse_value(s, p));
                skip_ws(s, p);
                if (s[p] == ',') { ++p; continue; }
                expect(s, p, "]");
                return j;
            }
        }
        if (c == '"') {
            j.kind = String;
            j.str = parse_string(s, p);
            return j;
        }
        if (c == 't') { expect(s, p, "true"); j.kind = Bool; j.b = true; return j; }
        if (c == 'f') { expect(s, p, "false"); j.kind = Bool; return j; }
        if (c == 'n') { expect(s, p, "null"); return j; }
        char *end = nullptr;
        j.kind = Number;
        j.num = std::strtod(s.c_str() + p, &end);
        if (end == s.c_str() + p) throw std::runtime_error("json: bad number");
        p = static_cast<size_t>(end - s.c_str());
        return j;
    }
};

}  // namespace fq::test
