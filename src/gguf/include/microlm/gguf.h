// GGUF v3 files: a reader that maps tensor data read-only and distrusts every byte, and a
// writer that produces files llama.cpp loads. The file layout is described at the top of
// src/gguf/gguf_reader.cpp. Model semantics (which keys a Llama needs) live in model.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "microlm/dtype.h"
#include "microlm/mapped_file.h"

namespace microlm {

enum class GgufValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufValueType t);

struct GgufArray;

// One metadata value. Integers of every width are held as uint64_t (unsigned types) or
// int64_t (signed), floats as double; `type` keeps the exact type for round-tripping.
struct GgufValue {
    GgufValueType type = GgufValueType::UINT8;
    std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<const GgufArray>> v;

    static GgufValue u32(uint32_t x);
    static GgufValue i32(int32_t x);
    static GgufValue u64(uint64_t x);
    static GgufValue f32(float x);
    static GgufValue boolean(bool x);
    static GgufValue str(std::string s);
    static GgufValue array(GgufValueType elem_type, std::vector<GgufValue> items);
    static GgufValue str_array(const std::vector<std::string>& items);
    static GgufValue i32_array(const std::vector<int32_t>& items);
    static GgufValue f32_array(const std::vector<float>& items);

    bool is_integer() const;
    bool is_float() const;
    const GgufArray* as_array() const;  // nullptr unless type == ARRAY
    std::string to_string(size_t max_items = 8) const;  // for `microlm info`
};

struct GgufArray {
    GgufValueType elem_type;
    std::vector<GgufValue> items;
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous dimension
    uint32_t type = 0;          // ggml type number; dtype_supported(type) holds after open()
    uint64_t offset = 0;        // relative to the start of the data section
    size_t bytes = 0;
    const uint8_t* data = nullptr;  // inside the read-only mapping
    int64_t elements() const;
};

class GgufFile {
public:
    // Maps and validates `path`; throws microlm::Error naming the file and the problem.
    static std::unique_ptr<GgufFile> open(const std::string& path);
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    size_t file_size() const { return map_->size(); }
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }

    const GgufValue* find(std::string_view key) const;
    const GgufTensor* find_tensor(std::string_view name) const;

    // Typed getters; they throw naming the file, the key, the expected and the actual type.
    int64_t get_int(std::string_view key) const;
    std::optional<int64_t> get_int_opt(std::string_view key) const;
    double get_float(std::string_view key) const;
    std::optional<double> get_float_opt(std::string_view key) const;
    std::optional<bool> get_bool_opt(std::string_view key) const;
    std::string get_str(std::string_view key) const;
    std::optional<std::string> get_str_opt(std::string_view key) const;
    std::vector<std::string> get_str_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;

private:
    GgufFile() = default;
    void parse();

    std::unique_ptr<MappedFile> map_;  // keeps the tensors' bytes alive
    std::string path_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<GgufTensor> tensors_;
};

// Builds a GGUF v3 file in memory and writes it atomically (temporary file + rename).
class GgufWriter {
public:
    void set(std::string key, GgufValue value);  // replaces an existing key, keeps order
    // Copies `bytes` bytes; they must equal dims x type.
    void add_tensor(std::string name, DType type, std::vector<int64_t> dims, const void* data,
                    size_t bytes);
    void write(const std::string& path) const;

private:
    struct Tensor {
        std::string name;
        DType type;
        std::vector<int64_t> dims;
        std::vector<uint8_t> data;
    };
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<Tensor> tensors_;
};

}  // namespace microlm
