// CloudClient over libcurl's multi interface: the transfer is polled every few milliseconds so
// that cancellation and the first-byte, stall and overall deadlines are ours to enforce exactly.
// Not here: prompts, stitching, recovery; the caller decides what a failure means for the turn.
#include "microlm/cloud_client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "curl_api.h"
#include "microlm/stopwatch.h"

namespace microlm {
namespace {

using json = nlohmann::json;
using Clock = Stopwatch::Clock;

// A short, printable excerpt of a server's body, secrets masked first (servers do echo requests),
// then cut on a character boundary: a cut never leaves half a key behind.
std::string excerpt(std::string_view body, const std::string& key, const std::string& url) {
    std::string s = mask_secrets(body, key, url);
    const bool cut = s.size() > 300;
    if (cut) {
        size_t n = 300;
        while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
        s.resize(n);
    }
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    if (cut) s += "...";
    return s;
}

// The state one attempt shares with libcurl's write callback.
struct Attempt {
    CURL* easy = nullptr;
    bool chat = true;
    bool stream = true;
    const CloudClient::OnDelta* on_delta = nullptr;
    CloudResult* result = nullptr;
    const std::string* key = nullptr;
    const std::string* url = nullptr;  // as requested (its userinfo is masked in messages)
    Clock::time_point call_start;
    size_t max_bytes = 0;
    int64_t max_deltas = 0;  // a stream is cut after this many text deltas (max_tokens): 0 = no cap

    long status = 0;
    SseParser sse;
    std::string body;  // the whole body (not streaming) or the start of an error body
    size_t bytes = 0;
    bool any_byte = false;
    Clock::time_point last_byte;
    bool delivered = false;  // a delta reached the caller: no retry from here on
    bool done = false;       // [DONE] seen, or the stream was cut at max_deltas
    bool cut = false;        // the cloud sent more than max_tokens deltas: read no further
    int64_t deltas = 0;
    std::optional<CloudError> error;
    std::exception_ptr caller_exception;

    std::stop_token stop;

    // Nothing reaches the caller after it asked to stop, even from data already received.
    void deliver(std::string_view text) {
        if (text.empty() || stop.stop_requested()) return;
        if (result->first_token_ms < 0) result->first_token_ms = Stopwatch::ms_between(call_start, Clock::now());
        delivered = true;
        result->text.append(text);
        if (*on_delta) (*on_delta)(text);
        // A cloud that ignores max_tokens is cut off here: each delta is at least one token.
        if (stream && max_deltas > 0 && ++deltas >= max_deltas) {
            cut = done = true;
            result->finish_reason = "length";
        }
    }

    // OpenAI's legacy {tokens, token_logprobs, text_offset}; the lists must agree in length.
    static CloudLogprobs parse_logprobs(const json& j) {
        const auto list = [&](const char* key) -> const json* {
            if (!j.contains(key) || j[key].is_null()) return nullptr;
            if (!j[key].is_array()) throw CloudError(CloudErrorKind::kMalformed, std::string("logprobs.") + key + " is not a list");
            return &j[key];
        };
        CloudLogprobs lp;
        const json* tokens = list("tokens");
        const json* values = list("token_logprobs");
        const json* offsets = list("text_offset");
        if (!tokens || !values || values->size() != tokens->size() || (offsets && offsets->size() != tokens->size()))
            throw CloudError(CloudErrorKind::kMalformed, "a logprobs object whose tokens and token_logprobs do not match");
        for (size_t i = 0; i < tokens->size(); ++i) {
            const json& t = (*tokens)[i];
            const json& v = (*values)[i];
            if (!t.is_string() || !(v.is_null() || v.is_number()) || (offsets && !(*offsets)[i].is_number_integer()))
                throw CloudError(CloudErrorKind::kMalformed, "a logprobs entry of the wrong type");
            lp.tokens.push_back(t.get<std::string>());
            lp.logprobs.push_back(v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.get<double>());
            if (offsets) lp.offsets.push_back((*offsets)[i].get<int64_t>());
        }
        return lp;
    }

