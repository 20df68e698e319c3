// SHA-256 (FIPS 180-4) of byte buffers and files, as 64 lowercase hex digits. Used to fingerprint model files
// and artifacts, so that an artifact can name the exact model it was calibrated on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fq {

// Incremental hasher: update() any number of times, then hex_digest() once (the object is spent after it).
class Sha256 {
  public:
    Sha256();
    void update(const void *data, size_t n_bytes);
    std::string hex_digest();

  private:
    void compress(const uint8_t *block);  // one 64-byte block
    uint32_t h_[8];
    uint8_t buf_[64];
    size_t buf_len_ = 0;
    uint64_t total_bytes_ = 0;
};

std::string sha256_hex(const void *data, size_t n_bytes);
// Throws fq::Error: NOT_FOUND (no such file), IO (cannot open or read it).
std::string sha256_file_hex(const std::string &path);

}  // namespace fq
