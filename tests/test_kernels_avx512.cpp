// Tests for the AVX-512 Kernels table against the scalar oracle: prepare byte for byte, matmul
// within a named per-type tolerance over odd shapes (partial 16-row tiles, token counts on and
// off the token groups and the panel path), quantized products bit-identical to the AVX2 table
// (llama.cpp's order), dot == matmul bit for bit, matmul writing exactly its rows and tokens,
// and attention bit-identical to scalar. Skipped where the CPU or build has no AVX-512.
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
using test::Matrix;
using test::name;
using test::random_activations;

namespace {

// AVX-512 vs scalar, as a fraction of sum_i |w_i x_i| over the dequantized row and prepared
// activations. Both see the same prepared inputs and exact integer sums; what differs is the
// order of float roundings (2^-24 each, on partial sums bounded by the L1 sum):
// - Q8_0/Q4_0/Q4_1: the scalar table adds sumi * (d_w * d_x) block after block into one float;
//   this backend keeps llama.cpp's 8 lanes of fused multiply-adds (one per 4 values) and sums
//   them at the end: about cols/32 + 3 roundings along any path, ~51 for cols = 1536.
//   Q4_1's m_w * s_x terms can each be several times the L1 sum (an offset row against
//   activations of one sign), so it gets more room.
// - F32/F16: the scalar table sums in double; here 16 float lanes over cols/16 steps plus a
//   4-level tree: at most cols/16 + 4 roundings, ~100 for cols = 1536.
constexpr double kF32Tol = 8e-6;
constexpr double kF16Tol = 8e-6;
constexpr double kQ4_0Tol = 4e-6;
constexpr double kQ8_0Tol = 4e-6;
constexpr double kQ4_1Tol = 2e-5;

struct TypeCase {
    DType type;
    double tol;
};
constexpr TypeCase kTypes[] = {
    {DType::F32, kF32Tol},   {DType::F16, kF16Tol},   {DType::Q4_0, kQ4_0Tol},
    {DType::Q4_1, kQ4_1Tol}, {DType::Q8_0, kQ8_0Tol},
};

constexpr int64_t kCols[] = {32, 64, 256, 576, 1408, 1536};
constexpr int64_t kRows[] = {1, 7, 33, 100};
constexpr int64_t kTokens[] = {1, 2, 3, 5, 8, 17, 32, 64};

// Rows at scales 2^-4 .. 2^2, every third shifted off zero so Q4_1's minimum matters, and a
// few rows with a -128 weight (Q8_0 files from other quantizers may hold one).
Matrix random_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Matrix m{type, rows, cols, dtype_row_bytes(type, cols), {}, {}};
    m.data.resize(m.row_bytes * static_cast<size_t>(rows));
    m.deq.resize(static_cast<size_t>(rows * cols));
    std::vector<float> src(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; r++) {
        const float scale = std::ldexp(1.0f, static_cast<int>(r % 7) - 4);
        const float shift = (r % 3 == 1) ? 0.5f * scale : 0.0f;
        for (float& v : src) v = u(rng) * scale + shift;
        uint8_t* row = m.data.data() + static_cast<size_t>(r) * m.row_bytes;
        quantize_row(type, src.data(), row, cols);
        if (type == DType::Q8_0 && r % 5 == 2) {
            reinterpret_cast<BlockQ8_0*>(row)[0].qs[3] = -128;
        }
        dequantize_row(type, row, m.deq.data() + r * cols, cols);
    }
    return m;
}

// Poisoned output buffers: a prepare that leaves bytes unwritten differs from scalar's.
std::vector<uint8_t> prepared(const Kernels& k, DType w, const std::vector<float>& x, int64_t n, int64_t cols) {
    return test::prepared(k, w, x, n, cols, 0xa5);
}

}  // namespace

