// libFuzzer target for the byte-level BPE tokenizer and Utf8Streamer on a small vocabulary built
// here (no model file): encode arbitrary bytes, decode arbitrary ids, and trap on a broken
// promise of tokenizer.h. Not a parity test against llama.cpp (tests/test_parity_tokenizer.cpp).
//
// Input: byte 0 picks the tokenizer (bits 0-2) and the flags (bit 3 add_special, bit 4
// parse_special, bit 5 render_special); the rest is the text, and also, two bytes each, token ids.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "microlm/error.h"
#include "microlm/tokenizer.h"
#include "microlm/unicode.h"

namespace {

using microlm::Tokenizer;
using microlm::TokenType;
using microlm::VocabData;

std::string byte_level(std::string_view bytes) {
    std::string s;
    for (const char c : bytes) s += microlm::unicode::byte_to_utf8(static_cast<uint8_t>(c));
    return s;
}

// Merges over raw bytes, each left and right already a token by the time its rank comes;
// every merge result is a token, so encoding never takes llama.cpp's lossy fallback.
const std::pair<std::string_view, std::string_view> kMerges[] = {
    {"h", "e"},           {"l", "l"},       {"he", "ll"},         {"hell", "o"},    {" ", "w"},
    {"o", "r"},           {" w", "or"},     {" wor", "l"},        {" worl", "d"},   {"t", "h"},
    {"th", "e"},          {" ", "t"},       {" t", "he"},         {"i", "n"},       {" ", "a"},
    {"e", "r"},           {"1", "2"},       {"12", "3"},          {"\n", "\n"},     {" ", " "},
    {"  ", "  "},         {"'", "s"},       {"<", "|"},           {"\xc3", "\xa9"}, {"\xe6", "\x97"},
    {"\xe6\x97", "\xa5"}, {"\xf0", "\x9f"}, {"\xf0\x9f", "\x98"},
};

// Ids 0..255 the bytes, then the merge results, then specials and odd tokens that decoding
// must survive: an empty text (renamed by the tokenizer), text outside the byte alphabet,
// and BYTE/UNUSED tokens that render as nothing.
VocabData small_vocab(std::string pre) {
    VocabData v;
    v.pre = std::move(pre);
    auto add = [&](std::string text, TokenType type) {
        v.tokens.push_back(std::move(text));
        v.token_types.push_back(static_cast<int32_t>(type));
    };
    for (int b = 0; b < 256; ++b) add(byte_level(std::string(1, static_cast<char>(b))), TokenType::NORMAL);
    for (const auto& [l, r] : kMerges) {
        v.merges.push_back(byte_level(l) + " " + byte_level(r));
        add(byte_level(std::string(l) + std::string(r)), TokenType::NORMAL);
    }
    v.bos_id = static_cast<int32_t>(v.tokens.size());
    add("<|endoftext|>", TokenType::CONTROL);
    add("<|im_start|>", TokenType::CONTROL);
    v.eos_id = static_cast<int32_t>(v.tokens.size());
    add("<|im_end|>", TokenType::CONTROL);
    add("<|im", TokenType::CONTROL);
    add("<tool>", TokenType::USER_DEFINED);
    add("<unk>", TokenType::UNKNOWN);
    add("", TokenType::NORMAL);
    add("\xe6\x97\xa5\xe6\x9c\xac", TokenType::NORMAL);
    add("<0x41>", TokenType::BYTE);
    add("<unused0>", TokenType::UNUSED);
    return v;
}

struct Case {
    Tokenizer tok;
    // decode(encode(text)) gives back the text as llama.cpp reads it: true where the
    // pre-tokenizer does not clean spaces on decode and no space prefix is dropped.
    bool round_trips;
};

std::vector<Case> make_cases() {
    std::vector<Case> cases;
    cases.push_back({Tokenizer(small_vocab("smollm")), true});  // digits, then GPT-2's regex
    VocabData bos_eos = small_vocab("qwen2");
    bos_eos.add_bos = bos_eos.add_eos = true;
    cases.push_back({Tokenizer(std::move(bos_eos)), true});
    cases.push_back({Tokenizer(small_vocab("trillion")), true});  // GPT-2's regex, no cleaning
    VocabData prefix = small_vocab("default");
    prefix.add_space_prefix = true;
    cases.push_back({Tokenizer(std::move(prefix)), false});
    cases.push_back({Tokenizer(small_vocab("llama3")), false});  // ignores merges for whole-token words
    return cases;
}

// What llama.cpp reads arbitrary bytes as (restating tests/test_tokenizer.cpp's reference, not
// src/text/unicode.cpp): a byte that does not start a complete sequence, overlong and surrogate
// forms included, becomes U+FFFD; a complete sequence above U+10FFFF becomes one U+FFFD.
std::string llama_lenient(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const size_t len = b < 0x80             ? 1
                           : (b & 0xE0) == 0xC0 ? 2
                           : (b & 0xF0) == 0xE0 ? 3
                           : (b & 0xF8) == 0xF0 ? 4
                                                : 0;
        bool complete = len > 0 && i + len <= s.size();
        for (size_t k = 1; complete && k < len; ++k)
            complete = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (!complete) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        uint32_t cpt = len == 1 ? b : (b & (0xFF >> (len + 1)));
        for (size_t k = 1; k < len; ++k) cpt = (cpt << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        microlm::unicode::append_utf8(out, cpt);  // U+FFFD above U+10FFFF, as llama.cpp's reading gives
        i += len;
    }
    return out;
}

// Strict UTF-8: no overlong forms, surrogates or codepoints above U+10FFFF.
bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const size_t len = b < 0x80                   ? 1
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
        const uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cpt < min_for_len[len] || cpt > 0x10FFFF || (cpt >= 0xD800 && cpt <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

void check(bool promise_kept) {
    if (!promise_kept) __builtin_trap();
}

void fuzz_encode(const Case& c, std::string_view text, bool add_special, bool parse_special) {
    const Tokenizer& t = c.tok;
    const std::vector<int32_t> ids = t.encode(text, false, parse_special);
    for (const int32_t id : ids) check(id >= 0 && id < t.n_vocab());
    if (c.round_trips) check(t.decode(ids, true) == llama_lenient(text));

    // add_special adds exactly the BOS and EOS the vocabulary asks for around the same ids.
    const std::vector<int32_t> with = t.encode(text, add_special, parse_special);
    const VocabData& v = t.vocab();
    const size_t front = add_special && v.add_bos, back = add_special && v.add_eos;
    check(with.size() == ids.size() + front + back);
    if (front) check(with.front() == v.bos_id);
    if (back) check(with.back() == v.eos_id);
    check(std::equal(ids.begin(), ids.end(), with.begin() + static_cast<std::ptrdiff_t>(front)));
}

// Ids from pairs of bytes, spread over the vocabulary and a few ids past either end.
std::vector<int32_t> ids_from(std::string_view bytes, int32_t n_vocab) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
        const int32_t raw = static_cast<uint8_t>(bytes[i]) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
        ids.push_back(raw % (n_vocab + 4) - 2);
    }
    return ids;
}

