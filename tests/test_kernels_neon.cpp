// Tests for the NEON Kernels table against the scalar oracle: prepare byte for byte (rounding
// ties, every fp16 value, NaN and infinity patterns), matmul within a named per-type tolerance
// (0 for the quantized types; the K-quants are held to it in test_kernels.cpp),
// dot == matmul bit for bit up to 64 tokens, and the int16 headroom of the non-dotprod path.
// Skipped where the build has no NEON (x86); scripts/test_aarch64.sh runs it on both NEON paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "microlm/kernels.h"

using namespace microlm;
using namespace microlm::test;

namespace {

// NEON vs scalar, as a fraction of sum_i |w_i x_i| over the dequantized row and prepared
// activations. F32/F16 differ in float summation order: 4 lanes x 4 accumulators (the scalar
// table sums in double), about cols/16 + 4 roundings (2^-24 each). The quantized types sum in
// one order on both (llama.cpp's x86 lanes, neon_rows.h): bit-identical.
constexpr double kF32Tol = 2e-6;
constexpr double kF16Tol = 2e-6;
constexpr double kQuantTol = 0.0;

struct TypeCase {
    DType type;
    double tol;
};
constexpr TypeCase kTypes[] = {
    {DType::F32, kF32Tol},    {DType::F16, kF16Tol},    {DType::Q4_0, kQuantTol}, {DType::Q4_1, kQuantTol},
    {DType::Q5_0, kQuantTol}, {DType::Q5_1, kQuantTol}, {DType::Q8_0, kQuantTol},
};

}  // namespace

TEST(KernelsNeon, PrepareIsBitIdenticalToScalar) {
    const Kernels* neon = kernels_neon();
    if (neon == nullptr) GTEST_SKIP() << "no NEON backend in this build";
    for (const TypeCase& tc : kTypes) {
        for (int64_t cols : {32, 64, 576, 1536}) {
            const std::vector<float> x = random_activations(8, cols, 7);
            EXPECT_EQ(prepared(*neon, tc.type, x, 8, cols), prepared(kernels_scalar(), tc.type, x, 8, cols))
                << name(tc.type) << " cols " << cols;
        }
    }
    // Exact halves after scaling (d = 1): FCVTNS must round them to even, as nearbyint does.
    std::vector<float> ties(kQK);
    for (int j = 0; j < kQK; j++) ties[static_cast<size_t>(j)] = static_cast<float>(j - 16) + 0.5f;
    ties[0] = -127.0f;
    for (DType w : {DType::Q8_0, DType::Q4_1}) {
        EXPECT_EQ(prepared(*neon, w, ties, 1, kQK), prepared(kernels_scalar(), w, ties, 1, kQK)) << name(w);
    }
    // F16 through FCVTN: every half value, the midpoints between neighbours (ties to even, both
    // signs), and random bit patterns including infinities, NaNs and subnormals.
    std::vector<float> f;
    for (uint32_t h = 0; h < 0x10000; h++) f.push_back(fp16_to_fp32(static_cast<uint16_t>(h)));
    for (uint16_t h = 0; h < 0x7bff; h++) {
        const float mid =
            fp16_to_fp32(h) + (fp16_to_fp32(static_cast<uint16_t>(h + 1)) - fp16_to_fp32(h)) / 2;
        f.push_back(mid);
        f.push_back(-mid);
    }
    std::mt19937 rng(1);
    for (int i = 0; i < 100000; i++) {
        const uint32_t bits = rng();
        float v;
        std::memcpy(&v, &bits, sizeof v);
        f.push_back(v);
    }
    const auto cols = static_cast<int64_t>(f.size());
    EXPECT_EQ(prepared(*neon, DType::F16, f, 1, cols), prepared(kernels_scalar(), DType::F16, f, 1, cols));
}

TEST(KernelsNeon, MatmulMatchesScalar) {
    const Kernels* neon = kernels_neon();
    if (neon == nullptr) GTEST_SKIP() << "no NEON backend in this build";
    const Kernels& scalar = kernels_scalar();
    for (const TypeCase& tc : kTypes) {
        double worst_abs = 0.0, worst_rel = 0.0;
        for (int64_t cols : {32, 64, 576, 1536}) {
            for (int64_t rows : {1, 7, 33}) {
                for (int64_t n : {1, 3, 8}) {
                    const Matrix m = random_matrix(tc.type, rows, cols, static_cast<uint32_t>(rows * 1000 + cols));
                    const std::vector<uint8_t>& w = m.data;
                    const std::vector<float>& wdeq = m.deq;
                    const WeightRef ref{tc.type, w.data(), rows, cols, dtype_row_bytes(tc.type, cols)};
                    const std::vector<float> x = random_activations(n, cols, 5);
                    const std::vector<uint8_t> xp = prepared(scalar, tc.type, x, n, cols);
                    std::vector<float> xdeq(static_cast<size_t>(n * cols));
                    const size_t stride = prepared_row_bytes(tc.type, cols);
                    for (int64_t t = 0; t < n; t++) {
                        dequantize_row(activation_type(tc.type), xp.data() + t * stride,
                                       xdeq.data() + t * cols, cols);
                    }
                    std::vector<float> ys(static_cast<size_t>(n * rows)), yn(ys.size());
                    scalar.matmul(ref, 0, rows, xp.data(), n, ys.data(), rows);
                    neon->matmul(ref, 0, rows, xp.data(), n, yn.data(), rows);
                    for (int64_t t = 0; t < n; t++) {
                        for (int64_t r = 0; r < rows; r++) {
                            double l1 = 0.0;
                            for (int64_t i = 0; i < cols; i++) {
                                l1 += std::fabs(static_cast<double>(wdeq[static_cast<size_t>(r * cols + i)]) *
                                                xdeq[static_cast<size_t>(t * cols + i)]);
                            }
                            const size_t at = static_cast<size_t>(t * rows + r);
                            const double err = std::fabs(static_cast<double>(yn[at]) - ys[at]);
                            worst_abs = std::max(worst_abs, err);
                            worst_rel = std::max(worst_rel, err / l1);
                            ASSERT_LE(err, tc.tol * l1) << name(tc.type) << " cols " << cols << " rows "
                                                        << rows << " n " << n << " at row " << r << " token "
                                                        << t << ": neon " << yn[at] << " scalar " << ys[at];
                        }
                    }
                }
            }
        }
        std::printf("neon vs scalar %-4s: max abs %.3g, max rel %.3g (tol %.3g)\n", name(tc.type).c_str(),
                    worst_abs, worst_rel, tc.tol);
    }
}

