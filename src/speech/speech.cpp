// Synthesis through espeak-ng's C API, the audio timeline, silence analysis and WAV files
// (microlm/speech.h). The live, threaded speaker is live_speaker.cpp.
#include "microlm/speech.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>

#include "microlm/error.h"
#include "microlm/shared_library.h"

#ifdef MICROLM_HAVE_ESPEAK
#include <espeak-ng/speak_lib.h>
#endif

namespace microlm {
namespace {

std::mutex g_espeak_mu;  // espeak-ng keeps one synthesizer per process

#ifdef MICROLM_HAVE_ESPEAK
// espeak-ng's functions, looked up when speech is first asked for (SharedLibrary): microlm
// links no espeak-ng, so a process that never speaks never loads it and its audio stack.
struct Espeak {
    decltype(&espeak_Initialize) initialize;
    decltype(&espeak_SetSynthCallback) set_synth_callback;
    decltype(&espeak_SetVoiceByName) set_voice_by_name;
    decltype(&espeak_SetParameter) set_parameter;
    decltype(&espeak_Synth) synth;
};

const Espeak& espeak() {
    static const Espeak api = [] {
        static const SharedLibrary lib("libespeak-ng.so.1", "install libespeak-ng1 (scripts/setup.sh does)");
        return Espeak{lib.function<decltype(Espeak::initialize)>("espeak_Initialize"),
                      lib.function<decltype(Espeak::set_synth_callback)>("espeak_SetSynthCallback"),
                      lib.function<decltype(Espeak::set_voice_by_name)>("espeak_SetVoiceByName"),
                      lib.function<decltype(Espeak::set_parameter)>("espeak_SetParameter"),
                      lib.function<decltype(Espeak::synth)>("espeak_Synth")};
    }();
    return api;
}

std::vector<int16_t>* g_sink = nullptr;  // where the callback appends; set under g_espeak_mu

int on_samples(short* wav, int n, espeak_EVENT*) {
    if (wav && n > 0 && g_sink) g_sink->insert(g_sink->end(), wav, wav + n);
    return 0;
}

// Starts espeak-ng once (under g_espeak_mu); returns its sample rate.
int espeak_rate_locked() {
    static int rate = 0;
    if (rate > 0) return rate;
    const int r = espeak().initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, 0);
    if (r <= 0) throw Error("speech: espeak-ng could not start (is espeak-ng-data installed?)");
    espeak().set_synth_callback(on_samples);
    rate = r;
    return rate;
}
#endif

bool is_sound(int16_t s) {
    return std::abs(static_cast<int>(s)) >= kSoundThreshold;
}

void put_u32(std::ofstream& f, uint32_t v) {
    const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 24)};
    f.write(b, 4);
}
void put_u16(std::ofstream& f, uint16_t v) {
    const char b[2] = {static_cast<char>(v), static_cast<char>(v >> 8)};
    f.write(b, 2);
}
uint32_t get_u32(const unsigned char* p) {
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[3]) << 24;
}
uint16_t get_u16(const unsigned char* p) {
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}

}  // namespace

bool speech_available() {
#ifdef MICROLM_HAVE_ESPEAK
    try {
        espeak();  // a function-local static: no lock needed, and none taken behind a synthesis
        return true;
    } catch (const Error&) {
        return false;
    }
#else
    return false;
#endif
}

int speech_sample_rate() {
#ifdef MICROLM_HAVE_ESPEAK
    std::lock_guard lock(g_espeak_mu);
    return espeak_rate_locked();
#else
    throw Error("speech: this build has no espeak-ng (install libespeak-ng-dev and rebuild)");
#endif
}

std::vector<int16_t> synthesize(std::string_view text, const VoiceConfig& voice) {
#ifdef MICROLM_HAVE_ESPEAK
    if (voice.words_per_minute < espeakRATE_MINIMUM || voice.words_per_minute > espeakRATE_MAXIMUM)
        throw Error("speech: words per minute must be " + std::to_string(espeakRATE_MINIMUM) + "-" +
                    std::to_string(espeakRATE_MAXIMUM) + ", got " + std::to_string(voice.words_per_minute));
    std::lock_guard lock(g_espeak_mu);
    espeak_rate_locked();
    static std::string current_voice;
    if (voice.voice != current_voice) {
        if (espeak().set_voice_by_name(voice.voice.c_str()) != EE_OK)
            throw Error("speech: espeak-ng has no voice \"" + voice.voice + "\" (espeak-ng --voices lists them)");
        current_voice = voice.voice;
    }
    espeak().set_parameter(espeakRATE, voice.words_per_minute, 0);
    std::vector<int16_t> out;
    const std::string z(text);  // espeak-ng reads a NUL-terminated string
    g_sink = &out;
    const espeak_ERROR err =
        espeak().synth(z.c_str(), z.size() + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, nullptr, nullptr);
    g_sink = nullptr;
    if (err != EE_OK) throw Error("speech: espeak-ng failed to synthesize (error " + std::to_string(err) + ")");
    return out;
#else
    (void)text;
    (void)voice;
    throw Error("speech: this build has no espeak-ng (install libespeak-ng-dev and rebuild)");
#endif
}

