// The tokenizer built from GGUF metadata, as llama.cpp's llama_vocab: byte-level BPE
// (`tokenizer.ggml.model = gpt2`: pre-tokenizer chosen by `tokenizer.ggml.pre`, merges by rank)
// or SentencePiece-style BPE (`llama`: Gemma, Llama 2; pieces merged by score, spaces as U+2581,
// bytes as <0xXX> tokens), special tokens matched in text, and decoding that never crashes on
// any id or byte sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace microlm {

class GgufFile;
class GgufWriter;

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
    UNDEFINED = 0,
    NORMAL = 1,
    UNKNOWN = 2,
    CONTROL = 3,
    USER_DEFINED = 4,
    UNUSED = 5,
    BYTE = 6,
};

// Everything the tokenizer needs, as read from GGUF metadata (or built by a trainer).
struct VocabData {
    std::string model = "gpt2";  // tokenizer.ggml.model: gpt2 or llama
    std::string pre = "default";  // tokenizer.ggml.pre
    std::vector<std::string> tokens;  // byte-level (GPT-2 byte-to-unicode) token texts
    std::vector<int32_t> token_types;  // TokenType per token; empty = all NORMAL
    std::vector<std::string> merges;  // gpt2: "left right", rank = index
    std::vector<float> scores;        // llama: tokenizer.ggml.scores, one per token (merge priority)
    int32_t bos_id = -1, eos_id = -1, eot_id = -1, pad_id = -1, unk_id = -1;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;  // tokenizer.ggml.add_space_prefix: decode drops one leading space
    std::string chat_template;  // tokenizer.chat_template, may be empty
};

// Reads the tokenizer keys of a GGUF file; throws naming the file and key when invalid.
VocabData vocab_from_gguf(const GgufFile& file);
// The tokenizer.* keys of `vocab`, as vocab_from_gguf reads them back.
void set_vocab_keys(GgufWriter& writer, const VocabData& vocab);
// A GGUF holding only tokenizer.* keys (no tensors), written atomically.
void write_vocab_gguf(const std::string& path, const VocabData& vocab);
// The first n tokens of a byte-level BPE vocabulary and the merges among them (a pruned model's
// vocabulary); throws if a special token or a kept token's merge lies past n.
VocabData keep_first_tokens(const VocabData& vocab, int32_t n);

class Tokenizer {
public:
    explicit Tokenizer(VocabData vocab);  // throws microlm::Error on an unusable vocab
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // add_special: prepend BOS / append EOS where the vocab asks for it (as llama.cpp).
    // parse_special: text such as "<|im_start|>" becomes the control token itself.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
    // The bytes of one token; control tokens render as their text only if render_special.
    std::string token_to_piece(int32_t id, bool render_special) const;
    std::string decode(std::span<const int32_t> ids, bool render_special) const;

    int32_t n_vocab() const;
    int32_t bos_id() const;
    int32_t eos_id() const;
    // End of generation: EOS, EOT, or a ChatML/end-of-text control token such as <|im_end|>.
    bool is_end_of_generation(int32_t id) const;
    int32_t token_id(std::string_view text) const;  // -1 if absent
    const VocabData& vocab() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Holds back the bytes of an incomplete UTF-8 sequence so that streamed output never
// splits a character; invalid sequences are passed through as U+FFFD.
class Utf8Streamer {
public:
    std::string push(std::string_view bytes);  // returns what is complete so far
    std::string flush();                       // the rest, incomplete sequences as U+FFFD
private:
    std::string pending_;
};

}  // namespace microlm
