// The aarch64 NEON backend: baseline ARMv8 NEON (every aarch64 CPU has it), every weight type.
// Activation preparation, attention and the quantized dots (legacy types: neon_rows.h; K-quants:
// k_sum.h's frame) are bit-identical to the scalar table; F32/F16 dots differ from it in float
// summation order. The SDOT variants of the quantized dots live in kernels_neon_dotprod.cpp.
#include "microlm/kernels.h"

#if defined(__aarch64__)

#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "k_sum.h"
#include "neon_rows.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)  // Linux's aarch64 hwcap bit for SDOT/UDOT
#endif
#endif

namespace microlm {

// The quantized dots with SDOT, from kernels_neon_dotprod.cpp (neon_rows.h's, instantiated
// there): out[t] = dot(w, xs[t]) for t in [0, nt), 1 <= nt <= 4, w a legacy-type row of nb
// blocks; and a K-quant super-block's integer lanes. Compiled with +dotprod, so they may only
// run once kernels_neon() has seen HWCAP_ASIMDDP.
namespace neon_dotprod {
void quant_rows(DType type, const void* w, const void* const* xs, int nt, int64_t nb, float* out);
void k_lanes(const UnpackedK& u, const BlockQ8_K& x, int32_t (&il)[kQKK / 64][8]);
}

namespace {

// How many activation rows one pass over a weight row serves: the weight loads and nibble
// unpacking are shared. Four keeps every accumulator in the 32 vector registers (F32/F16 use
// four per token, the quantized types one).
constexpr int kTokenBlock = 4;

float32x4_t load_half4(const uint16_t* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

// One block of 32 activations to int8 exactly as the scalar table does (scale 127/amax, halves
// to even: FCVTNS rounds to nearest even). Returns d; *sum receives sum(q) for Q8_1.
float quantize_q8_block(const float* x, int8_t* qs, int* sum) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        // maxNum ignores a NaN operand, as the scalar std::max(amax, |x|) does.
        amax = vmaxnmq_f32(amax, vabsq_f32(v[k]));
    }
    const float amax_s = vmaxnmvq_f32(amax);
    const float d = amax_s / 127.0f;
    const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;
    int32x4_t q[8];
    for (int k = 0; k < 8; k++) q[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
    if (sum != nullptr) {
        const int32x4_t s = vaddq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
                                      vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])));
        *sum = vaddvq_s32(s);
    }
    // |q| <= 127, so plain narrowing is exact.
    for (int h = 0; h < 2; h++) {
        const int32x4_t* g = q + 4 * h;
        const int16x8_t lo = vcombine_s16(vmovn_s32(g[0]), vmovn_s32(g[1]));
        const int16x8_t hi = vcombine_s16(vmovn_s32(g[2]), vmovn_s32(g[3]));
        vst1q_s8(qs + 16 * h, vcombine_s8(vmovn_s16(lo), vmovn_s16(hi)));
    }
    return d;
}

void prepare_row(DType act, const float* x, int64_t cols, void* out) {
    switch (act) {
        case DType::F32:
            std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float));
            return;
        case DType::F16: {
            // FCVTN rounds to nearest even and quiets NaNs keeping the payload's top bits, as
            // fp32_to_fp16 does.
            auto* y = static_cast<uint16_t*>(out);
            int64_t i = 0;
            for (; i + 4 <= cols; i += 4)
                vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
            for (; i < cols; i++) y[i] = fp32_to_fp16(x[i]);
            return;
        }
        case DType::Q8_0: {
            auto* y = static_cast<BlockQ8_0*>(out);
            for (int64_t b = 0; b < cols / kQK; b++) {
                y[b].d = fp32_to_fp16(quantize_q8_block(x + b * kQK, y[b].qs, nullptr));
            }
            return;
        }
        case DType::Q8_1: {
            auto* y = static_cast<BlockQ8_1*>(out);
            for (int64_t b = 0; b < cols / kQK; b++) {
                int sum = 0;
                const float d = quantize_q8_block(x + b * kQK, y[b].qs, &sum);
                y[b].d = fp32_to_fp16(d);
                y[b].s = fp32_to_fp16(static_cast<float>(sum) * d);
            }
            return;
        }
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return;  // never an activation type
        case DType::Q8_K:
            return;  // K-quant activations: the scalar table prepares them
    }
}

