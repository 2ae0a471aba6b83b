// run_turn(): opener first, then one cloud request that continues it, stitched through the
// ContinuationJoiner; a cloud failure ends the sentence with a few local tokens instead.
// Not here: the opener policy itself (opener.cpp), HTTP (cloud_client.cpp), printing.
#include "microlm/stopwatch.h"
#include "microlm/turn.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/sampler.h"
#include "microlm/words.h"

namespace microlm {
namespace {

using Clock = Stopwatch::Clock;

// The local model continues `shown` to the end of its sentence (greedy, a few tokens): the
// reply stays well-formed when the cloud cannot finish it. Returns the text to append.
std::string local_close(Context& ctx, const Tokenizer& tok, const std::vector<ChatMessage>& history,
                        const std::string& shown, const std::optional<std::string>& system, int64_t max_tokens) {
    if (shown.empty() || ends_sentence(shown)) return {};
    const auto ids = tok.encode(prefill_prompt(history, shown, system), true, true);
    std::string out;
    if (static_cast<int64_t>(ids.size()) + max_tokens < ctx.n_ctx()) {
        Sampler greedy(SamplerParams{.temperature = 0.0f});
        Utf8Streamer utf8;
        generate(ctx, greedy, tok, ids, max_tokens, [&](int32_t id) {
            out += utf8.push(tok.token_to_piece(id, false));
            const size_t end = out.find_first_of(".!?\n");
            if (end == std::string::npos) return true;
            out.resize(out[end] == '\n' ? end : end + 1);
            return false;
        });
        out += utf8.flush();
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
    // Whatever the model wrote, the sentence ends: a bare full stop if it did not end it.
    if (!ends_sentence(shown + out)) out += ".";
    return out;
}

}  // namespace

TurnResult run_turn(Opener& opener, Context& ctx, const Tokenizer& tok, const CloudClient& cloud,
                    const std::vector<ChatMessage>& history, const TurnConfig& cfg,
                    const std::function<void(const TurnEvent&)>& on_event, std::stop_token stop) {
    auto emit = [&](TurnEvent::Kind k, const std::string& text) {
        if (on_event) on_event({k, text});
    };
    TurnResult r;
    const auto t0 = Clock::now();
    r.opener = opener.run(history, [&](const OpenerWord& w) { emit(TurnEvent::Kind::kOpener, w.space_before + w.text); });
    const auto t_opener = Clock::now();
    r.timings.opener_ms = Stopwatch::ms_between(t0, t_opener);
    if (r.opener.timings.first_word_ms >= 0) r.timings.first_word_ms = r.opener.timings.first_word_ms;
    if (r.opener.hedged) emit(TurnEvent::Kind::kHedge, r.opener.text);
    r.text = r.opener.text;

    if (r.opener.ended_turn && !r.opener.hedged) {
        r.timings.total_ms = Stopwatch::ms_between(t0, Clock::now());
        return r;
    }
    r.cloud_used = true;

    const bool instruct = cfg.mode == ContinuationMode::kInstruct;
    CloudRequest req;
    req.max_tokens = cfg.max_tokens;
    req.temperature = cfg.temperature;
    req.seed = cfg.seed;
    req.messages = instruct ? instruct_messages(history, r.opener.text, cfg.modality) : prefill_messages(history, r.opener.text);
    req.continue_final_message = !instruct && cfg.send_continue_fields;

    ContinuationJoiner joiner(r.opener.text, cfg.modality, /*expect_tag=*/instruct);
    bool verdict_shown = false;
    auto show = [&](const std::string& out) {
        if (out.empty()) return;
        if (r.timings.stall_ms < 0) r.timings.stall_ms = Stopwatch::ms_between(t_opener, Clock::now());
        if (!verdict_shown) {
            verdict_shown = true;
            r.verdict = joiner.verdict();
            if (r.verdict == Verdict::kRetract) {
                r.text = out;
                emit(TurnEvent::Kind::kRetract, out);
                return;
            }
            if (r.verdict == Verdict::kPivot) emit(TurnEvent::Kind::kPivot, "");
        }
        r.text += out;
        emit(TurnEvent::Kind::kContinuation, out);
    };

    for (auto until = Clock::now() + std::chrono::milliseconds(cfg.cloud_delay_ms); Clock::now() < until && !stop.stop_requested();)
        std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(5)));
    const auto t_cloud = Clock::now();
    try {
        if (stop.stop_requested()) throw CloudError(CloudErrorKind::kCancelled, "the turn was cancelled before the cloud request");
        cloud.chat(
            req,
            [&](std::string_view delta) {
                if (r.timings.cloud_first_token_ms < 0) r.timings.cloud_first_token_ms = Stopwatch::ms_between(t_cloud, Clock::now());
                show(joiner.push(delta));
            },
            stop);
        show(joiner.finish());
        if (!r.verdict) r.verdict = joiner.verdict();
    } catch (const CloudError& e) {
        r.error = e.kind;
        show(joiner.finish());
        emit(TurnEvent::Kind::kError, std::string(cloud_error_kind_name(e.kind)) + ": " + e.what());
        if (e.kind == CloudErrorKind::kCancelled) {
            r.timings.total_ms = Stopwatch::ms_between(t0, Clock::now());
            return r;
        }
        std::vector<ChatMessage> h = history;
        const std::string close = local_close(ctx, tok, h, r.text, opener.system_prompt(), cfg.close_max_tokens);
        if (!close.empty()) {
            r.text += close;
            emit(TurnEvent::Kind::kLocalClose, close);
        }
    }
    r.timings.total_ms = Stopwatch::ms_between(t0, Clock::now());
    return r;
}

}  // namespace microlm
