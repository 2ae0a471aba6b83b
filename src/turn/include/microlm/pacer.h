// Paced delivery: a turn's events reach the user at a human pace, so that the opener's words
// cover the cloud's time to first token instead of appearing at once and then stalling. The
// first word goes out immediately; each later word no sooner than one word-interval after the
// one before; the continuation's words join the same queue, so a cloud that answers while the
// opener is still being delivered causes no gap at all. Events without words (hedge, pivot,
// retract, error) keep their place in the order and go out as soon as their turn comes.
// Reports the visible stall: the longest wait between words beyond the pace itself.
// Not here: what the words are (turn.h) or how they are shown (the CLI, the gateway).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>

#include "microlm/handoff.h"
#include "microlm/turn.h"

namespace microlm {

// Human paces, words per minute: reading on a small screen, and speaking.
inline constexpr double kReadingWordsPerMinute = 250;
inline constexpr double kSpeakingWordsPerMinute = 160;

struct PaceConfig {
    double words_per_minute = 0;  // 0: no pacing (events pass at once; the stall is still measured)
    static PaceConfig for_modality(Modality m) {
        return {m == Modality::kSpeech ? kSpeakingWordsPerMinute : kReadingWordsPerMinute};
    }
    // A --pace flag's value: < 0 means the modality's pace, 0 none.
    static PaceConfig from_flag(double words_per_minute, Modality m) {
        return words_per_minute < 0 ? for_modality(m) : PaceConfig{words_per_minute};
    }
    double ms_per_word() const { return words_per_minute > 0 ? 60000.0 / words_per_minute : 0; }
};

// How long the cloud's first words take to arrive after the opener's first word, as a client
// saw it in recent turns (one endpoint's): a quantile of the last kWindow observations, or
// `prior` before any. Thread-safe.
class CloudWait {
public:
    static constexpr size_t kWindow = 64;
    explicit CloudWait(double prior_ms) : prior_ms_(prior_ms) {}
    void observe(double ms);
    double quantile(double q) const;
    size_t observed() const;

private:
    mutable std::mutex mu_;
    double prior_ms_;
    std::deque<double> recent_;
};

// What an opener had to cover in a finished turn: from its first word to the cloud's first words
// (what CloudWait observes); -1 when the turn had no continuation or failed.
double cloud_wait_ms(const TurnResult& r);

// The opener length whose paced delivery covers `wait_ms`: word k goes out at (k-1) word
// intervals, so the continuation's first word finds its slot at n intervals; n = ceil(wait /
// interval), at most `most_words`, with room to reach a clause boundary after it. Returns {} (the
// opener's own min_words..max_words) when that already covers the wait or when not pacing.
OpenerLength size_opener(double wait_ms, const PaceConfig& pace, int min_words, int max_words, int most_words);

class Pacer {
public:
    using Sink = std::function<void(const TurnEvent&)>;
    // `sink` is called from the pacer's own thread (from push()'s caller when not pacing). After
    // `stop` is requested (the client left), whatever is queued goes out at once.
    Pacer(PaceConfig cfg, Sink sink, std::stop_token stop = {});
    ~Pacer();  // finish()
    Pacer(const Pacer&) = delete;
    Pacer& operator=(const Pacer&) = delete;

    void push(const TurnEvent& e);  // never waits for the pace
    void finish();                  // returns once everything pushed has been delivered

    // The longest gap between two delivered words beyond one word-interval (0 when the words
    // never waited for text), in ms; and when the last word went out, from construction.
    double visible_stall_ms() const;
    double last_word_ms() const;

private:
    struct Piece {
        TurnEvent event;
        bool word = false;  // text that starts a new word (paced)
    };
    using Clock = std::chrono::steady_clock;

    void deliver(const Piece& p);
    void run();

    PaceConfig cfg_;
    Sink sink_;
    std::stop_token stop_;
    const Clock::time_point start_ = Clock::now();

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Piece> queue_;
    bool closing_ = false;
    bool word_open_ = false;  // the last text pushed ended inside a word
    // Delivery state (the delivering thread's; read under mu_).
    bool any_word_ = false;
    Clock::time_point last_word_;
    double stall_ms_ = 0;
    std::thread thread_;
};

}  // namespace microlm
