"""The tee never hurts the client: with a slow, refusing, blackholed or
resetting shadow the client gets byte-identical responses, without the
shadow's delay, and the proxy's memory stays bounded under sustained load
against a shadow that never answers."""
import signal
import threading
import time

import pytest

from httpclient import Conn, build_request, metric, metrics, strip_headers
from upstreams import RssSampler, blackhole_addr, closed_port, sanitized, upstream, wait_for, watchdog  # noqa: F401,E501

WATCHDOG_SECONDS = 60
N = 20

PRIMARY_BODY = b'{"answer":42,"model":"v1"}'


def _exchange(port):
    """20 sequential requests (GET and POST mixed) on one keep-alive
    connection; returns (normalised raw responses, elapsed seconds)."""
    out = []
    with Conn(port, timeout=10) as c:
        t0 = time.monotonic()
        for i in range(N):
            if i % 2:
                c.send(build_request("POST", "/predict?i=%d" % i, [("X-Request-Id", "req-%d" % i)],
                                     body=b'{"x":%d}' % i))
                r = c.response("POST")
            else:
                c.send(build_request("GET", "/item/%d" % i, [("X-Request-Id", "req-%d" % i)]))
                r = c.response()
            out.append(strip_headers(r.raw))
        elapsed = time.monotonic() - t0
    return out, elapsed


def _shadow(kind, upstream):
    if kind == "slow":
        return upstream("fixed", body=b"shadow-slow", delay=0.5).addr
    if kind == "refusing":
        return "127.0.0.1:%d" % closed_port()
    if kind == "blackhole":
        return upstream("blackhole").addr
    if kind == "reset":
        return upstream("reset", body=b"S" * 5000, reset_after=100, reset_delay=0.05).addr
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["slow", "refusing", "blackhole", "reset"])
def test_client_unaffected_by_bad_shadow(shadowtee, upstream, kind):
    primary = upstream("fixed", body=PRIMARY_BODY, headers=[("Content-Type", "application/json"),
                                                            ("X-Upstream", "primary")])
    base_proxy = shadowtee(primary=primary.addr)
    shadow_addr = _shadow(kind, upstream)
    tee_proxy = shadowtee(primary=primary.addr, shadow=shadow_addr)

    _exchange(base_proxy.port)  # warm both paths once
    base, base_t = _exchange(base_proxy.port)
    teed, teed_t = _exchange(tee_proxy.port)

    assert len(teed) == N
    for i, (a, b) in enumerate(zip(base, teed)):
        assert a == b, "response %d differs with a %s shadow:\n%r\n%r" % (i, kind, a, b)
    assert all(PRIMARY_BODY in r for r in teed)
    slack = 1.0 if not sanitized() else 3.0
    assert teed_t < base_t + slack, "%s shadow slowed the client: %.2fs vs %.2fs" % (kind, teed_t, base_t)

    # The tee really ran (otherwise this test proves nothing).
    def tee_happened():
        m = metrics(tee_proxy.admin_port)
        return (metric(m, "shadowtee_mirror_requests_total") > 0
                or metric(m, "shadowtee_shadow_errors_total") > 0
                or metric(m, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") > 0)

    assert wait_for(tee_happened, timeout=5), "no mirror activity recorded for the %s shadow" % kind
    if kind == "refusing":
        m = metrics(tee_proxy.admin_port)
        assert (metric(m, "shadowtee_shadow_errors_total", reason="connect")
                + metric(m, "shadowtee_mirror_skipped_total", reason="shadow_unavailable")) > 0


def test_slow_shadow_does_not_delay_next_request_on_connection(shadowtee, upstream):
    primary = upstream("fixed", body=b"fast")
    shadow = upstream("fixed", body=b"slow", delay=1.5)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    with Conn(st.port) as c:
        assert c.request("GET", "/first").body == b"fast"
        t0 = time.monotonic()
        assert c.request("GET", "/second").body == b"fast"
        # Waiting for the first request's shadow answer would take ~1.5 s.
        assert time.monotonic() - t0 < 1.0
    assert shadow.wait_requests(2) == 2


def test_shadow_failures_counted(shadowtee, upstream):
    primary = upstream("fixed", body=b"ok")
    st = shadowtee(primary=primary.addr, shadow="127.0.0.1:%d" % closed_port())
    with Conn(st.port) as c:
        for _ in range(5):
            assert c.request("GET", "/").status == 200

    def counted():
        m = metrics(st.admin_port)
        return (metric(m, "shadowtee_shadow_errors_total", reason="connect")
                + metric(m, "shadowtee_mirror_skipped_total", reason="shadow_unavailable")) >= 5

    assert wait_for(counted, timeout=5)


def test_shadow_timeout_counted(shadowtee, upstream):
    primary = upstream("fixed", body=b"ok")
    shadow = upstream("blackhole")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_timeout="300ms")
    with Conn(st.port) as c:
        for _ in range(3):
            assert c.request("GET", "/").status == 200
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_shadow_errors_total",
                                   reason="timeout") >= 3, timeout=5)


