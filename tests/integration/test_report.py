"""shadowtee-report against a real redis-server.

End to end: the real proxy (build/shadowtee) mirrors requests to two tiny
http.server upstreams whose JSON differs on known paths (a noise replica
marks the random field as noise); the report must show exactly those
numbers in text, JSON and HTML, and the gate must pass and fail where it
should. The other tests fill Redis through the real stats module (driver
build/tests/test_stats_fill) with scripted comparisons, for numbers that
need control (latencies, minutes in the past, timeouts, hostile strings),
and check the error paths (no data, unknown service, Redis down, bad flags).
"""
import html.parser
import http.client
import http.server
import json
import os
import random
import re
import tempfile
import time

import jsonschema
import pytest
import redis

from conftest import free_port, require
from report_fill import (REPORT_SCHEMA, chromium_dump_dom, chromium_screenshot, fill,
                         find_chromium, report, wilson)
from upstreams import http_role_servers, send_json


# ---- upstreams for the end-to-end test ------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = "primary"  # primary | noise | shadow

    def log_message(self, *a):
        pass

    def _reply(self, obj):
        body = json.dumps(obj).encode()
        send_json(self, body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n) or b"{}")
        label = "cat"
        if self.role == "shadow" and req.get("n", 1) % 2 == 0:
            label = "dog"  # the known divergence: $.label on even n
        # $.nonce differs on every answer, also between the two stable
        # replicas: the comparator marks it noise
        self._reply({"label": label, "score": 0.875, "nonce": random.random()})

    def do_GET(self):
        m = re.match(r"^/v1/items/(\d+)$", self.path)
        if not m:
            self.send_error(404)
            return
        self._reply({"id": int(m.group(1)), "name": "item", "tags": ["a", "b"]})


