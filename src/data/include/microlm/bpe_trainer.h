// Byte-level BPE training: counts the pre-tokenizer's words in a text sample and merges the
// most frequent adjacent pair until the vocabulary is full, producing a VocabData that the
// runtime Tokenizer and llama.cpp both load. Not the tokenizer itself (tokenizer.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "microlm/tokenizer.h"

namespace microlm {

struct BpeTrainerOptions {
    // Total tokens: the 3 ChatML specials + 256 bytes + merged tokens.
    int32_t vocab_size = 8192;
    // A `tokenizer.ggml.pre` the runtime and llama.cpp both implement. "qwen2" is the Llama-3
    // split with one digit per word (numbers spend no vocabulary on digit groups) and no
    // space clean-up when decoding, so decode(encode(text)) gives the text back.
    std::string pre = "qwen2";
    // A default system message written into the chat template; the data pipeline and the
    // runtime both insert it when a conversation has none. nullopt: no system turn.
    std::optional<std::string> default_system;
};

// Progress of train(): merges done out of those wanted.
using BpeProgress = std::function<void(int32_t done, int32_t total)>;

class BpeTrainer {
public:
    explicit BpeTrainer(BpeTrainerOptions options);  // throws on an unknown `pre` or a vocab < 259
    ~BpeTrainer();
    BpeTrainer(BpeTrainer&&) noexcept;
    BpeTrainer& operator=(BpeTrainer&&) noexcept;

    // Pre-tokenizes one document and counts its words. Texts are never joined, so no word
    // spans two documents.
    void add_text(std::string_view text);
    uint64_t bytes_added() const;
    uint64_t unique_words() const;

    // Merges until the vocabulary is full. Ties between equally frequent pairs go to the pair
    // of lowest token ids (bytes by value, then merges in order), so the result depends only
    // on the words counted, never on hash order. Throws when the sample runs out of pairs.
    VocabData train(const BpeProgress& progress = {}) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace microlm
