// The K-quant matrix products' shared frame: rows, tiles of tokens, one unpacking of each
// super-block per tile, and the float steps after the exact integer part, in llama.cpp's x86
// order. The scalar and AVX2 tables differ only in how they take the integer part (eight lanes
// per super-block and token), so their results are bit-identical, and identical to llama.cpp's
// where its order is mirrored (Q4_K, Q5_K, Q6_K): a last-bit difference flips activation codes
// downstream, which is what kept our own K-quant files 0.03-0.04 of a logit from llama.cpp's.
// Private to the kernels part.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "microlm/dtype.h"
#include "microlm/kernels.h"

namespace microlm::ksum {

constexpr int kLanes = 8;
constexpr int kQuarters = kQKK / 64;  // the repacked kernels' steps: two runs of 32 each
// Tokens per unpacking of a super-block (the unpacking costs more than one token's multiply).
// No allocation: the forward pass allocates nothing.
constexpr int64_t kTokens = 64;

// The integer part of a super-block against one token: lanes[q][l], for each quarter q (64
// elements: the runs of 32 c = 2q, 2q+1), sums over those runs the scale of the run of 16
// holding elements 32c+4l..32c+4l+3 times their four integer products (codes as stored).
// Exact. This is the reference for the SIMD versions.
using Lanes = int32_t[kQuarters][kLanes];

inline void lanes_reference(const UnpackedK& u, const BlockQ8_K& x, Lanes& lanes) {
    for (int q = 0; q < kQuarters; q++) {
        for (int l = 0; l < kLanes; l++) {
            int32_t sum = 0;
            for (int c = 2 * q; c < 2 * q + 2; c++) {
                int32_t p = 0;
                for (int e = 32 * c + 4 * l; e < 32 * c + 4 * l + 4; e++) p += u.q[e] * x.qs[e];
                sum += u.scale[2 * c + l / 4] * p;
            }
            lanes[q][l] = sum;
        }
    }
}

// min * (sum of the activation codes) over the runs of 16 g in [g0, g1): the minimum's integer part.
inline int32_t min_sum(const UnpackedK& u, const BlockQ8_K& x, int g0 = 0, int g1 = kQKK / 16) {
    int32_t s = 0;
    for (int g = g0; g < g1; g++) s += u.min[g] * x.bsums[g];
    return s;
}

// One output's float accumulation, per type as llama.cpp's x86 CPU backend finishes it
// (checked against llama-cpp-python 0.3.36's libggml-cpu, built as scripts/setup.sh builds it):
// - Q4_K and Q5_K: llama.cpp repacks these matrices (rows a multiple of 8) and multiplies a
//   token in a group of four (the first n - n % 4 of a batch) one quarter of a super-block at a
//   time, any other token one whole super-block at a time: the step's integer total times
//   (d_w d_x), and its minimum's total times (dmin_w d_x), each into its own accumulator with a
//   fused multiply-add; the result is their difference. Matrices of other row counts take its
//   plain dot product there, which rounds otherwise and is not mirrored.
// - Q6_K (and Q3_K): lane l += (d_x d_w) * lane total, fused; the result is the lanes' pairwise
//   tree (l with l+4, l+2, l+1). Q6_K's codes are stored 0..63 and its offset 32 comes off
//   through the activations' run sums: lane l loses 32 (scale_2l bsum_2l + scale_2l+1
//   bsum_2l+1), runs that are not the elements the lane summed (taking the offset per element
//   differed from ggml_vec_dot_q6_K_q8_K on 3,087 of 4,096 dots; this way on none).
// - Q2_K: as Q6_K, the minimum's term first: lane l += -(d_x dmin_w) * (min_2l bsum_2l +
//   min_2l+1 bsum_2l+1), fused, before the scale part of the same super-block.
// Q2_K, Q3_K and Q6_K are held to ggml_vec_dot_<type>_q8_K bit for bit (test_parity_quant).
struct Accum {
    float lanes[kLanes] = {};
    float scaled = 0.0f;  // Q4_K, Q5_K: the scale part
    float mins = 0.0f;    // Q4_K, Q5_K: the minimum's part

