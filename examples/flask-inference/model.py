"""The scikit-learn model of the shadowtee example (no Flask, no HTTP).

Data: scikit-learn's bundled handwritten digits (`load_digits`: 1797 8x8
images, 64 pixel intensities 0..16, classes 0..9), read from the installed
package, never downloaded. A stratified split with a fixed seed holds out
25% of the rows (450) that no training sees; the demo sends exactly those
through shadowtee (`heldout()`).

Two genuinely different trainings on the other 1347 rows, both fixed-seed
and deterministic:

  v1 (stable):    StandardScaler + multinomial LogisticRegression (C=1)
  v2 (candidate): StandardScaler + RBF SVC (C=1), probabilities by Platt
                  scaling (libsvm's internal cross-validation, seeded)

A prediction carries the label, its probability and the probability of
every class. Between v1 and v2 a reviewer must tell apart:

  - probabilities that move within tolerance: every probability differs
    between the two models; compare-rules absorb it (argmax on
    $.predictions[*].class_scores, an absolute tolerance on
    $.predictions[*].score): noise, not a divergence;
  - labels that really flip on some inputs (and scores that move beyond
    the tolerance): the divergence the report counts;
  - volatile fields ($.timestamp, $.model_version) ignored by rule.

Saved models are joblib pickles (`save` / `load`) with a JSON metadata file
next to them; train.py writes them, app.py loads them.
"""
import hashlib
import json
import math
import os
import platform
import tempfile

# Single-threaded BLAS: gunicorn runs several workers and threads, each
# prediction is one small matrix; set before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

VERSIONS = ("v1", "v2")
N_FEATURES = 64  # 8x8 pixels
PIXEL_MAX = 16.0
MAX_INSTANCES = 32
SPLIT_SEED = 0
HELDOUT_SHARE = 0.25
# Bump when the training code changes in a way the spec text does not show:
# a cached model with another value is retrained.
TRAINING_REVISION = 1

SPECS = {
    "v1": "StandardScaler + LogisticRegression(C=1.0, lbfgs, max_iter=2000)",
    "v2": "StandardScaler + SVC(rbf, C=1.0, gamma=scale, probability=True, random_state=0)",
}


class InputError(ValueError):
    """Raised for a request the model cannot score; str() is the message."""


class ModelError(RuntimeError):
    """A model file that is missing, unreadable or not what its metadata says."""


def _estimator(version):
    if version == "v1":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="lbfgs", max_iter=2000))
    if version == "v2":
        return make_pipeline(StandardScaler(),
                             SVC(kernel="rbf", C=1.0, gamma="scale", probability=True, random_state=0))
    raise ValueError("unknown model version %r (expected %s)" % (version, "|".join(VERSIONS)))


def _split():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=HELDOUT_SHARE, random_state=SPLIT_SEED, stratify=y)


def heldout():
    """The held-out rows: (features, true label) pairs, features as 64 ints
    (the pixel intensities as the data set stores them), in a fixed order."""
    _, x_test, _, y_test = _split()
    return [([int(v) for v in row], int(label)) for row, label in zip(x_test, y_test)]


