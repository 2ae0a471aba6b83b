"""`microlm chat --speak-to out.wav` and `microlm serve --speak-to DIR`, end to end: a tiny random model opens, a fake OpenAI-compatible
cloud (here, stdlib only) streams a fixed English continuation after a delay long enough that the
opener's speech runs out first. The WAV is decoded
here with Python's own `wave` module (not microlm's reader): the opener's sound must start
within 200 ms of the request, and the longest silence between sounds in the waveform must match
the wait the chat reported within 50 ms. Offline, loopback only; needs espeak-ng
(libespeak-ng-dev, installed by scripts/setup.sh)."""
import argparse
import http.server
import json
import os
import threading
import time
import re
import struct
import subprocess
import sys
import tempfile
import wave

import urllib.request

from microlm_process import Server, send_chat_stream, tiny_model

CONTINUATION = ["you will want water,", " a map", " and a warm jacket."]
DELAY_S = 4.0


class FakeCloud(http.server.BaseHTTPRequestHandler):
    """Chat completions, streamed: the continuation in three deltas after DELAY_S; 404 otherwise."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        time.sleep(DELAY_S)
        send_chat_stream(self, CONTINUATION)

    def log_message(self, *args):
        pass


THRESHOLD = 328  # |sample| from which it is sound, as microlm counts it (~1% of full scale)


def analyse(path):
    """First sound (ms) and the longest silence of >= 50 ms between two sounds (ms)."""
    with wave.open(path) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "expected 16-bit mono"
        rate, n = w.getframerate(), w.getnframes()
        samples = struct.unpack(f"<{n}h", w.readframes(n))
    first, last, longest = None, None, 0.0
    for i, s in enumerate(samples):
        if abs(s) >= THRESHOLD:
            if first is None:
                first = i
            elif i - last - 1 >= rate * 0.05:
                longest = max(longest, (i - last - 1) * 1000.0 / rate)
            last = i
    assert first is not None, f"{path}: no sound at all"
    return first * 1000.0 / rate, longest, n * 1000.0 / rate


def check_gateway(microlm, model, cloud, d):
    """`serve --speak-to DIR`: a streamed turn's audio in DIR/<id>.wav, its timings in the last chunk."""
    gw = Server([microlm, "serve", "-m", model, "--cloud", cloud, "--port", "0", "--mode", "prefill", "--check", "off",
                 "--first-byte-timeout-ms", "20000", "--speak-to", d])
    try:
        body = json.dumps({"model": "m", "stream": True,
                           "messages": [{"role": "user", "content": "What should I pack for a day hike?"}]}).encode()
        req = urllib.request.Request(gw.base + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        last = None
        with urllib.request.urlopen(req, timeout=60) as r:
            for line in r:
                line = line.decode().strip()
                if line.startswith("data: {"):
                    last = json.loads(line[6:])
        timings = last["microlm"]["timings"]
        wav = os.path.join(d, last["id"] + ".wav")
        first, heard, total = analyse(wav)
        print(f"gateway WAV: {total:.0f} ms, first sound {first:.0f} ms, longest silence {heard:.0f} ms; reported: "
              f"first sound {timings['first_sound_ms']} ms, longest wait {timings['longest_audio_wait_ms']} ms")
        assert abs(first - timings["first_sound_ms"]) <= 50
        assert timings["longest_audio_wait_ms"] > 300
        assert abs(heard - timings["longest_audio_wait_ms"]) <= 50
    finally:
        gw.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlm", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        model = tiny_model(args.microlm, d)
        out = os.path.join(d, "reply.wav")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        cloud = f"http://127.0.0.1:{server.server_address[1]}/v1"
        cmd = [args.microlm, "chat", "What should I pack for a day hike?", "--local", model, "--cloud", cloud,
               "--mode", "prefill", "--check", "off", "--first-byte-timeout-ms", "20000", "--speak-to", out]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        print(p.stdout.strip())
        print(p.stderr.strip())
        assert p.returncode == 0, f"chat exited with {p.returncode}"
        m = re.search(r"speech: first sound (-?\d+) ms, longest wait (\d+) ms", p.stderr)
        assert m, "no speech timing in the chat's timing line"
        reported_first, reported_wait = float(m.group(1)), float(m.group(2))
        first, heard, total = analyse(out)
        print(f"WAV: {total:.0f} ms, first sound {first:.0f} ms, longest silence {heard:.0f} ms; "
              f"reported: first sound {reported_first:.0f} ms, longest wait {reported_wait:.0f} ms")
        assert first <= 200, f"the opener's sound started {first:.0f} ms after the request (> 200 ms)"
        assert reported_wait > 300, "the cloud's delay should have left a wait to measure"
        assert abs(heard - reported_wait) <= 50, \
            f"the WAV's longest silence {heard:.0f} ms differs from the reported wait {reported_wait:.0f} ms by > 50 ms"
        assert not os.path.exists(os.path.join(d, "reply-2.wav"))
        check_gateway(args.microlm, model, cloud, d)
        server.shutdown()
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
