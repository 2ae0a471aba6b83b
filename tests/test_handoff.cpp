// The handoff's pure logic: verdict tags parsed from streamed deltas (split, malformed, absent,
// bounded hold-back), the stitcher's seam (repeats, spacing, punctuation, capitals, empty and
// mid-word continuations) and the shapes of the prompts the cloud is sent. No network, no model.
#include <gtest/gtest.h>

#include <random>

#include "microlm/chat.h"
#include "microlm/handoff.h"

using namespace microlm;

namespace {

struct Parsed {
    std::string text;
    Verdict verdict;
    bool tag;
};

Parsed parse(const std::vector<std::string>& deltas) {
    VerdictParser p;
    std::string out;
    for (const auto& d : deltas) out += p.push(d);
    out += p.finish();
    EXPECT_TRUE(p.decided());
    return {out, p.verdict(), p.tag_found()};
}

std::string stitch(const std::string& opener, const std::vector<std::string>& deltas,
                   Seam seam = Seam::kWords, bool replace = false) {
    Stitcher s(opener, seam, replace);
    std::string out;
    for (const auto& d : deltas) out += s.push(d);
    return out + s.finish();
}

// Every way of cutting `text` into two or three deltas.
std::vector<std::vector<std::string>> splits(const std::string& text) {
    std::vector<std::vector<std::string>> out{{text}};
    for (size_t i = 0; i <= text.size(); ++i) {
        out.push_back({text.substr(0, i), text.substr(i)});
        for (size_t j = i; j <= text.size(); ++j)
            out.push_back({text.substr(0, i), text.substr(i, j - i), text.substr(j)});
    }
    return out;
}

}  // namespace

// ---- Verdict tags -------------------------------------------------------------------------

TEST(Verdict, ExactTagsAreStrippedWithTheSpaceAfterThem) {
    const Parsed k = parse({"[keep] Paris, of course."});
    EXPECT_EQ(k.verdict, Verdict::kKeep);
    EXPECT_TRUE(k.tag);
    EXPECT_EQ(k.text, "Paris, of course.");
    EXPECT_EQ(parse({"[pivot] or so many think"}).verdict, Verdict::kPivot);
    const Parsed r = parse({"[retract]\nWhales are mammals."});
    EXPECT_EQ(r.verdict, Verdict::kRetract);
    EXPECT_EQ(r.text, "Whales are mammals.");
}

TEST(Verdict, TagSplitAnywhereAcrossDeltasGivesTheSameResult) {
    for (const std::string text :
         {"[keep] Paris.", "  [Pivot]  but really", "<retract> The answer", "keep: yes"}) {
        const Parsed whole = parse({text});
        for (const auto& parts : splits(text)) {
            const Parsed p = parse(parts);
            EXPECT_EQ(p.text, whole.text) << text;
            EXPECT_EQ(p.verdict, whole.verdict) << text;
            EXPECT_TRUE(p.tag) << text;
        }
    }
}

TEST(Verdict, ToleratedVariants) {
    const std::pair<const char*, Verdict> cases[] = {
        {"[KEEP] x", Verdict::kKeep},
        {"[ Pivot ] x", Verdict::kPivot},
        {"(retract) x", Verdict::kRetract},
        {"<keep> x", Verdict::kKeep},
        {"{pivot} x", Verdict::kPivot},
        {"[verdict: retract] x", Verdict::kRetract},
        {"[keep x", Verdict::kKeep},
        {"[pivot: x", Verdict::kPivot},
        {"Keep: x", Verdict::kKeep},
        {"pivot] x", Verdict::kPivot},
        {"Verdict: retract x", Verdict::kRetract},
        {"\n\n [keep]\n\n x", Verdict::kKeep},
        {"(pivot] x", Verdict::kPivot},
    };
    for (const auto& [text, v] : cases) {
        const Parsed p = parse({text});
        EXPECT_EQ(p.verdict, v) << text;
        EXPECT_TRUE(p.tag) << text;
        EXPECT_EQ(p.text, "x") << text;
    }
}

TEST(Verdict, MalformedBracketedWordIsStrippedAsKeep) {
    for (const char* text : {"[ok] x", "[kep] x", "[Continue] x", "[] x"}) {
        const Parsed p = parse({text});
        EXPECT_EQ(p.verdict, Verdict::kKeep) << text;
        if (std::string(text) != "[] x") {
            EXPECT_TRUE(p.tag) << text;
            EXPECT_EQ(p.text, "x") << text;
        }
    }
}

