// The shared corpora as documents: one parser per file format (see the Source enum in data.h for
// each record's fields), and the hold-outs that keep evaluation prompts out of training.
// Not tokenization or shard writing (shards.cpp).
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "microlm/data.h"
#include "microlm/error.h"

namespace microlm::data {
namespace {

using nlohmann::json;

std::string basename_of(const std::string& path) {
    return std::filesystem::path(path).filename().string();
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

const std::string& string_field(const json& j, const char* key, const std::string& where) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
        throw Error(
            where + ": expected a string field \"" + key + "\"" +
            (it == j.end() ? std::string(", it is missing") : ", found " + std::string(it->type_name())));
    }
    return it->get_ref<const std::string&>();
}

// An optional true/false field; `absent` when it is not there.
bool bool_field(const json& j, const char* key, bool absent, const std::string& where) {
    const auto it = j.find(key);
    if (it == j.end()) return absent;
    if (!it->is_boolean())
        throw Error(where + ": expected \"" + key + "\" to be true or false, found " + std::string(it->type_name()));
    return it->get<bool>();
}

// "\n\nHuman: ...\n\nAssistant: ..." transcripts (Anthropic HH) as turns.
std::vector<ChatMessage> parse_transcript(std::string_view t) {
    static constexpr std::string_view kHuman = "\n\nHuman:", kAssistant = "\n\nAssistant:";
    std::vector<ChatMessage> out;
    size_t pos = std::min(t.find(kHuman), t.find(kAssistant));
    while (pos != std::string_view::npos) {
        const bool human = t.substr(pos, kHuman.size()) == kHuman;
        const size_t begin = pos + (human ? kHuman.size() : kAssistant.size());
        const size_t next = std::min(t.find(kHuman, begin), t.find(kAssistant, begin));
        out.push_back(
            {human ? "user" : "assistant",
             trim(t.substr(begin, next == std::string_view::npos ? std::string_view::npos : next - begin))});
        pos = next;
    }
    return out;
}

}  // namespace

std::string_view source_name(Source s) {
    switch (s) {
        case Source::kBooks:
            return "books";
        case Source::kAlpacaEval:
            return "alpaca_eval";
        case Source::kSgd:
            return "sgd";
        case Source::kArenaHard:
            return "arena_hard";
        case Source::kGpteacher:
            return "gpteacher";
        case Source::kHhRlhf:
            return "hh_rlhf";
        case Source::kShareGpt:
            return "sharegpt";
        case Source::kChitchat:
            return "chitchat";
        case Source::kGsm8k:
            return "gsm8k";
        case Source::kInstructLab:
            return "instructlab";
        case Source::kGpteacherCodegen:
            return "gpteacher_codegen";
        case Source::kAlpacaSubsets:
            return "alpaca_subsets";
        case Source::kTeacher:
            return "teacher";
    }
    return "?";
}

Source source_of_path(const std::string& path) {
    const std::string name = basename_of(path);
    if (starts_with(name, "gutenberg-")) return Source::kBooks;
    if (starts_with(name, "alpaca_eval_outputs")) return Source::kAlpacaEval;
    if (starts_with(name, "sgd_dialogues")) return Source::kSgd;
    if (starts_with(name, "arena_hard")) return Source::kArenaHard;
    if (starts_with(name, "gpteacher_codegen.jsonl")) return Source::kGpteacherCodegen;
    if (starts_with(name, "gpteacher_")) return Source::kGpteacher;
    if (starts_with(name, "hh_rlhf")) return Source::kHhRlhf;
    if (starts_with(name, "sharegpt")) return Source::kShareGpt;
    if (starts_with(name, "chitchat")) return Source::kChitchat;
    if (starts_with(name, "gsm8k")) return Source::kGsm8k;
    if (starts_with(name, "instructlab")) return Source::kInstructLab;
    if (starts_with(name, "alpaca_subsets")) return Source::kAlpacaSubsets;
    if (starts_with(name, "teacher")) return Source::kTeacher;
    throw Error(path +
                ": the file name does not say which corpus it is (known: gutenberg-*.jsonl.zst, "
                "alpaca_eval_outputs.jsonl.zst, sgd_dialogues.jsonl.zst, arena_hard_*.jsonl.zst, "
                "gpteacher_*.json.zst, hh_rlhf_*.jsonl.gz, sharegpt, chitchat, gsm8k, instructlab, "
                "gpteacher_codegen, alpaca_subsets .jsonl.zst, teacher*.jsonl[.zst] from microlm generate-batch)");
}

