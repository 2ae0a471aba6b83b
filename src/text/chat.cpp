// ChatML prompt formatting and the one thing microlm reads from a Jinja chat template: the
// default system message. Templates are searched as text, never executed; a template that does
// something other than ChatML is not detected here.
#include "microlm/chat.h"

namespace microlm {
namespace {

// Escapes `s` for a single-quoted Jinja string literal.
std::string jinja_literal(std::string_view s) {
    std::string out;
    for (const char c : s) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\'':
                out += "\\'";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                out.push_back(c);
                break;
        }
    }
    return out;
}

}  // namespace
namespace {

constexpr std::string_view kSystemHeader = "<|im_start|>system";
constexpr std::string_view kEnd = "<|im_end|>";

// Undoes the escapes of a Jinja string literal that a default system message can contain.
std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out.push_back(s[i]);
            continue;
        }
        const char c = s[++i];
        switch (c) {
            case 'n': out.push_back('\n'); break;
            case 't': out.push_back('\t'); break;
            case 'r': out.push_back('\r'); break;
            default: out.push_back(c); break;  // \\ \' \"
        }
    }
    return out;
}

// True if `s` holds an unescaped `quote`, i.e. the string literal would end inside it.
bool leaves_literal(std::string_view s, char quote) {
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\') {
            ++i;
        } else if (s[i] == quote) {
            return true;
        }
    }
    return false;
}

}  // namespace

// A default system message is a string literal "<|im_start|>system\n...<|im_end|>" whose
// content is constant. An occurrence built from the conversation, such as
// '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>', leaves the literal before
// <|im_end|> and is skipped, so a template with both forms yields its default.
std::optional<std::string> chat_template_default_system(std::string_view tmpl) {
    for (size_t at = tmpl.find(kSystemHeader); at != std::string_view::npos;
         at = tmpl.find(kSystemHeader, at + 1)) {
        const size_t quote_at = tmpl.find_last_of("'\"", at);
        if (quote_at == std::string_view::npos) continue;
        const char quote = tmpl[quote_at];

        size_t begin = at + kSystemHeader.size();
        if (tmpl.substr(begin, 1) == "\n") {
            begin += 1;
        } else if (tmpl.substr(begin, 2) == "\\n") {
            begin += 2;
        } else {
            continue;
        }
        const size_t end = tmpl.find(kEnd, begin);
        if (end == std::string_view::npos) break;
        const std::string_view content = tmpl.substr(begin, end - begin);
        if (leaves_literal(content, quote)) continue;
        std::string message = unescape(content);
        if (!message.empty()) return message;
    }
    return std::nullopt;
}

std::string format_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::optional<std::string>& default_system) {
    std::string out;
    const auto turn = [&](std::string_view role, std::string_view content) {
        out += "<|im_start|>";
        out += role;
        out += '\n';
        out += content;
        out += "<|im_end|>\n";
    };
    // As in SmolLM2's template, the default system turn is inserted before the first message
    // (so not into an empty conversation) unless that message is a system message itself.
    if (default_system && !messages.empty() && messages.front().role != "system") {
        turn("system", *default_system);
    }
    for (const ChatMessage& m : messages) turn(m.role, m.content);
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

std::string format_chat(ChatFrame frame, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::optional<std::string>& default_system) {
    if (frame == ChatFrame::kChatMl) return format_chatml(messages, add_generation_prompt, default_system);
    std::string out;
    const auto turn = [&](std::string_view role, std::string_view content) {
        if (role == "system") {
            out.append(content).append("\n\n");
            return;
        }
        out += role == "assistant" ? "Assistant: " : "User: ";
        out.append(content) += '\n';
    };
    if (default_system && !messages.empty() && messages.front().role != "system") turn("system", *default_system);
    for (const ChatMessage& m : messages) turn(m.role, m.content);
    if (add_generation_prompt) out += "Assistant:";
    return out;
}

std::string chatml_template(const std::optional<std::string>& default_system) {
    std::string t = "{% for message in messages %}";
    if (default_system) {
        // SmolLM2's form, which chat_template_default_system() recognises.
        t += "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n" +
             jinja_literal(*default_system) + "<|im_end|>\\n' }}{% endif %}";
    }
    t += "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    return t;
}

}  // namespace microlm
