// What both HTTP servers (serve-model and the serve gateway) share: OpenAI's error object, the
// request checks that name the offending field and chat message parsing. The HTTP server itself is
// src/http/.
// Not a framework: each server keeps its own routes and response shapes.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/http_server.h"

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
void send_error(Response& res, int status, const std::string& message, const std::string& type,
                const std::string& param = {}, const std::string& code = {});

// Makes `server` answer its own errors (404, 405, 408, 413, ...) with OpenAI's error object and
// log what escaped a handler to `log` (when given): the client only gets a generic 500.
void install_error_handlers(Server& server, std::function<void(const std::string&)> log = {});

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

}  // namespace microlm::http
