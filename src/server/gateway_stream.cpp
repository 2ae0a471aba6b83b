// POST /v1/chat/completions on the gateway: the request's checks, a place in the turn queue,
// then one turn whose events become chat.completion.chunk server-sent events (or one
// chat.completion), each carrying the "microlm" object of docs/GATEWAY.md.
// Not here: the turn itself (handoff/turn.cpp); routes, auth and static files (gateway.cpp).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>

#include "microlm/error.h"
#include "microlm/pacer.h"
#include "microlm/spoken_turn.h"
#include "microlm/stopwatch.h"
#include "gateway_impl.h"
#include "http_util.h"

namespace microlm {
namespace {

using json = nlohmann::json;
// Responses keep OpenAI's field order (id, object, created, model, choices), then "microlm".
using ojson = nlohmann::ordered_json;
using Clock = Stopwatch::Clock;
using http::BadRequest;

double round1(double v) {
    return std::round(v * 10.0) / 10.0;
}

// Releases a place in the turn queue when the request is done with, however it ends.
class QueueSlot {
public:
    explicit QueueSlot(std::atomic<int>& queued) : queued_(queued) {}
    ~QueueSlot() { queued_.fetch_sub(1); }
    QueueSlot(const QueueSlot&) = delete;
    QueueSlot& operator=(const QueueSlot&) = delete;

private:
    std::atomic<int>& queued_;
};

struct WireTag {
    const char* source;  // "local" or "cloud": who wrote the text
    const char* event;
};

// What a turn event is called on the wire. The local close after a cloud failure is local
// text continuing the reply, so it is a local "continuation".
WireTag wire_tag(TurnEvent::Kind k) {
    using K = TurnEvent::Kind;
    switch (k) {
        case K::kOpener:
            return {"local", "opener"};
        case K::kHedge:
            return {"local", "hedge"};
        case K::kContinuation:
            return {"cloud", "continuation"};
        case K::kPivot:
            return {"cloud", "pivot"};
        case K::kRetract:
            return {"cloud", "retract"};
        case K::kLocalClose:
            return {"local", "continuation"};
        case K::kError:
            return {"cloud", "error"};
    }
    return {"local", "error"};
}

// How a turn ended, as the gateway reports it.
struct Outcome {
    TurnResult r;
    double queue_ms = 0;     // request received to the turn starting (waiting for the local model)
    double visible_stall_ms = -1;  // the longest wait between delivered words beyond the pace; -1: not streamed
    double first_sound_ms = -1, longest_audio_wait_ms = -1;  // said aloud (GatewayConfig::speak_dir); -1: not
    std::string error_kind;  // "" when the turn had no failure
    std::string error_message;
};

ojson timings_json(const Outcome& o) {
    const TurnTimings& t = o.r.timings;
    auto opt = [](double v) { return v < 0 ? ojson(nullptr) : ojson(round1(v)); };
    // first_word_ms and total_ms count from the request's arrival, waiting included: that is
    // what the client sees. The others are the turn's own spans.
    return {
        {"first_word_ms", t.first_word_ms < 0 ? ojson(nullptr) : ojson(round1(o.queue_ms + t.first_word_ms))},
        {"opener_ms", round1(t.opener_ms)},
        {"cloud_first_token_ms", opt(t.cloud_first_token_ms)},
        {"stall_ms", opt(t.stall_ms)},
        {"visible_stall_ms", opt(o.visible_stall_ms)},
        {"total_ms", round1(o.queue_ms + t.total_ms)},
        {"queue_ms", round1(o.queue_ms)},
        {"first_sound_ms", opt(o.first_sound_ms)},
        {"longest_audio_wait_ms", opt(o.longest_audio_wait_ms)}};
}

// The fields the last chunk (and a whole response) adds to its "microlm" object.
void add_summary(ojson& m, const Outcome& o) {
    m["verdict"] = o.r.verdict ? ojson(std::string(verdict_name(*o.r.verdict))) : ojson(nullptr);
    m["hedged"] = o.r.opener.hedged;
    m["opener"] = o.r.opener.text;
    m["cloud_used"] = o.r.cloud_used;
    m["resumed"] = o.r.resumed_from.has_value();
    // The opener check, when it ran: its scores (null where not had), whether its verdict chose
    // the recovery, and why it could not score.
    if (o.r.check) {
        auto score = [](double v) { return std::isnan(v) ? ojson(nullptr) : ojson(std::round(v * 1000) / 1000); };
        m["check"] = {{"logprob", score(o.r.check->scores.given_conversation)},
                      {"pmi", score(o.r.check->scores.pmi())},
                      {"off", o.r.verdict_by_check},
                      {"ms", round1(o.r.check->ms)},
                      {"error", o.r.check->error.empty() ? ojson(nullptr) : ojson(o.r.check->error)}};
    } else {
        m["check"] = nullptr;
    }
    m["error"] =
        o.error_kind.empty() ? ojson(nullptr) : ojson{{"kind", o.error_kind}, {"message", o.error_message}};
    m["timings"] = timings_json(o);
}

// Turns TurnEvents into SSE chunks, in the turn's order, each written whole (one write per event:
// a client never sees half a JSON line). A pivot marker rides on the continuation text that
// follows it; nothing else is held or reordered: the turn already emits its local close before
// its error, so the stream reads opener, close, error, end. finish() reports an internal failure
// (which has no turn event) and ends the stream.
class ChunkStream {
public:
    ChunkStream(const ChatJob& job, const std::string& model, GatewayMetrics& metrics,
                std::function<void(const std::string&)> write)
        : job_(job), model_(model), metrics_(metrics), write_(std::move(write)) {}