TEST(KernelsAvx512, NameAndSelection) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 (F/BW/VL/DQ/VNNI) backend on this CPU or build";
    EXPECT_STREQ(k->name, "avx512");
    EXPECT_EQ(kernels_avx512(), k);  // checked once, same table every time
}

TEST(KernelsAvx512, PrepareIsBitIdenticalToScalar) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    for (const TypeCase& tc : kTypes) {
        for (int64_t cols : kCols) {
            const std::vector<float> x = random_activations(5, cols, 7);
            EXPECT_EQ(prepared(*k, tc.type, x, 5, cols), prepared(kernels_scalar(), tc.type, x, 5, cols))
                << name(tc.type) << " cols " << cols;
        }
    }
    // Exact halves after scaling (ties go to even, not away from zero), an all-zero block
    // (d = 0, id = 0), tiny and huge magnitudes (fp16 subnormal and overflowing scales).
    std::vector<float> special(4 * kQK);
    for (int j = 0; j < kQK; j++) {
        special[static_cast<size_t>(j)] = static_cast<float>(j - 16) + 0.5f;
        special[static_cast<size_t>(2 * kQK + j)] = 1e-7f * static_cast<float>(j - 9);
        special[static_cast<size_t>(3 * kQK + j)] = 1e6f * static_cast<float>(j % 5 - 2);
    }
    special[0] = -127.0f;  // d = 1, so every other value of the first block lands on a half
    for (DType w : {DType::Q8_0, DType::Q4_1, DType::F16, DType::F32}) {
        EXPECT_EQ(prepared(*k, w, special, 1, 4 * kQK), prepared(kernels_scalar(), w, special, 1, 4 * kQK))
            << name(w);
    }
    // Block scales across the fp16 range: subnormal, flushed to zero, and overflowing d.
    for (int e = -40; e <= 20; e += 3) {
        std::vector<float> x = random_activations(2, 4 * kQK, static_cast<uint32_t>(100 + e));
        for (float& v : x) v = std::ldexp(v, e);
        for (DType w : {DType::Q8_0, DType::Q4_1, DType::F16}) {
            EXPECT_EQ(prepared(*k, w, x, 2, 4 * kQK), prepared(kernels_scalar(), w, x, 2, 4 * kQK))
                << name(w) << " scale 2^" << e;
        }
    }
    // F16 and F32 rows of any length: the masked tail must not write past the row.
    for (int64_t cols : {1, 7, 15, 16, 17, 31, 33, 100}) {
        const std::vector<float> x = random_activations(3, cols, 8);
        for (DType w : {DType::F16, DType::F32}) {
            EXPECT_EQ(prepared(*k, w, x, 3, cols), prepared(kernels_scalar(), w, x, 3, cols))
                << name(w) << " cols " << cols;
        }
    }
}

