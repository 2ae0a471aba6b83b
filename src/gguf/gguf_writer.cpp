// GGUF v3 writer: metadata and tensors assembled in memory, written to a temporary file
// beside the target and renamed into place, so a failed write never leaves half a file.
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/output_file.h"

namespace microlm {
namespace {

class Encoder {
public:
    template <typename T>
    void put(T v) {
        const size_t at = buf.size();
        buf.resize(at + sizeof(T));
        std::memcpy(buf.data() + at, &v, sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        const size_t at = buf.size();
        buf.resize(at + s.size());
        if (!s.empty()) std::memcpy(buf.data() + at, s.data(), s.size());
    }
    void pad_to(uint64_t alignment) {
        while (buf.size() % alignment != 0) buf.push_back(0);
    }
    void put_value(const GgufValue& v) {
        switch (v.type) {
            case GgufValueType::UINT8: put<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.v))); break;
            case GgufValueType::INT8: put<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.v))); break;
            case GgufValueType::UINT16: put<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.v))); break;
            case GgufValueType::INT16: put<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.v))); break;
            case GgufValueType::UINT32: put<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.v))); break;
            case GgufValueType::INT32: put<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.v))); break;
            case GgufValueType::UINT64: put<uint64_t>(std::get<uint64_t>(v.v)); break;
            case GgufValueType::INT64: put<int64_t>(std::get<int64_t>(v.v)); break;
            case GgufValueType::FLOAT32: put<float>(static_cast<float>(std::get<double>(v.v))); break;
            case GgufValueType::FLOAT64: put<double>(std::get<double>(v.v)); break;
            case GgufValueType::BOOL: put<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
            case GgufValueType::STRING: put_string(std::get<std::string>(v.v)); break;
            case GgufValueType::ARRAY: {
                const GgufArray* a = v.as_array();
                put<uint32_t>(static_cast<uint32_t>(a->elem_type));
                put<uint64_t>(a->items.size());
                for (const auto& item : a->items) {
                    if (item.type != a->elem_type) {
                        throw Error("GGUF writer: array element of type " +
                                    std::string(gguf_type_name(item.type)) + " in an array of " +
                                    std::string(gguf_type_name(a->elem_type)));
                    }
                    put_value(item);
                }
                break;
            }
        }
    }
    std::vector<uint8_t> buf;
};

}  // namespace

void GgufWriter::set(std::string key, GgufValue value) {
    for (auto& [k, v] : kv_) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::add_tensor(std::string name, DType type, std::vector<int64_t> dims,
                            const void* data, size_t bytes) {
    if (dims.empty() || dims.size() > 4) {
        throw Error("GGUF writer: tensor '" + name + "' has " + std::to_string(dims.size()) +
                    " dimensions, expected 1..4");
    }
    int64_t rows = 1;
    for (size_t i = 1; i < dims.size(); ++i) rows *= dims[i];
    if (dims[0] % dtype_block_elems(type) != 0) {
        throw Error("GGUF writer: tensor '" + name + "' first dimension " + std::to_string(dims[0]) +
                    " is not a multiple of the block size of " + std::string(dtype_name(uint32_t(type))));
    }
    size_t expected = dtype_row_bytes(type, dims[0]) * static_cast<size_t>(rows);
    if (bytes != expected) {
        throw Error("GGUF writer: tensor '" + name + "' has " + std::to_string(bytes) +
                    " bytes, expected " + std::to_string(expected) + " for its shape and type");
    }
    for (const auto& t : tensors_) {
        if (t.name == name) throw Error("GGUF writer: tensor '" + name + "' added twice");
    }
    const auto* p = static_cast<const uint8_t*>(data);
    tensors_.push_back({std::move(name), type, std::move(dims), std::vector<uint8_t>(p, p + bytes)});
}

void GgufWriter::write(const std::string& path) const {
    uint64_t alignment = 32;
    for (const auto& [k, v] : kv_) {
        const auto* u = std::get_if<uint64_t>(&v.v);
        if (k == "general.alignment" && u && *u > 0 && (*u & (*u - 1)) == 0) alignment = *u;
    }
    Encoder e;
    e.put<uint32_t>(0x46554747);  // "GGUF" little-endian
    e.put<uint32_t>(3);
    e.put<uint64_t>(tensors_.size());
    e.put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
        e.put_string(k);
        e.put<uint32_t>(static_cast<uint32_t>(v.type));
        e.put_value(v);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        e.put_string(t.name);
        e.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
        for (int64_t d : t.dims) e.put<uint64_t>(static_cast<uint64_t>(d));
        e.put<uint32_t>(static_cast<uint32_t>(t.type));
        e.put<uint64_t>(offset);
        offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    e.pad_to(alignment);

    OutputFile out(path);
    out.write(e.buf.data(), e.buf.size());
    static const uint8_t zeros[64] = {};
    for (const auto& t : tensors_) {
        out.write(t.data.data(), t.data.size());
        for (size_t pad = (alignment - t.data.size() % alignment) % alignment; pad > 0;) {
            const size_t n = pad < sizeof zeros ? pad : sizeof zeros;
            out.write(zeros, n);
            pad -= n;
        }
    }
    out.commit();
}

}  // namespace microlm
