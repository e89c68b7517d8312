"""Mesh mirroring (--mirror-mode mesh), the sidecar's core, on loopback.

Nothing here tees: a test plays the mesh itself, sending each request (same
x-request-id) to a stable-role sidecar in front of the v1 app and to a
shadow-role sidecar in front of the v2 app, as Istio's mirror does. Each
sidecar captures its own pod's answer for the sampled share and publishes
it as a half; the halves are joined in a real redis-server by the join
script, and the pair is recorded like a tee'd one (source "mesh").
"""
import hashlib
import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import redis

from conftest import free_port, shadowtee_bin
from httpclient import Conn, build_request, metric, metrics
from upstreams import http_role_servers, send_json, upstream  # noqa: F401 (fixture)

EP = "POST /v1/predict"


class _App(http.server.BaseHTTPRequestHandler):
    """v1 (stable) or v2 (shadow): v2 moves the score of every request whose
    body has i % 3 == 0, so the divergent pairs are known; every request id
    the app sees is kept in seen[role]."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    role = "stable"
    seen = {"stable": [], "shadow": []}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        with self.lock:
            self.seen[self.role].append(self.headers.get("x-request-id"))
        score = 0.5
        if self.role == "shadow" and req.get("i", 0) % 3 == 0:
            score = 0.75
        body = json.dumps({"label": "cat", "score": score}).encode()
        send_json(self, body, [("Set-Cookie", "session=%s" % self.role)])  # the cookie differs: digested, compared


@pytest.fixture
def apps():
    _App.seen = {"stable": [], "shadow": []}
    yield from http_role_servers(_App)


RULES = {"version": 1, "defaults": {"ignore_headers": ["set-cookie", "date", "server"]}}


def _rules(tmp_path):
    p = tmp_path / "rules.json"
    p.write_text(json.dumps(RULES))
    return str(p)


def _sidecar(shadowtee, app, role, redis_port, service, tmp_path, **extra):
    flags = dict(mirror_mode="mesh", mesh_role=role, redis="127.0.0.1:%d" % redis_port,
                 service=service, compare_rules=_rules(tmp_path), redis_flush_interval="50ms")
    flags.update(extra)
    return shadowtee(primary=app, **flags)


def _post(conn, i, rid, headers=None):
    body = json.dumps({"i": i})
    h = {"Content-Type": "application/json"}
    if rid is not None:
        h["x-request-id"] = rid
    h.update(headers or {})
    conn.request("POST", "/v1/predict", body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, r.getheader("x-shadowtee-mesh"), data


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def _in_share(rid, percent):
    """The sampling function as docs/ARCHITECTURE.md specifies it, computed
    independently of the C code."""
    point = int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") % 1000000
    return point < round(percent * 10000)


def _halves(m, role, outcome, reason=None):
    labels = dict(role=role, outcome=outcome)
    if reason:
        labels["reason"] = reason
    return metric(m, "shadowtee_mesh_halves_total", **labels)


def test_two_sidecars_select_the_same_10000_ids(shadowtee, apps, redis_server, tmp_path):
    """Two processes, stable and shadow role, given the same 10,000 request
    ids select exactly the same subset: the stable side's choice is what it
    stored in Redis (its halves wait there, no partner yet), the shadow
    side's is what it proxied to its app (the rest it answered itself with
    204 unsampled). Then every stored half has been joined."""
    percent = 30
    ids = ["req-%05d-%s" % (i, hashlib.md5(str(i).encode()).hexdigest()[:8]) for i in range(10000)]
    stable_app, shadow_app = apps("stable"), apps("shadow")
    common = dict(mirror_percent=percent, mesh_pair_ttl="10m", compare_queue=20000)
    st = _sidecar(shadowtee, stable_app, "stable", redis_server.port, "same", tmp_path, **common)
    r = redis.Redis(port=redis_server.port)

    deadline = time.monotonic() + 120
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    for i, rid in enumerate(ids):
        assert time.monotonic() < deadline
        status, mark, _ = _post(conn, i, rid)
        assert status == 200 and mark is None
    conn.close()
    assert len(_App.seen["stable"]) == len(ids)  # the stable role serves every request
    m = metrics(st.admin_port)
    sampled = metric(m, "shadowtee_mesh_sampled_total", role="stable")
    assert metric(m, "shadowtee_mesh_unsampled_total", role="stable") == len(ids) - sampled
    assert _wait(lambda: r.zcard("shadowtee:{same}:mesh:pending") == sampled, 30)
    stable_choice = {x.decode().split("|", 1)[1] for x in r.zrange("shadowtee:{same}:mesh:pending", 0, -1)}
    assert _halves(metrics(st.admin_port), "stable", "published") == sampled

    sh = _sidecar(shadowtee, shadow_app, "shadow", redis_server.port, "same", tmp_path, **common)
    conn = http.client.HTTPConnection("127.0.0.1", sh.port, timeout=10)
    shadow_choice = set()
    for i, rid in enumerate(ids):
        assert time.monotonic() < deadline
        status, mark, body = _post(conn, i, rid)
        if mark == "unsampled":
            assert status == 204 and body == b""
        else:
            assert status == 200 and mark is None
            shadow_choice.add(rid)
    conn.close()

    assert shadow_choice == stable_choice
    assert set(_App.seen["shadow"]) == shadow_choice and len(_App.seen["shadow"]) == len(shadow_choice)
    # the share is the one the spec names, and about P% of the ids
    assert stable_choice == {x for x in ids if _in_share(x, percent)}
    assert 2700 < len(stable_choice) < 3300
    # every pair joined on the shadow side, compared once, nothing left waiting
    assert _wait(lambda: r.zcard("shadowtee:{same}:mesh:pending") == 0, 30)
    assert r.hlen("shadowtee:{same}:mesh:halves") == 0
    key = "shadowtee:{same}:ep:%s:counts" % EP
    assert _wait(lambda: r.hget(key, "compared") == str(len(stable_choice)).encode(), 30), r.hgetall(key)
    m = metrics(sh.admin_port)
    assert _halves(m, "shadow", "joined") == len(stable_choice)
    assert _halves(m, "shadow", "published") == 0
    assert metric(m, "shadowtee_mesh_pairs_total", result="compared") == len(stable_choice)


def test_pairs_are_compared_and_recorded_like_teed_ones(shadowtee, apps, redis_server, tmp_path):
    """Known divergences, both join orders (the stable half first, then the
    shadow first), every pair recorded once with source mesh; samples say
    mesh; a tee'd pair on the same service is counted as source tee."""
    stable_app, shadow_app = apps("stable"), apps("shadow")
    st = _sidecar(shadowtee, stable_app, "stable", redis_server.port, "pairs", tmp_path)
    sh = _sidecar(shadowtee, shadow_app, "shadow", redis_server.port, "pairs", tmp_path)
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    cs = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    ch = http.client.HTTPConnection("127.0.0.1", sh.port, timeout=10)
    n = 60
    for i in range(n):
        rid = "pair-%d" % i
        first, second, side = (cs, ch, "stable") if i % 2 == 0 else (ch, cs, "shadow")
        assert _post(first, i, rid)[0] == 200
        # the first half lands before the second is captured: the other side joins
        assert _wait(lambda: r.hexists("shadowtee:{pairs}:mesh:halves", side + "|" + rid), 5)
        assert _post(second, i, rid)[0] == 200
    cs.close()
    ch.close()
    key = "shadowtee:{pairs}:ep:%s:counts" % EP
    assert _wait(lambda: r.hget(key, "compared") == str(n), 15), r.hgetall(key)
    counts = {k: int(v) for k, v in r.hgetall(key).items()}
    div = len([i for i in range(n) if i % 3 == 0])
    assert counts["diverged"] == div
    assert counts["matched"] == n - div
    assert counts["source:mesh"] == n and "source:tee" not in counts
    paths = {k: int(v) for k, v in r.hgetall("shadowtee:{pairs}:ep:%s:paths" % EP).items()}
    assert paths == {"value|$.score": div}
    samples = [json.loads(x) for x in r.lrange("shadowtee:{pairs}:ep:%s:samples" % EP, 0, -1)]
    assert samples and all(s["source"] == "mesh" and s["verdict"] == "diverged" for s in samples)
    for s in samples:  # the credential never reached Redis in clear, nor the sample
        assert all(v == "[REDACTED]" for k, v in s["primary"]["headers"] if k.lower() == "set-cookie")
    ms, mh = metrics(st.admin_port), metrics(sh.admin_port)
    # even i: the stable half first (stored), the shadow joins; odd i: the other way
    assert _halves(ms, "stable", "published") == n // 2 and _halves(ms, "stable", "joined") == n // 2
    assert _halves(mh, "shadow", "published") == n // 2 and _halves(mh, "shadow", "joined") == n // 2
    assert (metric(ms, "shadowtee_comparisons_total", result="diverged")
            + metric(mh, "shadowtee_comparisons_total", result="diverged")) == div
    assert r.zcard("shadowtee:{pairs}:mesh:pending") == 0
    # a tee'd pair on the same service is recorded as source tee
    tee = shadowtee(primary=stable_app, shadow=shadow_app, redis="127.0.0.1:%d" % redis_server.port,
                    service="pairs", compare_rules=_rules(tmp_path), redis_flush_interval="50ms")
    ct = http.client.HTTPConnection("127.0.0.1", tee.port, timeout=10)
    for i in range(1, 6):
        assert _post(ct, i, "tee-%d" % i)[0] == 200
    ct.close()
    assert _wait(lambda: r.hget(key, "source:tee") == "5", 15), r.hgetall(key)
    # the report shows them by source
    out = subprocess.run([shadowtee_bin("shadowtee-report"), "--redis", "127.0.0.1:%d" % redis_server.port,
                          "--service", "pairs", "--format", "json"], capture_output=True, timeout=30)
    assert out.returncode in (0, 1), out.stderr
    rep = json.loads(out.stdout)
    assert rep["sources"] == {"tee": 5, "mesh": n}
    assert rep["endpoints"][0]["sources"] == {"tee": 5, "mesh": n}
    # each sample says how its pair was mirrored: of the tee'd ones only i = 3 diverges
    assert [x["request_id"] for x in rep["samples"] if x["source"] == "tee"] == ["tee-3"]
    assert all(x["request_id"].startswith("pair-") for x in rep["samples"] if x["source"] == "mesh")
    html = subprocess.run([shadowtee_bin("shadowtee-report"), "--redis", "127.0.0.1:%d" % redis_server.port,
                           "--service", "pairs", "--format", "html"], capture_output=True, timeout=30)
    assert b'id="sources">tee 5, mesh %d<' % n in html.stdout
    assert b'<span class="source">mesh</span>' in html.stdout


