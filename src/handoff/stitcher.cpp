// The stitcher: joins a streamed continuation onto the opener already shown (repeat removal,
// spacing and punctuation at the seam, a capital after a sentence end), and ContinuationJoiner,
// which puts the verdict parser in front of it. Text after the seam passes through untouched.
#include <algorithm>
#include <cctype>
#include <optional>

#include "microlm/handoff.h"
#include "microlm/words.h"
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
bool is_alnum(uint32_t c) {
    const auto cat = unicode::category(c);
    return cat == unicode::Category::kLetter || cat == unicode::Category::kNumber;
}

size_t leading_space(std::string_view s) {
    for (const Cp& cp : codepoints(s)) {
        if (!is_space(cp.c)) return cp.begin;
    }
    return s.size();
}

// A word as compared for repeats: its letters and digits, ASCII lowercased ("Paris," and
// "paris" match; so do "it's" and "it’s").
std::string normalise(std::string_view word) {
    std::string out;
    for (const Cp& cp : codepoints(word)) {
        if (!is_alnum(cp.c)) continue;
        uint32_t c = cp.c;
        if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        unicode::append_utf8(out, c);
    }
    return out;
}

struct Unit {
    size_t begin, end;  // bytes of a whitespace-delimited chunk
    bool complete;      // whitespace (or the end of the stream) follows it
    std::string norm;
};

std::vector<Unit> split_units(std::string_view s, bool final) {
    std::vector<Unit> units;
    const std::vector<Cp> cps = codepoints(s);
    for (size_t i = 0; i < cps.size();) {
        if (is_space(cps[i].c)) {
            ++i;
            continue;
        }
        const size_t first = i;
        while (i < cps.size() && !is_space(cps[i].c)) ++i;
        const size_t begin = cps[first].begin, end = cps[i - 1].end;
        units.push_back({begin, end, i < cps.size() || final, normalise(s.substr(begin, end - begin))});
    }
    return units;
}

// The run of punctuation (neither letter, digit nor whitespace) that ends `s`.
std::string_view trailing_punct(std::string_view s) {
    const std::vector<Cp> cps = codepoints(s);
    size_t begin = s.size();
    for (size_t i = cps.size(); i-- > 0;) {
        if (is_space(cps[i].c) || is_alnum(cps[i].c)) break;
        begin = cps[i].begin;
    }
    return s.substr(begin);
}

std::string_view leading_punct(std::string_view s) {
    for (const Cp& cp : codepoints(s)) {
        if (is_space(cp.c) || is_alnum(cp.c)) return s.substr(0, cp.begin);
    }
    return s;
}

// Punctuation that attaches to the word before it: no space at the seam.
bool attaches_left(uint32_t c) {
    constexpr std::u32string_view kPunct =
        U",.;:!?)]}%\u2026\u201D\u2019\u3002\uFF0C\uFF01\uFF1F\uFF1B\uFF1A\u3001";  // …”’。，！？；：、
    return kPunct.find(static_cast<char32_t>(c)) != std::u32string_view::npos;
}

bool opens(uint32_t c) {
    return c == '(' || c == '[' || c == '{' || c == 0x201C || c == 0x2018;
}

enum class Maybe { kNo, kYes, kUnknown };

// "'s", "'re", "n't", ...: the end of the opener's last word, written by the continuation.
// kUnknown while `t` is too short to tell ("n", "'r", or "'s" with what follows not yet seen);
// `complete` says that nothing follows t.
Maybe contraction(std::string_view t, bool complete) {
    std::string s;
    bool cut = false;  // a non-ASCII character ends the ASCII prefix
    for (const Cp& cp : codepoints(t.substr(0, std::min<size_t>(t.size(), 8)))) {
        uint32_t c = cp.c == 0x2019 ? '\'' : cp.c;
        if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        if (c >= 0x80) {
            cut = true;
            break;
        }
        s.push_back(static_cast<char>(c));
    }
    const bool ends = complete || cut || t.size() > 8;
    Maybe result = Maybe::kNo;
    for (const std::string_view k : {"'s", "'t", "'d", "'m", "'re", "'ve", "'ll", "n't"}) {
        if (s.starts_with(k)) {
            if (s.size() > k.size()) {
                if (!std::isalpha(static_cast<unsigned char>(s[k.size()]))) return Maybe::kYes;
            } else if (ends) {
                return Maybe::kYes;
            } else {
                result = Maybe::kUnknown;
            }
        } else if (!ends && k.starts_with(s)) {
            result = Maybe::kUnknown;
        }
    }
    return result;
}

