// `microlm eval openers|handoff|latency|all`: runs the eval suites (src/eval/) over the
// held-out prompt sets for the given models and writes results.json, report.md and plots.
// This file only parses flags, draws the progress bar and prints the summary.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "commands.h"
#include "progress.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/stopwatch.h"

namespace microlm::cli {
namespace {

constexpr const char* kSmolLM2 = "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf";
// Gemma-3-270M base (scripts/setup.sh --tests): a baseline, and the judge, because it is neither
// a contestant trained by us nor SmolLM2 (which taught nothing but is a contestant itself).
constexpr const char* kGemma = "models/cache/gemma-3-270m-q4_k_m.gguf";

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) {
        const size_t b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
        if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
    }
    return out;
}

// What exists of the project's models: models/*.gguf (our μLMs) and the SmolLM2 and Gemma baselines.
std::vector<std::string> default_models() {
    std::vector<std::string> out;
    std::error_code ec;
    if (std::filesystem::is_directory("models", ec)) {
        for (const auto& e : std::filesystem::directory_iterator("models", ec))
            if (e.is_regular_file(ec) && e.path().extension() == ".gguf") out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    if (std::filesystem::exists(kSmolLM2)) out.insert(out.begin(), kSmolLM2);
    if (std::filesystem::exists(kGemma)) out.push_back(kGemma);
    return out;
}

std::vector<double> read_seconds_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (!f) throw Error(path + ": cannot read the TTFT file (one time to first token in seconds per line)");
    std::vector<double> v;
    double x;
    while (std::fscanf(f, "%lf", &x) == 1) {
        if (!(x >= 0)) {
            std::fclose(f);
            throw Error(path + ": a TTFT value is negative or not a number");
        }
        v.push_back(x);
    }
    std::fclose(f);
    if (v.empty()) throw Error(path + ": no TTFT values (one time to first token in seconds per line)");
    return v;
}

// The command as given (options in CLI11's order), for the report's header.
std::string command_line(const CLI::App& cmd) {
    std::string s = "microlm eval";
    for (const CLI::Option* opt : cmd.get_options()) {
        if (opt->count() == 0 || opt->get_name() == "--help") continue;
        if (opt->nonpositional()) s += " " + opt->get_name();
        for (const std::string& r : opt->results()) {
            if (opt->get_type_size() == 0) break;  // a flag
            const bool quote = r.find_first_of(" \t\"'") != std::string::npos || r.empty();
            s += " " + (quote ? "'" + r + "'" : r);
        }
    }
    return s;
}

}  // namespace

