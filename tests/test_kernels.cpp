// Tests for the Kernels tables: the scalar table against a double-precision dot of the
// dequantized weights (catches a wrong block layout), the AVX2 table against the scalar one,
// and matmul's row/token ranges and output stride. Not a benchmark.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "microlm/kernels.h"

using namespace microlm;
using namespace microlm::test;

namespace {

// Scalar kernel vs the exact dot of dequantized weights with the float activations, as a
// fraction of ||w||_2 * ||x||_2 (Cauchy-Schwarz: |sum w_i e_i| <= ||w|| ||e||). The error is
// the rounding of the activations to the prepared type: F32 none (float products: 2^-24),
// F16 2^-11 relative, Q8_0/Q8_1 up to amax/254 per element plus fp16 scales (about 0.008 of
// ||x|| for this data), Q4_1 also the fp16 block sum s.
constexpr double kF32RefTol = 1e-6;
constexpr double kF16RefTol = 5e-4;
constexpr double kQ4_0RefTol = 0.01;
constexpr double kQ8_0RefTol = 0.01;
constexpr double kQ4_1RefTol = 0.012;

// AVX2 vs scalar: same prepared inputs. F32 and F16 differ in float summation order: at most
// ~cols/32 + 10 float roundings (2^-24 each) along any path, as a fraction of sum_i |w_i x_i|
// (the dequantized activations). The quantized types sum in one order on both (llama.cpp's
// x86 lanes, see kernels_scalar.cpp): bit-identical, because a last-bit difference flips
// activation codes downstream and moved a random Q5_1 model's logits 0.03.
constexpr double kF32Avx2Tol = 2e-6;
constexpr double kF16Avx2Tol = 2e-6;
constexpr double kQuantAvx2Tol = 0.0;

struct TypeCase {
    DType type;
    double ref_tol;
    double avx2_tol;
};
constexpr TypeCase kTypes[] = {
    {DType::F32, kF32RefTol, kF32Avx2Tol},    {DType::F16, kF16RefTol, kF16Avx2Tol},
    {DType::Q4_0, kQ4_0RefTol, kQuantAvx2Tol}, {DType::Q4_1, kQ4_1RefTol, kQuantAvx2Tol},
    {DType::Q8_0, kQ8_0RefTol, kQuantAvx2Tol},
    // An AVX2 path (the AVX-512 table uses it too); NEON's is tested in test_kernels_neon.cpp.
    {DType::Q5_0, kQ4_0RefTol, kQuantAvx2Tol}, {DType::Q5_1, kQ4_1RefTol, kQuantAvx2Tol},
};

constexpr int64_t kCols[] = {32, 64, 576, 1536};
constexpr int64_t kRows[] = {1, 7, 33};
constexpr int64_t kTokens[] = {1, 3, 8};

struct MaxDiff {
    double abs = 0.0, rel = 0.0;
    void add(double a, double r) {
        abs = std::max(abs, a);
        rel = std::max(rel, r);
    }
};

}  // namespace

TEST(Kernels, ActivationTypes) {
    EXPECT_EQ(activation_type(DType::F32), DType::F32);
    EXPECT_EQ(activation_type(DType::F16), DType::F16);
    EXPECT_EQ(activation_type(DType::Q4_0), DType::Q8_0);
    EXPECT_EQ(activation_type(DType::Q8_0), DType::Q8_0);
    EXPECT_EQ(activation_type(DType::Q4_1), DType::Q8_1);
    EXPECT_EQ(prepared_row_bytes(DType::F32, 576), 576u * 4);
    EXPECT_EQ(prepared_row_bytes(DType::F16, 576), 576u * 2);
    EXPECT_EQ(prepared_row_bytes(DType::Q4_0, 576), 18u * 34);
    EXPECT_EQ(prepared_row_bytes(DType::Q4_1, 576), 18u * 36);
    EXPECT_EQ(prepared_row_bytes(DType::Q8_0, 576), 18u * 34);
}

