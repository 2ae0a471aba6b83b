// The eval's metrics and baselines on hand-made cases (empty openers, Unicode, references shorter
// than k), the oracle's start-match of 1 by construction, the constant baseline against a hand
// count on a fixture, prompt files, the latency model, determinism (same seed, same numbers) and
// the report files. The opener-suite determinism test runs SmolLM2 when it is present.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/opener.h"
#include "microlm/speech.h"

using namespace microlm;
using namespace microlm::eval;
namespace fs = std::filesystem;

namespace {

using Words = std::vector<std::string>;

// A folder per test under one root that is removed when the test program exits.
fs::path temp_dir(const std::string& name) {
    static const struct Root {
        fs::path path = fs::temp_directory_path() / ("microlm_test_eval_" + std::to_string(::getpid()));
        ~Root() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    } root;
    const fs::path d = root.path / name;
    fs::create_directories(d);
    return d;
}

void write(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
}

EvalPrompt prompt(std::string set, std::string id, std::string text, std::vector<std::string> refs) {
    return {std::move(set), std::move(id), std::move(text), std::move(refs)};
}

CandidateResult candidate(const std::string& name, const std::vector<std::string>& texts) {
    CandidateResult c;
    c.name = name;
    c.kind = "baseline";
    for (const auto& t : texts) c.openers.push_back({t, "", false, false, false, 0, -1, -1});
    return c;
}

// The whole-text cut, as a reference for the chunked cut_opener.
std::string cut_whole(std::string_view text, int min_words = 4, int max_words = 8) {
    WordAssembler a;
    std::vector<Word> words = a.push(text);
    if (auto last = a.finish()) words.push_back(*last);
    std::string out;
    int counted = 0;
    for (const Word& w : words) {
        if (!out.empty()) out += w.space_before;
        out += w.text;
        counted += w.counts;
        if (counted >= max_words || (counted >= min_words && w.clause_end)) break;
    }
    return out;
}

}  // namespace

// ---- Normalisation ------------------------------------------------------------------------------

TEST(Normalize, CaseAndPunctuation) {
    EXPECT_EQ(normalize_words("**Sure!** Here’s"), (Words{"sure", "heres"}));
    EXPECT_EQ(normalize_words("Sure! Here's"), (Words{"sure", "heres"}));
    EXPECT_EQ(normalize_words("Hello,   world...\n\nNew-line"), (Words{"hello", "world", "newline"}));
    EXPECT_EQ(normalize_words("1. First: $5 + 3 = 8"), (Words{"1", "first", "5", "3", "8"}));
    EXPECT_EQ(normalize_words("— ** -- ..."), Words{});
}

TEST(Normalize, EmptyAndWhitespace) {
    EXPECT_TRUE(normalize_words("").empty());
    EXPECT_TRUE(normalize_words(" \n\t\u00a0 ").empty());
}

TEST(Normalize, UnicodeScripts) {
    EXPECT_EQ(normalize_words("Ça va? ÉCOLE Straße"), (Words{"ça", "va", "école", "straße"}));
    EXPECT_EQ(normalize_words("Привет, МИР!"), (Words{"привет", "мир"}));
    EXPECT_EQ(normalize_words("ΚΑΛΗΜΕΡΑ Κόσμε"), (Words{"καλημερα", "κόσμε"}));
    EXPECT_EQ(normalize_words("İstanbul ŁÓDŹ"), (Words{"istanbul", "łódź"}));
    // Each ideograph is a word, as the opener policy counts them; full-width punctuation goes.
    EXPECT_EQ(normalize_words("你好，世界。"), (Words{"你", "好", "世", "界"}));
    EXPECT_EQ(normalize_words("😊 OK"), (Words{"😊", "ok"}));
    EXPECT_EQ(normalize_words("ＡＢＣ"), (Words{"ａｂｃ"}));
    // Invalid UTF-8 does not throw; the valid words survive.
    const Words w = normalize_words("\xff\xfe abc \xc3");
    ASSERT_FALSE(w.empty());
    EXPECT_NE(std::find(w.begin(), w.end(), "abc"), w.end());
}

