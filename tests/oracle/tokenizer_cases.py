"""Tokenizer goldens from llama.cpp (through llama-cpp-python) for tests/test_parity_tokenizer.cpp.

Writes <out>/tokenizer.json: for SmolLM2's vocabulary under its own pre-tokenizer ("smollm") and
under three others (copies of the GGUF with tokenizer.ggml.pre changed, written next to the json),
the token ids, the detokenized bytes, every token's piece and the end-of-generation set that
llama.cpp computes; plus ChatML prompts rendered from the GGUF's chat template by jinja2. Texts
and pieces are hex so that invalid UTF-8 survives JSON. Not a test itself: it only records.
"""
import ctypes
import json
import os

TEXTS = [
    # empty, whitespace runs (\s+(?!\S) leaves the last space to the next word)
    b"", b" ", b"  ", b"   ", b"\n", b"\n\n\n", b" \n \n  x", b"\t\ttabs", b"a  b   c    d",
    b"trailing spaces   ", b"   leading", b"\r\n windows\r\nline\r\n", b"tab\there  \t x",
    "x\u00a0y\u3000z\u2003w \u00a0 v".encode(), b"\x0b\x0c vertical",
    # words, case, punctuation
    b"Hello, world!!! ...?", b"Hello world", b"hello", b" Hello", b"HELLO WORLD", b"a.b,c;d:e",
    b"What?! No... (maybe) [yes] {ok} <tag> \"quoted\" `code` ~tilde~ ^caret^ |pipe| $5 #1 @me 50%",
    # numbers: digit splitting differs between pre-tokenizers
    b"1234567 3.14159 0x1F 1,000,000", b"in 2024, 10% of 3/4 were 12345678901", b"v1.2.3-rc4",
    b"12345678901234567890", b" 42 and 7  99", b"a1b22c333d4444e55555", b"3.14e-10 0.5x -7",
    "\u0661\u0662\u0663\u0664\u0665 12\u0663 \uff11\uff12\uff13".encode(),
    "\u0661\u0662\u0663 \u0664\u0665\u0666 \u216b \u00bd \u00b2 x\u00b3".encode(),
    # emoji and symbols
    "\U0001f44b\U0001f3fd \U0001f1eb\U0001f1f7 family \U0001f468\u200d\U0001f469\u200d\U0001f467".encode(),
    "\U0001f600\U0001f603\U0001f604 \u2764\ufe0f \u2192 \u2211 \u20ac100".encode(),
    # scripts
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587".encode(),
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8".encode(), "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!".encode(),
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645".encode(),
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e".encode(),
    "\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac".encode(),
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m".encode(), "e\u0301 combining a\u0308".encode(),
    "English \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u4e2d\u6587 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 123 !!!".encode(),
    # unassigned, private use, and a letter new in Unicode 15.1 (CJK extension I)
    "a\u0378b \ue000 \U0002ebf0\U0002ebf1 x".encode(),
    # contractions (case-sensitive in GPT-2, case-insensitive in Llama-3)
    b"I'm you're we'll don't it's", b"I'M YOU'RE WE'LL DON'T IT'S", b"'s 't 're 've 'm 'll 'd",
    b"rock 'n' roll ''quotes'' it' s", b"Hello , world . ' quoted ' isn 't",
    # code
    b"def f(x):\n    return x**2  # square\n",
    b"for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    b"<div class=\"x\">&amp;</div>", b"std::vector<int> v{1,2,3};  // init",
    b"if x == 1:\n\n\n    pass\n\n",
    # ChatML and other special tokens
    b"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    b"<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    b"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    b"<|im_end|><|im_start|><|im_end|>", b"<|im_start", b"x<|endoftext|>y<|endoftext|>",
    b"<reponame><repo_name>name<filename>f.py<file_sep>", b"< |im_start|> <|IM_START|>",
    # a long paragraph
    b"The quick brown fox jumps over the lazy dog. " * 3 +
    b"In 1969, Apollo 11 landed on the Moon; Neil Armstrong's first words were \"That's one small "
    b"step for [a] man, one giant leap for mankind.\" Today, over 8,000,000,000 people live on "
    b"Earth -- and roughly 60% of them have access to the internet!\n\nSee also: https://example.com/"
    b"path?q=1&r=2#frag, e-mail: someone@example.org.",
    # invalid UTF-8: llama.cpp replaces each bad byte by U+FFFD, decodes overlong forms and surrogates
    b"\xff\xfeabc", b"\xe6\x97", b"abc\xe6\x97", b"\xc0\x80x", b"a\xed\xa0\x80b", b"\x80\x80",
    b"a\xf0\x9f\x98", b"\xf8\x88\x80\x80\x80", b"\xc3\x28 \xa0\xa1", b"\x00nul\x00",
    b"\x01\x02\x1b[0m\x7f", b"ok \xe2\x82 broken \xf0\x9f\x98\x80 fine",
]

