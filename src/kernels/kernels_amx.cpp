// The AMX backend: Q8_0, Q4_0 and Q4_1 matrix x matrix products (prefill or batched decode,
// 16 tokens or more) on Intel AMX tiles, everything else handed to the AVX-512 table. TDPBSSD
// multiplies 16 weight rows by 16 tokens over one 32-element block in one instruction. A Q8_0
// weight tile is loaded straight from the GGUF blocks (rows row_bytes apart, no repacked copy,
// no extra memory); Q4_0/Q4_1 rows are unpacked to one byte per weight, 16 rows at a time, into
// a per-thread buffer (cols x 16 bytes, reused for every token group: no copy of the model).
// The 16 rows' fp16 scales (and Q4_1's minimums) are read by one gather per block.
// The activations are rearranged once per call into the tile's 4-byte-interleaved layout. Each
// block's exact int32 products are scaled by d_w * d_x and summed over blocks in float, in
// order; Q4_1's minimums add m_w * s_x per block, summed apart and added last as llama.cpp does.
//
// Not bit-identical to the other tables: llama.cpp (and our AVX2/AVX-512 tables) sum each
// block's products in eight integer lanes that are scaled and accumulated separately, AMX gives
// one int32 per block, so the float roundings differ in the last bits (test_kernels_amx bounds
// them; MICROLM_KERNELS=avx512 keeps llama.cpp's order). Decode (one token) is unchanged.
//
// Compiled with AMX and AVX-512 flags: nothing here runs before kernels_amx() has checked the
// CPU and asked the kernel for the tile state (arch_prctl), and there are no namespace-scope
// initialisers or shared inline templates (see kernels_avx512.cpp).
#include "microlm/kernels.h"

#if defined(__x86_64__) && defined(__linux__)

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "x86_simd.h"

namespace microlm {

namespace {

constexpr int kTile = 16;            // weight rows and tokens per tile
constexpr int64_t kBBytes = 8 * 64;  // one block of 16 tokens in the B tile layout
// Tile registers: C 0 and 1, A 2 and 3, B 4 and 5 (GCC's tile intrinsics stringize their
// operands, so the numbers are written out below).
constexpr int kC0 = 0, kC1 = 1, kA0 = 2, kA1 = 3, kB0 = 4, kB1 = 5;

// LDTILECFG's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
    uint8_t palette = 0;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// C tiles 16 rows x 16 int32, A tiles 16 weight rows x 32 bytes (one block), B tiles 8 rows
// of 16 tokens x 4 bytes. A thread's tile configuration survives context switches (XSAVE),
// so each thread loads it once.
void configure_tiles() {
    thread_local bool configured = false;
    if (configured) return;
    TileConfig c;
    c.palette = 1;
    for (int t : {kC0, kC1}) c.colsb[t] = 64, c.rows[t] = 16;
    for (int t : {kA0, kA1}) c.colsb[t] = 32, c.rows[t] = 16;
    for (int t : {kB0, kB1}) c.colsb[t] = 64, c.rows[t] = 8;
    _tile_loadconfig(&c);
    configured = true;
}

// The two fp16 values that start 16 blocks (`offsets` from `base`) as floats: the first (a
// block's d) into `first`, the second (Q8_1's s, Q4_1's m) into `second` when it is not null.
inline __attribute__((always_inline)) void block_scales(__m512i offsets, const uint8_t* base, float* first,
                                                        float* second) {
    const __m512i ds = _mm512_i32gather_epi32(offsets, base, 1);
    _mm512_storeu_ps(first, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(ds)));
    if (second) _mm512_storeu_ps(second, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(ds, 16))));
}

// Offsets 0, stride, ..., 15 * stride for the gathers (stride * 15 < 2 GiB).
inline __m512i row_offsets(size_t stride) {
    alignas(64) int32_t rows[kTile];
    for (int t = 0; t < kTile; t++) rows[t] = static_cast<int32_t>(static_cast<size_t>(t) * stride);
    return _mm512_load_si512(rows);
}

// A row tile's fp16 scales (and, when mw is not null, Q4_1's minimums after them) of every
// block as floats: row i's of block b at dw[b * 16 + i]; the rows are rb bytes apart.
void row_tile_scales(const uint8_t* wrow, size_t rb, size_t block_bytes, int64_t nb, float* dw, float* mw) {
    const __m512i rows = row_offsets(rb);
    for (int64_t b = 0; b < nb; b++)
        block_scales(rows, wrow + b * block_bytes, dw + b * kTile, mw ? mw + b * kTile : nullptr);
}

