// export_gguf: copies each parameter (moved to CPU float32) into the GGUF writer under its
// GGUF name; the trainer's (out, in) matrices are exactly GGUF's {in, out} tensors.
#include "export_gguf.h"

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/llama_gguf.h"

namespace microlm::train {

void export_gguf(LlamaModule& model, const std::string& tokenizer_gguf, const std::string& out_path, DType type,
                 const std::string& name) {
    if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0) {
        throw Error("export: type must be f32, f16 or q8_0");
    }
    const LlamaHparams& s = model->shape();
    const auto tok = GgufFile::open(tokenizer_gguf);
    const int64_t n_tokens = static_cast<int64_t>(tok->get_str_array("tokenizer.ggml.tokens").size());
    if (n_tokens != s.n_vocab) {
        throw Error(tokenizer_gguf + ": has " + std::to_string(n_tokens) + " tokens, the model's vocab is " +
                    std::to_string(s.n_vocab));
    }
    GgufWriter w;
    set_llama_keys(w, s, type, name);
    copy_tokenizer_keys(w, *tok);
    for (const auto& [key, param] : model->named_weights()) {
        const torch::Tensor t = param.detach().to(torch::kCPU, torch::kFloat32).contiguous();
        if (t.dim() == 1) {
            w.add_tensor(key, DType::F32, {t.size(0)}, t.data_ptr<float>(), static_cast<size_t>(t.numel()) * 4);
        } else {
            add_matrix_tensor(w, key, type, t.data_ptr<float>(), t.size(1), t.size(0));
        }
    }
    w.write(out_path);
}

}  // namespace microlm::train
