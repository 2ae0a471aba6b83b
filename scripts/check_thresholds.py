#!/usr/bin/env python3
"""Choose the opener check's thresholds from an eval run's per-opener scores.

Reads the `handoff.check_scores` of a `microlm eval handoff` results.json (each own and bad
opener's mean log p given the conversation, and its pmi) and prints, per model and signal, the
detection on bad openers and the false alarms on own openers over a grid of thresholds, and the
thresholds that detect most with false alarms at or under --max-false-alarms. Run it on a
calibration split (`--handoff-skip`), then evaluate the chosen thresholds on other prompts.

With --specific N (runs whose check scores carry the openers' text), a bad opener whose first two
words begin at least N of the model's own openers in the run is set apart as generic ("Sure, here's
an" fits most questions: moved to another prompt it is not wrong), and detection is also given on
the specific bad openers alone. Both figures are printed; the generic ones are not dropped silently.

Usage: scripts/check_thresholds.py RESULTS.json [--max-false-alarms 0.10] [--specific 3]
"""
import argparse
import json
import math
import sys


def rates(rows, off):
    own = [r for r in rows if r["kind"] == "own"]
    bad = [r for r in rows if r["kind"] == "bad"]
    det = sum(off(r) for r in bad) / len(bad) if bad else float("nan")
    fa = sum(off(r) for r in own) / len(own) if own else float("nan")
    return det, fa


def start(text, words=2):
    """The first `words` words, lowercased, typographic apostrophes as '."""
    return " ".join(text.replace("\u2019", "'").lower().split()[:words])


def split_generic(rows, min_own):
    """Bad rows whose two-word start begins >= min_own own openers of the same model are generic."""
    own_starts = {}
    for r in rows:
        if r["kind"] == "own":
            key = (r["model"], start(r.get("opener", "")))
            own_starts[key] = own_starts.get(key, 0) + 1
    generic = lambda r: own_starts.get((r["model"], start(r.get("opener", ""))), 0) >= min_own
    return [r for r in rows if r["kind"] == "own" or not generic(r)], sum(r["kind"] == "bad" and generic(r) for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of `microlm eval handoff`")
    ap.add_argument("--max-false-alarms", type=float, default=0.10)
    ap.add_argument("--specific", type=int, default=0, metavar="N",
                    help="also report detection on bad openers whose two-word start begins fewer than N own openers")
    args = ap.parse_args()
    try:
        with open(args.results) as f:
            scores = json.load(f)["handoff"]["check_scores"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        sys.exit(f"check_thresholds: cannot read check scores from {args.results}: {e}")
    # One score per opener: the check is the same in both modes, so the instruct rows are used.
    rows = [r for r in scores if r["mode"] == "instruct" and r["logprob"] is not None and r["pmi"] is not None]
    if not rows:
        sys.exit("check_thresholds: no scored openers (was the run made with --check off?)")
    lik_grid = [x / 4 for x in range(-24, 1)]   # -6 .. 0
    pmi_grid = [x / 10 for x in range(-20, 21)]  # -2 .. 2
    if args.specific > 0:
        if any("opener" not in r for r in rows):
            sys.exit("check_thresholds: --specific needs check scores with the openers' text (a newer run)")
        specific, n_generic = split_generic(rows, args.specific)
        print(f"(--specific {args.specific}: {n_generic} generic bad openers set apart; the tables after "
              f"'specific' leave them out)")
        sections = [("", rows), (" specific", specific)]
    else:
        sections = [("", rows)]
    models = sorted({r["model"] for r in rows}) + ["(all models)"]
    for label, section in sections:
        for model in models:
            mr = [r for r in section if model == "(all models)" or r["model"] == model]
            report(model + label, mr, lik_grid, pmi_grid, args.max_false_alarms)


def report(model, mr, lik_grid, pmi_grid, max_fa):
    """The best detection per signal with false alarms <= max_fa, for one model's rows."""
    print(f"## {model}: {sum(r['kind'] == 'own' for r in mr)} own, {sum(r['kind'] == 'bad' for r in mr)} bad")
    best = {}
    for name, grid, key in (("likelihood", lik_grid, "logprob"), ("pmi", pmi_grid, "pmi")):
        for t in grid:
            det, fa = rates(mr, lambda r: r[key] < t)
            if fa <= max_fa and det > best.get(name, (-1,))[0]:
                best[name] = (det, fa, t)
    for combo in ("any", "all"):
        for tl in lik_grid:
            for tp in pmi_grid:
                f = (lambda r: r["logprob"] < tl or r["pmi"] < tp) if combo == "any" else \
                    (lambda r: r["logprob"] < tl and r["pmi"] < tp)
                det, fa = rates(mr, f)
                if fa <= max_fa and det > best.get(combo, (-1,))[0]:
                    best[combo] = (det, fa, (tl, tp))
    for name in ("likelihood", "pmi", "any", "all"):
        if name in best:
            det, fa, t = best[name]
            print(f"  {name:10s} best with false alarms <= {max_fa:.0%}: "
                  f"detection {det:.1%}, false alarms {fa:.1%} at {t}")
        else:
            print(f"  {name:10s} no threshold keeps false alarms <= {max_fa:.0%}")


if __name__ == "__main__":
    main()
