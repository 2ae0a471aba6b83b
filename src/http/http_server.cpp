// The HTTP/1.1 server (microlm/http_server.h): Beast's request parser fed from our own
// non-blocking sockets, every read and write bounded by a deadline that poll() enforces, a
// detached thread per connection up to max_connections, and a lingering close after an error so
// that the client reads the answer before the socket goes.
#include "microlm/http_server.h"

// GCC 12 at -O2 with the sanitizers reports boost::optional inside Beast 1.74's parser as maybe
// uninitialized once inlined here (a known false positive of that pairing); nothing of ours is
// affected, and this file is the only one that includes Beast.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "microlm/error.h"

namespace microlm::http {
namespace {

namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

std::string_view sv(boost::beast::string_view v) {
    return {v.data(), v.size()};
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string trimmed_lower(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

// Percent-decodes a path; false on a malformed escape.
bool decode_path(std::string_view in, std::string& out) {
    out.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(in[i + 2])))
            return false;
        out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
    }
    return true;
}

const char* reason(int status) {
    switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 415: return "Unsupported Media Type";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        default: return "Status";
    }
}

std::string without_controls(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s)
        if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) out.push_back(c);
    return out;
}

}  // namespace

std::string_view find_header(const Headers& headers, std::string_view name) {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return v;
    return {};
}

