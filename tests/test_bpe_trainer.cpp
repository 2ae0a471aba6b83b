// Tests of BPE training: hand-computed merges, deterministic output, and the trained vocabulary
// run through the runtime Tokenizer loaded back from the written GGUF (round trips, specials,
// compression). llama.cpp's agreement on such a vocabulary is tests/oracle/trained_tokenizer_cases.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include "microlm/bpe_trainer.h"
#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/tokenizer.h"
#include "microlm/unicode.h"

namespace {

using microlm::BpeTrainer;
using microlm::BpeTrainerOptions;
using microlm::Tokenizer;
using microlm::VocabData;

// Pseudo-English (common words and invented ones) with numbers, punctuation, newlines and some non-ASCII
// words, from a seed.
std::vector<std::string> corpus(int docs, uint32_t seed) {
    static const char* words[] = {
        "the",    "of",     "and",      "to",         "a",         "in",    "is",          "you",   "that",
        "it",     "he",     "was",      "for",        "on",        "are",   "as",          "with",  "his",
        "they",   "I",      "at",       "be",         "this",      "have",  "from",        "or",    "one",
        "had",    "by",     "word",     "but",        "not",       "what",  "all",         "were",  "we",
        "when",   "your",   "can",      "said",       "there",     "use",   "an",          "each",  "which",
        "she",    "do",     "how",      "their",      "if",        "will",  "up",          "other", "about",
        "out",    "many",   "then",     "them",       "these",     "so",    "Hello",       "World", "Sure",
        "Here's", "answer", "question", "example",    "assistant", "café",  "naïve",       "日本",  "über",
        "don't",  "it's",   "weather",  "restaurant", "London",    "Paris", "reservation", "music",
    };
    std::mt19937 rng(seed);
    std::vector<std::string> out;
    for (int d = 0; d < docs; ++d) {
        std::string t;
        const int n = 20 + static_cast<int>(rng() % 80);
        for (int i = 0; i < n; ++i) {
            if (i) t += (rng() % 17 == 0) ? "\n\n" : " ";
            const uint32_t r = rng() % 100;
            if (r < 60) {
                t += words[rng() % std::size(words)];
            } else if (r < 85) {
                // Invented words, so that the vocabulary has more than a few hundred pairs to learn.
                static const char* syllables[] = {"ka",  "ro",  "mi", "ten",  "sha", "lu",  "ver",
                                                  "qui", "do",  "ne", "stra", "pe",  "gol", "bi",
                                                  "zu",  "mar", "en", "ix",   "tho", "a"};
                for (uint32_t k = 0, n_syl = 1 + rng() % 4; k < n_syl; ++k)
                    t += syllables[rng() % std::size(syllables)];
            } else if (r < 92) {
                t += std::to_string(rng() % 2000);
            } else {
                t += words[rng() % std::size(words)];
                t += ",.!?;:"[rng() % 6];
            }
        }
        out.push_back(std::move(t));
    }
    return out;
}

VocabData train(const std::vector<std::string>& docs, int32_t vocab_size,
                std::optional<std::string> system = {}) {
    BpeTrainerOptions o;
    o.vocab_size = vocab_size;
    o.default_system = std::move(system);
    BpeTrainer t(o);
    for (const auto& d : docs) t.add_text(d);
    return t.train();
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::path(testing::TempDir()) / ("microlm_bpe_" + name)).string();
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

// The runtime's view of a trained vocabulary: written as GGUF and read back as a model would be.
Tokenizer load_via_gguf(const VocabData& v, const std::string& name) {
    const std::string path = temp_path(name);
    microlm::write_vocab_gguf(path, v);
    const auto f = microlm::GgufFile::open(path);
    return Tokenizer(microlm::vocab_from_gguf(*f));
}

// What llama.cpp's tokenizer gives back for arbitrary bytes: each byte that does not start a
// complete UTF-8 sequence is replaced by U+FFFD.
std::string lenient(std::string_view s) {
    std::string out;
    for (const uint32_t c : microlm::unicode::decode_lenient(s)) microlm::unicode::append_utf8(out, c);
    return out;
}

TEST(BpeTrainer, HandComputedMerges) {
    // ab: 5 + 2 = 7 and bc: 3 + 2 = 5, so "a b" first; then bc (3) beats ab+c (2); then ab+c.
    std::vector<std::string> docs;
    for (int i = 0; i < 5; ++i) docs.push_back("ab");
    for (int i = 0; i < 3; ++i) docs.push_back("bc");
    for (int i = 0; i < 2; ++i) docs.push_back("abc");
    const VocabData v = train(docs, 262);
    EXPECT_EQ(v.merges, (std::vector<std::string>{"a b", "b c", "ab c"}));
    ASSERT_EQ(v.tokens.size(), 262u);
    EXPECT_EQ(v.tokens[259], "ab");
    EXPECT_EQ(v.tokens[260], "bc");
    EXPECT_EQ(v.tokens[261], "abc");
    // Only three pairs exist, so a fourth merge cannot be had.
    EXPECT_THROW(train(docs, 263), microlm::Error);
}

TEST(BpeTrainer, TiesGoToTheLowestIds) {
    // "xy" and "pq" are equally frequent; 'p' (0x70) < 'x' (0x78).
    const VocabData v = train({"xy", "pq", "xy", "pq"}, 261);
    EXPECT_EQ(v.merges, (std::vector<std::string>{"p q", "x y"}));
}

TEST(BpeTrainer, MergesNeverCrossPreTokenizerWords) {
    // " b" is a word of its own (the space leads the next word), so "a" and " b" never merge,
    // while " b" does: the space is Ġ in the byte alphabet.
    const VocabData v = train({"a b", "a b", "a b"}, 260);
    EXPECT_EQ(v.merges, (std::vector<std::string>{"Ġ b"}));
}

TEST(BpeTrainer, VocabularyLayout) {
    const VocabData v = train(corpus(300, 1), 600, "You are a helpful assistant.");
    ASSERT_EQ(v.tokens.size(), 600u);
    ASSERT_EQ(v.token_types.size(), 600u);
    EXPECT_EQ(v.tokens[0], "<|endoftext|>");
    EXPECT_EQ(v.tokens[1], "<|im_start|>");
    EXPECT_EQ(v.tokens[2], "<|im_end|>");
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(v.token_types[i], static_cast<int32_t>(microlm::TokenType::CONTROL));
    for (int b = 0; b < 256; ++b) {
        EXPECT_EQ(v.tokens[3 + b], microlm::unicode::byte_to_utf8(static_cast<uint8_t>(b)));
        EXPECT_EQ(v.token_types[3 + b], static_cast<int32_t>(microlm::TokenType::NORMAL));
    }
    EXPECT_GE(v.merges.size(), 600u - 259u);
    const std::set<std::string> texts(v.tokens.begin(), v.tokens.end());
    EXPECT_EQ(texts.size(), v.tokens.size()) << "token texts must be distinct";
    for (const std::string& m : v.merges) {
        const size_t sp = m.find(' ');
        ASSERT_NE(sp, std::string::npos) << m;
        EXPECT_TRUE(texts.count(m.substr(0, sp)) && texts.count(m.substr(sp + 1)) &&
                    texts.count(m.substr(0, sp) + m.substr(sp + 1)))
            << "merge '" << m << "' joins tokens that are not in the vocabulary";
    }
    EXPECT_EQ(v.pre, "qwen2");
    EXPECT_EQ(v.bos_id, 0);
    EXPECT_EQ(v.eos_id, 2);
    EXPECT_EQ(v.eot_id, 2);
    EXPECT_FALSE(v.add_bos);
    EXPECT_EQ(microlm::chat_template_default_system(v.chat_template), "You are a helpful assistant.");
    EXPECT_EQ(microlm::chat_template_default_system(train(corpus(50, 1), 300).chat_template), std::nullopt);
}

TEST(BpeTrainer, RepeatedByteRunsGiveDistinctTokens) {
    // Runs of one or two letters reach the same strings by several merge paths ("aa"+"a" and
    // "a"+"aa"...); the vocabulary must still list each text once, with extra merges allowed.
    std::mt19937 rng(7);
    std::vector<std::string> docs;
    for (int i = 0; i < 400; ++i) {
        std::string w(1 + rng() % 12, 'a');
        for (auto& c : w) c = (rng() % 5 == 0) ? 'b' : 'a';
        docs.push_back(w);
    }
    const VocabData v = train(docs, 330);
    const std::set<std::string> texts(v.tokens.begin(), v.tokens.end());
    EXPECT_EQ(texts.size(), v.tokens.size());
    EXPECT_NO_THROW(Tokenizer{v});
}

TEST(BpeTrainer, DeterministicWhateverTheOrderOfDocuments) {
    auto docs = corpus(200, 2);
    const VocabData a = train(docs, 500);
    std::reverse(docs.begin(), docs.end());
    const VocabData b = train(docs, 500);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.merges, b.merges);
    microlm::write_vocab_gguf(temp_path("det_a.gguf"), a);
    microlm::write_vocab_gguf(temp_path("det_b.gguf"), b);
    const std::string fa = read_file(temp_path("det_a.gguf")), fb = read_file(temp_path("det_b.gguf"));
    EXPECT_FALSE(fa.empty());
    EXPECT_TRUE(fa == fb) << "the same text must give a byte-identical GGUF";
}

