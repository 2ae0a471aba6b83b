// Weight element types as ggml numbers them, their block layouts, and the scalar
// reference conversions (fp16, quantize, dequantize). Not the fast kernels: see kernels.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace microlm {

// Values are ggml's `enum ggml_type`, as stored in GGUF tensor infos.
enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    Q8_1 = 9,  // activation format only (what Q4_1 weights multiply against)
};

constexpr int kQK = 32;  // elements per block of every quantized type here

// Block layouts exactly as ggml defines them (little-endian, packed).
#pragma pack(push, 1)
struct BlockQ4_0 {  // 18 bytes: x[i] = d * (q[i] - 8); qs[j] low nibble = i=j, high = i=j+16
    uint16_t d;     // fp16 scale
    uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {  // 20 bytes: x[i] = d * q[i] + m
    uint16_t d;     // fp16 scale
    uint16_t m;     // fp16 minimum
    uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {  // 34 bytes: x[i] = d * q[i]
    uint16_t d;
    int8_t qs[kQK];
};
struct BlockQ8_1 {  // 36 bytes: x[i] = d * q[i]; s = d * sum(q)
    uint16_t d;
    uint16_t s;
    int8_t qs[kQK];
};
#pragma pack(pop)
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);

// Name as ggml spells it ("F32", "Q4_1", ...); "?" for unknown values.
std::string_view dtype_name(uint32_t type);
// Parses "f32", "Q8_0", ... (case-insensitive); nullopt if not a type we run.
std::optional<DType> dtype_from_name(std::string_view name);
// True for the weight types this build runs (F32 F16 Q4_0 Q4_1 Q8_0).
bool dtype_supported(uint32_t type);
// Elements per block (1 for F32/F16) and bytes per block. Requires dtype_supported or Q8_1.
int dtype_block_elems(DType t);
size_t dtype_block_bytes(DType t);
// Bytes of a row of n elements; n must be a multiple of the block size.
size_t dtype_row_bytes(DType t, int64_t n);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);  // round to nearest even, as ggml

// Reference (scalar) conversions of one row of n elements, n a multiple of the block size.
// Quantizers follow ggml's *_ref functions so that what we write matches llama-quantize.
void quantize_row(DType t, const float* src, void* dst, int64_t n);
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

}  // namespace microlm