double unit_hash(std::string_view key) {
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then splitmix64's finaliser to spread the bits
    for (const char c : key) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return static_cast<double>(h >> 11) * 0x1.0p-53;
}

bool in_validation_split(Source source, const std::string& group, double val_fraction) {
    return unit_hash(std::string(source_name(source)) + ":" + group) < val_fraction;
}

size_t Document::text_bytes() const {
    size_t n = text.size();
    for (const ChatMessage& m : messages) n += m.content.size();
    return n;
}

std::vector<double> source_shares(const std::vector<Source>& sources, const std::vector<double>& sizes,
                                  double budget) {
    std::vector<Source> kinds;
    for (const Source s : sources) {
        if (std::find(kinds.begin(), kinds.end(), s) == kinds.end()) kinds.push_back(s);
    }
    std::vector<double> kind_size(kinds.size(), 0);
    for (size_t i = 0; i < sources.size(); ++i) {
        kind_size[std::find(kinds.begin(), kinds.end(), sources[i]) - kinds.begin()] += sizes[i];
    }
    // Water filling: the smallest source first takes an equal part of what is left, or all of itself.
    std::vector<size_t> order(kinds.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return kind_size[a] < kind_size[b]; });
    std::vector<double> kind_share(kinds.size(), 0);
    double left = budget;
    for (size_t k = 0; k < order.size(); ++k) {
        const double even = left / static_cast<double>(order.size() - k);
        kind_share[order[k]] = std::max(0.0, std::min(even, kind_size[order[k]]));
        left -= kind_share[order[k]];
    }
    std::vector<double> share(sizes.size(), 0);
    for (size_t i = 0; i < sizes.size(); ++i) {
        const size_t k =
            static_cast<size_t>(std::find(kinds.begin(), kinds.end(), sources[i]) - kinds.begin());
        if (kind_size[k] > 0) share[i] = kind_share[k] * sizes[i] / kind_size[k];
    }
    return share;
}

// ---- HoldOut ---------------------------------------------------------------------------------

std::string HoldOut::normalize(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    bool space = false;
    for (const char c : text) {
        if (is_space(c)) {
            space = true;
            continue;
        }
        if (space && !out.empty()) out.push_back(' ');
        space = false;
        out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c);
    }
    return out;
}

void HoldOut::add_question(std::string_view text) {
    std::string n = normalize(text);
    if (!n.empty()) questions_.insert(std::move(n));
}

bool HoldOut::is_eval_question(std::string_view user_text) const {
    return !questions_.empty() && questions_.count(normalize(user_text)) > 0;
}

HoldOut HoldOut::from_eval_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        throw Error(dir +
                    ": no such folder of eval questions (pass the data's eval/ folder; the hold-outs "
                    "cannot be enforced without it)");
    }
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.is_regular_file(ec) && e.path().extension() == ".jsonl") files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    HoldOut h;
    std::string line;
    for (const std::string& f : files) {
        LineReader r(f);
        while (r.next(line)) {
            if (trim(line).empty()) continue;
            json j;
            try {
                j = json::parse(line);
            } catch (const json::exception& e) {
                throw Error(f + ":" + std::to_string(r.line_number()) + ": invalid JSON: " + e.what());
            }
            if (!j.is_object()) continue;
            if (const auto t = j.find("turns"); t != j.end() && t->is_array()) {
                for (const json& q : *t) {
                    if (q.is_string()) h.add_question(q.get_ref<const std::string&>());
                }
            }
            if (const auto p = j.find("prompt"); p != j.end() && p->is_string()) {
                h.add_question(p->get_ref<const std::string&>());
            }
        }
    }
    if (h.size() == 0) {
        throw Error(dir +
                    ": found no eval questions in *.jsonl (expected records with \"turns\" or \"prompt\")");
    }
    return h;
}

std::optional<std::string> eval_dir_beside(const std::vector<std::string>& inputs) {
    namespace fs = std::filesystem;
    for (const std::string& in : inputs) {
        const fs::path dir = fs::path(in).parent_path().parent_path() / "eval";
        std::error_code ec;
        if (fs::is_directory(dir, ec)) return dir.string();
    }
    return std::nullopt;
}

