// Pruning a Llama GGUF (microlm/prune.h): the chosen layers' tensors renamed blk.0, blk.1, ...,
// the embedding (and an untied output matrix) cut to the kept tokens' rows, each matrix
// dequantized to float and written in the chosen type; metadata copied with the block count,
// vocabulary and tokenizer keys replaced.
#include "microlm/prune.h"

#include "gguf_layer_name.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/llama_gguf.h"
#include "microlm/tokenizer.h"

namespace microlm {
namespace {

// The first `elements` values of a tensor (whole rows: a row is whole blocks) as floats.
std::vector<float> dequantized(const GgufTensor& t, int64_t elements) {
    std::vector<float> f(static_cast<size_t>(elements));
    dequantize_row(static_cast<DType>(t.type), t.data, f.data(), elements);
    return f;
}

}  // namespace

std::vector<int64_t> parse_layer_list(const std::string& text) {
    std::vector<int64_t> out;
    std::stringstream ss(text);
    std::string part;
    while (std::getline(ss, part, ',')) {
        size_t used = 0;
        try {
            const size_t dash = part.find('-', 1);
            const int64_t a = std::stoll(part, &used);
            if (dash == std::string::npos) {
                if (used != part.size()) throw Error("");
                out.push_back(a);
            } else {
                size_t used_b = 0;
                const std::string tail = part.substr(dash + 1);
                const int64_t b = std::stoll(tail, &used_b);
                if (used != dash || used_b != tail.size() || b < a) throw Error("");
                for (int64_t i = a; i <= b; ++i) out.push_back(i);
            }
        } catch (const std::exception&) {
            throw Error("layer list '" + text + "': '" + part + "' is not a layer number or a range such as 0-4");
        }
    }
    if (out.empty()) throw Error("layer list '" + text + "' names no layer");
    for (size_t i = 1; i < out.size(); ++i) {
        if (out[i] <= out[i - 1]) throw Error("layer list '" + text + "' must be ascending without repeats");
    }
    if (out.front() < 0) throw Error("layer list '" + text + "' has a negative layer");
    return out;
}

PruneSummary prune_model(const std::string& in, const std::string& out, const PruneOptions& opts) {
    if (opts.type != DType::F32 && opts.type != DType::F16 && opts.type != DType::Q8_0) {
        throw Error("prune: the type must be f32, f16 or q8_0");
    }
    const auto src = GgufFile::open(in);
    const LlamaHparams hp = read_llama_hparams(*src);
    if (hp.arch != "llama") throw Error(in + ": is " + hp.arch + "; prune reads Llama models");
    for (const int64_t l : opts.layers) {
        if (l < 0 || l >= hp.n_layers) {
            throw Error(in + ": has layers 0-" + std::to_string(hp.n_layers - 1) + ", not " + std::to_string(l));
        }
    }
    if (opts.layers.empty()) throw Error("prune: no layers chosen");
    const VocabData vocab_in = vocab_from_gguf(*src);
    const int32_t n_vocab = opts.vocab > 0 ? opts.vocab : static_cast<int32_t>(hp.n_vocab);
    if (n_vocab > hp.n_vocab) {
        throw Error(in + ": has " + std::to_string(hp.n_vocab) + " tokens, " + std::to_string(n_vocab) + " asked");
    }
    VocabData vocab = n_vocab < static_cast<int32_t>(vocab_in.tokens.size()) ? keep_first_tokens(vocab_in, n_vocab)
                                                                              : vocab_in;
    if (!opts.chat_template_from.empty()) {
        const auto t = GgufFile::open(opts.chat_template_from);
        vocab.chat_template = t->get_str("tokenizer.chat_template");
    }

    LlamaHparams pruned = hp;
    pruned.n_layers = static_cast<int64_t>(opts.layers.size());
    pruned.n_vocab = n_vocab;

    GgufWriter w;
    for (const auto& [key, value] : src->metadata()) {
        if (key.rfind("tokenizer.", 0) != 0 && key != "general.quantization_version") w.set(key, value);
    }
    const std::string name = opts.name.empty() ? std::filesystem::path(out).stem().string() : opts.name;
    set_llama_keys(w, pruned, opts.type, name);
    w.set("general.source.pruned_from", GgufValue::str(src->get_str_opt("general.name").value_or(in)));
    std::string kept;
    for (const int64_t l : opts.layers) {
        if (!kept.empty()) kept += ',';
        kept += std::to_string(l);
    }
    w.set("general.source.pruned_layers", GgufValue::str(kept));
    set_vocab_keys(w, vocab);

    for (const GgufTensor& t : src->tensors()) {
        const auto [layer, rest] = gguf_layer_of(t.name);
        std::string new_name = t.name;
        if (layer >= 0) {
            const auto it = std::find(opts.layers.begin(), opts.layers.end(), layer);
            if (it == opts.layers.end()) continue;
            new_name = "blk." + std::to_string(it - opts.layers.begin()) + "." + rest;
        }
        const bool vocab_rows = t.name == "token_embd.weight" || t.name == "output.weight";
        const int64_t cols = t.dims[0];
        const int64_t rows = t.dims.size() >= 2 ? (vocab_rows ? n_vocab : t.elements() / cols) : 1;
        const std::vector<float> f = dequantized(t, cols * rows);
        if (t.dims.size() == 1) {
            w.add_tensor(new_name, DType::F32, {cols}, f.data(), f.size() * sizeof(float));
        } else {
            add_matrix_tensor(w, new_name, opts.type, f.data(), cols, rows);
        }
    }
    w.write(out);
    return PruneSummary{hp.parameters(), pruned.parameters(), hp.n_layers, hp.n_vocab, vocab_in.merges.size(),
                        vocab.merges.size()};
}

}  // namespace microlm