TEST(Verdict, NoTagMeansKeepAndTheTextIsUntouched) {
    for (const char* text :
         {"Paris, of course.", "Keep going straight", "keep calm", "pivoting is hard", " Paris",
          "[1] says so", "[this bracket is a long aside] x", "(see below)", "retracting x", ""}) {
        const Parsed p = parse({text});
        EXPECT_EQ(p.verdict, Verdict::kKeep) << text;
        EXPECT_FALSE(p.tag) << text;
        EXPECT_EQ(p.text, text);
    }
}

TEST(Verdict, HoldsTextOnlyWhileItCouldBeATag) {
    VerdictParser p;
    EXPECT_EQ(p.push("Paris"), "Paris");  // 'P' could start "pivot:", 'a' cannot
    EXPECT_TRUE(p.decided());

    VerdictParser q;
    EXPECT_EQ(q.push("Keep"), "");  // might be "Keep:"
    EXPECT_FALSE(q.decided());
    EXPECT_EQ(q.push(" going"), "Keep going");

    VerdictParser r;
    EXPECT_EQ(r.push("[ke"), "");
    EXPECT_EQ(r.push("ep]"), "");
    EXPECT_TRUE(r.decided());
    EXPECT_EQ(r.push(" "), "");  // the space after the tag
    EXPECT_EQ(r.push(" Par"), "Par");
    EXPECT_EQ(r.push("is "), "is ");  // later whitespace is text
    EXPECT_EQ(r.finish(), "");
}

TEST(Verdict, LookaheadIsBounded) {
    // Random streams fed one byte at a time: the parser never holds more than kMaxLookahead
    // bytes, returns what it returns for the whole text at once, and that is the input, or the
    // input minus a leading tag.
    std::mt19937 rng(7);
    const std::string alphabet = "[]()<> :kKeEpPvVoOtTrRaAcCdDiI\nxy";
    size_t max_held = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::string text;
        const int len = static_cast<int>(rng() % 60);
        for (int i = 0; i < len; ++i) text.push_back(alphabet[rng() % alphabet.size()]);
        if (trial % 3 == 0) text = std::string("[keep").substr(0, rng() % 6) + text;
        VerdictParser p;
        std::string out;
        for (size_t i = 0; i < text.size(); ++i) {
            out += p.push(text.substr(i, 1));
            if (!p.decided()) max_held = std::max(max_held, i + 1);
            if (!p.decided()) {
                ASSERT_LT(i + 1, VerdictParser::kMaxLookahead + 1) << text;
            }
        }
        out += p.finish();
        ASSERT_TRUE(p.decided());
        const Parsed whole = parse({text});  // the cut does not matter
        ASSERT_EQ(out, whole.text) << text;
        ASSERT_EQ(p.verdict(), whole.verdict) << text;
        if (!p.tag_found()) {
            ASSERT_EQ(out, text);
        } else {
            ASSERT_TRUE(text.ends_with(out)) << text;
        }
    }
    EXPECT_LE(max_held, VerdictParser::kMaxLookahead);
}

TEST(Verdict, TheLookaheadWindowIsTheSameForAnyCut) {
    const std::string text = "[" + std::string(50, ' ') + "keep] x";
    const Parsed whole = parse({text});
    EXPECT_FALSE(whole.tag);
    EXPECT_EQ(whole.text, text);
    std::vector<std::string> bytes;
    for (const char c : text) bytes.emplace_back(1, c);
    EXPECT_EQ(parse(bytes).text, text);
}

TEST(Verdict, EndOfStreamDecides) {
    const Parsed a = parse({"[pivot"});
    EXPECT_EQ(a.verdict, Verdict::kPivot);
    EXPECT_EQ(a.text, "");
    const Parsed b = parse({"[keep]"});
    EXPECT_TRUE(b.tag);
    EXPECT_EQ(b.text, "");
    const Parsed c = parse({"Kee"});
    EXPECT_FALSE(c.tag);
    EXPECT_EQ(c.text, "Kee");
}

