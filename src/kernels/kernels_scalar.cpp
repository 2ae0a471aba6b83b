// The scalar reference backend: plain loops with ggml's arithmetic, block by block. It is the
// oracle the SIMD backends are tested against, so it favours being obviously right over speed.
// Not used on hot paths when a SIMD backend is available.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "k_sum.h"
#include "microlm/kernels.h"

namespace microlm {

namespace {

// Activations are quantized as llama.cpp's x86 path does (scale 127/amax, halves rounded to
// even), which differs at rounding ties from the weight reference quantizer in dtype.cpp.
float quantize_activation_block(const float* x, int8_t* qs, int* sum) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; j++) amax = std::max(amax, std::fabs(x[j]));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int s = 0;
    for (int j = 0; j < kQK; j++) {
        qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
        s += qs[j];
    }
    *sum = s;
    return amax / 127.0f;
}

void prepare(DType weight, const float* x, int64_t n, int64_t cols, void* out) {
    const DType act = activation_type(weight);
    const size_t stride = prepared_row_bytes(weight, cols);
    auto* dst = static_cast<uint8_t*>(out);
    for (int64_t t = 0; t < n; t++) {
        const float* row = x + t * cols;
        uint8_t* o = dst + t * stride;
        int sum = 0;
        if (act == DType::Q8_0) {
            auto* y = reinterpret_cast<BlockQ8_0*>(o);
            for (int64_t b = 0; b < cols / kQK; b++) {
                y[b].d = fp32_to_fp16(quantize_activation_block(row + b * kQK, y[b].qs, &sum));
            }
        } else if (act == DType::Q8_1) {
            auto* y = reinterpret_cast<BlockQ8_1*>(o);
            for (int64_t b = 0; b < cols / kQK; b++) {
                const float d = quantize_activation_block(row + b * kQK, y[b].qs, &sum);
                y[b].d = fp32_to_fp16(d);
                y[b].s = fp32_to_fp16(static_cast<float>(sum) * d);
            }
        } else {
            quantize_row(act, row, o, cols);
        }
    }
}

// F32 and F16 sum in double, as ggml's scalar ggml_vec_dot_f32/f16 do (ggml_float).
float dot_f32(const float* w, const float* x, int64_t cols) {
    double sum = 0.0;
    for (int64_t i = 0; i < cols; i++) sum += static_cast<double>(w[i] * x[i]);
    return static_cast<float>(sum);
}

float dot_f16(const uint16_t* w, const uint16_t* x, int64_t cols) {
    double sum = 0.0;
    for (int64_t i = 0; i < cols; i++) {
        sum += static_cast<double>(fp16_to_fp32(w[i]) * fp16_to_fp32(x[i]));
    }
    return static_cast<float>(sum);
}

// The legacy types' dots sum in llama.cpp's x86 order, so that the activations later quantized
// from their results round the same way: a 1e-6 difference flips an int8 code now and then, and
// a random Q5_1 model turned the flips into 0.03 of logit difference on the scalar and NEON
// paths. Per block, eight integer lanes of four consecutive products, each scaled by d_w d_x
// into its own float accumulator with a fused multiply-add; the lanes meet in a pairwise tree
// (lane l with l+4, l+2, l+1) at the end. Q4_1's and Q5_1's minimum term, m_w s_x per block,
// sums apart, also with fused multiply-adds, and is added last.
constexpr int kDotLanes = 8;

// Pairwise tree over `lanes` lanes: lane l with l + lanes/2, then l + lanes/4, ... down to 1.
template <int Lanes>
float lane_tree_sum(float* lanes) {
    for (int width = Lanes / 2; width >= 1; width /= 2) {
        for (int l = 0; l < width; l++) lanes[l] += lanes[l + width];
    }
    return lanes[0];
}

struct LaneDot {
    float lanes[kDotLanes] = {};
    float mins = 0.0f;

    // One block: integer weight codes w and activation codes x, scale d = d_w d_x.
    void add(const int* w, const int8_t* x, float d) {
        for (int l = 0; l < kDotLanes; l++) {
            int p = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++) p += w[j] * x[j];
            lanes[l] = std::fma(static_cast<float>(p), d, lanes[l]);
        }
    }
    float total() { return lane_tree_sum<kDotLanes>(lanes) + mins; }
};

float dot_q4_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t nb) {
    LaneDot acc;
    int codes[kQK];
    for (int64_t b = 0; b < nb; b++) {
        for (int j = 0; j < kQK / 2; j++) {
            codes[j] = (w[b].qs[j] & 0x0f) - 8;
            codes[j + kQK / 2] = (w[b].qs[j] >> 4) - 8;
        }
        acc.add(codes, x[b].qs, fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
    }
    return acc.total();
}

// sum_i (d_w q_i + m_w) d_x p_i = d_w d_x sum_i q_i p_i + m_w (d_x sum_i p_i), the last being s.
float dot_q4_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t nb) {
    LaneDot acc;
    int codes[kQK];
    for (int64_t b = 0; b < nb; b++) {
        for (int j = 0; j < kQK / 2; j++) {
            codes[j] = w[b].qs[j] & 0x0f;
            codes[j + kQK / 2] = w[b].qs[j] >> 4;
        }
        acc.add(codes, x[b].qs, fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
        acc.mins = std::fma(fp16_to_fp32(w[b].m), fp16_to_fp32(x[b].s), acc.mins);
    }
    return acc.total();
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
    LaneDot acc;
    int codes[kQK];
    for (int64_t b = 0; b < nb; b++) {
        for (int j = 0; j < kQK; j++) codes[j] = w[b].qs[j];
        acc.add(codes, x[b].qs, fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
    }
    return acc.total();
}

// Q5_0 / Q5_1: the 5-bit codes of a block, from the nibbles and the bits in qh.
void q5_codes(const uint8_t* qs, const uint8_t* qh_bytes, int offset, int* codes) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < kQK; j++) {
        const int nib = j < kQK / 2 ? (qs[j] & 0x0f) : (qs[j - kQK / 2] >> 4);
        codes[j] = (nib | static_cast<int>(((qh >> j) & 1u) << 4)) - offset;
    }
}

