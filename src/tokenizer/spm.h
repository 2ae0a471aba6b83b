// SentencePiece-style BPE (GGUF `tokenizer.ggml.model = llama`), the piece merging alone, as
// llama.cpp's llm_tokenizer_spm: private to the tokenizer part; bpe.cpp's Tokenizer calls it
// for each stretch of text between special tokens.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace microlm::spm {

// U+2581, which SentencePiece vocabularies write for a space.
inline constexpr std::string_view kSpace = "\xe2\x96\x81";

// Every ' ' of `text` as kSpace (llama.cpp's llama_escape_whitespace).
std::string escape_spaces(std::string_view text);
// Every kSpace as ' '.
std::string unescape_spaces(std::string_view text);

// Splits already-escaped text into UTF-8 characters, then repeatedly merges the adjacent pair
// whose concatenation is the vocabulary token with the highest score (ties: leftmost); what is
// left is a token each, or a character that is none goes out as its bytes' <0xXX> tokens
// (byte_id[b] < 0: the byte dropped). id_of returns -1 for text that is not a token.
void segment(std::string_view text, const std::function<int32_t(std::string_view)>& id_of,
             std::span<const float> scores, const std::array<int32_t, 256>& byte_id, std::vector<int32_t>& out);

}  // namespace microlm::spm
