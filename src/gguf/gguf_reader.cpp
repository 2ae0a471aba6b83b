// GGUF reader: maps a file read-only and validates it before anything trusts it.
//
// Layout (little-endian), as defined by ggml's GGUF specification, version 2 or 3:
//   1. magic "GGUF" (4 bytes), version (u32), tensor_count (u64), kv_count (u64)
//   2. kv_count metadata entries: key (string), value type (u32), value
//        string = length (u64) + bytes (no terminator); array = element type (u32),
//        count (u64), elements (arrays may nest)
//   3. tensor_count tensor infos: name (string), n_dims (u32, at most 4),
//        dims (u64 x n_dims, dims[0] contiguous), ggml type (u32), offset (u64)
//   4. padding to `general.alignment` (default 32), then the data section; each tensor's
//        offset is relative to the data section and a multiple of the alignment.
// Every count, length and offset is checked against the bytes that remain, and every
// tensor's dims x type against the bytes it claims. Model keys are read in model.cpp.
#include <cstring>
#include <limits>
#include <unordered_set>

#include "microlm/error.h"
#include "microlm/gguf.h"

namespace microlm {
namespace {

constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 30;

// Reads primitive values from [pos, end) and names the file and item in every error.
class Cursor {
public:
    Cursor(const std::string& path, const uint8_t* base, size_t size)
        : path_(path), base_(base), size_(size) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(path_ + ": " + what + " (at byte " + std::to_string(pos_) + " of " +
                    std::to_string(size_) + ")");
    }

    void need(uint64_t bytes, const std::string& what) const {
        if (bytes > remaining()) {
            fail(what + ": needs " + std::to_string(bytes) + " bytes, only " +
                 std::to_string(remaining()) + " remain; the file is truncated or corrupt");
        }
    }

    template <typename T>
    T read(const std::string& what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const std::string& what) {
        uint64_t len = read<uint64_t>(what + " length");
        if (len > kMaxStringBytes) {
            fail(what + ": string length " + std::to_string(len) + " exceeds the limit of " +
                 std::to_string(kMaxStringBytes));
        }
        need(len, what);
        std::string s(reinterpret_cast<const char*>(base_ + pos_), len);
        pos_ += len;
        return s;
    }

    // A count of items each at least `min_item_bytes` long cannot exceed what remains.
    uint64_t read_count(const std::string& what, uint64_t min_item_bytes) {
        uint64_t n = read<uint64_t>(what);
        if (min_item_bytes > 0 && n > remaining() / min_item_bytes) {
            fail(what + " is " + std::to_string(n) + ", but only " + std::to_string(remaining()) +
                 " bytes remain (at most " + std::to_string(remaining() / min_item_bytes) +
                 " items of >= " + std::to_string(min_item_bytes) + " bytes fit)");
        }
        return n;
    }

private:
    const std::string& path_;
    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
};

uint64_t min_encoded_bytes(GgufValueType t) {
    switch (t) {
        case GgufValueType::UINT8:
        case GgufValueType::INT8:
        case GgufValueType::BOOL: return 1;
        case GgufValueType::UINT16:
        case GgufValueType::INT16: return 2;
        case GgufValueType::UINT32:
        case GgufValueType::INT32:
        case GgufValueType::FLOAT32: return 4;
        case GgufValueType::STRING:
        case GgufValueType::UINT64:
        case GgufValueType::INT64:
        case GgufValueType::FLOAT64: return 8;
        case GgufValueType::ARRAY: return 12;
    }
    return 1;
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

GgufValue read_value(Cursor& c, GgufValueType type, const std::string& key, int depth) {
    switch (type) {
        case GgufValueType::UINT8: return {type, uint64_t{c.read<uint8_t>(key)}};
        case GgufValueType::INT8: return {type, int64_t{c.read<int8_t>(key)}};
        case GgufValueType::UINT16: return {type, uint64_t{c.read<uint16_t>(key)}};
        case GgufValueType::INT16: return {type, int64_t{c.read<int16_t>(key)}};
        case GgufValueType::UINT32: return {type, uint64_t{c.read<uint32_t>(key)}};
        case GgufValueType::INT32: return {type, int64_t{c.read<int32_t>(key)}};
        case GgufValueType::UINT64: return {type, c.read<uint64_t>(key)};
        case GgufValueType::INT64: return {type, c.read<int64_t>(key)};
        case GgufValueType::FLOAT32: return {type, double{c.read<float>(key)}};
        case GgufValueType::FLOAT64: return {type, c.read<double>(key)};
        case GgufValueType::BOOL: {
            uint8_t b = c.read<uint8_t>(key);
            if (b > 1) c.fail("key '" + key + "': bool value " + std::to_string(b) + ", expected 0 or 1");
            return {type, b == 1};
        }
        case GgufValueType::STRING: return {type, c.read_string("key '" + key + "'")};
        case GgufValueType::ARRAY: {
            if (depth >= kMaxArrayDepth) {
                c.fail("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth));
            }
            uint32_t et = c.read<uint32_t>("key '" + key + "' array element type");
            if (!valid_value_type(et)) {
                c.fail("key '" + key + "': array element type " + std::to_string(et) +
                       ", expected 0..12");
            }
            auto elem = static_cast<GgufValueType>(et);
            uint64_t n = c.read_count("key '" + key + "' array length", min_encoded_bytes(elem));
            std::vector<GgufValue> items;
            items.reserve(n);
            for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, elem, key, depth + 1));
            return GgufValue::array(elem, std::move(items));
        }
    }
    c.fail("key '" + key + "': unknown value type");
}

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> f(new GgufFile());
    f->map_ = std::make_unique<MappedFile>(path);
    f->path_ = path;
    f->parse();
    return f;
}

