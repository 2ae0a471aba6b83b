// The quantized dot products of the NEON backend for CPUs with the dot-product extension
// (SDOT: four int8 products summed into each int32 lane). Compiled with +dotprod, so nothing here
// may run before kernels_neon() has seen HWCAP_ASIMDDP; the rest of the table is kernels_neon.cpp.
#include "microlm/dtype.h"

#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD)
#error "kernels_neon_dotprod.cpp needs -march=armv8.2-a+dotprod (CMakeLists.txt adds it to *_dotprod.cpp)"
#endif

#include <arm_neon.h>

// Only intrinsics and builtins below, no standard-library inline functions: an inline function
// instantiated here would be compiled for +dotprod, and the linker could hand that copy to the
// baseline code in kernels_neon.cpp.
namespace microlm {

namespace {

float half(uint16_t h) {
    __fp16 f;
    __builtin_memcpy(&f, &h, sizeof f);
    return f;
}

// 32 int8 pairs as four int32 partial sums; exact for any int8 inputs.
int32x4_t dot_i8x32(int8x16_t w0, int8x16_t w1, const int8_t* x) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(x)), w1, vld1q_s8(x + 16));
}

// Low nibbles are elements 0..15, high nibbles 16..31 (ggml's layout); values 0..15.
void unpack_nibbles(const uint8_t* qs, int8x16_t* lo, int8x16_t* hi) {
    const uint8x16_t b = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
}

// Same shape as the baseline kernels in kernels_neon.cpp: NT tokens per pass over the weight
// row, exact integer block sums, per-lane float accumulation scaled by d_w * d_x.
template <int NT>
void q8_0_rows(const BlockQ8_0* w, const void* const* xs, int64_t nb, float* out) {
    const BlockQ8_0* x[NT];
    float32x4_t acc[NT];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const BlockQ8_0*>(xs[t]);
        acc[t] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < nb; b++) {
        const int8x16_t w0 = vld1q_s8(w[b].qs);
        const int8x16_t w1 = vld1q_s8(w[b].qs + 16);
        const float dw = half(w[b].d);
        for (int t = 0; t < NT; t++) {
            const int32x4_t p = dot_i8x32(w0, w1, x[t][b].qs);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(p), dw * half(x[t][b].d));
        }
    }
    for (int t = 0; t < NT; t++) out[t] = vaddvq_f32(acc[t]);
}

template <int NT>
void q4_0_rows(const BlockQ4_0* w, const void* const* xs, int64_t nb, float* out) {
    const BlockQ8_0* x[NT];
    float32x4_t acc[NT];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const BlockQ8_0*>(xs[t]);
        acc[t] = vdupq_n_f32(0.0f);
    }
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w0, w1;
        unpack_nibbles(w[b].qs, &w0, &w1);
        w0 = vsubq_s8(w0, eight);
        w1 = vsubq_s8(w1, eight);
        const float dw = half(w[b].d);
        for (int t = 0; t < NT; t++) {
            const int32x4_t p = dot_i8x32(w0, w1, x[t][b].qs);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(p), dw * half(x[t][b].d));
        }
    }
    for (int t = 0; t < NT; t++) out[t] = vaddvq_f32(acc[t]);
}

template <int NT>
void q4_1_rows(const BlockQ4_1* w, const void* const* xs, int64_t nb, float* out) {
    const BlockQ8_1* x[NT];
    float32x4_t acc[NT];
    float mins[NT];  // sum over blocks of m_w * s_x
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const BlockQ8_1*>(xs[t]);
        acc[t] = vdupq_n_f32(0.0f);
        mins[t] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t w0, w1;
        unpack_nibbles(w[b].qs, &w0, &w1);
        const float dw = half(w[b].d);
        const float mw = half(w[b].m);
        for (int t = 0; t < NT; t++) {
            const int32x4_t p = dot_i8x32(w0, w1, x[t][b].qs);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(p), dw * half(x[t][b].d));
            mins[t] = __builtin_fmaf(mw, half(x[t][b].s), mins[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = vaddvq_f32(acc[t]) + mins[t];
}

template <int NT>
void rows_nt(DType type, const void* w, const void* const* xs, int64_t nb, float* out) {
    switch (type) {
        case DType::Q4_0:
            return q4_0_rows<NT>(static_cast<const BlockQ4_0*>(w), xs, nb, out);
        case DType::Q4_1:
            return q4_1_rows<NT>(static_cast<const BlockQ4_1*>(w), xs, nb, out);
        case DType::Q8_0:
            return q8_0_rows<NT>(static_cast<const BlockQ8_0*>(w), xs, nb, out);
        default:
            break;
    }
    for (int t = 0; t < NT; t++) out[t] = 0.0f;
}

}  // namespace

namespace neon_dotprod {

// Declared in kernels_neon.cpp: out[t] = dot(w, xs[t]) for t in [0, nt), 1 <= nt <= 4.
void quant_rows(DType type, const void* w, const void* const* xs, int nt, int64_t nb, float* out) {
    switch (nt) {
        case 1:
            return rows_nt<1>(type, w, xs, nb, out);
        case 2:
            return rows_nt<2>(type, w, xs, nb, out);
        case 3:
            return rows_nt<3>(type, w, xs, nb, out);
        default:
            return rows_nt<4>(type, w, xs, nb, out);
    }
}

}  // namespace neon_dotprod

}  // namespace microlm

#endif
