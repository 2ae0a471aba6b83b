// The AVX2 + FMA + F16C backend: same results as the scalar table up to float summation
// order (activation preparation is bit-identical). Compiled with -mavx2 -mfma -mf16c; nothing
// here may run before kernels_avx2() has checked the CPU, so no namespace-scope initialisers.
#include "k_sum.h"
#include "microlm/kernels.h"

#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstring>

namespace microlm {

namespace {

// How many activation rows one pass over a weight row serves. Sharing the weight loads and
// unpacking across tokens is the cheap win for prompt processing; the limits keep every
// accumulator in the 16 ymm registers (F32/F16 use four per token, the Q types one).
constexpr int kTokenBlock = 4;
constexpr int kFloatTokenBlock = 2;

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

float half(uint16_t h) { return _cvtsh_ss(h); }

// One block of 32 activations to int8 as llama.cpp's x86 path quantizes activations
// (scale 127/amax, halves to even), not as the weight reference quantizer does: matching it
// removed most of the logit difference to llama.cpp. Returns d; *sum receives sum(q) for Q8_1.
float quantize_q8_block(const float* x, int8_t* qs, int* sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + std::ptrdiff_t{8} * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax_s = _mm_cvtss_f32(m);
    const float d = amax_s / 127.0f;
    const float id = amax_s != 0.0f ? 127.0f / amax_s : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_cvtps_epi32(r);
    }
    if (sum != nullptr) {
        *sum =
            hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    }
    // The packs interleave 128-bit lanes; the permute puts the 32-bit groups back in order.
    const __m256i q01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i q23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i q8 = _mm256_packs_epi16(q01, q23);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), _mm256_permutevar8x32_epi32(q8, order));
    return d;
}

void prepare_row(DType act, const float* x, int64_t cols, void* out) {
    switch (act) {
        case DType::F32: std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float)); return;
        case DType::F16: {
            auto* y = static_cast<uint16_t*>(out);
            int64_t i = 0;
            for (; i + 8 <= cols; i += 8) {
                const __m128i h =
                    _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
            }
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
        case DType::Q6_K: return;  // never an activation type
        case DType::Q8_K: quantize_row(DType::Q8_K, x, out, cols); return;  // the reference quantizer
    }
}

void prepare(DType weight, const float* x, int64_t n, int64_t cols, void* out) {
    const DType act = activation_type(weight);
    const size_t stride = prepared_row_bytes(weight, cols);
    auto* dst = static_cast<uint8_t*>(out);
    for (int64_t t = 0; t < n; t++) prepare_row(act, x + t * cols, cols, dst + t * stride);
}

// Each dot_* computes NT dot products of one weight row against NT activation rows at once,
// loading and unpacking each weight block a single time.

// F32 and F16 keep four independent 8-wide sums per token over 32-element steps (to cover
// FMA latency), reduced pairwise at the end, in the manner of ggml's AVX2 vec_dot_f32/f16.
constexpr int kFloatStep = 32;

float reduce4(__m256 a[4]) {
    const __m256 s = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 p = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_hadd_ps(p, p));
}

__m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
float scalar1(float v) { return v; }
float scalar1(uint16_t h) { return half(h); }

template <int NT, typename T>
void dot_float(const T* w, const void* const* xs, int64_t cols, float* out) {
    const T* x[NT];
    __m256 acc[NT][4];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const T*>(xs[t]);
        for (__m256& a : acc[t]) a = _mm256_setzero_ps();
    }
    const int64_t steps_end = cols - cols % kFloatStep;
    for (int64_t i = 0; i < steps_end; i += kFloatStep) {
        for (int k = 0; k < 4; k++) {
            const __m256 wk = load8(w + i + 8 * k);
            for (int t = 0; t < NT; t++) {
                acc[t][k] = _mm256_fmadd_ps(wk, load8(x[t] + i + 8 * k), acc[t][k]);
            }
        }
    }
    for (int t = 0; t < NT; t++) {
        float sum = reduce4(acc[t]);
        for (int64_t j = steps_end; j < cols; j++) sum += scalar1(w[j]) * scalar1(x[t][j]);
        out[t] = sum;
    }
}