    void event(const TurnEvent& e) {
        using K = TurnEvent::Kind;
        const WireTag tag = wire_tag(e.kind);
        switch (e.kind) {
            case K::kPivot:
                pivot_pending_ = true;
                return;
            case K::kError: {
                const std::string kind(e.error ? cloud_error_kind_name(*e.error) : "internal");
                const std::string message = e.message.empty() ? "the cloud request failed" : e.message;
                send(std::nullopt, tag, {{"error", {{"kind", kind}, {"message", message}}}});
                error_sent_ = true;
                return;
            }
            case K::kHedge:
                send(std::nullopt, tag, {{"text", e.text}});
                return;
            case K::kRetract: {
                // A client that ignores "microlm" appends the replacement after the opener it
                // showed, so it gets a separating space; one that reads it replaces everything.
                const bool sep = !shown_.empty() && !std::isspace(static_cast<unsigned char>(shown_.back()));
                shown_.clear();
                send((sep ? " " : "") + e.text, tag, {{"text", e.text}});
                return;
            }
            case K::kContinuation:
                if (pivot_pending_) {
                    pivot_pending_ = false;
                    send(e.text, wire_tag(K::kPivot), {});
                    return;
                }
                send(e.text, tag, {});
                return;
            case K::kOpener:
            case K::kLocalClose:
                send(e.text, tag, {});
                return;
        }
    }

    // An internal failure's error event, then the last chunk (finish_reason, timings) and [DONE].
    void finish(const Outcome& o) {
        // A failure without a turn event (an internal error) is reported here.
        if (!error_sent_ && !o.error_kind.empty())
            send(std::nullopt, {o.error_kind == "internal" ? "local" : "cloud", "error"},
                 {{"error", {{"kind", o.error_kind}, {"message", o.error_message}}}});
        ojson m = {{"source", last_source_}, {"event", "done"}};
        add_summary(m, o);
        write_("data: " + http::dump(chunk(ojson::object(), "stop", std::move(m))) + "\n\n" +
               "data: [DONE]\n\n");
    }

private:
    ojson chunk(ojson delta, const char* finish, ojson microlm) {
        if (first_) {
            // OpenAI sends the role once, on the first chunk, ahead of any content.
            ojson with_role = {{"role", "assistant"}};
            with_role.update(delta);
            delta = std::move(with_role);
            first_ = false;
        }
        ojson choice = {{"index", 0},
                        {"delta", std::move(delta)},
                        {"logprobs", nullptr},
                        {"finish_reason", finish ? ojson(finish) : ojson(nullptr)}};
        return {{"id", job_.id},
                {"object", "chat.completion.chunk"},
                {"created", job_.created},
                {"model", model_},
                {"choices", ojson::array({std::move(choice)})},
                {"microlm", std::move(microlm)}};
    }

