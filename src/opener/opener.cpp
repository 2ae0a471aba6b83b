// The opener policy: word assembly from token pieces, the stopping rule (4-8 words, a clause
// boundary preferred), confidence from the model's own distribution, and the hedge. It decodes
// with the runtime's Context and Sampler; it knows nothing of the cloud or of the network.
#include "microlm/opener.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <span>
#include <tuple>

#include "microlm/error.h"
#include "microlm/stopwatch.h"
#include "microlm/unicode.h"

namespace microlm {
namespace {

struct TokenStats {
    float logprob;
    float entropy;
};

// log p(id) and the entropy of softmax(logits), from one max pass and one exp pass.
TokenStats token_stats(std::span<const float> logits, int32_t id) {
    const float mx = *std::max_element(logits.begin(), logits.end());
    double z = 0.0, zl = 0.0;
    for (const float l : logits) {
        const float d = l - mx;
        const double e = std::exp(d);
        z += e;
        zl += e * d;
    }
    const double log_z = std::log(z);
    return {static_cast<float>(logits[static_cast<size_t>(id)] - mx - log_z),
            static_cast<float>(log_z - zl / z)};
}

std::string join_words(const std::vector<OpenerWord>& words) {
    std::string s;
    for (const OpenerWord& w : words) s += w.space_before + w.text;
    return s;
}

}  // namespace

namespace {

// The words of `text` that count (letters or digits), as the opener counts its own.
int counting_words(std::string_view text) {
    WordAssembler a;
    std::vector<Word> words = a.push(text);
    if (std::optional<Word> last = a.finish()) words.push_back(std::move(*last));
    return static_cast<int>(std::count_if(words.begin(), words.end(), [](const Word& w) { return w.counts; }));
}

// With a length asked for (a paced opener that must cover the cloud's wait): the best-scored
// phrase of at least `min_words` words, else the longest (the best-scored of those); the first
// wins a tie, as in score_hedges.
size_t longer_hedge(const std::vector<int>& words, const std::vector<float>& scores, int min_words) {
    const auto key = [&](size_t i) {
        const bool enough = words[i] >= min_words;
        return std::tuple(enough, enough ? 0 : words[i], scores[i]);
    };
    size_t pick = 0;
    for (size_t i = 1; i < words.size(); ++i)
        if (key(i) > key(pick)) pick = i;
    return pick;
}

}  // namespace

std::vector<std::string> default_hedge_phrases() {
    return {"Let me think about that.", "Good question —", "Sure, let me help with that.",
            "Here's what I'd suggest:"};
}

std::vector<std::string> default_refusal_prefixes() {
    return {"I'm sorry",   "I am sorry",   "Sorry,",         "I apologize",  "I apologise", "As an AI",
            "As a language model", "I cannot", "I can't",    "I'm unable",   "I am unable", "I'm not able",
            "I am not able", "I don't have", "I do not have", "Unfortunately, I",
            // Non-answers: "I don't know, but I'm not sure what you mean by" says nothing a
            // cloud can continue into an answer (the 28M's opener for the README's question).
            "I don't know", "I do not know", "I'm not sure", "I am not sure"};
}

bool starts_like(std::string_view text, const std::vector<std::string>& prefixes) {
    // ASCII-lowercased, with the typographic apostrophe (U+2019) as '.
    std::string t;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text.compare(i, 3, "\xE2\x80\x99") == 0) {
            t.push_back('\'');
            i += 2;
        } else {
            t.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(text[i]))));
        }
    }
    const size_t start = t.find_first_not_of(" \t\n\"*");
    if (start == std::string::npos) return false;
    const std::string_view body = std::string_view(t).substr(start);
    for (const std::string& p : prefixes) {
        std::string lp;
        for (const char c : p) lp.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        if (lp.empty() || !body.starts_with(lp)) continue;
        const bool boundary = body.size() == lp.size() || !std::isalnum(static_cast<unsigned char>(body[lp.size()])) ||
                              !std::isalnum(static_cast<unsigned char>(lp.back()));
        if (boundary) return true;
    }
    return false;
}

