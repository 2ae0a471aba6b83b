// From HF-named Llama tensors to a GGUF Llama: the name mapping, the Q/K row permutation, shape
// checks, and the two front ends (a Hugging Face folder, a Swen torch.save checkpoint). Not the
// file readers (zip_reader, torch_pickle, safetensors, hf_tokenizer) nor the GGUF writer itself.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "microlm/convert.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "json_file.h"

namespace microlm {
namespace {

using nlohmann::json;

std::string shape_str(const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
    return s + "]";
}

// Buffers some checkpoints carry that the runtime recomputes (RoPE tables).
bool is_derived_buffer(std::string_view name) {
    for (std::string_view suffix : {"rotary_emb.inv_freq", "freqs_cos", "freqs_sin"}) {
        if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return true;
    }
    return false;
}

// "model.layers.N.rest" → N and rest; nullopt otherwise.
std::optional<std::pair<int64_t, std::string_view>> layer_of(std::string_view name) {
    constexpr std::string_view prefix = "model.layers.";
    if (name.substr(0, prefix.size()) != prefix) return std::nullopt;
    name.remove_prefix(prefix.size());
    const size_t dot = name.find('.');
    if (dot == 0 || dot == std::string_view::npos || (dot > 1 && name[0] == '0')) return std::nullopt;
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + dot, n);
    // Layer numbers past a million are not a model; refusing them keeps n + 1 from overflowing.
    if (ec != std::errc() || end != name.data() + dot || n < 0 || n >= (1 << 20)) return std::nullopt;
    return std::make_pair(n, name.substr(dot + 1));
}

const CheckpointTensor& get(const TensorMap& t, const std::string& name, const std::vector<int64_t>& shape,
                            const std::string& source) {
    const auto it = t.find(name);
    if (it == t.end())
        throw Error(source + ": tensor '" + name + "' is missing (expected shape " + shape_str(shape) + ")");
    if (it->second.shape != shape) {
        throw Error(source + ": tensor '" + name + "' has shape " + shape_str(it->second.shape) +
                    ", expected " + shape_str(shape));
    }
    return it->second;
}

void check_shape(const LlamaHparams& s, DType type, const std::string& source) {
    s.validate(source);
    if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0) {
        throw Error(source + ": --type must be f32, f16 or q8_0");
    }
    const int64_t block = dtype_block_elems(type);
    for (const auto& [what, cols] : {std::pair<const char*, int64_t>{"dim", s.dim}, {"ffn_dim", s.ffn_dim}}) {
        if (cols % block != 0) {
            throw Error(source + ": " + what + " " + std::to_string(cols) + " is not a multiple of the " +
                        std::string(dtype_name(static_cast<uint32_t>(type))) + " block of " +
                        std::to_string(block) + " (use --type f16 or f32)");
        }
    }
}


int64_t config_int(const json& c, const char* key, const std::string& where,
                   std::optional<int64_t> fallback = {}) {
    if (!c.contains(key) || c[key].is_null()) {
        if (fallback) return *fallback;
        throw Error(where + ": \"" + key + "\" is missing");
    }
    if (!c[key].is_number_integer())
        throw Error(where + ": \"" + key + "\" is " + c[key].dump() + ", expected an integer");
    return c[key].get<int64_t>();
}

// A string field, "" when missing or not a string.
std::string config_str(const json& c, const char* key) {
    return c.contains(key) && c[key].is_string() ? c[key].get<std::string>() : std::string();
}

double config_float(const json& c, const char* key, const std::string& where, double fallback) {
    if (!c.contains(key) || c[key].is_null()) return fallback;
    if (!c[key].is_number())
        throw Error(where + ": \"" + key + "\" is " + c[key].dump() + ", expected a number");
    return c[key].get<double>();
}

