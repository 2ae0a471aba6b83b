// `microlm eval`: the measurements behind the project's claims. Opener quality against
// references and baselines (start-match@k, opener-F1, judge NLL), handoff and recovery with a
// cloud stand-in (keep, repeat, detection, false-alarm rates), and perceived latency (stall after
// the opener against a cloud-only reply), written as results.json and report.md with PNG plots.
// Not here: printing or progress bars (the CLI draws them from the callbacks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/handoff.h"

namespace microlm::eval {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Called as long loops advance: what is running ("openers SmolLM2", "judge"), how far it is.
using ProgressFn = std::function<void(std::string_view stage, size_t done, size_t total)>;

// ---- Metrics (metrics.cpp) -------------------------------------------------------------------

// The words of `text` as the metrics compare them: split at whitespace, every CJK ideograph or
// kana a word of its own (as the opener policy counts them), lower-cased (Latin, Greek,
// Cyrillic, Armenian and fullwidth letters; other scripts have no case or are left as they
// are), punctuation (Unicode P*) and the ASCII symbols $+<=>^`|~ removed; words left empty are
// dropped. "**Sure!** Here’s" -> {"sure", "heres"}.
std::vector<std::string> normalize_words(std::string_view text);

// True when both have at least k words and their first k words are equal.
bool start_match(const std::vector<std::string>& opener, const std::vector<std::string>& reference, size_t k);
// Any reference starts like the opener (start_match with at least one).
bool start_match_any(const std::vector<std::string>& opener,
                     const std::vector<std::vector<std::string>>& references, size_t k);
// Unigram F1 of two word bags (counts clipped, as in SQuAD); 0 when either is empty.
double unigram_f1(const std::vector<std::string>& a, const std::vector<std::string>& b);
// Max over references of unigram_f1(opener, the reference's first `n` words); 0 without references.
double opener_f1(const std::vector<std::string>& opener,
                 const std::vector<std::vector<std::string>>& references, size_t n = 8);

// The opener the local policy would have cut from a whole reply: whole words (as WordAssembler
// makes them) until max_words counted words, or a clause end after min_words, or the end.
// Used to turn reference answers into openers (oracle, retrieval). Leading whitespace dropped.
std::string cut_opener(std::string_view text, int min_words = 4, int max_words = 8);

// Quantile q in [0, 1] of `v` (linear between order statistics); NaN when empty.
double quantile(std::vector<double> v, double q);
double mean(const std::vector<double>& v);  // NaN-free values only; NaN when empty

// ---- Prompt sets (prompt_sets.cpp) -----------------------------------------------------------

struct EvalPrompt {
    std::string set;     // "alpaca", "mt_bench", "vicuna", "arena_hard", or a --prompts file's stem
    std::string id;      // unique within the set: AlpacaEval prompt_id, MT-Bench question_id, ...
    std::string prompt;  // the user's message
    // The beginnings of reference answers (the first ~1000 bytes of each, cut at whitespace):
    // enough for every metric, which only reads their first words.
    std::vector<std::string> references;
};

// alpaca, mt_bench, vicuna, arena_hard.
std::vector<std::string> known_sets();

// A named set read from the shared data folder (the one holding chat/ and eval/):
//   alpaca      chat/alpaca_eval_outputs.jsonl.zst, prompt_id % 10 == 0 (81 prompts), every
//               model's answer a reference (~220 each)
//   mt_bench    eval/mt_bench_questions.jsonl first turns, GPT-4's first-turn answer (the
//               answer file covers 30 of the 80; the others have no reference)
//   vicuna      eval/vicuna_questions.jsonl; GPT-4's answer (10 of 80) and the answers to the
//               same question in AlpacaEval's "vicuna" subset (~220 each, all 80)
//   arena_hard  eval/arena_hard_v0.1_questions.jsonl, the answers of GPT-4-0314 and
//               GPT-3.5-Turbo-0125 from chat/arena_hard_v0.1_*.jsonl.zst
// `limit` > 0 keeps the first `limit` prompts in the files' order. Throws naming the file.
std::vector<EvalPrompt> load_prompt_set(const std::string& name, const std::string& data_dir,
                                        size_t limit = 0);

// Any JSON-lines file of {"prompt": "...", "references": ["...", ...], "id": ...} (references
// and id optional; id defaults to the line number). The set is named after the file's stem.
std::vector<EvalPrompt> load_prompts_file(const std::string& path, size_t limit = 0);

// `text` shortened until fits(text) holds: its head (two thirds) and tail (one third) kept
// around " [...] ", cut at UTF-8 boundaries. Returns text unchanged when it fits; throws when
// even a few characters do not. Long prompts (Arena-Hard has 9,000-character ones) are cut this
// way to each model's context, since the question is usually at the start or the end.
std::string shorten_to_fit(const std::string& text, const std::function<bool(const std::string&)>& fits);

// ---- Baselines (baselines.cpp) ---------------------------------------------------------------

inline constexpr const char* kConstantOpener = "Sure! Here's";

// The oracle: the opener cut from a reference, the one whose first three words are the most
// common start among the references (earliest wins a tie), chosen among references of at
// least three words. Scores start-match@2 and @3 = 1 by construction. "" without references.
std::string oracle_opener(const std::vector<std::string>& references);

// Retrieval: the opener of the most similar training prompt, by cosine similarity of TF-IDF
// weighted bags of words (normalize_words). A training prompt with many answers (AlpacaEval)
// gets its answers' oracle_opener.
class RetrievalIndex {
public:
    void add(std::string_view prompt, std::string opener);
    void finalize();  // computes the weights; call after the last add()
    // Index of the best match (lowest index on a tie); -1 when the index is empty or no word is shared.
    int64_t best(std::string_view query) const;
    // The best match's opener; the most common opener start of the index when nothing matches.
    const std::string& opener_for(std::string_view query) const;
    size_t size() const { return openers_.size(); }
    const std::string& opener(size_t i) const { return openers_[i]; }

private:
    std::vector<std::string> openers_;
    std::vector<std::map<uint32_t, double>> docs_;  // term id -> tf, then tf-idf weight
    std::vector<double> norms_;
    std::map<std::string, uint32_t, std::less<>> terms_;
    std::vector<uint32_t> df_;
    std::vector<std::vector<std::pair<uint32_t, double>>> postings_;  // term -> (doc, weight)
    size_t fallback_ = 0;
};

struct RetrievalStats {
    size_t prompts = 0;  // training prompts indexed
    size_t answers = 0;  // answers they were cut from
};

// Builds the index from training chat corpora read through data::DocumentReader, so the
// training hold-outs apply (AlpacaEval prompt_id % 10 == 0 and its vicuna subset, Arena-Hard
// answers, every question in <data>/eval); `extra_held_out` (e.g. a --prompts file's prompts)
// are left out as well. The first user message of each document is the prompt, the assistant
// reply after it the answer.
RetrievalIndex build_retrieval_index(const std::vector<std::string>& corpus_files,
                                     const std::string& eval_dir,
                                     const std::vector<std::string>& extra_held_out,
                                     RetrievalStats* stats = nullptr, const ProgressFn& progress = {});
// The chat corpora of <data>/chat that exist (AlpacaEval outputs, GPTeacher, HH-RLHF, SGD, and
// the prompt-reply pairs: ShareGPT, chitchat, GSM8K, InstructLab, GPTeacher codegen, Alpaca).
std::vector<std::string> default_retrieval_corpora(const std::string& data_dir);

// ---- Judge (judge.cpp) -----------------------------------------------------------------------

// Judge NLL: how likely a (stronger) model finds an opener as the start of its own reply.
class Judge {
public:
    Judge(const std::string& model_path, int threads);
    ~Judge();
    Judge(const Judge&) = delete;
    Judge& operator=(const Judge&) = delete;

