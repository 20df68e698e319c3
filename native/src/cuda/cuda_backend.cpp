// Host-only part of the CUDA backend: compiled by the host compiler against the runtime API (no kernels here, so
// it does not pay for nvcc's per-architecture passes).
#include "cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <utility>

#include "core/error.h"

namespace fq::cuda {

int device_count() noexcept {
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess) {
        // No driver / no GPU is reported here as a (non-sticky) error: clear it, so it does not surface later
        // from an unrelated cudaGetLastError.
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

int32_t status_for_cuda_error(int cuda_error) noexcept {
    switch (static_cast<cudaError_t>(cuda_error)) {
    case cudaSuccess:
        return FQ_STATUS_OK;
    case cudaErrorMemoryAllocation:
        return FQ_STATUS_DEVICE_OUT_OF_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorStubLibrary:
    case cudaErrorSystemNotReady:
        return FQ_STATUS_DEVICE_UNAVAILABLE;
    default:
        return FQ_STATUS_CUDA;
    }
}

void throw_cuda_error(int cuda_error, const char *expr, const char *file, int line) {
    const cudaError_t e = static_cast<cudaError_t>(cuda_error);
    // Clears the runtime's record of a non-sticky error (a failed allocation, a bad argument), so it is not
    // reported a second time by the next launch check. Sticky errors (a faulted kernel) stay, as they must.
    (void)cudaGetLastError();
    const char *name = cudaGetErrorName(e);
    const char *text = cudaGetErrorString(e);
    const char *base = std::strrchr(file, '/');
    base = base ? base + 1 : file;
    std::string message = strprintf("%s failed: %s: %s (%s:%d)", expr, name ? name : "cudaErrorUnknown",
                                    text ? text : "unknown error", base, line);
    throw Error(status_for_cuda_error(cuda_error), std::move(message), cuda_error, name ? name : "");
}

DeviceProperties device_properties(int ordinal) {
    cudaDeviceProp prop;
    std::memset(&prop, 0, sizeof(prop));
    FQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
    DeviceProperties out;
    prop.name[sizeof(prop.name) - 1] = '\0';
    out.name = prop.name;
    out.ordinal = ordinal;
    out.sm_major = prop.major;
    out.sm_minor = prop.minor;
    out.n_sms = prop.multiProcessorCount;
    out.total_memory_bytes = prop.totalGlobalMem;
    out.l2_cache_bytes = static_cast<uint64_t>(prop.l2CacheSize);
    out.shared_memory_per_block_optin_bytes = prop.sharedMemPerBlockOptin;
    return out;
}

void set_device(int ordinal) { FQ_CUDA_CHECK(cudaSetDevice(ordinal)); }

int current_device() {
    int ordinal = 0;
    FQ_CUDA_CHECK(cudaGetDevice(&ordinal));
    return ordinal;
}

void memory_info(uint64_t *free_bytes, uint64_t *total_bytes) {
    size_t free_b = 0, total_b = 0;
    FQ_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (free_bytes) *free_bytes = free_b;
    if (total_bytes) *total_bytes = total_b;
}

// ---- Stream --------------------------------------------------------------------------------------------------------

Stream Stream::create() {
    cudaStream_t s = nullptr;
    // Non-blocking: no implicit ordering with the legacy default stream, so work on separate streams can overlap.
    FQ_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    Stream out;
    out.stream_ = s;
    out.owned_ = true;
    return out;
}

Stream::~Stream() {
    // A destructor cannot report; a failure here (a sticky error from an earlier fault) was reported by the call
    // that caused it.
    if (owned_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

Stream::Stream(Stream &&other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)), owned_(std::exchange(other.owned_, false)) {}

Stream &Stream::operator=(Stream &&other) noexcept {
    if (this != &other) {
        if (owned_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
        stream_ = std::exchange(other.stream_, nullptr);
        owned_ = std::exchange(other.owned_, false);
    }
    return *this;
}

void Stream::synchronize() const { FQ_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_))); }

// ---- DeviceBuffer --------------------------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t n_bytes) {
    if (n_bytes == 0) return;
    void *p = nullptr;
    FQ_CUDA_CHECK(cudaMalloc(&p, n_bytes));
    ptr_ = p;
    n_bytes_ = n_bytes;
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) (void)cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), n_bytes_(std::exchange(other.n_bytes_, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
    if (this != &other) {
        if (ptr_) (void)cudaFree(ptr_);
        ptr_ = std::exchange(other.ptr_, nullptr);
        n_bytes_ = std::exchange(other.n_bytes_, 0);
    }
    return *this;
}

namespace {
void check_range(size_t buffer_bytes, size_t offset_bytes, size_t n_bytes, const void *host) {
    FQ_CHECK(offset_bytes <= buffer_bytes && n_bytes <= buffer_bytes - offset_bytes, FQ_STATUS_INVALID_ARGUMENT,
             "copy of %zu bytes at offset %zu is outside a device buffer of %zu bytes", n_bytes, offset_bytes,
             buffer_bytes);
    FQ_CHECK(host != nullptr || n_bytes == 0, FQ_STATUS_INVALID_ARGUMENT, "host pointer is NULL");
}
}  // namespace

void DeviceBuffer::upload(const void *host, size_t n_bytes, const Stream &stream, size_t offset_bytes) {
    check_range(n_bytes_, offset_bytes, n_bytes, host);
    if (n_bytes == 0) return;
    auto s = static_cast<cudaStream_t>(stream.handle());
    FQ_CUDA_CHECK(cudaMemcpyAsync(static_cast<char *>(ptr_) + offset_bytes, host, n_bytes, cudaMemcpyHostToDevice, s));
    FQ_CUDA_CHECK(cudaStreamSynchronize(s));
}

void DeviceBuffer::download(void *host, size_t n_bytes, const Stream &stream, size_t offset_bytes) const {
    check_range(n_bytes_, offset_bytes, n_bytes, host);
    if (n_bytes == 0) return;
    auto s = static_cast<cudaStream_t>(stream.handle());
    FQ_CUDA_CHECK(
        cudaMemcpyAsync(host, static_cast<const char *>(ptr_) + offset_bytes, n_bytes, cudaMemcpyDeviceToHost, s));
    FQ_CUDA_CHECK(cudaStreamSynchronize(s));
}

void DeviceBuffer::fill_bytes(int value, const Stream &stream) {
    if (n_bytes_ == 0) return;
    FQ_CUDA_CHECK(cudaMemsetAsync(ptr_, value, n_bytes_, static_cast<cudaStream_t>(stream.handle())));
}

}  // namespace fq::cuda
