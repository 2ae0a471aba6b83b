// A persistent pool of worker threads for splitting one operation (rows of a matrix
// product, heads of attention) across cores. With one thread everything runs inline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace microlm {

// A non-owning reference to a callable, so that handing a lambda to the pool never
// allocates (std::function may): the decode loop must not touch the heap.
template <typename Sig>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
public:
    template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
    FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor): used like a function
        : obj_(const_cast<void*>(static_cast<const void*>(&f))),
          call_([](void* o, Args... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...); }) {}
    R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

private:
    void* obj_;
    R (*call_)(void*, Args...);
};

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1, including the calling thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Calls fn(i) for i in [0, n_tasks) across the threads and waits for all of them.
    // fn must not throw.
    void run(int64_t n_tasks, FunctionRef<void(int64_t)> fn);
    // Splits [0, n) into size() contiguous ranges and calls fn(begin, end) on each.
    void parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t)> fn);

private:
    void worker(int index);

    int n_threads_;
    std::vector<std::thread> workers_;
    // Workers spin briefly on `generation_` before sleeping on the condition variable, and
    // the caller spins on `busy_`: a matrix product of a tiny model takes tens of
    // microseconds, less than a futex wake-up. Task hand-out itself stays under the mutex.
    std::mutex mu_;
    std::condition_variable start_cv_;
    const FunctionRef<void(int64_t)>* job_ = nullptr;
    int64_t n_tasks_ = 0;
    int64_t next_task_ = 0;
    int sleepers_ = 0;
    std::atomic<int> busy_{0};
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stop_{false};
};

}  // namespace microlm
