// The C ABI as a caller sees it: status codes and error records for bad input, option structs by size, buffers that
// are too small, cancellation, sessions, and the sampler's distribution against the softmax it should draw from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "flatquant.h"
#include "support/paths.h"

namespace {

struct Fixture : ::testing::Test {
    void SetUp() override {
        fq_error_init(&err);
        fq_runtime_options ro;
        fq_runtime_options_init(&ro);
        ro.n_threads = 2;
        ASSERT_EQ(fq_runtime_create(&ro, &rt, &err), FQ_STATUS_OK) << err.message;
    }
    void TearDown() override {
        fq_model_free(model);
        fq_runtime_free(rt);
    }
    void load_stories() {
        if (!fq::test::file_exists(fq::test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
        ASSERT_EQ(fq_model_load(rt, fq::test::stories_path().c_str(), nullptr, &model, &err), FQ_STATUS_OK)
            << err.message;
    }
    fq_error err;
    fq_runtime *rt = nullptr;
    fq_model *model = nullptr;
};

TEST(Abi, VersionAndNames) {
    EXPECT_EQ(fq_abi_version(), FQ_ABI_VERSION);
    EXPECT_STREQ(fq_status_name(FQ_STATUS_MODEL_FORMAT), "FQ_STATUS_MODEL_FORMAT");
    EXPECT_STREQ(fq_status_name(12345), "FQ_STATUS_UNKNOWN");
    // Every status has its own name: no two codes share a value.
    std::map<std::string, int> seen;
    for (int s = 0; s <= FQ_STATUS_INTERNAL; ++s) {
        std::string name = fq_status_name(s);
        EXPECT_NE(name, "FQ_STATUS_UNKNOWN") << s;
        EXPECT_TRUE(seen.emplace(name, s).second) << name;
    }
    EXPECT_EQ(fq_noop(), 0);
}

TEST_F(Fixture, MissingFileIsNotFound) {
    fq_model *m = reinterpret_cast<fq_model *>(0x1);
    EXPECT_EQ(fq_model_load(rt, "/nonexistent/model.gguf", nullptr, &m, &err), FQ_STATUS_NOT_FOUND);
    EXPECT_EQ(m, nullptr);
    EXPECT_EQ(err.code, FQ_STATUS_NOT_FOUND);
    EXPECT_NE(std::string(err.message).find("/nonexistent/model.gguf"), std::string::npos) << err.message;
}

TEST_F(Fixture, NullArgumentsAndBadStructSizes) {
    EXPECT_EQ(fq_model_load(rt, nullptr, nullptr, &model, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(fq_model_load(nullptr, "x", nullptr, &model, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    fq_runtime_options ro;
    std::memset(&ro, 0, sizeof(ro));  // struct_size 0: not initialized
    fq_runtime *r2 = nullptr;
    EXPECT_EQ(fq_runtime_create(&ro, &r2, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("struct_size"), std::string::npos);
    // A caller compiled against an older, smaller struct: the fields it lacks keep their defaults.
    fq_runtime_options_init(&ro);
    ro.struct_size = offsetof(fq_runtime_options, device);
    ro.n_threads = 1;
    ro.device = 7;  // beyond the old caller's struct: must be ignored
    ASSERT_EQ(fq_runtime_create(&ro, &r2, &err), FQ_STATUS_OK) << err.message;
    EXPECT_EQ(fq_runtime_n_threads(r2), 1);
    fq_runtime_free(r2);
}

TEST_F(Fixture, CudaDeviceOnACpuBuildOrMachine) {
    int32_t n = -1;
    ASSERT_EQ(fq_cuda_device_count(&n, &err), FQ_STATUS_OK);
    if (n > 0) GTEST_SKIP() << "a CUDA device is present";
    fq_runtime_options ro;
    fq_runtime_options_init(&ro);
    ro.device = 0;
    fq_runtime *r2 = nullptr;
    EXPECT_EQ(fq_runtime_create(&ro, &r2, &err), FQ_STATUS_DEVICE_UNAVAILABLE);
    EXPECT_EQ(r2, nullptr);
}

TEST_F(Fixture, InfoOfStories) {
    load_stories();
    fq_model_info info;
    fq_model_info_init(&info);
    ASSERT_EQ(fq_model_get_info(model, &info, &err), FQ_STATUS_OK);
    // Values as the file's metadata states them (checked with the gguf Python package).
    EXPECT_STREQ(info.architecture, "llama");
    EXPECT_STREQ(info.tokenizer_model, "llama");
    EXPECT_EQ(info.n_vocab, 512);
    EXPECT_EQ(info.n_embd, 64);
    EXPECT_EQ(info.n_layer, 5);
    EXPECT_EQ(info.n_head, 8);
    EXPECT_EQ(info.n_head_kv, 4);
    EXPECT_EQ(info.n_ff, 172);
    EXPECT_EQ(info.n_ctx_train, 2048);
    EXPECT_EQ(info.bos_id, 1);
    EXPECT_EQ(info.eos_id, 2);
    EXPECT_EQ(info.add_bos, 1);
    EXPECT_EQ(info.tied_embeddings, 0);
    EXPECT_EQ(info.gguf_version, 3);
    EXPECT_EQ(info.file_bytes, 1185376);
    char fp[65];
    ASSERT_EQ(fq_model_fingerprint(model, fp, sizeof(fp), &err), FQ_STATUS_OK);
    EXPECT_STREQ(fp, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
}

TEST_F(Fixture, TokenizeBuffers) {
    load_stories();
    const char *text = "Once upon a time";
    int64_t n = 0;
    EXPECT_EQ(fq_model_tokenize(model, text, std::strlen(text), FQ_BOS_YES, nullptr, 0, &n, &err),
              FQ_STATUS_BUFFER_TOO_SMALL);
    ASSERT_GT(n, 1);
    std::vector<int32_t> ids(n);
    ASSERT_EQ(fq_model_tokenize(model, text, std::strlen(text), FQ_BOS_YES, ids.data(), n, &n, &err), FQ_STATUS_OK);
    EXPECT_EQ(ids[0], 1);
    int64_t nb = 0;
    EXPECT_EQ(fq_model_detokenize(model, ids.data(), n, nullptr, 0, &nb, &err), FQ_STATUS_BUFFER_TOO_SMALL);
    std::string back(nb, '\0');
    ASSERT_EQ(fq_model_detokenize(model, ids.data(), n, back.data(), nb, &nb, &err), FQ_STATUS_OK);
    EXPECT_EQ(back, text);
    int32_t bad = 512;
    EXPECT_EQ(fq_model_detokenize(model, &bad, 1, back.data(), nb, &nb, &err), FQ_STATUS_INVALID_ARGUMENT);
}

TEST_F(Fixture, PerplexityBadInputAndCancellation) {
    load_stories();
    fq_perplexity_options po;
    fq_perplexity_options_init(&po);
    fq_perplexity_result pr;
    fq_perplexity_result_init(&pr);
    EXPECT_EQ(fq_model_perplexity(model, "", 0, &po, &pr, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("empty"), std::string::npos) << err.message;
    std::string text;
    for (int i = 0; i < 60; ++i) text += "Once upon a time there was a little girl named Lily. ";
    po.seqlen = 4096;
    EXPECT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("2048"), std::string::npos) << err.message;
    po.seqlen = 64;
    po.max_chunks = 0;
    EXPECT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_INVALID_ARGUMENT);
    po.max_chunks = 2;
    ASSERT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_OK) << err.message;
    EXPECT_EQ(pr.n_chunks, 2);
    EXPECT_EQ(pr.n_predicted, 2 * 63);
    EXPECT_EQ(pr.bos, 1);
    EXPECT_NEAR(pr.ppl, std::exp(pr.nll_sum / pr.n_predicted), 1e-9 * pr.ppl);
    EXPECT_LT(pr.ppl, 20.0);  // a repeated TinyStories sentence is easy for a TinyStories model

    // Cancellation through the callback, and through a token set from "another thread" before the call.
    po.progress = [](void *, const char *stage, int64_t done, int64_t) -> int32_t {
        return std::strcmp(stage, "perplexity") == 0 && done >= 1 ? 1 : 0;
    };
    EXPECT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_CANCELLED);
    po.progress = nullptr;
    fq_cancel_token *tok = nullptr;
    ASSERT_EQ(fq_cancel_token_create(&tok, &err), FQ_STATUS_OK);
    fq_cancel_token_cancel(tok);
    po.cancel = tok;
    EXPECT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_CANCELLED);
    fq_cancel_token_reset(tok);
    EXPECT_EQ(fq_model_perplexity(model, text.data(), text.size(), &po, &pr, &err), FQ_STATUS_OK);
    fq_cancel_token_free(tok);
}

TEST_F(Fixture, SessionDecodeMatchesLogits) {
    load_stories();
    std::vector<int32_t> ids = {1, 403, 407, 261, 378, 429, 260, 290};
    const int64_t V = 512;
    std::vector<float> all(ids.size() * V);
    ASSERT_EQ(fq_model_logits(model, ids.data(), ids.size(), all.data(), all.size(), &err), FQ_STATUS_OK);
    EXPECT_EQ(fq_model_logits(model, ids.data(), ids.size(), all.data(), V, &err), FQ_STATUS_BUFFER_TOO_SMALL);
    fq_session_options so;
    fq_session_options_init(&so);
    so.n_ctx = 8;
    fq_session *s = nullptr;
    ASSERT_EQ(fq_session_create(model, &so, &s, &err), FQ_STATUS_OK);
    std::vector<float> last(V);
    ASSERT_EQ(fq_session_decode(s, ids.data(), 3, last.data(), V, &err), FQ_STATUS_OK);
    for (size_t i = 3; i < ids.size(); ++i) ASSERT_EQ(fq_session_decode(s, &ids[i], 1, last.data(), V, &err), 0);
    for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], all[(ids.size() - 1) * V + j], 1e-4);
    int64_t pos = 0;
    ASSERT_EQ(fq_session_position(s, &pos, &err), FQ_STATUS_OK);
    EXPECT_EQ(pos, 8);
    // The context is full: refused, and the session is unchanged.
    EXPECT_EQ(fq_session_decode(s, ids.data(), 1, last.data(), V, &err), FQ_STATUS_INVALID_ARGUMENT);
    ASSERT_EQ(fq_session_position(s, &pos, &err), FQ_STATUS_OK);
    EXPECT_EQ(pos, 8);
    ASSERT_EQ(fq_session_reset(s, &err), FQ_STATUS_OK);
    ASSERT_EQ(fq_session_position(s, &pos, &err), FQ_STATUS_OK);
    EXPECT_EQ(pos, 0);
    fq_session_free(s);
}

// Draws many samples and compares the frequencies with the renormalized softmax of the kept candidates; the bound is
// 5 standard deviations of a binomial proportion, so a correct sampler fails about once in 3.5 million runs.
void check_distribution(float temperature, int32_t top_k, float top_p, const std::vector<double> &expected) {
    std::vector<float> logits = {2.0f, 1.0f, 0.5f, -1.0f, 1.0f};
    fq_sampler_options so;
    fq_sampler_options_init(&so);
    so.temperature = temperature;
    so.top_k = top_k;
    so.top_p = top_p;
    so.seed = 1234;
    fq_sampler *s = nullptr;
    ASSERT_EQ(fq_sampler_create(&so, &s, nullptr), FQ_STATUS_OK);
    const int draws = 200000;
    std::vector<int> count(logits.size());
    for (int i = 0; i < draws; ++i) {
        int32_t t = -1;
        ASSERT_EQ(fq_sampler_sample(s, logits.data(), logits.size(), &t, nullptr), FQ_STATUS_OK);
        ++count[t];
    }
    fq_sampler_free(s);
    for (size_t i = 0; i < logits.size(); ++i) {
        double p = expected[i], f = (double)count[i] / draws;
        EXPECT_NEAR(f, p, 5 * std::sqrt(p * (1 - p) / draws) + 1e-12) << "token " << i;
    }
}

std::vector<double> softmax_of(const std::vector<int> &keep, float temperature) {
    std::vector<float> logits = {2.0f, 1.0f, 0.5f, -1.0f, 1.0f};
    std::vector<double> p(logits.size(), 0.0);
    double z = 0;
    for (int i : keep) z += p[i] = std::exp(logits[i] / temperature);
    for (auto &v : p) v /= z;
    return p;
}

TEST(Sampler, Distributions) {
    check_distribution(1.0f, 0, 1.0f, softmax_of({0, 1, 2, 3, 4}, 1.0f));
    check_distribution(0.7f, 0, 1.0f, softmax_of({0, 1, 2, 3, 4}, 0.7f));
    // top-k 2 keeps the best logit and, of the tied 1.0 pair, the lower id.
    check_distribution(1.0f, 2, 1.0f, softmax_of({0, 1}, 1.0f));
    // top-p 0.6 at T=1: p(0) = 0.498 < 0.6 and p(0)+p(1) = 0.681 >= 0.6 (id 1 before the tied id 4): 0 and 1 remain.
    check_distribution(1.0f, 0, 0.6f, softmax_of({0, 1}, 1.0f));
}

TEST(Sampler, GreedySeedsAndBadOptions) {
    std::vector<float> logits = {0.1f, 3.0f, 3.0f, -2.0f};
    fq_sampler *s = nullptr;
    ASSERT_EQ(fq_sampler_create(nullptr, &s, nullptr), FQ_STATUS_OK);
    int32_t t = -1;
    ASSERT_EQ(fq_sampler_sample(s, logits.data(), 4, &t, nullptr), FQ_STATUS_OK);
    EXPECT_EQ(t, 1);  // argmax, lowest id among ties
    fq_sampler_free(s);

    fq_sampler_options so;
    fq_sampler_options_init(&so);
    so.temperature = 1.0f;
    so.seed = 42;
    std::vector<int32_t> a, b;
    for (auto *out : {&a, &b}) {
        ASSERT_EQ(fq_sampler_create(&so, &s, nullptr), FQ_STATUS_OK);
        for (int i = 0; i < 50; ++i) {
            fq_sampler_sample(s, logits.data(), 4, &t, nullptr);
            out->push_back(t);
        }
        fq_sampler_free(s);
    }
    EXPECT_EQ(a, b);

    fq_error err;
    fq_error_init(&err);
    so.top_p = 0.0f;
    EXPECT_EQ(fq_sampler_create(&so, &s, &err), FQ_STATUS_INVALID_ARGUMENT);
    so.top_p = 1.0f;
    so.temperature = -1.0f;
    EXPECT_EQ(fq_sampler_create(&so, &s, &err), FQ_STATUS_INVALID_ARGUMENT);
    so.temperature = 1.0f;
    ASSERT_EQ(fq_sampler_create(&so, &s, &err), FQ_STATUS_OK);
    logits[2] = std::nanf("");
    EXPECT_EQ(fq_sampler_sample(s, logits.data(), 4, &t, &err), FQ_STATUS_NUMERIC);
    fq_sampler_free(s);
}

}  // namespace

namespace {

TEST_F(Fixture, LoglikelihoodIsTheSumOfContinuationLogSoftmax) {
    load_stories();
    std::vector<int32_t> ctx = {1, 403, 407, 261, 378};
    std::vector<int32_t> cont = {429, 260, 290};
    std::vector<int32_t> all = ctx;
    all.insert(all.end(), cont.begin(), cont.end());
    const int64_t V = 512;
    std::vector<float> lg(all.size() * V);
    ASSERT_EQ(fq_model_logits(model, all.data(), all.size(), lg.data(), lg.size(), &err), FQ_STATUS_OK);
    double expect = 0;
    bool greedy = true;
    for (size_t i = 0; i < cont.size(); ++i) {
        const float *row = lg.data() + (ctx.size() - 1 + i) * V;
        double mx = row[0], z = 0;
        int best = 0;
        for (int j = 1; j < V; ++j) {
            mx = std::max(mx, (double)row[j]);
            if (row[j] > row[best]) best = j;
        }
        for (int j = 0; j < V; ++j) z += std::exp(row[j] - mx);
        expect += row[cont[i]] - mx - std::log(z);
        greedy = greedy && best == cont[i];
    }
    double lp = 0;
    int32_t is_greedy = -1;
    ASSERT_EQ(fq_model_loglikelihood(model, ctx.data(), ctx.size(), cont.data(), cont.size(), &lp, &is_greedy, &err),
              FQ_STATUS_OK)
        << err.message;
    EXPECT_NEAR(lp, expect, 1e-4);
    EXPECT_EQ(is_greedy, greedy ? 1 : 0);
    EXPECT_EQ(fq_model_loglikelihood(model, ctx.data(), 0, cont.data(), cont.size(), &lp, nullptr, &err),
              FQ_STATUS_INVALID_ARGUMENT);
    std::vector<int32_t> bad_last = {429, 512};  // the last id is only a target: it must be checked all the same
    EXPECT_EQ(fq_model_loglikelihood(model, ctx.data(), ctx.size(), bad_last.data(), 2, &lp, nullptr, &err),
              FQ_STATUS_INVALID_ARGUMENT);
}

// A batch gives, request by request, what single calls give (on the CPU it runs them one by one: identically).
TEST_F(Fixture, LoglikelihoodBatchEqualsSingleCalls) {
    load_stories();
    const std::vector<std::vector<int32_t>> seqs = {
        {1, 403, 407, 261, 378, 429, 260, 290}, {1, 403, 407}, {1, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309}};
    const std::vector<int64_t> n_ctx = {5, 1, 7};
    std::vector<int32_t> flat;
    std::vector<int64_t> offsets{0};
    for (const auto &q : seqs) {
        flat.insert(flat.end(), q.begin(), q.end());
        offsets.push_back(static_cast<int64_t>(flat.size()));
    }
    std::vector<double> lp(seqs.size());
    std::vector<int32_t> greedy(seqs.size(), -1);
    ASSERT_EQ(fq_model_loglikelihood_batch(model, flat.data(), offsets.data(), n_ctx.data(), (int64_t)seqs.size(),
                                           lp.data(), greedy.data(), &err),
              FQ_STATUS_OK)
        << err.message;
    for (size_t i = 0; i < seqs.size(); ++i) {
        double one = 0;
        int32_t one_greedy = -1;
        ASSERT_EQ(fq_model_loglikelihood(model, seqs[i].data(), n_ctx[i], seqs[i].data() + n_ctx[i],
                                         (int64_t)seqs[i].size() - n_ctx[i], &one, &one_greedy, &err),
                  FQ_STATUS_OK);
        EXPECT_EQ(lp[i], one) << i;
        EXPECT_EQ(greedy[i], one_greedy) << i;
    }
    // An empty batch is fine; a bad request is named.
    EXPECT_EQ(fq_model_loglikelihood_batch(model, nullptr, offsets.data(), n_ctx.data(), 0, lp.data(), nullptr, &err),
              FQ_STATUS_OK);
    std::vector<int64_t> bad_ctx = {5, 1, 11};  // request 2 has no continuation
    EXPECT_EQ(fq_model_loglikelihood_batch(model, flat.data(), offsets.data(), bad_ctx.data(), 3, lp.data(), nullptr,
                                           &err),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("request 2"), std::string::npos) << err.message;
    std::vector<int64_t> bad_offsets = {0, 8, 4, 22};
    EXPECT_EQ(fq_model_loglikelihood_batch(model, flat.data(), bad_offsets.data(), n_ctx.data(), 3, lp.data(), nullptr,
                                           &err),
              FQ_STATUS_INVALID_ARGUMENT);
}

}  // namespace