GgufFile::~GgufFile() = default;

void GgufFile::parse() {
    const uint8_t* base = map_->data();
    const size_t size = map_->size();
    Cursor c(path_, base, size);
    if (size < 4 || std::memcmp(base, "GGUF", 4) != 0) {
        std::string got = size < 4 ? "a " + std::to_string(size) + "-byte file" : "other bytes";
        throw Error(path_ + ": not a GGUF file: expected magic \"GGUF\", found " + got);
    }
    c.read<uint32_t>("magic");
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
        c.fail("GGUF version " + std::to_string(version_) + " is not supported (expected 2 or 3)");
    }
    // Each tensor info needs >= 8 (name len) + 4 + 4 + 8 bytes; each kv >= 8 + 4 + 1.
    uint64_t n_tensors = c.read_count("tensor count", 24);
    uint64_t n_kv = c.read_count("metadata count", 13);

    std::unordered_set<std::string> seen;
    kv_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.read_string("metadata key #" + std::to_string(i));
        uint32_t t = c.read<uint32_t>("key '" + key + "' type");
        if (!valid_value_type(t)) {
            c.fail("key '" + key + "': value type " + std::to_string(t) + ", expected 0..12");
        }
        if (!seen.insert(key).second) c.fail("key '" + key + "' appears twice");
        GgufValue v = read_value(c, static_cast<GgufValueType>(t), key, 0);
        kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const GgufValue* a = find("general.alignment")) {
        if (!a->is_integer()) c.fail("key 'general.alignment': expected an integer");
        uint64_t al = std::holds_alternative<uint64_t>(a->v)
                          ? std::get<uint64_t>(a->v)
                          : static_cast<uint64_t>(std::get<int64_t>(a->v));
        if (al == 0 || (al & (al - 1)) != 0 || al > 65536) {
            c.fail("key 'general.alignment' is " + std::to_string(al) +
                   ", expected a power of two up to 65536");
        }
        alignment_ = al;
    }

    seen.clear();
    tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensor t;
        t.name = c.read_string("tensor #" + std::to_string(i) + " name");
        const std::string what = "tensor '" + t.name + "'";
        if (!seen.insert(t.name).second) c.fail(what + " appears twice");
        uint32_t n_dims = c.read<uint32_t>(what + " n_dims");
        if (n_dims == 0 || n_dims > kMaxDims) {
            c.fail(what + " has " + std::to_string(n_dims) + " dimensions, expected 1.." +
                   std::to_string(kMaxDims));
        }
        int64_t n_elems = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t dim = c.read<uint64_t>(what + " dim");
            if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / n_elems)) {
                c.fail(what + " dimension " + std::to_string(d) + " is " + std::to_string(dim) +
                       ", expected a positive size whose product with the others fits in 63 bits");
            }
            n_elems *= static_cast<int64_t>(dim);
            t.dims.push_back(static_cast<int64_t>(dim));
        }
        t.type = c.read<uint32_t>(what + " type");
        if (!dtype_supported(t.type)) {
            c.fail(what + " has type " + std::string(dtype_name(t.type)) + " (" +
                   std::to_string(t.type) + "), which this build cannot run (supported: F32 F16 Q4_0 Q4_1 Q5_0 "
                   "Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)");
        }
        DType dt = static_cast<DType>(t.type);
        if (t.dims[0] % dtype_block_elems(dt) != 0) {
            c.fail(what + ": first dimension " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                   std::string(dtype_name(t.type)) + " block size " + std::to_string(dtype_block_elems(dt)));
        }
        t.bytes = dtype_row_bytes(dt, t.dims[0]) * static_cast<size_t>(n_elems / t.dims[0]);
        t.offset = c.read<uint64_t>(what + " offset");
        if (t.offset % alignment_ != 0) {
            c.fail(what + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                   std::to_string(alignment_));
        }
        tensors_.push_back(std::move(t));
    }

    const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    const uint64_t data_size = data_start <= size ? size - data_start : 0;
    if (n_tensors > 0 && data_start > size) {
        c.fail("data section starts at byte " + std::to_string(data_start) + ", past the end of the file");
    }
    for (auto& t : tensors_) {
        if (t.offset > data_size || t.bytes > data_size - t.offset) {
            throw Error(path_ + ": tensor '" + t.name + "' (" + std::string(dtype_name(t.type)) +
                        ", " + std::to_string(t.elements()) + " elements) needs bytes [" +
                        std::to_string(t.offset) + ", " + std::to_string(t.offset + t.bytes) +
                        ") of the data section, which has " + std::to_string(data_size) +
                        " bytes; the file is truncated or corrupt");
        }
        t.data = base + data_start + t.offset;
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    for (const auto& [k, v] : kv_) {
        if (k == key) return &v;
    }
    return nullptr;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
    for (const auto& t : tensors_) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

namespace {

[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const char* expected,
                             const GgufValue& v) {
    throw Error(path + ": key '" + std::string(key) + "' has type " +
                std::string(gguf_type_name(v.type)) + ", expected " + expected);
}

int64_t to_int(const std::string& path, std::string_view key, const GgufValue& v) {
    if (const auto* u = std::get_if<uint64_t>(&v.v)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            throw Error(path + ": key '" + std::string(key) + "' value " + std::to_string(*u) +
                        " is out of range");
        }
        return static_cast<int64_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&v.v)) return *i;
    wrong_type(path, key, "an integer", v);
}

}  // namespace

