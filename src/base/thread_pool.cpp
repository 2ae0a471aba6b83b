// ThreadPool: the caller publishes a job under the mutex and bumps an atomic generation;
// workers (spinning for a moment, then sleeping) take task indices from a shared counter; the
// caller works on tasks too, then spins until no worker is busy.
#include "microlm/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace microlm {
namespace {

constexpr int kSpinIterations = 20000;  // a few hundred microseconds of pause instructions

inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int) {
    uint64_t seen = 0;
    for (;;) {
        for (int s = 0; s < kSpinIterations && generation_.load(std::memory_order_acquire) == seen &&
                        !stop_.load(std::memory_order_relaxed);
             ++s) {
            cpu_relax();
        }
        std::unique_lock<std::mutex> lock(mu_);
        if (generation_.load() == seen && !stop_.load()) {
            ++sleepers_;
            start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
            --sleepers_;
        }
        if (stop_.load()) return;
        seen = generation_.load();
        busy_.fetch_add(1);
        while (next_task_ < n_tasks_) {
            const int64_t i = next_task_++;
            const auto* job = job_;
            lock.unlock();
            (*job)(i);
            lock.lock();
        }
        busy_.fetch_sub(1, std::memory_order_release);
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
    generation_.fetch_add(1, std::memory_order_release);
    if (sleepers_ > 0) start_cv_.notify_all();
    while (next_task_ < n_tasks_) {
        const int64_t i = next_task_++;
        lock.unlock();
        fn(i);
        lock.lock();
    }
    lock.unlock();
    // Every task is taken; wait for the workers still running theirs.
    while (busy_.load(std::memory_order_acquire) != 0) cpu_relax();
    lock.lock();
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