TEST(BpeTrainer, GgufRoundTrip) {
    const VocabData v = train(corpus(100, 3), 400, "Be brief.\nAnd 'kind'.");
    const std::string path = temp_path("roundtrip.gguf");
    microlm::write_vocab_gguf(path, v);
    const auto f = microlm::GgufFile::open(path);
    EXPECT_TRUE(f->tensors().empty());
    const VocabData r = microlm::vocab_from_gguf(*f);
    EXPECT_EQ(r.model, v.model);
    EXPECT_EQ(r.pre, v.pre);
    EXPECT_EQ(r.tokens, v.tokens);
    EXPECT_EQ(r.token_types, v.token_types);
    EXPECT_EQ(r.merges, v.merges);
    EXPECT_EQ(r.bos_id, v.bos_id);
    EXPECT_EQ(r.eos_id, v.eos_id);
    EXPECT_EQ(r.eot_id, v.eot_id);
    EXPECT_EQ(r.pad_id, v.pad_id);
    EXPECT_EQ(r.add_bos, v.add_bos);
    EXPECT_EQ(r.chat_template, v.chat_template);
    EXPECT_EQ(microlm::chat_template_default_system(r.chat_template), "Be brief.\nAnd 'kind'.");
}

TEST(BpeTrainer, MergesShortenText) {
    const Tokenizer tok = load_via_gguf(train(corpus(400, 4), 800), "shorten.gguf");
    // Text the trainer never saw, from the same distribution.
    size_t bytes = 0, tokens = 0;
    for (const std::string& d : corpus(50, 99)) {
        bytes += d.size();
        tokens += tok.encode(d, false, false).size();
    }
    const double ratio = static_cast<double>(bytes) / static_cast<double>(tokens);
    std::printf("bytes per token on unseen text: %.2f\n", ratio);
    EXPECT_GT(ratio, 3.0);
}

