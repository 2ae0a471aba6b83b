// The opener: word assembly driven token by token through a hand-made vocabulary whose tokens
// split words awkwardly, then the whole policy on a random-weight model, checked against an
// independent decode (generate() on a fresh context): whole words only, the stopping rule,
// real-time callbacks, log-probabilities, KV reuse, and the hedge's choice.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/model.h"
#include "microlm/opener.h"
#include "microlm/random_model.h"
#include "microlm/unicode.h"

using namespace microlm;

namespace {

// ---- A hand-made vocabulary ---------------------------------------------------------------

std::string mapped(std::string_view bytes) {
    std::string s;
    for (const char c : bytes) s += unicode::byte_to_utf8(static_cast<uint8_t>(c));
    return s;
}

// Ids 0..255 are the bytes (so ",", "0", "\n" are byte tokens); then tokens that cut words in
// odd places; then the ChatML specials.
const std::vector<std::string> kPieces = {
    "Hel",          "lo",           " wor",  "ld",   " \xE2\x80\x94", "\n\n",   ".\n",
    " 2",           "24",           " caf",  " The", " cat",          "Good",   " question",
    " here",        "Steps",        ":\n\n", " Mix", "a b c",         "Hello ", "\xE4\xBD\xA0\xE5\xA5\xBD",
    "\xE3\x80\x82", "\xE6\x88\x91", " tips", "More", " Dr",           " Smith", " said",
    " no",          " (e",          ".g",
};

Tokenizer hand_tokenizer() {
    VocabData v;
    v.pre = "smollm";
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(mapped(std::string(1, static_cast<char>(b))));
        v.token_types.push_back(static_cast<int32_t>(TokenType::NORMAL));
    }
    for (const std::string& p : kPieces) {
        v.tokens.push_back(mapped(p));
        v.token_types.push_back(static_cast<int32_t>(TokenType::NORMAL));
    }
    for (const char* sp : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
        v.tokens.push_back(sp);
        v.token_types.push_back(static_cast<int32_t>(TokenType::CONTROL));
    }
    v.eos_id = static_cast<int32_t>(v.tokens.size() - 1);
    return Tokenizer(std::move(v));
}

const Tokenizer& hand() {
    static const Tokenizer t = hand_tokenizer();
    return t;
}

int32_t tid(std::string_view piece) {
    const int32_t id = hand().token_id(mapped(piece));
    EXPECT_GE(id, 0) << piece;
    return id;
}

struct Fed {
    std::vector<std::vector<Word>> per_token;  // words completed by each token
    std::vector<Word> all;
};

// Feeds tokens by id (the way the opener does: token_to_piece), then end of turn.
Fed feed(const std::vector<int32_t>& ids, bool end_of_turn = true) {
    WordAssembler a;
    Fed f;
    for (const int32_t id : ids) {
        f.per_token.push_back(a.push(hand().token_to_piece(id, false)));
        f.all.insert(f.all.end(), f.per_token.back().begin(), f.per_token.back().end());
    }
    if (end_of_turn) {
        if (auto w = a.finish()) f.all.push_back(*w);
    }
    return f;
}

std::vector<std::string> texts(const std::vector<Word>& ws) {
    std::vector<std::string> out;
    for (const Word& w : ws) out.push_back(w.text);
    return out;
}

using Strings = std::vector<std::string>;

}  // namespace

// ---- WordAssembler ------------------------------------------------------------------------

TEST(WordAssembler, AWordIsHandedOutWhenTheNextTokenStartsWithSpace) {
    const Fed f = feed({tid("Hel"), tid("lo"), tid(","), tid(" wor"), tid("ld"), tid("!")});
    ASSERT_EQ(f.per_token.size(), 6u);
    EXPECT_TRUE(f.per_token[0].empty() && f.per_token[1].empty() && f.per_token[2].empty());
    ASSERT_EQ(f.per_token[3].size(), 1u);  // " wor" finishes "Hello,"
    EXPECT_EQ(f.per_token[3][0].text, "Hello,");
    EXPECT_TRUE(f.per_token[3][0].clause_end);
    EXPECT_TRUE(f.per_token[4].empty() && f.per_token[5].empty());
    EXPECT_EQ(texts(f.all), (Strings{"Hello,", "world!"}));  // the last word at end of turn
    EXPECT_EQ(f.all[1].space_before, " ");
}

