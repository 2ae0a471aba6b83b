// Training data: streaming readers for the shared corpora (zstd or gzip JSON lines and JSON
// arrays), the evaluation hold-outs, and the pipeline that tokenizes documents into shards of
// uint16 ids with a parallel loss mask. Not the trainer that reads the shards, not the tokenizer.
//
// A shard folder holds, for each split (train, val), files <split>-NNNNN.tok (little-endian
// uint16 token ids) and <split>-NNNNN.mask (one uint8 per token: 1 where the token is a target
// the loss is taken on), plus manifest.json naming them with their counts, the source mix and
// the tokenizer's fingerprint. Documents follow each other in one stream per split, each ended
// by <|endoftext|>; shard boundaries may fall inside a document.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "microlm/chat.h"
#include "microlm/tokenizer.h"

namespace microlm::data {

// ---- Compressed input ------------------------------------------------------------------------

// A file decompressed as a stream: .zst (libzstd), .gz (zlib), anything else read as is. Holds
// one buffer, never the whole file. Throws microlm::Error naming the file on corrupt data, and
// when this build has no zstd or zlib.
class InputFile {
public:
    explicit InputFile(const std::string& path);
    ~InputFile();
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    size_t read(char* dst, size_t n);  // 0 at the end
    const std::string& path() const { return path_; }

private:
    struct Impl;
    std::string path_;
    std::unique_ptr<Impl> impl_;
};

// Lines of a (compressed) text file, without their '\n'.
class LineReader {
public:
    explicit LineReader(const std::string& path);
    bool next(std::string& line);  // false at the end
    uint64_t line_number() const { return line_no_; }
    const InputFile& file() const { return file_; }

private:
    bool fill();
    InputFile file_;
    std::string buf_;
    size_t pos_ = 0;
    bool eof_ = false;
    uint64_t line_no_ = 0;
};

// The elements of a (compressed) file holding one top-level JSON array, one element's text at a
// time, so that a large array is never parsed as a whole. Elements must be objects or arrays.
class JsonArrayReader {
public:
    explicit JsonArrayReader(const std::string& path);
    bool next(std::string& element);           // false after the closing ']'
    uint64_t index() const { return index_; }  // elements returned so far
    const InputFile& file() const { return file_; }

private:
    int get();  // next byte, or -1 at the end
    int skip_space();
    InputFile file_;
    std::string buf_;
    size_t pos_ = 0;
    bool started_ = false, done_ = false;
    uint64_t index_ = 0;
};

// ---- Documents from the shared corpora -------------------------------------------------------

enum class Source {
    kBooks,       // pretrain/gutenberg-*.jsonl.zst: {id, author, title, text}
    kAlpacaEval,  // chat/alpaca_eval_outputs.jsonl.zst: {prompt_id, dataset, generator, instruction, output}
    kSgd,         // chat/sgd_dialogues.jsonl.zst: {dialogue_id, turns: [{speaker USER|SYSTEM, text}]}
    kArenaHard,   // chat/arena_hard_*.jsonl.zst: answers to an eval set, never read
    kGpteacher,   // chat/gpteacher_*.json.zst: JSON array of {instruction, input, output}
    kHhRlhf,      // chat/hh_rlhf_*.jsonl.gz: {chosen, rejected} "\n\nHuman: ...\n\nAssistant: ..."
    // Prompt-diverse pairs, one {prompt, reply, source, ...} object per line:
    kShareGpt,          // chat/sharegpt.jsonl.zst (+ first_turn, en_like: rows not en_like are skipped)
    kChitchat,          // chat/chitchat.jsonl.zst (+ id: the conversation, turn)
    kGsm8k,             // chat/gsm8k.jsonl.zst
    kInstructLab,       // chat/instructlab.jsonl.zst
    kGpteacherCodegen,  // chat/gpteacher_codegen.jsonl.zst
    kAlpacaSubsets,     // chat/alpaca_subsets.jsonl.zst
    // A teacher's replies to training prompts (sequence-level distillation), written by
    // `microlm generate-batch`: teacher*.jsonl[.zst], one {prompt, reply, id} object per line.
    kTeacher,
};
std::string_view source_name(Source s);
// By file name; throws naming the file and the names it knows.
Source source_of_path(const std::string& path);

struct Document {
    std::string id;                     // unique and stable, e.g. "alpaca_eval:12:gpt4"
    std::string group;                  // the split key: a group's documents all land in train or all in val
    std::string text;                   // books: one passage
    std::vector<ChatMessage> messages;  // chat: "user" / "assistant" turns; empty for books
    // The last reply stops where its writer was cut off (a teacher's reply that hit
    // generate-batch's --max-tokens), not where the reply ends: no end of turn follows it.
    bool reply_cut = false;
    bool is_chat() const { return !messages.empty(); }
    size_t text_bytes() const;  // of the text or of all turns' contents
};

// What must never be trained on: the questions of the eval sets (MT-Bench, Vicuna, Arena-Hard)
// matched after whitespace collapsing and ASCII lower-casing, plus rules by source applied in
// DocumentReader (AlpacaEval prompt_id % 10 == 0 and its "vicuna" subset; Arena-Hard answers).
class HoldOut {
public:
    // Every "turns" (array of strings) and "prompt" (string) of every record of every
    // <dir>/*.jsonl; reference answers hold neither at the top level. Throws when the folder
    // has no questions, since the hold-outs could not be enforced.
    static HoldOut from_eval_dir(const std::string& dir);
    void add_question(std::string_view text);
    bool is_eval_question(std::string_view user_text) const;
    size_t size() const { return questions_.size(); }
    static std::string normalize(std::string_view text);

private:
    std::unordered_set<std::string> questions_;
};

// The eval/ folder of the data tree the inputs come from (<input>/../../eval), if there is one.
std::optional<std::string> eval_dir_beside(const std::vector<std::string>& inputs);

// The hold-outs for a command reading `inputs`: from eval_dir when given, else from the eval/
// folder beside the inputs. Throws naming an input that does not exist, or when no eval/ folder
// is found (the hold-outs cannot be enforced without one).
HoldOut hold_out_for(const std::string& eval_dir, const std::vector<std::string>& inputs);

struct ReadStats {
    uint64_t records = 0;             // JSON records read
    uint64_t documents = 0;           // documents returned
    uint64_t held_out_prompt_id = 0;  // AlpacaEval prompt_id % 10 == 0
    uint64_t held_out_eval = 0;       // a user turn is an eval question (or AlpacaEval's vicuna set)
    uint64_t empty = 0;               // nothing to train on (no text, no assistant turn)
    uint64_t sampled_out = 0;         // left out by the sampling fraction
    uint64_t not_english = 0;         // ShareGPT rows without en_like
    bool skipped_file = false;        // a whole held-out file (Arena-Hard answers)
};

// Documents of one corpus file, hold-outs removed. `sample` < 1 keeps that fraction of the
// documents, chosen by a hash of their id (the same ones on every run). A book is cut into
// passages of about kPassageBytes at paragraph breaks, each a document of the book's group:
// a sample then draws on every book rather than on a few whole ones (a book is ~100k tokens).
class DocumentReader {
public:
    static constexpr size_t kPassageBytes = 16 * 1024;