// ---- Start-match and F1 -------------------------------------------------------------------------

TEST(StartMatch, NeedsKWordsOnBothSides) {
    const Words op = normalize_words("Sure! Here's a recipe");
    EXPECT_TRUE(start_match(op, normalize_words("sure, here's the list"), 2));
    EXPECT_FALSE(start_match(op, normalize_words("sure, here's the list"), 3));
    EXPECT_FALSE(start_match(op, normalize_words("Sure"), 2));        // reference too short
    EXPECT_FALSE(start_match(Words{}, normalize_words("a b c"), 2));  // empty opener
    EXPECT_FALSE(start_match(Words{}, Words{}, 2));
    EXPECT_FALSE(start_match(op, op, 0));
    EXPECT_TRUE(start_match_any(op, {normalize_words("No."), normalize_words("SURE — HERE’S")}, 2));
    EXPECT_FALSE(start_match_any(op, {}, 2));
}

TEST(F1, HandCounts) {
    EXPECT_NEAR(unigram_f1({"a", "b", "c"}, {"a", "b", "d", "e"}), 4.0 / 7.0, 1e-12);
    EXPECT_EQ(unigram_f1({}, {"a"}), 0.0);
    EXPECT_EQ(unigram_f1({"a"}, {}), 0.0);
    EXPECT_EQ(unigram_f1({"a", "b"}, {"b", "a"}), 1.0);
    // Counts are clipped: "the the the" against one "the" shares one word.
    EXPECT_NEAR(unigram_f1({"the", "the", "the"}, {"the", "cat"}), 2 * (1.0 / 3) * 0.5 / (1.0 / 3 + 0.5),
                1e-12);
    // Only the reference's first 8 words count.
    const Words ref = normalize_words("one two three four five six seven eight nine ten");
    EXPECT_EQ(opener_f1({"nine", "ten"}, {ref}), 0.0);
    EXPECT_EQ(opener_f1({"one", "eight"}, {ref}, 8),
              unigram_f1({"one", "eight"}, Words(ref.begin(), ref.begin() + 8)));
    EXPECT_EQ(opener_f1({"x"}, {}), 0.0);
    EXPECT_EQ(opener_f1({"a"}, {{"b"}, {"a"}}), 1.0);  // max over references
}

TEST(CutOpener, StopsLikeTheOpenerPolicy) {
    EXPECT_EQ(cut_opener("Sure, here is a list of the things you asked for."),
              "Sure, here is a list of the things");
    EXPECT_EQ(cut_opener("Yes. The capital of France is Paris. It is big."),
              "Yes. The capital of France is Paris.");
    EXPECT_EQ(cut_opener("\n\n  Hello there!"), "Hello there!");
    EXPECT_EQ(cut_opener(""), "");
    EXPECT_EQ(cut_opener("Title line\n\nThe body starts here and goes on"),
              "Title line\n\nThe body starts here and goes");
    EXPECT_EQ(cut_opener("— ** one two three four, five"), "— ** one two three four,");
}

TEST(CutOpener, ChunkedCutEqualsWholeTextCut) {
    // Long texts whose whitespace runs and multi-byte characters straddle the 256-byte chunks.
    std::string base;
    for (int i = 0; i < 300; ++i) base += "é";
    for (const std::string& tail : {std::string(" a b c\n\nd e f g h"), std::string("   \n x y z. w v u t s"),
                                    std::string(" 你好世界 one, two three four five.")}) {
        for (size_t pad = 250; pad < 262; ++pad) {
            const std::string text = std::string(pad, 'x') + tail + " " + base;
            EXPECT_EQ(cut_opener(text), cut_whole(text)) << "pad " << pad;
            EXPECT_EQ(cut_opener(text, 1, 3), cut_whole(text, 1, 3)) << "pad " << pad;
        }
    }
}

TEST(Stats, QuantileAndMean) {
    EXPECT_TRUE(std::isnan(quantile({}, 0.5)));
    EXPECT_EQ(quantile({3, 1, 2}, 0.5), 2);
    EXPECT_EQ(quantile({0, 10}, 0.9), 9);
    EXPECT_EQ(quantile({5}, 0.99), 5);
    EXPECT_EQ(mean({1, 2, 3, 6}), 3);
    EXPECT_TRUE(std::isnan(mean({})));
}

