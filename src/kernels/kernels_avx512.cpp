// The AVX-512 backend (F, BW, VL, DQ and VNNI). Quantized products run VPDPBUSD on tiles of
// 16 weight rows in llama.cpp's order of float operations (bit-identical to the AVX2 table);
// activation preparation and attention are bit-identical to the scalar table; F32/F16 products
// equal it up to float rounding order. Compiled with AVX-512 flags, so nothing here may run
// before kernels_avx512() has checked the CPU: no namespace-scope initialisers, and no shared
// inline templates (std::max, std::vector, ...) whose AVX-512 copy the linker could pick for
// the baseline code.
#include "microlm/kernels.h"

#if defined(__x86_64__)

#include "x86_simd.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace microlm {

namespace {

// The block loaders must inline into the tile loops: called, they return 640-byte blocks
// through memory and decode runs at half speed.
#define MICROLM_ALWAYS_INLINE inline __attribute__((always_inline))

inline float half(uint16_t h) {
    return _cvtsh_ss(h);
}

inline int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

// ---------------------------------------------------------------------------------------
// Activation preparation: byte for byte what the scalar table writes.

// One block of 32 activations to int8 as llama.cpp's x86 path does: scale 127/amax, products
// rounded to nearest even. Returns d = amax/127; with kSum, *sum gets sum(q) (Q8_1's s).
// The max folds |x| in as the first operand, so a NaN is skipped as std::max skips it.
template <bool kSum>
float quantize_block(const float* x, int8_t* qs, int* sum) {
    const __m512 v0 = _mm512_loadu_ps(x);
    const __m512 v1 = _mm512_loadu_ps(x + 16);
    __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
    m = _mm512_max_ps(_mm512_abs_ps(v1), m);
    const float amax = _mm512_reduce_max_ps(m);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512i q0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid), kRound);
    const __m512i q1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid), kRound);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtepi32_epi8(q1));
    if constexpr (kSum) *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    return amax / 127.0f;
}

// F16C rounds to nearest even exactly as fp32_to_fp16 does (NaNs included), without the call.
inline uint16_t to_half(float f) {
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

__mmask16 first_lanes(int64_t k) {
    return static_cast<__mmask16>((1u << k) - 1u);
}

void prepare_row(DType act, const float* x, int64_t cols, void* out) {
    switch (act) {
        case DType::F32:
            std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float));
            return;
        case DType::F16: {
            auto* y = static_cast<uint16_t*>(out);
            constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            int64_t i = 0;
            for (; i + 16 <= cols; i += 16) {
                const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), kRound);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
            }
            if (i < cols) {
                const __mmask16 m = first_lanes(cols - i);
                const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), kRound);
                _mm256_mask_storeu_epi16(y + i, m, h);
            }
            return;
        }
        case DType::Q8_0: {
            auto* y = static_cast<BlockQ8_0*>(out);
            for (int64_t b = 0; b < cols / kQK; b++) {
                y[b].d = to_half(quantize_block<false>(x + b * kQK, y[b].qs, nullptr));
            }
            return;
        }
        case DType::Q8_1: {
            auto* y = static_cast<BlockQ8_1*>(out);
            for (int64_t b = 0; b < cols / kQK; b++) {
                int sum = 0;
                const float d = quantize_block<true>(x + b * kQK, y[b].qs, &sum);
                y[b].d = to_half(d);
                y[b].s = to_half(static_cast<float>(sum) * d);
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
            return;  // only for avx2_only weights, prepared by the AVX2 table
    }
}

void prepare(DType weight, const float* x, int64_t n, int64_t cols, void* out) {
    if (avx2_only(weight)) return kernels_avx2()->prepare(weight, x, n, cols, out);
    const DType act = activation_type(weight);
    const size_t stride = prepared_row_bytes(weight, cols);
    auto* dst = static_cast<uint8_t*>(out);
    for (int64_t t = 0; t < n; t++) prepare_row(act, x + t * cols, cols, dst + t * stride);
}

