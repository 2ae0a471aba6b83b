// The handoff's pure logic: what the cloud is sent to continue the opener (prefill or
// instruct), the verdict tag it answers with, and the stitching of its text onto the opener.
// No networking here: the cloud clients, timeouts and events are built on top of it.
#pragma once

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/chat.h"

namespace microlm {

// speech: the opener has been spoken and cannot be taken back; text: the display can be edited.
enum class Modality { kSpeech, kText };

// The continuator's judgement of the opener. Tag syntax (instruct mode): the output starts
// with "[keep]", "[pivot]" or "[retract]", then one space, then the text.
//   keep    the opener is fine; the text continues it from the next word.
//   pivot   the opener is off but stays; the text is a short bridge (<= ~12 words) then the answer.
//   retract the opener is wrong; the text is the whole corrected reply and replaces it (text only).
enum class Verdict { kKeep, kPivot, kRetract };

std::string_view verdict_name(Verdict v);  // "keep", "pivot", "retract"
// What a verdict becomes under a modality: speech cannot retract, so a retract is treated as
// a pivot there (its text is stitched on after the opener).
Verdict allowed_verdict(Verdict v, Modality m);

// ---- Continuation prompts ---------------------------------------------------------------

// `s` without trailing whitespace: how an opener is sent to be continued or scored.
std::string_view trim_right(std::string_view s);

// Prefill, raw completions: the conversation in ChatML, the assistant header, then the opener
// with no end token and no trailing space, so the model's next token continues the sentence.
// `default_system` is the cloud model's own template default (as in format_chatml).
std::string prefill_prompt(const std::vector<ChatMessage>& history, std::string_view opener,
                           const std::optional<std::string>& default_system);

// Prefill, chat APIs: the conversation plus a final assistant message holding the opener,
// for servers that continue a trailing assistant message (e.g. vLLM's continue_final_message,
// llama.cpp's server, Anthropic's prefill).
std::vector<ChatMessage> prefill_messages(const std::vector<ChatMessage>& history, std::string_view opener);

// Instruct: the continuator's system prompt. It says that the opener is already shown or
// spoken, that the output is appended to it verbatim, asks for the leading verdict tag
// (keep/pivot, plus retract for text), and carries `assistant_system` (the conversation's own
// system message, if any) as the instructions the reply must still follow.
std::string continuator_system_prompt(std::string_view opener, Modality modality,
                                      const std::optional<std::string>& assistant_system);

// Instruct: the continuator system prompt as the one system message (it replaces and carries
// the conversation's own), then the conversation's user and assistant turns unchanged.
std::vector<ChatMessage> instruct_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                           Modality modality);

// ---- Opener check: a verdict that does not need the cloud to emit a tag -----------------

// How the cloud's likelihood of the opener decides that it is off (opener_check.cpp). Both
// scores are the mean log p (nats per token) of the opener's tokens as the cloud's own reply:
//   likelihood  given the conversation: low when the cloud would not start that way;
//   pmi         that minus the same opener's score after a neutral conversation: low when the
//               conversation makes the opener no likelier than it is anywhere (it talks past
//               the question), which does not penalise openers that are merely unusual.
enum class CheckSignal { kOff, kLikelihood, kPmi, kAny, kAll };  // kAny/kAll: either / both
std::string_view check_signal_name(CheckSignal s);                 // "off", "likelihood", ...
std::optional<CheckSignal> parse_check_signal(std::string_view name);

// The thresholds were chosen on a calibration split of the eval's prompts (`microlm eval
// handoff --handoff-skip 20 --handoff-limit 10`, SmolLM2-135M as the cloud,
// scripts/check_thresholds.py): with SmolLM2's own openers, `any` at these detected 88% of
// other prompts' openers with 5% false alarms. The μLMs' own openers score low under that
// cloud (mean log p -3.2): see models/microlm-8m.md and eval/handoff-check/report.md.
struct OpenerCheckConfig {
    CheckSignal signal = CheckSignal::kOff;
    double min_logprob = -3.0;  // likelihood: off below this
    double min_pmi = -0.3;      // pmi: off below this
    // The continuation is asked for once the check has answered, not beside it: for servers that
    // run one request at a time (llama-cpp-python's stops a stream when another request arrives,
    // or with --interrupt_requests false makes the check wait for the whole continuation). Adds
    // the check's time before the continuation; an opener found off then costs no continuation.
    bool before_continuation = false;
    // A pivot's bridge: said right after the opener, then the cloud's plain answer follows. A
    // fixed phrase is what small clouds cannot get wrong (SmolLM2-135M, told to write one,
    // mostly ignored the spoken words). Empty: the cloud writes the bridge (pivot_messages).
    std::string pivot_bridge = "\xE2\x80\x94 or rather, to answer your question:";
};

struct OpenerScores {
    double given_conversation = std::numeric_limits<double>::quiet_NaN();
    double given_neutral = std::numeric_limits<double>::quiet_NaN();
    double pmi() const { return given_conversation - given_neutral; }
};

// Whether one signal (kLikelihood or kPmi) says the opener is off. A score that could not be
// had (NaN: the endpoint has no logprobs) never says off.
bool signal_says_off(CheckSignal s, const OpenerScores& scores, const OpenerCheckConfig& cfg);
// The configured verdict: keep, or (off) the modality's recovery: retract for text, pivot for speech.
Verdict check_verdict(const OpenerScores& scores, const OpenerCheckConfig& cfg, Modality modality);
// The neutral conversation the pmi's baseline is scored after: one empty user message.
std::vector<ChatMessage> neutral_history();

