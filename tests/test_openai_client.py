"""The official OpenAI Python client against `microlm serve-model`: streamed and whole chat
and completions, the [DONE] terminator on the wire, and continuing a final assistant message.
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
