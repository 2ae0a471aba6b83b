// Placeholder until the neon backend lands: reports that this build has no such backend, so
// kernels_best() falls back to the next one.
#include "microlm/kernels.h"

namespace microlm {

const Kernels* kernels_neon() { return nullptr; }

}  // namespace microlm
