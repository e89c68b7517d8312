"""The inference example (examples/flask-inference): the scikit-learn models
trained by train.py, served by real gunicorn processes (/usr/bin/gunicorn,
the image's entry point) on free loopback ports and on Unix sockets, v1 and
v2 side by side, and behind the real proxy."""
import hashlib
import http.client
import json
import math
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import BUILD, PY, ROOT, Proc, free_port, require
import model_oracle as oracle

EXAMPLE = oracle.EXAMPLE
RULES = oracle.RULES
TRAIN = os.path.join(EXAMPLE, "train.py")
HEALTHCHECK = os.path.join(EXAMPLE, "healthcheck.py")
GUNICORN = "/usr/bin/gunicorn"
CONF = os.path.join(EXAMPLE, "gunicorn.conf.py")

sys.path.insert(0, EXAMPLE)
import model  # noqa: E402  (the example's module: data split, loading)


def train(out, *args):
    r = subprocess.run([PY, TRAIN, "--out", str(out)] + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    train(d)
    return str(d)


def health_ok(address):
    return subprocess.run([PY, HEALTHCHECK, address], capture_output=True, timeout=10).returncode == 0


def start_app(version, model_dir, bind=None, env=None):
    """gunicorn -c gunicorn.conf.py serving `version`; bind defaults to a
    free loopback port. Returns the Proc with .address (and .port for TCP)."""
    port = None
    if bind is None:
        port = free_port()
        bind = "127.0.0.1:%d" % port
    e = {"MODEL_VERSION": version, "MODEL_DIR": model_dir, "BIND": bind, "WEB_CONCURRENCY": "2"}
    e.update(env or {})
    p = Proc([GUNICORN, "--config", CONF], env=e, wait_ports=(port,) if port else ())
    p.address, p.port = bind, port
    deadline = time.monotonic() + 30
    while not health_ok(bind):  # the model is loaded once /health answers
        if p.p.poll() is not None or time.monotonic() > deadline:
            err = p.stderr()
            p.close()
            raise RuntimeError("gunicorn %s on %s not healthy (exit %s): %s" % (version, bind, p.p.poll(), err[-800:]))
        time.sleep(0.05)
    return p


@pytest.fixture(scope="module")
def apps(models):
    started = {v: start_app(v, models) for v in ("v1", "v2")}
    yield started
    for p in started.values():
        p.close()


class At:
    """An address to call(): HOST:PORT or unix:PATH."""

    def __init__(self, address):
        self.address = address


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path_)


def connect(address):
    if address.startswith("unix:"):
        return UnixConnection(address[5:])
    host, port = address.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=10)


