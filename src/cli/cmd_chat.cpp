// `microlm chat [PROMPT]`: the main job. The local μLM says the first words at once and a cloud
// model (a real endpoint, or an in-process serve-model of SmolLM2 with a simulated delay)
// continues the sentence; one turn with PROMPT, else an interactive multi-turn loop.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "commands.h"
#include "microlm/cloud_client.h"
#include "microlm/error.h"
#include "microlm/local_model.h"
#include "microlm/model_server.h"
#include "microlm/opener.h"
#include "microlm/pacer.h"
#include "microlm/speech.h"
#include "microlm/spoken_turn.h"
#include "microlm/tokenizer.h"
#include "microlm/turn.h"

namespace microlm::cli {
namespace {

constexpr const char* kSmolLM2 = "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf";
// Committed with the repository: the 28M opens better than SmolLM2-135M by both opener metrics
// (models/microlm-28m.md); models/microlm-8m.q8_0.gguf is the smaller, faster one.
constexpr const char* kMicrolm28m = "models/microlm-28m.q8_0.gguf";

struct Style {
    bool tty = false;
    const char* local() const { return tty ? "\x1b[1;36m" : ""; }     // bold cyan: the μLM's words
    const char* recovery() const { return tty ? "\x1b[33m" : ""; }    // yellow: pivot, retract, close
    const char* dim() const { return tty ? "\x1b[2m" : ""; }
    const char* reset() const { return tty ? "\x1b[0m" : ""; }
};

void print_event(const TurnEvent& e, const Style& st) {
    using K = TurnEvent::Kind;
    switch (e.kind) {
        case K::kOpener: std::printf("%s%s%s", st.local(), e.text.c_str(), st.reset()); break;
        case K::kHedge: break;  // its words arrived as opener words; the timing line says so
        case K::kContinuation: std::printf("%s", e.text.c_str()); break;
        case K::kPivot: std::printf("%s[pivot]%s", st.recovery(), st.reset()); break;
        case K::kRetract: std::printf("\n%s[retract]%s %s", st.recovery(), st.reset(), e.text.c_str()); break;
        case K::kLocalClose: std::printf("%s%s%s", st.local(), e.text.c_str(), st.reset()); break;
        case K::kError:
            std::fflush(stdout);
            std::fprintf(stderr, "\n%smicrolm: cloud error (%s)%s\n", st.recovery(), e.text.c_str(), st.reset());
            break;
    }
    std::fflush(stdout);
}

// FILE.wav for the first turn, FILE-2.wav for the second...
std::string numbered_path(const std::string& path, int n) {
    if (n <= 1) return path;
    const std::filesystem::path p(path);
    return (p.parent_path() / (p.stem().string() + "-" + std::to_string(n) + p.extension().string())).string();
}

}  // namespace

void register_chat(CLI::App& app) {
    auto* cmd = app.add_subcommand("chat", "Instant replies: the local μLM opens, a cloud model continues the sentence");
    struct Opts {
        std::string prompt, local = kMicrolm28m, cloud, cloud_model, api_key_env, stand_in = kSmolLM2, system;
        std::string mode, modality = "text";
        int cloud_delay_ms = 1500, threads = 1;
        int connect_timeout_ms = 3000, first_byte_timeout_ms = 10000;
        int64_t max_tokens = 160;
        float temp = 0.7f;
        bool no_continue_fields = false;
        OpenerCheckConfig check;
        double pace_wpm = -1;  // < 0: the modality's pace
        double size_opener = 0.9;
        int max_opener_words = 12;
        int opener_prompt_tokens = OpenerConfig{}.max_prompt_tokens;
        int64_t stand_in_ctx = 8192;
        bool speak = false;
        std::string speak_to, speak_player;
        VoiceConfig voice;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("prompt", o->prompt, "The user's message (none: an interactive conversation)");
    cmd->add_option("--local", o->local, "The local μLM (GGUF)")->capture_default_str();
    cmd->add_option("--cloud", o->cloud, "OpenAI-compatible base URL (none: an in-process serve-model stand-in)");
    cmd->add_option("--cloud-model", o->cloud_model, "Model name for --cloud");
    cmd->add_option("--api-key-env", o->api_key_env, "NAME of the environment variable holding the API key for --cloud");
    cmd->add_option("--stand-in", o->stand_in, "GGUF the stand-in cloud serves")->capture_default_str();
    cmd->add_option("--stand-in-ctx", o->stand_in_ctx, "The stand-in's context in tokens (at most its model's)")->capture_default_str()->check(CLI::Range(int64_t{64}, int64_t{1} << 20));
    cmd->add_option("--cloud-delay-ms", o->cloud_delay_ms, "The stand-in's delay before its first token")->capture_default_str()->check(CLI::Range(0, 600000));
    cmd->add_option("--mode", o->mode, "prefill | instruct (default: prefill for the stand-in, instruct for --cloud)")->check(CLI::IsMember({"prefill", "instruct"}));
    cmd->add_option("--modality", o->modality, "speech (pivot only) | text (retract allowed)")->capture_default_str()->check(CLI::IsMember({"speech", "text"}));
    cmd->add_option("--system", o->system, "System message (default: the local model's template default)");
    add_check_options(cmd, o->check);
    add_pace_options(cmd, o->pace_wpm, o->size_opener, o->max_opener_words, "",
                     "the stand-in's delay + 200 ms, or 800 ms for --cloud");
    add_opener_prompt_option(cmd, o->opener_prompt_tokens);
    cmd->add_flag("--speak", o->speak,
                  "Say the reply aloud with espeak-ng as its words arrive (through aplay or paplay; implies "
                  "--modality speech unless given)");
    cmd->add_option("--speak-to", o->speak_to,
                    "Write the spoken reply, silences included, to this WAV file (later turns: FILE-2.wav, ...); "
                    "implies --modality speech unless given");
    cmd->add_option("--speak-player", o->speak_player,
                    "Command that plays raw s16le mono 22050 Hz audio from stdin (default: aplay, else paplay)");
    cmd->add_option("--voice", o->voice.voice, "espeak-ng voice (espeak-ng --voices lists them)")->capture_default_str();
    cmd->add_option("--speak-wpm", o->voice.words_per_minute, "Speaking rate, words per minute")
        ->capture_default_str()
        ->check(CLI::Range(80, 450));
    cmd->add_option("-n,--max-tokens", o->max_tokens, "Cloud continuation token limit")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{100000}));
    cmd->add_option("--temp", o->temp, "Cloud temperature")->capture_default_str()->check(CLI::Range(0.0f, 2.0f));
    cmd->add_option("-t,--threads", o->threads, "Threads for each local model")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_option("--connect-timeout-ms", o->connect_timeout_ms, "Cloud connect timeout")->capture_default_str()->check(CLI::Range(1, 600000));
    cmd->add_option("--first-byte-timeout-ms", o->first_byte_timeout_ms, "Cloud time limit for the first byte")->capture_default_str()->check(CLI::Range(1, 600000));
    cmd->add_flag("--no-continue-fields", o->no_continue_fields, "Prefill: do not send vLLM's continue_final_message fields");
    cmd->callback([o, cmd] {
        if (!std::filesystem::exists(o->local))
            throw Error(o->local + ": no such model; pass --local FILE (models/microlm-28m.q8_0.gguf or models/microlm-8m.q8_0.gguf from the repository root, or SmolLM2 in models/cache after scripts/setup.sh)");
        auto local = LocalModel::open(o->local, 2048, o->threads);
        const Tokenizer& tok = local->tokenizer();
        Context& ctx = local->context();
        OpenerConfig ocfg;
        if (!o->system.empty()) ocfg.system_prompt = o->system;
        ocfg.max_prompt_tokens = o->opener_prompt_tokens;
        Opener opener(ctx, tok, ocfg);
        opener.warm_up();

        std::unique_ptr<ModelServer> stand_in;
        CloudConfig ccfg;
        ccfg.connect_timeout_ms = o->connect_timeout_ms;
        ccfg.first_byte_timeout_ms = o->first_byte_timeout_ms;
        if (o->cloud.empty()) {
            ModelServerConfig scfg;
            scfg.model_path = o->stand_in;
            scfg.port = 0;
            scfg.n_ctx = o->stand_in_ctx;  // a cloud answers long messages the opener reads only part of
            scfg.delay_ms = o->cloud_delay_ms;
            scfg.threads = o->threads;
            stand_in = std::make_unique<ModelServer>(scfg);
            stand_in->start();
            ccfg.base_url = stand_in->base_url();
            ccfg.model = stand_in->model_name();
            // It prefills the whole conversation on this CPU: a long message takes it seconds.
            ccfg.first_byte_timeout_ms = std::max(ccfg.first_byte_timeout_ms, o->cloud_delay_ms + 60000);
            ccfg.stall_timeout_ms = std::max(ccfg.stall_timeout_ms, ccfg.first_byte_timeout_ms);
        } else {
            ccfg.base_url = o->cloud;
            ccfg.model = o->cloud_model;
            ccfg.api_key_env = o->api_key_env;
        }
        CloudClient cloud(ccfg);

        TurnConfig tcfg;
        tcfg.mode = (o->mode.empty() ? (o->cloud.empty() ? "prefill" : "instruct") : o->mode) == "prefill" ? ContinuationMode::kPrefill
                                                                                                            : ContinuationMode::kInstruct;
        const bool speaking = o->speak || !o->speak_to.empty();
        const bool modality_given = cmd->count("--modality") > 0;
        tcfg.modality = o->modality == "speech" || (speaking && !modality_given) ? Modality::kSpeech : Modality::kText;
        std::string player;
        if (o->speak) {
            player = o->speak_player.empty() ? default_player_command(speech_sample_rate()) : o->speak_player;
            if (player.empty())
                throw Error("--speak needs an audio player on PATH (aplay from alsa-utils, or paplay), or "
                            "--speak-player CMD; --speak-to FILE.wav writes the audio instead");
            std::signal(SIGPIPE, SIG_IGN);  // a player that exits must not end the chat
        } else if (speaking) {
            speech_sample_rate();  // fails now, not after the first turn, when espeak-ng is missing
        }
        tcfg.max_tokens = o->max_tokens;
        tcfg.temperature = o->temp;
        tcfg.send_continue_fields = !o->no_continue_fields;
        tcfg.check = o->check;

        // Spoken, the words go at the rate the voice really speaks, and the opener is sized to that.
        const PaceConfig pace = speaking && o->pace_wpm < 0 ? PaceConfig{spoken_words_per_minute(o->voice)}
                                                            : PaceConfig::from_flag(o->pace_wpm, tcfg.modality);
        CloudWait cloud_wait(o->cloud.empty() ? o->cloud_delay_ms + 200.0 : 800.0);

        Style st;
        st.tty = isatty(STDOUT_FILENO);
        std::vector<ChatMessage> history;
        if (!o->system.empty()) history.push_back({"system", o->system});
        int turn_no = 0;
        auto turn = [&](const std::string& user) {
            history.push_back({"user", user});
            ++turn_no;
            std::optional<LiveSpeaker> speaker;
            if (speaking) speaker.emplace(o->voice, player);
            Pacer pacer(pace, [&](const TurnEvent& e) { print_event(e, st); });
            if (o->size_opener > 0)
                tcfg.opener_length = size_opener(cloud_wait.quantile(o->size_opener), pace, ocfg.min_words,
                                                 ocfg.max_words, o->max_opener_words);
            const TurnResult r = run_turn(opener, cloud, history, tcfg, [&](const TurnEvent& e) {
                pacer.push(e);
                if (speaker) say_event(*speaker, e);
            });
            std::string spoken;
            if (speaker) {  // all the text is in: the last word is whole, say it now
                const AudioTimeline& audio = speaker->finish();
                char buf[160];
                std::snprintf(buf, sizeof buf, " | speech: first sound %.0f ms, longest wait %.0f ms, %.1f s of audio",
                              audio.first_sound_ms(), audio.longest_wait_ms(), audio.end_ms() / 1000.0);
                spoken = buf;
                if (!o->speak_to.empty()) audio.write_wav(numbered_path(o->speak_to, turn_no));
                if (!speaker->player_error().empty())
                    std::fprintf(stderr, "microlm: speech: %s; --speak-to FILE.wav keeps the audio\n",
                                 speaker->player_error().c_str());
            }
            pacer.finish();
            cloud_wait.observe(cloud_wait_ms(r));
            std::printf("\n");
            std::fflush(stdout);
            const auto& t = r.timings;
            std::string check;
            if (r.check) {
                char buf[160];
                if (r.check->error.empty())
                    std::snprintf(buf, sizeof buf, " | check %.0f ms (log p %.2f, pmi %.2f)%s", r.check->ms,
                                  r.check->scores.given_conversation, r.check->scores.pmi(), r.verdict_by_check ? ": off" : "");
                else
                    std::snprintf(buf, sizeof buf, " | check failed (%.60s)", r.check->error.c_str());
                check = buf;
            }
            std::fprintf(stderr,
                         "%sfirst word %.0f ms | opener %.0f ms (%zu words%s) | cloud first token %.0f ms | "
                         "visible stall %.0f ms (at %.0f wpm) | verdict %s%s | total %.0f ms%s%s\n",
                         st.dim(), t.first_word_ms, t.opener_ms, r.opener.words.size(), r.opener.hedged ? ", hedged" : "",
                         t.cloud_first_token_ms, pacer.visible_stall_ms(),
                         pace.words_per_minute,
                         r.verdict ? std::string(verdict_name(*r.verdict)).c_str() : (r.cloud_used ? "none" : "no cloud"),
                         check.c_str(), t.total_ms, spoken.c_str(), st.reset());
            history.push_back({"assistant", r.text});
        };
        if (!o->prompt.empty()) {
            turn(o->prompt);
            return;
        }
        const bool interactive = isatty(STDIN_FILENO);
        for (std::string line;;) {
            if (interactive) {
                std::printf("> ");
                std::fflush(stdout);
            }
            if (!std::getline(std::cin, line) || line == "/exit" || line == "/quit") break;
            if (line.empty()) continue;
            turn(line);
        }
    });
}

}  // namespace microlm::cli
