// The W4A4 GEMM kernels (native/src/cuda/w4a4_gemm.h) against the CPU twin (native/src/cpu/w4a4_gemm_ref.h, itself
// checked in test_w4a4_gemm_ref.cpp) on random data. Every kernel this device can run is exercised on its own
// (forced), with both activation formats, with and without bias; the automatic dispatch is checked on odd M and on
// LLaMA shapes at small M. Skipped without a CUDA device, except the shape checks, which happen before any device
// work. Compiled only in builds with the CUDA backend.
//
// Tolerance: none, the outputs must be identical bit for bit. The accumulator is an int32 sum of integer products,
// exact in any order (|acc| <= 64 K = 2^22 at the largest K allowed, 65536; the GEMV's x16 / x256 operand scaling
// stays below 2^30). The epilogue rounds three times in a fixed order, fp32(acc) being exact below 2^24:
//   t = RN32(acc * a_scale), y = RN32(t * b_scale + bias) (one fused rounding), D = RN16(y).
// Each step is a correctly rounded IEEE operation on identical inputs, in the kernels (__fmul_rn, __fmaf_rn,
// __float2half_rn, never contracted) as in the twin (fp32 multiply, fmaf, f32_to_f16_bits), so the results agree
// exactly. Had the order been left free, a fused t * b_scale (one rounding instead of two) or an FP32-vs-FP16
// intermediate would move the fp32 value by up to 2^-23 relative, which after the FP16 rounding is at most one FP16
// ulp (2^-10 relative): the tolerance a free order would need. The test insists on zero.
//
// Under CUDA_FORCE_PTX_JIT=1 on an sm_90 GPU the driver runs the compute_86 PTX, so the sm_80/86 INT4 kernel is what
// runs (and is checked) while the sm_90 kernels report UNSUPPORTED and are skipped: that is how the RTX 3090 path is
// tested on an H100.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "cpu/w4a4_gemm_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/w4a4_gemm.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;
using fq::cuda::W4A4ActFormat;
using fq::cuda::W4A4GemmArgs;
using fq::cuda::W4A4Kernel;

void expect_status(const std::function<void()> &fn, int32_t status) {
    try {
        fn();
        ADD_FAILURE() << "expected fq::Error with status " << status;
    } catch (const fq::Error &e) {
        EXPECT_EQ(e.status(), status) << e.what();
    }
}

template <class T> DeviceBuffer upload(const std::vector<T> &host, const Stream &stream) {
    DeviceBuffer buf(host.size() * sizeof(T));
    buf.upload(host.data(), host.size() * sizeof(T), stream);
    return buf;
}

template <class T> std::vector<T> download(const DeviceBuffer &buf, size_t n, const Stream &stream) {
    std::vector<T> host(n);
    buf.download(host.data(), n * sizeof(T), stream);
    return host;
}

// One random problem with its twin result, in every operand form the kernels take.
struct Problem {
    int64_t m, n, k;
    std::vector<int8_t> a, b;             // (m, k), (n, k) values in [-8, 7]
    std::vector<uint8_t> a_packed, b_packed;
    std::vector<float> a_scale, b_scale, bias;
    std::vector<int32_t> acc;               // (m, n) the twin's int32 accumulators
    std::vector<uint16_t> ref, ref_nobias;  // (m, n) FP16 bits from the twin
    DeviceBuffer d_a_packed, d_a_s8, d_b_packed, d_b_s8, d_a_scale, d_b_scale, d_bias, d_out;

