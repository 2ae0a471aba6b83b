#!/usr/bin/env bash
# Configures and builds microlm into build/ (Release) or, with --sanitize, build-asan/
# (AddressSanitizer + UndefinedBehaviorSanitizer). With --main: only what the main job runs
# (the microlm binary; no tests, no trainer), so the main job's set-up needs no test packages.
# Prints the build folder on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
flags=(-DCMAKE_BUILD_TYPE=Release -DMICROLM_TESTS=ON -DMICROLM_TRAIN=ON)
targets=()
case "${1:-}" in
    --sanitize)
        dir=build-asan
        flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMICROLM_SANITIZE=ON -DMICROLM_TESTS=ON) ;;
    --main)
        # A folder of its own, so that it never turns the test build's options off.
        dir=build-main
        flags=(-DCMAKE_BUILD_TYPE=Release -DMICROLM_TESTS=OFF -DMICROLM_TRAIN=OFF)
        targets=(--target microlm) ;;
    "") ;;
    *) echo "usage: scripts/build.sh [--sanitize | --main]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
echo "$dir"
