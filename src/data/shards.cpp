// Documents -> token shards: ChatML encoding with loss masks, the train/val split, shard files
// written under temporary names and committed by rename, and manifest.json (format in data.h).
// Not the readers (sources.cpp, input_file.cpp).
#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <tuple>

#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/stopwatch.h"
#include "microlm/thread_pool.h"

namespace microlm::data {
namespace {

namespace fs = std::filesystem;

struct Specials {
    int32_t eot, im_start, im_end;
};

Specials find_specials(const Tokenizer& tok) {
    Specials s{tok.token_id("<|endoftext|>"), tok.token_id("<|im_start|>"), tok.token_id("<|im_end|>")};
    if (s.eot < 0 || s.im_start < 0 || s.im_end < 0) {
        throw Error(
            "the tokenizer lacks a ChatML special token (<|endoftext|>, <|im_start|>, <|im_end|>); "
            "train one with `microlm tokenizer-train`");
    }
    if (tok.n_vocab() > 65536) {
        throw Error("the tokenizer has " + std::to_string(tok.n_vocab()) +
                    " tokens, more than the 65536 that uint16 shards can hold");
    }
    return s;
}

std::string shard_name(std::string_view split, size_t index, std::string_view ext) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "-%05zu.", index);
    return std::string(split) + buf + std::string(ext);
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::rename(from, to, ec);
    if (ec)
        throw Error(to.string() + ": cannot move " + from.filename().string() +
                    " into place: " + ec.message());
}

// Temporary files of this run; removed unless committed, so a failure leaves no half shards.
class TempFiles {
public:
    ~TempFiles() {
        for (const auto& p : paths_) {
            std::error_code ec;
            fs::remove(p, ec);
        }
    }
    void add(fs::path p) { paths_.push_back(std::move(p)); }
    void forget(const fs::path& p) {
        paths_.erase(std::remove(paths_.begin(), paths_.end(), p), paths_.end());
    }

private:
    std::vector<fs::path> paths_;
};

class OutFile {
public:
    OutFile(const fs::path& path, TempFiles& temps) : path_(path) {
        f_ = std::fopen(path.c_str(), "wb");
        if (!f_) throw Error(path.string() + ": cannot create: " + std::strerror(errno));
        temps.add(path);
        std::setvbuf(f_, nullptr, _IOFBF, size_t{1} << 20);
    }
    ~OutFile() {
        if (f_) std::fclose(f_);
    }
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;
    void write(const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n)
            throw Error(path_.string() + ": write failed: " + std::strerror(errno));
    }
    void close() {
        const int rc = std::fclose(f_);
        f_ = nullptr;
        if (rc != 0) throw Error(path_.string() + ": write failed: " + std::strerror(errno));
    }

private:
    fs::path path_;
    std::FILE* f_ = nullptr;
};

// One split's stream of tokens, cut into shard files of at most `shard_tokens` tokens.
class ShardWriter {
public:
    struct Shard {
        std::string tok, mask;
        uint64_t tokens = 0;
    };

    ShardWriter(fs::path dir, std::string split, int64_t shard_tokens, TempFiles& temps)
        : dir_(std::move(dir)),
          split_(std::move(split)),
          cap_(static_cast<uint64_t>(shard_tokens)),
          temps_(temps) {}

    void write(const EncodedDocument& d) {
        size_t at = 0;
        while (at < d.ids.size()) {
            if (!tok_ || shards_.back().tokens == cap_) open_next();
            const size_t n = std::min<size_t>(d.ids.size() - at, cap_ - shards_.back().tokens);
            if constexpr (std::endian::native == std::endian::little) {
                tok_->write(d.ids.data() + at, n * sizeof(uint16_t));
            } else {
                std::vector<uint8_t> le(n * 2);
                for (size_t i = 0; i < n; ++i) {
                    le[2 * i] = static_cast<uint8_t>(d.ids[at + i]);
                    le[2 * i + 1] = static_cast<uint8_t>(d.ids[at + i] >> 8);
                }
                tok_->write(le.data(), le.size());
            }
            mask_->write(d.mask.data() + at, n);
            shards_.back().tokens += n;
            at += n;
        }
    }

