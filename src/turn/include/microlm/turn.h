// One reply turn of the instant-reply pipeline: the local opener, the cloud continuation
// (prefill or instruct), the joiner's stitching and recovery, and a local close when the cloud
// fails. Reports each piece as an event and the turn's timings. Not here: printing (the CLI).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "microlm/chat.h"
#include "microlm/cloud_client.h"
#include "microlm/handoff.h"
#include "microlm/opener.h"

namespace microlm {

enum class ContinuationMode { kPrefill, kInstruct };

struct TurnConfig {
    ContinuationMode mode = ContinuationMode::kPrefill;
    Modality modality = Modality::kText;
    // Prefill: send vLLM's continue_final_message fields with the trailing assistant message
    // (servers that continue it by themselves, like serve-model and llama.cpp, ignore them;
    // APIs that reject unknown fields need this off).
    bool send_continue_fields = true;
    int64_t max_tokens = 160;
    std::optional<float> temperature = 0.7f;
    std::optional<uint64_t> seed;
    int64_t close_max_tokens = 16;  // the local close after a cloud failure
    // An extra sleep between the opener and the cloud request, standing in for a slower network
    // (the gateway's per-request "cloud_delay_ms"); it counts in stall_ms, not in cloud_first_token_ms.
    int cloud_delay_ms = 0;
};

struct TurnEvent {
    enum class Kind {
        kOpener,        // a local opener word (text includes its leading space)
        kHedge,         // the opener was unsure and replaced: text is the hedge phrase (sent as kOpener words too)
        kContinuation,  // cloud text appended to what is shown
        kPivot,         // the cloud's verdict was pivot: following kContinuation text bridges
        kRetract,       // the cloud's verdict was retract: text replaces everything shown
        kLocalClose,    // the local model's closing words after a cloud failure
        kError,         // the cloud failed: text is the message (never the API key)
    };
    Kind kind;
    std::string text;
};

struct TurnTimings {
    double first_word_ms = -1;         // turn start to the first opener word
    double opener_ms = 0;              // the opener's whole run
    double cloud_first_token_ms = -1;  // cloud request sent to its first text delta; -1 if none
    double stall_ms = -1;              // opener done to the first continuation text shown; -1 if none
    double total_ms = 0;
};

struct TurnResult {
    std::string text;  // the whole reply as finally shown
    OpenerResult opener;
    std::optional<Verdict> verdict;
    std::optional<CloudErrorKind> error;
    bool cloud_used = false;  // false when the opener ended the turn
    TurnTimings timings;
};

// `opener` runs on the local Context; after a cloud failure the same Context (through ctx and
// tok) writes the close. The conversation's last message is the user's. `stop` (e.g. the client
// went away) cancels the cloud delay and request: the turn then ends with a kError event of
// kind cancelled and no local close.
TurnResult run_turn(Opener& opener, Context& ctx, const Tokenizer& tok, const CloudClient& cloud,
                    const std::vector<ChatMessage>& history, const TurnConfig& cfg,
                    const std::function<void(const TurnEvent&)>& on_event, std::stop_token stop = {});

}  // namespace microlm