@pytest.fixture
def json_upstreams():
    yield from http_role_servers(_Handler)


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_end_to_end_real_proxy(redis_server, shadowtee, json_upstreams, tmp_path):
    primary, noise, shadow = json_upstreams("primary"), json_upstreams("noise"), \
        json_upstreams("shadow")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1}))
    svc = "e2e"
    st = shadowtee(primary=primary, shadow=shadow, noise_upstream=noise, mirror_percent=100,
                   redis="127.0.0.1:%d" % redis_server.port, service=svc,
                   compare_rules=str(rules))
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    for i in range(20):
        conn.request("POST", "/v1/predict", body=json.dumps({"n": i}),
                     headers={"Content-Type": "application/json", "X-Request-Id": "rid-%d" % i})
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["label"] == "cat"  # the client always gets the primary
    for i in range(10):
        conn.request("GET", "/v1/items/%d" % (100 + i), headers={"X-Request-Id": "item-%d" % i})
        r = conn.getresponse()
        assert r.status == 200
        r.read()
    conn.close()

    rc = redis.Redis(port=redis_server.port, decode_responses=True)
    pre = "shadowtee:{%s}:" % svc

    def complete():
        eps = rc.smembers(pre + "endpoints")
        total = sum(int(rc.hget(pre + "ep:%s:counts" % e, "compared") or 0) for e in eps)
        samples = rc.llen(pre + "ep:POST /v1/predict:samples")
        return total == 30 and samples == 10 and rc.hget(pre + "meta", "last_seen_ms")

    _wait(complete, 20, "30 comparisons and 10 samples in Redis")

    # text
    t = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", svc)
    assert t.rc == 0, t
    assert re.search(r"^compared:\s+30 \(comparable 30, matched 10\)$", t.out, re.M), t.out
    assert re.search(r"^diverged:\s+10\s+rate 33\.33%", t.out, re.M), t.out
    assert re.search(r"^noise-only:\s+10\s+rate 33\.33%", t.out, re.M), t.out
    assert re.search(r"^\s+10\s+value\s+\$\.label$", t.out, re.M), t.out
    assert re.search(r"^\s+20\s+value\s+\$\.nonce$", t.out, re.M), t.out  # noise, kept apart
    assert re.search(r"^\s+POST /v1/predict\s+20\s+10\s+50\.00%", t.out, re.M), t.out
    assert re.search(r"^\s+GET /v1/items/\{id\}\s+10\s+0\s+0\.00%", t.out, re.M), t.out
    assert 'stable: "cat"  shadow: "dog"' in t.out, t.out

    # json
    j = report("--redis", "redis://127.0.0.1:%d/0" % redis_server.port, "--service", svc,
               "--format", "json")
    assert j.rc == 0, j
    doc = j.json()
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert (doc["service"], doc["compared"], doc["diverged"], doc["noise"],
            doc["shadow_errors"]) == (svc, 30, 10, 10, 0)
    assert doc["divergence_rate"] == pytest.approx(10 / 30)
    assert doc["divergence_ci95"] == pytest.approx(list(wilson(10, 30)))
    ep = doc["endpoints"][0]
    assert ep["endpoint"] == "POST /v1/predict"
    assert (ep["compared"], ep["diverged"], ep["noise"]) == (20, 10, 10)
    assert ep["divergence_rate"] == pytest.approx(0.5)
    assert ep["paths"] == [{"path": "$.label", "kind": "value", "count": 10}]
    assert {"path": "$.nonce", "kind": "value", "count": 20} in ep["noise_paths"]
    items = doc["endpoints"][1]
    assert (items["endpoint"], items["compared"], items["diverged"]) == \
        ("GET /v1/items/{id}", 10, 0)
    assert items["paths"] == []
    assert doc["latency"]["stable"]["count"] == 30 and doc["latency"]["shadow"]["count"] == 30
    assert doc["latency"]["p50_ratio"] is not None
    assert sum(m["compared"] for m in doc["timeline"]) == 30
    assert sum(m["diverged"] for m in doc["timeline"]) == 10
    rids = sorted(s["request_id"] for s in doc["samples"])
    assert rids == sorted("rid-%d" % i for i in range(0, 20, 2))
    s0 = doc["samples"][0]
    assert s0["primary"]["status"] == 200 and s0["shadow"]["status"] == 200
    label = [d for d in s0["diffs"] if d["path"] == "$.label"][0]
    assert (label["kind"], label["a"], label["b"], label["noise"]) == \
        ("value", '"cat"', '"dog"', False)
    assert json.loads(s0["primary"]["body"])["label"] == "cat"
    assert json.loads(s0["shadow"]["body"])["label"] == "dog"
    assert doc["gate"] is None

    # html
    out = tmp_path / "r.html"
    h = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", svc, "--format",
               "html", "--output", out)
    assert h.rc == 0, h
    page = out.read_text()
    assert '<td id="compared">30</td>' in page
    assert '<td id="diverged">10</td>' in page
    assert "33.33%" in page and "rid-18" in page and "&quot;dog&quot;" in page

    # gate: 10 of 30 diverged, 95% CI 19.23%..51.22%; 0 of 30 errors, CI 0..11.35%
    g = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", svc, "--gate",
               "--max-divergence", "60", "--min-compared", "30", "--max-shadow-errors", "15")
    assert g.rc == 0, g
    assert g.out.strip().splitlines()[-1].startswith("GATE PASS service=e2e"), g.out
    g = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", svc,
               "--max-divergence", "15", "--min-compared", "31", "--max-shadow-errors", "15")
    assert g.rc == 1, g
    verdict = g.out.strip().splitlines()[-1]
    assert verdict.startswith("GATE FAIL service=e2e: failed: "), verdict
    assert "divergence 33.33% > 15.00% (95% CI 19.23%..51.22%)" in verdict, verdict
    assert "shadow errors" not in verdict and "compared" not in verdict  # only what failed
    g = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", svc,
               "--max-divergence", "30", "--max-shadow-errors", "15")
    assert g.rc == 3, g  # 30% lies inside the interval: too few comparisons to decide
    assert g.out.strip().splitlines()[-1] == (
        "GATE INCONCLUSIVE service=e2e: undecided: "
        "divergence 33.33% undecided at 30.00% (95% CI 19.23%..51.22%)"), g.out

    # the proxy's Prometheus text (st_stats_prometheus via the admin port)
    a = http.client.HTTPConnection("127.0.0.1", st.admin_port, timeout=5)
    a.request("GET", "/metrics")
    metrics = a.getresponse().read().decode()
    a.close()
    assert 'shadowtee_comparisons_total{result="diverged"} 10' in metrics, metrics
    assert 'shadowtee_comparisons_total{result="noise"} 10' in metrics, metrics
    assert 'shadowtee_endpoint_divergences_total{endpoint="POST /v1/predict"} 10' in metrics
    assert "shadowtee_redis_connected 1" in metrics


# ---- scripted data through the stats module --------------------------------

HOSTILE = "<script>alert('x')</script>&\"q\""


