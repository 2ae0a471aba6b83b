// Handoff and recovery: each model's openers are continued by a cloud (an in-process serve-model
// stand-in, or a real endpoint) in instruct and prefill modes, through the product's own turn
// (continue_turn, with its opener check); the verdicts (tag or check) and the stitcher's repeats
// give keep, repeat, detection and false-alarm rates, per signal too, with the check's cost in
// tokens and delay. Bad openers are another prompt's opener (a seeded derangement; as decoded,
// when that one was hedged). Needs the network build (cloud client, server, turn).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <cmath>
#include <memory>
#include <random>

#include "microlm/cloud_client.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/handoff.h"
#include "microlm/local_model.h"
#include "microlm/model_server.h"
#include "microlm/stopwatch.h"
#include "microlm/turn.h"

namespace microlm::eval {
namespace {

struct Outcome {
    bool ok = false;
    Verdict verdict = Verdict::kKeep;
    bool tag = false;
    bool by_check = false;
    size_t repeated = 0;
    std::string raw, shown;
    double ttft_ms = -1, stall_ms = -1;
    std::optional<OpenerCheck> check;
    bool resumed = false;  // the cloud cut the continuation short; the turn asked again
    int64_t base_tokens = 0, extra_tokens = 0;  // estimated cloud tokens: the continuation, and what the check added
};

// One continuation by the product's own turn (continue_turn: the opener is already shown; a
// retract's text replaces it). Greedy and seeded so that reruns give the same text. No local
// close: a cloud failure is counted as an error. `count` estimates a text's cloud tokens.
Outcome continue_opener(const CloudClient& cloud, const EvalConfig& cfg, const std::string& prompt,
                        const std::string& opener, bool hedged, bool instruct, Modality modality,
                        const std::function<int64_t(const std::string&)>& count) {
    TurnConfig tc;
    tc.mode = instruct ? ContinuationMode::kInstruct : ContinuationMode::kPrefill;
    tc.modality = modality;
    tc.max_tokens = cfg.cloud_max_tokens;
    tc.temperature = 0.0f;
    tc.seed = cfg.seed;
    tc.check = cfg.check;
    OpenerResult shown;
    shown.text = opener;
    shown.hedged = hedged;
    const std::vector<ChatMessage> history{{"user", prompt}};
    const TurnResult r = continue_turn(shown, cloud, history, tc, {});
    Outcome o;
    o.ok = !r.error;
    o.verdict = r.verdict.value_or(Verdict::kKeep);
    o.tag = r.tag_found;
    o.by_check = r.verdict_by_check;
    o.repeated = r.repeated_words;
    o.raw = r.cloud_text;
    o.shown = r.text;
    o.ttft_ms = r.timings.cloud_first_token_ms;
    o.stall_ms = r.timings.stall_ms;
    o.check = r.check;
    o.resumed = r.resumed_from.has_value();
    // Tokens as the cloud bills them: the continuation request's prompt and output; the check's
    // echoes; after an off verdict, the recovery's prompt and what the dropped request had sent.
    const std::string asked = instruct ? format_chatml(instruct_messages(history, opener, modality), true, std::nullopt)
                                       : prefill_prompt(history, opener, std::nullopt);
    o.base_tokens = count(asked) + count(r.cloud_text);
    if (r.check) o.extra_tokens = r.check->tokens + 2;
    // A continuation the server cut short (llama-cpp-python's stops a stream when the check's
    // requests arrive) was asked for again: that prompt is the check's cost too.
    if (r.resumed_from) o.extra_tokens += count(prefill_prompt(history, *r.resumed_from, std::nullopt));
    if (r.verdict_by_check) {
        const std::vector<ChatMessage> rq = recovery_messages(history, opener, o.verdict, modality, cfg.check);
        o.extra_tokens += count(format_chatml(rq, true, std::nullopt)) + count(r.abandoned_text);
        // Checked first, an opener found off was never sent to be continued: that prompt, which
        // the base counts, was not paid for.
        if (cfg.check.before_continuation) o.extra_tokens -= count(asked);
    }
    return o;
}

// A permutation of 0..n-1 without fixed points (Sattolo's shuffle: one cycle), so each prompt
// gets another prompt's opener. Written out because std::shuffle's draws are implementation-defined.
std::vector<size_t> derangement(size_t n, uint64_t seed) {
    std::vector<size_t> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = i;
    std::mt19937_64 rng(seed);
    for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng() % (i - 1)]);
    return p;
}

