"""The official OpenAI Python client against `microlm serve-model`: streamed and whole chat
and completions, the [DONE] terminator on the wire, continuing a final assistant message, and
an array of prompts (decoded as one batch) giving what each prompt gives alone.
Not a model-quality test: the model is tiny and random, written by `microlm make-random`."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

import openai


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlm", required=True)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "tiny.gguf")
        subprocess.run([args.microlm, "make-random", "-o", model, "--shape", "tiny"], check=True,
                       stderr=subprocess.DEVNULL, timeout=60)
        # Port 0: the server picks a free port and says which on its first line.
        server = subprocess.Popen([args.microlm, "serve-model", "-m", model, "--port", "0", "--model-name", "tiny"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            assert line.startswith("listening on http://"), f"unexpected first line: {line!r}"
            base = line.split()[2]
            return run_checks(base)
        finally:
            server.terminate()
            server.wait(timeout=10)


def run_checks(base: str) -> int:
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", timeout=30, max_retries=0)

    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"], models

    messages = [{"role": "user", "content": "Hello there"}]
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True,
                                                 max_tokens=12, temperature=0, seed=1))
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0, seed=1)
    assert whole.choices[0].message.content == streamed, (whole.choices[0].message.content, streamed)
    assert whole.usage.completion_tokens > 0

    prompt = "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\nSure"
    pieces = list(client.completions.create(model="tiny", prompt=prompt, stream=True, max_tokens=10, temperature=0))
    assert pieces and all(p.object == "text_completion" for p in pieces)
    raw = "".join(p.choices[0].text for p in pieces)
    whole_c = client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0)
    assert whole_c.choices[0].text == raw

    # A trailing assistant message is continued, as the raw prompt ending in its text is.
    cont = client.chat.completions.create(
        model="tiny", max_tokens=10, temperature=0,
        messages=messages + [{"role": "assistant", "content": "Sure"}],
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert cont.choices[0].message.content == raw, (cont.choices[0].message.content, raw)

    # An array of prompts is one batch: each choice is what its prompt alone gives, greedy and
    # sampled (prompt i is sampled with seed + i); usage is the sum.
    prompts = [prompt, "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n", "Once upon a time",
               prompt + " thing"]
    for temp in (0, 0.9):
        batch = client.completions.create(model="tiny", prompt=prompts, max_tokens=9, temperature=temp, seed=7)
        assert [c.index for c in batch.choices] == list(range(len(prompts))), batch.choices
        total = 0
        for i, p in enumerate(prompts):
            alone = client.completions.create(model="tiny", prompt=p, max_tokens=9, temperature=temp, seed=7 + i)
            assert batch.choices[i].text == alone.choices[0].text, (temp, i, batch.choices[i].text, alone.choices[0].text)
            assert batch.choices[i].finish_reason == alone.choices[0].finish_reason
            total += alone.usage.completion_tokens
        assert batch.usage.completion_tokens == total > 0, (batch.usage, total)
    try:
        client.completions.create(model="tiny", prompt=prompts, max_tokens=3, stream=True)
        raise AssertionError("a streamed batch was accepted")
    except openai.BadRequestError as e:
        assert "prompt" in str(e)

    # The wire itself: SSE lines, ending with [DONE]; bad JSON gets an OpenAI error object.
    req = urllib.request.Request(base + "/v1/chat/completions", method="POST",
                                 data=json.dumps({"messages": messages, "stream": True, "max_tokens": 3}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        events = [ln for ln in r.read().decode().split("\n\n") if ln]
    assert events[-1] == "data: [DONE]", events[-1]
    assert all(e.startswith("data: ") for e in events)
    try:
        client.chat.completions.create(model="tiny", messages=[], max_tokens=3)
        raise AssertionError("an empty conversation was accepted")
    except openai.BadRequestError as e:
        assert "messages" in str(e)

    print(f"ok: {len(chunks)} chat chunks, {len(pieces)} completion chunks, continuation matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
