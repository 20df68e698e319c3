// Every CUDA kernel against its CPU twin on random data (the twins themselves are checked in
// test_cuda_twins.cpp). Skipped when the machine has no CUDA device; argument checks run everywhere, since they
// happen before anything touches the GPU. Compiled only in builds with the CUDA backend; empty otherwise.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "cpu/dequant_ref.h"
#include "cpu/rmsnorm_ref.h"
#include "cuda/cuda_backend.h"
#include "cuda/dequant.h"
#include "cuda/rmsnorm.h"
#include "io/gguf.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;

constexpr uint32_t kQ4_1 = static_cast<uint32_t>(fq::gguf::TensorType::Q4_1);
constexpr uint32_t kQ8_0 = static_cast<uint32_t>(fq::gguf::TensorType::Q8_0);
constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // u = 2^-24, FP32 round-to-nearest

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

class CudaKernels : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
        stream_ = Stream::create();
    }
    Stream stream_;
};

// ---- RMSNorm -------------------------------------------------------------------------------------------------------
//
// Tolerance. The kernel (rmsnorm_forward_kernel1, 256 threads per row) forms S = sum(x^2) in FP32: each thread a
// serial fmaf chain over n_s = ceil(cols / 256) elements (one rounding per step), then 5 shuffle levels inside a
// warp and 3 effective levels over the 8 warp sums. Every term passes through at most n_s + 8 roundings, and all
// terms are positive, so |S' - S| <= (n_s + 8) u S to first order. Then /cols, +eps (one rounding each, positive
// terms), sqrt (halves the relative error, adds one rounding) and 1/x (one): rstd is within
// ((n_s + 10) / 2 + 2) u = (n_s / 2 + 7) u of exact. out = x * rstd * w adds two roundings: (n_s / 2 + 9) u. The
// double-precision twin is within u/2 of exact, so the checks use (n_s / 2 + 7.5) u and (n_s / 2 + 9.5) u relative
// to the twin's value.

struct RmsCase {
    int64_t rows, cols;
};

void check_rmsnorm(const Stream &stream, int64_t rows, int64_t cols, uint32_t seed, bool in_place) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " cols=" << cols << " in_place=" << in_place);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    // inp: (rows, cols), rows at three magnitudes so that eps matters in some and not in others.
    std::vector<float> inp(static_cast<size_t>(rows * cols)), weight(static_cast<size_t>(cols));
    const float row_scale[3] = {1e-3f, 1.0f, 1e3f};
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) inp[static_cast<size_t>(r * cols + c)] = unit(rng) * row_scale[r % 3];
    for (auto &w : weight) w = 1.0f + 0.5f * unit(rng);
    const float eps = 1e-5f;

    std::vector<float> ref(inp.size()), ref_rstd(static_cast<size_t>(rows));
    fq::cpu::rmsnorm_forward(ref.data(), ref_rstd.data(), inp.data(), weight.data(), rows, cols, eps);

    DeviceBuffer d_inp = upload(inp, stream), d_weight = upload(weight, stream);
    DeviceBuffer d_out_separate = in_place ? DeviceBuffer() : DeviceBuffer(inp.size() * sizeof(float));
    DeviceBuffer &d_out = in_place ? d_inp : d_out_separate;
    DeviceBuffer d_rstd(static_cast<size_t>(rows) * sizeof(float));
    fq::cuda::rmsnorm_forward(d_out.as<float>(), d_rstd.as<float>(), d_inp.as<float>(), d_weight.as<float>(), rows,
                              cols, eps, stream);
    const std::vector<float> out = download<float>(d_out, inp.size(), stream);
    const std::vector<float> rstd = download<float>(d_rstd, static_cast<size_t>(rows), stream);

    const double n_s = std::ceil(static_cast<double>(cols) / 256.0);
    const double tol_rstd = (n_s / 2 + 7.5) * kUnitRoundoff, tol_out = (n_s / 2 + 9.5) * kUnitRoundoff;
    int faults = 0;
    for (int64_t r = 0; r < rows && faults < 10; ++r) {
        const size_t ri = static_cast<size_t>(r);
        if (!(std::fabs(rstd[ri] - ref_rstd[ri]) <= tol_rstd * ref_rstd[ri])) {
            ADD_FAILURE() << "rstd[" << r << "] = " << rstd[ri] << ", twin " << ref_rstd[ri];
            ++faults;
        }
        for (int64_t c = 0; c < cols && faults < 10; ++c) {
            const size_t i = static_cast<size_t>(r * cols + c);
            if (!(std::fabs(out[i] - ref[i]) <= tol_out * std::fabs(ref[i]))) {
                ADD_FAILURE() << "out[" << r << "][" << c << "] = " << out[i] << ", twin " << ref[i]
                              << ", relative error " << std::fabs(out[i] - ref[i]) / std::fabs(ref[i])
                              << " > " << tol_out;
                ++faults;
            }
        }
    }
}