// ---------------------------------------------------------------------------------------
// Quantized weights (Q4_0, Q4_1, Q8_0), in llama.cpp's order of float operations.
//
// llama.cpp's x86 dot products (and our AVX2 table) keep, per (row, token), 8 float lanes:
// lane k takes the exact integer sum of the block's values 4k..4k+3 times d_w * d_x with a
// fused multiply-add, block after block, and the lanes are summed at the end as (k + k+4),
// (k + k+2), (k + k+1); Q4_1 adds the sum of m_w * s_x kept apart. Matching that bit for bit
// keeps greedy decoding on llama.cpp's path at near-ties (the parity tests check argmax).
//
// VPDPBUSD multiplies unsigned by signed bytes, four at a time into each 32-bit lane: exactly
// one such 4-value sum. A tile holds 16 weight rows, row i in lane i: per block, v[k] lane i
// = row i's values 4k..4k+3 as unsigned bytes (Q8_0 offset by +128, Q4 nibbles as stored),
// and a token's activation dword k is broadcast against it, the lane starting at -128 (Q8_0)
// or -8 (Q4_0) times the sum of those 4 activations to take the offset back out exactly. So
// one instruction gives lane k of 16 rows at once, and acc[k] (lane i = row i) follows
// llama.cpp's lane k of row i; no horizontal sums until the end.
//
// Transposing 16 rows costs ~40 shuffles per block, paid once per tile and shared by all
// tokens: for n > kGroup the tile is transposed once into a panel that each group of tokens
// re-reads from L1; decode transposes on the fly.

constexpr int kTileRows = 16;
constexpr int kLanes = 8;       // llama.cpp's float lanes per dot product
constexpr int kGroup = 3;       // tokens per pass: 8 float accumulators each, in 32 zmm
constexpr int64_t kChunk = 64;  // tokens whose activations are unpacked at once

// One prepared activation block unpacked for broadcasting (80 bytes, dword-aligned).
struct alignas(16) XBlock {
    int8_t q[kQK];
    int32_t init[kLanes];  // start of lane k's integer sum (see above)
    float d;
    float s;  // Q4_1 only: the Q8_1 block's d * sum(q), as stored (fp16)
    int32_t unused[2];
};
static_assert(sizeof(XBlock) == 80);

// 16 weight rows of one block, transposed: v[k] lane i = row i's values 4k..4k+3.
struct alignas(64) WBlock {
    __m512i v[kLanes];
    __m512 d;  // row scales
    __m512 m;  // Q4_1 row minimums
};

// Per-thread scratch for the panel and unpacked activations (x86_simd.h).
void* scratch(size_t bytes) {
    thread_local simd::Scratch s;
    return s.get(bytes);
}

MICROLM_ALWAYS_INLINE __m128i load128(const void* p) {
    return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
MICROLM_ALWAYS_INLINE __m256i load256(const void* p) {
    return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// Unpacks tokens [t0, t0 + nt) of prepared activations: out[t * nb + b].
void unpack_x(DType w, const uint8_t* xp, size_t x_stride, int64_t t0, int64_t nt, int64_t nb, XBlock* out) {
    const __m256i ones = _mm256_set1_epi8(1);
    const int shift = w == DType::Q8_0 ? 7 : 3;  // the weight offset: 128 or 8
    for (int64_t t = 0; t < nt; t++) {
        const uint8_t* row = xp + static_cast<size_t>(t0 + t) * x_stride;
        XBlock* o = out + t * nb;
        for (int64_t b = 0; b < nb; b++) {
            __m256i q;
            if (w == DType::Q4_1) {
                const auto* x = reinterpret_cast<const BlockQ8_1*>(row) + b;
                q = load256(x->qs);
                o[b].d = half(x->d);
                o[b].s = half(x->s);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(o[b].init), _mm256_setzero_si256());
            } else {
                const auto* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
                q = load256(x->qs);
                o[b].d = half(x->d);
                o[b].s = 0.0f;
                // Lane k: sum of activations 4k..4k+3, times minus the offset.
                const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
                const __m256i init = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, shift));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(o[b].init), init);
            }
            o[b].unused[0] = o[b].unused[1] = 0;
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o[b].q), q);
        }
    }
}

// a[g] lane L (128 bits) = 16 bytes of row 4L+g. Afterwards out[k] lane i = dword k of row
// i's 16 bytes: an in-lane 4x4 dword transpose, rows already placed so lane order is row order.
MICROLM_ALWAYS_INLINE void transpose4(const __m512i a[4], __m512i* out) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]);
    const __m512i t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]);
    const __m512i t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// Where row i of a tile starts. A full tile's rows are row_bytes apart, which x86 addressing
// reaches from a few registers; a short last tile repeats its last row in the spare lanes
// (computed, never stored) through a table of offsets.
struct StridedRows {
    const uint8_t* base;
    int64_t rb;
    const uint8_t* row(int i, int64_t at) const { return base + at + i * rb; }
    const uint8_t* next_tile() const { return base + kTileRows * rb; }
};
struct ClampedRows {
    const uint8_t* base;
    const int64_t* ro;
    const uint8_t* row(int i, int64_t at) const { return base + at + ro[i]; }
    const uint8_t* next_tile() const { return nullptr; }  // the last tile: nothing to fetch
};