    void close() {
        if (tok_) {
            tok_->close();
            mask_->close();
        }
    }

    // Renames the temporary files to their final names.
    void commit() {
        for (const Shard& s : shards_) {
            for (const std::string& name : {s.tok, s.mask}) {
                const fs::path tmp = temp_path(name);
                rename_or_throw(tmp, dir_ / name);
                temps_.forget(tmp);
            }
        }
    }

    const std::vector<Shard>& shards() const { return shards_; }

private:
    fs::path temp_path(const std::string& name) const { return dir_ / (".partial-" + name); }

    void open_next() {
        close();
        Shard s{shard_name(split_, shards_.size(), "tok"), shard_name(split_, shards_.size(), "mask"), 0};
        tok_ = std::make_unique<OutFile>(temp_path(s.tok), temps_);
        mask_ = std::make_unique<OutFile>(temp_path(s.mask), temps_);
        shards_.push_back(std::move(s));
    }

    fs::path dir_;
    std::string split_;
    uint64_t cap_;
    TempFiles& temps_;
    std::vector<Shard> shards_;
    std::unique_ptr<OutFile> tok_, mask_;
};

nlohmann::ordered_json counts_json(const SplitCounts& c) {
    return {{"docs", c.docs}, {"tokens", c.tokens}, {"targets", c.targets}};
}

// The sampling plan. Without a token budget every document is kept and the inputs advance
// equally by text bytes. With one, a first pass measures each input's text and, on its first
// documents, its bytes per token; the budget is shared out in tokens (source_shares), each
// input is sampled down to its share, and the inputs advance in proportion to their shares.
struct Plan {
    std::vector<double> keep;  // sampling fraction per input
    std::vector<double> pace;  // text bytes per input that one "round" of interleaving is worth
};

// o.sample times the input's source_sample entry, if it has one.
double base_sample(const ShardOptions& o, const std::string& input) {
    const std::string_view name = source_name(source_of_path(input));
    for (const auto& [source, fraction] : o.source_sample) {
        if (source == name) return o.sample * fraction;
    }
    return o.sample;
}

Plan plan_sampling(const Tokenizer& tok, const HoldOut& hold_out, const ShardOptions& o,
                   const std::optional<std::string>& default_system) {
    const size_t n_in = o.inputs.size();
    Plan plan{std::vector<double>(n_in, 1.0), std::vector<double>(n_in, 1.0)};
    for (size_t i = 0; i < n_in; ++i) plan.keep[i] = base_sample(o, o.inputs[i]);
    if (o.max_tokens == 0) return plan;
    std::vector<double> tokens(n_in, 0), bytes_per_token(n_in, 4.0);
    std::vector<Source> sources;
    EncodedDocument e;
    for (size_t i = 0; i < n_in; ++i) {
        DocumentReader r(o.inputs[i], hold_out, plan.keep[i]);
        sources.push_back(r.source());
        Document d;
        double bytes = 0, probe_bytes = 0, probe_tokens = 0;
        while (r.next(d)) {
            bytes += static_cast<double>(d.text_bytes());
            if (probe_bytes < 256e3) {
                encode_document(tok, d, default_system, e, o.limits);
                probe_bytes += static_cast<double>(d.text_bytes());
                probe_tokens += static_cast<double>(e.ids.size());
            }
        }
        if (probe_bytes > 0 && probe_tokens > 0) bytes_per_token[i] = probe_bytes / probe_tokens;
        tokens[i] = bytes / bytes_per_token[i];
    }
    // A little over the budget, so that the cut ends the run rather than an estimate's error.
    const std::vector<double> share =
        source_shares(sources, tokens, 1.05 * static_cast<double>(o.max_tokens));
    for (size_t i = 0; i < n_in; ++i) {
        if (tokens[i] > 0) plan.keep[i] *= std::min(1.0, share[i] / tokens[i]);
        plan.pace[i] = std::max(1.0, share[i] * bytes_per_token[i]);
    }
    return plan;
}

