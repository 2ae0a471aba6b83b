// The eval's output: results.json (every number, each prompt's openers), report.md (tables,
// plots, stitched examples) and the PNG plots, all in one folder, each file written to a
// temporary name and renamed. Not the measuring (suite_*.cpp).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "microlm/error.h"
#include "microlm/output_file.h"
#include "microlm/eval.h"
#include "microlm/plot.h"

namespace microlm::eval {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Four decimals are plenty for rates and milliseconds and keep results.json small; NaN -> null.
ordered_json num(double v) {
    if (!std::isfinite(v)) return nullptr;
    return std::round(v * 1e4) / 1e4;
}

void write_text(const std::string& path, const std::string& text) {
    write_output_file(path, text);
}

std::string fmt(double v, int decimals = 3) {
    if (!std::isfinite(v)) return "—";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string pct(double v) {
    if (!std::isfinite(v)) return "—";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f%%", 100 * v);
    return buf;
}

// Text inside a Markdown table cell: one line, pipes escaped.
std::string cell(std::string s, size_t max_bytes = 160) {
    for (char& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    std::string out;
    for (const char c : s) {
        if (c == '|') out += '\\';
        out += c;
    }
    if (out.size() > max_bytes) {
        size_t cut = max_bytes;
        while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
        out = out.substr(0, cut) + "…";
    }
    return out.empty() ? "∅" : out;
}

std::string quote_block(const std::string& s) {
    std::string out = "> ";
    for (const char c : s) {
        out += c;
        if (c == '\n') out += "> ";
    }
    return out + "\n";
}

ordered_json metrics_json(const OpenerMetrics& m) {
    ordered_json j;
    j["prompts"] = m.prompts;
    j["with_references"] = m.with_references;
    j["start_match2"] = num(m.start_match2);
    j["start_match3"] = num(m.start_match3);
    j["opener_f1"] = num(m.f1);
    j["judge_nll"] = num(m.judge_nll);
    j["judged"] = m.judged;
    j["words"] = num(m.words);
    j["empty"] = m.empty;
    if (std::isfinite(m.hedge_rate)) {
        j["hedge_rate"] = num(m.hedge_rate);
        j["ended_turn_rate"] = num(m.ended_rate);
        j["prompt_shortened_rate"] = num(m.shortened_rate);
        j["first_word_ms"] = num(m.first_word_ms);
        j["first_word_p90_ms"] = num(m.first_word_p90_ms);
        j["opener_ms"] = num(m.opener_ms);
    }
    return j;
}

ordered_json handoff_json(const HandoffMetrics& m) {
    ordered_json j;
    j["own"] = m.own;
    j["bad"] = m.bad;
    j["errors"] = m.errors;
    j["no_cloud"] = m.no_cloud;
    j["keep_rate"] = num(m.keep_rate);
    j["tag_rate"] = num(m.tag_rate);
    j["pivot_rate"] = num(m.pivot_rate);
    j["retract_rate"] = num(m.retract_rate);
    j["repeat_rate"] = num(m.repeat_rate);
    j["repeated_words"] = num(m.repeated_words);
    j["detection"] = num(m.detection);
    j["false_alarms"] = num(m.false_alarms);
    j["cloud_ttft_ms"] = num(m.cloud_ttft_ms);
    ordered_json sig;
    for (const auto& [name, v] : m.by_signal) sig[name] = {{"detection", num(v.first)}, {"false_alarms", num(v.second)}};
    j["by_signal"] = sig;
    j["own_logprob"] = num(m.own_logprob);
    j["bad_logprob"] = num(m.bad_logprob);
    j["own_pmi"] = num(m.own_pmi);
    j["bad_pmi"] = num(m.bad_pmi);
    j["check_errors"] = m.check_errors;
    j["resumed"] = m.resumed;
    j["cost_ratio"] = num(m.cost_ratio);
    j["cost_ratio_own"] = num(m.cost_ratio_own);
    j["cost_ratio_bad"] = num(m.cost_ratio_bad);
    j["added_delay_p50_ms"] = num(m.added_delay_p50_ms);
    return j;
}

ordered_json latency_stats_json(const LatencyStats& s) {
    return {{"p50_s", num(s.p50)},
            {"p90_s", num(s.p90)},
            {"p99_s", num(s.p99)},
            {"mean_s", num(s.mean)},
            {"zero_share", num(s.zero_share)}};
}

ordered_json config_json(const EvalConfig& c) {
    ordered_json j;
    j["models"] = c.models;
    j["judge"] = c.judge;
    j["data_dir"] = c.data_dir;
    j["sets"] = c.sets;
    j["prompts_file"] = c.prompts_file;
    j["limit"] = c.limit;
    j["seed"] = c.seed;
    j["threads"] = c.threads;
    j["constant_opener"] = c.constant_opener;
    j["handoff_limit"] = c.handoff_limit;
    j["stand_in"] = c.stand_in;
    j["cloud_url"] = c.cloud_url;
    j["cloud_max_tokens"] = c.cloud_max_tokens;
    j["modality"] = c.modality == Modality::kSpeech ? "speech" : "text";
    j["speech_wps"] = c.speech_wps;
    j["text_wps"] = c.text_wps;
    j["draws"] = c.draws;
    return j;
}

// A sorted sample as a CDF curve of at most ~300 points.
plot::Series cdf_series(const std::string& name, const std::vector<double>& sorted) {
    plot::Series s;
    s.name = name;
    const size_t n = sorted.size();
    if (n == 0) return s;
    const size_t step = std::max<size_t>(1, n / 300);
    for (size_t i = 0; i < n; i += step) {
        s.x.push_back(sorted[i]);
        s.y.push_back(static_cast<double>(i + 1) / static_cast<double>(n));
    }
    s.x.push_back(sorted.back());
    s.y.push_back(1.0);
    return s;
}

// ---- Sections -------------------------------------------------------------------------------

void openers_section(const OpenersResult& o, const std::string& dir, std::ostringstream& md, ordered_json& js,
                     std::vector<std::string>& files) {
    ordered_json j;
    j["judge"] = o.judge;
    j["sets"] = o.sets;
    ordered_json counts;
    for (const std::string& s : o.sets) {
        size_t n = 0;
        for (const EvalPrompt& p : o.prompts) n += p.set == s;
        counts[s] = n;
    }
    j["prompt_counts"] = counts;
    j["retrieval_index"] = {{"prompts", o.retrieval.prompts}, {"answers", o.retrieval.answers}};
    j["seconds"] = num(o.seconds);
    ordered_json metrics;
    for (const CandidateResult& c : o.candidates) {
        ordered_json cj;
        cj["kind"] = c.kind;
        cj["all"] = metrics_json(c.all);
        ordered_json bs;
        for (const std::string& s : o.sets) bs[s] = metrics_json(c.by_set.at(s));
        cj["by_set"] = bs;
        metrics[c.name] = cj;
    }
    j["metrics"] = metrics;
    ordered_json per_prompt = ordered_json::array();
    for (size_t i = 0; i < o.prompts.size(); ++i) {
        ordered_json pj;
        pj["set"] = o.prompts[i].set;
        pj["id"] = o.prompts[i].id;
        pj["prompt"] = cell(o.prompts[i].prompt, 100);
        ordered_json op, nll;
        for (const CandidateResult& c : o.candidates) {
            const OpenerSample& s = c.openers[i];
            op[c.name] = s.text;
            if (s.hedged) op[c.name + " (decoded)"] = s.decoded_text;
            if (i < c.judge_nll.size()) nll[c.name] = num(c.judge_nll[i]);
        }
        pj["openers"] = op;
        if (!nll.empty()) pj["judge_nll"] = nll;
        per_prompt.push_back(pj);
    }
    j["prompts"] = per_prompt;
    js["openers"] = j;

    md << "## Opener quality\n\n";
    md << "Each model's opener comes from the same policy as `microlm chat` (greedy, 4–8 words, hedging on). "
          "Start-match@k: share of prompts whose opener's first k words equal those of at least one "
          "reference "
          "answer. Opener-F1: best unigram F1 against a reference's first 8 words. Judge NLL: mean negative "
          "log-likelihood per token (nats) of the opener under the judge "
       << (o.judge.empty() ? std::string("(none)") : "`" + o.judge + "`")
       << " — lower means the judge was likelier to start that way"
       << (std::any_of(o.candidates.begin(), o.candidates.end(),
                       [&](const CandidateResult& c) { return c.kind == "model" && c.name == o.judge; })
               ? " (the judge is also a candidate here: its own greedy openers are favoured)"
               : "")
       << ". Retrieval index: " << o.retrieval.prompts << " training prompts (" << o.retrieval.answers
       << " answers).\n\n";

    md << "### All prompts (" << o.prompts.size() << ")\n\n";
    md << "| opener | start-match@2 | start-match@3 | opener-F1 | judge NLL | words | hedged | first word ms "
          "(mean / p90) | "
          "opener ms |\n|---|---|---|---|---|---|---|---|---|\n";
    for (const CandidateResult& c : o.candidates) {
        const OpenerMetrics& m = c.all;
        md << "| " << (c.kind == "model" ? "**" + c.name + "**" : c.name) << " | " << fmt(m.start_match2)
           << " | " << fmt(m.start_match3) << " | " << fmt(m.f1) << " | " << fmt(m.judge_nll, 2) << " | "
           << fmt(m.words, 1) << " | " << pct(m.hedge_rate) << " | " << fmt(m.first_word_ms, 0) << " / "
           << fmt(m.first_word_p90_ms, 0) << " | " << fmt(m.opener_ms, 0) << " |\n";
    }
    md << "\n";

    for (const std::string& s : o.sets) {
        md << "### " << s << " (" << counts[s].get<size_t>() << " prompts)\n\n";
        md << "| opener | with refs | start-match@2 | start-match@3 | opener-F1 | judge NLL | words | hedged "
              "|\n"
              "|---|---|---|---|---|---|---|---|\n";
        for (const CandidateResult& c : o.candidates) {
            const OpenerMetrics& m = c.by_set.at(s);
            md << "| " << c.name << " | " << m.with_references << " | " << fmt(m.start_match2) << " | "
               << fmt(m.start_match3) << " | " << fmt(m.f1) << " | " << fmt(m.judge_nll, 2) << " | "
               << fmt(m.words, 1) << " | " << pct(m.hedge_rate) << " |\n";
        }
        md << "\n";
    }

    struct Chart {
        const char* file;
        const char* title;
        const char* y;
        double OpenerMetrics::*field;
    };
    const Chart charts[] = {
        {"openers_start_match2.png", "start-match@2 (higher is better)", "share of prompts",
         &OpenerMetrics::start_match2},
        {"openers_start_match3.png", "start-match@3 (higher is better)", "share of prompts",
         &OpenerMetrics::start_match3},
        {"openers_f1.png", "opener-F1 vs first 8 words of references", "F1", &OpenerMetrics::f1},
        {"openers_judge_nll.png", "judge NLL per token (lower is likelier)", "nats/token",
         &OpenerMetrics::judge_nll},
    };
    for (const Chart& ch : charts) {
        if (ch.field == &OpenerMetrics::judge_nll && o.judge.empty()) continue;
        plot::BarChart bc;
        bc.title = ch.title;
        bc.y_label = ch.y;
        bc.groups = o.sets;
        bc.groups.push_back("all");
        for (const CandidateResult& c : o.candidates) {
            plot::BarSeries bs;
            bs.name = c.name;
            for (const std::string& s : o.sets) bs.values.push_back(c.by_set.at(s).*ch.field);
            bs.values.push_back(c.all.*ch.field);
            bc.series.push_back(std::move(bs));
        }
        if (ch.field != &OpenerMetrics::judge_nll) bc.y_min = 0;
        plot::write_bar_chart_png(dir + "/" + ch.file, bc);
        files.push_back(dir + "/" + ch.file);
        md << "![" << ch.title << "](" << ch.file << ")\n\n";
    }

    md << "### Examples\n\nThe first two prompts of each set, and what each candidate opened with.\n\n";
    for (const std::string& s : o.sets) {
        size_t shown = 0;
        for (size_t i = 0; i < o.prompts.size() && shown < 2; ++i) {
            if (o.prompts[i].set != s) continue;
            ++shown;
            md << "**" << s << " " << cell(o.prompts[i].id, 40) << "**: " << cell(o.prompts[i].prompt, 200)
               << "\n\n";
            md << "| opener | text | judge NLL |\n|---|---|---|\n";
            for (const CandidateResult& c : o.candidates) {
                const OpenerSample& x = c.openers[i];
                std::string t = cell(x.text, 120);
                if (x.hedged) t += " *(hedged; decoded: " + cell(x.decoded_text, 80) + ")*";
                md << "| " << c.name << " | " << t << " | "
                   << fmt(i < c.judge_nll.size() ? c.judge_nll[i] : kNaN, 2) << " |\n";
            }
            md << "\n";
        }
    }
}

void handoff_section(const HandoffResult& h, const EvalConfig& cfg, const std::string& dir,
                     std::ostringstream& md, ordered_json& js, std::vector<std::string>& files) {
    ordered_json j;
    j["cloud"] = h.cloud;
    j["prompts"] = h.prompts;
    j["seconds"] = num(h.seconds);
    ordered_json mj;
    for (const auto& [model, modes] : h.metrics) {
        ordered_json x;
        for (const std::string& mode : h.modes)
            if (modes.count(mode)) x[mode] = handoff_json(modes.at(mode));
        mj[model] = x;
    }
    j["metrics"] = mj;
    ordered_json sj = ordered_json::array();
    for (const StitchedSample& s : h.samples) {
        sj.push_back({{"set", s.set},
                      {"prompt_id", s.prompt_id},
                      {"prompt", s.prompt},
                      {"opener", s.opener},
                      {"mode", s.mode},
                      {"kind", s.kind},
                      {"verdict", s.verdict},
                      {"cloud_text", s.raw},
                      {"shown", s.shown},
                      {"repeated_words", s.repeated},
                      {"modality", s.modality},
                      {"verdict_by_check", s.by_check},
                      {"check_logprob", num(s.logprob)},
                      {"check_pmi", num(s.pmi)}});
    }
    j["samples"] = sj;
    ordered_json cj = ordered_json::array();
    for (const auto& c : h.checks)
        cj.push_back({{"model", c.model}, {"mode", c.mode}, {"kind", c.kind}, {"prompt", c.prompt_id},
                      {"opener", c.opener}, {"logprob", num(c.logprob)}, {"pmi", num(c.pmi)}});
    j["check_scores"] = cj;
    js["handoff"] = j;

    md << "## Handoff and recovery\n\n";
    md << "Cloud: " << h.cloud << "; greedy, at most " << cfg.cloud_max_tokens << " tokens; modality "
       << (cfg.modality == Modality::kSpeech ? "speech" : "text") << "; " << h.prompts
       << " prompts (" << cfg.handoff_limit << " of each set after the first " << cfg.handoff_skip
       << "); opener check `" << check_signal_name(cfg.check.signal) << "` (off below log p "
       << fmt(cfg.check.min_logprob, 2) << " or pmi " << fmt(cfg.check.min_pmi, 2)
       << " nats per token), asked for " << (cfg.check.before_continuation ? "before" : "beside")
       << " the continuation. *Own*: the model's opener for the prompt; "
       << "*bad*: the same model's opener for another prompt (as decoded, if that one was hedged). "
          "False alarms (own openers pivoted or retracted) and detection (bad ones) count the turn's verdict: "
          "the cloud's tag (instruct mode only) or the opener check. Repeat: the continuation restarted with "
          "opener words that the stitcher removed.\n\n";
    md << "| model | mode | own | keep | tag found | pivot | retract | repeat | words dropped | false alarms "
          "| bad | "
          "detection | errors | cloud TTFT ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    plot::BarChart bc;
    bc.title = "handoff: keep, repeats, recovery";
    bc.y_label = "share";
    bc.groups = {"keep (own)", "repeat (own)", "false alarm (own)", "detection (bad)"};
    bc.y_min = 0;
    for (const std::string& model : h.models) {
        for (const std::string& mode : h.modes) {
            const auto mit = h.metrics.find(model);
            if (mit == h.metrics.end() || !mit->second.count(mode)) continue;
            const HandoffMetrics& m = mit->second.at(mode);
            md << "| " << model << " | " << mode << " | " << m.own << " | " << pct(m.keep_rate) << " | "
               << pct(m.tag_rate) << " | " << pct(m.pivot_rate) << " | " << pct(m.retract_rate) << " | "
               << pct(m.repeat_rate) << " | " << fmt(m.repeated_words, 2) << " | " << pct(m.false_alarms)
               << " | " << m.bad << " | " << pct(m.detection) << " | " << m.errors << " | "
               << fmt(m.cloud_ttft_ms, 0) << " |\n";
            bc.series.push_back(
                {model + " " + mode, {m.keep_rate, m.repeat_rate, m.false_alarms, m.detection}, {}});
        }
    }
    md << "\n";
    md << "Each signal alone at the configured thresholds (detection on bad openers / false alarms on own "
          "openers), the mean scores (nats per token), the turn's cloud tokens with the check against "
          "without (estimated with the stand-in's tokenizer) on own openers, on bad ones (the check and "
          "the recovery) and on all (half of them bad here), and the median delay the check added before "
          "the first continuation word of kept openers (shown minus the cloud's first token). Resumed: turns whose "
          "continuation the cloud cut short (llama-cpp-python's server stops a stream when another request "
          "arrives), asked for again from the shown text; that prompt counts as the check's cost:\n\n";
    md << "| model | mode | tag | likelihood | pmi | any | all | log p own / bad | pmi own / bad | check errors | "
          "resumed | tokens × own / bad / all | added delay ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const std::string& model : h.models) {
        for (const std::string& mode : h.modes) {
            const auto mit = h.metrics.find(model);
            if (mit == h.metrics.end() || !mit->second.count(mode)) continue;
            const HandoffMetrics& m = mit->second.at(mode);
            md << "| " << model << " | " << mode;
            for (const char* sig : {"tag", "likelihood", "pmi", "any", "all"}) {
                const auto it = m.by_signal.find(sig);
                md << " | " << (it == m.by_signal.end() ? "—" : pct(it->second.first) + " / " + pct(it->second.second));
            }
            md << " | " << fmt(m.own_logprob, 2) << " / " << fmt(m.bad_logprob, 2) << " | " << fmt(m.own_pmi, 2)
               << " / " << fmt(m.bad_pmi, 2) << " | " << m.check_errors << " | " << m.resumed << " | " << fmt(m.cost_ratio_own, 2) << " / "
               << fmt(m.cost_ratio_bad, 2) << " / " << fmt(m.cost_ratio, 2) << " | "
               << fmt(m.added_delay_p50_ms, 0) << " |\n";
        }
    }
    md << "\n";
    if (!bc.series.empty()) {
        plot::write_bar_chart_png(dir + "/handoff.png", bc);
        files.push_back(dir + "/handoff.png");
        md << "![handoff rates](handoff.png)\n\n";
    }
    md << "### Stitched replies\n\nWhat the user would finally see (opener in bold). Replies are cut at the "
          "token "
          "limit.\n\n";
    std::string last_prompt;
    for (const StitchedSample& s : h.samples) {
        const std::string key = s.set + "/" + s.prompt_id;
        if (key != last_prompt) {
            md << "#### " << s.set << " " << cell(s.prompt_id, 40) << ": " << cell(s.prompt, 200) << "\n\n";
            last_prompt = key;
        }
        md << "- " << s.mode << ", " << s.modality << ", " << s.kind << " opener **" << cell(s.opener, 120) << "**"
           << (s.verdict.empty() ? "" : ", verdict `" + s.verdict + "`" + (s.by_check ? " (check)" : ""))
           << (std::isnan(s.pmi) ? "" : ", log p " + fmt(s.logprob, 2) + ", pmi " + fmt(s.pmi, 2))
           << (s.repeated ? ", " + std::to_string(s.repeated) + " repeated words dropped" : "") << ":\n\n";
        md << quote_block(s.shown) << "\n";
    }
}

void latency_section(const LatencyResult& l, const std::string& dir, std::ostringstream& md, ordered_json& js,
                     std::vector<std::string>& files) {
    ordered_json j;
    j["ttft"] = l.ttft;
    j["draws"] = l.draws;
    j["paces_wps"] = l.paces;
    j["cloud_only_first_word"] = latency_stats_json(l.cloud_only);
    ordered_json mj;
    for (const LatencyModelResult& m : l.models) {
        ordered_json x;
        x["first_word_p50_ms"] = num(m.first_word_p50_ms);
        x["first_word_p90_ms"] = num(m.first_word_p90_ms);
        x["opener_p50_ms"] = num(m.opener_p50_ms);
        x["words_mean"] = num(m.words_mean);
        for (const auto& [pace, s] : m.stall) {
            std::string key = "stall_" + pace;  // "stall_text, sized" -> "stall_text_sized"
            std::replace(key.begin(), key.end(), ' ', '_');
            key.erase(std::remove(key.begin(), key.end(), ','), key.end());
            x[key] = latency_stats_json(s);
        }
        mj[m.model] = x;
    }
    j["models"] = mj;
    js["latency"] = j;

    md << "## Perceived latency\n\n";
    md << "Cloud time to first token: " << l.ttft << ". Delivery pace:";
    for (const auto& [pace, wps] : l.paces) md << " " << pace << " " << fmt(wps, 1) << " words/s;";
    md << " " << l.draws
       << " simulated turns per model. The opener's words are delivered from its first word at the "
          "pace; the cloud request leaves when the opener is final. *Stall*: the silence between the last "
          "opener "
          "word and the cloud's first token (0 when the cloud is first, or when the opener ended the reply). "
          "A "
          "cloud-only reply waits the whole time to first token. *Sized*: the opener lengthened, as "
          "`--size-opener` does, to the words whose delivery covers the "
       << fmt(100 * l.sized_quantile, 0) << "th percentile of the wait (at most " << l.max_opener_words
       << " words, its decode time growing in proportion). *Speech, audio*: the opener said by espeak-ng "
          "(its default English voice, at its measured rate), the continuation said when its text arrives or "
          "when the opener's audio ends; the stall is the silence between the opener's last sound and the "
          "continuation's first, found in the samples, less the voice's own pause between two utterances "
          "said back to back.\n\n";
    md << "| reply | first word p50 / p90 | opener p50 | words | wait p50 | wait p90 | wait p99 | no wait |\n"
          "|---|---|---|---|---|---|---|---|\n";
    md << "| cloud only | " << fmt(l.cloud_only.p50, 2) << " s / " << fmt(l.cloud_only.p90, 2)
       << " s | — | — | " << fmt(l.cloud_only.p50, 2) << " s | " << fmt(l.cloud_only.p90, 2) << " s | "
       << fmt(l.cloud_only.p99, 2) << " s | " << pct(l.cloud_only.zero_share) << " |\n";
    for (const LatencyModelResult& m : l.models) {
        for (const auto& [pace, s] : m.stall) {
            md << "| " << m.model << ", " << pace << " | " << fmt(m.first_word_p50_ms, 0) << " ms / "
               << fmt(m.first_word_p90_ms, 0) << " ms | " << fmt(m.opener_p50_ms, 0) << " ms | "
               << fmt(m.words_mean, 1) << " | " << fmt(s.p50, 2) << " s | " << fmt(s.p90, 2) << " s | "
               << fmt(s.p99, 2) << " s | " << pct(s.zero_share) << " |\n";
        }
    }
    md << "\n";
    plot::LineChart lc;
    lc.title = "wait for the cloud: stall after the opener vs cloud only";
    lc.x_label = "seconds";
    lc.y_label = "share of turns waiting at most x";
    lc.x_min = 0;
    lc.x_max = std::max(0.5, std::ceil(quantile(l.cloud_only_draws, 0.99) * 2) / 2);
    lc.y_min = 0;
    lc.y_max = 1;
    lc.series.push_back(cdf_series("cloud only (time to first word)", l.cloud_only_draws));
    lc.series.back().color = plot::kBlack;
    for (const LatencyModelResult& m : l.models)
        for (const auto& [pace, d] : m.stall_draws) lc.series.push_back(cdf_series(m.model + ", " + pace, d));
    plot::write_line_chart_png(dir + "/latency_cdf.png", lc);
    files.push_back(dir + "/latency_cdf.png");
    md << "![latency CDF](latency_cdf.png)\n\n";
}

}  // namespace

std::vector<std::string> write_report(const std::string& out_dir, const EvalReport& r) {
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) throw Error(out_dir + ": cannot create the output folder: " + ec.message());
    std::vector<std::string> files;
    ordered_json js;
    js["microlm_eval"] = 1;
    js["command"] = r.command;
    js["config"] = config_json(r.config);
    ordered_json secs;
    for (const auto& [k, v] : r.seconds) secs[k] = num(v);
    js["seconds"] = secs;

