// Model::load: reads a Llama (or Gemma 3) GGUF's hyper-parameters (read_llama_hparams,
// llama_gguf.h) and binds every weight tensor, checking names, shapes and types.
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

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) {
    auto m = std::unique_ptr<Model>(new Model());
    m->file_ = GgufFile::open(path);
    const GgufFile& f = *m->file_;
    m->cfg_ = read_llama_hparams(f);
    const LlamaHparams& c = m->cfg_;
    Binder b(f);
    m->token_embd = b.matrix("token_embd.weight", c.dim, c.n_vocab);
    m->output_norm = b.vec("output_norm.weight", c.dim);
    m->tied_output = c.tied;
    m->output = c.tied ? m->token_embd : b.matrix("output.weight", c.dim, c.n_vocab);
    if (f.find_tensor("rope_freqs.weight")) m->rope_freq_factors = b.vec("rope_freqs.weight", c.rotated_dims() / 2);

    const int64_t q_dim = c.n_heads * c.head_dim(), kv_dim = c.n_kv_heads * c.head_dim();
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
        if (c.qk_norm) {
            w.q_norm = b.vec(p + "attn_q_norm.weight", c.head_dim());
            w.k_norm = b.vec(p + "attn_k_norm.weight", c.head_dim());
        }
        if (c.post_norms) {
            w.post_attn_norm = b.vec(p + "post_attention_norm.weight", c.dim);
            w.post_ffn_norm = b.vec(p + "post_ffw_norm.weight", c.dim);
        }
        m->layers.push_back(std::move(w));
    }
    return m;
}

}  // namespace microlm
