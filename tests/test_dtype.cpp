// Tests for dtype.h: fp16 conversion on every half and at every rounding midpoint, the
// quantize -> dequantize error of each block format against a named bound, and the type
// tables. The quantizers' ggml-exactness is checked by hand-worked blocks, not by ggml itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "microlm/dtype.h"

using namespace microlm;

namespace {

// Worst-case round trip error of each format, as a fraction of the block's scale reference
// (max |x| for the symmetric formats, max - min for Q4_1). Derived from the formats:
// Q8: half a step of amax/127, plus the fp16 rounding of d (2^-11 relative) over 127 steps.
// Q4_0: the value opposite the block's extreme clamps from 8 to 7 steps: amax/8.
// Q4_1: half a step of range/15, plus fp16 rounding of d and m.
constexpr float kF16MaxRelErr = 1.0f / 2048;
constexpr float kQ8_0MaxErr = 0.5f / 127 + 1.0f / 2048 + 1e-6f;
constexpr float kQ8_1MaxErr = kQ8_0MaxErr;
constexpr float kQ4_0MaxErr = 1.0f / 8 + 1.0f / 2048 + 1e-6f;
constexpr float kQ4_1MaxErr = 0.5f / 15 + 2.0f / 2048 + 1e-6f;
// Q5_0 and Q5_1: as Q4_0 and Q4_1 with 16 and 31 steps.
constexpr float kQ5_0MaxErr = 1.0f / 16 + 1.0f / 2048 + 1e-6f;
constexpr float kQ5_1MaxErr = 0.5f / 31 + 2.0f / 2048 + 1e-6f;

bool is_half_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// Rows of blocks with varied scales: tiny, unit, large, one-sided and with a lone outlier,
// since each stresses a different branch of the quantizers.
std::vector<float> test_data(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t b = 0; b < n / kQK; b++) {
        const float scale = std::pow(10.0f, static_cast<float>(b % 5) - 2.0f);  // 0.01 .. 100
        const float shift = (b % 3 == 0) ? 2.0f * scale : 0.0f;
        for (int j = 0; j < kQK; j++) x[static_cast<size_t>(b * kQK + j)] = u(rng) * scale + shift;
        if (b % 7 == 0) x[static_cast<size_t>(b * kQK + b % kQK)] *= 20.0f;
    }
    return x;
}

}  // namespace

TEST(Fp16, RoundTripsEveryHalf) {
    int nans = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const auto half = static_cast<uint16_t>(h);
        const float f = fp16_to_fp32(half);
        if (is_half_nan(half)) {
            ASSERT_TRUE(std::isnan(f)) << std::hex << h;
            ASSERT_TRUE(is_half_nan(fp32_to_fp16(f))) << std::hex << h;
            nans++;
        } else {
            ASSERT_EQ(fp32_to_fp16(f), half) << std::hex << h << " -> " << f;
        }
    }
    EXPECT_EQ(nans, 2 * 1023);
}

TEST(Fp16, KnownValues) {
    EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
    EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
    EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
    EXPECT_EQ(fp32_to_fp16(0.1f), 0x2e66);
    EXPECT_EQ(fp32_to_fp16(1.0f / 3), 0x3555);
    EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);    // largest half
    EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7bff);  // just under the midpoint to 65536
    EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);    // midpoint ties to even, which is inf
    EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
    EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xfc00);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (zero)
    EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
    EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even (2)
    EXPECT_EQ(fp32_to_fp16(1e-30f), 0x0000);
    EXPECT_TRUE(is_half_nan(fp32_to_fp16(NAN)));
    EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
    EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
    EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));
    EXPECT_EQ(fp16_to_fp32(0x7c00), INFINITY);
    EXPECT_EQ(bits(fp16_to_fp32(0x8000)), 0x80000000u);
}

