// say_event (microlm/spoken_turn.h): the mapping from turn events to what is said.
#include "microlm/spoken_turn.h"

namespace microlm {

void say_event(LiveSpeaker& speaker, const TurnEvent& e) {
    using K = TurnEvent::Kind;
    switch (e.kind) {
        case K::kOpener: speaker.say(e.text, true); break;
        case K::kContinuation:
        case K::kLocalClose: speaker.say(e.text, false); break;
        case K::kRetract: speaker.say(" " + e.text, false); break;
        case K::kHedge:  // its words arrive as opener words
        case K::kPivot:
        case K::kError: break;
    }
}

}  // namespace microlm
