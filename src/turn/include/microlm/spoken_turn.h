// A turn said aloud: which of a turn's events a listener hears, handed to a LiveSpeaker (speech.h).
// Shared by `microlm chat --speak` and the gateway's `--speak-to`. Not here: synthesis, timing.
#pragma once

#include "microlm/speech.h"
#include "microlm/turn.h"

namespace microlm {

// The words of an event, not its markers: opener words (whole words), cloud text and the local
// close (which may stop inside a word), a retraction's replacement (said words cannot be unsaid).
void say_event(LiveSpeaker& speaker, const TurnEvent& e);

}  // namespace microlm