// Tokens [g * 16, g * 16 + 16) of prepared activations (Q8_0 blocks for Q8_0 and Q4_0
// weights, Q8_1 for Q4_1) in the B tile layout: for block b, 512 bytes whose row j holds bytes
// 4j..4j+3 of tokens 0..15; their scales (and Q8_1's sums, into xs) as floats. One gather per
// row: dword j of the block's quants from each of the 16 tokens.
void pack_activations(const uint8_t* x, size_t x_stride, int64_t groups, int64_t nb, bool q8_1, uint8_t* xb,
                      float* xd, float* xs) {
    const __m512i offsets = row_offsets(x_stride);
    const size_t block = q8_1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0), qs = q8_1 ? 4 : 2;
    for (int64_t g = 0; g < groups; g++) {
        const uint8_t* base = x + static_cast<size_t>(g * kTile) * x_stride;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t* blk = base + static_cast<size_t>(b) * block;
            auto* dst = reinterpret_cast<__m512i*>(xb + static_cast<size_t>(g * nb + b) * kBBytes);
            for (int j = 0; j < 8; j++)
                _mm512_store_si512(dst + j, _mm512_i32gather_epi32(offsets, blk + qs + 4 * j, 1));
            block_scales(offsets, blk, xd + (g * nb + b) * kTile, q8_1 ? xs + (g * nb + b) * kTile : nullptr);
        }
    }
}

// acc[i] (tokens 0..15 of row i) += float(C[i]) * d_w[i] * d_x, for one block's C tile.
inline __attribute__((always_inline)) void scale_into(const int32_t* c, const float* dw, __m512 dx, __m512* acc) {
    for (int i = 0; i < kTile; i++) {
        const __m512 s = _mm512_mul_ps(dx, _mm512_set1_ps(dw[i]));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + i * kTile)), s, acc[i]);
    }
}

// 16 weight rows as the A tiles read them: block b of row i at q + i * row_stride + b *
// block_stride (32 int8 quants), its scale at dw[b * 16 + i] and, for Q4_1, its minimum at
// mw[b * 16 + i].
struct WeightTile {
    const uint8_t* q;
    size_t row_stride, block_stride;
    const float* dw;
    const float* mw;
};

// Q8_0: the quants are read in place; only the scales are gathered (once per row tile, shared
// by its token groups).
WeightTile q8_0_rows(const uint8_t* wrow, size_t rb, int64_t nb, float* dw) {
    row_tile_scales(wrow, rb, sizeof(BlockQ8_0), nb, dw, nullptr);
    return {wrow + 2, rb, sizeof(BlockQ8_0), dw, nullptr};
}

// Q4_0 / Q4_1: 16 rows unpacked to one int8 per weight (low nibbles are quants 0..15 of a
// block, high nibbles 16..31; Q4_0's minus 8), rows nb * 32 bytes apart in `buf`.
// Four blocks at a time on 512-bit registers: their 16-byte quant fields side by side, the low
// and high nibbles split at once, then put back block by block ([low | high] per block).
template <DType W>
WeightTile q4_rows(const uint8_t* wrow, size_t rb, int64_t nb, uint8_t* buf, float* dw, float* mw) {
    using Block = std::conditional_t<W == DType::Q4_0, BlockQ4_0, BlockQ4_1>;
    const __m128i low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    const __m512i low4 = _mm512_set1_epi8(0x0F), eight4 = _mm512_set1_epi8(8);
    // 64-bit lanes from (low, high): blocks 0 and 1, then blocks 2 and 3, each [low | high].
    const __m512i first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    const size_t stride = static_cast<size_t>(nb) * 32;
    for (int i = 0; i < kTile; i++) {
        const auto* blocks = reinterpret_cast<const Block*>(wrow + i * rb);
        uint8_t* out = buf + static_cast<size_t>(i) * stride;
        const auto qs = [&](int64_t b) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[b].qs)); };
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            __m512i q = _mm512_castsi128_si512(qs(b));
            q = _mm512_inserti32x4(q, qs(b + 1), 1);
            q = _mm512_inserti32x4(q, qs(b + 2), 2);
            q = _mm512_inserti32x4(q, qs(b + 3), 3);
            __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
            if constexpr (W == DType::Q4_0) {
                lo = _mm512_sub_epi8(lo, eight4);
                hi = _mm512_sub_epi8(hi, eight4);
            }
            _mm512_storeu_si512(out + b * 32, _mm512_permutex2var_epi64(lo, first, hi));
            _mm512_storeu_si512(out + b * 32 + 64, _mm512_permutex2var_epi64(lo, second, hi));
        }
        for (; b < nb; b++) {
            const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[b].qs));
            __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
            if constexpr (W == DType::Q4_0) {
                lo = _mm_sub_epi8(lo, eight);
                hi = _mm_sub_epi8(hi, eight);
            }
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * 32), lo);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * 32 + 16), hi);
        }
    }
    row_tile_scales(wrow, rb, sizeof(Block), nb, dw, W == DType::Q4_1 ? mw : nullptr);
    return {buf, stride, 32, dw, W == DType::Q4_1 ? mw : nullptr};
}

