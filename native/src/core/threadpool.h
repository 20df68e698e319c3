// A fixed pool of worker threads for data-parallel loops. parallel_for splits [0, n) into contiguous ranges, runs
// them on the workers and the calling thread, and returns when all are done. Several threads may call
// parallel_for on the same pool at once: calls are serialized (the pool runs one loop at a time), which keeps
// concurrent sessions correct without oversubscribing the cores.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fq {

class ThreadPool {
  public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: one per available core
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int n_threads() const { return n_threads_; }

    // fn(begin, end) over disjoint ranges covering [0, n). Ranges hold at least min_chunk items (except the last).
    // Exceptions thrown by fn are rethrown on the calling thread (the first one wins).
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)> &fn, int64_t min_chunk = 1);

    static int hardware_threads();

  private:
    void worker_main(int index);

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one parallel_for at a time
    std::mutex mutex_;
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    const std::function<void(int64_t, int64_t)> *job_ = nullptr;
    int64_t job_n_ = 0;
    int64_t job_chunk_ = 0;
    int64_t next_ = 0;
    int pending_ = 0;
    uint64_t generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

}  // namespace fq