def _spec(service="drv"):
    """155 comparisons: POST /v1/predict 80 match + 20 diverged now;
    GET /health 50 match 10 minutes ago, 5 shadow timeouts 5 minutes ago."""
    diffs = [{"path": "$.label", "kind": "value", "a": '"cat"', "b": '"dog"'},
             {"path": "$.scores[0]", "kind": "value", "a": "0.9", "b": "0.7", "delta": 0.2},
             {"path": "$.ts", "kind": "value", "a": "1", "b": "2", "noise": True}]
    return {"service": service, "samples_per_endpoint": 5, "records": [
        {"endpoint": "POST /v1/predict", "method": "POST", "path": "/v1/predict",
         "verdict": "match", "primary_ms": 4, "shadow_ms": 6, "repeat": 80},
        {"endpoint": "POST /v1/predict", "method": "POST", "path": "/v1/predict?q=" + HOSTILE,
         "request_id": "req-" + HOSTILE, "verdict": "diverged", "primary_ms": 4,
         "shadow_ms": 9, "repeat": 20, "diffs": diffs,
         "primary": {"status": 200, "body": '{"label":"cat"}',
                     "headers": [["content-type", "application/json"],
                                 ["authorization", "Bearer TOPSECRET"]]},
         "shadow": {"status": 200, "body": '{"label":"dog"}',
                    "headers": [["content-type", "application/json"]]}},
        {"endpoint": "GET /health", "verdict": "match", "primary_ms": 1, "shadow_ms": 1,
         "repeat": 50, "ago_s": 600},
        {"endpoint": "GET /health", "verdict": "error", "shadow_error": "timeout",
         "primary_ms": 1, "repeat": 5, "ago_s": 300},
    ]}


@pytest.fixture
def filled(redis_server):
    fill(redis_server.port, _spec())
    return "127.0.0.1:%d" % redis_server.port


def test_text_numbers(filled):
    r = report("--redis", filled, "--service", "drv")
    assert r.rc == 0, r
    lo, hi = wilson(20, 150)
    assert re.search(r"^compared:\s+155 \(comparable 150, matched 130\)$", r.out, re.M), r.out
    assert re.search(r"^diverged:\s+20\s+rate 13\.33%%\s+\(95%% CI %.2f%% \.\. %.2f%%\)$"
                     % (100 * lo, 100 * hi), r.out, re.M), r.out
    assert re.search(r"^shadow errors:\s+5\s+rate 3\.23%\s+\(timeouts 5, rate 3\.23%\)$",
                     r.out, re.M), r.out
    # p50 of the stable side: 55 values in (0,1] ms, 100 in (3,4] ms -> 3 + 22.5/100
    assert re.search(r"^latency p50:\s+stable 3\.23 ms\s+shadow", r.out, re.M), r.out
    assert re.search(r"window:.*\(10m00s, all data\)", r.out), r.out
    lines = r.out.splitlines()
    first = [l for l in lines if l.startswith("  POST /v1/predict ")][0]
    assert re.match(r"^\s+POST /v1/predict\s+100\s+20\s+20\.00%\s+0\s+0", first), first
    assert lines.index(first) < lines.index([l for l in lines if l.startswith("  GET /health ")][0])
    assert re.search(r"^\s+20\s+value\s+\$\.label$", r.out, re.M)
    assert re.search(r"^\s+20\s+value\s+\$\.scores\[0\]$", r.out, re.M)
    assert re.search(r"noise paths.*\n\s+20\s+value\s+\$\.ts$", r.out, re.M)
    assert "shadow errors: timeout=5" in r.out
    assert "TOPSECRET" not in r.out


