// `microlm quantize IN OUT --type T`: a model's matrices written in another type or K-quant mix
// (the library's quantize_model); this file parses flags and reports.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "microlm/error.h"
#include "microlm/quantize.h"
#include "microlm/stopwatch.h"
#include "progress.h"

namespace microlm::cli {

void register_quantize(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "quantize", "Write a GGUF model's matrices in another type or K-quant mix (norms and metadata copied)");
    struct Opts {
        std::string in, out, type = "q4_k_m";
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("input", o->in, "The GGUF model to read")->required();
    cmd->add_option("output", o->out, "The GGUF file to write (replaced atomically)")->required();
    cmd->add_option("--type", o->type,
                    "Target: " + quantize_target_names() +
                        ". The _m mixes give the output matrix and some attn_v / ffn_down layers Q6_K, as "
                        "llama.cpp does; rows that are not whole 256-element blocks fall back to Q5_0 / Q5_1 / Q8_0")
        ->capture_default_str();
    cmd->callback([o] {
        const auto target = quantize_target(o->type);
        if (!target) throw Error("unknown --type '" + o->type + "' (expected one of: " + quantize_target_names() + ")");
        if (!std::filesystem::exists(o->in)) throw Error(o->in + ": no such file");
        const Stopwatch t;
        ProgressBar bar("quantize");
        const QuantizeSummary s = quantize_model(o->in, o->out, *target,
                                                 [&](size_t done, size_t total) { bar(target->name, done, total); });
        bar.finish_line();
        std::string types;
        for (const auto& [name, n] : s.types) types += " " + name + " x" + std::to_string(n);
        std::printf("wrote %s (%s): %.1f MiB -> %.1f MiB in %.1f s; matrices:%s; %d tensors copied\n", o->out.c_str(),
                    target->name.c_str(), s.bytes_in / 1048576.0, s.bytes_out / 1048576.0, t.seconds(), types.c_str(),
                    s.copied);
    });
}

}  // namespace microlm::cli
