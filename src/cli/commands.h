// The CLI's subcommands: each registers its options on the app and runs when chosen.
// Only the CLI prints errors and picks exit codes; the library throws microlm::Error.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <map>
#include <string>

#include "microlm/handoff.h"

namespace microlm::cli {

// The shared data folder (chat/, eval/): $MICROLM_DATA, else ../shared/data.
inline std::string default_data_dir() {
    const char* env = std::getenv("MICROLM_DATA");
    return env ? env : "../shared/data";
}

// Paced delivery and the opener sized to the cloud's wait (turn/pacer.h), shared by chat and
// serve; `where` ends the --pace help (what else turns pacing off) and `prior` the
// --size-opener help (the wait assumed before any turn measured one).
inline void add_pace_options(CLI::App* cmd, double& pace_wpm, double& size_opener, int& max_opener_words,
                             const std::string& where, const std::string& prior) {
    cmd->add_option("--pace", pace_wpm,
                    "Words per minute the reply is delivered at, the first word at once, so that the opener covers "
                    "the cloud's wait (default: 250 for text, 160 for speech; 0: as fast as they come" + where + ")")
        ->check(CLI::Range(0.0, 10000.0));
    cmd->add_option("--size-opener", size_opener,
                    "Make a paced opener long enough that its delivery covers this quantile of the cloud's recent "
                    "waits (before any: " + prior + "); 0: the opener's own length")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--max-opener-words", max_opener_words, "The longest opener --size-opener may ask for")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
}

// How much of the conversation the opener reads, shared by chat and serve.
inline void add_opener_prompt_option(CLI::App* cmd, int& max_prompt_tokens) {
    cmd->add_option("--opener-prompt-tokens", max_prompt_tokens,
                    "The most tokens of the conversation the local opener reads, so that its first word does not "
                    "wait on a long message (oldest turns go first, then the message keeps its head and tail around "
                    "\" [...] \"); the cloud still gets everything. 0: all the local context holds")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 20));
}

// The opener check's options, shared by chat and serve.
inline void add_check_options(CLI::App* cmd, OpenerCheckConfig& c) {
    std::map<std::string, CheckSignal> names;
    for (const CheckSignal s : {CheckSignal::kOff, CheckSignal::kLikelihood, CheckSignal::kPmi, CheckSignal::kAny,
                                CheckSignal::kAll})
        names.emplace(std::string(check_signal_name(s)), s);
    cmd->add_option("--check", c.signal,
                    "Opener check, beside the continuation (needs a completions endpoint with echo + logprobs; "
                    "without one it says keep): off | likelihood (the cloud's mean log p of the opener) | pmi "
                    "(that minus its log p after an empty question) | any | all. Off: text retracts, speech pivots")
        ->transform(CLI::CheckedTransformer(names))
        ->default_str(std::string(check_signal_name(c.signal)));
    cmd->add_option("--check-min-logprob", c.min_logprob, "likelihood: the opener is off below this (nats per token)")
        ->capture_default_str();
    cmd->add_option("--check-min-pmi", c.min_pmi, "pmi: the opener is off below this (nats per token)")
        ->capture_default_str();
    cmd->add_flag("--check-first", c.before_continuation,
                  "Ask for the continuation once the check has answered, not beside it: for clouds that run one "
                  "request at a time (llama-cpp-python's server); adds the check's time to the wait");
    cmd->add_option("--pivot-bridge", c.pivot_bridge,
                    "Said after an opener the check found off (speech), before the cloud's plain answer; "
                    "empty: the cloud writes its own bridge")
        ->capture_default_str();
}

void register_run(CLI::App& app);
void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_make_random(CLI::App& app);
void register_bench(CLI::App& app);
void register_tokenizer_train(CLI::App& app);
void register_data(CLI::App& app);
void register_generate_batch(CLI::App& app);
void register_serve_model(CLI::App& app);
void register_chat(CLI::App& app);
void register_convert(CLI::App& app);
void register_quantize(CLI::App& app);
void register_prune(CLI::App& app);
// train, export, plot-loss: listed in --help, run by the microlm-train binary.
void register_trainer_commands(CLI::App& app);
bool is_trainer_command(const char* arg);
int run_trainer(int argc, char** argv);
void register_serve(CLI::App& app);
void register_calibrate_hedge(CLI::App& app);
void register_eval(CLI::App& app);  // openers and latency always; handoff needs MICROLM_NET

}  // namespace microlm::cli