// The opener stops inside a sentence: after a word, a comma, a semicolon or a dash (not after
// a colon, where a capital may start a full sentence).
bool inside_sentence(std::string_view opener) {
    if (opener.empty()) return false;
    const std::vector<Cp> cps = codepoints(opener);
    const uint32_t c = cps.back().c;
    return is_alnum(c) || c == ',' || c == ';' || c == '-' || c == 0x2013 || c == 0x2014;
}

// Words an instruct model capitalises only because it believes it starts the reply. In the
// middle of the opener's sentence they are lowered, but only when the word after them is
// lowercase too: "is" + "The city of Paris" → "the city", "is" + "The Matrix" stays.
constexpr std::string_view kFunctionWords[] = {
    "The", "A",     "An",   "It",   "Its",   "This",    "That", "These", "Those", "There",  "Here", "And",
    "But", "So",    "Or",   "Then", "In",    "On",      "At",   "To",    "For",   "With",   "Of",   "As",
    "By",  "From",  "If",   "When", "While", "Because", "You",  "Your",  "We",    "Our",    "They", "Their",
    "He",  "She",   "His",  "Her",  "Is",    "Are",     "Was",  "Were",  "Which", "What",   "Who",  "How",
    "Why", "Where", "Some", "Many", "Most",  "All",     "Each", "Every", "Also",  "Usually"};

// For a continuation `t` (no leading whitespace) that starts with such a word: the first
// character of the word after it, 0 while that is unknown (t may still grow into such a word,
// or the next word has not begun), -1 when t starts otherwise.
int32_t after_function_word(std::string_view t, bool final) {
    const std::vector<Cp> cps = codepoints(t);
    size_t i = 0;
    while (i < cps.size() && !is_space(cps[i].c)) ++i;
    const std::string_view first = t.substr(0, i < cps.size() ? cps[i].begin : t.size());
    if (i == cps.size() && !final) {
        for (const std::string_view w : kFunctionWords) {
            if (w.starts_with(first)) return 0;
        }
        return -1;
    }
    if (std::find(std::begin(kFunctionWords), std::end(kFunctionWords), first) == std::end(kFunctionWords))
        return -1;
    while (i < cps.size() && is_space(cps[i].c)) ++i;
    return i < cps.size() ? static_cast<int32_t>(cps[i].c) : 0;
}

// A restatement of the whole opener with a word or two changed ("The primary colors are:" +
// "The three primary colors are: Red, ...") is dropped too: the continuation's first words
// within kNearEdits word edits of the opener (and at most a third of its words changed),
// starting with the opener's first word. Openers shorter than kNearMinWords are left alone.
constexpr size_t kNearEdits = 2;
constexpr size_t kNearMinWords = 3;

