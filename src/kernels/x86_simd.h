// What the AVX-512 and AMX tables share: <immintrin.h> without GCC 12's false warnings, and a
// per-thread scratch buffer. Private to the kernels part; include it only from files compiled
// with AVX-512 flags (the struct's code may be emitted with them), never from baseline code.
#pragma once

// GCC 12 flags the intrinsics' own deliberately undefined vectors (`__m512 __Y = __Y;` in
// avx512fintrin.h) as uninitialised once inlined: a false positive, silenced for the header's
// lines only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cstddef>
#include <cstdlib>

namespace microlm::simd {

// Grown on demand, 64-byte aligned; a raw malloc'd buffer, not a std::vector (see the top of
// kernels_avx512.cpp). get() returns nullptr when memory runs out.
struct Scratch {
    void* p = nullptr;
    size_t cap = 0;
    Scratch() = default;
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { std::free(p); }
    void* get(size_t bytes) {
        if (bytes > cap) {
            std::free(p);
            cap = (bytes + 4095) & ~size_t{4095};
            p = std::aligned_alloc(64, cap);
            if (p == nullptr) cap = 0;
        }
        return p;
    }
};

}  // namespace microlm::simd