std::optional<int64_t> GgufFile::get_int_opt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return to_int(path_, key, *v);
}

int64_t GgufFile::get_int(std::string_view key) const {
    auto v = get_int_opt(key);
    if (!v) throw Error(path_ + ": required key '" + std::string(key) + "' is missing");
    return *v;
}

std::optional<double> GgufFile::get_float_opt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (const auto* d = std::get_if<double>(&v->v)) return *d;
    if (v->is_integer()) return static_cast<double>(to_int(path_, key, *v));
    wrong_type(path_, key, "a float", *v);
}

double GgufFile::get_float(std::string_view key) const {
    auto v = get_float_opt(key);
    if (!v) throw Error(path_ + ": required key '" + std::string(key) + "' is missing");
    return *v;
}

std::optional<bool> GgufFile::get_bool_opt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (const auto* b = std::get_if<bool>(&v->v)) return *b;
    wrong_type(path_, key, "a bool", *v);
}

std::optional<std::string> GgufFile::get_str_opt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (const auto* s = std::get_if<std::string>(&v->v)) return *s;
    wrong_type(path_, key, "a string", *v);
}

std::string GgufFile::get_str(std::string_view key) const {
    auto v = get_str_opt(key);
    if (!v) throw Error(path_ + ": required key '" + std::string(key) + "' is missing");
    return *v;
}

std::vector<std::string> GgufFile::get_str_array(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) throw Error(path_ + ": required key '" + std::string(key) + "' is missing");
    const GgufArray* a = v->as_array();
    if (!a || a->elem_type != GgufValueType::STRING) wrong_type(path_, key, "an array of strings", *v);
    std::vector<std::string> out;
    out.reserve(a->items.size());
    for (const auto& item : a->items) out.push_back(std::get<std::string>(item.v));
    return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) throw Error(path_ + ": required key '" + std::string(key) + "' is missing");
    const GgufArray* a = v->as_array();
    if (!a) wrong_type(path_, key, "an array of integers", *v);
    std::vector<int64_t> out;
    out.reserve(a->items.size());
    for (const auto& item : a->items) out.push_back(to_int(path_, key, item));
    return out;
}

}  // namespace microlm
