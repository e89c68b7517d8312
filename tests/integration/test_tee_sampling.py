"""Which requests are mirrored: --mirror-percent (statistically),
--mirror-sample-by (deterministic per header value), --mirror-methods,
and the 100% default when --shadow is set."""
import math
import threading

import pytest
from collections import defaultdict

from httpclient import Conn, build_request, metric, metrics
from upstreams import upstream, wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 60


def _send_many(port, n, conns=3, path="/s", headers_for=None):
    """n GETs spread over `conns` keep-alive connections, pipelined in
    batches of 10; every response must be 200."""
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    errors = []
    start = [0]
    lock = threading.Lock()

    def run(count):
        try:
            with Conn(port, timeout=10) as c:
                left = count
                while left:
                    batch = min(10, left)
                    with lock:
                        first = start[0]
                        start[0] += batch
                    reqs = b"".join(build_request("GET", "%s/%d" % (path, first + j),
                                                  headers_for(first + j) if headers_for else None)
                                    for j in range(batch))
                    c.send(reqs)
                    for _ in range(batch):
                        r = c.response()
                        if r.status != 200:
                            errors.append(r.status)
                    left -= batch
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]


def test_mirror_percent_10_within_binomial_bounds(shadowtee, upstream):
    n, p = 3000, 0.10
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=10)
    _send_many(st.port, n)
    assert len(primary.requests) == n
    got = shadow.settle(quiet=0.5, timeout=10)
    mean, sigma = n * p, math.sqrt(n * p * (1 - p))
    lo, hi = mean - 5 * sigma, mean + 5 * sigma  # 218 .. 382
    assert lo <= got <= hi, "mirrored %d of %d at 10%% (accept %.0f..%.0f)" % (got, n, lo, hi)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_requests_total") == got
    assert metric(m, "shadowtee_mirror_skipped_total", reason="sampling") == n - got


def test_mirror_percent_fractional(shadowtee, upstream):
    n, p = 2000, 0.005  # 0.5 %: mean 10, sd ~3.2
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=0.5)
    _send_many(st.port, n)
    got = shadow.settle(quiet=0.5, timeout=10)
    sigma = math.sqrt(n * p * (1 - p))
    assert 0 <= got <= n * p + 5 * sigma, got


def test_mirror_percent_zero_mirrors_nothing(shadowtee, upstream):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=0)
    _send_many(st.port, 200, conns=1)
    assert shadow.settle(quiet=0.5) == 0


def test_default_percent_is_100_when_shadow_set(shadowtee, upstream):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    _send_many(st.port, 50, conns=1)
    assert shadow.wait_requests(50, timeout=5) == 50
    assert shadow.settle(quiet=0.3) == 50


@pytest.mark.parametrize("workers", [1, 2])
def test_sample_by_header_is_deterministic(shadowtee, upstream, workers):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=50,
                   mirror_sample_by="x-request-id", workers=workers)
    ids = ["user-%03d" % i for i in range(40)]
    repeats = 10
    # Each id is sent `repeats` times, interleaved, over several connections.
    _send_many(st.port, len(ids) * repeats, conns=4,
               headers_for=lambda k: [("X-Request-Id", ids[k % len(ids)])])
    shadow.settle(quiet=0.5, timeout=10)
    per_id = defaultdict(int)
    for q in shadow.requests:
        per_id[q.header("x-request-id")] += 1
    assert set(per_id) <= set(ids)
    mixed = {k: v for k, v in per_id.items() if v != repeats}
    assert not mixed, "same x-request-id mirrored only sometimes: %r" % mixed
    # 50 % of 40 ids: both outcomes must occur (all-or-none overall is ~1e-12).
    assert 0 < len(per_id) < len(ids), "mirrored ids: %d of %d" % (len(per_id), len(ids))


def test_sample_by_same_id_many_times(shadowtee, upstream):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=10,
                   mirror_sample_by="x-request-id")
    _send_many(st.port, 100, conns=2, headers_for=lambda k: [("X-Request-Id", "always-the-same")])
    got = shadow.settle(quiet=0.5, timeout=10)
    assert got in (0, 100), got


def test_mirror_methods_filter(shadowtee, upstream):
    primary = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_methods="GET,POST")
    m0 = metrics(st.admin_port)
    with Conn(st.port) as c:
        for method in ("DELETE", "PUT", "PATCH", "GET", "POST", "DELETE"):
            r = c.request(method, "/m/" + method.lower(), body=b"b" if method in ("POST", "PUT", "PATCH") else b"")
            assert r.status == 200
        assert c.request("GET", "/marker").status == 200
    assert wait_for(lambda: any(q.path == "/marker" for q in shadow.requests), timeout=5)
    shadow.settle(quiet=0.3)
    assert sorted(q.method for q in shadow.requests) == ["GET", "GET", "POST"]
    assert len(primary.requests) == 7
    skipped = metric(metrics(st.admin_port), "shadowtee_mirror_skipped_total", reason="method") - \
        metric(m0, "shadowtee_mirror_skipped_total", reason="method")
    assert skipped == 4


def test_sample_by_header_same_decision_in_every_process(shadowtee, upstream):
    """Two sidecars with the same settings pick the same ids: the hash is
    stable, not seeded per process (replicas must agree on a user)."""
    ids = ["acct-%04d" % i for i in range(60)]
    picked = []
    for _ in range(2):
        primary = upstream("fixed", body=b"p")
        shadow = upstream("fixed", body=b"s")
        st = shadowtee(primary=primary.addr, shadow=shadow.addr, mirror_percent=30,
                       mirror_sample_by="x-request-id")
        _send_many(st.port, len(ids), conns=1, headers_for=lambda k: [("X-Request-Id", ids[k])])
        shadow.settle(quiet=0.5, timeout=10)
        picked.append(sorted(q.header("x-request-id") for q in shadow.requests))
    assert 0 < len(picked[0]) < len(ids)
    assert picked[0] == picked[1]
