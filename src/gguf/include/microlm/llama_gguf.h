// The Llama GGUF format's one owner: the hyper-parameters (LlamaHparams) read from and written to
// the `llama.*` keys, weight tensors quantized row by row, and the tokenizer keys copied from
// another GGUF. Shared by the runtime's loader, the random-model writer, the trainer's export and
// the converters. Not here: the container itself (gguf.h), binding the weights (model.h).
#pragma once

#include <cmath>
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
// Architectures other than Llama are Llama plus the differences below, as data (the forward
// pass reads them; it has no per-architecture branches). Gemma 3 (`general.architecture =
// gemma3`, keys `gemma3.*`, plus `gemma3.attention.key_length` and `.sliding_window`): embedding
// scaled by sqrt(dim), per-head RMSNorm of queries and keys, RMSNorm after attention and after
// the FFN, GELU (tanh) instead of SiLU, NeoX RoPE, and five local (sliding-window, RoPE base
// 10000) layers for every global one.
enum class Activation { kSilu, kGeluTanh };

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

    std::string arch = "llama";    // general.architecture: llama | gemma3
    int64_t key_length = 0;        // head size when not dim / n_heads (gemma3.attention.key_length); 0: dim / n_heads
    float embed_scale = 1.0f;      // the embedding is multiplied by this (Gemma: sqrt(dim))
    bool qk_norm = false;          // RMSNorm of each query and key head (attn_q_norm, attn_k_norm)
    bool post_norms = false;       // RMSNorm of the attention and FFN outputs (post_attention_norm, post_ffw_norm)
    bool neox_rope = false;        // RoPE rotates (i, i + d/2) instead of adjacent pairs (2i, 2i+1)
    Activation activation = Activation::kSilu;  // of the gate: gate(x) * up(x)
    int64_t sliding_window = 0;    // local layers attend to the last this many positions; 0: none
    int64_t swa_period = 0;        // layers l with l % period < period - 1 are local (Gemma 3: 6)
    float rope_base_local = 10000.0f;  // the local layers' RoPE base
    float attn_scale = 0.0f;       // scores are q.k times this; 0: 1 / sqrt(head_dim)

    int64_t head_dim() const { return key_length > 0 ? key_length : n_heads > 0 ? dim / n_heads : 0; }
    bool is_local(int64_t layer) const {
        return sliding_window > 0 && swa_period > 0 && layer % swa_period < swa_period - 1;
    }
    float attention_scale() const {
        return attn_scale > 0 ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim()));
    }
    int64_t rotated_dims() const { return rope_dims > 0 ? rope_dims : head_dim(); }
    int64_t parameters() const;  // with a tied embedding counted once
    // Throws microlm::Error, prefixed with `where`, on an impossible shape (a size not positive,
    // dim not n_heads heads of an even size, heads not a multiple of the KV heads, bad RoPE).
    void validate(const std::string& where) const;
};

// The hyper-parameters of a Llama or Gemma 3 GGUF (keys above, under `llama.` or `gemma3.`),
// validated; throws naming the file and key.
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
