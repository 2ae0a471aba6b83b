#!/usr/bin/env python3
"""The llama.cpp side of `microlm bench --vs-llama-cpp`: the same file, prompt token ids,
generation length, threads and repetitions, measured the way microlm measures itself
(prefill, then greedy decoding one token at a time; medians after one warm-up run).
Prints one JSON object. Python adds a few microseconds per token around llama_decode."""
import argparse
import ctypes
import json
import resource
import statistics
import sys
import time

import llama_cpp
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--prompt-ids", required=True, help="comma-separated token ids")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    prompt = [int(x) for x in args.prompt_ids.split(",")]

    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=len(prompt) + args.n + 16, n_batch=max(512, len(prompt)),
                          n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    load_ms = (time.perf_counter() - t0) * 1000
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()

    def logits():
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))

    def run_once():
        llm.reset()
        t = {}
        start = time.perf_counter()
        llm.eval(prompt)
        now = time.perf_counter()
        t["prefill_ms"] = (now - start) * 1000
        first = now
        for i in range(args.n):
            tok = int(np.argmax(logits()))
            now = time.perf_counter()
            if i == 0:
                first = now
                t["ttft_ms"] = (now - start) * 1000
            if i == 3:
                t["first4_ms"] = (now - start) * 1000
            if i == 7:
                t["first8_ms"] = (now - start) * 1000
            if i + 1 == args.n:
                t["total_ms"] = (now - start) * 1000
                t["decode_ms"] = (now - first) * 1000
                break
            llm.eval([tok])
        return t

    run_once()
    runs = [run_once() for _ in range(args.reps)]
    out = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    out["load_ms"] = load_ms
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mib"] = peak_kib / 1024
    out["rss_delta_mib"] = (peak_kib - rss_before_kib) / 1024
    out["engine"] = "llama.cpp " + getattr(llama_cpp, "__version__", "?")
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
