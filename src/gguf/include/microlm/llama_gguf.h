// The Llama GGUF format's one owner: the hyper-parameters (LlamaHparams) read from and written to
// the `llama.*` keys, weight tensors quantized row by row, and the tokenizer keys copied from
// another GGUF. Shared by the runtime's loader, the random-model writer, the trainer's export and
// the converters. Not here: the container itself (gguf.h), binding the weights (model.h).
#pragma once

#include <cstdint>
#include <string>

#include "microlm/dtype.h"
#include "microlm/gguf.h"

namespace microlm {

// A Llama model's hyper-parameters: the one type the runtime, the trainer, the converters and
// the random-model writer share. Read (read_llama_hparams) and written (set_llama_keys) only here.
//
// The GGUF keys a Llama file must or may hold (as llama.cpp reads them):
//   general.architecture            "llama" (required)
//   llama.embedding_length          dim (required)
//   llama.block_count               n_layers (required)
//   llama.attention.head_count      n_heads (required)
//   llama.attention.head_count_kv   n_kv_heads (default n_heads: no grouped-query attention)
//   llama.feed_forward_length       ffn_dim (required)
//   llama.context_length            n_ctx (default 2048)
//   llama.rope.dimension_count      rope_dims (default head_dim; even, at most head_dim)
//   llama.rope.freq_base            rope_base (default 10000)
//   llama.attention.layer_norm_rms_epsilon  norm_eps (default 1e-5)
//   tensor token_embd.weight        {dim, n_vocab}: gives n_vocab
//   tensor output.weight            absent: the output matrix is the embedding (tied)
// The tokenizer.* keys are read and written beside the tokenizer (tokenizer.h).
// The defaults are the `tiny` random test shape (make-random --shape tiny).
struct LlamaHparams {
    int64_t n_vocab = 512;
    int64_t dim = 64;
    int64_t n_layers = 2;
    int64_t n_heads = 4;
    int64_t n_kv_heads = 2;
    int64_t ffn_dim = 160;
    int64_t n_ctx = 512;  // positions the model was trained for: the most a Context may use
    float rope_base = 10000.0f;
    bool tied = true;
    float norm_eps = 1e-5f;
    int64_t rope_dims = 0;  // rotated dimensions per head; 0 = all of them

    int64_t head_dim() const { return n_heads > 0 ? dim / n_heads : 0; }
    int64_t rotated_dims() const { return rope_dims > 0 ? rope_dims : head_dim(); }
    int64_t parameters() const;  // with a tied embedding counted once
    // Throws microlm::Error, prefixed with `where`, on an impossible shape (a size not positive,
    // dim not n_heads heads of an even size, heads not a multiple of the KV heads, bad RoPE).
    void validate(const std::string& where) const;
};

// The hyper-parameters of a Llama GGUF (keys above), validated; throws naming the file and key.
LlamaHparams read_llama_hparams(const GgufFile& file);

// general.architecture/name/file_type and every llama.* key llama.cpp needs. `type` is the
// type of the matrices (it sets general.file_type).
void set_llama_keys(GgufWriter& w, const LlamaHparams& hp, DType type, const std::string& name);

// A (rows, cols) row-major float matrix as a GGUF tensor of dims {cols, rows}, quantized to
// `type`; throws if cols is not a multiple of the type's block.
void add_matrix_tensor(GgufWriter& w, const std::string& name, DType type, const float* data, int64_t cols,
                       int64_t rows);

// Copies every tokenizer.* key of `src` (the vocabulary, merges, specials, chat template).
void copy_tokenizer_keys(GgufWriter& w, const GgufFile& src);

}  // namespace microlm
