#!/usr/bin/env bash
# The main job (README): set-up, build, then an instant reply offline: the local model says
# the opener at once and a cloud stand-in (SmolLM2-135M-Instruct in-process, behind a 1.5 s
# simulated network delay) continues the same sentence. Arguments: your question (none: a
# sample question), and any `microlm chat` flags, e.g. `scripts/demo.sh --speak` to hear it or
# `scripts/demo.sh --speak-to reply.wav` to keep the audio.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --main >/dev/null
words=() flags=()
for a in "$@"; do
    case "$a" in
        -*) flags+=("$a") ;;
        *) if [ ${#flags[@]} -gt 0 ] && [[ "${flags[-1]}" =~ ^--(speak-to|speak-player|voice|speak-wpm|pace|cloud-delay-ms|modality|local)$ ]]; then
               flags+=("$a")  # a flag's value
           else
               words+=("$a")
           fi ;;
    esac
done
if [ ${#words[@]} -eq 0 ]; then words=("What should I pack for a day hike?"); fi
exec build-main/microlm chat "${words[*]}" "${flags[@]}"