bool Request::has_header(std::string_view name) const {
    return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto b = static_cast<unsigned char>(c);
        if (b < 0x20 || b == 0x7F) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", b);
            out += hex;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

void Response::set_header(std::string_view name, std::string_view value) {
    const std::string n = without_controls(name);
    for (auto& [k, v] : headers)
        if (iequals(k, n)) {
            v = without_controls(value);
            return;
        }
    headers.emplace_back(n, without_controls(value));
}

void Response::set_content(std::string content, std::string_view content_type) {
    body = std::move(content);
    stream = nullptr;
    set_header("Content-Type", content_type);
}

void Response::set_stream(std::string_view content_type, std::function<void(BodyWriter&)> producer) {
    body.clear();
    stream = std::move(producer);
    set_header("Content-Type", content_type);
}

bool inflate_body(std::string_view in, std::string_view encoding, size_t max_out, std::string& out,
                  bool& too_large, std::string& error) {
    out.clear();
    too_large = false;
    // gzip and zlib are told apart by their header (+32); "deflate" may also be sent raw.
    const bool gzip = iequals(encoding, "gzip") || iequals(encoding, "x-gzip");
    for (const int window : gzip ? std::vector<int>{15 + 16} : std::vector<int>{15 + 32, -15}) {
        z_stream z{};
        if (inflateInit2(&z, window) != Z_OK) {
            error = "the inflater could not start";
            return false;
        }
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        z.avail_in = static_cast<uInt>(in.size());
        out.clear();
        char buf[16384];
        int rc = Z_OK;
        while (rc == Z_OK) {
            z.next_out = reinterpret_cast<Bytef*>(buf);
            z.avail_out = sizeof buf;
            rc = inflate(&z, Z_NO_FLUSH);
            const size_t got = sizeof buf - z.avail_out;
            if (out.size() + got > max_out) {
                inflateEnd(&z);
                too_large = true;
                error = "the request body inflates past the size limit";
                return false;
            }
            out.append(buf, got);
            if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // input ended before the stream did
        }
        const bool ended = rc == Z_STREAM_END && z.avail_in == 0;
        inflateEnd(&z);
        if (ended) return true;
    }
    error = "the request body is not valid " + std::string(encoding) + " data";
    out.clear();
    return false;
}

// ---- RequestReader ----------------------------------------------------------------------------

struct RequestReader::Impl {
    explicit Impl(const ServerLimits& l) : limits(l) {
        parser.header_limit(static_cast<uint32_t>(std::min<size_t>(l.max_header_bytes, UINT32_MAX)));
        parser.body_limit(l.max_body_bytes);
        parser.eager(true);
    }
    const ServerLimits& limits;
    bhttp::request_parser<bhttp::string_body> parser;
    bool headers_checked = false;
    State state = State::kNeedMore;
    int status = 0;
    std::string message;

    State fail(int s, std::string m) {
        status = s;
        message = std::move(m);
        return state = State::kError;
    }

    // What Beast accepts but a server in front of users should not: a Transfer-Encoding other
    // than chunked (its body length would be guessed: a smuggling vector), a target that is
    // not a path.
    State check_headers() {
        headers_checked = true;
        const auto& m = parser.get();
        const auto te = m.find(bhttp::field::transfer_encoding);
        if (te != m.end() && trimmed_lower(sv(te->value())) != "chunked")
            return fail(501, "only 'Transfer-Encoding: chunked' is understood");
        const auto target = m.target();
        if (target.empty() || target.front() != '/') return fail(400, "the request target must be a path");
        return State::kNeedMore;
    }
};

RequestReader::RequestReader(const ServerLimits& limits) : impl_(std::make_unique<Impl>(limits)) {}
RequestReader::~RequestReader() = default;

RequestReader::State RequestReader::feed(std::string& in) {
    Impl& s = *impl_;
    while (s.state == State::kNeedMore && !in.empty()) {
        boost::beast::error_code ec;
        const size_t n = s.parser.put(boost::asio::const_buffer(in.data(), in.size()), ec);
        in.erase(0, n);
        if (ec && ec != bhttp::error::need_more) {
            if (ec == bhttp::error::header_limit)
                return s.fail(431, "the request line and headers are larger than " +
                                       std::to_string(s.limits.max_header_bytes >> 10) + " KiB");
            if (ec == bhttp::error::body_limit)
                return s.fail(413, "the request body is larger than " +
                                       std::to_string(s.limits.max_body_bytes >> 10) + " KiB");
            return s.fail(400, "malformed HTTP request: " + ec.message());
        }
        if (s.parser.is_header_done() && !s.headers_checked && s.check_headers() == State::kError) return s.state;
        if (s.parser.is_done()) return s.state = State::kDone;
        if (ec == bhttp::error::need_more || n == 0) break;
    }
    return s.state;
}

bool RequestReader::header_done() const {
    return impl_->parser.is_header_done();
}

bool RequestReader::expects_continue() const {
    const auto& p = impl_->parser;
    if (!p.is_header_done() || p.is_done()) return false;
    const auto& m = p.get();
    const auto e = m.find(bhttp::field::expect);
    return e != m.end() && trimmed_lower(sv(e->value())) == "100-continue";
}

Request RequestReader::take() {
    Impl& s = *impl_;
    auto m = s.parser.release();
    Request r;
    r.method = std::string(sv(m.method_string()));
    r.target = std::string(sv(m.target()));
    r.keep_alive = m.keep_alive();
    for (const auto& f : m) r.headers.emplace_back(std::string(sv(f.name_string())), std::string(sv(f.value())));
    const std::string_view target = r.target;
    const size_t q = target.find('?');
    if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
    if (!decode_path(target.substr(0, q), r.path)) {
        s.fail(400, "the request path has a malformed %-escape");
        return {};
    }
    const std::string encoding = trimmed_lower(find_header(r.headers, "Content-Encoding"));
    if (encoding.empty() || encoding == "identity") {
        r.body = std::move(m.body());
    } else if (encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate") {
        bool too_large = false;
        std::string error;
        if (!inflate_body(m.body(), encoding, s.limits.max_body_bytes, r.body, too_large, error)) {
            s.fail(too_large ? 413 : 400,
                   too_large ? "the request body is larger than " + std::to_string(s.limits.max_body_bytes >> 10) +
                                   " KiB once inflated"
                             : error);
            return {};
        }
    } else {
        s.fail(415, "Content-Encoding '" + printable(encoding) + "' is not understood (gzip, deflate or none)");
        return {};
    }
    return r;
}

int RequestReader::error_status() const {
    return impl_->status;
}
const std::string& RequestReader::error_message() const {
    return impl_->message;
}

// ---- sockets ----------------------------------------------------------------------------------

namespace {

enum class Io { kOk, kEof, kTimeout, kError, kStopped };

int ms_until(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

// Reads what has arrived into `in`, waiting until `deadline` (in slices, so that a stop is seen).
Io read_some(int fd, std::string& in, Clock::time_point deadline, const std::atomic<bool>& stopping) {
    for (;;) {
        if (stopping) return Io::kStopped;
        const int left = ms_until(deadline);
        if (left == 0) return Io::kTimeout;
        pollfd p{fd, POLLIN, 0};
        const int r = poll(&p, 1, std::min(left, 100));
        if (r < 0 && errno != EINTR) return Io::kError;
        if (r <= 0) continue;
        char buf[16384];
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            in.append(buf, static_cast<size_t>(n));
            return Io::kOk;
        }
        if (n == 0) return Io::kEof;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return Io::kError;
    }
}

// Writes all of `data` unless the peer has gone or no progress was possible for timeout_ms.
bool write_all(int fd, std::string_view data, int timeout_ms) {
    while (!data.empty()) {
        const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            const int r = poll(&p, 1, timeout_ms);
            if (r > 0 && !(p.revents & (POLLERR | POLLHUP))) continue;
            if (r < 0 && errno == EINTR) continue;
        }
        return false;
    }
    return true;
}

// After an error answer the client may still be sending its body: closing at once would reset
// the connection and could destroy the answer before the client read it. So: stop writing, read
// and discard for a moment, then close.
void lingering_close(int fd) {
    shutdown(fd, SHUT_WR);
    const auto until = Clock::now() + std::chrono::milliseconds(500);
    size_t drained = 0;
    char buf[16384];
    while (drained < (4u << 20)) {
        pollfd p{fd, POLLIN, 0};
        const int left = ms_until(until);
        if (left == 0 || poll(&p, 1, left) <= 0) break;
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        drained += static_cast<size_t>(n);
    }
}

class ChunkedWriter : public BodyWriter {
public:
    ChunkedWriter(int fd, int timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {}
    bool write(std::string_view data) override {
        if (!ok_) return false;
        if (data.empty()) return true;
        char size[24];
        std::snprintf(size, sizeof size, "%zx\r\n", data.size());
        std::string chunk(size);
        chunk.append(data);
        chunk += "\r\n";
        ok_ = write_all(fd_, chunk, timeout_ms_);
        return ok_;
    }
    bool ok() const override { return ok_; }
    bool finish() { return ok_ && (ok_ = write_all(fd_, "0\r\n\r\n", timeout_ms_)); }

private:
    int fd_;
    int timeout_ms_;
    bool ok_ = true;
};

std::string default_error_body(int, const std::string& message) {
    std::string escaped;
    for (const char c : message) {
        if (c == '"' || c == '\\') escaped.push_back('\\');
        if (static_cast<unsigned char>(c) >= 0x20) escaped.push_back(c);
    }
    return "{\"error\":{\"message\":\"" + escaped + "\"}}";
}

}  // namespace

// ---- Server -----------------------------------------------------------------------------------

struct Server::Impl {
    explicit Impl(ServerLimits l) : limits(l) {}

    ServerLimits limits;
    std::map<std::pair<std::string, std::string>, Handler> routes;  // (method, path)
    Handler fallback;
    std::function<std::string(int, const std::string&)> error_body = default_error_body;
    std::function<void(const Request&, const Response&)> logger;
    std::function<void(const std::string&)> error_log;

    int listen_fd = -1;
    std::atomic<bool> stopping{false};
    std::atomic<bool> running{false};
    mutable std::mutex mu;
    std::condition_variable cv;
    size_t active = 0;

    Response error_response(int status, const std::string& message) const {
        Response r;
        r.status = status;
        r.set_content(error_body(status, message), "application/json");
        r.close = status == 400 || status == 408 || status == 413 || status == 431 || status == 501;
        return r;
    }

    // The methods routed for `path`, comma-separated ("" when the path is not routed at all).
    std::string allowed_methods(const std::string& path) const {
        std::string allow;
        for (const auto& [key, h] : routes)
            if (key.second == path) allow += (allow.empty() ? "" : ", ") + key.first;
        return allow;
    }

    void dispatch(const Request& req, Response& res) const {
        try {
            if (const auto it = routes.find({req.method, req.path}); it != routes.end()) {
                it->second(req, res);
            } else if (const std::string allow = allowed_methods(req.path); !allow.empty()) {
                res = error_response(405, "method " + printable(req.method) + " is not allowed here (allowed: " +
                                              allow + ")");
                res.set_header("Allow", allow);
            } else if (req.method == "GET" && fallback) {
                fallback(req, res);
            } else {
                res = error_response(404, "no such endpoint");
            }
        } catch (const std::exception& e) {
            if (error_log)
                error_log("internal error on " + printable(req.method) + " " + printable(req.path) + ": " +
                          printable(e.what()));
            res = error_response(500, kInternalErrorMessage);
        }
    }

    // Head and body (or head, then the producer's chunks); false when the client is gone.
    bool write_response(int fd, Response& res, bool keep_alive) {
        return write_response(fd, res, keep_alive, limits.write_timeout_ms);
    }
    bool write_response(int fd, Response& res, bool keep_alive, int timeout_ms) {
        std::string head = "HTTP/1.1 " + std::to_string(res.status) + " " + reason(res.status) + "\r\n";
        for (const auto& [k, v] : res.headers) {
            if (iequals(k, "Content-Length") || iequals(k, "Transfer-Encoding") || iequals(k, "Connection")) continue;
            head += k + ": " + v + "\r\n";
        }
        head += res.stream ? std::string("Transfer-Encoding: chunked\r\n")
                           : "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
        head += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
        if (!res.stream) return write_all(fd, head + res.body, timeout_ms);
        if (!write_all(fd, head, timeout_ms)) return false;
        ChunkedWriter w(fd, timeout_ms);
        try {
            res.stream(w);
        } catch (const std::exception& e) {
            // The status is sent: all that can be done is to end the connection unfinished.
            if (error_log) error_log(std::string("internal error in a streamed answer: ") + printable(e.what()));
            return false;
        }
        return w.finish();
    }

    void serve(int fd) {
        std::string in;
        bool first = true;
        while (!stopping) {
            RequestReader reader(limits);
            Request partial;  // for the log line of a request that failed before it was read
            partial.method = "-";
            bool started = !in.empty();
            Clock::time_point header_deadline =
                Clock::now() + std::chrono::milliseconds(started || first ? limits.header_timeout_ms
                                                                          : limits.idle_timeout_ms);
            Clock::time_point body_deadline{};
            bool sent_continue = false;
            auto state = started ? reader.feed(in) : RequestReader::State::kNeedMore;
            while (state == RequestReader::State::kNeedMore) {
                if (reader.header_done()) {
                    if (body_deadline == Clock::time_point{})
                        body_deadline = Clock::now() + std::chrono::milliseconds(limits.body_timeout_ms);
                    if (!sent_continue && reader.expects_continue()) {
                        sent_continue = true;
                        if (!write_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", limits.write_timeout_ms)) return;
                    }
                }
                const Io io = read_some(fd, in, reader.header_done() ? body_deadline : header_deadline, stopping);
                if (io == Io::kOk) {
                    if (!started) {
                        started = true;
                        header_deadline = Clock::now() + std::chrono::milliseconds(limits.header_timeout_ms);
                    }
                    state = reader.feed(in);
                    continue;
                }
                if (io == Io::kTimeout && started) {
                    Response res = error_response(408, reader.header_done()
                                                           ? "the request body did not arrive in time"
                                                           : "the request headers did not arrive in time");
                    write_response(fd, res, false);
                    if (logger) logger(partial, res);
                    lingering_close(fd);
                }
                return;  // the peer closed, idled out, failed, or the server stops
            }
            first = false;
            Request req;
            if (state == RequestReader::State::kDone) req = reader.take();
            if (reader.error_status() != 0) {
                Response res = error_response(reader.error_status(), reader.error_message());
                write_response(fd, res, false);
                if (logger) logger(partial, res);
                lingering_close(fd);
                return;
            }
            Response res;
            dispatch(req, res);
            const bool keep = req.keep_alive && !res.close && !stopping;
            const bool ok = write_response(fd, res, keep);
            if (logger) logger(req, res);
            if (!ok || !keep) {
                if (ok && res.close) lingering_close(fd);
                return;
            }
        }
    }

    void start_connection(int fd) {
        {
            std::lock_guard lock(mu);
            if (active >= limits.max_connections) {
                Response res = error_response(503, "the server is at its connection limit; try again shortly");
                res.set_header("Retry-After", "1");
                // Best effort and short: this must not hold up the accept loop.
                write_response(fd, res, false, 50);
                close(fd);
                return;
            }
            ++active;
        }
        std::thread([this, fd] {
            serve(fd);
            close(fd);
            std::lock_guard lock(mu);
            --active;
            cv.notify_all();
        }).detach();
    }
};

Server::Server(ServerLimits limits) : impl_(std::make_unique<Impl>(limits)) {}

Server::~Server() {
    stop();
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait(lock, [this] { return impl_->active == 0; });
    lock.unlock();
    if (impl_->listen_fd >= 0) close(impl_->listen_fd);
}

void Server::route(std::string method, std::string path, Handler handler) {
    impl_->routes[{std::move(method), std::move(path)}] = std::move(handler);
}
void Server::fallback_get(Handler handler) {
    impl_->fallback = std::move(handler);
}
void Server::set_error_body(std::function<std::string(int, const std::string&)> make) {
    impl_->error_body = std::move(make);
}
void Server::set_logger(std::function<void(const Request&, const Response&)> log) {
    impl_->logger = std::move(log);
}
void Server::set_error_log(std::function<void(const std::string&)> log) {
    impl_->error_log = std::move(log);
}

int Server::bind(const std::string& host, int port, const std::string& who) {
    const auto fail = [&](const std::string& why) {
        return Error(who + ": cannot listen on " + host + ":" + std::to_string(port) + " (" + why +
                     "); pick another --port or --host");
    };
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found) != 0 || !found)
        throw fail("not an address of this machine");
    int fd = -1;
    std::string why = "in use, or not an address of this machine";
    for (addrinfo* a = found; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        const int yes = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, impl_->limits.backlog) != 0) {
            why = std::strerror(errno);
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(found);
    if (fd < 0) throw fail(why);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    const int p = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (impl_->listen_fd >= 0) close(impl_->listen_fd);
    impl_->listen_fd = fd;
    return p;
}

void Server::run() {
    Impl& s = *impl_;
    if (s.listen_fd < 0) throw Error("Server::run before bind");
    s.running = true;
    while (!s.stopping) {
        pollfd p{s.listen_fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        const int fd = accept4(s.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            // Out of descriptors: back off instead of spinning; the kernel keeps the queue.
            if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        const int yes = 1;
        // Each opener word is its own small write: Nagle's algorithm would hold it back.
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        s.start_connection(fd);
    }
    std::unique_lock lock(s.mu);
    s.cv.wait(lock, [&] { return s.active == 0; });
    s.running = false;
}

void Server::stop() {
    impl_->stopping = true;
}

bool Server::is_running() const {
    return impl_->running;
}

size_t Server::open_connections() const {
    std::lock_guard lock(impl_->mu);
    return impl_->active;
}

}  // namespace microlm::http
