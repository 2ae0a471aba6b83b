"""Hostile requests against `microlm serve` (and `serve-model` behind it), loopback only and
bounded in time: hundreds of cases in the categories of issue 13 — broken framing and request
smuggling, oversized and slow headers, compressed and chunked body bombs, Range headers,
pipelining, odd methods and paths, control characters in paths and tokens, mutated chat bodies,
a message longer than the context. For every case: the server answers with a well-formed HTTP
response whose body is JSON (or SSE of JSON events ending in [DONE], or a demo file), or closes
the connection; it never crashes; its resident memory stays under 200 MiB throughout; /health
answers within 1 s while 16 slowloris connections are open. Prints a count per category.
Not a model-quality test: the models are random."""
import argparse
import gzip
import json
import random
import re
import socket
import sys
import tempfile
import threading
import time
import zlib

from microlm_process import Server, tiny_model

TOKEN = "tok-hostile-test-71c0a2e9"
TOKEN_ENV = "MICROLM_HOSTILE_TEST_TOKEN"
RSS_LIMIT_MIB = 200
MAX_BODY_KIB = 64


# ---- Raw HTTP ----------------------------------------------------------------------------

class Closed(Exception):
    """The server closed the connection without (the rest of) an answer."""


class Reader:
    def __init__(self, sock, deadline):
        self.sock, self.buf, self.deadline = sock, b"", deadline

    def _more(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no complete answer in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            raise Closed()
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise AssertionError("a header line longer than 64 KiB")
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def read_response(reader, head_only=False):
    """(status, headers (lower-case names), body); raises AssertionError on a malformed answer."""
    status_line = reader.line().decode("latin-1")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) [^\r\n]*", status_line)
    assert m, f"malformed status line {status_line!r}"
    status = int(m.group(1))
    headers = {}
    while True:
        line = reader.line()
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        assert sep and re.fullmatch(r"[A-Za-z0-9-]+", name), f"malformed header {line!r}"
        headers[name.lower()] = value.strip()
    if status == 100:
        return read_response(reader, head_only)
    if head_only:
        return status, headers, b""
    if headers.get("transfer-encoding") == "chunked":
        assert "content-length" not in headers, headers
        body = b""
        while True:
            size = int(reader.line().split(b";")[0], 16)
            chunk = reader.exactly(size + 2)
            assert chunk.endswith(b"\r\n"), "a chunk not followed by CRLF"
            if size == 0:
                break
            body += chunk[:-2]
    else:
        assert "content-length" in headers, f"no length and not chunked: {headers}"
        body = reader.exactly(int(headers["content-length"]))
    return status, headers, body


def check_body(status, headers, body, path=""):
    """The body a client gets is one it can parse: JSON, SSE of JSON ending in [DONE], or a file."""
    ctype = headers.get("content-type", "")
    if ctype.startswith("application/json"):
        j = json.loads(body)
        if status >= 400:
            assert isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str), j
            assert "what()" not in j["error"]["message"] and "std::" not in j["error"]["message"], j
    elif ctype.startswith("text/event-stream"):
        text = body.decode()
        events = [e for e in text.split("\n\n") if e]
        assert events and events[-1] == "data: [DONE]", events[-3:]
        for e in events[:-1]:
            assert e.startswith("data: ") and "\n" not in e, e
            json.loads(e[len("data: "):])
    else:
        assert status == 200 and ctype.split(";")[0] in ("text/html", "text/javascript", "text/css",
                                                          "text/plain", "image/svg+xml"), (status, ctype, path)


def exchange(addr, raw, n_responses=1, timeout=15.0, then_close=True):
    """Sends raw bytes; returns the answers read (each checked well formed) and whether the server
    then closed the connection. Fewer answers than asked is allowed only when it closed."""
    sock = socket.create_connection(addr, timeout=timeout)
    try:
        if raw:
            try:
                sock.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it answered and closed while we were still sending
        if then_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        reader = Reader(sock, time.monotonic() + timeout)
        answers = []
        try:
            for _ in range(n_responses):
                status, headers, body = read_response(reader)
                check_body(status, headers, body)
                answers.append((status, headers, body))
        except Closed:
            assert not reader.buf, f"half an answer: {reader.buf[:200]!r}"
        return answers
    finally:
        sock.close()


