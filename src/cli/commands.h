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
void register_serve_model(CLI::App& app);
void register_chat(CLI::App& app);
void register_convert(CLI::App& app);
// train, export, plot-loss: listed in --help, run by the microlm-train binary.
void register_trainer_commands(CLI::App& app);
bool is_trainer_command(const char* arg);
int run_trainer(int argc, char** argv);
void register_serve(CLI::App& app);
void register_calibrate_hedge(CLI::App& app);
void register_eval(CLI::App& app);  // openers and latency always; handoff needs MICROLM_NET

}  // namespace microlm::cli
