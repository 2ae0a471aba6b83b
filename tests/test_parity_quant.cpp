// The Q5_0, Q5_1 and K-quant block layouts against an independent decoder: random blocks that
// the oracle (tests/oracle/quant_cases.py) dequantized with the PyPI gguf package's numpy code.
// Our reference dequantizer must give the same floats (both round each product to float32;
// the tolerance allows one rounding of the largest value), and the reference dot product must
// equal a double-precision dot of those floats with the dequantized activations. The K-quant
// dots are also held to llama.cpp's own (its libggml-cpu, called by the oracle) bit for bit
// where llama.cpp multiplies with them on x86.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "microlm/dtype.h"
#include "microlm/kernels.h"

using namespace microlm;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct Case {
    DType type;
    const char* name;
};
constexpr Case kCases[] = {{DType::Q5_0, "Q5_0"}, {DType::Q5_1, "Q5_1"}, {DType::Q2_K, "Q2_K"}, {DType::Q3_K, "Q3_K"},
                           {DType::Q4_K, "Q4_K"}, {DType::Q5_K, "Q5_K"}, {DType::Q6_K, "Q6_K"}};

}  // namespace

TEST(ParityQuant, DequantizeMatchesGgufPackage) {
    for (const Case& c : kCases) {
        const std::string base = std::string(MICROLM_ORACLE_DIR) + "/quant_" + c.name;
        const std::vector<uint8_t> raw = read_bytes(base + ".bin");
        const std::vector<uint8_t> fbytes = read_bytes(base + ".f32");
        ASSERT_FALSE(raw.empty()) << "missing " << base << ".bin: run the oracle (ctest runs oracle_setup first)";
        const size_t n = fbytes.size() / sizeof(float);
        std::vector<float> expected(n);
        std::memcpy(expected.data(), fbytes.data(), n * sizeof(float));
        ASSERT_EQ(raw.size(), n / static_cast<size_t>(dtype_block_elems(c.type)) * dtype_block_bytes(c.type)) << c.name;

        std::vector<float> got(n);
        dequantize_row(c.type, raw.data(), got.data(), static_cast<int64_t>(n));
        double worst = 0, amax = 0;
        for (size_t i = 0; i < n; i++) {
            worst = std::max(worst, static_cast<double>(std::fabs(got[i] - expected[i])));
            amax = std::max(amax, static_cast<double>(std::fabs(expected[i])));
        }
        std::printf("%s: %zu values, max |ours - gguf| %.3g (max |x| %.3g)\n", c.name, n, worst, amax);
        EXPECT_LE(worst, amax * 1.2e-7) << c.name;

        // The reference dot: each row of one block (or 256 elements) against random activations.
        const int64_t cols = std::max<int64_t>(dtype_block_elems(c.type), kQKK);
        const int64_t rows = static_cast<int64_t>(n) / cols;
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(cols));
        for (float& v : x) v = u(rng);
        const Kernels& k = kernels_scalar();
        std::vector<uint8_t> xp(prepared_row_bytes(c.type, cols));
        k.prepare(c.type, x.data(), 1, cols, xp.data());
        std::vector<float> xdeq(static_cast<size_t>(cols));
        dequantize_row(activation_type(c.type), xp.data(), xdeq.data(), cols);
        const size_t row_bytes = dtype_row_bytes(c.type, cols);
        double worst_rel = 0;
        for (int64_t r = 0; r < rows; r++) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < cols; i++) {
                exact += static_cast<double>(expected[static_cast<size_t>(r * cols + i)]) * xdeq[static_cast<size_t>(i)];
                mag += std::fabs(static_cast<double>(expected[static_cast<size_t>(r * cols + i)]) * xdeq[static_cast<size_t>(i)]);
            }
            const float got_dot = k.dot(c.type, raw.data() + static_cast<size_t>(r) * row_bytes, xp.data(), cols);
            worst_rel = std::max(worst_rel, std::fabs(got_dot - exact) / mag);
        }
        std::printf("%s: scalar dot vs double dot of the dequantized rows, max error %.3g of sum |w x|\n", c.name,
                    worst_rel);
        EXPECT_LE(worst_rel, 1e-5) << c.name;
    }
}

// Each K-quant block against activations that ggml quantized, dotted by ggml_vec_dot_<type>_q8_K.
// Q2_K, Q3_K and Q6_K must agree bit for bit with every backend: that is the order llama.cpp's
// x86 backend multiplies them in. Q4_K and Q5_K matrices llama.cpp repacks (their order is
// checked at the model level, test_parity_model's random K-quant files), so their plain dot
// product only has to agree to rounding.
TEST(ParityQuant, KQuantDotsSumAsLlamaCpp) {
    const Kernels* backends[] = {&kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_neon()};
    for (const Case& c : kCases) {
        if (!is_k_quant(c.type)) continue;
        const std::string base = std::string(MICROLM_ORACLE_DIR) + "/quant_" + c.name;
        const std::vector<uint8_t> raw = read_bytes(base + ".bin");
        const std::vector<uint8_t> q8k = read_bytes(base + ".q8k");
        const std::vector<uint8_t> dots = read_bytes(base + ".dot");
        ASSERT_FALSE(q8k.empty()) << "missing " << base << ".q8k: the oracle predates the ggml dot cases; rerun it";
        ASSERT_EQ(q8k.size(), sizeof(BlockQ8_K));
        const size_t bytes = dtype_block_bytes(c.type), blocks = raw.size() / bytes;
        ASSERT_EQ(dots.size(), blocks * sizeof(float)) << c.name;
        const bool exact = c.type == DType::Q2_K || c.type == DType::Q3_K || c.type == DType::Q6_K;
        for (const Kernels* k : backends) {
            if (k == nullptr) continue;
            size_t differ = 0;
            double worst = 0;
            for (size_t b = 0; b < blocks; b++) {
                float want;
                std::memcpy(&want, dots.data() + b * sizeof(float), sizeof want);
                const float got = k->dot(c.type, raw.data() + b * bytes, q8k.data(), kQKK);
                differ += got != want;
                worst = std::max(worst, static_cast<double>(std::fabs(got - want)) / (1.0 + std::fabs(want)));
            }
            std::printf("%-6s %s: %zu of %zu dots differ from ggml_vec_dot (max rel %.2g)%s\n", k->name, c.name,
                        differ, blocks, worst, exact ? "" : ", repacked in llama.cpp: rounding allowed");
            if (exact) {
                EXPECT_EQ(differ, 0u) << k->name << " " << c.name;
            } else {
                EXPECT_LE(worst, 1e-5) << k->name << " " << c.name;
            }
        }
    }
}