TEST(KernelsAvx512, MatmulMatchesScalar) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    const Kernels& scalar = kernels_scalar();
    for (const TypeCase& tc : kTypes) {
        double worst_abs = 0.0, worst_rel = 0.0;
        for (int64_t cols : kCols) {
            // Activations (and their dequantized view) shared by every row count.
            const int64_t n_max = kTokens[std::size(kTokens) - 1];
            const std::vector<float> x = random_activations(n_max, cols, 5);
            const std::vector<uint8_t> xp = prepared(scalar, tc.type, x, n_max, cols);
            const size_t stride = prepared_row_bytes(tc.type, cols);
            std::vector<float> xdeq(static_cast<size_t>(n_max * cols));
            for (int64_t t = 0; t < n_max; t++) {
                dequantize_row(activation_type(tc.type), xp.data() + t * stride, xdeq.data() + t * cols,
                               cols);
            }
            for (int64_t rows : kRows) {
                const Matrix w =
                    random_matrix(tc.type, rows, cols, static_cast<uint32_t>(rows * 1000 + cols));
                std::vector<double> l1(static_cast<size_t>(n_max * rows));
                for (int64_t t = 0; t < n_max; t++) {
                    for (int64_t r = 0; r < rows; r++) {
                        double s = 0.0;
                        for (int64_t i = 0; i < cols; i++) {
                            s += std::fabs(static_cast<double>(w.deq[r * cols + i]) *
                                           xdeq[static_cast<size_t>(t * cols + i)]);
                        }
                        l1[static_cast<size_t>(t * rows + r)] = s;
                    }
                }
                for (int64_t n : kTokens) {
                    std::vector<float> ys(static_cast<size_t>(n * rows)), ya(ys.size());
                    scalar.matmul(w.ref(), 0, rows, xp.data(), n, ys.data(), rows);
                    k->matmul(w.ref(), 0, rows, xp.data(), n, ya.data(), rows);
                    for (int64_t t = 0; t < n; t++) {
                        for (int64_t r = 0; r < rows; r++) {
                            const size_t at = static_cast<size_t>(t * rows + r);
                            const double err = std::fabs(static_cast<double>(ya[at]) - ys[at]);
                            const double ref = l1[at] > 0.0 ? l1[at] : 1.0;
                            worst_abs = std::max(worst_abs, err);
                            worst_rel = std::max(worst_rel, err / ref);
                            ASSERT_LE(err, tc.tol * ref)
                                << name(tc.type) << " cols " << cols << " rows " << rows << " n " << n
                                << " at row " << r << " token " << t << ": avx512 " << ya[at] << " scalar "
                                << ys[at];
                        }
                    }
                }
            }
        }
        std::printf("avx512 vs scalar %-4s: max abs %.3g, max rel (of sum |w x|) %.3g (tol %.3g)\n",
                    name(tc.type).c_str(), worst_abs, worst_rel, tc.tol);
    }
}

// Quantized products follow llama.cpp's x86 order of float operations (8 lanes of 4-value
// integer sums, fused multiply-adds, a fixed final tree), as the AVX2 table does, so that
// greedy decoding stays on llama.cpp's path: the two tables must agree bit for bit.
TEST(KernelsAvx512, QuantizedMatmulEqualsAvx2BitForBit) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    const Kernels* avx2 = kernels_avx2();
    if (avx2 == nullptr) GTEST_SKIP() << "no AVX2 backend to compare with";
    for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
        int64_t cells = 0;
        for (int64_t cols : kCols) {
            for (int64_t rows : {7, 33}) {
                const Matrix w = random_matrix(type, rows, cols, static_cast<uint32_t>(cols + rows));
                for (int64_t n : {1, 2, 3, 4, 17}) {
                    const std::vector<float> x = random_activations(n, cols, 6);
                    const std::vector<uint8_t> xp = prepared(kernels_scalar(), type, x, n, cols);
                    std::vector<float> ya(static_cast<size_t>(n * rows)), yb(ya.size());
                    k->matmul(w.ref(), 0, rows, xp.data(), n, ya.data(), rows);
                    avx2->matmul(w.ref(), 0, rows, xp.data(), n, yb.data(), rows);
                    for (size_t i = 0; i < ya.size(); i++) {
                        ASSERT_EQ(ya[i], yb[i]) << name(type) << " cols " << cols << " rows " << rows << " n "
                                                << n << " cell " << i;
                    }
                    cells += static_cast<int64_t>(ya.size());
                }
            }
        }
        std::printf("avx512 vs avx2 %-4s: %lld outputs, all bit-identical\n", name(type).c_str(),
                    static_cast<long long>(cells));
    }
}

