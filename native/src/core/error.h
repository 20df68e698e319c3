// Internal error handling: library code throws fq::Error; the C ABI layer (native/src/api) catches it and turns it
// into an FQ_STATUS_* plus fq_error record. Nothing throws across the C boundary and nothing aborts.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "flatquant.h"

namespace fq {

class Error : public std::runtime_error {
  public:
    Error(int32_t status, std::string message, int32_t cuda_error = 0, std::string cuda_error_name = {})
        : std::runtime_error(std::move(message)),
          status_(status),
          cuda_error_(cuda_error),
          cuda_error_name_(std::move(cuda_error_name)) {}
    int32_t status() const { return status_; }
    int32_t cuda_error() const { return cuda_error_; }
    const std::string &cuda_error_name() const { return cuda_error_name_; }

  private:
    int32_t status_;
    int32_t cuda_error_;
    std::string cuda_error_name_;
};

// printf-style formatting into a std::string.
std::string strprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

[[noreturn]] void throw_error(int32_t status, const char *file, int line, const std::string &message);

}  // namespace fq

// Throws fq::Error(status, "<message> (file:line)") when cond is false. The message is built only on failure.
#define FQ_CHECK(cond, status, ...)                                                      \
    do {                                                                                 \
        if (!(cond)) ::fq::throw_error((status), __FILE__, __LINE__, ::fq::strprintf(__VA_ARGS__)); \
    } while (0)

#define FQ_FAIL(status, ...) ::fq::throw_error((status), __FILE__, __LINE__, ::fq::strprintf(__VA_ARGS__))
