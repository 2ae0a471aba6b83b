// Token sampling from logits: greedy, or repetition penalty -> top-k -> top-p -> min-p ->
// temperature -> a draw from a seeded generator (the order llama.cpp's default chain uses).
// The same seed, parameters and logits always give the same tokens, on every platform.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace microlm {

struct SamplerParams {
    float temperature = 0.8f;    // <= 0: greedy (argmax)
    int top_k = 40;              // <= 0: off
    float top_p = 0.95f;         // >= 1: off
    float min_p = 0.05f;         // <= 0: off
    float repeat_penalty = 1.0f; // 1: off; applied to the last repeat_last_n tokens
    int repeat_last_n = 64;
    uint64_t seed = 42;
};

class Sampler {
public:
    explicit Sampler(SamplerParams params);
    // Picks the next token; call accept() with it (and with prompt tokens, for the penalty).
    int32_t sample(std::span<const float> logits);
    void accept(int32_t token);
    void reset();
    const SamplerParams& params() const { return params_; }

    // A uniform double in [0, 1) from the sampler's generator (xoshiro256**).
    double next_uniform();

private:
    struct Candidate {
        float logit;
        int32_t id;
    };
    SamplerParams params_;
    uint64_t state_[4];
    std::deque<int32_t> recent_;
    std::vector<Candidate> cand_;
    std::vector<float> probs_;
    std::vector<uint8_t> penalized_;
};

// Index of the largest logit; the lowest index wins a tie.
int32_t argmax(std::span<const float> logits);

}  // namespace microlm
