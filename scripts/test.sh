#!/usr/bin/env bash
# The one test command (README, .ci/run): set-up, then every test twice: a Release build and
# an AddressSanitizer/UBSan build. Parity tests compare against llama.cpp from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure)
scripts/build.sh --sanitize
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure)