// F32 and F16 rows need not be a multiple of any vector width.
TEST(KernelsNeon, FloatTails) {
    const Kernels* neon = kernels_neon();
    if (neon == nullptr) GTEST_SKIP() << "no NEON backend in this build";
    for (DType type : {DType::F32, DType::F16}) {
        for (int64_t cols : {1, 3, 4, 7, 15, 16, 17, 31, 33, 100}) {
            const Matrix m = random_matrix(type, 3, cols, 11);
            const std::vector<uint8_t>& w = m.data;
            const size_t row_bytes = dtype_row_bytes(type, cols);
            const std::vector<float> x = random_activations(5, cols, 12);
            const std::vector<uint8_t> xp = prepared(kernels_scalar(), type, x, 5, cols);
            EXPECT_EQ(prepared(*neon, type, x, 5, cols), xp);
            const size_t stride = prepared_row_bytes(type, cols);
            for (int64_t r = 0; r < 3; r++) {
                for (int64_t t = 0; t < 5; t++) {
                    const void* wr = w.data() + static_cast<size_t>(r) * row_bytes;
                    const float s = kernels_scalar().dot(type, wr, xp.data() + t * stride, cols);
                    const float a = neon->dot(type, wr, xp.data() + t * stride, cols);
                    EXPECT_NEAR(a, s, 1e-5 * (1.0 + std::fabs(s))) << name(type) << " cols " << cols;
                }
            }
        }
    }
}

// matmul blocks tokens; each token's arithmetic must not change, up to the 64 tokens of a
// prefill batch, and nothing outside [r0, r1) x [0, n) may be written.
TEST(KernelsNeon, MatmulEqualsDotAndWritesOnlyItsRange) {
    const Kernels* neon = kernels_neon();
    if (neon == nullptr) GTEST_SKIP() << "no NEON backend in this build";
    const uint32_t poison = 0x7fc0deadu;
    for (const TypeCase& tc : kTypes) {
        for (int64_t n : {1, 2, 3, 4, 5, 8, 63, 64}) {
            const int64_t rows = 33, cols = 96, r0 = 5, r1 = 29, ldy = rows + 3;
            const Matrix m = random_matrix(tc.type, rows, cols, 3);
            const std::vector<uint8_t>& w = m.data;
            const size_t row_bytes = dtype_row_bytes(tc.type, cols);
            const std::vector<float> x = random_activations(n, cols, 4);
            const std::vector<uint8_t> xp = prepared(*neon, tc.type, x, n, cols);
            const size_t stride = prepared_row_bytes(tc.type, cols);
            std::vector<uint32_t> y(static_cast<size_t>(n * ldy), poison);
            auto* yf = reinterpret_cast<float*>(y.data());
            neon->matmul({tc.type, w.data(), rows, cols, row_bytes}, r0, r1, xp.data(), n, yf, ldy);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t r = 0; r < ldy; r++) {
                    const size_t at = static_cast<size_t>(t * ldy + r);
                    if (r >= r0 && r < r1) {
                        const float want = neon->dot(tc.type, w.data() + static_cast<size_t>(r) * row_bytes,
                                                     xp.data() + t * stride, cols);
                        ASSERT_EQ(yf[at], want)
                            << name(tc.type) << " n " << n << " row " << r << " token " << t;
                    } else {
                        ASSERT_EQ(y[at], poison) << name(tc.type) << " n " << n << " wrote row " << r;
                    }
                }
            }
        }
    }
}

// Without SDOT each int8 product is widened to int16 before any sum: Q8_0 weights may hold -128 (a
// file is not bound to ggml's quantizer) against activations of +-127; all sums here are exact in float.
TEST(KernelsNeon, Q8_0ExtremesAreExact) {
    const Kernels* neon = kernels_neon();
    if (neon == nullptr) GTEST_SKIP() << "no NEON backend in this build";
    const int64_t cols = 256;
    std::vector<BlockQ8_0> w(static_cast<size_t>(cols / kQK));
    for (BlockQ8_0& b : w) {
        b.d = fp32_to_fp16(1.0f);
        for (int8_t& q : b.qs) q = -128;
    }
    for (float sign : {1.0f, -1.0f}) {
        const std::vector<float> x(static_cast<size_t>(cols), 127.0f * sign);  // q = +-127, d = 1
        const std::vector<uint8_t> xp = prepared(*neon, DType::Q8_0, x, 1, cols);
        EXPECT_EQ(neon->dot(DType::Q8_0, w.data(), xp.data(), cols),
                  kernels_scalar().dot(DType::Q8_0, w.data(), xp.data(), cols))
            << "sign " << sign;
    }
}