    std::ostringstream md;
    md << "# microlm eval report\n\n";
    md << "Generated by `" << r.command << "`";
    if (r.seconds.count("total")) md << " in " << fmt(r.seconds.at("total"), 0) << " s";
    md << " (seed " << r.config.seed << ", " << r.config.threads << " thread"
       << (r.config.threads == 1 ? "" : "s") << "). Definitions: docs/EVAL.md.\n\n";
    md << "Models: ";
    for (size_t i = 0; i < r.config.models.size(); ++i)
        md << (i ? ", " : "") << "`" << model_name_of(r.config.models[i]) << "`";
    md << ". Judge: " << (r.config.judge.empty() ? "none" : "`" + model_name_of(r.config.judge) + "`") << ".";
    if (!r.plain_frame.empty()) {
        md << " Base models, prompted with a plain `User: …` / `Assistant:` frame (no ChatML in their vocabulary):";
        for (size_t i = 0; i < r.plain_frame.size(); ++i) md << (i ? ", " : " ") << "`" << r.plain_frame[i] << "`";
        md << ".";
    }
    md << "\n\n";
    if (r.openers) openers_section(*r.openers, out_dir, md, js, files);
    if (r.handoff) handoff_section(*r.handoff, r.config, out_dir, md, js, files);
    if (r.latency) latency_section(*r.latency, out_dir, md, js, files);

    write_text(out_dir + "/results.json", js.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
    files.push_back(out_dir + "/results.json");
    write_text(out_dir + "/report.md", md.str());
    files.push_back(out_dir + "/report.md");
    return files;
}

}  // namespace microlm::eval
