// Timing one model the way `microlm bench` reports it: prefill of a fixed prompt, then greedy
// decoding, with time to the first, 4th and 8th token. Process-level figures (peak RSS) and
// the comparison with llama.cpp live in the CLI (src/cli/cmd_bench.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "microlm/model.h"

namespace microlm {

struct BenchTimings {
    double prefill_ms = 0;   // eval of the whole prompt
    double ttft_ms = 0;      // prompt start to the first sampled token
    double first4_ms = 0;    // ... to the 4th sampled token (0 if n < 4)
    double first8_ms = 0;    // ... to the 8th sampled token (0 if n < 8)
    double total_ms = 0;     // ... to the n-th sampled token (n-1 decode steps)
    double decode_ms = 0;    // the n-1 single-token evals and samples after the first token
};

// The prompt used by both engines: `n` deterministic, non-special token ids of the vocabulary.
std::vector<int32_t> bench_prompt(int64_t n_vocab, int64_t n);

// Runs the prompt and n_gen greedy tokens `reps` times on one context (after one warm-up run)
// and returns the median of each figure.
BenchTimings bench_generation(Context& ctx, const std::vector<int32_t>& prompt, int64_t n_gen, int reps);

// Bytes of weights one decode step streams: every layer's matrices and the output head (of the
// token embedding only one row is read, which is not counted).
size_t decode_weight_bytes(const Model& model);

// This thread's sequential read speed over a buffer of `bytes` (at most 256 MiB; best of several
// passes, GB/s): decode cannot stream its weights faster from where that many bytes live.
double measure_read_gbps(size_t bytes);

}  // namespace microlm