def req(method, path, body=b"", headers=(), version="HTTP/1.1"):
    head = f"{method} {path} {version}\r\nHost: x\r\n".encode("latin-1")
    for h in headers:
        head += (h if isinstance(h, bytes) else h.encode("latin-1")) + b"\r\n"
    if body and not any((h if isinstance(h, str) else h.decode("latin-1")).lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + b"\r\n" + body


def chat_body(content="Hello there", **extra):
    return json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}).encode()


# ---- The categories ------------------------------------------------------------------------

class Tally:
    def __init__(self, gw):
        self.gw, self.counts = gw, {}

    def case(self, category, raw, expect=None, n=1, **kw):
        answers = exchange(self.gw.hostport, raw, n, **kw)
        assert self.gw.alive(), f"the gateway died on a {category} case: {raw[:200]!r}"
        if expect is not None:
            assert answers, f"{category}: no answer to {raw[:200]!r}"
            ok = expect(answers) if callable(expect) else answers[0][0] in (expect if isinstance(expect, tuple) else (expect,))
            assert ok, f"{category}: {raw[:160]!r} -> {[a[0] for a in answers]} {answers[0][2][:200]!r}"
        self.counts[category] = self.counts.get(category, 0) + 1
        return answers


AUTH = f"Authorization: Bearer {TOKEN}"
JSON = "Content-Type: application/json"


