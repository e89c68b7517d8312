#!/usr/bin/python3
"""Trains the example's models (see model.py) into a directory.

  train.py [--out DIR] [--force] [VERSION ...]

DIR defaults to $MODEL_DIR, else models/ beside this script; VERSION to all
of v1 v2. Each version becomes DIR/<version>.joblib (the fitted pipeline,
joblib pickle) and DIR/<version>.json (what it is, how it was trained, the
pickle's sha256). A saved model whose metadata matches this training spec,
scikit-learn, numpy and Python is kept ("cached") unless --force; training
takes about a second per version on one core.

Exit status: 0 done, 1 training or writing failed, 2 bad arguments.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser(description="train the shadowtee example's models (cached)")
    ap.add_argument("--out", default=os.environ.get("MODEL_DIR") or os.path.join(HERE, "models"),
                    help="model directory (default: $MODEL_DIR or %(default)s)")
    ap.add_argument("--force", action="store_true", help="retrain even when a matching model is saved")
    ap.add_argument("versions", nargs="*", metavar="VERSION", help="default: %s" % " ".join(model.VERSIONS))
    args = ap.parse_args(argv)
    versions = args.versions or list(model.VERSIONS)
    for v in versions:
        if v not in model.VERSIONS:
            ap.error("unknown version %r (expected %s)" % (v, "|".join(model.VERSIONS)))
    for v in versions:
        path = model.paths(args.out, v)[0]
        meta = None if args.force else model.cached(args.out, v)
        if meta is not None:
            print("train: %s cached: %s (%s)" % (v, path, meta["spec"]))
            continue
        start = time.monotonic()
        try:
            est, meta = model.train(v)
            meta = model.save(args.out, v, est, meta)
        except OSError as exc:
            print("train: %s: cannot write %s: %s" % (v, args.out, exc), file=sys.stderr)
            return 1
        print("train: %s trained in %.2f s: %s, held-out accuracy %.2f%% (%d rows) -> %s" %
              (v, time.monotonic() - start, meta["spec"], 100 * meta["heldout_accuracy"], meta["heldout_rows"], path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