// ---- Opener -----------------------------------------------------------------------------

// How the default hedge thresholds were chosen: see the note at the end of this file.
namespace {

float threshold(const std::optional<float>& configured, const Model& model, const char* key, float fallback) {
    if (configured) return *configured;
    const std::optional<double> v = model.file().get_float_opt(key);
    return v ? static_cast<float>(*v) : fallback;
}

}  // namespace

ChatFrame chat_frame_of(const std::vector<std::string>& vocabulary) {
    return std::find(vocabulary.begin(), vocabulary.end(), "<|im_start|>") != vocabulary.end() ? ChatFrame::kChatMl
                                                                                               : ChatFrame::kPlain;
}

Opener::Opener(Context& ctx, const Tokenizer& tok, OpenerConfig cfg)
    : ctx_(ctx),
      tok_(tok),
      cfg_(std::move(cfg)),
      frame_(chat_frame_of(tok)),
      min_mean_logprob_(threshold(cfg_.hedge_min_mean_logprob, ctx.model(), kHedgeMinMeanLogprobKey,
                                  kDefaultHedgeMinMeanLogprob)),
      max_entropy_(threshold(cfg_.hedge_max_entropy, ctx.model(), kHedgeMaxEntropyKey, kDefaultHedgeMaxEntropy)) {
    if (cfg_.min_words < 1 || cfg_.max_words < cfg_.min_words || cfg_.max_tokens < 1) {
        throw Error("opener: need 1 <= min_words <= max_words and max_tokens >= 1 (got min_words " +
                    std::to_string(cfg_.min_words) + ", max_words " + std::to_string(cfg_.max_words) +
                    ", max_tokens " + std::to_string(cfg_.max_tokens) + ")");
    }
    if (cfg_.hedge && cfg_.hedge_phrases.empty()) {
        throw Error("opener: hedging is on but hedge_phrases is empty; give a phrase or set hedge = false");
    }
    if (cfg_.system_prompt) {
        if (!cfg_.system_prompt->empty()) system_ = cfg_.system_prompt;
    } else {
        system_ = chat_template_default_system(tok_.vocab().chat_template);
    }
    for (const std::string& p : cfg_.hedge_phrases) {
        std::vector<int32_t> ids = tok_.encode(p, false, false);
        if (ids.empty()) throw Error("opener: hedge phrase \"" + p + "\" has no tokens");
        hedge_tokens_.push_back(std::move(ids));
        hedge_words_.push_back(counting_words(p));
    }
}

void Opener::warm_up() {
    if (!system_) return;
    const std::vector<int32_t> ids =
        tok_.encode(format_chat(frame_, {{"system", *system_}}, false, std::nullopt), true, true);
    const int64_t reused = ctx_.reuse_prefix(ids);
    ctx_.eval(std::span<const int32_t>(ids).subspan(static_cast<size_t>(reused)));
}

// The most prompt tokens: what the context holds once the opener (or the longest hedge phrase)
// has room after them, and at most max_prompt_tokens.
int64_t Opener::prompt_limit() const {
    size_t longest_hedge = 0;
    for (const auto& h : hedge_tokens_) longest_hedge = std::max(longest_hedge, h.size());
    const int64_t room = std::max<int64_t>(cfg_.max_tokens, static_cast<int64_t>(longest_hedge));
    int64_t limit = ctx_.n_ctx() - room;
    if (cfg_.max_prompt_tokens > 0) limit = std::min<int64_t>(limit, cfg_.max_prompt_tokens);
    return limit;
}

