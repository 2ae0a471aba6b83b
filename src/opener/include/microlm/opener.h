// The local opener policy: the μLM decodes the first 4-8 words of the reply, hands out each
// whole word the moment it is complete, scores its own confidence and, when unsure, says a
// neutral phrase instead. Not here: what the cloud is sent or how its text is joined (handoff.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/chat.h"
#include "microlm/model.h"
#include "microlm/sampler.h"
#include "microlm/tokenizer.h"
#include "microlm/words.h"

namespace microlm {

// GGUF keys of a model's own hedge thresholds, and the defaults for models without them.
inline constexpr const char* kHedgeMinMeanLogprobKey = "microlm.opener.hedge_min_mean_logprob";
inline constexpr const char* kHedgeMaxEntropyKey = "microlm.opener.hedge_max_entropy";
inline constexpr float kDefaultHedgeMinMeanLogprob = -1.1f;
inline constexpr float kDefaultHedgeMaxEntropy = 4.85f;

// ChatML when the vocabulary has <|im_start|>, else the plain frame (a base model).
ChatFrame chat_frame_of(const std::vector<std::string>& vocabulary);
inline ChatFrame chat_frame_of(const Tokenizer& tok) { return chat_frame_of(tok.vocab().tokens); }

// The neutral phrases a hedge picks from: safe whatever the question was.
std::vector<std::string> default_hedge_phrases();
// Starts of a refusal, a disclaimer or a non-answer ("I'm sorry", "As an AI", "I don't know"...).
std::vector<std::string> default_refusal_prefixes();
// Whether `text` starts with one of `prefixes`: case-insensitive, ’ read as ', and the prefix
// must end at a word boundary ("I cannot" matches "I cannot say", not "I cannotate").
bool starts_like(std::string_view text, const std::vector<std::string>& prefixes);

struct OpenerConfig {
    int min_words = 4;    // do not stop at a clause boundary before this many words
    int max_words = 8;    // stop here whatever comes next
    int max_tokens = 24;  // decode budget; a word still unfinished when it runs out is dropped
    // The most tokens of the conversation the opener reads (0: as many as the context holds), so
    // that its first word does not wait for a long pasted message to be prefilled: oldest turns
    // go first, then the last message keeps its head and tail around " [...] ". The cloud still
    // gets the whole conversation. 160 is what the μLMs were trained on (questions cut to 128
    // tokens, plus the chat frame); on the first 100 Arena-Hard prompts it also gave better
    // openers than 512 or the whole context, for the μLMs and for SmolLM2 (docs/EVAL.md).
    int max_prompt_tokens = 160;
    // Greedy by default: an opener is said before anything can be checked, so it should be
    // the μLM's single most likely start, and the same question should give the same start.
    SamplerParams sampling{.temperature = 0.0f};
    // The system message when the conversation has none: unset = the chat template's default
    // (SmolLM2's "You are a helpful AI assistant named SmolLM, ..."), "" = no system message.
    std::optional<std::string> system_prompt;

