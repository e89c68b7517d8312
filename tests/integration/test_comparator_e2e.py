"""The comparator end to end through the real proxy: what lands in Redis.

A primary and a shadow (and a noise replica) that answer JSON differing on
known paths; the keys written under shadowtee:{SERVICE}: must hold exactly
those counts and paths. Then Redis is killed mid-run and restarted on the
same port: no client request may fail, and counting resumes.
"""
import http.client
import http.server
import json
import random
import time
import urllib.request

import pytest
import redis

from conftest import free_port
from upstreams import http_role_servers, send_json


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = "primary"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        i = req.get("i", 0)
        doc = {"model": {"name": "m", "version": 1},
               "predictions": [{"label": "cat", "score": 0.5}, {"label": "dog", "score": 0.25}],
               "trace": random.random(),  # differs on every answer, stable replicas too: noise
               "ts": time.time()}        # ignored by rule
        if self.role == "shadow":
            if i % 4 == 0:
                doc["predictions"][1]["score"] = 0.75            # value change at a known path
            if i % 5 == 0:
                doc["model"]["version"] = "1"                     # type change
            doc["predictions"][0]["score"] = 0.5 + 1e-9           # within tolerance: never counted
        body = json.dumps(doc).encode()
        send_json(self, body)


@pytest.fixture
def apps():
    yield from http_role_servers(_Handler)


RULES = {"version": 1, "defaults": {"tolerance": {"absolute": 1e-6}, "ignore": ["$..ts"]}}


