// The opener check's cloud half: two raw completions with `echo` + `logprobs` (the opener after
// the conversation, and after a neutral one) whose echoed log p's give the OpenerScores that
// handoff/opener_check.cpp judges. Runs beside the continuation request, or before it for
// servers that run one request at a time.
#include <cmath>
#include <future>
#include <limits>

#include "microlm/stopwatch.h"
#include "microlm/turn.h"

namespace microlm {
namespace {

// The mean log p of the tokens over the last occurrence of `opener` in `pieces` joined, where
// `keep` says which bytes take part in the match (all, or ASCII only). A token that straddles
// the opener's start counts; a token with no matched byte counts when it lies inside it.
double mean_over_match(const CloudLogprobs& lp, std::string_view opener, bool ascii_only) {
    const auto project = [&](std::string_view t) {
        if (!ascii_only) return std::string(t);
        std::string out;
        for (const char c : t)
            if (static_cast<unsigned char>(c) < 0x80) out.push_back(c);
        return out;
    };
    std::string joined;
    std::vector<size_t> starts, sizes;
    for (const std::string& t : lp.tokens) {
        const std::string p = project(t);
        starts.push_back(joined.size());
        sizes.push_back(p.size());
        joined += p;
    }
    const std::string needle = project(opener);
    const size_t at = needle.empty() ? std::string::npos : joined.rfind(needle);
    if (at == std::string::npos) return std::numeric_limits<double>::quiet_NaN();
    const size_t end = at + needle.size();
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < starts.size(); ++i) {
        const bool overlaps = sizes[i] > 0 ? starts[i] < end && starts[i] + sizes[i] > at : starts[i] > at && starts[i] < end;
        if (!overlaps || std::isnan(lp.logprobs[i])) continue;
        sum += lp.logprobs[i];
        ++n;
    }
    return n ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

double mean_echo_logprob(const CloudLogprobs& lp, std::string_view opener) {
    // Servers render the echo differently (llama.cpp's drops special tokens' text and counts
    // text_offset in characters of what is left), so the opener is found in the tokens' own
    // text: the last place it occurs, since only the generated token can follow it. A token
    // that is part of a character (a byte token) is sent as U+FFFD by JSON encoders, so when
    // the text does not match exactly, only the ASCII bytes are matched.
    const double exact = mean_over_match(lp, opener, false);
    return std::isnan(exact) ? mean_over_match(lp, opener, true) : exact;
}

OpenerCheck check_opener(const CloudConfig& cloud, const std::vector<ChatMessage>& history, std::string_view opener,
                         const OpenerCheckConfig& cfg, std::stop_token stop) {
    const Stopwatch t0;
    OpenerCheck out;
    opener = trim_right(opener);
    if (cfg.signal == CheckSignal::kOff || opener.empty()) return out;
    // One request: the conversation (no default system: the same for both, so it cancels out),
    // the assistant header, the opener; one token generated, as some servers need max_tokens > 0.
    const auto score = [&](const std::vector<ChatMessage>& conv, int64_t& tokens) {
        CloudRequest req;
        req.prompt = prefill_prompt(conv, opener, std::nullopt);
        req.max_tokens = 1;
        req.temperature = 0.0f;
        req.stream = false;
        req.echo = true;
        req.logprobs = 1;
        const CloudResult res = CloudClient(cloud).complete(req, {}, stop);
        if (!res.logprobs) throw CloudError(CloudErrorKind::kMalformed, "the completions endpoint sent no logprobs");
        tokens = static_cast<int64_t>(res.logprobs->tokens.size());
        const double lp = mean_echo_logprob(*res.logprobs, opener);
        if (std::isnan(lp)) throw CloudError(CloudErrorKind::kMalformed, "the echoed tokens do not hold the opener");
        return lp;
    };
    try {
        const bool neutral = cfg.signal != CheckSignal::kLikelihood;
        int64_t neutral_tokens = 0, conv_tokens = 0;
        const auto score_neutral = [&] { return score(neutral_history(), neutral_tokens); };
        // Before the continuation, the conversation goes last: a server that keeps its last
        // prompt's cache (llama.cpp's, llama-cpp-python's) then holds the continuation's start,
        // the whole of it when the conversation has its own system message (else the server's
        // template adds its default system to the continuation, not to the check).
        std::future<double> given_neutral;
        if (neutral && cfg.before_continuation) out.scores.given_neutral = score_neutral();
        else if (neutral) given_neutral = std::async(std::launch::async, score_neutral);
        out.scores.given_conversation = score(history, conv_tokens);
        if (given_neutral.valid()) out.scores.given_neutral = given_neutral.get();
        out.tokens = conv_tokens + neutral_tokens;
    } catch (const CloudError& e) {
        out.error = std::string(cloud_error_kind_name(e.kind)) + ": " + e.what();
    }
    out.ms = t0.ms();
    return out;
}

}  // namespace microlm