struct Counts {
    size_t own = 0, bad = 0, errors = 0, no_cloud = 0, keep = 0, tag = 0, pivot = 0, retract = 0, repeat = 0,
           detected = 0, check_errors = 0, resumed = 0;
    double repeated_words = 0, ttft_ms = 0;
    size_t ttft_n = 0;
    // Per signal ("tag", "likelihood", ...): openers it called off, own and bad.
    std::map<std::string, size_t> own_off, bad_off;
    size_t own_checked = 0, bad_checked = 0;  // openers the check scored (hedges are not checked)
    // Means of the scores had: a likelihood-only check has log p but no pmi.
    double own_lp = 0, bad_lp = 0, own_pmi = 0, bad_pmi = 0;
    size_t own_lp_n = 0, bad_lp_n = 0, own_pmi_n = 0, bad_pmi_n = 0;
    // Estimated cloud tokens of the turns, without the check (base) and what it added (extra),
    // on own openers (a turn as it mostly goes) and on bad ones (the check, then a recovery).
    struct Tokens {
        double base = 0, extra = 0;
        double ratio() const { return base > 0 ? (base + extra) / base : kNaN; }
    } own_tokens, bad_tokens;
    std::vector<double> added_delay_ms;
};

constexpr CheckSignal kSignals[] = {CheckSignal::kLikelihood, CheckSignal::kPmi, CheckSignal::kAny, CheckSignal::kAll};

void count_check(const Outcome& o, const OpenerCheckConfig& cfg, bool own, bool instruct, Counts& c) {
    auto& off = own ? c.own_off : c.bad_off;
    if (instruct) off["tag"] += o.tag && o.verdict != Verdict::kKeep && !o.by_check;
    if (!o.check) return;
    if (!o.check->error.empty()) {
        ++c.check_errors;
        return;
    }
    const OpenerScores& s = o.check->scores;
    ++(own ? c.own_checked : c.bad_checked);
    for (const CheckSignal sig : kSignals) off[std::string(check_signal_name(sig))] += signal_says_off(sig, s, cfg);
    if (!std::isnan(s.given_conversation)) {
        (own ? c.own_lp : c.bad_lp) += s.given_conversation;
        ++(own ? c.own_lp_n : c.bad_lp_n);
    }
    if (!std::isnan(s.pmi())) {
        (own ? c.own_pmi : c.bad_pmi) += s.pmi();
        ++(own ? c.own_pmi_n : c.bad_pmi_n);
    }
}

double share(size_t k, size_t n) {
    return n == 0 ? kNaN : static_cast<double>(k) / static_cast<double>(n);
}

double median(std::vector<double> v) {
    if (v.empty()) return kNaN;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

HandoffMetrics to_metrics(const Counts& c) {
    HandoffMetrics m;
    m.own = c.own;
    m.bad = c.bad;
    m.errors = c.errors;
    m.no_cloud = c.no_cloud;
    m.repeat_rate = share(c.repeat, c.own);
    m.repeated_words = c.own ? c.repeated_words / static_cast<double>(c.own) : kNaN;
    m.cloud_ttft_ms = c.ttft_n ? c.ttft_ms / static_cast<double>(c.ttft_n) : kNaN;
    m.keep_rate = share(c.keep, c.own);
    m.tag_rate = share(c.tag, c.own);
    m.pivot_rate = share(c.pivot, c.own);
    m.retract_rate = share(c.retract, c.own);
    m.false_alarms = share(c.pivot + c.retract, c.own);
    m.detection = share(c.detected, c.bad);
    // The tag over every turn; the check's signals over the openers it scored.
    for (const auto& [name, n] : c.bad_off) {
        const auto o = c.own_off.find(name);
        const bool tag = name == "tag";
        m.by_signal[name] = {share(n, tag ? c.bad : c.bad_checked),
                             share(o == c.own_off.end() ? 0 : o->second, tag ? c.own : c.own_checked)};
    }
    auto mean_of = [](double sum, size_t n) { return n ? sum / static_cast<double>(n) : kNaN; };
    m.own_logprob = mean_of(c.own_lp, c.own_lp_n);
    m.bad_logprob = mean_of(c.bad_lp, c.bad_lp_n);
    m.own_pmi = mean_of(c.own_pmi, c.own_pmi_n);
    m.bad_pmi = mean_of(c.bad_pmi, c.bad_pmi_n);
    m.check_errors = c.check_errors;
    m.resumed = c.resumed;
    m.cost_ratio_own = c.own_tokens.ratio();
    m.cost_ratio_bad = c.bad_tokens.ratio();
    m.cost_ratio = Counts::Tokens{c.own_tokens.base + c.bad_tokens.base, c.own_tokens.extra + c.bad_tokens.extra}.ratio();
    m.added_delay_p50_ms = median(c.added_delay_ms);
    return m;
}

std::string clip(const std::string& s, size_t n) {
    if (s.size() <= n) return s;
    size_t cut = n;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "…";
}

}  // namespace

