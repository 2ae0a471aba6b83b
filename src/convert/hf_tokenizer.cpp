// vocab_from_hf_tokenizer: a Hugging Face fast tokenizer (tokenizer.json, tokenizer_config.json)
// as the VocabData of a GGUF `gpt2` (byte-level BPE) tokenizer. Not SentencePiece, Unigram or
// WordPiece, and no regex inference: the GGUF pre-tokenizer is named, recognised only for GPT-2's.
//
// Read from tokenizer.json: model.type "BPE", model.vocab {text: id}, model.merges ("a b" strings
// or [a, b] pairs), added_tokens [{id, content, special}], normalizer, pre_tokenizer,
// post_processor. From tokenizer_config.json: chat_template, bos/eos/pad/unk tokens (text or
// {"content": text}) or their *_token_id, add_bos_token, add_eos_token.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "microlm/convert.h"
#include "microlm/error.h"
#include "json_file.h"

namespace microlm {
namespace {

using nlohmann::json;

// Real vocabularies stay under 300k tokens; a bound keeps a hostile id from allocating gigabytes.
constexpr int64_t kMaxTokens = int64_t{1} << 21;


// A special token in tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> token_text(const json& cfg, const char* key) {
    if (!cfg.contains(key)) return std::nullopt;
    const json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
        return v["content"].get<std::string>();
    return std::nullopt;
}

// What GPT-2's own tokenizer.json says: byte-level with the GPT-2 regex and nothing else.
bool is_gpt2_pre_tokenizer(const json& tok) {
    const bool no_normalizer = !tok.contains("normalizer") || tok["normalizer"].is_null();
    if (!no_normalizer || !tok.contains("pre_tokenizer")) return false;
    const json& p = tok["pre_tokenizer"];
    return p.is_object() && p.value("type", "") == "ByteLevel" && p.value("use_regex", true) &&
           !p.value("add_prefix_space", false);
}

VocabData read_vocab(const std::string& dir, const std::optional<std::string>& pre, int64_t n_vocab) {
    const std::filesystem::path tok_path = std::filesystem::path(dir) / "tokenizer.json";
    if (!std::filesystem::exists(tok_path)) {
        throw Error(dir + ": no tokenizer.json (only the Hugging Face fast-tokenizer format is supported)");
    }
    const std::string where = tok_path.string();
    const json tok = convert_detail::read_json_file(tok_path);
    if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object()) {
        throw Error(where + ": has no \"model\" object");
    }
    const json& model = tok["model"];
    const std::string type = model.value("type", "");
    if (type != "BPE") {
        throw Error(where + ": model type is '" + type +
                    "'; only byte-level BPE tokenizers can be converted");
    }
    if (model.value("byte_fallback", false)) {
        throw Error(
            where +
            ": BPE with byte_fallback is SentencePiece-style, not byte-level; it cannot be converted");
    }
    if (!model.contains("vocab") || !model["vocab"].is_object())
        throw Error(where + ": model.vocab is not an object");