    Problem(int64_t m_, int64_t n_, int64_t k_, uint32_t seed, const Stream &stream, bool extreme = false)
        : m(m_), n(n_), k(k_) {
        std::mt19937 rng(seed);
        std::uniform_int_distribution<int> q(-8, 7);
        a.resize(static_cast<size_t>(m * k));
        b.resize(static_cast<size_t>(n * k));
        for (auto &x : a) x = static_cast<int8_t>(extreme ? -8 : q(rng));
        for (auto &x : b) x = static_cast<int8_t>(extreme ? -8 : q(rng));
        a_packed.resize(a.size() / 2);
        b_packed.resize(b.size() / 2);
        fq::cpu::pack_int4(a_packed.data(), a.data(), m, k);
        fq::cpu::pack_int4(b_packed.data(), b.data(), n, k);
        // Scales of real magnitudes (absmax / 7 of activations and weights) with a wide spread; |D| stays well inside
        // the FP16 range except for the extreme case, which checks the large-accumulator end.
        std::uniform_real_distribution<float> log_scale(-9.0f, -3.0f), unit(-1.0f, 1.0f);
        a_scale.resize(static_cast<size_t>(m));
        b_scale.resize(static_cast<size_t>(n));
        bias.resize(static_cast<size_t>(n));
        for (auto &s : a_scale) s = extreme ? 1.0f / 64.0f : std::exp2(log_scale(rng));
        for (auto &s : b_scale) s = extreme ? 1.0f / 1024.0f : std::exp2(log_scale(rng));
        for (auto &x : bias) x = unit(rng);
        // The twin's accumulators once, then its epilogue with and without bias (w4a4_gemm = the two in a row).
        acc.resize(static_cast<size_t>(m * n));
        fq::cpu::w4a4_gemm_s32(acc.data(), a_packed.data(), b_packed.data(), m, n, k);
        ref.resize(acc.size());
        ref_nobias.resize(acc.size());
        for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
                const size_t o = static_cast<size_t>(i * n + j);
                const float as = a_scale[static_cast<size_t>(i)], bs = b_scale[static_cast<size_t>(j)];
                ref[o] = fq::cpu::w4a4_epilogue(acc[o], as, bs, bias[static_cast<size_t>(j)]);
                ref_nobias[o] = fq::cpu::w4a4_epilogue(acc[o], as, bs, 0.0f);
            }
        }
        d_a_packed = upload(a_packed, stream);
        d_a_s8 = upload(a, stream);
        d_b_packed = upload(b_packed, stream);
        d_b_s8 = upload(b, stream);
        d_a_scale = upload(a_scale, stream);
        d_b_scale = upload(b_scale, stream);
        d_bias = upload(bias, stream);
        d_out = DeviceBuffer(static_cast<size_t>(m * n) * sizeof(uint16_t) + 16);
    }

    W4A4GemmArgs args(W4A4ActFormat format, bool with_b_s8, bool with_bias) {
        W4A4GemmArgs g;
        g.d_f16 = d_out.as<uint16_t>();
        g.a = format == W4A4ActFormat::kInt8 ? d_a_s8.data() : d_a_packed.data();
        g.a_format = format;
        g.a_scale = d_a_scale.as<float>();
        g.b_packed = d_b_packed.as<uint8_t>();
        g.b_s8 = with_b_s8 ? d_b_s8.as<int8_t>() : nullptr;
        g.b_scale = d_b_scale.as<float>();
        g.bias = with_bias ? d_bias.as<float>() : nullptr;
        g.m = m, g.n = n, g.k = k;
        return g;
    }

    // Runs `kernel` (kAuto: the dispatcher's choice) and compares with the twin. Returns the kernel that ran.
    W4A4Kernel check(const Stream &stream, W4A4Kernel kernel, W4A4ActFormat format, bool with_b_s8, bool with_bias) {
        const W4A4GemmArgs g = args(format, with_b_s8, with_bias);
        const W4A4Kernel ran = fq::cuda::w4a4_select_kernel(g, kernel);
        SCOPED_TRACE(testing::Message() << "kernel " << fq::cuda::w4a4_kernel_name(ran) << ", m=" << m << " n=" << n
                                        << " k=" << k << ", A " << (format == W4A4ActFormat::kInt8 ? "int8" : "int4")
                                        << (with_bias ? ", bias" : "") << (with_b_s8 ? ", B int8 copy" : ""));
        d_out.fill_bytes(0xFF, stream);  // NaN everywhere: an element the kernel skips cannot pass
        const size_t ws_bytes = fq::cuda::w4a4_gemm_workspace_bytes(g, kernel);
        DeviceBuffer ws(ws_bytes);
        fq::cuda::w4a4_gemm(g, ws.data(), ws_bytes, stream, kernel);
        const std::vector<uint16_t> out = download<uint16_t>(d_out, ref.size(), stream);
        const std::vector<uint16_t> &want = with_bias ? ref : ref_nobias;
        int64_t n_bad = 0;
        for (size_t i = 0; i < out.size(); ++i) {
            if (out[i] == want[i]) continue;
            if (++n_bad <= 8) {
                const int64_t r = static_cast<int64_t>(i) / n, c = static_cast<int64_t>(i) % n;
                char msg[160];
                std::snprintf(msg, sizeof msg, "D[%lld][%lld] = 0x%04x, twin 0x%04x (acc %d)",
                              static_cast<long long>(r), static_cast<long long>(c), out[i], want[i], acc[i]);
                ADD_FAILURE() << msg;
            }
        }
        EXPECT_EQ(n_bad, 0) << "elements differing from the twin";
        return ran;
    }
};