def test_json_numbers_and_schema(filled):
    r = report("--redis", filled, "--service", "drv", "--format", "json")
    assert r.rc == 0, r
    d = r.json()
    jsonschema.validate(d, REPORT_SCHEMA)
    assert (d["compared"], d["comparable"], d["matched"], d["diverged"], d["noise"],
            d["shadow_errors"], d["shadow_timeouts"]) == (155, 150, 130, 20, 0, 5, 5)
    assert d["divergence_rate"] == pytest.approx(20 / 150)
    assert d["divergence_ci95"] == pytest.approx(list(wilson(20, 150)))
    assert d["shadow_error_rate"] == pytest.approx(5 / 155)
    assert d["latency"]["stable"]["p50_ms"] == pytest.approx(3.225)
    assert d["latency"]["stable"]["count"] == 155 and d["latency"]["shadow"]["count"] == 150
    assert d["window"]["duration_s"] == 600 and d["window"]["since_s"] is None
    assert [e["endpoint"] for e in d["endpoints"]] == ["POST /v1/predict", "GET /health"]
    ep = d["endpoints"][0]
    assert ep["divergence_rate"] == pytest.approx(0.2)
    assert sorted((p["path"], p["kind"], p["count"]) for p in ep["paths"]) == \
        [("$.label", "value", 20), ("$.scores[0]", "value", 20)]
    assert ep["noise_paths"] == [{"path": "$.ts", "kind": "value", "count": 20}]
    assert ep["kinds"] == {"value": 40}
    assert ep["samples"] == 5  # samples_per_endpoint
    health = d["endpoints"][1]
    assert health["errors_by_reason"] == {"timeout": 5}
    assert health["latency"]["shadow"]["count"] == 50  # no shadow latency on errors
    assert len(d["samples"]) == 5
    s = d["samples"][0]
    assert s["request_id"] == "req-" + HOSTILE and s["endpoint"] == "POST /v1/predict"
    assert ["authorization", "[REDACTED]"] in s["primary"]["headers"]
    assert "TOPSECRET" not in r.out
    assert [(x["path"], x["a"], x["b"], x["noise"]) for x in s["diffs"]][0] == \
        ("$.label", '"cat"', '"dog"', False)
    # the timeline: three minutes (10 and 5 minutes ago, now)
    assert [(m["compared"], m["diverged"], m["shadow_errors"]) for m in d["timeline"]] == \
        [(50, 0, 0), (5, 0, 5), (100, 20, 0)]


def test_noise_kinds_in_every_format(filled, tmp_path):
    """The counts' noise_kind:* fields (20 noise entries of kind value on
    POST /v1/predict): shown beside the noise paths in text, JSON and HTML;
    an endpoint without noise entries shows none (its output as before)."""
    r = report("--redis", filled, "--service", "drv")
    assert r.rc == 0, r
    assert re.search(r"noise paths.*\n\s+20\s+value\s+\$\.ts\n    noise by kind: value=20\n",
                     r.out), r.out
    assert r.out.count("noise by kind:") == 1, r.out
    r = report("--redis", filled, "--service", "drv", "--format", "json")
    assert r.rc == 0, r
    d = r.json()
    jsonschema.validate(d, REPORT_SCHEMA)
    eps = {e["endpoint"]: e for e in d["endpoints"]}
    assert eps["POST /v1/predict"]["noise_kinds"] == {"value": 20}
    assert eps["POST /v1/predict"]["kinds"] == {"value": 40}
    assert "noise_kinds" not in eps["GET /health"]
    out = tmp_path / "r.html"
    r = report("--redis", filled, "--service", "drv", "--format", "html", "--output", out)
    assert r.rc == 0, r
    page = out.read_text()
    assert page.count('class="muted noise-kinds"') == 1, page
    assert re.search(r'<div class="muted noise-kinds">Noise entries by kind: value 20</div>', page)


@pytest.mark.parametrize("schema", ["3", "0", "two"])
def test_unknown_schema_is_refused(redis_server, schema, tmp_path):
    """Data whose meta.schema this report does not know (a newer writer's, or
    not a number): exit 2, one line naming the schema, nothing written."""
    fill(redis_server.port, _spec("future"))
    redis.Redis(port=redis_server.port).hset("shadowtee:{future}:meta", "schema", schema)
    base = ("--redis", "127.0.0.1:%d" % redis_server.port, "--service", "future")
    for fmt in ("text", "json", "html"):
        out = tmp_path / ("r." + fmt)
        for extra in ((), ("--output", out), ("--max-divergence", "5")):
            r = report(*base, "--format", fmt, *extra)
            assert r.rc == 2, r
            assert r.out == "" and not out.exists(), r
            assert r.err == ("shadowtee-report: service 'future' has data of schema '%s' "
                             "(shadowtee:{future}:meta schema), which this shadowtee-report does "
                             "not know (it reads schema 1 to 2): use the shadowtee-report of the "
                             "proxies that wrote it\n" % schema), r
    redis.Redis(port=redis_server.port).hset("shadowtee:{future}:meta", "schema", "2")
    assert report(*base).rc == 0


