// The opener check's pure half: which scores say an opener is off, what recovery that means per
// modality, and the prompts recovery sends. The scores themselves come from the cloud (the
// turn asks for them: turn/opener_check.cpp).
#include <cmath>

#include "microlm/handoff.h"

namespace microlm {

std::string_view check_signal_name(CheckSignal s) {
    switch (s) {
        case CheckSignal::kOff:
            return "off";
        case CheckSignal::kLikelihood:
            return "likelihood";
        case CheckSignal::kPmi:
            return "pmi";
        case CheckSignal::kAny:
            return "any";
        case CheckSignal::kAll:
            return "all";
    }
    return "off";
}

std::optional<CheckSignal> parse_check_signal(std::string_view name) {
    for (const CheckSignal s : {CheckSignal::kOff, CheckSignal::kLikelihood, CheckSignal::kPmi, CheckSignal::kAny,
                                CheckSignal::kAll})
        if (check_signal_name(s) == name) return s;
    return std::nullopt;
}

bool signal_says_off(CheckSignal s, const OpenerScores& scores, const OpenerCheckConfig& cfg) {
    const bool lik = !std::isnan(scores.given_conversation) && scores.given_conversation < cfg.min_logprob;
    const bool pmi = !std::isnan(scores.pmi()) && scores.pmi() < cfg.min_pmi;
    switch (s) {
        case CheckSignal::kOff:
            return false;
        case CheckSignal::kLikelihood:
            return lik;
        case CheckSignal::kPmi:
            return pmi;
        case CheckSignal::kAny:
            return lik || pmi;
        case CheckSignal::kAll:
            return lik && pmi;
    }
    return false;
}

Verdict check_verdict(const OpenerScores& scores, const OpenerCheckConfig& cfg, Modality modality) {
    if (!signal_says_off(cfg.signal, scores, cfg)) return Verdict::kKeep;
    return modality == Modality::kSpeech ? Verdict::kPivot : Verdict::kRetract;
}

std::vector<ChatMessage> neutral_history() {
    return {{"user", ""}};
}

std::vector<ChatMessage> pivot_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                        Modality modality) {
    opener = trim_right(opener);
    const bool speech = modality == Modality::kSpeech;
    std::string p;
    p += "You are finishing an assistant reply whose first words were already ";
    p += speech ? "spoken aloud" : "shown";
    p += " and cannot be taken back:\n\"" + std::string(opener) + "\"\n";
    p += "Those words head the wrong way for the user's message. Your output is appended to them verbatim. "
         "Start with a short, natural bridge of at most 12 words that turns the sentence toward the right "
         "answer (for example \"... or rather, to answer your question:\"), then give the right answer. "
         "Do not repeat the words above and never say bluntly that they were wrong.\n";
    if (speech) p += "The reply is spoken: plain sentences, no lists, no markdown, no emoji.\n";
    std::vector<ChatMessage> m;
    size_t first = 0;
    if (!history.empty() && history.front().role == "system") {
        p += "\nThe reply must also follow the assistant's own instructions:\n" + history.front().content + "\n";
        first = 1;
    }
    m.push_back({"system", p});
    m.insert(m.end(), history.begin() + static_cast<std::ptrdiff_t>(first), history.end());
    return m;
}

std::vector<ChatMessage> recovery_messages(const std::vector<ChatMessage>& history, std::string_view opener,
                                           Verdict recovery, Modality modality, const OpenerCheckConfig& cfg) {
    if (recovery == Verdict::kPivot && cfg.pivot_bridge.empty()) return pivot_messages(history, opener, modality);
    return history;  // a plain answer: it replaces the opener (retract) or follows the bridge (pivot)
}

}  // namespace microlm
