// `serve`: the edge gateway. An OpenAI-compatible chat-completions server whose replies are
// instant: the local μLM's opener streams at once and a cloud model continues it, each chunk
// tagged with a "microlm" object (docs/GATEWAY.md). Also the web demo, /health and /metrics.
// Not the cloud stand-in (model_server.h) and not the turn's logic (turn.h): this is the HTTP side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "microlm/cloud_client.h"
#include "microlm/handoff.h"
#include "microlm/opener.h"
#include "microlm/speech.h"
#include "microlm/turn.h"

namespace microlm {

struct GatewayConfig {
    // The local μLM.
    std::string model_path;
    std::string model_name;  // the id in responses, /v1/models and /health; default: the file's stem
    int threads = 1;
    int64_t n_ctx = 2048;  // KV cache positions (capped at the model's training context)
    // Contexts over the one copy of the weights: openers of this many turns compute at once
    // (each with `threads` threads). One KV cache each: n_ctx positions.
    int local_slots = 2;
    // Streamed replies are delivered at this many words per minute (the first word at once) so
    // that the opener covers the cloud's wait; < 0: the modality's pace (250 text, 160 speech);
    // 0: as fast as they come. A request can turn it off with "microlm": {"pace": false}.
    double pace_wpm = -1;
    // A paced opener is made long enough that its delivery covers this quantile of the cloud's
    // recent waits (first word to the cloud's first words; expected_cloud_wait_ms before any
    // turn), at most max_opener_words; 0: the opener's own length.
    double size_opener_quantile = 0.9;
    int max_opener_words = 12;
    double expected_cloud_wait_ms = 800;
    // Not empty: each streamed turn is also said with espeak-ng on the gateway's own timeline (as a
    // speaker beside it would play it) and written as <speak_dir>/<id>.wav; the last chunk's
    // timings get first_sound_ms and longest_audio_wait_ms.
    std::string speak_dir;
    VoiceConfig voice;
    OpenerConfig opener;

    // The cloud continuator. Its API key is read from the environment variable NAMED by
    // cloud.api_key_env at each request; it is never logged, echoed or shown.
    CloudConfig cloud;
    ContinuationMode mode = ContinuationMode::kPrefill;
    bool send_continue_fields = true;  // see TurnConfig
    Modality default_modality = Modality::kText;
    OpenerCheckConfig check;           // see TurnConfig; a request's "microlm": {"check"} picks the signal
    int64_t default_max_tokens = 160;  // cloud tokens when the request gives no max_tokens
    int64_t max_max_tokens = 4096;     // larger max_tokens are refused (400)
    float default_temperature = 0.7f;
    int max_cloud_delay_ms = 10000;  // the largest "microlm": {"cloud_delay_ms"} accepted

    // HTTP.
    std::string host = "127.0.0.1";  // loopback unless asked otherwise
    int port = 8080;                 // 0: the OS picks a free port; port() tells which
    // The NAME of the environment variable holding the bearer token that /v1/* and /metrics
    // require (read once, at construction); empty: no token. The demo page and /health stay open.
    std::string token_env;
    std::string web_dir;                // the demo's static files; empty: GET / answers 404
    size_t max_body_bytes = 256 << 10;  // larger requests get 413
    int max_waiting = 255;              // turns in flight beyond the first (on the local model or their cloud); beyond that, 503
    int read_timeout_s = 10;            // a client that stops sending its request is dropped

    // One line per request and per turn (never a token, key or message text); unset: silent.
    std::function<void(std::string_view)> log;
};

// Loads the local model, warms up its system prompt and checks the configuration at
// construction (throws microlm::Error: a missing model, an unset token or key variable, a web
// directory that is not one). Turns share one local Context: they run one at a time, in order.
class Gateway {
public:
    explicit Gateway(GatewayConfig cfg);
    ~Gateway();  // stops the server, cancels a running turn's cloud request, joins the thread
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    // Binds host:port (throws if that fails) and serves on a background thread; returns the port.
    int start();
    // Binds and serves on the calling thread until stop(); on_listening runs once bound.
    void run(const std::function<void(int)>& on_listening = {});
    void stop();  // safe from a signal handler: sets flags and shuts the listening socket

    int port() const;
    std::string base_url() const;  // "http://host:port"
    const std::string& model_name() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace microlm
