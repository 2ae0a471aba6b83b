// Codepoint classes, lenient UTF-8 decoding and the GPT-2 byte alphabet for the tokenizer.
// The class tables are generated (unicode_tables.inc); this file only looks them up. Not a
// validator: strict UTF-8 checking for output lives in Utf8Streamer (bpe.cpp).
#include "microlm/unicode.h"

#include <algorithm>
#include <array>

namespace microlm::unicode {
namespace {

struct CategoryRange {
    uint32_t first;
    uint32_t last;
    Category cls;
};
constexpr Category kLetter = Category::kLetter;
constexpr Category kNumber = Category::kNumber;
constexpr Category kPunctuation = Category::kPunctuation;

#include "unicode_tables.inc"

Category lookup_category(uint32_t cpt) {
    const auto* end = kCategoryRanges + std::size(kCategoryRanges);
    const auto* it = std::upper_bound(kCategoryRanges, end, cpt,
                                      [](uint32_t c, const CategoryRange& r) { return c < r.first; });
    if (it == kCategoryRanges) return Category::kOther;
    --it;
    return cpt <= it->last ? it->cls : Category::kOther;
}

// Most text is Latin-1; a direct table keeps the common case free of binary searches.
const std::array<Category, 256>& latin1_categories() {
    static const std::array<Category, 256> table = [] {
        std::array<Category, 256> t{};
        for (uint32_t c = 0; c < 256; ++c) t[c] = lookup_category(c);
        return t;
    }();
    return table;
}

struct ByteAlphabet {
    std::array<std::string, 256> utf8;
    std::array<int16_t, 0x144> byte_of;  // codepoint (< 0x144) -> byte, -1 if none
};

// GPT-2's bytes_to_unicode: printable Latin-1 bytes keep their codepoint, the rest are
// numbered from U+0100 in byte order, so every byte gets a visible, non-space character.
const ByteAlphabet& alphabet() {
    static const ByteAlphabet a = [] {
        ByteAlphabet r;
        r.byte_of.fill(-1);
        uint32_t next = 0x100;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const uint32_t cpt = printable ? static_cast<uint32_t>(b) : next++;
            append_utf8(r.utf8[b], cpt);
            r.byte_of[cpt] = static_cast<int16_t>(b);
        }
        return r;
    }();
    return a;
}

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

Category category(uint32_t cpt) {
    if (cpt < 256) return latin1_categories()[cpt];
    return lookup_category(cpt);
}

bool is_whitespace(uint32_t cpt) {
    if (cpt < 0x80) return cpt == ' ' || (cpt >= 0x09 && cpt <= 0x0D);
    return std::binary_search(std::begin(kWhitespace), std::end(kWhitespace), cpt);
}

uint32_t decode_lenient(std::string_view s, size_t& pos) {
    const auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char b0 = at(pos);
    size_t len = 0;
    uint32_t cpt = 0;
    if (b0 < 0x80) {
        ++pos;
        return b0;
    } else if ((b0 & 0xE0) == 0xC0) {
        len = 2;
        cpt = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3;
        cpt = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4;
        cpt = b0 & 0x07;
    } else {  // continuation byte or F8..FF
        ++pos;
        return kReplacement;
    }
    if (pos + len > s.size()) {
        ++pos;
        return kReplacement;
    }
    for (size_t i = 1; i < len; ++i) {
        if (!is_continuation(at(pos + i))) {
            ++pos;
            return kReplacement;
        }
        cpt = (cpt << 6) | (at(pos + i) & 0x3F);
    }
    pos += len;
    return cpt;
}

std::vector<CodepointSpan> codepoint_spans(std::string_view s) {
    std::vector<CodepointSpan> out;
    for (size_t pos = 0; pos < s.size();) {
        const size_t begin = pos;
        const uint32_t c = decode_lenient(s, pos);
        out.push_back({c, begin, pos});
    }
    return out;
}

std::vector<uint32_t> decode_lenient(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    for (size_t pos = 0; pos < s.size();) out.push_back(decode_lenient(s, pos));
    return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
    if (cpt > 0x10FFFF) cpt = kReplacement;
    if (cpt < 0x80) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    }
}

std::string_view byte_to_utf8(uint8_t byte) { return alphabet().utf8[byte]; }

int codepoint_to_byte(uint32_t cpt) {
    if (cpt >= alphabet().byte_of.size()) return -1;
    return alphabet().byte_of[cpt];
}

}  // namespace microlm::unicode