TEST(WordAssembler, LeadingSpaceAndTokensWithInnerOrTrailingSpace) {
    const Fed a = feed({tid(" The"), tid(" cat")});
    EXPECT_EQ(a.all[0].space_before, " ");
    EXPECT_EQ(texts(a.all), (Strings{"The", "cat"}));

    const Fed b = feed({tid("a b c")}, false);  // one token, three words: two are finished
    EXPECT_EQ(texts(b.per_token[0]), (Strings{"a", "b"}));

    const Fed c = feed({tid("Hello ")}, false);  // a trailing space finishes the word at once
    EXPECT_EQ(texts(c.per_token[0]), (Strings{"Hello"}));
}

TEST(WordAssembler, PurePunctuationIsAWordThatDoesNotCount) {
    const Fed f = feed({tid("Good"), tid(" question"), tid(" \xE2\x80\x94"), tid(" here")});
    ASSERT_EQ(texts(f.all), (Strings{"Good", "question", "\xE2\x80\x94", "here"}));
    EXPECT_TRUE(f.all[0].counts);
    EXPECT_FALSE(f.all[2].counts);
    EXPECT_TRUE(f.all[2].clause_end);  // " —" is a clause boundary
    EXPECT_FALSE(f.all[1].clause_end);
}

TEST(WordAssembler, MultiByteCharactersSplitAcrossTokens) {
    // " café" as " caf" + the two bytes of "é", then a 4-byte emoji as four byte tokens.
    const Fed f = feed({tid(" caf"), 0xC3, 0xA9, tid(" cat"), 0xF0, 0x9F, 0x91, 0x8D, tid(" here")});
    EXPECT_EQ(texts(f.all), (Strings{"caf\xC3\xA9", "cat\xF0\x9F\x91\x8D", "here"}));
    // No word is finished while a character is incomplete.
    WordAssembler a;
    EXPECT_TRUE(a.push(" caf").empty());
    EXPECT_TRUE(a.push("\xC3").empty());
    EXPECT_TRUE(a.has_partial_word());
    const auto w = a.push("\xA9 ");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].text, "caf\xC3\xA9");
}

TEST(WordAssembler, InvalidBytesBecomeReplacementCharacters) {
    const Fed f =
        feed({tid(" cat"), 0xFF, tid(" here"), 0xE4, 0xBD});  // a stray byte; a cut-off character at the end
    EXPECT_EQ(texts(f.all), (Strings{"cat\xEF\xBF\xBD", "here\xEF\xBF\xBD\xEF\xBF\xBD"}));
}

TEST(WordAssembler, DigitsSplitPerTokenStayOneNumber) {
    const Fed f = feed({tid(" 2"), tid("0"), tid("24"), tid("."), tid(" here")});
    EXPECT_EQ(texts(f.all), (Strings{"2024.", "here"}));
    EXPECT_TRUE(f.all[0].clause_end);  // a year is no list number
}

TEST(WordAssembler, NewlinesEndClausesAndAreKeptAsSpacing) {
    const Fed f = feed({tid("Steps"), tid(":\n\n"), tid("1"), tid("."), tid(" Mix")});
    ASSERT_EQ(texts(f.all), (Strings{"Steps:", "1.", "Mix"}));
    EXPECT_TRUE(f.all[0].clause_end);
    EXPECT_EQ(f.all[1].space_before, "\n\n");
    EXPECT_FALSE(f.all[1].clause_end);  // "1." numbers a list

    const Fed g = feed({tid(" tips"), tid("\n"), tid("More")});
    EXPECT_EQ(texts(g.all), (Strings{"tips", "More"}));
    EXPECT_TRUE(g.all[0].clause_end);  // ended by a line break, no punctuation
    EXPECT_EQ(g.all[1].space_before, "\n");

    const Fed h = feed({tid("ld"), tid(".\n"), tid("More")});
    EXPECT_EQ(texts(h.all), (Strings{"ld.", "More"}));
}

TEST(WordAssembler, AbbreviationsDoNotEndAClause) {
    const Fed f = feed(
        {tid(" Dr"), tid("."), tid(" Smith"), tid(" said"), tid(" (e"), tid(".g"), tid("."), tid(" no")});
    ASSERT_EQ(texts(f.all), (Strings{"Dr.", "Smith", "said", "(e.g.", "no"}));
    EXPECT_FALSE(f.all[0].clause_end);
    EXPECT_FALSE(f.all[3].clause_end);
}

TEST(WordAssembler, ChineseHasAWordPerCharacter) {
    const Fed f = feed({tid("\xE4\xBD\xA0\xE5\xA5\xBD"), tid("\xE3\x80\x82"), tid("\xE6\x88\x91")});
    ASSERT_EQ(texts(f.all), (Strings{"\xE4\xBD\xA0", "\xE5\xA5\xBD\xE3\x80\x82", "\xE6\x88\x91"}));
    EXPECT_TRUE(f.all[1].clause_end);  // 。
    EXPECT_EQ(f.all[2].space_before, "");
}

