// `microlm quantize`: a GGUF model's matrices written again in another type, or in one of the
// usual K-quant mixes (Q4_K_M, Q5_K_M: which tensors get more bits follows llama.cpp's published
// rule), everything else (metadata, norms, the tokenizer) copied. Not here: the block formats
// themselves (dtype.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "microlm/dtype.h"

namespace microlm {

// A target: one type for every matrix, or a mix.
struct QuantizeTarget {
    std::string name;       // as given: "q8_0", "q4_k_m", ...
    DType base;             // the type of most matrices
    std::optional<DType> more_bits;  // the mix's type for the output and some attn_v / ffn_down
    uint32_t file_type;     // llama.cpp's llama_ftype, written as general.file_type
};
// Parses q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q4_k_m q5_k_m (case-insensitive); nullopt else.
std::optional<QuantizeTarget> quantize_target(std::string_view name);
std::string quantize_target_names();  // for help texts and errors

// The type a matrix gets: the mix's rule for `tensor` (blk.N.attn_v.weight ...; n_layers from
// the file; a tied token_embd.weight is also the output matrix), then the fallback when its rows
// (cols elements) are not whole blocks of that type: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
// as llama.cpp does.
DType quantized_type(const QuantizeTarget& t, const std::string& tensor, int64_t n_layers, int64_t cols,
                     bool tied_embedding = true);

struct QuantizeSummary {
    std::map<std::string, int> types;  // type name -> matrices written in it
    uint64_t bytes_in = 0, bytes_out = 0;
    int copied = 0;  // tensors copied unchanged (norms, 1-D)
};
// progress(done, total) after each tensor. Writes `out` atomically.
QuantizeSummary quantize_model(const std::string& in, const std::string& out, const QuantizeTarget& target,
                               const std::function<void(size_t, size_t)>& progress = {});

}  // namespace microlm
