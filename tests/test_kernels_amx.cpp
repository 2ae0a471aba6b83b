// Tests for the AMX Kernels table against the scalar oracle: Q8_0, Q4_0 and Q4_1 matrix x matrix within the
// named tolerance over shapes on and off the 16-row tiles and 16-token groups (the remainders go
// to the AVX-512 table), matmul writing exactly its rows and tokens, and a weight matrix ending
// at its allocation. Skipped, saying why, where the CPU or kernel gives no AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernel_test_util.h"
#include "microlm/kernels.h"

using namespace microlm;
using test::Matrix;
using test::random_activations;
using test::random_matrix;

namespace {

// AMX vs scalar, as a fraction of sum_i |w_i x_i|. The integer products are exact in both; the
// scalar table follows llama.cpp's eight float lanes per dot, AMX adds one int32 per block times
// d_w * d_x block after block: about cols/32 + 3 roundings along either path, as for AVX-512.
constexpr double kQ8_0Tol = 4e-6;
// Q4_0 and Q4_1 the same (their quants unpacked to int8 are exact too); Q4_1's m_w * s_x terms
// are summed apart and added last on both paths.
constexpr double kQ4Tol = 4e-6;

const Kernels* amx_or_skip() {
    const Kernels* k = kernels_amx();
    if (k == nullptr) {
        std::printf("AMX: not available here (no AMX-INT8, or Linux refused the tile state)\n");
    } else {
        std::printf("AMX: available, tests run on it\n");
    }
    return k;
}

}  // namespace

TEST(KernelsAmx, NameAndSelection) {
    const Kernels* k = amx_or_skip();
    if (k == nullptr) GTEST_SKIP() << "no AMX backend on this CPU or kernel";
    EXPECT_STREQ(k->name, "amx");
    EXPECT_EQ(kernels_amx(), k);
}

TEST(KernelsAmx, Q8_0AndQ4MatmulMatchesScalar) {
    const Kernels* k = amx_or_skip();
    if (k == nullptr) GTEST_SKIP() << "no AMX backend on this CPU or kernel";
    const Kernels& scalar = kernels_scalar();
    for (const DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
        const double tol = type == DType::Q8_0 ? kQ8_0Tol : kQ4Tol;
        // The activations' own format: Q8_1 blocks (with their sums) for Q4_1, Q8_0 otherwise.
        const DType act = type == DType::Q4_1 ? DType::Q8_1 : DType::Q8_0;
        double worst = 0.0;
        for (int64_t cols : {32, 64, 96, 576, 1536}) {
            const int64_t n_max = 49;
            const std::vector<float> x = random_activations(n_max, cols, 11);
            const std::vector<uint8_t> xp = test::prepared(scalar, type, x, n_max, cols);
            const size_t stride = prepared_row_bytes(type, cols);
            std::vector<float> xdeq(static_cast<size_t>(n_max * cols));
            for (int64_t t = 0; t < n_max; t++) {
                dequantize_row(act, xp.data() + t * stride, xdeq.data() + t * cols, cols);
            }
            for (int64_t rows : {16, 17, 40, 64}) {
                const Matrix w = random_matrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
                for (int64_t n : {1, 15, 16, 17, 32, 49}) {
                    std::vector<float> ys(static_cast<size_t>(n * rows)), ya(ys.size());
                    scalar.matmul(w.ref(), 0, rows, xp.data(), n, ys.data(), rows);
                    k->matmul(w.ref(), 0, rows, xp.data(), n, ya.data(), rows);
                    for (int64_t t = 0; t < n; t++) {
                        for (int64_t r = 0; r < rows; r++) {
                            double l1 = 0.0;
                            for (int64_t i = 0; i < cols; i++) {
                                l1 +=
                                    std::fabs(static_cast<double>(w.deq[r * cols + i]) * xdeq[t * cols + i]);
                            }
                            const size_t at = static_cast<size_t>(t * rows + r);
                            const double err =
                                std::fabs(static_cast<double>(ya[at]) - ys[at]) / (l1 > 0 ? l1 : 1.0);
                            worst = std::max(worst, err);
                            ASSERT_LE(err, tol) << dtype_name(uint32_t(type)) << " cols " << cols << " rows "
                                                << rows << " n " << n << " row " << r << " token " << t
                                                << ": amx " << ya[at] << " scalar " << ys[at];
                        }
                    }
                }
            }
        }
        std::printf("amx vs scalar %s: max rel (of sum |w x|) %.3g (tol %.3g)\n",
                    std::string(dtype_name(uint32_t(type))).c_str(), worst, tol);
    }
}

// Exactly y[t * ldy + r] for r in [r0, r1) and t in [0, n), whatever part the tiles took.
TEST(KernelsAmx, MatmulWritesOnlyItsRange) {
    const Kernels* k = amx_or_skip();
    if (k == nullptr) GTEST_SKIP() << "no AMX backend on this CPU or kernel";
    const uint32_t poison = 0x7fc0deadu;
    const int64_t rows = 100, cols = 64, ldy = rows + 3;
    const Matrix w = random_matrix(DType::Q8_0, rows, cols, 3);
    for (const auto& [r0, r1] : {std::pair<int64_t, int64_t>{5, 29}, {0, 16}, {3, 99}, {84, 100}, {40, 40}}) {
        for (int64_t n : {1, 16, 17, 33}) {
            const std::vector<float> x = random_activations(n, cols, 4);
            const std::vector<uint8_t> xp = test::prepared(*k, DType::Q8_0, x, n, cols);
            std::vector<uint32_t> y(static_cast<size_t>(n * ldy), poison);
            auto* yf = reinterpret_cast<float*>(y.data());
            k->matmul(w.ref(), r0, r1, xp.data(), n, yf, ldy);
            std::vector<float> want(static_cast<size_t>(n * rows));
            kernels_scalar().matmul(w.ref(), 0, rows, xp.data(), n, want.data(), rows);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t r = 0; r < ldy; r++) {
                    const size_t at = static_cast<size_t>(t * ldy + r);
                    if (r >= r0 && r < r1) {
                        ASSERT_NEAR(yf[at], want[t * rows + r], 1e-4) << "row " << r << " token " << t;
                    } else {
                        ASSERT_EQ(y[at], poison)
                            << "[" << r0 << ", " << r1 << ") n " << n << " wrote row " << r;
                    }
                }
            }
        }
    }
}

// Tiles load whole 16-row spans: the last one must lie inside [r0, r1) of an allocation with no
// slack (the rest goes to the AVX-512 table, which clamps its short tile).
TEST(KernelsAmx, TilesReadOnlyTheirRows) {
    const Kernels* k = amx_or_skip();
    if (k == nullptr) GTEST_SKIP() << "no AMX backend on this CPU or kernel";
    for (const DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1})
        for (int64_t rows : {16, 17, 47}) {
            const int64_t cols = 96, n = 20;
            const Matrix src = random_matrix(type, rows, cols, 21);
            std::vector<uint8_t> exact(src.data);
            const WeightRef w{type, exact.data(), rows, cols, src.row_bytes};
            const std::vector<float> x = random_activations(n, cols, 22);
            const std::vector<uint8_t> xp = test::prepared(*k, type, x, n, cols);
            std::vector<float> ya(static_cast<size_t>(n * rows)), ys(ya.size());
            k->matmul(w, 0, rows, xp.data(), n, ya.data(), rows);
            kernels_scalar().matmul(w, 0, rows, xp.data(), n, ys.data(), rows);
            for (size_t i = 0; i < ya.size(); i++) EXPECT_NEAR(ya[i], ys[i], 1e-4 * (1.0 + std::fabs(ys[i])));
        }
}