TEST(WordAssembler, ClauseEnds) {
    for (const char* w :
         {"Paris.", "well,", "so;", "note:", "Yes!", "Why?", "\"Yes!\"", "(Paris.)", "**Note:**", "...",
          "\xE2\x80\x94", "-", "wait\xE2\x80\x94", "2024.", "\xE2\x80\xA6"}) {
        EXPECT_TRUE(word_ends_clause(w, false)) << w;
    }
    for (const char* w : {"Paris", "Dr.", "e.g.", "(i.e.", "2.", "12.", "3.14", "U.S.", "\"Paris\"", "**"}) {
        EXPECT_FALSE(word_ends_clause(w, false)) << w;
    }
    EXPECT_TRUE(word_ends_clause("Paris", true));
}

// ---- The opener on a random-weight model --------------------------------------------------

namespace {

class OpenerModel : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        path_ = (std::filesystem::temp_directory_path() /
                 ("microlm_test_opener_" + std::to_string(::getpid()) + ".gguf"))
                    .string();
        write_random_llama(path_, *model_shape_preset("tiny"), DType::Q8_0, 11);
        model_ = Model::load(path_);
        tok_ = std::make_unique<Tokenizer>(vocab_from_gguf(model_->file()));
    }
    static void TearDownTestSuite() {
        tok_.reset();
        model_.reset();
        std::filesystem::remove(path_);
    }

    // The prompt as the opener must build it: ChatML, no system turn (the random model's
    // template has no default), the assistant header.
    static std::vector<int32_t> prompt(const std::vector<ChatMessage>& h) {
        return tok_->encode(format_chatml(h, true, std::nullopt), true, true);
    }

    static inline std::string path_;
    static inline std::unique_ptr<Model> model_;
    static inline std::unique_ptr<Tokenizer> tok_;
};

const std::vector<ChatMessage> kAsk = {{"user", "What is the capital of France?"}};

SamplerParams sampling(uint64_t seed) {
    return SamplerParams{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed};
}

// Text as the assembler shows invalid bytes: each byte that starts no valid character is U+FFFD.
std::string sanitize(std::string_view bytes) {
    std::string out;
    for (size_t pos = 0; pos < bytes.size();) {
        uint32_t c = unicode::decode_lenient(bytes, pos);
        if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = unicode::kReplacement;
        unicode::append_utf8(out, c);
    }
    return out;
}

uint32_t first_cp(std::string_view s) {
    size_t at = 0;
    return unicode::decode_lenient(s, at);
}

uint32_t last_cp(std::string_view s) {
    size_t at = s.size() - 1;
    while (at > 0 && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
    return unicode::decode_lenient(s, at);
}

bool is_cjk(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0x20000 && c <= 0x2FFFF);
}

size_t leading_space(std::string_view s) {
    for (size_t pos = 0; pos < s.size();) {
        const size_t at = pos;
        if (!unicode::is_whitespace(unicode::decode_lenient(s, pos))) return at;
    }
    return s.size();
}

// The run of whitespace that starts `s` holds a line break.
bool line_break_follows(std::string_view s) {
    for (size_t pos = 0; pos < s.size();) {
        const uint32_t c = unicode::decode_lenient(s, pos);
        if (!unicode::is_whitespace(c)) return false;
        if (c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x85 || c == 0x2028 || c == 0x2029)
            return true;
    }
    return false;
}

int counting_words(const OpenerResult& r) {
    int n = 0;
    for (const OpenerWord& w : r.words) {
        bool any = false;
        for (size_t pos = 0; pos < w.text.size();) {
            const uint32_t c = unicode::decode_lenient(w.text, pos);
            const auto cat = unicode::category(c);
            any |= cat == unicode::Category::kLetter || cat == unicode::Category::kNumber || is_cjk(c);
        }
        n += any;
    }
    return n;
}

// log softmax(row)[id] and the entropy of softmax(row), in double precision.
std::pair<double, double> reference_stats(std::span<const float> row, int32_t id) {
    double mx = -1e30;
    for (const float l : row) mx = std::max<double>(mx, l);
    double z = 0;
    for (const float l : row) z += std::exp(l - mx);
    double h = 0;
    for (const float l : row) {
        const double lp = l - mx - std::log(z);
        h -= std::exp(lp) * lp;
    }
    return {row[static_cast<size_t>(id)] - mx - std::log(z), h};
}

}  // namespace