__m256i load_i8x32(const int8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Sum of products of 32 signed weights (|w| <= 128) and 32 activations (|x| <= 127) as eight
// int32 partial sums. maddubs wants unsigned x signed, so move w's sign onto x.
__m256i dot_i8x32(__m256i w, __m256i x) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 16 bytes of packed nibbles to 32 values in element order: low nibbles are elements 0..15,
// high nibbles 16..31 (ggml's layout).
__m256i unpack_nibbles(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(b, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
    return _mm256_set_m128i(hi, lo);
}

// The signed codes of one block of each legacy type, in element order (|w| <= 128).
__m256i codes(const BlockQ8_0& b) { return load_i8x32(b.qs); }
__m256i codes(const BlockQ4_0& b) { return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8)); }
// The 5th bits of a Q5 block's 32 codes (bit i of the little-endian qh is element i's) as bytes
// of 0x10 or 0, in element order.
__m256i q5_high_bits(const uint8_t* qh_bytes) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, sizeof qh);
    // Byte i gets qh's byte i / 8 (the shuffle works within 128-bit lanes; every lane holds all four).
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(qh)),
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));  // byte i: 1 << (i % 8)
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

__m256i codes(const BlockQ5_0& b) {
    return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles(b.qs), q5_high_bits(b.qh)), _mm256_set1_epi8(16));
}
// The unsigned codes of the types with a minimum (already unsigned for maddubs).
__m256i codes(const BlockQ4_1& b) { return unpack_nibbles(b.qs); }                                  // 0..15
__m256i codes(const BlockQ5_1& b) { return _mm256_or_si256(unpack_nibbles(b.qs), q5_high_bits(b.qh)); }  // 0..31

// Q8_0, Q4_0, Q5_0 against Q8_0 activations: x = d * code.
template <int NT, typename Block>
void dot_signed(const Block* w, const void* const* xs, int64_t nb, float* out) {
    const BlockQ8_0* x[NT];
    __m256 acc[NT];
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const BlockQ8_0*>(xs[t]);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const __m256i qw = codes(w[b]);
        const float dw = half(w[b].d);
        for (int t = 0; t < NT; t++) {
            const __m256i p = dot_i8x32(qw, load_i8x32(x[t][b].qs));
            const __m256 d = _mm256_set1_ps(dw * half(x[t][b].d));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum(acc[t]);
}

// Q4_1, Q5_1 against Q8_1 activations: x = d * code + m, the m term through the block sum s.
template <int NT, typename Block>
void dot_with_min(const Block* w, const void* const* xs, int64_t nb, float* out) {
    const BlockQ8_1* x[NT];
    __m256 acc[NT];
    float mins[NT];  // sum over blocks of m_w * s_x
    for (int t = 0; t < NT; t++) {
        x[t] = static_cast<const BlockQ8_1*>(xs[t]);
        acc[t] = _mm256_setzero_ps();
        mins[t] = 0.0f;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        const __m256i qw = codes(w[b]);
        const float dw = half(w[b].d);
        const float mw = half(w[b].m);
        for (int t = 0; t < NT; t++) {
            const __m256i p =
                _mm256_madd_epi16(_mm256_maddubs_epi16(qw, load_i8x32(x[t][b].qs)), ones);
            const __m256 d = _mm256_set1_ps(dw * half(x[t][b].d));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc[t]);
            mins[t] = std::fma(mw, half(x[t][b].s), mins[t]);
        }
    }
    for (int t = 0; t < NT; t++) out[t] = hsum(acc[t]) + mins[t];
}

template <int NT>
void dot_n(DType type, const void* w, const void* const* xs, int64_t cols, float* out) {
    const int64_t nb = cols / kQK;
    switch (type) {
        case DType::F32: return dot_float<NT>(static_cast<const float*>(w), xs, cols, out);
        case DType::F16: return dot_float<NT>(static_cast<const uint16_t*>(w), xs, cols, out);
        case DType::Q4_0: return dot_signed<NT>(static_cast<const BlockQ4_0*>(w), xs, nb, out);
        case DType::Q4_1: return dot_with_min<NT>(static_cast<const BlockQ4_1*>(w), xs, nb, out);
        case DType::Q8_0: return dot_signed<NT>(static_cast<const BlockQ8_0*>(w), xs, nb, out);
        case DType::Q8_1:
        case DType::Q8_K: break;  // activation formats only
        case DType::Q5_0: return dot_signed<NT>(static_cast<const BlockQ5_0*>(w), xs, nb, out);
        case DType::Q5_1: return dot_with_min<NT>(static_cast<const BlockQ5_1*>(w), xs, nb, out);
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K: break;  // K-quants: dot() and matmul() use k_matmul below
    }
    for (int t = 0; t < NT; t++) out[t] = 0.0f;
}

