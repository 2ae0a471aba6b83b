// Pre-tokenizers by `tokenizer.ggml.pre`, as llama.cpp's (llama-vocab.cpp, unicode.cpp): a list of
// passes, each splitting the pieces the previous one left, never matching across their boundaries.
// Not a regex engine: each pass is one fixed pattern written out by hand.
#include "microlm/pretokenizer.h"

#include "microlm/error.h"
#include "microlm/unicode.h"

#include <array>
#include <cstdint>

namespace microlm::pretok {
namespace {

using unicode::Category;

struct Name {
    std::string_view name;
    Spec spec;
};

// The names llama.cpp maps onto the splitters below, with the flags it sets for each
// (llama_vocab::impl::load). Kinds llama.cpp has that are not listed here are refused.
constexpr Spec kDefault{Kind::kDefault, true, false, false};
constexpr Spec kGpt2{Kind::kGpt2, true, false, false};
constexpr Spec kGpt2NoClean{Kind::kGpt2, false, false, false};
constexpr Spec kDigits{Kind::kDigitsThenGpt2, true, false, false};
constexpr Spec kDigitsNoClean{Kind::kDigitsThenGpt2, false, false, false};
constexpr Spec kLlama3{Kind::kLlama3, true, true, true};
constexpr Spec kLlama3Plain{Kind::kLlama3, true, false, false};  // dbrx, smaug: same regex only
constexpr Spec kQwen2{Kind::kQwen2, false, false, false};
constexpr Spec kQwen2Clean{Kind::kQwen2, true, false, false};

// clang-format off
constexpr std::array kNames = {
    Name{"default", kDefault},
    Name{"gpt-2", kGpt2}, Name{"phi-2", kGpt2}, Name{"mpt", kGpt2}, Name{"olmo", kGpt2},
    Name{"jais", kGpt2}, Name{"exaone4", kGpt2}, Name{"jina-es", kGpt2}, Name{"jina-de", kGpt2},
    Name{"jina-v2-es", kGpt2}, Name{"jina-v2-de", kGpt2}, Name{"gigachat", kGpt2},
    Name{"a.x-4.0", kGpt2}, Name{"mellum", kGpt2},
    Name{"trillion", kGpt2NoClean}, Name{"granite-docling", kGpt2NoClean},
    Name{"smollm", kDigitsNoClean}, Name{"command-r", kDigitsNoClean},
    Name{"starcoder", kDigits}, Name{"refact", kDigits}, Name{"codeshell", kDigits},
    Name{"exaone", kDigits}, Name{"minerva-7b", kDigits},
    Name{"llama3", kLlama3}, Name{"llama-v3", kLlama3}, Name{"llama-bpe", kLlama3},
    Name{"falcon3", kLlama3}, Name{"falcon-h1", kLlama3}, Name{"pixtral", kLlama3},
    Name{"midm-2.0", kLlama3}, Name{"lfm2", kLlama3},
    Name{"dbrx", kLlama3Plain}, Name{"smaug-bpe", kLlama3Plain},
    Name{"qwen2", kQwen2}, Name{"deepseek-r1-qwen", kQwen2}, Name{"kormo", kQwen2},
    Name{"hunyuan", kQwen2}, Name{"grok-2", kQwen2},
    Name{"stablelm2", kQwen2Clean}, Name{"megrez", kQwen2Clean},
};
// clang-format on

// The classes the patterns distinguish. kSpace wins over the category (U+00A0 is both a
// separator and \s); kNone stands for "outside the current piece", where llama.cpp's custom
// splitters read empty flags.
enum Cls : uint8_t { kNone, kSpace, kLetter, kNumber, kOther };

Cls classify(uint32_t c) {
    if (unicode::is_whitespace(c)) return kSpace;
    switch (unicode::category(c)) {
        case Category::kLetter: return kLetter;
        case Category::kNumber: return kNumber;
        default: return kOther;
    }
}

bool is_cr_or_lf(uint32_t c) { return c == '\r' || c == '\n'; }
uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// [\p{P}\$\+<=>\^~\|] as llama.cpp evaluates it on collapsed text: ASCII punctuation and
// symbols except '`', and non-ASCII codepoints whose category is P (and are not \s).
bool is_default_punct(uint32_t c, Cls cls) {
    if (c < 0x80)
        return c >= 0x21 && c <= 0x7E && c != '`' && !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') &&
               !(c >= 'a' && c <= 'z');
    return cls != kSpace && unicode::category(c) == Category::kPunctuation;
}

// Text as codepoints plus the current pieces, as [begin, end) lengths in codepoints.
struct Pieces {
    std::vector<uint32_t> cpts;
    std::vector<Cls> cls;
    std::vector<size_t> lengths;
};

// Walks one piece [begin, end): cls_at() answers kNone outside it, emit() closes a word.
class Cursor {
public:
    Cursor(const Pieces& p, size_t begin, size_t end, std::vector<size_t>& out)
        : p_(p), end_(end), prev_(begin), out_(out) {}
    Cls cls_at(size_t i) const { return i < end_ ? p_.cls[i] : kNone; }
    uint32_t cpt_at(size_t i) const { return i < end_ ? p_.cpts[i] : 0xFFFFFFFFu; }
    size_t end() const { return end_; }
    void emit(size_t to) {
        if (to > prev_) out_.push_back(to - prev_);
        prev_ = to;
    }

private:
    const Pieces& p_;
    size_t end_, prev_;
    std::vector<size_t>& out_;
};

// 's|'t|'re|'ve|'m|'ll|'d, case-folded when `fold`; returns the match length or 0.
size_t contraction(const Cursor& c, size_t pos, bool fold) {
    if (c.cpt_at(pos) != '\'' || pos + 1 >= c.end()) return 0;
    const auto f = [&](uint32_t x) { return fold ? ascii_lower(x) : x; };
    const uint32_t a = f(c.cpt_at(pos + 1));
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= c.end()) return 0;
    const uint32_t b = f(c.cpt_at(pos + 2));
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// The whitespace alternatives shared by both regex families. A run of n > 1 spaces followed by
// a non-space gives n-1 of them away, so that the last one can lead the next word
// (\s+(?!\S)); a run at the end of the piece is taken whole (\s+).
void whitespace_run(Cursor& c, size_t& pos, bool newline_rule) {
    size_t n = 0, after_last_newline = 0;
    while (c.cls_at(pos + n) == kSpace) {
        if (newline_rule && is_cr_or_lf(c.cpt_at(pos + n))) after_last_newline = pos + n + 1;
        ++n;
    }
    if (after_last_newline > 0) {  // \s*[\r\n]+ : up to and including the last newline
        pos = after_last_newline;
    } else if (n > 1 && pos + n < c.end()) {
        pos += n - 1;
    } else {
        pos += n > 0 ? n : 1;
    }
    c.emit(pos);
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const Pieces& p, size_t begin, size_t end, std::vector<size_t>& out) {
    Cursor c(p, begin, end, out);
    for (size_t pos = begin; pos < end;) {
        if (const size_t n = contraction(c, pos, false)) {
            c.emit(pos += n);
            continue;
        }
        const bool space = c.cpt_at(pos) == ' ';
        const Cls k = space ? c.cls_at(pos + 1) : c.cls_at(pos);
        if (k == kLetter || k == kNumber || k == kOther) {
            pos += space;
            while (c.cls_at(pos) == k) ++pos;
            c.emit(pos);
            continue;
        }
        whitespace_run(c, pos, false);
    }
}

// Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const Pieces& p, size_t begin, size_t end, size_t max_digits, std::vector<size_t>& out) {
    Cursor c(p, begin, end, out);
    for (size_t pos = begin; pos < end;) {
        if (const size_t n = contraction(c, pos, true)) {
            c.emit(pos += n);
            continue;
        }
        const uint32_t cpt = c.cpt_at(pos);
        const Cls k = c.cls_at(pos);
        if (!is_cr_or_lf(cpt) && k != kNumber && (k == kLetter || c.cls_at(pos + 1) == kLetter)) {
            ++pos;  // the letter itself, or the one non-letter allowed in front
            while (c.cls_at(pos) == kLetter) ++pos;
            c.emit(pos);
            continue;
        }
        if (k == kNumber) {
            size_t group = pos;
            while (c.cls_at(pos) == kNumber) {
                if (++pos - group >= max_digits) {
                    c.emit(pos);
                    group = pos;
                }
            }
            c.emit(pos);
            continue;
        }
        const bool space = cpt == ' ';
        if ((space ? c.cls_at(pos + 1) : k) == kOther) {
            pos += space;
            while (c.cls_at(pos) == kOther) ++pos;
            while (pos < end && is_cr_or_lf(c.cpt_at(pos))) ++pos;
            c.emit(pos);
            continue;
        }
        whitespace_run(c, pos, true);
    }
}

// A character-class regex run through std::regex by llama.cpp: `[class]+` (runs) or `class`
// (one codepoint per match). Matches and the gaps between them both become pieces.
template <typename Pred>
void split_class(const Pieces& p, size_t begin, size_t end, bool runs, Pred in_class,
                 std::vector<size_t>& out) {
    Cursor c(p, begin, end, out);
    for (size_t pos = begin; pos < end;) {
        if (!in_class(pos)) {
            ++pos;
            continue;
        }
        c.emit(pos);
        ++pos;
        if (runs) {
            while (pos < end && in_class(pos)) ++pos;
        }
        c.emit(pos);
    }
    c.emit(end);
}

// [0-9][0-9][0-9]: leftmost non-overlapping triples of ASCII digits.
void split_ascii_triples(const Pieces& p, size_t begin, size_t end, std::vector<size_t>& out) {
    Cursor c(p, begin, end, out);
    const auto digit = [&](size_t i) { return p.cpts[i] >= '0' && p.cpts[i] <= '9'; };
    for (size_t pos = begin; pos < end;) {
        if (pos + 3 <= end && digit(pos) && digit(pos + 1) && digit(pos + 2)) {
            c.emit(pos);
            c.emit(pos += 3);
        } else {
            ++pos;
        }
    }
    c.emit(end);
}

// Applies one pass to every current piece.
template <typename Pass>
void refine(Pieces& p, Pass pass) {
    std::vector<size_t> next;
    next.reserve(p.lengths.size() * 2);
    size_t begin = 0;
    for (const size_t len : p.lengths) {
        pass(begin, begin + len, next);
        begin += len;
    }
    p.lengths = std::move(next);
}

}  // namespace

