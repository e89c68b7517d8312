#!/usr/bin/python3
"""Writes the realistic inference payloads of the bench's payload section.

    payload.py DIR

DIR/primary/small.json and DIR/shadow/small.json: a prediction document of
320 predictions, each {"label", "id", "class_scores": [3 floats]}, about
24 KiB; DIR/{primary,shadow}/big.json: the same shape with 2,700
predictions, about 200 KiB. The shadow's document differs from the
primary's in one top-level field ("model_version") and nowhere else, so the
bodies are never byte-identical and the comparator always walks the whole
document. Both sides of a pair have the same size and modification time,
so nginx's ETag and Last-Modified headers agree and only the body differs.
Deterministic (seeded): every run compares the same bytes. Prints the sizes.
"""
import json
import os
import random
import sys

LABELS = ["cat", "dog", "bird", "fish", "horse", "sheep", "cow", "bear", "zebra", "giraffe"]


def document(n, version, seed):
    rnd = random.Random(seed)
    preds = []
    for i in range(n):
        a, b = rnd.random(), rnd.random()
        scores = sorted([a * b, a * (1 - b), 1 - a], reverse=True)
        preds.append({"label": rnd.choice(LABELS), "id": 100000 + i,
                      "class_scores": [round(s, 6) for s in scores]})
    return {"model": "image-classifier", "model_version": version, "batch": seed,
            "predictions": preds}


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[0]
    for side, version in (("primary", "2026.11.1"), ("shadow", "2026.11.2")):
        os.makedirs(os.path.join(out, side), exist_ok=True)
        for name, n in (("small", 320), ("big", 2700)):
            path = os.path.join(out, side, name + ".json")
            with open(path, "w") as f:
                json.dump(document(n, version, 7 if name == "small" else 8), f, separators=(",", ":"))
            os.utime(path, (1764000000, 1764000000))
    for name in ("small", "big"):
        sizes = {os.path.getsize(os.path.join(out, side, name + ".json")) for side in ("primary", "shadow")}
        assert len(sizes) == 1, "primary and shadow %s.json differ in size" % name
        print("%s.json %d bytes" % (name, sizes.pop()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