def test_orphans_are_swept_and_counted_by_side(shadowtee, apps, redis_server, tmp_path):
    """A half whose partner never comes is an orphan once the pair TTL has
    passed: swept by the script (also when no further half arrives) and
    counted by side in Redis and in the report."""
    stable_app, shadow_app = apps("stable"), apps("shadow")
    st = _sidecar(shadowtee, stable_app, "stable", redis_server.port, "orph", tmp_path,
                  mesh_pair_ttl="300ms")
    sh = _sidecar(shadowtee, shadow_app, "shadow", redis_server.port, "orph", tmp_path,
                  mesh_pair_ttl="300ms")
    cs = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    ch = http.client.HTTPConnection("127.0.0.1", sh.port, timeout=10)
    for i in range(7):
        assert _post(cs, i, "only-stable-%d" % i)[0] == 200
    for i in range(4):
        assert _post(ch, i, "only-shadow-%d" % i)[0] == 200
    cs.close()
    ch.close()
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    assert _wait(lambda: r.hgetall("shadowtee:{orph}:mesh:orphans") == {"stable": "7", "shadow": "4"}, 10), \
        r.hgetall("shadowtee:{orph}:mesh:orphans")
    assert r.zcard("shadowtee:{orph}:mesh:pending") == 0 and r.hlen("shadowtee:{orph}:mesh:halves") == 0
    swept = [metric(metrics(p.admin_port), "shadowtee_mesh_orphans_swept_total", side=s)
             for p in (st, sh) for s in ("stable", "shadow")]
    assert swept[0] + swept[2] == 7 and swept[1] + swept[3] == 4
    out = subprocess.run([shadowtee_bin("shadowtee-report"), "--redis", "127.0.0.1:%d" % redis_server.port,
                          "--service", "orph", "--format", "json"], capture_output=True, timeout=30)
    rep = json.loads(out.stdout)
    assert rep["mesh"]["orphans"] == {"stable": 7, "shadow": 4, "baseline": 0}
    text = subprocess.run([shadowtee_bin("shadowtee-report"), "--redis", "127.0.0.1:%d" % redis_server.port,
                           "--service", "orph"], capture_output=True, timeout=30).stdout.decode()
    assert "orphans: stable 7, shadow 4" in text


