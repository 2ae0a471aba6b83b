// `microlm calibrate-hedge MODEL`: chooses the model's own hedge thresholds on held-back
// training prompts (eval::calibrate_hedge) and writes them into the GGUF, where the opener reads
// them. This file only parses flags and prints.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "commands.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/opener.h"
#include "progress.h"

namespace microlm::cli {

void register_calibrate_hedge(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "calibrate-hedge",
        "Choose a model's hedge thresholds on held-back training prompts and write them into its GGUF");
    cmd->footer(
        "The opener hedges (shows a neutral phrase instead of its own words) when the mean token log p\n"
        "of its opener is below a threshold or any step's entropy is above one. This runs the opener on\n"
        "prompts from the validation side of the training split (never eval prompts), scores each\n"
        "opener and the hedge the model would pick against the real reply's first words\n"
        "(start-match@2 + opener-F1), and keeps the thresholds that score best with a hedge rate in\n"
        "[--min-rate, --max-rate]. Without -o the model file is rewritten in place (atomically).\n"
        "Example: microlm calibrate-hedge models/microlm-8m.q8_0.gguf -n 400");
    struct Opts {
        std::string model, out, data;
        size_t n = 400;
        double val_fraction = 0.01, min_rate = 0.10, max_rate = 0.50;
        int threads = 1;
        bool dry_run = false;
    };
    auto o = std::make_shared<Opts>();
    o->data = default_data_dir();
    cmd->add_option("model", o->model, "GGUF model")->required()->check(CLI::ExistingFile);
    cmd->add_option("-o,--out", o->out, "Write the calibrated model here (default: replace MODEL)");
    cmd->add_option("--data", o->data, "The shared data folder holding chat/ and eval/ (env MICROLM_DATA)")
        ->capture_default_str();
    cmd->add_option("-n,--prompts", o->n, "Prompts to calibrate on")->capture_default_str()->check(CLI::Range(20, 100000));
    cmd->add_option("--val-fraction", o->val_fraction,
                    "The validation fraction the model's `microlm data` run used (its held-back prompts)")
        ->capture_default_str()
        ->check(CLI::Range(1e-4, 0.5));
    cmd->add_option("--min-rate", o->min_rate, "Lowest acceptable hedge rate")->capture_default_str()->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--max-rate", o->max_rate, "Highest acceptable hedge rate")->capture_default_str()->check(CLI::Range(0.0, 1.0));
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_flag("--dry-run", o->dry_run, "Print the thresholds, write nothing");
    cmd->callback([o] {
        const std::vector<eval::ReplyPrompt> prompts = eval::validation_prompts(o->data, o->n, o->val_fraction);
        std::fprintf(stderr, "calibrate-hedge: %zu held-back training prompts from %s/chat\n", prompts.size(),
                     o->data.c_str());
        ProgressBar bar("calibrate-hedge");
        const eval::HedgeCalibration c =
            eval::calibrate_hedge(o->model, prompts, o->min_rate, o->max_rate, o->threads, std::ref(bar));
        bar.finish_line();
        const auto limit = [](float v, const char* fmt) {
            if (std::abs(v) >= 1e6f) return std::string("(off)");
            char b[32];
            std::snprintf(b, sizeof b, fmt, static_cast<double>(v));
            return std::string(b);
        };
        std::printf("thresholds: hedge when mean log p < %s or max entropy > %s\n",
                    limit(c.min_mean_logprob, "%.3f").c_str(), limit(c.max_entropy, "%.3f nats").c_str());
        std::printf("on %zu prompts: hedge rate %.1f%%, score %.3f (start-match@2 + opener-F1 of what is shown)\n",
                    c.prompts, 100 * c.hedge_rate, c.score_shown);
        std::printf("  never hedging: score %.3f; SmolLM2's defaults (%.2f, %.2f): hedge rate %.1f%%, score %.3f\n",
                    c.score_never, static_cast<double>(kDefaultHedgeMinMeanLogprob),
                    static_cast<double>(kDefaultHedgeMaxEntropy), 100 * c.rate_default, c.score_default);
        if (o->dry_run) return;
        const std::string out = o->out.empty() ? o->model : o->out;
        eval::write_hedge_thresholds(o->model, out, c);
        std::printf("wrote %s (%s, %s)\n", out.c_str(), kHedgeMinMeanLogprobKey, kHedgeMaxEntropyKey);
    });
}

}  // namespace microlm::cli