// Each (row, token) is computed with the same arithmetic whatever the tile or token group, so
// matmul equals dot bit for bit, for every n (on-the-fly tiles, the panel path, remainders).
TEST(KernelsAvx512, MatmulEqualsDotBitForBit) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    for (const TypeCase& tc : kTypes) {
        for (int64_t cols : {32, 576, 1408}) {
            const int64_t rows = 37;
            const Matrix w = random_matrix(tc.type, rows, cols, 17);
            for (int64_t n : {1, 3, 8, 9, 17}) {
                const std::vector<float> x = random_activations(n, cols, 18);
                const std::vector<uint8_t> xp = prepared(*k, tc.type, x, n, cols);
                const size_t stride = prepared_row_bytes(tc.type, cols);
                std::vector<float> y(static_cast<size_t>(n * rows));
                k->matmul(w.ref(), 0, rows, xp.data(), n, y.data(), rows);
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t r = 0; r < rows; r++) {
                        const float want = k->dot(tc.type, w.row(r), xp.data() + t * stride, cols);
                        ASSERT_EQ(y[static_cast<size_t>(t * rows + r)], want)
                            << name(tc.type) << " cols " << cols << " n " << n << " row " << r << " token "
                            << t;
                    }
                }
            }
        }
    }
}

// F32 and F16 rows need not be a multiple of 16 (or of anything).
TEST(KernelsAvx512, FloatTails) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    for (DType type : {DType::F32, DType::F16}) {
        for (int64_t cols : {1, 7, 15, 16, 17, 31, 33, 100}) {
            const Matrix w = random_matrix(type, 6, cols, 11);
            const std::vector<float> x = random_activations(5, cols, 12);
            const std::vector<uint8_t> xp = prepared(kernels_scalar(), type, x, 5, cols);
            const size_t stride = prepared_row_bytes(type, cols);
            std::vector<float> y(static_cast<size_t>(5 * 6));
            k->matmul(w.ref(), 0, 6, xp.data(), 5, y.data(), 6);
            for (int64_t r = 0; r < 6; r++) {
                for (int64_t t = 0; t < 5; t++) {
                    const float s = kernels_scalar().dot(type, w.row(r), xp.data() + t * stride, cols);
                    const float a = k->dot(type, w.row(r), xp.data() + t * stride, cols);
                    EXPECT_NEAR(a, s, 1e-5 * (1.0 + std::fabs(s))) << name(type) << " cols " << cols;
                    EXPECT_EQ(y[static_cast<size_t>(t * 6 + r)], a) << name(type) << " cols " << cols;
                }
            }
        }
    }
}

// matmul writes exactly y[t * ldy + r] for r in [r0, r1), t in [0, n), and nothing else:
// every other cell keeps its poison. Ranges start and end inside 16-row tiles.
TEST(KernelsAvx512, MatmulWritesOnlyItsRange) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    const uint32_t poison = 0x7fc0deadu;
    struct Range {
        int64_t r0, r1;
    };
    for (const TypeCase& tc : kTypes) {
        const int64_t rows = 100, cols = 64, ldy = rows + 3;
        const Matrix w = random_matrix(tc.type, rows, cols, 3);
        for (Range rg :
             {Range{5, 29}, Range{0, 1}, Range{99, 100}, Range{17, 33}, Range{0, 100}, Range{40, 40}}) {
            for (int64_t n : {1, 3, 5, 8, 9, 17, 64, 70}) {
                const std::vector<float> x = random_activations(n, cols, 4);
                const std::vector<uint8_t> xp = prepared(*k, tc.type, x, n, cols);
                const size_t stride = prepared_row_bytes(tc.type, cols);
                std::vector<uint32_t> y(static_cast<size_t>(n * ldy), poison);
                auto* yf = reinterpret_cast<float*>(y.data());
                k->matmul(w.ref(), rg.r0, rg.r1, xp.data(), n, yf, ldy);
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t r = 0; r < ldy; r++) {
                        const size_t at = static_cast<size_t>(t * ldy + r);
                        if (r >= rg.r0 && r < rg.r1) {
                            const float want = k->dot(tc.type, w.row(r), xp.data() + t * stride, cols);
                            ASSERT_EQ(yf[at], want) << name(tc.type) << " rows [" << rg.r0 << ", " << rg.r1
                                                    << ") n " << n << " row " << r << " token " << t;
                        } else {
                            ASSERT_EQ(y[at], poison) << name(tc.type) << " rows [" << rg.r0 << ", " << rg.r1
                                                     << ") n " << n << " wrote row " << r << " token " << t;
                        }
                    }
                }
            }
        }
    }
}

