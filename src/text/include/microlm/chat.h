// Chat formatting: messages -> prompt text in ChatML (the template of SmolLM2 and of our
// μLMs), or a plain "User: ... / Assistant:" frame for base models that have no chat
// vocabulary. The GGUF template is inspected for its default system message, not executed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace microlm {

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

// The system message a chat template inserts when the conversation has none, e.g.
// SmolLM2's "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
// nullopt when the template has no such default.
std::optional<std::string> chat_template_default_system(std::string_view chat_template);

// "<|im_start|>role\ncontent<|im_end|>\n" per message; `default_system` is prepended as a
// system message when the first message is not one; add_generation_prompt appends
// "<|im_start|>assistant\n".
std::string format_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::optional<std::string>& default_system);

// How a model's prompts are framed: ChatML, or plain text for a base model (Gemma-3-270M base):
// "User: <content>\n" and "Assistant: <content>\n" per message (a system message as its text and
// a blank line), add_generation_prompt appending "Assistant:".
enum class ChatFrame { kChatMl, kPlain };
std::string format_chat(ChatFrame frame, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::optional<std::string>& default_system);

// The ChatML chat template (with add_generation_prompt) that trained vocabularies carry.
std::string chatml_template(const std::optional<std::string>& default_system);

}  // namespace microlm
