"""The test's own account of what the comparator must report for the
example's v1/v2 models, independent of the example's serving code: the
saved pickles are loaded with joblib and asked for predict_proba directly,
and the example's rules (label exact, score within its path tolerance,
class_scores by argmax) are applied here, not through examples/.../offline.py."""
import json
import os

# As the server (examples/flask-inference/model.py): one BLAS thread.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import joblib  # noqa: E402
import numpy as np  # noqa: E402

from conftest import ROOT

EXAMPLE = os.path.join(ROOT, "examples", "flask-inference")
RULES = os.path.join(EXAMPLE, "rules.json")
SCORE_PATH = "$.predictions[*].score"


def score_tolerance(rules_file=RULES):
    with open(rules_file) as fh:
        d = json.load(fh)["defaults"]
    assert d["argmax"] == ["$.predictions[*].class_scores"], "the oracle models only this argmax rule"
    tol = dict(d["tolerance"], **d["path_tolerance"][SCORE_PATH])
    return tol["absolute"], tol["relative"]


def estimator(model_dir, version):
    return joblib.load(os.path.join(model_dir, version + ".joblib"))


def probabilities(model_dir, version, rows, est=None):
    """predict_proba of `rows` as one batch. The same rows in batches of
    another size can differ in the last bits (the BLAS sums a matrix product
    in another order), so an exact comparison with the server batches rows
    as its requests did."""
    est = est or estimator(model_dir, version)
    return est.predict_proba(np.asarray(rows, dtype=np.float64))


def pair_diffs(p, s, index, tol):
    """Diverging "kind|path" keys of one instance (probability rows p, s)."""
    out = []
    lp, ls = int(np.argmax(p)), int(np.argmax(s))  # first maximum: the lower index on a tie
    if lp != ls:
        out += ["value|$.predictions[%d].label" % index, "argmax|$.predictions[%d].class_scores" % index]
    a, b = float(p[lp]), float(s[ls])
    d = abs(a - b)
    if a != b and not (d <= tol[0] or d <= tol[1] * max(abs(a), abs(b))):
        out.append("value|$.predictions[%d].score" % index)
    return out


def expected(model_dir, requests, rules_file=RULES):
    """requests: a list of requests, each a list of feature rows (one
    request = one /predict call). Returns (diverged requests, {"kind|path":
    count}, label flips over all instances)."""
    tol = score_tolerance(rules_file)
    e1, e2 = estimator(model_dir, "v1"), estimator(model_dir, "v2")
    diverged, paths, flips = 0, {}, 0
    for req in requests:  # one batch per request, as the server computes it
        p1, p2 = probabilities(model_dir, "v1", req, e1), probabilities(model_dir, "v2", req, e2)
        found = []
        for i in range(len(req)):
            keys = pair_diffs(p1[i], p2[i], i, tol)
            flips += any(k.startswith("value|") and k.endswith(".label") for k in keys)
            found += keys
        diverged += bool(found)
        for k in found:
            paths[k] = paths.get(k, 0) + 1
    return diverged, paths, flips


def report_paths(report):
    """{"kind|path": count} summed over the endpoints of a JSON report."""
    out = {}
    for ep in report["endpoints"]:
        for p in ep["paths"]:
            key = "%s|%s" % (p["kind"], p["path"])
            out[key] = out.get(key, 0) + p["count"]
    return out
