// Attention kernels (scores and weighted values over an fp16 KV cache): every backend sums
// in the same 16-lane order, so SIMD results must equal the scalar oracle bit for bit, and
// the scalar oracle must match a double-precision reference within a named tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "microlm/kernels.h"

using namespace microlm;

namespace {

constexpr double kAttnRelTolerance = 1e-5;  // relative to sum |terms|, float accumulation

std::vector<const Kernels*> simd_backends() {
    std::vector<const Kernels*> out;
    for (const Kernels* k : {kernels_avx2(), kernels_avx512(), kernels_neon()}) {
        if (k) out.push_back(k);
    }
    return out;
}

struct Case {
    int64_t hd, n_keys, stride;
};

}  // namespace

TEST(AttentionKernels, ScalarMatchesDoubleReferenceAndSimdMatchesScalarExactly) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (Case c : {Case{64, 1, 192}, Case{64, 37, 192}, Case{128, 300, 256}, Case{16, 5, 16}, Case{24, 19, 48},
                   Case{32, 48, 64}}) {
        std::vector<uint16_t> q(static_cast<size_t>(c.hd)), kv(static_cast<size_t>(c.n_keys * c.stride));
        for (auto& x : q) x = fp32_to_fp16(nd(rng));
        for (auto& x : kv) x = fp32_to_fp16(nd(rng));
        std::vector<float> p(static_cast<size_t>(c.n_keys));
        for (auto& x : p) x = std::fabs(nd(rng)) / static_cast<float>(c.n_keys);

        const float scale = 0.125f;
        std::vector<float> s_ref(p.size()), v_ref(static_cast<size_t>(c.hd));
        kernels_scalar().attn_scores(q.data(), kv.data(), c.stride, c.n_keys, c.hd, scale, s_ref.data());
        kernels_scalar().attn_values(p.data(), kv.data(), c.stride, c.n_keys, c.hd, v_ref.data());

        double worst = 0;
        for (int64_t j = 0; j < c.n_keys; j++) {
            double exact = 0, mag = 0;
            for (int64_t d = 0; d < c.hd; d++) {
                const double t = double(fp16_to_fp32(q[d])) * fp16_to_fp32(kv[j * c.stride + d]);
                exact += t;
                mag += std::fabs(t);
            }
            worst = std::max(worst, std::fabs(s_ref[j] - exact * scale) / (mag * scale + 1e-30));
        }
        for (int64_t d = 0; d < c.hd; d++) {
            double exact = 0, mag = 0;
            for (int64_t j = 0; j < c.n_keys; j++) {
                const double t = double(p[j]) * fp16_to_fp32(kv[j * c.stride + d]);
                exact += t;
                mag += std::fabs(t);
            }
            worst = std::max(worst, std::fabs(v_ref[d] - exact) / (mag + 1e-30));
        }
        std::printf("hd %3lld keys %3lld: scalar vs double max rel error %.2e (tolerance %.0e)\n",
                    static_cast<long long>(c.hd), static_cast<long long>(c.n_keys), worst, kAttnRelTolerance);
        EXPECT_LE(worst, kAttnRelTolerance);

        for (const Kernels* k : simd_backends()) {
            std::vector<float> s(p.size()), v(static_cast<size_t>(c.hd));
            k->attn_scores(q.data(), kv.data(), c.stride, c.n_keys, c.hd, scale, s.data());
            k->attn_values(p.data(), kv.data(), c.stride, c.n_keys, c.hd, v.data());
            EXPECT_EQ(s, s_ref) << k->name << " scores, hd " << c.hd;
            EXPECT_EQ(v, v_ref) << k->name << " values, hd " << c.hd;
        }
    }
}
