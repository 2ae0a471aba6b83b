#!/usr/bin/env bash
# The main job (README): set-up, build, then an instant reply offline: the local model says
# the opener at once and a cloud stand-in (SmolLM2-135M-Instruct in-process, behind a 1.5 s
# simulated network delay) continues the same sentence. Arguments: your question (none: a
# sample question), then any `microlm chat` flags, e.g. `scripts/demo.sh --speak` to hear it,
# `scripts/demo.sh --speak-to reply.wav` to keep the audio, `scripts/demo.sh Why is the sky blue? -n 40`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --main >/dev/null
# The words before the first argument that starts with "-" are the question; the rest are flags.
words=()
while [ $# -gt 0 ] && [ "${1:0:1}" != "-" ]; do words+=("$1"); shift; done
if [ ${#words[@]} -eq 0 ]; then words=("What should I pack for a day hike?"); fi
exec build-main/microlm chat "${words[*]}" "$@"