// ---- Baselines on a fixture ---------------------------------------------------------------------

// Five prompts; the constant opener "Sure! Here's" is {"sure", "heres"} after normalisation.
std::vector<EvalPrompt> fixture() {
    return {
        prompt("toy", "1", "Give me a recipe", {"Sure! Here's a recipe.", "Of course."}),  // @2 yes
        prompt("toy", "2", "Say it", {"Sure, here is it"}),                                // no ("here")
        prompt("toy", "3", "What?", {"sure heres what"}),                                  // yes
        prompt("toy", "4", "No refs", {}),                                                 // not scored
        prompt("toy", "5", "Hi", {"Here's"}),                                              // no
    };
}

TEST(Baselines, ConstantMatchesAHandCount) {
    const auto prompts = fixture();
    CandidateResult c = candidate("constant", std::vector<std::string>(prompts.size(), kConstantOpener));
    score_candidate(prompts, reference_words(prompts), c);
    const OpenerMetrics& m = c.by_set.at("toy");
    EXPECT_EQ(m.prompts, 5u);
    EXPECT_EQ(m.with_references, 4u);
    EXPECT_DOUBLE_EQ(m.start_match2, 2.0 / 4.0);
    EXPECT_DOUBLE_EQ(m.start_match3, 0.0);  // the opener has only two words
    // F1 by hand: 2/3 (prompt 1), 1/3 (prompt 2: "sure" of 4 words), 4/5 (prompt 3), 2/3 (prompt 5).
    EXPECT_NEAR(m.f1, (2.0 / 3 + 1.0 / 3 + 0.8 + 2.0 / 3) / 4, 1e-12);
    EXPECT_DOUBLE_EQ(m.words, 2.0);
    EXPECT_EQ(m.empty, 0u);
    EXPECT_TRUE(std::isnan(m.hedge_rate));  // not a model
    EXPECT_DOUBLE_EQ(c.all.start_match2, m.start_match2);
}

TEST(Baselines, OracleScoresOneByConstruction) {
    std::vector<EvalPrompt> prompts = fixture();
    prompts.push_back(prompt(
        "toy", "6", "Capital?",
        {"It is Paris.", "Paris is the capital of France.", "Paris is the capital, of course.", "Short"}));
    prompts.push_back(prompt("toy", "7", "Unicode", {"Привет, мир! Как дела?", "你好，世界。今天"}));
    std::vector<std::string> texts;
    for (const auto& p : prompts) texts.push_back(oracle_opener(p.references));
    // The most common three-word start wins: two references start "paris is the".
    EXPECT_EQ(texts[5], "Paris is the capital of France.");
    EXPECT_EQ(texts[3], "");  // no references
    CandidateResult c = candidate("oracle", texts);
    score_candidate(prompts, reference_words(prompts), c);
    // Every prompt here whose references have at least three words.
    for (size_t i : {0u, 1u, 2u, 5u, 6u}) {
        const Words w = normalize_words(texts[i]);
        EXPECT_TRUE(start_match_any(w, reference_words(prompts)[i], 2)) << texts[i];
        EXPECT_TRUE(start_match_any(w, reference_words(prompts)[i], 3)) << texts[i];
    }
    // Prompt 5's only reference has one word: the oracle says it, and cannot match two words.
    EXPECT_EQ(texts[4], "Here's");
    EXPECT_NEAR(c.all.start_match2, 5.0 / 6.0, 1e-12);
    CandidateResult long_refs = candidate("oracle", {texts[0], texts[1], texts[2], texts[5], texts[6]});
    const std::vector<EvalPrompt> scored = {prompts[0], prompts[1], prompts[2], prompts[5], prompts[6]};
    score_candidate(scored, reference_words(scored), long_refs);
    EXPECT_DOUBLE_EQ(long_refs.all.start_match2, 1.0);
    EXPECT_DOUBLE_EQ(long_refs.all.start_match3, 1.0);
    EXPECT_DOUBLE_EQ(long_refs.all.f1, 1.0);
}