    void add(DType t, const UnpackedK& u, const BlockQ8_K& x, const Lanes& il, bool grouped) {
        if (t == DType::Q4_K || t == DType::Q5_K) {
            const float ds = u.d * x.d, dm = u.dmin * x.d;
            int32_t total = 0;
            for (int q = 0; q < kQuarters; q++) {
                int32_t step = 0;
                for (int l = 0; l < kLanes; l++) step += il[q][l];
                if (grouped) {
                    scaled = std::fma(static_cast<float>(step), ds, scaled);
                    mins = std::fma(static_cast<float>(min_sum(u, x, 4 * q, 4 * q + 4)), dm, mins);
                }
                total += step;
            }
            if (!grouped) {
                scaled = std::fma(static_cast<float>(total), ds, scaled);
                mins = std::fma(static_cast<float>(min_sum(u, x)), dm, mins);
            }
            return;
        }
        if (t == DType::Q2_K) {
            const float dmin = -x.d * u.dmin;
            for (int l = 0; l < kLanes; l++) {
                const int32_t m = u.min[2 * l] * x.bsums[2 * l] + u.min[2 * l + 1] * x.bsums[2 * l + 1];
                lanes[l] = std::fma(dmin, static_cast<float>(m), lanes[l]);
            }
        }
        const float d = x.d * u.d;
        for (int l = 0; l < kLanes; l++) {
            int32_t lane = 0;
            for (int q = 0; q < kQuarters; q++) lane += il[q][l];
            if (u.offset != 0) lane -= u.offset * (u.scale[2 * l] * x.bsums[2 * l] + u.scale[2 * l + 1] * x.bsums[2 * l + 1]);
            lanes[l] = std::fma(d, static_cast<float>(lane), lanes[l]);
        }
    }

    float result(DType t) {
        if (t == DType::Q4_K || t == DType::Q5_K) return scaled - mins;
        for (int width = kLanes / 2; width >= 1; width /= 2) {
            for (int l = 0; l < width; l++) lanes[l] += lanes[l + width];
        }
        return lanes[0];
    }
};

// y[t * ldy + r] for rows [r0, r1) and n tokens of Q8_K activations. `Block` decodes one
// super-block for the tile's tokens (Block b(type, raw, u): it fills u, the codes included or
// not, as its lanes need); b.lanes(x, il) writes the integer lanes against one token's block x.
template <typename Block>
void matmul(const WeightRef& w, int64_t r0, int64_t r1, const void* x, int64_t n, float* y, int64_t ldy) {
    const size_t x_stride = prepared_row_bytes(w.type, w.cols);
    const size_t bytes = dtype_block_bytes(w.type);
    const int64_t nb = w.cols / kQKK;
    const int64_t grouped = n - n % 4;  // tokens llama.cpp's repacked kernels take four at a time
    UnpackedK u;
    Accum acc[kTokens];
    Lanes il;
    for (int64_t r = r0; r < r1; r++) {
        const auto* row = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
        for (int64_t t0 = 0; t0 < n; t0 += kTokens) {
            const int64_t nt = std::min(kTokens, n - t0);
            std::fill(acc, acc + nt, Accum{});
            for (int64_t b = 0; b < nb; b++) {
                const Block blk(w.type, row + static_cast<size_t>(b) * bytes, u);
                for (int64_t t = 0; t < nt; t++) {
                    const auto& xb = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(x) +
                                                                        static_cast<size_t>(t0 + t) * x_stride)[b];
                    blk.lanes(xb, il);
                    acc[t].add(w.type, u, xb, il, t0 + t < grouped);
                }
            }
            for (int64_t t = 0; t < nt; t++) y[(t0 + t) * ldy + r] = acc[t].result(w.type);
        }
    }
}

}  // namespace microlm::ksum
