// Device helpers shared by the evaluator's kernels: the fake quantizer of fake_quant.h in the CPU's float arithmetic
// (IEEE division, rintf = std::nearbyint with ties to even, no contracted products) and std::max/std::min
// semantics. Included by .cu files only.
#pragma once

#include <cuda_runtime.h>

namespace fq::cuda::wineval {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

// std::max / std::min semantics (the first argument wins ties and NaN comparisons), as the CPU code uses them.
__device__ __forceinline__ float cpu_max(float a, float b) { return a < b ? b : a; }
__device__ __forceinline__ float cpu_min(float a, float b) { return b < a ? b : a; }

// Scale and zero point of one row from its raw max/min, exactly as act_row_params (fake_quant.cpp) in float.
struct QuantParams {
    float s, z, qlo, qhi;
};

// sig_max / sig_min: float(sigmoid(LAC logit)), or 1 without LAC (x * 1 is exact, so that is the CPU's no-LAC path).
__device__ __forceinline__ QuantParams quant_params(float amax, float amin, bool sym, int bits, float sig_max,
                                                    float sig_min) {
    QuantParams p;
    const int qmax = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    float xmax = __fmul_rn(cpu_max(amax, 0.0f), sig_max);
    float xmin = __fmul_rn(cpu_min(amin, 0.0f), sig_min);
    p.z = 0.0f;
    p.qhi = static_cast<float>(qmax);
    if (sym) {
        p.qlo = static_cast<float>(-(qmax + 1));
        const float m = cpu_max(fabsf(xmin), xmax);
        p.s = m == 0.0f ? 1.0f : __fdiv_rn(m, static_cast<float>(qmax));
    } else {
        p.qlo = 0.0f;
        if (xmin == 0.0f && xmax == 0.0f) {
            xmin = -1.0f;
            xmax = 1.0f;
        }
        p.s = __fdiv_rn(__fsub_rn(xmax, xmin), static_cast<float>(qmax));
        p.z = rintf(__fdiv_rn(-xmin, p.s));
    }
    return p;
}

__device__ __forceinline__ float fake_quant(float x, const QuantParams &p) {
    const float q = cpu_min(cpu_max(__fadd_rn(rintf(__fdiv_rn(x, p.s)), p.z), p.qlo), p.qhi);
    return __fmul_rn(p.s, __fsub_rn(q, p.z));
}

// Max and min over a warp (every lane gets both).
__device__ __forceinline__ void warp_max_min(float &vmax, float &vmin) {
    for (int o = 16; o > 0; o >>= 1) {
        vmax = fmaxf(vmax, __shfl_xor_sync(kFullMask, vmax, o));
        vmin = fminf(vmin, __shfl_xor_sync(kFullMask, vmin, o));
    }
}

}  // namespace fq::cuda::wineval
