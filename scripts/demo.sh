#!/usr/bin/env bash
# The main job (README): set-up, build, then SmolLM2-135M-Instruct answers a question
# offline through `microlm run`. Pass a different question as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
question="${1:-What is the capital of France?}"
exec build/microlm run -m models/cache/SmolLM2-135M-Instruct.Q4_1.gguf --chat -p "$question" -n 128 --temp 0
