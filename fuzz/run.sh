#!/usr/bin/env bash
# Builds fuzz/fuzz_gguf.cpp with clang's libFuzzer + ASan/UBSan and fuzzes the GGUF reader
# for SECONDS (default 60), seeded with small GGUF files that microlm writes itself.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
out=build-fuzz
mkdir -p "$out/corpus"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -Isrc)
srcs=$(find src -name '*.cpp' ! -path 'src/cli/*')
avx2=$(echo "$srcs" | grep '_avx2\.cpp$')
objs=()
for s in $srcs; do
    o="$out/$(echo "$s" | tr / _).o"
    extra=(); [ "$s" = "$avx2" ] && extra=(-mavx2 -mfma -mf16c)
    clang++ "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" "${extra[@]}" -c "$s" -o "$o"
    objs+=("$o")
done
clang++ "${flags[@]}" fuzz/fuzz_gguf.cpp "${objs[@]}" -o "$out/fuzz_gguf"
[ -x build/microlm ] && build/microlm make-random -o "$out/corpus/tiny.gguf" --shape tiny --type q4_0 2>/dev/null || true
"$out/fuzz_gguf" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 "$out/corpus"