    // Mean per-token negative log-likelihood (nats) of `opener`'s tokens right after the
    // judge's ChatML prompt for `prompt` (its own default system message, the assistant
    // header). NaN for an empty opener. Consecutive calls with the same prompt reuse its KV state.
    double nll(const std::string& prompt, const std::string& opener);
    const std::string& name() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---- Models' openers (suite_openers.cpp) -----------------------------------------------------

// One candidate's opener for one prompt.
struct OpenerSample {
    std::string text;          // what the user was shown (a hedge phrase when hedged)
    std::string decoded_text;  // models: what the model itself decoded
    bool hedged = false;
    bool ended_turn = false;  // the model ended its reply within the opener (no cloud needed)
    bool prompt_shortened = false;
    int shown_words = 0;  // words handed out (the delivery units of the latency suite)
    double first_word_ms = -1;
    double opener_ms = -1;
};

struct ModelOpeners {
    std::string name;  // the file's stem
    std::string path;
    std::vector<OpenerSample> openers;  // one per prompt, in the prompts' order
    double load_ms = 0;
    int64_t n_ctx = 0;
};

std::string model_name_of(const std::string& path);

// Runs the opener policy exactly as `microlm chat` sets it up (default OpenerConfig: greedy,
// 4-8 words, hedging on, the model's default system prompt; the system turn warmed up once)
// for every prompt, each a one-turn conversation, and records what it showed and when.
// max_prompt_tokens: OpenerConfig::max_prompt_tokens (< 0: the default).
ModelOpeners run_model_openers(const std::string& model_path, const std::vector<EvalPrompt>& prompts,
                               int threads, const ProgressFn& progress = {}, int max_prompt_tokens = -1);

// ---- Suites ----------------------------------------------------------------------------------

// Where the cloud's time to first token comes from in the latency simulation.
struct TtftDistribution {
    enum class Kind { kLogNormal, kFixed, kSamples } kind = Kind::kLogNormal;
    double median_s = 0.8;          // log-normal: the median; fixed: the value
    double sigma = 0.5;             // log-normal: the standard deviation of ln(TTFT)
    std::vector<double> samples_s;  // kSamples: drawn from uniformly (measured or from a file)
    std::string describe() const;
};

struct EvalConfig {
    std::vector<std::string> models;  // GGUF files whose openers are evaluated
    std::string judge;                // GGUF of the judge model
    std::string data_dir;             // the shared data folder (chat/, eval/)
    std::vector<std::string> sets;    // named sets (known_sets()) to load
    std::string prompts_file;         // an extra JSONL set
    size_t limit = 0;                 // prompts per set, 0: all
    uint64_t seed = 42;
    int threads = 1;
    int opener_prompt_tokens = -1;  // OpenerConfig::max_prompt_tokens (< 0: the default)

