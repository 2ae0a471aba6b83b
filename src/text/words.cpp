// Words and clauses of streamed text, the one set of rules the opener, the stitcher and the turn
// share: word assembly from token pieces, where a clause or a sentence ends, line breaks.
#include "microlm/words.h"

#include <algorithm>
#include <string>

#include "microlm/unicode.h"

namespace microlm {
namespace {

using Cp = unicode::CodepointSpan;

std::vector<Cp> codepoints(std::string_view s) {
    return unicode::codepoint_spans(s);
}

bool is_space(uint32_t c) {
    return unicode::is_whitespace(c);
}

// Bytes at the end of `s` that start a multi-byte character whose remaining bytes have not
// arrived yet (0 when `s` ends on a character boundary or in bytes that can never be valid).
size_t incomplete_tail(std::string_view s) {
    for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
        const auto b = static_cast<unsigned char>(s[s.size() - back]);
        if ((b & 0xC0) == 0x80) continue;  // a continuation byte: its lead is further back
        const size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

// Decoded codepoints, with surrogates and out-of-range values (which the lenient decoder lets
// through) replaced, so that every word handed out is valid UTF-8.
std::vector<uint32_t> decode(std::string_view s) {
    std::vector<uint32_t> out;
    for (size_t pos = 0; pos < s.size();) {
        uint32_t c = unicode::decode_lenient(s, pos);
        if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = unicode::kReplacement;
        out.push_back(c);
    }
    return out;
}

}  // namespace

bool is_line_break(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x85 || c == 0x2028 || c == 0x2029;
}

namespace {

// Ideographs and kana: Chinese and Japanese put no spaces between words, so each one is
// treated as a word of its own (the punctuation after it attaches to it).
bool is_cjk(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF);
}

bool is_dash(uint32_t c) {
    return c == '-' || c == 0x2013 || c == 0x2014;
}

// Characters that close a quotation, a bracket or markdown emphasis: "Paris." and "(Paris.)"
// both end a sentence.
bool is_closer(uint32_t c) {
    return c == '"' || c == '\'' || c == ')' || c == ']' || c == '}' || c == '*' || c == '_' || c == '`' ||
           c == 0x201D || c == 0x2019 || c == 0xBB;
}

bool is_clause_punct(uint32_t c) {
    constexpr std::u32string_view kPunct =
        U",;:!?\u2026\u3002\uFF01\uFF1F\uFF0C\uFF1B\uFF1A\u3001\u2013\u2014";  // …。！？，；：、–—
    return kPunct.find(static_cast<char32_t>(c)) != std::u32string_view::npos;
}

bool counts_as_word(std::string_view text) {
    for (const uint32_t c : decode(text)) {
        const auto cat = unicode::category(c);
        if (cat == unicode::Category::kLetter || cat == unicode::Category::kNumber || is_cjk(c)) return true;
    }
    return false;
}

std::string lower_ascii(std::string_view s) {
    std::string r(s);
    for (char& c : r) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return r;
}

}  // namespace

bool word_ends_clause(std::string_view word, bool newline_follows) {
    if (newline_follows) return true;
    std::vector<uint32_t> cps = decode(word);
    if (!cps.empty() && std::all_of(cps.begin(), cps.end(), is_dash)) return true;  // " — ", " - "
    while (!cps.empty() && is_closer(cps.back())) cps.pop_back();
    if (cps.empty()) return false;
    if (is_clause_punct(cps.back())) return true;
    if (cps.back() != '.') return false;
    // A full stop ends a clause unless it ends an abbreviation or a list number.
    const std::string w = lower_ascii(word.substr(0, word.find_last_of('.') + 1));
    static const char* const kAbbreviations[] = {"mr.", "mrs.", "ms.",  "dr.",  "st.",
                                                 "vs.", "e.g.", "i.e.", "u.s.", "no."};
    for (const char* a : kAbbreviations) {
        if (w == a || (w.size() > std::string_view(a).size() && w.ends_with(std::string("(") + a)))
            return false;
    }
    // "1." and "12." number a list; "2024." ends a sentence.
    const bool list_number =
        cps.size() > 1 && cps.size() <= 3 &&
        std::all_of(cps.begin(), cps.end() - 1, [](uint32_t c) { return c >= '0' && c <= '9'; });
    return !list_number;
}

// (see words.h) its last word ends with . ! ? (closing quotes aside) and is no
// abbreviation or list number.
bool ends_sentence(std::string_view text) {
    const std::vector<Cp> cps = codepoints(text);
    size_t start = 0;
    for (size_t i = cps.size(); i-- > 0;) {
        if (is_space(cps[i].c)) {
            start = cps[i].end;
            break;
        }
    }
    const std::string_view word = text.substr(start);
    for (size_t i = cps.size(); i-- > 0 && cps[i].begin >= start;) {
        const uint32_t c = cps[i].c;
        if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '*' || c == 0x201D || c == 0x2019) continue;
        const bool stop = c == '.' || c == '!' || c == '?' || c == 0x3002 || c == 0xFF01 || c == 0xFF1F;
        return stop && word_ends_clause(word, false);
    }
    return false;
}

// ---- WordAssembler ----------------------------------------------------------------------

void WordAssembler::complete(std::vector<Word>& out, bool newline_follows) {
    Word w;
    w.counts = counts_as_word(word_);
    w.clause_end = word_ends_clause(word_, newline_follows);
    w.text = std::move(word_);
    w.space_before = std::move(space_);
    out.push_back(std::move(w));
    word_.clear();
    space_.clear();
    word_is_cjk_ = false;
}

std::vector<Word> WordAssembler::push(std::string_view piece) {
    std::vector<Word> out;
    std::string bytes = held_ + std::string(piece);
    const size_t hold = incomplete_tail(bytes);
    held_ = bytes.substr(bytes.size() - hold);
    bytes.resize(bytes.size() - hold);

    const std::vector<uint32_t> cps = decode(bytes);
    for (size_t i = 0; i < cps.size(); ++i) {
        const uint32_t c = cps[i];
        if (unicode::is_whitespace(c)) {
            if (!word_.empty()) {
                // A line break anywhere in this run of whitespace ends the clause.
                bool newline = false;
                for (size_t j = i; j < cps.size() && unicode::is_whitespace(cps[j]); ++j)
                    newline |= is_line_break(cps[j]);
                complete(out, newline);
            }
            unicode::append_utf8(space_, c);
            continue;
        }
        if (is_cjk(c) && word_is_cjk_ && !word_.empty()) complete(out, false);
        word_is_cjk_ |= is_cjk(c);
        unicode::append_utf8(word_, c);
    }
    return out;
}

std::optional<Word> WordAssembler::finish() {
    for (const uint32_t c : decode(held_)) unicode::append_utf8(word_, c);
    held_.clear();
    std::optional<Word> result;
    if (!word_.empty()) {
        std::vector<Word> out;
        complete(out, false);
        result = std::move(out.front());
    }
    space_.clear();
    word_is_cjk_ = false;
    return result;
}

}  // namespace microlm
