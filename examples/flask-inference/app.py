#!/usr/bin/python3
"""Flask inference server for the shadowtee example.

  POST /predict  {"features": [..]} or {"instances": [..]} -> predictions
  GET  /health   -> {"status": "ok", "model_version": ...}

Configuration: MODEL_VERSION (v1 | v2, default v1), HOST (default
127.0.0.1), PORT (default 5000); --host/--port/--model-version flags win.
Errors are JSON: {"error": <code>, "message": <text>} with a 4xx status.
Runs on Debian's python3-flask (Werkzeug's threaded server, HTTP/1.1
keep-alive) with /usr/bin/python3; see requirements.txt.
"""
import argparse
import datetime
import json
import os
import sys

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

import model

MAX_BODY = 1 << 20


def create_app(version):
    """Returns the Flask app serving `version` of the toy model."""
    if version not in model.VERSIONS:
        raise ValueError("MODEL_VERSION must be one of %s, got %r" % ("|".join(model.VERSIONS), version))
    app = Flask("flask-inference")
    app.json.sort_keys = True

    def error(status, code, message):
        resp = jsonify({"error": code, "message": message, "model_version": version})
        resp.status_code = status
        return resp

    @app.errorhandler(HTTPException)
    def on_http_error(exc):
        return error(exc.code, exc.name.lower().replace(" ", "_"), exc.description)

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "model_version": version})

    @app.post("/predict")
    def predict():
        raw = request.stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return error(413, "request_entity_too_large", "body: larger than %d bytes" % MAX_BODY)
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "bad_request", "body: expected valid JSON")
        try:
            instances = model.parse_request(body)
        except model.InputError as exc:
            return error(400, "bad_request", str(exc))
        out = {
            "model_version": version,
            "predictions": [model.predict(f, version) for f in instances],
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        }
        rid = request.headers.get("X-Request-Id") or body.get("request_id")
        if isinstance(rid, str) and rid:
            out["request_id"] = rid[:128]
        return jsonify(out)

    return app


class KeepAliveHandler(WSGIRequestHandler):
    """HTTP/1.1 so a proxy in front can reuse connections."""

    protocol_version = "HTTP/1.1"


def main(argv):
    ap = argparse.ArgumentParser(description="toy inference server for shadowtee")
    ap.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=None, help="default: $PORT or 5000")
    ap.add_argument("--model-version", default=os.environ.get("MODEL_VERSION", "v1"))
    args = ap.parse_args(argv)
    port = args.port
    if port is None:
        try:
            port = int(os.environ.get("PORT", "5000"))
        except ValueError:
            ap.error("PORT must be an integer, got %r" % os.environ["PORT"])
    if not 1 <= port <= 65535:
        ap.error("port must be 1..65535, got %d" % port)
    try:
        app = create_app(args.model_version)
    except ValueError as exc:
        ap.error(str(exc))
    app.run(host=args.host, port=port, threaded=True, request_handler=KeepAliveHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
