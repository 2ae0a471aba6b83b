// `microlm serve`: the edge gateway (an OpenAI-compatible server with instant openers, the web
// demo, /health and /metrics). Prints the address it listens on as its first stdout line and
// logs one line per request and per turn on stderr. The gateway itself is the library's Gateway.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include "commands.h"
#include "microlm/error.h"
#include "microlm/gateway.h"
#include "microlm/speech.h"

#ifndef MICROLM_WEB_DIR
#define MICROLM_WEB_DIR ""
#endif

namespace microlm::cli {
namespace {

Gateway* g_gateway = nullptr;  // for the signal handler: stop() only sets flags and shuts a socket

extern "C" void on_gateway_signal(int) {
    if (g_gateway) g_gateway->stop();
}

constexpr const char* kFooter =
    "Clients may add a \"microlm\" object to a chat request: {\"modality\": \"speech\"|\"text\", "
    "\"cloud_delay_ms\": N, \"check\": \"pmi\"}.\n"
    "modality: speech allows pivot only, text allows retract (default: --modality).\n"
    "check: the opener check's signal for this request (default: --check).\n"
    "cloud_delay_ms: an extra sleep between the opener and the cloud request, to play a slower network\n"
    "(the web demo's slider); at most --max-cloud-delay-ms. Every chunk carries a \"microlm\" object\n"
    "(source, event, timings on the last one): see docs/GATEWAY.md.\n"
    "The bearer token (--token-env) guards /v1/* and /metrics; the demo page and /health stay open.";

}  // namespace

void register_serve(CLI::App& app) {
    auto* cmd = app.add_subcommand("serve",
                                   "The edge gateway: OpenAI chat completions with instant local openers, a "
                                   "web demo, /health, /metrics");
    cmd->footer(kFooter);
    struct Opts {
        GatewayConfig g;
        std::string mode = "instruct", modality = "text", web_dir = MICROLM_WEB_DIR;
        bool no_hedge = false, quiet = false, no_continue_fields = false;
        size_t max_body_kib = 256;
        int turn_timeout_s = 120;
    };
    auto o = std::make_shared<Opts>();
    GatewayConfig& g = o->g;
    cmd->add_option("-m,--model", g.model_path, "The local μLM (GGUF, Llama architecture)")->required();
    cmd->add_option("--cloud", g.cloud.base_url,
                    "The cloud continuator: an OpenAI-compatible base URL (e.g. http://127.0.0.1:8081 for "
                    "serve-model)")
        ->required();
    cmd->add_option("--cloud-model", g.cloud.model,
                    "Model name sent to the cloud (default: none, the server's own)");
    cmd->add_option("--api-key-env", g.cloud.api_key_env,
                    "NAME of the environment variable holding the cloud's API key (read at each request; "
                    "never logged or shown)");
    cmd->add_option("--mode", o->mode,
                    "prefill: the cloud continues a final assistant message (serve-model, llama.cpp, vLLM); "
                    "instruct: a continuator system prompt and a keep/pivot/retract tag (any chat API)")
        ->capture_default_str()
        ->check(CLI::IsMember({"prefill", "instruct"}));
    cmd->add_option("--modality", o->modality,
                    "Modality of requests that do not say: speech (pivot only) | text (retract allowed)")
        ->capture_default_str()
        ->check(CLI::IsMember({"speech", "text"}));
    add_check_options(cmd, g.check);
    cmd->add_option("--host", g.host,
                    "Address to bind (loopback by default; use --token-env before exposing it)")
        ->capture_default_str();
    cmd->add_option("--port", g.port, "Port; 0 picks a free one (printed on the first line)")
        ->capture_default_str()
        ->check(CLI::Range(0, 65535));
    cmd->add_option("--token-env", g.token_env,
                    "NAME of the environment variable holding a bearer token that /v1/* and /metrics require "
                    "(default: no token)");
    cmd->add_option("--web-dir", o->web_dir,
                    "Directory of the web demo served at / (default: the source tree's web/)")
        ->capture_default_str();
    cmd->add_option("--model-name", g.model_name,
                    "Model id reported to clients (default: the local file name without .gguf)");
    cmd->add_option("-t,--threads", g.threads, "Threads for the local model")
        ->capture_default_str()
        ->check(CLI::Range(1, 256));
    add_pace_options(cmd, g.pace_wpm, g.size_opener_quantile, g.max_opener_words,
                     "; streamed replies only, and a request may send \"microlm\": {\"pace\": false}",
                     "--expected-cloud-wait-ms");
    cmd->add_option("--expected-cloud-wait-ms", g.expected_cloud_wait_ms,
                    "The cloud's wait assumed before any turn measured it (--size-opener)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 600000.0));
    cmd->add_option("--local-slots", g.local_slots,
                    "Contexts over the local model's one copy of the weights: this many turns compute "
                    "their openers at once (set it to the cores you give the gateway; each adds one KV cache)")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("-c,--ctx-size", g.n_ctx, "Local context size in tokens (at most the model's)")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{64}, int64_t{1} << 20));
    cmd->add_option("--min-words", g.opener.min_words,
                    "Opener: stop at a clause boundary only after this many words")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("--max-words", g.opener.max_words, "Opener: stop at this many words")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    add_opener_prompt_option(cmd, g.opener.max_prompt_tokens);
    cmd->add_flag(
        "--no-hedge", o->no_hedge,
        "Never replace an unsure opener by a neutral phrase; each word is then sent as soon as it is decoded "
        "(with the hedge on, the opener's words wait until it is judged)");
    cmd->add_option("-n,--max-tokens", g.default_max_tokens,
                    "Cloud continuation tokens when a request gives no max_tokens")
        ->capture_default_str()
        ->check(CLI::Range(int64_t{1}, int64_t{100000}));
    cmd->add_option("--temp", g.default_temperature, "Cloud temperature when a request gives none")
        ->capture_default_str()
        ->check(CLI::Range(0.0f, 2.0f));
    cmd->add_option("--speak-to", g.speak_dir,
                    "Also say each streamed turn with espeak-ng (on the gateway's own clock, as a speaker beside "
                    "it would) and write it as DIR/<id>.wav; the last chunk's timings add first_sound_ms and "
                    "longest_audio_wait_ms")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--max-cloud-delay-ms", g.max_cloud_delay_ms,
                    "Largest \"microlm\": {\"cloud_delay_ms\"} a request may ask for")
        ->capture_default_str()
        ->check(CLI::Range(0, 600000));
    cmd->add_option("--connect-timeout-ms", g.cloud.connect_timeout_ms, "Cloud connect timeout")
        ->capture_default_str()
        ->check(CLI::Range(1, 600000));
    cmd->add_option("--first-byte-timeout-ms", g.cloud.first_byte_timeout_ms,
                    "Cloud time limit from the request to the first byte")
        ->capture_default_str()
        ->check(CLI::Range(1, 600000));
    cmd->add_option("--stall-timeout-ms", g.cloud.stall_timeout_ms,
                    "Cloud time limit between bytes once the answer flows")
        ->capture_default_str()
        ->check(CLI::Range(1, 600000));
    cmd->add_option("--cloud-retries", g.cloud.retries,
                    "Extra cloud attempts, only before any cloud text was shown")
        ->capture_default_str()
        ->check(CLI::Range(0, 10));
    cmd->add_flag(
        "--no-continue-fields", o->no_continue_fields,
        "Prefill: do not send vLLM's continue_final_message fields (for APIs that reject unknown fields)");
    cmd->add_option("--max-body-kib", o->max_body_kib, "Largest request body in KiB (larger: 413)")
        ->capture_default_str()
        ->check(CLI::Range(size_t{1}, size_t{1} << 20));
    cmd->add_option("--read-timeout-s", g.read_timeout_s,
                    "A request's line and headers must arrive within this many seconds (its body within 3x)")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    cmd->add_option("--turn-timeout-s", o->turn_timeout_s,
                    "A turn's cloud call ends (error 'timeout', then the local close) after this many seconds "
                    "in all, retries included: a cloud that only trickles cannot hold a turn longer")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    cmd->add_option("--max-waiting", g.max_waiting,
                    "Turns in flight beyond the first: waiting for the local model or for their cloud (more: 503)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1000));
    cmd->add_flag("-q,--quiet", o->quiet, "No request and turn log on stderr");
    cmd->callback([o] {
        GatewayConfig cfg = o->g;
        cfg.mode = o->mode == "prefill" ? ContinuationMode::kPrefill : ContinuationMode::kInstruct;
        cfg.default_modality = o->modality == "speech" ? Modality::kSpeech : Modality::kText;
        if (!cfg.speak_dir.empty()) speech_sample_rate();  // fails now, not on the first turn, without espeak-ng
        cfg.opener.hedge = !o->no_hedge;
        cfg.opener.stream_before_confident = o->no_hedge;  // nothing to judge: no reason to hold words
        cfg.send_continue_fields = !o->no_continue_fields;
        if (cfg.opener.min_words > cfg.opener.max_words)
            throw Error("--min-words must not exceed --max-words");
        cfg.max_body_bytes = o->max_body_kib << 10;
        cfg.cloud.total_timeout_ms = o->turn_timeout_s * 1000;
        cfg.web_dir = o->web_dir;
        if (!cfg.web_dir.empty() && !std::filesystem::is_directory(cfg.web_dir) &&
            o->web_dir == MICROLM_WEB_DIR) {
            std::fprintf(stderr,
                         "microlm serve: no web demo at %s (pass --web-dir DIR); serving the API only\n",
                         cfg.web_dir.c_str());
            cfg.web_dir.clear();
        }
        if (!o->quiet)
            cfg.log = [](std::string_view line) {
                std::fprintf(stderr, "microlm serve: %.*s\n", static_cast<int>(line.size()), line.data());
                std::fflush(stderr);
            };
        Gateway gateway(cfg);
        g_gateway = &gateway;
        std::signal(SIGINT, on_gateway_signal);
        std::signal(SIGTERM, on_gateway_signal);
        gateway.run([&](int port) {
            std::printf("listening on http://%s:%d (local %s, cloud %s, %s mode)\n", cfg.host.c_str(), port,
                        gateway.model_name().c_str(),
                        cfg.cloud.model.empty() ? "(server default)" : cfg.cloud.model.c_str(),
                        o->mode.c_str());
            std::fflush(stdout);
        });
        g_gateway = nullptr;
    });
}

}  // namespace microlm::cli