TEST(Verdict, SpeechCannotRetract) {
    EXPECT_EQ(allowed_verdict(Verdict::kRetract, Modality::kSpeech), Verdict::kPivot);
    EXPECT_EQ(allowed_verdict(Verdict::kRetract, Modality::kText), Verdict::kRetract);
    EXPECT_EQ(allowed_verdict(Verdict::kPivot, Modality::kSpeech), Verdict::kPivot);
    EXPECT_EQ(verdict_name(Verdict::kRetract), "retract");
}

// ---- Stitcher -----------------------------------------------------------------------------

TEST(Stitcher, PlainContinuationGetsOneSpace) {
    EXPECT_EQ(stitch("The capital of France is", {"Paris."}), " Paris.");
    EXPECT_EQ(stitch("The capital of France is", {" Paris."}), " Paris.");
    EXPECT_EQ(stitch("The capital of France is", {"   Paris."}), " Paris.");  // no double space
    EXPECT_EQ(stitch("The capital of France is ", {" Paris."}), "Paris.");    // opener already spaced
}

TEST(Stitcher, RemovesARestartOfTheWholeOpener) {
    EXPECT_EQ(stitch("The capital of France is", {"The capital of France is Paris."}), " Paris.");
    Stitcher s("Sure! The capital of France is");
    EXPECT_EQ(s.push("sure, the Capital of france IS Paris."), " Paris.");
    EXPECT_EQ(s.repeated_words(), 6u);
}

TEST(Stitcher, RemovesRepeatedLastWords) {
    EXPECT_EQ(stitch("The capital of France is", {"France is Paris."}), " Paris.");
    EXPECT_EQ(stitch("The capital of France is", {"is Paris."}), " Paris.");
    EXPECT_EQ(stitch("The capital of France is", {"of France, is Paris"}), " Paris");
    // The repeated word's own punctuation survives when the opener's word had none.
    EXPECT_EQ(stitch("The capital of France is", {"is: Paris"}), ": Paris");
    // Words that are not a suffix of the opener stay.
    EXPECT_EQ(stitch("The capital of France is", {"capital Paris"}), " capital Paris");
    EXPECT_EQ(stitch("The capital of France is", {"France, as you know, is Paris"}),
              " France, as you know, is Paris");
}

TEST(Stitcher, KeepsALegitimatelyDoubledThat) {
    EXPECT_EQ(stitch("I think that", {"that is right."}), " that is right.");
}

TEST(Stitcher, RepeatDetectionWorksOnAnySplitAndHoldsOnlyWhileARepeatIsPossible) {
    const std::string opener = "The capital of France is";
    for (const auto& parts : splits("The capital of France is Paris."))
        EXPECT_EQ(stitch(opener, parts), " Paris.");
    for (const auto& parts : splits("France is Paris.")) EXPECT_EQ(stitch(opener, parts), " Paris.");

    Stitcher s(opener);
    EXPECT_EQ(s.push("The cap"), "");
    EXPECT_EQ(s.push("ital of "), "");
    EXPECT_EQ(s.push("France is"), "");
    EXPECT_EQ(s.push(" P"), " P");
    EXPECT_TRUE(s.settled());
    EXPECT_EQ(s.push("aris"), "aris");

    Stitcher t(opener);
    EXPECT_EQ(t.push("Paris"), " Paris");  // "paris" can start none of the opener's suffixes
    Stitcher u(opener);
    EXPECT_EQ(u.push("The best"), "");  // may still be a restatement with a word changed
    EXPECT_EQ(u.push(" way to learn it"), " the best way to learn it");  // four words off: not one
}

// Issue 15: llama-cpp-python's server, told to continue, restated the opener with a word added
// ("The primary colors are: The three primary colors are: Red, Blue, and Yellow."). A restatement
// of the whole opener with up to two words changed (a third of its words at most) is dropped.
TEST(Stitcher, RemovesARestatementWithAWordOrTwoChanged) {
    EXPECT_EQ(stitch("The primary colors are:", {"The three primary colors are: Red, Blue, and Yellow."}),
              " Red, Blue, and Yellow.");
    EXPECT_EQ(stitch("The best way to learn Python is", {" The best way to learn programming is by practice."}),
              " by practice.");
    EXPECT_EQ(stitch("Sure, here are some tips for", {"Sure! Here are a few tips for staying focused:"}),
              " staying focused:");
    for (const auto& parts : splits("The three primary colors are: Red, Blue, and Yellow."))
        EXPECT_EQ(stitch("The primary colors are:", parts), " Red, Blue, and Yellow.");
    // Not restatements: too different, not starting where the opener starts, or too short to tell.
    EXPECT_EQ(stitch("The primary colors are:", {"The colours you mix paints from differ: red, yellow."}),
              " The colours you mix paints from differ: red, yellow.");
    EXPECT_EQ(stitch("The primary colors are:", {"red, yellow and blue."}), " red, yellow and blue.");
    EXPECT_EQ(stitch("It is", {"It was raining."}), " it was raining.");
}

