// Next-token selection: greedy (argmax, lowest id on ties) or temperature sampling restricted by top-k and top-p.
// The random stream is xoshiro256** seeded through splitmix64, so a seed gives the same tokens on every platform.
#pragma once

#include <cstdint>
#include <vector>

namespace fq {

struct SamplerConfig {
    float temperature = 0.0f;  // 0 = greedy
    float top_p = 1.0f;        // (0, 1]
    int32_t top_k = 0;         // 0 = off
    uint64_t seed = 0;
};

class Sampler {
  public:
    explicit Sampler(const SamplerConfig &cfg);  // throws INVALID_ARGUMENT for out-of-range settings
    int32_t sample(const float *logits, int32_t n_vocab);
    double next_uniform();  // [0, 1)

  private:
    uint64_t next_u64();
    SamplerConfig cfg_;
    uint64_t s_[4];
    std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace fq
