// The tests' independent log-softmax: log p(id) under `logits`, written out in long double,
// against which the runtime's scoring (score_tokens, serve-model's echo) is checked.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

inline double reference_logprob(std::span<const float> logits, int32_t id) {
    long double z = 0, mx = logits[0];
    for (const float v : logits) mx = std::max<long double>(mx, v);
    for (const float v : logits) z += std::exp(static_cast<long double>(v) - mx);
    return static_cast<double>(logits[static_cast<size_t>(id)] - mx - std::log(z));
}