TEST(Baselines, EmptyOpenersScoreZero) {
    const auto prompts = fixture();
    CandidateResult c = candidate("silent", std::vector<std::string>(prompts.size(), ""));
    c.judge_nll.assign(prompts.size(), kNaN);
    score_candidate(prompts, reference_words(prompts), c);
    EXPECT_EQ(c.all.empty, 5u);
    EXPECT_DOUBLE_EQ(c.all.start_match2, 0.0);
    EXPECT_DOUBLE_EQ(c.all.f1, 0.0);
    EXPECT_EQ(c.all.judged, 0u);
    EXPECT_TRUE(std::isnan(c.all.judge_nll));
    CandidateResult wrong = candidate("short", {"a"});
    EXPECT_THROW(score_candidate(prompts, reference_words(prompts), wrong), Error);
}

TEST(Retrieval, NearestPromptByTfIdf) {
    RetrievalIndex idx;
    idx.add("How do I bake bread at home?", "Baking bread at home is easy:");
    idx.add("What is the capital of France?", "The capital of France is Paris.");
    idx.add("What is the tallest mountain?", "Mount Everest is the tallest.");
    idx.add("What is the capital of Spain?", "The capital of Spain is Madrid.");
    idx.finalize();
    EXPECT_EQ(idx.best("capital city of france"), 1);
    EXPECT_EQ(idx.opener_for("Tell me how to bake some bread"), "Baking bread at home is easy:");
    // Only common words shared with two prompts: "capital" is rarer than "what is the", so Spain's
    // and France's prompts tie and the earlier one wins.
    EXPECT_EQ(idx.best("capital?"), 1);
    EXPECT_EQ(idx.best("zebra quantum"), -1);
    // No shared word: the most common opener start ("the capital of") is the fallback.
    EXPECT_EQ(idx.opener_for("zebra quantum"), "The capital of France is Paris.");
    RetrievalIndex empty;
    empty.finalize();
    EXPECT_EQ(empty.opener_for("anything"), "");
}

TEST(Retrieval, BuildsFromCorporaWithHoldOuts) {
    const fs::path dir = temp_dir("retrieval");
    fs::create_directories(dir / "eval");
    write(dir / "eval" / "q.jsonl", "{\"prompt\": \"What is the capital of France?\"}\n");
    write(dir / "gpteacher_fixture.json",
          R"([{"instruction": "What is the capital of France?", "input": "", "output": "Paris, of course."},
              {"instruction": "Name a big mountain", "input": "", "output": "Mount Everest is big, very big."},
              {"instruction": "Recommend a book to read", "input": "", "output": "Try Dune, a classic of science fiction."}])");
    RetrievalStats st;
    const RetrievalIndex idx =
        build_retrieval_index({(dir / "gpteacher_fixture.json").string()}, (dir / "eval").string(),
                              {"Recommend a book to read"}, &st);
    EXPECT_EQ(st.prompts, 1u);  // the eval question and the extra held-out prompt are left out
    EXPECT_EQ(idx.opener(0), "Mount Everest is big,");
}

// ---- Prompt files -------------------------------------------------------------------------------

TEST(PromptSets, GenericJsonlFile) {
    const fs::path dir = temp_dir("prompts");
    write(dir / "mine.jsonl",
          "{\"prompt\": \"Hi there\", \"references\": [\"Hello! How can I help?\"], \"id\": \"a\"}\n"
          "\n"
          "{\"prompt\": \"Ciao\"}\n");
    const auto p = load_prompts_file((dir / "mine.jsonl").string());
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].set, "mine");
    EXPECT_EQ(p[0].id, "a");
    EXPECT_EQ(p[0].references, std::vector<std::string>{"Hello! How can I help?"});
    EXPECT_EQ(p[1].id, "3");  // the line number
    EXPECT_TRUE(p[1].references.empty());
    EXPECT_EQ(load_prompts_file((dir / "mine.jsonl").string(), 1).size(), 1u);

    write(dir / "bad.jsonl", "{\"prompt\": 5}\n");
    EXPECT_THROW(load_prompts_file((dir / "bad.jsonl").string()), Error);
    write(dir / "bad2.jsonl", "{\"prompt\": \"x\", \"references\": \"not a list\"}\n");
    EXPECT_THROW(load_prompts_file((dir / "bad2.jsonl").string()), Error);
    write(dir / "empty.jsonl", "\n");
    EXPECT_THROW(load_prompts_file((dir / "empty.jsonl").string()), Error);
    EXPECT_THROW(load_prompts_file((dir / "missing.jsonl").string()), Error);
    EXPECT_THROW(load_prompt_set("nope", dir.string()), Error);
}

