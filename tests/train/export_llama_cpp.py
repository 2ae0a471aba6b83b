"""llama.cpp's greedy continuation of the trainer's exported fixture model (written by
test_trainer into --dir): the reference test_trainer_parity compares microlm's against.
Writes DIR/llama_cpp_greedy.json. Run in the set-up's virtualenv (llama-cpp-python)."""
import argparse
import json
import os
import sys

import numpy as np
from llama_cpp import Llama


def cycle_prompt():
    # The fixture corpus counts through cycle[i] = 3 + 37 i mod 509 after a separator 0.
    return [0] + [3 + (i * 37) % 509 for i in range(10, 20)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    out = {"prompt": cycle_prompt(), "models": {}}
    for t in ("f32", "q8_0"):
        path = os.path.join(args.dir, f"trained-{t}.gguf")
        if not os.path.exists(path):
            sys.exit(f"{path}: missing (test_trainer writes it)")
        llm = Llama(model_path=path, n_ctx=128, n_batch=64, logits_all=True, verbose=False, n_threads=1, seed=1)
        llm.eval(out["prompt"])
        gen = []
        for _ in range(24):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            gen.append(tok)
            llm.eval([tok])
        out["models"][t] = gen
        print(f"llama.cpp greedy on trained-{t}.gguf: {gen}")
    with open(os.path.join(args.dir, "llama_cpp_greedy.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
