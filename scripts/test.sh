#!/usr/bin/env bash
# The one test command (README, .ci/run): set-up, then every test in a Release build, the
# unit and random-model parity tests cross-built for aarch64 under qemu (NEON paths), every
# test again in an AddressSanitizer/UBSan build, then the fuzz targets for a minute each.
# Parity tests compare against llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
scripts/build.sh
(cd build && ctest --output-on-failure)
scripts/test_aarch64.sh build/oracle
scripts/build.sh --sanitize
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure)
# libFuzzer targets (GGUF, tokenizer, SSE, request JSON) under ASan/UBSan, 60 s each: costs a
# clang build of build-fuzz/ plus about 4 minutes; fails on any crash (inputs in build-fuzz/artifacts/).
fuzz/run.sh 60
