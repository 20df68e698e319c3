// Smoothing scales, learnable clipping and fake quantizers of FlatQuant calibration, forward and backward
// (spec sections 3, 4 and 5; the official quant_utils.py and flat_linear.py).
//
// Gradients follow torch autograd of the official code exactly, including its subgradient choices:
//   - round uses the straight-through estimator round_ste(v) = v + (round(v) - v).detach(): d/dv = 1;
//     rounding is half to even (torch.round);
//   - clamp(v, lo, hi) with scalar bounds passes the gradient where lo <= v <= hi (bounds inclusive), judged on the
//     ROUNDED value, because the clamp is applied after round_ste;
//   - the scale is not detached: with out = s * (q - z), d out / d s = (q - z) - [inside] * x / s, and the scale's
//     gradient flows on to the clip logits and through the row max/min to the elements that produced them;
//   - the zero point z = round(-xmin / s) has no gradient (torch.round);
//   - torch.maximum/minimum split the gradient in half on a tie; amax/amin (activations) share it evenly among
//     tied elements; max(dim)/min(dim) (weights) give it all to the first index; abs' (0) = 0;
//   - a sym activation row whose range is 0 gets s = 1 and no scale gradient; an asym row with xmin = xmax = 0
//     gets the range [-1, 1] and no range gradient (the official in-place overwrites).
// bits is 2..8, or 16 for "off" (the op is the identity and its backward passes dout through).
//
// Buffers are row-major; rows = tokens for activations (tokens * heads for the K/V cache, cols = head_dim) and
// output channels for weights. Input gradients are written (=), parameter gradients accumulated (+=).
// Forward ops may run in place (out == inp), but their backward needs the forward input.
#pragma once

#include <cstdint>

namespace fq::quant {

// The initial value of every LWC and LAC logit: sigmoid(4) = 0.98201.
constexpr double kClipLogitInit = 4.0;
// The starting value of the running activation abs-max buffers of the SmoothQuant-style init.
constexpr double kSmoothAbsmaxInit = 1e-5;
// The default diag_alpha of cali_flat_quant.
constexpr double kSmoothAlpha = 0.3;

// ---- per-channel smoothing scale c (diag_scale, on the inputs of P_a, P_ug, P_d) -------------------------------------
// Activation side: out[r][j] = inp[r][j] * c[j].   inp/out [rows][cols], c [cols].
template <typename T>
void channel_scale_forward(T *out, const T *inp, const T *c, int64_t rows, int64_t cols);
// dinp = dout * c (nullptr to skip), dc[j] += sum_r dout[r][j] * inp[r][j].
template <typename T>
void channel_scale_backward(T *dinp, T *dc, const T *dout, const T *inp, const T *c, int64_t rows, int64_t cols);

// Weight side: out[r][j] = w[r][j] / c[j].   w/out [out_features][in_features = cols], c [cols].
template <typename T>
void channel_unscale_forward(T *out, const T *w, const T *c, int64_t rows, int64_t cols);
// dw = dout / c (nullptr for frozen weights), dc[j] += -sum_r dout[r][j] * w[r][j] / c[j]^2.
template <typename T>
void channel_unscale_backward(T *dw, T *dc, const T *dout, const T *w, const T *c, int64_t rows, int64_t cols);

// absmax[j] = max(absmax[j], max_r |x[r][j]|). The activation buffer starts at kSmoothAbsmaxInit and runs over all
// calibration samples; the weight buffer starts at 0 and runs over the rows of every linear that reads the input
// (q,k,v for P_a; up,gate for P_ug; down for P_d).   x [rows][cols], absmax [cols].
template <typename T>
void column_absmax_update(T *absmax, const T *x, int64_t rows, int64_t cols);

// c[j] = max(w_absmax[j]^(1-alpha) / x_absmax[j]^alpha, 1e-5) (get_init_scale; alpha = kSmoothAlpha).
template <typename T>
void smooth_scale_init(T *c, const T *x_absmax, const T *w_absmax, int64_t n, double alpha);

// ---- learnable weight clipping (LWC), per output row ------------------------------------------------------------------
// clip [2][rows]: row 0 = logits of the max side, row 1 = logits of the min side (each starts at kClipLogitInit).
// For row i of the transformed weight w [rows][cols]:
//   wmax_i = max_j w_ij * sigmoid(clip[0][i]),  wmin_i = min_j w_ij * sigmoid(clip[1][i]),
//   out_ij = min(max(w_ij, wmin_i), wmax_i)   (torch.clamp with tensor bounds; wmax wins when wmin > wmax).
template <typename T>
void lwc_forward(T *out, const T *w, const T *clip, int64_t rows, int64_t cols);
// dw (=, nullptr to skip) gets the pass-through part (wmin <= w <= wmax) plus the bound gradients routed to the
// row's first arg-max/arg-min; dclip (+=, [2][rows]) gets the bound gradients times w_max/min * sigma'.
template <typename T>
void lwc_backward(T *dw, T *dclip, const T *dout, const T *w, const T *clip, int64_t rows, int64_t cols);

// ---- weight fake quantization: symmetric, per output row (the official WeightQuantizer, sym, perchannel) ----------------
// xmax_i = max(max_j w_ij, 0), xmin_i = min(min_j w_ij, 0), s_i = max(|xmin_i|, xmax_i).clamp(min=1e-5) / qmax,
// out_ij = s_i * clamp(round(w_ij / s_i), -(qmax+1), qmax), qmax = 2^(bits-1) - 1.
//   w/out [rows][cols]; scale [rows] receives s_i (nullptr to skip; untouched when bits == 16).
template <typename T>
void weight_quant_forward(T *out, T *scale, const T *w, int64_t rows, int64_t cols, int bits);
template <typename T>
void weight_quant_backward(T *dw, const T *dout, const T *w, int64_t rows, int64_t cols, int bits);

// ---- activation fake quantization: per row, with learnable activation clipping (LAC) ----------------------------------
// lac [2] = {logit_max, logit_min}: ONE pair per quantizer (per tensor), or nullptr when LAC is off.
// Per row r: xmax = max(max_j x_rj, 0) * sigmoid(lac[0]), xmin = min(min_j x_rj, 0) * sigmoid(lac[1]);
//   sym  (qmax = 2^(bits-1)-1): s = max(|xmin|, xmax) / qmax (1 if 0); out = s * clamp(round(x/s), -(qmax+1), qmax)
//   asym (qmax = 2^bits - 1):   s = (xmax - xmin) / qmax, z = round(-xmin/s);
//                               out = s * (clamp(round(x/s) + z, 0, qmax) - z)
// Linear inputs: rows = tokens, cols = hidden, sym. K/V cache: rows = tokens * kv_heads, cols = head_dim, asym.
template <typename T>
void act_quant_forward(T *out, const T *x, const T *lac, int64_t rows, int64_t cols, int bits, bool sym);
// dx (=, nullptr to skip), dlac (+=, [2], nullptr to skip; must be nullptr when lac is).
template <typename T>
void act_quant_backward(T *dx, T *dlac, const T *dout, const T *x, const T *lac, int64_t rows, int64_t cols, int bits,
                        bool sym);

// Validates bits (2..8 or 16); throws FQ_STATUS_INVALID_ARGUMENT otherwise.
void check_quant_bits(int bits);

}  // namespace fq::quant