class CudaW4A4 : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }

    // Whether `kernel` can run here for an m-row problem (with an INT8 weight copy offered).
    static bool available(W4A4Kernel kernel, int64_t m) {
        W4A4GemmArgs g;
        g.m = m, g.n = 64, g.k = 64;
        int8_t dummy = 0;
        g.b_s8 = &dummy;
        try {
            fq::cuda::w4a4_select_kernel(g, kernel);
            return true;
        } catch (const fq::Error &e) {
            if (e.status() != FQ_STATUS_UNSUPPORTED) throw;
            return false;
        }
    }

    // Every format/bias combination of one forced kernel on a few shapes with ragged edges in every dimension.
    void check_kernel(W4A4Kernel kernel) {
        const int64_t max_m = kernel == W4A4Kernel::kGemv ? 16 : 300;
        if (!available(kernel, max_m == 16 ? 16 : 257))
            GTEST_SKIP() << fq::cuda::w4a4_kernel_name(kernel) << " cannot run on this device/build";
        const bool b_s8 = kernel == W4A4Kernel::kSm90S8S8;
        struct Shape {
            int64_t m, n, k;
        };
        // n % 16 == 8 and % 128 != 0; k % 128 == 64; one m per tile edge; SmolLM2's 576 = 9 x 64; a large k.
        const Shape shapes[] = {{1, 8, 64}, {7, 24, 192}, {16, 136, 576}, {33, 264, 320}, {257, 392, 1088},
                                {300, 520, 2048}};
        uint32_t seed = 100 + static_cast<uint32_t>(kernel);
        for (const Shape &s : shapes) {
            if (s.m > max_m) continue;
            Problem p(s.m, s.n, s.k, seed++, stream_);
            for (W4A4ActFormat f : {W4A4ActFormat::kInt4Packed, W4A4ActFormat::kInt8})
                for (bool bias : {false, true}) EXPECT_EQ(p.check(stream_, kernel, f, b_s8, bias), kernel);
        }
        // The largest accumulator the contract allows: k = 65536, all values -8 (acc = 2^22).
        Problem extreme(3, 16, 65536, seed, stream_, /*extreme=*/true);
        for (W4A4ActFormat f : {W4A4ActFormat::kInt4Packed, W4A4ActFormat::kInt8})
            extreme.check(stream_, kernel, f, b_s8, false);
    }

    Stream stream_;
};

TEST_F(CudaW4A4, GemvMatchesTwin) { check_kernel(W4A4Kernel::kGemv); }
TEST_F(CudaW4A4, Sm80Int4MatchesTwin) { check_kernel(W4A4Kernel::kSm80Int4); }
TEST_F(CudaW4A4, Sm90S8S4MatchesTwin) { check_kernel(W4A4Kernel::kSm90S8S4); }
TEST_F(CudaW4A4, Sm90S8S8MatchesTwin) { check_kernel(W4A4Kernel::kSm90S8S8); }

TEST_F(CudaW4A4, AutoDispatchOddM) {
    // M = 1 and 7 take the GEMV; 33 and 257 a tiled kernel. The native activation format is used, then the other.
    const W4A4ActFormat native = fq::cuda::w4a4_native_act_format();
    uint32_t seed = 1;
    for (int64_t m : {1, 7, 33, 257}) {
        Problem p(m, 384, 640, seed++, stream_);
        const W4A4Kernel ran = p.check(stream_, W4A4Kernel::kAuto, native, /*b_s8=*/false, /*bias=*/true);
        EXPECT_EQ(ran == W4A4Kernel::kGemv, m <= 16) << fq::cuda::w4a4_kernel_name(ran);
        p.check(stream_, W4A4Kernel::kAuto,
                native == W4A4ActFormat::kInt8 ? W4A4ActFormat::kInt4Packed : W4A4ActFormat::kInt8, false, false);
        p.check(stream_, W4A4Kernel::kAuto, native, /*b_s8=*/true, false);  // the INT8 copy, where it is used
    }
}

TEST_F(CudaW4A4, LlamaShapesAtSmallM) {
    // (m, n, k): LLaMA-2-7B qkv, o, down; LLaMA-3-8B gate_up, down. Decode sizes, where the GEMV runs.
    const int64_t shapes[][3] = {{16, 12288, 4096}, {1, 4096, 4096}, {7, 4096, 11008}, {1, 28672, 4096},
                                 {16, 4096, 14336}};
    uint32_t seed = 50;
    for (const auto &s : shapes) {
        Problem p(s[0], s[1], s[2], seed++, stream_);
        p.check(stream_, W4A4Kernel::kAuto, fq::cuda::w4a4_native_act_format(), false, true);
    }
    // One prefill-sized LLaMA shape through the tiled kernel of this device.
    Problem p(257, 4096, 4096, seed, stream_);
    p.check(stream_, W4A4Kernel::kAuto, fq::cuda::w4a4_native_act_format(), false, false);
}

TEST_F(CudaW4A4, EmptyMDoesNothing) {
    W4A4GemmArgs g;
    g.m = 0, g.n = 64, g.k = 128;
    EXPECT_NO_THROW(fq::cuda::w4a4_gemm(g, nullptr, 0, stream_));
    stream_.synchronize();
}