void write_manifest(const fs::path& path, const Tokenizer& tok, const HoldOut& hold_out,
                    const ShardOptions& o, const ShardSummary& sum, const ShardWriter& train,
                    const ShardWriter& val, const std::optional<std::string>& default_system,
                    TempFiles& temps) {
    const VocabData& v = tok.vocab();
    const Specials sp = find_specials(tok);
    nlohmann::ordered_json m;
    m["format"] = "microlm-shards-1";
    m["ids"] = "uint16 little-endian, one file per shard (*.tok)";
    m["mask"] = "uint8 per token (*.mask): 1 where the loss is taken on predicting that token";
    m["tokenizer"] = {{"path", o.tokenizer_path},
                      {"fingerprint", vocab_fingerprint(v)},
                      {"vocab_size", v.tokens.size()},
                      {"pre", v.pre},
                      {"endoftext", sp.eot},
                      {"im_start", sp.im_start},
                      {"im_end", sp.im_end},
                      {"default_system", default_system ? nlohmann::ordered_json(*default_system) : nullptr}};
    m["options"] = {{"val_fraction", o.val_fraction},
                    {"sample", o.sample},
                    {"max_tokens", o.max_tokens},
                    {"shard_tokens", o.shard_tokens},
                    {"opener_tokens", o.limits.opener_tokens},
                    {"prompt_tokens", o.limits.prompt_tokens}};
    for (const auto& [source, fraction] : o.source_sample) m["options"]["source_sample"][source] = fraction;
    m["hold_out"] = {{"eval_questions", hold_out.size()},
                     {"rules",
                      "AlpacaEval prompt_id % 10 == 0 and its vicuna subset; Arena-Hard answer files; "
                      "any record whose user turn equals an eval question (MT-Bench, Vicuna, Arena-Hard)"}};
    for (const auto& [name, w, c] :
         {std::tuple{"train", &train, &sum.train}, std::tuple{"val", &val, &sum.val}}) {
        nlohmann::ordered_json s = counts_json(*c);
        s["shards"] = nlohmann::ordered_json::array();
        for (const auto& sh : w->shards())
            s["shards"].push_back({{"ids", sh.tok}, {"mask", sh.mask}, {"tokens", sh.tokens}});
        m["splits"][name] = s;
    }
    m["sources"] = nlohmann::ordered_json::array();
    for (const InputSummary& in : sum.inputs) {
        const ReadStats& r = in.read;
        m["sources"].push_back({{"path", in.path},
                                {"source", source_name(in.source)},
                                {"sample", in.sample},
                                {"records", r.records},
                                {"skipped_file", r.skipped_file},
                                {"held_out_prompt_id", r.held_out_prompt_id},
                                {"held_out_eval_question", r.held_out_eval},
                                {"empty", r.empty},
                                {"sampled_out", r.sampled_out},
                                {"train", counts_json(in.train)},
                                {"val", counts_json(in.val)}});
    }
    const std::string text = m.dump(2) + "\n";
    OutFile f(path, temps);
    f.write(text.data(), text.size());
    f.close();
}

