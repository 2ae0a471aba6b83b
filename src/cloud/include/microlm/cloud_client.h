// The cloud side of the handoff: a libcurl client for any OpenAI-compatible endpoint (chat and
// raw completions, streamed as server-sent events or not), with typed errors and timeouts that
// make every failure end promptly. Not here: what the prompt says or how text is stitched (handoff.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/chat.h"
#include "microlm/error.h"

namespace microlm {

enum class CloudErrorKind {
    kConfig,     // bad base URL, the API key's environment variable is unset, or libcurl cannot be loaded
    kRefused,    // nothing listens there (or the name does not resolve)
    kTimeout,    // connect, first byte, stall between bytes, or the overall cap
    kHttpStatus, // the server answered >= 300 (redirects are not followed) or sent an error object
    kReset,      // the connection broke, or the stream ended before [DONE], after text began
    kMalformed,  // the stream or body is not what the OpenAI API sends
    kCancelled,  // the caller asked to stop
};

std::string_view cloud_error_kind_name(CloudErrorKind k);  // "refused", "timeout", ...

// A URL as messages and logs may show it: scheme://host:port/path, without userinfo, query or
// fragment ("http://user:pw@h:8080/v1?key=k" -> "http://h:8080/v1").
std::string redact_url(std::string_view url);

// `text` with every secret replaced by "***": the API key, the userinfo of `url` (and its
// password alone), and the values of its query parameters named like a secret (key, token,
// secret, password, sig, auth). Done before any truncation, so no cut leaves part of one.
std::string mask_secrets(std::string_view text, const std::string& key, std::string_view url);

// Messages never contain the API key: a server's body excerpt has it masked.
struct CloudError : Error {
    CloudError(CloudErrorKind k, const std::string& message, int status = 0)
        : Error(message), kind(k), http_status(status) {}
    CloudErrorKind kind;
    int http_status;  // for kHttpStatus
};

struct CloudConfig {
    // "http://host:port" or ".../v1"; the endpoint paths are appended (/v1/chat/completions).
    std::string base_url = "http://127.0.0.1:8080";
    std::string model;
    // The NAME of the environment variable that holds the API key, read at each request; empty:
    // no Authorization header. The key goes only to base_url (redirects are not followed).
    std::string api_key_env;
    int connect_timeout_ms = 3000;
    int first_byte_timeout_ms = 10000;  // from the request to the first byte of the body, retries included
    int stall_timeout_ms = 10000;       // between body bytes, once they flow
    int total_timeout_ms = 120000;      // everything, retries included
    int retries = 1;                    // extra attempts, only while nothing reached the caller
    int retry_backoff_ms = 200;
    size_t max_response_bytes = 16 << 20;
};

struct CloudRequest {
    std::vector<ChatMessage> messages;  // chat
    std::string prompt;                 // raw completions
    int64_t max_tokens = 256;
    std::optional<float> temperature;
    std::optional<float> top_p;
    std::optional<uint64_t> seed;
    std::vector<std::string> stop;
    bool stream = true;
    // Chat: the last (assistant) message is to be continued. Sends vLLM's
    // continue_final_message / add_generation_prompt fields; servers that continue a trailing
    // assistant message by themselves (llama.cpp, microlm serve-model) ignore them.
    bool continue_final_message = false;
    // Raw completions: return the prompt before the completion and each token's log p (OpenAI's
    // legacy `echo` and `logprobs` fields; llama.cpp's and vLLM's servers, and serve-model, have
    // them). Sent only when set; with echo the prompt comes back in the text too.
    bool echo = false;
    std::optional<int> logprobs;
};

// A completions choice's `logprobs` object (OpenAI's legacy shape), as the server sent it.
struct CloudLogprobs {
    std::vector<std::string> tokens;
    std::vector<double> logprobs;  // NaN where the server sent null (the first prompt token)
    std::vector<int64_t> offsets;  // text_offset of each token; empty when the server sent none
};

struct CloudResult {
    std::string text;           // every delta, joined
    std::string finish_reason;  // as the server said ("stop", "length"), "" if it did not
    std::optional<CloudLogprobs> logprobs;  // completions, when asked for and sent (not streaming)
    int attempts = 0;
    double first_byte_ms = -1;   // from the call to the first body byte of the answering attempt
    double first_token_ms = -1;  // from the call to the first non-empty delta
    double total_ms = 0;
};

// One SSE stream, decoded incrementally: bytes in any split, lines ending in \n, \r\n or \r,
// "data:" with or without its one space, multi-line data joined by \n, comments (":...") and
// other fields ignored. An event is complete at its blank line.
class SseParser {
public:
    // The data of each event this push completed.
    std::vector<std::string> push(std::string_view bytes);
    // End of stream: an event still missing its blank line, if any data was read.
    std::optional<std::string> finish();
    bool saw_any_field() const { return saw_field_; }

private:
    void line(std::string_view l, std::vector<std::string>& out);

    std::string partial_;
    std::string data_;
    bool has_data_ = false;
    bool last_was_cr_ = false;
    bool saw_field_ = false;
};

// Thread-compatible (one request at a time per client; use one client per thread).
class CloudClient {
public:
    using OnDelta = std::function<void(std::string_view)>;

    explicit CloudClient(CloudConfig cfg);

    // POST /v1/chat/completions; on_delta gets each piece of content as it arrives (the whole
    // text at once when not streaming). Throws CloudError.
    CloudResult chat(const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop = {}) const;
    // POST /v1/completions with req.prompt.
    CloudResult complete(const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop = {}) const;

    const CloudConfig& config() const { return cfg_; }
    std::string endpoint(std::string_view path) const;  // base URL + "/v1" + path

private:
    CloudResult send(bool chat, const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop) const;

    CloudConfig cfg_;
};

}  // namespace microlm