    // openers
    std::string constant_opener = kConstantOpener;
    std::vector<std::string> retrieval_corpora;  // empty: default_retrieval_corpora(data_dir)

    // handoff
    size_t handoff_limit = 10;  // prompts per set (after the skipped ones), 0: as many as loaded
    size_t handoff_skip = 0;    // prompts skipped at the start of each set (a calibration split)
    OpenerCheckConfig check{.signal = CheckSignal::kAny};  // the turn's opener check
    std::string stand_in;       // GGUF the in-process cloud stand-in serves
    std::string cloud_url;      // instead, a real OpenAI-compatible endpoint
    std::string cloud_model, api_key_env;
    int64_t cloud_max_tokens = 64;
    Modality modality = Modality::kText;
    size_t samples = 3;  // stitched replies saved per model and mode

    // latency
    TtftDistribution ttft;
    bool ttft_measured = false;  // draw TTFT from the handoff suite's measured cloud times
    double speech_wps = 2.5, text_wps = 5.0;
    // The latency suite's "sized" rows: the opener lengthened (as the product's --size-opener
    // does) so that its delivery covers this quantile of the wait, at most max_opener_words.
    double sized_quantile = 0.9;
    int max_opener_words = 12;
    size_t draws = 20000;
};

struct OpenerMetrics {
    size_t prompts = 0;
    size_t with_references = 0;  // prompts start-match and F1 are taken over
    size_t empty = 0;            // openers with no word
    size_t judged = 0;           // prompts judge NLL is averaged over (non-empty openers)
    double start_match2 = kNaN, start_match3 = kNaN, f1 = kNaN, judge_nll = kNaN;
    double words = kNaN;  // mean normalized words per opener
    // models only
    double hedge_rate = kNaN, ended_rate = kNaN, shortened_rate = kNaN;
    double first_word_ms = kNaN, opener_ms = kNaN;  // means
    double first_word_p90_ms = kNaN;
};

struct CandidateResult {
    std::string name;
    std::string kind;                   // "model" or "baseline"
    std::vector<OpenerSample> openers;  // one per prompt
    std::vector<double> judge_nll;      // one per prompt (NaN: empty opener)
    std::map<std::string, OpenerMetrics> by_set;
    OpenerMetrics all;
};

struct OpenersResult {
    std::vector<EvalPrompt> prompts;
    std::vector<std::string> sets;            // in order of first appearance
    std::vector<CandidateResult> candidates;  // models first, then constant, retrieval, oracle
    std::string judge;
    RetrievalStats retrieval;
    double seconds = 0;
};

// Each prompt's references as normalize_words of their first `n` words: what the metrics read.
using ReferenceWords = std::vector<std::vector<std::vector<std::string>>>;  // prompt -> reference -> words
ReferenceWords reference_words(const std::vector<EvalPrompt>& prompts, size_t n = 8);

// Scores one candidate's openers (and judge NLLs, may be empty) per set and overall.
void score_candidate(const std::vector<EvalPrompt>& prompts, const ReferenceWords& refs, CandidateResult& c);

// The opener suite on `prompts` (already loaded). `models` are reused when given (one per
// cfg.models entry, e.g. from an earlier run), else computed.
OpenersResult run_openers_suite(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts,
                                std::vector<ModelOpeners> models, const ProgressFn& progress = {});

struct HandoffMetrics {
    size_t own = 0, bad = 0;       // continuations asked for with own / another prompt's opener
    size_t errors = 0;             // cloud failures (not counted in the rates)
    size_t no_cloud = 0;           // own openers that ended the turn: no cloud in a real turn
    double keep_rate = kNaN;       // instruct: own openers kept
    double tag_rate = kNaN;        // instruct: a verdict tag was found
    double repeat_rate = kNaN;     // own: the stitcher dropped repeated opener words
    double repeated_words = kNaN;  // own: mean words dropped
    double detection = kNaN;       // instruct: bad openers pivoted or retracted
    double false_alarms = kNaN;    // instruct: own openers pivoted or retracted
    double pivot_rate = kNaN, retract_rate = kNaN;  // instruct, own
    double cloud_ttft_ms = kNaN;                    // mean measured time to the first token
    // The opener check, each signal alone (at the configured thresholds) and the tag alone:
    // share of bad openers it calls off (detection), of own openers (false alarms).
    std::map<std::string, std::pair<double, double>> by_signal;  // name -> {detection, false alarms}
    // Mean scores (nats per token) of own and bad openers: log p given the conversation, pmi.
    double own_logprob = kNaN, bad_logprob = kNaN, own_pmi = kNaN, bad_pmi = kNaN;
    size_t check_errors = 0;           // turns whose check could not score
    size_t resumed = 0;                // turns whose continuation the cloud cut short and the turn resumed
    double cost_ratio = kNaN;          // cloud tokens of the turns with the check / without (estimated)
    double cost_ratio_own = kNaN;      // the same over the turns with the model's own opener
    double cost_ratio_bad = kNaN;      // ... and with a bad opener (the check, then a recovery)
    double added_delay_p50_ms = kNaN;  // own kept openers: first shown continuation minus cloud first token
};

struct StitchedSample {
    std::string set, prompt_id, prompt, opener, mode, kind;  // kind: "own" or "bad"
    std::string verdict;                                     // keep / pivot / retract ("" in prefill mode)
    std::string raw;                                         // the cloud's text as sent
    std::string shown;                                       // the whole reply as finally shown
    size_t repeated = 0;
    std::string modality = "text";                           // "text" or "speech"
    bool by_check = false;                                   // the opener check chose the verdict
    double logprob = kNaN, pmi = kNaN;                       // the check's scores
};

struct HandoffResult {
    std::string cloud;  // what served: the stand-in's model name or the URL
    std::vector<std::string> models;
    std::vector<std::string> modes;                                        // "instruct", "prefill"
    std::map<std::string, std::map<std::string, HandoffMetrics>> metrics;  // model -> mode -> metrics
    std::vector<StitchedSample> samples;
    std::vector<double> cloud_ttft_s;  // every measured cloud first-token time
    // Every opener check's scores, to choose thresholds from (results.json only).
    struct CheckRecord {
        std::string model, mode, kind, prompt_id;  // kind: "own" or "bad"
        std::string opener;                         // what was checked
        double logprob = kNaN, pmi = kNaN;
    };
    std::vector<CheckRecord> checks;
    size_t prompts = 0;
    double seconds = 0;
};

// The prompts the handoff suite uses: the first cfg.handoff_limit of each set.
std::vector<size_t> handoff_subset(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts);

// Needs the network build (cloud client, serve-model): defined in suite_handoff.cpp.
// `models` hold each model's openers for all `prompts`. A prompt's bad opener is the same
// model's opener for another prompt of the subset, as decoded when that one was hedged (a
// neutral hedge phrase would be no wrong start).
HandoffResult run_handoff_suite(const EvalConfig& cfg, const std::vector<EvalPrompt>& prompts,
                                const std::vector<ModelOpeners>& models, const ProgressFn& progress = {});

struct LatencyStats {
    double p50 = kNaN, p90 = kNaN, p99 = kNaN, mean = kNaN;
    double zero_share = kNaN;  // share of draws with no wait at all (< 1 ms)
};

struct LatencyModelResult {
    std::string model;
    double first_word_p50_ms = kNaN, first_word_p90_ms = kNaN;
    double opener_p50_ms = kNaN;
    double words_mean = kNaN;
    // pace name ("speech", "text", and "speech, sized" / "text, sized" with the opener sized to
    // the wait; "speech, audio" (, sized): said by espeak-ng, where the build has it) -> stall
    // after the opener, s
    std::map<std::string, LatencyStats> stall;
    std::map<std::string, std::vector<double>> stall_draws;  // the same draws, sorted (for the CDF)
};

struct LatencyResult {
    std::string ttft;                      // the distribution, described
    LatencyStats cloud_only;               // a cloud-only reply's time to first word, s
    std::vector<double> cloud_only_draws;  // sorted
    std::map<std::string, double> paces;   // name -> words per second
    std::vector<LatencyModelResult> models;
    size_t draws = 0;
    double sized_quantile = 0.9;  // the "sized" rows' setting
    int max_opener_words = 12;
};

// The stall after the opener, one simulated turn: the opener's first word at first_word_s, its
// `words` delivered at `wps`, the cloud request sent when the opener is done (opener_s) and its
// first token ttft_s later. 0 when the turn needs no cloud.
double simulated_stall(double first_word_s, double opener_s, int words, bool needs_cloud, double ttft_s,
                       double wps);

// The same turn said aloud: the opener's audio (opener_length_s long, its last sound at
// opener_last_sound_s) starts at its first word; the continuation, whose first sound comes
// continuation_first_sound_s into its audio, starts when its text arrives or when the opener's
// audio ends, whichever is later. Returns the silence between the opener's last sound and the
// continuation's first, less the silence they have when said back to back (the voice's own
// pause): 0 when the continuation was there in time.
double audio_stall(double first_word_s, double opener_s, double opener_last_sound_s, double opener_length_s,
                   bool needs_cloud, double ttft_s, double continuation_first_sound_s);

// Monte Carlo over cfg.draws turns (seeded): a measured opener drawn uniformly from each
// model's openers, a cloud TTFT from cfg.ttft. Deterministic for the same inputs and seed.
LatencyResult run_latency_suite(const EvalConfig& cfg, const std::vector<ModelOpeners>& models);

// ---- Hedge calibration (hedge_calibration.cpp) ----------------------------------------------

// A training-side prompt with the reply it was given: never an eval prompt.
struct ReplyPrompt {
    std::string prompt;
    std::string reply;  // its first ~1000 bytes
};

// Up to `n` single-turn prompts from the validation side of the training split (documents with
// unit_hash(source:group) < val_fraction, as `microlm data --val-fraction` splits them, so the
// model never trained on them), spread evenly over the prompt-diverse chat files in
// <data_dir>/chat that exist, read through DocumentReader so that every eval hold-out applies.
std::vector<ReplyPrompt> validation_prompts(const std::string& data_dir, size_t n, double val_fraction);

struct HedgeCalibration {
    float min_mean_logprob = 0, max_entropy = 0;  // the chosen thresholds
    size_t prompts = 0;
    double hedge_rate = 0;      // share of the prompts hedged with them
    double score_shown = 0;     // mean of start-match@2 + opener-F1 of what would be shown
    double score_never = 0;     // the same with hedging off
    double score_default = 0;   // with the SmolLM2-measured default thresholds
    double rate_default = 0;    // hedge rate of the defaults
};

// Chooses a model's hedge thresholds on reply prompts: runs the opener (as `chat` does, hedging
// off), scores each opener and the hedge phrase the model would pick against the reply's first
// words (start-match@2 + opener-F1 over 8 words), and picks, over a grid of quantiles of the
// observed max entropy and mean log p, the pair whose shown openers score best with a hedge
// rate in [min_rate, max_rate] (ties: the lower rate).
HedgeCalibration calibrate_hedge(const std::string& model_path, const std::vector<ReplyPrompt>& prompts,
                                 double min_rate, double max_rate, int threads,
                                 const ProgressFn& progress = {});

// Copies the GGUF at `in` to `out` (through a temporary file; in == out is fine) with the
// thresholds as kHedgeMinMeanLogprobKey and kHedgeMaxEntropyKey, which the Opener then uses.
void write_hedge_thresholds(const std::string& in, const std::string& out, const HedgeCalibration& c);

// ---- Report (report.cpp) ---------------------------------------------------------------------

struct EvalReport {
    EvalConfig config;
    std::string command;  // the command line, for the report's header
    std::optional<OpenersResult> openers;
    std::optional<HandoffResult> handoff;
    std::optional<LatencyResult> latency;
    std::map<std::string, double> seconds;  // per suite and "total"
    // Models (and the judge) without ChatML in their vocabulary: base models, prompted with the
    // plain "User: ... / Assistant:" frame (chat.h), which the report says.
    std::vector<std::string> plain_frame;
};

// Whether the GGUF's vocabulary lacks <|im_start|>, so the opener and the judge frame its
// prompts as plain text (Gemma-3-270M base).
bool uses_plain_frame(const std::string& model_path);

// Writes <out_dir>/results.json, report.md and the plots (openers_*.png, handoff.png,
// latency_cdf.png), each through a temporary file; creates out_dir. Returns the files written.
std::vector<std::string> write_report(const std::string& out_dir, const EvalReport& report);

}  // namespace microlm::eval
