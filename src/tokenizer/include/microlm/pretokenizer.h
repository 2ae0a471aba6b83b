// Pre-tokenizers: split text into the words BPE merges within, for the `tokenizer.ggml.pre` values
// llama.cpp knows and microlm implements, reproducing llama.cpp's splits exactly with hand-written
// matchers (no regex engine). Not the BPE itself (bpe.cpp).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace microlm::pretok {

enum class Kind {
    kDefault,         // llama.cpp's fallback: punctuation runs, GPT-2 regex, digit runs, 3-digit groups
    kGpt2,            // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kDigitsThenGpt2,  // every \p{N} alone, then the GPT-2 regex (smollm, starcoder, ...)
    kLlama3,          // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
    kQwen2,           // the Llama-3 regex with single digits, \p{N}
};

// What a `tokenizer.ggml.pre` name implies in llama.cpp besides the split itself.
struct Spec {
    Kind kind = Kind::kDefault;
    bool clean_spaces = true;      // detokenize removes the space before ?!., and some 's
    bool ignore_merges = false;    // a word that is a whole token is not merged piecewise
    bool add_bos_default = false;  // add_bos when tokenizer.ggml.add_bos_token is absent
};

// Throws microlm::Error naming `name` and listing the supported names.
Spec spec_for(std::string_view name);
std::string supported_names();  // comma-separated, for messages

// Splits `text` (raw bytes; invalid UTF-8 is replaced by U+FFFD per byte, as llama.cpp does)
// into words, each returned as UTF-8.
std::vector<std::string> split(Kind kind, std::string_view text);

}  // namespace microlm::pretok