// Readers take manifest.json as the sign that a folder is complete, so a previous run's goes
// first and the new one comes last; in between, the shards are renamed into place and those of
// a previous run that this one did not write are removed.
void commit(const fs::path& dir, ShardWriter& train, ShardWriter& val, TempFiles& temps) {
    const fs::path manifest_tmp = dir / ".partial-manifest.json";
    std::error_code ec;
    fs::remove(dir / "manifest.json", ec);
    train.commit();
    val.commit();
    std::vector<std::string> written;
    for (const ShardWriter* w : {&train, &val}) {
        for (const auto& sh : w->shards()) {
            written.push_back(sh.tok);
            written.push_back(sh.mask);
        }
    }
    // Our shard names: (train|val)-NNNNN.(tok|mask).
    const auto ours = [](const std::string& name) {
        const size_t dash = name.find('-');
        if (dash == std::string::npos || (name.compare(0, dash, "train") != 0 && name.compare(0, dash, "val") != 0)) {
            return false;
        }
        const std::string rest = name.substr(dash + 1);
        if (rest.size() < 6 || rest[5] != '.') return false;
        for (size_t i = 0; i < 5; ++i) {
            if (rest[i] < '0' || rest[i] > '9') return false;
        }
        const std::string ext = rest.substr(6);
        return ext == "tok" || ext == "mask";
    };
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (ours(name) &&
            std::find(written.begin(), written.end(), name) == written.end()) {
            fs::remove(e.path(), ec);
        }
    }
    rename_or_throw(manifest_tmp, dir / "manifest.json");
    temps.forget(manifest_tmp);
}

}  // namespace

void encode_document(const Tokenizer& tok, const Document& doc,
                     const std::optional<std::string>& default_system, EncodedDocument& out,
                     const EncodeLimits& limits) {
    const Specials sp = find_specials(tok);
    out.ids.clear();
    out.mask.clear();
    const auto put = [&](int32_t id, uint8_t target) {
        out.ids.push_back(static_cast<uint16_t>(id));
        out.mask.push_back(target);
    };
    // Text from the corpora is never parsed for special tokens: "<|im_end|>" in a book stays text.
    const auto ids_of = [&](std::string_view s) {
        return tok.encode(s, /*add_special=*/false, /*parse_special=*/false);
    };
    const auto put_ids = [&](const std::vector<int32_t>& ids, size_t n, uint8_t target) {
        for (size_t i = 0; i < n && i < ids.size(); ++i) put(ids[i], target);
    };
    const auto put_text = [&](std::string_view s, uint8_t target) {
        const auto ids = ids_of(s);
        put_ids(ids, ids.size(), target);
    };

    if (!doc.is_chat()) {
        put_text(doc.text, 1);
        put(sp.eot, 1);
        return;
    }
    const bool opener = limits.opener_tokens > 0;
    const auto turn = [&](const ChatMessage& m) {
        put(sp.im_start, 0);
        if (m.role == "assistant") {
            put_text("assistant\n", 0);
            // An opener needs only the reply's start: encode a prefix that ends at a space
            // well past N tokens (no token is shorter than a byte), then the whole reply only
            // when the prefix was too short to be sure of its first N tokens.
            std::string_view text = m.content;
            if (opener) {
                const size_t want = static_cast<size_t>(limits.opener_tokens) * 8 + 64;
                const size_t space = want < text.size() ? text.find(' ', want) : std::string_view::npos;
                if (space != std::string_view::npos) text = text.substr(0, space);
            }
            auto reply = ids_of(text);
            bool whole = text.size() == m.content.size();
            if (!whole && reply.size() < static_cast<size_t>(limits.opener_tokens) + 4) {
                reply = ids_of(m.content);
                whole = true;
            }
            const auto keep = static_cast<size_t>(opener ? limits.opener_tokens : static_cast<int64_t>(reply.size()));
            put_ids(reply, keep, 1);
            if (keep < reply.size() || !whole || doc.reply_cut) return;  // an opener cut: no end of turn
            put(sp.im_end, 1);  // learning to stop is part of the reply
        } else if (m.role == "user" && limits.prompt_tokens > 0) {
            put_text("user\n", 0);
            const auto text = ids_of(m.content);
            const auto limit = static_cast<size_t>(limits.prompt_tokens);
            if (text.size() <= limit) {
                put_ids(text, text.size(), 0);
            } else {
                const size_t head = limit * 2 / 3, tail = limit - head;
                put_ids(text, head, 0);
                put_text(" [...] ", 0);
                for (size_t i = text.size() - tail; i < text.size(); ++i) put(text[i], 0);
            }
            put(sp.im_end, 0);
        } else {
            put_text(m.role + "\n" + m.content, 0);
            put(sp.im_end, 0);
        }
        put_text("\n", 0);
    };
    if (default_system && doc.messages.front().role != "system") turn({"system", *default_system});
    bool seen_user = false;
    for (const ChatMessage& m : doc.messages) {
        if (opener && m.role == "assistant" && !seen_user) continue;  // a reply before any question
        turn(m);
        seen_user = seen_user || m.role == "user";
        if (opener && m.role == "assistant") break;
    }
    put(sp.eot, 0);
}