// The conversation as tokens, leaving out its oldest turns (never a leading system message,
// never the last message) until it fits prompt_limit(); *cut says whether anything was left out.
std::vector<int32_t> Opener::prompt_tokens(const std::vector<ChatMessage>& history, bool* cut) const {
    if (history.empty()) throw Error("opener: the conversation is empty; give at least the user's message");
    const int64_t limit = prompt_limit();
    const size_t kept_system = history.front().role == "system" ? 1 : 0;
    for (size_t first = kept_system;; ++first) {
        std::vector<ChatMessage> msgs(history.begin(),
                                      history.begin() + static_cast<std::ptrdiff_t>(kept_system));
        msgs.insert(msgs.end(), history.begin() + static_cast<std::ptrdiff_t>(first), history.end());
        std::vector<int32_t> ids = tok_.encode(format_chat(frame_, msgs, true, system_), true, true);
        if (cut) *cut = first > kept_system;
        if (static_cast<int64_t>(ids.size()) <= limit) return ids;
        if (first + 1 >= history.size()) {
            if (cut) *cut = true;
            return shortened_last_message(msgs, limit);
        }
    }
}

// The last message alone is too long: keep its first two thirds and last third of tokens around
// " [...] " (the question is usually at the start or the end), as the training data and the
// eval cut long prompts, until the prompt has at most `limit` tokens.
std::vector<int32_t> Opener::shortened_last_message(std::vector<ChatMessage> msgs, int64_t limit) const {
    static constexpr std::string_view kGap = " [...] ";
    const std::string original = msgs.back().content;
    const std::vector<int32_t> content = tok_.encode(original, false, false);
    std::vector<int32_t> ids = tok_.encode(format_chat(frame_, msgs, true, system_), true, true);
    int64_t keep = static_cast<int64_t>(content.size()) - (static_cast<int64_t>(ids.size()) - limit) - 4;
    for (; keep >= 8; keep -= 4) {
        const auto head = static_cast<size_t>(keep * 2 / 3), tail = static_cast<size_t>(keep) - head;
        msgs.back().content = tok_.decode(std::span(content).first(head), false) + std::string(kGap) +
                              tok_.decode(std::span(content).last(tail), false);
        ids = tok_.encode(format_chat(frame_, msgs, true, system_), true, true);
        if (static_cast<int64_t>(ids.size()) <= limit) return ids;
    }
    throw Error("opener: a prompt of at most " + std::to_string(limit) + " tokens (context " +
                std::to_string(ctx_.n_ctx()) + ", max_prompt_tokens " + std::to_string(cfg_.max_prompt_tokens) +
                ") is too small even for a shortened message (" + std::to_string(content.size()) +
                " tokens); allow more");
}

int64_t Opener::prefill(const std::vector<int32_t>& ids) {
    const int64_t reused = ctx_.reuse_prefix(ids);
    const std::span<const float> logits =
        ctx_.eval(std::span<const int32_t>(ids).subspan(static_cast<size_t>(reused)));
    prompt_logits_.assign(logits.begin(), logits.end());
    return reused;
}

// Mean token log p of each phrase as the reply's start: the prompt is in the cache and its
// logits in prompt_logits_; each phrase is evaluated in one batch after it and dropped again.
size_t Opener::score_hedges(int64_t prompt_len, std::vector<float>& scores) {
    scores.clear();
    for (const std::vector<int32_t>& ph : hedge_tokens_) {
        ctx_.truncate(prompt_len);
        double sum = token_stats(prompt_logits_, ph[0]).logprob;
        if (ph.size() > 1) {
            ctx_.eval(std::span<const int32_t>(ph.data(), ph.size() - 1), /*all_logits=*/true);
            const std::span<const float> rows = ctx_.logits();
            const auto n_vocab = static_cast<size_t>(ctx_.n_vocab());
            for (size_t i = 1; i < ph.size(); ++i)
                sum += token_stats(rows.subspan((i - 1) * n_vocab, n_vocab), ph[i]).logprob;
        }
        scores.push_back(static_cast<float>(sum / static_cast<double>(ph.size())));
    }
    ctx_.truncate(prompt_len);
    // The first phrase wins a tie, so the order of hedge_phrases is the order of preference.
    return static_cast<size_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
}

size_t Opener::choose_hedge(const std::vector<ChatMessage>& history, std::vector<float>* scores) {
    const std::vector<int32_t> ids = prompt_tokens(history);
    prefill(ids);
    std::vector<float> s;
    const size_t best = score_hedges(static_cast<int64_t>(ids.size()), s);
    if (scores) *scores = std::move(s);
    return best;
}