def test_since_uses_minute_buckets(filled):
    r = report("--redis", filled, "--service", "drv", "--since", "7m", "--format", "json")
    assert r.rc == 0, r
    d = r.json()
    assert d["window"]["since_s"] == 420
    assert (d["compared"], d["diverged"], d["shadow_errors"], d["shadow_timeouts"]) == \
        (105, 20, 5, 5)
    assert [m["compared"] for m in d["timeline"]] == [5, 100]
    r = report("--redis", filled, "--service", "drv", "--since", "2m", "--format", "json")
    d = r.json()
    assert (d["compared"], d["diverged"], d["shadow_errors"]) == (100, 20, 0)
    assert [e["compared"] for e in d["endpoints"] if e["endpoint"] == "GET /health"] == [0]


def test_endpoint_filter(filled):
    r = report("--redis", filled, "--service", "drv", "--endpoint", "GET /health",
               "--format", "json")
    assert r.rc == 0, r
    d = r.json()
    assert d["endpoint_filter"] == "GET /health"
    assert [e["endpoint"] for e in d["endpoints"]] == ["GET /health"]
    assert (d["compared"], d["diverged"], d["shadow_errors"]) == (55, 0, 5)
    assert d["samples"] == []
    r = report("--redis", filled, "--service", "drv", "--endpoint", "GET /nope")
    assert r.rc == 2, r
    assert "endpoint 'GET /nope' has no data" in r.err and "'GET /health'" in r.err, r


def test_gate(filled):
    """Three verdicts on the same data (20 of 150 diverged: 95% CI 8.80%..19.70%;
    5 of 155 errors: CI 1.38%..7.33%), each with its exit code."""
    base = ("--redis", filled, "--service", "drv")
    r = report(*base, "--gate", "--max-divergence", "25", "--max-shadow-errors", "10",
               "--min-compared", "100", "--max-latency-ratio", "3")
    assert r.rc == 0, r
    assert r.out.splitlines()[-1].startswith("GATE PASS service=drv: "), r.out
    r = report(*base, "--max-divergence", "5", "--max-shadow-errors", "0.5",
               "--min-compared", "1000", "--max-latency-ratio", "1.1")
    assert r.rc == 1, r
    v = r.out.splitlines()[-1]
    assert v.startswith("GATE FAIL service=drv: failed: "), v
    lo, hi = wilson(20, 150)
    for part in ("divergence 13.33%% > 5.00%% (95%% CI %.2f%%..%.2f%%)" % (100 * lo, 100 * hi),
                 "shadow errors 3.23% > 0.50%", "p99 latency ratio"):
        assert part in v, v
    assert "compared 155 < 1000" not in v  # undecided, but the gate failed on the others
    r = report(*base, "--max-divergence", "25", "--min-compared", "1000")
    assert r.rc == 3, r
    assert r.out.splitlines()[-1] == \
        "GATE INCONCLUSIVE service=drv: undecided: compared 155 < 1000 (too few to decide)", r.out
    # json: the gate in the document, the verdict line on stderr, stdout stays JSON
    r = report(*base, "--format", "json", "--max-divergence", "10")
    assert r.rc == 3, r
    g = r.json()["gate"]
    jsonschema.validate(r.json(), REPORT_SCHEMA)
    assert (g["passed"], g["result"]) == (False, "inconclusive")
    c = g["checks"][0]
    assert (c["name"], c["result"], c["evaluated"]) == ("divergence", "inconclusive", True)
    assert c["value"] == pytest.approx(100 * 20 / 150)
    assert c["ci95_pct"] == pytest.approx([100 * lo, 100 * hi])
    assert r.err.strip().startswith("GATE INCONCLUSIVE"), r
    r = report(*base, "--format", "json", "--max-divergence", "5")
    assert r.rc == 1 and r.json()["gate"]["result"] == "fail", r
    # a window with nothing comparable cannot pass (GET /health has data
    # only 5 and 10 minutes ago): no evidence either way
    r = report(*base, "--endpoint", "GET /health", "--since", "2m", "--max-divergence", "50")
    assert r.rc == 3, r
    assert re.search(r"^compared:\s+0 ", r.out, re.M), r.out
    assert r.out.splitlines()[-1] == \
        "GATE INCONCLUSIVE service=drv: undecided: divergence unknown (nothing comparable)", r.out