TEST(Kernels, ScalarMatchesDoubleReference) {
    const Kernels& k = kernels_scalar();
    for (const TypeCase& tc : kTypes) {
        MaxDiff worst;
        for (int64_t cols : kCols) {
            const Matrix w = random_matrix(tc.type, 33, cols, static_cast<uint32_t>(cols));
            const int64_t n = 8;
            const std::vector<float> x = random_activations(n, cols, 99);
            const std::vector<uint8_t> xp = prepared(k, tc.type, x, n, cols);
            std::vector<float> y(static_cast<size_t>(n * w.rows));
            k.matmul(w.ref(), 0, w.rows, xp.data(), n, y.data(), w.rows);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t r = 0; r < w.rows; r++) {
                    double exact = 0.0, ww = 0.0, xx = 0.0;
                    for (int64_t i = 0; i < cols; i++) {
                        const double wi = w.deq[static_cast<size_t>(r * cols + i)];
                        const double xi = x[static_cast<size_t>(t * cols + i)];
                        exact += wi * xi;
                        ww += wi * wi;
                        xx += xi * xi;
                    }
                    const double err = std::fabs(y[static_cast<size_t>(t * w.rows + r)] - exact);
                    const double rel = err / std::sqrt(ww * xx);
                    worst.add(err, rel);
                    ASSERT_LE(rel, tc.ref_tol)
                        << name(tc.type) << " cols " << cols << " row " << r << " token " << t
                        << ": got " << y[static_cast<size_t>(t * w.rows + r)] << ", exact "
                        << exact;
                }
            }
        }
        std::printf("scalar vs double reference %-4s: max abs %.3g, max rel %.3g (tol %.3g)\n",
                    name(tc.type).c_str(), worst.abs, worst.rel, tc.ref_tol);
    }
}

TEST(Kernels, Avx2PrepareIsBitIdenticalToScalar) {
    const Kernels* avx2 = kernels_avx2();
    if (avx2 == nullptr) GTEST_SKIP() << "no AVX2 backend on this CPU or build";
    for (const TypeCase& tc : kTypes) {
        for (int64_t cols : kCols) {
            const std::vector<float> x = random_activations(8, cols, 7);
            EXPECT_EQ(prepared(*avx2, tc.type, x, 8, cols),
                      prepared(kernels_scalar(), tc.type, x, 8, cols))
                << name(tc.type) << " cols " << cols;
        }
    }
    // Exact halves after scaling: roundf sends them away from zero, unlike the default
    // round-to-nearest-even of the vector unit.
    std::vector<float> ties(kQK);
    for (int j = 0; j < kQK; j++) ties[static_cast<size_t>(j)] = static_cast<float>(j - 16) + 0.5f;
    ties[0] = -127.0f;  // d = 1, so every other value lands exactly on a half
    for (DType w : {DType::Q8_0, DType::Q4_1}) {
        EXPECT_EQ(prepared(*avx2, w, ties, 1, kQK), prepared(kernels_scalar(), w, ties, 1, kQK))
            << name(w);
    }
}

TEST(Kernels, Avx2MatchesScalar) {
    const Kernels* avx2 = kernels_avx2();
    if (avx2 == nullptr) GTEST_SKIP() << "no AVX2 backend on this CPU or build";
    const Kernels& scalar = kernels_scalar();
    for (const TypeCase& tc : kTypes) {
        MaxDiff worst;
        for (int64_t cols : kCols) {
            for (int64_t rows : kRows) {
                for (int64_t n : kTokens) {
                    const Matrix w = random_matrix(tc.type, rows, cols,
                                                   static_cast<uint32_t>(rows * 1000 + cols));
                    const std::vector<float> x = random_activations(n, cols, 5);
                    const std::vector<uint8_t> xp = prepared(scalar, tc.type, x, n, cols);
                    std::vector<float> xdeq(static_cast<size_t>(n * cols));
                    const size_t stride = prepared_row_bytes(tc.type, cols);
                    for (int64_t t = 0; t < n; t++) {
                        dequantize_row(activation_type(tc.type), xp.data() + t * stride,
                                       xdeq.data() + t * cols, cols);
                    }
                    std::vector<float> ys(static_cast<size_t>(n * rows)), ya(ys.size());
                    scalar.matmul(w.ref(), 0, rows, xp.data(), n, ys.data(), rows);
                    avx2->matmul(w.ref(), 0, rows, xp.data(), n, ya.data(), rows);
                    for (int64_t t = 0; t < n; t++) {
                        for (int64_t r = 0; r < rows; r++) {
                            double l1 = 0.0;
                            for (int64_t i = 0; i < cols; i++) {
                                l1 += std::fabs(static_cast<double>(w.deq[r * cols + i]) *
                                                xdeq[static_cast<size_t>(t * cols + i)]);
                            }
                            const size_t at = static_cast<size_t>(t * rows + r);
                            const double err = std::fabs(static_cast<double>(ya[at]) - ys[at]);
                            worst.add(err, err / l1);
                            ASSERT_LE(err, tc.avx2_tol * l1)
                                << name(tc.type) << " cols " << cols << " rows " << rows << " n "
                                << n << " at row " << r << " token " << t << ": avx2 " << ya[at]
                                << " scalar " << ys[at];
                        }
                    }
                }
            }
        }
        std::printf("avx2 vs scalar %-4s: max abs %.3g, max rel %.3g (tol %.3g)\n",
                    name(tc.type).c_str(), worst.abs, worst.rel, tc.avx2_tol);
    }
}