std::string vocab_fingerprint(const VocabData& v) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const auto bytes = [&](const void* p, size_t n) {
        for (size_t i = 0; i < n; ++i) {
            h ^= static_cast<const uint8_t*>(p)[i];
            h *= 0x100000001b3ULL;
        }
    };
    const auto num = [&](int64_t x) {  // little-endian, so that every machine agrees
        uint8_t le[8];
        for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(static_cast<uint64_t>(x) >> (8 * i));
        bytes(le, sizeof le);
    };
    const auto str = [&](std::string_view s) {  // length-prefixed, so that lists cannot alias
        num(static_cast<int64_t>(s.size()));
        bytes(s.data(), s.size());
    };
    str(v.model);
    str(v.pre);
    num(static_cast<int64_t>(v.tokens.size()));
    for (const auto& t : v.tokens) str(t);
    num(static_cast<int64_t>(v.token_types.size()));
    for (const int32_t t : v.token_types) num(t);
    num(static_cast<int64_t>(v.merges.size()));
    for (const auto& m : v.merges) str(m);
    for (const int32_t id : {v.bos_id, v.eos_id, v.eot_id, v.pad_id, v.unk_id}) num(id);
    num(v.add_bos);
    num(v.add_eos);
    num(v.add_space_prefix);
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return std::string("fnv1a64:") + buf;
}

