// The decode loop allocates nothing: after a context is built and the prompt evaluated, each
// eval of one token (1 and 2 threads) and each greedy sample run without touching the heap.
// Counted by replacing the global operator new in this test binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "microlm/model.h"
#include "microlm/random_model.h"
#include "microlm/sampler.h"

namespace {
std::atomic<long> g_allocations{0};
}

// The replacements pair malloc with free by design; GCC's mismatch check cannot see that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using namespace microlm;

TEST(NoAlloc, DecodeStepsAndGreedySamplingDoNotAllocate) {
    const std::string path = (std::filesystem::temp_directory_path() / "microlm_test_noalloc.gguf").string();
    write_random_llama(path, *model_shape_preset("tiny"), DType::Q8_0, 9);
    auto m = Model::load(path);
    for (int threads : {1, 2}) {
        Context ctx(*m, 128, threads);
        SamplerParams sp;
        sp.temperature = 0.0f;
        Sampler sampler(sp);
        const std::vector<int32_t> prompt = {257, 300, 301, 302, 17};
        auto logits = ctx.eval(prompt);
        int32_t tok = sampler.sample(logits);
        const long before = g_allocations.load();
        for (int i = 0; i < 32; ++i) {
            logits = ctx.eval(std::span<const int32_t>(&tok, 1));
            tok = sampler.sample(logits);
            sampler.accept(tok);
        }
        EXPECT_EQ(g_allocations.load() - before, 0) << threads << " thread(s)";
    }
    std::filesystem::remove(path);
}
