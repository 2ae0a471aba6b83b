// libFuzzer target for the request checks both servers share (src/server/http_util.h): any body
// must parse or throw http::BadRequest, which becomes a 400; anything else escaping would be a
// 500 and crashes the fuzzer. Not the routes or the turn they start (tests/test_gateway.py).
#include <cstddef>
#include <cstdint>
#include <string>

#include "http_util.h"

namespace {

namespace http = microlm::http;
using json = http::json;

void check(bool promise_kept) {
    if (!promise_kept) __builtin_trap();
}

// What a server sends back for a BadRequest: its error object must serialise whatever the
// message quotes from the body.
void answer(const http::BadRequest& e) {
    (void)http::dump(http::error_body(e.what(), "invalid_request_error", e.param));
}

bool absent(const json& body, const std::string& key) {
    return !body.contains(key) || body[key].is_null();
}

// The three typed reads of one field: a value of the asked-for kind, nothing when absent or
// null, or a BadRequest that names the field.
void read_field(const json& body, const std::string& key) {
    const char* k = key.c_str();
    try {
        const auto v = http::number_field(body, k);
        check(v.has_value() != absent(body, key));
        if (v) check(body[key].is_number() && *v == body[key].get<double>());
    } catch (const http::BadRequest& e) {
        check(e.param == key && !body[key].is_number());
        answer(e);
    }
    try {
        const auto v = http::integer_field(body, k);
        check(v.has_value() != absent(body, key));
        if (v && body[key].is_number_integer() && !body[key].is_number_unsigned())
            check(*v == body[key].get<int64_t>());
        if (v && body[key].is_number_float()) check(static_cast<double>(*v) == body[key].get<double>());
    } catch (const http::BadRequest& e) {
        check(e.param == key);
        answer(e);
    }
    try {
        const auto v = http::bool_field(body, k);
        check(v.has_value() != absent(body, key));
        if (v) check(*v == body[key].get<bool>());
    } catch (const http::BadRequest& e) {
        check(e.param == key && !body[key].is_boolean());
        answer(e);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    json body;
    try {
        body = http::parse_body(text);
    } catch (const http::BadRequest& e) {
        answer(e);
        return 0;
    }
    check(body.is_object());
    (void)http::dump(body);

    // The fields the gateway and serve-model read, then every field the body has.
    for (const char* key : {"stream", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                            "seed", "continue_final_message", "add_generation_prompt"})
        read_field(body, key);
    // (The accessors take C strings, as the servers' literal keys are: a key with a NUL is skipped.)
    for (const auto& [key, value] : body.items())
        if (key.find('\0') == std::string::npos) read_field(body, key);

    try {
        const auto messages = http::parse_messages(body);
        check(!messages.empty() && messages.size() == body["messages"].size());
        for (const auto& m : messages) check(m.role == "system" || m.role == "user" || m.role == "assistant");
    } catch (const http::BadRequest& e) {
        answer(e);
    }
    return 0;
}
