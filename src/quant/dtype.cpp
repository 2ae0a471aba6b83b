// Weight element types: names, block sizes, fp16 <-> fp32 and the reference quantizers.
// The quantizers reproduce ggml's quantize_row_*_ref bit for bit so that files we write
// match llama-quantize; they are the slow oracle, not what the kernels use on hot paths.
#include "microlm/dtype.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace microlm {

namespace {

// Indexed by ggml's type number. Gaps are numbers ggml retired before or after GGUF existed;
// they keep their old names so an error message can say what a file contains.
constexpr std::array<std::string_view, 42> kTypeNames = {
    "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
    "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
    "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
    "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
    "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
    "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",    "NVFP4",    "Q1_0",
};

template <typename Block>
const Block* blocks_in(const void* p) {
    return static_cast<const Block*>(p);
}
template <typename Block>
Block* blocks_out(void* p) {
    return static_cast<Block*>(p);
}

// The 4-bit codes truncate v = scaled + 0.5 (or + 8.5) rather than call roundf, as ggml's
// reference does; v >= 0 there, so it is round-half-up, and the byte-exact match with
// llama-quantize depends on keeping it.
int nibble(float v) { return std::min(15, int(static_cast<int8_t>(v))); }

// The value of largest magnitude (the first of equals), sign kept: the quantizers map it to the
// end of their range with one more step.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += kQK) {
        // The scale carries the sign of the largest-magnitude value so that value maps to
        // exactly -8, the end of the 4-bit range with one more step.
        const float d = signed_absmax(x, kQK) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK / 2; j++) {
            const int lo = nibble(x[j] * id + 8.5f);
            const int hi = nibble(x[j + kQK / 2] * id + 8.5f);
            y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
    }
}

void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += kQK) {
        float min = FLT_MAX;
        float max = -FLT_MAX;
        for (int j = 0; j < kQK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        for (int j = 0; j < kQK / 2; j++) {
            const int lo = nibble((x[j] - min) * id + 0.5f);
            const int hi = nibble((x[j + kQK / 2] - min) * id + 0.5f);
            y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
    }
}

// Shared by Q8_0 and Q8_1; returns the block scale d (unrounded, as ggml uses it for s).
float quantize_q8_block(const float* x, int8_t* qs) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; j++) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; j++) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    return d;
}