TEST_F(OpenerModel, WholeWordsAndTheStoppingRuleAgainstAnIndependentDecode) {
    struct Limits {
        int min_words, max_words, max_tokens;
    };
    int by_stop[4] = {0, 0, 0, 0};
    for (const Limits lim : {Limits{4, 8, 24}, Limits{1, 1, 8}, Limits{2, 3, 40}}) {
        for (uint64_t seed = 1; seed <= 120; ++seed) {
            OpenerConfig cfg;
            cfg.min_words = lim.min_words;
            cfg.max_words = lim.max_words;
            cfg.max_tokens = lim.max_tokens;
            cfg.sampling = sampling(seed);
            cfg.stream_before_confident = true;
            Context ctx(*model_, 256, 1);
            Opener op(ctx, *tok_, cfg);
            std::vector<OpenerWord> called;
            const OpenerResult r = op.run(kAsk, [&](const OpenerWord& w) { called.push_back(w); });

            // The reference: the same sampler on a fresh context, through generate().
            Context ref_ctx(*model_, 256, 1);
            Sampler ref_sampler(sampling(seed));
            std::vector<int32_t> ref;
            generate(ref_ctx, ref_sampler, *tok_, prompt(kAsk), lim.max_tokens, [&](int32_t id) {
                ref.push_back(id);
                return true;
            });
            std::string raw;
            for (const int32_t id : ref) raw += tok_->token_to_piece(id, false);
            std::string stream = sanitize(raw);
            stream.erase(0, leading_space(stream));

            const std::string ctx_msg = "seed " + std::to_string(seed) + " limits " +
                                        std::to_string(lim.min_words) + "/" + std::to_string(lim.max_words) +
                                        " text [" + r.text + "] stream [" + stream + "]";
            ASSERT_EQ(called.size(), r.words.size()) << ctx_msg;
            ASSERT_TRUE(stream.starts_with(r.text)) << ctx_msg;
            for (const OpenerWord& w : r.words) {
                ASSERT_FALSE(w.text.empty()) << ctx_msg;
                for (size_t pos = 0; pos < w.text.size();)
                    ASSERT_FALSE(unicode::is_whitespace(unicode::decode_lenient(w.text, pos))) << ctx_msg;
            }
            ASSERT_TRUE(r.words.empty() || r.words[0].space_before.empty()) << ctx_msg;
            // Never half a word: what follows the opener in the stream starts a new word.
            const std::string after = stream.substr(r.text.size());
            if (!r.text.empty() && !after.empty()) {
                const uint32_t next = first_cp(after);
                ASSERT_TRUE(unicode::is_whitespace(next) || (is_cjk(next) && is_cjk(last_cp(r.text))))
                    << ctx_msg;
            }

            const int n = counting_words(r);
            ASSERT_LE(n, lim.max_words) << ctx_msg;
            switch (r.stop) {
                case OpenerStop::kMaxWords:
                    ASSERT_EQ(n, lim.max_words) << ctx_msg;
                    break;
                case OpenerStop::kClause:
                    ASSERT_GE(n, lim.min_words) << ctx_msg;
                    ASSERT_TRUE(word_ends_clause(r.words.back().text, line_break_follows(after))) << ctx_msg;
                    break;
                case OpenerStop::kEndOfTurn: {
                    ASSERT_TRUE(r.ended_turn) << ctx_msg;
                    ASSERT_LT(static_cast<int>(ref.size()), lim.max_tokens)
                        << ctx_msg;  // the reference stopped too
                    ASSERT_EQ(leading_space(after), after.size()) << ctx_msg;
                    break;
                }
                case OpenerStop::kMaxTokens:
                    ASSERT_EQ(r.timings.decoded_tokens, lim.max_tokens) << ctx_msg;
                    break;
            }
            ASSERT_EQ(r.ended_turn, r.stop == OpenerStop::kEndOfTurn) << ctx_msg;
            ++by_stop[static_cast<int>(r.stop)];

            // The tokens behind the words are the reference's first tokens, with their stats.
            ASSERT_LE(r.tokens.size(), ref.size()) << ctx_msg;
            ASSERT_TRUE(std::equal(r.tokens.begin(), r.tokens.end(), ref.begin())) << ctx_msg;
            ASSERT_EQ(r.logprobs.size(), r.tokens.size());
            ASSERT_EQ(r.entropies.size(), r.tokens.size());
            for (size_t i = 0; i < r.tokens.size(); ++i) {
                ASSERT_LE(r.logprobs[i], 1e-6f);
                ASSERT_GE(r.entropies[i], -1e-4f);
                ASSERT_LE(r.entropies[i], std::log(512.0f) + 1e-3f);
            }
        }
    }
    // Each way of stopping was exercised.
    for (int s = 0; s < 4; ++s) EXPECT_GT(by_stop[s], 0) << "stop reason " << s;
    std::printf("stops: max_words %d, clause %d, end_of_turn %d, max_tokens %d\n", by_stop[0], by_stop[1],
                by_stop[2], by_stop[3]);
}