// model.safetensors, or the shards model.safetensors.index.json lists.
TensorMap read_hf_weights(const std::filesystem::path& dir) {
    const std::filesystem::path single = dir / "model.safetensors",
                                index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(single)) return read_safetensors(single.string());
    if (!std::filesystem::exists(index)) {
        throw Error(dir.string() +
                    ": no model.safetensors or model.safetensors.index.json (pytorch_model.bin "
                    "folders are not supported; re-save with safe_serialization=True)");
    }
    const json j = convert_detail::read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error(index.string() + ": no weight_map object");
    std::set<std::string> files;
    for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string())
            throw Error(index.string() + ": weight_map['" + name + "'] is not a file name");
        const std::string f = file.get<std::string>();
        if (f.find('/') != std::string::npos || f == "..")
            throw Error(index.string() + ": shard '" + f + "' is outside the folder");
        files.insert(f);
    }
    TensorMap all;
    for (const std::string& f : files) {
        TensorMap part = read_safetensors((dir / f).string());
        for (auto& [name, t] : part) {
            if (all.count(name))
                throw Error((dir / f).string() + ": tensor '" + name + "' also appears in another shard");
            all[name] = std::move(t);
        }
    }
    return all;
}

ConvertSummary finish(const std::string& out, const TensorMap& tensors, const LlamaHparams& shape,
                      VocabData vocab, const ConvertOptions& o, const std::string& name,
                      const std::string& source) {
    // The runtime's tokenizer refuses what it cannot run (an unknown pre name, duplicate tokens):
    // better now than when the file is loaded.
    Tokenizer check(vocab);
    write_llama_gguf(out, tensors, shape, vocab, o.type, name, source);
    ConvertSummary s;
    s.shape = shape;
    s.n_params = shape.parameters();
    s.n_tokens = static_cast<int64_t>(vocab.tokens.size());
    s.pre = vocab.pre;
    return s;
}

}  // namespace

std::optional<std::string> gguf_tensor_name(std::string_view n) {
    if (n == "model.embed_tokens.weight") return "token_embd.weight";
    if (n == "model.norm.weight") return "output_norm.weight";
    if (n == "lm_head.weight") return "output.weight";
    const auto layer = layer_of(n);
    if (!layer) return std::nullopt;
    static constexpr std::pair<std::string_view, std::string_view> kLayer[] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    for (const auto& [hf, gguf] : kLayer) {
        if (layer->second == hf) return "blk." + std::to_string(layer->first) + "." + std::string(gguf);
    }
    return std::nullopt;
}

std::vector<float> permute_rope_rows(const std::vector<float>& w, int64_t n_heads, int64_t head_dim,
                                     int64_t cols) {
    std::vector<float> out(w.size());
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t i = 0; i < half; ++i) {
            for (int64_t j = 0; j < 2; ++j) {
                const float* src = w.data() + (h * head_dim + j * half + i) * cols;
                std::copy(src, src + cols, out.data() + (h * head_dim + 2 * i + j) * cols);
            }
        }
    }
    return out;
}

void write_llama_gguf(const std::string& out, const TensorMap& tensors, const LlamaHparams& s,
                      const VocabData& vocab, DType type, const std::string& name,
                      const std::string& source) {
    check_shape(s, type, source);
    if (static_cast<int64_t>(vocab.tokens.size()) != s.n_vocab) {
        throw Error(source + ": the tokenizer has " + std::to_string(vocab.tokens.size()) +
                    " tokens, the embedding has " + std::to_string(s.n_vocab) + " rows");
    }
    for (const auto& [n, t] : tensors) {
        const auto g = gguf_tensor_name(n);
        const auto layer = layer_of(n);
        if ((!g && !is_derived_buffer(n)) || (layer && layer->first >= s.n_layers)) {
            throw Error(source + ": tensor '" + n + "' " + shape_str(t.shape) +
                        " is not part of the Llama architecture microlm runs (no biases, no extra layers)");
        }
    }

    GgufWriter w;
    set_llama_keys(w, s, type, name);
    set_vocab_keys(w, vocab);
    const int64_t hd = s.dim / s.n_heads, q_dim = s.n_heads * hd, kv_dim = s.n_kv_heads * hd;
    auto matrix = [&](const std::string& hf, const std::string& gguf, int64_t rows, int64_t cols,
                      int64_t rope_heads) {
        const CheckpointTensor& t = get(tensors, hf, {rows, cols}, source);
        if (rope_heads > 0) {
            const std::vector<float> p = permute_rope_rows(t.data, rope_heads, hd, cols);
            add_matrix_tensor(w, gguf, type, p.data(), cols, rows);
        } else {
            add_matrix_tensor(w, gguf, type, t.data.data(), cols, rows);
        }
    };
    auto norm = [&](const std::string& hf, const std::string& gguf) {
        const CheckpointTensor& t = get(tensors, hf, {s.dim}, source);
        w.add_tensor(gguf, DType::F32, {s.dim}, t.data.data(), t.data.size() * sizeof(float));
    };
    matrix("model.embed_tokens.weight", "token_embd.weight", s.n_vocab, s.dim, 0);
    norm("model.norm.weight", "output_norm.weight");
    if (!s.tied) matrix("lm_head.weight", "output.weight", s.n_vocab, s.dim, 0);
    for (int64_t l = 0; l < s.n_layers; ++l) {
        const std::string hf = "model.layers." + std::to_string(l) + ".",
                          g = "blk." + std::to_string(l) + ".";
        norm(hf + "input_layernorm.weight", g + "attn_norm.weight");
        matrix(hf + "self_attn.q_proj.weight", g + "attn_q.weight", q_dim, s.dim, s.n_heads);
        matrix(hf + "self_attn.k_proj.weight", g + "attn_k.weight", kv_dim, s.dim, s.n_kv_heads);
        matrix(hf + "self_attn.v_proj.weight", g + "attn_v.weight", kv_dim, s.dim, 0);
        matrix(hf + "self_attn.o_proj.weight", g + "attn_output.weight", s.dim, q_dim, 0);
        norm(hf + "post_attention_layernorm.weight", g + "ffn_norm.weight");
        matrix(hf + "mlp.gate_proj.weight", g + "ffn_gate.weight", s.ffn_dim, s.dim, 0);
        matrix(hf + "mlp.up_proj.weight", g + "ffn_up.weight", s.ffn_dim, s.dim, 0);
        matrix(hf + "mlp.down_proj.weight", g + "ffn_down.weight", s.dim, s.ffn_dim, 0);
    }
    w.write(out);
}