HandoffResult run_handoff_suite(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts,
                                const std::vector<ModelOpeners>& models, const ProgressFn& progress) {
    const Stopwatch t0;
    HandoffResult res;
    res.modes = {"instruct", "prefill"};
    const std::vector<size_t> subset = handoff_subset(cfg, prompts);
    res.prompts = subset.size();
    if (subset.size() < 2)
        throw Error("eval: the handoff suite needs at least 2 prompts (to make bad openers)");

    std::unique_ptr<ModelServer> server;
    CloudConfig cc;
    if (cfg.cloud_url.empty()) {
        ModelServerConfig sc;
        sc.model_path = cfg.stand_in;
        sc.port = 0;
        sc.threads = cfg.threads;
        sc.n_ctx = 4096;
        server = std::make_unique<ModelServer>(sc);
        server->start();
        cc.base_url = server->base_url();
        cc.model = server->model_name();
        res.cloud = "serve-model " + server->model_name() + " (in-process stand-in)";
    } else {
        cc.base_url = cfg.cloud_url;
        cc.model = cfg.cloud_model;
        cc.api_key_env = cfg.api_key_env;
        res.cloud = cfg.cloud_url + (cfg.cloud_model.empty() ? "" : " (" + cfg.cloud_model + ")");
    }
    // A CPU stand-in prefilling a long continuator prompt takes seconds: wait for it.
    cc.first_byte_timeout_ms = 120000;
    cc.stall_timeout_ms = 60000;
    cc.total_timeout_ms = 600000;
    const CloudClient cloud(cc);

    // The prompts as the cloud gets them: very long ones shortened to fit its context with the
    // continuator's instructions (about 3000 characters of prompt is ~750 tokens).
    std::vector<std::string> text(prompts.size());
    for (const size_t i : subset)
        text[i] = shorten_to_fit(prompts[i].prompt, [](const std::string& p) { return p.size() <= 3000; });
    const std::vector<size_t> bad_of = derangement(subset.size(), cfg.seed);
    std::vector<bool> is_sample(subset.size(), false);
    for (size_t k = 0; k < std::min(cfg.samples, subset.size()); ++k)
        is_sample[k * subset.size() / cfg.samples] = true;

    // Cloud tokens are estimated with the stand-in's tokenizer (the same model as the cloud in
    // the standard runs); a bytes/4 rule when there is none.
    std::unique_ptr<LocalModel> counter;
    if (!cfg.stand_in.empty() && std::filesystem::exists(cfg.stand_in)) counter = LocalModel::open(cfg.stand_in, 0, 1);
    const auto count = [&](const std::string& t) -> int64_t {
        if (counter) return static_cast<int64_t>(counter->tokenizer().encode(t, false, true).size());
        return static_cast<int64_t>(t.size() / 4);
    };
    const Modality other = cfg.modality == Modality::kSpeech ? Modality::kText : Modality::kSpeech;

    for (const ModelOpeners& m : models) {
        if (m.openers.size() != prompts.size())
            throw Error("eval: " + m.name + " has openers for " + std::to_string(m.openers.size()) + " of " +
                        std::to_string(prompts.size()) + " prompts");
        res.models.push_back(m.name);
        Counts ci, cp;
        const std::string stage = "handoff " + m.name;
        for (size_t k = 0; k < subset.size(); ++k) {
            if (progress) progress(stage, k, subset.size());
            const size_t i = subset[k];
            const OpenerSample& own = m.openers[i];
            // A hedge phrase fits any prompt, so a hedged opener lends what the model decoded.
            const OpenerSample& other_sample = m.openers[subset[bad_of[k]]];
            const std::string& bad_text =
                other_sample.hedged && !other_sample.decoded_text.empty() ? other_sample.decoded_text : other_sample.text;
            const auto run = [&](const std::string& opener, bool instruct, bool own_opener, Modality modality,
                                 Counts* c) {
                if (opener.find_first_not_of(" \t\r\n") == std::string::npos) return;
                // An own hedged opener is the hedge phrase the user heard: the turn does not check it.
                const bool hedged = own_opener && own.hedged;
                const Outcome o = continue_opener(cloud, cfg, text[i], opener, hedged, instruct, modality, count);
                if (c && !o.ok) {
                    ++c->errors;
                    return;
                }
                if (c) {
                    if (o.ttft_ms >= 0) {
                        c->ttft_ms += o.ttft_ms;
                        ++c->ttft_n;
                        res.cloud_ttft_s.push_back(o.ttft_ms / 1000.0);
                    }
                    count_check(o, cfg.check, own_opener, instruct, *c);
                    c->resumed += o.resumed;
                    if (o.check && o.check->error.empty())
                        res.checks.push_back({m.name, instruct ? "instruct" : "prefill", own_opener ? "own" : "bad",
                                              prompts[i].set + "/" + prompts[i].id, opener,
                                              o.check->scores.given_conversation, o.check->scores.pmi()});
                    Counts::Tokens& tokens = own_opener ? c->own_tokens : c->bad_tokens;
                    tokens.base += static_cast<double>(o.base_tokens);
                    tokens.extra += static_cast<double>(o.extra_tokens);
                    if (own_opener) {
                        ++c->own;
                        c->keep += o.verdict == Verdict::kKeep;
                        c->tag += o.tag;
                        c->pivot += o.verdict == Verdict::kPivot;
                        c->retract += o.verdict == Verdict::kRetract;
                        c->repeat += o.repeated > 0;
                        c->repeated_words += static_cast<double>(o.repeated);
                        if (o.verdict == Verdict::kKeep && o.stall_ms >= 0 && o.ttft_ms >= 0)
                            c->added_delay_ms.push_back(std::max(0.0, o.stall_ms - o.ttft_ms));
                    } else {
                        ++c->bad;
                        c->detected += o.verdict != Verdict::kKeep;
                    }
                }
                if (is_sample[k]) {
                    StitchedSample s;
                    s.set = prompts[i].set;
                    s.prompt_id = prompts[i].id;
                    s.prompt = clip(prompts[i].prompt, 300);
                    s.opener = opener;
                    s.mode = instruct ? "instruct" : "prefill";
                    s.modality = modality == Modality::kSpeech ? "speech" : "text";
                    s.kind = own_opener ? "own" : "bad";
                    s.verdict = std::string(verdict_name(o.verdict));
                    s.by_check = o.by_check;
                    if (o.check) {
                        s.logprob = o.check->scores.given_conversation;
                        s.pmi = o.check->scores.pmi();
                    }
                    s.raw = clip(o.raw, 600);
                    s.shown = clip(o.shown, 600);
                    s.repeated = o.repeated;
                    res.samples.push_back(std::move(s));
                }
            };
            // An opener that ended the turn needs no cloud in a real turn; it still serves as
            // another prompt's bad opener.
            if (own.ended_turn) {
                ++ci.no_cloud;
                ++cp.no_cloud;
            } else {
                run(own.text, true, true, cfg.modality, &ci);
                run(own.text, false, true, cfg.modality, &cp);
            }
            run(bad_text, true, false, cfg.modality, &ci);
            run(bad_text, false, false, cfg.modality, &cp);
            // The other modality's recovery, shown as a sample only (speech pivots, text retracts).
            if (is_sample[k]) run(bad_text, false, false, other, nullptr);
        }
        if (progress) progress(stage, subset.size(), subset.size());
        res.metrics[m.name]["instruct"] = to_metrics(ci);
        res.metrics[m.name]["prefill"] = to_metrics(cp);
    }
    res.seconds = t0.seconds();
    return res;
}

}  // namespace microlm::eval
