// The whole model path against Hugging Face transformers (tools/goldens/make_goldens.py; native/tests/golden/):
// logits of short sequences, perplexity on a WikiText-2 test slice, and greedy continuations, for stories260K and the
// default model SmolLM2-135M. The reference is transformers' float64 run, so float32 noise on our side is the only
// expected difference: logits within 1e-4 of the largest logit, perplexity within 0.1%.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "core/threadpool.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/model.h"
#include "support/json.h"
#include "support/paths.h"

namespace {

using fq::test::Json;

std::vector<double> unhex_f64(const std::string &hex) {
    std::vector<double> out(hex.size() / 16);
    for (size_t i = 0; i < out.size(); ++i) {
        uint64_t bits = 0;
        for (int b = 0; b < 8; ++b)
            bits |= static_cast<uint64_t>(std::stoul(hex.substr(i * 16 + b * 2, 2), nullptr, 16)) << (8 * b);
        std::memcpy(&out[i], &bits, sizeof(double));
    }
    return out;
}

// The Hugging Face rows of a wikitext-2-raw split joined with "\n\n" (data/SOURCES.md), as UTF-8.
std::string wikitext_joined(const std::string &raw) {
    std::vector<std::string> rows;
    size_t start = 0;
    while (start < raw.size()) {
        size_t nl = raw.find('\n', start);
        size_t end = nl == std::string::npos ? raw.size() : nl + 1;
        std::string line = raw.substr(start, end - start);
        bool blank = line.find_first_not_of(" \t\r\n") == std::string::npos;
        rows.push_back(blank ? std::string() : line);
        start = end;
    }
    std::string out;
    for (size_t i = 0; i < rows.size(); ++i) out += (i ? "\n\n" : "") + rows[i];
    return out;
}

// The first n_chars code points of a UTF-8 string (Python's text[:n]).
std::string utf8_prefix(const std::string &s, int64_t n_chars) {
    size_t i = 0;
    for (int64_t c = 0; c < n_chars && i < s.size(); ++c) {
        unsigned char b = static_cast<unsigned char>(s[i]);
        i += b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    }
    return s.substr(0, i);
}

struct GoldenModel {
    std::string name;     // folder under native/tests/golden
    std::string path;     // model file; empty when unavailable
    bool slow;            // skipped when FQ_SKIP_SLOW is set
};

class Golden : public ::testing::TestWithParam<GoldenModel> {
  protected:
    void SetUp() override {
        const GoldenModel &g = GetParam();
        if (g.path.empty() || !fq::test::file_exists(g.path)) GTEST_SKIP() << g.name << ": model file not available";
        if (g.slow && fq::test::skip_slow()) GTEST_SKIP() << g.name << ": slow, and FQ_SKIP_SLOW is set";
        dir = fq::test::source_dir() + "/native/tests/golden/" + g.name + "/";
        model = fq::load_gguf_model(g.path, {});
    }
    Json load(const std::string &file) { return Json::parse(fq::test::read_file(dir + file)); }
    bool has(const std::string &file) { return fq::test::file_exists(dir + file); }