// Every float halfway between two adjacent halves must go to the even one, and the floats
// just either side of it to the nearer one; covers subnormals and the exponent carries.
TEST(Fp16, RoundsMidpointsToNearestEven) {
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const double lo = fp16_to_fp32(static_cast<uint16_t>(h));
        const double hi = fp16_to_fp32(static_cast<uint16_t>(h + 1));
        const auto mid = static_cast<float>((lo + hi) / 2);  // exact: 12 significant bits
        ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
        const uint32_t even = (h & 1u) ? h + 1 : h;
        for (uint32_t s : {0u, 0x8000u}) {
            const float m = s ? -mid : mid;
            ASSERT_EQ(fp32_to_fp16(m), even | s) << std::hex << h;
            ASSERT_EQ(fp32_to_fp16(std::nextafter(m, 0.0f)), h | s) << std::hex << h;
            ASSERT_EQ(fp32_to_fp16(std::nextafter(m, s ? -INFINITY : INFINITY)), (h + 1) | s)
                << std::hex << h;
        }
    }
}

TEST(DType, Names) {
    EXPECT_EQ(dtype_name(0), "F32");
    EXPECT_EQ(dtype_name(1), "F16");
    EXPECT_EQ(dtype_name(2), "Q4_0");
    EXPECT_EQ(dtype_name(3), "Q4_1");
    EXPECT_EQ(dtype_name(6), "Q5_0");
    EXPECT_EQ(dtype_name(8), "Q8_0");
    EXPECT_EQ(dtype_name(9), "Q8_1");
    EXPECT_EQ(dtype_name(12), "Q4_K");
    EXPECT_EQ(dtype_name(15), "Q8_K");
    EXPECT_EQ(dtype_name(30), "BF16");
    EXPECT_EQ(dtype_name(39), "MXFP4");
    EXPECT_EQ(dtype_name(1000), "?");
    EXPECT_EQ(dtype_name(0xffffffffu), "?");

    EXPECT_EQ(dtype_from_name("f32"), DType::F32);
    EXPECT_EQ(dtype_from_name("F16"), DType::F16);
    EXPECT_EQ(dtype_from_name("q4_0"), DType::Q4_0);
    EXPECT_EQ(dtype_from_name("Q4_1"), DType::Q4_1);
    EXPECT_EQ(dtype_from_name("q8_0"), DType::Q8_0);
    EXPECT_EQ(dtype_from_name("Q8_1"), std::nullopt);
    EXPECT_EQ(dtype_from_name("bf16"), std::nullopt);
    EXPECT_EQ(dtype_from_name("Q4_K"), DType::Q4_K);
    EXPECT_EQ(dtype_from_name("q5_1"), DType::Q5_1);
    EXPECT_EQ(dtype_from_name("Q8_K"), std::nullopt);
    EXPECT_EQ(dtype_from_name(""), std::nullopt);
    EXPECT_EQ(dtype_from_name("q8_0 "), std::nullopt);

    for (uint32_t t : {0u, 1u, 2u, 3u, 6u, 7u, 8u, 10u, 11u, 12u, 13u, 14u}) EXPECT_TRUE(dtype_supported(t)) << t;
    for (uint32_t t : {4u, 5u, 9u, 15u, 16u, 30u, 1000u}) EXPECT_FALSE(dtype_supported(t)) << t;
}

