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
        for (const WeightRef* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) sum += bytes(*w);
    }
    return sum;
}

double measure_read_gbps(size_t bytes) {
    constexpr int kLanes = 8;  // independent sums, so the loads are not serialised by one add chain
    std::vector<uint64_t> buf(std::max<size_t>(bytes / sizeof(uint64_t), kLanes) / kLanes * kLanes, 1);
    uint64_t total = 0;
    double best_s = 1e30;
    for (int pass = 0; pass < 12; ++pass) {  // the first passes bring the buffer into the cache
        const auto t0 = Clock::now();
        uint64_t acc[kLanes] = {};
        for (size_t i = 0; i < buf.size(); i += kLanes)
            for (int j = 0; j < kLanes; ++j) acc[j] += buf[i + static_cast<size_t>(j)];
        const double s = Stopwatch::ms_between(t0, Clock::now()) / 1000.0;
        for (uint64_t a : acc) total += a;
        best_s = std::min(best_s, s);
    }
    if (total != static_cast<uint64_t>(12 * buf.size())) throw Error("read bandwidth probe: wrong sum");
    return static_cast<double>(buf.size() * sizeof(uint64_t)) / std::max(best_s, 1e-12) / 1e9;
}

}  // namespace microlm
