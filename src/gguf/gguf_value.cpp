// GgufValue construction and printing. Parsing lives in gguf_reader.cpp, encoding in
// gguf_writer.cpp; this file only knows the value model.
#include <cstdio>

#include "microlm/gguf.h"

namespace microlm {

std::string_view gguf_type_name(GgufValueType t) {
    switch (t) {
        case GgufValueType::UINT8: return "u8";
        case GgufValueType::INT8: return "i8";
        case GgufValueType::UINT16: return "u16";
        case GgufValueType::INT16: return "i16";
        case GgufValueType::UINT32: return "u32";
        case GgufValueType::INT32: return "i32";
        case GgufValueType::FLOAT32: return "f32";
        case GgufValueType::BOOL: return "bool";
        case GgufValueType::STRING: return "string";
        case GgufValueType::ARRAY: return "array";
        case GgufValueType::UINT64: return "u64";
        case GgufValueType::INT64: return "i64";
        case GgufValueType::FLOAT64: return "f64";
    }
    return "?";
}

GgufValue GgufValue::u32(uint32_t x) { return {GgufValueType::UINT32, uint64_t{x}}; }
GgufValue GgufValue::i32(int32_t x) { return {GgufValueType::INT32, int64_t{x}}; }
GgufValue GgufValue::u64(uint64_t x) { return {GgufValueType::UINT64, x}; }
GgufValue GgufValue::f32(float x) { return {GgufValueType::FLOAT32, double{x}}; }
GgufValue GgufValue::boolean(bool x) { return {GgufValueType::BOOL, x}; }
GgufValue GgufValue::str(std::string s) { return {GgufValueType::STRING, std::move(s)}; }

GgufValue GgufValue::array(GgufValueType elem_type, std::vector<GgufValue> items) {
    auto arr = std::make_shared<GgufArray>(GgufArray{elem_type, std::move(items)});
    return {GgufValueType::ARRAY, std::shared_ptr<const GgufArray>(std::move(arr))};
}

GgufValue GgufValue::str_array(const std::vector<std::string>& items) {
    std::vector<GgufValue> v;
    v.reserve(items.size());
    for (const auto& s : items) v.push_back(str(s));
    return array(GgufValueType::STRING, std::move(v));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& items) {
    std::vector<GgufValue> v;
    v.reserve(items.size());
    for (int32_t x : items) v.push_back(i32(x));
    return array(GgufValueType::INT32, std::move(v));
}

GgufValue GgufValue::f32_array(const std::vector<float>& items) {
    std::vector<GgufValue> v;
    v.reserve(items.size());
    for (float x : items) v.push_back(f32(x));
    return array(GgufValueType::FLOAT32, std::move(v));
}

bool GgufValue::is_integer() const {
    return std::holds_alternative<uint64_t>(v) || std::holds_alternative<int64_t>(v);
}

bool GgufValue::is_float() const { return std::holds_alternative<double>(v); }

const GgufArray* GgufValue::as_array() const {
    const auto* p = std::get_if<std::shared_ptr<const GgufArray>>(&v);
    return p ? p->get() : nullptr;
}

std::string GgufValue::to_string(size_t max_items) const {
    if (const auto* u = std::get_if<uint64_t>(&v)) return std::to_string(*u);
    if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
    if (const auto* d = std::get_if<double>(&v)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.9g", *d);
        return buf;
    }
    if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
    if (const auto* s = std::get_if<std::string>(&v)) {
        std::string out = "\"";
        size_t shown = 0;
        for (char c : *s) {
            if (shown++ == 120) {
                out += "...";
                break;
            }
            if (c == '\n') out += "\\n";
            else if (c == '"') out += "\\\"";
            else if (static_cast<unsigned char>(c) < 0x20) out += '?';
            else out += c;
        }
        return out + "\"";
    }
    const GgufArray* arr = as_array();
    std::string out = "[";
    out.append(gguf_type_name(arr->elem_type)).append(" x ").append(std::to_string(arr->items.size())).append("]");
    if (max_items == 0) return out;
    out += " [";
    for (size_t i = 0; i < arr->items.size() && i < max_items; ++i) {
        if (i) out += ", ";
        out += arr->items[i].to_string(0);
    }
    if (arr->items.size() > max_items) out += ", ...";
    return out + "]";
}

int64_t GgufTensor::elements() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
}

}  // namespace microlm
