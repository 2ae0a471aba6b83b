// `microlm generate-batch`: a model's replies to the first questions of chat corpora, many
// decoded together (generate_batch), written as JSON lines {prompt, reply, id, model} that
// `microlm data --chat` reads back as the `teacher` source: a teacher's openers for every
// training prompt (sequence-level distillation). The corpora are read with the same hold-outs
// as `microlm data`, and a run that stops resumes where it was: ids already in the output are
// skipped and the rest appended.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "commands.h"
#include "microlm/chat.h"
#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/generate.h"
#include "microlm/local_model.h"
#include "progress.h"

namespace microlm::cli {
namespace {

// The ids already written by an earlier run. A last line cut short by a crash is removed from
// the file, so that appending continues from whole records.
std::set<std::string> ids_done(const std::string& path) {
    std::set<std::string> ids;
    if (!std::filesystem::exists(path)) return ids;
    std::ifstream f(path, std::ios::binary);
    std::string line;
    uint64_t good_bytes = 0, line_no = 0;
    while (std::getline(f, line)) {
        ++line_no;
        const bool complete = !f.eof();  // getline hit '\n'
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
            if (complete) throw Error(path + ":" + std::to_string(line_no) + ": not a JSON record; not resuming into it");
            break;
        }
        if (!complete) break;
        if (!j.contains("id") || !j["id"].is_string())
            throw Error(path + ":" + std::to_string(line_no) + ": a record without a string id; not resuming into it");
        ids.insert(j["id"].get<std::string>());
        good_bytes += line.size() + 1;
    }
    if (good_bytes != std::filesystem::file_size(path)) std::filesystem::resize_file(path, good_bytes);
    return ids;
}

}  // namespace