    // One choice's text and finish reason, from a chunk or a whole response.
    void take_choice(const json& j, bool whole) {
        if (j.contains("error")) {
            const json& e = j["error"];
            std::string msg = e.is_object() && e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : e.dump();
            throw CloudError(CloudErrorKind::kHttpStatus, "the server reported an error: " + excerpt(msg, *key, *url), static_cast<int>(status));
        }
        if (!j.contains("choices") || !j["choices"].is_array())
            throw CloudError(CloudErrorKind::kMalformed, "a response without 'choices': " + excerpt(j.dump(), *key, *url));
        if (j["choices"].empty()) return;  // e.g. a usage-only chunk
        const json& c = j["choices"][0];
        const json* text = nullptr;
        if (chat) {
            const char* field = whole ? "message" : "delta";
            if (c.contains(field) && c[field].is_object() && c[field].contains("content")) text = &c[field]["content"];
        } else {
            if (c.contains("text")) text = &c["text"];
            if (whole && c.contains("logprobs") && c["logprobs"].is_object()) result->logprobs = parse_logprobs(c["logprobs"]);
        }
        if (text && !text->is_null()) {
            if (!text->is_string()) throw CloudError(CloudErrorKind::kMalformed, "a choice whose text is not a string");
            deliver(text->get_ref<const std::string&>());
        }
        if (!cut && c.contains("finish_reason") && c["finish_reason"].is_string()) result->finish_reason = c["finish_reason"].get<std::string>();
    }

    void event(const std::string& data) {
        std::string_view d = data;
        while (!d.empty() && (d.back() == ' ' || d.back() == '\n')) d.remove_suffix(1);
        if (d == "[DONE]") {
            done = true;
            return;
        }
        if (done) return;
        json j;
        try {
            j = json::parse(d);
        } catch (const json::exception&) {
            throw CloudError(CloudErrorKind::kMalformed, "a stream event that is not JSON: " + excerpt(d, *key, *url));
        }
        take_choice(j, false);
    }

    size_t write(const char* p, size_t n) {
        if (!any_byte) {
            any_byte = true;
            result->first_byte_ms = Stopwatch::ms_between(call_start, Clock::now());
            curl_api().easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
            // A login page or a proxy's error page answering 200 is not an event stream.
            const char* type = nullptr;
            curl_api().easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &type);
            if (stream && status < 300 && type && std::string_view(type).find("html") != std::string_view::npos) {
                error = CloudError(CloudErrorKind::kMalformed, "the response is not an event stream (Content-Type: " +
                                                                   excerpt(type, *key, *url) + ")");
                return 0;
            }
        }
        last_byte = Clock::now();
        bytes += n;
        if (bytes > max_bytes) {
            error = CloudError(CloudErrorKind::kMalformed, "the response is larger than " + std::to_string(max_bytes) + " bytes");
            return 0;
        }
        if (status >= 300 || !stream) {
            body.append(p, n);
            return n;
        }
        try {
            for (const std::string& data : sse.push({p, n})) {
                event(data);
                if (cut) return 0;  // ends the transfer; the result stands
            }
        } catch (const CloudError& e) {
            error = e;
            return 0;
        } catch (...) {
            caller_exception = std::current_exception();
            return 0;
        }
        return n;
    }