TEST_F(OpenerModel, LogProbsAndEntropiesMatchAReferenceComputation) {
    OpenerConfig cfg;
    cfg.hedge = false;
    Context ctx(*model_, 256, 1);
    Opener op(ctx, *tok_, cfg);
    const OpenerResult r = op.run(kAsk);
    ASSERT_FALSE(r.tokens.empty());

    Context fresh(*model_, 256, 1);
    std::vector<int32_t> all = prompt(kAsk);
    const size_t p = all.size();
    all.insert(all.end(), r.tokens.begin(), r.tokens.end());
    fresh.eval(all, true);
    const auto rows = fresh.logits();
    double sum = 0, max_h = 0, max_diff = 0;
    for (size_t i = 0; i < r.tokens.size(); ++i) {
        const auto [lp, h] = reference_stats(rows.subspan((p - 1 + i) * 512, 512), r.tokens[i]);
        max_diff = std::max({max_diff, std::fabs(lp - r.logprobs[i]), std::fabs(h - r.entropies[i])});
        sum += lp;
        max_h = std::max(max_h, h);
    }
    std::printf("max |logprob or entropy - reference| = %.2e over %zu tokens\n", max_diff, r.tokens.size());
    EXPECT_LE(max_diff, 2e-3);
    EXPECT_NEAR(r.confidence.mean_logprob, sum / static_cast<double>(r.tokens.size()), 2e-3);
    EXPECT_NEAR(r.confidence.max_entropy, max_h, 2e-3);
}

TEST_F(OpenerModel, StreamingHandsOutWordsWhileDecodingAndBufferedModeAfter) {
    int checked = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        for (const bool stream : {true, false}) {
            OpenerConfig cfg;
            cfg.sampling = sampling(seed);
            cfg.stream_before_confident = stream;
            cfg.hedge = false;  // compare the μLM's own words in both modes
            Context ctx(*model_, 256, 1);
            Opener op(ctx, *tok_, cfg);
            std::vector<int64_t> n_past_at;
            std::vector<double> ms_at;
            const OpenerResult r = op.run(kAsk, [&](const OpenerWord& w) {
                n_past_at.push_back(ctx.n_past());
                ms_at.push_back(w.ms);
            });
            ASSERT_FALSE(r.hedged);
            if (n_past_at.size() < 2) continue;
            ++checked;
            for (size_t i = 1; i < ms_at.size(); ++i) ASSERT_GE(ms_at[i], ms_at[i - 1]);
            ASSERT_DOUBLE_EQ(r.timings.first_word_ms, ms_at[0]);
            ASSERT_LE(r.timings.first_word_ms, r.timings.total_ms);
            if (stream) {
                // Each random-vocabulary token finishes at most one word, so every word was
                // handed out before the next word's tokens were decoded.
                for (size_t i = 1; i < n_past_at.size(); ++i)
                    ASSERT_LT(n_past_at[i - 1], n_past_at[i]) << seed;
            } else {
                for (const int64_t n : n_past_at) ASSERT_EQ(n, ctx.n_past()) << seed;
            }
        }
    }
    EXPECT_GT(checked, 10);
}

TEST_F(OpenerModel, HedgePicksThePhraseTheModelFindsMostLikely) {
    OpenerConfig cfg;
    cfg.hedge_min_mean_logprob = 1.0f;  // log p <= 0: every opener is unsure
    cfg.hedge_phrases = {"Let me think about that.", "Good question \xE2\x80\x94",
                         "Sure, let me help with that.", "Here's what I'd suggest:", "Hmm."};
    Context ctx(*model_, 256, 1);
    Opener op(ctx, *tok_, cfg);
    std::vector<OpenerWord> called;
    const OpenerResult r = op.run(kAsk, [&](const OpenerWord& w) { called.push_back(w); });
    ASSERT_TRUE(r.confidence.unsure);
    ASSERT_TRUE(r.hedged);
    EXPECT_FALSE(r.ended_turn);
    ASSERT_EQ(r.hedge_scores.size(), cfg.hedge_phrases.size());

    // Independent scores: each phrase appended to the prompt in a fresh context, one batch.
    std::vector<double> want;
    for (const std::string& phrase : cfg.hedge_phrases) {
        std::vector<int32_t> all = prompt(kAsk);
        const size_t p = all.size();
        const std::vector<int32_t> ph = tok_->encode(phrase, false, false);
        all.insert(all.end(), ph.begin(), ph.end());
        Context fresh(*model_, 256, 1);
        fresh.eval(all, true);
        double sum = 0;
        for (size_t i = 0; i < ph.size(); ++i)
            sum += reference_stats(fresh.logits().subspan((p - 1 + i) * 512, 512), ph[i]).first;
        want.push_back(sum / static_cast<double>(ph.size()));
    }
    const size_t best = static_cast<size_t>(std::max_element(want.begin(), want.end()) - want.begin());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(r.hedge_scores[i], want[i], 2e-3) << cfg.hedge_phrases[i];
        if (i != best) {
            EXPECT_GT(want[best] - want[i], 5e-3) << "scores too close to tell apart";
        }
    }
    EXPECT_EQ(r.text, cfg.hedge_phrases[best]);
    EXPECT_NE(r.decoded_text, r.text);
    std::string joined;
    for (const OpenerWord& w : called) joined += w.space_before + w.text;
    EXPECT_EQ(joined, r.text);  // the hedge's words go through the callback

    std::vector<float> scores;
    EXPECT_EQ(op.choose_hedge(kAsk, &scores), best);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(scores[i], want[i], 2e-3);
}

