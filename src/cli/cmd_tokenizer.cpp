// `microlm tokenizer-train`: trains a byte-level BPE vocabulary on a sample of the corpora and
// writes it as a vocab-only GGUF. The sample is shared evenly between sources and spread over
// each file; the merging itself is BpeTrainer's (src/data/bpe_trainer.cpp).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "commands.h"
#include "microlm/bpe_trainer.h"
#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/stopwatch.h"

namespace microlm::cli {
namespace {

}  // namespace

void register_tokenizer_train(CLI::App& app) {
    auto* cmd = app.add_subcommand("tokenizer-train",
                                   "Train a byte-level BPE tokenizer (ChatML specials) on corpus files");
    struct Opts {
        std::vector<std::string> inputs;
        std::string out, pre = "qwen2", eval_dir, system;
        int32_t vocab_size = 8192;
        double sample_mb = 30;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--input", o->inputs, "Corpus files (gutenberg-*.jsonl.zst, chat/*.zst, ...)")
        ->required();
    cmd->add_option("--vocab-size", o->vocab_size, "Tokens in all: 3 specials + 256 bytes + merges")
        ->capture_default_str()
        ->check(CLI::Range(260, 65536));
    cmd->add_option("-o,--out", o->out, "Output GGUF (tokenizer keys only)")->required();
    cmd->add_option("--sample-mb", o->sample_mb,
                    "Megabytes of text to train on, shared evenly between sources")
        ->capture_default_str()
        ->check(CLI::Range(0.001, 1e6));
    cmd->add_option("--pre", o->pre, "Pre-tokenizer (a tokenizer.ggml.pre name llama.cpp knows)")
        ->capture_default_str();
    cmd->add_option("--system", o->system, "Default system message for the chat template (default: none)");
    cmd->add_option("--eval-dir", o->eval_dir,
                    "Folder of eval questions to keep out (default: the inputs' ../eval)");
    cmd->callback([o] {
        const Stopwatch t0;
        BpeTrainerOptions opt;
        opt.vocab_size = o->vocab_size;
        opt.pre = o->pre;
        if (!o->system.empty()) opt.default_system = o->system;
        BpeTrainer trainer(opt);

        const data::HoldOut hold_out = data::hold_out_for(o->eval_dir, o->inputs);

        // Each input's text size decides its sampling fraction, so that the sample is spread over
        // whole files rather than taken from their beginnings (AlpacaEval is sorted by prompt,
        // the book shards by author). Measuring costs a second read of the inputs.
        std::vector<double> sizes;
        std::vector<data::Source> sources;
        for (const std::string& path : o->inputs) {
            data::DocumentReader reader(path, hold_out);
            sources.push_back(reader.source());
            data::Document doc;
            double n = 0;
            while (reader.next(doc)) n += static_cast<double>(doc.text_bytes());
            sizes.push_back(n);
        }
        const std::vector<double> share = data::source_shares(sources, sizes, o->sample_mb * 1e6);
        std::fprintf(stderr, "tokenizer-train: measured %.1f MB of text in %.1f s\n",
                     std::accumulate(sizes.begin(), sizes.end(), 0.0) / 1e6, t0.seconds());

        for (size_t i = 0; i < o->inputs.size(); ++i) {
            if (sizes[i] == 0) continue;
            const double fraction = std::min(1.0, share[i] / sizes[i]);
            data::DocumentReader reader(o->inputs[i], hold_out, fraction);
            data::Document doc;
            const uint64_t start = trainer.bytes_added();
            while (reader.next(doc)) {
                if (doc.is_chat()) {
                    for (const ChatMessage& m : doc.messages) trainer.add_text(m.content);
                } else {
                    trainer.add_text(doc.text);
                }
            }
            std::fprintf(stderr, "tokenizer-train: %-40s %7.2f MB of text (%" PRIu64 " documents)\n",
                         std::filesystem::path(o->inputs[i]).filename().c_str(),
                         static_cast<double>(trainer.bytes_added() - start) / 1e6, reader.stats().documents);
        }
        std::fprintf(stderr, "tokenizer-train: %.2f MB, %" PRIu64 " distinct words in %.1f s; merging\n",
                     static_cast<double>(trainer.bytes_added()) / 1e6, trainer.unique_words(),
                     t0.seconds());

        auto last = std::chrono::steady_clock::now();
        const VocabData vocab = trainer.train([&](int32_t done, int32_t total) {
            const auto now = std::chrono::steady_clock::now();
            if (done == total || now - last > std::chrono::milliseconds(500)) {
                last = now;
                std::fprintf(stderr, "\rtokenizer-train: merges %d/%d (%.1f s)", done, total,
                             t0.seconds());
            }
        });
        std::fprintf(stderr, "\n");
        write_vocab_gguf(o->out, vocab);
        std::fprintf(
            stderr, "tokenizer-train: wrote %s: %zu tokens, %zu merges, pre=%s, %s, from %.2f MB in %.1f s\n",
            o->out.c_str(), vocab.tokens.size(), vocab.merges.size(), vocab.pre.c_str(),
            data::vocab_fingerprint(vocab).c_str(), static_cast<double>(trainer.bytes_added()) / 1e6,
            t0.seconds());
    });
}

}  // namespace microlm::cli
