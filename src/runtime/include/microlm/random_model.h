// Random-weight Llama GGUF files of a chosen shape, written with microlm's own GGUF writer:
// fixtures for tests (they must load in llama.cpp too) and models for `microlm bench`.
// The vocabulary is byte-level BPE: 256 byte tokens, ChatML specials, then pair merges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "microlm/dtype.h"
#include "microlm/llama_gguf.h"

namespace microlm {

// "tiny" (tests), "8m", "28m", "135m" (SmolLM2-135M's shape); nullopt otherwise.
std::optional<LlamaHparams> model_shape_preset(std::string_view name);

// Writes a model whose matrices have entries ~ N(0, 1/sqrt(cols)) and norms ~ 1, quantized
// to `type` (norms stay F32); deterministic for a seed.
void write_random_llama(const std::string& path, const LlamaHparams& shape, DType type, uint64_t seed);

}  // namespace microlm