@pytest.mark.parametrize("cap", [64, None], ids=["cap64", "default_cap"])
def test_sustained_load_blackhole_shadow_bounded(shadowtee, upstream, cap):
    primary = upstream("fixed", body=b"x" * 200)
    shadow = upstream("blackhole")
    flags = {"shadow_max_inflight": cap} if cap else {}
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=1,
                   env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"}, **flags)
    max_requests, max_seconds = (20000 if cap else 10000), (10.0 if not sanitized() else 20.0)
    counts = [0] * 4
    errors = []
    body = b'{"features":[1,2,3,4,5,6,7,8]}' * 10
    deadline = time.monotonic() + max_seconds

    def client(idx):
        try:
            with Conn(st.port, timeout=10) as c:
                while sum(counts) < max_requests and time.monotonic() < deadline:
                    c.send(build_request("POST", "/load", body=body))
                    r = c.response("POST")
                    if r.status != 200:
                        errors.append(r.status)
                        return
                    counts[idx] += 1
        except Exception as e:
            errors.append(e)

    with RssSampler(st.proc.pid, interval=0.1) as rss:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max_seconds + 15)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]
    done = sum(counts)
    assert done >= 1000, "only %d requests in %.0fs" % (done, max_seconds)
    limit = (64 if not sanitized() else 384) * 1024
    assert rss.max_kib < limit, "RSS peaked at %d KiB after %d requests" % (rss.max_kib, done)
    m = metrics(st.admin_port)
    shed = (metric(m, "shadowtee_mirror_skipped_total", reason="inflight_cap")
            + metric(m, "shadowtee_mirror_skipped_total", reason="memory_budget")
            + metric(m, "shadowtee_shadow_errors_total"))
    assert shed > 0, "blackhole shadow: no mirror shed or error after %d requests" % done
    print("sustained: %d requests, peak RSS %d KiB, shed %d" % (done, rss.max_kib, shed))


def test_shadow_responses_never_reach_client(shadowtee, upstream):
    primary = upstream("fixed", body=b"PRIMARY-BODY", headers=[("X-From", "primary")])
    shadow = upstream("fixed", status=500, body=b"SHADOW-BODY-MUST-NOT-LEAK",
                      headers=[("X-From", "shadow")])
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    wire = b""
    with Conn(st.port) as c:
        for i in range(10):
            r = c.request("GET", "/%d" % i)
            assert r.status == 200 and r.body == b"PRIMARY-BODY"
            assert r.headers_named("x-from") == ["primary"]
            wire += r.raw
        assert shadow.wait_requests(10) == 10
        assert c.read_some(0.3) == b""  # nothing extra arrives afterwards
    assert b"SHADOW" not in wire
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_shadow_responses_total",
                                   code="5xx") >= 10, timeout=5)


def test_memory_budget_skips_mirrors_not_clients(shadowtee, upstream, blackhole_addr):
    # The shadow's connect hangs, so every mirror copy is held for the whole
    # --shadow-connect-timeout: 10 x 1 MiB within it must exceed a 2 MiB budget.
    primary = upstream("echo", sink=True)
    st = shadowtee(primary=primary.addr, shadow=blackhole_addr, mirror_memory_budget="2M",
                   shadow_connect_timeout="10s", drain_timeout="1s")
    body = b"m" * (1 << 20)
    with Conn(st.port, timeout=10) as c:
        for i in range(10):
            r = c.request("POST", "/b%d" % i, body=body)
            assert r.status == 200 and r.json()["body_len"] == len(body)
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_mirror_skipped_total",
                                   reason="memory_budget") >= 1, timeout=3)


def test_pipelined_requests_with_slow_shadow(shadowtee, upstream):
    primary = upstream("echo")
    shadow = upstream("fixed", body=b"slow", delay=0.5)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    with Conn(st.port) as c:
        t0 = time.monotonic()
        c.send(b"".join(build_request("GET", "/p%d" % i) for i in range(8)))
        paths = [c.response().json()["path"] for _ in range(8)]
        elapsed = time.monotonic() - t0
    assert paths == ["/p%d" % i for i in range(8)]
    assert elapsed < 2.0, "serialised on the 0.5 s shadow? %.2fs" % elapsed  # 8 x 0.5 s if so
    assert shadow.wait_requests(8, timeout=8) == 8


