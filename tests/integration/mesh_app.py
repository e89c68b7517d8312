#!/usr/bin/python3
"""A small real Flask service for the mesh end-to-end tests (test_mesh_e2e.py):
version v1 plays the stable app, v2 the shadow app.

    mesh_app.py --port PORT --version v1|v2 [--host 127.0.0.1]

POST /predict {"i": N} answers
    {"model_version": V, "timestamp": NOW, "request_id": X-Request-Id,
     "label": L, "score": S}
with noise on every answer that the tests' rules must absorb: `timestamp`
(ignored), `model_version` (ignored) and `score`, which v2 moves by 1e-9
(inside an absolute tolerance of 1e-6). The only real divergence: v2's label
differs from v1's when N % 7 == 3 (DIVERGENT(N)), so a test knows exactly how
many pairs must diverge.

GET /__seen gives what the app received on /predict: {"count", "ids"
(x-request-id per request, in arrival order), "hosts" {Host: count},
"marked" (requests carrying x-shadowtee-mirror)}. GET /health is readiness.
Werkzeug's threaded server (HTTP/1.1 keep-alive), logging off.
"""
import argparse
import json
import logging
import threading
import time

from flask import Flask, Response, request

LOCK = threading.Lock()
SEEN = {"count": 0, "ids": [], "hosts": {}, "marked": 0}


def divergent(i):
    """The inputs whose v2 label differs from v1's."""
    return i % 7 == 3


def label(version, i):
    base = i % 10
    if version == "v2" and divergent(i):
        return (base + 1) % 10
    return base


def make_app(version):
    app = Flask("mesh_app_" + version)

    @app.route("/health")
    def health():
        return {"status": "ok", "model_version": version}

    @app.route("/predict", methods=["POST"])
    def predict():
        rid = request.headers.get("X-Request-Id")
        with LOCK:
            SEEN["count"] += 1
            SEEN["ids"].append(rid)
            host = request.headers.get("Host", "")
            SEEN["hosts"][host] = SEEN["hosts"].get(host, 0) + 1
            if request.headers.get("x-shadowtee-mirror") is not None:
                SEEN["marked"] += 1
        doc = request.get_json(silent=True)
        if not isinstance(doc, dict) or not isinstance(doc.get("i"), int):
            return Response(json.dumps({"error": "body must be {\"i\": integer}"}), 400,
                            mimetype="application/json")
        i = doc["i"]
        score = 0.8 + (1e-9 if version == "v2" else 0.0)
        out = {"model_version": version, "timestamp": "%.6f" % time.time(), "request_id": rid,
               "label": label(version, i), "score": score}
        return Response(json.dumps(out), 200, mimetype="application/json")

    @app.route("/__seen")
    def seen():
        with LOCK:
            return Response(json.dumps(SEEN), 200, mimetype="application/json")

    return app


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--version", choices=("v1", "v2"), required=True)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from werkzeug.serving import WSGIRequestHandler, make_server
    WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, like gunicorn behind a proxy
    srv = make_server(a.host, a.port, make_app(a.version), threaded=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