def test_redis_down_drops_halves_and_clients_never_notice(shadowtee, apps, tmp_path):
    """No Redis at all: every sampled half is dropped and counted as
    redis_down, and every client request is answered normally."""
    port = free_port()  # nothing listens there
    stable_app = apps("stable")
    st = _sidecar(shadowtee, stable_app, "stable", port, "down", tmp_path)
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    n = 30
    for i in range(n):
        assert _post(conn, i, "down-%d" % i)[0] == 200
    conn.close()
    m = _wait(lambda: (lambda m: m if _halves(m, "stable", "dropped", "redis_down") == n else None)(
        metrics(st.admin_port)), 10)
    assert m, metrics(st.admin_port)
    assert _halves(m, "stable", "published") == 0
    assert metric(m, "shadowtee_requests_total", code="2xx") == n


def test_redis_killed_mid_run_then_back(shadowtee, apps, redis_server, tmp_path):
    """Redis SIGKILLed under load and restarted on the same port: no client
    error on either side, halves dropped while it is away are counted, and
    pairs are joined again once it is back."""
    stable_app, shadow_app = apps("stable"), apps("shadow")
    st = _sidecar(shadowtee, stable_app, "stable", redis_server.port, "kill", tmp_path)
    sh = _sidecar(shadowtee, shadow_app, "shadow", redis_server.port, "kill", tmp_path)
    cs = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    ch = http.client.HTTPConnection("127.0.0.1", sh.port, timeout=10)
    for i in range(20):
        assert _post(cs, i, "k1-%d" % i)[0] == 200
        assert _post(ch, i, "k1-%d" % i)[0] == 200
    redis_server.proc.p.kill()
    redis_server.proc.p.wait(10)
    for i in range(20):
        assert _post(cs, i, "k2-%d" % i)[0] == 200
        assert _post(ch, i, "k2-%d" % i)[0] == 200
    redis_server.start()
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    # once both sidecars are connected again, pairs join again
    assert _wait(lambda: metric(metrics(st.admin_port), "shadowtee_redis_connected") == 1
                 and metric(metrics(sh.admin_port), "shadowtee_redis_connected") == 1, 20)
    for i in range(10):
        assert _post(cs, i, "k3-%d" % i)[0] == 200
        assert _post(ch, i, "k3-%d" % i)[0] == 200
    cs.close()
    ch.close()
    key = "shadowtee:{kill}:ep:%s:counts" % EP
    assert _wait(lambda: int(r.hget(key, "compared") or 0) >= 10, 15), r.hgetall(key)
    ms, mh = metrics(st.admin_port), metrics(sh.admin_port)
    dropped = sum(_halves(m, role, "dropped", why) for m, role in ((ms, "stable"), (mh, "shadow"))
                  for why in ("redis_down", "connection_lost"))
    assert dropped >= 20  # the k2 round: 40 halves, some may have been sent before it was noticed
    assert metric(ms, "shadowtee_requests_total", code="5xx") == 0
    assert metric(mh, "shadowtee_requests_total", code="5xx") == 0


