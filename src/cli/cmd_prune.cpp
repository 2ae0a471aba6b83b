// `microlm prune IN OUT --layers L --vocab N`: a smaller Llama cut out of a larger one (the
// library's prune_model), the start of a μLM trained from a teacher's weights; this file parses
// flags and reports.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "microlm/error.h"
#include "microlm/prune.h"
#include "microlm/stopwatch.h"

namespace microlm::cli {

void register_prune(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "prune", "Cut a smaller Llama out of a GGUF model: some of its layers and the first N tokens of its vocabulary");
    struct Opts {
        std::string in, out, layers, type = "f32", chat_template_from, name;
        int32_t vocab = 0;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("input", o->in, "The GGUF model to cut (a Llama with a byte-level BPE vocabulary)")->required();
    cmd->add_option("output", o->out, "The GGUF file to write (replaced atomically)")->required();
    cmd->add_option("--layers", o->layers, "Source layers to keep, ascending: e.g. 0-3,29 (renumbered from 0)")
        ->required();
    cmd->add_option("--vocab", o->vocab,
                    "Keep the first N tokens (a BPE vocabulary's most frequent pieces) and the merges among them; "
                    "0 keeps all")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--type", o->type, "Matrices as f32, f16 or q8_0 (what `microlm train`'s init_from reads)")
        ->capture_default_str();
    cmd->add_option("--chat-template-from", o->chat_template_from,
                    "Take tokenizer.chat_template from this GGUF (e.g. a μLM's, without a default system message)");
    cmd->add_option("--name", o->name, "general.name (default: the output file's stem)");
    cmd->footer("Example: microlm prune SmolLM2-135M-Instruct.Q4_1.gguf smol-6l.gguf --layers 0-4,29 --vocab 8192\n"
                "Then train it further with `init_from = smol-6l.gguf` and a config of the pruned shape.");
    cmd->callback([o] {
        if (!std::filesystem::exists(o->in)) throw Error(o->in + ": no such file");
        PruneOptions p;
        p.layers = parse_layer_list(o->layers);
        p.vocab = o->vocab;
        p.chat_template_from = o->chat_template_from;
        p.name = o->name;
        p.type = o->type == "f32" ? DType::F32 : o->type == "f16" ? DType::F16 : o->type == "q8_0" ? DType::Q8_0
               : throw Error("--type must be f32, f16 or q8_0, not '" + o->type + "'");
        const Stopwatch t;
        const PruneSummary s = prune_model(o->in, o->out, p);
        std::printf("wrote %s: %zu of %lld layers, %lld of %lld tokens (%zu of %zu merges), %.1fM of %.1fM "
                    "parameters, in %.1f s\n",
                    o->out.c_str(), p.layers.size(), static_cast<long long>(s.layers_in),
                    static_cast<long long>(p.vocab > 0 ? p.vocab : s.vocab_in), static_cast<long long>(s.vocab_in),
                    s.merges_out, s.merges_in, s.params_out / 1e6, s.params_in / 1e6, t.seconds());
    });
}

}  // namespace microlm::cli
