#!/usr/bin/env bash
# Trainer throughput, measured back to back in one run: the 8M and 28M opener configs in fp32
# and bf16 autocast, on 1 and 2 threads. Each case trains a few steps into a scratch folder and
# reports tokens/s over the steps after the first (from loss.csv), and the achieved GFLOP/s
# counted as 6 x parameters x tokens/s (forward + backward, attention left out).
# Usage: bench/train_throughput.sh [STEPS] [BATCH]   (run on a quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-6}
batch=${2:-16}
train=build/microlm-train
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-6s %-5s %-7s %10s %10s\n' model prec threads tok/s GFLOP/s
for model in 8m 28m; do
    for prec in fp32 bf16; do
        for threads in 1 2; do
            out="$scratch/$model-$prec-$threads"
            "$train" train -c "configs/microlm-$model-opener.conf" --out="$out" --init_from= \
                --precision=$prec --threads=$threads --steps=$steps --batch=$batch --warmup=1 \
                --eval_every=100000 --eval_batches=1 --ckpt_every=100000 --log_every=100000 >"$out.log" 2>&1
            params=$(grep -o '[0-9]* parameters' "$out.log" | head -1 | cut -d' ' -f1)
            python3 - "$out/loss.csv" "$params" "$model" "$prec" "$threads" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
params = int(sys.argv[2])
t0, t1 = float(rows[0]["wall_s"]), float(rows[-1]["wall_s"])
toks = int(rows[-1]["tokens_seen"]) - int(rows[0]["tokens_seen"])
tps = toks / (t1 - t0)
print(f"{sys.argv[3]:<6} {sys.argv[4]:<5} {sys.argv[5]:<7} {tps:10.0f} {6 * params * tps / 1e9:10.1f}")
PY
        done
    done
done