    void send(const std::optional<std::string>& text, WireTag tag, ojson extra) {
        ojson m = {{"source", tag.source}, {"event", tag.event}};
        for (auto& [k, v] : extra.items()) m[k] = v;
        ojson delta = ojson::object();
        if (text) {
            delta["content"] = *text;
            shown_ += *text;
            last_source_ = tag.source;
        }
        metrics_.count_event(tag.event);
        write_("data: " + http::dump(chunk(std::move(delta), nullptr, std::move(m))) + "\n\n");
    }

    const ChatJob& job_;
    const std::string& model_;
    GatewayMetrics& metrics_;
    std::function<void(const std::string&)> write_;
    bool first_ = true;
    bool pivot_pending_ = false;
    bool error_sent_ = false;
    std::string shown_;
    std::string last_source_ = "local";
};

}  // namespace

ChatJob Gateway::Impl::parse_chat(const std::string& text) const {
    const json body = http::parse_body(text);
    ChatJob job;
    job.history = http::parse_messages(body);
    if (job.history.back().role != "user")
        throw BadRequest("the last message in 'messages' must be the user's: the gateway answers it",
                         "messages");
    if (auto v = http::bool_field(body, "stream")) job.stream = *v;
    if (auto n = http::integer_field(body, "n"); n && *n != 1)
        throw BadRequest("'n' must be 1: the gateway writes one reply", "n");

    TurnConfig& t = job.turn;
    t.mode = cfg.mode;
    t.send_continue_fields = cfg.send_continue_fields;
    t.modality = cfg.default_modality;
    t.check = cfg.check;
    t.max_tokens = cfg.default_max_tokens;
    t.temperature = cfg.default_temperature;
    for (const char* key : {"max_tokens", "max_completion_tokens"})
        if (auto v = http::integer_field(body, key)) {
            if (*v < 1 || *v > cfg.max_max_tokens)
                throw BadRequest(
                    std::string("'") + key + "' must be between 1 and " + std::to_string(cfg.max_max_tokens),
                    key);
            t.max_tokens = *v;
        }
    if (auto v = http::number_field(body, "temperature")) {
        if (*v < 0 || *v > 2) throw BadRequest("'temperature' must be between 0 and 2", "temperature");
        t.temperature = static_cast<float>(*v);
    }
    if (auto v = http::integer_field(body, "seed")) t.seed = static_cast<uint64_t>(*v);

    if (body.contains("microlm") && !body["microlm"].is_null()) {
        const json& m = body["microlm"];
        if (!m.is_object()) throw BadRequest("'microlm' must be an object", "microlm");
        for (const auto& [key, value] : m.items()) {
            const std::string field = "microlm." + key;
            if (key == "modality") {
                if (!value.is_string() || (value != "speech" && value != "text"))
                    throw BadRequest("'" + field + "' must be \"speech\" or \"text\"", field);
                t.modality = value == "speech" ? Modality::kSpeech : Modality::kText;
            } else if (key == "cloud_delay_ms") {
                if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
                    value.get<int64_t>() > cfg.max_cloud_delay_ms)
                    throw BadRequest("'" + field + "' must be an integer between 0 and " +
                                         std::to_string(cfg.max_cloud_delay_ms),
                                     field);
                t.cloud_delay_ms = value.get<int>();
            } else if (key == "pace") {
                if (!value.is_boolean()) throw BadRequest("'" + field + "' must be true or false", field);
                job.pace = value.get<bool>();
            } else if (key == "check") {
                const auto signal = value.is_string() ? parse_check_signal(value.get<std::string>()) : std::nullopt;
                if (!signal)
                    throw BadRequest("'" + field + "' must be one of \"off\", \"likelihood\", \"pmi\", \"any\", \"all\"",
                                     field);
                t.check.signal = *signal;
            } else {
                throw BadRequest("unknown field '" + field + "' (known: modality, cloud_delay_ms, check, pace)", field);
            }
        }
    }
    return job;
}

