"""Many concurrent turns through `microlm serve`: N streamed requests at once (200 by default)
against a cloud that answers each after a fixed delay (300 ms by default; a threaded fake that
serves any number of requests side by side, so the gateway is what is measured). The local model
is a random-weight tiny or 8M model (compute, not quality). Reports how many turns ended with
[DONE], how many got 503, and the time to the first opener word at the client (p50, p95, max).

    .venv/bin/python bench/gateway_load.py --microlm build/microlm [-n 200] [--shape 8m]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_latency import one_request, pct, start  # noqa: E402


def fake_cloud(delay_s):
    """An OpenAI-style streaming endpoint: waits delay_s, then a few deltas and [DONE]."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for piece in [" and", " that", " is", " the", " answer."]:
                d = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(d)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--microlm", default="build/microlm")
    ap.add_argument("--shape", default="8m", choices=["tiny", "8m"], help="random local model shape")
    ap.add_argument("--model", help="a real local model instead (e.g. models/microlm-8m.q8_0.gguf): its openers "
                                    "have realistic lengths, a random model's words run to many tokens")
    ap.add_argument("-n", type=int, default=200, help="concurrent streamed turns")
    ap.add_argument("--delay-ms", type=int, default=300, help="the fake cloud's delay before its first token")
    ap.add_argument("--local-slots", type=int, default=2, help="the gateway's --local-slots (Contexts computing openers at once)")
    args = ap.parse_args()

    cloud, cloud_url = fake_cloud(args.delay_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or os.path.join(tmp, "local.gguf")
        if not args.model:
            subprocess.run([args.microlm, "make-random", "-o", model, "--shape", args.shape, "--type", "q8_0"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gw, base = start([args.microlm, "serve", "-m", model, "--cloud", cloud_url, "--port", "0", "-q",
                          "--no-hedge", "--cloud-retries", "0", "--local-slots", str(args.local_slots)])
        try:
            one_request(base, "warm up", 8)
            results = [None] * args.n
            errors = []

            def one(i):
                try:
                    results[i] = one_request(base, f"Question number {i}: what is it?", 8)
                except Exception as e:  # a refused connection, a 503 body without [DONE], a timeout
                    errors.append(f"{type(e).__name__}: {e}")

            threads = [threading.Thread(target=one, args=(i,)) for i in range(args.n)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            wall = time.perf_counter() - t0
        finally:
            gw.terminate()
            gw.wait(timeout=30)
            cloud.shutdown()

    done = [r for r in results if r is not None]
    firsts = [r[0] for r in done if r[0] is not None]
    failed = [r[2]["error"] for r in done if r[2].get("error")]
    local = os.path.basename(args.model) if args.model else f"random {args.shape} Q8_0"
    print(f"{args.n} concurrent streamed turns, local: {local} on {args.local_slots} slot(s), "
          f"cloud: fake, {args.delay_ms} ms to its first token; wall {wall:.1f} s")
    print(f"  ended with [DONE]: {len(done)}/{args.n}; cloud errors: {len(failed)}; "
          f"no answer or 503: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    if firsts:
        print(f"  first opener word at the client: p50 {pct(firsts, 50):.0f} ms, p95 {pct(firsts, 95):.0f} ms, "
              f"max {max(firsts):.0f} ms (n={len(firsts)})")
    return 0 if len(done) == args.n and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
