"""llama.cpp (through llama-cpp-python) against a vocabulary that `microlm tokenizer-train` trained.

Writes a small corpus in the shared data formats (plain .jsonl, which microlm reads like the
compressed files), trains a 1000-token vocabulary on it with the microlm binary, and tokenizes
texts with llama.cpp and with `microlm tokenize`. Unlike the other modules this one also compares:
it raises when the two disagree, since both sides are at hand. Records <out>/trained_tokenizer.json.
"""
import json
import os
import random
import subprocess

from tokenizer_cases import PALETTE, TEXTS

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from "
         "or one had by word but not what all were we when your can said there use each which she do "
         "how their if will up other about out many then them these so Hello Sure Here's answer "
         "question example assistant weather restaurant London reservation music café naïve über "
         "日本語 Привет don't it's I'M").split()


def _corpus(seed=42):
    rng = random.Random(seed)
    syllables = ["ka", "ro", "mi", "ten", "sha", "lu", "ver", "qui", "do", "ne", "stra", "pe", "gol"]

    def sentence(n):
        out = []
        for _ in range(n):
            r = rng.random()
            if r < 0.6:
                out.append(rng.choice(WORDS))
            elif r < 0.85:
                out.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
            elif r < 0.93:
                out.append(str(rng.randint(0, 99999)))
            else:
                out.append(rng.choice(WORDS) + rng.choice(",.!?;:"))
        return " ".join(out)

    books = [{"id": f"b{i}", "author": "A", "title": "T",
              "text": "\n\n".join(sentence(rng.randint(10, 60)) for _ in range(200))} for i in range(6)]
    dialogues = [{"dialogue_id": f"d{i}", "turns": [
        {"speaker": "USER", "text": sentence(rng.randint(4, 15))},
        {"speaker": "SYSTEM", "text": sentence(rng.randint(4, 25))}]} for i in range(800)]
    return books, dialogues


def _write_jsonl(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _llama_loadable(src, dst):
    """A copy of the vocab-only GGUF with the Llama keys llama.cpp needs before it reads a vocabulary."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(src)
    writer = GGUFWriter(dst, "llama")
    for key, value in [("llama.context_length", 64), ("llama.embedding_length", 8), ("llama.block_count", 1),
                       ("llama.feed_forward_length", 8), ("llama.attention.head_count", 1),
                       ("llama.attention.head_count_kv", 1)]:
        writer.add_uint32(key, value)
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        main = field.types[0]
        sub = field.types[-1] if main == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), main, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _llama_tokenizer(path):
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab

    def tokenize(text, parse_special):
        cap = len(text) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, cap, True, parse_special)
        assert n >= 0, f"llama_tokenize failed for {text!r}"
        return list(buf[:n])

    return llm, tokenize


def _microlm_ids(binary, gguf, text, parse_special):
    cmd = [binary, "tokenize", "-m", gguf, "--ids", "-p", text]
    if not parse_special:
        cmd.append("--no-special")
    out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode()
    return [int(x) for x in out.split()]


def run(args):
    work = os.path.join(args.out, "trained_tokenizer")
    books, dialogues = _corpus()
    _write_jsonl(os.path.join(work, "pretrain", "gutenberg-00.jsonl"), books)
    _write_jsonl(os.path.join(work, "chat", "sgd_dialogues.jsonl"), dialogues)
    _write_jsonl(os.path.join(work, "eval", "questions.jsonl"), [{"prompt": "An eval question."}])
    gguf = os.path.join(work, "tok1000.gguf")
    subprocess.run([args.microlm, "tokenizer-train", "--vocab-size", "1000", "--sample-mb", "10", "--out", gguf,
                    "--input", os.path.join(work, "pretrain", "gutenberg-00.jsonl"),
                    os.path.join(work, "chat", "sgd_dialogues.jsonl")], check=True, capture_output=True)
    loadable = os.path.join(work, "tok1000-llama.gguf")
    _llama_loadable(gguf, loadable)
    llm, tokenize = _llama_tokenizer(loadable)

    rng = random.Random(7)
    texts = TEXTS + [b"".join(rng.choice(PALETTE) for _ in range(rng.randint(1, 12))) for _ in range(60)]
    texts += [" ".join(rng.choice(WORDS) for _ in range(30)).encode() for _ in range(20)]
    # argv cannot carry NUL bytes, and an empty argument is an empty prompt to both sides anyway.
    texts = [t for t in texts if b"\x00" not in t]

    cases, mismatches = [], []
    for text in texts:
        for parse_special in (True, False):
            want = tokenize(text, parse_special)
            got = _microlm_ids(args.microlm, gguf, os.fsdecode(text), parse_special)
            cases.append({"text_hex": text.hex(), "parse_special": parse_special, "llama_cpp": want, "microlm": got})
            if want != got:
                mismatches.append((text, parse_special, want, got))
    del llm

    out = {"generator": "tests/oracle/trained_tokenizer_cases.py", "gguf": os.path.abspath(gguf), "cases": cases}
    tmp = os.path.join(args.out, "trained_tokenizer.json.tmp")
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, os.path.join(args.out, "trained_tokenizer.json"))
    print(f"trained_tokenizer_cases: {len(cases)} cases, {len(mismatches)} differ from llama.cpp", flush=True)
    if mismatches:
        text, parse_special, want, got = mismatches[0]
        raise AssertionError(f"{len(mismatches)} texts tokenize differently with the trained vocabulary; first: "
                             f"{text!r} (parse_special={parse_special}): llama.cpp {want}, microlm {got}")