TEST(DType, BlockSizes) {
    EXPECT_EQ(dtype_block_elems(DType::F32), 1);
    EXPECT_EQ(dtype_block_elems(DType::F16), 1);
    EXPECT_EQ(dtype_block_bytes(DType::F32), 4u);
    EXPECT_EQ(dtype_block_bytes(DType::F16), 2u);
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q8_1}) {
        EXPECT_EQ(dtype_block_elems(t), 32);
    }
    EXPECT_EQ(dtype_block_bytes(DType::Q4_0), 18u);
    EXPECT_EQ(dtype_block_bytes(DType::Q4_1), 20u);
    EXPECT_EQ(dtype_block_bytes(DType::Q8_0), 34u);
    EXPECT_EQ(dtype_block_bytes(DType::Q8_1), 36u);
    EXPECT_EQ(dtype_row_bytes(DType::F32, 576), 2304u);
    EXPECT_EQ(dtype_row_bytes(DType::F16, 7), 14u);
    EXPECT_EQ(dtype_row_bytes(DType::Q4_0, 576), 18u * 18);
    EXPECT_EQ(dtype_row_bytes(DType::Q4_1, 1536), 48u * 20);
    EXPECT_EQ(dtype_row_bytes(DType::Q8_0, 64), 68u);
    EXPECT_EQ(dtype_row_bytes(DType::Q8_1, 32), 36u);
    // ggml's sizes (the gguf package's GGML_QUANT_SIZES).
    const std::pair<DType, size_t> k[] = {{DType::Q2_K, 84},  {DType::Q3_K, 110}, {DType::Q4_K, 144},
                                          {DType::Q5_K, 176}, {DType::Q6_K, 210}, {DType::Q8_K, 292}};
    for (const auto& [t, bytes] : k) {
        EXPECT_EQ(dtype_block_elems(t), 256);
        EXPECT_EQ(dtype_block_bytes(t), bytes);
    }
    EXPECT_EQ(dtype_block_bytes(DType::Q5_0), 22u);
    EXPECT_EQ(dtype_block_bytes(DType::Q5_1), 24u);
    EXPECT_EQ(dtype_row_bytes(DType::Q6_K, 1536), 6u * 210);
    EXPECT_THROW(quantize_row(DType::Q3_K, nullptr, nullptr, 256), std::invalid_argument);
}

// Q8_K: the largest-magnitude value maps to -127 (its sign in d), bsums are the sums of 16.
TEST(Quantize, Q8_KBlock) {
    float x[kQKK];
    for (int j = 0; j < kQKK; j++) x[j] = std::sin(0.37f * static_cast<float>(j)) * 3.0f;
    x[77] = 5.0f;
    BlockQ8_K b;
    quantize_row(DType::Q8_K, x, &b, kQKK);
    EXPECT_FLOAT_EQ(b.d, 5.0f / -127.0f);
    EXPECT_EQ(b.qs[77], -127);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += b.qs[g * 16 + j];
        EXPECT_EQ(b.bsums[g], sum);
    }
    float y[kQKK];
    dequantize_row(DType::Q8_K, &b, y, kQKK);
    for (int j = 0; j < kQKK; j++) EXPECT_NEAR(y[j], x[j], 5.0f / 127 * 0.5f + 1e-6f) << j;
    const float zeros[kQKK] = {};
    quantize_row(DType::Q8_K, zeros, &b, kQKK);
    EXPECT_EQ(b.d, 0.0f);
    EXPECT_EQ(b.bsums[3], 0);
}

// Hand-worked blocks pin down ggml's reference choices (scale sign, rounding, nibble order).
TEST(Quantize, Q8_0KnownBlock) {
    float x[kQK];
    for (int j = 0; j < kQK; j++) x[j] = static_cast<float>(j - 16) / 16.0f * 1.27f;  // -1.27..
    BlockQ8_0 b;
    quantize_row(DType::Q8_0, x, &b, kQK);
    EXPECT_EQ(b.d, fp32_to_fp16(1.27f / 127));  // amax = |x[0]| = 1.27
    for (int j = 0; j < kQK; j++) {
        EXPECT_EQ(b.qs[j], static_cast<int8_t>(std::round(x[j] * (1.0f / (1.27f / 127))))) << j;
    }
    EXPECT_EQ(b.qs[0], -127);
    EXPECT_EQ(b.qs[16], 0);
}

