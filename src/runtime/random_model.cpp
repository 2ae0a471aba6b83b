// write_random_llama: builds the tokenizer metadata and random tensors of a Llama model and
// hands them to GgufWriter. Weights are only meant to be deterministic, not meaningful.
#include "microlm/random_model.h"

#include <cmath>
#include <vector>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/unicode.h"

namespace microlm {
namespace {

std::string byte_token(int b) { return std::string(unicode::byte_to_utf8(static_cast<uint8_t>(b))); }

class Rng {
public:
    explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
    double uniform() {
        s_ ^= s_ << 13;
        s_ ^= s_ >> 7;
        s_ ^= s_ << 17;
        return static_cast<double>(s_ >> 11) * 0x1.0p-53;
    }
    float normal() {
        const double u1 = std::max(uniform(), 1e-300), u2 = uniform();
        return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }

private:
    uint64_t s_;
};

}  // namespace

std::optional<LlamaHparams> model_shape_preset(std::string_view name) {
    if (name == "tiny") return LlamaHparams{512, 64, 2, 4, 2, 160, 512, 10000.0f, true, 1e-5f};
    // Tiny, but every row a whole number of 256-element K-quant super-blocks.
    if (name == "tiny256") return LlamaHparams{512, 256, 2, 4, 2, 512, 512, 10000.0f, true, 1e-5f};
    if (name == "8m") return LlamaHparams{8192, 256, 8, 8, 2, 704, 2048, 10000.0f, true, 1e-5f};
    if (name == "28m") return LlamaHparams{12288, 512, 8, 8, 2, 1408, 2048, 10000.0f, true, 1e-5f};
    if (name == "135m") return LlamaHparams{49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, true, 1e-5f};
    return std::nullopt;
}

void write_random_llama(const std::string& path, const LlamaHparams& s, DType type, uint64_t seed) {
    const int n_special = 3;
    if (s.n_vocab < 256 + n_special || s.dim % s.n_heads != 0 || s.n_heads % s.n_kv_heads != 0) {
        throw Error("random model: invalid shape (vocab >= 259, dim % heads == 0, heads % kv_heads == 0)");
    }
    const int64_t block = dtype_block_elems(type);
    const int64_t head_dim = s.dim / s.n_heads;
    if (s.dim % block != 0 || s.ffn_dim % block != 0 || (s.n_heads * head_dim) % block != 0) {
        throw Error("random model: dim and ffn_dim must be multiples of the " +
                    std::string(dtype_name(uint32_t(type))) + " block size");
    }

    GgufWriter w;
    set_llama_keys(w, s, type, "microlm random " + std::to_string(s.dim) + "x" + std::to_string(s.n_layers));

    // Vocabulary: bytes, specials, then merged byte pairs "ab" with merge "a b".
    std::vector<std::string> tokens, merges;
    std::vector<int32_t> types;
    for (int b = 0; b < 256; ++b) {
        tokens.push_back(byte_token(b));
        types.push_back(1);
    }
    for (const char* sp : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
        tokens.push_back(sp);
        types.push_back(3);
    }
    // Pairs of byte tokens, space and lowercase letters first so that text merges a little.
    std::vector<int> order;
    for (int b : {0x20}) order.push_back(b);
    for (int b = 'a'; b <= 'z'; ++b) order.push_back(b);
    for (int b = 0; b < 256; ++b) {
        if (b != 0x20 && (b < 'a' || b > 'z')) order.push_back(b);
    }
    for (size_t i = 0; static_cast<int64_t>(tokens.size()) < s.n_vocab; ++i) {
        const std::string a = byte_token(order[i / 256]), b = byte_token(order[i % 256]);
        tokens.push_back(a + b);
        types.push_back(1);
        merges.push_back(a + " " + b);
    }
    w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
    w.set("tokenizer.ggml.pre", GgufValue::str("default"));
    w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
    w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    w.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
    w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(256));
    w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(258));
    w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(256));
    w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    w.set("tokenizer.chat_template",
          GgufValue::str("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                         "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"));

    Rng rng(seed);
    auto add_matrix = [&](const std::string& name, int64_t cols, int64_t rows) {
        std::vector<float> f(static_cast<size_t>(cols * rows));
        const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
        for (auto& v : f) v = rng.normal() * scale;
        add_matrix_tensor(w, name, type, f.data(), cols, rows);
    };
    auto add_norm = [&](const std::string& name, int64_t n) {
        std::vector<float> f(static_cast<size_t>(n));
        for (auto& v : f) v = 1.0f + 0.1f * rng.normal();
        w.add_tensor(name, DType::F32, {n}, f.data(), f.size() * sizeof(float));
    };
    const int64_t q_dim = s.n_heads * head_dim, kv_dim = s.n_kv_heads * head_dim;
    // The embedding is read like the matrices: entries ~ N(0, 1) would swamp the norms, so
    // scale it as a matrix with `dim` columns.
    add_matrix("token_embd.weight", s.dim, s.n_vocab);
    add_norm("output_norm.weight", s.dim);
    if (!s.tied) add_matrix("output.weight", s.dim, s.n_vocab);
    for (int64_t l = 0; l < s.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add_norm(p + "attn_norm.weight", s.dim);
        add_matrix(p + "attn_q.weight", s.dim, q_dim);
        add_matrix(p + "attn_k.weight", s.dim, kv_dim);
        add_matrix(p + "attn_v.weight", s.dim, kv_dim);
        add_matrix(p + "attn_output.weight", q_dim, s.dim);
        add_norm(p + "ffn_norm.weight", s.dim);
        add_matrix(p + "ffn_gate.weight", s.dim, s.ffn_dim);
        add_matrix(p + "ffn_up.weight", s.dim, s.ffn_dim);
        add_matrix(p + "ffn_down.weight", s.ffn_dim, s.dim);
    }
    w.write(path);
}

}  // namespace microlm
