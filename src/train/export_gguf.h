// Trainer model → GGUF: the weights (matrices as F32, F16 or Q8_0; norms always F32), the
// llama.* keys, and the tokenizer keys (vocabulary, merges, specials, chat template) copied
// from the tokenizer GGUF. The file runs in microlm and in llama.cpp. Not here: checkpoints.
#pragma once

#include <string>

#include "microlm/dtype.h"
#include "llama_module.h"

namespace microlm::train {

void export_gguf(LlamaModule& model, const std::string& tokenizer_gguf, const std::string& out_path, DType type,
                 const std::string& name);

}  // namespace microlm::train