// Word-level edit distance between `a` and the first `b_len` of `b`; with `prefix_of_a`, the
// least distance between b's words and any prefix of `a` (whether b may still grow into a).
size_t word_distance(const std::vector<std::string>& a, const std::vector<const std::string*>& b, size_t b_len,
                     bool prefix_of_a) {
    std::vector<size_t> prev(a.size() + 1), cur(a.size() + 1);
    for (size_t j = 0; j <= a.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= b_len; ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= a.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (*b[i - 1] == a[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prefix_of_a ? *std::min_element(prev.begin(), prev.end()) : prev.back();
}

// kept_punct: the punctuation the last repeated word carried ("is:") when the opener's word
// had none, so that dropping the repeat does not drop it ("France is" + "is: Paris" → ": Paris").
struct Repeat {
    bool decided = false;
    size_t words = 0;
    size_t drop_end = 0;
    std::string kept_punct;
};

}  // namespace

Stitcher::Stitcher(std::string opener, Seam seam, bool replace) : seam_(seam), replace_(replace) {
    const std::vector<Cp> cps = codepoints(opener);
    size_t end = 0;
    for (const Cp& cp : cps) {
        if (!is_space(cp.c)) end = cp.end;
    }
    opener_ends_in_space_ = end > 0 && end < opener.size();
    opener.resize(end);
    opener_ = std::move(opener);
    for (const Unit& u : split_units(opener_, true)) {
        if (!u.norm.empty()) opener_norm_.push_back(u.norm);
    }
}

std::string Stitcher::push(std::string_view delta) {
    if (settled_) return std::string(delta);
    buf_.append(delta);
    return settle(false);
}

std::string Stitcher::finish() {
    if (settled_) return {};
    return settle(true);
}

std::string Stitcher::settle(bool final) {
    const bool forced = final || buf_.size() >= kMaxHold;
    if (replace_) {
        const size_t lead = leading_space(buf_);
        if (lead == buf_.size() && !forced) return {};
        settled_ = true;
        std::string out = buf_.substr(lead);
        buf_.clear();
        return out;
    }

    // Which suffix of the opener (its last k words, up to all of them) the continuation starts
    // with. A candidate stays open while the words so far agree with it, so text is held only
    // as long as a longer repeat is still possible: at most the opener's length in words.
    Repeat rep;
    const std::vector<Unit> units = split_units(buf_, forced);
    const size_t n = opener_norm_.size();
    bool open_candidate = false;
    size_t last_unit = 0;
    for (size_t k = 1; k <= n; ++k) {
        // A doubled "that" or "had" can be meant ("I think that that is right").
        if (k == 1 && (opener_norm_.back() == "that" || opener_norm_.back() == "had")) continue;
        size_t j = 0;
        bool failed = false, matched = false;
        for (size_t u = 0; u < units.size() && !failed && !matched; ++u) {
            const std::string& want = opener_norm_[n - k + j];
            if (!units[u].complete) {
                failed = !want.starts_with(units[u].norm);
                break;
            }
            if (units[u].norm.empty()) continue;  // punctuation between repeated words
            if (units[u].norm != want) {
                failed = true;
            } else if (++j == k) {
                matched = true;
                if (k > rep.words) {
                    rep.words = k;
                    rep.drop_end = units[u].end;
                    last_unit = u;
                }
            }
        }
        if (!failed && !matched && !forced) open_candidate = true;
    }
    if (open_candidate) return {};
    if (rep.words == 0 && n >= kNearMinWords) {
        std::vector<const std::string*> words;
        std::vector<size_t> unit_of;
        for (size_t u = 0; u < units.size() && units[u].complete; ++u)
            if (!units[u].norm.empty()) {
                words.push_back(&units[u].norm);
                unit_of.push_back(u);
            }
        const bool anchored = !words.empty() && *words[0] == opener_norm_[0];
        if (anchored && !forced && words.size() < n + kNearEdits) {
            // Too few words to judge: hold while they may still be the start of a restatement.
            if (word_distance(opener_norm_, words, words.size(), true) <= kNearEdits) return {};
        } else if (anchored) {
            size_t best_m = 0, best_d = kNearEdits + 1;
            for (size_t m = n > kNearEdits ? n - kNearEdits : 1; m <= std::min(words.size(), n + kNearEdits); ++m) {
                const size_t d = word_distance(opener_norm_, words, m, false);
                if (d < best_d || (d == best_d && m > best_m)) best_d = d, best_m = m;
            }
            if (best_m > 0 && best_d <= kNearEdits && best_d * 3 <= n) {
                rep.words = best_m;
                last_unit = unit_of[best_m - 1];
                rep.drop_end = units[last_unit].end;
            }
        }
    }
    if (rep.words > 0) {
        const Unit& u = units[last_unit];
        const std::string_view carried =
            trailing_punct(std::string_view(buf_).substr(u.begin, u.end - u.begin));
        if (trailing_punct(opener_).empty()) rep.kept_punct = carried;
    }

    std::optional<std::string> out = seam_text(rep.kept_punct + buf_.substr(rep.drop_end), forced);
    if (!out) return {};
    settled_ = true;
    repeated_ = rep.words;
    buf_.clear();
    return std::move(*out);
}

// The seam rules below look at the start of the continuation as a whole, so unless `final`
// this waits (nullopt) while that start may still change their outcome: a run of punctuation
// not yet ended, a possible contraction ("n", "'r"), a capitalised "The" whose next word has
// not begun.
std::optional<std::string> Stitcher::seam_text(std::string_view rest, bool final) const {
    size_t lead = leading_space(rest);
    std::string space(rest.substr(0, lead));
    std::string t(rest.substr(lead));
    if (!final && leading_punct(t).size() == t.size()) return std::nullopt;
    if (t.empty()) return std::string();
    if (opener_.empty()) return t;

    // "Sure," + ", here" and "Good question —" + "— here": the seam punctuation once.
    const std::string_view op = trailing_punct(opener_);
    if (!op.empty() && leading_punct(t) == op) {
        t.erase(0, op.size());
        lead = leading_space(t);
        space = t.substr(0, lead);
        t.erase(0, lead);
        if (t.empty()) return final ? std::optional<std::string>(std::string()) : std::nullopt;
    }
    if (!final && contraction(t, false) == Maybe::kUnknown) return std::nullopt;
    if (!final && seam_ == Seam::kWords && inside_sentence(opener_) && after_function_word(t, false) == 0) {
        return std::nullopt;
    }

    const std::vector<Cp> tail = codepoints(opener_);
    const uint32_t last = tail.back().c;
    size_t at = 0;
    const uint32_t first = unicode::decode_lenient(t, at);
    // No separator after a space the opener already shows, before punctuation that attaches
    // to the word before it, after an opening bracket, or before a contraction ("I do" + "n't").
    const bool glued = opener_ends_in_space_ || attaches_left(first) || opens(last) ||
                       (contraction(t, true) == Maybe::kYes && (seam_ == Seam::kWords || space.empty()));
    std::string sep;
    if (!glued) {
        for (const Cp& cp : codepoints(space)) {
            if (is_line_break(cp.c)) sep += space.substr(cp.begin, cp.end - cp.begin);
        }
        // With no space at all, a prefilled model continued the opener's last word itself,
        // unless that word ended in punctuation, which no word can continue.
        if (sep.empty() && (!space.empty() || seam_ == Seam::kWords || !is_alnum(last))) sep.push_back(' ');
    }

    if (seam_ == Seam::kWords && inside_sentence(opener_)) {
        const int32_t next = after_function_word(t, true);
        if (next >= 'a' && next <= 'z') t[0] = static_cast<char>(t[0] - 'A' + 'a');
    }
    if (ends_sentence(opener_)) {
        for (char& c : t) {
            if (c == '"' || c == '\'' || c == '(' || c == '[') continue;
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
            break;
        }
    }
    return sep + t;
}

// ---- ContinuationJoiner -----------------------------------------------------------------

ContinuationJoiner::ContinuationJoiner(std::string opener, Modality modality, bool expect_tag)
    : opener_(std::move(opener)), modality_(modality), expect_tag_(expect_tag) {}

ContinuationJoiner::ContinuationJoiner(std::string opener, Modality modality, Verdict decided)
    : opener_(std::move(opener)), modality_(modality), expect_tag_(false), decided_(allowed_verdict(decided, modality)) {}

std::optional<Verdict> ContinuationJoiner::verdict() const {
    if (decided_) return decided_;
    if (!expect_tag_) return Verdict::kKeep;
    if (!parser_.decided()) return std::nullopt;
    return allowed_verdict(parser_.verdict(), modality_);
}

std::string ContinuationJoiner::feed(std::string_view text, bool final) {
    if (!stitcher_) {
        const std::optional<Verdict> v = verdict();
        if (!v) return {};
        // Prefill continues the opener's own text; an instruct model writes fresh text.
        stitcher_.emplace(opener_, expect_tag_ || decided_ ? Seam::kWords : Seam::kExact, *v == Verdict::kRetract);
    }
    std::string out = stitcher_->push(text);
    if (final) out += stitcher_->finish();
    return out;
}

std::string ContinuationJoiner::push(std::string_view delta) {
    return feed(expect_tag_ ? parser_.push(delta) : std::string(delta), false);
}

std::string ContinuationJoiner::finish() {
    return feed(expect_tag_ ? parser_.finish() : std::string(), true);
}

}  // namespace microlm
