// A Llama-architecture model (or Gemma 3: Llama plus the differences LlamaHparams describes)
// loaded from GGUF (weights stay in the read-only mapping) and the per-conversation state that
// runs it: KV cache, scratch buffers, logits.
// Not here: tokenization (tokenizer.h), sampling (sampler.h), kernels (kernels.h).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "microlm/gguf.h"
#include "microlm/kernels.h"
#include "microlm/llama_gguf.h"
#include "microlm/thread_pool.h"

namespace microlm {

struct LayerWeights {
    std::vector<float> attn_norm;  // (dim)
    std::vector<float> ffn_norm;   // (dim)
    WeightRef wq;      // (n_heads * head_dim rows, dim cols)
    WeightRef wk;      // (n_kv_heads * head_dim, dim)
    WeightRef wv;      // (n_kv_heads * head_dim, dim)
    WeightRef wo;      // (dim, n_heads * head_dim)
    WeightRef w_gate;  // (ffn_dim, dim)
    WeightRef w_up;    // (ffn_dim, dim)
    WeightRef w_down;  // (dim, ffn_dim)
    // Gemma 3 only (empty otherwise): per-head query/key norms and the norms after attention and FFN.
    std::vector<float> q_norm, k_norm;            // (head_dim)
    std::vector<float> post_attn_norm, post_ffn_norm;  // (dim)

    // The seven matrices, in the order a token meets them.
    std::array<const WeightRef*, 7> matrices() const { return {&wq, &wk, &wv, &wo, &w_gate, &w_up, &w_down}; }
};

class Model {
public:
    // Maps and validates a GGUF file; throws microlm::Error naming the file, tensor or key.
    static std::unique_ptr<Model> load(const std::string& path);

    const LlamaHparams& config() const { return cfg_; }
    const GgufFile& file() const { return *file_; }

    // Weights, exposed for the forward pass.
    WeightRef token_embd;            // (n_vocab, dim)
    WeightRef output;                // (n_vocab, dim): token_embd when tied
    std::vector<float> output_norm;  // (dim)
    std::vector<float> rope_freq_factors;  // (rope_dims / 2) or empty
    std::vector<LayerWeights> layers;
    bool tied_output = false;

private:
    std::unique_ptr<GgufFile> file_;
    LlamaHparams cfg_;
};

// One conversation's state: positions 0..n_past-1 are in the KV cache. A Context made with
// n_seqs > 1 holds that many independent sequences, each with its own cache of n_ctx positions,
// for batched generation (eval_seqs); every other member acts on sequence 0.
class Context {
public:
    // n_ctx: positions the KV cache holds per sequence (capped at the model's training context);
    // n_batch: tokens per forward pass (prefill step, or rows of eval_seqs); n_threads >= 1.
    Context(const Model& model, int64_t n_ctx, int n_threads, int64_t n_batch = 64,
            const Kernels* kernels = nullptr, int32_t n_seqs = 1);
    ~Context();

    // One row of a batched step: `token` at sequence `seq`'s next position.
    struct SeqToken {
        int32_t token = 0;
        int32_t seq = 0;
        bool logits = false;  // return this row's logits
    };
    // Runs rows of several sequences in one forward pass (one matrix product per weight for all
    // of them; each row attends only to its own sequence); a sequence's rows are taken in order.
    // Returns the logits of the rows that ask for them, n_vocab floats each, in row order.
    // Throws if there are more rows than n_batch or a sequence's cache would overflow.
    std::span<const float> eval_seqs(std::span<const SeqToken> rows);
    int32_t n_seqs() const { return static_cast<int32_t>(past_.size()); }
    int64_t n_past(int32_t seq) const;
    // Forgets every position of sequence `seq`.
    void clear_seq(int32_t seq);
    int64_t n_batch() const { return n_batch_; }

    // Runs `tokens` at positions n_past.. and appends them to the cache. Returns the logits
    // (n_vocab floats) of the last token; with all_logits, logits() then holds one row per
    // token of this call. Throws if the cache would overflow.
    std::span<const float> eval(std::span<const int32_t> tokens, bool all_logits = false);
    std::span<const float> logits() const { return {logits_.data(), static_cast<size_t>(logits_rows_ * n_vocab())}; }

