// LlamaHparams read from and written to the llama.* keys, and the pieces every Llama GGUF
// microlm writes has in common (quantized matrices, the tokenizer keys of another file).
#include <cmath>
#include "microlm/llama_gguf.h"

#include <vector>

#include "microlm/error.h"

namespace microlm {

namespace {

int64_t positive(const GgufFile& f, const std::string& key, int64_t v, int64_t max = int64_t{1} << 24) {
    if (v <= 0 || v > max) {
        throw Error(f.path() + ": key '" + key + "' is " + std::to_string(v) + ", expected 1.." + std::to_string(max));
    }
    return v;
}

}  // namespace

int64_t LlamaHparams::parameters() const {
    const int64_t hd = head_dim(), q = n_heads * hd, kv = n_kv_heads * hd;
    const int64_t layer = 2 * dim + dim * q * 2 + dim * kv * 2 + 3 * dim * ffn_dim;
    return n_vocab * dim * (tied ? 1 : 2) + dim + n_layers * layer;
}

void LlamaHparams::validate(const std::string& where) const {
    if (n_vocab < 4 || dim < 2 || n_layers < 1 || n_heads < 1 || n_kv_heads < 1 || ffn_dim < 1 || n_ctx < 1) {
        throw Error(where + ": every size must be positive, vocab >= 4 (vocab " + std::to_string(n_vocab) +
                    ", dim " + std::to_string(dim) + ", layers " + std::to_string(n_layers) + ", heads " +
                    std::to_string(n_heads) + "/" + std::to_string(n_kv_heads) + ", ffn " + std::to_string(ffn_dim) +
                    ", ctx " + std::to_string(n_ctx) + ")");
    }
    if ((key_length == 0 && dim % n_heads != 0) || head_dim() % 2 != 0 || n_heads % n_kv_heads != 0) {
        throw Error(where + ": dim " + std::to_string(dim) + " must split into " + std::to_string(n_heads) +
                    " heads of even size, and heads " + std::to_string(n_heads) + " into " +
                    std::to_string(n_kv_heads) + " KV groups");
    }
    if (rope_dims < 0 || rope_dims > head_dim() || rope_dims % 2 != 0 || !(rope_base > 0.0f) ||
        !std::isfinite(rope_base) || !(norm_eps >= 0.0f) || !std::isfinite(norm_eps)) {
        throw Error(where + ": RoPE needs an even rope_dims up to the head size, a finite rope_base > 0 and a finite norm_eps >= 0");
    }
}

LlamaHparams read_llama_hparams(const GgufFile& f) {
    const std::string& path = f.path();
    const std::string arch = f.get_str("general.architecture");
    if (arch != "llama" && arch != "gemma3") {
        throw Error(path + ": general.architecture is '" + arch +
                    "', which this build cannot run (supported: llama, gemma3)");
    }
    LlamaHparams c;
    c.arch = arch;
    auto key = [&arch](const char* k) { return arch + "." + k; };
    if (arch == "gemma3") {
        c.key_length = positive(f, key("attention.key_length"), f.get_int(key("attention.key_length")), 4096);
        const int64_t value_length = f.get_int_opt(key("attention.value_length")).value_or(c.key_length);
        if (value_length != c.key_length) {
            throw Error(path + ": gemma3.attention.value_length " + std::to_string(value_length) +
                        " differs from key_length " + std::to_string(c.key_length) + " (not supported)");
        }
        c.qk_norm = c.post_norms = c.neox_rope = true;
        c.activation = Activation::kGeluTanh;
        c.swa_period = 6;  // llama.cpp's Gemma 3: five local layers, then a global one
        c.rope_base_local = 10000.0f;
        c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.key_length));
        if (f.get_float_opt(key("final_logit_softcapping")).value_or(0.0) != 0.0 ||
            f.get_float_opt(key("rope.scaling.factor")).value_or(1.0) != 1.0) {
            throw Error(path + ": logit soft-capping and RoPE scaling are not supported yet");
        }
    }
    c.dim = positive(f, key("embedding_length"), f.get_int(key("embedding_length")));
    c.n_layers = positive(f, key("block_count"), f.get_int(key("block_count")), 4096);
    c.n_heads = positive(f, key("attention.head_count"), f.get_int(key("attention.head_count")), 4096);
    c.n_kv_heads = positive(f, key("attention.head_count_kv"),
                            f.get_int_opt(key("attention.head_count_kv")).value_or(c.n_heads), 4096);
    c.ffn_dim = positive(f, key("feed_forward_length"), f.get_int(key("feed_forward_length")));
    c.n_ctx = positive(f, key("context_length"), f.get_int_opt(key("context_length")).value_or(2048));
    c.rope_base = static_cast<float>(f.get_float_opt(key("rope.freq_base")).value_or(10000.0));
    c.norm_eps = static_cast<float>(f.get_float_opt(key("attention.layer_norm_rms_epsilon")).value_or(1e-5));
    if (arch == "gemma3") {
        c.embed_scale = std::sqrt(static_cast<float>(c.dim));
        c.sliding_window = f.get_int_opt(key("attention.sliding_window")).value_or(0);
        if (c.sliding_window < 0) throw Error(path + ": gemma3.attention.sliding_window is negative");
    }
    if (c.key_length == 0 && c.dim % c.n_heads != 0) {
        throw Error(path + ": embedding_length " + std::to_string(c.dim) + " is not a multiple of head_count " +
                    std::to_string(c.n_heads));
    }
    if (c.n_heads % c.n_kv_heads != 0) {
        throw Error(path + ": head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " +
                    std::to_string(c.n_kv_heads));
    }
    c.rope_dims = f.get_int_opt(key("rope.dimension_count")).value_or(c.head_dim());
    if (c.rope_dims <= 0 || c.rope_dims > c.head_dim() || c.rope_dims % 2 != 0) {
        throw Error(path + ": rope.dimension_count is " + std::to_string(c.rope_dims) +
                    ", expected an even number up to the head dimension " + std::to_string(c.head_dim()));
    }
    // Finite as well: a base or an epsilon of infinity turns every activation into NaN.
    if (!(c.rope_base > 0.0f) || !std::isfinite(c.rope_base) || !(c.norm_eps >= 0.0f) || !std::isfinite(c.norm_eps)) {
        throw Error(path + ": rope.freq_base must be finite and > 0, layer_norm_rms_epsilon finite and >= 0");
    }
    const GgufTensor* embd = f.find_tensor("token_embd.weight");
    if (!embd || embd->dims.size() < 2) {
        throw Error(path + ": tensor 'token_embd.weight' is missing or not a matrix");
    }
    c.n_vocab = embd->dims[1];
    c.tied = f.find_tensor("output.weight") == nullptr;
    return c;
}

void set_llama_keys(GgufWriter& w, const LlamaHparams& s, DType type, const std::string& name) {
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
    w.set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(s.rotated_dims())));
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