// A per-run length (a paced opener sized to the cloud's wait): a longer minimum is honoured
// (the opener decodes on, here to exactly the asked-for words when min = max), and a hedge picks
// among the phrases long enough, else the longest.
TEST_F(OpenerModel, APerRunLengthIsHonouredAndPicksALongEnoughHedge) {
    OpenerConfig lax;
    lax.hedge_min_mean_logprob = -1e9f;
    lax.hedge_max_entropy = 1e9f;
    Context ctx(*model_, 256, 1);
    Opener op(ctx, *tok_, lax);
    const OpenerResult base = op.run(kAsk);
    const OpenerResult longer = op.run(kAsk, {}, OpenerLength{10, 10});
    EXPECT_LE(counting_words(base), lax.max_words);
    // A random model's words may run out of token budget first; where a word rule stopped it,
    // it was not before the 10 words asked for.
    if (longer.stop == OpenerStop::kClause || longer.stop == OpenerStop::kMaxWords) {
        EXPECT_EQ(counting_words(longer), 10) << longer.text;
    }
    EXPECT_GT(longer.timings.decoded_tokens, base.timings.decoded_tokens);
    EXPECT_TRUE(longer.decoded_text.starts_with(base.decoded_text)) << base.decoded_text << " | " << longer.decoded_text;

    OpenerConfig unsure;
    unsure.hedge_min_mean_logprob = 1.0f;
    unsure.hedge_phrases = {"Hmm.", "Good question \xE2\x80\x94", "Sure, let me help with that.", "Let me think about that."};
    Opener hedger(ctx, *tok_, unsure);
    const OpenerResult h5 = hedger.run(kAsk, {}, OpenerLength{5, 8});
    ASSERT_TRUE(h5.hedged);
    EXPECT_TRUE(h5.text == unsure.hedge_phrases[2] || h5.text == unsure.hedge_phrases[3]) << h5.text;
    const size_t best5 = h5.hedge_scores[2] > h5.hedge_scores[3] ? 2 : 3;
    EXPECT_EQ(h5.text, unsure.hedge_phrases[best5]);
    const OpenerResult h9 = hedger.run(kAsk, {}, OpenerLength{9, 12});
    EXPECT_EQ(h9.text, unsure.hedge_phrases[2]);  // none has 9 words: the longest (6)
}

TEST_F(OpenerModel, ConfidentOpenersAreNotHedgedAndStreamingNeverHedges) {
    OpenerConfig lax;
    lax.hedge_min_mean_logprob = -1e9f;
    lax.hedge_max_entropy = 1e9f;
    Context a(*model_, 256, 1);
    const OpenerResult ra = Opener(a, *tok_, lax).run(kAsk);
    EXPECT_FALSE(ra.hedged);
    EXPECT_EQ(ra.text, ra.decoded_text);

    OpenerConfig strict;
    strict.hedge_min_mean_logprob = 1.0f;
    strict.stream_before_confident = true;
    Context b(*model_, 256, 1);
    const OpenerResult rb = Opener(b, *tok_, strict).run(kAsk);
    EXPECT_TRUE(rb.confidence.unsure);
    EXPECT_FALSE(rb.hedged);  // words were already out
    EXPECT_EQ(rb.text, ra.text);
}

