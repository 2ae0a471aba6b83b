// Unit tests of the BPE tokenizer, pre-tokenizers, Utf8Streamer and ChatML formatting on a tiny
// hand-made vocabulary: no files needed. Parity with llama.cpp on a real vocabulary is
// test_parity_tokenizer.cpp.
#include <gtest/gtest.h>

#include <random>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/tokenizer.h"
#include "microlm/pretokenizer.h"

namespace {

using microlm::Tokenizer;
using microlm::TokenType;
using microlm::VocabData;

// GPT-2's byte-to-unicode table, written out independently of src/text/unicode.cpp.
std::string byte_char(int b) {
    int cpt = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        int n = 0;
        for (int x = 0; x < b; ++x) {
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
        }
        cpt = 0x100 + n;
    }
    std::string s;
    if (cpt < 0x80) {
        s.push_back(static_cast<char>(cpt));
    } else {
        s.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        s.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    }
    return s;
}

std::string mapped(std::string_view bytes) {
    std::string s;
    for (const char c : bytes) s += byte_char(static_cast<unsigned char>(c));
    return s;
}

// Ids 0..255 are the bytes; merged tokens follow in merge order; then the specials.
VocabData tiny_vocab(const std::vector<std::pair<std::string, std::string>>& merges,
                     std::string pre = "smollm") {
    VocabData v;
    v.pre = std::move(pre);
    for (int b = 0; b < 256; ++b) {
        v.tokens.push_back(byte_char(b));
        v.token_types.push_back(static_cast<int32_t>(TokenType::NORMAL));
    }
    for (const auto& [l, r] : merges) {
        v.merges.push_back(mapped(l) + " " + mapped(r));
        v.tokens.push_back(mapped(l + r));
        v.token_types.push_back(static_cast<int32_t>(TokenType::NORMAL));
    }
    const std::pair<const char*, TokenType> specials[] = {
        {"<|endoftext|>", TokenType::CONTROL}, {"<|im_start|>", TokenType::CONTROL},
        {"<|im_end|>", TokenType::CONTROL},    {"<|im", TokenType::CONTROL},
        {"<tool>", TokenType::USER_DEFINED},
    };
    for (const auto& [text, type] : specials) {
        v.tokens.push_back(text);
        v.token_types.push_back(static_cast<int32_t>(type));
    }
    v.bos_id = v.eos_id = static_cast<int32_t>(256 + merges.size());
    return v;
}

const std::vector<std::pair<std::string, std::string>> kHelloMerges = {
    {"h", "e"}, {"l", "l"},   {"he", "ll"},  {"hell", "o"},  {" ", "w"},
    {"o", "r"}, {" w", "or"}, {" wor", "l"}, {" worl", "d"},
};

int32_t id(const Tokenizer& t, std::string_view bytes) { return t.token_id(mapped(bytes)); }

// What llama.cpp makes of arbitrary bytes before tokenizing: every byte that does not start a
// complete (possibly overlong or surrogate) sequence becomes U+FFFD; the rest is re-encoded.
std::string llama_lenient(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        size_t len = b < 0x80             ? 1
                     : (b & 0xE0) == 0xC0 ? 2
                     : (b & 0xF0) == 0xE0 ? 3
                     : (b & 0xF8) == 0xF0 ? 4
                                          : 0;
        bool ok = len > 0 && i + len <= s.size();
        for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (!ok) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        uint32_t cpt = len == 1 ? b : (b & (0xFF >> (len + 1)));
        for (size_t k = 1; k < len; ++k) cpt = (cpt << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        if (cpt < 0x80) {
            out.push_back(static_cast<char>(cpt));
        } else if (cpt < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
            out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
        } else if (cpt < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
        } else if (cpt <= 0x10FFFF) {
            out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
            out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
        } else {
            out += "\xEF\xBF\xBD";
        }
        i += len;
    }
    return out;
}

bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        size_t len = b < 0x80                   ? 1
                     : (b >= 0xC2 && b <= 0xDF) ? 2
                     : (b >= 0xE0 && b <= 0xEF) ? 3
                     : (b >= 0xF0 && b <= 0xF4) ? 4
                                                : 0;
        if (len == 0 || i + len > s.size()) return false;
        uint32_t cpt = len == 1 ? b : (b & (0xFF >> (len + 1)));
        for (size_t k = 1; k < len; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xC0) != 0x80) return false;
            cpt = (cpt << 6) | (c & 0x3F);
        }
        const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cpt < min[len] || cpt > 0x10FFFF || (cpt >= 0xD800 && cpt <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

TEST(Tokenizer, EveryByteRoundTripsThroughItsByteToken) {
    const Tokenizer t(tiny_vocab({}));
    for (int b = 0; b < 256; ++b) {
        EXPECT_EQ(t.token_id(byte_char(b)), b);
        EXPECT_EQ(t.token_to_piece(b, false), std::string(1, static_cast<char>(b))) << "byte " << b;
    }
    const std::string text = "Hello, wörld! 日本 👋\t\n\x01";
    const auto ids = t.encode(text, false, false);
    EXPECT_EQ(ids.size(), text.size());  // no merges: one token per byte
    EXPECT_EQ(t.decode(ids, false), text);
}

TEST(Tokenizer, MergesApplyLowestRankFirst) {
    const Tokenizer ab_first(tiny_vocab({{"a", "b"}, {"b", "c"}}));
    EXPECT_EQ(ab_first.encode("abc", false, false), (std::vector<int32_t>{id(ab_first, "ab"), 'c'}));
    const Tokenizer bc_first(tiny_vocab({{"b", "c"}, {"a", "b"}}));
    EXPECT_EQ(bc_first.encode("abc", false, false), (std::vector<int32_t>{'a', id(bc_first, "bc")}));
    // Equal ranks: the leftmost pair wins.
    const Tokenizer aa(tiny_vocab({{"a", "a"}}));
    EXPECT_EQ(aa.encode("aaa", false, false), (std::vector<int32_t>{id(aa, "aa"), 'a'}));

    const Tokenizer t(tiny_vocab(kHelloMerges));
    const auto ids = t.encode("hello world", false, false);
    EXPECT_EQ(ids, (std::vector<int32_t>{id(t, "hello"), id(t, " world")}));
    EXPECT_EQ(t.decode(ids, false), "hello world");
}

TEST(Tokenizer, MergesDoNotCrossWords) {
    const Tokenizer t(tiny_vocab({{"o", " "}, {"a", "1"}}));  // "o " and "a1" can never form
    EXPECT_EQ(t.encode("o w", false, false), (std::vector<int32_t>{'o', ' ', 'w'}));
    EXPECT_EQ(t.encode("a1", false, false), (std::vector<int32_t>{'a', '1'}));
}

TEST(Tokenizer, MergeResultMissingFromTheVocabularyFallsBackLikeLlamaCpp) {
    VocabData v = tiny_vocab({});
    v.merges.push_back("q z");                                  // "qz" is not a token
    v.merges.push_back(mapped("\xc3") + " " + mapped("\xa9"));  // nor is the byte pair of "é"
    const Tokenizer t(v);
    // llama.cpp then emits each byte of the alphabet string that is itself a token: the ASCII
    // ones survive, the halves of a two-byte alphabet character are dropped.
    EXPECT_EQ(t.encode("qz", false, false), (std::vector<int32_t>{'q', 'z'}));
    EXPECT_EQ(t.encode("\xc3\xa9!", false, false), (std::vector<int32_t>{'!'}));
}

TEST(Tokenizer, SpecialTokensInText) {
    const Tokenizer t(tiny_vocab(kHelloMerges));
    const int32_t start = t.token_id("<|im_start|>"), end = t.token_id("<|im_end|>"),
                  tool = t.token_id("<tool>");
    const std::string text = "<|im_start|>hello<|im_end|><tool>";
    // The longest special wins over its prefix "<|im".
    EXPECT_EQ(t.encode(text, false, true), (std::vector<int32_t>{start, id(t, "hello"), end, tool}));
    EXPECT_EQ(t.decode(t.encode(text, false, true), true), text);
    EXPECT_EQ(t.decode(t.encode(text, false, true), false), "hello<tool>");  // USER_DEFINED still renders

    // Without parse_special, control tokens are plain text; user-defined ones are still matched.
    const auto plain = t.encode(text, false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), start), 0);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), tool), 1);
    EXPECT_EQ(t.decode(plain, false), text);
    EXPECT_EQ(t.encode("<|im", false, true), (std::vector<int32_t>{t.token_id("<|im")}));
}

