// What the cloud is sent to continue the opener: the prefill prompt (raw completions or a
// trailing assistant message) and the instruct-mode continuator prompt with its verdict tags.
// Not the HTTP clients that send it, nor the parsing of what comes back (verdict.cpp, stitcher.cpp).
#include <string>

#include "microlm/handoff.h"

namespace microlm {
// The opener is the start of a sentence the model must continue: a trailing space would make
// it predict a word without its leading space, which tokenizers split badly.
std::string_view trim_right(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

std::string_view verdict_name(Verdict v) {
    switch (v) {
        case Verdict::kKeep:
            return "keep";
        case Verdict::kPivot:
            return "pivot";
        case Verdict::kRetract:
            return "retract";
    }
    return "keep";
}

Verdict allowed_verdict(Verdict v, Modality m) {
    return v == Verdict::kRetract && m == Modality::kSpeech ? Verdict::kPivot : v;
}

std::string prefill_prompt(const std::vector<ChatMessage>& history, std::string_view opener,
                           const std::optional<std::string>& default_system) {
    std::string p = format_chatml(history, /*add_generation_prompt=*/true, default_system);
    p += trim_right(opener);
    return p;
}

std::vector<ChatMessage> prefill_messages(const std::vector<ChatMessage>& history, std::string_view opener) {
    std::vector<ChatMessage> m = history;
    m.push_back({"assistant", std::string(trim_right(opener))});
    return m;
}

// The prompt is written for instruction-tuned models of any size: the rules first, the shown
// words quoted on their own line, one example per verdict (a worked example is what small
// models follow most reliably), and the conversation's own instructions last.
std::string continuator_system_prompt(std::string_view opener, Modality modality,
                                      const std::optional<std::string>& assistant_system) {
    const bool speech = modality == Modality::kSpeech;
    std::string shown(1, '"');
    shown.append(trim_right(opener)).push_back('"');
    std::string p;
    p += "You are continuing an assistant reply that has already begun. The user has already ";
    p += speech ? "heard these first words, spoken aloud:\n" : "seen these first words on screen:\n";
    p += shown + "\n";
    p += "Your output is appended to those words verbatim";
    p += speech ? " and then spoken" : "";
    p += ". Do not repeat them: start with the word that comes right after them, and make the whole reply "
         "read as one natural answer.\n\n";
    p += "Begin your output with exactly one verdict tag, then a space, then your text:\n";
    p += "[keep] if the words are a good start. Continue the sentence from exactly where it stops, then "
         "finish "
         "the reply.\n";
    p += "[pivot] if the words head somewhere wrong or unhelpful. They stay";
    p += speech ? " (they were spoken and cannot be taken back)" : "";
    p += ". Write a short, natural bridge of at most 12 words that steers the sentence toward the right "
         "answer, "
         "then give the right answer. Never say bluntly that the start was wrong.\n";
    if (!speech) {
        p += "[retract] if the words are wrong and a bridge would not read well. Write the whole corrected "
             "reply "
             "from its first word; it replaces those words on screen.\n";
    }
    p += "\nExamples:\n";
    p += "Words shown: \"The capital of France is\"\nYour output: [keep] Paris, which is also its largest "
         "city.\n";
    p += "Words shown: \"The capital of Australia is Sydney,\"\n"
         "Your output: [pivot] or so many people assume, but the capital is actually Canberra.\n";
    if (!speech) {
        p += "Words shown: \"Yes, whales are fish\"\n"
             "Your output: [retract] No, whales are mammals: they breathe air and feed their young milk.\n";
    }
    if (speech) p += "\nThe reply is spoken: plain sentences, no lists, no markdown, no emoji.\n";
    if (assistant_system && !assistant_system->empty()) {
        p += "\nThe reply must also follow the assistant's own instructions:\n" + *assistant_system + "\n";
    }
    return p;
}

std::vector<ChatMessage> instruct_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                           Modality modality) {
    std::optional<std::string> own_system;
    size_t first = 0;
    if (!history.empty() && history.front().role == "system") {
        own_system = history.front().content;
        first = 1;
    }
    std::vector<ChatMessage> m;
    m.push_back({"system", continuator_system_prompt(opener, modality, own_system)});
    m.insert(m.end(), history.begin() + static_cast<std::ptrdiff_t>(first), history.end());
    return m;
}

}  // namespace microlm
