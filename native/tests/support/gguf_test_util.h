// Helpers shared by the GGUF tests: locating files of the source tree and the shared data, checking that a call
// throws fq::Error with a given status and message parts, and a walker that lists where each structural field
// of a (valid) GGUF image lies, so that tests can corrupt exactly those fields.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/error.h"
#include "paths.h"  // same folder

namespace fq::test {

// source_dir()/relative when that file exists, "" when it does not.
inline std::string source_path(const std::string &relative) {
    const std::string path = source_dir() + "/" + relative;
    return file_exists(path) ? path : "";
}

// stories260K: the repository's copy (data/models), else the shared data folder beside the repository; "" when
// neither is there.
inline std::string stories260k_path() {
    if (file_exists(stories_path())) return stories_path();
    return source_path("data/models/stories260K.gguf");
}

// Expects fn() to throw fq::Error with `status` and a message containing every one of `parts`.
inline void expect_error(const std::function<void()> &fn, int32_t status, std::initializer_list<std::string> parts) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status << ", nothing was thrown";
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
        for (const std::string &p : parts)
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
    }
}

// A structural field of a GGUF image: where it is, how wide, and what it holds.
struct GgufField {
    enum Kind { COUNT, STRING_LENGTH, VALUE_TYPE, ARRAY_TYPE, ARRAY_LENGTH, N_DIMS, DIM, TENSOR_TYPE, TENSOR_OFFSET };
    size_t pos;
    int width;  // bytes
    Kind kind;
};

// Lists the fields of a valid little-endian GGUF v2/v3 image, in file order. Written from the format description
// (independently of the reader). Throws std::runtime_error if the image is not well formed.
inline std::vector<GgufField> walk_gguf(const std::vector<uint8_t> &img) {
    std::vector<GgufField> fields;
    size_t pos = 8;
    auto rd = [&](int width, GgufField::Kind kind, bool record) {
        if (pos + width > img.size()) throw std::runtime_error("walk_gguf: truncated");
        uint64_t v = 0;
        std::memcpy(&v, img.data() + pos, width);
        if (record) fields.push_back({pos, width, kind});
        pos += width;
        return v;
    };
    auto skip_string = [&]() { pos += rd(8, GgufField::STRING_LENGTH, true); };
    std::function<void(uint32_t)> skip_value = [&](uint32_t type) {
        static const int sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (type == 8) {
            skip_string();
        } else if (type == 9) {
            const uint32_t et = uint32_t(rd(4, GgufField::ARRAY_TYPE, true));
            const uint64_t n = rd(8, GgufField::ARRAY_LENGTH, true);
            for (uint64_t k = 0; k < n; ++k) skip_value(et);
        } else if (type < 13) {
            pos += sizes[type];
        } else {
            throw std::runtime_error("walk_gguf: bad value type");
        }
    };
    const uint64_t n_tensors = rd(8, GgufField::COUNT, true);
    const uint64_t n_kv = rd(8, GgufField::COUNT, true);
    for (uint64_t k = 0; k < n_kv; ++k) {
        skip_string();
        skip_value(uint32_t(rd(4, GgufField::VALUE_TYPE, true)));
    }
    for (uint64_t k = 0; k < n_tensors; ++k) {
        skip_string();
        const uint64_t n_dims = rd(4, GgufField::N_DIMS, true);
        for (uint64_t d = 0; d < n_dims; ++d) rd(8, GgufField::DIM, true);
        rd(4, GgufField::TENSOR_TYPE, true);
        rd(8, GgufField::TENSOR_OFFSET, true);
    }
    if (pos > img.size()) throw std::runtime_error("walk_gguf: truncated");
    return fields;
}

inline void poke(std::vector<uint8_t> &img, size_t pos, int width, uint64_t value) {
    std::memcpy(img.data() + pos, &value, width);  // little-endian host
}

}  // namespace fq::test
