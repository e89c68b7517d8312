#!/usr/bin/python3
"""What the report should say, computed offline: v1 vs v2 on the held-out rows.

  offline.py [--models DIR] [--rules FILE] [--rows N] [--json]

Loads the two saved models (model.load, as the server does), predicts the
first N held-out rows (default: all), one row per request as the demo sends
them, and applies the example's compare rules to each pair of predictions:

  $.predictions[*].label         exact (an integer)
  $.predictions[*].score         the rules' tolerance for that path
  $.predictions[*].class_scores  argmax: diverges when the top class differs
  $.predictions[*].classes       exact

(timestamp and model_version are ignored by the rules; request_id is equal
on both sides). Prints the disagreement per path and in total; --json prints
it as one JSON object. Exit status: 0, 1 models missing, 2 bad arguments or
a rules file with settings for these paths this script does not model.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model  # noqa: E402

SCORE = "$.predictions[*].score"
SCORES = "$.predictions[*].class_scores"


def tolerance(rules):
    """(absolute, relative) the rules apply at $.predictions[*].score."""
    d = rules.get("defaults") or {}
    if rules.get("endpoints"):
        raise ValueError("endpoint sections are not modelled: keep the example's rules in \"defaults\"")
    base = d.get("tolerance") or {}
    path = (d.get("path_tolerance") or {}).get(SCORE) or {}
    extra = set(d.get("path_tolerance") or {}) - {SCORE}
    if extra or d.get("topk") or d.get("unordered") or set(d.get("argmax") or []) - {SCORES}:
        raise ValueError("rules for paths other than %s / %s are not modelled" % (SCORE, SCORES))
    if SCORES not in (d.get("argmax") or []):
        raise ValueError("%s is not an argmax path: not modelled" % SCORES)
    return (float(path.get("absolute", base.get("absolute", 0.0))),
            float(path.get("relative", base.get("relative", 0.0))))


def differs(a, b, tol):
    """The comparator's rule for two reals (docs/RULES.md, "Numbers")."""
    d = abs(a - b)
    return a != b and not (d <= tol[0] or d <= tol[1] * max(abs(a), abs(b)))


def argmax(v):
    return max(range(len(v)), key=lambda i: (v[i], -i))


def compare(p, s, tol):
    """The diverging paths ("kind|path") of one pair of predictions at index 0."""
    out = []
    if p["label"] != s["label"]:
        out.append("value|$.predictions[0].label")
    if differs(p["score"], s["score"], tol):
        out.append("value|$.predictions[0].score")
    if argmax(p["class_scores"]) != argmax(s["class_scores"]):
        out.append("argmax|$.predictions[0].class_scores")
    if p["classes"] != s["classes"]:
        out.append("value|$.predictions[0].classes")
    return out


def disagreement(model_dir, rules, rows=None):
    """Over the first `rows` held-out rows: {"rows", "diverged", "paths":
    {"kind|path": count}, "probabilities_moved": rows whose probabilities
    differ at all, "max_absorbed_score_delta": the largest score change of
    a row that does not diverge}."""
    tol = tolerance(rules)
    data = model.heldout()
    if rows is not None:
        data = data[:rows]
    m1, m2 = model.load(model_dir, "v1"), model.load(model_dir, "v2")
    # One row per call, as the demo's requests: a batch can differ from
    # single rows in the last bits (the BLAS sums it in another order).
    v1 = [m1.predict([f])[0] for f, _ in data]
    v2 = [m2.predict([f])[0] for f, _ in data]
    paths, diverged, moved, max_absorbed = {}, 0, 0, 0.0
    for p, s in zip(v1, v2):
        found = compare(p, s, tol)
        diverged += bool(found)
        for k in found:
            paths[k] = paths.get(k, 0) + 1
        if p["class_scores"] != s["class_scores"]:
            moved += 1
            if not found:
                max_absorbed = max(max_absorbed, abs(p["score"] - s["score"]))
    return {"rows": len(data), "diverged": diverged, "paths": dict(sorted(paths.items())),
            "probabilities_moved": moved, "max_absorbed_score_delta": max_absorbed}


def summary(result, rules_name):
    """The text form of a disagreement() result."""
    lines = ["offline: v1 vs v2 on %d held-out rows: %d diverge under %s" %
             (result["rows"], result["diverged"], rules_name)]
    for k, n in result["paths"].items():
        kind, path = k.split("|", 1)
        lines.append("  %6d  %-6s  %s" % (n, kind, path))
    lines.append("offline: the probabilities differ on %d rows; on the %d that do not diverge the rules absorb"
                 " it (score moved by up to %.3f)" % (result["probabilities_moved"], result["rows"] - result["diverged"],
                                                     result["max_absorbed_score_delta"]))
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description="v1 vs v2 disagreement on the held-out rows, offline")
    ap.add_argument("--models", default=os.environ.get("MODEL_DIR") or os.path.join(HERE, "models"))
    ap.add_argument("--rules", default=os.path.join(HERE, "rules.json"))
    ap.add_argument("--rows", type=int, default=None, help="the first N held-out rows (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.rows is not None and args.rows < 1:
        ap.error("--rows must be >= 1")
    try:
        with open(args.rules) as fh:
            rules = json.load(fh)
        result = disagreement(args.models, rules, args.rows)
    except (OSError, ValueError) as exc:
        print("offline: %s: %s" % (args.rules, exc), file=sys.stderr)
        return 2
    except model.ModelError as exc:
        print("offline: %s" % exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(summary(result, os.path.basename(args.rules)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