def call(app, path, body=None, headers=None, method=None, raw=None, conn=None):
    """Returns (status, parsed JSON body, response headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c = conn or connect(app.address)
    try:
        c.request(method or ("POST" if data is not None else "GET"), path, body=data,
                  headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        r = c.getresponse()
        return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}
    finally:
        if conn is None:
            c.close()


def predict(app, features, **kw):
    status, out, _ = call(app, "/predict", {"features": features}, **kw)
    assert status == 200, out
    return out


HELDOUT = model.heldout()
ROWS = [f for f, _ in HELDOUT]


# ---- the models: data, training, determinism, the cache --------------------


def test_heldout_rows_are_the_split_no_training_saw():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    assert len(HELDOUT) == len(x_test) == 450 and len(x_train) == 1347
    assert [f for f, _ in HELDOUT] == x_test.astype(int).tolist()
    assert [lab for _, lab in HELDOUT] == y_test.tolist()
    with open(os.path.join(ROOT, "scripts", "demo.sh")) as fh:
        assert re.search(r"^HELDOUT_ROWS=%d\b" % len(HELDOUT), fh.read(), re.M)  # the demo's bound


def test_two_trainings_are_identical(models, tmp_path):
    """Fixed seeds: training again from scratch gives byte-identical pickles,
    the same metadata and exactly the same probabilities."""
    train(tmp_path, "--force")
    for v in model.VERSIONS:
        a, b = (os.path.join(d, v + ".joblib") for d in (models, str(tmp_path)))
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert hashlib.sha256(fa.read()).digest() == hashlib.sha256(fb.read()).digest(), v
        with open(os.path.join(models, v + ".json")) as fa, open(os.path.join(tmp_path, v + ".json")) as fb:
            assert json.load(fa) == json.load(fb)
        pa, pb = oracle.probabilities(models, v, ROWS), oracle.probabilities(str(tmp_path), v, ROWS)
        assert (pa == pb).all(), v


def test_v1_and_v2_are_different_trainings(models):
    meta = {}
    for v in model.VERSIONS:
        with open(os.path.join(models, v + ".json")) as fh:
            meta[v] = json.load(fh)
    assert "LogisticRegression" in meta["v1"]["spec"] and "SVC" in meta["v2"]["spec"]
    assert meta["v1"]["sha256"] != meta["v2"]["sha256"]
    for v in model.VERSIONS:
        assert meta[v]["train_rows"] == 1347 and meta[v]["heldout_rows"] == 450
        assert meta[v]["heldout_accuracy"] > 0.95, meta[v]  # real classifiers, not toys
    p1, p2 = oracle.probabilities(models, "v1", ROWS), oracle.probabilities(models, "v2", ROWS)
    flips = int((p1.argmax(axis=1) != p2.argmax(axis=1)).sum())
    assert 0 < flips < len(ROWS) // 10  # labels really flip on some inputs, not on most
    assert (p1 != p2).any(axis=1).all()  # and every row's probabilities moved


def test_train_is_cached_and_retrains_a_changed_file(tmp_path):
    first = train(tmp_path, "v1")
    assert re.search(r"^train: v1 trained in [\d.]+ s: .*held-out accuracy", first, re.M), first
    path = tmp_path / "v1.joblib"
    before = os.stat(path)
    again = train(tmp_path, "v1")
    assert again.startswith("train: v1 cached: %s" % path), again
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "v1 trained in" in train(tmp_path, "v1")  # a file that is not the one recorded: retrained
    assert model.cached(str(tmp_path), "v1") is not None


def test_train_rejects_an_unknown_version(tmp_path):
    r = subprocess.run([PY, TRAIN, "--out", str(tmp_path), "v3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown version 'v3' (expected v1|v2)" in r.stderr
    assert not os.listdir(tmp_path)


def test_load_refuses_a_model_of_another_sklearn(models, tmp_path):
    for name in ("v1.joblib", "v1.json"):
        (tmp_path / name).write_bytes(open(os.path.join(models, name), "rb").read())
    meta = json.loads((tmp_path / "v1.json").read_text())
    meta["sklearn"] = "0.24.2"
    (tmp_path / "v1.json").write_text(json.dumps(meta))
    with pytest.raises(model.ModelError, match=r"trained with scikit-learn 0\.24\.2, this is 1\.\d+\.\d+; train it first"):
        model.load(str(tmp_path), "v1")


# ---- gunicorn serving ------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health(apps, version):
    status, out, headers = call(apps[version], "/health")
    assert (status, out) == (200, {"status": "ok", "model_version": version})
    assert headers["server"] == "gunicorn"


def test_keepalive_connection_is_reused(apps):
    """gthread workers keep HTTP/1.1 connections open (the sync worker closes
    each one): the proxy's idle pool to the app depends on it."""
    c = connect(apps["v1"].address)
    try:
        c.connect()
        first = c.sock
        for row in ROWS[:5]:
            status, out, headers = call(apps["v1"], "/predict", {"features": row}, conn=c)
            assert status == 200 and headers.get("connection", "keep-alive").lower() == "keep-alive"
            assert c.sock is first
    finally:
        c.close()


def workers_of(master, want, timeout=10.0):
    """The worker pids of a gunicorn master once there are `want` of them
    (the master forks them one after the other)."""
    deadline = time.monotonic() + timeout
    while True:
        with open("/proc/%d/task/%d/children" % (master, master)) as fh:
            children = [int(c) for c in fh.read().split()]
        if len(children) >= want or time.monotonic() > deadline:
            return children
        time.sleep(0.05)


def test_gunicorn_runs_the_configured_workers(apps):
    """One master and WEB_CONCURRENCY=2 forked workers; the model was loaded
    once, in the master, before forking (preload_app)."""
    assert len(workers_of(apps["v1"].pid, 2)) == 2
    err = apps["v1"].stderr()
    assert err.count("flask-inference: serving v1") == 1 and "Using worker: gthread" in err