def fingerprint(version):
    """What a cached model must match to be reused: the training spec, the
    split, and the library versions that produced the pickle."""
    text = json.dumps({"spec": SPECS[version], "revision": TRAINING_REVISION, "split_seed": SPLIT_SEED,
                       "heldout_share": HELDOUT_SHARE, "sklearn": sklearn.__version__,
                       "numpy": np.__version__, "python": platform.python_version()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train(version):
    """Fits `version` on the training rows; returns (estimator, metadata)."""
    est = _estimator(version)
    x_train, x_test, y_train, y_test = _split()
    est.fit(x_train, y_train)
    accuracy = float(np.mean(est.predict_proba(x_test).argmax(axis=1) == y_test))
    meta = {"version": version, "spec": SPECS[version], "fingerprint": fingerprint(version),
            "sklearn": sklearn.__version__, "dataset": "sklearn.datasets.load_digits",
            "train_rows": int(len(y_train)), "heldout_rows": int(len(y_test)),
            "heldout_accuracy": round(accuracy, 6)}
    return est, meta


def paths(model_dir, version):
    """(model file, metadata file) of `version` in model_dir."""
    return os.path.join(model_dir, version + ".joblib"), os.path.join(model_dir, version + ".json")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path, write):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(model_dir, version, est, meta):
    """Writes the pickle, then the metadata (with the pickle's sha256), each
    by rename so a concurrent reader never sees half a file."""
    os.makedirs(model_dir, exist_ok=True)
    model_path, meta_path = paths(model_dir, version)
    _write_atomic(model_path, lambda fh: joblib.dump(est, fh))
    meta = dict(meta, sha256=_sha256(model_path))
    _write_atomic(meta_path, lambda fh: fh.write((json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()))
    return meta


def cached(model_dir, version):
    """The metadata of a saved model that can be reused as is, else None."""
    model_path, meta_path = paths(model_dir, version)
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
        ok = meta.get("fingerprint") == fingerprint(version) and meta.get("sha256") == _sha256(model_path)
    except (OSError, ValueError):
        return None
    return meta if ok else None


def load(model_dir, version):
    """Loads a saved model with joblib; returns a Model. ModelError when the
    files are missing or were made by another scikit-learn than this one."""
    if version not in VERSIONS:
        raise ModelError("MODEL_VERSION must be one of %s, got %r" % ("|".join(VERSIONS), version))
    model_path, meta_path = paths(model_dir, version)
    hint = "train it first: train.py --out %s %s" % (model_dir, version)
    try:
        with open(meta_path) as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise ModelError("no model %s in %s (%s missing); %s" % (version, model_dir, meta_path, hint)) from None
    except (OSError, ValueError) as exc:
        raise ModelError("%s: unreadable model metadata: %s; %s" % (meta_path, exc, hint)) from None
    if meta.get("sklearn") != sklearn.__version__:
        raise ModelError("%s was trained with scikit-learn %s, this is %s; %s" %
                         (model_path, meta.get("sklearn"), sklearn.__version__, hint))
    try:
        est = joblib.load(model_path)
    except FileNotFoundError:
        raise ModelError("%s missing; %s" % (model_path, hint)) from None
    except Exception as exc:  # a pickle can fail in many ways; all mean "retrain"
        raise ModelError("%s: cannot load: %s: %s; %s" % (model_path, type(exc).__name__, exc, hint)) from None
    if getattr(est, "n_features_in_", None) != N_FEATURES or not hasattr(est, "predict_proba"):
        raise ModelError("%s is not a %d-feature classifier; %s" % (model_path, N_FEATURES, hint))
    return Model(version, est, meta)


class Model:
    """A loaded classifier: predictions as JSON-ready dicts."""

    def __init__(self, version, estimator, meta):
        self.version = version
        self.estimator = estimator
        self.meta = meta
        self.classes = [int(c) for c in estimator.classes_]

    def predict(self, instances):
        """One dict per feature vector: label, score (the label's
        probability), class_scores (every class's), classes. The label is
        the class of the highest probability, the lowest index on a tie
        (as the comparator's argmax rule)."""
        proba = self.estimator.predict_proba(np.asarray(instances, dtype=np.float64))
        out = []
        for row in proba:
            best = int(np.argmax(row))
            out.append({"label": self.classes[best], "score": float(row[best]),
                        "class_scores": [float(p) for p in row], "classes": list(self.classes)})
        return out


def _features(value, where):
    """Checks one feature vector and returns it as a list of floats."""
    if not isinstance(value, list):
        raise InputError("%s: expected an array of %d numbers" % (where, N_FEATURES))
    if len(value) != N_FEATURES:
        raise InputError("%s: expected %d numbers (8x8 pixels), got %d" % (where, N_FEATURES, len(value)))
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError("%s[%d]: expected a finite number" % (where, i))
        if not 0 <= v <= PIXEL_MAX:
            raise InputError("%s[%d]: expected a pixel intensity 0..%g, got %g" % (where, i, PIXEL_MAX, v))
        out.append(float(v))
    return out


def parse_request(body):
    """Returns the list of feature vectors in a request body.

    Accepts {"features": [..64..]} (one instance) or {"instances": [..]}
    where each instance is an array of 64 numbers or {"features": [..]}.
    Raises InputError with a message naming the offending path.
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