void register_eval(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "eval",
        "Measure openers against references and baselines, handoff and recovery, and perceived latency");
    cmd->footer(
        "Suites:\n"
        "  openers  each model's opener (the policy of `chat`, greedy) on held-out prompts: "
        "start-match@2/3,\n"
        "           opener-F1, judge NLL, length, hedge rate, time to first word; baselines constant,\n"
        "           retrieval (nearest training prompt) and oracle (a reference's first words)\n"
        "  handoff  a cloud stand-in (serve-model) continues each opener in instruct and prefill modes:\n"
        "           keep, repeat, false-alarm and detection rates (bad openers = another prompt's)\n"
        "  latency  measured opener timings + a cloud time-to-first-token distribution + delivery pace:\n"
        "           the stall after the opener against a cloud-only reply\n"
        "  all      the three, sharing one opener run\n"
        "Writes OUT/results.json, OUT/report.md and PNG plots. Definitions: docs/EVAL.md.\n"
        "Example: microlm eval all --models models/cache/SmolLM2-135M-Instruct.Q4_1.gguf --out eval");
    struct Opts {
        std::string suite, models, judge = std::filesystem::exists(kGemma) ? kGemma : kSmolLM2, data, sets, prompts,
                    out = "eval";
        std::string constant = eval::kConstantOpener, retrieval_data;
        bool no_judge = false;
        size_t limit = 0, handoff_limit = 10, handoff_skip = 0, samples = 3, draws = 20000;
        int opener_prompt_tokens = -1;
        OpenerCheckConfig check{.signal = CheckSignal::kAny};
        uint64_t seed = 42;
        int threads = 1;
        std::string stand_in = kSmolLM2, cloud, cloud_model, api_key_env, modality = "text";
        int64_t cloud_max_tokens = 64;
        std::string ttft = "lognormal";
        double ttft_median = 0.8, ttft_sigma = 0.5, speech_wps = 2.5, text_wps = 5.0;
    };
    auto o = std::make_shared<Opts>();
    o->data = default_data_dir();
    cmd->add_option("suite", o->suite, "openers | handoff | latency | all")
        ->required()
        ->check(CLI::IsMember({"openers", "handoff", "latency", "all"}));
    cmd->add_option(
        "--models", o->models,
        "Comma-separated GGUF models to evaluate (default: models/*.gguf and the SmolLM2 and Gemma-3-270M "
        "baselines, those that exist)");
    cmd->add_option("--judge", o->judge,
                    "GGUF model whose likelihood scores the openers (default: Gemma-3-270M when set up, a judge "
                    "that is no contestant; else SmolLM2)")
        ->capture_default_str();
    cmd->add_flag("--no-judge", o->no_judge, "Skip the judge NLL");
    cmd->add_option("--data", o->data, "The shared data folder holding chat/ and eval/ (env MICROLM_DATA)")
        ->capture_default_str();
    cmd->add_option(
        "--sets", o->sets,
        "Comma-separated prompt sets: alpaca,mt_bench,vicuna,arena_hard (default: all four, or none "
        "when --prompts is given)");
    cmd->add_option("--prompts", o->prompts,
                    "A JSONL file of {\"prompt\": ..., \"references\": [...], \"id\": ...} as an extra set");
    cmd->add_option("--limit", o->limit, "Prompts per set, the first ones (0: all)")->capture_default_str();
    cmd->add_option("--opener-prompt-tokens", o->opener_prompt_tokens,
                    "The most tokens of a prompt the openers read, as `microlm chat --opener-prompt-tokens` "
                    "(0: all the local context holds; default: chat's)")
        ->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-o,--out", o->out, "Output folder for results.json, report.md and plots")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "Seed of bad-opener pairing and latency draws")->capture_default_str();
    cmd->add_option("-t,--threads", o->threads, "Threads per model")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    cmd->add_option("--constant", o->constant, "The constant baseline's opener")->capture_default_str();
    cmd->add_option(
        "--retrieval-data", o->retrieval_data,
        "Comma-separated training chat corpora for the retrieval baseline (default: DATA/chat/*)");
    auto* g_handoff = "Handoff";
    cmd->add_option("--handoff-limit", o->handoff_limit, "Handoff prompts per set (0: all loaded)")
        ->capture_default_str()
        ->group(g_handoff);
    cmd->add_option("--handoff-skip", o->handoff_skip,
                    "Handoff prompts skipped at the start of each set (e.g. a calibration split for the check)")
        ->capture_default_str()
        ->group(g_handoff);
    add_check_options(cmd, o->check);
    cmd->add_option("--stand-in", o->stand_in, "GGUF the in-process cloud stand-in serves")
        ->capture_default_str()
        ->group(g_handoff);
    cmd->add_option("--cloud", o->cloud, "A real OpenAI-compatible base URL instead of the stand-in")
        ->group(g_handoff);
    cmd->add_option("--cloud-model", o->cloud_model, "Model name for --cloud")->group(g_handoff);
    cmd->add_option("--api-key-env", o->api_key_env,
                    "NAME of the environment variable holding the key for --cloud")
        ->group(g_handoff);
    cmd->add_option("--cloud-max-tokens", o->cloud_max_tokens, "Tokens per continuation")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{4096}))
        ->group(g_handoff);
    cmd->add_option("--modality", o->modality, "text (retract allowed) | speech (pivot only)")
        ->capture_default_str()
        ->check(CLI::IsMember({"text", "speech"}))
        ->group(g_handoff);
    cmd->add_option("--samples", o->samples, "Prompts whose stitched replies go into the report")
        ->capture_default_str()
        ->group(g_handoff);
    auto* g_lat = "Latency";
    cmd->add_option(
           "--ttft", o->ttft,
           "Cloud time to first token: lognormal | fixed | measured (the handoff suite's cloud, with "
           "`all`) | file:PATH (seconds, one per line)")
        ->capture_default_str()
        ->group(g_lat);
    cmd->add_option("--ttft-median", o->ttft_median, "Median (lognormal) or value (fixed), seconds")
        ->capture_default_str()
        ->check(CLI::PositiveNumber)
        ->group(g_lat);
    cmd->add_option("--ttft-sigma", o->ttft_sigma, "Standard deviation of ln(TTFT) (lognormal)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber)
        ->group(g_lat);
    cmd->add_option("--speech-wps", o->speech_wps, "Speech delivery pace, words/s")
        ->capture_default_str()
        ->check(CLI::PositiveNumber)
        ->group(g_lat);
    cmd->add_option("--text-wps", o->text_wps, "Text delivery pace, words/s")
        ->capture_default_str()
        ->check(CLI::PositiveNumber)
        ->group(g_lat);
    cmd->add_option("--draws", o->draws, "Simulated turns per model")->capture_default_str()->group(g_lat);

    cmd->callback([o, cmd] {
        const Stopwatch t0;
        eval::EvalConfig cfg;
        cfg.models = o->models.empty() ? default_models() : split_list(o->models);
        if (cfg.models.empty())
            throw Error(
                "eval: no models; pass --models A.gguf,B.gguf (scripts/setup.sh downloads SmolLM2 into "
                "models/cache)");
        for (const std::string& m : cfg.models)
            if (!std::filesystem::exists(m)) throw Error(m + ": no such model file (check --models)");
        cfg.judge = o->no_judge ? "" : o->judge;
        if (!cfg.judge.empty() && !std::filesystem::exists(cfg.judge))
            throw Error(cfg.judge + ": no such judge model; pass --judge FILE or --no-judge");
        cfg.data_dir = o->data;
        cfg.sets = o->sets.empty() ? (o->prompts.empty() ? eval::known_sets() : std::vector<std::string>{})
                                   : split_list(o->sets);
        cfg.prompts_file = o->prompts;
        cfg.limit = o->limit;
        cfg.opener_prompt_tokens = o->opener_prompt_tokens;
        cfg.seed = o->seed;
        cfg.threads = o->threads;
        cfg.constant_opener = o->constant;
        cfg.retrieval_corpora = split_list(o->retrieval_data);
        cfg.handoff_limit = o->handoff_limit;
        cfg.handoff_skip = o->handoff_skip;
        cfg.check = o->check;
        cfg.stand_in = o->stand_in;
        cfg.cloud_url = o->cloud;
        cfg.cloud_model = o->cloud_model;
        cfg.api_key_env = o->api_key_env;
        cfg.cloud_max_tokens = o->cloud_max_tokens;
        cfg.modality = o->modality == "speech" ? Modality::kSpeech : Modality::kText;
        cfg.samples = o->samples;
        cfg.speech_wps = o->speech_wps;
        cfg.text_wps = o->text_wps;
        cfg.draws = o->draws;
        cfg.ttft.median_s = o->ttft_median;
        cfg.ttft.sigma = o->ttft_sigma;
        if (o->ttft == "lognormal") {
            cfg.ttft.kind = eval::TtftDistribution::Kind::kLogNormal;
        } else if (o->ttft == "fixed") {
            cfg.ttft.kind = eval::TtftDistribution::Kind::kFixed;
        } else if (o->ttft == "measured") {
            if (o->suite != "all")
                throw Error(
                    "eval: --ttft measured takes the handoff suite's cloud times; run `eval all`, or give "
                    "file:PATH");
            cfg.ttft_measured = true;
        } else if (o->ttft.rfind("file:", 0) == 0) {
            cfg.ttft.kind = eval::TtftDistribution::Kind::kSamples;
            cfg.ttft.samples_s = read_seconds_file(o->ttft.substr(5));
        } else {
            throw Error("eval: --ttft '" + o->ttft + "' is not lognormal, fixed, measured or file:PATH");
        }
        if (cfg.cloud_url.empty() && (o->suite == "handoff" || o->suite == "all") &&
            !std::filesystem::exists(cfg.stand_in))
            throw Error(cfg.stand_in + ": no such stand-in model; pass --stand-in FILE or --cloud URL");

        ProgressBar bar;
        const eval::ProgressFn progress = [&bar](std::string_view s, size_t d, size_t n) { bar(s, d, n); };

        std::vector<eval::EvalPrompt> prompts;
        for (const std::string& s : cfg.sets) {
            std::vector<eval::EvalPrompt> p = eval::load_prompt_set(s, cfg.data_dir, cfg.limit);
            prompts.insert(prompts.end(), std::make_move_iterator(p.begin()),
                           std::make_move_iterator(p.end()));
        }
        if (!cfg.prompts_file.empty()) {
            std::vector<eval::EvalPrompt> p = eval::load_prompts_file(cfg.prompts_file, cfg.limit);
            prompts.insert(prompts.end(), std::make_move_iterator(p.begin()),
                           std::make_move_iterator(p.end()));
        }
        if (prompts.empty()) throw Error("eval: no prompts (check --sets, --prompts and --limit)");
        // The handoff suite alone needs openers for its subset only (the suite takes the subset
        // again, so this is done only where taking it twice changes nothing).
        if (o->suite == "handoff" && cfg.handoff_skip == 0) {
            std::vector<eval::EvalPrompt> sub;
            for (const size_t i : eval::handoff_subset(cfg, prompts)) sub.push_back(prompts[i]);
            prompts = std::move(sub);
        }
        std::fprintf(stderr, "eval: %zu prompts, %zu model%s, judge %s\n", prompts.size(), cfg.models.size(),
                     cfg.models.size() == 1 ? "" : "s", cfg.judge.empty() ? "none" : cfg.judge.c_str());

        eval::EvalReport report;
        report.command = command_line(*cmd);
        for (const std::string& m : cfg.models)
            if (eval::uses_plain_frame(m)) report.plain_frame.push_back(eval::model_name_of(m));
        if (!cfg.judge.empty() && eval::uses_plain_frame(cfg.judge) &&
            std::find(cfg.models.begin(), cfg.models.end(), cfg.judge) == cfg.models.end())
            report.plain_frame.push_back(eval::model_name_of(cfg.judge) + " (the judge)");

        std::vector<eval::ModelOpeners> openers;
        const Stopwatch t_open;
        for (const std::string& m : cfg.models)
            openers.push_back(eval::run_model_openers(m, prompts, cfg.threads, progress, cfg.opener_prompt_tokens));
        double opener_s = t_open.seconds();

        if (o->suite == "openers" || o->suite == "all") {
            const Stopwatch t;
            report.openers = eval::run_openers_suite(cfg, prompts, openers, progress);
            report.seconds["openers"] = t.seconds() + opener_s;
        }
        if (o->suite == "handoff" || o->suite == "all") {
#if MICROLM_NET
            const Stopwatch t;
            report.handoff = eval::run_handoff_suite(cfg, prompts, openers, progress);
            report.seconds["handoff"] = t.seconds();
#else
            throw Error(
                "eval: this build has no network support (MICROLM_NET off): the handoff suite cannot run");
#endif
        }
        if (o->suite == "latency" || o->suite == "all") {
            if (cfg.ttft_measured) {
                if (!report.handoff || report.handoff->cloud_ttft_s.empty())
                    throw Error("eval: --ttft measured: the handoff suite measured no cloud times");
                cfg.ttft.kind = eval::TtftDistribution::Kind::kSamples;
                cfg.ttft.samples_s = report.handoff->cloud_ttft_s;
            }
            const Stopwatch t;
            report.latency = eval::run_latency_suite(cfg, openers);
            report.seconds["latency"] = t.seconds() + (o->suite == "latency" ? opener_s : 0.0);
        }
        report.config = cfg;
        report.seconds["total"] = t0.seconds();
        bar.finish_line();
        const std::vector<std::string> files = eval::write_report(o->out, report);

        // The summary: one line per model with the headline numbers, then the files.
        for (size_t i = 0; i < cfg.models.size(); ++i) {
            const std::string name = eval::model_name_of(cfg.models[i]);
            std::string line = "eval: " + name + ":";
            char buf[256];
            if (report.openers) {
                const auto& m = report.openers->candidates[i].all;
                std::snprintf(
                    buf, sizeof buf,
                    " start-match@2 %.3f, F1 %.3f, judge NLL %.2f, hedged %.0f%%, first word %.0f ms;",
                    m.start_match2, m.f1, m.judge_nll, 100 * m.hedge_rate, m.first_word_ms);
                line += buf;
            }
            if (report.handoff && report.handoff->metrics.count(name)) {
                const auto& h = report.handoff->metrics.at(name).at("instruct");
                std::snprintf(buf, sizeof buf, " keep %.0f%%, detection %.0f%%, false alarms %.0f%%;",
                              100 * h.keep_rate, 100 * h.detection, 100 * h.false_alarms);
                line += buf;
            }
            if (report.latency && i < report.latency->models.size()) {
                const auto& s = report.latency->models[i].stall;
                if (s.count("speech")) {
                    std::snprintf(buf, sizeof buf,
                                  " stall p50 %.2f s speech / %.2f s text (cloud only %.2f s)",
                                  s.at("speech").p50, s.at("text").p50, report.latency->cloud_only.p50);
                    line += buf;
                }
            }
            std::fprintf(stderr, "%s\n", line.c_str());
        }
        std::fprintf(stderr, "eval: %s: %zu prompts, wrote %zu files to %s in %.1f s\n", o->suite.c_str(),
                     prompts.size(), files.size(), o->out.c_str(), report.seconds["total"]);
    });
}

}  // namespace microlm::cli