// F32 and F16 rows need not be a multiple of any vector width.
TEST(Kernels, Avx2FloatTails) {
    const Kernels* avx2 = kernels_avx2();
    if (avx2 == nullptr) GTEST_SKIP() << "no AVX2 backend on this CPU or build";
    for (DType type : {DType::F32, DType::F16}) {
        for (int64_t cols : {1, 7, 8, 31, 33, 100}) {
            const Matrix w = random_matrix(type, 3, cols, 11);
            const std::vector<float> x = random_activations(5, cols, 12);
            const std::vector<uint8_t> xp = prepared(kernels_scalar(), type, x, 5, cols);
            EXPECT_EQ(prepared(*avx2, type, x, 5, cols), xp);
            const size_t stride = prepared_row_bytes(type, cols);
            for (int64_t r = 0; r < 3; r++) {
                for (int64_t t = 0; t < 5; t++) {
                    const float s =
                        kernels_scalar().dot(type, w.row(r), xp.data() + t * stride, cols);
                    const float a = avx2->dot(type, w.row(r), xp.data() + t * stride, cols);
                    EXPECT_NEAR(a, s, 1e-5 * (1.0 + std::fabs(s)))
                        << name(type) << " cols " << cols;
                }
            }
        }
    }
}

// matmul writes exactly y[t * ldy + r] for r in [r0, r1), t in [0, n), equal to dot() bit for
// bit (a backend may block tokens, but each token's arithmetic must not change), and nothing
// else: every other cell keeps its poison.
TEST(Kernels, MatmulWritesOnlyItsRange) {
    std::vector<const Kernels*> tables = {&kernels_scalar()};
    if (kernels_avx2() != nullptr) tables.push_back(kernels_avx2());
    const uint32_t poison = 0x7fc0deadu;
    for (const Kernels* k : tables) {
        for (const TypeCase& tc : kTypes) {
            for (int64_t n : {1, 3, 5, 8}) {
                const int64_t rows = 33, cols = 64, r0 = 5, r1 = 29, ldy = rows + 3;
                const Matrix w = random_matrix(tc.type, rows, cols, 3);
                const std::vector<float> x = random_activations(n, cols, 4);
                const std::vector<uint8_t> xp = prepared(*k, tc.type, x, n, cols);
                const size_t stride = prepared_row_bytes(tc.type, cols);
                std::vector<uint32_t> y(static_cast<size_t>(n * ldy), poison);
                auto* yf = reinterpret_cast<float*>(y.data());
                k->matmul(w.ref(), r0, r1, xp.data(), n, yf, ldy);
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t r = 0; r < ldy; r++) {
                        const size_t at = static_cast<size_t>(t * ldy + r);
                        if (r >= r0 && r < r1) {
                            const float want =
                                k->dot(tc.type, w.row(r), xp.data() + t * stride, cols);
                            ASSERT_EQ(yf[at], want) << k->name << " " << name(tc.type) << " n " << n
                                                    << " row " << r << " token " << t;
                        } else {
                            ASSERT_EQ(y[at], poison) << k->name << " " << name(tc.type) << " n "
                                                     << n << " wrote row " << r << " token " << t;
                        }
                    }
                }
            }
        }
    }
}