def test_predict_shape(apps):
    out = predict(apps["v1"], ROWS[0])
    assert set(out) == {"model_version", "predictions", "timestamp"}
    assert out["model_version"] == "v1"
    (p,) = out["predictions"]
    assert set(p) == {"label", "score", "class_scores", "classes"}
    assert p["classes"] == list(range(10))
    assert len(p["class_scores"]) == 10 and math.isclose(sum(p["class_scores"]), 1.0, rel_tol=1e-9)
    best = max(range(10), key=lambda c: p["class_scores"][c])
    assert p["label"] == p["classes"][best] and p["score"] == p["class_scores"][best]
    assert isinstance(p["label"], int) and all(isinstance(s, float) for s in p["class_scores"])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_served_predictions_are_the_saved_models(apps, models, version):
    """All held-out rows in batches over HTTP: exactly the probabilities of
    the pickle loaded here, and the accuracy recorded at training."""
    est = oracle.estimator(models, version)
    got, want = [], []
    for i in range(0, len(ROWS), model.MAX_INSTANCES):
        batch = ROWS[i:i + model.MAX_INSTANCES]
        status, out, _ = call(apps[version], "/predict", {"instances": batch})
        assert status == 200, out
        got += out["predictions"]
        want += oracle.probabilities(models, version, batch, est).tolist()  # the same batches: bit for bit
    assert [g["class_scores"] for g in got] == want
    accuracy = sum(g["label"] == lab for g, (_, lab) in zip(got, HELDOUT)) / len(HELDOUT)
    with open(os.path.join(models, version + ".json")) as fh:
        assert accuracy == pytest.approx(json.load(fh)["heldout_accuracy"], abs=1e-6)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_batch_matches_single(apps, version):
    """A batch answers as the single requests do: the same labels and
    classes, probabilities equal up to rounding (a BLAS may sum a batch's
    matrix product in another order than one row's: the last bits differ
    with the reference BLAS, not with OpenBLAS)."""
    batch = [ROWS[0], {"features": ROWS[1]}] + ROWS[2:8]
    status, out, _ = call(apps[version], "/predict", {"instances": batch})
    assert status == 200
    singles = [predict(apps[version], f)["predictions"][0] for f in ROWS[:8]]
    assert len(out["predictions"]) == len(singles)
    for b, s in zip(out["predictions"], singles):
        assert (b["label"], b["classes"]) == (s["label"], s["classes"])
        for x, y in zip(b["class_scores"] + [b["score"]], s["class_scores"] + [s["score"]]):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15), (x, y)


def test_request_id_echo(apps):
    assert predict(apps["v2"], ROWS[0], headers={"X-Request-Id": "req-42"})["request_id"] == "req-42"
    status, out, _ = call(apps["v2"], "/predict", {"features": ROWS[0], "request_id": "body-7"})
    assert status == 200 and out["request_id"] == "body-7"
    assert "request_id" not in predict(apps["v2"], ROWS[0])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_deterministic_except_timestamp(apps, version):
    for f in ROWS[:8]:
        a = predict(apps[version], f)
        b = predict(apps[version], f)
        assert a["timestamp"] != b["timestamp"]
        del a["timestamp"], b["timestamp"]
        assert a == b


def test_v1_v2_differences(apps):
    """Over HTTP, the three kinds of difference the rules tell apart."""
    tol = oracle.score_tolerance()
    flips = absorbed = 0
    for f in ROWS[:60]:
        a, b = predict(apps["v1"], f), predict(apps["v2"], f)
        assert a["timestamp"] != b["timestamp"]  # volatile, ignored by rule
        assert (a["model_version"], b["model_version"]) == ("v1", "v2")  # ignored by rule
        pa, pb = a["predictions"][0], b["predictions"][0]
        assert pa["class_scores"] != pb["class_scores"]  # every probability vector moved
        if pa["label"] != pb["label"]:
            flips += 1
        elif abs(pa["score"] - pb["score"]) <= tol[0]:
            absorbed += 1  # moved within the tolerance: noise
    assert flips > 0 and absorbed > 30


