// The streaming verdict-tag parser: decides from the first bytes of a continuation whether it
// opens with a tag ([keep], [pivot], [retract] and the tolerated variants in handoff.h) and
// strips it. It never looks past kMaxLookahead bytes and never alters text after the tag.
#include <cstring>

#include "microlm/handoff.h"

namespace microlm {
namespace {

enum class Match { kNeedMore, kNoTag, kTag };

struct TagMatch {
    Match state = Match::kNoTag;
    Verdict verdict = Verdict::kKeep;
    size_t consumed = 0;  // bytes of the tag itself
};

constexpr size_t kMaxMalformedWord = 12;  // "[something]" longer than this is text, not a tag

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
bool is_open(char c) {
    return c != '\0' && std::strchr("[(<{", c) != nullptr;
}
bool is_close(char c) {
    return c != '\0' && std::strchr("])>}", c) != nullptr;
}

std::optional<Verdict> verdict_of(std::string_view w) {
    if (w == "keep") return Verdict::kKeep;
    if (w == "pivot") return Verdict::kPivot;
    if (w == "retract") return Verdict::kRetract;
    return std::nullopt;
}

bool keyword_prefix(std::string_view w) {
    for (std::string_view k : {"keep", "pivot", "retract", "verdict"}) {
        if (k.starts_with(w)) return true;
    }
    return false;
}

// Matches a tag at the start of s. kNeedMore: s ends while it could still be one (with
// `final` that cannot happen: what is there is judged as it stands).
TagMatch match_tag(std::string_view s, bool final) {
    const size_t n = s.size();
    size_t i = 0;
    const auto skip_space = [&] {
        while (i < n && is_space(s[i])) ++i;
    };
    const auto read_word = [&] {
        std::string w;
        while (i < n && is_alpha(s[i])) w.push_back(lower(s[i++]));
        return w;
    };
    const TagMatch need_more{final ? Match::kNoTag : Match::kNeedMore};

    skip_space();
    if (i == n) return need_more;
    const char open = is_open(s[i]) ? s[i++] : '\0';
    if (open) skip_space();
    std::string w = read_word();
    bool prefixed = false;  // "verdict:" came first
    if (w == "verdict") {
        skip_space();
        if (i == n) return need_more;
        if (s[i] != ':' && s[i] != '=') return {};
        ++i;
        skip_space();
        w = read_word();
        prefixed = true;
    }
    const std::optional<Verdict> v = verdict_of(w);
    if (i == n) {
        if (final) return v && (open || prefixed) ? TagMatch{Match::kTag, *v, n} : TagMatch{};
        // Still reading the word: hold while it can grow into a verdict (or, after "[", into a
        // short bracketed word that would be a malformed tag).
        const bool may_grow =
            keyword_prefix(w) || (open == '[' && !prefixed && w.size() <= kMaxMalformedWord);
        return may_grow ? need_more : TagMatch{};
    }
    const size_t word_end = i;
    if (!open) {
        // Without an opening bracket only "keep:" / "keep]" and "verdict: keep" count, so that
        // a continuation that starts with the word itself ("Keep going") stays text.
        if (!v) return {};
        if (prefixed) return {Match::kTag, *v, word_end + (is_close(s[i]) ? 1 : 0)};
        if (s[i] == ':' || is_close(s[i])) return {Match::kTag, *v, i + 1};
        return {};
    }
    skip_space();
    if (i == n) {
        if (final) return v ? TagMatch{Match::kTag, *v, n} : TagMatch{};
        return v || (open == '[' && !prefixed) ? need_more : TagMatch{};
    }
    if (is_close(s[i])) {
        if (v) return {Match::kTag, *v, i + 1};
        // "[ok]", "[kep]": a bracketed word where the tag should be. It is not meant for the user.
        if (open == '[' && !prefixed && !w.empty() && w.size() <= kMaxMalformedWord)
            return {Match::kTag, Verdict::kKeep, i + 1};
        return {};
    }
    if (v && s[i] == ':') return {Match::kTag, *v, i + 1};      // "[keep: ..." with no closing bracket
    if (v && i > word_end) return {Match::kTag, *v, word_end};  // "[keep Paris..."
    return {};
}

}  // namespace

std::string VerdictParser::resolve(bool final) {
    // Only the first kMaxLookahead bytes are looked at, however the text was cut into deltas.
    const bool windowed = buf_.size() > kMaxLookahead;
    TagMatch m = match_tag(std::string_view(buf_).substr(0, kMaxLookahead), final && !windowed);
    if (m.state == Match::kNeedMore) {
        if (buf_.size() < kMaxLookahead) return {};
        m = TagMatch{};  // too long to be a tag
    }
    decided_ = true;
    std::string rest;
    if (m.state == Match::kTag) {
        tag_found_ = true;
        verdict_ = m.verdict;
        strip_space_ = true;
        rest = buf_.substr(m.consumed);
    } else {
        rest = std::move(buf_);
    }
    buf_.clear();
    return push(rest);
}

std::string VerdictParser::push(std::string_view delta) {
    if (!decided_) {
        buf_.append(delta);
        return resolve(false);
    }
    if (strip_space_) {
        while (!delta.empty() && is_space(delta.front())) delta.remove_prefix(1);
        if (!delta.empty()) strip_space_ = false;
    }
    return std::string(delta);
}

std::string VerdictParser::finish() {
    if (decided_) return {};
    return resolve(true);
}

}  // namespace microlm