// Q5_0 and Q5_1 as ggml's references: the 5th bit of each code goes to qh.
void put_q5(int j, int lo_code, int hi_code, uint8_t* qs, uint32_t& qh) {
    qs[j] = static_cast<uint8_t>((lo_code & 0x0f) | ((hi_code & 0x0f) << 4));
    qh |= static_cast<uint32_t>((lo_code & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((hi_code & 0x10) >> 4) << (j + kQK / 2);
}

void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += kQK) {
        const float d = signed_absmax(x, kQK) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; j++) {
            const int lo = std::min(31, int(static_cast<int8_t>(x[j] * id + 16.5f)));
            const int hi = std::min(31, int(static_cast<int8_t>(x[j + kQK / 2] * id + 16.5f)));
            put_q5(j, lo, hi, y[i].qs, qh);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += kQK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < kQK; j++) {
            min = std::min(min, x[j]);
            max = std::max(max, x[j]);
        }
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; j++) {
            const int lo = static_cast<int8_t>((x[j] - min) * id + 0.5f);
            const int hi = static_cast<int8_t>((x[j + kQK / 2] - min) * id + 0.5f);
            put_q5(j, lo, hi, y[i].qs, qh);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

// Q8_K, the K-quants' activation format: the scale maps the largest-magnitude value to -127
// (its sign folded into d), codes rounded half to even, and the sum of each 16 codes kept.
void quantize_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += kQKK) {
        const float max = signed_absmax(x, kQKK);
        if (max == 0.0f) {
            y[i].d = 0.0f;
            std::memset(y[i].qs, 0, sizeof y[i].qs);
            std::memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < kQKK; j++)
            y[i].qs[j] = static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * x[j]))));
        for (int g = 0; g < kQKK / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[g * 16 + j];
            y[i].bsums[g] = static_cast<int16_t>(sum);
        }
        y[i].d = 1.0f / iscale;
    }
}

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: the first four of
// each whole in bytes 0-7, the last four split between bytes 8-11 (low bits) and the top two
// bits of bytes 0-7.
void k4_scale_min(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void unpack_q2_k(const BlockQ2_K& b, UnpackedK& u) {
    u.d = fp16_to_fp32(b.d);
    u.dmin = fp16_to_fp32(b.dmin);
    u.offset = 0;
    // Each 32 bytes of qs hold 128 codes: four 2-bit planes, each plane two runs of 16.
    for (int half = 0; half < 2; half++) {
        const uint8_t* q = b.qs + 32 * half;
        for (int plane = 0; plane < 4; plane++) {
            for (int run = 0; run < 2; run++) {
                const int s = half * 8 + plane * 2 + run;
                u.scale[s] = static_cast<int16_t>(b.scales[s] & 0x0f);
                u.min[s] = static_cast<int16_t>(b.scales[s] >> 4);
                for (int l = 0; l < 16; l++) u.q[16 * s + l] = static_cast<int8_t>((q[l + 16 * run] >> (2 * plane)) & 3);
            }
        }
    }
}

void unpack_q3_k(const BlockQ3_K& b, UnpackedK& u) {
    u.d = fp16_to_fp32(b.d);
    u.dmin = 0.0f;
    u.offset = 0;
    // Sixteen 6-bit scales: low 4 bits from bytes 0-7 (nibbles), high 2 bits from bytes 8-11.
    int sc[16];
    for (int s = 0; s < 16; s++) {
        const int low = s < 8 ? (b.scales[s] & 0x0f) : (b.scales[s - 8] >> 4);
        const int high = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (low | (high << 4)) - 32;
    }
    for (int half = 0; half < 2; half++) {
        const uint8_t* q = b.qs + 32 * half;
        for (int plane = 0; plane < 4; plane++) {
            const uint8_t bit = static_cast<uint8_t>(1u << (half * 4 + plane));
            for (int run = 0; run < 2; run++) {
                const int s = half * 8 + plane * 2 + run;
                u.scale[s] = static_cast<int16_t>(sc[s]);
                u.min[s] = 0;
                for (int l = 0; l < 16; l++) {
                    const int code = (q[l + 16 * run] >> (2 * plane)) & 3;
                    u.q[16 * s + l] = static_cast<int8_t>(code - ((b.hmask[l + 16 * run] & bit) ? 0 : 4));
                }
            }
        }
    }
}

// Q4_K and Q5_K's scales: d, dmin and the eight sub-blocks' scale and min, each twice (runs of 16).
void unpack_q45_k_scales(uint16_t d16, uint16_t dmin16, const uint8_t* scales, UnpackedK& u) {
    u.d = fp16_to_fp32(d16);
    u.dmin = fp16_to_fp32(dmin16);
    u.offset = 0;
    for (int sub = 0; sub < 8; sub++) {
        int sc = 0, m = 0;
        k4_scale_min(sub, scales, sc, m);
        u.scale[2 * sub] = u.scale[2 * sub + 1] = static_cast<int16_t>(sc);
        u.min[2 * sub] = u.min[2 * sub + 1] = static_cast<int16_t>(m);
    }
}

// Q4_K (qh == nullptr) and Q5_K: four 64-element chunks, low nibbles then high nibbles.
void unpack_q45_k(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qh, const uint8_t* qs,
                  UnpackedK& u) {
    unpack_q45_k_scales(d16, dmin16, scales, u);
    for (int chunk = 0; chunk < 4; chunk++) {
        const uint8_t* q = qs + 32 * chunk;
        for (int nib = 0; nib < 2; nib++) {
            const int sub = 2 * chunk + nib;  // sub-block of 32
            const uint8_t bit = static_cast<uint8_t>(1u << sub);
            for (int l = 0; l < 32; l++) {
                int code = nib == 0 ? (q[l] & 0x0f) : (q[l] >> 4);
                if (qh && (qh[l] & bit)) code += 16;
                u.q[32 * sub + l] = static_cast<int8_t>(code);
            }
        }
    }
}

void unpack_q6_k_scales(const BlockQ6_K& b, UnpackedK& u) {
    u.d = fp16_to_fp32(b.d);
    u.dmin = 0.0f;
    u.offset = 32;
    for (int s = 0; s < 16; s++) {
        u.scale[s] = static_cast<int16_t>(b.scales[s]);
        u.min[s] = 0;
    }
}

void unpack_q6_k(const BlockQ6_K& b, UnpackedK& u) {
    unpack_q6_k_scales(b, u);
    for (int half = 0; half < 2; half++) {
        const uint8_t* ql = b.ql + 64 * half;
        const uint8_t* qh = b.qh + 32 * half;
        for (int l = 0; l < 32; l++) {
            const int base = 128 * half + l;
            u.q[base] = static_cast<int8_t>((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4));
            u.q[base + 32] = static_cast<int8_t>((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
            u.q[base + 64] = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            u.q[base + 96] = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

// ---- K-quant writers -------------------------------------------------------------------------
// Our own reference quantizers (not byte-identical to llama-quantize, whose scale search is an
// iterative weighted fit): each sub-block's scale (and min) from its range, one least-squares
// refinement of them given the codes, then the scales themselves quantized against the
// super-block's d (and dmin), and the codes recomputed with the scales as stored.

int clampi(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// A sub-block of n (<= 32) values as scale * q - min with q in 0..levels and min >= 0 (the
// offset -min reaches x's minimum, taken <= 0): the range fit, then least squares on the codes.
void fit_scale_min(const float* x, int n, int levels, float& scale, float& min) {
    float lo = 0.0f, hi = -FLT_MAX;
    for (int i = 0; i < n; i++) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    scale = hi > lo ? (hi - lo) / static_cast<float>(levels) : 0.0f;
    min = -lo;
    if (scale == 0.0f) return;
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    int q[32];
    for (int i = 0; i < n; i++) {
        q[i] = clampi(static_cast<int>(std::nearbyint((x[i] + min) / scale)), 0, levels);
        sq += q[i];
        sqq += static_cast<double>(q[i]) * q[i];
        sx += x[i];
        sqx += q[i] * static_cast<double>(x[i]);
    }
    const double det = n * sqq - sq * sq;
    if (det <= 0) return;
    const double a = (n * sqx - sq * sx) / det, b = (sx - a * sq) / n;  // x ~ a q + b
    if (a > 0 && b <= 0) {
        double err_old = 0, err_new = 0;
        for (int i = 0; i < n; i++) {
            err_old += std::pow(scale * q[i] - min - x[i], 2.0);
            err_new += std::pow(a * q[i] + b - x[i], 2.0);
        }
        if (err_new < err_old) {
            scale = static_cast<float>(a);
            min = static_cast<float>(-b);
        }
    }
}

// Q4_K (levels 15, qh == nullptr) and Q5_K (levels 31): eight sub-blocks of 32.
void quantize_q45_k(const float* x, int levels, uint16_t& d16, uint16_t& dmin16, uint8_t* scales, uint8_t* qh,
                    uint8_t* qs) {
    float sc[8], mn[8], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        fit_scale_min(x + 32 * j, 32, levels, sc[j], mn[j]);
        max_sc = std::max(max_sc, sc[j]);
        max_mn = std::max(max_mn, mn[j]);
    }
    d16 = fp32_to_fp16(max_sc / 63.0f);
    dmin16 = fp32_to_fp16(max_mn / 63.0f);
    const float ds = fp16_to_fp32(d16), dm = fp16_to_fp32(dmin16);
    int isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        isc[j] = ds > 0 ? clampi(static_cast<int>(std::nearbyint(sc[j] / ds)), 0, 63) : 0;
        imn[j] = dm > 0 ? clampi(static_cast<int>(std::nearbyint(mn[j] / dm)), 0, 63) : 0;
    }
    // The inverse of k4_scale_min's packing.
    for (int j = 0; j < 4; j++) {
        scales[j] = static_cast<uint8_t>(isc[j] | ((isc[j + 4] >> 4) << 6));
        scales[j + 4] = static_cast<uint8_t>(imn[j] | ((imn[j + 4] >> 4) << 6));
        scales[j + 8] = static_cast<uint8_t>((isc[j + 4] & 0x0f) | ((imn[j + 4] & 0x0f) << 4));
    }
    uint8_t q[kQKK];
    for (int j = 0; j < 8; j++) {
        const float step = ds * static_cast<float>(isc[j]), off = dm * static_cast<float>(imn[j]);
        for (int i = 0; i < 32; i++)
            q[32 * j + i] = static_cast<uint8_t>(
                step > 0 ? clampi(static_cast<int>(std::nearbyint((x[32 * j + i] + off) / step)), 0, levels) : 0);
    }
    if (qh) std::memset(qh, 0, kQKK / 8);
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
            if (qh) qh[l] = static_cast<uint8_t>(qh[l] | ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
        }
    }
}

// Q6_K: sixteen sub-blocks of 16, codes -32..31, each sub-block's extreme mapped to -32 (its
// sign in the int8 scale), the scales quantized against d so that the largest is -128.
void quantize_q6_k(const float* x, BlockQ6_K& b) {
    float sc[16], max_sc = 0, max_abs = 0;
    for (int s = 0; s < 16; s++) {
        sc[s] = signed_absmax(x + 16 * s, 16) / -32.0f;
        if (std::fabs(sc[s]) > max_abs) {
            max_abs = std::fabs(sc[s]);
            max_sc = sc[s];
        }
    }
    b.d = fp32_to_fp16(max_sc / -128.0f);
    const float ds = fp16_to_fp32(b.d);
    uint8_t q[kQKK];
    for (int s = 0; s < 16; s++) {
        const int isc = ds != 0 ? clampi(static_cast<int>(std::nearbyint(sc[s] / ds)), -128, 127) : 0;
        b.scales[s] = static_cast<int8_t>(isc);
        const float step = ds * static_cast<float>(isc);
        for (int i = 0; i < 16; i++)
            q[16 * s + i] = static_cast<uint8_t>(
                (step != 0 ? clampi(static_cast<int>(std::nearbyint(x[16 * s + i] / step)), -32, 31) : 0) + 32);
    }
    // The inverse of unpack_q6_k's layout.
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            const int base = 128 * h + l;
            const uint8_t q1 = q[base], q2 = q[base + 32], q3 = q[base + 64], q4 = q[base + 96];
            b.ql[64 * h + l] = static_cast<uint8_t>((q1 & 0x0f) | ((q3 & 0x0f) << 4));
            b.ql[64 * h + l + 32] = static_cast<uint8_t>((q2 & 0x0f) | ((q4 & 0x0f) << 4));
            b.qh[32 * h + l] =
                static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

}  // namespace

std::string_view dtype_name(uint32_t type) {
    return type < kTypeNames.size() ? kTypeNames[type] : std::string_view("?");
}

std::optional<DType> dtype_from_name(std::string_view name) {
    std::string upper(name);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (DType t : {DType::F32, DType::F16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                    DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        if (upper == dtype_name(static_cast<uint32_t>(t))) return t;
    }
    return std::nullopt;
}

bool dtype_supported(uint32_t type) {
    switch (static_cast<DType>(type)) {
        case DType::F32:
        case DType::F16:
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: return true;
        case DType::Q8_1:
        case DType::Q8_K: return false;
    }
    return false;
}

bool is_k_quant(DType t) {
    return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

void unpack_k_scales(DType t, const void* block, UnpackedK& out) {
    switch (t) {
        case DType::Q4_K: {
            const auto& b = *static_cast<const BlockQ4_K*>(block);
            unpack_q45_k_scales(b.d, b.dmin, b.scales, out);
            return;
        }
        case DType::Q5_K: {
            const auto& b = *static_cast<const BlockQ5_K*>(block);
            unpack_q45_k_scales(b.d, b.dmin, b.scales, out);
            return;
        }
        case DType::Q6_K: unpack_q6_k_scales(*static_cast<const BlockQ6_K*>(block), out); return;
        default: unpack_k_block(t, block, out); return;
    }
}

void unpack_k_block(DType t, const void* block, UnpackedK& out) {
    switch (t) {
        case DType::Q2_K: unpack_q2_k(*static_cast<const BlockQ2_K*>(block), out); return;
        case DType::Q3_K: unpack_q3_k(*static_cast<const BlockQ3_K*>(block), out); return;
        case DType::Q4_K: {
            const auto& b = *static_cast<const BlockQ4_K*>(block);
            unpack_q45_k(b.d, b.dmin, b.scales, nullptr, b.qs, out);
            return;
        }
        case DType::Q5_K: {
            const auto& b = *static_cast<const BlockQ5_K*>(block);
            unpack_q45_k(b.d, b.dmin, b.scales, b.qh, b.qs, out);
            return;
        }
        case DType::Q6_K: unpack_q6_k(*static_cast<const BlockQ6_K*>(block), out); return;
        default: throw std::invalid_argument("unpack_k_block: not a K-quant weight type");
    }
}

int dtype_block_elems(DType t) {
    switch (t) {
        case DType::F32:
        case DType::F16: return 1;
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
        case DType::Q8_1: return kQK;
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
        case DType::Q8_K: return kQKK;
    }
    return 0;
}

size_t dtype_block_bytes(DType t) {
    switch (t) {
        case DType::F32: return sizeof(float);
        case DType::F16: return sizeof(uint16_t);
        case DType::Q4_0: return sizeof(BlockQ4_0);
        case DType::Q4_1: return sizeof(BlockQ4_1);
        case DType::Q8_0: return sizeof(BlockQ8_0);
        case DType::Q8_1: return sizeof(BlockQ8_1);
        case DType::Q5_0: return sizeof(BlockQ5_0);
        case DType::Q5_1: return sizeof(BlockQ5_1);
        case DType::Q2_K: return sizeof(BlockQ2_K);
        case DType::Q3_K: return sizeof(BlockQ3_K);
        case DType::Q4_K: return sizeof(BlockQ4_K);
        case DType::Q5_K: return sizeof(BlockQ5_K);
        case DType::Q6_K: return sizeof(BlockQ6_K);
        case DType::Q8_K: return sizeof(BlockQ8_K);
    }
    return 0;
}

size_t dtype_row_bytes(DType t, int64_t n) {
    const int elems = dtype_block_elems(t);
    if (elems == 0 || n < 0) return 0;
    return static_cast<size_t>(n / elems) * dtype_block_bytes(t);
}

float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        // inf, or NaN keeping its payload but quieted, as the F16C instruction does
        bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
    } else if (exp != 0) {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal half: every one is a normal float. Shift the leading 1 up to bit 10.
        int e = 127 - 15 + 1;
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            e--;
        }
        bits = sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

uint16_t fp32_to_fp16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        // NaN: quiet it and keep the top of the payload, as the F16C instruction does, so the
        // scalar and AVX2 backends agree bit for bit.
        return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    if (ax >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65536: inf
    if (ax >= 0x38800000u) {
        // Normal half. Rebias the exponent in place; a carry out of the mantissa on rounding
        // correctly bumps the exponent (up to inf from 65520).
        uint32_t h = (ax - 0x38000000u) >> 13;
        const uint32_t rest = ax & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return static_cast<uint16_t>(sign | h);
    }
    if (ax <= 0x33000000u) return sign;  // <= 2^-25 rounds (ties to even) to zero
    // Subnormal half: units of 2^-24. The value is mant * 2^(e - 150).
    const uint32_t e = ax >> 23;
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) h++;
    return static_cast<uint16_t>(sign | h);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
    const int64_t nb = n / kQK;
    switch (t) {
        case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
        case DType::F16: {
            auto* y = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(src[i]);
            return;
        }
        case DType::Q4_0: quantize_q4_0(src, blocks_out<BlockQ4_0>(dst), nb); return;
        case DType::Q4_1: quantize_q4_1(src, blocks_out<BlockQ4_1>(dst), nb); return;
        case DType::Q8_0: {
            auto* y = blocks_out<BlockQ8_0>(dst);
            for (int64_t i = 0; i < nb; i++) {
                y[i].d = fp32_to_fp16(quantize_q8_block(src + i * kQK, y[i].qs));
            }
            return;
        }
        case DType::Q8_1: {
            auto* y = blocks_out<BlockQ8_1>(dst);
            for (int64_t i = 0; i < nb; i++) {
                const float d = quantize_q8_block(src + i * kQK, y[i].qs);
                int sum = 0;
                for (int j = 0; j < kQK; j++) sum += y[i].qs[j];
                y[i].d = fp32_to_fp16(d);
                y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
            }
            return;
        }
        case DType::Q5_0: quantize_q5_0(src, blocks_out<BlockQ5_0>(dst), nb); return;
        case DType::Q5_1: quantize_q5_1(src, blocks_out<BlockQ5_1>(dst), nb); return;
        case DType::Q8_K: quantize_q8_k(src, blocks_out<BlockQ8_K>(dst), n / kQKK); return;
        case DType::Q4_K: {
            auto* y = blocks_out<BlockQ4_K>(dst);
            for (int64_t i = 0; i < n / kQKK; i++)
                quantize_q45_k(src + i * kQKK, 15, y[i].d, y[i].dmin, y[i].scales, nullptr, y[i].qs);
            return;
        }
        case DType::Q5_K: {
            auto* y = blocks_out<BlockQ5_K>(dst);
            for (int64_t i = 0; i < n / kQKK; i++)
                quantize_q45_k(src + i * kQKK, 31, y[i].d, y[i].dmin, y[i].scales, y[i].qh, y[i].qs);
            return;
        }
        case DType::Q6_K: {
            auto* y = blocks_out<BlockQ6_K>(dst);
            for (int64_t i = 0; i < n / kQKK; i++) quantize_q6_k(src + i * kQKK, y[i]);
            return;
        }
        case DType::Q2_K:
        case DType::Q3_K: break;
    }
    throw std::invalid_argument("quantize_row: writing " + std::string(dtype_name(static_cast<uint32_t>(t))) +
                                " is not supported yet");
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
    const int64_t nb = n / kQK;
    switch (t) {
        case DType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
        case DType::F16: {
            const auto* x = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(x[i]);
            return;
        }
        case DType::Q4_0: {
            const auto* x = blocks_in<BlockQ4_0>(src);
            for (int64_t i = 0; i < nb; i++, dst += kQK) {
                const float d = fp16_to_fp32(x[i].d);
                for (int j = 0; j < kQK / 2; j++) {
                    dst[j] = static_cast<float>((x[i].qs[j] & 0x0f) - 8) * d;
                    dst[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
                }
            }
            return;
        }
        case DType::Q4_1: {
            const auto* x = blocks_in<BlockQ4_1>(src);
            for (int64_t i = 0; i < nb; i++, dst += kQK) {
                const float d = fp16_to_fp32(x[i].d);
                const float m = fp16_to_fp32(x[i].m);
                for (int j = 0; j < kQK / 2; j++) {
                    dst[j] = static_cast<float>(x[i].qs[j] & 0x0f) * d + m;
                    dst[j + kQK / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
                }
            }
            return;
        }
        case DType::Q8_0: {
            const auto* x = blocks_in<BlockQ8_0>(src);
            for (int64_t i = 0; i < nb; i++, dst += kQK) {
                const float d = fp16_to_fp32(x[i].d);
                for (int j = 0; j < kQK; j++) dst[j] = static_cast<float>(x[i].qs[j]) * d;
            }
            return;
        }
        case DType::Q8_1: {
            const auto* x = blocks_in<BlockQ8_1>(src);
            for (int64_t i = 0; i < nb; i++, dst += kQK) {
                const float d = fp16_to_fp32(x[i].d);
                for (int j = 0; j < kQK; j++) dst[j] = static_cast<float>(x[i].qs[j]) * d;
            }
            return;
        }
        case DType::Q5_0:
        case DType::Q5_1: {
            const bool has_min = t == DType::Q5_1;
            const size_t bytes = dtype_block_bytes(t);
            const auto* p = static_cast<const uint8_t*>(src);
            for (int64_t i = 0; i < nb; i++, dst += kQK, p += bytes) {
                // Both layouts: d, [m], qh[4], qs[16].
                uint16_t d16, m16 = 0;
                std::memcpy(&d16, p, 2);
                if (has_min) std::memcpy(&m16, p + 2, 2);
                const uint8_t* qhp = p + (has_min ? 4 : 2);
                uint32_t qh;
                std::memcpy(&qh, qhp, 4);
                const uint8_t* qs = qhp + 4;
                const float d = fp16_to_fp32(d16), m = fp16_to_fp32(m16);
                for (int j = 0; j < kQK / 2; j++) {
                    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
                    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4);
                    if (has_min) {
                        dst[j] = static_cast<float>(lo) * d + m;
                        dst[j + kQK / 2] = static_cast<float>(hi) * d + m;
                    } else {
                        dst[j] = static_cast<float>(lo - 16) * d;
                        dst[j + kQK / 2] = static_cast<float>(hi - 16) * d;
                    }
                }
            }
            return;
        }
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: {
            const size_t bytes = dtype_block_bytes(t);
            const auto* p = static_cast<const uint8_t*>(src);
            UnpackedK u;
            for (int64_t i = 0; i < n / kQKK; i++, dst += kQKK, p += bytes) {
                unpack_k_block(t, p, u);
                for (int j = 0; j < kQKK; j++) dst[j] = u.value(j);
            }
            return;
        }
        case DType::Q8_K: {
            const auto* x = blocks_in<BlockQ8_K>(src);
            for (int64_t i = 0; i < n / kQKK; i++, dst += kQKK)
                for (int j = 0; j < kQKK; j++) dst[j] = static_cast<float>(x[i].qs[j]) * x[i].d;
            return;
        }
    }
}

}  // namespace microlm