    DocumentReader(const std::string& path, const HoldOut& hold_out, double sample = 1.0);
    ~DocumentReader();
    DocumentReader(const DocumentReader&) = delete;
    DocumentReader& operator=(const DocumentReader&) = delete;

    bool next(Document& doc);  // false at the end; throws naming file and line on bad records
    Source source() const { return source_; }
    const std::string& path() const { return path_; }
    const ReadStats& stats() const { return stats_; }

private:
    bool next_record(std::string& text);
    bool parse(const std::string& record, Document& doc);
    std::string location() const;  // file:line or file: element N, for messages
    bool next_passage(Document& doc);

    std::string path_;
    Source source_;
    const HoldOut& hold_out_;
    double sample_;
    ReadStats stats_;
    std::unique_ptr<LineReader> lines_;
    std::unique_ptr<JsonArrayReader> array_;
    Document book_;  // the book being cut into passages
    size_t book_pos_ = 0, book_passage_ = 0;
};

// A hash of `key` mapped to [0, 1): the deterministic coin of splits and sampling.
double unit_hash(std::string_view key);
// The train/val split of build_shards: a document goes to validation when
// unit_hash(source:group) < val_fraction. Hedge calibration draws its prompts from that side.
bool in_validation_split(Source source, const std::string& group, double val_fraction);

// Splits `budget` over inputs of the given sizes: equal shares per source (all book files are
// one source), what a small source cannot use going to the others (water filling); within a
// source, in proportion to its files' sizes. Shares never exceed sizes.
std::vector<double> source_shares(const std::vector<Source>& sources, const std::vector<double>& sizes,
                                  double budget);

// ---- Tokenized documents and shards ----------------------------------------------------------

struct EncodedDocument {
    std::vector<uint16_t> ids;
    std::vector<uint8_t> mask;  // 1: the loss is taken on predicting this token
};

// Optional cuts that turn a chat document into an opener example.
struct EncodeLimits {
    // > 0: keep only the first user turn (after any system turn) and the first `opener_tokens`
    // tokens of the reply after it; the reply's <|im_end|> stays when the whole reply fits.
    int64_t opener_tokens = 0;
    // > 0: a user turn longer than this many tokens keeps its first two thirds and last third
    // around " [...] ", as the eval shortens prompts that do not fit a model's context.
    int64_t prompt_tokens = 0;
};

// Books: the text then <|endoftext|>, all targets. Chat: ChatML turns as the runtime formats
// them (format_chatml, with `default_system` inserted first when given) then <|endoftext|>;
// targets are the assistant's content and its <|im_end|>, nothing else. Each piece between
// special tokens is encoded as the runtime encodes a prompt, and an assistant's content apart
// from its "<|im_start|>assistant\n" header, as it is generated after that header.
// Throws when the vocabulary lacks the ChatML specials or has more than 65536 tokens.
void encode_document(const Tokenizer& tok, const Document& doc,
                     const std::optional<std::string>& default_system, EncodedDocument& out,
                     const EncodeLimits& limits = {});

// A short fingerprint of everything that decides token ids ("fnv1a64:" + 16 hex digits).
std::string vocab_fingerprint(const VocabData& vocab);

struct ShardOptions {
    std::vector<std::string> inputs;  // corpus files; the source of each comes from its name
    std::string out_dir;
    std::string tokenizer_path;  // recorded in the manifest
    // Stop after the document that reaches this many tokens (0: all). The budget is spread over
    // the sources by source_shares and over each input's whole length by sampling documents, so
    // that a small cut is a fair sample rather than the beginnings of the files.
    int64_t max_tokens = 0;
    double val_fraction = 0.01;               // of the split groups
    double sample = 1.0;                      // fraction of each input's documents
    int64_t shard_tokens = int64_t{1} << 26;  // tokens per shard file (128 MiB of ids)
    int threads = 1;
    EncodeLimits limits;  // opener examples instead of whole chats (books are left whole)
    // Extra sampling fraction per source name (source_name), e.g. {"chitchat", 0.1}: a source
    // to weight low. Applied on top of `sample`.
    std::vector<std::pair<std::string, double>> source_sample;
};

struct SplitCounts {
    uint64_t docs = 0, tokens = 0, targets = 0;
};

struct InputSummary {
    std::string path;
    Source source;
    double sample = 1;  // fraction of its documents this input was sampled at
    ReadStats read;
    SplitCounts train, val;
};

struct ShardSummary {
    std::vector<InputSummary> inputs;
    SplitCounts train, val;
    uint64_t text_bytes = 0;
    double seconds = 0;
};

struct ShardProgress {
    uint64_t docs = 0, tokens = 0, text_bytes = 0;
    double seconds = 0;
};

// Reads the inputs interleaved (the next document comes from the input furthest behind its
// share, so that a --max-tokens cut holds every source), tokenizes, splits by
// unit_hash(source:group) < val_fraction and writes the shard folder. With max_tokens, a first
// pass measures each input's text and bytes per token to plan the sampling. Files are
// written under temporary names and renamed at the end, the manifest last; on failure they are
// removed. Memory stays bounded by one batch of documents per thread.
ShardSummary build_shards(const Tokenizer& tok, const HoldOut& hold_out, const ShardOptions& options,
                          const std::function<void(const ShardProgress&)>& progress = {});

}  // namespace microlm::data
