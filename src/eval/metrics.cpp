// The opener metrics: word normalisation (Unicode-aware case folding for the cased scripts,
// punctuation removed), start-match@k, unigram F1 against references' first words, the opener
// cut from a whole reply, and the summary statistics the suites report. Pure functions.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "microlm/eval.h"
#include "microlm/opener.h"
#include "microlm/unicode.h"

namespace microlm::eval {
namespace {

// Simple lower-case mappings of the cased scripts replies are written in. Scripts without case
// (CJK, Arabic, Hebrew, Devanagari, ...) pass through unchanged.
uint32_t to_lower(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;  // Latin-1 (not ×)
    if (c == 0x130) return 'i';                              // İ
    if (c == 0x178) return 0xFF;                             // Ÿ
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c % 2 == 0 ? c + 1 : c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c % 2 == 1 ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;  // Greek capitals
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x400 && c <= 0x40F) return c + 80;  // Cyrillic Ѐ..Џ
    if (c >= 0x410 && c <= 0x42F) return c + 32;  // Cyrillic А..Я
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return c % 2 == 0 ? c + 1 : c;
    if (c >= 0x531 && c <= 0x556) return c + 48;  // Armenian
    if ((c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF))
        return c % 2 == 0 ? c + 1 : c;              // Vietnamese
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;  // fullwidth Ａ..Ｚ
    return c;
}

// The same ranges as the opener policy's: each ideograph or kana is a word.
bool is_cjk(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF);
}

bool is_removed(uint32_t c) {
    if (unicode::category(c) == unicode::Category::kPunctuation) return true;
    switch (c) {
        case '$':
        case '+':
        case '<':
        case '=':
        case '>':
        case '^':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

}  // namespace

std::vector<std::string> normalize_words(std::string_view text) {
    std::vector<std::string> words;
    std::string cur;
    const auto flush = [&] {
        if (!cur.empty()) words.push_back(std::move(cur));
        cur.clear();
    };
    for (size_t pos = 0; pos < text.size();) {
        uint32_t c = unicode::decode_lenient(text, pos);
        if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = unicode::kReplacement;
        if (unicode::is_whitespace(c)) {
            flush();
            continue;
        }
        if (is_removed(c)) continue;
        if (is_cjk(c)) {
            flush();
            unicode::append_utf8(cur, c);
            flush();
            continue;
        }
        unicode::append_utf8(cur, to_lower(c));
    }
    flush();
    return words;
}

bool start_match(const std::vector<std::string>& opener, const std::vector<std::string>& reference,
                 size_t k) {
    if (k == 0 || opener.size() < k || reference.size() < k) return false;
    return std::equal(opener.begin(), opener.begin() + static_cast<std::ptrdiff_t>(k), reference.begin());
}

bool start_match_any(const std::vector<std::string>& opener,
                     const std::vector<std::vector<std::string>>& references, size_t k) {
    return std::any_of(references.begin(), references.end(),
                       [&](const std::vector<std::string>& r) { return start_match(opener, r, k); });
}

double unigram_f1(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    if (a.empty() || b.empty()) return 0.0;
    std::unordered_map<std::string_view, int> counts;
    for (const std::string& w : b) ++counts[w];
    size_t common = 0;
    for (const std::string& w : a) {
        auto it = counts.find(w);
        if (it != counts.end() && it->second > 0) {
            --it->second;
            ++common;
        }
    }
    if (common == 0) return 0.0;
    const double p = static_cast<double>(common) / static_cast<double>(a.size());
    const double r = static_cast<double>(common) / static_cast<double>(b.size());
    return 2 * p * r / (p + r);
}

double opener_f1(const std::vector<std::string>& opener,
                 const std::vector<std::vector<std::string>>& references, size_t n) {
    double best = 0.0;
    for (const auto& r : references) {
        const std::vector<std::string> head(r.begin(),
                                            r.begin() + static_cast<std::ptrdiff_t>(std::min(n, r.size())));
        best = std::max(best, unigram_f1(opener, head));
        if (best == 1.0) break;
    }
    return best;
}

std::string cut_opener(std::string_view text, int min_words, int max_words) {
    // Fed in chunks so that a long reply costs only its first words. A chunk ends inside a word
    // (never in a run of whitespace, whose line breaks decide clause ends), as the assembler
    // sees the same words whatever the split.
    constexpr size_t kChunk = 256;
    const auto is_space = [](char c) {
        return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
    };
    WordAssembler assembler;
    std::string out;
    int counted = 0;
    const auto take = [&](const Word& w) {
        if (!out.empty()) out += w.space_before;
        out += w.text;
        if (w.counts) ++counted;
        return counted >= max_words || (counted >= min_words && w.clause_end);
    };
    for (size_t pos = 0; pos < text.size();) {
        size_t end = std::min(text.size(), pos + kChunk);
        while (end < text.size() && (is_space(text[end]) || is_space(text[end - 1]) ||
                                     (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80))
            ++end;
        for (const Word& w : assembler.push(text.substr(pos, end - pos)))
            if (take(w)) return out;
        pos = end;
    }
    if (std::optional<Word> last = assembler.finish()) take(*last);
    return out;
}

double quantile(std::vector<double> v, double q) {
    if (v.empty()) return kNaN;
    std::sort(v.begin(), v.end());
    const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double mean(const std::vector<double>& v) {
    if (v.empty()) return kNaN;
    double s = 0;
    for (const double x : v) s += x;
    return s / static_cast<double>(v.size());
}

}  // namespace microlm::eval