ConvertSummary convert_hf(const std::string& dir, const std::string& out, const ConvertOptions& o) {
    const std::filesystem::path cfg_path = std::filesystem::path(dir) / "config.json";
    const std::string where = cfg_path.string();
    if (!std::filesystem::exists(cfg_path))
        throw Error(dir + ": no config.json (not a Hugging Face model folder)");
    const json c = convert_detail::read_json_file(cfg_path);
    if (!c.is_object()) throw Error(where + ": is not a JSON object");

    // Only configurations whose forward pass is exactly the runtime's (RMSNorm, plain RoPE, SwiGLU).
    const std::string model_type = config_str(c, "model_type");
    if (model_type != "llama" && model_type != "mistral" && model_type != "swen" &&
        model_type != "minimind") {
        throw Error(where + ": model_type '" + model_type +
                    "' is not a Llama; supported: llama, mistral, swen, minimind (LlamaForCausalLM-style)");
    }
    if (c.contains("hidden_act") && config_str(c, "hidden_act") != "silu") {
        throw Error(where + ": hidden_act " + c["hidden_act"].dump() + ", expected \"silu\" (SwiGLU)");
    }
    if (c.contains("rope_scaling") && !c["rope_scaling"].is_null()) {
        throw Error(where + ": rope_scaling " + c["rope_scaling"].dump() +
                    " is not supported (plain RoPE only)");
    }
    for (const char* bias : {"attention_bias", "mlp_bias"}) {
        if (c.contains(bias) && c[bias] == true)
            throw Error(where + ": \"" + bias + "\" is true; Llama without biases only");
    }

    LlamaHparams s;
    s.dim = config_int(c, "hidden_size", where);
    s.n_layers = config_int(c, "num_hidden_layers", where);
    s.n_heads = config_int(c, "num_attention_heads", where);
    s.n_kv_heads = config_int(c, "num_key_value_heads", where, s.n_heads);
    s.n_vocab = config_int(c, "vocab_size", where);
    s.n_ctx = config_int(c, "max_position_embeddings", where, 2048);
    s.rope_base = static_cast<float>(config_float(c, "rope_theta", where, 10000.0));
    s.norm_eps = static_cast<float>(config_float(c, "rms_norm_eps", where, 1e-6));
    if (s.n_heads > 0 && c.contains("head_dim") && !c["head_dim"].is_null() &&
        config_int(c, "head_dim", where) != s.dim / s.n_heads) {
        throw Error(where + ": head_dim " + c["head_dim"].dump() +
                    " differs from hidden_size / num_attention_heads = " + std::to_string(s.dim / s.n_heads) +
                    ", which the runtime assumes");
    }

    TensorMap tensors = read_hf_weights(dir);
    // Some minimind-style configs leave intermediate_size null and derive it: take it from the tensor.
    const auto gate = tensors.find("model.layers.0.mlp.gate_proj.weight");
    s.ffn_dim = config_int(c, "intermediate_size", where,
                           gate != tensors.end() && !gate->second.shape.empty() ? gate->second.shape[0] : -1);
    // Tied unless the config says otherwise; with no word on it, a missing lm_head means tied.
    const bool has_head = tensors.count("lm_head.weight") > 0;
    s.tied = c.contains("tie_word_embeddings") && c["tie_word_embeddings"].is_boolean()
                 ? c["tie_word_embeddings"].get<bool>()
                 : !has_head;
    if (!s.tied && !has_head)
        throw Error(dir + ": tie_word_embeddings is false but there is no lm_head.weight");
    if (s.tied) tensors.erase("lm_head.weight");  // HF ties it over the embedding on load

    const VocabData vocab = vocab_from_hf_tokenizer(dir, o.pre, s.n_vocab);
    std::string name = o.name;
    if (name.empty()) name = config_str(c, "_name_or_path");
    if (name.empty()) name = std::filesystem::path(dir).lexically_normal().filename().string();
    if (name.empty())
        name = std::filesystem::absolute(dir).lexically_normal().parent_path().filename().string();
    return finish(out, tensors, s, vocab, o, name, dir);
}

