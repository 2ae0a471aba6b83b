// libFuzzer target for the HTTP framing every request of both servers goes through first
// (src/http/: Beast's parser behind RequestReader, the limits, the gzip/deflate inflater). Byte 0
// picks the limits (bits 0-1) and how the rest is cut into arrivals (bits 2-7, a piece length);
// the rest is what a client sends on one connection. Checked: no crash, a request is never
// handed on with a body over the cap, an error always carries one of the promised statuses, and
// the reader never consumes bytes it does not account for (pipelined requests read on).
#include <cstddef>
#include <cstdint>
#include <string>

#include "microlm/http_server.h"

namespace {

namespace http = microlm::http;

void check(bool promise_kept) {
    if (!promise_kept) __builtin_trap();
}

bool promised_status(int s) {
    return s == 400 || s == 408 || s == 413 || s == 415 || s == 431 || s == 501;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    http::ServerLimits limits;
    limits.max_body_bytes = (data[0] & 1) ? 64 : 4096;
    limits.max_header_bytes = (data[0] & 2) ? 128 : 2048;
    const size_t piece = 1 + (data[0] >> 2);
    const std::string sent(reinterpret_cast<const char*>(data + 1), size - 1);

    std::string in;
    size_t pos = 0;
    int requests = 0;
    while (requests < 16) {
        http::RequestReader reader(limits);
        auto state = http::RequestReader::State::kNeedMore;
        if (!in.empty()) state = reader.feed(in);
        while (state == http::RequestReader::State::kNeedMore && pos < sent.size()) {
            const size_t n = std::min(piece, sent.size() - pos);
            in.append(sent, pos, n);
            pos += n;
            const size_t before = in.size();
            state = reader.feed(in);
            check(in.size() <= before);
        }
        if (state == http::RequestReader::State::kNeedMore) break;  // the client stopped mid-request
        if (state == http::RequestReader::State::kError) {
            check(promised_status(reader.error_status()) && !reader.error_message().empty());
            break;
        }
        const http::Request r = reader.take();
        if (reader.error_status() != 0) {
            check(promised_status(reader.error_status()));
            break;
        }
        check(r.body.size() <= limits.max_body_bytes);
        check(!r.target.empty() && r.target.front() == '/');
        (void)http::printable(r.path);
        ++requests;
    }

    // The inflater alone, on the raw bytes, against a small cap.
    std::string out, error;
    bool too_large = false;
    if (http::inflate_body(sent, (data[0] & 4) ? "gzip" : "deflate", 256, out, too_large, error))
        check(out.size() <= 256);
    else
        check(out.empty() || too_large);
    return 0;
}
