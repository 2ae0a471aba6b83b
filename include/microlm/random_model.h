// Random-weight Llama GGUF files of a chosen shape, written with microlm's own GGUF writer:
// fixtures for tests (they must load in llama.cpp too) and models for `microlm bench`.
// The vocabulary is byte-level BPE: 256 byte tokens, ChatML specials, then pair merges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "microlm/dtype.h"

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
};

// "tiny" (tests), "8m", "28m", "135m" (SmolLM2-135M's shape); nullopt otherwise.
std::optional<ModelShape> model_shape_preset(std::string_view name);

// Writes a model whose matrices have entries ~ N(0, 1/sqrt(cols)) and norms ~ 1, quantized
// to `type` (norms stay F32); deterministic for a seed.
void write_random_llama(const std::string& path, const ModelShape& shape, DType type, uint64_t seed);

}  // namespace microlm