TEST(Tokenizer, AddSpecialAddsBosAndEosOnlyWhenTheVocabAsks) {
    VocabData v = tiny_vocab({});
    const int32_t bos = v.bos_id;
    EXPECT_EQ(Tokenizer(v).encode("a", true, false), (std::vector<int32_t>{'a'}));
    v.add_bos = v.add_eos = true;
    const Tokenizer t(v);
    EXPECT_EQ(t.encode("a", true, false), (std::vector<int32_t>{bos, 'a', bos}));
    EXPECT_EQ(t.encode("a", false, false), (std::vector<int32_t>{'a'}));
    EXPECT_EQ(t.encode("", true, false), (std::vector<int32_t>{bos, bos}));
}

TEST(Tokenizer, InvalidUtf8NeverCrashesAndDecodesAsLlamaCppReadsIt) {
    const Tokenizer t(tiny_vocab(kHelloMerges));
    const std::string cases[] = {
        "\xff\xfe",
        "\xe6\x97",
        "abc\xe6\x97",
        "\xc0\x80x",
        "a\xed\xa0\x80"
        "b",
        "\x80\x80\xbf",
        "a\xf0\x9f\x98",
        "\xf8\x88\x80\x80\x80",
        "\xf7\xbf\xbf\xbf",
        "\xf4\x90\x80\x80",
        std::string("\0nul", 4),
        "hello\xffworld",
    };
    for (const std::string& s : cases) {
        const auto ids = t.encode(s, true, true);
        EXPECT_EQ(t.decode(ids, true), llama_lenient(s)) << "input " << testing::PrintToString(s);
    }
    // Valid UTF-8 comes back byte for byte.
    EXPECT_EQ(t.decode(t.encode("ok \xf0\x9f\x98\x80 fine", false, false), false),
              "ok \xf0\x9f\x98\x80 fine");

    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
        std::string s(rng() % 24, '\0');
        for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? 0x80 + rng() % 0x80 : rng() % 256);
        EXPECT_EQ(t.decode(t.encode(s, true, true), true), llama_lenient(s)) << testing::PrintToString(s);
    }
}

