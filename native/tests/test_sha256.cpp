// SHA-256 against the NIST FIPS 180-4 example vectors (and the long-message vector of the NIST CAVP set), the
// incremental interface against the one-shot one at every split point, and file hashing.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/sha256.h"
#include "support/gguf_test_util.h"

namespace {

TEST(Sha256, NistVectors) {
    EXPECT_EQ(fq::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(fq::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 448 bits
    EXPECT_EQ(fq::sha256_hex(two_blocks.data(), two_blocks.size()),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string long896 =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
        "nopqrstu";
    EXPECT_EQ(fq::sha256_hex(long896.data(), long896.size()),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    const std::string million(1000000, 'a');
    EXPECT_EQ(fq::sha256_hex(million.data(), million.size()),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShot) {
    std::string msg;
    for (int k = 0; k < 200; ++k) msg.push_back(char(k * 37 + 11));
    for (size_t len : {0, 1, 55, 56, 63, 64, 65, 119, 128, 200}) {
        const std::string whole = fq::sha256_hex(msg.data(), len);
        for (size_t split = 0; split <= len; ++split) {
            fq::Sha256 s;
            s.update(msg.data(), split);
            s.update(msg.data() + split, len - split);
            ASSERT_EQ(s.hex_digest(), whole) << "len " << len << " split " << split;
        }
    }
}

TEST(Sha256, Files) {
    const std::string path = ::testing::TempDir() + "sha256_test.bin";
    std::ofstream(path, std::ios::binary) << "abc";
    EXPECT_EQ(fq::sha256_file_hex(path), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    std::remove(path.c_str());
    fq::test::expect_error([&] { fq::sha256_file_hex(path); }, FQ_STATUS_NOT_FOUND, {path});
    fq::test::expect_error([&] { fq::sha256_file_hex(::testing::TempDir()); }, FQ_STATUS_IO, {});

    // Larger than the 1 MiB read chunk; expected digest from coreutils sha256sum.
    const std::string model = fq::test::stories260k_path();
    if (model.empty()) GTEST_SKIP() << "stories260K.gguf not found (data/models, ../shared/data/models)";
    EXPECT_EQ(fq::sha256_file_hex(model), "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
}

}  // namespace