TEST(PromptSets, ShortenKeepsHeadAndTail) {
    std::string text = "QUESTION START ";
    for (int i = 0; i < 200; ++i) text += "filler é ";
    text += "QUESTION END";
    EXPECT_EQ(shorten_to_fit("short", [](const std::string& s) { return s.size() < 100; }), "short");
    const std::string s = shorten_to_fit(text, [](const std::string& x) { return x.size() <= 300; });
    EXPECT_LE(s.size(), 300u);
    EXPECT_EQ(s.rfind("QUESTION START", 0), 0u);
    EXPECT_NE(s.find("QUESTION END"), std::string::npos);
    EXPECT_NE(s.find(" [...] "), std::string::npos);
    EXPECT_FALSE(normalize_words(s).empty());  // still valid UTF-8 words
    EXPECT_THROW(shorten_to_fit(text, [](const std::string&) { return false; }), Error);
}

// ---- Latency ------------------------------------------------------------------------------------

TEST(Latency, StallByHand) {
    // First word at 0.1 s, 5 words at 2.5 words/s: said by 2.1 s. Opener done at 0.3 s.
    EXPECT_DOUBLE_EQ(simulated_stall(0.1, 0.3, 5, true, 0.8, 2.5), 0.0);    // cloud at 1.1 s: no wait
    EXPECT_NEAR(simulated_stall(0.1, 0.3, 5, true, 3.0, 2.5), 1.2, 1e-12);  // cloud at 3.3 s
    EXPECT_NEAR(simulated_stall(0.1, 0.3, 5, true, 3.0, 5.0), 2.2, 1e-12);  // text: said by 1.1 s
    EXPECT_DOUBLE_EQ(simulated_stall(0.1, 0.3, 5, false, 3.0, 2.5), 0.0);   // the opener ended the reply
    EXPECT_NEAR(simulated_stall(-1, 0.5, 0, true, 1.0, 2.5), 1.0,
                1e-12);  // no word: waits from the opener's end
}

// The audio rows' formula against a real waveform: the opener and a continuation said on an
// AudioTimeline at the simulated times; the silence between the utterances, found in the samples,
// less the back-to-back pause, is audio_stall's figure.
TEST(Latency, AudioStallIsTheWaveformsSilence) {
    if (!speech_available()) GTEST_SKIP() << "this build has no espeak-ng";
    EXPECT_DOUBLE_EQ(audio_stall(0.1, 0.3, 1.0, 1.02, false, 5.0, 0.01), 0.0);  // no cloud needed
    const std::string opener = "Sure! For a day hike, pack", cont = "water and a map.";
    for (const double late : {-1.0, 0.7, 2.0}) {  // the cloud's text: before the opener's audio ends, or after
        const double first_word = 0.05, opener_s = 0.08;
        AudioTimeline t;
        const int rate = t.sample_rate();
        // espeak-ng's audio for the same text varies by a few ms from call to call, so the
        // edges are read from the timeline's own samples.
        const size_t s1 = t.say(opener, first_word * 1000);
        const std::span<const int16_t> a(t.samples().data() + s1, t.samples().size() - s1);
        size_t last = a.size();
        while (last > 0 && std::abs(static_cast<int>(a[last - 1])) < kSoundThreshold) --last;
        const double length = static_cast<double>(a.size()) / rate, last_s = static_cast<double>(last) / rate;
        const double ttft = first_word + length - opener_s + late;
        const size_t s2 = t.say(cont, (opener_s + ttft) * 1000);
        const double cont_first =
            first_sound_ms(std::span<const int16_t>(t.samples()).subspan(s2), rate) / 1000.0;
        const double heard = t.longest_wait_ms() / 1000.0;  // sound to sound, from the samples
        const double back_to_back = length - last_s + cont_first;
        const double stall = audio_stall(first_word, opener_s, last_s, length, true, ttft, cont_first);
        std::printf("cloud %+.1f s after the opener's audio: silence heard %.3f s, back to back %.3f s, stall %.3f s\n",
                    late, heard, back_to_back, stall);
        EXPECT_NEAR(stall, std::max(0.0, heard - back_to_back), 1e-3);
        EXPECT_NEAR(stall, std::max(0.0, late), 1e-3);
    }
}