def _window_spec(service="win"):
    """Ten minutes ago a bad shadow (half diverged, a quarter timed out, 50x
    slower); now a good one. Only --since can tell them apart."""
    diffs = [{"path": "$.label", "kind": "value", "a": '"cat"', "b": '"dog"'}]
    return {"service": service, "records": [
        {"endpoint": "POST /v1/predict", "verdict": "diverged", "diffs": diffs, "primary_ms": 4,
         "shadow_ms": 200, "repeat": 200, "ago_s": 600},
        {"endpoint": "POST /v1/predict", "verdict": "match", "primary_ms": 4, "shadow_ms": 200,
         "repeat": 100, "ago_s": 600},
        {"endpoint": "POST /v1/predict", "verdict": "error", "shadow_error": "timeout",
         "primary_ms": 4, "repeat": 100, "ago_s": 600},
        {"endpoint": "POST /v1/predict", "verdict": "match", "primary_ms": 4, "shadow_ms": 5,
         "repeat": 1000},
    ]}


def test_gate_since_windows_every_input(redis_server):
    """Every gate input comes from the window: counts, rates and latency
    (per-minute latency histograms, schema 2). All-time the same data fails
    on each check; the last two minutes pass on each."""
    fill(redis_server.port, _window_spec())
    base = ("--redis", "127.0.0.1:%d" % redis_server.port, "--service", "win", "--format", "json",
            "--max-divergence", "1", "--max-shadow-errors", "1", "--max-latency-ratio", "2",
            "--min-compared", "1001")
    r = report(*base)
    assert r.rc == 1, r
    d = r.json()
    results = {c["name"]: c["result"] for c in d["gate"]["checks"]}
    assert results == {"min_compared": "pass", "divergence": "fail", "shadow_errors": "fail",
                       "latency_ratio": "fail"}, d["gate"]
    assert d["latency"]["shadow"]["count"] == 1300 and d["window"]["latency_windowed"] is False
    assert d["data_schema"] == 2

    r = report(*base, "--since", "2m")
    assert r.rc == 3, r  # 1000 compared in the window < 1001: all rates pass, too few to pass
    d = r.json()
    results = {c["name"]: c["result"] for c in d["gate"]["checks"]}
    assert results == {"min_compared": "inconclusive", "divergence": "pass",
                       "shadow_errors": "pass", "latency_ratio": "pass"}, d["gate"]
    assert (d["compared"], d["diverged"], d["shadow_errors"]) == (1000, 0, 0)
    lat = d["latency"]
    assert d["window"]["latency_windowed"] is True
    assert (lat["stable"]["count"], lat["shadow"]["count"]) == (1000, 1000)
    assert lat["stable"]["mean_ms"] == pytest.approx(4.0)
    assert lat["shadow"]["mean_ms"] == pytest.approx(5.0)
    assert lat["p99_ratio"] == pytest.approx(4.99 / 3.99, rel=1e-6)  # buckets (3,4] and (4,5]
    assert [(e["endpoint"], e["latency"]["shadow"]["count"]) for e in d["endpoints"]] == \
        [("POST /v1/predict", 1000)]

    r = report(*base[:-2], "--min-compared", "1000", "--since", "2m")
    assert r.rc == 0 and r.json()["gate"]["result"] == "pass", r
    # all-time latency stays the all-time histograms without --since
    r = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", "win",
               "--format", "json", "--since", "30m")
    assert r.json()["latency"]["shadow"]["count"] == 1300


def _write_schema1(port, service):
    """The Redis layout of schema 1, as its writers left it: latency only in
    the all-time ep:E:lat:* hashes, minute buckets with counters only."""
    rc = redis.Redis(port=port)
    pre = "shadowtee:{%s}:" % service
    now_ms = int(time.time() * 1000)
    minute = now_ms // 60000
    ep = "POST /v1/predict"
    rc.hset(pre + "meta", mapping={"schema": "1", "service": service,
                                   "hist_bounds_ms": "1,2,3,4,5,6,8,10", "first_seen_ms": now_ms,
                                   "last_seen_ms": now_ms})
    rc.sadd(pre + "endpoints", ep)
    rc.hset(pre + "ep:%s:counts" % ep, mapping={"compared": 500, "matched": 495, "diverged": 5})
    rc.hset(pre + "ep:%s:lat:primary" % ep, mapping={"4": 500, "count": 500, "sum_ms": 2000})
    rc.hset(pre + "ep:%s:lat:shadow" % ep, mapping={"5": 500, "count": 500, "sum_ms": 2500})
    rc.hset(pre + "minute:%d" % minute, mapping={"compared|" + ep: 500, "diverged|" + ep: 5})


