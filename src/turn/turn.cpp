// run_turn(): opener first, then continue_turn(): one cloud request that continues it (asked once more,
// from the shown text, if the cloud cuts it short), stitched through the ContinuationJoiner; a cloud
// failure ends the sentence with a few local tokens instead. Not here: the opener policy itself
// (opener/), HTTP (cloud/), printing or the wire.
#include "microlm/turn.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/sampler.h"
#include "microlm/stopwatch.h"
#include "microlm/words.h"

namespace microlm {
namespace {

using Clock = Stopwatch::Clock;

TurnEvent event(TurnEvent::Kind kind, std::string text) {
    TurnEvent e;
    e.kind = kind;
    e.text = std::move(text);
    return e;
}

// The local model continues `shown` to the end of its sentence (greedy, a few tokens): the
// reply stays well-formed when the cloud cannot finish it. Returns the text to append.
std::string local_close(Opener& local, const std::vector<ChatMessage>& history, const std::string& shown,
                        int64_t max_tokens) {
    if (shown.empty() || ends_sentence(shown)) return {};
    Context& ctx = local.context();
    const Tokenizer& tok = local.tokenizer();
    const auto ids = tok.encode(prefill_prompt(history, shown, local.system_prompt()), true, true);
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

TurnResult continue_turn(const OpenerResult& opener, const CloudClient& cloud,
                         const std::vector<ChatMessage>& history, const TurnConfig& cfg,
                         const std::function<void(const TurnEvent&)>& on_event, std::stop_token stop,
                         Opener* closer, std::mutex* closer_lock) {
    auto emit = [&](TurnEvent e) {
        if (on_event) on_event(e);
    };
    const Stopwatch t0;  // the opener has been shown
    TurnResult r;
    r.opener = opener;
    r.text = opener.text;
    r.cloud_used = true;

    const bool instruct = cfg.mode == ContinuationMode::kInstruct;
    CloudRequest req;
    req.max_tokens = cfg.max_tokens;
    req.temperature = cfg.temperature;
    req.seed = cfg.seed;
    req.messages = instruct ? instruct_messages(history, opener.text, cfg.modality) : prefill_messages(history, opener.text);
    req.continue_final_message = !instruct && cfg.send_continue_fields;

    // The opener check runs beside the continuation request; the continuation's first text
    // waits for its verdict, and a verdict of off drops that request for the recovery.
    std::stop_source inner;  // the first continuation request, stopped early on an off verdict
    const std::stop_callback link(stop, [&] { inner.request_stop(); });
    std::future<OpenerCheck> pending;
    // A hedge phrase is neutral by design: it cannot be a wrong start, so it is not checked.
    if (cfg.check.signal != CheckSignal::kOff && !opener.hedged)
        pending = std::async(std::launch::async, [&] { return check_opener(cloud.config(), history, opener.text, cfg.check, inner.get_token()); });
    std::optional<Verdict> recovery;
    const auto await_check = [&] {
        if (!pending.valid()) return;
        r.check = pending.get();
        const Verdict v = check_verdict(r.check->scores, cfg.check, cfg.modality);
        if (v != Verdict::kKeep) recovery = v;
    };

    std::optional<ContinuationJoiner> joiner(std::in_place, opener.text, cfg.modality, /*expect_tag=*/instruct);
    bool verdict_shown = false;
    auto show = [&](const std::string& out) {
        if (out.empty()) return;
        if (r.timings.stall_ms < 0) r.timings.stall_ms = t0.ms();
        if (!verdict_shown) {
            verdict_shown = true;
            r.verdict = joiner->verdict();
            if (r.verdict == Verdict::kRetract) {
                r.text = out;
                emit(event(TurnEvent::Kind::kRetract, out));
                return;
            }
            if (r.verdict == Verdict::kPivot) emit(event(TurnEvent::Kind::kPivot, ""));
        }
        r.text += out;
        emit(event(TurnEvent::Kind::kContinuation, out));
    };
    auto finish_joiner = [&] {
        show(joiner->finish());
        if (!r.verdict) r.verdict = joiner->verdict();
        r.tag_found = r.tag_found || joiner->tag_found();
        r.repeated_words += joiner->stitcher() ? joiner->stitcher()->repeated_words() : 0;
    };
    // A cloud failure: the joiner's held text, then the local close (when not cancelled), then
    // the error, in the order they are shown.
    auto fail = [&](const CloudError& e) {
        r.error = e.kind;
        r.error_message = e.what();
        finish_joiner();
        TurnEvent err = event(TurnEvent::Kind::kError, std::string(cloud_error_kind_name(e.kind)) + ": " + e.what());
        err.error = e.kind;
        err.message = e.what();
        if (e.kind != CloudErrorKind::kCancelled && closer) {
            std::unique_lock<std::mutex> lock;
            if (closer_lock) lock = std::unique_lock(*closer_lock);
            const std::string close = local_close(*closer, history, r.text, cfg.close_max_tokens);
            if (lock) lock.unlock();
            if (!close.empty()) {
                r.text += close;
                emit(event(TurnEvent::Kind::kLocalClose, close));
            }
        }
        emit(std::move(err));
    };

    // A server that runs one request at a time either stops a stream for the check's requests
    // or makes them wait for its end: there the check goes first, and an opener it finds off
    // costs no continuation.
    if (cfg.check.before_continuation) await_check();
    for (auto until = Clock::now() + std::chrono::milliseconds(cfg.cloud_delay_ms); Clock::now() < until && !stop.stop_requested();)
        std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(5)));
    // The cloud's first-token time comes from the client; a failed call returns none, so the
    // time of the first delta is kept for that case.
    const Stopwatch t_cloud;
    double first_delta_ms = -1;
    const auto on_delta = [&](std::string_view delta) {
        if (first_delta_ms < 0) {
            first_delta_ms = t_cloud.ms();
            await_check();
        }
        if (recovery) {
            r.abandoned_text += delta;
            inner.request_stop();
            return;
        }
        r.cloud_text += delta;
        show(joiner->push(delta));
    };
    // A continuation cut short after its text began (the connection broke, or a server stopped
    // the stream: llama-cpp-python's does when the check's requests arrive) resumes once, as a
    // prefill of everything shown so far; the verdict already made stands.
    const auto continuation = [&]() -> CloudResult {
        try {
            return cloud.chat(req, on_delta, inner.get_token());
        } catch (const CloudError& e) {
            if (e.kind != CloudErrorKind::kReset || first_delta_ms < 0 || recovery || stop.stop_requested()) throw;
            finish_joiner();
            // A pivot or retract none of whose text was shown cannot go on as a keep.
            if (!verdict_shown && r.verdict != Verdict::kKeep) throw;
            CloudRequest rq = req;
            rq.messages = prefill_messages(history, r.text);
            rq.continue_final_message = cfg.send_continue_fields;
            joiner.emplace(r.text, cfg.modality, Verdict::kKeep);
            r.resumed_from = r.text;
            CloudResult cr = cloud.chat(rq, on_delta, inner.get_token());
            cr.first_token_ms = first_delta_ms;  // the turn's first cloud token came before the cut
            return cr;
        }
    };
    try {
        if (stop.stop_requested()) throw CloudError(CloudErrorKind::kCancelled, "the turn was cancelled before the cloud request");
        if (!recovery) {
            const CloudResult cr = continuation();
            r.timings.cloud_first_token_ms = cr.first_token_ms;
            if (first_delta_ms < 0) await_check();  // the continuation was empty
        }
        if (!recovery) finish_joiner();
    } catch (const CloudError& e) {
        if (!recovery || stop.stop_requested()) {
            r.timings.cloud_first_token_ms = first_delta_ms;
            inner.request_stop();  // a check still waiting on a failing cloud ends now
            if (pending.valid()) r.check = pending.get();
            fail(e);
            r.timings.total_ms = t0.ms();
            return r;
        }
    }
    if (recovery) {
        // The check said off: the modality's recovery, with no tag asked for (the verdict is known).
        r.verdict_by_check = true;
        CloudRequest rq = req;
        rq.continue_final_message = false;
        rq.messages = recovery_messages(history, opener.text, *recovery, cfg.modality, cfg.check);
        joiner.emplace(opener.text, cfg.modality, *recovery);
        // A fixed bridge is said at once, while the plain answer is on its way.
        if (*recovery == Verdict::kPivot && !cfg.check.pivot_bridge.empty()) show(joiner->push(cfg.check.pivot_bridge + " "));
        try {
            const CloudResult cr = cloud.chat(
                rq,
                [&](std::string_view delta) {
                    r.cloud_text += delta;
                    show(joiner->push(delta));
                },
                stop);
            r.timings.recovery_first_token_ms = cr.first_token_ms;
            finish_joiner();
        } catch (const CloudError& e) {
            fail(e);
        }
    }
    r.timings.total_ms = t0.ms();
    return r;
}

TurnResult run_turn(Opener& opener, const CloudClient& cloud, const std::vector<ChatMessage>& history,
                    const TurnConfig& cfg, const std::function<void(const TurnEvent&)>& on_event,
                    std::stop_token stop, std::mutex* local_lock) {
    auto emit = [&](TurnEvent e) {
        if (on_event) on_event(e);
    };
    const Stopwatch waited;
    std::unique_lock<std::mutex> lock;
    if (local_lock) lock = std::unique_lock(*local_lock);
    const double local_wait_ms = waited.ms();
    const Stopwatch t0;
    const OpenerResult opened =
        opener.run(history, [&](const OpenerWord& w) { emit(event(TurnEvent::Kind::kOpener, w.space_before + w.text)); },
                   cfg.opener_length);
    const double opener_ms = t0.ms();
    if (lock) lock.unlock();
    if (opened.hedged) emit(event(TurnEvent::Kind::kHedge, opened.text));

    TurnResult r;
    if (opened.ended_turn && !opened.hedged) {
        r.opener = opened;
        r.text = opened.text;
    } else {
        r = continue_turn(opened, cloud, history, cfg, on_event, stop, &opener, local_lock);
    }
    r.timings.local_wait_ms = local_wait_ms;
    r.timings.opener_ms = opener_ms;
    if (opened.timings.first_word_ms >= 0) r.timings.first_word_ms = opened.timings.first_word_ms;
    r.timings.total_ms = t0.ms();
    return r;
}

}  // namespace microlm