TEST_F(OpenerModel, AnOpenerThatStartsLikeARefusalIsHedgedHoweverConfident) {
    OpenerConfig lax;
    lax.hedge_min_mean_logprob = -1e9f;
    lax.hedge_max_entropy = 1e9f;
    lax.refusal_prefixes = {};
    Context a(*model_, 256, 1);
    const OpenerResult plain = Opener(a, *tok_, lax).run(kAsk);
    ASSERT_FALSE(plain.words.empty());
    EXPECT_FALSE(plain.confidence.refusal);
    // The same opener, with its first word listed as a refusal's start: hedged.
    lax.refusal_prefixes = {plain.words[0].text};
    Context b(*model_, 256, 1);
    const OpenerResult refused = Opener(b, *tok_, lax).run(kAsk);
    EXPECT_EQ(refused.decoded_text, plain.decoded_text);
    EXPECT_TRUE(refused.confidence.refusal);
    EXPECT_TRUE(refused.confidence.unsure);
    EXPECT_TRUE(refused.hedged);
}

TEST(RefusalPrefixes, CaseApostrophesAndWordBoundaries) {
    const std::vector<std::string> p = default_refusal_prefixes();
    EXPECT_TRUE(starts_like("I'm sorry, I don't have any information about", p));
    EXPECT_TRUE(starts_like("I\xE2\x80\x99m sorry, but", p));  // typographic apostrophe
    EXPECT_TRUE(starts_like("  as an AI language model,", p));
    EXPECT_TRUE(starts_like("I cannot", p));
    EXPECT_FALSE(starts_like("I cannotate", p));
    EXPECT_TRUE(starts_like("I don't know, but I'm not sure what you mean by", p));
    EXPECT_TRUE(starts_like("I\xE2\x80\x99m not sure what you mean by", p));
    EXPECT_FALSE(starts_like("I don't knowingly", p));
    EXPECT_FALSE(starts_like("I'm not surprised", p));
    EXPECT_FALSE(starts_like("I can help with that", p));
    EXPECT_FALSE(starts_like("Sorrento is a town", p));
    EXPECT_FALSE(starts_like("The capital of France is", p));
    EXPECT_FALSE(starts_like("", p));
    EXPECT_FALSE(starts_like("I'm sorry", {}));
}

TEST_F(OpenerModel, ReusesTheSystemPromptAndEarlierTurns) {
    OpenerConfig cfg;
    cfg.system_prompt = "You are a test assistant.";
    cfg.hedge = false;
    Context ctx(*model_, 512, 1);
    Opener op(ctx, *tok_, cfg);
    op.warm_up();
    const int64_t system_tokens = ctx.n_past();
    EXPECT_EQ(
        system_tokens,
        static_cast<int64_t>(
            tok_->encode("<|im_start|>system\nYou are a test assistant.<|im_end|>\n", true, true).size()));

    const OpenerResult r1 = op.run(kAsk);
    EXPECT_EQ(r1.timings.reused_tokens, system_tokens);
    const std::vector<int32_t> p1 = tok_->encode(format_chatml(kAsk, true, cfg.system_prompt), true, true);
    EXPECT_EQ(r1.timings.prompt_tokens, static_cast<int64_t>(p1.size()));

    // The same question again: everything but the last prompt token is reused, same opener.
    const OpenerResult r2 = op.run(kAsk);
    EXPECT_EQ(r2.timings.reused_tokens, r2.timings.prompt_tokens - 1);
    EXPECT_EQ(r2.text, r1.text);

    // The next turn: the first turn's prompt is still in the cache.
    std::vector<ChatMessage> h = kAsk;
    h.push_back({"assistant", r1.text + " and more."});
    h.push_back({"user", "And Spain?"});
    const OpenerResult r3 = op.run(h);
    EXPECT_GE(r3.timings.reused_tokens, static_cast<int64_t>(p1.size()));

    // A conversation's own system message wins over the configured one.
    std::vector<ChatMessage> own = {{"system", "Be brief."}, {"user", "Hi"}};
    const OpenerResult r4 = op.run(own);
    EXPECT_EQ(r4.timings.prompt_tokens,
              static_cast<int64_t>(tok_->encode(format_chatml(own, true, std::nullopt), true, true).size()));
}

TEST_F(OpenerModel, OldTurnsAreDroppedWhenTheContextIsSmall) {
    OpenerConfig cfg;
    cfg.max_tokens = 16;
    cfg.hedge_phrases = {"Hmm."};
    Context ctx(*model_, 64, 1);
    Opener op(ctx, *tok_, cfg);
    std::vector<ChatMessage> h;
    for (int i = 0; i < 4; ++i) {
        h.push_back({"user", "tell me about the history of the city number " + std::to_string(i)});
        h.push_back({"assistant", "it was founded long ago by people"});
    }
    h.push_back({"user", "and now?"});
    const OpenerResult r = op.run(h);
    EXPECT_LE(r.timings.prompt_tokens + cfg.max_tokens, 64);

    EXPECT_THROW(op.run({}), Error);
}