TEST(Kernels, BestHonoursOverride) {
    const char* saved = std::getenv("MICROLM_KERNELS");
    const std::string restore = saved ? saved : "";
    const Kernels* fastest = nullptr;  // kernels_best()'s order of preference
    for (const Kernels* k : {kernels_amx(), kernels_avx512(), kernels_avx2(), kernels_neon()}) {
        if (fastest == nullptr) fastest = k;
    }
    const char* best = fastest != nullptr ? fastest->name : kernels_scalar().name;

    unsetenv("MICROLM_KERNELS");
    EXPECT_STREQ(kernels_best().name, best);
    setenv("MICROLM_KERNELS", "scalar", 1);
    EXPECT_STREQ(kernels_best().name, "scalar");
    setenv("MICROLM_KERNELS", "avx2", 1);
    EXPECT_STREQ(kernels_best().name, kernels_avx2() ? "avx2" : best);  // falls back when unavailable
    setenv("MICROLM_KERNELS", "no-such-backend", 1);
    EXPECT_STREQ(kernels_best().name, best);

    if (saved) {
        setenv("MICROLM_KERNELS", restore.c_str(), 1);
    } else {
        unsetenv("MICROLM_KERNELS");
    }
}

// K-quant rows (random super-blocks: any bytes are valid codes; the fp16 scales are set to
// moderate values) against a double dot of the dequantized weights with the float activations,
// through every backend of this CPU (AVX2's own path, used by AVX-512 too; NEON's own lanes).
TEST(Kernels, KQuantsMatchDoubleReferenceOnEveryBackend) {
    const Kernels* backends[] = {&kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_neon()};
    for (DType type : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        // Six tokens: the first four take llama.cpp's grouped order for Q4_K/Q5_K, the last two
        // the one-at-a-time order that dot() takes too (k_sum.h).
        const int64_t rows = 9, cols = 3 * kQKK, n = 6;
        const size_t row_bytes = dtype_row_bytes(type, cols);
        std::mt19937 rng(static_cast<uint32_t>(type));
        std::vector<uint8_t> w(row_bytes * rows);
        for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
        // Every fp16 field of a block: d (and dmin) where this type keeps them.
        const size_t bytes = dtype_block_bytes(type);
        std::vector<size_t> fields;
        switch (type) {
            case DType::Q2_K: fields = {80, 82}; break;
            case DType::Q3_K: fields = {108}; break;
            case DType::Q6_K: fields = {208}; break;
            default: fields = {0, 2}; break;
        }
        std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
        for (size_t blk = 0; blk < w.size() / bytes; blk++)
            for (size_t f : fields) {
                const uint16_t h = fp32_to_fp16(scale(rng));
                std::memcpy(w.data() + blk * bytes + f, &h, 2);
            }
        std::vector<float> deq(static_cast<size_t>(rows * cols));
        for (int64_t r = 0; r < rows; r++) dequantize_row(type, w.data() + r * row_bytes, deq.data() + r * cols, cols);
        const std::vector<float> x = random_activations(n, cols, 3);
        const WeightRef ref{type, w.data(), rows, cols, row_bytes};
        std::vector<float> want;
        for (const Kernels* k : backends) {
            if (k == nullptr) continue;
            const std::vector<uint8_t> xp = prepared(*k, type, x, n, cols);
            std::vector<float> y(static_cast<size_t>(n * rows));
            k->matmul(ref, 0, rows, xp.data(), n, y.data(), rows);
            double worst = 0;
            for (int64_t t = 0; t < n; t++)
                for (int64_t r = 0; r < rows; r++) {
                    double exact = 0, ww = 0, xx = 0;
                    for (int64_t i = 0; i < cols; i++) {
                        const double wi = deq[static_cast<size_t>(r * cols + i)], xi = x[static_cast<size_t>(t * cols + i)];
                        exact += wi * xi;
                        ww += wi * wi;
                        xx += xi * xi;
                    }
                    worst = std::max(worst, std::fabs(y[static_cast<size_t>(t * rows + r)] - exact) / std::sqrt(ww * xx));
                    if (t >= n - n % 4) {
                        EXPECT_EQ(y[static_cast<size_t>(t * rows + r)],
                                  k->dot(type, w.data() + r * row_bytes, xp.data() + t * prepared_row_bytes(type, cols), cols));
                    }
                }
            std::printf("%-6s %s vs double reference: max rel %.3g (tol %.3g)\n", k->name, name(type).c_str(), worst,
                        kQ8_0RefTol);
            EXPECT_LE(worst, kQ8_0RefTol) << k->name << " " << name(type);
            if (want.empty()) {
                want = y;
            } else {
                // Bit-identical: every backend takes the same integer lanes and the same float
                // steps (k_sum.h); only how the lanes are computed differs.
                for (size_t i = 0; i < y.size(); ++i)
                    EXPECT_EQ(y[i], want[i]) << k->name << " " << name(type) << " differs from the scalar table at " << i;
            }
        }
    }
}

