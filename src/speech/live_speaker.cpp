// LiveSpeaker (microlm/speech.h): one thread says the text handed in on an AudioTimeline in real
// time and writes each utterance to the player's stdin as it is made.
#include "microlm/speech.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "microlm/error.h"

namespace microlm {
namespace {

// While sound is playing, text waits until this little of it is left before it is said.
constexpr double kLookaheadMs = 120;
// When nothing is playing, a piece waits this long for the pieces right behind it (an opener's
// words come together), so that they are said as one utterance.
constexpr double kGatherMs = 8;

bool is_space_byte(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool on_path(const char* program) {
    const char* path = std::getenv("PATH");
    if (!path) return false;
    std::string_view rest(path);
    while (!rest.empty()) {
        const size_t colon = rest.find(':');
        const std::string dir(rest.substr(0, colon));
        if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
    }
    return false;
}

}  // namespace

std::string default_player_command(int rate) {
    const std::string r = std::to_string(rate);
    if (on_path("aplay")) return "aplay -q -t raw -f S16_LE -c 1 -r " + r + " -";
    if (on_path("paplay")) return "paplay --raw --format=s16le --channels=1 --rate=" + r;
    return {};
}

LiveSpeaker::LiveSpeaker(VoiceConfig voice, const std::string& player) : timeline_(std::move(voice)) {
    if (!player.empty()) {
        player_ = popen(player.c_str(), "w");
        if (!player_) throw Error("speech: cannot start the player \"" + player + "\": " + std::strerror(errno));
    }
    thread_ = std::thread([this] { run(); });
}

LiveSpeaker::~LiveSpeaker() {
    finish();
}

double LiveSpeaker::now_ms() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
}

void LiveSpeaker::say(std::string_view text, bool ends_word) {
    if (text.empty()) return;
    {
        std::lock_guard lock(mu_);
        pending_ += text;
        pending_whole_ = ends_word;
    }
    cv_.notify_one();
}

const AudioTimeline& LiveSpeaker::finish() {
    {
        std::lock_guard lock(mu_);
        closing_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    if (player_) {
        const int status = pclose(player_);
        player_ = nullptr;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            player_error_ = "the player failed (exit status " +
                            std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : status) + ")";
    }
    return timeline_;
}

void LiveSpeaker::play(std::span<const int16_t> samples) {
    if (!player_ || samples.empty()) return;
    if (std::fwrite(samples.data(), sizeof(int16_t), samples.size(), player_) != samples.size() ||
        std::fflush(player_) != 0) {
        // The player went away (no sound device...): the timeline goes on without it.
        const int status = pclose(player_);
        player_ = nullptr;
        player_error_ = "the player stopped taking sound (exit status " +
                        std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : status) + ")";
    }
}

void LiveSpeaker::run() {
    std::unique_lock lock(mu_);
    double gather_from = -1;  // when the current burst started gathering (-1: not gathering)
    for (;;) {
        // Whole words only, unless the speaker is closing.
        size_t cut = pending_.size();
        if (!closing_ && !pending_whole_) {
            while (cut > 0 && !is_space_byte(pending_[cut - 1])) --cut;
        }
        if (cut == 0) {
            if (closing_) break;
            cv_.wait(lock);
            continue;
        }
        if (!closing_) {
            const double now = now_ms(), ahead = timeline_.end_ms() - now;
            if (ahead > kLookaheadMs) {
                cv_.wait_for(lock, std::chrono::duration<double, std::milli>(ahead - kLookaheadMs));
                continue;
            }
            // Nothing is playing: let the rest of a burst arrive, a little while at most.
            if (gather_from < 0) gather_from = now;
            if (ahead < 0 && now - gather_from < kGatherMs) {
                const size_t had = pending_.size();
                if (cv_.wait_for(lock, std::chrono::duration<double, std::milli>(kGatherMs),
                                 [&] { return closing_ || pending_.size() != had; }))
                    continue;
            }
        }
        gather_from = -1;
        const std::string text = pending_.substr(0, cut);
        pending_.erase(0, cut);
        lock.unlock();
        const size_t start = timeline_.say(text, now_ms());
        // Only the sound: during the wait before it the player ran dry, which was the silence.
        play(std::span<const int16_t>(timeline_.samples()).subspan(start));
        lock.lock();
    }
}

}  // namespace microlm