TEST(BpeTrainer, RuntimeRoundTripsAnyText) {
    const Tokenizer tok = load_via_gguf(train(corpus(300, 5), 700), "roundtrip_any.gguf");
    std::mt19937 rng(11);
    // Valid UTF-8 from a palette that exercises every pre-tokenizer branch comes back exactly.
    const char* palette[] = {" ",      "  ",   "\t",    "\n",     "\r\n",   "\n\n",       "\u00a0",
                             "a",      "The",  "HELLO", "'s",     "'LL",    "7",          "42",
                             "1999",   ".",    ",",     "!!",     "?",      "(",          ")",
                             "<",      "|",    "$",     "\u00e9", "\u65e5", "\U0001F600", "\u0301",
                             "\u0663", "\x01", "\x7f",  "<|im",   "end|>",  "\u200d",     "x"};
    for (int i = 0; i < 500; ++i) {
        std::string s;
        const int n = static_cast<int>(rng() % 30);
        for (int k = 0; k < n; ++k) s += palette[rng() % std::size(palette)];
        const auto ids = tok.encode(s, false, false);
        ASSERT_EQ(tok.decode(ids, false), s) << "text #" << i;
    }
    // Arbitrary bytes: exactly what llama.cpp gives, invalid bytes as U+FFFD.
    for (int i = 0; i < 500; ++i) {
        std::string s(rng() % 40, '\0');
        for (auto& c : s) c = static_cast<char>(rng() % 256);
        const auto ids = tok.encode(s, false, false);
        ASSERT_EQ(tok.decode(ids, false), lenient(s)) << "bytes #" << i;
    }
    EXPECT_TRUE(tok.encode("", false, false).empty());
}

TEST(BpeTrainer, SpecialsAreSingleControlTokens) {
    const Tokenizer tok = load_via_gguf(train(corpus(100, 6), 400), "specials.gguf");
    const std::string prompt = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
    const auto ids = tok.encode(prompt, false, /*parse_special=*/true);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 2);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok.decode(ids, true), prompt);
    EXPECT_EQ(tok.encode("<|endoftext|>", false, true), std::vector<int32_t>{0});
    // As plain text they are not special.
    const auto plain = tok.encode("<|im_end|>", false, false);
    EXPECT_GT(plain.size(), 1u);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
    EXPECT_TRUE(tok.is_end_of_generation(2));
    EXPECT_TRUE(tok.is_end_of_generation(0));
    EXPECT_FALSE(tok.is_end_of_generation(1));
    EXPECT_EQ(tok.token_to_piece(2, false), "");
    EXPECT_EQ(tok.token_to_piece(2, true), "<|im_end|>");
}

TEST(BpeTrainer, RejectsBadOptions) {
    BpeTrainerOptions o;
    o.vocab_size = 259;
    EXPECT_THROW(BpeTrainer{o}, microlm::Error);
    o.vocab_size = 70000;
    EXPECT_THROW(BpeTrainer{o}, microlm::Error);
    o.vocab_size = 300;
    o.pre = "no-such-pre";
    EXPECT_THROW(BpeTrainer{o}, microlm::Error);
}

}  // namespace
