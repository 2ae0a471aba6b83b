"""How often a local model's opener ends the turn by itself (no cloud continuation), measured
through the product: `microlm serve` with the model as the local μLM and `serve-model` of
SmolLM2 as the cloud, one non-streamed turn per held-out question (MT-Bench, then Vicuna, first
turns), greedy. A μLM whose data gave cut replies an end of turn stops after a few words here;
the opener metrics cannot see it.

    .venv/bin/python bench/opener_ends_turn.py models/microlm-8m.q8_0.gguf [-n 60]
"""
import argparse
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_latency import start  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("model")
ap.add_argument("-n", type=int, default=60, help="questions (default 60)")
ap.add_argument("--data", default="../shared/data")
ap.add_argument("--microlm", default="build/microlm")
ap.add_argument("--cloud-model", default="models/cache/SmolLM2-135M-Instruct.Q4_1.gguf")
args = ap.parse_args()

questions = []
for name in ("mt_bench_questions.jsonl", "vicuna_questions.jsonl"):
    with open(f"{args.data}/eval/{name}") as f:
        questions += [json.loads(line)["turns"][0] for line in f if line.strip()]
questions = questions[: args.n]


cloud, cloud_url = start([args.microlm, "serve-model", "-m", args.cloud_model, "--port", "0"])
try:
    gw, base = start([args.microlm, "serve", "-m", args.model, "--cloud", cloud_url + "/v1", "--cloud-model", "cloud",
                      "--port", "0", "-q"])
    try:
        ended, hedged, examples = 0, 0, []
        for q in questions:
            body = {"messages": [{"role": "user", "content": q}], "max_tokens": 2, "temperature": 0}
            req = urllib.request.Request(base + "/v1/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                m = json.load(r)["microlm"]
            hedged += m["hedged"]
            if not m["cloud_used"]:
                ended += 1
                examples.append(m["opener"])
        print(f"{args.model}: {ended}/{len(questions)} openers ended the turn ({hedged} hedged); e.g. {examples[:3]}")
    finally:
        gw.terminate()
finally:
    cloud.terminate()
