// `microlm-train`: the libtorch half of microlm (training, export, loss plots), a separate
// binary so that the runtime never links libtorch. `microlm train|export|plot-loss` hands its
// arguments to it. Errors print one line on stderr and exit 1 (2 for usage errors).
#include <CLI/CLI.hpp>
#include <torch/utils.h>

#include <cstdio>
#include <filesystem>

#include "microlm/dtype.h"
#include "microlm/error.h"
#include "export_gguf.h"
#include "loss_plot.h"
#include "trainer.h"

namespace {

using namespace microlm;
using namespace microlm::train;

std::string duration(double s) {
    char b[32];
    const long t = static_cast<long>(s);
    if (t >= 3600) std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
    return b;
}

DType parse_type(const std::string& t) {
    if (t == "f32") return DType::F32;
    if (t == "f16") return DType::F16;
    if (t == "q8_0") return DType::Q8_0;
    throw Error("--type '" + t + "': expected f32, f16 or q8_0");
}

void register_train(CLI::App& app) {
    auto* cmd = app.add_subcommand("train", "Train a μLM on `microlm data` shards (resumes from OUT/checkpoint.pt)");
    auto config = std::make_shared<std::string>();
    cmd->add_option("-c,--config", *config, "Config file of `key = value` lines (see configs/)");
    cmd->allow_extras();
    cmd->footer("Any key can be overridden with --key=value, e.g. --steps=200 --lr=1e-3 --out=runs/a.\n"
                "Writes OUT/checkpoint.pt (atomically, every ckpt_every steps and on Ctrl-C), OUT/loss.csv,\n"
                "OUT/config.txt. Running again with the same OUT resumes exactly where it stopped.");
    cmd->callback([cmd, config] {
        TrainConfig cfg = load_train_config(*config, cmd->remaining());
        std::fprintf(stderr, "microlm-train: %lld parameters, %s, %s, out %s\n",
                     static_cast<long long>(cfg.shape.parameters()), cfg.device.c_str(),
                     uses_bf16(cfg) ? "bf16 autocast (fp32 weights)" : "fp32", cfg.out.c_str());
        if (!cfg.teacher.empty()) {
            std::fprintf(stderr, "microlm-train: distilling from %s (weight %.2g, temperature %.2g)\n",
                         cfg.teacher.c_str(), cfg.distill_weight, cfg.distill_temperature);
        }
        const TrainSummary s = run_training(cfg, [](const StepReport& r) {
            std::fprintf(stderr, "step %6lld/%lld  loss %.4f%s  lr %.2e  %6.0f tok/s  seen %.2fM  ETA %s\n",
                         static_cast<long long>(r.step), static_cast<long long>(r.steps), r.loss,
                         r.val_loss >= 0 ? ("  val " + std::to_string(r.val_loss).substr(0, 6) + " (first " +
                                            std::to_string(r.val_first_loss).substr(0, 6) + ")").c_str() : "", r.lr,
                         r.tokens_per_s, static_cast<double>(r.tokens_seen) / 1e6, duration(r.eta_s).c_str());
        });
        const std::string val = s.last_val_loss >= 0 ? std::to_string(s.last_val_loss).substr(0, 6) : "not run";
        std::fprintf(stderr, "%s at step %lld: loss %.4f, val %s, %.2fM tokens seen, %s wall%s\n",
                     s.interrupted ? "stopped" : "done", static_cast<long long>(s.steps_done), s.last_loss,
                     val.c_str(), static_cast<double>(s.tokens_seen) / 1e6, duration(s.wall_s).c_str(),
                     s.interrupted ? " (checkpoint written; run again to resume)" : "");
    });
}

void register_export(CLI::App& app) {
    auto* cmd = app.add_subcommand("export", "Write a training checkpoint as a GGUF model");
    struct Opts {
        std::string ckpt, out, type = "q8_0", tokenizer, name;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("checkpoint", o->ckpt, "checkpoint.pt written by `train`")->required();
    cmd->add_option("-o,--output", o->out, "Output GGUF")->required();
    cmd->add_option("--type", o->type, "f32 | f16 | q8_0 (norms stay f32)")->capture_default_str();
    cmd->add_option("--tokenizer", o->tokenizer, "GGUF with the tokenizer (default: the run's data manifest's)");
    cmd->add_option("--name", o->name, "general.name (default: the output file's stem)");
    cmd->callback([o] {
        LoadedCheckpoint ck = load_checkpoint(o->ckpt);
        std::string tok = o->tokenizer.empty() ? ck.config.tokenizer : o->tokenizer;
        if (tok.empty()) throw Error("export: the checkpoint names no tokenizer; pass --tokenizer");
        const std::string name = o->name.empty() ? std::filesystem::path(o->out).stem().string() : o->name;
        export_gguf(ck.model, tok, o->out, parse_type(o->type), name);
        std::fprintf(stderr, "wrote %s (%s, step %lld, %.2fM tokens seen)\n", o->out.c_str(), o->type.c_str(),
                     static_cast<long long>(ck.step), static_cast<double>(ck.tokens_seen) / 1e6);
    });
}

void register_plot_loss(CLI::App& app) {
    auto* cmd = app.add_subcommand("plot-loss", "Draw a run's loss.csv (train, val, val on first reply tokens) as a PNG");
    auto csv = std::make_shared<std::string>(), out = std::make_shared<std::string>(), title = std::make_shared<std::string>();
    cmd->add_option("csv", *csv, "loss.csv written by `train`")->required();
    cmd->add_option("-o,--output", *out, "Output PNG")->required();
    cmd->add_option("--title", *title, "Chart title (default: the run folder's name)");
    cmd->callback([=] {
        const auto p = std::filesystem::path(*csv);
        write_loss_png(*csv, *out, title->empty() ? p.parent_path().filename().string() : *title);
        std::fprintf(stderr, "wrote %s\n", out->c_str());
    });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"microlm-train: train μLMs with libtorch, export checkpoints to GGUF, plot loss curves",
                 "microlm-train"};
    app.require_subcommand(1);
    register_train(app);
    register_export(app);
    register_plot_loss(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const microlm::Error& e) {
        std::fprintf(stderr, "microlm-train: error: %s\n", e.what());
        return 1;
    } catch (const c10::Error& e) {
        std::fprintf(stderr, "microlm-train: libtorch error: %s\n", e.what_without_backtrace());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "microlm-train: internal error: %s\n", e.what());
        return 1;
    }
    return 0;
}
