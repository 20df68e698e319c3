// The result of calibration in eval form (spec section 2.6, the official to_eval_mode / flat_matrices.pth): for every
// decoder layer the transform matrices with their precomputed inverse-transposes, the smoothing scales and the
// clipping logits. Calibration produces it, the artifact stores it, reparameterization and the fake-quantized forward
// consume it. Everything is FP32, row-major.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/quant_config.h"

namespace fq::quant {

// The seven linear layers of a decoder layer, in the order the artifact and the hooks use.
enum LinearId : int { kLinQ = 0, kLinK, kLinV, kLinO, kLinUp, kLinGate, kLinDown, kNumLinears };
const char *linear_name(int id);  // "q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "gate_proj", "down_proj"

struct LinearShape {
    int64_t out, in;
};
LinearShape linear_shape(const ModelConfig &c, int id);

// P = left (x) right acting on a row vector x of n1*n2 channels as x' = (x * diag) (left (x) right) (kron.h layout).
struct KronTransform {
    int n1 = 0, n2 = 0;                          // 0: absent (the identity)
    std::vector<float> left, right;              // [n1][n1], [n2][n2]
    std::vector<float> left_inv_t, right_inv_t;  // left^{-T} [n1][n1], right^{-T} [n2][n2]
    std::vector<float> diag;                     // [n1*n2] smoothing scales c (> 0), or empty
    bool present() const { return n1 > 0; }
};

// One k x k factor acting on a single axis (P_h on heads, P_v and P_k on head_dim).
struct SingleTransform {
    int k = 0;                   // 0: absent
    std::vector<float> m;        // [k][k]
    std::vector<float> m_inv_t;  // m^{-T} [k][k]
    bool present() const { return k > 0; }
};

struct LayerTransforms {
    KronTransform pa;   // q/k/v input (hidden)
    KronTransform pug;  // up/gate input (hidden)
    KronTransform pd;   // down input (intermediate)
    SingleTransform ph; // o_proj input head axis (n_head), online
    SingleTransform pv; // V head_dim, merged into v_proj and (with P_h) into o_proj
    SingleTransform pk; // Q/K head_dim after RoPE, online
    // LWC logits per linear: [2][out] (row 0: max side, row 1: min side); empty = no weight clipping.
    std::array<std::vector<float>, kNumLinears> lwc;
    // LAC logits {max, min}: per linear input and for the K and V quantizers; used only when lac is set.
    bool lac = false;
    std::array<std::array<float, 2>, kNumLinears> lac_lin{};
    std::array<float, 2> lac_k{}, lac_v{};
};

// Integer weight codes (GPTQ output): w = scale[row] * code.
struct QuantizedWeight {
    std::vector<int8_t> codes;  // [out][in]
    std::vector<float> scale;   // [out]
};

struct ModelDims {
    int32_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
};
ModelDims model_dims(const ModelConfig &c);
bool operator==(const ModelDims &a, const ModelDims &b);

struct CalibrationResult {
    QuantScheme scheme;
    CalibOptions options;
    std::string model_fingerprint;  // SHA-256 of the model file
    ModelDims dims;
    std::string data_sha256;        // SHA-256 of the calibration token stream (int32 little-endian), or empty
    int64_t data_tokens = 0;        // tokens in that stream
    std::vector<LayerTransforms> layers;
    // Mean calibration MSE of every epoch, per layer ([n_layer][epochs]; empty for methods without training).
    std::vector<std::vector<double>> epoch_mse;
    // GPTQ weights ([n_layer][kNumLinears]); empty unless scheme.weights is GPTQ and they have been computed.
    std::vector<std::array<QuantizedWeight, kNumLinears>> gptq;
};

// Checks every tensor's size against dims and the scheme (what the artifact loader relies on). Throws
// MODEL_FORMAT naming the offending tensor.
void check_consistent(const CalibrationResult &r);

}  // namespace fq::quant
