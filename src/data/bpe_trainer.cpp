// Byte-level BPE training with incremental pair counts: each pair knows its total count and the
// words it occurs in, so a merge touches only those words instead of recounting the corpus.
// Not the encoder: the runtime Tokenizer applies the merges this produces (src/tokenizer/bpe.cpp).
#include "microlm/bpe_trainer.h"

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <vector>

#include "microlm/error.h"
#include "microlm/chat.h"
#include "microlm/pretokenizer.h"
#include "microlm/unicode.h"

namespace microlm {
namespace {

// The specials come first, as in SmolLM2's and the Swen tokenizer: <|endoftext|> = 0 separates
// documents (and pads), <|im_start|> = 1 and <|im_end|> = 2 frame ChatML turns.
constexpr const char* kSpecials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
constexpr int32_t kNumSpecials = 3;
constexpr int32_t kEndOfText = 0, kImEnd = 2;

uint64_t pair_key(uint32_t a, uint32_t b) {
    return (static_cast<uint64_t>(a) << 32) | b;
}

// A heap entry; entries whose count no longer matches the pair's are skipped when popped
// (a pair whose count changes gets a fresh entry instead of being updated in place).
struct HeapEntry {
    int64_t count;
    uint32_t a, b;
    // std::priority_queue puts the greatest on top: highest count, then lowest ids.
    bool operator<(const HeapEntry& o) const {
        if (count != o.count) return count < o.count;
        if (a != o.a) return a > o.a;
        return b > o.b;
    }
};

struct PairStats {
    int64_t count = 0;
    std::vector<uint32_t> words;  // indices of words holding the pair; may hold stale entries
};

}  // namespace

struct BpeTrainer::Impl {
    BpeTrainerOptions opt;
    pretok::Kind kind = pretok::Kind::kDefault;
    std::unordered_map<std::string, uint64_t> word_counts;
    uint64_t bytes = 0;
};

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : impl_(std::make_unique<Impl>()) {
    if (options.vocab_size < kNumSpecials + 256 + 1) {
        throw Error("vocabulary size " + std::to_string(options.vocab_size) + " is too small: it needs " +
                    std::to_string(kNumSpecials) + " specials, 256 bytes and at least one merge");
    }
    if (options.vocab_size > 65536) {
        // Shards store ids as uint16.
        throw Error("vocabulary size " + std::to_string(options.vocab_size) +
                    " is too large (at most 65536)");
    }
    impl_->kind = pretok::spec_for(options.pre).kind;
    impl_->opt = std::move(options);
}

BpeTrainer::~BpeTrainer() = default;
BpeTrainer::BpeTrainer(BpeTrainer&&) noexcept = default;
BpeTrainer& BpeTrainer::operator=(BpeTrainer&&) noexcept = default;

void BpeTrainer::add_text(std::string_view text) {
    impl_->bytes += text.size();
    for (std::string& w : pretok::split(impl_->kind, text)) ++impl_->word_counts[std::move(w)];
}

uint64_t BpeTrainer::bytes_added() const {
    return impl_->bytes;
}
uint64_t BpeTrainer::unique_words() const {
    return impl_->word_counts.size();
}

VocabData BpeTrainer::train(const BpeProgress& progress) const {
    const Impl& m = *impl_;
    const int32_t wanted = m.opt.vocab_size - kNumSpecials - 256;

    // Words in byte order so that word indices, and with them everything below, do not depend
    // on the hash map's iteration order.
    std::vector<std::pair<std::string_view, uint64_t>> sorted;
    sorted.reserve(m.word_counts.size());
    for (const auto& [w, n] : m.word_counts) sorted.emplace_back(w, n);
    std::sort(sorted.begin(), sorted.end());

    std::vector<std::vector<uint32_t>> words(sorted.size());  // symbol ids of each word
    std::vector<int64_t> freq(sorted.size());
    for (size_t i = 0; i < sorted.size(); ++i) {
        freq[i] = static_cast<int64_t>(sorted[i].second);
        words[i].reserve(sorted[i].first.size());
        for (const char c : sorted[i].first) words[i].push_back(static_cast<uint8_t>(c));
    }
    sorted.clear();
    sorted.shrink_to_fit();

    // Symbols: 0..255 are the bytes, then one per new token. `raw` holds each symbol's bytes,
    // `text` its GPT-2 byte-alphabet spelling (the token text in the GGUF).
    std::vector<std::string> raw, text;
    std::unordered_map<std::string, uint32_t> symbol_of_raw;
    for (int b = 0; b < 256; ++b) {
        raw.emplace_back(1, static_cast<char>(b));
        text.emplace_back(unicode::byte_to_utf8(static_cast<uint8_t>(b)));
        symbol_of_raw.emplace(raw.back(), static_cast<uint32_t>(b));
    }

    std::unordered_map<uint64_t, PairStats> pairs;
    for (uint32_t w = 0; w < words.size(); ++w) {
        const auto& s = words[w];
        for (size_t i = 0; i + 1 < s.size(); ++i) {
            PairStats& p = pairs[pair_key(s[i], s[i + 1])];
            p.count += freq[w];
            if (p.words.empty() || p.words.back() != w) p.words.push_back(w);
        }
    }
    std::priority_queue<HeapEntry> heap;
    for (const auto& [key, p] : pairs) {
        heap.push({p.count, static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(key)});
    }

    std::vector<std::string> merges;
    std::vector<uint32_t> seen_at(words.size(), UINT32_MAX);  // last merge that visited a word
    std::unordered_map<uint64_t, int64_t> delta;
    std::vector<uint32_t> merged;
    int32_t new_tokens = 0;
    while (new_tokens < wanted) {
        if (heap.empty()) {
            throw Error("the text sample gives only " + std::to_string(new_tokens) + " merges, " +
                        std::to_string(wanted) + " are needed for a vocabulary of " +
                        std::to_string(m.opt.vocab_size) +
                        ": give more text or ask for a smaller vocabulary");
        }
        const HeapEntry top = heap.top();
        heap.pop();
        const auto it = pairs.find(pair_key(top.a, top.b));
        if (it == pairs.end() || it->second.count != top.count) continue;  // stale entry

        // Two merge paths can spell the same bytes ("ab"+"c", "a"+"bc"): the token exists
        // already, so only the merge is new (as in Hugging Face's trainer).
        const uint32_t a = top.a, b = top.b;
        std::string bytes = raw[a] + raw[b];
        uint32_t z;
        if (const auto found = symbol_of_raw.find(bytes); found != symbol_of_raw.end()) {
            z = found->second;
        } else {
            z = static_cast<uint32_t>(raw.size());
            symbol_of_raw.emplace(bytes, z);
            raw.push_back(std::move(bytes));
            text.push_back(text[a] + text[b]);
            ++new_tokens;
            if (progress && (new_tokens % 64 == 0 || new_tokens == wanted)) progress(new_tokens, wanted);
        }
        merges.push_back(text[a] + " " + text[b]);

        // Every word holding (a, b): subtract its old pairs, merge left to right (as the
        // encoder resolves equal ranks), add its new pairs. Pairs the merge did not touch
        // net to zero and are left alone.
        const std::vector<uint32_t> holders = std::move(it->second.words);
        const auto step = static_cast<uint32_t>(merges.size());
        delta.clear();
        for (const uint32_t w : holders) {
            if (seen_at[w] == step) continue;
            seen_at[w] = step;
            std::vector<uint32_t>& s = words[w];
            bool found = false;
            for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == a && s[i + 1] == b;
            if (!found) continue;
            for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= freq[w];
            merged.clear();
            for (size_t i = 0; i < s.size(); ++i) {
                if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
                    merged.push_back(z);
                    ++i;
                } else {
                    merged.push_back(s[i]);
                }
            }
            s.assign(merged.begin(), merged.end());
            for (size_t i = 0; i + 1 < s.size(); ++i) {
                const uint64_t key = pair_key(s[i], s[i + 1]);
                delta[key] += freq[w];
                if (s[i] == z || s[i + 1] == z) {
                    std::vector<uint32_t>& list = pairs[key].words;
                    if (list.empty() || list.back() != w) list.push_back(w);
                }
            }
        }
        // Heap entries are totally ordered by (count, ids), so the order of these pushes cannot
        // change which pair wins next.
        for (const auto& [key, d] : delta) {
            if (d == 0) continue;
            PairStats& ps = pairs[key];
            ps.count += d;
            if (ps.count <= 0) {  // the merged pair itself ends here: no word holds it any more
                pairs.erase(key);
                continue;
            }
            heap.push({ps.count, static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(key)});
        }
    }

    VocabData v;
    v.model = "gpt2";
    v.pre = m.opt.pre;
    for (const char* s : kSpecials) {
        v.tokens.emplace_back(s);
        v.token_types.push_back(static_cast<int32_t>(TokenType::CONTROL));
    }
    for (std::string& t : text) {
        v.tokens.push_back(std::move(t));
        v.token_types.push_back(static_cast<int32_t>(TokenType::NORMAL));
    }
    v.merges = std::move(merges);
    v.bos_id = kEndOfText;
    v.pad_id = kEndOfText;
    v.eos_id = kImEnd;  // a reply ends with <|im_end|>; llama.cpp stops on it
    v.eot_id = kImEnd;
    v.add_bos = false;  // ChatML prompts start with <|im_start|>; documents are separated, not prefixed
    v.add_eos = false;
    v.chat_template = chatml_template(m.opt.default_system);
    return v;
}

}  // namespace microlm
