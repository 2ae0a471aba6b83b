// Matrix product throughput (multiply-accumulates per second) of each available Kernels table
// on the 28M model's shapes, one thread, weights in Q8_0/Q4_0/Q4_1, n = 1 (decode) and n = 32
// (prefill). A Google Benchmark program; not part of the test suite, and not end-to-end speed.
// Build by hand, e.g.:
//   g++ -std=c++20 -O2 -Iinclude bench/bench_kernels.cpp build/libmicrolm_core.a -lbenchmark -lpthread
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "microlm/kernels.h"

using namespace microlm;

namespace {

struct Shape {
    int64_t rows, cols;  // rows = output features, cols = input features
};

// The random 28M preset (dim 512, FFN 1408, vocab 12288): q/k/v/o, gate/up, down, output; then
// the shipped microlm-8m's small ones (dim 256, K/V 64 rows, FFN 704), where fixed costs show.
constexpr Shape kShapes[] = {{512, 512}, {1408, 512}, {512, 1408}, {12288, 512},
                             {256, 256}, {64, 256},   {704, 256},  {256, 704}};
constexpr DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1};
constexpr int64_t kTokens[] = {1, 32};

struct Operands {
    std::vector<uint8_t> w, x;
    std::vector<float> y;
};

Operands make_operands(DType type, Shape s, int64_t n) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Operands o;
    const size_t row_bytes = dtype_row_bytes(type, s.cols);
    o.w.resize(row_bytes * static_cast<size_t>(s.rows));
    std::vector<float> row(static_cast<size_t>(s.cols));
    for (int64_t r = 0; r < s.rows; r++) {
        for (float& v : row) v = u(rng);
        quantize_row(type, row.data(), o.w.data() + static_cast<size_t>(r) * row_bytes, s.cols);
    }
    std::vector<float> x(static_cast<size_t>(n * s.cols));
    for (float& v : x) v = u(rng);
    o.x.resize(prepared_row_bytes(type, s.cols) * static_cast<size_t>(n));
    kernels_scalar().prepare(type, x.data(), n, s.cols, o.x.data());
    o.y.resize(static_cast<size_t>(n * s.rows));
    return o;
}

void bench_matmul(benchmark::State& state, const Kernels* k, DType type, Shape s, int64_t n) {
    Operands o = make_operands(type, s, n);
    const WeightRef w{type, o.w.data(), s.rows, s.cols, dtype_row_bytes(type, s.cols)};
    for (auto _ : state) {
        k->matmul(w, 0, s.rows, o.x.data(), n, o.y.data(), s.rows);
        benchmark::DoNotOptimize(o.y.data());
        benchmark::ClobberMemory();
    }
    // Multiply-accumulates per second: shown as e.g. "45.2G/s", i.e. GMAC/s.
    state.counters["MAC"] =
        benchmark::Counter(static_cast<double>(s.rows * s.cols * n),
                           benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::OneK::kIs1000);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(o.w.size()));
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<const Kernels*> tables = {&kernels_scalar()};
    for (const Kernels* k : {kernels_avx2(), kernels_avx512(), kernels_amx(), kernels_neon()}) {
        if (k != nullptr) tables.push_back(k);
    }
    for (DType type : kTypes) {
        for (int64_t n : kTokens) {
            for (Shape s : kShapes) {
                for (const Kernels* k : tables) {
                    const std::string name = std::string(dtype_name(static_cast<uint32_t>(type))) + "/" +
                                             std::to_string(s.rows) + "x" + std::to_string(s.cols) + "/n" +
                                             std::to_string(n) + "/" + k->name;
                    benchmark::RegisterBenchmark(name.c_str(), bench_matmul, k, type, s, n)
                        ->Unit(benchmark::kMicrosecond);
                }
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