// K-quants: k_sum.h's frame and float steps; the integer lanes 32 codes at a time: the 16-bit
// pair sums of codes times activations (the codes' signs moved onto the activations for
// maddubs: |code| <= 63 and |activation| <= 127, so no pair saturates), then madd with the two
// runs' scales (8 + 8 of the 16-bit lanes), so int32 lane l holds the four products 4l..4l+3
// times their run's scale, as ksum::lanes_reference.
struct Avx2KBlock {
    __m256i qw[kQKK / 32], aw[kQKK / 32], sc[kQKK / 32];
    // Q4_K, Q5_K and Q6_K decode their codes here, 32 at a time (as unpack_k_block lays them
    // out: test_kernels holds every backend to the scalar table bit for bit); Q2_K and Q3_K
    // take the reference unpacking.
    Avx2KBlock(DType t, const uint8_t* raw, UnpackedK& u) {
        const __m256i low4 = _mm256_set1_epi8(0x0f);
        if (t == DType::Q4_K || t == DType::Q5_K) {
            unpack_k_scales(t, raw, u);
            const uint8_t* qs = t == DType::Q4_K ? reinterpret_cast<const BlockQ4_K*>(raw)->qs
                                                 : reinterpret_cast<const BlockQ5_K*>(raw)->qs;
            for (int chunk = 0; chunk < 4; chunk++) {  // 32 bytes: sub-block 2 chunk low, 2 chunk + 1 high
                const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * chunk));
                qw[2 * chunk] = _mm256_and_si256(b, low4);
                qw[2 * chunk + 1] = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
            }
            if (t == DType::Q5_K) {  // bit `sub` of qh[l] is the 5th bit of element l of sub-block sub
                const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(raw)->qh));
                for (int sub = 0; sub < 8; sub++) {
                    const __m256i bit = _mm256_set1_epi8(static_cast<char>(1u << sub));
                    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                    qw[sub] = _mm256_or_si256(qw[sub], _mm256_and_si256(set, _mm256_set1_epi8(16)));
                }
            }
        } else if (t == DType::Q6_K) {
            unpack_k_scales(t, raw, u);
            const auto& b = *reinterpret_cast<const BlockQ6_K*>(raw);
            const __m256i two = _mm256_set1_epi8(3);
            for (int half = 0; half < 2; half++) {
                const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half));
                const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * half + 32));
                const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * half));
                // The 2 high bits at shift 2k of qh, moved to bits 4-5 (16-bit shifts, then masked per byte).
                const auto high = [&](int k) {
                    const __m256i bits = _mm256_and_si256(_mm256_srli_epi16(h, 2 * k), two);
                    return _mm256_slli_epi16(bits, 4);
                };
                qw[4 * half + 0] = _mm256_or_si256(_mm256_and_si256(l0, low4), high(0));
                qw[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(l1, low4), high(1));
                qw[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), high(2));
                qw[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), high(3));
            }
        } else {
            unpack_k_block(t, raw, u);
            for (int c = 0; c < kQKK / 32; c++) qw[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.q + 32 * c));
        }
        for (int c = 0; c < kQKK / 32; c++) {
            aw[c] = _mm256_sign_epi8(qw[c], qw[c]);
            sc[c] = _mm256_setr_m128i(_mm_set1_epi16(u.scale[2 * c]), _mm_set1_epi16(u.scale[2 * c + 1]));
        }
    }
    void lanes(const BlockQ8_K& x, ksum::Lanes& il) const {
        for (int q = 0; q < ksum::kQuarters; q++) {
            __m256i sum = _mm256_setzero_si256();
            for (int c = 2 * q; c < 2 * q + 2; c++) {
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
                const __m256i p16 = _mm256_maddubs_epi16(aw[c], _mm256_sign_epi8(xv, qw[c]));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p16, sc[c]));
            }
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(il[q]), sum);
        }
    }
};

void k_matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    ksum::matmul<Avx2KBlock>(w, r0, r1, x, n, y, ldy);
}

float dot(DType weight, const void* w, const void* x, int64_t cols) {
    if (is_k_quant(weight)) {
        float out = 0.0f;
        k_matmul(WeightRef{weight, w, 1, cols, dtype_row_bytes(weight, cols)}, 0, 1, x, 1, &out, 1);
        return out;
    }
    float out = 0.0f;
    dot_n<1>(weight, w, &x, cols, &out);
    return out;
}