def framing(t):
    """Broken request lines, versions, headers and smuggling attempts: 400-class answers or a close."""
    bad_lines = [b"GET\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n",
                 b" GET / HTTP/1.1\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                 b"GET / HTTP/1.1\n\n", b"G\xffT / HTTP/1.1\r\n\r\n", b"GET /\x7f HTTP/1.1\r\n\r\n",
                 b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
                 b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
                 b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
                 b"\r\n\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
    for raw in bad_lines:
        t.case("framing", raw, lambda a: a[0][0] in (400, 404, 405, 501))
    # An obsolete folded header may be read as one value (RFC 9112 allows that): any whole answer.
    t.case("framing", b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", lambda a: a[0][0] in (200, 400))
    rng = random.Random(13)
    base = req("POST", "/v1/chat/completions", chat_body(), [AUTH, JSON])
    for _ in range(120):
        b = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            op, at = rng.random(), rng.randrange(len(b))
            if op < 0.4:
                b[at] = rng.randrange(256)
            elif op < 0.7:
                del b[at:at + rng.randint(1, 8)]
            else:
                b[at:at] = rng.choice([b"\r\n", b"\x00", b":", b" ", b"\r", b"\n", b"%", b"chunked", b"9" * 12])
        t.case("framing (mutated request)", bytes(b))
    # Smuggling: both lengths, a Transfer-Encoding that is not chunked, conflicting lengths.
    body = chat_body()
    smuggles = [
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, "Transfer-Encoding: gzip"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, "Transfer-Encoding: chunked, identity"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 1}"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, "Content-Length: -1"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, "Content-Length: 1e3"]),
        req("POST", "/v1/chat/completions", body, [AUTH, JSON, "Content-Length: 99999999999999999999999"]),
        req("POST", "/v1/chat/completions", b"zz\r\n" + body + b"\r\n0\r\n\r\n", [AUTH, JSON, "Transfer-Encoding: chunked"]),
        req("POST", "/v1/chat/completions", b"5\r\nabc\r\n0\r\n\r\n", [AUTH, JSON, "Transfer-Encoding: chunked"]),
        req("POST", "/v1/chat/completions", b"ffffffffffffffffff\r\n", [AUTH, JSON, "Transfer-Encoding: chunked"]),
    ]
    for raw in smuggles:
        t.case("smuggling", raw, lambda a: a[0][0] in (400, 413, 501))
    # Oversized headers: one huge header, many small ones, a huge path.
    for raw in (req("GET", "/health", headers=["X-Big: " + "a" * 40000]),
                req("GET", "/health", headers=[f"X-{i}: {i}" for i in range(3000)]),
                req("GET", "/" + "a" * 40000)):
        t.case("oversized headers", raw, 431)


def methods_and_paths(t):
    """Odd methods and paths: 404/405 in JSON, never a file from outside web/."""
    for method in ("PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "HEAD", "OPTIONS", "FOO", "get", "POST"):
        for path in ("/health", "/v1/models", "/v1/chat/completions", "/metrics", "/nope", "/"):
            if (method, path) in (("POST", "/v1/chat/completions"),):
                continue
            raw = req(method, path, b"{}" if method in ("POST", "PUT", "PATCH") else b"", [AUTH, JSON])
            t.case("methods", raw, lambda a: a[0][0] in (200, 400, 401, 403, 404, 405, 415))
    for path in ("/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt", "/..%2fCMakeLists.txt", "/%00", "/.git/config",
                 "//etc/passwd", "/web/../../README.md", "/" + "%41" * 300, "/app.js%00.txt", "/\u00e9".encode().decode("latin-1")):
        answers = t.case("paths", req("GET", path), lambda a: a[0][0] in (200, 400, 403, 404))
        assert b"project(" not in answers[0][2] and b"root:" not in answers[0][2], path


def range_and_pipelining(t):
    """Range is ignored (every answer whole); ten pipelined GETs get ten answers in order."""
    ranges = "bytes=" + ",".join(["0-"] * 2000)
    answers = t.case("range", req("GET", "/", headers=["Range: " + ranges]), 200)
    assert len(answers[0][2]) < 1 << 20, len(answers[0][2])
    answers = t.case("range", req("GET", "/health", headers=["Range: bytes=0-5"]), 200)
    assert json.loads(answers[0][2])["status"] == "ok"
    answers = t.case("range", req("POST", "/v1/chat/completions", chat_body(), [AUTH, JSON, "Range: bytes=0-5"]), 200)
    assert json.loads(answers[0][2])["object"] == "chat.completion"
    for n in (2, 10, 50):
        raw = b"".join(req("GET", "/health") for _ in range(n))
        answers = t.case("pipelining", raw, lambda a, n=n: len(a) == n and all(x[0] == 200 for x in a), n=n)
    mixed = req("GET", "/health") + req("POST", "/v1/chat/completions", chat_body(), [AUTH, JSON]) + req("GET", "/v1/models", headers=[AUTH])
    t.case("pipelining", mixed, lambda a: [x[0] for x in a] == [200, 200, 200], n=3)
    # A request that closes the connection ends the pipeline there.
    closing = req("GET", "/health", headers=["Connection: close"]) + req("GET", "/health")
    t.case("pipelining", closing, lambda a: len(a) == 1, n=2)


def bodies(t):
    """Compressed and chunked bombs, wrong encodings, lengths that lie: 4xx, memory bounded."""
    big = b'{"messages":[{"role":"user","content":"' + b"x" * (64 << 20) + b'"}]}'
    for enc, data in (("gzip", gzip.compress(big, 9)), ("deflate", zlib.compress(big, 9)),
                      ("deflate", zlib.compress(big, 9)[2:-4]), ("x-gzip", gzip.compress(big, 9))):
        for auth in ([AUTH], []):
            t.case("bombs", req("POST", "/v1/chat/completions", data, [*auth, JSON, "Content-Encoding: " + enc]), 413)
    small = chat_body()
    for enc, data, want in (("gzip", gzip.compress(small), 200), ("deflate", zlib.compress(small), 200),
                            ("gzip", gzip.compress(small)[:-6], 400), ("gzip", b"not gzip at all", 400),
                            ("br", small, 415), ("gzip, gzip", gzip.compress(gzip.compress(small)), 415),
                            ("identity", small, 200)):
        t.case("encodings", req("POST", "/v1/chat/completions", data, [AUTH, JSON, "Content-Encoding: " + enc]), want)
    # A declared length over the cap is refused before the body is sent.
    t.case("lengths", req("POST", "/v1/chat/completions", b"", [AUTH, JSON, f"Content-Length: {1 << 30}"]), 413)
    t.case("lengths", req("POST", "/v1/chat/completions", b"", [AUTH, JSON, f"Content-Length: {1 << 30}", "Expect: 100-continue"]), 413)
    # Chunked, past the cap, in many small chunks.
    chunks = b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(MAX_BODY_KIB + 8)) + b"0\r\n\r\n"
    t.case("lengths", req("POST", "/v1/chat/completions", chunks, [AUTH, JSON, "Transfer-Encoding: chunked"]), 413)
    # A body shorter than declared, then the client half-closes: no answer is owed, no crash.
    t.case("lengths", req("POST", "/v1/chat/completions", b"{", [AUTH, JSON, "Content-Length: 100"]))
    # Expect: 100-continue with a body that fits: 100, then the answer.
    t.case("lengths", req("POST", "/v1/chat/completions", small, [AUTH, JSON, "Expect: 100-continue"]), 200)


def auth(t):
    """The bearer token: exact match only (no NUL cut, no prefix, no case games)."""
    body = chat_body()
    for h in (b"Authorization: Bearer " + TOKEN.encode() + b"\x00junk", b"Authorization: Bearer " + TOKEN.encode() + b"junk",
              b"Authorization: Bearer " + TOKEN[:-1].encode(), b"Authorization: bearer " + TOKEN.encode(),
              b"Authorization: Bearer  " + TOKEN.encode(), b"Authorization: " + TOKEN.encode(),
              b"Authorization: Basic " + TOKEN.encode(), b"Authorization: Bearer " + TOKEN.upper().encode(),
              b"Authorization: Bearer %00" + TOKEN.encode(), b"Authorization:"):
        t.case("auth", req("POST", "/v1/chat/completions", body, [h, JSON]), lambda a: a[0][0] in (400, 401))
        t.case("auth", req("GET", "/metrics", headers=[h]), lambda a: a[0][0] in (400, 401))
    t.case("auth", req("POST", "/v1/chat/completions", body, [AUTH, AUTH.replace(TOKEN, "other"), JSON]), lambda a: a[0][0] in (200, 400, 401))


def json_bodies(t):
    """Chat bodies mutated at random: 200 with a well-formed answer, or a 4xx error object."""
    rng = random.Random(17)
    seeds = [
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
         "max_tokens": 3, "temperature": 0.5, "microlm": {"modality": "speech", "check": "any"}},
        {"messages": [{"role": "user", "content": "Why?"}], "max_completion_tokens": 2, "seed": 7, "n": 1},
    ]
    values = [None, True, -1, 0, 1e308, -1e308, 2 ** 64, "", "x" * 1000, [], {}, [1, 2], {"a": None}, "\u0000", "\ud7ff",
              0.5, 3, "speech", "text", "any", [{"type": "image"}], [{"type": 1, "text": "hi"}]]
    keys = ["messages", "max_tokens", "max_completion_tokens", "temperature", "stream", "seed", "n", "microlm",
            "role", "content", "type", "text", "modality", "check", "cloud_delay_ms"]

    def mutate(x, depth=0):
        if isinstance(x, dict) and x and rng.random() < 0.8:
            k = rng.choice(list(x) + keys)
            x = dict(x)
            if rng.random() < 0.3:
                x.pop(k, None)
            else:
                x[k] = mutate(x.get(k), depth + 1) if k in x and rng.random() < 0.6 else rng.choice(values)
            return x
        if isinstance(x, list) and x and rng.random() < 0.8:
            x = list(x)
            i = rng.randrange(len(x))
            x[i] = mutate(x[i], depth + 1)
            return x
        return rng.choice(values)

    for _ in range(150):
        body = json.dumps(mutate(rng.choice(seeds))).encode()
        t.case("json bodies", req("POST", "/v1/chat/completions", body, [AUTH, JSON]),
               lambda a: a[0][0] in (200, 400, 413))
    for raw in (b"", b"null", b"[]", b"\"x\"", b"{", b"{\"messages\":" + b"[" * 5000 + b"]" * 5000 + b"}",
                b"\xff\xfe{}", b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}"):
        t.case("json bodies", req("POST", "/v1/chat/completions", raw, [AUTH, JSON]), lambda a: a[0][0] in (200, 400))


