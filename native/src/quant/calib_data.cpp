#include "quant/calib_data.h"

#include <random>

#include "core/error.h"

namespace fq::quant {

std::string wikitext_rows_joined(const std::string &raw) {
    std::string out;
    out.reserve(raw.size() + raw.size() / 8);
    bool first = true;
    size_t pos = 0;
    while (pos < raw.size()) {
        size_t end = pos;
        while (end < raw.size() && raw[end] != '\n' && raw[end] != '\r') end++;
        if (end < raw.size()) end += (raw[end] == '\r' && end + 1 < raw.size() && raw[end + 1] == '\n') ? 2 : 1;
        bool blank = true;
        for (size_t i = pos; i < end && blank; i++) {
            const char c = raw[i];
            blank = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
        }
        if (!first) out += "\n\n";
        first = false;
        if (!blank) out.append(raw, pos, end - pos);
        pos = end;
    }
    return out;
}

std::vector<int64_t> window_offsets(int64_t n_tokens, int32_t nsamples, int32_t seqlen, uint64_t seed) {
    FQ_CHECK(nsamples >= 1 && seqlen >= 1, FQ_STATUS_INVALID_ARGUMENT, "window_offsets: bad nsamples %d or seqlen %d",
             nsamples, seqlen);
    FQ_CHECK(n_tokens >= int64_t{seqlen} + 1, FQ_STATUS_INVALID_ARGUMENT,
             "the calibration text has %lld tokens, fewer than one window of %d tokens plus one", (long long)n_tokens,
             seqlen);
    std::mt19937_64 gen(seed);
    std::uniform_int_distribution<int64_t> dist(0, n_tokens - seqlen - 1);
    std::vector<int64_t> off(static_cast<size_t>(nsamples));
    for (auto &o : off) o = dist(gen);
    return off;
}

std::vector<int32_t> sample_windows(const std::vector<int32_t> &stream, int32_t nsamples, int32_t seqlen,
                                    uint64_t seed) {
    const std::vector<int64_t> off = window_offsets(static_cast<int64_t>(stream.size()), nsamples, seqlen, seed);
    std::vector<int32_t> w;
    w.reserve(static_cast<size_t>(nsamples) * seqlen);
    for (int64_t o : off) w.insert(w.end(), stream.begin() + o, stream.begin() + o + seqlen);
    return w;
}

std::vector<int32_t> calibration_windows(const Model &model, const std::string &text, const CalibOptions &options) {
    FQ_CHECK(model.tokenizer != nullptr, FQ_STATUS_INVALID_ARGUMENT, "the model has no tokenizer");
    const Tokenizer &tok = *model.tokenizer;
    const std::vector<int32_t> stream = tok.encode(text, tok.add_bos_default() && tok.bos_id() >= 0);
    return sample_windows(stream, options.nsamples, options.seqlen, options.seed);
}

}  // namespace fq::quant