void prepare(DType weight, const float* x, int64_t n, int64_t cols, void* out) {
    if (is_k_quant(weight)) return kernels_scalar().prepare(weight, x, n, cols, out);  // Q8_K: as llama.cpp
    const DType act = activation_type(weight);
    const size_t stride = prepared_row_bytes(weight, cols);
    auto* dst = static_cast<uint8_t*>(out);
    for (int64_t t = 0; t < n; t++) prepare_row(act, x + t * cols, cols, dst + t * stride);
}

// Each *_rows<NT> computes NT dot products of one weight row against NT activation rows,
// loading (and unpacking) each weight vector once. A token's arithmetic does not depend on NT,
// so matmul equals dot bit for bit.

// F32 and F16: four independent 4-lane FMA sums per token over 16-element steps (to cover FMA
// latency), then a scalar FMA tail for rows that are not a multiple of 16.
constexpr int kFloatStep = 16;

float32x4_t load4(const float* p) {
    return vld1q_f32(p);
}
float32x4_t load4(const uint16_t* p) {
    return load_half4(p);
}
float scalar1(float v) {
    return v;
}
float scalar1(uint16_t h) {
    return neon_half(h);
}

template <int NT, typename T>
void float_rows(const T* w, const void* const* xs, int64_t cols, float* out) {
    const T* x[NT];
    float32x4_t acc[NT][4];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const T*>(xs[t]);
        for (float32x4_t& a : acc[t]) a = vdupq_n_f32(0.0f);
    }
    const int64_t steps_end = cols - cols % kFloatStep;
    for (int64_t i = 0; i < steps_end; i += kFloatStep) {
        for (int k = 0; k < 4; k++) {
            const float32x4_t wk = load4(w + i + 4 * k);
            for (int t = 0; t < NT; t++) acc[t][k] = vfmaq_f32(acc[t][k], wk, load4(x[t] + i + 4 * k));
        }
    }
    for (int t = 0; t < NT; t++) {
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[t][0], acc[t][2]), vaddq_f32(acc[t][1], acc[t][3])));
        for (int64_t j = steps_end; j < cols; j++) sum = std::fma(scalar1(w[j]), scalar1(x[t][j]), sum);
        out[t] = sum;
    }
}

// Four int32 lanes of four consecutive int8 products (lane l: elements 4l..4l+3) without SDOT:
// widened to int16 (|w x| <= 128 * 128 fits), then pairs added twice. Exact for any int8 inputs.
struct WideningLanes {
    static int32x4_t of(int8x16_t w, int8x16_t x) {
        return vpaddq_s32(vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x))), vpaddlq_s16(vmull_high_s8(w, x)));
    }
};

void quant_rows_baseline(DType type, const void* w, const void* const* xs, int nt, int64_t nb, float* out) {
    neon_legacy_rows_any<WideningLanes>(type, w, xs, nt, nb, out);
}

void k_lanes_baseline(const UnpackedK& u, const BlockQ8_K& x, NeonKLanes& il) {
    neon_k_lanes<WideningLanes>(u, x, il);
}

// K-quants: k_sum.h's frame and float steps, the reference unpacking of each super-block, the
// integer lanes 16 codes at a time.
using KLanesFn = void (*)(const UnpackedK&, const BlockQ8_K&, NeonKLanes&);
static_assert(sizeof(NeonKLanes) == sizeof(ksum::Lanes), "neon_rows.h's lanes are ksum::Lanes");