// The weight matrix may end exactly at the end of its allocation: a short last tile must not
// read past row r1 - 1 (AddressSanitizer catches it when it does).
TEST(KernelsAvx512, ShortTileReadsOnlyItsRows) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    for (const TypeCase& tc : kTypes) {
        for (int64_t rows : {1, 3, 17}) {
            const int64_t cols = 96;
            const Matrix src = random_matrix(tc.type, rows, cols, 21);
            std::vector<uint8_t> exact(src.data);  // no slack after the last row
            const WeightRef w{tc.type, exact.data(), rows, cols, src.row_bytes};
            for (int64_t n : {1, 12}) {
                const std::vector<float> x = random_activations(n, cols, 22);
                const std::vector<uint8_t> xp = prepared(*k, tc.type, x, n, cols);
                std::vector<float> ya(static_cast<size_t>(n * rows)), ys(ya.size());
                k->matmul(w, 0, rows, xp.data(), n, ya.data(), rows);
                kernels_scalar().matmul(w, 0, rows, xp.data(), n, ys.data(), rows);
                for (size_t i = 0; i < ya.size(); i++) {
                    EXPECT_NEAR(ya[i], ys[i], 1e-4 * (1.0 + std::fabs(ys[i]))) << name(tc.type);
                }
            }
        }
    }
}

// Attention sums in the scalar table's 16-lane order (llama.cpp's), so the results must be
// equal bit for bit, for head sizes that are and are not multiples of 16, any key count (the
// lane of key j is j % 16) and rows further apart than a head (the KV cache's layout).
TEST(KernelsAvx512, AttentionIsBitIdenticalToScalar) {
    const Kernels* k = kernels_avx512();
    if (k == nullptr) GTEST_SKIP() << "no AVX-512 backend";
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    int64_t cases = 0;
    for (int64_t hd : {8, 16, 24, 40, 64, 80, 96, 128}) {
        for (int64_t n_keys : {1, 2, 15, 16, 17, 33, 40, 300}) {
            const int64_t stride = 3 * hd + 8;
            std::vector<uint16_t> q(static_cast<size_t>(hd)), kv(static_cast<size_t>(n_keys * stride));
            for (auto& v : q) v = fp32_to_fp16(nd(rng));
            for (auto& v : kv) v = fp32_to_fp16(nd(rng));
            std::vector<float> p(static_cast<size_t>(n_keys));
            for (auto& v : p) v = fp16_to_fp32(fp32_to_fp16(std::fabs(nd(rng)) / static_cast<float>(n_keys)));
            std::vector<float> s_ref(p.size()), s(p.size());
            std::vector<float> v_ref(static_cast<size_t>(hd)), v(static_cast<size_t>(hd) + 1, -7.0f);
            kernels_scalar().attn_scores(q.data(), kv.data(), stride, n_keys, hd, 0.125f, s_ref.data());
            k->attn_scores(q.data(), kv.data(), stride, n_keys, hd, 0.125f, s.data());
            kernels_scalar().attn_values(p.data(), kv.data(), stride, n_keys, hd, v_ref.data());
            k->attn_values(p.data(), kv.data(), stride, n_keys, hd, v.data());
            EXPECT_EQ(s, s_ref) << "scores, hd " << hd << " keys " << n_keys;
            EXPECT_EQ(std::vector<float>(v.begin(), v.end() - 1), v_ref)
                << "values, hd " << hd << " keys " << n_keys;
            EXPECT_EQ(v.back(), -7.0f) << "values wrote past hd " << hd;
            cases++;
        }
    }
    std::printf("attention: %lld shapes, scores and values bit-identical to scalar\n",
                static_cast<long long>(cases));
}
