// The quantized dot products of the NEON backend for CPUs with the dot-product extension
// (SDOT: four int8 products summed into each int32 lane): neon_rows.h's kernels instantiated
// with SDOT lanes. Compiled with +dotprod, so nothing here may run before kernels_neon() has seen
// HWCAP_ASIMDDP; the rest of the table is kernels_neon.cpp.
#include "microlm/dtype.h"

#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD)
#error "kernels_neon_dotprod.cpp needs -march=armv8.2-a+dotprod (CMakeLists.txt adds it to *_dotprod.cpp)"
#endif

#include <arm_neon.h>

#include "neon_rows.h"

// Only intrinsics and builtins here and in neon_rows.h, no standard-library inline functions: an
// inline function instantiated here would be compiled for +dotprod, and the linker could hand
// that copy to the baseline code in kernels_neon.cpp.
namespace microlm {

namespace {

struct SdotLanes {
    static int32x4_t of(int8x16_t w, int8x16_t x) { return vdotq_s32(vdupq_n_s32(0), w, x); }
};

}  // namespace

namespace neon_dotprod {

// Declared in kernels_neon.cpp.
void quant_rows(DType type, const void* w, const void* const* xs, int nt, int64_t nb, float* out) {
    neon_legacy_rows_any<SdotLanes>(type, w, xs, nt, nb, out);
}

void k_lanes(const UnpackedK& u, const BlockQ8_K& x, NeonKLanes& il) {
    neon_k_lanes<SdotLanes>(u, x, il);
}

}  // namespace neon_dotprod

}  // namespace microlm

#endif
