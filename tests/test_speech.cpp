// Spoken replies (microlm/speech.h): WAV files, silence analysis on waveforms built by hand, the
// audio timeline's waits against the waveform it writes, and the live speaker with a player.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "microlm/error.h"
#include "microlm/speech.h"

namespace microlm {
namespace {

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("microlm_test_speech_" + name)).string();
}

// A 440 Hz tone at half scale.
void tone(std::vector<int16_t>& out, int rate, double ms) {
    const auto n = static_cast<size_t>(ms * rate / 1000.0);
    for (size_t i = 0; i < n; ++i)
        out.push_back(static_cast<int16_t>(16000 * std::sin(2 * M_PI * 440.0 * static_cast<double>(i) / rate + 0.5)));
}
void quiet(std::vector<int16_t>& out, int rate, double ms) {
    out.insert(out.end(), static_cast<size_t>(ms * rate / 1000.0), 0);
}

double longest(const std::vector<Silence>& s) {
    double m = 0;
    for (const Silence& x : s) m = std::max(m, x.ms());
    return m;
}

TEST(Wav, RoundTripAndHostileFiles) {
    const int rate = 16000;
    std::vector<int16_t> s;
    tone(s, rate, 50);
    s.push_back(-32768);
    s.push_back(32767);
    const std::string p = temp_path("rt.wav");
    write_wav(p, s, rate);
    EXPECT_EQ(std::filesystem::file_size(p), 44 + 2 * s.size());
    const Wav w = read_wav(p);
    EXPECT_EQ(w.rate, rate);
    EXPECT_EQ(w.samples, s);

    const auto write_bytes = [&](const std::string& bytes) {
        std::ofstream(p, std::ios::binary) << bytes;
    };
    write_bytes("RIFF\x04\x00\x00\x00WAVX");
    EXPECT_THROW(read_wav(p), Error);
    write_bytes(std::string("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00", 20) + std::string(16, '\0'));
    EXPECT_THROW(read_wav(p), Error);  // format 0, not PCM
    write_bytes(std::string("RIFF\x24\x00\x00\x00WAVEdata\xff\xff\x00\x00", 20));
    EXPECT_THROW(read_wav(p), Error);  // a chunk past the end
    EXPECT_THROW(read_wav(temp_path("missing.wav")), Error);
    std::filesystem::remove(p);
}

TEST(Silence, GapsBetweenSoundsNotAtTheEdges) {
    const int rate = 22050;
    std::vector<int16_t> s;
    quiet(s, rate, 200);  // before the first sound: not a gap
    tone(s, rate, 100);
    quiet(s, rate, 300);
    tone(s, rate, 100);
    quiet(s, rate, 40);  // shorter than min_ms
    tone(s, rate, 100);
    quiet(s, rate, 500);  // after the last sound: not a gap
    const std::vector<Silence> g = silences_between_sounds(s, rate, 50);
    ASSERT_EQ(g.size(), 1u);
    // A sine's samples near its zero crossings are below the threshold too: within 2 ms.
    EXPECT_NEAR(g[0].start_ms, 300, 2);
    EXPECT_NEAR(g[0].ms(), 300, 2);
    EXPECT_NEAR(first_sound_ms(s, rate), 200, 1);
    EXPECT_EQ(first_sound_ms(std::vector<int16_t>(100, 0), rate), -1);
}

class Speech : public ::testing::Test {
protected:
    void SetUp() override {
        if (!speech_available()) GTEST_SKIP() << "this build has no espeak-ng (libespeak-ng-dev)";
    }
};

TEST_F(Speech, SynthesisMakesSoundAndRejectsBadVoices) {
    const std::vector<int16_t> a = synthesize("Hello there.", {});
    const int rate = speech_sample_rate();
    std::printf("\"Hello there.\": %zu samples at %d Hz (%.0f ms)\n", a.size(), rate, a.size() * 1000.0 / rate);
    EXPECT_GT(a.size() * 1000.0 / rate, 300);
    EXPECT_GE(first_sound_ms(a, rate), 0);
    EXPECT_THROW(synthesize("x", {.voice = "no-such-voice"}), Error);
    EXPECT_THROW(synthesize("x", {.words_per_minute = 10}), Error);
    // Faster speech is shorter.
    EXPECT_LT(synthesize("Hello there.", {.words_per_minute = 400}).size(), a.size());
}

