// bench_generation(): repeated prefill + greedy decode on one context, medians of the timings.
#include "microlm/bench.h"

#include <algorithm>
#include <chrono>

#include "microlm/error.h"
#include "microlm/sampler.h"
#include "microlm/stopwatch.h"

namespace microlm {
namespace {

using Clock = Stopwatch::Clock;

// One cache line of eight counters (GCC vector extension: one 512-bit load where the CPU has
// them), for the read bandwidth probe; four lines per step, so the loads do not wait on one add.
using Line = uint64_t __attribute__((vector_size(64)));
constexpr size_t kLinesPerStep = 4;

// The sum of every counter in n lines (n a multiple of kLinesPerStep). Cloned for AVX-512 and
// AVX2 on x86-64, so that the probe reads with the widest loads the CPU has, as the kernels do.
#if defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
uint64_t sum_lines(const Line* p, size_t n) {
    Line a{}, b{}, c{}, d{};
    for (size_t i = 0; i < n; i += kLinesPerStep) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    const Line s = a + b + c + d;
    uint64_t r = 0;
    for (int j = 0; j < 8; ++j) r += s[j];
    return r;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

BenchTimings run_once(Context& ctx, const std::vector<int32_t>& prompt, int64_t n_gen) {
    BenchTimings t;
    ctx.truncate(0);
    const auto t0 = Clock::now();
    auto logits = ctx.eval(prompt);
    const auto t_prefill = Clock::now();
    t.prefill_ms = Stopwatch::ms_between(t0, t_prefill);
    Clock::time_point t_first = t_prefill;
    for (int64_t i = 0; i < n_gen; ++i) {
        const int32_t tok = argmax(logits);
        const auto now = Clock::now();
        if (i == 0) {
            t_first = now;
            t.ttft_ms = Stopwatch::ms_between(t0, now);
        }
        if (i == 3) t.first4_ms = Stopwatch::ms_between(t0, now);
        if (i == 7) t.first8_ms = Stopwatch::ms_between(t0, now);
        if (i + 1 == n_gen) {
            t.total_ms = Stopwatch::ms_between(t0, now);
            t.decode_ms = Stopwatch::ms_between(t_first, now);
            break;
        }
        logits = ctx.eval(std::span<const int32_t>(&tok, 1));
    }
    return t;
}

}  // namespace

std::vector<int32_t> bench_prompt(int64_t n_vocab, int64_t n) {
    // Skip the low ids, where byte-level vocabularies keep their special and byte tokens.
    const int64_t lo = std::min<int64_t>(300, n_vocab / 2), span = n_vocab - lo;
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(lo + (i * 7919 + 13) % span));
    return ids;
}

BenchTimings bench_generation(Context& ctx, const std::vector<int32_t>& prompt, int64_t n_gen, int reps) {
    if (n_gen < 1 || reps < 1 || prompt.empty()) throw Error("bench: needs a prompt, n >= 1 and reps >= 1");
    if (static_cast<int64_t>(prompt.size()) + n_gen > ctx.n_ctx()) {
        throw Error("bench: prompt + n = " + std::to_string(prompt.size() + n_gen) + " exceeds the context " +
                    std::to_string(ctx.n_ctx()));
    }
    run_once(ctx, prompt, n_gen);  // warm-up: page in the weights, fill the caches
    std::vector<BenchTimings> runs;
    for (int r = 0; r < reps; ++r) runs.push_back(run_once(ctx, prompt, n_gen));
    auto med = [&](double BenchTimings::*field) {
        std::vector<double> v;
        for (const auto& r : runs) v.push_back(r.*field);
        return median(v);
    };
    BenchTimings out;
    out.prefill_ms = med(&BenchTimings::prefill_ms);
    out.ttft_ms = med(&BenchTimings::ttft_ms);
    out.first4_ms = med(&BenchTimings::first4_ms);
    out.first8_ms = med(&BenchTimings::first8_ms);
    out.total_ms = med(&BenchTimings::total_ms);
    out.decode_ms = med(&BenchTimings::decode_ms);
    return out;
}

size_t decode_weight_bytes(const Model& model) {
    const auto bytes = [](const WeightRef& w) { return static_cast<size_t>(w.rows) * w.row_bytes; };
    size_t sum = bytes(model.output);
    for (const LayerWeights& l : model.layers) {
        for (const WeightRef* w : l.matrices()) sum += bytes(*w);
    }
    return sum;
}

double measure_read_gbps(size_t bytes) {
    // Past 256 MiB every buffer lives in memory, not a cache: a bigger one would measure the same
    // and hold a second copy of a large model.
    bytes = std::min<size_t>(bytes, size_t{256} << 20);
    std::vector<Line> buf(std::max<size_t>(bytes / sizeof(Line), kLinesPerStep) / kLinesPerStep * kLinesPerStep);
    for (Line& l : buf) l = Line{} + 1;
    uint64_t total = 0;
    double best_s = 1e30;
    constexpr int kPasses = 12;  // the first passes bring the buffer into the cache
    for (int pass = 0; pass < kPasses; ++pass) {
        const auto t0 = Clock::now();
        total += sum_lines(buf.data(), buf.size());
        best_s = std::min(best_s, Stopwatch::ms_between(t0, Clock::now()) / 1000.0);
    }
    if (total != uint64_t{kPasses} * buf.size() * 8) throw Error("read bandwidth probe: wrong sum");
    return static_cast<double>(buf.size() * sizeof(Line)) / std::max(best_s, 1e-12) / 1e9;
}

}  // namespace microlm