    // Hedge: replace an unsure opener by the most likely of hedge_phrases. Unset thresholds
    // come from the model file (kHedgeMinMeanLogprobKey, kHedgeMaxEntropyKey, written by
    // `microlm calibrate-hedge`), else the defaults measured on SmolLM2-135M-Instruct (see
    // opener.cpp).
    bool hedge = true;
    std::optional<float> hedge_min_mean_logprob;  // hedge when the mean token log-probability is lower
    std::optional<float> hedge_max_entropy;       // or when any step's entropy (nats) is higher
    std::vector<std::string> hedge_phrases = default_hedge_phrases();
    // An opener that starts like a refusal ("I'm sorry, I don't have ...") is treated as
    // unsure however confident the μLM was: whether to refuse is the cloud's call, and a μLM
    // trained on chat logs learns refusals as a safe-sounding start. Compared case-insensitively
    // on whole words, typographic apostrophes as ASCII; empty: no such rule.
    std::vector<std::string> refusal_prefixes = default_refusal_prefixes();
    // false: words are held until the opener is complete and judged (needed to hedge before
    // anything is shown); true: each word is handed out as decoded and no hedge is applied
    // (the result still says whether the opener was unsure).
    bool stream_before_confident = false;
};

struct OpenerWord {
    std::string text;          // as in Word::text
    std::string space_before;  // "" for the first word; otherwise as the model wrote it (" ", "\n", ...)
    double ms = 0.0;           // when it was handed out, from the start of run()
};

struct OpenerConfidence {
    double mean_logprob = 0.0;  // mean over the opener's tokens of log p(token), natural log
    double min_logprob = 0.0;   // the least likely token's log p
    double max_entropy = 0.0;   // the most uncertain step's entropy of the next-token distribution, nats
    bool refusal = false;       // it starts with one of refusal_prefixes (then also unsure)
    bool unsure = false;        // below the configured thresholds, a refusal, or no words at all
};

enum class OpenerStop {
    kMaxWords,   // reached max_words
    kClause,     // a clause boundary after at least min_words
    kEndOfTurn,  // the model ended its turn
    kMaxTokens,  // the token budget ran out
};

struct OpenerTimings {
    int64_t prompt_tokens = 0;    // tokens of the formatted conversation
    int64_t reused_tokens = 0;    // of those, already in the KV cache (system prompt, earlier turns)
    bool prompt_cut = false;      // turns were left out or the last message shortened to fit
    int64_t decoded_tokens = 0;   // tokens sampled for the opener, the stopping token included
    double prefill_ms = 0.0;      // formatting, tokenizing and evaluating the prompt
    double first_word_ms = -1.0;  // from the start of run() to the first on_word call; -1 if none
    double hedge_ms = 0.0;        // scoring the hedge phrases, when that happened
    double total_ms = 0.0;        // the whole run()
};

struct OpenerResult {
    std::string text;  // what the user was given: the words joined with their spacing
    std::vector<OpenerWord> words;
    // What the μLM decoded (also when it was hedged away): the tokens behind its words (not
    // the look-ahead token that only proved the last word finished, not the end-of-turn token),
    // log p of each under the model's own distribution, and that distribution's entropy.
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    std::vector<float> entropies;
    OpenerConfidence confidence;
    bool ended_turn = false;  // the model ended its reply within the opener: no cloud needed
    OpenerStop stop = OpenerStop::kMaxTokens;
    bool hedged = false;              // text is a hedge phrase; decoded_text is what it replaced
    std::string decoded_text;         // the μLM's own opener
    std::vector<float> hedge_scores;  // mean log p of each hedge phrase, when they were scored
    OpenerTimings timings;
};

// A per-run length for the opener (0: the config's): e.g. more words so that their paced
// delivery covers the cloud's expected wait (pacer.h). The opener still stops only at a clause
// boundary after min_words, or at max_words.
struct OpenerLength {
    int min_words = 0;
    int max_words = 0;
};

// Runs the opener policy on one Context (one conversation): not thread-safe. The Context and
// Tokenizer must outlive the Opener.
class Opener {
public:
    Opener(Context& ctx, const Tokenizer& tok, OpenerConfig cfg = {});

    // Evaluates the system turn now, so that the first run() only prefills the user's message.
    void warm_up();

    // Formats `history` (ChatML, several turns; its own leading system message wins over the
    // configured one) plus the assistant header, reuses the KV prefix the context already
    // holds, and decodes the opener. on_word is called for each word as it is handed out:
    // as soon as decoded when stream_before_confident, otherwise once the opener is judged.
    // Oldest turns are left out when the conversation does not fit the context or
    // max_prompt_tokens, and a last message that alone does not fit keeps its head and tail
    // around " [...] ".
    OpenerResult run(const std::vector<ChatMessage>& history,
                     const std::function<void(const OpenerWord&)>& on_word = {}, OpenerLength length = {});

    // Scores every hedge phrase as the start of the assistant's reply to `history` (mean
    // token log p) and returns the index of the best; scores get one entry per phrase.
    size_t choose_hedge(const std::vector<ChatMessage>& history, std::vector<float>* scores = nullptr);

    const OpenerConfig& config() const { return cfg_; }
    // The thresholds in force: the config's, else the model file's, else the defaults.
    float hedge_min_mean_logprob() const { return min_mean_logprob_; }
    float hedge_max_entropy() const { return max_entropy_; }
    // The system message used when a conversation has none (nullopt: none).
    const std::optional<std::string>& system_prompt() const { return system_; }
    // The local model the opener decodes with; the turn writes its local close with them too.
    Context& context() const { return ctx_; }
    const Tokenizer& tokenizer() const { return tok_; }

private:
    std::vector<int32_t> prompt_tokens(const std::vector<ChatMessage>& history, bool* cut = nullptr) const;
    std::vector<int32_t> shortened_last_message(std::vector<ChatMessage> msgs, int64_t limit) const;
    int64_t prompt_limit() const;  // the most prompt tokens: the context less the decode room, and max_prompt_tokens
    int64_t prefill(const std::vector<int32_t>& ids);  // returns the reused prefix length
    size_t score_hedges(int64_t prompt_len, std::vector<float>& scores);

    Context& ctx_;
    const Tokenizer& tok_;
    OpenerConfig cfg_;
    std::optional<std::string> system_;
    ChatFrame frame_;
    float min_mean_logprob_, max_entropy_;
    std::vector<std::vector<int32_t>> hedge_tokens_;  // hedge_phrases, tokenized once
    std::vector<int> hedge_words_;                    // their counting words (for a per-run length)
    std::vector<float> prompt_logits_;                // (n_vocab) the logits after the prompt
};

}  // namespace microlm