TEST_F(CudaW4A4, RejectsBadArguments) {
    Problem p(20, 64, 128, 9, stream_);
    W4A4GemmArgs g = p.args(W4A4ActFormat::kInt4Packed, false, false);
    W4A4GemmArgs bad = g;
    bad.b_scale = nullptr;
    expect_status([&] { fq::cuda::w4a4_gemm(bad, nullptr, 0, stream_); }, FQ_STATUS_INVALID_ARGUMENT);
    bad = g;
    bad.a = static_cast<const uint8_t *>(g.a) + 1;  // misaligned
    expect_status([&] { fq::cuda::w4a4_gemm(bad, nullptr, 0, stream_); }, FQ_STATUS_INVALID_ARGUMENT);
    // A tiled kernel with the non-native activation format needs a workspace; none given.
    g.a_format = fq::cuda::w4a4_native_act_format() == W4A4ActFormat::kInt8 ? W4A4ActFormat::kInt4Packed
                                                                              : W4A4ActFormat::kInt8;
    g.a = g.a_format == W4A4ActFormat::kInt8 ? p.d_a_s8.data() : p.d_a_packed.data();
    if (fq::cuda::w4a4_gemm_workspace_bytes(g) > 0)
        expect_status([&] { fq::cuda::w4a4_gemm(g, nullptr, 0, stream_); }, FQ_STATUS_INVALID_ARGUMENT);
    // Forcing the S8S8 kernel without the INT8 weight copy, or the GEMV for m > 16.
    expect_status([&] { fq::cuda::w4a4_select_kernel(g, W4A4Kernel::kSm90S8S8); }, FQ_STATUS_UNSUPPORTED);
    expect_status([&] { fq::cuda::w4a4_select_kernel(g, W4A4Kernel::kGemv); }, FQ_STATUS_UNSUPPORTED);
    stream_.synchronize();
}

TEST(CudaW4A4Shapes, UnsupportedShapesAreRefusedBeforeAnyLaunch) {
    // Needs no device: the shape is checked first. Pointers are bogus on purpose -- nothing may touch them.
    W4A4GemmArgs g;
    g.d_f16 = reinterpret_cast<uint16_t *>(16);
    g.a = g.b_packed = reinterpret_cast<const uint8_t *>(16);
    g.a_scale = g.b_scale = reinterpret_cast<const float *>(16);
    const int64_t bad[][3] = {{4, 64, 96}, {4, 64, 32}, {4, 12, 128}, {4, 64, 65536 + 64}, {4, 4, 4096}};
    for (const auto &s : bad) {
        g.m = s[0], g.n = s[1], g.k = s[2];
        SCOPED_TRACE(testing::Message() << "m=" << s[0] << " n=" << s[1] << " k=" << s[2]);
        expect_status([&] { fq::cuda::w4a4_gemm(g, nullptr, 0, Stream()); }, FQ_STATUS_UNSUPPORTED);
        expect_status([&] { fq::cuda::w4a4_select_kernel(g); }, FQ_STATUS_UNSUPPORTED);
    }
    g.m = -1, g.n = 64, g.k = 64;
    expect_status([&] { fq::cuda::w4a4_gemm(g, nullptr, 0, Stream()); }, FQ_STATUS_INVALID_ARGUMENT);
}

TEST_F(CudaW4A4, FormatConversionsMatchTheCpuHelpers) {
    std::mt19937 rng(21);
    std::uniform_int_distribution<int> q(-8, 7);
    for (int64_t n_values : {2, 30, 32, 4096 + 34, 1 << 20}) {
        SCOPED_TRACE(testing::Message() << "n_values=" << n_values);
        std::vector<int8_t> values(static_cast<size_t>(n_values));
        for (auto &v : values) v = static_cast<int8_t>(q(rng));
        std::vector<uint8_t> packed(values.size() / 2);
        fq::cpu::pack_int4(packed.data(), values.data(), 1, n_values);
        DeviceBuffer d_values = upload(values, stream_), d_packed(packed.size() + 16), d_back(values.size() + 16);
        fq::cuda::int8_pack_to_int4(d_packed.as<uint8_t>(), d_values.as<int8_t>(), n_values, stream_);
        EXPECT_EQ(download<uint8_t>(d_packed, packed.size(), stream_), packed);
        fq::cuda::int4_unpack_to_int8(d_back.as<int8_t>(), d_packed.as<uint8_t>(), n_values, stream_);
        EXPECT_EQ(download<int8_t>(d_back, values.size(), stream_), values);
    }
}

}  // namespace

#endif  // FQ_HAVE_CUDA