    std::string dir;
    std::unique_ptr<fq::Model> model;
    fq::ThreadPool pool{0};
};

TEST_P(Golden, ModelFileIsTheOneTheGoldensCameFrom) {
    Json j = load("logits.json");
    EXPECT_EQ(model->fingerprint(), j["model_sha256"].str);
}

TEST_P(Golden, LogitsMatchTransformers) {
    ASSERT_TRUE(has("logits.json")) << "golden file missing: " << dir << "logits.json (tools/goldens/make_goldens.py)";
    Json j = load("logits.json");
    const int64_t V = model->config.n_vocab;
    ASSERT_EQ(V, j["n_vocab"].as_int());
    std::vector<int32_t> cols = j["column_ids"].as_int32s();
    for (const Json &seq : j["sequences"].arr) {
        std::vector<int32_t> ids = seq["ids"].as_int32s();
        std::vector<float> logits(ids.size() * V);
        fq::KVCache cache;
        cache.init(model->config, static_cast<int32_t>(ids.size()));
        fq::forward(*model, pool, ids.data(), ids.size(), cache, fq::LogitsWanted::All,
                    [&](int64_t r0, int64_t rows, const float *lg) { std::copy_n(lg, rows * V, &logits[r0 * V]); });
        const Json &ref = seq["f64"];
        const double scale = seq["max_abs_logit_f64"].num;
        for (size_t p = 0; p < ids.size(); ++p) {
            std::vector<double> want = unhex_f64(ref["logits_hex"][p].str);
            ASSERT_EQ(want.size(), cols.size());
            double max_err = 0;
            for (size_t c = 0; c < cols.size(); ++c)
                max_err = std::max(max_err, std::fabs(logits[p * V + cols[c]] - want[c]));
            EXPECT_LE(max_err, 1e-4 * scale) << seq["text"].str << " position " << p;
            double mx = -1e300, z = 0;
            int64_t best = 0;
            for (int64_t t = 0; t < V; ++t) {
                mx = std::max(mx, (double)logits[p * V + t]);
                if (logits[p * V + t] > logits[p * V + best]) best = t;
            }
            for (int64_t t = 0; t < V; ++t) z += std::exp(logits[p * V + t] - mx);
            EXPECT_NEAR(mx + std::log(z), ref["logsumexp"][p].num, 1e-4 * scale) << "position " << p;
            EXPECT_EQ(best, ref["argmax"][p].as_int()) << "position " << p;
        }
    }
}

TEST_P(Golden, PerplexityOnAWikiTextSliceMatchesTransformers) {
    ASSERT_TRUE(has("ppl.json")) << "golden file missing: " << dir << "ppl.json (tools/goldens/make_goldens.py)";
    Json j = load("ppl.json");
    std::string joined = wikitext_joined(fq::test::read_file(fq::test::source_dir() + "/data/wikitext-2-raw/wiki.test.raw"));
    ASSERT_EQ(fq::sha256_hex(joined.data(), joined.size()), j["joined_sha256"].str);
    std::string slice = utf8_prefix(joined, j["slice_chars"].as_int());
    ASSERT_EQ(fq::sha256_hex(slice.data(), slice.size()), j["slice_sha256"].str);
    bool bos = j["add_bos"].b;
    EXPECT_EQ(bos, model->tokenizer->add_bos_default());
    std::vector<int32_t> ids = model->tokenizer->encode(slice, bos);
    ASSERT_EQ(ids, j["token_ids"].as_int32s());
    const int32_t seqlen = static_cast<int32_t>(j["seqlen"].as_int());
    for (const char *key : {"f64_max_chunks_2", "f64"}) {
        const Json &ref = j[key];
        fq::PerplexityResult r = fq::perplexity(*model, pool, ids, seqlen, ref["n_chunks"].as_int(), fq::Progress());
        EXPECT_EQ(r.n_chunks, ref["n_chunks"].as_int());
        EXPECT_EQ(r.n_predicted, ref["n_predicted"].as_int());
        EXPECT_NEAR(r.ppl, ref["ppl"].num, 1e-3 * ref["ppl"].num) << key;
    }
}

TEST_P(Golden, GreedyContinuationMatchesTransformers) {
    ASSERT_TRUE(has("generate.json")) << "golden file missing: " << dir << "generate.json (tools/goldens/make_goldens.py)";
    Json j = load("generate.json");
    std::vector<int32_t> seq = j["prompt_ids"].as_int32s();
    std::vector<int32_t> want = j["new_ids"].as_int32s();
    const Json &margins = j["top2_margin_f64"];
    fq::KVCache cache;
    cache.init(model->config, static_cast<int32_t>(seq.size() + want.size()));
    const int64_t V = model->config.n_vocab;
    std::vector<float> last(V);
    auto keep = [&](int64_t, int64_t, const float *lg) { std::copy_n(lg, V, last.data()); };
    fq::forward(*model, pool, seq.data(), seq.size(), cache, fq::LogitsWanted::Last, keep);
    for (size_t i = 0; i < want.size(); ++i) {
        int32_t best = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
        // Where the reference's top two are closer than float32 noise, the order may legitimately differ; stop there.
        if (margins[i].num < 1e-3) break;
        ASSERT_EQ(best, want[i]) << "new token " << i;
        fq::forward(*model, pool, &best, 1, cache, fq::LogitsWanted::Last, keep);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, Golden,
                         ::testing::Values(GoldenModel{"stories260K", fq::test::stories_path(), false},
                                           GoldenModel{"smollm2-135m-instruct-q4_1", fq::test::smollm2_path(), true}),
                         [](const auto &info) { return info.param.name == "stories260K" ? "Stories260K" : "SmolLM2"; });

}  // namespace
