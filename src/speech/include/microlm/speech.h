// Spoken replies: espeak-ng (its C API; no network) turns the reply's text into audio on one
// timeline that starts with the turn. A piece of text sounds no sooner than it arrived and
// right after what was said before it, so the timeline's silences are the ones a listener
// hears: the wait for the first sound, and the stalls when the text ran out. The timeline is
// written as a WAV, fed to an audio player, or measured (the eval's latency suite).
// Not here: which text is said (turn.h) or when it is shown on a screen (pacer.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace microlm {

// Whether speech works here: this build has espeak-ng (MICROLM_HAVE_ESPEAK) and its library loads
// (it is opened on first use: the first call loads it). Without it every synthesis throws.
bool speech_available();

struct VoiceConfig {
    std::string voice = "en";     // an espeak-ng voice name (`espeak-ng --voices` lists them)
    int words_per_minute = 175;   // espeak-ng's rate, 80-450
};

// One utterance's samples (mono, signed 16-bit, at speech_sample_rate()).
// Thread-safe: espeak-ng has one synthesizer per process, so calls are serialised.
std::vector<int16_t> synthesize(std::string_view text, const VoiceConfig& voice);
int speech_sample_rate();  // of what synthesize() returns (espeak-ng: 22050)
// The words per minute the voice really says, timed on a sample of everyday sentences (its
// nominal rate counts long words; short ones go faster): the pace to size an opener by.
double spoken_words_per_minute(const VoiceConfig& voice);

// A sample counts as sound when |s| reaches this (~1% of full scale); quieter is silence.
inline constexpr int kSoundThreshold = 328;

// A run of silence in a waveform, in ms from the waveform's start.
struct Silence {
    double start_ms = 0;
    double end_ms = 0;
    double ms() const { return end_ms - start_ms; }
};
// The silences of at least min_ms between the first and the last sound (leading and trailing
// silence are not gaps).
std::vector<Silence> silences_between_sounds(std::span<const int16_t> samples, int rate, double min_ms);
// When the first sound is, in ms from the start; -1 if there is none.
double first_sound_ms(std::span<const int16_t> samples, int rate);

// The audio of one reply as a listener hears it, built from texts and the times they arrived.
// Not thread-safe (LiveSpeaker serialises it).
class AudioTimeline {
public:
    explicit AudioTimeline(VoiceConfig voice = {});

    // Says `text`, which arrived at `at_ms` (from the turn's start): its sound starts at at_ms
    // or when the sound before it ends, whichever is later. Returns the sample where it starts
    // (samples().size() for blank text, which is not said).
    size_t say(std::string_view text, double at_ms);

    // The position where the sound said so far ends, ms from the start.
    double end_ms() const;
    // When the first sound is heard (-1: none yet).
    double first_sound_ms() const { return first_ms_; }
    // The longest silence from one utterance's last sound to the next one's first, in ms: the
    // wait for text plus the utterances' quiet edges (~20 ms when one follows the other at once).
    double longest_wait_ms() const { return longest_wait_ms_; }
    size_t utterances() const { return utterances_; }

    int sample_rate() const { return rate_; }
    const std::vector<int16_t>& samples() const { return samples_; }  // from the turn's start
    void write_wav(const std::string& path) const;

private:
    VoiceConfig voice_;
    int rate_;
    std::vector<int16_t> samples_;
    double first_ms_ = -1;
    double longest_wait_ms_ = 0;
    size_t sound_end_ = 0;  // the sample after the last sound so far
    size_t utterances_ = 0;
};

// A mono 16-bit PCM WAV file, as write_wav writes it. Throws on anything else.
struct Wav {
    int rate = 0;
    std::vector<int16_t> samples;
};
Wav read_wav(const std::string& path);
void write_wav(const std::string& path, std::span<const int16_t> samples, int rate);

// Speaks a reply live: text is handed in as it arrives (never waits), a thread says it on an
// AudioTimeline in real time from construction, and feeds the sound to a player command (raw
// s16le mono on its stdin) when one is given. Words are said whole: a piece that may end inside
// a word waits for the rest. While sound is playing, new text is gathered until the sound is
// about to run out, so that it is said in as long a stretch as possible.
class LiveSpeaker {
public:
    // player: a shell command that plays raw s16le mono at speech_sample_rate() from stdin
    // (see default_player_command()); empty: no playback, only the timeline.
    explicit LiveSpeaker(VoiceConfig voice = {}, const std::string& player = {});
    ~LiveSpeaker();  // finish()
    LiveSpeaker(const LiveSpeaker&) = delete;
    LiveSpeaker& operator=(const LiveSpeaker&) = delete;

    // Never waits for synthesis or playback. ends_word: the text ends with a whole word (an
    // opener word); otherwise its last word may go on in the next piece (cloud text).
    void say(std::string_view text, bool ends_word);
    // Says what is left, then waits until the player has been handed everything (not until it
    // has played it) and closes it. Returns the timeline.
    const AudioTimeline& finish();
    // Why the player stopped taking sound before the end ("" if it did not, or there is none):
    // e.g. no sound device. The timeline is complete either way.
    const std::string& player_error() const { return player_error_; }

private:
    using Clock = std::chrono::steady_clock;
    double now_ms() const;
    void run();
    void play(std::span<const int16_t> samples);

    const Clock::time_point start_ = Clock::now();
    AudioTimeline timeline_;
    std::FILE* player_ = nullptr;

    std::mutex mu_;
    std::condition_variable cv_;
    std::string pending_;  // text not yet said
    bool pending_whole_ = false;  // pending_ ends with a whole word
    bool closing_ = false;
    std::string player_error_;  // written by the speaking thread, read after finish()
    std::thread thread_;
};

// A player for LiveSpeaker found on PATH (aplay, else paplay), or "" when there is none.
std::string default_player_command(int rate);

}  // namespace microlm
