// The small JSON subset a safetensors header needs: objects, arrays, strings (with escapes), integers, and
// true/false/null for tolerance. Strict: trailing commas, comments, non-integer numbers, duplicate keys, nesting
// deeper than 16 and trailing bytes are refused. Errors throw FQ_STATUS_MODEL_FORMAT naming `what` and the byte
// offset.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fq::quant::json {

struct Value {
    enum Kind { Null, Bool, Int, String, Array, Object } kind = Null;
    bool b = false;
    int64_t i = 0;
    std::string s;
    std::vector<Value> arr;
    std::vector<std::pair<std::string, Value>> obj;  // in file order

    const Value *find(const std::string &key) const;
};

Value parse(const std::string &text, const std::string &what);

// A JSON string literal (quotes included) for s, escaping quotes, backslashes and control characters.
std::string quote(const std::string &s);

}  // namespace fq::quant::json