OpenerResult Opener::run(const std::vector<ChatMessage>& history,
                         const std::function<void(const OpenerWord&)>& on_word, OpenerLength length) {
    const Stopwatch t0;
    OpenerResult r;
    const std::vector<int32_t> ids = prompt_tokens(history, &r.timings.prompt_cut);
    r.timings.prompt_tokens = static_cast<int64_t>(ids.size());
    r.timings.reused_tokens = prefill(ids);
    r.timings.prefill_ms = t0.ms();
    std::span<const float> logits = prompt_logits_;

    const bool stream = cfg_.stream_before_confident;
    const int max_words = length.max_words > 0 ? length.max_words : cfg_.max_words;
    const int min_words = std::min(length.min_words > 0 ? length.min_words : cfg_.min_words, max_words);
    // The decode budget grows with a longer opener, within what the context has room for (the
    // prompt was shortened to leave cfg_.max_tokens).
    const int max_tokens = static_cast<int>(std::clamp<int64_t>(
        cfg_.max_tokens * max_words / std::max(1, cfg_.max_words), cfg_.max_tokens,
        std::max<int64_t>(cfg_.max_tokens, ctx_.n_ctx() - static_cast<int64_t>(ids.size()))));
    std::vector<OpenerWord> decoded;  // every word of the μLM's opener, handed out or held
    const auto hand_out = [&](OpenerWord w) {
        w.ms = t0.ms();
        if (r.words.empty()) r.timings.first_word_ms = w.ms;
        if (on_word) on_word(w);
        r.words.push_back(std::move(w));
    };

    Sampler sampler(cfg_.sampling);
    for (const int32_t id : ids) sampler.accept(id);
    WordAssembler assembler;
    std::vector<int32_t> tokens;
    std::vector<float> logprobs, entropies;
    size_t committed = 0;  // tokens behind the words accepted so far
    int counted = 0;
    bool stop = false;
    // Returns true when the opener is complete after this word.
    const auto accept = [&](Word w, size_t tokens_behind) {
        committed = tokens_behind;
        OpenerWord ow{std::move(w.text), decoded.empty() ? std::string() : std::move(w.space_before), 0.0};
        decoded.push_back(ow);
        if (stream) hand_out(std::move(ow));
        if (w.counts) ++counted;
        if (counted >= max_words) {
            r.stop = OpenerStop::kMaxWords;
            return true;
        }
        if (counted >= min_words && w.clause_end) {
            r.stop = OpenerStop::kClause;
            return true;
        }
        return false;
    };

    for (int i = 0; i < max_tokens && !stop; ++i) {
        const int32_t id = sampler.sample(logits);
        ++r.timings.decoded_tokens;
        const TokenStats ts = token_stats(logits, id);
        if (tok_.is_end_of_generation(id)) {
            if (std::optional<Word> w = assembler.finish()) accept(std::move(*w), tokens.size());
            r.ended_turn = true;
            r.stop = OpenerStop::kEndOfTurn;
            break;
        }
        tokens.push_back(id);
        logprobs.push_back(ts.logprob);
        entropies.push_back(ts.entropy);
        const std::string piece = tok_.token_to_piece(id, false);
        // A piece that opens with whitespace finishes the held word without adding to it: if
        // the opener stops there, this token was only a look-ahead and is not part of it.
        size_t at = 0;
        const bool opens_with_space = assembler.has_partial_word() && !piece.empty() &&
                                      unicode::is_whitespace(unicode::decode_lenient(piece, at));
        std::vector<Word> words = assembler.push(piece);
        for (size_t j = 0; j < words.size() && !stop; ++j) {
            stop =
                accept(std::move(words[j]), j == 0 && opens_with_space ? tokens.size() - 1 : tokens.size());
        }
        if (stop) break;
        sampler.accept(id);
        if (i + 1 < max_tokens) logits = ctx_.eval(std::span<const int32_t>(&id, 1));
    }

    // Confidence over the tokens behind the words; a word left unfinished is dropped with its tokens.
    tokens.resize(committed);
    logprobs.resize(committed);
    entropies.resize(committed);
    OpenerConfidence& c = r.confidence;
    if (!logprobs.empty()) {
        double sum = 0.0;
        c.min_logprob = logprobs.front();
        for (size_t i = 0; i < logprobs.size(); ++i) {
            sum += logprobs[i];
            c.min_logprob = std::min<double>(c.min_logprob, logprobs[i]);
            c.max_entropy = std::max<double>(c.max_entropy, entropies[i]);
        }
        c.mean_logprob = sum / static_cast<double>(logprobs.size());
    }
    r.decoded_text = join_words(decoded);
    c.refusal = starts_like(r.decoded_text, cfg_.refusal_prefixes);
    c.unsure = counted == 0 || c.mean_logprob < min_mean_logprob_ || c.max_entropy > max_entropy_ || c.refusal;
    r.tokens = std::move(tokens);
    r.logprobs = std::move(logprobs);
    r.entropies = std::move(entropies);

    if (!stream) {
        if (cfg_.hedge && c.unsure) {
            const Stopwatch th;
            size_t best = score_hedges(static_cast<int64_t>(ids.size()), r.hedge_scores);
            if (length.min_words > 0) best = longer_hedge(hedge_words_, r.hedge_scores, length.min_words);
            r.timings.hedge_ms = th.ms();
            r.hedged = true;
            r.ended_turn = false;  // a hedge is only a start: the cloud still answers
            WordAssembler phrase;
            std::vector<Word> words = phrase.push(cfg_.hedge_phrases[best]);
            if (std::optional<Word> last = phrase.finish()) words.push_back(std::move(*last));
            for (Word& w : words) {
                hand_out(
                    {std::move(w.text), r.words.empty() ? std::string() : std::move(w.space_before), 0.0});
            }
        } else {
            for (OpenerWord& w : decoded) hand_out(std::move(w));
        }
    }
    r.text = join_words(r.words);
    r.timings.total_ms = t0.ms();
    return r;
}

