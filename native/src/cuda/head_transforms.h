// The small online transforms around attention (spec 1.2 steps 5 and 8, 9.1), on the GPU. Both are the Kronecker
// kernel of kron_quant.h with one factor the identity, so they share its code, its numerics and its CPU twin
// (native/src/cpu/kron_quant_ref.h with p2 = nullptr or p1 = nullptr).
//
// Size letters: T tokens, H heads (query heads for o_proj; H or the KV heads for q/k), d head_dim.
#pragma once

#include <cstdint>

#include "cuda/kron_quant.h"

namespace fq::cuda {

class Stream;

// o_proj's input: the attention output of a token as X[H][d] (heads-major, as attention writes it; P_v is already
// folded into v_proj) becomes P_h^T X, the head-axis mixing, then the per-token quantization of kron_quant (or
// FP16 for the A16 configurations). The token's whole transform is P_h (x) P_v, as o_proj's weight expects.
// attn_f16: (T, H*d) FP16, row-major;  ph_f16: (H, H) FP16, row-major.
// format / outputs: as KronQuantArgs (n_outputs of them, each with its own LAC factors; 1 for kF16).
void o_proj_input_transform(const uint16_t *attn_f16, const uint16_t *ph_f16, int64_t tokens, int heads,
                            int head_dim, KronOutFormat format, const KronQuantOutput *outputs, int n_outputs,
                            const Stream &stream);
bool o_proj_input_transform_supported(int heads, int head_dim);

// The per-head transform of q and k after RoPE: out[t][h][:] = inp[t][h][:] P, FP32 accumulation, one FP16
// rounding. Call it with P = P_k for k and P = P_k^{-T} for q, so that q k^T is unchanged.
// out_f16, inp_f16: (T, H, d) FP16, row-major; out may be inp (in place), no other overlap.
// p_f16: (d, d) FP16, row-major.
void head_dim_transform(uint16_t *out_f16, const uint16_t *inp_f16, const uint16_t *p_f16, int64_t tokens,
                        int heads, int head_dim, const Stream &stream);
bool head_dim_transform_supported(int head_dim);

}  // namespace fq::cuda
