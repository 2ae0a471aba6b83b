// set_llama_keys, add_matrix_tensor, copy_tokenizer_keys: the pieces every Llama GGUF
// microlm writes has in common.
#include "microlm/llama_gguf.h"

#include <vector>

#include "microlm/error.h"

namespace microlm {

void set_llama_keys(GgufWriter& w, const ModelShape& s, DType type, const std::string& name) {
    const int64_t head_dim = s.dim / s.n_heads;
    w.set("general.architecture", GgufValue::str("llama"));
    w.set("general.name", GgufValue::str(name));
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q4_1 3, MOSTLY_Q8_0 7.
    const uint32_t ftype = type == DType::F32 ? 0 : type == DType::F16 ? 1 : type == DType::Q4_0 ? 2
                         : type == DType::Q4_1 ? 3 : 7;
    w.set("general.file_type", GgufValue::u32(ftype));
    w.set("llama.context_length", GgufValue::u32(static_cast<uint32_t>(s.n_ctx)));
    w.set("llama.embedding_length", GgufValue::u32(static_cast<uint32_t>(s.dim)));
    w.set("llama.block_count", GgufValue::u32(static_cast<uint32_t>(s.n_layers)));
    w.set("llama.feed_forward_length", GgufValue::u32(static_cast<uint32_t>(s.ffn_dim)));
    w.set("llama.attention.head_count", GgufValue::u32(static_cast<uint32_t>(s.n_heads)));
    w.set("llama.attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(s.n_kv_heads)));
    w.set("llama.rope.freq_base", GgufValue::f32(s.rope_base));
    w.set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(head_dim)));
    w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(s.norm_eps));
    w.set("llama.vocab_size", GgufValue::u32(static_cast<uint32_t>(s.n_vocab)));
}

void add_matrix_tensor(GgufWriter& w, const std::string& name, DType type, const float* data, int64_t cols,
                       int64_t rows) {
    if (cols % dtype_block_elems(type) != 0) {
        throw Error(name + ": " + std::to_string(cols) + " columns are not a multiple of the " +
                    std::string(dtype_name(static_cast<uint32_t>(type))) + " block size " +
                    std::to_string(dtype_block_elems(type)));
    }
    const size_t row_bytes = dtype_row_bytes(type, cols);
    std::vector<uint8_t> q(row_bytes * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) quantize_row(type, data + r * cols, q.data() + static_cast<size_t>(r) * row_bytes, cols);
    w.add_tensor(name, type, {cols, rows}, q.data(), q.size());
}

void copy_tokenizer_keys(GgufWriter& w, const GgufFile& src) {
    bool any = false;
    for (const auto& [key, value] : src.metadata()) {
        if (key.rfind("tokenizer.", 0) == 0) {
            w.set(key, value);
            any = true;
        }
    }
    if (!any) throw Error(src.path() + ": has no tokenizer.* keys to copy");
}

}  // namespace microlm
