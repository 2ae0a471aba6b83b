// Unicode helpers for the byte-level BPE tokenizer: lenient UTF-8 decoding that behaves like
// llama.cpp's on invalid input, the codepoint classes the pre-tokenizers test, and GPT-2's
// byte <-> printable-codepoint mapping. A leaf part (src/text/): the tokenizer, opener, stitcher,
// metrics and plots all use it. Not a general Unicode library (no normalisation, no case).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace microlm::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// The general-category classes the pre-tokenizer regexes use (\p{L}, \p{N}, \p{P});
// every other codepoint, unassigned ones included, is kOther.
enum class Category : uint8_t { kOther, kLetter, kNumber, kPunctuation };

Category category(uint32_t cpt);
// \s as llama.cpp's tables define it: the White_Space property (not U+001C..U+001F).
bool is_whitespace(uint32_t cpt);

// Decodes one codepoint at `pos` and advances it, exactly as llama.cpp's unicode_cpt_from_utf8
// plus its caller's recovery: a byte that does not start a complete sequence (a stray
// continuation byte, F8..FF, or a lead byte whose continuation bytes are missing) yields
// U+FFFD and advances by one byte. Overlong forms and surrogates are decoded, not rejected,
// because llama.cpp decodes them too. The result may exceed U+10FFFF (leads F5..F7).
uint32_t decode_lenient(std::string_view s, size_t& pos);
std::vector<uint32_t> decode_lenient(std::string_view s);

// One decoded codepoint and the bytes [begin, end) it came from.
struct CodepointSpan {
    uint32_t c;
    size_t begin, end;
};
// decode_lenient with each codepoint's byte range, for code that cuts the text where it looks.
std::vector<CodepointSpan> codepoint_spans(std::string_view s);

// Appends the UTF-8 of `cpt`; codepoints above U+10FFFF (where llama.cpp throws) become U+FFFD.
void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 byte-level alphabet: each byte maps to one printable codepoint (0x21..0x7E,
// 0xA1..0xAC, 0xAE..0xFF map to themselves, the other 68 bytes to U+0100..U+0143).
// byte_to_utf8 returns the UTF-8 of that codepoint; codepoint_to_byte returns -1 for a
// codepoint outside the alphabet.
std::string_view byte_to_utf8(uint8_t byte);
int codepoint_to_byte(uint32_t cpt);

}  // namespace microlm::unicode
