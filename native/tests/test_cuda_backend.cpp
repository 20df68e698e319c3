// The CUDA backend's services: cudaError_t -> fq::Error conversion (status, code, name, file:line), behaviour on a
// machine without a GPU or driver (device_count() == 0, allocations refused with DEVICE_UNAVAILABLE, never a
// crash), and, where there is a device, memory, streams and recovery from a failed allocation.
// Compiled only in builds with the CUDA backend; empty otherwise.
#ifdef FQ_HAVE_CUDA

#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"

namespace {

using fq::cuda::DeviceBuffer;
using fq::cuda::Stream;

// Runs fn, which must throw fq::Error; returns it.
template <class Fn> fq::Error catch_error(Fn &&fn) {
    try {
        fn();
    } catch (const fq::Error &e) {
        return e;
    }
    ADD_FAILURE() << "expected fq::Error, nothing was thrown";
    return fq::Error(FQ_STATUS_OK, "");
}

TEST(CudaBackend, MapsCudaErrorsToStatuses) {
    using fq::cuda::status_for_cuda_error;
    EXPECT_EQ(status_for_cuda_error(cudaSuccess), FQ_STATUS_OK);
    EXPECT_EQ(status_for_cuda_error(cudaErrorMemoryAllocation), FQ_STATUS_DEVICE_OUT_OF_MEMORY);
    for (cudaError_t e : {cudaErrorNoDevice, cudaErrorInsufficientDriver, cudaErrorInvalidDevice,
                          cudaErrorNoKernelImageForDevice, cudaErrorUnsupportedPtxVersion}) {
        EXPECT_EQ(status_for_cuda_error(e), FQ_STATUS_DEVICE_UNAVAILABLE) << cudaGetErrorName(e);
    }
    for (cudaError_t e : {cudaErrorInvalidValue, cudaErrorIllegalAddress, cudaErrorLaunchFailure,
                          cudaErrorInvalidConfiguration}) {
        EXPECT_EQ(status_for_cuda_error(e), FQ_STATUS_CUDA) << cudaGetErrorName(e);
    }
}

TEST(CudaBackend, CheckMacroThrowsWithNameCodeAndLocation) {
    EXPECT_NO_THROW(FQ_CUDA_CHECK(cudaSuccess));
    const int line = __LINE__ + 1;
    fq::Error e = catch_error([] { FQ_CUDA_CHECK(cudaErrorMemoryAllocation); });
    EXPECT_EQ(e.status(), FQ_STATUS_DEVICE_OUT_OF_MEMORY);
    EXPECT_EQ(e.cuda_error(), static_cast<int>(cudaErrorMemoryAllocation));
    EXPECT_EQ(e.cuda_error_name(), "cudaErrorMemoryAllocation");
    const std::string what = e.what();
    EXPECT_NE(what.find("cudaErrorMemoryAllocation"), std::string::npos) << what;
    EXPECT_NE(what.find("test_cuda_backend.cpp:" + std::to_string(line)), std::string::npos) << what;

    fq::Error other = catch_error([] { FQ_CUDA_CHECK(cudaErrorIllegalAddress); });
    EXPECT_EQ(other.status(), FQ_STATUS_CUDA);
    EXPECT_EQ(other.cuda_error_name(), "cudaErrorIllegalAddress");
}

TEST(CudaBackend, DeviceCountNeverThrows) {
    int n = -1;
    EXPECT_NO_THROW(n = fq::cuda::device_count());
    EXPECT_GE(n, 0);
    // Asking twice gives the same answer: the first call's failure (no driver) left no state behind.
    EXPECT_EQ(fq::cuda::device_count(), n);
}

TEST(CudaBackend, WithoutADeviceEverythingIsRefusedCleanly) {
    if (fq::cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present; this checks the no-device path";
    EXPECT_EQ(catch_error([] { DeviceBuffer b(1024); }).status(), FQ_STATUS_DEVICE_UNAVAILABLE);
    EXPECT_EQ(catch_error([] { Stream::create(); }).status(), FQ_STATUS_DEVICE_UNAVAILABLE);
    EXPECT_EQ(catch_error([] { fq::cuda::device_properties(0); }).status(), FQ_STATUS_DEVICE_UNAVAILABLE);
    fq::Error e = catch_error([] { fq::cuda::set_device(0); });
    EXPECT_EQ(e.status(), FQ_STATUS_DEVICE_UNAVAILABLE);
    EXPECT_FALSE(e.cuda_error_name().empty());
    // What needs no device still works.
    DeviceBuffer empty(0);
    EXPECT_EQ(empty.data(), nullptr);
    Stream legacy;
    EXPECT_EQ(legacy.handle(), nullptr);
}

class CudaDevice : public ::testing::Test {
  protected:
    void SetUp() override {
        if (fq::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(CudaDevice, PropertiesOfEveryDevice) {
    const int n = fq::cuda::device_count();
    for (int i = 0; i < n; ++i) {
        const fq::cuda::DeviceProperties p = fq::cuda::device_properties(i);
        EXPECT_FALSE(p.name.empty());
        EXPECT_EQ(p.ordinal, i);
        EXPECT_GE(p.sm_major, 7) << p.name;  // CUDA 13 supports sm_75 and newer
        EXPECT_GT(p.n_sms, 0);
        EXPECT_GT(p.total_memory_bytes, uint64_t{1} << 30);
        EXPECT_GT(p.shared_memory_per_block_optin_bytes, 48u * 1024u) << p.name;
    }
    EXPECT_EQ(catch_error([n] { fq::cuda::device_properties(n); }).status(), FQ_STATUS_DEVICE_UNAVAILABLE);
    uint64_t free_b = 0, total_b = 0;
    fq::cuda::memory_info(&free_b, &total_b);
    EXPECT_GT(free_b, 0u);
    EXPECT_LE(free_b, total_b);
}

TEST_F(CudaDevice, BufferRoundTripOffsetsAndBounds) {
    Stream stream = Stream::create();
    std::vector<int32_t> host(1000);
    std::iota(host.begin(), host.end(), -500);
    DeviceBuffer buf(host.size() * sizeof(int32_t));
    buf.fill_bytes(0, stream);
    buf.upload(host.data() + 10, 100 * sizeof(int32_t), stream, 10 * sizeof(int32_t));
    std::vector<int32_t> back(host.size(), 7);
    buf.download(back.data(), back.size() * sizeof(int32_t), stream);
    for (size_t i = 0; i < back.size(); ++i) EXPECT_EQ(back[i], i >= 10 && i < 110 ? host[i] : 0) << i;

    EXPECT_EQ(catch_error([&] { buf.upload(host.data(), buf.n_bytes() + 1, stream); }).status(),
              FQ_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(catch_error([&] { buf.download(back.data(), 8, stream, buf.n_bytes() - 4); }).status(),
              FQ_STATUS_INVALID_ARGUMENT);

    DeviceBuffer moved = std::move(buf);
    EXPECT_EQ(buf.data(), nullptr);
    EXPECT_EQ(moved.n_bytes(), host.size() * sizeof(int32_t));
    int32_t first = 0;
    moved.download(&first, sizeof(first), stream);
    EXPECT_EQ(first, 0);
}

TEST_F(CudaDevice, FailedAllocationIsOutOfMemoryAndLeavesNoStaleError) {
    // 2^50 bytes exceeds any GPU: the runtime says cudaErrorMemoryAllocation.
    fq::Error e = catch_error([] { DeviceBuffer huge(size_t{1} << 50); });
    EXPECT_EQ(e.status(), FQ_STATUS_DEVICE_OUT_OF_MEMORY) << e.what();
    EXPECT_EQ(e.cuda_error_name(), "cudaErrorMemoryAllocation");
    // The failure is not reported again by the next check of an unrelated call.
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    Stream stream = Stream::create();
    DeviceBuffer ok(256);
    ok.fill_bytes(1, stream);
    EXPECT_NO_THROW(stream.synchronize());
}

}  // namespace

#endif  // FQ_HAVE_CUDA
