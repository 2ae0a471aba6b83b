// The trainer's Llama: the same architecture and numerics convention as the runtime
// (RMSNorm, RoPE on adjacent pairs as GGUF llama tensors expect, GQA, SwiGLU, tied output),
// as a libtorch module so autograd trains it. Not here: data, the optimizer, export.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "microlm/llama_gguf.h"

namespace microlm::train {

// Tensor names follow GGUF ("token_embd.weight", "blk.3.attn_q.weight", ...), and every
// matrix is stored (out_features, in_features): the same bytes a GGUF tensor with dims
// {in, out} holds, so export copies them unchanged.
class LlamaModuleImpl : public torch::nn::Module {
public:
    explicit LlamaModuleImpl(const LlamaHparams& shape);

    // ids: (B, T) int64 → logits (B, T, n_vocab), positions 0..T-1.
    torch::Tensor forward(const torch::Tensor& ids);

    // N(0, 0.02) matrices, the residual outputs (attn_output, ffn_down) scaled by
    // 1/sqrt(2 n_layers), norms 1; deterministic under torch::manual_seed.
    void init_weights();

    const LlamaHparams& shape() const { return shape_; }
    // Parameters in export order with their GGUF names.
    std::vector<std::pair<std::string, torch::Tensor>> named_weights() const;

private:
    struct Layer {
        torch::Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
    };
    torch::Tensor rope(const torch::Tensor& x) const;  // (B, T, H, hd)

    LlamaHparams shape_;
    torch::Tensor token_embd_;   // (n_vocab, dim)
    torch::Tensor output_norm_;  // (dim)
    std::vector<Layer> layers_;
    std::vector<std::pair<std::string, torch::Tensor>> weights_;  // GGUF name, parameter
    torch::Tensor rope_cos_, rope_sin_;  // (n_ctx, hd/2), buffers
};
TORCH_MODULE(LlamaModule);

}  // namespace microlm::train
