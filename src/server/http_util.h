// What both HTTP servers (serve-model and the serve gateway) share: OpenAI's error object, the
// request checks that name the offending field, chat message parsing and binding a port.
// Not a framework: each server keeps its own routes and response shapes.
#pragma once

#include <httplib.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "microlm/chat.h"
#include "microlm/error.h"

namespace microlm::http {

using json = nlohmann::json;

// A client error: becomes a 400 with OpenAI's error object; `param` names the field ("" = none).
struct BadRequest : Error {
    explicit BadRequest(const std::string& message, std::string field = {})
        : Error(message), param(std::move(field)) {}
    std::string param;
};

// JSON text with invalid UTF-8 replaced: model text is valid, but an echoed prompt may not be.
std::string dump(const json& j);
std::string dump(const nlohmann::ordered_json& j);  // responses whose field order is for people to read

// {"error": {"message", "type", "param", "code"}} as OpenAI sends it.
json error_body(const std::string& message, const std::string& type, const std::string& param = {},
                const std::string& code = {});
void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = {}, const std::string& code = {});

// Replies to statuses no handler wrote a body for (404, 413, ...) with an OpenAI error object,
// and to exceptions escaping a handler with a 500 one whose message is generic: the exception's
// text goes to `log` (when given), never to the client.
void install_error_handlers(httplib::Server& server, std::function<void(const std::string&)> log = {});

// One thread per connection, at most `max_threads` at once (the rest wait for one to end),
// instead of the library's fixed pool of max(8, cores - 1): a few slow or idle clients (a
// slowloris holding its headers open, streams waiting on a slow cloud) no longer starve
// /health and new requests. Installed by bind() on both servers.
class ConnectionThreads : public httplib::TaskQueue {
public:
    explicit ConnectionThreads(size_t max_threads) : max_(max_threads) {}
    ~ConnectionThreads() override { shutdown(); }
    void enqueue(std::function<void()> fn) override;
    void shutdown() override;  // waits for every connection's thread to end

private:
    void run(std::function<void()> fn);

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> waiting_;
    size_t running_ = 0;
    size_t max_;
};
inline constexpr size_t kMaxConnectionThreads = 256;

// The message a client gets for a failure inside the server; the details are logged.
inline constexpr const char* kInternalErrorMessage = "internal server error (the server log has the details)";

// `s` fit for one log line: control characters (CR, LF, ESC, ...) and DEL written as \xNN, so a
// request path cannot forge a line or move the cursor.
std::string printable(std::string_view s);

// The request body as a JSON object, or BadRequest.
json parse_body(const std::string& body);

// body[key] when present and not null; BadRequest naming `key` when of the wrong kind.
std::optional<double> number_field(const json& body, const char* key);
std::optional<int64_t> integer_field(const json& body, const char* key);
std::optional<bool> bool_field(const json& body, const char* key);

// A message's content: a string, null, or an array of {"type": "text", "text": ...} parts.
std::string content_text(const json& content);

// body["messages"]: a non-empty array of {role, content}; "developer" is read as "system".
std::vector<ChatMessage> parse_messages(const json& body);

int64_t unix_now_s();

// Binds host:port (port 0: any free port) and returns the bound port; throws Error naming
// `who` and the address when that fails.
int bind(httplib::Server& server, const std::string& host, int port, const std::string& who);

}  // namespace microlm::http
