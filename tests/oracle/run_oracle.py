#!/usr/bin/env python3
"""Runs llama.cpp (through llama-cpp-python) as the independent reference and writes what it
computes into --out for the C++ parity tests: tokenizer goldens, logits and greedy tokens.

Each *_cases.py module beside this file has run(args) and writes its own files; this driver
only parses arguments and calls them in turn. It exits non-zero if any of them fails."""
import argparse
import importlib
import os
import sys

MODULES = ["tokenizer_cases", "model_cases", "trained_tokenizer_cases", "quant_cases"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--microlm", required=True, help="path to the microlm binary")
    ap.add_argument("--smollm2", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gemma", default="", help="gemma-3-270m-q4_k_m.gguf (optional: its cases are skipped without it)")
    ap.add_argument("--out", required=True, help="folder for the reference files")
    ap.add_argument("--only", default="", help="comma-separated module names to run")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    only = [m for m in args.only.split(",") if m]
    for name in MODULES:
        if only and name not in only:
            continue
        print(f"oracle: {name}", flush=True)
        importlib.import_module(name).run(args)
    print("oracle: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