HoldOut hold_out_for(const std::string& eval_dir, const std::vector<std::string>& inputs) {
    namespace fs = std::filesystem;
    for (const std::string& in : inputs) {
        std::error_code ec;
        if (!fs::exists(in, ec)) throw Error(in + ": no such file");
    }
    if (!eval_dir.empty()) return HoldOut::from_eval_dir(eval_dir);
    const auto found = eval_dir_beside(inputs);
    if (!found) throw Error("no eval/ folder beside the inputs; pass --eval-dir (the hold-outs need it)");
    return HoldOut::from_eval_dir(*found);
}

// ---- DocumentReader --------------------------------------------------------------------------

DocumentReader::DocumentReader(const std::string& path, const HoldOut& hold_out, double sample)
    : path_(path), source_(source_of_path(path)), hold_out_(hold_out), sample_(sample) {
    if (source_ == Source::kArenaHard) {
        // Answers to the Arena-Hard eval prompts: every record is held out, so none is read.
        InputFile probe(path);  // still report a missing file
        stats_.skipped_file = true;
        return;
    }
    if (source_ == Source::kGpteacher) {
        array_ = std::make_unique<JsonArrayReader>(path);
    } else {
        lines_ = std::make_unique<LineReader>(path);
    }
}

DocumentReader::~DocumentReader() = default;

bool DocumentReader::next_record(std::string& text) {
    if (lines_) {
        while (lines_->next(text)) {
            if (!trim(text).empty()) return true;
        }
        return false;
    }
    if (array_) return array_->next(text);
    return false;
}

bool DocumentReader::next(Document& doc) {
    std::string record;
    for (;;) {
        if (book_pos_ < book_.text.size()) {
            if (!next_passage(doc)) continue;
        } else if (next_record(record)) {
            ++stats_.records;
            doc = Document{};
            if (!parse(record, doc)) continue;
            if (source_ == Source::kBooks) {
                book_ = std::move(doc);
                book_pos_ = 0;
                book_passage_ = 0;
                continue;
            }
        } else {
            return false;
        }
        if (sample_ < 1.0 && unit_hash(doc.id) >= sample_) {
            ++stats_.sampled_out;
            continue;
        }
        ++stats_.documents;
        return true;
    }
}

// The next passage of book_: at least kPassageBytes, ending at a paragraph break (the break
// itself dropped); a tail shorter than a quarter passage joins the one before it. False when
// the passage is only whitespace.
bool DocumentReader::next_passage(Document& doc) {
    const std::string& t = book_.text;
    size_t end = t.size(), resume = t.size();
    if (t.size() - book_pos_ > kPassageBytes + kPassageBytes / 4) {
        const size_t brk = t.find("\n\n", book_pos_ + kPassageBytes);
        if (brk != std::string::npos && t.size() - brk > kPassageBytes / 4) {
            end = brk;
            resume = brk + 2;
        }
    }
    doc = Document{};
    doc.id = book_.id + ":" + std::to_string(book_passage_++);
    doc.group = book_.group;
    doc.text = trim(std::string_view(t).substr(book_pos_, end - book_pos_));
    book_pos_ = resume;
    if (book_pos_ >= t.size()) book_ = Document{};
    return !doc.text.empty();
}

std::string DocumentReader::location() const {
    return lines_ ? path_ + ":" + std::to_string(lines_->line_number())
                  : path_ + ": element " + std::to_string(array_->index() - 1);
}

