// The compute kernels behind one small interface: activation preparation, dot product,
// matrix x vector and matrix x matrix per weight type. A backend (scalar, AVX2, ...) is one
// file filling a Kernels table; the scalar table is the oracle the others are tested against.
#pragma once

#include <cstddef>
#include <cstdint>

#include "microlm/dtype.h"

namespace microlm {

// A weight matrix of `rows` rows of `cols` elements each, rows `row_bytes` apart
// (ggml's ne0 = cols is the contiguous dimension).
struct WeightRef {
    DType type;
    const void* data;
    int64_t rows;
    int64_t cols;
    size_t row_bytes;
};

// Activations are "prepared" once per matrix product into the format the weight type
// multiplies against, as ggml does (its vec_dot_type): F32 weights -> F32, F16 -> F16,
// Q4_0 and Q8_0 -> Q8_0 blocks, Q4_1 -> Q8_1 blocks.
DType activation_type(DType weight);
size_t prepared_row_bytes(DType weight, int64_t cols);

struct Kernels {
    const char* name;
    // out = n rows of `cols` floats (x, row stride cols) converted to activation_type(weight);
    // out row stride is prepared_row_bytes(weight, cols).
    void (*prepare)(DType weight, const float* x, int64_t n, int64_t cols, void* out);
    // Dot product of one weight row with one prepared activation row of `cols` elements.
    float (*dot)(DType weight, const void* w_row, const void* x_prepared, int64_t cols);
    // y[t * ldy + r] = dot(W[r], X[t]) for r in [r0, r1) and t in [0, n); X prepared.
    // n == 1 is matrix x vector. Rows are split across threads by the caller via r0/r1.
    void (*matmul)(const WeightRef& w, int64_t r0, int64_t r1, const void* x_prepared, int64_t n,
                   float* y, int64_t ldy);
    // Attention for one query head against an fp16 KV cache whose rows are `stride` halves
    // apart (head_dim hd): scores[j] = scale * dot(q16, k[j]) for j in [0, n_keys).
    void (*attn_scores)(const uint16_t* q16, const uint16_t* k, int64_t stride, int64_t n_keys,
                        int64_t hd, float scale, float* scores);
    // out[d] = sum_j p[j] * v[j][d] for d in [0, hd).
    void (*attn_values)(const float* p, const uint16_t* v, int64_t stride, int64_t n_keys,
                        int64_t hd, float* out);
    // SwiGLU: out[i] = g / (1 + expf(-g)) * up[i], g = gate[i], for i in [0, n); out may be gate.
    // Bit-identical to swiglu_reference (libm's expf) on every table.
    void (*swiglu)(const float* gate, const float* up, int64_t n, float* out);
    // One head's attention weights from its n scores, in place, as llama.cpp's CPU attention
    // makes them: e_j = expf(s_j - max), summed in double in index order, then e_j * float(1 / sum)
    // rounded to fp16 (and back to float). Bit-identical to attn_softmax_reference on every table.
    void (*attn_softmax)(float* s, int64_t n);
};

// The scalar SwiGLU, libm's expf: the tables without a vector one use it.
void swiglu_reference(const float* gate, const float* up, int64_t n, float* out);
// The scalar attention softmax, libm's expf and the portable fp16 rounding.
void attn_softmax_reference(float* s, int64_t n);

// Weight types whose x86 vector path is the AVX2 table's (Q5_0, Q5_1, the K-quants): the
// AVX-512 and AMX tables hand them to it, so every backend runs every type.
inline bool avx2_only(DType t) {
    return t == DType::Q5_0 || t == DType::Q5_1 || is_k_quant(t);
}

const Kernels& kernels_scalar();
// nullptr when this build or this CPU has no such backend.
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();  // AVX-512 F/BW/VL (+ VNNI when present)
const Kernels* kernels_neon();    // aarch64 NEON (+ dotprod when present)
// AVX-512 plus Intel AMX tiles for Q8_0 products of 16 tokens or more (prefill), where the CPU
// has AMX-INT8 and Linux grants the tile state. Its Q8_0 prefill sums differ from llama.cpp's
// order in the last bits (kernels_amx.cpp); MICROLM_KERNELS=avx512 gives the bit-exact table.
const Kernels* kernels_amx();
// The fastest backend this CPU supports (amx, avx512, avx2, neon, scalar);
// MICROLM_KERNELS=scalar|avx2|avx512|amx|neon overrides.
const Kernels& kernels_best();

}  // namespace microlm
