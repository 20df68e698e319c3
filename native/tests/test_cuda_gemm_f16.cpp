// The library's FP16 product (cuda/layer_ops_f16.h gemm_f16_simple: the GEMV path for m <= 8 and the tiled kernel)
// against a float64 product of the same FP16 inputs. Both paths sum in FP32 and round once to FP16, so each output
// is within one FP16 rounding (half an ulp) of the exact value plus FP32 summation error (k * 2^-24 of sum |a w|).
// Skipped without a CUDA device.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/dequant_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/layer_ops_f16.h"

namespace {

using fq::cpu::f16_bits_to_f32;
using fq::cpu::f32_to_f16_bits;

TEST(CudaGemmF16, GemvAndTiledPathsMatchFloat64) {
    if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const fq::cuda::Stream s;
    std::mt19937 g(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Case {
        int64_t m, n, k;
    };
    // m <= 8 with k % 8 == 0 takes the GEMV; m > 8 or k % 8 != 0 the tiled kernel.
    for (const Case c : {Case{1, 576, 576}, Case{3, 1000, 1536}, Case{8, 5, 64}, Case{1, 70, 1000}, Case{9, 576, 576},
                         Case{70, 130, 200}}) {
        std::vector<uint16_t> a(static_cast<size_t>(c.m * c.k)), w(static_cast<size_t>(c.n * c.k));
        for (auto &x : a) x = f32_to_f16_bits(nd(g));
        for (auto &x : w) x = f32_to_f16_bits(nd(g) / std::sqrt(static_cast<float>(c.k)));
        fq::cuda::DeviceBuffer da(a.size() * 2), dw(w.size() * 2), dd(static_cast<size_t>(c.m * c.n) * 2);
        da.upload(a.data(), a.size() * 2, s);
        dw.upload(w.data(), w.size() * 2, s);
        fq::cuda::gemm_f16_simple(dd.as<uint16_t>(), da.as<uint16_t>(), dw.as<uint16_t>(), c.m, c.n, c.k, s);
        std::vector<uint16_t> d(static_cast<size_t>(c.m * c.n));
        dd.download(d.data(), d.size() * 2, s);
        for (int64_t i = 0; i < c.m; ++i)
            for (int64_t j = 0; j < c.n; ++j) {
                double exact = 0.0, mag = 0.0;
                for (int64_t t = 0; t < c.k; ++t) {
                    const double p = static_cast<double>(f16_bits_to_f32(a[i * c.k + t])) * f16_bits_to_f32(w[j * c.k + t]);
                    exact += p;
                    mag += std::fabs(p);
                }
                const double got = f16_bits_to_f32(d[static_cast<size_t>(i * c.n + j)]);
                const double tol = std::ldexp(std::fabs(exact), -11) + mag * c.k * std::ldexp(1.0, -24) + 1e-7;
                ASSERT_NEAR(got, exact, tol) << "m=" << c.m << " n=" << c.n << " k=" << c.k << " at " << i << "," << j;
            }
    }
}

}  // namespace

#endif  // FQ_HAVE_CUDA
