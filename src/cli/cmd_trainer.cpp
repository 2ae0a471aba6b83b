// `microlm train|export|plot-loss`: hands the arguments to the `microlm-train` binary beside
// this one (libtorch lives there, so the runtime binary never links it). The subcommands are
// registered here only so that `microlm --help` lists them.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "commands.h"

namespace microlm::cli {

namespace {
const char* const kTrainerCommands[] = {"train", "export", "plot-loss"};
}

void register_trainer_commands(CLI::App& app) {
    app.add_subcommand("train", "Train a μLM on `microlm data` shards (runs microlm-train; libtorch)")->allow_extras();
    app.add_subcommand("export", "Write a training checkpoint as GGUF (runs microlm-train)")->allow_extras();
    app.add_subcommand("plot-loss", "Draw a run's loss.csv as a PNG (runs microlm-train)")->allow_extras();
}

bool is_trainer_command(const char* arg) {
    for (const char* c : kTrainerCommands) {
        if (std::strcmp(arg, c) == 0) return true;
    }
    return false;
}

int run_trainer(int argc, char** argv) {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    const std::filesystem::path trainer = (ec ? std::filesystem::path(argv[0]) : self).parent_path() / "microlm-train";
    std::vector<char*> args;
    std::string name = trainer.string();
    args.push_back(name.data());
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    ::execv(name.c_str(), args.data());
    std::fprintf(stderr,
                 "microlm: error: `%s` needs %s (%s); it is built when libtorch is installed "
                 "(scripts/setup.sh installs libtorch-dev, then scripts/build.sh)\n",
                 argv[1], name.c_str(), std::strerror(errno));
    return 1;
}

}  // namespace microlm::cli
