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
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,  // activation format only (what Q4_1 and Q5_1 weights multiply against)
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,  // activation format only (what the K-quants multiply against)
};

constexpr int kQK = 32;    // elements per block of the legacy quantized types (Q4_0 ... Q8_1)
constexpr int kQKK = 256;  // elements per super-block of the K-quants
constexpr int kKScaleBytes = 12;  // Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins, packed

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
struct BlockQ5_0 {  // 22 bytes: x[i] = d * (q[i] - 16); the low 4 bits of q as in Q4_0, bit 4 in qh
    uint16_t d;
    uint8_t qh[4];  // bit i of the little-endian uint32: the 5th bit of element i
    uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {  // 24 bytes: x[i] = d * q[i] + m
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
// The K-quants: 256 elements in sub-blocks of 16 or 32, each with its own scale (and min),
// the scales themselves quantized against the super-block's fp16 d (and dmin).
struct BlockQ2_K {  // 84 bytes: 16 sub-blocks of 16; x = d * sc * q - dmin * m, q in 0..3
    uint8_t scales[kQKK / 16];  // low nibble the scale, high nibble the min
    uint8_t qs[kQKK / 4];
    uint16_t d;
    uint16_t dmin;
};
struct BlockQ3_K {  // 110 bytes: 16 sub-blocks of 16; x = d * (sc - 32) * (q - 4 * !hbit), q in 0..3
    uint8_t hmask[kQKK / 8];
    uint8_t qs[kQKK / 4];
    uint8_t scales[12];  // sixteen 6-bit scales, packed
    uint16_t d;
};
struct BlockQ4_K {  // 144 bytes: 8 sub-blocks of 32; x = d * sc * q - dmin * m, q in 0..15
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {  // 176 bytes: as Q4_K with a 5th bit per element in qh
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qh[kQKK / 8];
    uint8_t qs[kQKK / 2];
};
struct BlockQ6_K {  // 210 bytes: 16 sub-blocks of 16; x = d * sc * (q - 32), q in 0..63
    uint8_t ql[kQKK / 2];
    uint8_t qh[kQKK / 4];
    int8_t scales[kQKK / 16];
    uint16_t d;
};
struct BlockQ8_K {  // 292 bytes: x = d * q; bsums: the sums of each 16 q
    float d;
    int8_t qs[kQKK];
    int16_t bsums[kQKK / 16];
};
#pragma pack(pop)
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

// A K-quant super-block unpacked: the integer code of each element, the integer scale and min of
// each run of 16 (Q4_K/Q5_K: their sub-block's of 32, twice), the codes' offset (Q6_K's 32) and
// the super-block's float scales, so that x[i] = (d * scale[i / 16]) * (q[i] - offset) -
// dmin * min[i / 16] (value(), ggml's rounding). Integer scales let the dot products sum a
// super-block exactly before any float step, as llama.cpp's do. One decoding for the reference
// dequantizer and every backend's dot product.
struct UnpackedK {
    int8_t q[kQKK];
    int16_t scale[kQKK / 16];
    int16_t min[kQKK / 16];  // 0 where the type has no minimum (Q3_K, Q6_K)
    int offset = 0;          // Q6_K: 32 (its codes are 0..63); Q2_K-Q5_K: 0 (Q3_K's codes are signed)
    float d = 0.0f, dmin = 0.0f;
    float value(int i) const {
        return d * static_cast<float>(scale[i / 16]) * static_cast<float>(q[i] - offset) -
               dmin * static_cast<float>(min[i / 16]);
    }
};
// Requires a K-quant weight type (Q2_K ... Q6_K).
void unpack_k_block(DType t, const void* block, UnpackedK& out);
// Everything but the codes q (for SIMD paths that decode the codes themselves): Q4_K, Q5_K and
// Q6_K; the other K-quants get the whole block.
void unpack_k_scales(DType t, const void* block, UnpackedK& out);
bool is_k_quant(DType t);  // Q2_K ... Q6_K (not Q8_K)

// Name as ggml spells it ("F32", "Q4_1", ...); "?" for unknown values.
std::string_view dtype_name(uint32_t type);
// Parses "f32", "Q8_0", ... (case-insensitive); nullopt if not a type we run.
std::optional<DType> dtype_from_name(std::string_view name);
// True for the weight types this build runs (F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K-Q6_K).
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
// quantize_row writes every type but Q2_K and Q3_K (it throws std::invalid_argument for them);
// its Q4_K, Q5_K and Q6_K are our own fits (range, one least-squares step), not byte-identical
// to llama-quantize's. dequantize_row reads every type but Q8_1's s.
void quantize_row(DType t, const float* src, void* dst, int64_t n);
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

}  // namespace microlm
