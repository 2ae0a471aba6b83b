// The SentencePiece-style merge (spm.h): characters linked in a list, candidate pairs in a
// priority queue by score, stale pairs skipped when popped, as llama.cpp's llm_tokenizer_spm.
#include "spm.h"

#include <algorithm>
#include <queue>


namespace microlm::spm {
namespace {

struct Symbol {
    uint32_t start, len;  // bytes of the text; len 0 once merged into the left neighbour
    int32_t prev, next;
};

struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;  // bytes of the pair when it was queued, to recognise a stale one
};

struct Lower {  // the queue's top: highest score, then leftmost
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

// UTF-8 sequence length from a lead byte, as llama.cpp's unicode_len_utf8 (a stray
// continuation byte counts as one).
uint32_t utf8_len(unsigned char c) {
    if (c < 0x80 || c < 0xC0) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

}  // namespace

std::string escape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        if (c == ' ')
            out += kSpace;
        else
            out.push_back(c);
    }
    return out;
}

std::string unescape_spaces(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if (text.substr(i, kSpace.size()) == kSpace) {
            out.push_back(' ');
            i += kSpace.size();
        } else {
            out.push_back(text[i++]);
        }
    }
    return out;
}

void segment(std::string_view text, const std::function<int32_t(std::string_view)>& id_of,
             std::span<const float> scores, const std::array<int32_t, 256>& byte_id, std::vector<int32_t>& out) {
    std::vector<Symbol> sym;
    for (uint32_t pos = 0; pos < text.size();) {
        const uint32_t len = std::min<uint32_t>(utf8_len(static_cast<unsigned char>(text[pos])),
                                                static_cast<uint32_t>(text.size()) - pos);
        const auto n = static_cast<int32_t>(sym.size());
        sym.push_back({pos, len, n - 1, pos + len == text.size() ? -1 : n + 1});
        pos += len;
    }
    std::priority_queue<Bigram, std::vector<Bigram>, Lower> queue;
    const auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const std::string_view pair = text.substr(sym[l].start, sym[l].len + sym[r].len);
        const int32_t id = id_of(pair);
        if (id < 0 || static_cast<size_t>(id) >= scores.size()) return;
        queue.push({scores[static_cast<size_t>(id)], l, r, static_cast<uint32_t>(pair.size())});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) consider(i - 1, i);
    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& left = sym[b.left];
        Symbol& right = sym[b.right];
        if (left.len == 0 || right.len == 0 || left.len + right.len != b.size) continue;
        left.len += right.len;
        right.len = 0;
        left.next = right.next;
        if (right.next >= 0) sym[right.next].prev = b.left;
        consider(left.prev, b.left);
        consider(b.left, left.next);
    }
    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
        const std::string_view piece = text.substr(sym[i].start, sym[i].len);
        const int32_t id = id_of(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Only a single character can be missing (every merge made a token): its bytes.
        for (const char c : piece) {
            const int32_t bid = byte_id[static_cast<unsigned char>(c)];
            if (bid >= 0) out.push_back(bid);
        }
    }
}

}  // namespace microlm::spm
