// The NEON quantized dot products, written once for both NEON tables: `Lanes4` (how four int32
// lanes of four consecutive int8 products are taken: widening multiplies on baseline ARMv8, SDOT
// with +dotprod) is the only difference. They sum in llama.cpp's x86 order, as the scalar table
// does (kernels_scalar.cpp), so every NEON result equals the scalar one bit for bit: a last-bit
// difference flips activation codes downstream and moved a random Q5_1 model's logits 0.03.
// Private to kernels_neon.cpp and kernels_neon_dotprod.cpp. Everything is in an unnamed namespace
// and uses only intrinsics and builtins, so the +dotprod copy can never be linked into baseline
// code (an inline standard-library function instantiated there could be).
#pragma once

#if defined(__aarch64__)

#include <arm_neon.h>

#include "microlm/dtype.h"

namespace microlm {
namespace {

// One K-quant super-block's integer lanes, as ksum::Lanes (k_sum.h): [quarter][lane].
using NeonKLanes = int32_t[kQKK / 64][8];

inline float neon_half(uint16_t h) {
    __fp16 f;
    __builtin_memcpy(&f, &h, sizeof f);
    return f;  // FCVT, in base ARMv8
}

// A legacy block's 32 codes as two int8x16 (elements 0..15, 16..31), and what its dot needs.
// Low nibbles are elements 0..15, high nibbles 16..31 (ggml's layout).
inline void neon_nibbles(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
    const uint8x16_t b = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
}

// The 5th bits of a Q5 block (bit j of the little-endian qh is element j's) as 0x10 or 0 per byte.
inline void neon_q5_high(const uint8_t* qh, uint8x16_t* lo, uint8x16_t* hi) {
    static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bits = vld1q_u8(kBits);
    const uint8x16_t sixteen = vdupq_n_u8(0x10);
    *lo = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bits), sixteen);
    *hi = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bits), sixteen);
}

struct NeonCodes {
    int8x16_t c0, c1;
    float d;
    float m = 0.0f;  // Q4_1, Q5_1: the block's minimum
};

inline NeonCodes neon_codes(const BlockQ8_0& b) {
    return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16), neon_half(b.d)};
}
inline NeonCodes neon_codes(const BlockQ4_0& b) {
    NeonCodes c{};
    neon_nibbles(b.qs, &c.c0, &c.c1);
    c.c0 = vsubq_s8(c.c0, vdupq_n_s8(8));
    c.c1 = vsubq_s8(c.c1, vdupq_n_s8(8));
    c.d = neon_half(b.d);
    return c;
}
inline NeonCodes neon_codes(const BlockQ4_1& b) {
    NeonCodes c{};
    neon_nibbles(b.qs, &c.c0, &c.c1);
    c.d = neon_half(b.d);
    c.m = neon_half(b.m);
    return c;
}
// Q5_0 / Q5_1: the nibbles with their 5th bits, less `offset` (16 for Q5_0's signed codes, 0).
inline NeonCodes neon_q5_codes(const uint8_t* qs, const uint8_t* qh, int8_t offset) {
    NeonCodes c{};
    neon_nibbles(qs, &c.c0, &c.c1);
    uint8x16_t h0, h1;
    neon_q5_high(qh, &h0, &h1);
    c.c0 = vsubq_s8(vorrq_s8(c.c0, vreinterpretq_s8_u8(h0)), vdupq_n_s8(offset));
    c.c1 = vsubq_s8(vorrq_s8(c.c1, vreinterpretq_s8_u8(h1)), vdupq_n_s8(offset));
    return c;
}
inline NeonCodes neon_codes(const BlockQ5_0& b) {
    NeonCodes c = neon_q5_codes(b.qs, b.qh, 16);
    c.d = neon_half(b.d);
    return c;
}
inline NeonCodes neon_codes(const BlockQ5_1& b) {
    NeonCodes c = neon_q5_codes(b.qs, b.qh, 0);
    c.d = neon_half(b.d);
    c.m = neon_half(b.m);
    return c;
}

// The activation type each weight type multiplies, and its minimum term's block sum.
inline float neon_block_sum(const BlockQ8_0&) { return 0.0f; }
inline float neon_block_sum(const BlockQ8_1& x) { return neon_half(x.s); }

