// The layer a GGUF Llama tensor belongs to: "blk.N.rest" -> (N, "rest"), anything else (the
// embedding, output, output_norm) -> (-1, name). Shared by `microlm quantize` (which layers get
// more bits) and `microlm prune` (which layers are kept and how they are renumbered). Private to
// the convert part.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <utility>

namespace microlm {

inline std::pair<int64_t, std::string> gguf_layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return {-1, name};
    const size_t dot = name.find('.', 4);
    if (dot == std::string::npos) return {-1, name};
    try {
        return {std::stoll(name.substr(4, dot - 4)), name.substr(dot + 1)};
    } catch (const std::exception&) {
        return {-1, name};
    }
}

}  // namespace microlm