# Random mixtures of the pieces the splitters treat differently, from a fixed seed so that the
# goldens are reproducible. Bytes that llama.cpp itself cannot survive (lead bytes F5..F7 and
# F4 90.. decode above U+10FFFF, where it throws) are not in the palette.
PALETTE = [
    b" ", b"  ", b"\t", b"\n", b"\r\n", b"\n\n", "\u00a0".encode(), "\u3000".encode(), b"'", b"'s", b"'T",
    b"'ll", b"a", b"Hello", b"WORLD", b"x", b"7", b"42", b"2024", b"12345", "\u0663".encode(), b".", b",",
    b"!!", b"?", b"(", b")", b"-", b"_", b"$", b"+", b"<", b"`", b"|", b"~", b"\\", b"#", "\u00e9".encode(),
    "\u65e5\u672c".encode(), "\U0001f44b".encode(), "\u0301".encode(), "\u2014".encode(), "\u00bd".encode(),
    b"\xff", b"\xe6\x97", b"\xc0\x80", b"\x80", b"<|im_start|>", b"<|im_end|>", b"<|im",
]


def _random_texts(n, seed=1234):
    import random

    rng = random.Random(seed)
    return [b"".join(rng.choice(PALETTE) for _ in range(rng.randint(1, 12))) for _ in range(n)]


# Gemma's turn markers and text its SentencePiece merges treat specially (runs of spaces and
# newlines are tokens of their own, bytes without a piece go out as <0xXX>).
GEMMA_TEXTS = [
    b"<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    b"<bos><start_of_turn>user\nHi<end_of_turn>", b"    four spaces\n\n\n\nfour newlines",
    "\u2581already escaped \u2581\u2581".encode(), b"\x00\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
]

# (text, add_special, parse_special): BOS/EOS handling and special tokens read as plain text.
EXTRA = [
    (b"Hello world", True, True),
    (b"", True, True),
    (b"<|im_start|>user\nHi<|im_end|>\n", True, False),
    (b"<|im_start|>user\nHi<|im_end|>\n", False, False),
    (b"<|endoftext|>", False, False),
]

# Pre-tokenizers exercised through copies of the GGUF with tokenizer.ggml.pre rewritten. SmolLM2
# never merges digits, which would hide how a pre-tokenizer groups them, so the copies also get
# tokens and merges for digit pairs, triples and space+digit. "llama-bpe" also drops
# tokenizer.ggml.add_bos_token, so llama.cpp's default for it (add BOS) applies.
VARIANTS = [
    ("smollm", False),
    ("default", False),
    ("gpt-2", False),
    ("llama-bpe", True),
    ("qwen2", False),
]

