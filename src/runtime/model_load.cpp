// Model::load: reads a Llama GGUF's hyperparameters and binds every weight tensor, checking
// names, shapes and types. Keys used (prefix "llama."): embedding_length, block_count,
// attention.head_count, attention.head_count_kv, feed_forward_length, context_length,
// rope.freq_base, rope.dimension_count, attention.layer_norm_rms_epsilon.
#include <vector>

#include "microlm/error.h"
#include "microlm/model.h"

namespace microlm {
namespace {

std::string dims_str(const std::vector<int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
}

class Binder {
public:
    explicit Binder(const GgufFile& f) : f_(f) {}

    const GgufTensor& tensor(const std::string& name, const std::vector<int64_t>& dims) const {
        const GgufTensor* t = f_.find_tensor(name);
        if (!t) throw Error(f_.path() + ": tensor '" + name + "' is missing (expected shape " + dims_str(dims) + ")");
        std::vector<int64_t> got = t->dims;
        while (got.size() > dims.size() && got.back() == 1) got.pop_back();
        if (got != dims) {
            throw Error(f_.path() + ": tensor '" + name + "' has shape " + dims_str(t->dims) +
                        ", expected " + dims_str(dims));
        }
        return *t;
    }

    WeightRef matrix(const std::string& name, int64_t cols, int64_t rows) const {
        const GgufTensor& t = tensor(name, {cols, rows});
        auto type = static_cast<DType>(t.type);
        return WeightRef{type, t.data, rows, cols, dtype_row_bytes(type, cols)};
    }

    std::vector<float> vec(const std::string& name, int64_t n) const {
        const GgufTensor& t = tensor(name, {n});
        std::vector<float> out(static_cast<size_t>(n));
        dequantize_row(static_cast<DType>(t.type), t.data, out.data(), n);
        return out;
    }

private:
    const GgufFile& f_;
};

int64_t positive(const GgufFile& f, const std::string& key, int64_t v, int64_t max = int64_t{1} << 24) {
    if (v <= 0 || v > max) {
        throw Error(f.path() + ": key '" + key + "' is " + std::to_string(v) + ", expected 1.." + std::to_string(max));
    }
    return v;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
    auto m = std::unique_ptr<Model>(new Model());
    m->file_ = GgufFile::open(path);
    const GgufFile& f = *m->file_;
    const std::string arch = f.get_str("general.architecture");
    if (arch != "llama") {
        throw Error(path + ": general.architecture is '" + arch + "', which this build cannot run (supported: llama)");
    }
    LlamaConfig& c = m->cfg_;
    auto key = [](const char* k) { return std::string("llama.") + k; };
    c.dim = positive(f, key("embedding_length"), f.get_int(key("embedding_length")));
    c.n_layers = positive(f, key("block_count"), f.get_int(key("block_count")), 4096);
    c.n_heads = positive(f, key("attention.head_count"), f.get_int(key("attention.head_count")), 4096);
    c.n_kv_heads = positive(f, key("attention.head_count_kv"),
                            f.get_int_opt(key("attention.head_count_kv")).value_or(c.n_heads), 4096);
    c.ffn_dim = positive(f, key("feed_forward_length"), f.get_int(key("feed_forward_length")));
    c.n_ctx_train = positive(f, key("context_length"), f.get_int_opt(key("context_length")).value_or(2048));
    c.rope_base = static_cast<float>(f.get_float_opt(key("rope.freq_base")).value_or(10000.0));
    c.rms_eps = static_cast<float>(f.get_float_opt(key("attention.layer_norm_rms_epsilon")).value_or(1e-5));
    if (c.dim % c.n_heads != 0) {
        throw Error(path + ": embedding_length " + std::to_string(c.dim) + " is not a multiple of head_count " +
                    std::to_string(c.n_heads));
    }
    if (c.n_heads % c.n_kv_heads != 0) {
        throw Error(path + ": head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " +
                    std::to_string(c.n_kv_heads));
    }
    c.head_dim = c.dim / c.n_heads;
    c.rope_dims = f.get_int_opt(key("rope.dimension_count")).value_or(c.head_dim);
    if (c.rope_dims <= 0 || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0) {
        throw Error(path + ": rope.dimension_count is " + std::to_string(c.rope_dims) +
                    ", expected an even number up to the head dimension " + std::to_string(c.head_dim));
    }
    if (!(c.rope_base > 0.0f) || !(c.rms_eps >= 0.0f)) {
        throw Error(path + ": rope.freq_base must be > 0 and layer_norm_rms_epsilon >= 0");
    }

    const GgufTensor* embd = f.find_tensor("token_embd.weight");
    if (!embd || embd->dims.size() < 2) {
        throw Error(path + ": tensor 'token_embd.weight' is missing or not a matrix");
    }
    c.n_vocab = embd->dims[1];
    Binder b(f);
    m->token_embd = b.matrix("token_embd.weight", c.dim, c.n_vocab);
    m->output_norm = b.vec("output_norm.weight", c.dim);
    m->tied_output = f.find_tensor("output.weight") == nullptr;
    m->output = m->tied_output ? m->token_embd : b.matrix("output.weight", c.dim, c.n_vocab);
    if (f.find_tensor("rope_freqs.weight")) m->rope_freq_factors = b.vec("rope_freqs.weight", c.rope_dims / 2);

    const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerWeights w;
        w.attn_norm = b.vec(p + "attn_norm.weight", c.dim);
        w.ffn_norm = b.vec(p + "ffn_norm.weight", c.dim);
        w.wq = b.matrix(p + "attn_q.weight", c.dim, q_dim);
        w.wk = b.matrix(p + "attn_k.weight", c.dim, kv_dim);
        w.wv = b.matrix(p + "attn_v.weight", c.dim, kv_dim);
        w.wo = b.matrix(p + "attn_output.weight", q_dim, c.dim);
        w.w_gate = b.matrix(p + "ffn_gate.weight", c.dim, c.ffn_dim);
        w.w_up = b.matrix(p + "ffn_up.weight", c.dim, c.ffn_dim);
        w.w_down = b.matrix(p + "ffn_down.weight", c.ffn_dim, c.dim);
        m->layers.push_back(std::move(w));
    }
    return m;
}

}  // namespace microlm
