// Requantizing a GGUF model (microlm/quantize.h): each 2-D weight is dequantized to float and
// quantized to its target type; 1-D tensors and every metadata key are copied.
#include "microlm/quantize.h"

#include <cctype>
#include <cstring>
#include <vector>

#include "microlm/error.h"
#include "gguf_layer_name.h"
#include "microlm/gguf.h"

namespace microlm {
namespace {

struct Named {
    const char* name;
    DType base;
    std::optional<DType> more_bits;
    uint32_t file_type;  // llama_ftype
};
constexpr Named kTargets[] = {
    {"q8_0", DType::Q8_0, std::nullopt, 7},   {"q4_0", DType::Q4_0, std::nullopt, 2},
    {"q4_1", DType::Q4_1, std::nullopt, 3},   {"q5_0", DType::Q5_0, std::nullopt, 8},
    {"q5_1", DType::Q5_1, std::nullopt, 9},   {"q4_k", DType::Q4_K, std::nullopt, 14},
    {"q5_k", DType::Q5_K, std::nullopt, 16},  {"q6_k", DType::Q6_K, std::nullopt, 18},
    {"q4_k_m", DType::Q4_K, DType::Q6_K, 15}, {"q5_k_m", DType::Q5_K, DType::Q6_K, 17},
};

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool more_bits_layer(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::optional<QuantizeTarget> quantize_target(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const Named& n : kTargets)
        if (lower == n.name) return QuantizeTarget{n.name, n.base, n.more_bits, n.file_type};
    return std::nullopt;
}

std::string quantize_target_names() {
    std::string s;
    for (const Named& n : kTargets) s += (s.empty() ? "" : ", ") + std::string(n.name);
    return s;
}

DType quantized_type(const QuantizeTarget& t, const std::string& tensor, int64_t n_layers, int64_t cols,
                     bool tied_embedding) {
    DType type = t.base;
    if (t.more_bits) {
        const bool output = tensor == "output.weight";
        // A tied embedding is also the output matrix: llama.cpp gives it the output's type.
        const bool tied_output = tied_embedding && tensor == "token_embd.weight";
        const int64_t layer = gguf_layer_of(tensor).first;
        const bool v_or_down = ends_with(tensor, ".attn_v.weight") || ends_with(tensor, ".ffn_down.weight");
        if (output || tied_output || (v_or_down && layer >= 0 && more_bits_layer(layer, n_layers))) type = *t.more_bits;
    }
    if (cols % dtype_block_elems(type) != 0) {
        switch (type) {
            case DType::Q4_K: type = DType::Q5_0; break;
            case DType::Q5_K: type = DType::Q5_1; break;
            case DType::Q6_K: type = DType::Q8_0; break;
            default: break;
        }
        if (cols % dtype_block_elems(type) != 0) type = DType::F16;
    }
    return type;
}

QuantizeSummary quantize_model(const std::string& in, const std::string& out, const QuantizeTarget& target,
                               const std::function<void(size_t, size_t)>& progress) {
    const auto file = GgufFile::open(in);
    const std::string arch = file->get_str_opt("general.architecture").value_or("llama");
    const int64_t n_layers = file->get_int_opt(arch + ".block_count").value_or(0);
    const bool tied = file->find_tensor("output.weight") == nullptr;
    GgufWriter w;
    for (const auto& [key, value] : file->metadata()) w.set(key, value);
    w.set("general.file_type", GgufValue::u32(target.file_type));
    w.set("general.quantization_version", GgufValue::u32(2));  // ggml's block layouts since 2023, as llama-quantize writes
    QuantizeSummary sum;
    std::vector<float> row;
    const auto& tensors = file->tensors();
    for (size_t i = 0; i < tensors.size(); ++i) {
        const GgufTensor& t = tensors[i];
        sum.bytes_in += t.bytes;
        const auto in_type = static_cast<DType>(t.type);
        if (t.dims.size() != 2) {
            w.add_tensor(t.name, in_type, t.dims, t.data, t.bytes);
            sum.bytes_out += t.bytes;
            ++sum.copied;
        } else {
            const int64_t cols = t.dims[0], rows = t.dims[1];
            const DType type = quantized_type(target, t.name, n_layers, cols, tied);
            const size_t in_row = dtype_row_bytes(in_type, cols), out_row = dtype_row_bytes(type, cols);
            std::vector<uint8_t> data(out_row * static_cast<size_t>(rows));
            row.resize(static_cast<size_t>(cols));
            for (int64_t r = 0; r < rows; ++r) {
                dequantize_row(in_type, static_cast<const uint8_t*>(t.data) + static_cast<size_t>(r) * in_row, row.data(),
                               cols);
                quantize_row(type, row.data(), data.data() + static_cast<size_t>(r) * out_row, cols);
            }
            w.add_tensor(t.name, type, t.dims, data.data(), data.size());
            sum.bytes_out += data.size();
            ++sum.types[std::string(dtype_name(static_cast<uint32_t>(type)))];
        }
        if (progress) progress(i + 1, tensors.size());
    }
    w.write(out);
    return sum;
}

}  // namespace microlm