    static size_t on_write(char* p, size_t size, size_t n, void* self) { return static_cast<Attempt*>(self)->write(p, size * n); }
};

struct EasyHandle {
    CURL* h = curl_api().easy_init();
    curl_slist* headers = nullptr;
    ~EasyHandle() {
        curl_api().slist_free_all(headers);
        curl_api().easy_cleanup(h);
    }
};

struct MultiHandle {
    CURLM* h = curl_api().multi_init();
    CURL* added = nullptr;
    ~MultiHandle() {
        if (added) curl_api().multi_remove_handle(h, added);
        curl_api().multi_cleanup(h);
    }
};

bool retriable(const CloudError& e) {
    switch (e.kind) {
        case CloudErrorKind::kRefused:
        case CloudErrorKind::kReset:
        case CloudErrorKind::kTimeout:
            return true;
        case CloudErrorKind::kHttpStatus:
            return e.http_status == 429 || e.http_status >= 500;
        default:
            return false;
    }
}

}  // namespace

std::string redact_url(std::string_view url) {
    const size_t scheme_end = url.find("://");
    const size_t auth_begin = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
    const size_t auth_end = std::min(url.find_first_of("/?#", auth_begin), url.size());
    std::string_view authority = url.substr(auth_begin, auth_end - auth_begin);
    if (const size_t at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
    const size_t path_end = std::min(url.find_first_of("?#", auth_end), url.size());
    return std::string(url.substr(0, auth_begin)) + std::string(authority) +
           std::string(url.substr(auth_end, path_end - auth_end));
}

std::string mask_secrets(std::string_view text, const std::string& key, std::string_view url) {
    std::vector<std::string> secrets;
    if (!key.empty()) secrets.push_back(key);
    const size_t scheme_end = url.find("://");
    const size_t auth_begin = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
    const size_t auth_end = std::min(url.find_first_of("/?#", auth_begin), url.size());
    const std::string_view authority = url.substr(auth_begin, auth_end - auth_begin);
    if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
        const std::string_view userinfo = authority.substr(0, at);
        secrets.emplace_back(userinfo);
        if (const size_t colon = userinfo.find(':'); colon != std::string_view::npos && userinfo.size() - colon > 4)
            secrets.emplace_back(userinfo.substr(colon + 1));
    }
    if (const size_t q = url.find('?'); q != std::string_view::npos) {
        std::string_view query = url.substr(q + 1, url.find('#', q) == std::string_view::npos ? std::string_view::npos
                                                                                              : url.find('#', q) - q - 1);
        while (!query.empty()) {
            const size_t amp = query.find('&');
            const std::string_view pair = query.substr(0, amp);
            query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
            const size_t eq = pair.find('=');
            if (eq == std::string_view::npos || pair.size() - eq <= 4) continue;
            std::string name(pair.substr(0, eq));
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            for (const char* word : {"key", "token", "secret", "password", "sig", "auth"}) {
                if (name.find(word) != std::string::npos) {
                    secrets.emplace_back(pair.substr(eq + 1));
                    break;
                }
            }
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    std::sort(secrets.begin(), secrets.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    std::string out(text);
    for (const std::string& secret : secrets) {
        if (secret.empty()) continue;
        for (size_t p = 0; (p = out.find(secret, p)) != std::string::npos; p += 3) out.replace(p, secret.size(), "***");
    }
    return out;
}

std::string_view cloud_error_kind_name(CloudErrorKind k) {
    switch (k) {
        case CloudErrorKind::kConfig: return "config";
        case CloudErrorKind::kRefused: return "refused";
        case CloudErrorKind::kTimeout: return "timeout";
        case CloudErrorKind::kHttpStatus: return "http-status";
        case CloudErrorKind::kReset: return "reset";
        case CloudErrorKind::kMalformed: return "malformed";
        case CloudErrorKind::kCancelled: return "cancelled";
    }
    return "unknown";
}

// ---- SseParser ----------------------------------------------------------------------------

std::vector<std::string> SseParser::push(std::string_view bytes) {
    std::vector<std::string> out;
    for (char c : bytes) {
        // A \r\n pair is one line end: the \n after a \r has already ended the line.
        if (c == '\n' && last_was_cr_) {
            last_was_cr_ = false;
            continue;
        }
        last_was_cr_ = c == '\r';
        if (c == '\n' || c == '\r') {
            line(partial_, out);
            partial_.clear();
        } else {
            partial_.push_back(c);
        }
    }
    return out;
}

void SseParser::line(std::string_view l, std::vector<std::string>& out) {
    if (l.empty()) {
        if (has_data_) out.push_back(std::exchange(data_, {}));
        has_data_ = false;
        return;
    }
    if (l.front() == ':') return;  // a comment: servers send these as keep-alives
    const size_t colon = l.find(':');
    const std::string_view field = l.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    saw_field_ = true;
    if (field != "data") return;  // event, id, retry: nothing the OpenAI stream needs
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
}

std::optional<std::string> SseParser::finish() {
    std::vector<std::string> out;
    if (!partial_.empty()) line(std::exchange(partial_, {}), out);
    if (!has_data_) return std::nullopt;
    has_data_ = false;
    return std::exchange(data_, {});
}

// ---- CloudClient --------------------------------------------------------------------------

CloudClient::CloudClient(CloudConfig cfg) : cfg_(std::move(cfg)) {
    curl_api();  // libcurl loaded now: a missing library is an error here, not mid-request
    while (!cfg_.base_url.empty() && cfg_.base_url.back() == '/') cfg_.base_url.pop_back();
}

std::string CloudClient::endpoint(std::string_view path) const {
    const bool has_v1 = cfg_.base_url.size() >= 3 && cfg_.base_url.compare(cfg_.base_url.size() - 3, 3, "/v1") == 0;
    return cfg_.base_url + (has_v1 ? "" : "/v1") + std::string(path);
}

CloudResult CloudClient::chat(const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop) const {
    return send(true, req, on_delta, stop);
}

CloudResult CloudClient::complete(const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop) const {
    return send(false, req, on_delta, stop);
}

CloudResult CloudClient::send(bool chat, const CloudRequest& req, const OnDelta& on_delta, std::stop_token stop) const {
    const auto t0 = Clock::now();
    const std::string url = endpoint(chat ? "/chat/completions" : "/completions");
    const std::string shown = redact_url(url);  // what error messages name
    if (cfg_.base_url.rfind("http://", 0) != 0 && cfg_.base_url.rfind("https://", 0) != 0)
        throw CloudError(CloudErrorKind::kConfig, "cloud URL '" + redact_url(cfg_.base_url) + "' must start with http:// or https://");

    // Read at request time, so that a rotated key is picked up without restarting.
    std::string key;
    if (!cfg_.api_key_env.empty()) {
        const char* v = std::getenv(cfg_.api_key_env.c_str());
        if (!v || !*v)
            throw CloudError(CloudErrorKind::kConfig, "the API key's environment variable " + cfg_.api_key_env + " is not set");
        key = v;
    }

    json body = {{"stream", req.stream}, {"max_tokens", req.max_tokens}};
    if (!cfg_.model.empty()) body["model"] = cfg_.model;
    if (chat) {
        json msgs = json::array();
        for (const auto& m : req.messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
        body["messages"] = std::move(msgs);
        if (req.continue_final_message) {
            body["continue_final_message"] = true;
            body["add_generation_prompt"] = false;
        }
    } else {
        body["prompt"] = req.prompt;
        if (req.echo) body["echo"] = true;
        if (req.logprobs) body["logprobs"] = *req.logprobs;
    }
    if (req.temperature) body["temperature"] = *req.temperature;
    if (req.top_p) body["top_p"] = *req.top_p;
    if (req.seed) body["seed"] = *req.seed;
    if (!req.stop.empty()) body["stop"] = req.stop;
    const std::string payload = body.dump(-1, ' ', false, json::error_handler_t::replace);
    const auto deadline = t0 + std::chrono::milliseconds(cfg_.total_timeout_ms);

    CloudResult result;
    for (int attempt = 0;; ++attempt) {
        result = CloudResult{};
        result.attempts = attempt + 1;
        Attempt a;
        a.chat = chat;
        a.stream = req.stream;
        a.on_delta = &on_delta;
        a.result = &result;
        a.key = &key;
        a.url = &url;
        a.call_start = t0;
        a.max_bytes = cfg_.max_response_bytes;
        a.max_deltas = req.max_tokens;
        a.stop = stop;

        EasyHandle e;
        MultiHandle m;
        if (!e.h || !m.h) throw CloudError(CloudErrorKind::kConfig, "libcurl could not be initialised");
        a.easy = e.h;
        char errbuf[CURL_ERROR_SIZE] = {};
        e.headers = curl_api().slist_append(e.headers, "Content-Type: application/json");
        e.headers = curl_api().slist_append(e.headers, req.stream ? "Accept: text/event-stream" : "Accept: application/json");
        if (!key.empty()) e.headers = curl_api().slist_append(e.headers, ("Authorization: Bearer " + key).c_str());
        curl_api().easy_setopt(e.h, CURLOPT_URL, url.c_str());
        curl_api().easy_setopt(e.h, CURLOPT_HTTPHEADER, e.headers);
        curl_api().easy_setopt(e.h, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
        curl_api().easy_setopt(e.h, CURLOPT_POSTFIELDS, payload.c_str());
        // The key must never travel to a host other than the configured one.
        curl_api().easy_setopt(e.h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_api().easy_setopt(e.h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_api().easy_setopt(e.h, CURLOPT_NOSIGNAL, 1L);
        curl_api().easy_setopt(e.h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.connect_timeout_ms));
        curl_api().easy_setopt(e.h, CURLOPT_ERRORBUFFER, errbuf);
        curl_api().easy_setopt(e.h, CURLOPT_WRITEFUNCTION, &Attempt::on_write);
        curl_api().easy_setopt(e.h, CURLOPT_WRITEDATA, &a);
        curl_api().multi_add_handle(m.h, e.h);
        m.added = e.h;

        std::optional<CloudError> err;
        CURLcode code = CURLE_OK;
        for (;;) {
            int running = 0;
            curl_api().multi_perform(m.h, &running);
            if (!running) {
                int left = 0;
                while (CURLMsg* msg = curl_api().multi_info_read(m.h, &left))
                    if (msg->msg == CURLMSG_DONE) code = msg->data.result;
                break;
            }
            const auto now = Clock::now();
            if (stop.stop_requested()) {
                err = CloudError(CloudErrorKind::kCancelled, "the cloud request was cancelled");
                break;
            }
            if (now >= deadline) {
                err = CloudError(CloudErrorKind::kTimeout, "the cloud request took longer than " + std::to_string(cfg_.total_timeout_ms) + " ms in all");
                break;
            }
            // From the request, retries included: the documented bound is the user's wait.
            if (!a.any_byte && now - t0 > std::chrono::milliseconds(cfg_.first_byte_timeout_ms)) {
                err = CloudError(CloudErrorKind::kTimeout, shown + ": no response within " + std::to_string(cfg_.first_byte_timeout_ms) + " ms");
                break;
            }
            if (a.any_byte && now - a.last_byte > std::chrono::milliseconds(cfg_.stall_timeout_ms)) {
                err = CloudError(CloudErrorKind::kTimeout, shown + ": the stream stalled for " + std::to_string(cfg_.stall_timeout_ms) + " ms");
                break;
            }
            curl_api().multi_poll(m.h, nullptr, 0, 10, nullptr);
        }
        if (a.caller_exception) std::rethrow_exception(a.caller_exception);
        // A stop asked for during the last callbacks wins over a stream that happened to end.
        if (!err && stop.stop_requested()) err = CloudError(CloudErrorKind::kCancelled, "the cloud request was cancelled");
        if (!err && a.error) err = a.error;
        if (!err && a.cut) code = CURLE_OK;  // we ended the transfer at max_tokens
        if (!err) {
            const std::string why = errbuf[0] ? std::string(errbuf) : std::string(curl_api().easy_strerror(code));
            switch (code) {
                case CURLE_OK:
                    break;
                case CURLE_COULDNT_CONNECT:
                case CURLE_COULDNT_RESOLVE_HOST:
                case CURLE_COULDNT_RESOLVE_PROXY:
                    err = CloudError(CloudErrorKind::kRefused, shown + ": connection failed (" + why + ")");
                    break;
                case CURLE_OPERATION_TIMEDOUT:
                    err = CloudError(CloudErrorKind::kTimeout, shown + ": " + why);
                    break;
                case CURLE_URL_MALFORMAT:
                case CURLE_UNSUPPORTED_PROTOCOL:
                    err = CloudError(CloudErrorKind::kConfig, shown + ": " + why);
                    break;
                case CURLE_WEIRD_SERVER_REPLY:
                    err = CloudError(CloudErrorKind::kMalformed, shown + ": not an HTTP response (" + why + ")");
                    break;
                default:
                    err = CloudError(CloudErrorKind::kReset, shown + ": the connection broke " +
                                                                 (a.any_byte ? "mid-response" : "before a response") + " (" + why + ")");
            }
        }
        if (!err && a.status >= 300)
            err = CloudError(CloudErrorKind::kHttpStatus, shown + ": HTTP " + std::to_string(a.status) + ": " + excerpt(a.body, key, url),
                             static_cast<int>(a.status));
        if (!err && a.status == 0) {
            curl_api().easy_getinfo(e.h, CURLINFO_RESPONSE_CODE, &a.status);
            if (a.status >= 300) err = CloudError(CloudErrorKind::kHttpStatus, shown + ": HTTP " + std::to_string(a.status), static_cast<int>(a.status));
        }
        if (!err) {
            try {
                if (!req.stream) {
                    json j;
                    try {
                        j = json::parse(a.body);
                    } catch (const json::exception&) {
                        throw CloudError(CloudErrorKind::kMalformed, shown + ": the response is not JSON: " + excerpt(a.body, key, url));
                    }
                    a.take_choice(j, true);
                } else {
                    if (auto last = a.sse.finish()) a.event(*last);
                    if (!a.done && result.finish_reason.empty()) {
                        if (!a.sse.saw_any_field() && a.bytes > 0)
                            throw CloudError(CloudErrorKind::kMalformed, shown + ": the response is not an event stream");
                        throw CloudError(CloudErrorKind::kReset, shown + ": the stream ended before [DONE]");
                    }
                    // Every OpenAI-style stream ends its choice with a finish_reason; [DONE]
                    // without one is a stream the server stopped early (llama-cpp-python's
                    // server stops one whenever another request arrives, unless it was started
                    // with --interrupt_requests false), not a finished reply.
                    if (result.finish_reason.empty())
                        throw CloudError(CloudErrorKind::kReset,
                                         shown + ": the stream ended without a finish_reason: the server stopped it early "
                                                 "(llama-cpp-python's server does when another request arrives, unless "
                                                 "started with --interrupt_requests false)");
                }
            } catch (const CloudError& ce) {
                err = ce;
            }
        }
        if (!err) {
            result.total_ms = Stopwatch::ms_between(t0, Clock::now());
            return result;
        }
        const auto wait = std::chrono::milliseconds(cfg_.retry_backoff_ms * (attempt + 1));
        const bool first_byte_spent =
            !a.any_byte && Clock::now() + wait - t0 >= std::chrono::milliseconds(cfg_.first_byte_timeout_ms);
        if (a.delivered || attempt >= cfg_.retries || !retriable(*err) || Clock::now() + wait >= deadline || first_byte_spent ||
            stop.stop_requested())
            throw *err;
        for (auto until = Clock::now() + wait; Clock::now() < until && !stop.stop_requested();)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

}  // namespace microlm
