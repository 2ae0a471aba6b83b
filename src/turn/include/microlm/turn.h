// One reply turn of the instant-reply pipeline, the product's heart: the local opener, the cloud
// continuation (prefill or instruct), the joiner's stitching and recovery, and a local close when
// the cloud fails. Reports each piece as an event, in the order a client shows them, and the
// turn's timings. Built on the pure handoff (handoff.h) and the cloud client (cloud_client.h).
// Not here: printing (the CLI) or the wire format (the gateway), which map events one to one.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
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
    // The opener check: the cloud's likelihood of the opener, asked for beside the continuation;
    // when it says off, the continuation is dropped before it is shown and the modality's
    // recovery is asked for instead (text: retract with a plain answer; speech: pivot). A
    // hedged opener is not checked: a neutral phrase cannot be a wrong start.
    OpenerCheckConfig check;
    // The opener's length for this turn (0: the opener's own config), e.g. sized so that its
    // paced delivery covers the cloud's expected wait (size_opener in pacer.h).
    OpenerLength opener_length;
};

// What the opener check found (check_opener).
struct OpenerCheck {
    OpenerScores scores;     // NaN where not asked for or not had
    int64_t tokens = 0;      // extra cloud tokens it cost (echoed prompt tokens + 1 generated each)
    double ms = 0;           // its wall time
    std::string error;       // why it could not score (the endpoint has no logprobs...), "" if it did
};

struct TurnEvent {
    enum class Kind {
        kOpener,        // a local opener word (text includes its leading space)
        kHedge,         // the opener was unsure and replaced: text is the hedge phrase (sent as kOpener words too)
        kContinuation,  // cloud text appended to what is shown
        kPivot,         // the cloud's verdict was pivot: following kContinuation text bridges
        kRetract,       // the cloud's verdict was retract: text replaces everything shown
        kLocalClose,    // the local model's closing words after a cloud failure
        kError,         // the cloud failed: text is "<kind>: <message>" (never the API key)
    };
    Kind kind;
    std::string text;
    // kError only: the failure, typed (what clients are told is `message`).
    std::optional<CloudErrorKind> error;
    std::string message;
};

struct TurnTimings {
    double local_wait_ms = 0;          // waiting for the local model (another turn's opener or close)
    double first_word_ms = -1;         // turn start (the local model ours) to the first opener word
    double opener_ms = 0;              // the opener's whole run
    double cloud_first_token_ms = -1;  // cloud request sent to its first text delta; -1 if none
    double recovery_first_token_ms = -1;  // the recovery request's, when the opener check asked for one
    double stall_ms = -1;              // opener done to the first continuation text shown; -1 if none
    double total_ms = 0;
};

struct TurnResult {
    std::string text;  // the whole reply as finally shown
    OpenerResult opener;
    std::optional<Verdict> verdict;
    std::optional<CloudErrorKind> error;
    std::string error_message;  // with `error`: what went wrong (never the API key)
    bool cloud_used = false;    // false when the opener ended the turn
    // The continuation as the cloud sent it (verdict tag included), whether a tag was found,
    // and how many opener words the stitcher dropped from it as repeats.
    std::string cloud_text;
    bool tag_found = false;
    size_t repeated_words = 0;
    // Set when the cloud cut the continuation short and it was asked for again (once): the
    // text shown by then, which the second request continued.
    std::optional<std::string> resumed_from;
    // The opener check, when configured: its scores, and whether its verdict (not a tag) chose
    // the recovery; then `abandoned_text` is what the first continuation had sent when dropped.
    std::optional<OpenerCheck> check;
    bool verdict_by_check = false;
    std::string abandoned_text;
    TurnTimings timings;
};

// Mean log p of the echoed tokens that cover the last occurrence of `opener` in the echo's
// text (the tokens joined); NaN when it is not there.
double mean_echo_logprob(const CloudLogprobs& lp, std::string_view opener);

// Scores `opener` on the cloud: the mean log p of its tokens after the conversation, and, for
// the signals that need it, after neutral_history(). The two requests run side by side, or,
// with cfg.before_continuation, the neutral one first, so that the conversation's prompt is the
// last the server saw when the continuation comes. Never throws for a cloud failure: the error
// is reported and the scores stay NaN (the check then says keep).
OpenerCheck check_opener(const CloudConfig& cloud, const std::vector<ChatMessage>& history, std::string_view opener,
                         const OpenerCheckConfig& cfg, std::stop_token stop = {});

// A whole turn. `opener` decodes on its local model; after a cloud failure the same model writes
// the close. The conversation's last message is the user's. Events come in the order a client
// shows them: opener words (or the hedge), then the continuation (a kPivot marker right before a
// pivot's bridge, a kRetract that replaces what was shown), or the local close and then kError.
// `stop` (e.g. the client went away) cancels the cloud delay and request: the turn then ends with
// a kError event of kind cancelled and no local close.
// `local_lock`, when given, guards the opener's model, which several turns share: it is held only
// while the model computes (the opener, the local close), never across the cloud call, so other
// turns' cloud calls run side by side.
TurnResult run_turn(Opener& opener, const CloudClient& cloud, const std::vector<ChatMessage>& history,
                    const TurnConfig& cfg, const std::function<void(const TurnEvent&)>& on_event,
                    std::stop_token stop = {}, std::mutex* local_lock = nullptr);

// The cloud half of a turn, for an opener already shown (`opener.text`; its words and timings
// are copied into the result): the request, the joiner, the verdict, and, when `closer` is given,
// the local close after a cloud failure (without one, a failure just ends the turn). run_turn is
// opener.run + this; the eval's handoff suite calls it with other openers, so it measures the
// product's own code.
TurnResult continue_turn(const OpenerResult& opener, const CloudClient& cloud,
                         const std::vector<ChatMessage>& history, const TurnConfig& cfg,
                         const std::function<void(const TurnEvent&)>& on_event, std::stop_token stop = {},
                         Opener* closer = nullptr, std::mutex* closer_lock = nullptr);

}  // namespace microlm
