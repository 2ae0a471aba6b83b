// Shared fixtures for the kernel tests (test_kernels*.cpp): random quantized weight matrices
// with their dequantized copy, activations with outlier channels, and prepared activations.
// Test-only; not part of the library.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "microlm/kernels.h"

namespace microlm::test {

inline std::string name(DType t) { return std::string(dtype_name(static_cast<uint32_t>(t))); }

// A weight matrix in `type` plus its dequantized float copy, the reference's view of it.
struct Matrix {
    DType type;
    int64_t rows, cols;
    size_t row_bytes;
    std::vector<uint8_t> data;
    std::vector<float> deq;  // (rows, cols)

    WeightRef ref() const { return {type, data.data(), rows, cols, row_bytes}; }
    const void* row(int64_t r) const { return data.data() + static_cast<size_t>(r) * row_bytes; }
};

// Rows at different scales, some offset from zero (Q4_1's minimum matters then).
inline Matrix random_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Matrix m{type, rows, cols, dtype_row_bytes(type, cols), {}, {}};
    m.data.resize(m.row_bytes * static_cast<size_t>(rows));
    m.deq.resize(static_cast<size_t>(rows * cols));
    std::vector<float> src(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; r++) {
        const float scale = std::pow(4.0f, static_cast<float>(r % 4) - 2.0f);
        const float shift = (r % 3 == 1) ? 0.5f * scale : 0.0f;
        for (float& v : src) v = u(rng) * scale + shift;
        quantize_row(type, src.data(), m.data.data() + static_cast<size_t>(r) * m.row_bytes, cols);
        dequantize_row(type, m.row(r), m.deq.data() + r * cols, cols);
    }
    return m;
}

// Activations with a few outlier channels, as transformer hidden states have.
inline std::vector<float> random_activations(int64_t n, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n * cols));
    for (size_t i = 0; i < x.size(); i++) x[i] = u(rng) * ((i % 97 == 5) ? 8.0f : 1.0f);
    return x;
}

// x prepared by backend k for weight type w; the buffer starts as `fill` so that a backend
// leaving bytes unwritten shows up when two backends are compared.
inline std::vector<uint8_t> prepared(const Kernels& k, DType w, const std::vector<float>& x, int64_t n,
                                     int64_t cols, uint8_t fill = 0) {
    std::vector<uint8_t> out(prepared_row_bytes(w, cols) * static_cast<size_t>(n), fill);
    k.prepare(w, x.data(), n, cols, out.data());
    return out;
}

}  // namespace microlm::test