template <KLanesFn Lanes>
struct NeonKBlock {
    const UnpackedK& u;
    NeonKBlock(DType t, const uint8_t* raw, UnpackedK& unpacked) : u(unpacked) { unpack_k_block(t, raw, unpacked); }
    void lanes(const BlockQ8_K& x, ksum::Lanes& il) const { Lanes(u, x, il); }
};

template <typename T>
void float_rows_any(const void* w, const void* const* xs, int nt, int64_t cols, float* out) {
    const T* wt = static_cast<const T*>(w);
    switch (nt) {
        case 1:
            return float_rows<1>(wt, xs, cols, out);
        case 2:
            return float_rows<2>(wt, xs, cols, out);
        case 3:
            return float_rows<3>(wt, xs, cols, out);
        default:
            return float_rows<kTokenBlock>(wt, xs, cols, out);
    }
}

// The two tables differ only in the quantized dots: baseline widening multiplies or SDOT.
using QuantRows = void (*)(DType, const void*, const void* const*, int, int64_t, float*);

template <QuantRows Q>
void dot_rows(DType type, const void* w, const void* const* xs, int nt, int64_t cols, float* out) {
    switch (type) {
        case DType::F32:
            return float_rows_any<float>(w, xs, nt, cols, out);
        case DType::F16:
            return float_rows_any<uint16_t>(w, xs, nt, cols, out);
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q8_0:
            return Q(type, w, xs, nt, cols / kQK, out);
        case DType::Q8_1:
        case DType::Q8_K:
            break;  // activation formats only
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            break;  // dot() and matmul() take them through k_sum.h's frame
    }
    for (int t = 0; t < nt; t++) out[t] = 0.0f;
}

template <QuantRows Q, KLanesFn K>
void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy);

template <QuantRows Q, KLanesFn K>
float dot(DType weight, const void* w, const void* x, int64_t cols) {
    if (is_k_quant(weight)) {
        float out = 0.0f;
        matmul<Q, K>(WeightRef{weight, w, 1, cols, dtype_row_bytes(weight, cols)}, 0, 1, x, 1, &out, 1);
        return out;
    }
    float out = 0.0f;
    dot_rows<Q>(weight, w, &x, 1, cols, &out);
    return out;
}

template <QuantRows Q, KLanesFn K>
void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    if (is_k_quant(w.type)) return ksum::matmul<NeonKBlock<K>>(w, r0, r1, x, n, y, ldy);
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    const auto* xbytes = static_cast<const uint8_t*>(x);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t* wrow = wbytes + static_cast<size_t>(r) * w.row_bytes;
        for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
            const void* xs[kTokenBlock];
            float out[kTokenBlock];
            const int nt = static_cast<int>(n - t0 < kTokenBlock ? n - t0 : kTokenBlock);
            for (int t = 0; t < nt; t++) xs[t] = xbytes + static_cast<size_t>(t0 + t) * x_stride;
            dot_rows<Q>(w.type, wrow, xs, nt, w.cols, out);
            for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = out[t];
        }
    }
}

// Attention sums in the scalar table's (llama.cpp's) order, bit for bit: 16 FMA lanes, element
// e in lane e % 16, then lane l += l+8, l+4, l+2, l+1. Here lanes 0-3, 4-7, 8-11, 12-15 are four
// registers and the tree is written out: vaddvq_f32 would pair (0+1)+(2+3), a different order.
float lane_tree_sum(const float32x4_t a[4]) {
    const float32x4_t s4 = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));  // l+8, then l+4
    const float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));            // l+2
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);                              // l+1
}

