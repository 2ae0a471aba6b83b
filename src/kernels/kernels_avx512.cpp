// Placeholder until the avx512 backend lands: reports that this build has no such backend, so
// kernels_best() falls back to the next one.
#include "microlm/kernels.h"

namespace microlm {

const Kernels* kernels_avx512() { return nullptr; }

}  // namespace microlm