def test_schema1_data_stays_readable(redis_server):
    _write_schema1(redis_server.port, "old")
    base = ("--redis", "127.0.0.1:%d" % redis_server.port, "--service", "old")
    r = report(*base, "--format", "json")
    assert r.rc == 0, r
    d = r.json()
    jsonschema.validate(d, REPORT_SCHEMA)
    assert (d["data_schema"], d["compared"], d["diverged"]) == (1, 500, 5)
    assert (d["latency"]["stable"]["count"], d["latency"]["shadow"]["count"]) == (500, 500)
    # --since: counts from the minute buckets as before; latency has no
    # window in this data, and the gate says so instead of guessing
    r = report(*base, "--since", "5m", "--max-divergence", "5", "--max-latency-ratio", "2")
    assert r.rc == 3, r
    assert re.search(r"^compared:\s+500 ", r.out, re.M), r.out
    assert "no latency in the window: this data was written by schema-1 writers" in r.out
    v = r.out.splitlines()[-1]
    assert v.startswith("GATE INCONCLUSIVE service=old: undecided: latency ratio unknown"), v
    assert "schema-1 writers" in v and "divergence" not in v  # 5 of 500: decided (pass)
    r = report(*base, "--max-divergence", "5", "--max-latency-ratio", "2")
    assert r.rc == 0, r  # all-time latency is there