// Rows [r, r + 16) x tokens [g * 16, g * 16 + 16), two blocks per step on two C tiles. The C
// tiles of a step are read back one step later (two buffers), so that their stores have landed
// in L1 by then instead of stalling the loads.
template <bool kMins>
void int8_tile(const WeightTile& w, int64_t nb, const uint8_t* xb, const float* xd, const float* xs, float* y,
               int64_t ldy) {
    alignas(64) int32_t c[2][2][kTile * kTile];
    __m512 acc[kTile];
    for (__m512& a : acc) a = _mm512_setzero_ps();
    const auto scale = [&](const int32_t* ct, int64_t blk) {
        scale_into(ct, w.dw + blk * kTile, _mm512_loadu_ps(xd + blk * kTile), acc);
    };
    const int rs = static_cast<int>(w.row_stride);
    int64_t b = 0;
    int buf = 0;
    int64_t pending = -1;  // the first block of the step whose C tiles sit in c[buf ^ 1]
    for (; b + 2 <= nb; b += 2) {
        const uint8_t* w0 = w.q + static_cast<size_t>(b) * w.block_stride;
        _tile_zero(0);
        _tile_zero(1);
        _tile_loadd(2, w0, rs);
        _tile_loadd(4, xb + static_cast<size_t>(b) * kBBytes, 64);
        _tile_loadd(3, w0 + w.block_stride, rs);
        _tile_loadd(5, xb + static_cast<size_t>(b + 1) * kBBytes, 64);
        _tile_dpbssd(0, 2, 4);
        _tile_dpbssd(1, 3, 5);
        if (pending >= 0) {
            scale(c[buf ^ 1][0], pending);
            scale(c[buf ^ 1][1], pending + 1);
        }
        _tile_stored(0, c[buf][0], 64);
        _tile_stored(1, c[buf][1], 64);
        pending = b;
        buf ^= 1;
    }
    if (pending >= 0) {
        scale(c[buf ^ 1][0], pending);
        scale(c[buf ^ 1][1], pending + 1);
    }
    if (b < nb) {
        _tile_zero(0);
        _tile_loadd(2, w.q + static_cast<size_t>(b) * w.block_stride, rs);
        _tile_loadd(4, xb + static_cast<size_t>(b) * kBBytes, 64);
        _tile_dpbssd(0, 2, 4);
        _tile_stored(0, c[0][0], 64);
        scale(c[0][0], b);
    }
    // acc[i] lane t is y[t][i]: written through a 16 x 16 buffer.
    alignas(64) float out[kTile][kTile];
    for (int i = 0; i < kTile; i++) _mm512_store_ps(out[i], acc[i]);
    if constexpr (kMins) {
        // Q4_1: mins[i] = sum over blocks of m_w[i] * s_x, in block order, then added to the
        // products' sum. A loop of its own: beside the tile loop's 16 accumulators these 16
        // would not fit the 32 vector registers (the spills cost ~a fifth of the kernel).
        __m512 mins[kTile];
        for (__m512& m : mins) m = _mm512_setzero_ps();
        for (int64_t blk = 0; blk < nb; blk++) {
            const __m512 sx = _mm512_loadu_ps(xs + blk * kTile);
            const float* mw = w.mw + blk * kTile;
            for (int i = 0; i < kTile; i++) mins[i] = _mm512_fmadd_ps(_mm512_set1_ps(mw[i]), sx, mins[i]);
        }
        for (int i = 0; i < kTile; i++) _mm512_store_ps(out[i], _mm512_add_ps(acc[i], mins[i]));
    }
    for (int t = 0; t < kTile; t++) {
        for (int i = 0; i < kTile; i++) y[t * ldy + i] = out[i][t];
    }
}

