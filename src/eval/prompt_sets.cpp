// The evaluation prompt sets and their reference answers, read from the shared data folder
// (AlpacaEval's held-out prompts, MT-Bench, Vicuna, Arena-Hard) or from any JSON-lines file,
// and the shortening of prompts too long for a model's context. Not the scoring (metrics.cpp).
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/eval.h"

namespace microlm::eval {
namespace {

using nlohmann::json;

constexpr size_t kReferenceBytes = 1000;

bool is_continuation(char c) {
    return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// The first ~kReferenceBytes of an answer: every metric reads only its first words.
std::string reference_head(std::string_view text) {
    size_t b = 0;
    while (b < text.size() && (text[b] == ' ' || text[b] == '\n' || text[b] == '\t' || text[b] == '\r')) ++b;
    text.remove_prefix(b);
    if (text.size() <= kReferenceBytes) return std::string(text);
    size_t cut = text.find_last_of(" \n\t", kReferenceBytes);
    if (cut == std::string_view::npos || cut < kReferenceBytes / 2) {
        cut = kReferenceBytes;
        while (cut > 0 && is_continuation(text[cut])) --cut;
    }
    return std::string(text.substr(0, cut));
}

json parse_line(const std::string& line, const std::string& path, uint64_t line_no) {
    try {
        json j = json::parse(line);
        if (!j.is_object()) throw Error(path + ":" + std::to_string(line_no) + ": expected a JSON object");
        return j;
    } catch (const json::exception& e) {
        throw Error(path + ":" + std::to_string(line_no) + ": invalid JSON: " + e.what());
    }
}

std::string id_string(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    return v.dump();
}

template <typename F>
void for_each_record(const std::string& path, F&& f) {
    if (!std::filesystem::exists(path))
        throw Error(path + ": not found (is --data the shared data folder holding chat/ and eval/?)");
    data::LineReader r(path);
    std::string line;
    while (r.next(line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        f(parse_line(line, path, r.line_number()), r.line_number());
    }
}

// A string at j[key], or an error naming the file and line.
std::string need_string(const json& j, const char* key, const std::string& where) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) throw Error(where + ": expected a string \"" + key + "\"");
    return it->get<std::string>();
}

std::vector<EvalPrompt> load_alpaca(const std::string& dir, size_t limit) {
    const std::string path = dir + "/chat/alpaca_eval_outputs.jsonl.zst";
    if (!std::filesystem::exists(path)) throw Error(path + ": not found (is --data the shared data folder?)");
    std::map<int64_t, EvalPrompt> by_id;
    data::LineReader r(path);
    std::string line;
    while (r.next(line)) {
        // 181k answers, 90% of them not held out: read prompt_id before parsing the whole line.
        const size_t at = line.find("\"prompt_id\":");
        if (at != std::string::npos) {
            size_t p = at + 12;
            while (p < line.size() && line[p] == ' ') ++p;
            int64_t id = 0;
            const auto [end, ec] = std::from_chars(line.data() + p, line.data() + line.size(), id);
            if (ec == std::errc() && id % 10 != 0) continue;
        }
        const json j = parse_line(line, path, r.line_number());
        const std::string where = path + ":" + std::to_string(r.line_number());
        const auto pid = j.find("prompt_id");
        if (pid == j.end() || !pid->is_number_integer())
            throw Error(where + ": expected an integer \"prompt_id\"");
        const int64_t id = pid->get<int64_t>();
        if (id % 10 != 0) continue;
        EvalPrompt& e = by_id[id];
        if (e.id.empty()) {
            e.set = "alpaca";
            e.id = std::to_string(id);
            e.prompt = need_string(j, "instruction", where);
        }
        e.references.push_back(reference_head(need_string(j, "output", where)));
    }
    std::vector<EvalPrompt> out;
    for (auto& [id, e] : by_id) {
        if (limit && out.size() >= limit) break;
        out.push_back(std::move(e));
    }
    return out;
}

// AlpacaEval's "vicuna" subset is the Vicuna bench: its ~220 answers per question, keyed by
// the question as HoldOut normalises it.
std::unordered_map<std::string, std::vector<std::string>> alpaca_vicuna_answers(const std::string& dir) {
    std::unordered_map<std::string, std::vector<std::string>> out;
    const std::string path = dir + "/chat/alpaca_eval_outputs.jsonl.zst";
    if (!std::filesystem::exists(path)) return out;
    data::LineReader r(path);
    std::string line;
    while (r.next(line)) {
        if (line.find("\"vicuna\"") == std::string::npos) continue;  // cheap test before parsing
        const json j = parse_line(line, path, r.line_number());
        if (j.value("dataset", "") != "vicuna") continue;
        const std::string where = path + ":" + std::to_string(r.line_number());
        out[data::HoldOut::normalize(need_string(j, "instruction", where))].push_back(
            reference_head(need_string(j, "output", where)));
    }
    return out;
}

// MT-Bench and Vicuna: questions with "turns", GPT-4's answers in choices[0].turns (the answer
// files cover 30 of MT-Bench's 80 questions and 10 of Vicuna's; `more` adds answers by question).
std::vector<EvalPrompt> load_bench(
    const std::string& set, const std::string& questions, const std::string& answers, size_t limit,
    const std::unordered_map<std::string, std::vector<std::string>>& more = {}) {
    std::unordered_map<std::string, std::string> answer_of;
    for_each_record(answers, [&](const json& j, uint64_t line_no) {
        const std::string where = answers + ":" + std::to_string(line_no);
        const auto ch = j.find("choices");
        if (ch == j.end() || !ch->is_array() || ch->empty() || !(*ch)[0].contains("turns") ||
            !(*ch)[0]["turns"].is_array() || (*ch)[0]["turns"].empty() || !(*ch)[0]["turns"][0].is_string())
            throw Error(where + ": expected choices[0].turns[0], the answer's first turn");
        answer_of[id_string(j.at("question_id"))] = (*ch)[0]["turns"][0].get<std::string>();
    });
    std::vector<EvalPrompt> out;
    for_each_record(questions, [&](const json& j, uint64_t line_no) {
        if (limit && out.size() >= limit) return;
        const std::string where = questions + ":" + std::to_string(line_no);
        const auto t = j.find("turns");
        if (t == j.end() || !t->is_array() || t->empty() || !(*t)[0].is_string())
            throw Error(where + ": expected \"turns\" with the first question");
        if (!j.contains("question_id")) throw Error(where + ": expected \"question_id\"");
        EvalPrompt e;
        e.set = set;
        e.id = id_string(j["question_id"]);
        e.prompt = (*t)[0].get<std::string>();
        if (const auto a = answer_of.find(e.id); a != answer_of.end())
            e.references.push_back(reference_head(a->second));
        if (const auto m = more.find(data::HoldOut::normalize(e.prompt)); m != more.end())
            e.references.insert(e.references.end(), m->second.begin(), m->second.end());
        out.push_back(std::move(e));
    });
    return out;
}

std::vector<EvalPrompt> load_arena_hard(const std::string& dir, size_t limit) {
    std::unordered_map<std::string, std::vector<std::string>> answers;
    for (const char* model : {"gpt-4-0314", "gpt-3.5-turbo-0125"}) {
        const std::string path = dir + "/chat/arena_hard_v0.1_" + std::string(model) + ".jsonl.zst";
        if (!std::filesystem::exists(path)) continue;  // references are optional for this set
        for_each_record(path, [&](const json& j, uint64_t) {
            const auto m = j.find("messages");
            if (!j.contains("uid") || m == j.end() || !m->is_array()) return;
            for (const json& msg : *m) {
                if (msg.value("role", "") != "assistant" || !msg.contains("content")) continue;
                const json& c = msg["content"];
                if (c.is_object() && c.contains("answer") && c["answer"].is_string()) {
                    answers[id_string(j["uid"])].push_back(reference_head(c["answer"].get<std::string>()));
                } else if (c.is_string()) {
                    answers[id_string(j["uid"])].push_back(reference_head(c.get<std::string>()));
                }
            }
        });
    }
    const std::string questions = dir + "/eval/arena_hard_v0.1_questions.jsonl";
    std::vector<EvalPrompt> out;
    for_each_record(questions, [&](const json& j, uint64_t line_no) {
        if (limit && out.size() >= limit) return;
        const std::string where = questions + ":" + std::to_string(line_no);
        EvalPrompt e;
        e.set = "arena_hard";
        e.id = need_string(j, "uid", where);
        e.prompt = need_string(j, "prompt", where);
        if (const auto a = answers.find(e.id); a != answers.end()) e.references = a->second;
        out.push_back(std::move(e));
    });
    return out;
}

}  // namespace

std::vector<std::string> known_sets() {
    return {"alpaca", "mt_bench", "vicuna", "arena_hard"};
}

std::vector<EvalPrompt> load_prompt_set(const std::string& name, const std::string& data_dir, size_t limit) {
    if (name == "alpaca") return load_alpaca(data_dir, limit);
    if (name == "mt_bench")
        return load_bench(name, data_dir + "/eval/mt_bench_questions.jsonl",
                          data_dir + "/eval/mt_bench_gpt4_answers.jsonl", limit);
    if (name == "vicuna")
        return load_bench(name, data_dir + "/eval/vicuna_questions.jsonl",
                          data_dir + "/eval/vicuna_gpt4_answers.jsonl", limit,
                          alpaca_vicuna_answers(data_dir));
    if (name == "arena_hard") return load_arena_hard(data_dir, limit);
    throw Error("eval: unknown prompt set '" + name +
                "' (known: alpaca, mt_bench, vicuna, arena_hard; or --prompts FILE)");
}

std::vector<EvalPrompt> load_prompts_file(const std::string& path, size_t limit) {
    const std::string set = std::filesystem::path(path).stem().string();
    std::vector<EvalPrompt> out;
    std::unordered_map<std::string, bool> seen;
    for_each_record(path, [&](const json& j, uint64_t line_no) {
        if (limit && out.size() >= limit) return;
        const std::string where = path + ":" + std::to_string(line_no);
        EvalPrompt e;
        e.set = set;
        e.prompt = need_string(j, "prompt", where);
        if (e.prompt.find_first_not_of(" \t\r\n") == std::string::npos)
            throw Error(where + ": the prompt is empty");
        e.id = j.contains("id") ? id_string(j["id"]) : std::to_string(line_no);
        if (seen[e.id]) throw Error(where + ": id '" + e.id + "' appears twice");
        seen[e.id] = true;
        if (const auto r = j.find("references"); r != j.end()) {
            if (!r->is_array()) throw Error(where + ": \"references\" must be an array of strings");
            for (const json& s : *r) {
                if (!s.is_string()) throw Error(where + ": \"references\" must be an array of strings");
                e.references.push_back(reference_head(s.get<std::string>()));
            }
        }
        out.push_back(std::move(e));
    });
    if (out.empty())
        throw Error(path +
                    ": no prompts (expected JSON lines like {\"prompt\": \"...\", \"references\": [...]})");
    return out;
}

std::string shorten_to_fit(const std::string& text, const std::function<bool(const std::string&)>& fits) {
    if (fits(text)) return text;
    static constexpr std::string_view kGap = " [...] ";
    size_t keep = text.size();
    while (keep > 24) {
        keep = keep * 3 / 4;
        size_t head = keep * 2 / 3;
        while (head > 0 && is_continuation(text[head])) --head;
        size_t tail_from = text.size() - (keep - head);
        while (tail_from < text.size() && is_continuation(text[tail_from])) ++tail_from;
        std::string s = text.substr(0, head);
        s += kGap;
        s += text.substr(tail_from);
        if (fits(s)) return s;
    }
    throw Error(
        "eval: a prompt does not fit the model's context even cut to a few characters; the context is too "
        "small");
}

// The handoff suite's prompts: the first handoff_limit of each set. Here, not in
// suite_handoff.cpp, so that builds without networking can still select them.
std::vector<size_t> handoff_subset(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts) {
    std::map<std::string, size_t> taken;
    std::vector<size_t> out;
    for (size_t i = 0; i < prompts.size(); ++i) {
        const size_t n = taken[prompts[i].set]++;
        if (n >= cfg.handoff_skip && (cfg.handoff_limit == 0 || n < cfg.handoff_skip + cfg.handoff_limit))
            out.push_back(i);
    }
    return out;
}

}  // namespace microlm::eval