TEST(Stitcher, PunctuationAtTheSeam) {
    EXPECT_EQ(stitch("Sure", {", here it is"}), ", here it is");
    EXPECT_EQ(stitch("Sure", {" , here it is"}), ", here it is");
    EXPECT_EQ(stitch("Hello", {"! How are you?"}), "! How are you?");
    EXPECT_EQ(stitch("Sure,", {", here"}), " here");  // not "Sure,,"
    EXPECT_EQ(stitch("Good question —", {"— the answer"}), " the answer");
    EXPECT_EQ(stitch("Good question", {"— the answer"}), " — the answer");
    EXPECT_EQ(stitch("It costs (roughly", {") ten euros"}), ") ten euros");
    EXPECT_EQ(stitch("He said \u201c", {"hello\u201d"}), "hello\u201d");
    EXPECT_EQ(stitch("Here are the steps:", {"\n\n1. Mix"}), "\n\n1. Mix");
    EXPECT_EQ(stitch("Here are the steps:", {" \n\n1. Mix"}), "\n\n1. Mix");
}

TEST(Stitcher, CapitalAfterASentenceEnd) {
    EXPECT_EQ(stitch("Sure.", {"here it is"}), " Here it is");
    EXPECT_EQ(stitch("Yes!", {" the answer"}), " The answer");
    EXPECT_EQ(stitch("He said \"no.\"", {"then"}), " Then");
    EXPECT_EQ(stitch("Sure.", {"\"here\""}), " \"Here\"");
    EXPECT_EQ(stitch("Use a tool, e.g.", {"a hammer"}), " a hammer");  // abbreviation
    EXPECT_EQ(stitch("Sure,", {"here"}), " here");                     // no sentence end
    EXPECT_EQ(stitch("The capital is", {"Paris"}), " Paris");          // capitals are never lowered
}

TEST(Stitcher, CapitalisedFunctionWordInsideTheSentenceIsLowered) {
    EXPECT_EQ(stitch("The capital of France is", {"The city of Paris."}), " the city of Paris.");
    EXPECT_EQ(stitch("Sure, here is", {"A ", "short list"}), " a short list");
    EXPECT_EQ(stitch("My favourite film is", {"The Matrix."}), " The Matrix.");  // a title
    EXPECT_EQ(stitch("The capital of France is", {"Paris, the city"}), " Paris, the city");
    EXPECT_EQ(stitch("Here's what I'd suggest:", {"The first step"}), " The first step");  // after a colon
    EXPECT_EQ(stitch("I think", {"I can"}), " I can");
    EXPECT_EQ(stitch("It is", {" The city"}, Seam::kExact), " The city");  // prefill text is the model's own
    EXPECT_EQ(stitch("It is", {"The"}), " The");                           // nothing after it: left alone
    Stitcher s("It is");
    EXPECT_EQ(s.push("The "), "");  // held: the next word decides
    EXPECT_EQ(s.push("c"), " the c");
}

TEST(Stitcher, EmptyContinuation) {
    EXPECT_EQ(stitch("The capital of France is", {}), "");
    EXPECT_EQ(stitch("The capital of France is", {""}), "");
    EXPECT_EQ(stitch("The capital of France is", {" ", "\n", " "}), "");
    EXPECT_EQ(stitch("The capital of France is", {"The capital of France is"}), "");  // only a repeat
    EXPECT_EQ(stitch("", {"Paris."}), "Paris.");
    EXPECT_EQ(stitch("", {"  Paris."}), "Paris.");
}

