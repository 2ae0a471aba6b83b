// The opener suite: every model runs the opener policy as `microlm chat` does on every prompt;
// the constant, retrieval and oracle baselines are added; the judge scores each opener; the
// metrics are taken per set and overall. Not the file output (report.cpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/local_model.h"
#include "microlm/opener.h"
#include "microlm/stopwatch.h"
#include "microlm/tokenizer.h"

namespace microlm::eval {
namespace {

CandidateResult baseline(std::string name, const std::vector<std::string>& texts) {
    CandidateResult c;
    c.name = std::move(name);
    c.kind = "baseline";
    for (const std::string& t : texts) {
        OpenerSample s;
        s.text = t;
        c.openers.push_back(std::move(s));
    }
    return c;
}

// The metrics over the prompts whose indices are in `idx`.
OpenerMetrics score_subset(const std::vector<size_t>& idx, const ReferenceWords& refs,
                           const CandidateResult& c) {
    OpenerMetrics m;
    m.prompts = idx.size();
    size_t sm2 = 0, sm3 = 0, hedged = 0, ended = 0, shortened = 0;
    double f1 = 0, words = 0;
    std::vector<double> nll, fw, op;
    for (const size_t i : idx) {
        const OpenerSample& s = c.openers[i];
        const std::vector<std::string> w = normalize_words(s.text);
        words += static_cast<double>(w.size());
        if (w.empty()) ++m.empty;
        const bool has_refs =
            std::any_of(refs[i].begin(), refs[i].end(), [](const auto& r) { return !r.empty(); });
        if (has_refs) {
            ++m.with_references;
            sm2 += start_match_any(w, refs[i], 2);
            sm3 += start_match_any(w, refs[i], 3);
            f1 += opener_f1(w, refs[i], 8);
        }
        if (i < c.judge_nll.size() && !std::isnan(c.judge_nll[i])) nll.push_back(c.judge_nll[i]);
        hedged += s.hedged;
        ended += s.ended_turn;
        shortened += s.prompt_shortened;
        if (s.first_word_ms >= 0) fw.push_back(s.first_word_ms);
        if (s.opener_ms >= 0) op.push_back(s.opener_ms);
    }
    if (m.prompts == 0) return m;
    const auto n = static_cast<double>(m.prompts);
    m.words = words / n;
    if (m.with_references > 0) {
        const auto r = static_cast<double>(m.with_references);
        m.start_match2 = static_cast<double>(sm2) / r;
        m.start_match3 = static_cast<double>(sm3) / r;
        m.f1 = f1 / r;
    }
    m.judged = nll.size();
    m.judge_nll = mean(nll);
    if (c.kind == "model") {
        m.hedge_rate = static_cast<double>(hedged) / n;
        m.ended_rate = static_cast<double>(ended) / n;
        m.shortened_rate = static_cast<double>(shortened) / n;
        m.first_word_ms = mean(fw);
        m.first_word_p90_ms = quantile(fw, 0.9);
        m.opener_ms = mean(op);
    }
    return m;
}

}  // namespace

std::string model_name_of(const std::string& path) {
    return std::filesystem::path(path).stem().string();
}

ModelOpeners run_model_openers(const std::string& model_path, const std::vector<EvalPrompt>& prompts,
                               int threads, const ProgressFn& progress, int max_prompt_tokens) {
    ModelOpeners out;
    out.name = model_name_of(model_path);
    out.path = model_path;
    if (!std::filesystem::exists(model_path)) throw Error(model_path + ": no such model file");
    const Stopwatch t0;
    auto local = LocalModel::open(model_path, 2048, threads);
    const Tokenizer& tok = local->tokenizer();
    Context& ctx = local->context();
    out.n_ctx = ctx.n_ctx();
    // The same setup as `microlm chat` (cmd_chat.cpp): the default config, the system turn warmed.
    OpenerConfig cfg;
    if (max_prompt_tokens >= 0) cfg.max_prompt_tokens = max_prompt_tokens;
    Opener opener(ctx, tok, cfg);
    opener.warm_up();
    out.load_ms = t0.ms();

    const std::string stage = "openers " + out.name;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (progress) progress(stage, i, prompts.size());
        // The opener reads at most cfg.max_prompt_tokens of it, as in `microlm chat`.
        const OpenerResult r = opener.run({{"user", prompts[i].prompt}});
        OpenerSample s;
        s.text = r.text;
        s.decoded_text = r.decoded_text;
        s.hedged = r.hedged;
        s.ended_turn = r.ended_turn;
        s.prompt_shortened = r.timings.prompt_cut;
        s.shown_words = static_cast<int>(r.words.size());
        s.first_word_ms = r.timings.first_word_ms;
        s.opener_ms = r.timings.total_ms;
        out.openers.push_back(std::move(s));
    }
    if (progress) progress(stage, prompts.size(), prompts.size());
    return out;
}

