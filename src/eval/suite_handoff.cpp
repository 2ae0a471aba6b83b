// Handoff and recovery: each model's openers are continued by a cloud (an in-process serve-model
// stand-in, or a real endpoint) in instruct and prefill modes, through the product's own turn
// (continue_turn); the joiner's verdicts and the stitcher's repeats give keep, repeat, detection
// and false-alarm rates. Bad openers are another prompt's opener (a seeded derangement; as
// decoded, when that one was hedged). Needs the network build (cloud client, server, turn).
#include <chrono>
#include <cmath>
#include <memory>
#include <random>

#include "microlm/cloud_client.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/handoff.h"
#include "microlm/model_server.h"
#include "microlm/stopwatch.h"
#include "microlm/turn.h"

namespace microlm::eval {
namespace {

struct Outcome {
    bool ok = false;
    Verdict verdict = Verdict::kKeep;
    bool tag = false;
    size_t repeated = 0;
    std::string raw, shown;
    double ttft_ms = -1;
};

// One continuation by the product's own turn (continue_turn: the opener is already shown; a
// retract's text replaces it). Greedy and seeded so that reruns give the same text. No local
// close: a cloud failure is counted as an error.
Outcome continue_opener(const CloudClient& cloud, const EvalConfig& cfg, const std::string& prompt,
                        const std::string& opener, bool instruct) {
    TurnConfig tc;
    tc.mode = instruct ? ContinuationMode::kInstruct : ContinuationMode::kPrefill;
    tc.modality = cfg.modality;
    tc.max_tokens = cfg.cloud_max_tokens;
    tc.temperature = 0.0f;
    tc.seed = cfg.seed;
    OpenerResult shown;
    shown.text = opener;
    const TurnResult r = continue_turn(shown, cloud, {{"user", prompt}}, tc, {});
    Outcome o;
    o.ok = !r.error;
    o.verdict = r.verdict.value_or(Verdict::kKeep);
    o.tag = r.tag_found;
    o.repeated = r.repeated_words;
    o.raw = r.cloud_text;
    o.shown = r.text;
    o.ttft_ms = r.timings.cloud_first_token_ms;
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
           detected = 0;
    double repeated_words = 0, ttft_ms = 0;
    size_t ttft_n = 0;
};

double share(size_t k, size_t n) {
    return n == 0 ? kNaN : static_cast<double>(k) / static_cast<double>(n);
}

HandoffMetrics to_metrics(const Counts& c, bool instruct) {
    HandoffMetrics m;
    m.own = c.own;
    m.bad = c.bad;
    m.errors = c.errors;
    m.no_cloud = c.no_cloud;
    m.repeat_rate = share(c.repeat, c.own);
    m.repeated_words = c.own ? c.repeated_words / static_cast<double>(c.own) : kNaN;
    m.cloud_ttft_ms = c.ttft_n ? c.ttft_ms / static_cast<double>(c.ttft_n) : kNaN;
    if (instruct) {
        m.keep_rate = share(c.keep, c.own);
        m.tag_rate = share(c.tag, c.own);
        m.pivot_rate = share(c.pivot, c.own);
        m.retract_rate = share(c.retract, c.own);
        m.false_alarms = share(c.pivot + c.retract, c.own);
        m.detection = share(c.detected, c.bad);
    }
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
            const OpenerSample& other = m.openers[subset[bad_of[k]]];
            const std::string& bad_text =
                other.hedged && !other.decoded_text.empty() ? other.decoded_text : other.text;
            const auto run = [&](const std::string& opener, bool instruct, bool own_opener, Counts& c) {
                if (opener.find_first_not_of(" \t\r\n") == std::string::npos) return;
                const Outcome o = continue_opener(cloud, cfg, text[i], opener, instruct);
                if (!o.ok) {
                    ++c.errors;
                    return;
                }
                if (o.ttft_ms >= 0) {
                    c.ttft_ms += o.ttft_ms;
                    ++c.ttft_n;
                    res.cloud_ttft_s.push_back(o.ttft_ms / 1000.0);
                }
                if (own_opener) {
                    ++c.own;
                    c.keep += o.verdict == Verdict::kKeep;
                    c.tag += o.tag;
                    c.pivot += o.verdict == Verdict::kPivot;
                    c.retract += o.verdict == Verdict::kRetract;
                    c.repeat += o.repeated > 0;
                    c.repeated_words += static_cast<double>(o.repeated);
                } else {
                    ++c.bad;
                    c.detected += o.verdict != Verdict::kKeep;
                }
                if (is_sample[k]) {
                    StitchedSample s;
                    s.set = prompts[i].set;
                    s.prompt_id = prompts[i].id;
                    s.prompt = clip(prompts[i].prompt, 300);
                    s.opener = opener;
                    s.mode = instruct ? "instruct" : "prefill";
                    s.kind = own_opener ? "own" : "bad";
                    s.verdict = instruct ? std::string(verdict_name(o.verdict)) : "";
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
                run(own.text, true, true, ci);
                run(own.text, false, true, cp);
            }
            run(bad_text, true, false, ci);
            // Prefill has no verdict to detect with: a bad opener there is only shown as a sample.
            if (is_sample[k]) run(bad_text, false, false, cp);
        }
        if (progress) progress(stage, subset.size(), subset.size());
        res.metrics[m.name]["instruct"] = to_metrics(ci, true);
        HandoffMetrics pm = to_metrics(cp, false);
        pm.bad = 0;  // the sample-only bad openers are not a measurement
        res.metrics[m.name]["prefill"] = pm;
    }
    res.seconds = t0.seconds();
    return res;
}

}  // namespace microlm::eval