TEST(Stitcher, ContinuationStartingMidWord) {
    // Prefill continues the opener's text: no leading space means the last word goes on.
    EXPECT_EQ(stitch("I do", {"n't know"}, Seam::kExact), "n't know");
    EXPECT_EQ(stitch("The quick bro", {"wn fox"}, Seam::kExact), "wn fox");
    EXPECT_EQ(stitch("The quick", {" brown"}, Seam::kExact), " brown");
    EXPECT_EQ(stitch("Sure,", {"here"}, Seam::kExact), " here");  // nothing continues a comma
    // Instruct text starts a fresh word, except for a contraction.
    EXPECT_EQ(stitch("The quick", {"brown"}, Seam::kWords), " brown");
    EXPECT_EQ(stitch("I do", {"n't know"}, Seam::kWords), "n't know");
    EXPECT_EQ(stitch("That", {"\u2019s right"}, Seam::kWords), "\u2019s right");
    EXPECT_EQ(stitch("That", {"'s right"}, Seam::kExact), "'s right");
}

TEST(Stitcher, ReplaceModeKeepsTheWholeText) {
    EXPECT_EQ(stitch("Whales are fish", {"  Whales are ", "mammals."}, Seam::kWords, true),
              "Whales are mammals.");
    EXPECT_EQ(stitch("Whales are fish", {" "}, Seam::kWords, true), "");
}

TEST(Stitcher, OutputDoesNotDependOnHowTheStreamIsCut) {
    // Random continuations made of the opener's words, other words, punctuation and spacing,
    // fed whole, byte by byte and in random pieces, through both seams.
    std::mt19937 rng(3);
    const std::vector<std::string> openers = {"The capital of France is",
                                              "Sure, the answer is",
                                              "Good question \xE2\x80\x94",
                                              "I think that",
                                              "Yes.",
                                              "It is"};
    const std::vector<std::string> parts = {
        "The",          "the", "capital", "of",   "France", "is", "Paris", "answer",
        "Sure",         ",",   ".",       "!",    " ",      " ",  " ",     "\n",
        "\xE2\x80\x94", "n't", "'s",      "that", "city",   "A",  "yes",   "Matrix"};
    for (int trial = 0; trial < 4000; ++trial) {
        const std::string& opener = openers[rng() % openers.size()];
        std::string text;
        const int n = static_cast<int>(rng() % 10);
        for (int i = 0; i < n; ++i) text += parts[rng() % parts.size()];
        for (const Seam seam : {Seam::kWords, Seam::kExact}) {
            const std::string whole = stitch(opener, {text}, seam);
            std::vector<std::string> bytes;
            for (const char c : text) bytes.emplace_back(1, c);
            ASSERT_EQ(stitch(opener, bytes, seam), whole) << opener << " + [" << text << "]";
            std::vector<std::string> pieces;
            for (size_t at = 0; at < text.size();) {
                const size_t len = 1 + rng() % 6;
                pieces.push_back(text.substr(at, len));
                at += len;
            }
            ASSERT_EQ(stitch(opener, pieces, seam), whole) << opener << " + [" << text << "]";
            ASSERT_FALSE(whole.starts_with("  ")) << opener << " + [" << text << "]";
        }
    }
}

TEST(Stitcher, HoldIsBounded) {
    Stitcher s("Good question —");
    std::string out = s.push(std::string(Stitcher::kMaxHold + 10, '-'));
    EXPECT_FALSE(out.empty());
    EXPECT_TRUE(s.settled());
}

// ---- Joiner: verdict, then stitching ------------------------------------------------------

TEST(Joiner, InstructKeepWithSplitTagAndRepeat) {
    ContinuationJoiner j("The capital of France is", Modality::kText, true);
    std::string out;
    EXPECT_FALSE(j.verdict().has_value());
    for (const char* d : {"[ke", "ep] The capital of", " France is", " Paris."}) out += j.push(d);
    out += j.finish();
    EXPECT_EQ(j.verdict(), Verdict::kKeep);
    EXPECT_EQ(out, " Paris.");
}

TEST(Joiner, RetractReplacesInTextAndBecomesPivotInSpeech) {
    ContinuationJoiner text("The capital of Australia is Sydney", Modality::kText, true);
    std::string a = text.push("[retract] The capital of Australia is Canberra.");
    a += text.finish();
    EXPECT_EQ(text.verdict(), Verdict::kRetract);
    EXPECT_EQ(a, "The capital of Australia is Canberra.");

    ContinuationJoiner speech("The capital of Australia is Sydney,", Modality::kSpeech, true);
    std::string b = speech.push("[retract] or so many think, but it is Canberra.");
    b += speech.finish();
    EXPECT_EQ(speech.verdict(), Verdict::kPivot);
    EXPECT_EQ(b, " or so many think, but it is Canberra.");
}

