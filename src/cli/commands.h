// The CLI's subcommands: each registers its options on the app and runs when chosen.
// Only the CLI prints errors and picks exit codes; the library throws microlm::Error.
#pragma once

#include <CLI/CLI.hpp>

namespace microlm::cli {

void register_run(CLI::App& app);
void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_make_random(CLI::App& app);
void register_bench(CLI::App& app);
void register_tokenizer_train(CLI::App& app);
void register_data(CLI::App& app);
void register_serve_model(CLI::App& app);
void register_chat(CLI::App& app);

}  // namespace microlm::cli
