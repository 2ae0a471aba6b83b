"""A cloud written elsewhere: llama-cpp-python's OpenAI-compatible server (`python -m
llama_cpp.server`, installed by scripts/setup.sh --tests) on SmolLM2-135M-Instruct, behind
`microlm serve` in both continuation modes, streamed and not, and behind `microlm chat --cloud`.
Every reply must end well formed, with the cloud's text after the opener and no cloud error; the
opener check (echo + logprobs on its /v1/completions) must score. Its SSE differs from ours
(role-only first chunk, `: ping` comments, an empty finishing delta, the model id is the file's
path): docs/GATEWAY.md lists the differences. Offline, loopback only. Not a quality test."""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from microlm_process import free_port

SMOLLM2 = "models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What are the primary colors?"


def wait_for(url, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def post(url, body, timeout=180):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def check_reply(text, microlm, mode, how):
    assert microlm["error"] is None, (mode, how, microlm["error"])
    assert microlm["cloud_used"], (mode, how, microlm)
    opener = microlm["opener"]
    assert opener and text.startswith(opener), (mode, how, opener, text)
    cloud_part = text[len(opener):].strip()
    assert cloud_part, f"{mode} {how}: no cloud text after the opener {opener!r}"
    print(f"  {mode:8s} {how:10s} {text!r}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlm", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--local", default="models/microlm-8m.q8_0.gguf")
    args = ap.parse_args()
    if not os.path.exists(SMOLLM2):
        print(f"skip: {SMOLLM2} is missing (scripts/setup.sh downloads it)")
        return 0
    port = free_port()
    cloud_url = f"http://127.0.0.1:{port}/v1"
    # logits_all: the opener check's echo + logprobs needs the prompt's logits.
    server = subprocess.Popen([args.python, "-m", "llama_cpp.server", "--model", SMOLLM2, "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--logits_all", "true",
                               "--verbose", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gws = []
    try:
        models = wait_for(cloud_url + "/models", server, 120)
        cloud_model = models["data"][0]["id"]
        slow = ["--first-byte-timeout-ms", "120000", "--stall-timeout-ms", "60000"]
        for mode in ("prefill", "instruct"):
            gw = subprocess.Popen([args.microlm, "serve", "-m", args.local, "--cloud", cloud_url, "--cloud-model",
                                   cloud_model, "--mode", mode, "--port", "0", "--no-hedge", "-q", *slow],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            gws.append(gw)
            line = gw.stdout.readline()
            assert line.startswith("listening on http://"), line
            base = line.split()[2]
            body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, "temperature": 0}
            whole = json.loads(post(base + "/v1/chat/completions", body))
            check_reply(whole["choices"][0]["message"]["content"], whole["microlm"], mode, "whole")
            raw = post(base + "/v1/chat/completions", {**body, "stream": True})
            events = [e for e in raw.split("\n\n") if e]
            assert events[-1] == "data: [DONE]", events[-2:]
            chunks = [json.loads(e[len("data: "):]) for e in events[:-1]]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            check_reply(text, chunks[-1]["microlm"], mode, "streamed")
            # The opener check against a server whose /v1/completions echoes with logprobs.
            # The server runs with its default --interrupt_requests true: the check's requests stop
            # the continuation's stream, which the turn resumes from the shown text.
            checked = json.loads(post(base + "/v1/chat/completions", {**body, "microlm": {"check": "likelihood"}}))
            check = checked["microlm"]["check"]
            assert check is not None and check["error"] is None and check["logprob"] is not None, check
            if not check["off"]:
                check_reply(checked["choices"][0]["message"]["content"], checked["microlm"], mode, "checked")
            print(f"  {mode:8s} check      mean log p of the opener {check['logprob']}, off: {check['off']}, "
                  f"resumed: {checked['microlm']['resumed']}")
            gw.terminate()
            assert gw.wait(timeout=15) == 0
            # microlm chat with the same cloud.
            out = subprocess.run([args.microlm, "chat", "--local", args.local, "--cloud", cloud_url, "--cloud-model",
                                  cloud_model, "--mode", mode, "-n", "24", "--temp", "0", "--first-byte-timeout-ms",
                                  "120000", QUESTION], capture_output=True, text=True, timeout=240)
            assert out.returncode == 0, (mode, out.stdout[-500:], out.stderr[-1500:])
            assert "error" not in out.stderr.lower(), out.stderr[-800:]
            print(f"  {mode:8s} chat       {out.stdout.strip()[:160]!r}")
    finally:
        for gw in gws:
            if gw.poll() is None:
                gw.kill()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    print("ok: llama-cpp-python's server as the cloud, prefill and instruct, streamed and whole, chat and serve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
