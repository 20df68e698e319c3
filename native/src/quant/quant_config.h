// What a FlatQuant run is asked to do: bit widths, method, weight quantizer and calibration settings.
//
// Quantizer layout (spec section 4.3), fixed here: weights symmetric per output channel; linear inputs symmetric per
// token; K and V asymmetric per (token, head) over head_dim; queries are never quantized (q_bits = 16). A width of 16
// turns a quantizer off. Configuration strings: "w4a4kv4", "w4a16", "w4a8kv8", "w8a8" (kv omitted = 16), "w16a16".
#pragma once

#include <cstdint>
#include <string>

namespace fq::quant {

struct QuantBits {
    int w = 16;  // weights
    int a = 16;  // linear inputs
    int k = 16;  // K cache
    int v = 16;  // V cache
};

// Parses "w<bits>a<bits>[kv<bits>]" (case-insensitive); each width is 2..8 or 16. Throws INVALID_ARGUMENT.
QuantBits parse_bits(const std::string &s);
// The canonical string: "w4a4kv4", "w4a16" (kv left out when 16).
std::string bits_name(const QuantBits &b);

enum class Method {
    Rtn,        // no transform: plain RTN weights, per-token activations, KV quantization
    Rotate,     // fixed random orthogonal Kronecker rotations (QuaRot-like), no smoothing, no clipping
    FlatQuant,  // learned Kronecker transforms, smoothing, LWC and LAC (the paper's method)
};
Method parse_method(const std::string &s);  // "rtn", "rotate", "flatquant"; INVALID_ARGUMENT otherwise
const char *method_name(Method m);

enum class WeightQuantizer { Rtn, Gptq };
WeightQuantizer parse_weight_quantizer(const std::string &s);  // "rtn", "gptq"
const char *weight_quantizer_name(WeightQuantizer w);

struct QuantScheme {
    QuantBits bits;
    Method method = Method::FlatQuant;
    WeightQuantizer weights = WeightQuantizer::Rtn;
};

// Calibration settings (spec section 6; the defaults are the official LLaMA W4A4KV4 scripts').
struct CalibOptions {
    int32_t nsamples = 128;       // calibration windows
    int32_t seqlen = 2048;        // tokens per window
    int32_t batch = 4;            // windows per optimizer step (cali_bsz)
    int32_t epochs = 15;
    double flat_lr = 5e-3;        // transforms and smoothing scales; clipping logits get 10x
    double diag_alpha = 0.3;      // SmoothQuant-style init exponent (sq_style)
    bool add_diag = true;         // learnable smoothing scales on P_a, P_ug, P_d
    bool lwc = true;              // learnable weight clipping (only where w < 16)
    bool lac = true;              // learnable activation clipping, K/V quantizers included
    bool direct_inv = false;      // plain factor matrices + LU inverse instead of the SVD/Cayley form
    uint64_t seed = 0;            // window offsets and transform initialization
    // GPTQ (weights = gptq)
    double percdamp = 0.01;
    int32_t gptq_blocksize = 128;
};

// Throws INVALID_ARGUMENT naming the first bad field.
void validate(const QuantScheme &s);
void validate(const CalibOptions &o);

}  // namespace fq::quant