def test_clients_gone_while_shadow_in_flight(shadowtee, upstream):
    primary = upstream("fixed", body=b"p", delay=0.1)
    shadow = upstream("fixed", body=b"s", delay=0.5)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    for i in range(20):
        c = Conn(st.port)
        c.send(build_request("POST", "/gone%d" % i, body=b"x" * 1000))
        c.close()  # before the primary (and the shadow) answered
    assert primary.wait_requests(20, timeout=5) == 20
    with Conn(st.port) as c:
        assert c.request("GET", "/still-alive").body == b"p"
    assert st.proc.p.poll() is None


def test_sigterm_with_shadow_in_flight_exits_cleanly(shadowtee, upstream):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s", delay=2.0)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, drain_timeout="5s")
    with Conn(st.port) as c:
        for i in range(5):
            assert c.request("GET", "/%d" % i).body == b"p"
    assert shadow.wait_requests(5) == 5
    t0 = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    assert st.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 7


def test_huge_shadow_response_is_discarded_not_buffered(shadowtee, upstream):
    size = 128 << 20
    primary = upstream("fixed", body=b"small primary answer")
    shadow = upstream("stream", stream_size=size)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_timeout="20s",
                   env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"})
    with RssSampler(st.proc.pid) as rss:
        with Conn(st.port) as c:
            for i in range(2):
                assert c.request("GET", "/%d" % i).body == b"small primary answer"
        assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_shadow_responses_total",
                                       code="2xx") >= 2, timeout=20), "shadow bodies not drained"
    limit = (64 if not sanitized() else 256) * 1024
    assert rss.max_kib < limit, "RSS peaked at %d KiB while draining 2 x 128 MiB shadow bodies" % rss.max_kib


def test_large_upload_over_mirror_max_body_streams_with_bounded_rss(shadowtee, upstream):
    size = 64 << 20
    primary = upstream("echo", sink=True)
    shadow = upstream("echo", sink=True)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr,
                   env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"})
    from upstreams import pattern_chunks, pattern_crc
    with RssSampler(st.proc.pid) as rss, Conn(st.port, timeout=20) as c:
        c.send(build_request("POST", "/big", [("Content-Length", str(size))]))
        for piece in pattern_chunks(size):
            c.send(piece)
        r = c.response()
    assert r.status == 200 and r.json()["body_len"] == size and r.json()["body_crc"] == pattern_crc(size)
    limit = (64 if not sanitized() else 256) * 1024
    assert rss.max_kib < limit, "RSS peaked at %d KiB" % rss.max_kib
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_mirror_skipped_total",
                                   reason="body_too_large") == 1, timeout=3)
    assert all(q.path != "/big" for q in shadow.requests)


