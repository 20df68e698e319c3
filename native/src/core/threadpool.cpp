#include "core/threadpool.h"

#include <algorithm>
#include <exception>

#include <sched.h>

namespace fq {

int ThreadPool::hardware_threads() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : hardware_threads()) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    work_cv_.notify_all();
    for (auto &t : workers_) t.join();
}

void ThreadPool::worker_main(int) {
    uint64_t seen = 0;
    for (;;) {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        const auto *job = job_;
        for (;;) {
            int64_t begin = next_;
            if (begin >= job_n_) break;
            int64_t end = std::min(job_n_, begin + job_chunk_);
            next_ = end;
            lock.unlock();
            try {
                (*job)(begin, end);
            } catch (...) {
                lock.lock();
                if (!error_) error_ = std::current_exception();
                continue;
            }
            lock.lock();
        }
        if (--pending_ == 0) done_cv_.notify_all();
    }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)> &fn, int64_t min_chunk) {
    if (n <= 0) return;
    min_chunk = std::max<int64_t>(1, min_chunk);
    if (n_threads_ == 1 || n <= min_chunk) {
        fn(0, n);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    // About 4 ranges per thread balances uneven rows (e.g. causal attention) without much scheduling cost.
    int64_t chunk = std::max(min_chunk, (n + 4 * n_threads_ - 1) / (4 * n_threads_));
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_chunk_ = chunk;
    next_ = 0;
    error_ = nullptr;
    pending_ = static_cast<int>(workers_.size()) + 1;
    ++generation_;
    work_cv_.notify_all();
    for (;;) {
        int64_t begin = next_;
        if (begin >= job_n_) break;
        int64_t end = std::min(job_n_, begin + job_chunk_);
        next_ = end;
        lock.unlock();
        try {
            fn(begin, end);
        } catch (...) {
            lock.lock();
            if (!error_) error_ = std::current_exception();
            continue;
        }
        lock.lock();
    }
    if (--pending_ > 0) done_cv_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    std::exception_ptr err = error_;
    error_ = nullptr;
    lock.unlock();
    if (err) std::rethrow_exception(err);
}

}  // namespace fq