ReferenceWords reference_words(const std::vector<EvalPrompt>& prompts, size_t n) {
    ReferenceWords out(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        for (const std::string& r : prompts[i].references) {
            std::vector<std::string> w = normalize_words(r);
            if (w.size() > n) w.resize(n);
            out[i].push_back(std::move(w));
        }
    }
    return out;
}

void score_candidate(const std::vector<EvalPrompt>& prompts, const ReferenceWords& refs, CandidateResult& c) {
    if (c.openers.size() != prompts.size() || refs.size() != prompts.size())
        throw Error("eval: " + c.name + " has " + std::to_string(c.openers.size()) + " openers for " +
                    std::to_string(prompts.size()) + " prompts");
    std::map<std::string, std::vector<size_t>> by_set;
    std::vector<size_t> all(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        by_set[prompts[i].set].push_back(i);
        all[i] = i;
    }
    c.by_set.clear();
    for (const auto& [set, idx] : by_set) c.by_set[set] = score_subset(idx, refs, c);
    c.all = score_subset(all, refs, c);
}

OpenersResult run_openers_suite(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts,
                                std::vector<ModelOpeners> models, const ProgressFn& progress) {
    const Stopwatch t0;
    OpenersResult res;
    res.prompts = prompts;
    for (const EvalPrompt& p : prompts)
        if (std::find(res.sets.begin(), res.sets.end(), p.set) == res.sets.end()) res.sets.push_back(p.set);
    if (models.empty())
        for (const std::string& path : cfg.models)
            models.push_back(run_model_openers(path, prompts, cfg.threads, progress, cfg.opener_prompt_tokens));

    std::map<std::string, int> seen;
    for (ModelOpeners& m : models) {
        CandidateResult c;
        c.name = m.name;
        if (const int n = ++seen[m.name]; n > 1) c.name += "#" + std::to_string(n);
        c.kind = "model";
        c.openers = std::move(m.openers);
        res.candidates.push_back(std::move(c));
    }

    res.candidates.push_back(
        baseline("constant", std::vector<std::string>(prompts.size(), cfg.constant_opener)));

    const std::vector<std::string> corpora =
        cfg.retrieval_corpora.empty() ? default_retrieval_corpora(cfg.data_dir) : cfg.retrieval_corpora;
    if (!corpora.empty()) {
        std::vector<std::string> eval_prompts;
        for (const EvalPrompt& p : prompts) eval_prompts.push_back(p.prompt);
        const RetrievalIndex index =
            build_retrieval_index(corpora, cfg.data_dir + "/eval", eval_prompts, &res.retrieval, progress);
        std::vector<std::string> texts;
        for (const EvalPrompt& p : prompts) texts.push_back(index.opener_for(p.prompt));
        res.candidates.push_back(baseline("retrieval", texts));
    }

    std::vector<std::string> oracle;
    for (const EvalPrompt& p : prompts) oracle.push_back(oracle_opener(p.references));
    res.candidates.push_back(baseline("oracle", oracle));

    if (!cfg.judge.empty()) {
        Judge judge(cfg.judge, cfg.threads);
        res.judge = judge.name();
        for (CandidateResult& c : res.candidates) c.judge_nll.assign(prompts.size(), kNaN);
        for (size_t i = 0; i < prompts.size(); ++i) {
            if (progress) progress("judge " + judge.name(), i, prompts.size());
            std::unordered_map<std::string, double> done;  // candidates often share an opener
            for (CandidateResult& c : res.candidates) {
                const std::string& t = c.openers[i].text;
                auto it = done.find(t);
                if (it == done.end()) it = done.emplace(t, judge.nll(prompts[i].prompt, t)).first;
                c.judge_nll[i] = it->second;
            }
        }
        if (progress) progress("judge " + judge.name(), prompts.size(), prompts.size());
    }

    const ReferenceWords refs = reference_words(prompts);
    for (CandidateResult& c : res.candidates) score_candidate(prompts, refs, c);
    res.seconds = t0.ms() / 1000.0;
    return res;
}

}  // namespace microlm::eval
