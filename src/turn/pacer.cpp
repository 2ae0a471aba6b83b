// Pacer (microlm/pacer.h): text events are cut into words (each with the whitespace before it;
// a piece that continues a word already queued is not paced again) and released by one thread
// at the configured pace; other events keep their place in the queue.
#include "microlm/pacer.h"

#include <algorithm>
#include <cmath>
#include <vector>


namespace microlm {
namespace {

bool is_text_kind(TurnEvent::Kind k) {
    return k == TurnEvent::Kind::kOpener || k == TurnEvent::Kind::kContinuation ||
           k == TurnEvent::Kind::kLocalClose;
}

bool is_space_byte(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

}  // namespace

void CloudWait::observe(double ms) {
    if (!(ms >= 0) || !std::isfinite(ms)) return;
    std::lock_guard lock(mu_);
    recent_.push_back(ms);
    if (recent_.size() > kWindow) recent_.pop_front();
}

double CloudWait::quantile(double q) const {
    std::lock_guard lock(mu_);
    if (recent_.empty()) return prior_ms_;
    std::vector<double> v(recent_.begin(), recent_.end());
    const size_t k = std::min(v.size() - 1, static_cast<size_t>(std::ceil(std::clamp(q, 0.0, 1.0) * v.size())) - (q > 0 ? 1 : 0));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

size_t CloudWait::observed() const {
    std::lock_guard lock(mu_);
    return recent_.size();
}

double cloud_wait_ms(const TurnResult& r) {
    const TurnTimings& t = r.timings;
    if (r.error || t.stall_ms < 0 || t.first_word_ms < 0) return -1;
    return t.opener_ms - t.first_word_ms + t.stall_ms;
}

OpenerLength size_opener(double wait_ms, const PaceConfig& pace, int min_words, int max_words, int most_words) {
    const double interval = pace.ms_per_word();
    if (interval <= 0 || !(wait_ms > 0)) return {};
    const int need = static_cast<int>(std::ceil(wait_ms / interval));
    if (need <= min_words) return {};
    const int m = std::min(need, most_words);
    // Room past the minimum to reach a clause boundary, as the default 4-8 has.
    return {m, std::min(most_words, std::max(max_words, m + 4))};
}

Pacer::Pacer(PaceConfig cfg, Sink sink, std::stop_token stop)
    : cfg_(cfg), sink_(std::move(sink)), stop_(std::move(stop)) {
    if (cfg_.ms_per_word() > 0) thread_ = std::thread([this] { run(); });
}

Pacer::~Pacer() {
    finish();
}

void Pacer::push(const TurnEvent& e) {
    if (!thread_.joinable()) {
        // Not pacing: at once, in the caller's thread; only the stall is measured.
        deliver({e, false});
        return;
    }
    std::lock_guard lock(mu_);
    if (!is_text_kind(e.kind) || e.text.empty()) {
        queue_.push_back({e, false});
    } else {
        // Cut into pieces that each begin a word: [whitespace][non-whitespace]. A piece without
        // leading whitespace continues the word before it when that one was left open.
        const std::string& t = e.text;
        size_t i = 0;
        while (i < t.size()) {
            const size_t begin = i;
            while (i < t.size() && is_space_byte(t[i])) ++i;
            const bool leading_space = i > begin;
            while (i < t.size() && !is_space_byte(t[i])) ++i;
            // Trailing whitespace of the whole text stays with its last piece.
            if (i < t.size() && std::all_of(t.begin() + static_cast<std::ptrdiff_t>(i), t.end(), is_space_byte))
                i = t.size();
            TurnEvent piece = e;
            piece.text = t.substr(begin, i - begin);
            const bool starts_word = leading_space || !word_open_;
            word_open_ = !is_space_byte(piece.text.back());
            queue_.push_back({std::move(piece), starts_word});
        }
    }
    cv_.notify_all();
}

void Pacer::finish() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        closing_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void Pacer::deliver(const Piece& p) {
    // Any text counts as a delivered word for the stall.
    if (is_text_kind(p.event.kind) && !p.event.text.empty()) {
        const auto now = Clock::now();
        std::lock_guard lock(mu_);
        if (any_word_) {
            const double gap = std::chrono::duration<double, std::milli>(now - last_word_).count();
            stall_ms_ = std::max(stall_ms_, gap - cfg_.ms_per_word());
        }
        any_word_ = true;
        last_word_ = now;
    }
    if (sink_) sink_(p.event);
}

void Pacer::run() {
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(cfg_.ms_per_word()));
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
        if (queue_.empty()) return;  // closing, and all delivered
        // A new word waits for its slot; the first word, a piece of an open word and an event
        // without words go now. Once the client has left, nothing waits.
        const Piece& front = queue_.front();
        if (front.word && any_word_ && !stop_.stop_requested()) {
            const auto due = last_word_ + interval;
            if (Clock::now() < due) {
                // Wakes early for a stop; new pieces only go behind this one.
                cv_.wait_until(lock, std::min(due, Clock::now() + std::chrono::milliseconds(50)));
                continue;
            }
        }
        Piece p = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        deliver(p);
        lock.lock();
    }
}

double Pacer::visible_stall_ms() const {
    std::lock_guard lock(mu_);
    return std::max(0.0, stall_ms_);
}

double Pacer::last_word_ms() const {
    std::lock_guard lock(mu_);
    return any_word_ ? std::chrono::duration<double, std::milli>(last_word_ - start_).count() : -1;
}

}  // namespace microlm
