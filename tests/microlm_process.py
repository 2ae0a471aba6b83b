"""What the Python end-to-end tests share: a microlm server process (`serve`, `serve-model`)
started with --port 0, its address read from its first stdout line, its output kept, its peak
memory sampled; a tiny random model; a port nothing listens on; and the streamed answer of a
fake OpenAI-compatible cloud. Imported by the Python tests beside it."""
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse


class Server:
    """A microlm server process: its address from the first stdout line, all output kept, its
    resident memory sampled every 20 ms (peak_rss_kib)."""

    def __init__(self, cmd, env=None):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()
        if not line.startswith("listening on http://"):
            self.proc.kill()
            raise AssertionError(f"{cmd[1]} did not start: {line!r} {self.proc.stderr.read()!r}")
        self.base = line.split()[2]
        u = urllib.parse.urlparse(self.base)
        self.hostport = (u.hostname, u.port)
        self.out = [line]
        self.err = []
        self.peak_rss_kib = 0
        self._sampling = True
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _drain(stream, into):
        for line in stream:
            into.append(line)

    def _sample(self):
        while self._sampling and self.proc.poll() is None:
            try:
                status = open(f"/proc/{self.proc.pid}/status").read()
                self.peak_rss_kib = max(self.peak_rss_kib, int(re.search(r"VmRSS:\s+(\d+)", status).group(1)))
            except (OSError, AttributeError):
                pass
            time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        return "".join(self.out) + "".join(self.err)

    def stop(self, timeout=15):
        """SIGTERM; the server must stop cleanly (exit 0: also no sanitizer report in an ASan build)."""
        self._sampling = False
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the server did not stop within {timeout} s of SIGTERM")
        time.sleep(0.1)  # let the drain threads read the last lines
        assert rc == 0, f"the server exited with {rc}: {''.join(self.err)[-3000:]}"


def tiny_model(microlm, folder):
    """A tiny random-weight model (`microlm make-random --shape tiny`) in `folder`; its path."""
    path = os.path.join(folder, "tiny.gguf")
    subprocess.run([microlm, "make-random", "-o", path, "--shape", "tiny"], check=True,
                   stderr=subprocess.DEVNULL, timeout=60)
    return path


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def send_chat_stream(handler, pieces, pause_s=0.0):
    """Answers `handler`'s request (a BaseHTTPRequestHandler) as a streamed chat completion:
    one content delta per piece, `pause_s` after each, then a "stop" finish and [DONE]."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    for piece in pieces:
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        handler.wfile.flush()
        time.sleep(pause_s)
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    handler.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
    handler.wfile.write(b"data: [DONE]\n\n")