def test_promote_script_with_the_real_report(redis_server, tmp_path):
    """scripts/promote with the real shadowtee-report: an inconclusive gate
    (too few comparisons) is exit 3, "not yet", and no kubectl call."""
    from conftest import ROOT
    import subprocess
    fill(redis_server.port, _window_spec("flask-inference"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kubectl.log"
    kubectl = bin_dir / "kubectl"
    kubectl.write_text("#!/bin/sh\necho \"$@\" >> %s\n" % log)
    kubectl.chmod(0o755)
    from report_fill import REPORT
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWTEE_")}
    env.update(PATH="%s:%s" % (bin_dir, os.environ["PATH"]), SHADOWTEE_REPORT=REPORT,
               SHADOWTEE_REDIS_URL="redis://127.0.0.1:%d/0" % redis_server.port,
               SHADOWTEE_MAX_LATENCY_RATIO="2")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")

    def promote(**extra):
        return subprocess.run([os.path.join(ROOT, "scripts", "promote"), "staging", "--image", "img:2"],
                              env=dict(env, **extra), capture_output=True, text=True, timeout=60)
    p = promote(SHADOWTEE_SINCE="2m", SHADOWTEE_MIN_COMPARED="5000")
    assert p.returncode == 3, p.stdout + p.stderr
    assert "gate INCONCLUSIVE for staging" in p.stderr and "GATE INCONCLUSIVE" in p.stdout
    p = promote()  # all time: the bad minutes fail it
    assert p.returncode == 1 and "gate FAILED for staging" in p.stderr, p.stdout + p.stderr
    assert not log.exists()
    p = promote(SHADOWTEE_SINCE="2m")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "set image deployment/flask-inference-server-stable" in log.read_text()


def test_html_escaped_and_self_contained(filled, tmp_path):
    out = tmp_path / "report.html"
    r = report("--redis", filled, "--service", "drv", "--format", "html", "--output", out,
               "--max-divergence", "5")
    assert r.rc == 1, r
    assert r.out.startswith("GATE FAIL"), r  # with --output the verdict goes to stdout
    assert '<div id="gate" class="gate fail">' in out.read_text()
    r = report("--redis", filled, "--service", "drv", "--format", "html", "--output", out,
               "--max-divergence", "10")
    assert r.rc == 3 and r.out.startswith("GATE INCONCLUSIVE"), r
    assert '<div id="gate" class="gate inconclusive">' in out.read_text()
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;" in page
    assert "TOPSECRET" not in page
    assert not re.search(r"(src|href)\s*=|url\(|https?://|@import", page), \
        "the report must not reference anything outside the file"
    for needle in ('<svg id="chart-timeline"', '<svg id="chart-endpoints"',
                   '<svg id="chart-latency"', 'class="bar-diverged"', '<td id="compared">155</td>'):
        assert needle in page, needle


class _Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.svgs, self.rects, self._stack = {}, [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append(a.get("id"))
        if tag == "rect":
            self.rects.append(a)
        self._stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._stack and self._stack[-1]:
            self.ids[self._stack[-1]] = self.ids.get(self._stack[-1], "") + data


def test_html_in_headless_chromium(filled, tmp_path):
    exe = require(find_chromium(), "chromium is not installed (scripts/deps.sh installs it unless --no-browser): "
                  "the HTML report NOT checked in a browser")
    out = tmp_path / "report.html"
    r = report("--redis", filled, "--service", "drv", "--format", "html", "--output", out)
    assert r.rc == 0, r
    dom = chromium_dump_dom(exe, str(out))
    p = _Dom()
    p.feed(dom)
    assert p.ids.get("compared") == "155"
    assert p.ids.get("diverged") == "20"
    assert p.ids.get("divergence-rate", "").startswith("13.33% (95% CI")
    assert p.ids.get("shadow-errors") == "5 (3.23%)"
    assert p.ids.get("service") == "drv"
    assert {"chart-timeline", "chart-endpoints", "chart-latency"} <= set(p.svgs)
    div = [x for x in p.rects if x.get("class") == "bar-diverged"]
    assert sorted(int(x["data-diverged"]) for x in div) == [0, 0, 20]
    eps = [x["data-endpoint"] for x in p.rects if x.get("class") == "bar-endpoint"]
    assert eps == ["POST /v1/predict", "GET /health"]
    lat = {(x["class"], x["data-quantile"]): float(x["data-ms"]) for x in p.rects
           if x.get("class") in ("bar-stable", "bar-shadow")}
    assert lat[("bar-stable", "p50")] == pytest.approx(3.225)
    assert "<script>alert" not in dom  # the hostile id stayed text
    shot = os.environ.get("ST_REPORT_SCREENSHOT") or str(tmp_path / "report.png")
    chromium_screenshot(exe, str(out), shot)
    assert os.path.getsize(shot) > 10000


# ---- errors: exit 2 with a clear message -----------------------------------

def test_no_data_for_service(filled):
    r = report("--redis", filled, "--service", "nosuch")
    assert r.rc == 2, r
    assert "no data for service 'nosuch'" in r.err and "'drv'" in r.err, r
    assert r.out == ""


def test_empty_redis(redis_server):
    r = report("--redis", "127.0.0.1:%d" % redis_server.port, "--service", "drv")
    assert r.rc == 2, r
    assert "no data for service 'drv'" in r.err and "no shadowtee data" in r.err, r


def test_redis_down():
    port = free_port()
    r = report("--redis", "127.0.0.1:%d" % port, "--service", "drv")
    assert r.rc == 2, r
    assert "cannot connect to Redis at 127.0.0.1:%d" % port in r.err, r


def test_auth_and_db_url(redis_server):
    rc = redis.Redis(port=redis_server.port)
    rc.config_set("requirepass", "pw0rd")
    try:
        spec = _spec("secure")
        spec.update(password="pw0rd", db=2)
        fill(redis_server.port, spec)
        ok = report("--redis", "redis://:pw0rd@127.0.0.1:%d/2" % redis_server.port,
                    "--service", "secure", "--format", "json")
        assert ok.rc == 0 and ok.json()["compared"] == 155, ok
        bad = report("--redis", "redis://:wrong@127.0.0.1:%d/2" % redis_server.port,
                     "--service", "secure")
        assert bad.rc == 2 and "refused AUTH" in bad.err, bad
        db0 = report("--redis", "redis://:pw0rd@127.0.0.1:%d" % redis_server.port,
                     "--service", "secure")
        assert db0.rc == 2 and "no data for service 'secure'" in db0.err, db0
    finally:
        redis.Redis(port=redis_server.port, password="pw0rd").config_set("requirepass", "")


@pytest.mark.parametrize("args,msg", [
    (["--service", "x"], "--redis is required"),
    (["--redis", "127.0.0.1:1"], "--service is required"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--bogus"], "unknown flag --bogus"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--since", "5 minutes"], "--since 5 minutes"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--format", "xml"], "--format xml"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--gate"], "--gate needs at least one"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--max-divergence", "abc"],
     "--max-divergence abc"),
    (["--redis", "127.0.0.1:99999", "--service", "x"], "bad port"),
    (["--redis", "http://h:1", "--service", "x"], "only redis:// URLs"),
    (["--redis", "127.0.0.1:1", "--service", "x", "stray"], "unexpected argument 'stray'"),
    (["--redis", "127.0.0.1:1", "--service", "x", "--since"], "--since: missing value"),
])
def test_bad_flags(args, msg):
    r = report(*args)
    assert r.rc == 2, r
    assert msg in r.err, r
    assert r.out == ""


def test_help_and_version():
    h = report("--help")
    assert h.rc == 0 and "--max-latency-ratio" in h.out and "Exit: 0" in h.out, h
    v = report("--version")
    assert v.rc == 0 and re.match(r"^shadowtee-report \d+\.\d+\.\d+\n$", v.out), v