void fuzz_decode(const Tokenizer& t, std::string_view bytes, bool render_special) {
    const std::vector<int32_t> ids = ids_from(bytes, t.n_vocab());
    bool in_range = true;
    for (const int32_t id : ids) {
        in_range = in_range && id >= 0 && id < t.n_vocab();
        (void)t.is_end_of_generation(id);
    }
    // decode throws microlm::Error exactly when an id is out of range.
    bool threw = false;
    std::string text;
    try {
        text = t.decode(ids, render_special);
    } catch (const microlm::Error&) {
        threw = true;
    }
    check(threw != in_range);

    // Streaming the pieces holds back split characters but never changes what comes out:
    // the same as one push of everything, valid UTF-8, and the bytes themselves when they are.
    microlm::Utf8Streamer pieces, whole;
    std::string streamed, all;
    for (const int32_t id : ids) {
        if (id < 0 || id >= t.n_vocab()) continue;
        const std::string p = t.token_to_piece(id, render_special);
        all += p;
        streamed += pieces.push(p);
    }
    streamed += pieces.flush();
    const std::string at_once = whole.push(all) + whole.flush();
    check(streamed == at_once);
    check(valid_utf8(streamed));
    if (valid_utf8(all)) check(streamed == all);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<Case> cases = make_cases();
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    const Case& c = cases[(flags & 7) % cases.size()];
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const bool add_special = flags & 8, parse_special = flags & 16, render_special = flags & 32;

    fuzz_encode(c, rest, add_special, parse_special);
    fuzz_decode(c.tok, rest, render_special);
    const int32_t id = c.tok.token_id(rest);
    if (id >= 0) check(c.tok.vocab().tokens[id] == rest);
    return 0;
}
