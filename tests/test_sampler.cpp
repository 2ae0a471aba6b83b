// Sampler: greedy is argmax; filtered temperature sampling draws each candidate with the
// probability an independent computation (double precision, written out here) predicts;
// the same seed gives the same tokens; the repetition penalty acts once per distinct token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "microlm/sampler.h"

using namespace microlm;

namespace {

// Expected probabilities after top-k, top-p, min-p and temperature, in llama.cpp's order.
std::vector<double> expected_probs(const std::vector<float>& logits, const SamplerParams& p) {
    std::vector<int> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    size_t n = p.top_k > 0 ? std::min<size_t>(idx.size(), static_cast<size_t>(p.top_k)) : idx.size();
    std::vector<double> pr(n);
    double z = 0;
    for (size_t i = 0; i < n; ++i) z += pr[i] = std::exp(static_cast<double>(logits[idx[i]] - logits[idx[0]]));
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
        cum += pr[i] / z;
        if (cum >= p.top_p) {
            n = i + 1;
            break;
        }
    }
    size_t keep = 1;
    while (keep < n && pr[keep] >= p.min_p) ++keep;
    n = keep;
    std::vector<double> out(logits.size(), 0.0);
    z = 0;
    for (size_t i = 0; i < n; ++i) z += std::exp((logits[idx[i]] - logits[idx[0]]) / static_cast<double>(p.temperature));
    for (size_t i = 0; i < n; ++i) out[idx[i]] = std::exp((logits[idx[i]] - logits[idx[0]]) / static_cast<double>(p.temperature)) / z;
    return out;
}

// Largest |observed - expected| frequency over 100000 draws.
double max_frequency_error(const std::vector<float>& logits, const SamplerParams& p) {
    Sampler s(p);
    const int draws = 100000;
    std::vector<int> count(logits.size(), 0);
    for (int i = 0; i < draws; ++i) ++count[static_cast<size_t>(s.sample(logits))];
    const auto want = expected_probs(logits, p);
    double worst = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (want[i] == 0.0) {
            EXPECT_EQ(count[i], 0) << "token " << i << " should have been filtered out";
        }
        worst = std::max(worst, std::fabs(count[i] / double(draws) - want[i]));
    }
    return worst;
}

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f, 0.5f, -3.0f, 1.5f, 2.0f};
// Frequencies over 1e5 draws: 5 standard deviations of the worst case p = 0.5 is ~0.008.
constexpr double kFrequencyTolerance = 0.008;

}  // namespace

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
    SamplerParams p;
    p.temperature = 0;
    Sampler s(p);
    EXPECT_EQ(s.sample(kLogits), 1);
    EXPECT_EQ(argmax(std::vector<float>{1, 5, 5, 2}), 1);
    EXPECT_EQ(Sampler(p).sample(std::vector<float>{1, 5, 5, 2}), 1);
}

TEST(Sampler, FilteredTemperatureSamplingMatchesTheExpectedDistribution) {
    for (auto [temp, k, top_p, min_p] : std::vector<std::tuple<float, int, float, float>>{
             {1.0f, 0, 1.0f, 0.0f}, {0.7f, 5, 1.0f, 0.0f}, {1.3f, 0, 0.8f, 0.0f}, {1.0f, 0, 1.0f, 0.3f}, {0.8f, 40, 0.95f, 0.05f}}) {
        SamplerParams p;
        p.temperature = temp;
        p.top_k = k;
        p.top_p = top_p;
        p.min_p = min_p;
        const double err = max_frequency_error(kLogits, p);
        std::printf("temp %.1f top-k %d top-p %.2f min-p %.2f: max frequency error %.4f (tolerance %.3f)\n", temp, k, top_p,
                    min_p, err, kFrequencyTolerance);
        EXPECT_LE(err, kFrequencyTolerance);
    }
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
    SamplerParams p;
    p.temperature = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    auto draw = [&](uint64_t seed) {
        p.seed = seed;
        Sampler s(p);
        std::vector<int32_t> out;
        for (int i = 0; i < 64; ++i) out.push_back(s.sample(kLogits));
        return out;
    };
    EXPECT_EQ(draw(7), draw(7));
    EXPECT_NE(draw(7), draw(8));
    Sampler s(p);
    const auto first = s.sample(kLogits);
    s.reset();
    EXPECT_EQ(s.sample(kLogits), first);
}

TEST(Sampler, RepetitionPenaltyActsOncePerDistinctToken) {
    SamplerParams p;
    p.temperature = 0;
    p.repeat_penalty = 1.25f;
    p.repeat_last_n = 4;
    Sampler s(p);
    // Token 1 (3.0) penalized once becomes 2.4 < 2.9 (token 5); twice would be 1.92 < 2.5.
    s.accept(1);
    s.accept(1);
    s.accept(1);
    EXPECT_EQ(s.sample(kLogits), 5);
    s.accept(5);
    // 1 -> 2.4, 5 -> 2.32: token 2 (2.5) wins.
    EXPECT_EQ(s.sample(kLogits), 2);
    // The window is 4 tokens: after four other tokens, 1 and 5 are no longer penalized.
    for (int i = 0; i < 4; ++i) s.accept(7);
    EXPECT_EQ(s.sample(kLogits), 1);
    // Negative logits are multiplied: token 3 (-1) becomes -1.25 and stays below token 4.
    std::vector<float> neg = {-1.0f, -1.1f};
    Sampler s2(p);
    s2.accept(0);
    EXPECT_EQ(s2.sample(neg), 1);
}

TEST(Sampler, UniformDrawsAreInRangeAndSpread) {
    Sampler s(SamplerParams{});
    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < 100000; ++i) {
        const double u = s.next_uniform();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        sum += u;
        lo = std::min(lo, u);
        hi = std::max(hi, u);
    }
    EXPECT_NEAR(sum / 100000, 0.5, 0.005);
    EXPECT_LT(lo, 0.001);
    EXPECT_GT(hi, 0.999);
}
