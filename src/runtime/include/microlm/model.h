// A Llama-architecture model (or Gemma 3: Llama plus the differences LlamaHparams describes)
// loaded from GGUF (weights stay in the read-only mapping) and the per-conversation state that
// runs it: KV cache, scratch buffers, logits.
// Not here: tokenization (tokenizer.h), sampling (sampler.h), kernels (kernels.h).
#pragma once

#include <cstdint>
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

// One conversation's state: positions 0..n_past-1 are in the KV cache.
class Context {
public:
    // n_ctx: positions the KV cache holds (capped at the model's training context);
    // n_batch: tokens per prefill step; n_threads >= 1.
    Context(const Model& model, int64_t n_ctx, int n_threads, int64_t n_batch = 64,
            const Kernels* kernels = nullptr);
    ~Context();

    // Runs `tokens` at positions n_past.. and appends them to the cache. Returns the logits
    // (n_vocab floats) of the last token; with all_logits, logits() then holds one row per
    // token of this call. Throws if the cache would overflow.
    std::span<const float> eval(std::span<const int32_t> tokens, bool all_logits = false);
    std::span<const float> logits() const { return {logits_.data(), static_cast<size_t>(logits_rows_ * n_vocab())}; }

    int64_t n_past() const { return n_past_; }
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
    std::span<const int32_t> tokens() const { return {tokens_.data(), static_cast<size_t>(n_past_)}; }
    const Kernels& kernels() const { return *kernels_; }

private:
    void eval_batch(const int32_t* tokens, int64_t n, bool all_logits, int64_t logits_row);
    // y (n, w.rows) = x (n, w.cols) times w transposed; reuse_prepared skips converting x
    // again when the previous call prepared the same x for the same weight type.
    void matmul(const WeightRef& w, const float* x, int64_t n, float* y, bool reuse_prepared = false);
    void rope(float* x, int64_t n, int64_t n_heads, const std::vector<float>& cs) const;
    void attention(int64_t layer, int64_t n);

    const Model& model_;
    const Kernels* kernels_;
    ThreadPool pool_;
    int64_t n_ctx_;
    int64_t n_batch_;
    int64_t n_past_ = 0;
    std::vector<int32_t> tokens_;  // (n_ctx) the token at each cached position

    std::vector<uint16_t> k_cache_;  // (n_layers, n_ctx, n_kv_heads * head_dim) fp16
    std::vector<uint16_t> v_cache_;  // (n_layers, n_ctx, n_kv_heads * head_dim) fp16
    // Scratch, sized at construction so that eval allocates nothing.
    std::vector<float> x_, xn_, q_, k_, v_, att_out_, gate_, up_, scores_;  // (n_batch, ...)
    std::vector<uint8_t> prepared_;  // activations in the weight type's format
    std::vector<uint16_t> q16_;      // (n_batch, n_heads * head_dim) query rounded to fp16
    std::vector<float> rope_cs_;     // (n_batch, rope_dims): cos, sin per rotated pair
    std::vector<float> rope_cs_local_;  // the same at the local layers' RoPE base (sliding-window models)
    std::vector<float> logits_;
    int64_t logits_rows_ = 0;
};

}  // namespace microlm