Spec spec_for(std::string_view name) {
    for (const auto& n : kNames) {
        if (n.name == name) return n.spec;
    }
    throw Error("tokenizer.ggml.pre is '" + std::string(name) +
                "', a pre-tokenizer microlm does not implement (supported: " + supported_names() + ")");
}

std::string supported_names() {
    std::string s;
    for (const auto& n : kNames) {
        if (!s.empty()) s += ", ";
        s += n.name;
    }
    return s;
}

std::vector<std::string> split(Kind kind, std::string_view text) {
    Pieces p;
    p.cpts = unicode::decode_lenient(text);
    if (p.cpts.empty()) return {};
    p.cls.resize(p.cpts.size());
    for (size_t i = 0; i < p.cpts.size(); ++i) p.cls[i] = classify(p.cpts[i]);
    p.lengths = {p.cpts.size()};

    const auto gpt2 = [&](size_t b, size_t e, std::vector<size_t>& out) { split_gpt2(p, b, e, out); };
    const auto number = [&](size_t i) { return p.cls[i] == kNumber; };
    switch (kind) {
        case Kind::kDefault: {
            const auto punct = [&](size_t i) { return is_default_punct(p.cpts[i], p.cls[i]); };
            refine(p, [&](size_t b, size_t e, auto& out) { split_class(p, b, e, true, punct, out); });
            refine(p, gpt2);
            refine(p, [&](size_t b, size_t e, auto& out) { split_class(p, b, e, true, number, out); });
            refine(p, [&](size_t b, size_t e, auto& out) { split_ascii_triples(p, b, e, out); });
            break;
        }
        case Kind::kGpt2: refine(p, gpt2); break;
        case Kind::kDigitsThenGpt2:
            refine(p, [&](size_t b, size_t e, auto& out) { split_class(p, b, e, false, number, out); });
            refine(p, gpt2);
            break;
        case Kind::kLlama3:
            refine(p, [&](size_t b, size_t e, auto& out) { split_llama3(p, b, e, 3, out); });
            break;
        case Kind::kQwen2:
            refine(p, [&](size_t b, size_t e, auto& out) { split_llama3(p, b, e, 1, out); });
            break;
    }

    std::vector<std::string> words;
    words.reserve(p.lengths.size());
    size_t begin = 0;
    for (const size_t len : p.lengths) {
        std::string w;
        for (size_t i = begin; i < begin + len; ++i) unicode::append_utf8(w, p.cpts[i]);
        words.push_back(std::move(w));
        begin += len;
    }
    return words;
}

}  // namespace microlm::pretok
