// The helpers both servers share: OpenAI error objects, typed field checks, message parsing.
// Not here: routes or response shapes of either server.
#include "http_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <thread>

namespace microlm::http {

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
std::string dump(const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
    return {{"error",
             {{"message", message},
              {"type", type},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

void send_error(Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param, const std::string& code) {
    res.status = status;
    res.set_content(dump(error_body(message, type, param, code)), "application/json");
}

void install_error_handlers(Server& server, std::function<void(const std::string&)> log) {
    server.set_error_body([](int status, const std::string& message) {
        const char* type = status >= 500 ? "server_error" : "invalid_request_error";
        return dump(error_body(message, type, {}, status == 503 ? "busy" : ""));
    });
    if (log) server.set_error_log(std::move(log));
}

json parse_body(const std::string& body) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::exception& e) {
        throw BadRequest(std::string("the request body is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw BadRequest("the request body must be a JSON object");
    return j;
}

std::optional<double> number_field(const json& body, const char* key) {
    if (!body.contains(key) || body[key].is_null()) return std::nullopt;
    if (!body[key].is_number()) throw BadRequest(std::string("'") + key + "' must be a number", key);
    return body[key].get<double>();
}

std::optional<int64_t> integer_field(const json& body, const char* key) {
    const auto v = number_field(body, key);
    if (!v) return std::nullopt;
    const json& j = body[key];
    if (j.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(j.get<uint64_t>(), INT64_MAX));
    if (j.is_number_integer()) return j.get<int64_t>();
    if (!std::isfinite(*v) || std::floor(*v) != *v || std::fabs(*v) > 9.0e18)
        throw BadRequest(std::string("'") + key + "' must be an integer", key);
    return static_cast<int64_t>(*v);
}

std::optional<bool> bool_field(const json& body, const char* key) {
    if (!body.contains(key) || body[key].is_null()) return std::nullopt;
    if (!body[key].is_boolean()) throw BadRequest(std::string("'") + key + "' must be a boolean", key);
    return body[key].get<bool>();
}

std::string content_text(const json& content) {
    if (content.is_string()) return content.get<std::string>();
    if (content.is_null()) return {};
    // The array form: [{"type": "text", "text": "..."}, ...]; other part types are not ours.
    if (content.is_array()) {
        std::string out;
        for (const auto& part : content) {
            if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
                !part.contains("text") || !part["text"].is_string())
                throw BadRequest("only text content parts are supported", "messages");
            out += part["text"].get<std::string>();
        }
        return out;
    }
    throw BadRequest("'content' must be a string or an array of text parts", "messages");
}

std::vector<ChatMessage> parse_messages(const json& body) {
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
        throw BadRequest("'messages' must be a non-empty array", "messages");
    std::vector<ChatMessage> msgs;
    for (const auto& m : body["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
            throw BadRequest("each message in 'messages' needs a string 'role'", "messages");
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant")
            throw BadRequest(
                "unsupported role '" + role + "' in 'messages' (expected system, user or assistant)",
                "messages");
        msgs.push_back({role, m.contains("content") ? content_text(m["content"]) : std::string()});
    }
    return msgs;
}

int64_t unix_now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace microlm::http