TEST_F(CudaKernels, RmsNormMatchesTwin) {
    // Shapes: a lone element; fewer columns than threads; LLaMA-family widths (576 SmolLM2-135M, 4096 LLaMA-7B,
    // 11008 its FFN); a width that leaves a ragged last stride; many rows.
    const RmsCase cases[] = {{1, 1}, {3, 7}, {5, 64}, {7, 576}, {17, 1000}, {64, 4096}, {3, 11008}, {4, 8195},
                             {1000, 128}};
    uint32_t seed = 1;
    for (const RmsCase &c : cases) check_rmsnorm(stream_, c.rows, c.cols, seed++, /*in_place=*/false);
    check_rmsnorm(stream_, 9, 4096, seed++, /*in_place=*/true);
}

TEST_F(CudaKernels, RmsNormWithoutRstdAndZeroRows) {
    std::vector<float> inp(2 * 64, 0.5f), weight(64, 2.0f);
    DeviceBuffer d_inp = upload(inp, stream_), d_weight = upload(weight, stream_), d_out(inp.size() * sizeof(float));
    fq::cuda::rmsnorm_forward(d_out.as<float>(), nullptr, d_inp.as<float>(), d_weight.as<float>(), 2, 64, 0.0f,
                              stream_);
    // mean(x^2) = 1/4 exactly, rstd = 2, out = 0.5 * 2 * 2 = 2: every step exact.
    for (float v : download<float>(d_out, inp.size(), stream_)) ASSERT_EQ(v, 2.0f);
    EXPECT_NO_THROW(fq::cuda::rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, 0, 64, 1e-5f, stream_));
    stream_.synchronize();
}

// ---- Dequantization ------------------------------------------------------------------------------------------------
//
// Tolerance: none. d*q is exact in FP32 (an 11-bit significand times an integer of at most 8 bits), so kernel and
// twin both round exactly once (the addition of m for Q4_1, nothing for Q8_0) and, for FP16, once more from that
// same FP32 value with round-to-nearest-even: the outputs must be identical bit for bit.

// (rows, cols / 32) random blocks of `type` with finite scales, some of them subnormal halves, one zero.
std::vector<uint8_t> random_blocks(uint32_t type, int64_t rows, int64_t cols, uint32_t seed) {
    const int block_bytes = type == kQ8_0 ? 34 : 20;
    const int n_scales = type == kQ8_0 ? 1 : 2;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
    std::vector<uint8_t> blocks(static_cast<size_t>(rows * (cols / 32) * block_bytes));
    for (auto &b : blocks) b = static_cast<uint8_t>(byte(rng));
    size_t k = 0;
    for (size_t off = 0; off < blocks.size(); off += block_bytes, ++k) {
        for (int s = 0; s < n_scales; ++s) {
            float v = scale(rng);
            if (k % 5 == 3) v *= 1e-3f;  // |v| < 2^-14: a subnormal half
            if (k == 1) v = 0.0f;
            const uint16_t h = fq::cpu::f32_to_f16_bits(v);
            blocks[off + 2 * s] = static_cast<uint8_t>(h & 0xFF);
            blocks[off + 2 * s + 1] = static_cast<uint8_t>(h >> 8);
        }
    }
    return blocks;
}