// A message too long for the context alone keeps its head and tail around " [...] " (as the
// training data and the eval cut long prompts) instead of failing the turn.
TEST_F(OpenerModel, ALongLastMessageIsShortenedToFit) {
    OpenerConfig cfg;
    cfg.max_tokens = 16;
    cfg.hedge_phrases = {"Hmm."};
    Context ctx(*model_, 64, 1);
    Opener op(ctx, *tok_, cfg);
    std::string text = "START";
    for (int i = 0; i < 200; ++i) text += " word" + std::to_string(i);
    text += " END?";
    ASSERT_GT(prompt({{"user", text}}).size(), 64u);
    const OpenerResult r = op.run({{"user", text}});
    std::printf("a %zu-token message ran in a 64-token context: %lld prompt tokens\n", prompt({{"user", text}}).size(),
                static_cast<long long>(r.timings.prompt_tokens));
    EXPECT_LE(r.timings.prompt_tokens + cfg.max_tokens, 64);
    const std::string kept = tok_->decode(ctx.tokens(), false);
    EXPECT_NE(kept.find("START"), std::string::npos) << kept;
    EXPECT_NE(kept.find(" [...] "), std::string::npos) << kept;
    EXPECT_NE(kept.find("END?"), std::string::npos) << kept;

    Context tiny(*model_, 20, 1);  // 16 tokens of opener leave no room for any message
    Opener cramped(tiny, *tok_, cfg);
    EXPECT_THROW(cramped.run({{"user", text}}), Error);
}

// max_prompt_tokens bounds what the opener reads however large the context, so that the first
// word does not wait on a long message; 0 reads all the context holds.
TEST_F(OpenerModel, MaxPromptTokensBoundsWhatTheOpenerReads) {
    OpenerConfig cfg;
    cfg.max_tokens = 16;
    cfg.hedge_phrases = {"Hmm."};
    cfg.max_prompt_tokens = 48;
    Context ctx(*model_, 512, 1);
    Opener op(ctx, *tok_, cfg);
    std::string text = "START";
    for (int i = 0; i < 60; ++i) text += " word" + std::to_string(i);
    text += " END?";
    const size_t whole = prompt({{"user", text}}).size();
    ASSERT_GT(whole, 48u);
    ASSERT_LT(whole + 16, 512u);
    const OpenerResult r = op.run({{"user", text}});
    EXPECT_TRUE(r.timings.prompt_cut);
    EXPECT_LE(r.timings.prompt_tokens, 48);
    EXPECT_GT(r.timings.prompt_tokens, 32);  // cut to the limit, not far below it
    const std::string kept = tok_->decode(ctx.tokens(), false);
    EXPECT_NE(kept.find("START"), std::string::npos) << kept;
    EXPECT_NE(kept.find(" [...] "), std::string::npos) << kept;
    EXPECT_NE(kept.find("END?"), std::string::npos) << kept;

    // A short message is read whole; earlier turns are dropped first.
    const OpenerResult s = op.run({{"user", "hi there"}});
    EXPECT_FALSE(s.timings.prompt_cut);
    EXPECT_EQ(s.timings.prompt_tokens, static_cast<int64_t>(prompt({{"user", "hi there"}}).size()));
    std::vector<ChatMessage> h = {{"user", text}, {"assistant", "ok"}, {"user", "and now?"}};
    const OpenerResult t = op.run(h);
    EXPECT_TRUE(t.timings.prompt_cut);
    EXPECT_EQ(t.timings.prompt_tokens,
              static_cast<int64_t>(prompt({{"assistant", "ok"}, {"user", "and now?"}}).size()));

    cfg.max_prompt_tokens = 0;  // unbounded: the whole message fits the 512-token context
    Opener all(ctx, *tok_, cfg);
    const OpenerResult u = all.run({{"user", text}});
    EXPECT_FALSE(u.timings.prompt_cut);
    EXPECT_EQ(u.timings.prompt_tokens, static_cast<int64_t>(whole));
}

TEST_F(OpenerModel, BadConfigurationIsAnError) {
    Context ctx(*model_, 64, 1);
    OpenerConfig a;
    a.min_words = 0;
    EXPECT_THROW(Opener(ctx, *tok_, a), Error);
    OpenerConfig b;
    b.min_words = 5;
    b.max_words = 4;
    EXPECT_THROW(Opener(ctx, *tok_, b), Error);
    OpenerConfig c;
    c.hedge_phrases.clear();
    EXPECT_THROW(Opener(ctx, *tok_, c), Error);
    c.hedge = false;
    EXPECT_NO_THROW(Opener(ctx, *tok_, c));
}
