"""The web demo in headless Chromium (Debian's chromium + chromium-driver, driven by the system's
python3-selenium): the gateway serves web/, a prompt is typed and sent, local and cloud spans
appear in the DOM, a retract strikes the opener (text) and becomes a pivot (speech) with the
delay slider seen in the stall; a screenshot is saved into the build folder as an artefact.
The cloud is a scripted fake here, so the recoveries happen on cue; the local model is random."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from microlm_process import send_chat_stream

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as e:  # the message is the point: CI installs these, a dev box may not have them
    sys.exit(f"test_web_demo: python3-selenium is missing ({e}); install it with: apt-get install python3-selenium "
             "chromium chromium-driver (scripts/setup.sh does)")

API_KEY = "sk-web-demo-SECRET-0d9e4c"
API_KEY_ENV = "MICROLM_WEB_DEMO_KEY"


class FakeCloud(BaseHTTPRequestHandler):
    """Instruct-mode continuator on cue: a question about Australia gets a retract, anything
    else a keep; deltas are spaced out so the page streams visibly."""

    protocol_version = "HTTP/1.0"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if "Australia" in user:
            pieces = ["[retract] ", "The capital ", "of Australia ", "is Canberra."]
        else:
            pieces = ["[keep] ", "water, ", "snacks, ", "a map ", "and a warm layer."]
        send_chat_stream(self, pieces, pause_s=0.05)

    def log_message(self, *args):
        pass


def start_gateway(microlm, model, cloud_url):
    proc = subprocess.Popen([microlm, "serve", "-m", model, "--cloud", cloud_url, "--port", "0", "--mode", "instruct",
                             "--api-key-env", API_KEY_ENV, "--model-name", "tiny-demo", "--cloud-model", "fake"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, API_KEY_ENV: API_KEY})
    line = proc.stdout.readline()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.stderr.read()!r}")
    return proc, line.split()[2]


def browser(profile_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    if not chromium or not driver:
        sys.exit("test_web_demo: chromium or chromedriver is missing; install them with: apt-get install chromium "
                 "chromium-driver (scripts/setup.sh does)")
    opts = Options()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}", "--window-size=1100,1300"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def ask(d, text, turn):
    box = d.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(text)
    d.find_element(By.ID, "send").click()
    replies = f"#transcript .turn:nth-child({turn}) .reply"
    WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{replies}[data-done='true']"))
    return d.find_element(By.CSS_SELECTOR, replies)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--microlm", required=True)
    ap.add_argument("--out", required=True, help="folder for the screenshot")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    cloud = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    threading.Thread(target=cloud.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "tiny.gguf")
        subprocess.run([args.microlm, "make-random", "-o", model, "--shape", "tiny"], check=True,
                       stderr=subprocess.DEVNULL, timeout=60)
        gw, base = start_gateway(args.microlm, model, f"http://127.0.0.1:{cloud.server_address[1]}")
        d = None
        try:
            d = browser(os.path.join(tmp, "chromium-profile"))
            d.get(base + "/")
            WebDriverWait(d, 15).until(lambda d: "tiny-demo" in d.find_element(By.ID, "health").text)

            # 1. Local words first, then cloud words, each in its own spans.
            reply = ask(d, "What should I pack for a day hike?", 1)
            spans = reply.find_elements(By.CSS_SELECTOR, "span.local, span.cloud")
            local = reply.find_elements(By.CSS_SELECTOR, "span.local")
            cloud_spans = reply.find_elements(By.CSS_SELECTOR, "span.cloud")
            assert local and cloud_spans, reply.get_attribute("innerHTML")
            assert spans[0].get_attribute("data-source") == "local", spans[0].get_attribute("outerHTML")
            assert "warm layer" in "".join(s.text for s in cloud_spans), [s.text for s in cloud_spans]
            assert d.find_element(By.ID, "t-first-word").text.endswith("ms")
            assert d.find_element(By.ID, "t-verdict").text.startswith("keep")

            # 2. Text modality: the cloud retracts, the opener is struck through and replaced.
            reply = ask(d, "What is the capital of Australia?", 2)
            assert reply.find_elements(By.CSS_SELECTOR, "span.marker.retract"), reply.get_attribute("innerHTML")
            struck = reply.find_elements(By.CSS_SELECTOR, "span.local.retracted")
            assert struck, reply.get_attribute("innerHTML")
            assert "line-through" in struck[0].value_of_css_property("text-decoration-line")
            replacement = reply.find_elements(By.CSS_SELECTOR, "span.cloud:not(.retracted)")
            assert "Canberra" in "".join(s.text for s in replacement), reply.text

            # 3. Speech modality and the delay slider: the retract becomes a pivot, and the
            #    extra cloud delay shows in the stall.
            d.find_element(By.ID, "modality-speech").click()
            d.execute_script("const s = document.getElementById('delay'); s.value = 600;"
                             "s.dispatchEvent(new Event('input'));")
            assert d.find_element(By.ID, "delay-value").text == "600 ms"
            reply = ask(d, "And what about Australia, again?", 3)
            assert reply.find_elements(By.CSS_SELECTOR, "span.marker.pivot"), reply.get_attribute("innerHTML")
            assert not reply.find_elements(By.CSS_SELECTOR, ".retracted"), reply.get_attribute("innerHTML")
            stall = int(d.find_element(By.ID, "t-stall").text.split()[0])
            assert stall >= 600, stall

            shot = os.path.abspath(os.path.join(args.out, "web_demo.png"))
            assert d.save_screenshot(shot), "no screenshot"
            print(f"screenshot: {shot}")

            page = d.page_source
            assert API_KEY not in page, "the API key reached the page"
            problems = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
            assert not problems, f"browser console errors: {problems}"
        finally:
            if d is not None:
                d.quit()
            gw.terminate()
            out, err = gw.communicate(timeout=10)
            cloud.shutdown()
        assert API_KEY not in out + err, "the API key appears in the gateway's output"
    print("ok: local and cloud spans, retract (text) and pivot (speech) drawn; screenshot saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
