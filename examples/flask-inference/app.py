"""Flask inference app of the shadowtee example (a WSGI app, served by gunicorn).

  POST /predict  {"features": [64 pixels]} or {"instances": [..]} -> predictions
  GET  /health   -> {"status": "ok", "model_version": ...}

The model is the saved scikit-learn pipeline of model.py, loaded once with
joblib from MODEL_DIR/<MODEL_VERSION>.joblib (train.py writes it).
Configuration: MODEL_VERSION (v1 | v2, default v1), MODEL_DIR (default
models/ beside this file). A missing or stale model is a start-up error
naming the file and the train.py command that makes it.

Errors are JSON: {"error": <code>, "message": <text>} with a 4xx status.

Production: gunicorn -c gunicorn.conf.py (wsgi.py holds the app object).
Local debugging only: /usr/bin/python3 -m flask --app app run --debug (Werkzeug's server).
"""
import datetime
import json
import os
import sys

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model  # noqa: E402

MAX_BODY = 1 << 20


def create_app(version=None, model_dir=None):
    """Returns the Flask app serving the saved model `version` (default
    $MODEL_VERSION or v1) from `model_dir` (default $MODEL_DIR or models/);
    model.ModelError when it cannot be loaded."""
    version = version or os.environ.get("MODEL_VERSION") or "v1"
    model_dir = model_dir or os.environ.get("MODEL_DIR") or os.path.join(HERE, "models")
    loaded = model.load(model_dir, version)
    print("flask-inference: serving %s (%s, sha256 %s) from %s" %
          (version, loaded.meta["spec"], loaded.meta.get("sha256", "?")[:12], model_dir), file=sys.stderr, flush=True)
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
            "predictions": loaded.predict(instances),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
        }
        rid = request.headers.get("X-Request-Id") or body.get("request_id")
        if isinstance(rid, str) and rid:
            out["request_id"] = rid[:128]
        return jsonify(out)

    return app
