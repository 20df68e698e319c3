// A tiny random LLaMA built in memory for the quantization tests: Gaussian weights scaled by 1/sqrt(fan_in), RMSNorm
// gains near 1, a few outlier channels in the embeddings (as real LLM activations have), no tokenizer. Its
// "model file" is a small file of seed-dependent bytes so that Model::fingerprint() works and differs per seed.
#pragma once

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"

namespace fq::test {

struct TinyDims {
    int n_layer = 2, n_embd = 16, n_ff = 24, n_head = 4, n_head_kv = 2, head_dim = 4, n_vocab = 40, n_ctx = 64;
    int rope_dim = 4;
    bool qkv_bias = false;
    RopeMode rope_mode = RopeMode::Normal;
};

inline std::vector<float> tiny_randn(std::mt19937_64 &g, size_t n, double scale, double offset = 0.0) {
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<float> v(n);
    for (auto &x : v) x = static_cast<float>(offset + scale * nd(g));
    return v;
}

// fingerprint_file: where the stand-in model file is written (its SHA-256 becomes the fingerprint).
inline std::unique_ptr<Model> make_tiny_llama(const TinyDims &d, uint64_t seed, const std::string &fingerprint_file) {
    std::mt19937_64 g(seed);
    auto m = std::make_unique<Model>();
    ModelConfig &c = m->config;
    c.architecture = "llama";
    c.name = "tiny";
    c.n_vocab = d.n_vocab;
    c.n_ctx_train = d.n_ctx;
    c.n_embd = d.n_embd;
    c.n_layer = d.n_layer;
    c.n_head = d.n_head;
    c.n_head_kv = d.n_head_kv;
    c.head_dim = d.head_dim;
    c.n_ff = d.n_ff;
    c.rope_dim = d.rope_dim;
    c.rope_mode = d.rope_mode;
    c.qkv_bias = d.qkv_bias;
    ModelWeights &w = m->weights;
    const size_t E = d.n_embd, F = d.n_ff, Q = d.n_head * d.head_dim, KV = d.n_head_kv * d.head_dim;
    w.tok_embd = tiny_randn(g, d.n_vocab * E, 1.0);
    for (int t = 0; t < d.n_vocab; t++) w.tok_embd[t * E + 3 % E] *= 6.0f;  // an outlier channel
    for (int l = 0; l < d.n_layer; l++) {
        LayerWeights L;
        L.attn_norm = tiny_randn(g, E, 0.1, 1.0);
        L.ffn_norm = tiny_randn(g, E, 0.1, 1.0);
        L.wq = tiny_randn(g, Q * E, 1.0 / std::sqrt((double)E));
        L.wk = tiny_randn(g, KV * E, 1.0 / std::sqrt((double)E));
        L.wv = tiny_randn(g, KV * E, 1.0 / std::sqrt((double)E));
        L.wo = tiny_randn(g, E * Q, 1.0 / std::sqrt((double)Q));
        L.w_gate = tiny_randn(g, F * E, 1.0 / std::sqrt((double)E));
        L.w_up = tiny_randn(g, F * E, 1.0 / std::sqrt((double)E));
        L.w_down = tiny_randn(g, E * F, 1.0 / std::sqrt((double)F));
        if (d.qkv_bias) {
            L.bq = tiny_randn(g, Q, 0.2);
            L.bk = tiny_randn(g, KV, 0.2);
            L.bv = tiny_randn(g, KV, 0.2);
        }
        w.layers.push_back(std::move(L));
    }
    w.output_norm = tiny_randn(g, E, 0.1, 1.0);
    w.output = tiny_randn(g, d.n_vocab * E, 1.0 / std::sqrt((double)E));
    std::ofstream(fingerprint_file, std::ios::binary) << "tiny-llama-" << seed;
    m->source.path = fingerprint_file;
    return m;
}

}  // namespace fq::test