void Gateway::Impl::chat_completions(const http::Request& req, http::Response& res) {
    const auto received = Clock::now();
    // JSON only: a web page elsewhere can send a form or text/plain POST to a loopback address
    // without the browser asking first; a JSON one needs a CORS preflight, which this server
    // never grants. So no other origin can spend the cloud key through a user's browser.
    std::string type = req.header("Content-Type");
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
    if (type.rfind("application/json", 0) != 0) {
        metrics.count_rejected("bad_request");
        return http::send_error(res, 415, "send the request body as JSON, with Content-Type: application/json",
                                "invalid_request_error");
    }
    ChatJob job;
    try {
        job = parse_chat(req.body);
    } catch (const BadRequest& e) {
        metrics.count_rejected("bad_request");
        return http::send_error(res, 400, e.what(), "invalid_request_error", e.param);
    }
    // Up to 1 + max_waiting turns are in flight (computing, waiting for the local model, or
    // waiting for their cloud). Beyond that a request is refused at once.
    if (queued.fetch_add(1) >= 1 + cfg.max_waiting) {
        queued.fetch_sub(1);
        metrics.count_rejected("busy");
        res.set_header("Retry-After", "1");
        return http::send_error(
            res, 503,
            "the gateway is busy: " + std::to_string(cfg.max_waiting + 1) + " turns are already in flight",
            "server_error", {}, "busy");
    }
    job.slot = std::make_shared<QueueSlot>(queued);
    job.id = "chatcmpl-microlm-" + std::to_string(next_id++);
    job.created = http::unix_now_s();
    job.received = received;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto shared = std::make_shared<ChatJob>(std::move(job));
    // Both kinds of answer are written while the turn runs, so that a client that goes away is
    // noticed (a failed write) and its turn cancelled instead of holding the local model.
    res.set_stream(shared->stream ? "text/event-stream" : "application/json",
                   [this, shared](http::BodyWriter& sink) {
                       if (shared->stream)
                           stream_turn(*shared, sink);
                       else
                           whole_turn(*shared, sink);
                   });
}

namespace {

// The client end of a turn's answer: writes to the sink until one fails, and then (or when the
// gateway shuts down) requests the turn's stop, which cancels its cloud call.
class ClientSink {
public:
    ClientSink(http::BodyWriter& sink, std::stop_token shutdown)
        : sink_(sink), on_shutdown_(std::move(shutdown), [this] { stop_.request_stop(); }) {}
    void write(const std::string& s) {
        if (gone_) return;
        if (!sink_.write(s)) {
            gone_ = true;
            stop_.request_stop();
        }
    }
    std::stop_token stop_token() const { return stop_.get_token(); }

private:
    http::BodyWriter& sink_;
    std::stop_source stop_;
    bool gone_ = false;
    std::stop_callback<std::function<void()>> on_shutdown_;
};

// Runs the job's turn and records what the metrics and the log need. The turn takes one of the
// local slots, locked only while it computes (inside run_turn); each turn has its own cloud
// client, so the cloud calls of different turns run side by side.
Outcome run_job(Gateway::Impl& g, ChatJob& job, const std::function<void(const TurnEvent&)>& on_event,
                std::stop_token stop) {
    Outcome o;
    {
        ++g.running;
        const double admitted_ms = Stopwatch::ms_between(job.received, Clock::now());
        try {
            const CloudClient cloud(g.cfg.cloud);
            LocalSlot& slot = g.pick_slot();
            o.r = run_turn(*slot.opener, cloud, job.history, job.turn, on_event, stop, &slot.mutex);
        } catch (const std::exception& e) {
            o.error_kind = "internal";
            o.error_message = http::kInternalErrorMessage;
            g.log("turn " + job.id + ": internal error: " + http::printable(e.what()));
        }
        o.queue_ms = admitted_ms + o.r.timings.local_wait_ms;
        --g.running;
    }
    // The place in the queue is given back before the client can see the end of this turn, so
    // that its next request never finds the slot still taken.
    job.slot.reset();
    if (o.r.error) {
        o.error_kind = std::string(cloud_error_kind_name(*o.r.error));
        o.error_message = o.r.error_message.empty() ? "the cloud request failed" : o.r.error_message;
    }

    const TurnTimings& t = o.r.timings;
    g.metrics.count_turn(o.r.verdict ? verdict_name(*o.r.verdict) : "none");
    if (!o.error_kind.empty()) g.metrics.count_cloud_error(o.error_kind);
    if (t.first_word_ms >= 0) g.metrics.observe_first_word_ms(o.queue_ms + t.first_word_ms);
    if (t.stall_ms >= 0) g.metrics.observe_stall_ms(t.stall_ms);
    if (t.cloud_first_token_ms >= 0) g.metrics.observe_cloud_first_token_ms(t.cloud_first_token_ms);
    if (o.error_kind.empty()) g.cloud_wait.observe(cloud_wait_ms(o.r));
    g.metrics.observe_total_ms(o.queue_ms + t.total_ms);

    char line[512];
    std::snprintf(
        line, sizeof line,
        "turn %s: first word %.1f ms (queued %.1f), opener %.1f ms (%zu words%s), cloud first token %.0f ms, "
        "stall %.0f ms, verdict %s, total %.0f ms",
        job.id.c_str(), t.first_word_ms < 0 ? -1.0 : o.queue_ms + t.first_word_ms, o.queue_ms, t.opener_ms,
        o.r.opener.words.size(), o.r.opener.hedged ? ", hedged" : "", t.cloud_first_token_ms, t.stall_ms,
        o.r.verdict ? std::string(verdict_name(*o.r.verdict)).c_str() : "none", o.queue_ms + t.total_ms);
    g.log(line + (o.error_kind.empty() ? std::string() : ", error " + o.error_kind + ": " + o.error_message));
    return o;
}

}  // namespace

