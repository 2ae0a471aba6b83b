// Perceived latency: the measured opener timings of each model combined with a cloud
// time-to-first-token distribution and a delivery pace, as a Monte Carlo over simulated turns:
// how long the user waits after the opener has been said, against a cloud-only reply's wait
// for its first word. Own generator and transforms, so the same seed gives the same draws everywhere.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>

#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/speech.h"

namespace microlm::eval {
namespace {

// std::mt19937_64 is fully specified by the standard; the distributions are not, so the
// transforms are written out here.
double uniform01(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
}

double standard_normal(std::mt19937_64& rng) {
    const double u1 = 1.0 - uniform01(rng);  // (0, 1]
    const double u2 = uniform01(rng);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::vector<double> draw_ttft(const TtftDistribution& d, size_t n, std::mt19937_64& rng) {
    std::vector<double> out(n);
    for (double& t : out) {
        switch (d.kind) {
            case TtftDistribution::Kind::kLogNormal:
                t = d.median_s * std::exp(d.sigma * standard_normal(rng));
                break;
            case TtftDistribution::Kind::kFixed:
                t = d.median_s;
                break;
            case TtftDistribution::Kind::kSamples:
                t = d.samples_s[rng() % d.samples_s.size()];
                break;
        }
    }
    return out;
}

LatencyStats stats_of(const std::vector<double>& sorted) {
    LatencyStats s;
    if (sorted.empty()) return s;
    s.p50 = quantile(sorted, 0.5);
    s.p90 = quantile(sorted, 0.9);
    s.p99 = quantile(sorted, 0.99);
    s.mean = mean(sorted);
    s.zero_share =
        static_cast<double>(std::count_if(sorted.begin(), sorted.end(), [](double v) { return v < 1e-3; })) /
        static_cast<double>(sorted.size());
    return s;
}

// Where sound is in an utterance espeak-ng made, in seconds from its start: the first and the
// last sound sample, and the utterance's whole length.
struct SoundEdges {
    double first_s = 0, last_s = 0, length_s = 0;
};

SoundEdges sound_edges(const std::string& text) {
    const std::vector<int16_t> a = synthesize(text, {});
    const int rate = speech_sample_rate();
    SoundEdges e;
    e.length_s = static_cast<double>(a.size()) / rate;
    const double first = first_sound_ms(a, rate);
    if (first < 0) return e;
    size_t last = a.size();
    while (last > 0 && std::abs(static_cast<int>(a[last - 1])) < kSoundThreshold) --last;
    e.first_s = first / 1000.0;
    e.last_s = static_cast<double>(last) / rate;
    return e;
}

}  // namespace

double audio_stall(double first_word_s, double opener_s, double opener_last_sound_s, double opener_length_s,
                   bool needs_cloud, double ttft_s, double continuation_first_sound_s) {
    if (!needs_cloud) return 0.0;
    const double start = first_word_s >= 0 ? first_word_s : opener_s;  // the opener's audio starts
    const double arrival = opener_s + ttft_s;                            // the request leaves when it is final
    const double next_start = std::max(arrival, start + opener_length_s);  // said right after, or when it came
    const double silence = next_start + continuation_first_sound_s - (start + opener_last_sound_s);
    const double own_pause = opener_length_s - opener_last_sound_s + continuation_first_sound_s;
    return std::max(0.0, silence - own_pause);
}

std::string TtftDistribution::describe() const {
    char buf[160];
    switch (kind) {
        case Kind::kLogNormal:
            std::snprintf(buf, sizeof buf, "log-normal, median %.2f s, sigma %.2f (p90 %.2f s)", median_s,
                          sigma, median_s * std::exp(1.2815515655 * sigma));
            return buf;
        case Kind::kFixed:
            std::snprintf(buf, sizeof buf, "fixed %.2f s", median_s);
            return buf;
        case Kind::kSamples:
            std::snprintf(buf, sizeof buf, "%zu measured values (median %.2f s)", samples_s.size(),
                          quantile(samples_s, 0.5));
            return buf;
    }
    return "";
}

double simulated_stall(double first_word_s, double opener_s, int words, bool needs_cloud, double ttft_s,
                       double wps) {
    if (!needs_cloud) return 0.0;
    const double start = first_word_s >= 0 ? first_word_s : opener_s;
    const double delivered =
        start + static_cast<double>(std::max(words, 0)) / wps;  // the opener has been said
    const double cloud_first = opener_s + ttft_s;               // the request leaves when the opener is final
    return std::max(0.0, cloud_first - delivered);
}

namespace {

// The "speech, audio" rows: each opener said by espeak-ng, and the cloud's text after it when it
// comes; the stall is the silence between the opener's last sound and the continuation's first,
// found in the samples, less the voice's own pause between two utterances said back to back.
// Sized: as the text rows, the opener lengthened to cover the wait at the voice's measured rate,
// its audio growing in proportion to its words.
void add_audio_rows(const EvalConfig& cfg, const ModelOpeners& m, const std::vector<size_t>& which,
                    double wait_q, const std::vector<double>& ttft, LatencyModelResult& r) {
    const double wps = spoken_words_per_minute({}) / 60.0;
    const SoundEdges continuation = sound_edges("and the rest of the answer follows");
    std::map<std::string, SoundEdges> said;  // hedge phrases repeat
    for (const OpenerSample& s : m.openers)
        if (!said.count(s.text)) said.emplace(s.text, sound_edges(s.text));
    for (const bool sized : {false, true}) {
        std::vector<double> stall(cfg.draws);
        for (size_t j = 0; j < cfg.draws; ++j) {
            const OpenerSample& s = m.openers[which[j]];
            const SoundEdges& e = said.at(s.text);
            double opener_s = s.opener_ms / 1000.0, length = e.length_s, last = e.last_s;
            if (sized && !s.ended_turn && s.shown_words > 0) {
                const int need = std::min(cfg.max_opener_words, static_cast<int>(std::ceil(wait_q * wps)));
                if (need > s.shown_words) {
                    const double k = static_cast<double>(need) / s.shown_words;
                    opener_s *= k;
                    last = length * k - (length - last);
                    length *= k;
                }
            }
            stall[j] = audio_stall(s.first_word_ms / 1000.0, opener_s, last, length, !s.ended_turn && !s.text.empty(),
                                   ttft[j], continuation.first_s);
        }
        std::sort(stall.begin(), stall.end());
        const std::string name = sized ? "speech, audio, sized" : "speech, audio";
        r.stall[name] = stats_of(stall);
        r.stall_draws[name] = std::move(stall);
    }
}

}  // namespace

LatencyResult run_latency_suite(const EvalConfig& cfg, const std::vector<ModelOpeners>& models) {
    if (cfg.draws == 0) throw Error("eval: latency needs at least one draw (--draws)");
    if (cfg.ttft.kind == TtftDistribution::Kind::kSamples && cfg.ttft.samples_s.empty())
        throw Error(
            "eval: the cloud TTFT distribution has no samples (measured needs the handoff suite's cloud "
            "times)");
    if (!(cfg.speech_wps > 0) || !(cfg.text_wps > 0))
        throw Error("eval: delivery paces must be positive words/s");
    LatencyResult res;
    res.ttft = cfg.ttft.describe();
    res.draws = cfg.draws;
    res.paces = {{"speech", cfg.speech_wps}, {"text", cfg.text_wps}};
    res.sized_quantile = cfg.sized_quantile;
    res.max_opener_words = cfg.max_opener_words;

    // Common random numbers: every model meets the same cloud delays as the cloud-only reply.
    std::mt19937_64 rng(cfg.seed);
    const std::vector<double> ttft = draw_ttft(cfg.ttft, cfg.draws, rng);
    res.cloud_only_draws = ttft;
    std::sort(res.cloud_only_draws.begin(), res.cloud_only_draws.end());
    res.cloud_only = stats_of(res.cloud_only_draws);

    for (size_t mi = 0; mi < models.size(); ++mi) {
        const ModelOpeners& m = models[mi];
        LatencyModelResult r;
        r.model = m.name;
        std::vector<double> fw, op, words;
        for (const OpenerSample& s : m.openers) {
            if (s.first_word_ms >= 0) fw.push_back(s.first_word_ms);
            op.push_back(s.opener_ms);
            words.push_back(s.shown_words);
        }
        r.first_word_p50_ms = quantile(fw, 0.5);
        r.first_word_p90_ms = quantile(fw, 0.9);
        r.opener_p50_ms = quantile(op, 0.5);
        r.words_mean = mean(words);
        if (!m.openers.empty()) {
            std::mt19937_64 pick(cfg.seed + 0x9E3779B97F4A7C15ULL * (mi + 1));
            std::vector<size_t> which(cfg.draws);
            for (size_t& w : which) w = pick() % m.openers.size();
            // What a sized opener has to cover: first word to the cloud's first token.
            std::vector<double> wait(cfg.draws);
            for (size_t j = 0; j < cfg.draws; ++j) {
                const OpenerSample& s = m.openers[which[j]];
                wait[j] = s.opener_ms / 1000.0 - std::max(0.0, s.first_word_ms / 1000.0) + ttft[j];
            }
            const double wait_q = quantile(wait, cfg.sized_quantile);
            if (speech_available()) add_audio_rows(cfg, m, which, wait_q, ttft, r);
            for (const auto& [pace, wps] : res.paces) {
                for (const bool sized : {false, true}) {
                    std::vector<double> stall(cfg.draws);
                    for (size_t j = 0; j < cfg.draws; ++j) {
                        const OpenerSample& s = m.openers[which[j]];
                        int words = s.shown_words;
                        double opener_s = s.opener_ms / 1000.0;
                        if (sized && !s.ended_turn && words > 0) {
                            // The opener decodes on to the words that cover the wait; its decode
                            // time grows in proportion (the request still leaves when it is final).
                            const int need = std::min(cfg.max_opener_words, static_cast<int>(std::ceil(wait_q * wps)));
                            if (need > words) {
                                opener_s *= static_cast<double>(need) / words;
                                words = need;
                            }
                        }
                        stall[j] = simulated_stall(s.first_word_ms / 1000.0, opener_s, words, !s.ended_turn, ttft[j], wps);
                    }
                    std::sort(stall.begin(), stall.end());
                    const std::string name = sized ? pace + ", sized" : pace;
                    r.stall[name] = stats_of(stall);
                    r.stall_draws[name] = std::move(stall);
                }
            }
        }
        res.models.push_back(std::move(r));
    }
    if (speech_available()) res.paces["speech, audio"] = spoken_words_per_minute({}) / 60.0;
    return res;
}

}  // namespace microlm::eval