def test_shadow_role_answers_outside_the_share_itself(shadowtee, apps, redis_server, tmp_path):
    """Shadow role: a request without x-request-id, or outside the share, is
    answered 204 at once (the app never sees it), its body read and
    dropped, and the connection kept alive; one in the share is proxied."""
    shadow_app = apps("shadow")
    sh = _sidecar(shadowtee, shadow_app, "shadow", redis_server.port, "local", tmp_path,
                  mirror_percent=50)
    inside = next("in-%d" % i for i in range(1000) if _in_share("in-%d" % i, 50))
    outside = next("out-%d" % i for i in range(1000) if not _in_share("out-%d" % i, 50))
    c = Conn(sh.port)
    c.send(build_request("POST", "/v1/predict", headers=[("Content-Length", "8")], body=b'{"i": 1}'))
    a = c.response()
    assert a.status == 204 and a.header("x-shadowtee-mesh") == "unsampled" and a.body == b""
    c.send(build_request("POST", "/v1/predict", headers=[("Transfer-Encoding", "chunked"),
                                                         ("x-request-id", outside)],
                         body=b"3\r\n{\"i\r\n5\r\n\": 2}\r\n0\r\n\r\n"))
    b = c.response()
    assert b.status == 204 and b.header("x-request-id") == outside
    c.send(build_request("POST", "/v1/predict", headers=[("Content-Length", "8"), ("x-request-id", inside)],
                         body=b'{"i": 4}'))
    d = c.response()
    assert d.status == 200 and d.header("x-shadowtee-mesh") is None
    c.close()
    assert _App.seen["shadow"] == [inside]
    m = metrics(sh.admin_port)
    assert metric(m, "shadowtee_mesh_no_request_id_total") == 1
    assert metric(m, "shadowtee_mesh_unsampled_total", role="shadow") == 1
    assert metric(m, "shadowtee_mesh_sampled_total", role="shadow") == 1