TEST(Quantize, Q4_0KnownBlock) {
    float x[kQK] = {};
    x[3] = -4.0f;  // the largest magnitude is negative: d = -4 / -8 = 0.5
    x[20] = 3.5f;  // 3.5 / 0.5 + 8 = 15
    x[5] = 1.0f;   // 2 + 8 = 10
    x[21] = 3.9f;  // 7.8 + 8.5 = 16.3 -> clamped to 15
    BlockQ4_0 b;
    quantize_row(DType::Q4_0, x, &b, kQK);
    EXPECT_EQ(b.d, fp32_to_fp16(0.5f));
    EXPECT_EQ(b.qs[3] & 0x0f, 0);
    EXPECT_EQ(b.qs[5] & 0x0f, 10);
    EXPECT_EQ(b.qs[4] >> 4, 15);  // element 20 is the high nibble of byte 4
    EXPECT_EQ(b.qs[5] >> 4, 15);
    EXPECT_EQ(b.qs[0], 0x88);  // zeros quantize to 8
    float y[kQK];
    dequantize_row(DType::Q4_0, &b, y, kQK);
    EXPECT_EQ(y[3], -4.0f);
    EXPECT_EQ(y[20], 3.5f);
    EXPECT_EQ(y[21], 3.5f);
    EXPECT_EQ(y[0], 0.0f);

    for (float& v : x) v = 3.0f;  // all positive, equal: d = 3 / -8, every q = 0
    quantize_row(DType::Q4_0, x, &b, kQK);
    EXPECT_EQ(fp16_to_fp32(b.d), -0.375f);
    for (uint8_t q : b.qs) EXPECT_EQ(q, 0x00);
}

TEST(Quantize, Q4_1KnownBlock) {
    float x[kQK];
    for (int j = 0; j < kQK; j++) x[j] = 1.0f + static_cast<float>(j % 16);  // 1 .. 16
    BlockQ4_1 b;
    quantize_row(DType::Q4_1, x, &b, kQK);
    EXPECT_EQ(fp16_to_fp32(b.d), 1.0f);
    EXPECT_EQ(fp16_to_fp32(b.m), 1.0f);
    for (int j = 0; j < kQK / 2; j++) EXPECT_EQ(b.qs[j], (j % 16) | ((j % 16) << 4)) << j;
    float y[kQK];
    dequantize_row(DType::Q4_1, &b, y, kQK);
    for (int j = 0; j < kQK; j++) EXPECT_EQ(y[j], x[j]) << j;
}

TEST(Quantize, ZeroBlocks) {
    float x[kQK] = {};
    float y[kQK];
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q8_1}) {
        uint8_t buf[64];
        quantize_row(t, x, buf, kQK);
        for (float& v : y) v = 1.0f;
        dequantize_row(t, buf, y, kQK);
        for (float v : y) EXPECT_EQ(v, 0.0f) << dtype_name(static_cast<uint32_t>(t));
    }
}

TEST(Quantize, Q8_1SumField) {
    const std::vector<float> x = test_data(int64_t{64} * kQK, 7);
    std::vector<BlockQ8_1> b(64);
    quantize_row(DType::Q8_1, x.data(), b.data(), static_cast<int64_t>(x.size()));
    for (const BlockQ8_1& blk : b) {
        int sum = 0;
        for (int8_t q : blk.qs) sum += q;
        const float d = fp16_to_fp32(blk.d);
        // s is fp16(d_unrounded * sum): within fp16 rounding of both d and s.
        EXPECT_NEAR(fp16_to_fp32(blk.s), d * static_cast<float>(sum),
                    std::fabs(d * static_cast<float>(sum)) * (2.0f / 1024) + 1e-30f);
    }
}

