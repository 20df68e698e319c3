// Batch sessions through the C ABI on the CPU runtime (fq_session_options.n_seq, fq_session_decode_batch), on
// stories260K. On the CPU the sequences of a batch run one after another through the same forward as a session of
// one, so each sequence's logits must equal, bit for bit, those of its own single session (the reference here). The
// GPU engine's batches are checked in test_cuda_decoder_engine.cpp and test_cuda_api_sessions.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "flatquant.h"
#include "support/paths.h"

namespace {

class BatchSessions : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!fq::test::file_exists(fq::test::stories_path())) GTEST_SKIP() << "stories260K.gguf not found";
        fq_runtime_options ro;
        fq_runtime_options_init(&ro);
        ro.n_threads = 2;
        ASSERT_EQ(fq_runtime_create(&ro, &rt_, nullptr), FQ_STATUS_OK);
        ASSERT_EQ(fq_model_load(rt_, fq::test::stories_path().c_str(), nullptr, &model_, nullptr), FQ_STATUS_OK);
        fq_model_info info;
        fq_model_info_init(&info);
        ASSERT_EQ(fq_model_get_info(model_, &info, nullptr), FQ_STATUS_OK);
        V_ = info.n_vocab;
    }
    void TearDown() override {
        fq_model_free(model_);
        fq_runtime_free(rt_);
    }
    fq_session *session(int n_seq, int n_ctx, int32_t *status = nullptr) {
        fq_session_options o;
        fq_session_options_init(&o);
        o.n_seq = n_seq;
        o.n_ctx = n_ctx;
        fq_session *s = nullptr;
        const int32_t st = fq_session_create(model_, &o, &s, nullptr);
        if (status) *status = st;
        return s;
    }
    fq_runtime *rt_ = nullptr;
    fq_model *model_ = nullptr;
    int V_ = 0;
};

int argmax(const float *row, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i) best = row[i] > row[best] ? i : best;
    return best;
}

TEST_F(BatchSessions, EachSequenceEqualsItsOwnSession) {
    const int B = 3, P = 12, steps = 6;
    std::vector<int32_t> prompts(B * P);
    for (int i = 0; i < B * P; ++i) prompts[i] = (i * 37 + 11) % V_;
    fq_session *batch = session(B, 64);
    ASSERT_NE(batch, nullptr);
    std::vector<float> lb(static_cast<size_t>(B) * V_);
    ASSERT_EQ(fq_session_decode_batch(batch, prompts.data(), P, lb.data(), lb.size(), nullptr), FQ_STATUS_OK);
    std::vector<std::vector<int32_t>> generated(B);
    std::vector<std::vector<float>> batch_logits(B);
    for (int t = 0; t < steps; ++t) {
        std::vector<int32_t> next(B);
        for (int b = 0; b < B; ++b) {
            next[b] = argmax(&lb[static_cast<size_t>(b) * V_], V_);
            generated[b].push_back(next[b]);
        }
        ASSERT_EQ(fq_session_decode_batch(batch, next.data(), 1, lb.data(), lb.size(), nullptr), FQ_STATUS_OK);
    }
    for (int b = 0; b < B; ++b) batch_logits[b].assign(lb.begin() + b * V_, lb.begin() + (b + 1) * V_);
    int64_t pos = 0;
    ASSERT_EQ(fq_session_position(batch, &pos, nullptr), FQ_STATUS_OK);
    EXPECT_EQ(pos, P + steps);

    for (int b = 0; b < B; ++b) {
        fq_session *one = session(1, 64);
        std::vector<float> l(static_cast<size_t>(V_));
        ASSERT_EQ(fq_session_decode(one, &prompts[b * P], P, l.data(), V_, nullptr), FQ_STATUS_OK);
        for (int t = 0; t < steps; ++t) {
            EXPECT_EQ(argmax(l.data(), V_), generated[b][t]) << "sequence " << b << " step " << t;
            ASSERT_EQ(fq_session_decode(one, &generated[b][t], 1, l.data(), V_, nullptr), FQ_STATUS_OK);
        }
        EXPECT_EQ(std::memcmp(l.data(), batch_logits[b].data(), sizeof(float) * V_), 0) << "sequence " << b;
        fq_session_free(one);
    }
    fq_session_free(batch);
}

TEST_F(BatchSessions, RefusesBadInputAndLeavesTheBatchAsItWas) {
    int32_t st = 0;
    EXPECT_EQ(session(0, 16, &st), nullptr);
    EXPECT_EQ(st, FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(session(257, 16, &st), nullptr);
    EXPECT_EQ(st, FQ_STATUS_INVALID_ARGUMENT);
    fq_session *s = session(2, 8);
    ASSERT_NE(s, nullptr);
    std::vector<int32_t> tok = {1, 2, 3, 4, 5, 6};
    std::vector<float> l(2 * static_cast<size_t>(V_));
    // A session of two sequences refuses the single-sequence call, a too-small buffer, a bad id in the second row,
    // and more tokens than the context holds; none of them moves the batch.
    EXPECT_EQ(fq_session_decode(s, tok.data(), 3, nullptr, 0, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(fq_session_decode_batch(s, tok.data(), 3, l.data(), V_, nullptr), FQ_STATUS_BUFFER_TOO_SMALL);
    tok[4] = V_;
    EXPECT_EQ(fq_session_decode_batch(s, tok.data(), 3, nullptr, 0, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    tok[4] = 5;
    ASSERT_EQ(fq_session_decode_batch(s, tok.data(), 3, l.data(), l.size(), nullptr), FQ_STATUS_OK);
    std::vector<int32_t> many(2 * 6, 1);
    EXPECT_EQ(fq_session_decode_batch(s, many.data(), 6, nullptr, 0, nullptr), FQ_STATUS_INVALID_ARGUMENT);
    int64_t pos = 0;
    ASSERT_EQ(fq_session_position(s, &pos, nullptr), FQ_STATUS_OK);
    EXPECT_EQ(pos, 3);
    ASSERT_EQ(fq_session_reset(s, nullptr), FQ_STATUS_OK);
    ASSERT_EQ(fq_session_position(s, &pos, nullptr), FQ_STATUS_OK);
    EXPECT_EQ(pos, 0);
    fq_session_free(s);
}

}  // namespace
