// `microlm prune`: a smaller Llama cut out of a larger one, to start a μLM from a teacher's
// weights instead of from noise: a chosen subset of its layers (renumbered in order) and the first
// n tokens of its byte-level BPE vocabulary (the embedding's first rows; merges kept consistent,
// tokenizer.h keep_first_tokens). Everything is written as F32, F16 or Q8_0 (what the trainer's
// init_from reads). Not here: healing the cut model (the trainer), the block formats (dtype.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "microlm/dtype.h"

namespace microlm {

struct PruneOptions {
    std::vector<int64_t> layers;       // source layer numbers, ascending, no repeats
    int32_t vocab = 0;                 // tokens kept; 0: all
    std::string chat_template_from;    // a GGUF whose tokenizer.chat_template replaces the source's; empty: keep
    DType type = DType::F32;           // of the matrices: F32, F16 or Q8_0
    std::string name;                  // general.name; empty: the output file's stem
};

struct PruneSummary {
    int64_t params_in = 0, params_out = 0;
    int64_t layers_in = 0, vocab_in = 0;
    size_t merges_in = 0, merges_out = 0;
};

// Parses "0,1,2,29" or ranges such as "0-4,29" into ascending layer numbers; throws on junk.
std::vector<int64_t> parse_layer_list(const std::string& text);

// Writes `out` atomically. Throws naming the file when the source is not a Llama with a gpt2
// vocabulary, a layer does not exist, or the vocabulary cannot be cut at opts.vocab.
PruneSummary prune_model(const std::string& in, const std::string& out, const PruneOptions& opts);

}  // namespace microlm
