// `microlm convert hf|swen`: other checkpoints to GGUF, natively (no libtorch, no Python). The
// readers and the mapping are the library's (src/convert/); this file parses flags and reports.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "microlm/convert.h"
#include "microlm/error.h"
#include "microlm/stopwatch.h"

namespace microlm::cli {
namespace {

struct CommonOpts {
    std::string out, type = "f32", name, pre;
};

void add_common(CLI::App* cmd, CommonOpts& o) {
    cmd->add_option("-o,--output", o.out, "Output GGUF path")->required();
    cmd->add_option("--type", o.type, "Matrix type: f32 | f16 | q8_0 (norms stay f32)")
        ->capture_default_str();
    cmd->add_option("--name", o.name, "general.name (default: from the input)");
    cmd->add_option(
        "--pre", o.pre,
        "tokenizer.ggml.pre name; needed unless tokenizer.json is GPT-2's ByteLevel pre-tokenizer");
}

ConvertOptions options(const CommonOpts& o) {
    ConvertOptions c;
    const auto type = dtype_from_name(o.type);
    if (!type || (*type != DType::F32 && *type != DType::F16 && *type != DType::Q8_0)) {
        throw Error("unknown --type '" + o.type + "' (expected f32, f16 or q8_0)");
    }
    c.type = *type;
    c.name = o.name;
    if (!o.pre.empty()) c.pre = o.pre;
    return c;
}

void report(const std::string& out, const ConvertSummary& s, DType type,
            const Stopwatch& t0) {
    const double secs = t0.seconds();
    const LlamaHparams& m = s.shape;
    std::fprintf(
        stderr,
        "wrote %s: dim %lld, %lld layers, %lld/%lld heads, ffn %lld, vocab %lld (%s), %.2fM params, %s, "
        "pre %s, %.1f s\n",
        out.c_str(), static_cast<long long>(m.dim), static_cast<long long>(m.n_layers),
        static_cast<long long>(m.n_heads), static_cast<long long>(m.n_kv_heads),
        static_cast<long long>(m.ffn_dim), static_cast<long long>(m.n_vocab), m.tied ? "tied" : "untied",
        static_cast<double>(s.n_params) / 1e6, std::string(dtype_name(static_cast<uint32_t>(type))).c_str(),
        s.pre.c_str(), secs);
}

}  // namespace

void register_convert(CLI::App& app) {
    auto* cmd =
        app.add_subcommand("convert", "Convert a Hugging Face Llama folder or a Swen checkpoint to GGUF");
    cmd->require_subcommand(1);

    auto* hf = cmd->add_subcommand("hf", "config.json + model.safetensors + tokenizer.json → GGUF");
    auto hf_dir = std::make_shared<std::string>();
    auto hf_opts = std::make_shared<CommonOpts>();
    hf->add_option("dir", *hf_dir, "Hugging Face model folder")->required();
    add_common(hf, *hf_opts);
    hf->callback([hf_dir, hf_opts] {
        const Stopwatch t0;
        const ConvertOptions o = options(*hf_opts);
        report(hf_opts->out, convert_hf(*hf_dir, hf_opts->out, o), o.type, t0);
    });

    auto* sw =
        cmd->add_subcommand("swen", "torch.save({\"model\": state_dict}) of a Swen/minimind model → GGUF");
    struct SwenCli {
        std::string checkpoint, tokenizer;
        CommonOpts common;
        SwenOptions swen;
    };
    auto s = std::make_shared<SwenCli>();
    sw->add_option("checkpoint", s->checkpoint, "Checkpoint (.pth) written by torch.save")->required();
    sw->add_option("--tokenizer", s->tokenizer, "Folder with tokenizer.json (and tokenizer_config.json)")
        ->required();
    add_common(sw, s->common);
    sw->add_option("--heads", s->swen.n_heads, "Attention heads")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    sw->add_option("--kv-heads", s->swen.n_kv_heads, "Key/value heads")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    sw->add_option("--rope-theta", s->swen.rope_theta, "RoPE base")->capture_default_str();
    sw->add_option("--norm-eps", s->swen.norm_eps, "RMSNorm epsilon")->capture_default_str();
    sw->add_option("--n-ctx", s->swen.n_ctx, "Training context length")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 24));
    sw->callback([s] {
        const Stopwatch t0;
        const ConvertOptions o = options(s->common);
        report(s->common.out, convert_swen(s->checkpoint, s->tokenizer, s->common.out, o, s->swen), o.type,
               t0);
    });
}

}  // namespace microlm::cli