// Recovery when the check says off (the cloud was not asked for a tag, or ignored it):
// retract: a plain answer to the conversation replaces the opener; pivot: the configured bridge
// and a plain answer after the opener, or, with no bridge configured, pivot_messages: the
// continuator is told the words head the wrong way and writes a bridge of at most ~12 words,
// then the answer (appended after the opener, as in instruct mode).
std::vector<ChatMessage> pivot_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                        Modality modality);
// What the recovery request sends for `recovery` (kRetract or kPivot) under `cfg`.
std::vector<ChatMessage> recovery_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                           Verdict recovery, Modality modality, const OpenerCheckConfig& cfg);

// ---- Verdict tag ------------------------------------------------------------------------

// Strips the verdict tag from the start of a streamed continuation and reports the verdict.
// Accepted, case-insensitively, after optional leading whitespace:
//   [keep]  (keep)  <keep>  {keep}  [ keep ]  [verdict: keep]   -- any bracket pair
//   [keep   [keep:                                               -- closing bracket missing
//   keep:  keep]  verdict: keep                                  -- opening bracket missing
// and likewise for pivot and retract. A bracketed single word that is no verdict ("[ok]",
// "[kep]") is a malformed tag: stripped, verdict keep. Anything else is no tag: verdict keep
// and the text passes untouched ("Keep going" stays). Whitespace after a tag is dropped.
// Text is held back only while it may still be a tag, at most kMaxLookahead bytes.
class VerdictParser {
public:
    static constexpr size_t kMaxLookahead = 40;

    // The text after the tag that can be released now.
    std::string push(std::string_view delta);
    // End of stream: releases whatever is still held.
    std::string finish();

    bool decided() const { return decided_; }
    Verdict verdict() const { return verdict_; }   // kKeep until decided, and when no tag
    bool tag_found() const { return tag_found_; }  // a tag (valid or malformed) was stripped

private:
    std::string resolve(bool final);

    std::string buf_;
    bool decided_ = false;
    bool tag_found_ = false;
    bool strip_space_ = false;  // a tag was stripped and no text has followed it yet
    Verdict verdict_ = Verdict::kKeep;
};

// ---- Stitcher ---------------------------------------------------------------------------

// How the continuation's first characters are read at the seam.
enum class Seam {
    // Prefill: the model literally continued the opener's text, so its leading whitespace is
    // meaningful: no space means it continues the last word ("I do" + "n't").
    kExact,
    // Instruct: the model writes a fresh text that starts with a word; a space is put at the
    // seam unless the text starts with punctuation or a contraction ("'s", "n't").
    kWords,
};

// Joins a streamed continuation onto an opener that is already shown. Returns, delta by
// delta, the text to append to the opener:
//   - words the continuation repeats from the opener are dropped: the whole opener restarted
//     or its last few words, compared case- and punctuation-insensitively;
//   - one space at the seam when needed, none before punctuation, no double space, no
//     duplicated seam punctuation ("Sure," + ", here" → "Sure, here");
//   - a capital after a sentence end ("Sure." + "here" → "Sure. Here"); with Seam::kWords, a
//     function word capitalised inside the opener's sentence is lowered when the next word is
//     lowercase ("It is" + "The city of Paris" → "It is the city of Paris"; "The Matrix" stays).
// Holds text back only while a repeat is still possible or the seam is undecided (at most the
// opener's length in words, never more than kMaxHold bytes), then passes text through unchanged. With
// `replace` (a retract) the text replaces the opener instead: only its leading whitespace is dropped.
class Stitcher {
public:
    static constexpr size_t kMaxHold = 256;

    explicit Stitcher(std::string opener, Seam seam = Seam::kWords, bool replace = false);

    std::string push(std::string_view delta);
    std::string finish();

    size_t repeated_words() const { return repeated_; }  // opener words dropped from the continuation
    bool settled() const { return settled_; }            // the seam is decided; text now passes through

private:
    std::string settle(bool final);
    std::optional<std::string> seam_text(std::string_view rest, bool final) const;

    std::string opener_;                    // without trailing whitespace
    bool opener_ends_in_space_ = false;     // the shown opener already ends with whitespace
    std::vector<std::string> opener_norm_;  // the opener's words, normalised, empty ones left out
    Seam seam_;
    bool replace_;
    std::string buf_;
    bool settled_ = false;
    size_t repeated_ = 0;
};

// Verdict parsing and stitching together, as a gateway uses them on one continuation. The
// verdict is known (verdict()) before any text is returned; a retract's text replaces the
// opener, the others' is appended to it.
class ContinuationJoiner {
public:
    // expect_tag: instruct mode (the continuator was asked for a tag); prefill mode has none.
    ContinuationJoiner(std::string opener, Modality modality, bool expect_tag);
    // A verdict decided before the text (the opener check's recovery): no tag is parsed; a
    // pivot's text is stitched after the opener as fresh words, a retract's replaces it.
    ContinuationJoiner(std::string opener, Modality modality, Verdict decided);

    std::string push(std::string_view delta);
    std::string finish();

    std::optional<Verdict> verdict() const;  // after the modality's rule; nullopt until decided
    bool tag_found() const { return parser_.tag_found(); }
    const Stitcher* stitcher() const { return stitcher_ ? &*stitcher_ : nullptr; }

private:
    std::string feed(std::string_view text, bool final);

    std::string opener_;
    Modality modality_;
    bool expect_tag_;
    std::optional<Verdict> decided_;
    VerdictParser parser_;
    std::optional<Stitcher> stitcher_;
};

}  // namespace microlm
