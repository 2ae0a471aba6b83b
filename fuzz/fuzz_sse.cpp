// libFuzzer target for microlm::SseParser (cloud_client.h): arbitrary bytes, pushed whole, one
// byte at a time and in fuzzer-chosen pieces, must give the same events. Not the cloud
// client's JSON handling of those events, which needs a server (tests/test_cloud_client.cpp).
//
// Input: byte 0 says how many piece lengths follow (its low 4 bits); the lengths, one byte
// each, are used in turn until the stream, the rest of the input, is used up.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/cloud_client.h"

namespace {

struct Parsed {
    std::vector<std::string> events;
    std::optional<std::string> last;  // finish()
    bool saw_any_field = false;

    bool operator==(const Parsed&) const = default;
};

template <typename Pieces>
Parsed parse(Pieces&& for_each_piece) {
    microlm::SseParser sse;
    Parsed p;
    for_each_piece([&](std::string_view piece) {
        for (std::string& e : sse.push(piece)) p.events.push_back(std::move(e));
    });
    p.last = sse.finish();
    p.saw_any_field = sse.saw_any_field();
    return p;
}

void check(bool promise_kept) {
    if (!promise_kept) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    size_t n_lengths = std::min<size_t>(data[0] & 15, size - 1);
    const uint8_t* lengths = data + 1;
    const std::string_view stream(reinterpret_cast<const char*>(data + 1 + n_lengths), size - 1 - n_lengths);
    size_t cycle = 0;
    for (size_t k = 0; k < n_lengths; ++k) cycle += lengths[k];
    if (cycle == 0) n_lengths = 0;  // lengths that are all zero would never use the stream up

    const Parsed whole = parse([&](auto push) { push(stream); });
    const Parsed bytes = parse([&](auto push) {
        for (size_t i = 0; i < stream.size(); ++i) push(stream.substr(i, 1));
    });
    const Parsed pieces = parse([&](auto push) {
        size_t at = 0;
        for (size_t k = 0; at < stream.size(); ++k) {
            const size_t len = n_lengths == 0 ? stream.size() : lengths[k % n_lengths];
            push(stream.substr(at, len));  // a zero length is an empty push
            at += len;
        }
    });
    check(bytes == whole);
    check(pieces == whole);

    // Line ends (\n, \r, \r\n) never reach the data; lines within one event are joined by \n.
    for (const std::string& e : whole.events) check(e.find('\r') == std::string::npos);
    if (whole.last) check(whole.last->find('\r') == std::string::npos);
    return 0;
}