void Gateway::Impl::stream_turn(ChatJob& job, http::BodyWriter& sink) {
    ClientSink client(sink, shutdown.get_token());
    ChunkStream out(job, cfg.model_name, metrics, [&](const std::string& s) { client.write(s); });
    // The turn's events reach the client at the pace (from the pacer's thread); a client that
    // leaves flushes the queue, and the turn is cancelled as before.
    const PaceConfig pace = job.pace ? PaceConfig::from_flag(cfg.pace_wpm, job.turn.modality) : PaceConfig{};
    if (cfg.size_opener_quantile > 0)
        job.turn.opener_length = size_opener(cloud_wait.quantile(cfg.size_opener_quantile), pace, cfg.opener.min_words,
                                             cfg.opener.max_words, cfg.max_opener_words);
    Pacer pacer(pace, [&](const TurnEvent& e) { out.event(e); }, client.stop_token());
    std::optional<LiveSpeaker> speaker;
    if (!cfg.speak_dir.empty()) speaker.emplace(cfg.voice);
    Outcome o = run_job(
        *this, job,
        [&](const TurnEvent& e) {
            pacer.push(e);
            if (speaker) say_event(*speaker, e);
        },
        client.stop_token());
    if (speaker) {
        const AudioTimeline& audio = speaker->finish();
        o.first_sound_ms = audio.first_sound_ms();
        o.longest_audio_wait_ms = audio.longest_wait_ms();
        try {
            audio.write_wav(cfg.speak_dir + "/" + job.id + ".wav");
        } catch (const std::exception& e) {
            log(std::string("speech: ") + e.what());
        }
    }
    pacer.finish();
    o.visible_stall_ms = pacer.visible_stall_ms();
    out.finish(o);
}

void Gateway::Impl::whole_turn(ChatJob& job, http::BodyWriter& sink) {
    // While the turn runs, a space (whitespace before a JSON value is allowed) is written at most
    // every 250 ms as a turn event arrives: a write that fails says the client has gone.
    ClientSink client(sink, shutdown.get_token());
    auto last_probe = Clock::now();
    ojson events = ojson::array();
    const Outcome o = run_job(
        *this, job,
        [&](const TurnEvent& e) {
            const WireTag tag = wire_tag(e.kind);
            metrics.count_event(tag.event);
            if (Clock::now() - last_probe > std::chrono::milliseconds(250)) {
                last_probe = Clock::now();
                client.write(" ");
            }
            if (e.kind == TurnEvent::Kind::kError) return;  // reported once, in "error"
            events.push_back({{"source", tag.source}, {"event", tag.event}, {"text", e.text}});
        },
        client.stop_token());
    ojson m = {{"source", o.r.cloud_used && o.error_kind.empty() ? "cloud" : "local"},
               {"event", "done"},
               {"events", std::move(events)}};
    add_summary(m, o);
    ojson choice = {{"index", 0},
                    {"message", {{"role", "assistant"}, {"content", o.r.text}}},
                    {"logprobs", nullptr},
                    {"finish_reason", "stop"}};
    const ojson out = {{"id", job.id},
                       {"object", "chat.completion"},
                       {"created", job.created},
                       {"model", cfg.model_name},
                       {"choices", ojson::array({std::move(choice)})},
                       {"microlm", std::move(m)}};
    client.write(http::dump(out));
}

}  // namespace microlm