// NT dot products of one weight row (nb blocks) against NT activation rows, per block: eight
// integer lanes of four consecutive products (lanes 0-3 from elements 0..15, 4-7 from 16..31),
// each lane scaled by d_w d_x into its own float accumulator with a fused multiply-add; at the
// end the pairwise tree l + l+4, l+2, l+1, then the minimum's term (m_w s_x, fused, summed apart).
template <int NT, typename Lanes4, typename WBlock, typename XBlock>
void neon_legacy_rows(const WBlock* w, const void* const* xs, int64_t nb, float* out) {
    const XBlock* x[NT];
    float32x4_t lo[NT], hi[NT];
    float mins[NT];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const XBlock*>(xs[t]);
        lo[t] = vdupq_n_f32(0.0f);
        hi[t] = vdupq_n_f32(0.0f);
        mins[t] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        const NeonCodes c = neon_codes(w[b]);
        for (int t = 0; t < NT; t++) {
            const XBlock& xb = x[t][b];
            const float d = c.d * neon_half(xb.d);
            lo[t] = vfmaq_n_f32(lo[t], vcvtq_f32_s32(Lanes4::of(c.c0, vld1q_s8(xb.qs))), d);
            hi[t] = vfmaq_n_f32(hi[t], vcvtq_f32_s32(Lanes4::of(c.c1, vld1q_s8(xb.qs + 16))), d);
            mins[t] = __builtin_fmaf(c.m, neon_block_sum(xb), mins[t]);
        }
    }
    for (int t = 0; t < NT; t++) {
        const float32x4_t s4 = vaddq_f32(lo[t], hi[t]);                            // l + l+4
        const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));      // l + l+2
        out[t] = (vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1)) + mins[t];           // l + l+1
    }
}

template <int NT, typename Lanes4>
void neon_legacy_rows_nt(DType type, const void* w, const void* const* xs, int64_t nb, float* out) {
    switch (type) {
        case DType::Q4_0:
            return neon_legacy_rows<NT, Lanes4, BlockQ4_0, BlockQ8_0>(static_cast<const BlockQ4_0*>(w), xs, nb, out);
        case DType::Q4_1:
            return neon_legacy_rows<NT, Lanes4, BlockQ4_1, BlockQ8_1>(static_cast<const BlockQ4_1*>(w), xs, nb, out);
        case DType::Q5_0:
            return neon_legacy_rows<NT, Lanes4, BlockQ5_0, BlockQ8_0>(static_cast<const BlockQ5_0*>(w), xs, nb, out);
        case DType::Q5_1:
            return neon_legacy_rows<NT, Lanes4, BlockQ5_1, BlockQ8_1>(static_cast<const BlockQ5_1*>(w), xs, nb, out);
        case DType::Q8_0:
            return neon_legacy_rows<NT, Lanes4, BlockQ8_0, BlockQ8_0>(static_cast<const BlockQ8_0*>(w), xs, nb, out);
        default:
            break;
    }
    for (int t = 0; t < NT; t++) out[t] = 0.0f;
}

// out[t] = dot(w, xs[t]) for t in [0, nt), 1 <= nt <= 4, w a row of a legacy quantized type.
template <typename Lanes4>
void neon_legacy_rows_any(DType type, const void* w, const void* const* xs, int nt, int64_t nb, float* out) {
    switch (nt) {
        case 1:
            return neon_legacy_rows_nt<1, Lanes4>(type, w, xs, nb, out);
        case 2:
            return neon_legacy_rows_nt<2, Lanes4>(type, w, xs, nb, out);
        case 3:
            return neon_legacy_rows_nt<3, Lanes4>(type, w, xs, nb, out);
        default:
            return neon_legacy_rows_nt<4, Lanes4>(type, w, xs, nb, out);
    }
}

// A K-quant super-block's integer lanes against one token (ksum::lanes_reference's definition):
// for each run of 32 c, lanes 0-3 take its elements 0..15 times the scale of its first run of
// 16, lanes 4-7 elements 16..31 times the second's; runs 2q and 2q+1 make quarter q. Exact.
template <typename Lanes4>
void neon_k_lanes(const UnpackedK& u, const BlockQ8_K& x, NeonKLanes& il) {
    for (int q = 0; q < kQKK / 64; q++) {
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int c = 2 * q; c < 2 * q + 2; c++) {
            lo = vmlaq_n_s32(lo, Lanes4::of(vld1q_s8(u.q + 32 * c), vld1q_s8(x.qs + 32 * c)), u.scale[2 * c]);
            hi = vmlaq_n_s32(hi, Lanes4::of(vld1q_s8(u.q + 32 * c + 16), vld1q_s8(x.qs + 32 * c + 16)),
                             u.scale[2 * c + 1]);
        }
        vst1q_s32(il[q], lo);
        vst1q_s32(il[q] + 4, hi);
    }
}

}  // namespace
}  // namespace microlm

#endif