double spoken_words_per_minute(const VoiceConfig& voice) {
    static constexpr std::string_view kSample =
        "Sure! For a day hike, it is important to pack the right gear and plenty of water. "
        "Here are a few things to keep in mind before you go.";
    size_t words = 0;
    for (size_t i = 0; i < kSample.size(); ++i)
        if (kSample[i] != ' ' && (i == 0 || kSample[i - 1] == ' ')) ++words;
    const std::vector<int16_t> sound = synthesize(kSample, voice);
    const double minutes = static_cast<double>(sound.size()) / speech_sample_rate() / 60.0;
    return static_cast<double>(words) / minutes;
}

std::vector<Silence> silences_between_sounds(std::span<const int16_t> samples, int rate, double min_ms) {
    std::vector<Silence> out;
    const double per_ms = rate / 1000.0;
    std::ptrdiff_t last = -1;  // the last sound sample seen
    for (size_t i = 0; i < samples.size(); ++i) {
        if (!is_sound(samples[i])) continue;
        const auto idx = static_cast<std::ptrdiff_t>(i);
        if (last >= 0 && static_cast<double>(idx - last - 1) >= min_ms * per_ms)
            out.push_back({static_cast<double>(last + 1) / per_ms, static_cast<double>(idx) / per_ms});
        last = idx;
    }
    return out;
}

double first_sound_ms(std::span<const int16_t> samples, int rate) {
    const auto it = std::find_if(samples.begin(), samples.end(), is_sound);
    return it == samples.end() ? -1.0 : static_cast<double>(it - samples.begin()) * 1000.0 / rate;
}

AudioTimeline::AudioTimeline(VoiceConfig voice) : voice_(std::move(voice)), rate_(speech_sample_rate()) {}

double AudioTimeline::end_ms() const {
    return static_cast<double>(samples_.size()) * 1000.0 / rate_;
}

size_t AudioTimeline::say(std::string_view text, double at_ms) {
    if (std::all_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }))
        return samples_.size();
    const std::vector<int16_t> sound = synthesize(text, voice_);
    const size_t at = static_cast<size_t>(std::llround(std::max(0.0, at_ms) * rate_ / 1000.0));
    const size_t start = std::max(at, samples_.size());
    // Waits are counted from sound to sound, as a listener hears them: the utterances' own quiet
    // edges (and text that makes no sound) count as waiting.
    const auto lead = std::find_if(sound.begin(), sound.end(), is_sound);
    if (lead != sound.end()) {
        const size_t first = start + static_cast<size_t>(lead - sound.begin());
        const size_t end = start + static_cast<size_t>(std::find_if(sound.rbegin(), sound.rend(), is_sound).base() - sound.begin());
        if (first_ms_ < 0)
            first_ms_ = static_cast<double>(first) * 1000.0 / rate_;
        else
            longest_wait_ms_ = std::max(longest_wait_ms_, static_cast<double>(first - sound_end_) * 1000.0 / rate_);
        sound_end_ = end;
    }
    samples_.resize(start, 0);
    samples_.insert(samples_.end(), sound.begin(), sound.end());
    ++utterances_;
    return start;
}

void AudioTimeline::write_wav(const std::string& path) const {
    microlm::write_wav(path, samples_, rate_);
}

void write_wav(const std::string& path, std::span<const int16_t> samples, int rate) {
    std::ofstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
    const auto data_bytes = static_cast<uint32_t>(samples.size() * 2);
    f.write("RIFF", 4);
    put_u32(f, 36 + data_bytes);
    f.write("WAVEfmt ", 8);
    put_u32(f, 16);                             // fmt chunk size
    put_u16(f, 1);                              // PCM
    put_u16(f, 1);                              // mono
    put_u32(f, static_cast<uint32_t>(rate));    // samples per second
    put_u32(f, static_cast<uint32_t>(rate) * 2);  // bytes per second
    put_u16(f, 2);                              // bytes per frame
    put_u16(f, 16);                             // bits per sample
    f.write("data", 4);
    put_u32(f, data_bytes);
    for (const int16_t s : samples) put_u16(f, static_cast<uint16_t>(s));
    if (!f) throw Error(path + ": write failed");
}

Wav read_wav(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open");
    const std::vector<unsigned char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 || std::memcmp(b.data() + 8, "WAVE", 4) != 0)
        throw Error(path + ": not a WAV file (expected \"RIFF....WAVE\")");
    Wav w;
    bool have_fmt = false;
    for (size_t p = 12; p + 8 <= b.size();) {
        const uint32_t size = get_u32(b.data() + p + 4);
        if (size > b.size() - p - 8) throw Error(path + ": a chunk runs past the end of the file");
        const unsigned char* body = b.data() + p + 8;
        if (std::memcmp(b.data() + p, "fmt ", 4) == 0) {
            if (size < 16 || get_u16(body) != 1 || get_u16(body + 2) != 1 || get_u16(body + 14) != 16)
                throw Error(path + ": expected 16-bit mono PCM");
            w.rate = static_cast<int>(get_u32(body + 4));
            have_fmt = true;
        } else if (std::memcmp(b.data() + p, "data", 4) == 0) {
            if (!have_fmt) throw Error(path + ": data before fmt");
            w.samples.resize(size / 2);
            for (size_t i = 0; i < w.samples.size(); ++i) w.samples[i] = static_cast<int16_t>(get_u16(body + 2 * i));
            return w;
        }
        p += 8 + size + (size & 1);
    }
    throw Error(path + ": no data chunk");
}

}  // namespace microlm