ConvertSummary convert_swen(const std::string& checkpoint, const std::string& tokenizer_dir,
                            const std::string& out, const ConvertOptions& o, const SwenOptions& swen) {
    TensorMap tensors = read_torch_checkpoint(checkpoint);
    const auto embd = tensors.find("model.embed_tokens.weight");
    if (embd == tensors.end() || embd->second.shape.size() != 2) {
        throw Error(checkpoint + ": no 2-D model.embed_tokens.weight: not a Swen/minimind state dict");
    }
    LlamaHparams s;
    s.n_vocab = embd->second.shape[0];
    s.dim = embd->second.shape[1];
    s.n_heads = swen.n_heads;
    s.n_kv_heads = swen.n_kv_heads;
    s.rope_base = swen.rope_theta;
    s.norm_eps = swen.norm_eps;
    s.n_ctx = swen.n_ctx;
    s.n_layers = 0;
    for (const auto& [n, t] : tensors) {
        if (const auto l = layer_of(n)) s.n_layers = std::max(s.n_layers, l->first + 1);
    }
    const auto gate = tensors.find("model.layers.0.mlp.gate_proj.weight");
    if (gate == tensors.end() || gate->second.shape.size() != 2) {
        throw Error(checkpoint + ": no 2-D model.layers.0.mlp.gate_proj.weight");
    }
    s.ffn_dim = gate->second.shape[0];
    // Head counts are not in the checkpoint; the K projection's rows tell a wrong --kv-heads.
    const auto k = tensors.find("model.layers.0.self_attn.k_proj.weight");
    if (s.n_heads > 0 && s.dim % s.n_heads == 0 && k != tensors.end() && !k->second.shape.empty() &&
        k->second.shape[0] != s.n_kv_heads * (s.dim / s.n_heads)) {
        const int64_t hd = s.dim / s.n_heads;
        throw Error(checkpoint + ": k_proj has " + std::to_string(k->second.shape[0]) +
                    " rows, which with --heads " + std::to_string(s.n_heads) + " (head size " +
                    std::to_string(hd) + ") is " +
                    (k->second.shape[0] % hd == 0 ? std::to_string(k->second.shape[0] / hd)
                                                  : std::string("not a whole number of")) +
                    " key/value heads, not --kv-heads " + std::to_string(s.n_kv_heads));
    }
    // Swen ties lm_head to the embedding, so the state dict holds the same values twice.
    const auto head = tensors.find("lm_head.weight");
    s.tied = head == tensors.end() ||
             (head->second.shape == embd->second.shape && head->second.data == embd->second.data);
    if (s.tied && head != tensors.end()) tensors.erase(head);

    const VocabData vocab = vocab_from_hf_tokenizer(tokenizer_dir, o.pre, s.n_vocab);
    const std::string name = o.name.empty() ? std::filesystem::path(checkpoint).stem().string() : o.name;
    return finish(out, tensors, s, vocab, o, name, checkpoint);
}

}  // namespace microlm
