// Writing Llama models as GGUF: the `llama.*` hyper-parameter keys, weight tensors quantized
// row by row, and the tokenizer keys copied from another GGUF. Shared by the random-model
// writer, the trainer's export and the converters. Not here: reading (gguf.h, model.h).
#pragma once

#include <cstdint>
#include <string>

#include "microlm/dtype.h"
#include "microlm/gguf.h"

namespace microlm {

struct ModelShape {
    int64_t n_vocab = 512;
    int64_t dim = 64;
    int64_t n_layers = 2;
    int64_t n_heads = 4;
    int64_t n_kv_heads = 2;
    int64_t ffn_dim = 160;
    int64_t n_ctx = 512;
    float rope_base = 10000.0f;
    bool tied = true;
    float norm_eps = 1e-5f;
};

// general.architecture/name/file_type and every llama.* key llama.cpp needs. `type` is the
// type of the matrices (it sets general.file_type).
void set_llama_keys(GgufWriter& w, const ModelShape& shape, DType type, const std::string& name);

// A (rows, cols) row-major float matrix as a GGUF tensor of dims {cols, rows}, quantized to
// `type`; throws if cols is not a multiple of the type's block.
void add_matrix_tensor(GgufWriter& w, const std::string& name, DType type, const float* data, int64_t cols,
                       int64_t rows);

// Copies every tokenizer.* key of `src` (the vocabulary, merges, specials, chat template).
void copy_tokenizer_keys(GgufWriter& w, const GgufFile& src);

}  // namespace microlm