TEST(Quantize, RoundTripErrorWithinBound) {
    struct Case {
        DType type;
        float max_err;
        bool by_range;  // error relative to max - min rather than max |x|
    };
    const Case cases[] = {
        {DType::F32, 0.0f, false},         {DType::F16, kF16MaxRelErr, false},
        {DType::Q4_0, kQ4_0MaxErr, false}, {DType::Q4_1, kQ4_1MaxErr, true},
        {DType::Q8_0, kQ8_0MaxErr, false}, {DType::Q8_1, kQ8_1MaxErr, false},
        {DType::Q5_0, kQ5_0MaxErr, false}, {DType::Q5_1, kQ5_1MaxErr, true},
    };
    const int64_t n = int64_t{4096} * kQK;
    const std::vector<float> x = test_data(n, 1234);
    for (const Case& c : cases) {
        std::vector<uint8_t> q(dtype_row_bytes(c.type, n));
        std::vector<float> y(static_cast<size_t>(n));
        quantize_row(c.type, x.data(), q.data(), n);
        dequantize_row(c.type, q.data(), y.data(), n);
        double worst = 0.0;
        double sum_sq = 0.0;
        for (int64_t b = 0; b < n / kQK; b++) {
            const float* xb = x.data() + b * kQK;
            const float* yb = y.data() + b * kQK;
            float amax = 0.0f, lo = xb[0], hi = xb[0];
            for (int j = 0; j < kQK; j++) {
                amax = std::max(amax, std::fabs(xb[j]));
                lo = std::min(lo, xb[j]);
                hi = std::max(hi, xb[j]);
            }
            for (int j = 0; j < kQK; j++) {
                // F16 is relative per element (absolute below the smallest normal half), the
                // block formats relative to the block's reference.
                const float ref = c.type == DType::F16 ? std::max(std::fabs(xb[j]), 0x1p-14f)
                                  : c.by_range         ? hi - lo
                                                       : amax;
                const double err = std::fabs(static_cast<double>(xb[j]) - yb[j]) / ref;
                worst = std::max(worst, err);
                sum_sq += err * err;
            }
        }
        std::printf("%-5s max err %.6f (bound %.6f), rms %.6f\n",
                    std::string(dtype_name(static_cast<uint32_t>(c.type))).c_str(), worst,
                    c.max_err, std::sqrt(sum_sq / static_cast<double>(n)));
        EXPECT_LE(worst, c.max_err) << dtype_name(static_cast<uint32_t>(c.type));
    }
}

// Our K-quant writers (not llama-quantize's fits): the round trip's RMS error as a share of the
// data's RMS, super-block by super-block, must be within 5% of the legacy type of about the
// same bits per weight or better (Q4_K 4.5 vs Q4_1 5; Q5_K 5.5 vs Q5_1 6; Q6_K 6.56 vs Q5_0
// 5.5), and under a stated bound (measured 0.108, 0.054, 0.033 on 2026-12-06). The data is weight-like: Gaussian rows of one scale per super-block (the
// K-quants share d across 256 values), with a few outliers.
TEST(Quantize, KQuantRoundTrip) {
    const int64_t n = int64_t{256} * kQKK;
    std::mt19937 rng(99);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) {
        const float scale = std::pow(10.0f, static_cast<float>((i / kQKK) % 5) - 2.0f);
        x[static_cast<size_t>(i)] = g(rng) * scale * (i % 97 == 5 ? 6.0f : 1.0f);
    }
    const auto rms_error = [&](DType t) {
        std::vector<uint8_t> q(dtype_row_bytes(t, n));
        std::vector<float> y(static_cast<size_t>(n));
        quantize_row(t, x.data(), q.data(), n);
        dequantize_row(t, q.data(), y.data(), n);
        double worst = 0;
        for (int64_t b = 0; b < n / kQKK; b++) {
            double e = 0, r = 0;
            for (int64_t i = b * kQKK; i < (b + 1) * kQKK; i++) {
                e += std::pow(x[static_cast<size_t>(i)] - y[static_cast<size_t>(i)], 2.0);
                r += std::pow(x[static_cast<size_t>(i)], 2.0);
            }
            worst = std::max(worst, std::sqrt(e / r));
        }
        return worst;
    };
    const struct {
        DType k, legacy;
        double bound;
    } cases[] = {{DType::Q4_K, DType::Q4_1, 0.12}, {DType::Q5_K, DType::Q5_1, 0.06}, {DType::Q6_K, DType::Q5_0, 0.04}};
    for (const auto& c : cases) {
        const double ek = rms_error(c.k), el = rms_error(c.legacy);
        std::printf("%s worst super-block RMS error %.4f of RMS (bound %.2f); %s %.4f\n",
                    std::string(dtype_name(static_cast<uint32_t>(c.k))).c_str(), ek, c.bound,
                    std::string(dtype_name(static_cast<uint32_t>(c.legacy))).c_str(), el);
        EXPECT_LE(ek, c.bound);
        EXPECT_LT(ek, el * 1.05);
    }
}
