// Streaming decompression (zstd frames via libzstd, gzip members via zlib) and the two record
// framings the corpora use: JSON lines and one top-level JSON array. Not a JSON parser: records
// are cut out as text and parsed by the caller.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "microlm/data.h"
#include "microlm/error.h"

#ifdef MICROLM_HAVE_ZSTD
#include <zstd.h>
#endif
#ifdef MICROLM_HAVE_ZLIB
#include <zlib.h>
#endif

namespace microlm::data {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

constexpr size_t kChunk = size_t{1} << 17;

}  // namespace

struct InputFile::Impl {
    enum class Kind { kPlain, kZstd, kGzip } kind = Kind::kPlain;
    std::FILE* f = nullptr;
    std::vector<char> in;  // compressed bytes read from the file, [in_pos, in_end) unused
    size_t in_pos = 0, in_end = 0;
    bool file_eof = false;
    // zstd: inside a frame (or output left to flush); gzip: a member has just ended.
    bool pending = false;
#ifdef MICROLM_HAVE_ZSTD
    ZSTD_DStream* zstd = nullptr;
#endif
#ifdef MICROLM_HAVE_ZLIB
    z_stream gz{};
    bool gz_open = false;
#endif

    ~Impl() {
        if (f) std::fclose(f);
#ifdef MICROLM_HAVE_ZSTD
        ZSTD_freeDStream(zstd);
#endif
#ifdef MICROLM_HAVE_ZLIB
        if (gz_open) inflateEnd(&gz);
#endif
    }

    // Refills `in` when it is used up; false once the file has nothing more.
    bool refill(const std::string& path) {
        if (in_pos < in_end) return true;
        if (file_eof) return false;
        in_end = std::fread(in.data(), 1, in.size(), f);
        in_pos = 0;
        if (in_end < in.size()) {
            if (std::ferror(f)) throw Error(path + ": read error: " + std::strerror(errno));
            file_eof = true;
        }
        return in_end > 0;
    }
};

InputFile::InputFile(const std::string& path) : path_(path), impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.f = std::fopen(path.c_str(), "rb");
    if (!m.f) throw Error(path + ": cannot open: " + std::strerror(errno));
    m.in.resize(kChunk);
    if (ends_with(path, ".zst")) {
#ifdef MICROLM_HAVE_ZSTD
        m.kind = Impl::Kind::kZstd;
        m.zstd = ZSTD_createDStream();
        if (!m.zstd) throw Error(path + ": out of memory for the zstd decoder");
        ZSTD_initDStream(m.zstd);
#else
        throw Error(path +
                    ": this build of microlm has no zstd support (install libzstd-dev and re-run cmake)");
#endif
    } else if (ends_with(path, ".gz")) {
#ifdef MICROLM_HAVE_ZLIB
        m.kind = Impl::Kind::kGzip;
        // 15 + 32: the largest window, gzip or zlib header detected automatically.
        if (inflateInit2(&m.gz, 15 + 32) != Z_OK) throw Error(path + ": cannot start the gzip decoder");
        m.gz_open = true;
#else
        throw Error(path +
                    ": this build of microlm has no gzip support (install zlib1g-dev and re-run cmake)");
#endif
    }
}

InputFile::~InputFile() = default;

