// `microlm data`: tokenizes books and chat corpora into train/val shards with loss masks
// (format in include/microlm/data.h), printing progress and a summary. The pipeline itself is
// data::build_shards; this file only parses flags and prints.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "commands.h"
#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/tokenizer.h"

namespace microlm::cli {

void register_data(CLI::App& app) {
    auto* cmd = app.add_subcommand("data", "Tokenize corpora into training shards (uint16 ids + loss mask)");
    struct Opts {
        std::string tokenizer, out, eval_dir;
        std::vector<std::string> books, chat;
        int64_t max_tokens = 0, shard_tokens = int64_t{1} << 26;
        double val_fraction = 0.01, sample = 1.0;
        int threads = 1;
        int64_t opener_tokens = 0, prompt_tokens = 0;
        std::vector<std::string> source_sample;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--tokenizer", o->tokenizer,
                    "GGUF with the tokenizer (a model or `tokenizer-train` output)")
        ->required();
    cmd->add_option("--books", o->books,
                    "Book corpora (pretrain/gutenberg-*.jsonl.zst); every token is a target");
    cmd->add_option("--chat", o->chat, "Chat corpora (chat/*); targets are the assistant's tokens");
    cmd->add_option("-o,--out", o->out, "Output folder")->required();
    cmd->add_option("--max-tokens", o->max_tokens,
                    "Stop after this many tokens, all inputs interleaved (0: all)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--val-fraction", o->val_fraction, "Fraction of documents (by group) for validation")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.5));
    cmd->add_option("--sample", o->sample, "Keep this fraction of each input's documents, chosen by id hash")
        ->capture_default_str()
        ->check(CLI::Range(1e-6, 1.0));
    cmd->add_option("--shard-tokens", o->shard_tokens, "Tokens per shard file")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    cmd->add_option("--eval-dir", o->eval_dir,
                    "Folder of eval questions to keep out (default: the inputs' ../eval)");
    cmd->add_option("--opener-tokens", o->opener_tokens,
                    "Opener examples: each chat becomes its first question and the first N tokens of "
                    "the reply (0: whole chats)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--prompt-tokens", o->prompt_tokens,
                    "Shorten longer user turns to N tokens (first 2/3 and last 1/3 around \" [...] \"; "
                    "0: keep whole)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--source-sample", o->source_sample,
                    "NAME=FRACTION: keep only this fraction of a source's documents, e.g. chitchat=0.1 "
                    "(names: the summary's source column)");
    cmd->add_option("-t,--threads", o->threads, "Tokenizer threads")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    cmd->callback([o] {
        if (o->books.empty() && o->chat.empty()) throw Error("no inputs: give --books and/or --chat files");
        for (const std::string& b : o->books) {
            if (data::source_of_path(b) != data::Source::kBooks) {
                throw Error(
                    b +
                    ": --books takes pretrain/gutenberg-*.jsonl.zst files; pass chat corpora with --chat");
            }
        }
        for (const std::string& c : o->chat) {
            if (data::source_of_path(c) == data::Source::kBooks) {
                throw Error(c + ": this is a book corpus; pass it with --books");
            }
        }
        data::ShardOptions opt;
        opt.inputs = o->books;
        opt.inputs.insert(opt.inputs.end(), o->chat.begin(), o->chat.end());
        opt.out_dir = o->out;
        opt.tokenizer_path = o->tokenizer;
        opt.max_tokens = o->max_tokens;
        opt.val_fraction = o->val_fraction;
        opt.sample = o->sample;
        opt.shard_tokens = o->shard_tokens;
        opt.threads = o->threads;
        opt.limits.opener_tokens = o->opener_tokens;
        opt.limits.prompt_tokens = o->prompt_tokens;
        for (const std::string& kv : o->source_sample) {
            const auto eq = kv.find('=');
            double f = 0;
            try {
                f = eq == std::string::npos ? 0 : std::stod(kv.substr(eq + 1));
            } catch (const std::exception&) {
                f = 0;
            }
            if (eq == std::string::npos || !(f > 0 && f <= 1)) {
                throw Error("--source-sample " + kv + ": expected NAME=FRACTION with FRACTION in (0, 1]");
            }
            opt.source_sample.emplace_back(kv.substr(0, eq), f);
        }

        const data::HoldOut hold_out = data::hold_out_for(o->eval_dir, opt.inputs);
        const auto file = GgufFile::open(o->tokenizer);
        const Tokenizer tok(vocab_from_gguf(*file));

        auto last = std::chrono::steady_clock::now();
        const auto progress = [&](const data::ShardProgress& p) {
            const auto now = std::chrono::steady_clock::now();
            if (now - last < std::chrono::seconds(1)) return;
            last = now;
            std::fprintf(stderr,
                         "\rdata: %" PRIu64 " docs, %.2fM tokens, %.1f MB text, %.2f MB/s, %.0f tokens/s   ",
                         p.docs, static_cast<double>(p.tokens) / 1e6, static_cast<double>(p.text_bytes) / 1e6,
                         static_cast<double>(p.text_bytes) / 1e6 / p.seconds,
                         static_cast<double>(p.tokens) / p.seconds);
        };
        const data::ShardSummary s = data::build_shards(tok, hold_out, opt, progress);
        std::fprintf(stderr, "\n");
        for (const data::InputSummary& in : s.inputs) {
            const std::string name = std::filesystem::path(in.path).filename().string();
            const data::ReadStats& r = in.read;
            if (r.skipped_file) {
                std::fprintf(stderr, "data: %-40s held out (Arena-Hard answers), not read\n", name.c_str());
                continue;
            }
            std::fprintf(stderr,
                         "data: %-40s sample %.4f  %8" PRIu64 " docs  train %10" PRIu64
                         " tokens  val %8" PRIu64 "  held out: %" PRIu64 " by prompt_id, %" PRIu64
                         " eval questions%s\n",
                         name.c_str(), in.sample, in.train.docs + in.val.docs, in.train.tokens, in.val.tokens,
                         r.held_out_prompt_id, r.held_out_eval,
                         r.not_english ? (", " + std::to_string(r.not_english) + " not English").c_str() : "");
        }
        const uint64_t total = s.train.tokens + s.val.tokens;
        std::fprintf(stderr,
                     "data: wrote %s: train %" PRIu64 " tokens (%" PRIu64 " targets, %" PRIu64
                     " docs), val %" PRIu64 " tokens (%" PRIu64
                     " docs); %.1f MB text, %.2f bytes/token, %.1f s, %.0f tokens/s\n",
                     o->out.c_str(), s.train.tokens, s.train.targets, s.train.docs, s.val.tokens, s.val.docs,
                     static_cast<double>(s.text_bytes) / 1e6,
                     total ? static_cast<double>(s.text_bytes) / static_cast<double>(total) : 0.0, s.seconds,
                     s.seconds > 0 ? static_cast<double>(total) / s.seconds : 0.0);
    });
}

}  // namespace microlm::cli
