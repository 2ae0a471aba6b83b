// Per-model hedge thresholds, chosen on prompts the model never trained on and that are not
// eval prompts: the validation side of the training split. The thresholds SmolLM2 was hand-tuned
// with (opener.cpp) do not carry over to a μLM, whose entropies and log-probabilities sit
// elsewhere. Not here: the opener's decision itself (opener.cpp reads the keys written here).
#include <algorithm>
#include <filesystem>
#include <limits>

#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/local_model.h"
#include "microlm/eval.h"
#include "microlm/gguf.h"
#include "microlm/opener.h"

namespace microlm::eval {
namespace {

// The prompt-diverse pairs, the chat corpus closest to what users ask.
constexpr const char* kPromptFiles[] = {"sharegpt.jsonl.zst",          "alpaca_subsets.jsonl.zst",
                                        "gpteacher_codegen.jsonl.zst", "instructlab.jsonl.zst",
                                        "gsm8k.jsonl.zst",             "alpaca_eval_outputs.jsonl.zst"};

struct Sample {
    double mean_logprob = 0, max_entropy = 0;
    bool empty = false;            // no counted word: hedged whatever the thresholds
    double opener = 0, hedge = 0;  // start-match@2 + opener-F1 of the opener and of the hedge
};

double score(const std::string& text, const std::vector<std::vector<std::string>>& refs) {
    const std::vector<std::string> w = normalize_words(text);
    return (start_match_any(w, refs, 2) ? 1.0 : 0.0) + opener_f1(w, refs);
}

struct Outcome {
    double score = 0, rate = 0;
};

Outcome apply(const std::vector<Sample>& s, double min_mean_logprob, double max_entropy) {
    Outcome o;
    for (const Sample& x : s) {
        const bool hedged = x.empty || x.mean_logprob < min_mean_logprob || x.max_entropy > max_entropy;
        o.score += hedged ? x.hedge : x.opener;
        o.rate += hedged ? 1 : 0;
    }
    o.score /= static_cast<double>(s.size());
    o.rate /= static_cast<double>(s.size());
    return o;
}

}  // namespace

std::vector<ReplyPrompt> validation_prompts(const std::string& data_dir, size_t n, double val_fraction) {
    namespace fs = std::filesystem;
    const data::HoldOut hold_out = data::HoldOut::from_eval_dir((fs::path(data_dir) / "eval").string());
    std::vector<std::vector<ReplyPrompt>> per_file;
    for (const char* name : kPromptFiles) {
        const fs::path path = fs::path(data_dir) / "chat" / name;
        if (!fs::exists(path)) continue;
        data::DocumentReader reader(path.string(), hold_out);
        std::vector<ReplyPrompt> got;
        data::Document d;
        while (reader.next(d)) {
            if (!data::in_validation_split(reader.source(), d.group, val_fraction) || d.messages.size() < 2) continue;
            if (d.messages[0].role != "user" || d.messages[1].role != "assistant") continue;
            std::string reply = d.messages[1].content.substr(0, 1000);
            got.push_back({d.messages[0].content, std::move(reply)});
        }
        if (!got.empty()) per_file.push_back(std::move(got));
    }
    if (per_file.empty()) throw Error(data_dir + "/chat: none of the prompt files is there to calibrate on");
    // Round robin over the files, so that a large one does not crowd out the rest.
    std::vector<ReplyPrompt> out;
    for (size_t i = 0; out.size() < n; ++i) {
        bool any = false;
        for (auto& f : per_file) {
            if (i < f.size() && out.size() < n) {
                out.push_back(f[i]);
                any = true;
            }
        }
        if (!any) break;
    }
    return out;
}

HedgeCalibration calibrate_hedge(const std::string& model_path, const std::vector<ReplyPrompt>& prompts,
                                 double min_rate, double max_rate, int threads, const ProgressFn& progress) {
    if (prompts.empty()) throw Error("calibrate-hedge: no prompts");
    if (!(min_rate >= 0 && min_rate <= max_rate && max_rate <= 1)) {
        throw Error("calibrate-hedge: need 0 <= min rate <= max rate <= 1");
    }
    auto local = LocalModel::open(model_path, 2048, threads);
    const Tokenizer& tok = local->tokenizer();
    Context& ctx = local->context();
    OpenerConfig cfg;
    cfg.hedge = false;  // each opener as decoded, with its confidence
    // No threshold: `unsure` then says only that the opener has no counted word.
    cfg.hedge_min_mean_logprob = -std::numeric_limits<float>::infinity();
    cfg.hedge_max_entropy = std::numeric_limits<float>::infinity();
    Opener opener(ctx, tok, cfg);
    opener.warm_up();
    std::vector<Sample> samples;
    const std::string stage = "openers " + model_name_of(model_path);
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (progress) progress(stage, i, prompts.size());
        const std::vector<ChatMessage> history = {{"user", prompts[i].prompt}};
        std::vector<std::string> ref = normalize_words(prompts[i].reply);
        if (ref.size() > 8) ref.resize(8);
        const std::vector<std::vector<std::string>> refs = {ref};
        const OpenerResult r = opener.run(history);
        Sample s;
        s.mean_logprob = r.confidence.mean_logprob;
        s.max_entropy = r.confidence.max_entropy;
        s.empty = r.confidence.unsure;
        s.opener = score(r.text, refs);
        s.hedge = score(cfg.hedge_phrases[opener.choose_hedge(history)], refs);
        samples.push_back(s);
    }
    if (progress) progress(stage, prompts.size(), prompts.size());