def test_mutated_shadow_responses_never_reach_or_hurt_the_client(shadowtee, upstream):
    import os
    import random
    from test_proxy_framing import _mutate
    from test_proxy_upstream_errors import RESPONSE_SEEDS
    primary = upstream("fixed", body=b"primary says hi")
    shadow = upstream("raw", body=b"")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_timeout="500ms")
    n = int(os.environ.get("ST_FUZZ_CASES", "300"))
    with Conn(st.port, timeout=5) as c:
        for seed in range(n):
            shadow.body = _mutate(random.Random(seed), RESPONSE_SEEDS[seed % len(RESPONSE_SEEDS)])
            r = c.request("GET", "/s%d" % seed)
            assert r.status == 200 and r.body == b"primary says hi", (seed, r.raw[:200])
    # The tee really ran (at large n the test server falls behind and the
    # in-flight cap sheds mirrors, which is fine).
    assert shadow.wait_requests(min(n // 2, 100), timeout=5) >= min(n // 2, 100)
    assert st.proc.p.poll() is None


def test_inflight_cap_sheds_mirrors(shadowtee, upstream):
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s", delay=1.5)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_max_inflight=2, shadow_timeout="5s")
    with Conn(st.port) as c:
        t0 = time.monotonic()
        for i in range(10):
            assert c.request("GET", "/%d" % i).body == b"p"
        quick = time.monotonic() - t0 < 1.0  # all sent while the first two are in flight
    m = metrics(st.admin_port)
    capped = metric(m, "shadowtee_mirror_skipped_total", reason="inflight_cap")
    if quick:
        assert capped == 8, capped
        assert shadow.settle(quiet=0.5, timeout=5) == 2
    else:
        assert capped >= 1
    assert metric(m, "shadowtee_mirror_requests_total") + capped == 10


def test_inflight_cap_is_soft_in_its_upper_half(shadowtee, upstream):
    # cap 16 on one worker: the first 8 copies always go out, the 9th to 16th
    # each with a falling chance, never a 17th while they are all in flight
    primary = upstream("fixed", body=b"p")
    shadow = upstream("fixed", body=b"s", delay=3.0)
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_max_inflight=16,
                   shadow_timeout="10s")
    with Conn(st.port) as c:
        t0 = time.monotonic()
        for i in range(60):
            assert c.request("GET", "/%d" % i).body == b"p"
        quick = time.monotonic() - t0 < 2.5  # all 60 while the first copies are in flight
    m = metrics(st.admin_port)
    sent = metric(m, "shadowtee_mirror_requests_total")
    capped = metric(m, "shadowtee_mirror_skipped_total", reason="inflight_cap")
    assert sent + capped == 60
    assert sent >= 8 and metric(m, "shadowtee_mirror_inflight") <= 16
    if quick:
        assert sent <= 16, sent
        assert metric(m, "shadowtee_mirror_inflight") == sent


def test_shadow_connect_timeout_counted(shadowtee, upstream, blackhole_addr):
    primary = upstream("fixed", body=b"p")
    st = shadowtee(primary=primary.addr, shadow=blackhole_addr, shadow_connect_timeout="300ms")
    with Conn(st.port) as c:
        t0 = time.monotonic()
        for i in range(3):
            assert c.request("GET", "/%d" % i).body == b"p"
        assert time.monotonic() - t0 < 0.3 * 3  # never waited for the shadow's connect
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_shadow_errors_total") >= 1
                    or metric(metrics(st.admin_port), "shadowtee_mirror_skipped_total",
                              reason="shadow_unavailable") >= 1, timeout=3)


@pytest.mark.parametrize("shadow_kind", ["reset", "slow", "blackhole"])
def test_chaos_two_workers(shadowtee, upstream, shadow_kind):
    """8 clients for ~2.5 s doing a random mix (keep-alive GET/POST, pipelined
    bursts, abandoned requests, half-sent bodies) against two workers and a
    misbehaving shadow: the proxy stays up and every completed answer is right."""
    import random
    primary = upstream("echo")
    if shadow_kind == "reset":
        shadow = upstream("reset", body=b"S" * 3000, reset_after=500, reset_delay=0.01)
    elif shadow_kind == "slow":
        shadow = upstream("fixed", body=b"s", delay=0.3)
    else:
        shadow = upstream("blackhole")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=2, shadow_timeout="500ms",
                   shadow_max_inflight=200)
    deadline = time.monotonic() + (2.5 if not sanitized() else 5.0)
    errors = []
    done = [0]

    def client(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            try:
                with Conn(st.port, timeout=5) as c:
                    for _ in range(rng.randint(1, 5)):
                        op = rng.randrange(5)
                        if op == 0:
                            r = c.request("GET", "/g%d" % rng.randrange(1000))
                            if r.status != 200 or not r.json()["path"].startswith("/g"):
                                errors.append(("get", r.status))
                        elif op == 1:
                            body = bytes([rng.randrange(256)]) * rng.randint(0, 20000)
                            r = c.request("POST", "/p", body=body)
                            if r.status != 200 or r.json()["body_len"] != len(body):
                                errors.append(("post", r.status))
                        elif op == 2:
                            c.send(b"".join(build_request("GET", "/b%d" % k) for k in range(5)))
                            paths = [c.response().json()["path"] for _ in range(5)]
                            if paths != ["/b%d" % k for k in range(5)]:
                                errors.append(("pipeline", paths))
                        elif op == 3:
                            c.send(build_request("GET", "/abandoned"))
                            break  # close without reading
                        else:
                            c.send(build_request("POST", "/half", [("Content-Length", "1000")]) + b"x" * 10)
                            break  # close mid-body
                        done[0] += 1
            except Exception as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert st.proc.p.poll() is None, "proxy died: %s" % st.proc.stderr()[-3000:]
    assert not errors, errors[:5]
    assert done[0] > 50
    with Conn(st.port) as c:
        assert c.request("GET", "/after-chaos").status == 200