TEST_F(CudaKernels, DequantizeMatchesTwinBitForBit) {
    struct Case {
        int64_t rows, cols, ld_out;
    };
    // One block; a row of several blocks; padded rows (ld_out > cols); a LLaMA-7B-sized row set.
    const Case cases[] = {{1, 32, 32}, {3, 96, 96}, {5, 64, 100}, {37, 4096, 4096}, {8, 11008, 11008 + 32}};
    uint32_t seed = 100;
    for (uint32_t type : {kQ8_0, kQ4_1}) {
        for (const Case &c : cases) {
            SCOPED_TRACE(testing::Message() << "type=" << fq::gguf::tensor_type_name(type) << " rows=" << c.rows
                                            << " cols=" << c.cols << " ld_out=" << c.ld_out);
            const std::vector<uint8_t> blocks = random_blocks(type, c.rows, c.cols, seed++);
            const size_t n_out = static_cast<size_t>(c.rows * c.ld_out);
            // Sentinels in the padding columns must survive: 0xFFFFFFFF / 0xFFFF (NaN patterns neither path makes).
            std::vector<float> ref(n_out);
            std::vector<uint16_t> ref_f16(n_out, 0xFFFF);
            std::memset(ref.data(), 0xFF, n_out * sizeof(float));
            fq::cpu::dequantize_rows_f32(ref.data(), c.ld_out, blocks.data(), type, c.rows, c.cols);
            fq::cpu::dequantize_rows_f16(ref_f16.data(), c.ld_out, blocks.data(), type, c.rows, c.cols);

            DeviceBuffer d_blocks = upload(blocks, stream_);
            DeviceBuffer d_out(n_out * sizeof(float)), d_out_f16(n_out * sizeof(uint16_t));
            d_out.fill_bytes(0xFF, stream_);
            d_out_f16.fill_bytes(0xFF, stream_);
            fq::cuda::dequantize_rows_f32(d_out.as<float>(), c.ld_out, d_blocks.data(), type, c.rows, c.cols,
                                          stream_);
            fq::cuda::dequantize_rows_f16(d_out_f16.as<uint16_t>(), c.ld_out, d_blocks.data(), type, c.rows,
                                          c.cols, stream_);
            const std::vector<uint32_t> out = download<uint32_t>(d_out, n_out, stream_);
            const std::vector<uint16_t> out_f16 = download<uint16_t>(d_out_f16, n_out, stream_);
            for (size_t i = 0; i < n_out; ++i) {
                uint32_t ref_bits;
                std::memcpy(&ref_bits, &ref[i], sizeof(ref_bits));
                ASSERT_EQ(out[i], ref_bits) << "f32 element " << i / c.ld_out << "," << i % c.ld_out;
                ASSERT_EQ(out_f16[i], ref_f16[i]) << "f16 element " << i / c.ld_out << "," << i % c.ld_out;
            }
        }
    }
}

TEST(CudaKernelArguments, RejectedBeforeAnyDeviceWork) {
    // The legacy default stream needs no device, and every check runs before a launch: these pass with no GPU.
    Stream legacy;
    uint8_t fake[64] = {};
    float *out = reinterpret_cast<float *>(fake);
    expect_status([&] { fq::cuda::dequantize_rows_f32(out, 48, fake, kQ8_0, 1, 48, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::dequantize_rows_f32(out, 16, fake, kQ8_0, 1, 32, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::dequantize_rows_f32(out, 32, fake + 1, kQ4_1, 1, 32, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::dequantize_rows_f16(nullptr, 32, fake, kQ8_0, 1, 32, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::dequantize_rows_f32(out, 32, fake, 12 /* Q4_K */, 1, 32, legacy); },
                  FQ_STATUS_UNSUPPORTED);
    expect_status([&] { fq::cuda::rmsnorm_forward(out, nullptr, out, out, 1, 0, 1e-5f, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::rmsnorm_forward(out, nullptr, out, out, 1, 4, -1.0f, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    expect_status([&] { fq::cuda::rmsnorm_forward(nullptr, nullptr, out, out, 1, 4, 1e-5f, legacy); },
                  FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_NO_THROW(fq::cuda::dequantize_rows_f32(nullptr, 32, nullptr, kQ4_1, 0, 32, legacy));
}

}  // namespace

#endif  // FQ_HAVE_CUDA
