// Stopwatch: wall time since a start point on the steady clock, in milliseconds or seconds.
// The one timing helper of the project (turn timings, progress lines, benchmarks).
#pragma once

#include <chrono>

namespace microlm {

class Stopwatch {
public:
    using Clock = std::chrono::steady_clock;

    Stopwatch() : t0_(Clock::now()) {}
    void restart() { t0_ = Clock::now(); }
    Clock::time_point start() const { return t0_; }

    double ms() const { return ms_between(t0_, Clock::now()); }
    double seconds() const { return ms() / 1000.0; }

    static double ms_between(Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    }

private:
    Clock::time_point t0_;
};

}  // namespace microlm
