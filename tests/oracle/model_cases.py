"""Model references from llama.cpp: last-token logits and greedy continuations of SmolLM2,
and greedy continuations of random-weight models written by `microlm make-random` (which
checks that microlm's GGUF writer produces files llama.cpp loads and runs the same way).

Writes into args.out:
  model.json          prompts, their llama.cpp token ids, greedy ids and text
  logits_<i>.f32      last-token logits of logit prompt i (float32, n_vocab values)
  random_<type>.gguf  the random-weight models (written by microlm) that random cases use
"""
import ctypes
import json
import os
import subprocess

import jinja2
import llama_cpp
import numpy as np
from llama_cpp import Llama

# llama.cpp file types of the K-quant SmolLM2 files, and the greedy tokens compared on each.
KQUANT_FTYPES = ["Q4_K_M", "Q3_K_M", "Q2_K"]  # between them: Q4_0 Q5_0 Q5_1 Q8_0 Q3_K Q4_K Q5_K Q6_K
KQUANT_TOKENS = 24
# Plain-text prompts for Gemma-3-270M (a base model).
GEMMA_GREEDY = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a small village,",
                "Question: What is 12 times 12?\nAnswer:"]
# `microlm quantize` targets checked on a random model in llama.cpp.
QUANTIZE_TARGETS = ["q4_k_m", "q5_k_m", "q6_k", "q5_0", "q5_1"]

LOGIT_PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "1, 2, 3, 4, 5,",
    "def fibonacci(n):\n    ",
]

CHAT_PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "What is 12 times 12?",
    "Translate 'good morning' into Spanish.",
    "Give me three tips for sleeping better.",
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about autumn leaves.",
    "How do I reverse a list in Python?",
    "What's the difference between weather and climate?",
]

GREEDY_TOKENS = 64
RANDOM_TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1"]


def chat_text(llm: Llama, user: str) -> str:
    """Applies the model's own Jinja chat template, as llama-cpp-python's chat handler does."""
    template = llm.metadata["tokenizer.chat_template"]
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    return env.from_string(template).render(
        messages=[{"role": "user", "content": user}], add_generation_prompt=True)


def greedy(llm: Llama, prompt_ids, n, margins=None):
    """Greedy tokens; `margins` (if given) receives the top-1 minus top-2 logit per step."""
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        logits = llm.scores[llm.n_tokens - 1]
        tok = int(np.argmax(logits))
        if margins is not None:
            top2 = np.partition(logits, -2)[-2:]
            margins.append(float(abs(top2[1] - top2[0])))
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            break
        out.append(tok)
        llm.eval([tok])
    return out


def _random_case(out, t):
    """llama.cpp's greedy tokens and last logits on <out>/random_<t>.gguf (a random model microlm wrote)."""
    rl = Llama(model_path=os.path.join(out, f"random_{t}.gguf"), n_ctx=256, logits_all=True, verbose=False,
               n_threads=2)
    prompt = [256 + 1, 300, 301, 17, 42, 99, 400, 12]
    gen = greedy(rl, prompt, 32)
    np.asarray(rl.scores[rl.n_tokens - 1], dtype=np.float32).tofile(os.path.join(out, f"random_{t}_logits.f32"))
    print(f"  random {t}: {gen[:8]}...", flush=True)
    del rl
    return {"type": t, "file": f"random_{t}.gguf", "prompt": prompt, "greedy": gen,
            "logits_file": f"random_{t}_logits.f32"}