std::vector<ModelOpeners> synthetic_models() {
    ModelOpeners m;
    m.name = "toy";
    for (int i = 0; i < 20; ++i)
        m.openers.push_back({"w", "", false, i == 3, false, 4 + i % 5, 20.0 + i, 25.0 + 2 * i});
    return {m};
}

TEST(Latency, SameSeedSameNumbers) {
    EvalConfig cfg;
    cfg.draws = 5000;
    cfg.seed = 7;
    const LatencyResult a = run_latency_suite(cfg, synthetic_models());
    const LatencyResult b = run_latency_suite(cfg, synthetic_models());
    EXPECT_EQ(a.cloud_only_draws, b.cloud_only_draws);
    EXPECT_EQ(a.models[0].stall_draws.at("speech"), b.models[0].stall_draws.at("speech"));
    cfg.seed = 8;
    const LatencyResult c = run_latency_suite(cfg, synthetic_models());
    EXPECT_NE(a.cloud_only_draws, c.cloud_only_draws);
    // The log-normal's median is where it was asked to be (5000 draws: within a few percent).
    EXPECT_NEAR(a.cloud_only.p50, 0.8, 0.04);
    // Speech takes longer to say the opener than text: it stalls less.
    EXPECT_LE(a.models[0].stall.at("speech").p50, a.models[0].stall.at("text").p50);
    EXPECT_GT(a.models[0].stall.at("speech").zero_share, 0.5);
    // An opener sized to cover the wait's 90th percentile waits less, and never more, at both paces.
    for (const char* pace : {"speech", "text"}) {
        const LatencyStats& plain = a.models[0].stall.at(pace);
        const LatencyStats& sized = a.models[0].stall.at(std::string(pace) + ", sized");
        EXPECT_GE(sized.zero_share, plain.zero_share) << pace;
        EXPECT_LE(sized.p90, plain.p90) << pace;
    }
    EXPECT_GT(a.models[0].stall.at("text, sized").zero_share, a.models[0].stall.at("text").zero_share + 0.1);

    cfg.ttft.kind = TtftDistribution::Kind::kFixed;
    cfg.ttft.median_s = 0.5;
    const LatencyResult f = run_latency_suite(cfg, synthetic_models());
    EXPECT_DOUBLE_EQ(f.cloud_only.p99, 0.5);
    cfg.ttft.kind = TtftDistribution::Kind::kSamples;
    EXPECT_THROW(run_latency_suite(cfg, synthetic_models()), Error);  // no samples
}

// ---- Report -------------------------------------------------------------------------------------