// 16 bytes at offset `at` of rows g, 4+g, 8+g, 12+g.
template <class Rows>
MICROLM_ALWAYS_INLINE __m512i load_rows16(const Rows& rows, int g, int64_t at) {
    __m512i v = _mm512_castsi128_si512(load128(rows.row(g, at)));
    v = _mm512_inserti32x4(v, load128(rows.row(4 + g, at)), 1);
    v = _mm512_inserti32x4(v, load128(rows.row(8 + g, at)), 2);
    return _mm512_inserti32x4(v, load128(rows.row(12 + g, at)), 3);
}

MICROLM_ALWAYS_INLINE __m512 halves_to_float(__m512i lo16_in_dwords) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(lo16_in_dwords));
}

// Block b of a tile; `ro32` holds the rows' offsets from the tile start for the scale gather.
template <DType W, class Rows>
MICROLM_ALWAYS_INLINE WBlock load_wblock(const Rows& rows, __m512i ro32, int64_t b) {
    WBlock wb;
    if constexpr (W == DType::Q8_0) {
        const int64_t at = b * static_cast<int64_t>(sizeof(BlockQ8_0));
        // Rows g and 4+g, 8+g and 12+g as 32-byte halves of two registers; 128-bit lane
        // shuffles then split each row's bytes 0..15 (a[0]) from 16..31 (a[1]).
        __m512i a[2][4];
        for (int g = 0; g < 4; g++) {
            const __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(load256(rows.row(g, at + 2))),
                                                  load256(rows.row(4 + g, at + 2)), 1);
            const __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(load256(rows.row(8 + g, at + 2))),
                                                  load256(rows.row(12 + g, at + 2)), 1);
            a[0][g] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
            a[1][g] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        }
        transpose4(a[0], wb.v);
        transpose4(a[1], wb.v + 4);
        const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
        for (__m512i& v : wb.v) v = _mm512_xor_si512(v, flip);
        wb.d = halves_to_float(_mm512_i32gather_epi32(ro32, rows.row(0, at), 1));
        wb.m = _mm512_setzero_ps();
    } else {
        constexpr int64_t kBytes = W == DType::Q4_0 ? sizeof(BlockQ4_0) : sizeof(BlockQ4_1);
        constexpr int kAt = W == DType::Q4_0 ? 2 : 4;
        const int64_t at = b * kBytes;
        __m512i a[4], t[4];
        for (int g = 0; g < 4; g++) a[g] = load_rows16(rows, g, at + kAt);
        transpose4(a, t);
        // Low nibbles are values 0..15 of the block, high nibbles 16..31.
        const __m512i low = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 4; k++) {
            wb.v[k] = _mm512_and_si512(t[k], low);
            wb.v[4 + k] = _mm512_and_si512(_mm512_srli_epi16(t[k], 4), low);
        }
        const __m512i dm = _mm512_i32gather_epi32(ro32, rows.row(0, at), 1);  // d, then m for Q4_1
        wb.d = halves_to_float(dm);
        wb.m = W == DType::Q4_1 ? halves_to_float(_mm512_srli_epi32(dm, 16)) : _mm512_setzero_ps();
    }
    return wb;
}

