"""Deterministic toy model for the shadowtee example (no I/O, no Flask).

A fixed linear layer + softmax over three classes. Version "v1" is the
stable model; "v2" is the candidate, and differs from v1 in exactly three
ways a shadow comparison must tell apart:

  1. noise:      every class score is scaled by (1 + 1e-7), far inside the
                 comparator tolerance (relative 1e-4), so never a divergence;
  2. divergence: when the first feature is above LABEL_FLIP_THRESHOLD the
                 label is the runner-up class instead of the argmax, a real
                 change on the known path $.predictions[*].label;
  3. volatile:   the response timestamp (set by app.py) always differs and is
                 ignored by rule, as is $.model_version.

The argmax of class_scores never changes between versions, so the argmax
rule on $.predictions[*].class_scores matches on every input.
"""
import math

CLASSES = ("cat", "dog", "fox")
VERSIONS = ("v1", "v2")
MAX_FEATURES = 64
MAX_INSTANCES = 32
MAX_ABS_FEATURE = 1e6  # keeps every logit finite
LABEL_FLIP_THRESHOLD = 0.75
V2_SCORE_SCALE = 1.0 + 1e-7


class InputError(ValueError):
    """Raised for a request the model cannot score; str() is the message."""


def _weight(cls, i):
    """Fixed weights: deterministic, different per class and feature."""
    return math.sin((cls + 1) * (i + 1) * 0.7)


def _softmax(logits):
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _features(value, where):
    """Checks one feature vector and returns it as a list of floats."""
    if not isinstance(value, list):
        raise InputError("%s: expected an array of numbers" % where)
    if not 1 <= len(value) <= MAX_FEATURES:
        raise InputError("%s: expected 1 to %d numbers, got %d" % (where, MAX_FEATURES, len(value)))
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError("%s[%d]: expected a finite number" % (where, i))
        if abs(v) > MAX_ABS_FEATURE:
            raise InputError("%s[%d]: expected |x| <= %g" % (where, i, MAX_ABS_FEATURE))
        out.append(float(v))
    return out


def parse_request(body):
    """Returns the list of feature vectors in a request body.

    Accepts {"features": [..]} (one instance) or {"instances": [..]} where
    each instance is an array of numbers or {"features": [..]}. Raises
    InputError with a message naming the offending path.
    """
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object")
    has_f, has_i = "features" in body, "instances" in body
    if has_f == has_i:
        raise InputError("body: expected exactly one of \"features\" or \"instances\"")
    if has_f:
        return [_features(body["features"], "features")]
    instances = body["instances"]
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_INSTANCES:
        raise InputError("instances: expected an array of 1 to %d instances" % MAX_INSTANCES)
    out = []
    for n, inst in enumerate(instances):
        where = "instances[%d]" % n
        if isinstance(inst, dict):
            if "features" not in inst:
                raise InputError("%s: expected \"features\"" % where)
            out.append(_features(inst["features"], where + ".features"))
        else:
            out.append(_features(inst, where))
    return out


def predict(features, version):
    """Scores one feature vector; returns the prediction dict (JSON-ready)."""
    if version not in VERSIONS:
        raise ValueError("unknown model version %r" % version)
    logits = [sum(_weight(c, i) * x for i, x in enumerate(features)) + 0.1 * c for c in range(len(CLASSES))]
    scores = _softmax(logits)
    if version == "v2":
        scores = [s * V2_SCORE_SCALE for s in scores]
    ranked = sorted(range(len(CLASSES)), key=lambda c: (-scores[c], c))
    best = ranked[0]
    label = best
    if version == "v2" and features[0] > LABEL_FLIP_THRESHOLD:
        label = ranked[1]
    return {
        "label": CLASSES[label],
        "score": scores[best],
        "class_scores": scores,
        "classes": list(CLASSES),
    }