TEST(Joiner, PrefillHasNoTagAndTrustsTheSpacing) {
    ContinuationJoiner j("I do", Modality::kSpeech, false);
    EXPECT_EQ(j.verdict(), Verdict::kKeep);
    std::string out = j.push("n't know");
    out += j.finish();
    EXPECT_EQ(out, "n't know");
    EXPECT_FALSE(j.tag_found());

    ContinuationJoiner k("Keep", Modality::kText, false);  // "keep:" is text when no tag was asked for
    EXPECT_EQ(k.push(": it") + k.finish(), ": it");
}

TEST(Joiner, InstructWithoutTagIsKeep) {
    ContinuationJoiner j("The capital of France is", Modality::kText, true);
    std::string out = j.push("Paris.");
    out += j.finish();
    EXPECT_EQ(j.verdict(), Verdict::kKeep);
    EXPECT_FALSE(j.tag_found());
    EXPECT_EQ(out, " Paris.");
}

// ---- Prompts ------------------------------------------------------------------------------

TEST(Prompts, PrefillRawPromptEndsWithTheOpener) {
    const std::vector<ChatMessage> h = {
        {"user", "Capital of France?"}, {"assistant", "Paris."}, {"user", "And Spain?"}};
    const std::string p = prefill_prompt(h, "The capital of Spain is ", std::nullopt);
    EXPECT_EQ(p,
              "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n"
              "<|im_start|>user\nAnd Spain?<|im_end|>\n<|im_start|>assistant\nThe capital of Spain is");
    const std::string s = prefill_prompt(h, "The capital", std::string("Be brief."));
    EXPECT_TRUE(s.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"));
    EXPECT_TRUE(s.ends_with("<|im_start|>assistant\nThe capital"));
}

TEST(Prompts, PrefillMessagesEndWithTheOpenerAsAssistant) {
    const std::vector<ChatMessage> h = {{"system", "Be brief."}, {"user", "Capital of Spain?"}};
    const auto m = prefill_messages(h, "The capital of Spain is\n");
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0].role, "system");
    EXPECT_EQ(m[2].role, "assistant");
    EXPECT_EQ(m[2].content, "The capital of Spain is");
}

TEST(Prompts, InstructMessagesCarryRulesOpenerAndOwnSystem) {
    const std::vector<ChatMessage> h = {{"system", "Answer like a pirate."}, {"user", "Capital of Spain?"}};
    const auto text = instruct_messages(h, "The capital of Spain is", Modality::kText);
    ASSERT_EQ(text.size(), 2u);
    EXPECT_EQ(text[0].role, "system");
    EXPECT_EQ(text[1].role, "user");
    EXPECT_EQ(text[1].content, "Capital of Spain?");
    const std::string& sys = text[0].content;
    EXPECT_NE(sys.find("\"The capital of Spain is\""), std::string::npos);
    EXPECT_NE(sys.find("appended to those words verbatim"), std::string::npos);
    for (const char* tag : {"[keep]", "[pivot]", "[retract]"})
        EXPECT_NE(sys.find(tag), std::string::npos) << tag;
    EXPECT_NE(sys.find("Answer like a pirate."), std::string::npos);
    EXPECT_NE(sys.find("at most 12 words"), std::string::npos);

    const auto speech =
        instruct_messages({{"user", "Capital of Spain?"}}, "The capital of Spain is", Modality::kSpeech);
    ASSERT_EQ(speech.size(), 2u);
    EXPECT_EQ(speech[0].content.find("[retract]"), std::string::npos);
    EXPECT_NE(speech[0].content.find("spoken"), std::string::npos);
}

