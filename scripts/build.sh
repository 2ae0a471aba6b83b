#!/usr/bin/env bash
# Configures and builds microlm into build/ (Release) or, with --sanitize, build-asan/
# (AddressSanitizer + UndefinedBehaviorSanitizer). Prints the build folder on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = "--sanitize" ]; then
    dir=build-asan
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMICROLM_SANITIZE=ON)
fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
echo "$dir"