// How the default hedge thresholds (OpenerConfig::hedge_max_entropy = 4.85 nats,
// hedge_min_mean_logprob = -1.1) were chosen. SmolLM2-135M-Instruct (Q4_1, greedy, its own
// default system prompt, min/max words 4/8) answered 40 single-turn prompts: facts, how-to,
// chit-chat, creative requests, sums, nonsense. Each opener was labelled by hand:
//   - good openers ("You can reverse a list in Python using", "Hello there! How can I assist
//     you today?"): mean log p -0.05 to -1.05, most above -0.65; max entropy at most 4.75;
//   - bad ones (off-topic or invented: "L'Étoile, la Cité, la France," for the capital of
//     France, "The weather is quite pleasant today,"): max entropy 4.9 to 7.2, mean log p
//     -1.08 to -1.39;
//   - confidently wrong facts ("17 * 23 = 381", "The Berlin Wall was erected in 1989,") score
//     like good openers (mean -0.3 to -0.65, entropy <= 4.4). No threshold on confidence
//     separates them; they are for the continuator to pivot or retract.
// So the maximum entropy carries the decision: above 4.85 hedged 8 of the 40 (6 bad, 2
// passable, no good one), plus one empty opener (a run of emoji with no word in 24 tokens).
// The mean threshold is a backstop for openers that are unlikely throughout; on this set it
// adds nothing the entropy missed. On 16 further prompts the same thresholds hedged 3 (all
// off: "Alejandro's answer is 365 days,", "A cat with a tail of a cat,", "A Roma adventure.")
// and no good opener, and let "12 + 30 = 32." through. Entropy is bounded by ln(vocab size)
// (10.8 nats for SmolLM2, 9.0 for an 8192-token μLM) and smaller models are less sure
// overall, so each μLM should be re-measured the same way before these defaults are trusted.

}  // namespace microlm
