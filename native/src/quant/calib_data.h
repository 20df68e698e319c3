// Calibration data (spec section 6.1): a token stream cut into nsamples windows of seqlen tokens at seeded random
// offsets. The official default text is the WikiText-2 rows as Hugging Face datasets serves them, joined with
// "\n\n"; here the validation split stands in for train (which is not available), and any text may be used.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/quant_config.h"

namespace fq::quant {

// The Hugging Face rows of a raw WikiText-2 file (wiki.*.raw), joined with "\n\n": every line keeps its line break,
// and a line of only whitespace becomes the empty row (shared/data/SOURCES.md; for wiki.valid.raw the result has
// SHA-256 b44fb967...). Line breaks are "\n", "\r\n" or "\r".
std::string wikitext_rows_joined(const std::string &raw);

// Start offsets of nsamples windows: uniform integers in [0, n_tokens - seqlen - 1], both ends included (python's
// random.randint bounds), drawn from std::mt19937_64(seed) through std::uniform_int_distribution. The stream is ours,
// not Python's. Throws INVALID_ARGUMENT when the stream has fewer than seqlen + 1 tokens.
std::vector<int64_t> window_offsets(int64_t n_tokens, int32_t nsamples, int32_t seqlen, uint64_t seed);

// The windows themselves: [nsamples][seqlen] token ids, row-major.
std::vector<int32_t> sample_windows(const std::vector<int32_t> &stream, int32_t nsamples, int32_t seqlen,
                                    uint64_t seed);

// Tokenizes text with the model's tokenizer (a BOS in front when the model adds one by default, as the official
// tokenizer call does) and samples options.nsamples windows of options.seqlen tokens with options.seed.
std::vector<int32_t> calibration_windows(const Model &model, const std::string &text, const CalibOptions &options);

}  // namespace fq::quant