MICROLM_ALWAYS_INLINE __m512i bcast_dword(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

// llama.cpp's final sum of the 8 lanes, on 16 rows at once.
MICROLM_ALWAYS_INLINE __m512 lane_sum8(const __m512 acc[kLanes]) {
    __m512 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm512_add_ps(acc[k], acc[k + 4]);
    return _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
}

// The tile's rows x T tokens over all nb blocks; `block(b)` yields the tile's WBlock b.
// y[t * ldy + lane] for lanes in `keep`.
template <DType W, int T, class BlockSource>
void q_tile(BlockSource block, int64_t nb, const XBlock* xs, float* y, int64_t ldy, __mmask16 keep) {
    __m512 acc[T][kLanes];
    // Q4_1: sum of m_w * s_x. Two fp16 values multiply exactly in float, so whether a compiler
    // contracts this into an FMA (GCC does, even in ISO mode) changes nothing.
    __m512 mins[T];
    for (int t = 0; t < T; t++) {
        for (__m512& a : acc[t]) a = _mm512_setzero_ps();
        mins[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const WBlock& wb = block(b);
        __m512 scale[T];
        for (int t = 0; t < T; t++) scale[t] = _mm512_mul_ps(wb.d, _mm512_set1_ps(xs[t * nb + b].d));
        for (int k = 0; k < kLanes; k++) {
            const __m512i wk = wb.v[k];
            for (int t = 0; t < T; t++) {
                const XBlock& x = xs[t * nb + b];
                const __m512i s =
                    _mm512_dpbusd_epi32(_mm512_set1_epi32(x.init[k]), wk, bcast_dword(x.q + 4 * k));
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale[t], acc[t][k]);
            }
        }
        if constexpr (W == DType::Q4_1) {
            for (int t = 0; t < T; t++) {
                mins[t] = _mm512_add_ps(mins[t], _mm512_mul_ps(wb.m, _mm512_set1_ps(xs[t * nb + b].s)));
            }
        }
    }
    for (int t = 0; t < T; t++) {
        __m512 sum = lane_sum8(acc[t]);
        if constexpr (W == DType::Q4_1) sum = _mm512_add_ps(sum, mins[t]);
        _mm512_mask_storeu_ps(y + t * ldy, keep, sum);
    }
}

template <DType W, class BlockSource>
void q_tile_n(BlockSource block, int64_t nb, const XBlock* xs, int64_t nt, float* y, int64_t ldy,
              __mmask16 keep) {
    static_assert(kGroup == 3);
    switch (nt) {
        case 1:
            return q_tile<W, 1>(block, nb, xs, y, ldy, keep);
        case 2:
            return q_tile<W, 2>(block, nb, xs, y, ldy, keep);
        default:
            return q_tile<W, 3>(block, nb, xs, y, ldy, keep);
    }
}

// One tile of 16 rows against tokens [0, nt) of the unpacked activations. With no panel
// (nt <= kGroup) the blocks are transposed as they are consumed, else into the panel first.
// The weights of a whole model stream from L3, so the next tile's bytes are prefetched while
// this one computes, `prefetch_step` bytes per block: during the one pass of a decode tile,
// during the first token group's pass over the panel otherwise (prefetching while the panel
// is built would crowd the loads it needs itself).
template <DType W, class Rows>
void q_rows(const Rows& rows, __m512i ro32, int64_t nb, const XBlock* xs, int64_t nt, WBlock* panel, float* y,
            int64_t ldy, __mmask16 keep, int64_t prefetch_step) {
    const uint8_t* next = rows.next_tile();
    auto prefetch = [&](int64_t b) __attribute__((always_inline)) {
        if (next == nullptr) return;
        for (int64_t at = b * prefetch_step; at < (b + 1) * prefetch_step; at += 64) {
            _mm_prefetch(reinterpret_cast<const char*>(next + at), _MM_HINT_T0);
        }
    };
    if (panel == nullptr) {
        WBlock cur;
        auto fly = [&](int64_t b) __attribute__((always_inline))->const WBlock& {
            prefetch(b);
            cur = load_wblock<W>(rows, ro32, b);
            return cur;
        };
        q_tile_n<W>(fly, nb, xs, nt, y, ldy, keep);
        return;
    }
    for (int64_t b = 0; b < nb; b++) panel[b] = load_wblock<W>(rows, ro32, b);
    auto first = [&](int64_t b) __attribute__((always_inline))->const WBlock& {
        prefetch(b);
        return panel[b];
    };
    auto rest = [panel](int64_t b) __attribute__((always_inline))->const WBlock& {
        return panel[b];
    };
    q_tile_n<W>(first, nb, xs, min64(kGroup, nt), y, ldy, keep);
    for (int64_t t = kGroup; t < nt; t += kGroup) {
        q_tile_n<W>(rest, nb, xs + t * nb, min64(kGroup, nt - t), y + t * ldy, ldy, keep);
    }
}

// Returns false (nothing written) when the scratch cannot be had or rows are too far apart
// for the scale gather's 32-bit offsets.
template <DType W>
bool q_matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    const int64_t nb = w.cols / kQK;
    const auto rb = static_cast<int64_t>(w.row_bytes);
    if (nb == 0 || rb > INT32_MAX / kTileRows) return false;
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    const int64_t chunk = min64(n, kChunk);
    const size_t panel_bytes = n > kGroup ? static_cast<size_t>(nb) * sizeof(WBlock) : 0;
    void* mem = scratch(panel_bytes + static_cast<size_t>(chunk * nb) * sizeof(XBlock));
    if (mem == nullptr) return false;
    auto* panel = panel_bytes > 0 ? static_cast<WBlock*>(mem) : nullptr;
    auto* xs = reinterpret_cast<XBlock*>(static_cast<uint8_t*>(mem) + panel_bytes);
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    const int64_t prefetch_step = kTileRows * rb / nb;

    // The first tile's bytes, ahead of unpacking the activations; q_rows fetches the rest.
    const int64_t first_bytes = min64(kTileRows, r1 - r0) * rb;
    for (int64_t at = 0; at < first_bytes; at += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(wbytes + r0 * rb + at), _MM_HINT_T0);
    }
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
        const int64_t nc = min64(chunk, n - c0);
        unpack_x(w.type, static_cast<const uint8_t*>(x), x_stride, c0, nc, nb, xs);
        for (int64_t r = r0; r < r1; r += kTileRows) {
            const int64_t rows = min64(kTileRows, r1 - r);
            const uint8_t* base = wbytes + r * rb;
            alignas(64) int64_t ro[kTileRows];
            alignas(64) int32_t ro32[kTileRows];
            for (int i = 0; i < kTileRows; i++) {
                ro[i] = min64(i, rows - 1) * rb;
                ro32[i] = static_cast<int32_t>(ro[i]);
            }
            const __m512i vro = _mm512_load_si512(ro32);
            float* yt = y + c0 * ldy + r;
            if (rows == kTileRows) {
                q_rows<W>(StridedRows{base, rb}, vro, nb, xs, nc, panel, yt, ldy, first_lanes(16),
                          prefetch_step);
            } else {
                q_rows<W>(ClampedRows{base, ro}, vro, nb, xs, nc, panel, yt, ldy, first_lanes(rows),
                          prefetch_step);
            }
        }
    }
    return true;
}

