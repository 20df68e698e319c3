#include "core/error.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace fq {

std::string strprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string out;
    if (n > 0) {
        out.resize(static_cast<size_t>(n));
        std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
    }
    va_end(ap2);
    return out;
}

void throw_error(int32_t status, const char *file, int line, const std::string &message) {
    const char *base = std::strrchr(file, '/');
    base = base ? base + 1 : file;
    throw Error(status, message + " (" + base + ":" + std::to_string(line) + ")");
}

}  // namespace fq