void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y,
            int64_t ldy) {
    if (is_k_quant(w.type)) return k_matmul(w, r0, r1, x, n, y, ldy);
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    const auto* xbytes = static_cast<const uint8_t*>(x);
    const int block =
        (w.type == DType::F32 || w.type == DType::F16) ? kFloatTokenBlock : kTokenBlock;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t* wrow = wbytes + static_cast<size_t>(r) * w.row_bytes;
        for (int64_t t0 = 0; t0 < n; t0 += block) {
            const void* xs[kTokenBlock];
            float out[kTokenBlock];
            const int nt = static_cast<int>(n - t0 < block ? n - t0 : block);
            for (int t = 0; t < nt; t++) xs[t] = xbytes + static_cast<size_t>(t0 + t) * x_stride;
            switch (nt) {
                case 1: dot_n<1>(w.type, wrow, xs, w.cols, out); break;
                case 2: dot_n<2>(w.type, wrow, xs, w.cols, out); break;
                case 3: dot_n<3>(w.type, wrow, xs, w.cols, out); break;
                default: dot_n<kTokenBlock>(w.type, wrow, xs, w.cols, out); break;
            }
            for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = out[t];
        }
    }
}

// Attention sums in the scalar table's (llama.cpp's) order: 16 FMA lanes, element e in lane
// e % 16, then lanes l + l+8 (two ymm added), then hsum's l+4, l+2, l+1 tree. A tail shorter
// than 16 is folded in scalar code in the same lane positions.
__m256 load_half8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

void attn_scores(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys, int64_t hd,
                 float scale, float* scores) {
    const int64_t full = hd / 16 * 16;
    for (int64_t j = 0; j < n_keys; j++) {
        const uint16_t* kj = k + j * stride;
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int64_t d = 0; d < full; d += 16) {
            lo = _mm256_fmadd_ps(load_half8(q16 + d), load_half8(kj + d), lo);
            hi = _mm256_fmadd_ps(load_half8(q16 + d + 8), load_half8(kj + d + 8), hi);
        }
        if (full == hd) {
            scores[j] = hsum(_mm256_add_ps(lo, hi)) * scale;
            continue;
        }
        alignas(32) float lanes[16];
        _mm256_store_ps(lanes, lo);
        _mm256_store_ps(lanes + 8, hi);
        for (int64_t d = full; d < hd; d++) lanes[d % 16] = std::fma(half(q16[d]), half(kj[d]), lanes[d % 16]);
        scores[j] = hsum(_mm256_add_ps(_mm256_load_ps(lanes), _mm256_load_ps(lanes + 8))) * scale;
    }
}

void attn_values(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys, int64_t hd,
                 float* out) {
    // acc[l][d]: lane l of output d, 8 outputs per ymm. 16 lanes x hd floats on the stack.
    constexpr int64_t kMaxHead = 256;
    if (hd % 8 != 0 || hd > kMaxHead) {
        kernels_scalar().attn_values(p, v, stride, n_keys, hd, out);
        return;
    }
    alignas(32) float acc[16][kMaxHead];
    for (int l = 0; l < 16; l++) std::memset(acc[l], 0, static_cast<size_t>(hd) * sizeof(float));
    for (int64_t j = 0; j < n_keys; j++) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        const uint16_t* vj = v + j * stride;
        float* a = acc[j % 16];
        for (int64_t d = 0; d < hd; d += 8) {
            _mm256_store_ps(a + d, _mm256_fmadd_ps(pj, load_half8(vj + d), _mm256_load_ps(a + d)));
        }
    }
    for (int width = 8; width >= 1; width /= 2) {
        for (int l = 0; l < width; l++) {
            for (int64_t d = 0; d < hd; d += 8) {
                _mm256_store_ps(acc[l] + d, _mm256_add_ps(_mm256_load_ps(acc[l] + d), _mm256_load_ps(acc[l + width] + d)));
            }
        }
    }
    std::memcpy(out, acc[0], static_cast<size_t>(hd) * sizeof(float));
}

constexpr Kernels kAvx2 = {"avx2",           prepare,    dot, matmul, attn_scores, attn_values, swiglu_reference,
                           attn_softmax_reference};

}  // namespace

const Kernels* kernels_avx2() {
    // Once per process: CPUID can cost microseconds under a hypervisor. clang's
    // __builtin_cpu_supports knows no "f16c", so that bit comes from CPUID leaf 1; the avx2
    // check already covers the OS saving ymm registers, which F16C needs too.
    static const Kernels* const table = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
        const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
        return ok ? &kAvx2 : nullptr;
    }();
    return table;
}

}  // namespace microlm

#else  // not x86-64: no such backend in this build

namespace microlm {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace microlm

#endif