// One row against one token in the same order as q_tile's lanes (and llama.cpp's), 8 lanes
// in a ymm: matmul == dot bit for bit.
float q_dot(DType type, const void* w, const void* x, int64_t nb) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    __m128 mins = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i qx, qw;
        float dw = 0.0f, dx = 0.0f;
        if (type == DType::Q4_1) {
            const auto* xb = static_cast<const BlockQ8_1*>(x) + b;
            const auto* wb = static_cast<const BlockQ4_1*>(w) + b;
            qx = load256(xb->qs);
            dx = half(xb->d);
            dw = half(wb->d);
            const __m128i packed = load128(wb->qs);
            qw = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
            mins = _mm_add_ss(mins, _mm_mul_ss(_mm_set_ss(half(wb->m)), _mm_set_ss(half(xb->s))));
        } else {
            const auto* xb = static_cast<const BlockQ8_0*>(x) + b;
            qx = load256(xb->qs);
            dx = half(xb->d);
            if (type == DType::Q8_0) {
                const auto* wb = static_cast<const BlockQ8_0*>(w) + b;
                qw = load256(wb->qs);
                dw = half(wb->d);
            } else {
                const auto* wb = static_cast<const BlockQ4_0*>(w) + b;
                const __m128i packed = load128(wb->qs);
                qw = _mm256_sub_epi8(
                    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low), eight);
                dw = half(wb->d);
            }
            // Unsigned x signed: w's sign moves onto x.
            qx = _mm256_sign_epi8(qx, qw);
            qw = _mm256_abs_epi8(qw);
        }
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qw, qx);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx), acc);
    }
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(_mm_add_ss(s1, mins));
}

// ---------------------------------------------------------------------------------------
// F32 and F16 weights against F32 / F16 activations: one 16-lane FMA accumulator per (row,
// token), tiles of 4 rows x 4 tokens sharing loads, a masked last step for any cols, and the
// same reduction everywhere so that matmul == dot. The scalar table sums in double; this
// differs from it by float rounding only.

