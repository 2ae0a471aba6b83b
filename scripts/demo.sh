#!/usr/bin/env bash
# The main job (README): set-up, build, then an instant reply offline: the local model says
# the opener at once and a cloud stand-in (SmolLM2-135M-Instruct in-process, behind a 1.5 s
# simulated network delay) continues the same sentence. Pass your own question as arguments;
# with none, a sample question is asked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --main >/dev/null
if [ $# -eq 0 ]; then set -- "What should I pack for a day hike?"; fi
exec build-main/microlm chat "$*"