void register_generate_batch(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "generate-batch",
        "Write a model's replies to the first questions of chat corpora, many decoded at once (a teacher's "
        "openers for sequence-level distillation; `microlm data --chat` reads the output as source `teacher`)");
    struct Opts {
        std::string model, out, eval_dir;
        std::vector<std::string> chat;
        double sample = 1.0;
        size_t limit = 0;
        int64_t max_tokens = 16, prompt_tokens = 128, batch_tokens = 64;
        int seqs = 16, threads = 1;
        SamplerParams sp;
    };
    auto o = std::make_shared<Opts>();
    o->sp.temperature = 0.0f;
    cmd->add_option("-m,--model", o->model, "GGUF model with a ChatML template (the teacher)")->required();
    cmd->add_option("--chat", o->chat, "Chat corpora (chat/*, as for `microlm data`); each document's first question is a prompt")
        ->required();
    cmd->add_option("-o,--out", o->out,
                    "Output JSON lines; name it teacher*.jsonl for `microlm data`. An existing file is resumed: its ids "
                    "are skipped")
        ->required();
    cmd->add_option("--eval-dir", o->eval_dir, "Folder of eval questions to keep out (default: the inputs' ../eval)");
    cmd->add_option("--sample", o->sample, "Keep this fraction of each input's documents, chosen by id hash (as `microlm data`)")
        ->capture_default_str()
        ->check(CLI::Range(1e-6, 1.0));
    cmd->add_option("--limit", o->limit, "At most this many prompts in all, those of an earlier run included (0: every one)")->capture_default_str();
    cmd->add_option("-n,--max-tokens", o->max_tokens, "Tokens generated per reply (an opener example's reply length)")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{4096}));
    cmd->add_option("--prompt-tokens", o->prompt_tokens,
                    "Shorten longer questions to N tokens (first 2/3 and last 1/3 around \" [...] \", as the opener "
                    "data does; 0: keep whole)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--seqs", o->seqs, "Sequences decoded together (1: one prompt at a time)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--batch-tokens", o->batch_tokens,
                    "Rows per forward pass: one per decoding sequence, the rest prompt tokens (at least --seqs)")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{65536}));
    cmd->add_option("--temp", o->sp.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0f, 100.0f));
    cmd->add_option("--seed", o->sp.seed, "Random seed (prompt i is sampled with seed + i)")->capture_default_str();
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->callback([o] {
        if (o->batch_tokens < o->seqs)
            throw Error("--batch-tokens " + std::to_string(o->batch_tokens) + " is below --seqs " +
                        std::to_string(o->seqs) + ": every decoding sequence needs a row in each pass");
        for (const std::string& c : o->chat)
            if (data::source_of_path(c) == data::Source::kBooks) throw Error(c + ": a book corpus has no questions");
        const data::HoldOut hold_out = data::hold_out_for(o->eval_dir, o->chat);
        auto local = LocalModel::open(o->model, 16, o->threads);
        const Tokenizer& tok = local->tokenizer();
        const std::optional<std::string> default_system = chat_template_default_system(tok.vocab().chat_template);
        const std::set<std::string> done_ids = ids_done(o->out);

        struct Item {
            std::string id, question;
        };
        std::vector<Item> items;
        std::vector<std::vector<int32_t>> prompts;
        size_t skipped = 0, held_out = 0;
        const int64_t room = local->model().config().n_ctx - o->max_tokens;
        for (const std::string& path : o->chat) {
            data::DocumentReader reader(path, hold_out, o->sample);
            data::Document doc;
            while ((o->limit == 0 || items.size() + skipped < o->limit) && reader.next(doc)) {
                const auto user = std::find_if(doc.messages.begin(), doc.messages.end(),
                                               [](const ChatMessage& m) { return m.role == "user"; });
                if (user == doc.messages.end() || user->content.empty()) continue;
                if (done_ids.count(doc.id)) {
                    ++skipped;
                    continue;
                }
                const auto encode = [&](const std::string& q) {
                    return tok.encode(format_chatml({{"user", q}}, true, default_system), true, true);
                };
                const std::string q =
                    o->prompt_tokens > 0
                        ? eval::shorten_to_fit(user->content,
                                         [&](const std::string& t) {
                                             return static_cast<int64_t>(tok.encode(t, false, false).size()) <=
                                                    o->prompt_tokens;
                                         })
                        : user->content;
                std::vector<int32_t> ids = encode(q);
                if (static_cast<int64_t>(ids.size()) > room) continue;  // only with --prompt-tokens 0
                items.push_back({doc.id, user->content});
                prompts.push_back(std::move(ids));
            }
            held_out += reader.stats().held_out_eval + reader.stats().held_out_prompt_id;
        }
        std::fprintf(stderr, "generate-batch: %zu prompts to do (%zu done before, %zu held out as eval questions)\n",
                     prompts.size(), skipped, held_out);
        if (prompts.empty()) return;
        int64_t longest = 0;
        for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
        Context ctx(local->model(), longest + o->max_tokens, o->threads, o->batch_tokens, nullptr, o->seqs);

        std::FILE* f = std::fopen(o->out.c_str(), "ab");
        if (!f) throw Error(o->out + ": cannot open for appending");
        const std::string model_name = std::filesystem::path(o->model).stem().string();
        ProgressBar bar("generate-batch");
        size_t finished = 0;
        BatchStats st;
        try {
            generate_batch(ctx, tok, prompts, o->max_tokens, o->sp, &st,
                           [&](size_t i, const BatchReply& reply) {
                               // A reply cut at --max-tokens can end inside a character: the
                               // incomplete tail is dropped (JSON holds only valid UTF-8).
                               Utf8Streamer utf8;
                               const nlohmann::json rec = {{"prompt", items[i].question},
                                                           {"reply", utf8.push(tok.decode(reply.tokens, false))},
                                                           // Whether the teacher ended its reply (an
                                                           // end-of-generation token, not its budget):
                                                           // only then does the data add an end of turn.
                                                           {"ended", reply.ended},
                                                           {"id", items[i].id},
                                                           {"model", model_name}};
                               const std::string line = rec.dump() + "\n";
                               if (std::fwrite(line.data(), 1, line.size(), f) != line.size() || std::fflush(f) != 0)
                                   throw Error(o->out + ": write failed (disk full?)");
                               bar("replies", ++finished, prompts.size());
                           });
        } catch (...) {
            std::fclose(f);
            throw;
        }
        if (std::fclose(f) != 0) throw Error(o->out + ": write failed");
        const double s = st.ms / 1000.0;
        std::fprintf(stderr,
                     "generate-batch: %zu replies in %.1f s: %" PRId64 " prompt + %" PRId64
                     " generated tokens, %.0f tokens/s (%.1f generated/s), %" PRId64 " passes, %d sequences together\n",
                     prompts.size(), s, st.prompt_tokens, st.gen_tokens,
                     s > 0 ? static_cast<double>(st.prompt_tokens + st.gen_tokens) / s : 0.0,
                     s > 0 ? static_cast<double>(st.gen_tokens) / s : 0.0, st.passes, o->seqs);
    });
}

}  // namespace microlm::cli