float dot_q5_0(const BlockQ5_0* w, const BlockQ8_0* x, int64_t nb) {
    LaneDot acc;
    int codes[kQK];
    for (int64_t b = 0; b < nb; b++) {
        q5_codes(w[b].qs, w[b].qh, 16, codes);
        acc.add(codes, x[b].qs, fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
    }
    return acc.total();
}

float dot_q5_1(const BlockQ5_1* w, const BlockQ8_1* x, int64_t nb) {
    LaneDot acc;
    int codes[kQK];
    for (int64_t b = 0; b < nb; b++) {
        q5_codes(w[b].qs, w[b].qh, 0, codes);
        acc.add(codes, x[b].qs, fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d));
        acc.mins = std::fma(fp16_to_fp32(w[b].m), fp16_to_fp32(x[b].s), acc.mins);
    }
    return acc.total();
}

// K-quant rows against Q8_K activations: k_sum.h's frame and float steps, the integer lanes
// taken element by element.
struct ScalarKBlock {
    const UnpackedK& u;
    ScalarKBlock(DType t, const uint8_t* raw, UnpackedK& unpacked) : u(unpacked) { unpack_k_block(t, raw, unpacked); }
    void lanes(const BlockQ8_K& x, ksum::Lanes& il) const { ksum::lanes_reference(u, x, il); }
};

void matmul_k(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    ksum::matmul<ScalarKBlock>(w, r0, r1, x, n, y, ldy);
}

float dot(DType weight, const void* w, const void* x, int64_t cols) {
    const int64_t nb = cols / kQK;
    switch (weight) {
        case DType::F32:
            return dot_f32(static_cast<const float*>(w), static_cast<const float*>(x), cols);
        case DType::F16:
            return dot_f16(static_cast<const uint16_t*>(w), static_cast<const uint16_t*>(x), cols);
        case DType::Q4_0:
            return dot_q4_0(static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(x), nb);
        case DType::Q4_1:
            return dot_q4_1(static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(x), nb);
        case DType::Q8_0:
            return dot_q8_0(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(x), nb);
        case DType::Q5_0:
            return dot_q5_0(static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(x), nb);
        case DType::Q5_1:
            return dot_q5_1(static_cast<const BlockQ5_1*>(w), static_cast<const BlockQ8_1*>(x), nb);
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: {
            float out = 0.0f;
            matmul_k(WeightRef{weight, w, 1, cols, dtype_row_bytes(weight, cols)}, 0, 1, x, 1, &out, 1);
            return out;
        }
        case DType::Q8_1:
        case DType::Q8_K: break;  // activation formats only
    }
    return 0.0f;
}

void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y,
            int64_t ldy) {
    if (is_k_quant(w.type)) return matmul_k(w, r0, r1, x, n, y, ldy);
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    const auto* xbytes = static_cast<const uint8_t*>(x);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t* wrow = wbytes + static_cast<size_t>(r) * w.row_bytes;
        for (int64_t t = 0; t < n; t++) {
            y[t * ldy + r] = dot(w.type, wrow, xbytes + static_cast<size_t>(t) * x_stride, w.cols);
        }
    }
}

// Attention sums in llama.cpp's order so that greedy decoding agrees with it: 16 lanes, lane
// l accumulating elements l, l+16, l+32, ... with fused multiply-adds, then a pairwise tree
// (lane l with l+8, then l+4, l+2, l+1). That is how its CPU backend multiplies the fp16 KV
// cache (16-wide FMA tiles, then a 512-bit horizontal add); any other order is equally exact
// but parts from llama.cpp's greedy path at near-ties.
constexpr int kAttnLanes = 16;

void attn_scores(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys, int64_t hd,
                 float scale, float* scores) {
    for (int64_t j = 0; j < n_keys; j++) {
        const uint16_t* kj = k + j * stride;
        float lanes[kAttnLanes] = {};
        for (int64_t d = 0; d < hd; d++) {
            float& acc = lanes[d % kAttnLanes];
            acc = std::fma(fp16_to_fp32(q16[d]), fp16_to_fp32(kj[d]), acc);
        }
        scores[j] = lane_tree_sum<kAttnLanes>(lanes) * scale;
    }
}

void attn_values(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys, int64_t hd,
                 float* out) {
    for (int64_t d = 0; d < hd; d++) {
        float lanes[kAttnLanes] = {};
        for (int64_t j = 0; j < n_keys; j++) {
            float& acc = lanes[j % kAttnLanes];
            acc = std::fma(p[j], fp16_to_fp32(v[j * stride + d]), acc);
        }
        out[d] = lane_tree_sum<kAttnLanes>(lanes);
    }
}

constexpr Kernels kScalar = {"scalar",    prepare,     dot,           matmul, attn_scores, attn_values,
                             swiglu_reference, attn_softmax_reference};

}  // namespace

void swiglu_reference(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void attn_softmax_reference(float* s, int64_t n) {
    float max_s = -INFINITY;
    for (int64_t j = 0; j < n; ++j) max_s = std::max(max_s, s[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - max_s);
        sum += s[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) s[j] = fp16_to_fp32(fp32_to_fp16(s[j] * inv));
}

const Kernels& kernels_scalar() { return kScalar; }

}  // namespace microlm