def test_rules_file_covers_the_noise():
    with open(RULES) as fh:
        rules = json.load(fh)
    assert rules["version"] == 1
    d = rules["defaults"]
    assert "$..timestamp" in d["ignore"] and "$.model_version" in d["ignore"]
    assert "$.predictions[*].class_scores" in d["argmax"]
    assert 0 < d["path_tolerance"]["$.predictions[*].score"]["absolute"] < 0.5
    with open(os.path.join(ROOT, "k8s", "inference", "rules.json")) as fh:
        assert json.load(fh) == rules  # the ConfigMap's copy


def body(features):
    return json.dumps({"features": features}).encode()


BAD = [
    (b"{not json", "valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b"{}", "exactly one of"),
    (b'{"features": [1], "instances": [[1]]}', "exactly one of"),
    (b'{"features": []}', "features: expected 64 numbers (8x8 pixels), got 0"),
    (body([0] * 63), "features: expected 64 numbers (8x8 pixels), got 63"),
    (body([0] * 65), "features: expected 64 numbers (8x8 pixels), got 65"),
    (body([0] * 5 + ["2"] + [0] * 58), "features[5]: expected a finite number"),
    (body([True] + [0] * 63), "features[0]: expected a finite number"),
    (b'{"features": [NaN' + b", 0" * 63 + b"]}", "features[0]: expected a finite number"),
    (b'{"features": [Infinity' + b", 0" * 63 + b"]}", "features[0]: expected a finite number"),
    (body([0] * 63 + [16.5]), "features[63]: expected a pixel intensity 0..16, got 16.5"),
    (body([-1] + [0] * 63), "features[0]: expected a pixel intensity 0..16, got -1"),
    (b'{"features": 3}', "features: expected an array of 64 numbers"),
    (b'{"instances": []}', "instances: expected an array of 1 to 32"),
    (json.dumps({"instances": [[0] * 64] * 33}).encode(), "instances: expected an array of 1 to 32"),
    (json.dumps({"instances": [[0] * 64, {"x": 1}]}).encode(), "instances[1]: expected \"features\""),
    (json.dumps({"instances": [[0] * 64, [None] * 64]}).encode(), "instances[1][0]: expected a finite number"),
]


@pytest.mark.parametrize("raw,message", BAD)
def test_bad_input_is_400_json(apps, raw, message):
    status, out, _ = call(apps["v1"], "/predict", raw=raw, method="POST")
    assert status == 400
    assert out["error"] == "bad_request" and message in out["message"], out


def test_oversized_body_is_413(apps):
    status, out, _ = call(apps["v1"], "/predict", raw=b"[" + b"0," * 600000 + b"0]", method="POST")
    assert status == 413 and out["error"] == "request_entity_too_large"


def test_unknown_route_and_method_are_json(apps):
    assert call(apps["v1"], "/nope")[0] == 404
    status, out, _ = call(apps["v1"], "/predict", method="GET")
    assert status == 405 and out["error"] == "method_not_allowed"


# ---- a Unix socket only, as in the stable pod ------------------------------


def listening_tcp_inodes():
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if f[3] == "0A":  # LISTEN
                        inodes.add(f[9])
        except FileNotFoundError:
            pass
    return inodes


def socket_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            out.add(m.group(1))
    return out


def test_unix_socket_only(apps, models, tmp_path):
    """BIND=unix:PATH: /health and /predict answer over the socket, the
    healthcheck probe passes, and neither the master nor a worker listens
    on any TCP port (nothing on the pod network reaches the app)."""
    assert socket_inodes(apps["v1"].pid) & listening_tcp_inodes()  # the check sees a TCP listener
    sock = tmp_path / "app.sock"
    p = start_app("v1", models, bind="unix:%s" % sock)
    try:
        assert sock.is_socket()
        status, out, headers = call(p, "/health")
        assert (status, out["model_version"], headers["server"]) == (200, "v1", "gunicorn")
        assert predict(p, ROWS[3])["predictions"][0]["label"] == HELDOUT[3][1]
        pids = [p.pid] + workers_of(p.pid, 2)
        assert len(pids) == 3
        listening = listening_tcp_inodes()
        for pid in pids:
            assert not (socket_inodes(pid) & listening), "gunicorn pid %d listens on TCP" % pid
    finally:
        p.close()
    assert not health_ok("unix:%s" % sock)


def test_healthcheck_errors(tmp_path):
    r = subprocess.run([PY, HEALTHCHECK, "unix:%s" % (tmp_path / "none.sock")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "none.sock" in r.stderr and "No such file" in r.stderr
    r = subprocess.run([PY, HEALTHCHECK, "127.0.0.1:%d" % free_port()], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "Connection refused" in r.stderr
    r = subprocess.run([PY, HEALTHCHECK, "no-port"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "expected HOST:PORT or unix:PATH" in r.stderr


def test_healthcheck_fails_on_a_non_200(apps, tmp_path):
    """An answer that is not 200 {"status": "ok"} fails the probe: a plain
    HTTP server answering 404 on /health."""
    import http.server
    import threading
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        r = subprocess.run([PY, HEALTHCHECK, "127.0.0.1:%d" % srv.server_address[1]], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and "GET /health: 501" in r.stderr
    finally:
        srv.shutdown()
        srv.server_close()
    assert health_ok(apps["v2"].address)


# ---- start-up errors -------------------------------------------------------


def gunicorn_exit(env):
    e = dict(os.environ, BIND="127.0.0.1:%d" % free_port(), **env)
    return subprocess.run([GUNICORN, "--config", CONF], env=e, capture_output=True, text=True, timeout=60)


def test_missing_model_is_a_startup_error(tmp_path):
    r = gunicorn_exit({"MODEL_VERSION": "v2", "MODEL_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "no model v2 in %s" % tmp_path in r.stderr and "train it first: train.py --out %s v2" % tmp_path in r.stderr


def test_bad_model_version_is_a_startup_error(models):
    r = gunicorn_exit({"MODEL_VERSION": "v3", "MODEL_DIR": models})
    assert r.returncode != 0 and "MODEL_VERSION must be one of v1|v2, got 'v3'" in r.stderr


# ---- end to end: the example behind the real proxy, compared with rules.json --


def test_rules_behind_shadowtee(apps, models, shadowtee, redis_server, procs):
    """v1 primary, v2 shadow, a v1 noise replica, rules.json, single and
    batch requests of held-out rows: Redis records exactly the divergences
    the oracle computes from the pickles, path by path; probability moves
    within the rules, timestamps and model_version never count."""
    import redis as redislib

    require(os.path.exists(os.path.join(BUILD, "shadowtee")), "%s/shadowtee is not built (make): NOT run" % BUILD)
    noise = start_app("v1", models)
    try:
        proxy = shadowtee(primary=apps["v1"].address, shadow=apps["v2"].address, noise_upstream=noise.address,
                          mirror_percent=100, compare_rules=RULES, redis="127.0.0.1:%d" % redis_server.port,
                          service="example-e2e")
        requests = [[r] for r in ROWS[:40]] + [ROWS[40 + 3 * i:43 + 3 * i] for i in range(20)]
        want_diverged, want_paths, flips = oracle.expected(models, requests)
        assert flips > 0 and any(k.startswith("value|$.predictions[2]") for k in want_paths), want_paths
        via = At("127.0.0.1:%d" % proxy.port)
        for req in requests:
            status, out, _ = call(via, "/predict", {"features": req[0]} if len(req) == 1 else {"instances": req})
            assert status == 200 and out["model_version"] == "v1"  # the client always gets the stable answer
        r = redislib.Redis(host="127.0.0.1", port=redis_server.port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            counts = {}
            for k in r.scan_iter("shadowtee:{example-e2e}:ep:*:counts"):
                for f, v in r.hgetall(k).items():
                    counts[f.decode()] = counts.get(f.decode(), 0) + int(v)
            if counts.get("compared", 0) >= len(requests):
                break
            time.sleep(0.05)
        assert counts.get("compared") == len(requests), counts
        assert counts.get("diverged") == want_diverged and counts.get("errors", 0) == 0, counts
        assert counts.get("noise", 0) == 0, counts
        paths = {}
        for k in r.scan_iter("shadowtee:{example-e2e}:ep:*:paths"):
            paths.update({f.decode(): int(v) for f, v in r.hgetall(k).items()})
        assert paths == want_paths
    finally:
        noise.close()


# ---- the image (no Docker engine here: its steps replayed in a temp dir) ----


def dockerfile_lines():
    with open(os.path.join(EXAMPLE, "Dockerfile")) as fh:
        text = re.sub(r"\\\n", " ", fh.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_image_packages_are_debian_and_in_deps():
    lines = dockerfile_lines()
    assert [r for w, r in lines if w == "FROM"] == ["debian:12-slim"]
    (install,) = [r for w, r in lines if w == "RUN" and "apt-get install" in r]
    pkgs = {w for w in install.split("apt-get install", 1)[1].split("&&")[0].split() if not w.startswith("-")}
    assert pkgs == {"python3-flask", "python3-sklearn", "gunicorn"}
    with open(os.path.join(ROOT, "scripts", "deps.sh")) as fh:
        deps = set(fh.read().split())
    assert pkgs <= deps  # the demo and the tests run on what the image runs on
    assert [r for w, r in lines if w == "USER"] == ["10001:10001"]


def test_image_steps_train_and_serve(tmp_path):
    """The Dockerfile's COPY, ARG/ENV, RUN train.py and ENTRYPOINT replayed
    with /app mapped to a temp dir: the copied files are all the served app
    needs (gunicorn imports it from them alone), the build-time training
    writes the model the entry point serves, and gunicorn answers /health."""
    lines = dockerfile_lines()
    app_dir = str(tmp_path / "app")
    remap = lambda text: text.replace("/app/", app_dir + "/").replace("/app ", app_dir + " ")  # noqa: E731
    (copy,) = [r.split() for w, r in lines if w == "COPY"]
    assert copy[-1] == "/app/"
    os.makedirs(app_dir)
    for name in copy[:-1]:
        with open(os.path.join(EXAMPLE, name), "rb") as src, open(os.path.join(app_dir, name), "wb") as dst:
            dst.write(src.read())
    env = {"PATH": os.environ["PATH"]}
    for w, r in lines:
        if w == "ARG":
            k, _, v = r.partition("=")
            env[k] = v
        elif w == "ENV":
            for k, v in (kv.split("=", 1) for kv in r.split()):
                env[k] = remap(v.replace("$" + "MODEL_VERSION", env.get("MODEL_VERSION", "")) + " ").strip()
    assert env["MODEL_VERSION"] == "v1" and env["MODEL_DIR"] == os.path.join(app_dir, "models")
    (run,) = [r for w, r in lines if w == "RUN" and "train.py" in r]
    r = subprocess.run(["bash", "-c", remap(run)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(env["MODEL_DIR"])) == ["v1.joblib", "v1.json"]
    (entry,) = [json.loads(r) for w, r in lines if w == "ENTRYPOINT"]
    assert entry[0] == GUNICORN
    port = free_port()
    p = Proc([remap(a) for a in entry], env=dict(env, BIND="127.0.0.1:%d" % port), wait_ports=(port,))
    try:
        status, out, headers = call(At("127.0.0.1:%d" % port), "/health")
        assert (status, out["model_version"], headers["server"]) == (200, "v1", "gunicorn")
    finally:
        p.close()
    assert not os.path.exists(os.path.join(app_dir, "__pycache__"))  # PYTHONDONTWRITEBYTECODE (read-only root)


# ---- the stable pod on loopback: gunicorn on a Unix socket, the sidecar in front --


def test_stable_pod_over_a_unix_socket(apps, models, shadowtee, tmp_path):
    """The stable pod's wiring (k8s/inference/stable-deployment.yml) on one
    machine: gunicorn v1 bound to a Unix socket only, shadowtee with
    --primary unix:PATH in front, the v2 shadow on TCP. Clients get v1's
    answers through the socket."""
    require(os.path.exists(os.path.join(BUILD, "shadowtee")), "%s/shadowtee is not built (make): NOT run" % BUILD)
    sock = tmp_path / "app.sock"
    app = start_app("v1", models, bind="unix:%s" % sock)
    try:
        proxy = shadowtee(primary="unix:%s" % sock, shadow=apps["v2"].address, mirror_percent=100, compare_rules=RULES)
        via = At("127.0.0.1:%d" % proxy.port)
        for features, _ in HELDOUT[:20]:
            status, out, headers = call(via, "/predict", {"features": features})
            direct = predict(app, features)
            assert status == 200 and out["model_version"] == "v1"
            assert out["predictions"] == direct["predictions"]
    finally:
        app.close()
