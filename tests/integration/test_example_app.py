"""The Flask inference example (examples/flask-inference): real servers on
free loopback ports, started with /usr/bin/python3, v1 and v2 side by side."""
import json
import math
import os
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import PY, ROOT, Proc, free_port, require

APP = os.path.join(ROOT, "examples", "flask-inference", "app.py")
RULES = os.path.join(ROOT, "examples", "flask-inference", "rules.json")
FLIP = 0.75  # model.LABEL_FLIP_THRESHOLD


def start_app(version, extra_env=None, use_flag=True):
    port = free_port()
    env = {"MODEL_VERSION": version}
    env.update(extra_env or {})
    argv = [PY, APP]
    if use_flag:
        argv += ["--port", str(port)]
    else:
        env["PORT"] = str(port)
    p = Proc(argv, env=env, wait_ports=(port,))
    p.port = port
    return p


@pytest.fixture(scope="module")
def apps():
    started = {v: start_app(v) for v in ("v1", "v2")}
    yield started
    for p in started.values():
        p.close()


def call(port, path, body=None, headers=None, method=None, raw=None):
    """Returns (status, parsed JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def predict(port, features, **kw):
    status, out = call(port, "/predict", {"features": features}, **kw)
    assert status == 200, out
    return out


# Inputs on both sides of the flip threshold, various lengths and signs.
INPUTS = [[0.1, 0.2, 0.3], [0.9, -1.5, 2.0, 0.0], [0.76, 3.0], [-4.0], [0.75, 1.0, 1.0, 1.0, 1.0],
          [2.5, 0.5, -0.5], [0.0] * 64, [1e-3, 10.0, -10.0]]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health(apps, version):
    assert call(apps[version].port, "/health") == (200, {"status": "ok", "model_version": version})


def test_predict_shape(apps):
    out = predict(apps["v1"].port, [0.1, 0.2, 0.3])
    assert set(out) == {"model_version", "predictions", "timestamp"}
    assert out["model_version"] == "v1"
    (p,) = out["predictions"]
    assert p["classes"] == ["cat", "dog", "fox"]
    assert len(p["class_scores"]) == 3 and math.isclose(sum(p["class_scores"]), 1.0, rel_tol=1e-12)
    best = max(range(3), key=lambda c: p["class_scores"][c])
    assert p["label"] == p["classes"][best] and p["score"] == p["class_scores"][best]


def test_batch_matches_single(apps):
    port = apps["v1"].port
    status, out = call(port, "/predict", {"instances": [INPUTS[0], {"features": INPUTS[1]}]})
    assert status == 200
    singles = [predict(port, f)["predictions"][0] for f in INPUTS[:2]]
    assert out["predictions"] == singles


def test_request_id_echo(apps):
    port = apps["v2"].port
    assert predict(port, [1.0], headers={"X-Request-Id": "req-42"})["request_id"] == "req-42"
    status, out = call(port, "/predict", {"features": [1.0], "request_id": "body-7"})
    assert status == 200 and out["request_id"] == "body-7"
    assert "request_id" not in predict(port, [1.0])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_deterministic_except_timestamp(apps, version):
    for f in INPUTS:
        a = predict(apps[version].port, f)
        b = predict(apps[version].port, f)
        assert a["timestamp"] != b["timestamp"]
        del a["timestamp"], b["timestamp"]
        assert a == b


def test_v1_v2_differences(apps):
    flips = 0
    for f in INPUTS:
        a = predict(apps["v1"].port, f)
        b = predict(apps["v2"].port, f)
        assert a["timestamp"] != b["timestamp"]  # volatile, ignored by rule
        assert (a["model_version"], b["model_version"]) == ("v1", "v2")
        pa, pb = a["predictions"][0], b["predictions"][0]
        # noise: every score moved, all within the rules' tolerance
        for x, y in zip(pa["class_scores"], pb["class_scores"]):
            assert x != y and math.isclose(x, y, rel_tol=1e-6, abs_tol=0)
        argmax = lambda s: max(range(len(s)), key=lambda c: s[c])  # noqa: E731
        assert argmax(pa["class_scores"]) == argmax(pb["class_scores"])
        # the real divergence: label flips exactly above the threshold
        if f[0] > FLIP:
            flips += 1
            assert pa["label"] != pb["label"], f
        else:
            assert pa["label"] == pb["label"], f
    assert flips == 3


def test_rules_file_covers_the_noise():
    with open(RULES) as fh:
        rules = json.load(fh)
    assert rules["version"] == 1
    d = rules["defaults"]
    assert d["tolerance"]["relative"] >= 1e-6
    assert "$..timestamp" in d["ignore"] and "$.model_version" in d["ignore"]
    assert "$.predictions[*].class_scores" in d["argmax"]


BAD = [
    (b"{not json", "valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"{}", "exactly one of"),
    (b'{"features": [1], "instances": [[1]]}', "exactly one of"),
    (b'{"features": []}', "features: expected 1 to 64"),
    (b'{"features": [1, "2"]}', "features[1]: expected a finite number"),
    (b'{"features": [true]}', "features[0]: expected a finite number"),
    (b'{"features": [NaN]}', "features[0]: expected a finite number"),
    (b'{"features": [Infinity]}', "features[0]: expected a finite number"),
    (b'{"features": ' + json.dumps([0.0] * 65).encode() + b"}", "expected 1 to 64 numbers, got 65"),
    (b'{"features": [1e300]}', "features[0]: expected |x| <= 1e+06"),
    (b'{"features": 3}', "features: expected an array"),
    (b'{"instances": []}', "instances: expected an array of 1 to 32"),
    (b'{"instances": [[1], {"x": 1}]}', "instances[1]: expected \"features\""),
    (b'{"instances": [[1], [null]]}', "instances[1][0]: expected a finite number"),
]


@pytest.mark.parametrize("raw,message", BAD)
def test_bad_input_is_400_json(apps, raw, message):
    status, out = call(apps["v1"].port, "/predict", raw=raw, method="POST")
    assert status == 400
    assert out["error"] == "bad_request" and message in out["message"]


def test_oversized_body_is_413(apps):
    status, out = call(apps["v1"].port, "/predict", raw=b"[" + b"0," * 600000 + b"0]", method="POST")
    assert status == 413 and out["error"] == "request_entity_too_large"


def test_unknown_route_and_method_are_json(apps):
    assert call(apps["v1"].port, "/nope")[0] == 404
    status, out = call(apps["v1"].port, "/predict", method="GET")
    assert status == 405 and out["error"] == "method_not_allowed"


def test_port_from_env():
    p = start_app("v2", use_flag=False)
    try:
        assert call(p.port, "/health")[1]["model_version"] == "v2"
    finally:
        p.close()


def test_bad_model_version_exits_with_message():
    r = subprocess.run([PY, APP, "--port", str(free_port())], env=dict(os.environ, MODEL_VERSION="v3"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "MODEL_VERSION must be one of v1|v2" in r.stderr


# ---- end to end: the example behind the real proxy, compared with rules.json --


def test_rules_behind_shadowtee(apps, shadowtee, redis_server, procs):
    """v1 primary, v2 shadow, a v1 noise replica, rules.json: the only
    divergence Redis records is the label flip, on exactly the inputs above
    the threshold; score noise, timestamps and model_version never count."""
    import time
    import redis as redislib

    require(os.path.exists(os.path.join(os.environ.get("SHADOWTEE_BUILD", os.path.join(ROOT, "build")), "shadowtee")),
            "build/shadowtee is not built (make): end-to-end rules check NOT run")
    noise_port = free_port()
    procs([PY, APP, "--port", str(noise_port)], env={"MODEL_VERSION": "v1"}, wait_ports=(noise_port,))
    proxy = shadowtee(primary="127.0.0.1:%d" % apps["v1"].port, shadow="127.0.0.1:%d" % apps["v2"].port,
                      noise_upstream="127.0.0.1:%d" % noise_port, mirror_percent=100, compare_rules=RULES,
                      redis="127.0.0.1:%d" % redis_server.port, service="example-e2e")
    inputs = INPUTS + [[0.8], [0.74], {"instances": [[0.1], [0.9, 1.0]]}]
    want_diverged = sum(1 for f in inputs if (f[0] if isinstance(f, list) else max(i[0] for i in f["instances"])) > FLIP)
    for f in inputs:
        body = f if isinstance(f, dict) else {"features": f}
        status, out = call(proxy.port, "/predict", body)
        assert status == 200 and out["model_version"] == "v1"  # the client always gets the stable answer
    r = redislib.Redis(host="127.0.0.1", port=redis_server.port)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        counts = {}
        for k in r.scan_iter("shadowtee:{example-e2e}:ep:*:counts"):
            for f, v in r.hgetall(k).items():
                counts[f.decode()] = counts.get(f.decode(), 0) + int(v)
        if counts.get("compared", 0) >= len(inputs):
            break
        time.sleep(0.05)
    assert counts.get("compared") == len(inputs), counts
    assert counts.get("diverged") == want_diverged and counts.get("errors", 0) == 0, counts
    paths = {}
    for k in r.scan_iter("shadowtee:{example-e2e}:ep:*:paths"):
        paths.update({f.decode(): int(v) for f, v in r.hgetall(k).items()})
    assert paths and all(re.fullmatch(r"value\|\$\.predictions\[\d+\]\.label", p) for p in paths), paths