TEST(Report, WritesJsonMarkdownAndPlots) {
    const auto prompts = fixture();
    OpenersResult o;
    o.prompts = prompts;
    o.sets = {"toy"};
    o.candidates.push_back(candidate("constant", std::vector<std::string>(prompts.size(), kConstantOpener)));
    o.candidates.back().judge_nll.assign(prompts.size(), 1.5);
    o.judge = "judge";
    const ReferenceWords refs = reference_words(prompts);
    for (auto& c : o.candidates) score_candidate(prompts, refs, c);
    EvalReport r;
    r.command = "microlm eval openers";
    r.openers = o;
    EvalConfig cfg;
    cfg.draws = 100;
    r.latency = run_latency_suite(cfg, synthetic_models());
    HandoffResult h;
    h.models = {"toy"};
    h.modes = {"instruct", "prefill"};
    h.metrics["toy"]["instruct"].keep_rate = 0.5;
    h.samples.push_back({"toy", "1", "Give me a recipe", "Sure!", "instruct", "own", "keep", "here it is",
                         "Sure! here it is", 0});
    r.handoff = h;
    const fs::path dir = temp_dir("report") / "out";
    const auto files = write_report(dir.string(), r);
    EXPECT_GE(files.size(), 8u);
    for (const auto& f : files) EXPECT_GT(fs::file_size(f), 0u) << f;
    std::ifstream in(dir / "results.json");
    const auto j = nlohmann::json::parse(in);
    EXPECT_DOUBLE_EQ(j["openers"]["metrics"]["constant"]["by_set"]["toy"]["start_match2"].get<double>(), 0.5);
    EXPECT_FALSE(j["openers"]["metrics"]["constant"]["by_set"]["toy"].contains("hedge_rate"));  // models only
    EXPECT_DOUBLE_EQ(j["handoff"]["metrics"]["toy"]["instruct"]["keep_rate"].get<double>(), 0.5);
    EXPECT_TRUE(j["handoff"]["metrics"]["toy"]["instruct"]["detection"].is_null());
    std::ifstream md(dir / "report.md");
    const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("| constant |"), std::string::npos);
    EXPECT_NE(text.find("![latency CDF](latency_cdf.png)"), std::string::npos);
    for (const auto& e : fs::directory_iterator(dir))
        EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
}

// ---- The opener suite end to end (SmolLM2) -------------------------------------------------------

TEST(OpenersSuite, SameSeedSameNumbers) {
    if (!fs::exists(MICROLM_SMOLLM2)) GTEST_SKIP() << MICROLM_SMOLLM2 << " is missing (scripts/setup.sh)";
    const fs::path dir = temp_dir("suite");
    fs::create_directories(dir / "eval");
    write(dir / "eval" / "q.jsonl", "{\"prompt\": \"unused held-out question\"}\n");
    write(
        dir / "gpteacher_fixture.json",
        R"([{"instruction": "What is the capital of Italy?", "input": "", "output": "The capital of Italy is Rome."},
              {"instruction": "Write a haiku about snow", "input": "", "output": "Soft snow falls at night,"}])");
    EvalConfig cfg;
    cfg.models = {MICROLM_SMOLLM2};
    cfg.judge = MICROLM_SMOLLM2;
    cfg.data_dir = dir.string();
    cfg.retrieval_corpora = {(dir / "gpteacher_fixture.json").string()};
    const std::vector<EvalPrompt> prompts = {
        prompt("toy", "1", "What is the capital of France?", {"The capital of France is Paris."}),
        prompt("toy", "2", "Write a short poem about the sea.", {"The sea is wide and deep,"}),
    };
    const OpenersResult a = run_openers_suite(cfg, prompts, {});
    const OpenersResult b = run_openers_suite(cfg, prompts, {});
    ASSERT_EQ(a.candidates.size(), 4u);  // SmolLM2, constant, retrieval, oracle
    for (size_t c = 0; c < a.candidates.size(); ++c) {
        EXPECT_EQ(a.candidates[c].name, b.candidates[c].name);
        for (size_t i = 0; i < 2; ++i) {
            EXPECT_EQ(a.candidates[c].openers[i].text, b.candidates[c].openers[i].text);
            EXPECT_EQ(a.candidates[c].judge_nll[i], b.candidates[c].judge_nll[i]);
        }
        EXPECT_EQ(a.candidates[c].all.start_match2, b.candidates[c].all.start_match2);
        EXPECT_EQ(a.candidates[c].all.f1, b.candidates[c].all.f1);
    }
    EXPECT_EQ(a.candidates[2].openers[0].text, "The capital of Italy is Rome.");  // retrieval
    EXPECT_DOUBLE_EQ(a.candidates[3].all.start_match2, 1.0);                      // oracle
    EXPECT_GT(a.candidates[0].all.judge_nll, 0.0);
    EXPECT_LT(a.candidates[0].all.judge_nll, a.candidates[1].all.judge_nll)
        << "SmolLM2 judging its own greedy opener should find it likelier than the constant";
}
