// A file written atomically: the bytes go to a temporary file beside the target (`path.tmp.<pid>.<n>`, unique within
// the process), which commit() syncs and renames over the target (then syncs the directory, so the rename survives
// a crash). Any exit before a completed commit (an error, a cancellation, an exception) removes the temporary file
// and leaves the target as it was. Used by the calibration artifact and the quantized-model file writers.
#pragma once

#include <string>

namespace fq {

class AtomicFile {
  public:
    // Creates the temporary file. Throws IO naming it when that fails (a missing or read-only directory).
    explicit AtomicFile(const std::string &path);
    ~AtomicFile();
    AtomicFile(const AtomicFile &) = delete;
    AtomicFile &operator=(const AtomicFile &) = delete;

    int fd() const { return fd_; }                          // the temporary file's descriptor, open for writing
    const std::string &temp_path() const { return temp_; }  // for messages
    // Writes all n bytes (retrying short writes and EINTR). Throws IO naming the temporary file.
    void write(const void *data, size_t n);
    // fsync, close, rename over the target, fsync of the directory. Throws IO naming the failing step.
    void commit();

  private:
    std::string path_, temp_;
    int fd_ = -1;
    bool committed_ = false;
};

}  // namespace fq
