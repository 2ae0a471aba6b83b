"""Greedy agreement with llama.cpp, per kernel table: does `microlm run --chat --temp 0` on each
MICROLM_KERNELS setting produce the same text as llama.cpp (llama-cpp-python) greedy decoding
of the same ChatML prompt? A check for backends that are not bit-identical to llama.cpp's order
(the AMX table's Q8_0 prefill), on prompts long enough (25+ tokens) to use them.

    .venv/bin/python bench/greedy_agreement.py models/microlm-28m.q8_0.gguf --kernels avx512,amx
"""
import argparse
import os
import subprocess
import sys

from llama_cpp import Llama

PROMPTS = [
    "Explain why the sky is blue in simple words for a child who keeps asking questions about everything around her.",
    "Write a short cover letter for a junior data analyst position at a logistics company in Rotterdam, mentioning SQL and Python.",
    "What are the main differences between TCP and UDP, and when would you choose one over the other in a game server?",
    "Give me a three day itinerary for Kyoto in autumn with temples, food markets and one day trip to Nara.",
    "Summarize the causes of the French Revolution in a paragraph suitable for a high school history class.",
    "I have chicken, rice, spinach and garlic. Suggest a dinner recipe that takes less than thirty minutes to cook.",
    "How do I set up a Python virtual environment on Windows and install packages from a requirements file?",
    "Compose a polite email to my landlord asking to fix the broken heating in my apartment before winter arrives.",
]


def llama_greedy(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        row = llm.scores[llm.n_tokens - 1]
        t = int(max(range(llm.n_vocab()), key=lambda i: row[i]))
        if t in (llm.token_eos(), 2):
            break
        out.append(t)
        llm.eval([t])
    return llm.detokenize(out).decode(errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--kernels", default="avx512,amx", help="comma-separated MICROLM_KERNELS values")
    ap.add_argument("-n", type=int, default=24, help="greedy tokens per prompt")
    ap.add_argument("--microlm", default="build/microlm")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        sys.exit(f"error: {a.model}: no such file")
    llm = Llama(model_path=a.model, n_ctx=512, verbose=False, logits_all=True)
    kernels = a.kernels.split(",")
    same = {k: 0 for k in kernels}
    for p in PROMPTS:
        ids = llm.tokenize(f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n".encode(), add_bos=False,
                           special=True)
        ref = llama_greedy(llm, ids, a.n)
        for k in kernels:
            r = subprocess.run([a.microlm, "run", "-m", a.model, "-p", p, "--chat", "--temp", "0", "-n", str(a.n)],
                               capture_output=True, text=True, env=dict(os.environ, MICROLM_KERNELS=k), check=True)
            ok = r.stdout.strip() == ref.strip()
            same[k] += ok
            if not ok:
                print(f"{k} differs ({len(ids)} prompt tokens):\n  llama.cpp: {ref!r}\n  microlm  : {r.stdout!r}")
    print(f"{os.path.basename(a.model)}: {len(PROMPTS)} chat prompts, {a.n} greedy tokens; identical to llama.cpp: " +
          ", ".join(f"{k} {v}/{len(PROMPTS)}" for k, v in same.items()))


if __name__ == "__main__":
    main()