// Fills `doc` from one record; false (with the reason counted) when it must not be trained on.
// The handler turns nlohmann's errors (invalid JSON, a field of another type) into ours.
bool DocumentReader::parse(const std::string& record, Document& doc) try {
    const std::string where = location();
    const json j = json::parse(record);
    if (!j.is_object()) throw Error(where + ": expected a JSON object, found " + std::string(j.type_name()));

    const auto user_is_eval = [&] {
        return std::any_of(doc.messages.begin(), doc.messages.end(), [&](const ChatMessage& m) {
            return m.role == "user" && hold_out_.is_eval_question(m.content);
        });
    };
    const auto has_reply = [&] {
        return std::any_of(doc.messages.begin(), doc.messages.end(),
                           [](const ChatMessage& m) { return m.role == "assistant" && !m.content.empty(); });
    };

    switch (source_) {
        case Source::kBooks: {
            doc.id = "books:" + string_field(j, "id", where);
            doc.group = doc.id;
            doc.text = string_field(j, "text", where);
            if (trim(doc.text).empty()) {
                ++stats_.empty;
                return false;
            }
            return true;
        }
        case Source::kAlpacaEval: {
            const auto pid = j.find("prompt_id");
            if (pid == j.end() || !pid->is_number_integer())
                throw Error(where + ": expected an integer \"prompt_id\"");
            const int64_t prompt_id = pid->get<int64_t>();
            if (prompt_id % 10 == 0) {  // AlpacaEval's scoring set
                ++stats_.held_out_prompt_id;
                return false;
            }
            // The "vicuna" subset is the Vicuna bench itself; the question set catches it too.
            if (j.value("dataset", std::string()) == "vicuna") {
                ++stats_.held_out_eval;
                return false;
            }
            doc.id = "alpaca_eval:" + std::to_string(prompt_id) + ":" + j.value("generator", std::string());
            doc.group = "alpaca_eval:" + std::to_string(prompt_id);
            doc.messages.push_back({"user", trim(string_field(j, "instruction", where))});
            doc.messages.push_back({"assistant", trim(string_field(j, "output", where))});
            break;
        }
        case Source::kSgd: {
            doc.id = "sgd:" + string_field(j, "dialogue_id", where);
            doc.group = doc.id;
            const auto turns = j.find("turns");
            if (turns == j.end() || !turns->is_array()) throw Error(where + ": expected an array \"turns\"");
            for (const json& t : *turns) {
                if (!t.is_object()) throw Error(where + ": expected objects in \"turns\"");
                const std::string& speaker = string_field(t, "speaker", where);
                if (speaker != "USER" && speaker != "SYSTEM") {
                    throw Error(where + ": turn speaker is '" + speaker + "', expected USER or SYSTEM");
                }
                doc.messages.push_back(
                    {speaker == "USER" ? "user" : "assistant", trim(string_field(t, "text", where))});
            }
            break;
        }
        case Source::kGpteacher: {
            doc.id = std::string(source_name(source_)) + ":" + basename_of(path_) + ":" +
                     std::to_string(array_->index() - 1);
            doc.group = doc.id;
            const std::string instruction = trim(string_field(j, "instruction", where));
            const std::string input = trim(j.value("input", std::string()));
            if (hold_out_.is_eval_question(instruction)) {
                ++stats_.held_out_eval;
                return false;
            }
            doc.messages.push_back({"user", input.empty() ? instruction : instruction + "\n\n" + input});
            doc.messages.push_back({"assistant", trim(string_field(j, "output", where))});
            break;
        }
        case Source::kHhRlhf: {
            doc.id = "hh_rlhf:" + basename_of(path_) + ":" + std::to_string(lines_->line_number());
            doc.group = doc.id;
            doc.messages = parse_transcript(string_field(j, "chosen", where));
            while (!doc.messages.empty() && doc.messages.back().role == "assistant" &&
                   doc.messages.back().content.empty()) {
                doc.messages.pop_back();
            }
            break;
        }
        case Source::kShareGpt:
        case Source::kChitchat:
        case Source::kGsm8k:
        case Source::kInstructLab:
        case Source::kGpteacherCodegen:
        case Source::kAlpacaSubsets:
        case Source::kTeacher: {
            if (source_ == Source::kShareGpt && !j.value("en_like", false)) {
                ++stats_.not_english;
                return false;
            }
            const std::string line = std::to_string(lines_->line_number());
            doc.id = std::string(source_name(source_)) + ":" + line;
            // A conversation's turns share a split (chitchat and ShareGPT carry its id).
            const auto conv = j.find("id");
            doc.group = conv != j.end() && conv->is_string()
                            ? std::string(source_name(source_)) + ":" + conv->get<std::string>()
                            : doc.id;
            doc.messages.push_back({"user", trim(string_field(j, "prompt", where))});
            doc.messages.push_back({"assistant", trim(string_field(j, "reply", where))});
            // A teacher's reply ended only where its record says so (files from before the
            // "ended" field: never, as their replies were cut at --max-tokens).
            doc.reply_cut = source_ == Source::kTeacher && !bool_field(j, "ended", false, where);
            if (doc.messages.front().content.empty()) {
                ++stats_.empty;
                return false;
            }
            break;
        }
        case Source::kArenaHard:
            return false;
    }
    if (user_is_eval()) {
        ++stats_.held_out_eval;
        return false;
    }
    if (!has_reply()) {
        ++stats_.empty;
        return false;
    }
    return true;
} catch (const json::exception& e) {
    throw Error(location() + ": " + e.what());
}

}  // namespace microlm::data