def _post(conn, i):
    body = json.dumps({"i": i, "features": [0.1, 0.2]})
    conn.request("POST", "/v1/models/42/predict", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def _metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def _metric(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _start(shadowtee, apps, redis_server, tmp_path, service, noise=False, **extra):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    flags = dict(shadow=apps("shadow"), mirror_percent=100, redis="127.0.0.1:%d" % redis_server.port,
                 service=service, compare_rules=str(rules), redis_flush_interval="50ms")
    if noise:
        flags["noise_upstream"] = apps("noise")
    flags.update(extra)
    return shadowtee(primary=apps("primary"), **flags)


def test_known_divergences_land_in_redis_exactly(shadowtee, apps, redis_server, tmp_path):
    st = _start(shadowtee, apps, redis_server, tmp_path, "exact", noise=True)
    n = 40
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    assert all(_post(conn, i) == 200 for i in range(n))
    conn.close()
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    ep = "POST /v1/models/{id}/predict"
    assert _wait(lambda: r.hget("shadowtee:{exact}:ep:%s:counts" % ep, "compared") == str(n)), \
        r.hgetall("shadowtee:{exact}:ep:%s:counts" % ep)
    assert r.smembers("shadowtee:{exact}:endpoints") == {ep}
    counts = {k: int(v) for k, v in r.hgetall("shadowtee:{exact}:ep:%s:counts" % ep).items()}
    value_div = len([i for i in range(n) if i % 4 == 0])
    type_div = len([i for i in range(n) if i % 5 == 0])
    either = len([i for i in range(n) if i % 4 == 0 or i % 5 == 0])
    assert counts["diverged"] == either
    assert counts["noise"] == n - either         # $.trace differs everywhere but is noise
    assert counts.get("matched", 0) == 0
    assert counts.get("errors", 0) == 0
    paths = {k: int(v) for k, v in r.hgetall("shadowtee:{exact}:ep:%s:paths" % ep).items()}
    assert paths == {"value|$.predictions[1].score": value_div, "type|$.model.version": type_div}
    noise = {k: int(v) for k, v in r.hgetall("shadowtee:{exact}:ep:%s:noise_paths" % ep).items()}
    assert noise == {"value|$.trace": n}
    # the latency histograms and the newest samples are there, redacted JSON
    assert int(r.hget("shadowtee:{exact}:ep:%s:lat:primary" % ep, "count")) == n
    samples = [json.loads(x) for x in r.lrange("shadowtee:{exact}:ep:%s:samples" % ep, 0, -1)]
    assert samples and all(s["verdict"] == "diverged" for s in samples)
    # Prometheus agrees
    text = _metrics(st.admin_port)
    assert _metric(text, 'shadowtee_comparisons_total{result="diverged"}') == either
    assert _metric(text, 'shadowtee_comparisons_total{result="noise"}') == n - either
    # the noise replica's own comparison with the primary: $.trace differs every time
    assert _metric(text, 'shadowtee_noise_replica_comparisons_total{result="diverged"}') == n
    assert _metric(text, 'shadowtee_noise_replica_comparisons_total{result="match"}') == 0
    ep_label = '{endpoint="%s"}' % ep
    assert _metric(text, "shadowtee_endpoint_noise_total" + ep_label) == n - either
    assert _metric(text, "shadowtee_endpoint_shadow_errors_total" + ep_label) == 0


def test_without_noise_replica_every_trace_difference_diverges(shadowtee, apps, redis_server, tmp_path):
    st = _start(shadowtee, apps, redis_server, tmp_path, "nonoise")
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    assert all(_post(conn, i) == 200 for i in range(10))
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    ep = "POST /v1/models/{id}/predict"
    assert _wait(lambda: r.hget("shadowtee:{nonoise}:ep:%s:counts" % ep, "compared") == "10")
    assert r.hget("shadowtee:{nonoise}:ep:%s:counts" % ep, "diverged") == "10"
    assert r.hget("shadowtee:{nonoise}:ep:%s:paths" % ep, "value|$.trace") == "10"
    text = _metrics(st.admin_port)  # no noise replica, no baseline counted
    assert _metric(text, 'shadowtee_noise_replica_comparisons_total{result="diverged"}') == 0
    assert _metric(text, 'shadowtee_noise_replica_comparisons_total{result="match"}') == 0


def test_redis_killed_and_restarted_no_client_impact(shadowtee, apps, redis_server, tmp_path):
    st = _start(shadowtee, apps, redis_server, tmp_path, "restart")
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    ep = "POST /v1/models/{id}/predict"
    key = "shadowtee:{restart}:ep:%s:counts" % ep
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    statuses = [_post(conn, i) for i in range(20)]
    assert _wait(lambda: r.hget(key, "compared") == "20")
    assert _wait(lambda: _metric(_metrics(st.admin_port), "shadowtee_redis_connected") == 1)

    redis_server.proc.p.kill()  # SIGKILL: no goodbye, in-memory data gone
    redis_server.proc.p.wait()
    t0 = time.monotonic()
    statuses += [_post(conn, i) for i in range(20, 60)]  # while Redis is down
    down_time = time.monotonic() - t0
    assert _wait(lambda: _metric(_metrics(st.admin_port), "shadowtee_redis_connected") == 0)

    redis_server.start()  # same port, empty
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    statuses += [_post(conn, i) for i in range(60, 80)]
    conn.close()
    assert statuses == [200] * 80, "a client request failed while Redis was down"
    assert down_time < 10, "requests slowed down while Redis was away (%.1fs for 40)" % down_time
    # counting resumes: what was compared after the restart (and the bounded
    # backlog kept while Redis was down) reaches the new server
    assert _wait(lambda: int(r.hget(key, "compared") or 0) >= 20, timeout=15), r.hgetall(key)
    text = _metrics(st.admin_port)
    assert _metric(text, "shadowtee_redis_connected") == 1
    assert _metric(text, "shadowtee_redis_reconnects_total") >= 1
    assert _metric(text, 'shadowtee_comparisons_total{result="diverged"}') + \
        _metric(text, 'shadowtee_comparisons_total{result="match"}') == 80


def test_redis_url_with_an_acl_user(shadowtee, apps, redis_server, tmp_path):
    """--redis redis://USER:PASSWORD@host:port/db (the grammar shadowtee-report
    shares): the sink authenticates as that user (AUTH user password) and
    writes into that db. The default user has another password, so an AUTH
    with the password alone would be refused and nothing would be stored."""
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    admin.execute_command("ACL", "SETUSER", "alice", "on", ">al1ce-pw", "~*", "&*", "+@all")
    admin.config_set("requirepass", "not-alice")
    admin = redis.Redis(port=redis_server.port, password="not-alice", decode_responses=True)
    st = _start(shadowtee, apps, redis_server, tmp_path, "acl",
                redis="redis://alice:al1ce-pw@127.0.0.1:%d/3" % redis_server.port)
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    assert [_post(conn, i) for i in range(5)] == [200] * 5
    conn.close()
    r = redis.Redis(port=redis_server.port, username="alice", password="al1ce-pw", db=3,
                    decode_responses=True)
    key = "shadowtee:{acl}:ep:POST /v1/models/{id}/predict:counts"
    assert _wait(lambda: r.hget(key, "compared") == "5"), r.hgetall(key)
    assert admin.hget(key, "compared") is None  # db 0 untouched
    assert _metric(_metrics(st.admin_port), "shadowtee_redis_errors_total") == 0


# Bodies written by hand (not json.dumps) so the sample shows jansson's own
# format: 17-digit reals, its escapes, a duplicate key's last value, and with
# an integer beyond int64 every integer read as a real.
_REDACT_BODY = ('{ "model" : {"name": "m\\u00e9", "version": 1},\n'
                ' "predictions": [{"label": "cat", "score": 0.1}, {"label": "dog", "score": 1e300}],'
                ' "s": "caf\\u00e9 \\/ \\u0001\\ud83d\\ude00", "dup": 1, "dup": 2, "i": %d%s}')
_REDACT_SAMPLE = ('{"model":{"name":"[REDACTED]","version":%s},"predictions":[{"label":"[REDACTED]",'
                  '"score":0.10000000000000001},{"label":"[REDACTED]","score":1.0000000000000001e300}],'
                  '"s":"caf\u00e9 / \\u0001\U0001F600","dup":%s,"i":%s%s}')


class _RedactHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = "primary"

    def log_message(self, *a):
        pass

    def do_GET(self):
        i = int(self.path.split("i=")[1])
        big = ', "big": 18446744073709551616' if i % 2 else ""
        body = (_REDACT_BODY % (i if self.role == "primary" else i + 1000, big)).encode()
        send_json(self, body)


@pytest.fixture
def redact_apps():
    yield from http_role_servers(_RedactHandler)


def test_divergent_samples_redacted_in_janssons_format(shadowtee, redact_apps, redis_server, tmp_path):
    """The sample bodies of divergent pairs under redact paths (redacted from
    the comparison's tapes) are exactly jansson's compact dump of the
    redacted document."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "defaults": {"redact_paths": ["$..label", "$.model.name"]}}))
    st = shadowtee(primary=redact_apps("primary"), shadow=redact_apps("shadow"), mirror_percent=100,
                   redis="127.0.0.1:%d" % redis_server.port, service="redact", compare_rules=str(rules),
                   redis_flush_interval="50ms")
    n = 6
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    for i in range(n):
        conn.request("GET", "/items/x?i=%d" % i)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    conn.close()
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    ep = "GET /items/x"
    assert _wait(lambda: r.hget("shadowtee:{redact}:ep:%s:counts" % ep, "diverged") == str(n)), \
        r.hgetall("shadowtee:{redact}:ep:%s:counts" % ep)
    key = "shadowtee:{redact}:ep:%s:samples" % ep
    assert _wait(lambda: r.llen(key) == n), r.llen(key)
    seen = set()
    for text in r.lrange(key, 0, -1):
        s = json.loads(text)
        i = int(s["path"].split("i=")[1])
        seen.add(i)
        for side, v in (("primary", i), ("shadow", i + 1000)):
            if i % 2:  # an integer beyond int64: every integer is a real
                want = _REDACT_SAMPLE % ("1.0", "2.0", "%d.0" % v, ',"big":1.8446744073709552e19')
            else:
                want = _REDACT_SAMPLE % ("1", "2", "%d" % v, "")
            assert s[side]["body"] == want, (side, i)
    assert seen == set(range(n))
