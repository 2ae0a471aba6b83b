// Parity of microlm's tokenizer with llama.cpp on SmolLM2's vocabulary: token ids, detokenized
// bytes, every token's piece, the end-of-generation set and ChatML prompts, read from the
// goldens that tests/oracle/tokenizer_cases.py records. Exact equality; no tolerance applies.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/tokenizer.h"

namespace {

using microlm::Tokenizer;
using nlohmann::json;

const std::string kGoldens = std::string(MICROLM_ORACLE_DIR) + "/tokenizer.json";

std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

// Printable ASCII as is, everything else as \xNN, so that a failing case can be read.
std::string show(const std::string& bytes) {
    std::ostringstream os;
    for (const unsigned char c : bytes) {
        if (c == '\\') {
            os << "\\\\";
        } else if (c >= 0x20 && c < 0x7F) {
            os << c;
        } else {
            static const char* hex = "0123456789abcdef";
            os << "\\x" << hex[c >> 4] << hex[c & 15];
        }
    }
    return os.str();
}

std::string show_ids(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    std::ostringstream os;
    for (const int32_t id : ids) {
        os << id;
        if (id >= 0 && id < tok.n_vocab()) os << "'" << show(tok.token_to_piece(id, true)) << "'";
        os << ' ';
    }
    return os.str();
}

const json& goldens() {
    static const json j = [] {
        std::ifstream in(kGoldens);
        if (!in) return json();
        return json::parse(in);
    }();
    return j;
}

// The goldens must exist: a parity test that skips would pass without comparing anything.
bool have_goldens() {
    if (!goldens().is_null()) return true;
    ADD_FAILURE()
        << "missing " << kGoldens << ": generate it with `ctest -R oracle_setup` from the build "
        << "folder, or `.venv/bin/python tests/oracle/run_oracle.py --microlm build/microlm --smollm2 "
        << MICROLM_SMOLLM2 << " --out " << MICROLM_ORACLE_DIR << " --only tokenizer_cases`";
    return false;
}

Tokenizer load(const json& variant) {
    const auto file = microlm::GgufFile::open(variant.at("gguf").get<std::string>());
    return Tokenizer(microlm::vocab_from_gguf(*file));
}

TEST(ParityTokenizer, EncodeAndDecodeMatchLlamaCpp) {
    if (!have_goldens()) return;
    size_t cases = 0, bad_ids = 0, bad_detok = 0;
    for (const json& variant : goldens().at("variants")) {
        const std::string pre = variant.at("pre");
        const Tokenizer tok = load(variant);
        ASSERT_EQ(tok.vocab().pre, pre);
        for (const json& c : variant.at("cases")) {
            ++cases;
            const std::string text = from_hex(c.at("text_hex"));
            const bool add_special = c.at("add_special"), parse_special = c.at("parse_special");
            const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
            const std::vector<int32_t> got = tok.encode(text, add_special, parse_special);
            if (got != want) {
                ++bad_ids;
                ADD_FAILURE() << "pre=" << pre << " add_special=" << add_special
                              << " parse_special=" << parse_special << "\n  text:     \"" << show(text)
                              << "\"\n  llama.cpp: " << show_ids(tok, want)
                              << "\n  microlm:   " << show_ids(tok, got);
            }
            for (const bool special : {true, false}) {
                const std::string want_text =
                    from_hex(c.at(special ? "detok_special_hex" : "detok_plain_hex"));
                const std::string got_text = tok.decode(want, special);
                if (got_text != want_text) {
                    ++bad_detok;
                    ADD_FAILURE() << "pre=" << pre << " decode(render_special=" << special << ") of "
                                  << show_ids(tok, want) << "\n  llama.cpp: \"" << show(want_text)
                                  << "\"\n  microlm:   \"" << show(got_text) << "\"";
                }
            }
        }
    }
    std::printf("tokenizer parity: %zu cases, %zu id mismatches, %zu detokenization mismatches\n", cases,
                bad_ids, bad_detok);
    EXPECT_GT(cases, 0u);
}

TEST(ParityTokenizer, EveryPieceMatchesLlamaCpp) {
    if (!have_goldens()) return;
    for (const json& variant : goldens().at("variants")) {
        if (!variant.contains("pieces_special_hex")) continue;
        const Tokenizer tok = load(variant);
        const auto& special = variant.at("pieces_special_hex");
        const auto& plain = variant.at("pieces_plain_hex");
        ASSERT_EQ(static_cast<size_t>(tok.n_vocab()), special.size());
        size_t bad = 0;
        for (int32_t id = 0; id < tok.n_vocab(); ++id) {
            const std::string want_s = from_hex(special[id]), want_p = from_hex(plain[id]);
            const std::string got_s = tok.token_to_piece(id, true), got_p = tok.token_to_piece(id, false);
            if (got_s != want_s || got_p != want_p) {
                if (++bad <= 20) {
                    ADD_FAILURE() << "token " << id << ": llama.cpp \"" << show(want_s) << "\" / \""
                                  << show(want_p) << "\", microlm \"" << show(got_s) << "\" / \""
                                  << show(got_p) << "\"";
                }
            }
        }
        EXPECT_EQ(bad, 0u) << "pieces differing from llama.cpp (pre=" << variant.at("pre") << ")";
    }
}

TEST(ParityTokenizer, SpecialIdsAndEndOfGeneration) {
    if (!have_goldens()) return;
    for (const json& variant : goldens().at("variants")) {
        const Tokenizer tok = load(variant);
        EXPECT_EQ(tok.n_vocab(), variant.at("n_vocab").get<int32_t>());
        EXPECT_EQ(tok.bos_id(), variant.at("bos").get<int32_t>());
        EXPECT_EQ(tok.eos_id(), variant.at("eos").get<int32_t>());
        std::vector<int32_t> eog;
        for (int32_t id = 0; id < tok.n_vocab(); ++id) {
            if (tok.is_end_of_generation(id)) eog.push_back(id);
        }
        EXPECT_EQ(eog, variant.at("eog").get<std::vector<int32_t>>()) << "pre=" << variant.at("pre");
    }
}

TEST(ParityTokenizer, ChatMlMatchesTheJinjaTemplate) {
    if (!have_goldens()) return;
    const Tokenizer tok = load(goldens().at("variants").at(0));
    const auto system = microlm::chat_template_default_system(tok.vocab().chat_template);
    for (const json& c : goldens().at("chat")) {
        std::vector<microlm::ChatMessage> msgs;
        for (const json& m : c.at("messages")) msgs.push_back({m.at("role"), m.at("content")});
        EXPECT_EQ(microlm::format_chatml(msgs, c.at("add_generation_prompt"), system),
                  c.at("expected").get<std::string>());
    }
}

}  // namespace
