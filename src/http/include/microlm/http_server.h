// The HTTP/1.1 server under both of microlm's servers (serve-model and the serve gateway), built
// for a box exposed on a network: Boost.Beast's parser reads each request; the sockets, the
// deadlines, the limits and the threads are ours. A handler only ever sees a request read whole
// and within its limits:
//  - the body is capped as it arrives, after chunked framing and after gzip/deflate inflation,
//    so a small compressed body cannot grow into gigabytes;
//  - the request line and headers have a deadline from their first byte (no slowloris), the
//    body has its own, and an idle keep-alive connection is closed after a while;
//  - one thread per connection up to a bound; beyond it a connection gets a 503 at once;
//  - keep-alive with pipelining: bytes after one request are the start of the next;
//  - no Range support: every answer is whole (200, never 206).
// Not here: routes, auth or response shapes (src/server/), the OpenAI error object (the owner
// installs it with set_error_body).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace microlm::http {

// What a client is told of a failure inside the server; the details go to the error log.
inline constexpr const char* kInternalErrorMessage = "internal server error (the server log has the details)";

using Headers = std::vector<std::pair<std::string, std::string>>;

// The first value of header `name` (case-insensitive), or "" when absent.
std::string_view find_header(const Headers& headers, std::string_view name);

// `s` fit for one log line: control characters (CR, LF, ESC, NUL, ...) and DEL written as \xNN,
// so a request path cannot forge a line or move the cursor.
std::string printable(std::string_view s);

struct Request {
    std::string method;  // as sent: "GET", "POST", ...
    std::string target;  // as sent: path and query
    std::string path;    // percent-decoded, without the query
    std::string query;   // as sent, after '?'
    Headers headers;
    std::string body;  // inflated when it was sent gzip- or deflate-encoded
    bool keep_alive = true;

    std::string header(std::string_view name) const { return std::string(find_header(headers, name)); }
    bool has_header(std::string_view name) const;
};

// Where a streamed answer's body goes: each write() is sent as one chunk at once. It returns
// false once the client has gone (or a write stalled past the write deadline); nothing more is
// sent after that, so a producer can stop its work.
class BodyWriter {
public:
    virtual ~BodyWriter() = default;
    virtual bool write(std::string_view data) = 0;
    virtual bool ok() const = 0;
};

struct Response {
    int status = 200;
    Headers headers;  // besides Content-Length / Transfer-Encoding and Connection, which the server writes
    std::string body;
    std::function<void(BodyWriter&)> stream;  // set: the body is streamed (chunked) by this
    bool close = false;                       // close the connection after this answer

    // Control characters in a name or value are dropped (no header injection).
    void set_header(std::string_view name, std::string_view value);
    void set_content(std::string content, std::string_view content_type);
    void set_stream(std::string_view content_type, std::function<void(BodyWriter&)> producer);
};

struct ServerLimits {
    size_t max_body_bytes = 1 << 20;     // after inflation; a declared Content-Length over it: 413 at once
    size_t max_header_bytes = 16 << 10;  // request line and headers; over it: 431
    int header_timeout_ms = 10'000;      // from a request's first byte to the end of its headers: else 408
    int body_timeout_ms = 30'000;        // for the whole body once the headers are in: else 408
    int idle_timeout_ms = 30'000;        // a kept-alive connection waiting for its next request: closed
    int write_timeout_ms = 30'000;       // one write that cannot proceed this long: the client is gone
    size_t max_connections = 256;        // served at once; one more gets 503 and is closed
    int backlog = 1024;                  // the listen queue (the kernel may cap it at somaxconn)
};

// Reads requests from bytes as they arrive; what a connection runs, and what the fuzz target
// drives. One reader per request.
class RequestReader {
public:
    enum class State { kNeedMore, kDone, kError };
    explicit RequestReader(const ServerLimits& limits);
    ~RequestReader();
    RequestReader(const RequestReader&) = delete;
    RequestReader& operator=(const RequestReader&) = delete;

    // Consumes what it can from the front of `in`; the rest (the start of a pipelined request)
    // stays there.
    State feed(std::string& in);
    bool header_done() const;
    bool expects_continue() const;  // "Expect: 100-continue" and the body still to come
    Request take();                 // once feed() said kDone
    int error_status() const;       // once feed() said kError: 400, 408, 413, 415, 431 or 501
    const std::string& error_message() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// gzip or zlib/raw deflate `in` (per `encoding`: "gzip", "x-gzip" or "deflate"), stopping at
// `max_out` bytes. Returns false (and says why in `error`) on a broken stream or one that inflates
// past the cap (`too_large` set).
bool inflate_body(std::string_view in, std::string_view encoding, size_t max_out, std::string& out,
                  bool& too_large, std::string& error);

using Handler = std::function<void(const Request&, Response&)>;

class Server {
public:
    explicit Server(ServerLimits limits = {});
    ~Server();  // stops, then waits for every connection to end
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // An exact path for one method. Another method on a routed path gets 405.
    void route(std::string method, std::string path, Handler handler);
    // GETs of paths no route names (static files); without one they get 404.
    void fallback_get(Handler handler);
    // The body of the answers the server writes itself (errors: 400, 404, 405, 408, 413, 415,
    // 431, 500, 501, 503) as JSON; the default is {"error": {"message": ...}}.
    void set_error_body(std::function<std::string(int status, const std::string& message)> make);
    // After each answer was written (a stream: after its last byte).
    void set_logger(std::function<void(const Request&, const Response&)> log);
    // An exception that escaped a handler (the client gets a generic 500).
    void set_error_log(std::function<void(const std::string&)> log);

    // Binds host:port (port 0: any free port) and returns the port; throws Error naming `who`.
    int bind(const std::string& host, int port, const std::string& who);
    void run();  // the accept loop, until stop(); returns once every connection has ended
    void stop();  // safe from any thread; idle connections close, running handlers finish
    bool is_running() const;
    size_t open_connections() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace microlm::http
