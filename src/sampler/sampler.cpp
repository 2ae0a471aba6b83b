// Sampler: candidate filtering and a seeded draw. The generator is xoshiro256** seeded by
// splitmix64, so results do not depend on the standard library's distributions.
#include "microlm/sampler.h"

#include <algorithm>
#include <cmath>

namespace microlm {
namespace {

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

int32_t argmax(std::span<const float> logits) {
    // The best value kept in a register: comparing against logits[best] chained every compare to
    // a load (6% of a μLM's decode step).
    int32_t best = 0;
    float best_value = logits.empty() ? 0.0f : logits[0];
    for (size_t i = 1; i < logits.size(); ++i) {
        if (logits[i] > best_value) {
            best_value = logits[i];
            best = static_cast<int32_t>(i);
        }
    }
    return best;
}

Sampler::Sampler(SamplerParams params) : params_(params) { reset(); }

void Sampler::reset() {
    uint64_t s = params_.seed;
    for (auto& v : state_) v = splitmix64(s);
    recent_.clear();
}

double Sampler::next_uniform() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return static_cast<double>(result >> 11) * 0x1.0p-53;
}

void Sampler::accept(int32_t token) {
    if (params_.repeat_last_n <= 0) return;
    recent_.push_back(token);
    while (recent_.size() > static_cast<size_t>(params_.repeat_last_n)) recent_.pop_front();
}

int32_t Sampler::sample(std::span<const float> logits) {
    cand_.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) cand_[i] = {logits[i], static_cast<int32_t>(i)};
    if (params_.repeat_penalty != 1.0f) {
        // Each distinct recent token is penalized once, however often it repeats (as llama.cpp).
        penalized_.resize(logits.size(), 0);
        for (int32_t id : recent_) {
            if (id < 0 || static_cast<size_t>(id) >= cand_.size() || penalized_[static_cast<size_t>(id)]) continue;
            penalized_[static_cast<size_t>(id)] = 1;
            float& l = cand_[static_cast<size_t>(id)].logit;
            l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
        }
        for (int32_t id : recent_) {
            if (id >= 0 && static_cast<size_t>(id) < penalized_.size()) penalized_[static_cast<size_t>(id)] = 0;
        }
    }
    if (params_.temperature <= 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < cand_.size(); ++i) {
            if (cand_[i].logit > cand_[best].logit) best = i;
        }
        return cand_[best].id;
    }
    const auto by_logit = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    size_t n = cand_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
        n = static_cast<size_t>(params_.top_k);
        std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(n), cand_.end(), by_logit);
    } else {
        std::sort(cand_.begin(), cand_.end(), by_logit);
    }
    // Softmax over the kept candidates (sorted, so cand_[0] is the maximum).
    probs_.resize(n);
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        probs_[i] = std::exp(cand_[i].logit - cand_[0].logit);
        sum += probs_[i];
    }
    if (params_.top_p < 1.0f) {
        double cum = 0.0;
        for (size_t i = 0; i < n; ++i) {
            cum += probs_[i] / sum;
            if (cum >= params_.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (params_.min_p > 0.0f) {
        // probs_[0] is exp(0) = 1: keep candidates whose probability is >= min_p x the top one.
        size_t keep = 1;
        while (keep < n && probs_[keep] >= params_.min_p) ++keep;
        n = keep;
    }
    // Temperature on the survivors, then one draw.
    sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        probs_[i] = std::exp((cand_[i].logit - cand_[0].logit) / params_.temperature);
        sum += probs_[i];
    }
    double r = next_uniform() * sum;
    for (size_t i = 0; i < n; ++i) {
        r -= probs_[i];
        if (r < 0.0) return cand_[i].id;
    }
    return cand_[n - 1].id;
}

}  // namespace microlm