ShardSummary build_shards(const Tokenizer& tok, const HoldOut& hold_out, const ShardOptions& o,
                          const std::function<void(const ShardProgress&)>& progress) {
    const Stopwatch t0;
    if (o.inputs.empty()) throw Error("no input files");
    if (o.out_dir.empty()) throw Error("no output folder");
    if (!(o.val_fraction >= 0 && o.val_fraction < 1)) {
        throw Error("validation fraction " + std::to_string(o.val_fraction) + " is outside [0, 1)");
    }
    if (!(o.sample > 0 && o.sample <= 1))
        throw Error("sample fraction " + std::to_string(o.sample) + " is outside (0, 1]");
    if (o.shard_tokens <= 0) throw Error("tokens per shard must be positive");
    if (o.max_tokens < 0) throw Error("the token limit must not be negative");
    for (const auto& [source, fraction] : o.source_sample) {
        std::string known;
        bool found = false;
        for (const Source k : {Source::kBooks, Source::kAlpacaEval, Source::kSgd, Source::kArenaHard, Source::kGpteacher,
                               Source::kHhRlhf, Source::kShareGpt, Source::kChitchat, Source::kGsm8k,
                               Source::kInstructLab, Source::kGpteacherCodegen, Source::kAlpacaSubsets,
                               Source::kTeacher}) {
            found = found || source_name(k) == source;
            if (!known.empty()) known.push_back(' ');
            known.append(source_name(k));
        }
        if (!found) throw Error("source sample: no source is named '" + source + "' (known: " + known + ")");
        if (!(fraction > 0 && fraction <= 1)) {
            throw Error("sample fraction " + std::to_string(fraction) + " for source '" + source + "' is outside (0, 1]");
        }
    }
    find_specials(tok);
    const std::optional<std::string> default_system = chat_template_default_system(tok.vocab().chat_template);

    const size_t n_in = o.inputs.size();
    const Plan plan = plan_sampling(tok, hold_out, o, default_system);

    // Every input is opened before anything is written, so a wrong path fails at once.
    std::vector<std::unique_ptr<DocumentReader>> readers;
    ShardSummary sum;
    for (size_t i = 0; i < n_in; ++i) {
        readers.push_back(std::make_unique<DocumentReader>(o.inputs[i], hold_out, plan.keep[i]));
        sum.inputs.push_back({o.inputs[i], readers.back()->source(), plan.keep[i], {}, {}, {}});
    }

    const fs::path dir(o.out_dir);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) throw Error(o.out_dir + ": cannot create the output folder: " + ec.message());
    TempFiles temps;
    ShardWriter train(dir, "train", o.shard_tokens, temps), val(dir, "val", o.shard_tokens, temps);

    ThreadPool pool(std::max(1, o.threads));
    // A batch is what the threads tokenize between two writes; its size bounds memory.
    const size_t batch_bytes = size_t{4} << 20, batch_docs = 512;
    std::vector<Document> docs;
    std::vector<size_t> from;
    std::vector<EncodedDocument> enc;
    std::vector<double> given(readers.size(), 0);
    std::vector<bool> active(readers.size(), true);
    uint64_t total_tokens = 0, total_docs = 0;
    bool stop = false;
    while (!stop) {
        docs.clear();
        from.clear();
        size_t bytes = 0;
        while (bytes < batch_bytes * static_cast<size_t>(pool.size()) && docs.size() < batch_docs) {
            size_t pick = readers.size();
            for (size_t i = 0; i < readers.size(); ++i) {
                if (active[i] &&
                    (pick == readers.size() || given[i] / plan.pace[i] < given[pick] / plan.pace[pick]))
                    pick = i;
            }
            if (pick == readers.size()) break;
            Document d;
            if (!readers[pick]->next(d)) {
                active[pick] = false;
                continue;
            }
            const size_t n = d.text_bytes();
            given[pick] += static_cast<double>(n);
            bytes += n;
            docs.push_back(std::move(d));
            from.push_back(pick);
        }
        if (docs.empty()) break;

        enc.resize(docs.size());
        std::mutex err_mu;
        std::exception_ptr err;
        pool.run(static_cast<int64_t>(docs.size()), [&](int64_t i) {
            try {
                encode_document(tok, docs[i], default_system, enc[i], o.limits);
            } catch (...) {
                const std::lock_guard<std::mutex> lock(err_mu);
                if (!err) err = std::current_exception();
            }
        });
        if (err) std::rethrow_exception(err);

        for (size_t i = 0; i < docs.size(); ++i) {
            InputSummary& in = sum.inputs[from[i]];
            const bool is_val = in_validation_split(in.source, docs[i].group, o.val_fraction);
            (is_val ? val : train).write(enc[i]);
            SplitCounts& c = is_val ? in.val : in.train;
            const auto targets = static_cast<uint64_t>(std::count(enc[i].mask.begin(), enc[i].mask.end(), 1));
            for (SplitCounts* s : {&c, is_val ? &sum.val : &sum.train}) {
                s->docs += 1;
                s->tokens += enc[i].ids.size();
                s->targets += targets;
            }
            total_tokens += enc[i].ids.size();
            total_docs += 1;
            sum.text_bytes += docs[i].text_bytes();
            if (o.max_tokens > 0 && total_tokens >= static_cast<uint64_t>(o.max_tokens)) {
                stop = true;
                break;
            }
        }
        if (progress) {
            progress({total_docs, total_tokens, sum.text_bytes,
                      t0.seconds()});
        }
    }
    for (size_t i = 0; i < readers.size(); ++i) sum.inputs[i].read = readers[i]->stats();
    train.close();
    val.close();

    write_manifest(dir / ".partial-manifest.json", tok, hold_out, o, sum, train, val, default_system, temps);
    commit(dir, train, val, temps);
    sum.seconds = t0.seconds();
    return sum;
}

}  // namespace microlm::data
