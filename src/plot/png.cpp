// PNG encoding without zlib: CRC-32 and Adler-32 computed here, and a deflate stream of one
// fixed-Huffman block whose matches come from a hash-chain LZ77 search. Charts are mostly flat
// colour, so even this simple coder shrinks them 20-50x. Not a decoder; not a tuned compressor.
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "microlm/crc32.h"
#include "microlm/error.h"
#include "microlm/output_file.h"
#include "microlm/plot.h"

namespace microlm::plot {
namespace {

uint32_t adler32(const std::vector<uint8_t>& data) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < data.size();) {
        // 5552 bytes is the longest run whose sums cannot overflow 32 bits before the modulo.
        const size_t end = std::min(data.size(), i + 5552);
        for (; i < end; ++i) {
            a += data[i];
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

// Deflate's bit order: values LSB first, Huffman codes MSB first (so they are reversed here).
class BitWriter {
public:
    void bits(uint32_t value, int n) {
        acc_ |= static_cast<uint64_t>(value) << fill_;
        fill_ += n;
        while (fill_ >= 8) {
            out_.push_back(static_cast<uint8_t>(acc_));
            acc_ >>= 8;
            fill_ -= 8;
        }
    }
    void code(uint32_t code, int n) {
        uint32_t rev = 0;
        for (int i = 0; i < n; ++i) rev |= ((code >> i) & 1u) << (n - 1 - i);
        bits(rev, n);
    }
    std::vector<uint8_t> finish() {
        if (fill_ > 0) out_.push_back(static_cast<uint8_t>(acc_));
        acc_ = 0;
        fill_ = 0;
        return std::move(out_);
    }

private:
    std::vector<uint8_t> out_;
    uint64_t acc_ = 0;
    int fill_ = 0;
};

// RFC 1951 3.2.6: the fixed literal/length code.
void put_literal(BitWriter& w, uint32_t sym) {
    if (sym < 144) {
        w.code(0x30 + sym, 8);
    } else if (sym < 256) {
        w.code(0x190 + sym - 144, 9);
    } else if (sym < 280) {
        w.code(sym - 256, 7);
    } else {
        w.code(0xC0 + sym - 280, 8);
    }
}

constexpr std::array<uint16_t, 29> kLenBase = {3,  4,  5,  6,   7,   8,   9,   10,  11, 13,
                                               15, 17, 19, 23,  27,  31,  35,  43,  51, 59,
                                               67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<uint8_t, 29> kLenExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                               2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::array<uint16_t, 30> kDistBase = {
    1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr std::array<uint8_t, 30> kDistExtra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void put_match(BitWriter& w, size_t len, size_t dist) {
    size_t li = kLenBase.size() - 1;
    while (kLenBase[li] > len) --li;
    put_literal(w, static_cast<uint32_t>(257 + li));
    w.bits(static_cast<uint32_t>(len - kLenBase[li]), kLenExtra[li]);
    size_t di = kDistBase.size() - 1;
    while (kDistBase[di] > dist) --di;
    w.code(static_cast<uint32_t>(di), 5);
    w.bits(static_cast<uint32_t>(dist - kDistBase[di]), kDistExtra[di]);
}

// One final fixed-Huffman block; greedy LZ77 over a 32 KiB window with hash chains of 3-byte
// prefixes, the chain walk capped so that the worst case stays linear.
std::vector<uint8_t> deflate_fixed(const std::vector<uint8_t>& in) {
    constexpr size_t kWindow = 32768, kMinMatch = 3, kMaxMatch = 258, kMaxChain = 48;
    constexpr uint32_t kHashBits = 15;
    std::vector<int64_t> head(size_t{1} << kHashBits, -1);
    std::vector<int64_t> prev(kWindow, -1);
    const auto hash = [&](size_t i) {
        const uint32_t v = static_cast<uint32_t>(in[i]) | static_cast<uint32_t>(in[i + 1]) << 8 |
                           static_cast<uint32_t>(in[i + 2]) << 16;
        return (v * 2654435761u) >> (32 - kHashBits);
    };
    const auto insert = [&](size_t i) {
        if (i + kMinMatch > in.size()) return;
        const uint32_t h = hash(i);
        prev[i % kWindow] = head[h];
        head[h] = static_cast<int64_t>(i);
    };

    BitWriter w;
    w.bits(1, 1);  // BFINAL
    w.bits(1, 2);  // BTYPE 01: fixed Huffman
    size_t i = 0;
    while (i < in.size()) {
        size_t best_len = 0, best_dist = 0;
        if (i + kMinMatch <= in.size()) {
            const size_t max_len = std::min(kMaxMatch, in.size() - i);
            int64_t cand = head[hash(i)];
            for (size_t chain = 0; cand >= 0 && chain < kMaxChain; ++chain) {
                const auto c = static_cast<size_t>(cand);
                if (i - c > kWindow - 1) break;
                size_t len = 0;
                while (len < max_len && in[c + len] == in[i + len]) ++len;
                if (len > best_len) {
                    best_len = len;
                    best_dist = i - c;
                    if (len == max_len) break;
                }
                const int64_t next = prev[c % kWindow];
                if (next >= cand) break;  // the slot was overwritten by a newer position
                cand = next;
            }
        }
        if (best_len >= kMinMatch) {
            put_match(w, best_len, best_dist);
            for (size_t k = 0; k < best_len; ++k) insert(i + k);
            i += best_len;
        } else {
            put_literal(w, in[i]);
            insert(i);
            ++i;
        }
    }
    put_literal(w, 256);  // end of block
    return w.finish();
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
    put_u32(out, static_cast<uint32_t>(data.size()));
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put_u32(out, crc32(std::span<const uint8_t>(out.data() + start, out.size() - start)));
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& img) {
    const auto w = static_cast<size_t>(img.width()), h = static_cast<size_t>(img.height());
    // Scanlines, each with filter type 0 (none): runs of background compress to long matches.
    std::vector<uint8_t> raw;
    raw.reserve(h * (1 + 3 * w));
    for (size_t y = 0; y < h; ++y) {
        raw.push_back(0);
        const uint8_t* row = img.rgb().data() + y * 3 * w;
        raw.insert(raw.end(), row, row + 3 * w);
    }
    std::vector<uint8_t> z = {0x78, 0x01};  // deflate, 32 KiB window; (0x7801 % 31 == 0)
    const std::vector<uint8_t> d = deflate_fixed(raw);
    z.insert(z.end(), d.begin(), d.end());
    put_u32(z, adler32(raw));

    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    std::vector<uint8_t> ihdr;
    put_u32(ihdr, static_cast<uint32_t>(w));
    put_u32(ihdr, static_cast<uint32_t>(h));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, no filter set, no interlace
    put_chunk(png, "IHDR", ihdr);
    put_chunk(png, "IDAT", z);
    put_chunk(png, "IEND", {});
    return png;
}

void write_png(const std::string& path, const Image& img) {
    const std::vector<uint8_t> png = encode_png(img);
    write_output_file(path, std::string_view(reinterpret_cast<const char*>(png.data()), png.size()));
}

}  // namespace microlm::plot
