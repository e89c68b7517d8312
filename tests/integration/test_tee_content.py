"""What the shadow receives: the same method, path and body (also for
chunked uploads), x-shadowtee-mirror: 1 and the primary's x-request-id,
the host-suffix rule, the --mirror-max-body cut-off, and no mirror of
CONNECT or Upgrade."""
import pytest

from httpclient import Conn, build_request, chunked_body, metric, metrics
from upstreams import upstream, wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 40


def _pair(shadowtee, upstream, **flags):
    primary = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, **flags)
    return primary, shadow, st


def _marker(st, shadow):
    """Sends a mirrored GET /marker and waits until the shadow has it: every
    mirror of an earlier request has had time to arrive too (barrier)."""
    with Conn(st.port) as c:
        assert c.request("GET", "/marker").status == 200
    assert wait_for(lambda: any(q.path == "/marker" for q in shadow.requests), timeout=5), \
        "marker never reached the shadow"
    shadow.settle(quiet=0.3, timeout=3)


def _by_path(reqs, path):
    return [q for q in reqs if q.path == path]


def test_shadow_gets_identical_request(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    with Conn(st.port) as c:
        r = c.request("POST", "/v1/predict?model=a&x=%20y", [("Content-Type", "application/octet-stream"),
                                                            ("X-Custom", "same")], body)
        assert r.status == 200
    assert shadow.wait_requests(1) == 1
    p, s = primary.requests[0], shadow.requests[0]
    assert s.method == "POST" and s.path == "/v1/predict?model=a&x=%20y"
    assert s.body == body == p.body
    assert s.header("x-custom") == "same"
    assert s.header("content-type") == "application/octet-stream"


def test_shadow_gets_mirror_header_and_same_request_id(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    with Conn(st.port) as c:
        c.request("GET", "/given", [("X-Request-Id", "client-given-id-1")])
        c.request("GET", "/generated")
    assert shadow.wait_requests(2) == 2
    for path in ("/given", "/generated"):
        p = _by_path(primary.requests, path)[0]
        s = _by_path(shadow.requests, path)[0]
        assert s.headers_named("x-shadowtee-mirror") == ["1"]
        assert p.header("x-shadowtee-mirror") is None, "the primary must not see the mirror header"
        assert p.header("x-request-id") and s.headers_named("x-request-id") == [p.header("x-request-id")]
    assert _by_path(shadow.requests, "/given")[0].header("x-request-id") == "client-given-id-1"


def test_shadow_gets_chunked_upload_decoded_identical(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    pieces = [b"alpha-", b"\x00\x01\x02" * 1000, b"0\r\n\r\n", b"omega"]
    with Conn(st.port) as c:
        c.send(build_request("POST", "/chunked", [("Transfer-Encoding", "chunked")], chunked_body(pieces)))
        assert c.response().status == 200
    assert shadow.wait_requests(1) == 1
    s = shadow.requests[0]
    assert s.body == b"".join(pieces) == primary.requests[0].body
    assert s.chunked or s.header("content-length") == str(len(b"".join(pieces)))


def test_mirror_max_body_just_under_and_just_over(shadowtee, upstream):
    limit = 64 * 1024
    primary, shadow, st = _pair(shadowtee, upstream, mirror_max_body="64K")
    under = b"u" * (limit - 1)
    over = b"o" * (limit + 1)
    m0 = metrics(st.admin_port)
    with Conn(st.port) as c:
        r1 = c.request("POST", "/under", body=under)
        r2 = c.request("POST", "/over", body=over)
    assert r1.status == 200 and r1.json()["body_len"] == len(under)
    assert r2.status == 200 and r2.json()["body_len"] == len(over)
    _marker(st, shadow)
    got = _by_path(shadow.requests, "/under")
    assert len(got) == 1 and got[0].body == under
    assert _by_path(shadow.requests, "/over") == []
    m1 = metrics(st.admin_port)
    assert (metric(m1, "shadowtee_mirror_skipped_total", reason="body_too_large")
            - metric(m0, "shadowtee_mirror_skipped_total", reason="body_too_large")) == 1


def test_mirror_max_body_chunked_over_not_mirrored(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream, mirror_max_body="16K")
    pieces = [b"k" * 4096] * 6  # 24 KiB, size unknown until the end
    with Conn(st.port) as c:
        c.send(build_request("POST", "/big-chunked", [("Transfer-Encoding", "chunked")], chunked_body(pieces)))
        r = c.response()
    assert r.status == 200 and r.json()["body_len"] == 6 * 4096
    _marker(st, shadow)
    # A truncated body must never be presented to the shadow as complete.
    for q in _by_path(shadow.requests, "/big-chunked"):
        assert q.body == b"".join(pieces)
    if not _by_path(shadow.requests, "/big-chunked"):
        assert metric(metrics(st.admin_port), "shadowtee_mirror_skipped_total", reason="body_too_large") >= 1


@pytest.mark.parametrize("host,want", [
    ("api:8080", "api-shadow:8080"),
    ("api", "api-shadow"),
    ("svc.ns.svc.cluster.local:80", "svc.ns.svc.cluster.local-shadow:80"),
    ("10.1.2.3:8080", "10.1.2.3:8080"),
    ("10.1.2.3", "10.1.2.3"),
    ("[::1]:8080", "[::1]:8080"),
    ("[::1]", "[::1]"),
])
def test_shadow_host_suffix_append(shadowtee, upstream, host, want):
    primary, shadow, st = _pair(shadowtee, upstream, shadow_host_suffix="append")
    with Conn(st.port) as c:
        assert c.request("GET", "/h", [("Host", host)], host=None).status == 200
    assert shadow.wait_requests(1) == 1
    assert primary.requests[0].headers_named("host") == [host]
    assert shadow.requests[0].headers_named("host") == [want]


def test_shadow_host_suffix_off_keeps_host(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream, shadow_host_suffix="off")
    with Conn(st.port) as c:
        assert c.request("GET", "/h", [("Host", "api:8080")], host=None).status == 200
    assert shadow.wait_requests(1) == 1
    assert shadow.requests[0].headers_named("host") == ["api:8080"]


def test_connect_not_mirrored(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream, allow_connect=True)  # refused (405) without
    with Conn(st.port) as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        c.read_some(1.0)  # whatever the proxy answers (or tunnels), it is not mirrored
    assert [q.method for q in primary.requests] == ["CONNECT"]  # it was forwarded
    _marker(st, shadow)
    assert [q for q in shadow.requests if q.method == "CONNECT"] == []


def test_upgrade_not_mirrored(shadowtee, upstream):
    primary = upstream("upgrade")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        assert c.response().status == 101
        c.send(b"tunnel-bytes")
        assert c.read_exact(12) == b"tunnel-bytes"
    _marker(st, shadow)
    assert _by_path(shadow.requests, "/ws") == []
    assert all(q.header("upgrade") is None for q in shadow.requests)


def test_mirror_counters(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    m0 = metrics(st.admin_port)
    with Conn(st.port) as c:
        for i in range(5):
            c.request("GET", "/status/%d" % (200 if i < 3 else 404))
    assert shadow.wait_requests(5) == 5

    def done():
        m = metrics(st.admin_port)
        return m if metric(m, "shadowtee_shadow_responses_total") - metric(
            m0, "shadowtee_shadow_responses_total") >= 5 else None

    m1 = wait_for(done, timeout=5) or metrics(st.admin_port)
    d = lambda n, **lb: metric(m1, n, **lb) - metric(m0, n, **lb)  # noqa: E731
    assert d("shadowtee_mirror_requests_total") == 5
    assert d("shadowtee_shadow_responses_total", code="2xx") == 3
    assert d("shadowtee_shadow_responses_total", code="4xx") == 2
    assert d("shadowtee_shadow_duration_seconds_count") == 5


def test_shadow_gets_1mib_body_identical(shadowtee, upstream):
    primary = upstream("echo", sink=True)
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    body = bytes((i * 31 + 7) % 251 for i in range(1 << 20))
    with Conn(st.port, timeout=10) as c:
        r = c.request("PUT", "/blob", body=body)
        assert r.status == 200 and r.json()["body_len"] == len(body)
    assert shadow.wait_requests(1) == 1
    assert shadow.requests[0].method == "PUT"
    assert shadow.requests[0].body == body


def test_pipelined_posts_mirrored_with_matching_bodies(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    bodies = [bytes([65 + i]) * (100 + 1000 * i) for i in range(6)]
    with Conn(st.port) as c:
        c.send(b"".join(build_request("POST", "/pp%d" % i, body=b) for i, b in enumerate(bodies)))
        for i in range(6):
            assert c.response().json()["path"] == "/pp%d" % i
    assert shadow.wait_requests(6) == 6
    for i, b in enumerate(bodies):
        got = _by_path(shadow.requests, "/pp%d" % i)
        assert len(got) == 1 and got[0].body == b, i


def test_expect_100_continue_mirrored(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    body = b"continue-body" * 100
    m0 = metrics(st.admin_port)
    with Conn(st.port) as c:
        c.send(build_request("POST", "/exp", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        assert c.read_head().startswith(b"HTTP/1.1 100")
        c.send(body)
        r = c.response()
        assert r.status == 200 and r.json()["body_len"] == len(body)
        assert r.interim == []  # one 100 only: the shadow's must not leak
        assert c.request("GET", "/after").status == 200
    assert shadow.wait_requests(2) == 2
    assert _by_path(shadow.requests, "/exp")[0].body == body

    def counted():
        m = metrics(st.admin_port)
        return metric(m, "shadowtee_shadow_responses_total", code="2xx") - \
            metric(m0, "shadowtee_shadow_responses_total", code="2xx") >= 2

    assert wait_for(counted, timeout=5)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_shadow_responses_total", code="1xx") == metric(
        m0, "shadowtee_shadow_responses_total", code="1xx")


@pytest.mark.parametrize("method,status", [("HEAD", 200), ("GET", 304), ("GET", 204)])
def test_bodiless_shadow_responses_complete(shadowtee, upstream, method, status):
    """The shadow leg must frame HEAD/204/304 answers right too (a parser
    waiting for a body would time out every one of them)."""
    primary = upstream("fixed", status=status, body=b"P" * 40)
    shadow = upstream("fixed", status=status, body=b"S" * 40)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_timeout="1s")
    with Conn(st.port) as c:
        for i in range(3):
            c.send(build_request(method, "/b%d" % i))
            assert c.response(method).status == status
    assert shadow.wait_requests(3) == 3
    code = "%dxx" % (status // 100)
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_shadow_responses_total", code=code) >= 3,
                    timeout=3), "shadow answers to %s/%d not counted as complete" % (method, status)
    assert metric(metrics(st.admin_port), "shadowtee_shadow_errors_total") == 0


TEE_METRICS = (
    "shadowtee_mirror_requests_total",
    "shadowtee_mirror_skipped_total",
    "shadowtee_shadow_responses_total",
    "shadowtee_shadow_errors_total",
    "shadowtee_shadow_duration_seconds_bucket",
    "shadowtee_shadow_duration_seconds_sum",
    "shadowtee_shadow_duration_seconds_count",
)


def test_metrics_exposes_tee_families(shadowtee, upstream):
    from httpclient import has_metric, metrics_text
    primary, shadow, st = _pair(shadowtee, upstream)
    with Conn(st.port) as c:
        assert c.request("GET", "/").status == 200
    assert shadow.wait_requests(1) == 1
    text = metrics_text(st.admin_port)
    missing = [n for n in TEE_METRICS if not has_metric(text, n)]
    assert not missing, missing
    for reason in ("sampling", "method", "body_too_large", "inflight_cap", "memory_budget", "shadow_unavailable"):
        assert 'shadowtee_mirror_skipped_total{reason="%s"}' % reason in text, reason


def test_default_mirror_max_body_is_8m(shadowtee, upstream):
    from upstreams import pattern_chunks, pattern_crc
    primary = upstream("echo", sink=True)
    shadow = upstream("echo", sink=True)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    limit = 8 << 20
    with Conn(st.port, timeout=20) as c:
        for path, size in (("/under", limit - 1), ("/over", limit + 1)):
            c.send(build_request("POST", path, [("Content-Length", str(size))]))
            for piece in pattern_chunks(size):
                c.send(piece)
            r = c.response()
            assert r.status == 200 and r.json()["body_len"] == size
    _marker(st, shadow)
    under = _by_path(shadow.requests, "/under")
    assert len(under) == 1 and under[0].body_len == limit - 1 and under[0].body_crc == pattern_crc(limit - 1)
    assert _by_path(shadow.requests, "/over") == []


def test_client_cannot_spoof_the_mirror_header(shadowtee, upstream):
    """The marker never reaches the primary; a request that carries it (any
    value) is a mirror already and is not tee'd again (the loop guard, issue
    16); the copies the tee sends carry exactly one marker, "1"."""
    primary, shadow, st = _pair(shadowtee, upstream)
    with Conn(st.port) as c:
        c.request("GET", "/spoof", [("X-Shadowtee-Mirror", "1")])
        c.request("GET", "/spoof2", [("x-shadowtee-mirror", "0")])
        c.request("GET", "/plain", [])
    assert shadow.wait_requests(1) == 1
    assert primary.wait_requests(3) == 3
    for q in primary.requests:
        assert q.headers_named("x-shadowtee-mirror") == [], "the primary must never see the mirror marker"
    assert [q.path for q in shadow.requests] == ["/plain"]
    assert shadow.requests[0].headers_named("x-shadowtee-mirror") == ["1"]
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_skipped_total", reason="loop_guard") == 2


def test_shadow_headers_match_primary(shadowtee, upstream):
    primary, shadow, st = _pair(shadowtee, upstream)
    with Conn(st.port) as c:
        c.request("POST", "/same?x=1", [("X-Forwarded-For", "198.51.100.4"), ("Accept", "text/plain"),
                                        ("Cookie", "s=1"), ("X-Dup", "a"), ("X-Dup", "b")], body=b"body")
    assert shadow.wait_requests(1) == 1
    skip = {"x-shadowtee-mirror", "connection", "keep-alive"}

    def norm(q):
        return sorted((k.lower(), v) for k, v in q.headers if k.lower() not in skip)

    assert norm(shadow.requests[0]) == norm(primary.requests[0])


def test_shadow_and_primary_connections_are_reused(shadowtee, upstream):
    # one worker, one client: 40 mirrored requests, each copy answered before
    # the next request starts, need one connection to each upstream; a leg
    # that closed its connection instead of returning it to the pool shows here
    primary = upstream("echo")
    shadow = upstream("fixed", body=b'{"ok":true}')
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=1, compare="off")
    with Conn(st.port) as c:
        for i in range(40):
            assert c.request("GET", "/r%d" % i).status == 200
            assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_mirror_inflight") == 0)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_requests_total") == 40
    assert metric(m, "shadowtee_shadow_responses_total", code="2xx") == 40
    assert metric(m, "shadowtee_upstream_connects_total", pool="primary") == 1
    assert metric(m, "shadowtee_upstream_connects_total", pool="shadow") == 1
    assert metric(m, "shadowtee_upstream_connects_total", pool="noise") == 0
    assert shadow.conns_with_bytes() == metric(m, "shadowtee_upstream_connects_total", pool="shadow")
