"""Time to the first opener word at the client, through `microlm serve`: an 8M-class local model
(random weights: the figure is compute, not quality) and `serve-model` as the cloud behind an
injected delay (800 ms by default). Prints the median over N streamed requests, measured on a
raw socket from before connect() to the byte that completes the first opener chunk; then the
unreachable-cloud case: time from the request to [DONE].
Not `microlm bench` (the runtime's speed): this is the whole HTTP path a client sees.

    .venv/bin/python bench/gateway_latency.py --microlm build/microlm
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

PROMPTS = [
    "What should I pack for a day hike?",
    "How do rainbows form?",
    "Give me one tip for sleeping better.",
    "What is the capital of Australia?",
    "Write a haiku about the sea.",
]


def start(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"{' '.join(cmd[:2])} did not start: {line!r}")
    return proc, line.split()[2]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def one_request(base, prompt, max_tokens):
    """(ms to the first opener chunk, ms to [DONE], the last chunk's microlm object)."""
    u = urllib.parse.urlparse(base)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "stream": True,
                       "max_tokens": max_tokens, "temperature": 0}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    t0 = time.perf_counter()
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req)
    data = b""
    first = None
    while True:
        part = s.recv(65536)
        if not part:
            break
        data += part
        if first is None:
            i = data.find(b'"event":"opener"')
            # The chunk is complete once its closing blank line has arrived.
            if i >= 0 and data.find(b"\n\n", i) >= 0:
                first = (time.perf_counter() - t0) * 1000
        if b"data: [DONE]\n\n" in data:
            break
    done = (time.perf_counter() - t0) * 1000
    s.close()
    # The body is chunked, but every event sits whole inside one chunk: the last one is the end.
    text = data.decode("utf-8", "replace")
    i = text.rfind("data: {")
    return first, done, json.loads(text[i + len("data: "):text.index("\n\n", i)])["microlm"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--microlm", default="build/microlm")
    ap.add_argument("--model", help="local GGUF (default: a random 8m Q8_0 written by make-random)")
    ap.add_argument("--cloud-model", help="GGUF that serve-model serves as the cloud (default: the local model)")
    ap.add_argument("--delay-ms", type=int, default=800, help="serve-model's injected delay before its first token")
    ap.add_argument("-n", type=int, default=20, help="timed requests")
    ap.add_argument("--max-tokens", type=int, default=24, help="cloud continuation tokens per request")
    ap.add_argument("--mode", default="prefill", choices=["prefill", "instruct"])
    ap.add_argument("--no-hedge", action="store_true", help="pass --no-hedge to serve (a random model is always unsure)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not model:
            model = os.path.join(tmp, "m8.gguf")
            subprocess.run([args.microlm, "make-random", "-o", model, "--shape", "8m", "--type", "q8_0"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cloud, cloud_url = start([args.microlm, "serve-model", "-m", args.cloud_model or model, "--port", "0",
                                  "--delay-ms", str(args.delay_ms)])
        extra = ["--no-hedge"] if args.no_hedge else []
        gw, base = start([args.microlm, "serve", "-m", model, "--cloud", cloud_url, "--port", "0", "--mode", args.mode,
                          "-q", *extra])
        dead, dead_base = start([args.microlm, "serve", "-m", model, "--cloud", f"http://127.0.0.1:{closed_port()}",
                                 "--port", "0", "--mode", args.mode, "-q", *extra])
        try:
            for p in PROMPTS[:2]:  # warm-up: page in the model, open the cloud's first connection
                one_request(base, p, args.max_tokens)
            firsts, server_firsts, stalls, wordless = [], [], [], 0
            for i in range(args.n):
                first, _, m = one_request(base, PROMPTS[i % len(PROMPTS)], args.max_tokens)
                assert m["error"] is None, m
                if first is None:  # the model ended its turn before a word (random weights do)
                    wordless += 1
                    continue
                firsts.append(first)
                server_firsts.append(m["timings"]["first_word_ms"])
                if m["timings"]["stall_ms"] is not None:
                    stalls.append(m["timings"]["stall_ms"])
            dones, kinds = [], set()
            for i in range(5):
                first, done, m = one_request(dead_base, PROMPTS[i % len(PROMPTS)], args.max_tokens)
                dones.append(done)
                kinds.add(m["error"]["kind"] if m["error"] else None)
        finally:
            for p in (gw, dead, cloud):
                p.terminate()
                p.wait(timeout=10)

    print(f"local model: {args.model or 'random 8m Q8_0'}; cloud: serve-model with --delay-ms {args.delay_ms}; "
          f"{args.mode} mode{', no hedge' if args.no_hedge else ''}; n={args.n}"
          + (f" ({wordless} replies had no opener word)" if wordless else ""))
    print(f"first opener word at the client: median {statistics.median(firsts):.1f} ms "
          f"(p90 {pct(firsts, 90):.1f}, min {min(firsts):.1f}, max {max(firsts):.1f})")
    print(f"  gateway's own first_word_ms: median {statistics.median(server_firsts):.1f} ms; "
          f"stall before the cloud's text: median {statistics.median(stalls) if stalls else float('nan'):.0f} ms")
    print(f"unreachable cloud: request to [DONE] median {statistics.median(dones):.0f} ms "
          f"(max {max(dones):.0f}), error kind {', '.join(sorted(k or 'none' for k in kinds))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