    // Candidate thresholds: midway between neighbouring observed values (so that a sample is
    // never on the edge, where float noise in a re-run could flip it), at about every 2% of
    // the sorted values, plus "never".
    std::vector<double> entropies, means;
    for (const Sample& s : samples) {
        entropies.push_back(s.max_entropy);
        means.push_back(s.mean_logprob);
    }
    const auto grid = [](std::vector<double> v, double never) {
        std::sort(v.begin(), v.end());
        std::vector<double> g = {never, v.front() - 1.0, v.back() + 1.0};
        const size_t n = v.size(), step = std::max<size_t>(1, n / 50);
        for (size_t k = 0; k + 1 < n; k += step) g.push_back(0.5 * (v[k] + v[k + 1]));
        return g;
    };
    std::vector<double> e_grid = grid(entropies, std::numeric_limits<double>::infinity()),
                        m_grid = grid(means, -std::numeric_limits<double>::infinity());
    HedgeCalibration best;
    best.prompts = samples.size();
    double best_score = -1;
    // Compared as the Opener will compare them: thresholds stored as float.
    for (double& e : e_grid) e = static_cast<float>(std::min(e, 1e6));
    for (double& m : m_grid) m = static_cast<float>(std::max(m, -1e6));
    for (const double e : e_grid) {
        for (const double m : m_grid) {
            const Outcome o = apply(samples, m, e);
            if (o.rate < min_rate - 1e-9 || o.rate > max_rate + 1e-9) continue;
            if (o.score > best_score + 1e-12 || (std::abs(o.score - best_score) <= 1e-12 && o.rate < best.hedge_rate)) {
                best_score = o.score;
                best.max_entropy = static_cast<float>(e);
                best.min_mean_logprob = static_cast<float>(m);
                best.hedge_rate = o.rate;
            }
        }
    }
    if (best_score < 0) {
        throw Error("calibrate-hedge: no thresholds give a hedge rate in [" + std::to_string(min_rate) + ", " +
                    std::to_string(max_rate) + "] on " + std::to_string(samples.size()) + " prompts");
    }
    best.score_shown = best_score;
    best.score_never = apply(samples, -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::infinity())
                           .score;
    const Outcome d = apply(samples, kDefaultHedgeMinMeanLogprob, kDefaultHedgeMaxEntropy);
    best.score_default = d.score;
    best.rate_default = d.rate;
    return best;
}

void write_hedge_thresholds(const std::string& in, const std::string& out, const HedgeCalibration& c) {
    GgufWriter w;
    {
        const auto file = GgufFile::open(in);
        for (const auto& [key, value] : file->metadata()) w.set(key, value);
        for (const GgufTensor& t : file->tensors()) {
            w.add_tensor(t.name, static_cast<DType>(t.type), t.dims, t.data, t.bytes);
        }
    }
    w.set(kHedgeMinMeanLogprobKey, GgufValue::f32(c.min_mean_logprob));
    w.set(kHedgeMaxEntropyKey, GgufValue::f32(c.max_entropy));
    w.write(out);  // through a temporary file renamed into place, so `out` may be `in`
}

}  // namespace microlm::eval
