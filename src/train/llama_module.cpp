// The trainer's Llama forward pass in libtorch. Attention is written out (no fused kernel)
// so that float64 gradient checks and CPU/CUDA runs share one definition.
#include "llama_module.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/embedding.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>

#include <cmath>

#include "microlm/error.h"

namespace microlm::train {

namespace F = torch::nn::functional;

LlamaModuleImpl::LlamaModuleImpl(const LlamaHparams& shape) : shape_(shape) {
    shape_.validate("model shape");
    const int64_t hd = shape_.head_dim(), q = shape_.n_heads * hd, kv = shape_.n_kv_heads * hd;
    // libtorch forbids dots in parameter names: registered as "blk_3_attn_q_weight", kept
    // with the GGUF name for export.
    auto register_parameter = [this](const std::string& name, torch::Tensor t) {
        std::string key = name;
        for (char& ch : key) ch = ch == '.' ? '_' : ch;
        auto p = Module::register_parameter(key, std::move(t));
        weights_.emplace_back(name, p);
        return p;
    };
    token_embd_ = register_parameter("token_embd.weight", torch::empty({shape_.n_vocab, shape_.dim}));
    output_norm_ = register_parameter("output_norm.weight", torch::ones({shape_.dim}));
    for (int64_t l = 0; l < shape_.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        Layer L;
        L.attn_norm = register_parameter(p + "attn_norm.weight", torch::ones({shape_.dim}));
        L.wq = register_parameter(p + "attn_q.weight", torch::empty({q, shape_.dim}));
        L.wk = register_parameter(p + "attn_k.weight", torch::empty({kv, shape_.dim}));
        L.wv = register_parameter(p + "attn_v.weight", torch::empty({kv, shape_.dim}));
        L.wo = register_parameter(p + "attn_output.weight", torch::empty({shape_.dim, q}));
        L.ffn_norm = register_parameter(p + "ffn_norm.weight", torch::ones({shape_.dim}));
        L.w_gate = register_parameter(p + "ffn_gate.weight", torch::empty({shape_.ffn_dim, shape_.dim}));
        L.w_up = register_parameter(p + "ffn_up.weight", torch::empty({shape_.ffn_dim, shape_.dim}));
        L.w_down = register_parameter(p + "ffn_down.weight", torch::empty({shape_.dim, shape_.ffn_dim}));
        layers_.push_back(L);
    }
    // theta_i = pos * base^(-2i/hd), computed in double like the runtime's table is exact
    // enough to agree at float precision.
    auto inv = torch::pow(shape_.rope_base, -torch::arange(0, hd, 2, torch::kFloat64) / static_cast<double>(hd));
    auto pos = torch::arange(shape_.n_ctx, torch::kFloat64).unsqueeze(1);
    auto ang = pos * inv.unsqueeze(0);
    rope_cos_ = register_buffer("rope_cos", torch::cos(ang).to(torch::kFloat32));
    rope_sin_ = register_buffer("rope_sin", torch::sin(ang).to(torch::kFloat32));
    init_weights();
}

void LlamaModuleImpl::init_weights() {
    torch::NoGradGuard no_grad;
    const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(shape_.n_layers));
    torch::nn::init::normal_(token_embd_, 0.0, 0.02);
    output_norm_.fill_(1.0);
    for (auto& L : layers_) {
        L.attn_norm.fill_(1.0);
        L.ffn_norm.fill_(1.0);
        for (auto* w : {&L.wq, &L.wk, &L.wv, &L.w_gate, &L.w_up}) torch::nn::init::normal_(*w, 0.0, 0.02);
        torch::nn::init::normal_(L.wo, 0.0, out_std);
        torch::nn::init::normal_(L.w_down, 0.0, out_std);
    }
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModuleImpl::named_weights() const {
    return weights_;
}

namespace {

torch::Tensor rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
    return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

}  // namespace

torch::Tensor LlamaModuleImpl::rope(const torch::Tensor& x) const {
    // x: (B, T, H, hd); pairs (2i, 2i+1) rotate by theta_i.
    const int64_t T = x.size(1), hd = x.size(3);
    auto xp = x.reshape({x.size(0), T, x.size(2), hd / 2, 2});
    auto x0 = xp.select(-1, 0), x1 = xp.select(-1, 1);
    auto c = rope_cos_.slice(0, 0, T).to(x.dtype()).view({1, T, 1, hd / 2});
    auto s = rope_sin_.slice(0, 0, T).to(x.dtype()).view({1, T, 1, hd / 2});
    return torch::stack({x0 * c - x1 * s, x0 * s + x1 * c}, -1).reshape(x.sizes());
}

torch::Tensor LlamaModuleImpl::forward(const torch::Tensor& ids) {
    const int64_t B = ids.size(0), T = ids.size(1);
    if (T > shape_.n_ctx) throw Error("forward: " + std::to_string(T) + " positions > n_ctx " + std::to_string(shape_.n_ctx));
    const int64_t H = shape_.n_heads, KV = shape_.n_kv_heads, hd = shape_.head_dim();
    const double eps = shape_.norm_eps;
    auto x = F::embedding(ids, token_embd_);  // (B, T, dim)
    auto causal = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(ids.device())).triu(1);
    for (const auto& L : layers_) {
        auto h = rmsnorm(x, L.attn_norm, eps);
        auto q = rope(F::linear(h, L.wq).view({B, T, H, hd})).transpose(1, 2);    // (B, H, T, hd)
        auto k = rope(F::linear(h, L.wk).view({B, T, KV, hd})).transpose(1, 2);   // (B, KV, T, hd)
        auto v = F::linear(h, L.wv).view({B, T, KV, hd}).transpose(1, 2);
        if (KV != H) {  // query head j reads KV head j / (H / KV), as llama.cpp broadcasts
            k = k.repeat_interleave(H / KV, 1);
            v = v.repeat_interleave(H / KV, 1);
        }
        auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
        att = att.masked_fill(causal, -std::numeric_limits<double>::infinity()).softmax(-1);
        auto o = torch::matmul(att, v).transpose(1, 2).reshape({B, T, H * hd});
        x = x + F::linear(o, L.wo);
        h = rmsnorm(x, L.ffn_norm, eps);
        x = x + F::linear(F::silu(F::linear(h, L.w_gate)) * F::linear(h, L.w_up), L.w_down);
    }
    return F::linear(rmsnorm(x, output_norm_, eps), token_embd_);
}

}  // namespace microlm::train
