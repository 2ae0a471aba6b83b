// A progress line for long CLI work (eval suites, hedge calibration): redrawn in place on a
// terminal, start and end lines in a log file. Only the CLI draws; the library reports through
// callbacks.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

namespace microlm::cli {

// One line on stderr per stage: redrawn in place on a terminal (at most 10 times a second),
// or just its start and end when stderr is a log file.
class ProgressBar {
public:
    explicit ProgressBar(std::string prefix = "eval") : tty_(isatty(STDERR_FILENO)), prefix_(std::move(prefix)) {}

    void operator()(std::string_view stage, size_t done, size_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (stage != stage_) {
            finish_line();
            stage_ = stage;
            start_ = now;
            last_ = {};
            if (!tty_) std::fprintf(stderr, "%s: %s: %zu items\n", prefix_.c_str(), stage_.c_str(), total);
        }
        const bool end = done >= total;
        if (tty_ && (end || now - last_ > std::chrono::milliseconds(100))) {
            last_ = now;
            const int width = 30;
            const int fill =
                total ? static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width)
                      : width;
            const double el = std::chrono::duration<double>(now - start_).count();
            const double eta = done ? el / static_cast<double>(done) * static_cast<double>(total - done) : 0;
            std::fprintf(stderr, "\r\x1b[K%-28s [%.*s%*s] %zu/%zu %5.1fs", stage_.c_str(), fill,
                         "##############################", width - fill, "", done, total, el);
            if (done && !end) std::fprintf(stderr, " eta %.0fs", eta);
            open_ = true;
        }
        if (end && !done_logged_) {
            if (!tty_)
                std::fprintf(stderr, "%s: %s: done in %.1f s\n", prefix_.c_str(), stage_.c_str(),
                             std::chrono::duration<double>(now - start_).count());
            finish_line();
            done_logged_ = true;
        } else if (!end) {
            done_logged_ = false;
        }
    }

    void finish_line() {
        if (open_) std::fprintf(stderr, "\n");
        open_ = false;
    }

private:
    bool tty_;
    std::string prefix_;
    bool open_ = false, done_logged_ = false;
    std::string stage_;
    std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace microlm::cli