void attn_scores(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys, int64_t hd,
                 float scale, float* scores) {
    const int64_t full = hd / 16 * 16;
    for (int64_t j = 0; j < n_keys; j++) {
        const uint16_t* kj = k + j * stride;
        float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        for (int64_t d = 0; d < full; d += 16) {
            for (int g = 0; g < 4; g++)
                a[g] = vfmaq_f32(a[g], load_half4(q16 + d + 4 * g), load_half4(kj + d + 4 * g));
        }
        // A tail of whole quads lands in lanes 0-3, 4-7, 8-11 of the same registers; the last
        // hd % 4 elements go through memory one lane at a time.
        for (int g = 0; g < 3; g++) {
            const int64_t d = full + 4 * g;
            if (d + 4 <= hd) a[g] = vfmaq_f32(a[g], load_half4(q16 + d), load_half4(kj + d));
        }
        if (hd % 4 != 0) {
            float lanes[16];
            for (int g = 0; g < 4; g++) vst1q_f32(lanes + 4 * g, a[g]);
            for (int64_t d = hd - hd % 4; d < hd; d++)
                lanes[d % 16] = std::fma(neon_half(q16[d]), neon_half(kj[d]), lanes[d % 16]);
            for (int g = 0; g < 4; g++) a[g] = vld1q_f32(lanes + 4 * g);
        }
        scores[j] = lane_tree_sum(a) * scale;
    }
}

// Four outputs per pass: one register per key lane (key j in lane j % 16), each holding the
// partial sums of outputs d..d+3, so the lane tree is 15 vector adds. Widths that are not a
// multiple of 4 leave their last outputs to the scalar table, which sums in the same order.
void attn_values(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys, int64_t hd, float* out) {
    const int64_t quads = hd / 4 * 4;
    const int64_t full_keys = n_keys / 16 * 16;
    for (int64_t d = 0; d < quads; d += 4) {
        float32x4_t acc[16];
        for (float32x4_t& a : acc) a = vdupq_n_f32(0.0f);
        const uint16_t* vd = v + d;
        for (int64_t j0 = 0; j0 < full_keys; j0 += 16) {
            for (int l = 0; l < 16; l++)
                acc[l] = vfmaq_n_f32(acc[l], load_half4(vd + (j0 + l) * stride), p[j0 + l]);
        }
        for (int l = 0; l < 16; l++) {
            const int64_t j = full_keys + l;
            if (j < n_keys) acc[l] = vfmaq_n_f32(acc[l], load_half4(vd + j * stride), p[j]);
        }
        for (int width = 8; width >= 1; width /= 2) {
            for (int l = 0; l < width; l++) acc[l] = vaddq_f32(acc[l], acc[l + width]);
        }
        vst1q_f32(out + d, acc[0]);
    }
    if (quads < hd) kernels_scalar().attn_values(p, v + quads, stride, n_keys, hd - quads, out + quads);
}

constexpr Kernels kNeon = {.name = "neon",
                           .prepare = prepare,
                           .dot = dot<quant_rows_baseline, k_lanes_baseline>,
                           .matmul = matmul<quant_rows_baseline, k_lanes_baseline>,
                           .attn_scores = attn_scores,
                           .attn_values = attn_values,
                           .swiglu = swiglu_reference,
                           .attn_softmax = attn_softmax_reference};
constexpr Kernels kNeonDotprod = {.name = "neon",
                                  .prepare = prepare,
                                  .dot = dot<neon_dotprod::quant_rows, neon_dotprod::k_lanes>,
                                  .matmul = matmul<neon_dotprod::quant_rows, neon_dotprod::k_lanes>,
                                  .attn_scores = attn_scores,
                                  .attn_values = attn_values,
                                  .swiglu = swiglu_reference,
                                  .attn_softmax = attn_softmax_reference};

bool cpu_has_dotprod() {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return false;  // no portable query here; baseline NEON is always correct
#endif
}

}  // namespace

const Kernels* kernels_neon() {
    static const Kernels* const table = cpu_has_dotprod() ? &kNeonDotprod : &kNeon;
    return table;
}

}  // namespace microlm

#else  // not aarch64: no such backend in this build

namespace microlm {
const Kernels* kernels_neon() {
    return nullptr;
}
}  // namespace microlm

#endif