def long_message(t):
    """A user message longer than the local model's context and the cloud's: a 400 naming it,
    or a turn that ends well formed — never an internal error (issue 13 item 12)."""
    words = " ".join(f"w{i}" for i in range(9000))  # ~60 KB: under the body cap, far over any context
    for stream in (False, True):
        answers = t.case("long message", req("POST", "/v1/chat/completions", chat_body(words, stream=stream), [AUTH, JSON]),
                         lambda a: a[0][0] in (200, 400, 413))
        status, _, body = answers[0]
        text = body.decode()
        assert "internal" not in text, text[-400:]


def slow_clients(t, gw):
    """16 slowloris connections (a header line every 0.5 s) and 16 that send nothing: /health
    answers within 1 s; the slow ones are cut off by the header deadline."""
    socks = []
    stop = threading.Event()
    try:
        for i in range(32):
            s = socket.create_connection(gw.hostport, timeout=5)
            if i < 16:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)

        def drip():
            n = 0
            while not stop.is_set():
                for s in socks[:16]:
                    try:
                        s.sendall(f"X-Drip-{n}: 1\r\n".encode())
                    except OSError:
                        pass
                n += 1
                stop.wait(0.5)

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        time.sleep(0.5)
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            answers = exchange(gw.hostport, req("GET", "/health"), timeout=5)
            worst = max(worst, time.monotonic() - t0)
            assert answers and answers[0][0] == 200
            time.sleep(0.2)
        assert worst < 1.0, f"/health took {worst:.2f} s with 32 slow connections open"
        t.counts["slowloris"] = t.counts.get("slowloris", 0) + 5
        print(f"  /health with 16 slowloris + 16 silent connections open: worst of 5 {worst * 1000:.0f} ms")
        # The header deadline (--read-timeout-s 2 here) ends the dripping ones: 408 or a close.
        time.sleep(2.5)
        cut = 0
        for s in socks[:16]:
            s.settimeout(1.0)
            try:
                data = s.recv(4096)
                cut += (not data) or data.startswith(b"HTTP/1.1 408")
            except (socket.timeout, ConnectionResetError):
                cut += 0
        assert cut == 16, f"only {cut} of 16 slowloris connections were cut off by the header deadline"
    finally:
        stop.set()
        for s in socks:
            s.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlm", required=True)
    ap.add_argument("--web-dir", required=True)
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(args.microlm, tmp)
        cloud = Server([args.microlm, "serve-model", "-m", model, "--port", "0", "--model-name", "tiny-cloud"])
        gw = Server([args.microlm, "serve", "-m", model, "--cloud", cloud.base,
                     "--port", "0", "--model-name", "tiny-gw", "--mode", "prefill", "--token-env", TOKEN_ENV,
                     "--max-body-kib", str(MAX_BODY_KIB), "--read-timeout-s", "2", "--web-dir", args.web_dir, "--pace", "0", "-n", "16"],
                    env={TOKEN_ENV: TOKEN})
        t = Tally(gw)
        try:
            for part in (framing, methods_and_paths, range_and_pipelining, bodies, auth, json_bodies, long_message):
                part(t)
                assert gw.alive() and cloud.alive()
            slow_clients(t, gw)
            # serve-model answers the same framing through the same server code: a few checks.
            tc = Tally(cloud)
            for raw, want, n in (
                    (req("POST", "/v1/completions", gzip.compress(b'{"prompt":"' + b"x" * (8 << 20) + b'"}'),
                         [JSON, "Content-Encoding: gzip"]), (413,), 1),
                    (b"".join(req("GET", "/health") for _ in range(10)), (200,), 10),
                    (req("POST", "/v1/completions", b'{"prompt": "a", "max_tokens": 1e300}', [JSON]), (400,), 1),
                    (req("POST", "/v1/completions", b'{"prompt": "a", "seed": 1e300}', [JSON]), (400,), 1),
                    (req("POST", "/v1/completions", b'{"prompt": "a", "max_tokens": 2, "seed": -1}', [JSON]), (200,), 1)):
                tc.case("serve-model", raw, lambda a, want=want, n=n: len(a) == n and all(x[0] in want for x in a), n=n)
        finally:
            gw.stop()
            cloud.stop()
        total = sum(t.counts.values()) + sum(tc.counts.values())
        for k, v in {**t.counts, **tc.counts}.items():
            print(f"  {k:28s} {v:4d} cases")
        print(f"  gateway peak RSS {gw.peak_rss_kib >> 10} MiB, serve-model {cloud.peak_rss_kib >> 10} MiB")
        assert gw.peak_rss_kib < RSS_LIMIT_MIB << 10, f"the gateway reached {gw.peak_rss_kib >> 10} MiB"
        assert cloud.peak_rss_kib < RSS_LIMIT_MIB << 10, f"serve-model reached {cloud.peak_rss_kib >> 10} MiB"
        assert TOKEN not in "".join(gw.err), "the bearer token appears in the gateway's output"
        print(f"ok: {total} hostile cases, 0 crashes, every answer well formed, in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