CHATS = [
    ([{"role": "user", "content": "Hi"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], True),
    ([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
      {"role": "user", "content": "And 3+3?\nThanks"}], False),
    ([], True),
]


def _digit_merges(tokens):
    """Tokens and merges ("left right", appended after SmolLM2's, so ranked last) for digits."""
    known = set(tokens)
    digits = "0123456789"
    new_tokens, merges = [], []
    for a in digits:
        for b in digits:
            merges.append(f"{a} {b}")
            new_tokens.append(a + b)
    for a in digits:
        for b in digits:
            for c in digits:
                merges.append(f"{a}{b} {c}")
                new_tokens.append(a + b + c)
    for a in digits:
        merges.append(f"\u0120 {a}")
        new_tokens.append("\u0120" + a)
    new_tokens = [t for t in new_tokens if t not in known]
    return new_tokens, merges


def _write_variant(src, dst, pre, drop_add_bos):
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(src)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    extra_tokens, extra_merges = _digit_merges(tokens)
    extended = {
        "tokenizer.ggml.tokens": tokens + extra_tokens,
        "tokenizer.ggml.token_type": reader.fields["tokenizer.ggml.token_type"].contents() + [1] * len(extra_tokens),
        "tokenizer.ggml.merges": reader.fields["tokenizer.ggml.merges"].contents() + extra_merges,
        "tokenizer.ggml.pre": pre,
    }
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if drop_add_bos and name == "tokenizer.ggml.add_bos_token":
            continue
        value = extended[name] if name in extended else field.contents()
        main = field.types[0]
        sub = field.types[-1] if main == GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, main, sub_type=sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _record(model_path, texts, with_pieces):
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

    def tokenize(text, add_special, parse_special):
        cap = len(text) + 16
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, cap, add_special, parse_special)
        assert n >= 0, f"llama_tokenize failed for {text!r}"
        return list(buf[:n])

    def detokenize(ids, unparse_special):
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, False, unparse_special)
        assert n >= 0
        return buf.raw[:n]

    def piece(token, special):
        buf = ctypes.create_string_buffer(512)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, 512, 0, special)
        assert 0 <= n <= 512
        return buf.raw[:n]

    cases = []
    for text, add_special, parse_special in texts:
        ids = tokenize(text, add_special, parse_special)
        cases.append({
            "text_hex": text.hex(),
            "add_special": add_special,
            "parse_special": parse_special,
            "ids": ids,
            "detok_special_hex": detokenize(ids, True).hex(),
            "detok_plain_hex": detokenize(ids, False).hex(),
        })
    rec = {
        "n_vocab": n_vocab,
        "bos": llama_cpp.llama_vocab_bos(vocab),
        "eos": llama_cpp.llama_vocab_eos(vocab),
        "eog": [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)],
        "cases": cases,
    }
    if with_pieces:
        rec["pieces_special_hex"] = [piece(t, True).hex() for t in range(n_vocab)]
        rec["pieces_plain_hex"] = [piece(t, False).hex() for t in range(n_vocab)]
    del llm
    return rec


def _chats(model_path):
    import jinja2
    from gguf import GGUFReader

    template = GGUFReader(model_path).fields["tokenizer.chat_template"].contents()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    tmpl = env.from_string(template)
    return [{"messages": msgs, "add_generation_prompt": gen,
             "expected": tmpl.render(messages=msgs, add_generation_prompt=gen)} for msgs, gen in CHATS]


def run(args):
    texts = [(t, False, True) for t in TEXTS + _random_texts(80)] + EXTRA
    variants = [{"pre": "smollm", "gguf": os.path.abspath(args.smollm2),
                 **_record(args.smollm2, texts, with_pieces=True)}]
    for pre, drop_add_bos in VARIANTS:
        name = f"tokenizer_digits_{pre}.gguf"
        path = os.path.join(args.out, name)
        _write_variant(args.smollm2, path, pre, drop_add_bos)
        variants.append({"pre": pre, "gguf": os.path.abspath(path), **_record(path, texts, with_pieces=False)})

    # A SentencePiece-style vocabulary (tokenizer.ggml.model = llama): Gemma 3's 262,144 tokens.
    gemma = getattr(args, "gemma", "")
    if gemma and os.path.exists(gemma):
        gemma_texts = texts + [(t, add, parse) for t in GEMMA_TEXTS for add, parse in ((True, True), (False, False))]
        variants.append({"pre": "default", "gguf": os.path.abspath(gemma), **_record(gemma, gemma_texts, with_pieces=True)})
    else:
        print(f"tokenizer_cases: no Gemma file ({gemma or 'not given'}): SentencePiece goldens skipped", flush=True)

    out = {
        "generator": "tests/oracle/tokenizer_cases.py",
        "chat": _chats(args.smollm2),
        "variants": variants,
    }
    tmp = os.path.join(args.out, "tokenizer.json.tmp")
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, os.path.join(args.out, "tokenizer.json"))
    n = sum(len(v["cases"]) for v in variants)
    print(f"tokenizer_cases: {n} cases over {len(variants)} pre-tokenizers, {len(out['chat'])} chats", flush=True)
