// `microlm bench`: prefill/decode speed, time to first words and peak memory of a model (a
// file, or a random-weight model of a preset shape), optionally against llama.cpp on the same
// file, prompt and threads in the same run. Each engine runs in its own process so that
// peak RSS is its own; `bench --worker` is microlm's side.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "microlm/bench.h"
#include "microlm/error.h"
#include "microlm/random_model.h"
#include "microlm/stopwatch.h"

namespace microlm::cli {
namespace {

using nlohmann::json;

struct Opts {
    std::string model, shape, type = "q8_0", llama_python, llama_script;
    int64_t prompt = 32, n_gen = 8;
    int threads = 1, reps = 5;
    bool json_out = false, vs_llama = false, worker = false;
};

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

json run_json(const std::string& cmd, const std::string& what) {
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) throw Error("cannot start " + what);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0) throw Error(what + " failed (exit status " + std::to_string(rc) + "); command: " + cmd);
    try {
        return json::parse(out);
    } catch (const json::exception&) {
        throw Error(what + " printed no JSON result: " + out.substr(0, 300));
    }
}

std::string exe_path() {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("microlm") : p.string();
}

// .venv/bin/python and bench/llama_cpp_bench.py beside the build folder (build/microlm) or
// the current directory, unless given.
std::string find_near_exe(const std::string& given, const std::string& rel) {
    if (!given.empty()) return given;
    const auto exe_dir = std::filesystem::path(exe_path()).parent_path();
    for (const auto& base : {exe_dir.parent_path(), exe_dir, std::filesystem::current_path()}) {
        if (std::filesystem::exists(base / rel)) return (base / rel).string();
    }
    throw Error("cannot find " + rel + " (looked beside " + exe_dir.string() +
                " and in the current folder); run scripts/setup.sh, or pass --llama-python/--llama-script");
}

void worker(const Opts& o) {
    const Stopwatch t0;
    auto model = Model::load(o.model);
    Context ctx(*model, o.prompt + o.n_gen + 1, o.threads);
    const double load_ms = t0.ms();
    const auto prompt = bench_prompt(model->config().n_vocab, o.prompt);
    const BenchTimings t = bench_generation(ctx, prompt, o.n_gen, o.reps);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);  // before the bandwidth probe, whose buffer is not the model's
    const size_t weight_bytes = decode_weight_bytes(*model);
    const double read_gb_s = measure_read_gbps(weight_bytes);
    json j = {{"engine", "microlm"},          {"kernels", ctx.kernels().name},  {"load_ms", load_ms},
              {"prefill_ms", t.prefill_ms},   {"ttft_ms", t.ttft_ms},           {"first4_ms", t.first4_ms},
              {"first8_ms", t.first8_ms},     {"total_ms", t.total_ms},         {"decode_ms", t.decode_ms},
              {"peak_rss_mib", static_cast<double>(ru.ru_maxrss) / 1024.0},
              {"decode_weight_mb", static_cast<double>(weight_bytes) / 1e6},
              {"read_gb_s", read_gb_s}};
    std::printf("%s\n", j.dump().c_str());
}

// Rates from one engine's timings; decode in GB/s of the weights a step streams (the same
// file for both engines, so microlm's count serves both).
void add_rates(json& j, const Opts& o, double decode_weight_mb) {
    j["prefill_tok_s"] = o.prompt * 1000.0 / std::max(1e-9, j["prefill_ms"].get<double>());
    j["decode_tok_s"] = o.n_gen > 1 ? (o.n_gen - 1) * 1000.0 / std::max(1e-9, j["decode_ms"].get<double>()) : 0.0;
    j["decode_gb_s"] = j["decode_tok_s"].get<double>() * decode_weight_mb / 1000.0;
}

void print_table(const json& r, const Opts& o) {
    const json& m = r["microlm"];
    const bool vs = r.contains("llama_cpp");
    std::printf("model %s | prompt %lld tokens, %lld generated, %d thread%s, median of %d runs, kernels %s\n",
                r["model"].get<std::string>().c_str(), static_cast<long long>(o.prompt),
                static_cast<long long>(o.n_gen), o.threads, o.threads == 1 ? "" : "s", o.reps,
                m["kernels"].get<std::string>().c_str());
    std::printf("%-22s %12s%s\n", "", "microlm", vs ? "    llama.cpp   speed-up" : "");
    struct Row {
        const char* label;
        const char* key;
        bool higher_is_better;
    };
    for (const Row& row : {Row{"load ms", "load_ms", false}, Row{"prefill tok/s", "prefill_tok_s", true},
                           Row{"decode tok/s", "decode_tok_s", true}, Row{"decode weights GB/s", "decode_gb_s", true},
                           Row{"first token ms", "ttft_ms", false},
                           Row{"first 4 tokens ms", "first4_ms", false}, Row{"first 8 tokens ms", "first8_ms", false},
                           Row{"prompt + gen total ms", "total_ms", false}, Row{"peak RSS MiB", "peak_rss_mib", false}}) {
        const double a = m[row.key].get<double>();
        std::printf("%-22s %12.2f", row.label, a);
        if (vs) {
            const double b = r["llama_cpp"][row.key].get<double>();
            const double ratio = row.higher_is_better ? a / std::max(b, 1e-9) : b / std::max(a, 1e-9);
            std::printf(" %12.2f %9.2fx", b, ratio);
        }
        std::printf("\n");
    }
    const double mb = m["decode_weight_mb"].get<double>(), read = m["read_gb_s"].get<double>();
    std::printf("a decode step streams %.1f MB of weights; one thread here reads a buffer that size at %.1f GB/s: "
                "one thread's decode floor is ~%.2f ms/token\n",
                mb, read, mb / read);
    if (vs) {
        std::printf("(llama.cpp runs in Python through llama-cpp-python; its peak RSS includes the interpreter, "
                    "%.1f MiB of it is the model's)\n",
                    r["llama_cpp"]["rss_delta_mib"].get<double>());
    }
}

}  // namespace

