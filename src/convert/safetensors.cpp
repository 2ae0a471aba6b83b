// read_safetensors: one .safetensors file → float32 tensors. Not the sharded index
// (model.safetensors.index.json), which llama_convert.cpp resolves into file names.
//
// Layout: u64 little-endian N, then N bytes of JSON {"name": {"dtype": "F32", "shape": [rows, cols],
// "data_offsets": [begin, end]}, ..., "__metadata__": {...}}, then the data; offsets are relative to
// the end of the header. Each entry's byte range is checked against the file and against
// shape x dtype before anything is read.
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>

#include "microlm/convert.h"
#include "microlm/dtype.h"
#include "microlm/error.h"

namespace microlm {
namespace {

constexpr uint64_t kMaxHeader = uint64_t{100} << 20;
constexpr uint64_t kMaxElements = uint64_t{1} << 40;

struct DtypeInfo {
    size_t bytes;
    bool is_float;  // integer and bool tensors are checked, then skipped: they are not weights
};
std::optional<DtypeInfo> dtype_info(const std::string& d) {
    if (d == "F32") return DtypeInfo{4, true};
    if (d == "F16" || d == "BF16") return DtypeInfo{2, true};
    if (d == "F64") return DtypeInfo{8, true};
    if (d == "BOOL" || d == "U8" || d == "I8") return DtypeInfo{1, false};
    if (d == "U16" || d == "I16") return DtypeInfo{2, false};
    if (d == "U32" || d == "I32") return DtypeInfo{4, false};
    if (d == "U64" || d == "I64") return DtypeInfo{8, false};
    return std::nullopt;
}

uint64_t to_u64(const nlohmann::json& j, const std::string& where) {
    if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) {
        throw Error(where + " is " + j.dump() + ", expected a non-negative integer");
    }
    return j.get<uint64_t>();
}

}  // namespace

TensorMap read_safetensors(const std::string& path) {
    const MappedFile file(path);
    const std::span<const uint8_t> b = file.bytes();
    if (b.size() < 8)
        throw Error(path + ": " + std::to_string(b.size()) + " bytes is too small for a safetensors file");
    uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | b[static_cast<size_t>(k)];
    if (n > b.size() - 8 || n > kMaxHeader) {
        throw Error(path + ": header length " + std::to_string(n) + " exceeds the file (" +
                    std::to_string(b.size()) + " bytes) or the " + std::to_string(kMaxHeader) +
                    "-byte limit (not a safetensors file?)");
    }
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": header is not valid JSON: " + e.what());
    }
    if (!header.is_object()) throw Error(path + ": header is not a JSON object");
    const uint8_t* data = b.data() + 8 + n;
    const uint64_t data_size = b.size() - 8 - n;

    TensorMap out;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__") continue;
        const std::string where = path + ": tensor '" + name + "'";
        if (!info.is_object() || !info.contains("dtype") || !info["dtype"].is_string() ||
            !info.contains("shape") || !info["shape"].is_array() || !info.contains("data_offsets") ||
            !info["data_offsets"].is_array() || info["data_offsets"].size() != 2) {
            throw Error(where +
                        ": expected {\"dtype\": str, \"shape\": [...], \"data_offsets\": [begin, end]}");
        }
        const std::string dtype = info["dtype"].get<std::string>();
        const std::optional<DtypeInfo> kind = dtype_info(dtype);
        if (!kind)
            throw Error(where + ": dtype " + dtype + " is not supported (supported: F32, F16, BF16, F64)");
        CheckpointTensor t;
        t.stored_type = dtype;
        uint64_t numel = 1;
        for (const auto& d : info["shape"]) {
            const uint64_t v = to_u64(d, where + " shape entry");
            if (v > kMaxElements || (v > 0 && numel > kMaxElements / v))
                throw Error(where + ": shape " + info["shape"].dump() + " is too large");
            numel *= v;
            t.shape.push_back(static_cast<int64_t>(v));
        }
        const uint64_t begin = to_u64(info["data_offsets"][0], where + " data_offsets[0]");
        const uint64_t end = to_u64(info["data_offsets"][1], where + " data_offsets[1]");
        if (begin > end || end > data_size) {
            throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                        "] do not lie within the " + std::to_string(data_size) + " data bytes");
        }
        if (end - begin != numel * kind->bytes) {
            throw Error(where + ": " + dtype + " " + info["shape"].dump() + " needs " +
                        std::to_string(numel * kind->bytes) + " bytes, data_offsets give " +
                        std::to_string(end - begin));
        }
        if (!kind->is_float) continue;
        t.data.resize(static_cast<size_t>(numel));
        const uint8_t* p = data + begin;
        float* dst = t.data.data();
        if (dtype == "F32") {
            if (!t.data.empty()) std::memcpy(dst, p, t.data.size() * 4);
        } else if (dtype == "F64") {
            for (size_t k = 0; k < t.data.size(); ++k) {
                double d;
                std::memcpy(&d, p + 8 * k, 8);
                dst[k] = static_cast<float>(d);
            }
        } else {
            const bool f16 = dtype == "F16";
            for (size_t k = 0; k < t.data.size(); ++k) {
                const auto h = static_cast<uint16_t>(p[2 * k] | (p[2 * k + 1] << 8));
                dst[k] = f16 ? fp16_to_fp32(h) : std::bit_cast<float>(uint32_t{h} << 16);
            }
        }
        out[name] = std::move(t);
    }
    return out;
}

}  // namespace microlm