// SwiGLU on every table equals the scalar one (libm's expf) bit for bit: one float in every 1009
// of all 2^32 bit patterns as the gate (so every exponent, both signs, denormals, the edges of
// expf's range, infinities and NaNs), then the extremes where expf overflows or underflows.
TEST(Kernels, SwigluIsTheScalarOneBitForBit) {
    std::vector<float> gate;
    for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 1009) {
        const auto bits = static_cast<uint32_t>(u);
        float g;
        std::memcpy(&g, &bits, 4);
        gate.push_back(g);
    }
    for (const float g : {0.0f, -0.0f, 87.9f, -87.9f, 88.0f, -88.0f, 88.8f, -88.8f, 103.9f, -103.9f, 200.0f, -200.0f,
                          INFINITY, -INFINITY, NAN})
        gate.push_back(g);
    std::vector<float> up(gate.size());
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
    for (float& u : up) u = dist(rng);
    const auto n = static_cast<int64_t>(gate.size());
    std::vector<float> want(gate.size());
    swiglu_reference(gate.data(), up.data(), n, want.data());
    for (const Kernels* k : {&kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_amx(), kernels_neon()}) {
        if (k == nullptr) continue;
        std::vector<float> got(gate);  // in place, as the forward pass calls it
        k->swiglu(got.data(), up.data(), n, got.data());
        size_t differ = 0, first = 0;
        for (size_t i = 0; i < got.size(); ++i)
            if (std::memcmp(&got[i], &want[i], 4) != 0 && !(std::isnan(got[i]) && std::isnan(want[i])) && differ++ == 0)
                first = i;
        EXPECT_EQ(differ, 0u) << k->name << ": first at gate " << gate[first] << ": " << got[first] << " against "
                              << want[first];
    }
}

// The attention softmax on every table equals the scalar one bit for bit: lengths around the
// vector widths (1 to 70, and a long row), scores spread so that some differences pass expf's
// table range (libm's lanes) and some weights round to fp16 denormals or to zero.
TEST(Kernels, AttnSoftmaxIsTheScalarOneBitForBit) {
    std::mt19937 rng(11);
    for (const float spread : {0.5f, 8.0f, 40.0f, 150.0f}) {
        std::uniform_real_distribution<float> dist(-spread, spread);
        std::vector<int64_t> lengths;
        for (int64_t n = 1; n <= 70; ++n) lengths.push_back(n);
        lengths.push_back(1001);
        for (const int64_t n : lengths) {
            std::vector<float> scores(static_cast<size_t>(n));
            for (float& v : scores) v = dist(rng);
            std::vector<float> want(scores);
            attn_softmax_reference(want.data(), n);
            for (const Kernels* k : {&kernels_scalar(), kernels_avx2(), kernels_avx512(), kernels_amx(), kernels_neon()}) {
                if (k == nullptr) continue;
                std::vector<float> got(scores);
                k->attn_softmax(got.data(), n);
                EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
                    << k->name << ": n " << n << ", spread " << spread;
            }
        }
    }
}