void register_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand("bench", "Measure prefill/decode speed and time to first tokens (optionally vs llama.cpp)");
    auto o = std::make_shared<Opts>();
    auto* m = cmd->add_option("-m,--model", o->model, "GGUF model file");
    auto* shape = cmd->add_option("--shape", o->shape, "Benchmark a random-weight model of this shape: tiny | 8m | 28m | 135m");
    m->excludes(shape);
    cmd->add_option("--type", o->type, "Weight type for --shape: f32 | f16 | q8_0 | q4_0 | q4_1")->capture_default_str();
    cmd->add_option("-p,--prompt-tokens", o->prompt, "Prompt length in tokens")->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("-n,--n-gen", o->n_gen, "Tokens to generate")->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_option("--reps", o->reps, "Measured repetitions (after one warm-up); medians are reported")
        ->capture_default_str()->check(CLI::Range(1, 1000));
    cmd->add_flag("--json", o->json_out, "Print one JSON object (both engines and the ratios)");
    cmd->add_flag("--vs-llama-cpp", o->vs_llama, "Also run llama.cpp (llama-cpp-python in .venv) on the same file");
    cmd->add_option("--llama-python", o->llama_python, "Python with llama-cpp-python (default: .venv/bin/python)");
    cmd->add_option("--llama-script", o->llama_script, "Path of bench/llama_cpp_bench.py (default: found beside the build)");
    cmd->add_flag("--worker", o->worker, "Internal: measure microlm in this process and print JSON")->group("");
    cmd->callback([o] {
        if (o->worker) return worker(*o);
        if (o->model.empty() && o->shape.empty()) throw Error("bench needs -m FILE or --shape 8m|28m|135m|tiny");
        std::string label = o->model, temp;
        if (!o->shape.empty()) {
            auto shape = model_shape_preset(o->shape);
            if (!shape) throw Error("unknown --shape '" + o->shape + "' (expected tiny, 8m, 28m or 135m)");
            auto type = dtype_from_name(o->type);
            if (!type) throw Error("unknown --type '" + o->type + "' (expected f32, f16, q8_0, q4_0 or q4_1)");
            char tmpl[] = "/tmp/microlm_bench_XXXXXX.gguf";
            const int fd = mkstemps(tmpl, 5);
            if (fd < 0) throw Error("cannot create a temporary file in /tmp");
            ::close(fd);
            temp = o->model = tmpl;
            if (!o->json_out) std::fprintf(stderr, "writing a random %s %s model to %s\n", o->shape.c_str(), o->type.c_str(), tmpl);
            write_random_llama(o->model, *shape, *type, 1);
            label = "random " + o->shape + " " + o->type;
        }
        struct Cleanup {
            std::string path;
            ~Cleanup() {
                if (!path.empty()) std::remove(path.c_str());
            }
        } cleanup{temp};
        const std::string common = " -n " + std::to_string(o->n_gen) + " -t " + std::to_string(o->threads) +
                                   " --reps " + std::to_string(o->reps);
        json r;
        r["model"] = label;
        r["file_mib"] = static_cast<double>(std::filesystem::file_size(o->model)) / (1024.0 * 1024.0);
        r["prompt_tokens"] = o->prompt;
        r["gen_tokens"] = o->n_gen;
        r["threads"] = o->threads;
        r["microlm"] = run_json(shell_quote(exe_path()) + " bench --worker -m " + shell_quote(o->model) + " -p " +
                                    std::to_string(o->prompt) + common,
                                "microlm bench worker");
        const double weight_mb = r["microlm"]["decode_weight_mb"].get<double>();
        add_rates(r["microlm"], *o, weight_mb);
        if (o->vs_llama) {
            auto f = GgufFile::open(o->model);
            const GgufTensor* emb = f->find_tensor("token_embd.weight");
            if (!emb || emb->dims.size() < 2) throw Error(o->model + ": no token_embd.weight to size the prompt");
            std::string ids;
            for (int32_t id : bench_prompt(emb->dims[1], o->prompt)) ids += (ids.empty() ? "" : ",") + std::to_string(id);
            const std::string py = find_near_exe(o->llama_python, ".venv/bin/python");
            const std::string script = find_near_exe(o->llama_script, "bench/llama_cpp_bench.py");
            r["llama_cpp"] = run_json(shell_quote(py) + " " + shell_quote(script) + " -m " + shell_quote(o->model) +
                                          " --prompt-ids " + ids + common,
                                      "llama.cpp benchmark");
            add_rates(r["llama_cpp"], *o, weight_mb);
            const json& a = r["microlm"];
            const json& b = r["llama_cpp"];
            auto ratio = [](double num, double den) { return num / std::max(den, 1e-9); };
            r["ratios"] = {{"speedup_total", ratio(b["total_ms"], a["total_ms"])},
                           {"speedup_prefill", ratio(b["prefill_ms"], a["prefill_ms"])},
                           {"speedup_decode", ratio(a["decode_tok_s"], b["decode_tok_s"])},
                           {"speedup_ttft", ratio(b["ttft_ms"], a["ttft_ms"])},
                           {"speedup_first4", ratio(b["first4_ms"], a["first4_ms"])},
                           {"speedup_load", ratio(b["load_ms"], a["load_ms"])}};
        }
        if (o->json_out) {
            std::printf("%s\n", r.dump(2).c_str());
        } else {
            print_table(r, *o);
        }
    });
}

}  // namespace microlm::cli