inline __m512 load16(const float* p) {
    return _mm512_loadu_ps(p);
}
inline __m512 load16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load16(const float* p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
}
inline __m512 load16(const uint16_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

constexpr int kFloatRows = 4;
constexpr int kFloatTokens = 4;

template <typename E, int R, int NT>
void float_tile(const E* const* w, const E* const* x, int64_t cols, float* out /* [R][NT] */) {
    __m512 acc[R][NT];
    for (auto& row : acc) {
        for (__m512& a : row) a = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= cols; i += 16) {
        __m512 xv[NT];
        for (int t = 0; t < NT; t++) xv[t] = load16(x[t] + i);
        for (int r = 0; r < R; r++) {
            const __m512 wv = load16(w[r] + i);
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    if (i < cols) {
        const __mmask16 m = first_lanes(cols - i);
        __m512 xv[NT];
        for (int t = 0; t < NT; t++) xv[t] = load16(x[t] + i, m);
        for (int r = 0; r < R; r++) {
            const __m512 wv = load16(w[r] + i, m);
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < NT; t++) out[r * NT + t] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

template <typename E, int R>
void float_rows(const E* const* w, const E* const* x, int nt, int64_t cols, float* out) {
    switch (nt) {
        case 1:
            return float_tile<E, R, 1>(w, x, cols, out);
        case 2:
            return float_tile<E, R, 2>(w, x, cols, out);
        case 3:
            return float_tile<E, R, 3>(w, x, cols, out);
        default:
            return float_tile<E, R, kFloatTokens>(w, x, cols, out);
    }
}

template <typename E>
void float_matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y,
                  int64_t ldy) {
    const size_t x_stride = static_cast<size_t>(w.cols) * sizeof(E);
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    const auto* xbytes = static_cast<const uint8_t*>(x);
    for (int64_t r = r0; r < r1; r += kFloatRows) {
        const int nr = static_cast<int>(min64(kFloatRows, r1 - r));
        const E* wr[kFloatRows];
        for (int i = 0; i < nr; i++) {
            wr[i] = reinterpret_cast<const E*>(wbytes + static_cast<size_t>(r + i) * w.row_bytes);
        }
        for (int64_t t0 = 0; t0 < n; t0 += kFloatTokens) {
            const int nt = static_cast<int>(min64(kFloatTokens, n - t0));
            const E* xt[kFloatTokens];
            for (int t = 0; t < nt; t++) {
                xt[t] = reinterpret_cast<const E*>(xbytes + static_cast<size_t>(t0 + t) * x_stride);
            }
            float out[kFloatRows * kFloatTokens];
            if (nr == kFloatRows) {
                float_rows<E, kFloatRows>(wr, xt, nt, w.cols, out);
                for (int i = 0; i < nr; i++) {
                    for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + r + i] = out[i * nt + t];
                }
            } else {
                for (int i = 0; i < nr; i++) {
                    float_rows<E, 1>(wr + i, xt, nt, w.cols, out);
                    for (int t = 0; t < nt; t++) y[(t0 + t) * ldy + r + i] = out[t];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

float dot(DType weight, const void* w, const void* x, int64_t cols) {
    if (avx2_only(weight)) return kernels_avx2()->dot(weight, w, x, cols);
    float out = 0.0f;
    switch (weight) {
        case DType::F32: {
            const auto* wp = static_cast<const float*>(w);
            const auto* xp = static_cast<const float*>(x);
            float_tile<float, 1, 1>(&wp, &xp, cols, &out);
            return out;
        }
        case DType::F16: {
            const auto* wp = static_cast<const uint16_t*>(w);
            const auto* xp = static_cast<const uint16_t*>(x);
            float_tile<uint16_t, 1, 1>(&wp, &xp, cols, &out);
            return out;
        }
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q8_0:
            return q_dot(weight, w, x, cols / kQK);
        case DType::Q8_1:
        case DType::Q8_K:
            break;  // activation formats only
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            break;  // handed to the AVX2 table above
    }
    return out;
}

void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    if (avx2_only(w.type)) return kernels_avx2()->matmul(w, r0, r1, x, n, y, ldy);
    if (r0 >= r1 || n <= 0) return;
    bool done = true;
    switch (w.type) {
        case DType::F32:
            float_matmul<float>(w, r0, r1, x, n, y, ldy);
            return;
        case DType::F16:
            float_matmul<uint16_t>(w, r0, r1, x, n, y, ldy);
            return;
        case DType::Q4_0:
            done = q_matmul<DType::Q4_0>(w, r0, r1, x, n, y, ldy);
            break;
        case DType::Q4_1:
            done = q_matmul<DType::Q4_1>(w, r0, r1, x, n, y, ldy);
            break;
        case DType::Q8_0:
            done = q_matmul<DType::Q8_0>(w, r0, r1, x, n, y, ldy);
            break;
        case DType::Q8_1:
        case DType::Q8_K:
            return;  // activation formats only
        case DType::Q5_0:
        case DType::Q5_1:
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
            return;  // handed to the AVX2 table above
    }
    if (done) return;
    // Out of scratch memory, or rows too far apart for the tile's 32-bit gather offsets: one
    // dot product at a time, in the same order.
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    for (int64_t r = r0; r < r1; r++) {
        const auto* row = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
        for (int64_t t = 0; t < n; t++) {
            y[t * ldy + r] =
                q_dot(w.type, row, static_cast<const uint8_t*>(x) + static_cast<size_t>(t) * x_stride,
                      w.cols / kQK);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attention, bit-identical to the scalar table: 16 FMA lanes (element e in lane e % 16), then
// lanes l + l+8 (two 256-bit halves), l + l+4, l + l+2, l + l+1. Float addition commutes, so
// only which pairs are added matters, and these are the scalar tree's pairs.

inline float lane_tree(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// The 16 lanes of q . k for one key, element e in lane e % 16.
MICROLM_ALWAYS_INLINE __m512 score_lanes(const uint16_t* q16, const uint16_t* kj, int64_t full, __mmask16 tail) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d = 0; d < full; d += 16) acc = _mm512_fmadd_ps(load16(q16 + d), load16(kj + d), acc);
    if (tail != 0) {
        // Lanes past the end keep their value untouched, as in the scalar loop.
        acc = _mm512_mask3_fmadd_ps(load16(q16 + full, tail), load16(kj + full, tail), acc, tail);
    }
    return acc;
}

// lane_tree of 16 keys' lanes at once, key j's sum in lane j: the same pairs added (l with l+8,
// l+4, l+2, l+1), each step on two keys' halves side by side: 46 shuffles and adds for 16 keys,
// where lane_tree takes 8 for one.
MICROLM_ALWAYS_INLINE __m512 lane_trees16(const __m512* acc) {
    __m512 s1[8], s2[4], s3[2];
    for (int i = 0; i < 8; i++) {  // l + l+8: [a0+a2, a1+a3, b0+b2, b1+b3] in 128-bit quarters
        const __m512 a = acc[2 * i], b = acc[2 * i + 1];
        s1[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    for (int i = 0; i < 4; i++) {  // l + l+4: one key's four partials per quarter, keys 4i..4i+3
        const __m512 c = s1[2 * i], d = s1[2 * i + 1];
        s2[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    for (int i = 0; i < 2; i++) {  // l + l+2: quarter m holds keys 8i+m and 8i+4+m, two partials each
        const __m512 e = s2[2 * i], f = s2[2 * i + 1];
        s3[i] = _mm512_add_ps(_mm512_shuffle_ps(e, f, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(e, f, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    // l + l+1: lane 4m + k holds key m + 4k; put key j in lane j.
    const __m512 s4 = _mm512_add_ps(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, s4);
}

void attn_scores(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys, int64_t hd,
                 float scale, float* scores) {
    const int64_t full = hd / 16 * 16;
    const __mmask16 tail = first_lanes(hd - full);
    const __m512 vscale = _mm512_set1_ps(scale);
    int64_t j = 0;
    for (; j + 16 <= n_keys; j += 16) {
        __m512 acc[16];
        for (int i = 0; i < 16; i++) acc[i] = score_lanes(q16, k + (j + i) * stride, full, tail);
        _mm512_storeu_ps(scores + j, _mm512_mul_ps(lane_trees16(acc), vscale));
    }
    for (; j < n_keys; j++) scores[j] = lane_tree(score_lanes(q16, k + j * stride, full, tail)) * scale;
}

// Vectorised over d (16 outputs per zmm) with one accumulator per lane j % 16, then the tree
// on whole vectors: lane l's sum for output d sits in acc[l] at d.
void attn_values(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys, int64_t hd, float* out) {
    for (int64_t d0 = 0; d0 < hd; d0 += 16) {
        const __mmask16 m = first_lanes(min64(16, hd - d0));
        const uint16_t* vd = v + d0;
        __m512 acc[16];
        for (__m512& a : acc) a = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 16 <= n_keys; j += 16) {
            for (int l = 0; l < 16; l++) {
                acc[l] = _mm512_fmadd_ps(_mm512_set1_ps(p[j + l]), load16(vd + (j + l) * stride, m), acc[l]);
            }
        }
        for (int l = 0; j + l < n_keys; l++) {
            acc[l] = _mm512_fmadd_ps(_mm512_set1_ps(p[j + l]), load16(vd + (j + l) * stride, m), acc[l]);
        }
        for (int width = 8; width >= 1; width /= 2) {
            for (int l = 0; l < width; l++) acc[l] = _mm512_add_ps(acc[l], acc[l + width]);
        }
        _mm512_mask_storeu_ps(out + d0, m, acc[0]);
    }
}

// expf of 8 floats the way glibc's expf computes it (since 2.28: in double, x / ln 2 split into a
// multiple of 1/32 and a rest r, 2^(k/32) from a 32-entry table, a cubic in r), with the fused
// multiply-adds its FMA build contracts to, so that the result is libm's bit for bit: checked
// on every float with |x| < 88 (2,237,661,184 of them) against this machine's libm, and by
// test_kernels on a sweep. Outside that range (overflow, underflow, NaN) the caller asks libm.
// The table: 2^(i/32) as doubles, minus i << 47 (the exponent bits the index adds back).
alignas(64) constexpr uint64_t kExp2Table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

MICROLM_ALWAYS_INLINE __m256 exp_as_libm(__m256 x) {
    const __m512d xd = _mm512_cvtps_pd(x);
    const __m512d inv_ln2_32 = _mm512_set1_pd(0x1.71547652b82fep+0 * 32), shift = _mm512_set1_pd(0x1.8p+52);
    const __m512d kd_shifted = _mm512_fmadd_pd(inv_ln2_32, xd, shift);  // round(x * 32 / ln 2) in the low bits
    const __m512i ki = _mm512_castpd_si512(kd_shifted);
    const __m512d kd = _mm512_sub_pd(kd_shifted, shift);
    const __m512d r = _mm512_fmsub_pd(inv_ln2_32, xd, kd);
    __m512i t = _mm512_i64gather_epi64(_mm512_and_si512(ki, _mm512_set1_epi64(31)), kExp2Table, 8);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    const __m512d s = _mm512_castsi512_pd(t);
    const __m512d z = _mm512_fmadd_pd(_mm512_set1_pd(0x1.c6af84b912394p-5 / (32.0 * 32 * 32)), r,
                                      _mm512_set1_pd(0x1.ebfce50fac4f3p-3 / (32.0 * 32)));
    __m512d y = _mm512_fmadd_pd(_mm512_set1_pd(0x1.62e42ff0c52d6p-1 / 32), r, _mm512_set1_pd(1.0));
    y = _mm512_fmadd_pd(z, _mm512_mul_pd(r, r), y);
    return _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
}

// expf of 8 floats, libm's bits: the table above where |x| < 88, libm itself in the lanes past
// that range (overflow, underflow) and for NaN.
MICROLM_ALWAYS_INLINE __m256 exp_libm_bits(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f), limit = _mm256_set1_ps(88.0f);
    __m256 e = exp_as_libm(x);
    const __mmask8 outside = static_cast<__mmask8>(~_mm256_cmp_ps_mask(_mm256_andnot_ps(sign, x), limit, _CMP_LT_OQ));
    if (outside) {
        alignas(32) float xs[8], es[8];
        _mm256_store_ps(xs, x);
        _mm256_store_ps(es, e);
        for (int j = 0; j < 8; j++)
            if ((outside >> j) & 1) es[j] = std::exp(xs[j]);
        e = _mm256_load_ps(es);
    }
    return e;
}

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_libm_bits(_mm256_xor_ps(g, sign));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    if (i < n) swiglu_reference(gate + i, up + i, n - i, out + i);
}

// The scalar table's attention softmax with its maximum, exponentials and fp16 rounding in
// vectors: the maximum does not depend on the order (_mm512_max_ps(x, m) keeps m for a NaN x,
// as std::max(m, x) does), the exponentials are libm's bits, the sum stays one double added in
// index order, and F16C rounds to nearest even as fp32_to_fp16 does.
void attn_softmax(float* s, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(_mm512_loadu_ps(s + j), m);
    if (j < n) {
        const __mmask16 tail = first_lanes(n - j);
        m = _mm512_mask_max_ps(m, tail, _mm512_maskz_loadu_ps(tail, s + j), m);
    }
    const float max_s = _mm512_reduce_max_ps(m);
    const __m256 vmax = _mm256_set1_ps(max_s);
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, exp_libm_bits(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmax)));
    for (; j < n; j++) s[j] = std::exp(s[j] - max_s);
    double sum = 0.0;
    for (j = 0; j < n; j++) sum += s[j];
    const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    for (j = 0; j < n; j += 16) {
        const __mmask16 lanes = first_lanes(min64(16, n - j));
        const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, s + j), inv);
        _mm512_mask_storeu_ps(s + j, lanes, _mm512_cvtph_ps(_mm512_cvtps_ph(p, kRound)));
    }
}

constexpr Kernels kAvx512 = {"avx512", prepare, dot, matmul, attn_scores, attn_values, swiglu, attn_softmax};

#undef MICROLM_ALWAYS_INLINE

}  // namespace

const Kernels* kernels_avx512() {
    // Once per process: CPUID can cost microseconds under a hypervisor. The compiler's check
    // also confirms the OS saves zmm state. F16C and FMA come with every AVX-512F CPU.
    static const Kernels* const table = [] {
        const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vnni");
        return ok ? &kAvx512 : nullptr;
    }();
    return table;
}

}  // namespace microlm

#else  // not x86-64: no such backend in this build

namespace microlm {
const Kernels* kernels_avx512() {
    return nullptr;
}
}  // namespace microlm

#endif
