#!/usr/bin/env bash
# Cross-builds microlm and its unit tests for aarch64 into build-aarch64/ and runs them under
# qemu user-mode emulation: scalar kernels, NEON with dotprod (-cpu max), baseline NEON (-cpu
# cortex-a53). Not a benchmark: emulated timings mean nothing. Usage: test_aarch64.sh [ORACLE_DIR]
#
# ORACLE_DIR (or $MICROLM_ORACLE_DIR; default build/oracle) is where the x86 test run's llama.cpp
# oracle wrote model.json and the random models; without it the random-model parity test is
# skipped. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=build-aarch64
deps=$root/$dir/deps  # cross-built GoogleTest plus views of the host's header-only packages
sysroot=/usr/aarch64-linux-gnu
tests=(test_dtype test_kernels test_attention_kernels test_gguf test_tokenizer test_sampler test_model)
if [ -f tests/test_kernels_neon.cpp ]; then tests+=(test_kernels_neon); fi
oracle=${1:-${MICROLM_ORACLE_DIR:-build/oracle}}

say() { printf '[aarch64] %s\n' "$*" >&2; }
start=$SECONDS

qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if ! command -v aarch64-linux-gnu-g++ >/dev/null || [ -z "$qemu" ] || [ ! -d /usr/src/googletest ]; then
    say "cross compiler, qemu or GoogleTest sources missing: running scripts/setup.sh --tests"
    scripts/setup.sh --tests
    qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
fi
if ! command -v aarch64-linux-gnu-g++ >/dev/null || [ -z "$qemu" ]; then
    say "error: need aarch64-linux-gnu-g++ and qemu-aarch64-static or qemu-aarch64"
    say "hint: apt-get install g++-aarch64-linux-gnu qemu-user-static (scripts/setup.sh's list)"
    exit 1
fi

# CMake configs of header-only packages compute their prefix from where the config file sits,
# so a folder of links gives the cross build nlohmann/ and CLI/ without putting the host's
# /usr/include (x86 glibc headers) on the target's include path.
mkdir -p "$deps/include" "$deps/share/cmake/nlohmann_json" "$deps/share/cmake/CLI11"
ln -sfn /usr/include/nlohmann "$deps/include/nlohmann"
ln -sfn /usr/include/CLI "$deps/include/CLI"
for pkg in nlohmann_json CLI11; do
    for f in /usr/share/cmake/"$pkg"/*.cmake; do ln -sf "$f" "$deps/share/cmake/$pkg/"; done
done

toolchain=(-G Ninja -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release)
if [ ! -f "$deps/lib/cmake/GTest/GTestConfig.cmake" ]; then
    say "building GoogleTest from /usr/src/googletest for aarch64"
    cmake -S /usr/src/googletest -B "$dir/googletest" "${toolchain[@]}" -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON \
        -DCMAKE_INSTALL_PREFIX="$deps" >/dev/null
    cmake --build "$dir/googletest" -j "$(nproc)" >/dev/null
    cmake --install "$dir/googletest" >/dev/null
fi

say "building microlm and its tests for aarch64 in $dir/"
cmake -S . -B "$dir" "${toolchain[@]}" -DGTest_DIR="$deps/lib/cmake/GTest" \
    -Dnlohmann_json_DIR="$deps/share/cmake/nlohmann_json" -DCLI11_DIR="$deps/share/cmake/CLI11" -DMICROLM_NET=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" --target microlm "${tests[@]}" test_parity_model

# The tests have the oracle folder compiled in as $dir/oracle; point it at the x86 run's.
parity=1
if [ -f "$oracle/model.json" ]; then
    if [ -L "$dir/oracle" ] || [ ! -e "$dir/oracle" ]; then ln -sfn "$(cd "$oracle" && pwd)" "$dir/oracle"; fi
else
    parity=0
    say "no $oracle/model.json (the x86 ctest run writes it): skipping the random-model parity test"
fi

# name|QEMU_CPU|MICROLM_KERNELS. qemu's "max" CPU has the dot-product extension, the Cortex-A53
# (ARMv8.0) has not, so the two NEON runs take the SDOT and the widening-multiply paths.
configs=("scalar|max|scalar" "neon+dotprod|max|neon" "neon|cortex-a53|neon")
passed=0
failed=()
run() {  # config-name cpu kernels binary [args...]
    local name=$1 cpu=$2 kernels=$3 bin=$4
    shift 4
    local log
    log=$(mktemp)
    if QEMU_CPU=$cpu QEMU_LD_PREFIX=$sysroot MICROLM_KERNELS=$kernels \
        "$qemu" "$dir/tests/$bin" --gtest_brief=1 "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf '[aarch64] ok    %-24s %s\n' "$name" "$bin" >&2
    else
        failed+=("$name:$bin")
        printf '[aarch64] FAIL  %-24s %s\n' "$name" "$bin" >&2
        cat "$log" >&2
    fi
    rm -f "$log"
}
for config in "${configs[@]}"; do
    IFS='|' read -r name cpu kernels <<<"$config"
    for t in "${tests[@]}"; do run "$name" "$cpu" "$kernels" "$t"; done
    if [ "$parity" = 1 ]; then run "$name" "$cpu" "$kernels" test_parity_model --gtest_filter='*Random*'; fi
done

summary="$passed passed, ${#failed[@]} failed in $((SECONDS - start)) s"
if [ "$parity" = 0 ]; then summary+=", random-model parity skipped (no oracle)"; fi
if [ ${#failed[@]} -gt 0 ]; then summary+=": ${failed[*]}"; fi
say "summary: $summary"
[ ${#failed[@]} -eq 0 ]