def run(args):
    llm = Llama(model_path=args.smollm2, n_ctx=1024, n_batch=512, logits_all=True,
                verbose=False, n_threads=2, seed=1)
    ref = {"logit_prompts": [], "chat": [], "random": []}
    for i, text in enumerate(LOGIT_PROMPTS):
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        logits.tofile(os.path.join(args.out, f"logits_{i}.f32"))
        ref["logit_prompts"].append({"text": text, "ids": ids, "file": f"logits_{i}.f32"})
        print(f"  logits {i}: {len(ids)} tokens", flush=True)
    for user in CHAT_PROMPTS:
        text = chat_text(llm, user)
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        margins = []
        gen = greedy(llm, ids, GREEDY_TOKENS, margins)
        reply = llm.detokenize(gen).decode("utf-8", errors="replace")
        ref["chat"].append({"user": user, "text": text, "ids": ids, "greedy": gen, "reply": reply,
                            "margins": margins})
        print(f"  greedy: {user!r} -> {reply[:60]!r}", flush=True)
    # K-quant files as people download them: SmolLM2 requantized by llama.cpp's own quantizer
    # (from the Q4_1 file, the only one we have). Its 576-wide rows are not a multiple of 256, so
    # most tensors fall back to Q5_0 / Q5_1 / Q8_0, as llama.cpp does; the FFN down and output-side
    # rows get the K types.
    ref["kquant"] = []
    chat = ref["chat"][0]
    for ftype in KQUANT_FTYPES:
        path = os.path.join(args.out, f"smollm2_{ftype}.gguf")
        if not os.path.exists(path):
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
            params.allow_requantize = True
            params.nthread = 2
            rc = llama_cpp.llama_model_quantize(args.smollm2.encode(), path.encode(), ctypes.byref(params))
            if rc != 0:
                raise RuntimeError(f"llama_model_quantize {ftype} failed: {rc}")
        kl = Llama(model_path=path, n_ctx=256, logits_all=True, verbose=False, n_threads=2, seed=1)
        margins = []
        gen = greedy(kl, chat["ids"], KQUANT_TOKENS, margins)
        last = np.asarray(kl.scores[kl.n_tokens - 1], dtype=np.float32)
        last.tofile(os.path.join(args.out, f"smollm2_{ftype}_logits.f32"))
        ref["kquant"].append({"ftype": ftype, "file": f"smollm2_{ftype}.gguf", "prompt": chat["ids"],
                              "greedy": gen, "margins": margins, "logits_file": f"smollm2_{ftype}_logits.f32"})
        print(f"  {ftype}: {kl.detokenize(gen).decode('utf-8', errors='replace')[:60]!r}", flush=True)
        del kl

    for t in RANDOM_TYPES:
        path = os.path.join(args.out, f"random_{t}.gguf")
        subprocess.run([args.microlm, "make-random", "-o", path, "--shape", "tiny", "--type", t,
                        "--seed", "7"], check=True)
        ref["random"].append(_random_case(args.out, t))

    # Gemma 3 (architecture gemma3, a base model: plain text, BOS added): logits after each of
    # LOGIT_PROMPTS and greedy continuations with llama.cpp's top-2 margins.
    gemma = getattr(args, "gemma", "")
    if gemma and os.path.exists(gemma):
        gl = Llama(model_path=gemma, n_ctx=512, n_batch=512, logits_all=True, verbose=False, n_threads=2, seed=1)
        ref["gemma"] = {"file": os.path.abspath(gemma), "logits": [], "greedy": []}
        for i, text in enumerate(LOGIT_PROMPTS):
            ids = gl.tokenize(text.encode(), add_bos=True, special=True)
            gl.reset()
            gl.eval(ids)
            np.asarray(gl.scores[gl.n_tokens - 1], dtype=np.float32).tofile(os.path.join(args.out, f"gemma_logits_{i}.f32"))
            ref["gemma"]["logits"].append({"ids": ids, "file": f"gemma_logits_{i}.f32"})
        for text in GEMMA_GREEDY:
            ids = gl.tokenize(text.encode(), add_bos=True, special=True)
            margins = []
            gen = greedy(gl, ids, KQUANT_TOKENS, margins)
            ref["gemma"]["greedy"].append({"ids": ids, "greedy": gen, "margins": margins})
            print(f"  gemma: {text!r} -> {gl.detokenize(gen).decode('utf-8', errors='replace')[:50]!r}", flush=True)
        del gl
    else:
        print(f"  no Gemma file ({gemma or 'not given'}): Gemma cases skipped", flush=True)

    # K-quant files written by `microlm quantize` (our own K-quant fits) from a random F32 model
    # whose rows are whole super-blocks, run by llama.cpp: the same check as the types above.
    base = os.path.join(args.out, "random_tiny256_f32.gguf")
    subprocess.run([args.microlm, "make-random", "-o", base, "--shape", "tiny256", "--type", "f32",
                    "--seed", "7"], check=True)
    for t in QUANTIZE_TARGETS:
        path = os.path.join(args.out, f"random_{t}.gguf")
        subprocess.run([args.microlm, "quantize", base, path, "--type", t], check=True, stdout=subprocess.DEVNULL)
        ref["random"].append(_random_case(args.out, t))

    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(ref, f, indent=1)
