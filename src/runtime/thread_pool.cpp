// ThreadPool: workers wait on a condition variable for a new generation of tasks and take
// task indices from a shared counter; the caller works on tasks too, then waits.
#include "microlm/thread_pool.h"

#include <algorithm>

namespace microlm {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        ++busy_;
        while (next_task_ < n_tasks_) {
            int64_t i = next_task_++;
            const auto* job = job_;
            lock.unlock();
            (*job)(i);
            lock.lock();
        }
        if (--busy_ == 0) done_cv_.notify_all();
    }
}

void ThreadPool::run(int64_t n_tasks, FunctionRef<void(int64_t)> fn) {
    if (n_threads_ == 1 || n_tasks <= 1) {
        for (int64_t i = 0; i < n_tasks; ++i) fn(i);
        return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    job_ = &fn;
    n_tasks_ = n_tasks;
    next_task_ = 0;
    ++generation_;
    start_cv_.notify_all();
    ++busy_;
    while (next_task_ < n_tasks_) {
        int64_t i = next_task_++;
        lock.unlock();
        fn(i);
        lock.lock();
    }
    --busy_;
    done_cv_.wait(lock, [&] { return busy_ == 0 && next_task_ >= n_tasks_; });
    job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t)> fn) {
    const int64_t parts = std::min<int64_t>(n_threads_, n);
    if (parts <= 1) {
        if (n > 0) fn(0, n);
        return;
    }
    auto part = [&](int64_t p) { fn(n * p / parts, n * (p + 1) / parts); };
    run(parts, part);
}

}  // namespace microlm