    int64_t n_past() const { return past_[0]; }
    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_vocab() const { return model_.config().n_vocab; }
    const Model& model() const { return model_; }
    // Forgets every position from n on (n <= n_past): reuse a common prefix, e.g. the
    // system prompt, without recomputing it.
    void truncate(int64_t n);
    // Keeps the longest prefix of the cached tokens that `tokens` starts with (at most
    // tokens.size() - 1, so that evaluating the rest yields logits), drops the rest, and
    // returns its length: eval(tokens.subspan(result)) then continues the conversation.
    int64_t reuse_prefix(std::span<const int32_t> tokens);
    // The tokens whose keys and values are in the cache, in order.
    std::span<const int32_t> tokens() const { return {tokens_.data(), static_cast<size_t>(past_[0])}; }
    const Kernels& kernels() const { return *kernels_; }

private:
    // The forward pass over n rows whose sequence and position are in row_seq_ and row_pos_
    // (their KV written there); the final norm and output matmul run only for the n_out rows
    // listed in out_rows, whose logits go to `out`. Advances no sequence: callers do.
    void eval_batch(const int32_t* tokens, int64_t n, const int64_t* out_rows, int64_t n_out, float* out);
    void check_token(int32_t id) const;
    uint16_t* cache_row(std::vector<uint16_t>& cache, int64_t layer, int64_t seq, int64_t pos);
    // y (n, w.rows) = x (n, w.cols) times w transposed; reuse_prepared skips converting x
    // again when the previous call prepared the same x for the same weight type.
    void matmul(const WeightRef& w, const float* x, int64_t n, float* y, bool reuse_prepared = false);
    // One weight and where its n rows of products go.
    struct Product {
        const WeightRef* w;
        float* y;
    };
    // Products of several weights with the same activations (Q, K and V; gate and up): prepared
    // once, their rows split across the threads as one range (one hand-out and one wait, not one
    // per matrix). Weights of different types run one after another.
    void matmuls(std::initializer_list<Product> products, const float* x, int64_t n);
    // gate_ = SwiGLU(gate · x, up · x) for n rows of x: each thread takes a range of the FFN's
    // rows, both products for it, and applies SwiGLU to what it computed (no serial pass after).
    void gated_ffn(const LayerWeights& w, const float* x, int64_t n);
    void rope(float* x, int64_t n, int64_t n_heads, const std::vector<float>& cs) const;
    void attention(int64_t layer, int64_t n);

    const Model& model_;
    const Kernels* kernels_;
    ThreadPool pool_;
    int64_t n_ctx_;
    int64_t n_batch_;
    std::vector<int64_t> past_;    // (n_seqs) positions in each sequence's cache
    std::vector<int32_t> tokens_;  // (n_seqs, n_ctx) the token at each cached position
    std::vector<int64_t> row_seq_, row_pos_, out_rows_;  // (n_batch) the current pass's rows

    std::vector<uint16_t> k_cache_;  // (n_layers, n_seqs, n_ctx, n_kv_heads * head_dim) fp16
    std::vector<uint16_t> v_cache_;  // (n_layers, n_seqs, n_ctx, n_kv_heads * head_dim) fp16
    // Scratch, sized at construction so that eval allocates nothing.
    std::vector<float> x_, xn_, q_, k_, v_, att_out_, gate_, up_, scores_;  // (n_batch, ...)
    std::vector<uint8_t> prepared_;  // activations in the weight type's format
    std::vector<uint16_t> q16_;      // (n_batch, n_heads * head_dim) query rounded to fp16
    std::vector<float> rope_cs_;     // (n_batch, rope_dims): cos, sin per rotated pair of each row
    std::vector<float> rope_cs_local_;  // the same at the local layers' RoPE base (sliding-window models)
    std::vector<float> logits_;
    int64_t logits_rows_ = 0;
};

}  // namespace microlm
