#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace fq {

namespace {

std::string dir_of(const std::string &path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(const std::string &path) : path_(path) {
    static std::atomic<uint64_t> counter{0};  // several writes to one path in one process get distinct files
    temp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        committed_ = true;  // nothing was created
        FQ_FAIL(FQ_STATUS_IO, "cannot create %s: %s", temp_.c_str(), std::strerror(errno));
    }
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void *data, size_t n) {
    const char *p = static_cast<const char *>(data);
    while (n > 0) {
        const ssize_t k = ::write(fd_, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) FQ_FAIL(FQ_STATUS_IO, "cannot write %s: %s", temp_.c_str(), std::strerror(k < 0 ? errno : EIO));
        p += k;
        n -= static_cast<size_t>(k);
    }
}

void AtomicFile::commit() {
    auto check = [&](bool ok, const char *what) {
        if (!ok) FQ_FAIL(FQ_STATUS_IO, "cannot %s %s: %s", what, temp_.c_str(), std::strerror(errno));
    };
    check(::fsync(fd_) == 0, "sync");
    const int fd = fd_;
    fd_ = -1;
    check(::close(fd) == 0, "close");
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
        FQ_FAIL(FQ_STATUS_IO, "cannot rename %s to %s: %s", temp_.c_str(), path_.c_str(), std::strerror(errno));
    }
    committed_ = true;
    const int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {  // makes the rename durable; a directory that cannot be opened is not an error of the write
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace fq
