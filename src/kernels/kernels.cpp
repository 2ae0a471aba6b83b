// Picks a compute backend at run time and answers what activations each weight type wants.
// The backends themselves live in kernels_<name>.cpp, one file each.
#include "microlm/kernels.h"

#include <cstdlib>
#include <string_view>

namespace microlm {

DType activation_type(DType weight) {
    switch (weight) {
        case DType::F32: return DType::F32;
        case DType::F16: return DType::F16;
        case DType::Q4_0:
        case DType::Q5_0:
        case DType::Q8_0: return DType::Q8_0;
        case DType::Q4_1:
        case DType::Q5_1:
        case DType::Q8_1: return DType::Q8_1;  // Q4_1's and Q5_1's dots need the block sum s
        case DType::Q2_K:
        case DType::Q3_K:
        case DType::Q4_K:
        case DType::Q5_K:
        case DType::Q6_K:
        case DType::Q8_K: return DType::Q8_K;
    }
    return DType::F32;
}

size_t prepared_row_bytes(DType weight, int64_t cols) {
    return dtype_row_bytes(activation_type(weight), cols);
}

// Looked up on every call (one getenv) so tests can switch backends; callers keep the result.
// An unknown or unavailable MICROLM_KERNELS value falls back to the best backend, because a
// typo in a tuning knob should not stop inference.
const Kernels& kernels_best() {
    const Kernels* candidates[] = {kernels_amx(), kernels_avx512(), kernels_avx2(), kernels_neon()};
    if (const char* env = std::getenv("MICROLM_KERNELS")) {
        if (std::string_view(env) == "scalar") return kernels_scalar();
        for (const Kernels* k : candidates) {
            if (k != nullptr && std::string_view(env) == k->name) return *k;
        }
    }
    for (const Kernels* k : candidates) {
        if (k != nullptr) return *k;
    }
    return kernels_scalar();
}

}  // namespace microlm