    VocabData v;
    v.model = "gpt2";
    std::vector<bool> present;
    auto place = [&](int64_t id, const std::string& text, TokenType t, const char* what) {
        if (id < 0 || id >= kMaxTokens) {
            throw Error(where + ": " + what + " '" + text + "' has id " + std::to_string(id) +
                        ", expected 0.." + std::to_string(kMaxTokens - 1));
        }
        const auto i = static_cast<size_t>(id);
        if (i >= v.tokens.size()) {
            v.tokens.resize(i + 1);
            v.token_types.resize(i + 1, static_cast<int32_t>(TokenType::UNUSED));
            present.resize(i + 1, false);
        }
        v.tokens[i] = text;
        v.token_types[i] = static_cast<int32_t>(t);
        present[i] = true;
    };
    for (const auto& [text, id] : model["vocab"].items()) {
        if (!id.is_number_integer())
            throw Error(where + ": model.vocab['" + text + "'] is not an integer id");
        place(id.get<int64_t>(), text, TokenType::NORMAL, "token");
    }
    // Added tokens override the vocabulary's entry for their id; special ones are control tokens
    // (never produced by BPE, rendered only on request), the others user-defined (matched as is).
    if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
        for (const json& a : tok["added_tokens"]) {
            if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
                !a.contains("content") || !a["content"].is_string()) {
                throw Error(where + ": added_tokens entry " + a.dump() +
                            " lacks an integer id or a content string");
            }
            place(a["id"].get<int64_t>(), a["content"].get<std::string>(),
                  a.value("special", false) ? TokenType::CONTROL : TokenType::USER_DEFINED, "added token");
        }
    }
    if (n_vocab > 0 && static_cast<int64_t>(v.tokens.size()) > n_vocab) {
        throw Error(where + ": the tokenizer has " + std::to_string(v.tokens.size()) +
                    " tokens but the model's embedding has only " + std::to_string(n_vocab) + " rows");
    }
    // Ids without a token (gaps, and rows the model pads its embedding with) become unused
    // placeholders, as llama.cpp's converter writes them, so that every row has a token.
    if (n_vocab > static_cast<int64_t>(v.tokens.size())) {
        v.tokens.resize(static_cast<size_t>(n_vocab));
        v.token_types.resize(static_cast<size_t>(n_vocab), static_cast<int32_t>(TokenType::UNUSED));
        present.resize(static_cast<size_t>(n_vocab), false);
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        if (!present[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
    }

    if (model.contains("merges") && !model["merges"].is_array())
        throw Error(where + ": model.merges is not an array");
    for (const json& m : model.value("merges", json::array())) {
        if (m.is_string()) {
            v.merges.push_back(m.get<std::string>());
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            const std::string a = m[0].get<std::string>(), b = m[1].get<std::string>();
            // GGUF stores merges as "a b": a part holding a space could not be split back.
            if (a.empty() || b.empty() || a.find(' ') != std::string::npos ||
                b.find(' ') != std::string::npos) {
                throw Error(where + ": merge " + m.dump() +
                            " has an empty part or a space, which GGUF cannot store");
            }
            v.merges.push_back(a + " " + b);
        } else {
            throw Error(where + ": merge " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }

    if (pre) {
        v.pre = *pre;
    } else if (is_gpt2_pre_tokenizer(tok)) {
        v.pre = "gpt-2";
    } else {
        const std::string found = "normalizer " + tok.value("normalizer", json()).dump() +
                                  ", pre_tokenizer " + tok.value("pre_tokenizer", json()).dump();
        throw Error(where +
                    ": only GPT-2's pre-tokenizer (ByteLevel with use_regex, no normalizer) is recognised; "
                    "this one has " +
                    found.substr(0, 400) +
                    ". Pass --pre with the tokenizer.ggml.pre name llama.cpp uses for it (e.g. llama3, "
                    "qwen2, smollm)");
    }

    // Specials and the chat template from tokenizer_config.json, when there is one.
    std::unordered_map<std::string, int32_t> id_of;
    for (size_t i = 0; i < v.tokens.size(); ++i) id_of.emplace(v.tokens[i], static_cast<int32_t>(i));
    const std::filesystem::path cfg_path = std::filesystem::path(dir) / "tokenizer_config.json";
    json cfg = json::object();
    if (std::filesystem::exists(cfg_path)) cfg = convert_detail::read_json_file(cfg_path);
    if (!cfg.is_object()) throw Error(cfg_path.string() + ": is not a JSON object");
    const std::pair<const char*, int32_t*> specials[] = {
        {"bos", &v.bos_id}, {"eos", &v.eos_id}, {"pad", &v.pad_id}, {"unk", &v.unk_id}};
    for (const auto& [name, dst] : specials) {
        const std::string key = std::string(name) + "_token";
        if (const auto text = token_text(cfg, key.c_str())) {
            const auto it = id_of.find(*text);
            if (it == id_of.end())
                throw Error(cfg_path.string() + ": " + key + " '" + *text + "' is not in the vocabulary");
            *dst = it->second;
        } else if (cfg.contains(key + "_id") && cfg[key + "_id"].is_number_integer()) {
            const int64_t id = cfg[key + "_id"].get<int64_t>();
            if (id < 0 || id >= static_cast<int64_t>(v.tokens.size())) {
                throw Error(cfg_path.string() + ": " + key + "_id " + std::to_string(id) +
                            " is outside the vocabulary of " + std::to_string(v.tokens.size()) + " tokens");
            }
            *dst = static_cast<int32_t>(id);
        }
    }
    // Whether BOS/EOS are added: the config's flags, else what a TemplateProcessing post-processor
    // puts around a single sequence.
    const json post = tok.value("post_processor", json());
    const bool templated = post.is_object() && post.value("type", "") == "TemplateProcessing" &&
                           post.contains("single") && post["single"].is_array() && !post["single"].empty();
    v.add_bos = cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()
                    ? cfg["add_bos_token"].get<bool>()
                    : templated && post["single"].front().contains("SpecialToken") && v.bos_id >= 0;
    v.add_eos = cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()
                    ? cfg["add_eos_token"].get<bool>()
                    : templated && post["single"].back().contains("SpecialToken") && v.eos_id >= 0;
    if (v.add_bos && v.bos_id < 0)
        throw Error(cfg_path.string() + ": add_bos_token is set but there is no bos_token");
    if (v.add_eos && v.eos_id < 0)
        throw Error(cfg_path.string() + ": add_eos_token is set but there is no eos_token");

    if (cfg.contains("chat_template")) {
        const json& t = cfg["chat_template"];
        if (t.is_string()) {
            v.chat_template = t.get<std::string>();
        } else if (t.is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
            for (const json& e : t) {
                if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
                    e["template"].is_string()) {
                    v.chat_template = e["template"].get<std::string>();
                }
            }
        }
    }
    const std::filesystem::path jinja = std::filesystem::path(dir) / "chat_template.jinja";
    if (v.chat_template.empty() && std::filesystem::exists(jinja)) {
        std::ifstream in(jinja, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        v.chat_template = ss.str();
    }
    return v;
}

}  // namespace

VocabData vocab_from_hf_tokenizer(const std::string& dir, const std::optional<std::string>& pre,
                                  int64_t n_vocab) {
    try {
        return read_vocab(dir, pre, n_vocab);
    } catch (const json::exception& e) {  // a field of an unexpected JSON type
        throw Error(dir + ": tokenizer files have an unexpected structure: " + e.what());
    }
}

}  // namespace microlm
