// The tokenizer.* GGUF keys, read and written in one place: vocab_from_gguf (the keys llama.cpp's
// llama_vocab reads for a `gpt2` byte-level BPE or a `llama` SentencePiece-style vocabulary) and
// set_vocab_keys / write_vocab_gguf,
// which write them back so that the runtime and llama.cpp load the same vocabulary.
#include <algorithm>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/pretokenizer.h"
#include "microlm/tokenizer.h"

namespace microlm {

VocabData vocab_from_gguf(const GgufFile& file) {
    const std::string& path = file.path();
    VocabData v;
    v.model = file.get_str("tokenizer.ggml.model");
    if (v.model != "gpt2" && v.model != "llama") {
        throw Error(path + ": tokenizer.ggml.model is '" + v.model +
                    "', which microlm cannot run (supported: gpt2, byte-level BPE; llama, SentencePiece-style BPE)");
    }
    const bool spm = v.model == "llama";
    v.pre = file.get_str_opt("tokenizer.ggml.pre").value_or("default");
    pretok::Spec spec;
    if (!spm) {  // SentencePiece vocabularies have no pre-tokenizer
        try {
            spec = pretok::spec_for(v.pre);
        } catch (const Error& e) {
            throw Error(path + ": " + e.what());
        }
    }
    v.tokens = file.get_str_array("tokenizer.ggml.tokens");
    const int64_t n = static_cast<int64_t>(v.tokens.size());
    if (n == 0) throw Error(path + ": tokenizer.ggml.tokens is empty");
    if (file.find("tokenizer.ggml.token_type")) {
        const std::vector<int64_t> types = file.get_int_array("tokenizer.ggml.token_type");
        if (static_cast<int64_t>(types.size()) != n) {
            throw Error(path + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                        " entries, expected one per token (" + std::to_string(n) + ")");
        }
        v.token_types.reserve(types.size());
        for (const int64_t t : types)
            v.token_types.push_back(static_cast<int32_t>(std::clamp<int64_t>(t, -1, 255)));
    }
    if (spm) {
        const GgufValue* sv = file.find("tokenizer.ggml.scores");
        const GgufArray* arr = sv ? sv->as_array() : nullptr;
        if (!arr || static_cast<int64_t>(arr->items.size()) != n) {
            throw Error(path + ": tokenizer.ggml.scores must hold one float per token (" + std::to_string(n) + ")");
        }
        v.scores.reserve(arr->items.size());
        for (const GgufValue& x : arr->items) {
            if (!x.is_float()) throw Error(path + ": tokenizer.ggml.scores holds a non-float value");
            v.scores.push_back(static_cast<float>(std::get<double>(x.v)));
        }
    } else {
        v.merges = file.get_str_array("tokenizer.ggml.merges");
    }

    const std::pair<const char*, int32_t*> ids[] = {
        {"tokenizer.ggml.bos_token_id", &v.bos_id},     {"tokenizer.ggml.eos_token_id", &v.eos_id},
        {"tokenizer.ggml.eot_token_id", &v.eot_id},     {"tokenizer.ggml.padding_token_id", &v.pad_id},
        {"tokenizer.ggml.unknown_token_id", &v.unk_id},
    };
    for (const auto& [key, dst] : ids) {
        const std::optional<int64_t> id = file.get_int_opt(key);
        if (!id) continue;
        if (*id < 0 || *id >= n) {
            throw Error(path + ": " + key + " is " + std::to_string(*id) + ", outside the vocabulary of " +
                        std::to_string(n) + " tokens");
        }
        *dst = static_cast<int32_t>(*id);
    }
    // llama.cpp's defaults: a SentencePiece vocabulary adds BOS and a space prefix unless told not to.
    v.add_bos = file.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(spm || spec.add_bos_default);
    v.add_eos = file.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(false);
    v.add_space_prefix = file.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(spm);
    v.chat_template = file.get_str_opt("tokenizer.chat_template").value_or("");
    if (v.add_bos && v.bos_id < 0) {
        throw Error(path +
                    ": tokenizer.ggml.add_bos_token is set but tokenizer.ggml.bos_token_id is missing");
    }
    if (v.add_eos && v.eos_id < 0) {
        throw Error(path +
                    ": tokenizer.ggml.add_eos_token is set but tokenizer.ggml.eos_token_id is missing");
    }
    return v;
}

void set_vocab_keys(GgufWriter& w, const VocabData& v) {
    w.set("tokenizer.ggml.model", GgufValue::str(v.model));
    w.set("tokenizer.ggml.pre", GgufValue::str(v.pre));
    w.set("tokenizer.ggml.tokens", GgufValue::str_array(v.tokens));
    if (!v.token_types.empty()) w.set("tokenizer.ggml.token_type", GgufValue::i32_array(v.token_types));
    if (v.model == "llama")
        w.set("tokenizer.ggml.scores", GgufValue::f32_array(v.scores));
    else
        w.set("tokenizer.ggml.merges", GgufValue::str_array(v.merges));
    const std::pair<const char*, int32_t> ids[] = {
        {"tokenizer.ggml.bos_token_id", v.bos_id},     {"tokenizer.ggml.eos_token_id", v.eos_id},
        {"tokenizer.ggml.eot_token_id", v.eot_id},     {"tokenizer.ggml.padding_token_id", v.pad_id},
        {"tokenizer.ggml.unknown_token_id", v.unk_id},
    };
    for (const auto& [key, id] : ids) {
        if (id >= 0) w.set(key, GgufValue::u32(static_cast<uint32_t>(id)));
    }
    w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(v.add_bos));
    w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(v.add_eos));
    if (v.add_space_prefix || v.model == "llama")
        w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(v.add_space_prefix));
    if (!v.chat_template.empty()) w.set("tokenizer.chat_template", GgufValue::str(v.chat_template));
}

void write_vocab_gguf(const std::string& path, const VocabData& vocab) {
    GgufWriter w;
    set_vocab_keys(w, vocab);
    w.write(path);
}

}  // namespace microlm