// The timeline's reported wait is the silence a listener hears: measured in the waveform it
// writes (through a WAV file), it matches within the utterances' own edge silence.
TEST_F(Speech, TimelineWaitsAreTheWaveformsSilences) {
    AudioTimeline t;
    const int rate = t.sample_rate();
    const std::vector<int16_t> first = synthesize("The first part", {});
    const double first_ms = first.size() * 1000.0 / rate;
    EXPECT_EQ(t.say("The first part", 30), static_cast<size_t>(std::llround(30.0 * rate / 1000.0)));
    t.say("   ", 40);  // blank: nothing said
    EXPECT_EQ(t.utterances(), 1u);
    EXPECT_NEAR(t.first_sound_ms(), 30 + first_sound_ms(first, rate), 5);  // espeak-ng varies a little per call
    // Arrives while the first is still sounding: follows it at once (only the quiet edges).
    t.say("comes right after", 100);
    EXPECT_LT(t.longest_wait_ms(), 60);
    const double end = t.end_ms();
    EXPECT_GT(end, 30 + first_ms);
    // Arrives 1.2 s after the sound ran out: that is the wait.
    t.say("and the rest came late.", end + 1200);
    EXPECT_NEAR(t.longest_wait_ms(), 1200, 60);

    const std::string p = temp_path("timeline.wav");
    t.write_wav(p);
    const Wav w = read_wav(p);
    std::filesystem::remove(p);
    ASSERT_EQ(w.samples.size(), t.samples().size());
    const double heard = longest(silences_between_sounds(w.samples, w.rate, 50));
    std::printf("reported wait %.0f ms, longest silence in the WAV %.0f ms, first sound %.0f ms\n",
                t.longest_wait_ms(), heard, first_sound_ms(w.samples, w.rate));
    EXPECT_NEAR(heard, t.longest_wait_ms(), 1);
    EXPECT_NEAR(first_sound_ms(w.samples, w.rate), t.first_sound_ms(), 0.1);
}

// Live: an opener's words said at once (one utterance), cloud text that arrives after the sound
// ran out waits for its whole words, and a player gets exactly the utterances' sound.
TEST_F(Speech, LiveSpeakerSaysWholeWordsAndFeedsThePlayer) {
    const std::string raw = temp_path("player.raw");
    std::filesystem::remove(raw);
    LiveSpeaker sp({}, "cat > '" + raw + "'");
    for (const char* w : {"Sure!", " Here", " is", " a"}) sp.say(w, true);
    // The opener's sound is ~1 s; the cloud answers well after it ran out.
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));
    sp.say(" li", false);  // inside a word: held until the word is whole
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    sp.say("st of things", false);
    sp.say(" to pack.", false);
    const AudioTimeline& t = sp.finish();
    std::printf("first sound %.0f ms, %zu utterances, longest wait %.0f ms, %.0f ms of audio\n", t.first_sound_ms(),
                t.utterances(), t.longest_wait_ms(), t.end_ms());
    EXPECT_GE(t.utterances(), 2u);
    EXPECT_LT(t.first_sound_ms(), 500);  // loose: the machine may be loaded; the chat test checks 200 ms
    EXPECT_GT(t.longest_wait_ms(), 500);
    const double heard = longest(silences_between_sounds(t.samples(), t.sample_rate(), 50));
    EXPECT_NEAR(heard, t.longest_wait_ms(), 1);

    // The player got each utterance's samples, without the silence before them.
    size_t sound = 0;
    {
        const std::vector<int16_t> a = synthesize("Sure! Here is a", {});
        sound = a.size();
    }
    const auto bytes = std::filesystem::file_size(raw);
    EXPECT_EQ(bytes % 2, 0u);
    EXPECT_GE(bytes / 2, sound * 8 / 10);  // at least the opener (said whole or in parts)
    EXPECT_LT(bytes / 2, t.samples().size());  // not the waits
    std::filesystem::remove(raw);
}

}  // namespace
}  // namespace microlm
