// The CUDA backend's services for the rest of the library: device discovery, error conversion, device memory and
// streams. Exists only in builds with FQ_HAVE_CUDA.
//
// This header does not include the CUDA headers, so code compiled by the host compiler alone can use it: streams
// travel as opaque handles and CUDA error codes as int. Every failure becomes an fq::Error (see FQ_CUDA_CHECK);
// nothing here aborts, exits or prints.
//
// The runtime is linked statically and loads the driver (libcuda.so) only on first use, so a process on a machine
// without a GPU or driver runs fine until it asks for a device: device_count() then returns 0 and allocations
// throw FQ_STATUS_DEVICE_UNAVAILABLE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace fq::cuda {

// Number of CUDA devices this process can use. 0 when there is no driver, no GPU, or a driver older than the
// runtime (CUDA 13 needs driver 580+). Never throws.
int device_count() noexcept;

struct DeviceProperties {
    std::string name;                   // e.g. "NVIDIA H100 80GB HBM3"
    int ordinal = 0;
    int sm_major = 0;                   // compute capability, e.g. 9 and 0 for sm_90
    int sm_minor = 0;
    int n_sms = 0;                      // streaming multiprocessors
    uint64_t total_memory_bytes = 0;
    uint64_t l2_cache_bytes = 0;
    uint64_t shared_memory_per_block_optin_bytes = 0;  // the most a kernel can ask for with the opt-in attribute
};

// Properties of device `ordinal`. Throws DEVICE_UNAVAILABLE for an ordinal that is not there.
DeviceProperties device_properties(int ordinal);

// Makes `ordinal` the calling thread's current device (later allocations, streams and launches go there).
void set_device(int ordinal);
int current_device();
// Free and total memory of the current device, in bytes.
void memory_info(uint64_t *free_bytes, uint64_t *total_bytes);

// FQ_STATUS_* for a cudaError_t value: memory allocation -> DEVICE_OUT_OF_MEMORY; no device, no or too old a
// driver, invalid ordinal, no kernel image for this GPU -> DEVICE_UNAVAILABLE; anything else -> CUDA.
int32_t status_for_cuda_error(int cuda_error) noexcept;

// Throws fq::Error(status_for_cuda_error(e), "<expr> failed: <name>: <description> (file:line)", e, <name>).
[[noreturn]] void throw_cuda_error(int cuda_error, const char *expr, const char *file, int line);

// A stream. Default-constructed it is the legacy default stream (handle 0), which needs no device to exist;
// Stream::create() makes a new non-blocking stream on the current device, destroyed with the object.
class Stream {
  public:
    Stream() noexcept = default;
    static Stream create();
    ~Stream();
    Stream(Stream &&other) noexcept;
    Stream &operator=(Stream &&other) noexcept;
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;

    void *handle() const { return stream_; }  // a cudaStream_t
    void synchronize() const;                 // waits for all work queued on the stream; throws its errors

  private:
    void *stream_ = nullptr;
    bool owned_ = false;
};

// Device memory owned by the object (cudaMalloc'ed on the current device, freed by the destructor).
class DeviceBuffer {
  public:
    DeviceBuffer() noexcept = default;
    // Throws DEVICE_OUT_OF_MEMORY when the device is full, DEVICE_UNAVAILABLE when there is no device.
    // n_bytes == 0 allocates nothing (data() is nullptr).
    explicit DeviceBuffer(size_t n_bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer &&other) noexcept;
    DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;

    void *data() { return ptr_; }
    const void *data() const { return ptr_; }
    template <class T> T *as() { return static_cast<T *>(ptr_); }
    template <class T> const T *as() const { return static_cast<const T *>(ptr_); }
    size_t n_bytes() const { return n_bytes_; }

    // Copies n_bytes between host memory and [offset_bytes, offset_bytes + n_bytes) of this buffer, ordered on
    // `stream`, and waits for the stream before returning, so the host memory may be reused at once. A range
    // outside the buffer throws INVALID_ARGUMENT.
    void upload(const void *host, size_t n_bytes, const Stream &stream, size_t offset_bytes = 0);
    void download(void *host, size_t n_bytes, const Stream &stream, size_t offset_bytes = 0) const;
    // Sets every byte to `value`, ordered on `stream` (does not wait).
    void fill_bytes(int value, const Stream &stream);

  private:
    void *ptr_ = nullptr;
    size_t n_bytes_ = 0;
};

}  // namespace fq::cuda

// Evaluates a CUDA runtime call once; on any result other than cudaSuccess throws the matching fq::Error with the
// call's text and file:line. Variadic so that template arguments with commas need no extra parentheses.
#define FQ_CUDA_CHECK(...)                                                                  \
    do {                                                                                    \
        const int fq_cuda_status_ = static_cast<int>(__VA_ARGS__);                          \
        if (fq_cuda_status_ != 0)                                                           \
            ::fq::cuda::throw_cuda_error(fq_cuda_status_, #__VA_ARGS__, __FILE__, __LINE__); \
    } while (0)