TEST(Prompts, TheExamplesInTheContinuatorPromptParseAsTheirVerdicts) {
    // The prompt teaches the syntax by example: each example output must parse as intended.
    const std::string sys = continuator_system_prompt("Hi", Modality::kText, std::nullopt);
    size_t seen = 0;
    for (size_t at = sys.find("Your output: "); at != std::string::npos;
         at = sys.find("Your output: ", at + 1)) {
        const size_t begin = at + 13, end = sys.find('\n', begin);
        const std::string example = sys.substr(begin, end - begin);
        const Parsed p = parse({example});
        EXPECT_TRUE(p.tag) << example;
        std::string tag(1, '[');
        tag.append(verdict_name(p.verdict)).append("] ");
        EXPECT_TRUE(example.starts_with(tag)) << example;
        ++seen;
    }
    EXPECT_EQ(seen, 3u);
}

// ---- Opener check (pure half) -------------------------------------------------------------

TEST(OpenerCheckVerdict, EachSignalAndTheirCombinations) {
    OpenerCheckConfig cfg;
    cfg.min_logprob = -2.5;
    cfg.min_pmi = 0.3;
    OpenerScores unusual_but_apt{-3.0, -5.0};  // unlikely, yet the question makes it likelier: pmi 2
    OpenerScores generic{-1.0, -1.1};          // likely anywhere: pmi 0.1
    OpenerScores unknown;                      // the endpoint gave no logprobs
    EXPECT_TRUE(signal_says_off(CheckSignal::kLikelihood, unusual_but_apt, cfg));
    EXPECT_FALSE(signal_says_off(CheckSignal::kPmi, unusual_but_apt, cfg));
    EXPECT_FALSE(signal_says_off(CheckSignal::kLikelihood, generic, cfg));
    EXPECT_TRUE(signal_says_off(CheckSignal::kPmi, generic, cfg));
    EXPECT_TRUE(signal_says_off(CheckSignal::kAny, generic, cfg));
    EXPECT_FALSE(signal_says_off(CheckSignal::kAll, generic, cfg));
    EXPECT_TRUE(signal_says_off(CheckSignal::kAll, OpenerScores{-3.0, -2.0}, cfg));
    for (const CheckSignal s : {CheckSignal::kOff, CheckSignal::kLikelihood, CheckSignal::kPmi, CheckSignal::kAny,
                                CheckSignal::kAll}) {
        EXPECT_FALSE(signal_says_off(s, unknown, cfg)) << check_signal_name(s);
        EXPECT_EQ(parse_check_signal(check_signal_name(s)), s);
    }
    EXPECT_FALSE(parse_check_signal("PMI"));
    cfg.signal = CheckSignal::kPmi;
    EXPECT_EQ(check_verdict(generic, cfg, Modality::kText), Verdict::kRetract);
    EXPECT_EQ(check_verdict(generic, cfg, Modality::kSpeech), Verdict::kPivot);
    EXPECT_EQ(check_verdict(unusual_but_apt, cfg, Modality::kText), Verdict::kKeep);
}

TEST(ContinuationJoinerDecided, RetractReplacesAndPivotAppendsWithoutATag) {
    ContinuationJoiner retract("The capital of France is", Modality::kText, Verdict::kRetract);
    EXPECT_EQ(retract.verdict(), Verdict::kRetract);
    std::string out = retract.push("  [keep] Canberra is the capital.");  // no tag is parsed
    out += retract.finish();
    EXPECT_EQ(out, "[keep] Canberra is the capital.");
    ContinuationJoiner pivot("The capital of France is", Modality::kSpeech, Verdict::kRetract);
    EXPECT_EQ(pivot.verdict(), Verdict::kPivot);  // speech cannot retract
    out = pivot.push("or rather, Canberra.");
    out += pivot.finish();
    EXPECT_EQ(out, " or rather, Canberra.");
}

TEST(PivotMessages, TellTheCloudTheWordsAreOffAndKeepTheConversationsOwnSystem) {
    const std::vector<ChatMessage> h{{"system", "Answer in French."}, {"user", "Capital of Australia?"}};
    const auto m = pivot_messages(h, "The capital of France is ", Modality::kSpeech);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0].role, "system");
    EXPECT_NE(m[0].content.find("\"The capital of France is\""), std::string::npos);
    EXPECT_NE(m[0].content.find("at most 12 words"), std::string::npos);
    EXPECT_NE(m[0].content.find("Answer in French."), std::string::npos);
    EXPECT_NE(m[0].content.find("spoken"), std::string::npos);
    EXPECT_EQ(m[1].content, "Capital of Australia?");
}
