// `microlm` entry point: parses the subcommand and turns library errors into a one-line
// message on stderr and exit code 1 (2 for usage errors).
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "commands.h"
#include "microlm/error.h"

int main(int argc, char** argv) {
    if (argc > 1 && microlm::cli::is_trainer_command(argv[1])) return microlm::cli::run_trainer(argc, argv);
    CLI::App app{"microlm: instant replies from micro language models (GGUF Llama runtime)", "microlm"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "microlm 0.1.0");
    microlm::cli::register_run(app);
    microlm::cli::register_info(app);
    microlm::cli::register_tokenize(app);
    microlm::cli::register_make_random(app);
    microlm::cli::register_bench(app);
    microlm::cli::register_tokenizer_train(app);
    microlm::cli::register_data(app);
    microlm::cli::register_generate_batch(app);
    microlm::cli::register_convert(app);
    microlm::cli::register_quantize(app);
    microlm::cli::register_prune(app);
    microlm::cli::register_trainer_commands(app);
    microlm::cli::register_eval(app);
    microlm::cli::register_calibrate_hedge(app);
#if MICROLM_NET
    microlm::cli::register_serve_model(app);
    microlm::cli::register_chat(app);
    microlm::cli::register_serve(app);
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;  // --help and --version exit 0
    } catch (const microlm::Error& e) {
        std::fprintf(stderr, "microlm: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "microlm: internal error: %s\n", e.what());
        return 1;
    }
    // What a command printed must have arrived: a full disk or a closed pipe is a failure.
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        std::fprintf(stderr, "microlm: error: writing to standard output failed: %s\n", std::strerror(errno));
        return 1;
    }
    return 0;
}
