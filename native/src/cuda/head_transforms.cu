// The attention-side transforms as calls of the Kronecker kernel (contract: head_transforms.h).
#include "cuda/head_transforms.h"

#include "core/error.h"

namespace fq::cuda {

namespace {

// head_dim_transform runs the rows (token, head) in groups of this many, one group = one "token" of the Kronecker
// kernel with P1 the identity: 16 rows fill one MMA tile exactly.
constexpr int kRowsPerGroup = 16;

}  // namespace

bool o_proj_input_transform_supported(int heads, int head_dim) {
    return kron_quant_supported(heads, head_dim, /*has_p1=*/true, /*has_p2=*/false);
}

void o_proj_input_transform(const uint16_t *attn_f16, const uint16_t *ph_f16, int64_t tokens, int heads,
                            int head_dim, KronOutFormat format, const KronQuantOutput *outputs, int n_outputs,
                            const Stream &stream) {
    FQ_CHECK(ph_f16 != nullptr, FQ_STATUS_INVALID_ARGUMENT, "o_proj_input_transform: NULL P_h");
    FQ_CHECK(n_outputs >= 1 && n_outputs <= kKronMaxOutputs && outputs != nullptr, FQ_STATUS_INVALID_ARGUMENT,
             "o_proj_input_transform: %d outputs", n_outputs);
    KronQuantArgs a;
    a.x_f16 = attn_f16;
    a.p1_f16 = ph_f16;
    a.p2_f16 = nullptr;
    a.tokens = tokens;
    a.n1 = heads;
    a.n2 = head_dim;
    a.format = format;
    a.n_outputs = n_outputs;
    for (int o = 0; o < n_outputs; ++o) a.out[o] = outputs[o];
    kron_quant(a, stream);
}

bool head_dim_transform_supported(int head_dim) {
    return kron_quant_supported(kRowsPerGroup, head_dim, /*has_p1=*/false, /*has_p2=*/true);
}

void head_dim_transform(uint16_t *out_f16, const uint16_t *inp_f16, const uint16_t *p_f16, int64_t tokens,
                        int heads, int head_dim, const Stream &stream) {
    FQ_CHECK(tokens >= 0 && heads > 0 && head_dim > 0 && head_dim % 2 == 0 &&
                 tokens <= INT64_MAX / heads / head_dim,
             FQ_STATUS_INVALID_ARGUMENT, "head_dim_transform: bad sizes tokens=%lld heads=%d head_dim=%d",
             static_cast<long long>(tokens), heads, head_dim);
    FQ_CHECK(p_f16 != nullptr, FQ_STATUS_INVALID_ARGUMENT, "head_dim_transform: NULL P");
    // Every row is transformed on its own, so the rows may be grouped freely: full groups of 16 in one call, the
    // remainder as one shorter group in a second.
    const int64_t rows = tokens * heads;
    const int64_t full = rows / kRowsPerGroup, tail = rows % kRowsPerGroup;
    KronQuantArgs a;
    a.p2_f16 = p_f16;
    a.n2 = head_dim;
    a.format = KronOutFormat::kF16;
    a.n_outputs = 1;
    if (full > 0 || tail == 0) {
        a.x_f16 = inp_f16;
        a.out[0].data = out_f16;
        a.tokens = full;
        a.n1 = kRowsPerGroup;
        kron_quant(a, stream);
    }
    if (tail > 0) {
        const int64_t offset = full * kRowsPerGroup * head_dim;
        a.x_f16 = inp_f16 + offset;
        a.out[0].data = out_f16 + offset;
        a.tokens = 1;
        a.n1 = static_cast<int>(tail);
        kron_quant(a, stream);
    }
}

}  // namespace fq::cuda