size_t InputFile::read(char* dst, size_t n) {
    Impl& m = *impl_;
    if (n == 0) return 0;
    switch (m.kind) {
        case Impl::Kind::kPlain: {
            size_t got = 0;
            while (got < n && m.refill(path_)) {
                const size_t take = std::min(n - got, m.in_end - m.in_pos);
                std::memcpy(dst + got, m.in.data() + m.in_pos, take);
                m.in_pos += take;
                got += take;
            }
            return got;
        }
        case Impl::Kind::kZstd: {
#ifdef MICROLM_HAVE_ZSTD
            // Frames may follow each other (as `zstd` writes concatenated inputs). The decoder's
            // answer is 0 once a frame is complete and flushed; otherwise it holds a partial frame
            // or output still to flush, and is called even when the file has nothing left.
            ZSTD_outBuffer out{dst, n, 0};
            while (out.pos == 0) {
                const bool have_input = m.refill(path_);
                if (!have_input && !m.pending) return 0;
                ZSTD_inBuffer in{m.in.data(), m.in_end, m.in_pos};
                const size_t r = ZSTD_decompressStream(m.zstd, &out, &in);
                m.in_pos = in.pos;
                if (ZSTD_isError(r)) throw Error(path_ + ": corrupt zstd data: " + ZSTD_getErrorName(r));
                m.pending = r != 0;
                if (!have_input && out.pos == 0) {
                    throw Error(path_ + ": truncated zstd data (the file ends inside a frame)");
                }
            }
            return out.pos;
#else
            return 0;
#endif
        }
        case Impl::Kind::kGzip: {
#ifdef MICROLM_HAVE_ZLIB
            const auto want = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
            m.gz.next_out = reinterpret_cast<Bytef*>(dst);
            m.gz.avail_out = want;
            while (m.gz.avail_out == want) {
                if (m.pending) {  // a member ended: the file ends too, or another member follows
                    if (!m.refill(path_)) return 0;
                    inflateReset(&m.gz);
                    m.pending = false;
                }
                const bool have_input = m.refill(path_);
                m.gz.next_in = reinterpret_cast<Bytef*>(m.in.data() + m.in_pos);
                m.gz.avail_in = static_cast<uInt>(m.in_end - m.in_pos);
                const int rc = inflate(&m.gz, Z_NO_FLUSH);
                m.in_pos = m.in_end - m.gz.avail_in;
                if (rc == Z_STREAM_END) {
                    m.pending = true;
                } else if (rc == Z_BUF_ERROR && !have_input) {
                    throw Error(path_ + ": truncated gzip data (the file ends inside a member)");
                } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
                    throw Error(path_ + ": corrupt gzip data: " + (m.gz.msg ? m.gz.msg : "inflate failed"));
                }
            }
            return want - m.gz.avail_out;
#else
            return 0;
#endif
        }
    }
    return 0;
}

LineReader::LineReader(const std::string& path) : file_(path) {}

bool LineReader::fill() {
    if (eof_) return false;
    if (pos_ > 0) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    const size_t at = buf_.size();
    buf_.resize(at + kChunk);
    const size_t got = file_.read(buf_.data() + at, kChunk);
    buf_.resize(at + got);
    if (got == 0) eof_ = true;
    return got > 0;
}

bool LineReader::next(std::string& line) {
    size_t scanned = pos_;
    for (;;) {
        const size_t nl = buf_.find('\n', scanned);
        if (nl != std::string::npos) {
            line.assign(buf_, pos_, nl - pos_);
            pos_ = nl + 1;
            ++line_no_;
            return true;
        }
        scanned = buf_.size() - pos_;  // relative to pos_, which fill() moves to 0
        if (!fill()) break;
    }
    if (pos_ >= buf_.size()) return false;
    line.assign(buf_, pos_, std::string::npos);  // a last line without '\n'
    pos_ = buf_.size();
    ++line_no_;
    return true;
}

JsonArrayReader::JsonArrayReader(const std::string& path) : file_(path) {}

int JsonArrayReader::get() {
    if (pos_ == buf_.size()) {
        buf_.resize(kChunk);
        buf_.resize(file_.read(buf_.data(), kChunk));
        pos_ = 0;
        if (buf_.empty()) return -1;
    }
    return static_cast<unsigned char>(buf_[pos_++]);
}

int JsonArrayReader::skip_space() {
    int c = get();
    while (c == ' ' || c == '\n' || c == '\r' || c == '\t') c = get();
    return c;
}

bool JsonArrayReader::next(std::string& element) {
    if (done_) return false;
    const std::string where = file_.path() + ": element " + std::to_string(index_);
    int c = skip_space();
    if (!started_) {
        if (c == 0xEF) {  // a UTF-8 byte order mark
            get();
            get();
            c = skip_space();
        }
        if (c != '[') throw Error(file_.path() + ": expected a JSON array ('['), found something else");
        started_ = true;
        c = skip_space();
        if (c == ']') {
            done_ = true;
            return false;
        }
    } else if (c == ',') {
        c = skip_space();
    } else if (c == ']') {
        done_ = true;
        return false;
    } else {
        throw Error(where + ": expected ',' or ']' between array elements");
    }
    if (c != '{' && c != '[') throw Error(where + ": expected an object or array");

    // Copies bytes up to the bracket that closes `c`, skipping over string contents.
    element.clear();
    int depth = 0;
    bool in_string = false, escaped = false;
    for (;; c = get()) {
        if (c < 0) throw Error(where + ": the file ends inside the element");
        element.push_back(static_cast<char>(c));
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            ++depth;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) break;
        }
    }
    ++index_;
    return true;
}

}  // namespace microlm::data
