"""What quantization costs a μLM: each GGUF's size and its mean loss (nats per token) on the
same windows of a `microlm data` validation shard, scored by llama.cpp (llama-cpp-python), so
the figure does not depend on our own runtime. Tokens are counted where the shard's mask is 1
(the reply tokens the trainer takes its loss on), and separately on the first reply tokens of
each reply (the opener, what a μLM is for).

    .venv/bin/python bench/quant_loss.py --data build-data/artefacts/data-opener2 \
        models/microlm-28m.q8_0.gguf /tmp/m28.q4_k_m.gguf

Windows are seq_len tokens long, drawn at fixed offsets (--seed), the same for every file.
"""
import argparse
import json
import math
import os
import random
import sys

import numpy as np


def load_shard(folder):
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.exists(manifest):
        sys.exit(f"error: {folder} has no manifest.json (is it a `microlm data` output folder?)")
    tok = os.path.join(folder, "val-00000.tok")
    mask = os.path.join(folder, "val-00000.mask")
    for f in (tok, mask):
        if not os.path.exists(f):
            sys.exit(f"error: {f} is missing")
    ids = np.fromfile(tok, dtype="<u2").astype(np.int64)
    m = np.fromfile(mask, dtype=np.uint8)
    if len(ids) != len(m):
        sys.exit(f"error: {tok} and {mask} differ in length ({len(ids)} vs {len(m)})")
    return ids, m


def first_reply_positions(mask, first):
    """Positions among the first `first` masked tokens of each masked run (a reply's start)."""
    out = np.zeros(len(mask), dtype=bool)
    run = 0
    for i, v in enumerate(mask):
        run = run + 1 if v else 0
        if 0 < run <= first:
            out[i] = True
    return out


def score(path, ids, mask, first_mask, starts, seq_len, threads):
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=seq_len, n_batch=seq_len, n_threads=threads, logits_all=True, verbose=False)
    total = n = first_total = first_n = 0.0
    for k, s in enumerate(starts):
        window = ids[s:s + seq_len].tolist()
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[: len(window)], dtype=np.float64)
        lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
        for i in range(len(window) - 1):
            t = s + i + 1  # the token predicted at position i
            if not mask[t]:
                continue
            nll = lse[i] - logits[i, window[i + 1]]
            total += nll
            n += 1
            if first_mask[t]:
                first_total += nll
                first_n += 1
        print(f"  {os.path.basename(path)}: window {k + 1}/{len(starts)}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return total / max(n, 1), first_total / max(first_n, 1), int(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="GGUF files of one μLM in different types")
    ap.add_argument("--data", required=True, help="a `microlm data` output folder (its val shard is read)")
    ap.add_argument("--windows", type=int, default=64, help="windows scored per file")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--first", type=int, default=4, help="reply tokens counted as the opener")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="also write the table as JSON here")
    args = ap.parse_args()
    for p in args.models:
        if not os.path.exists(p):
            sys.exit(f"error: no such model file: {p}")
    ids, mask = load_shard(args.data)
    if len(ids) <= args.seq_len:
        sys.exit(f"error: the val shard has {len(ids)} tokens, fewer than --seq-len {args.seq_len}")
    rng = random.Random(args.seed)
    starts = sorted(rng.randrange(0, len(ids) - args.seq_len) for _ in range(args.windows))
    first_mask = first_reply_positions(mask, args.first)
    rows = []
    for p in args.models:
        loss, first, n = score(p, ids, mask, first_mask, starts, args.seq_len, args.threads)
        rows.append({"file": p, "mib": os.path.getsize(p) / 2**20, "loss": loss, "first_loss": first, "tokens": n})
    ref = rows[0]
    print(f"{args.windows} windows of {args.seq_len} tokens from {args.data}/val, {rows[0]['tokens']} reply tokens; "
          f"scored by llama.cpp; deltas against {os.path.basename(ref['file'])}")
    print("| file | MiB | loss | Δ | first-4 loss | Δ | perplexity |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {os.path.basename(r['file'])} | {r['mib']:.1f} | {r['loss']:.4f} | {r['loss'] - ref['loss']:+.4f} | "
              f"{r['first_loss']:.4f} | {r['first_loss'] - ref['first_loss']:+.4f} | {math.exp(r['loss']):.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