TEST(Tokenizer, BadIdsAndBadVocabulariesThrow) {
    const Tokenizer t(tiny_vocab({}));
    EXPECT_THROW(t.token_to_piece(-1, true), microlm::Error);
    EXPECT_THROW(t.token_to_piece(t.n_vocab(), true), microlm::Error);
    const std::vector<int32_t> bad = {'a', 1 << 30};
    EXPECT_THROW(t.decode(bad, false), microlm::Error);
    EXPECT_FALSE(t.is_end_of_generation(-5));
    EXPECT_FALSE(t.is_end_of_generation(t.n_vocab()));
    EXPECT_EQ(t.token_id("no such token"), -1);

    try {
        Tokenizer bad_pre(tiny_vocab({}, "gpt-5"));
        FAIL() << "an unknown pre-tokenizer must be refused";
    } catch (const microlm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("'gpt-5'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("smollm"), std::string::npos) << e.what();
    }
    VocabData v = tiny_vocab({});
    v.model = "llama";
    EXPECT_THROW(Tokenizer{v}, microlm::Error);
    v = tiny_vocab({});
    v.eos_id = static_cast<int32_t>(v.tokens.size());
    EXPECT_THROW(Tokenizer{v}, microlm::Error);
    v = tiny_vocab({});
    v.token_types.pop_back();
    EXPECT_THROW(Tokenizer{v}, microlm::Error);
    v = tiny_vocab({});
    v.tokens[300 - 256 + 10] = v.tokens[5];  // a duplicate text: llama.cpp refuses it too
    EXPECT_THROW(Tokenizer{v}, microlm::Error);
    v = tiny_vocab({});
    v.add_bos = true;
    v.bos_id = -1;
    EXPECT_THROW(Tokenizer{v}, microlm::Error);
}

TEST(Tokenizer, EndOfGenerationCoversEosAndChatMlEnds) {
    const Tokenizer t(tiny_vocab({}));
    EXPECT_TRUE(t.is_end_of_generation(t.eos_id()));
    EXPECT_TRUE(t.is_end_of_generation(t.token_id("<|im_end|>")));
    EXPECT_FALSE(t.is_end_of_generation(t.token_id("<|im_start|>")));
    EXPECT_FALSE(t.is_end_of_generation('a'));
}

TEST(Tokenizer, DecodeCleansSpacesLikeLlamaCppForGpt2) {
    // "gpt-2" detokenizes with clean_up_tokenization_spaces; "smollm" does not.
    const std::string text = "Hi , you . It 's ' ok ' ?";
    const Tokenizer gpt2(tiny_vocab({}, "gpt-2"));
    EXPECT_EQ(gpt2.decode(gpt2.encode(text, false, false), false), "Hi, you. It's'ok '?");
    const Tokenizer smollm(tiny_vocab({}));
    EXPECT_EQ(smollm.decode(smollm.encode(text, false, false), false), text);
}

std::vector<std::string> words(microlm::pretok::Kind kind, std::string_view text) {
    return microlm::pretok::split(kind, text);
}
using V = std::vector<std::string>;
using microlm::pretok::Kind;

TEST(PreTokenizer, WhitespaceRunsLeaveTheLastSpaceToTheNextWord) {
    EXPECT_EQ(words(Kind::kGpt2, "a   b"), (V{"a", "  ", " b"}));
    EXPECT_EQ(words(Kind::kGpt2, "a   "), (V{"a", "   "}));
    EXPECT_EQ(words(Kind::kGpt2, " \n \n  x"), (V{" \n \n ", " x"}));
    EXPECT_EQ(words(Kind::kGpt2, "\t\tx"), (V{"\t", "\t", "x"}));
    EXPECT_EQ(words(Kind::kLlama3, "a \n\n b"), (V{"a", " \n\n", " b"}));
    EXPECT_EQ(words(Kind::kGpt2, ""), V{});
}

TEST(PreTokenizer, ContractionsLettersNumbersPunctuation) {
    EXPECT_EQ(words(Kind::kGpt2, "I'm DON'T x!!"), (V{"I", "'m", " DON", "'", "T", " x", "!!"}));
    EXPECT_EQ(words(Kind::kLlama3, "I'm DON'T x!!\n"), (V{"I", "'m", " DON", "'T", " x", "!!\n"}));
    EXPECT_EQ(words(Kind::kGpt2, "in 12345 Café"), (V{"in", " 12345", " Café"}));
    EXPECT_EQ(words(Kind::kDigitsThenGpt2, "in 123"), (V{"in", " ", "1", "2", "3"}));
    EXPECT_EQ(words(Kind::kLlama3, "1234567"), (V{"123", "456", "7"}));
    EXPECT_EQ(words(Kind::kQwen2, "123"), (V{"1", "2", "3"}));
    EXPECT_EQ(words(Kind::kDefault, "don't 12345"), (V{"don", "'", "t", " ", "123", "45"}));
}

TEST(PreTokenizer, UnknownNamesAreRefusedWithTheSupportedList) {
    EXPECT_EQ(microlm::pretok::spec_for("smollm").kind, Kind::kDigitsThenGpt2);
    EXPECT_EQ(microlm::pretok::spec_for("llama-bpe").kind, Kind::kLlama3);
    EXPECT_THROW(microlm::pretok::spec_for("gpt2"), microlm::Error);  // llama.cpp's name is "gpt-2"
    EXPECT_NE(microlm::pretok::supported_names().find("qwen2"), std::string::npos);
}

TEST(Utf8Streamer, NeverSplitsACharacter) {
    const std::string text = "h\xc3\xa9llo \xf0\x9f\x91\x8b \xe6\x97\xa5\xe6\x9c\xac";
    microlm::Utf8Streamer s;
    std::string out;
    for (const char c : text) {
        const std::string part = s.push(std::string_view(&c, 1));
        EXPECT_TRUE(valid_utf8(part)) << testing::PrintToString(part);
        out += part;
    }
    out += s.flush();
    EXPECT_EQ(out, text);

    microlm::Utf8Streamer t;
    EXPECT_EQ(t.push("\xe6\x97"), "");
    EXPECT_EQ(t.push("\xa5!"), "\xe6\x97\xa5!");
    EXPECT_EQ(t.push("\xff"), "\xEF\xBF\xBD");
    EXPECT_EQ(t.push("a\xf0\x9f"), "a");
    EXPECT_EQ(t.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(t.flush(), "");
    // Overlong forms and surrogates can never complete: one U+FFFD per maximal invalid subpart
    // (here every byte), as Python's errors="replace".
    EXPECT_EQ(t.push("\xc0\x80\xed\xa0\x80x"),
              "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx");

    std::mt19937 rng(11);
    for (int i = 0; i < 2000; ++i) {
        microlm::Utf8Streamer r;
        std::string all;
        for (int k = 0; k < 8; ++k) {
            std::string chunk(rng() % 5, '\0');
            for (char& c : chunk) c = static_cast<char>(rng() % 2 ? 0x80 + rng() % 0x80 : rng() % 256);
            all += r.push(chunk);
        }
        all += r.flush();
        EXPECT_TRUE(valid_utf8(all)) << testing::PrintToString(all);
    }
}

// SmolLM2's template as stored in its GGUF (the \n are real newlines there).
const std::string kSmolTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' "
    "}}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(Chat, DefaultSystemMessageFromTheTemplate) {
    EXPECT_EQ(microlm::chat_template_default_system(kSmolTemplate),
              "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    // Escaped newlines, and a system turn built from the conversation before the default.
    const std::string qwen_like =
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
        "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, it\\'s \"fine\".<|im_end|>\\n' "
        "}}";
    EXPECT_EQ(microlm::chat_template_default_system(qwen_like), "You are Qwen, it's \"fine\".");
    const std::string no_default =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n'}}{% endfor %}";
    EXPECT_EQ(microlm::chat_template_default_system(no_default), std::nullopt);
    EXPECT_EQ(microlm::chat_template_default_system(""), std::nullopt);
}

TEST(Chat, FormatChatMl) {
    const std::optional<std::string> sys = "Be nice.";
    EXPECT_EQ(
        microlm::format_chatml({{"user", "Hi"}}, true, sys),
        "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(microlm::format_chatml({{"system", "S"}, {"user", "Hi"}}, false, sys),
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    EXPECT_EQ(microlm::format_chatml({{"user", "a"}, {"assistant", "b"}}, false, std::nullopt),
              "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n");
    EXPECT_EQ(microlm::format_chatml({}, true, sys), "<|im_start|>assistant\n");
}

}  // namespace