// The whole 16-row tiles and 16-token groups on AMX; returns the rows it did (from r0).
// Tokens past the last whole group and rows past the last whole tile are the caller's.
bool tiles_matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy,
                  int64_t* rows_done, int64_t* tokens_done) {
    const int64_t nb = w.cols / 32;
    const int64_t groups = n / kTile;
    const int64_t tiles = (r1 - r0) / kTile;
    *rows_done = *tokens_done = 0;
    if (nb == 0 || groups == 0 || tiles == 0) return true;
    // The gathers take 32-bit offsets: 16 tokens' rows must lie within 2 GiB.
    if (prepared_row_bytes(w.type, w.cols) * kTile > (size_t{1} << 30)) return false;
    const bool q8_1 = w.type == DType::Q4_1, unpack = w.type != DType::Q8_0;
    thread_local simd::Scratch scratch;
    const size_t xb_bytes = static_cast<size_t>(groups * nb) * kBBytes;
    const size_t w_bytes = unpack ? static_cast<size_t>(nb) * 32 * kTile : 0;
    const size_t floats = static_cast<size_t>((2 * groups + 2) * nb * kTile);  // xd, xs, dw, mw
    void* mem = scratch.get(xb_bytes + w_bytes + floats * sizeof(float));
    if (mem == nullptr) return false;
    auto* xb = static_cast<uint8_t*>(mem);
    uint8_t* wq = xb + xb_bytes;
    auto* xd = reinterpret_cast<float*>(wq + w_bytes);
    float* xs = xd + groups * nb * kTile;
    float* dw = xs + groups * nb * kTile;
    float* mw = dw + nb * kTile;
    pack_activations(static_cast<const uint8_t*>(x), prepared_row_bytes(w.type, w.cols), groups, nb, q8_1, xb,
                     xd, xs);
    configure_tiles();
    const auto* wbytes = static_cast<const uint8_t*>(w.data);
    for (int64_t tile = 0; tile < tiles; tile++) {
        const int64_t r = r0 + tile * kTile;
        const uint8_t* wrow = wbytes + static_cast<size_t>(r) * w.row_bytes;
        const WeightTile wt = w.type == DType::Q8_0 ? q8_0_rows(wrow, w.row_bytes, nb, dw)
                              : w.type == DType::Q4_0
                                  ? q4_rows<DType::Q4_0>(wrow, w.row_bytes, nb, wq, dw, mw)
                                  : q4_rows<DType::Q4_1>(wrow, w.row_bytes, nb, wq, dw, mw);
        for (int64_t g = 0; g < groups; g++) {
            const size_t at = static_cast<size_t>(g * nb);
            float* yg = y + g * kTile * ldy + r;
            if (q8_1)
                int8_tile<true>(wt, nb, xb + at * kBBytes, xd + at * kTile, xs + at * kTile, yg, ldy);
            else
                int8_tile<false>(wt, nb, xb + at * kBBytes, xd + at * kTile, nullptr, yg, ldy);
        }
    }
    *rows_done = tiles * kTile;
    *tokens_done = groups * kTile;
    return true;
}

void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    const Kernels& base = *kernels_avx512();
    int64_t rows = 0, tokens = 0;
    const bool tiled = w.type == DType::Q8_0 || w.type == DType::Q4_0 || w.type == DType::Q4_1;
    if (!tiled || n < kTile || r1 - r0 < kTile || w.row_bytes > (size_t{1} << 20) ||
        !tiles_matmul(w, r0, r1, x, n, y, ldy, &rows, &tokens)) {
        return base.matmul(w, r0, r1, x, n, y, ldy);
    }
    // What the tiles left: the last rows for the tokens done, then every row for the rest.
    if (r0 + rows < r1) base.matmul(w, r0 + rows, r1, x, tokens, y, ldy);
    if (tokens < n) {
        const size_t x_stride = prepared_row_bytes(w.type, w.cols);
        base.matmul(w, r0, r1, static_cast<const uint8_t*>(x) + static_cast<size_t>(tokens) * x_stride,
                    n - tokens, y + tokens * ldy, ldy);
    }
}

void prepare(DType weight, const float* x, int64_t n, int64_t cols, void* out) {
    kernels_avx512()->prepare(weight, x, n, cols, out);
}
float dot(DType weight, const void* w_row, const void* x_prepared, int64_t cols) {
    return kernels_avx512()->dot(weight, w_row, x_prepared, cols);
}
void attn_scores(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys, int64_t hd,
                 float scale, float* scores) {
    kernels_avx512()->attn_scores(q16, k, stride, n_keys, hd, scale, scores);
}
void attn_values(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys, int64_t hd, float* out) {
    kernels_avx512()->attn_values(p, v, stride, n_keys, hd, out);
}
void swiglu(const float* gate, const float* up, int64_t n, float* out) {
    kernels_avx512()->swiglu(gate, up, n, out);
}
void attn_softmax(float* s, int64_t n) {
    kernels_avx512()->attn_softmax(s, n);
}

constexpr Kernels kAmx = {"amx", prepare, dot, matmul, attn_scores, attn_values, swiglu, attn_softmax};

// CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8. Linux hands out the tile data state
// only to processes that ask (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, kernel 5.16+).
bool amx_usable() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (((d >> 24) & 1) == 0 || ((d >> 25) & 1) == 0) return false;
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

const Kernels* kernels_amx() {
    static const Kernels* const table = [] {
        return kernels_avx512() != nullptr && amx_usable() ? &kAmx : nullptr;
    }();
    return table;
}

}  // namespace microlm

#else  // not x86-64 Linux: no such backend in this build

namespace microlm {
const Kernels* kernels_amx() {
    return nullptr;
}
}  // namespace microlm

#endif