def test_loop_guard_never_tees_a_mirror_again(shadowtee, upstream):
    """Tee mode: a request marked as a mirror (x-shadowtee-mirror, or a Host
    ending in -shadow as Istio/Envoy set it) is served but never tee'd; the
    copies the tee sends carry the marker."""
    primary, shadow = upstream(), upstream()
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, compare="off")
    for headers, host in (([("x-shadowtee-mirror", "1")], "app.local"), ([], "app-shadow"),
                          ([], "app-shadow:8080"), ([], "app.local")):
        c = Conn(st.port)
        c.send(build_request("GET", "/g", headers=headers, host=host))
        assert c.response().status == 200
        c.close()
    assert _wait(lambda: len(shadow.requests) == 1, 5)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_skipped_total", reason="loop_guard") == 3
    assert len(primary.requests) == 4
    assert shadow.requests[0].header("x-shadowtee-mirror") == "1"


def test_stable_role_does_not_capture_a_mirror(shadowtee, apps, redis_server, tmp_path):
    """Mesh stable role: a mirrored copy that reaches a stable pod is served
    but never published as a half (it would pair with itself)."""
    st = _sidecar(shadowtee, apps("stable"), "stable", redis_server.port, "guard", tmp_path)
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    assert _post(conn, 1, "g-1", {"x-shadowtee-mirror": "1"})[0] == 200
    assert _post(conn, 2, "g-2", {"Host": "svc-shadow"})[0] == 200
    conn.close()
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_skipped_total", reason="loop_guard") == 2
    assert metric(m, "shadowtee_mesh_sampled_total", role="stable") == 0


@pytest.mark.parametrize("args,message", [
    (["--mirror-mode", "mesh", "--redis", "127.0.0.1:6379"], "--mirror-mode mesh needs --mesh-role"),
    (["--mirror-mode", "mesh", "--mesh-role", "stable"], "needs --redis"),
    (["--mirror-mode", "mesh", "--mesh-role", "stable", "--redis", "127.0.0.1:1", "--shadow", "127.0.0.1:2"],
     "remove --shadow"),
    (["--mesh-role", "shadow"], "--mesh-role needs --mirror-mode mesh"),
    (["--mesh-pair-ttl", "5s"], "--mesh-pair-ttl needs --mirror-mode mesh"),
    (["--mirror-mode", "both"], "want tee or mesh"),
])
def test_mode_flags_refused_with_one_line(args, message):
    p = subprocess.run([shadowtee_bin(), "--primary", "127.0.0.1:1"] + args, capture_output=True,
                       timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert message in err and err.count("\n") == 1, err
