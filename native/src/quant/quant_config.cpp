#include "quant/quant_config.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"
#include "quant/fake_quant.h"

namespace fq::quant {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return s;
}

// Reads the decimal number at s[pos...] into *out; false when there is none or it is absurdly long.
bool read_int(const std::string &s, size_t &pos, int *out) {
    size_t start = pos;
    long v = 0;
    while (pos < s.size() && std::isdigit((unsigned char)s[pos]) && pos - start < 3) v = v * 10 + (s[pos++] - '0');
    if (pos == start || (pos < s.size() && std::isdigit((unsigned char)s[pos]))) return false;
    *out = (int)v;
    return true;
}

bool valid_bits(int b) { return (b >= 2 && b <= 8) || b == 16; }

}  // namespace

QuantBits parse_bits(const std::string &text) {
    const std::string s = lower(text);
    QuantBits b;
    size_t pos = 0;
    bool ok = pos < s.size() && s[pos++] == 'w' && read_int(s, pos, &b.w) && pos < s.size() && s[pos++] == 'a' &&
              read_int(s, pos, &b.a);
    if (ok && pos < s.size()) {
        ok = s.compare(pos, 2, "kv") == 0;
        pos += 2;
        int kv = 16;
        ok = ok && read_int(s, pos, &kv) && pos == s.size();
        b.k = b.v = kv;
    }
    FQ_CHECK(ok, FQ_STATUS_INVALID_ARGUMENT,
             "bad quantization configuration '%s': expected w<bits>a<bits>[kv<bits>], e.g. w4a4kv4 or w4a16",
             text.c_str());
    FQ_CHECK(valid_bits(b.w) && valid_bits(b.a) && valid_bits(b.k), FQ_STATUS_INVALID_ARGUMENT,
             "bad quantization configuration '%s': every width must be 2..8 or 16 (off)", text.c_str());
    return b;
}

std::string bits_name(const QuantBits &b) {
    std::string s = "w" + std::to_string(b.w) + "a" + std::to_string(b.a);
    if (b.k != 16 || b.v != 16) {
        s += b.k == b.v ? "kv" + std::to_string(b.k) : "k" + std::to_string(b.k) + "v" + std::to_string(b.v);
    }
    return s;
}

Method parse_method(const std::string &text) {
    const std::string s = lower(text);
    if (s == "rtn") return Method::Rtn;
    if (s == "rotate") return Method::Rotate;
    if (s == "flatquant") return Method::FlatQuant;
    FQ_FAIL(FQ_STATUS_INVALID_ARGUMENT, "unknown method '%s' (expected rtn, rotate or flatquant)", text.c_str());
}

const char *method_name(Method m) {
    switch (m) {
        case Method::Rtn: return "rtn";
        case Method::Rotate: return "rotate";
        case Method::FlatQuant: return "flatquant";
    }
    return "?";
}

WeightQuantizer parse_weight_quantizer(const std::string &text) {
    const std::string s = lower(text);
    if (s == "rtn") return WeightQuantizer::Rtn;
    if (s == "gptq") return WeightQuantizer::Gptq;
    FQ_FAIL(FQ_STATUS_INVALID_ARGUMENT, "unknown weight quantizer '%s' (expected rtn or gptq)", text.c_str());
}

const char *weight_quantizer_name(WeightQuantizer w) { return w == WeightQuantizer::Gptq ? "gptq" : "rtn"; }

void validate(const QuantScheme &s) {
    for (int b : {s.bits.w, s.bits.a, s.bits.k, s.bits.v}) check_quant_bits(b);
}

void validate(const CalibOptions &o) {
    FQ_CHECK(o.nsamples >= 1 && o.nsamples <= (1 << 20), FQ_STATUS_INVALID_ARGUMENT,
             "nsamples %d must be between 1 and 1048576", o.nsamples);
    FQ_CHECK(o.seqlen >= 2 && o.seqlen <= (1 << 20), FQ_STATUS_INVALID_ARGUMENT,
             "seqlen %d must be between 2 and 1048576", o.seqlen);
    FQ_CHECK(o.batch >= 1 && o.batch <= o.nsamples, FQ_STATUS_INVALID_ARGUMENT,
             "batch %d must be between 1 and nsamples (%d)", o.batch, o.nsamples);
    FQ_CHECK(o.epochs >= 0 && o.epochs <= 100000, FQ_STATUS_INVALID_ARGUMENT,
             "epochs %d must be between 0 and 100000", o.epochs);
    FQ_CHECK(std::isfinite(o.flat_lr) && o.flat_lr >= 0, FQ_STATUS_INVALID_ARGUMENT, "flat_lr %g must be >= 0",
             o.flat_lr);
    FQ_CHECK(o.diag_alpha >= 0 && o.diag_alpha <= 1, FQ_STATUS_INVALID_ARGUMENT, "diag_alpha %g must be in [0, 1]",
             o.diag_alpha);
    FQ_CHECK(o.percdamp > 0 && o.percdamp < 10, FQ_STATUS_INVALID_ARGUMENT, "percdamp %g must be in (0, 10)",
             o.percdamp);
    FQ_CHECK(o.gptq_blocksize >= 1 && o.gptq_blocksize <= 4096, FQ_STATUS_INVALID_ARGUMENT,
             "gptq_blocksize %d must be in [1, 4096]", o.gptq_blocksize);
}

}  // namespace fq::quant
