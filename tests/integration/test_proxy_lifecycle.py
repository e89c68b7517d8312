"""Lifecycle and admin: graceful drain on SIGTERM, /healthz, /readyz,
/metrics counters."""
import signal
import socket
import threading
import time

import pytest

from httpclient import Conn, build_request, get, has_metric, metric, metrics, metrics_text
from upstreams import closed_port, upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 40

CORE_METRICS = (
    "shadowtee_requests_total",
    "shadowtee_upstream_errors_total",
    "shadowtee_active_connections",
    "shadowtee_request_duration_seconds_bucket",
    "shadowtee_request_duration_seconds_sum",
    "shadowtee_request_duration_seconds_count",
)


def _refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _readyz(admin_port):
    try:
        return get(admin_port, "/readyz", timeout=2).status
    except OSError:
        return None


def test_sigterm_drains_inflight_request(shadowtee, upstream):
    up = upstream("fixed", body=b"finished after drain", delay=2.0)
    st = shadowtee(primary=up.addr, drain_timeout="10s")
    assert _readyz(st.admin_port) == 200
    result = {}

    def client():
        try:
            with Conn(st.port, timeout=15) as c:
                result["r"] = c.request("GET", "/slow")
        except Exception as e:  # reported by the assertion below
            result["err"] = e

    t = threading.Thread(target=client)
    t.start()
    assert up.wait_requests(1) == 1
    t_signal = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    statuses = []
    wait_for(lambda: statuses.append(_readyz(st.admin_port)) or statuses[-1] == 503, timeout=1.5)
    assert 503 in statuses, "readyz during drain: %r" % statuses
    assert wait_for(lambda: _refused(st.port), timeout=1.5), "listener still accepting during drain"
    t.join(timeout=10)
    assert not t.is_alive()
    assert "err" not in result, result
    r = result["r"]
    assert r.status == 200 and r.body == b"finished after drain"
    assert st.proc.wait(timeout=10) == 0
    assert time.monotonic() - t_signal < 9


def test_sigterm_idle_exits_promptly(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, drain_timeout="10s")
    with Conn(st.port) as c:
        assert c.request("GET", "/").status == 200
    t0 = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    assert st.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5


def test_drain_timeout_bounds_shutdown(shadowtee, upstream):
    up = upstream("blackhole")
    st = shadowtee(primary=up.addr, drain_timeout="1s", upstream_timeout="60s")
    c = Conn(st.port, timeout=10)
    c.send(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    assert up.wait_requests(1) == 1
    t0 = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    st.proc.wait(timeout=10)
    assert time.monotonic() - t0 < 5
    c.close()


def test_healthz_and_readyz(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    assert get(st.admin_port, "/healthz").status == 200
    assert wait_for(lambda: _readyz(st.admin_port) == 200, timeout=5)


def test_readyz_503_when_primary_down(shadowtee):
    st = shadowtee(primary="127.0.0.1:%d" % closed_port())
    assert get(st.admin_port, "/healthz").status == 200
    assert wait_for(lambda: _readyz(st.admin_port) == 503, timeout=5)


def test_metrics_exposes_core_families(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        assert c.request("GET", "/").status == 200
    r = get(st.admin_port, "/metrics")
    assert r.status == 200
    assert "text/plain" in (r.header("content-type") or "")
    text = r.body.decode()
    missing = [n for n in CORE_METRICS if not has_metric(text, n)]
    assert not missing, "missing metrics: %r" % missing


def test_metrics_counters_move(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    m0 = metrics(st.admin_port)
    with Conn(st.port) as c:
        for path in ("/a", "/b", "/c", "/status/404", "/status/404", "/status/503"):
            c.request("GET", path)
    def counted():
        m = metrics(st.admin_port)
        timed = metric(m, "shadowtee_request_duration_seconds_count") - \
            metric(m0, "shadowtee_request_duration_seconds_count")
        counted = metric(m, "shadowtee_requests_total") - metric(m0, "shadowtee_requests_total")
        return m if timed >= 6 and counted >= 6 else None

    m1 = wait_for(counted, timeout=3) or metrics(st.admin_port)

    def d(name, **lb):
        return metric(m1, name, **lb) - metric(m0, name, **lb)

    assert d("shadowtee_requests_total", code="2xx") == 3
    assert d("shadowtee_requests_total", code="4xx") == 2
    assert d("shadowtee_requests_total", code="5xx") == 1
    assert d("shadowtee_request_duration_seconds_count") == 6
    assert d("shadowtee_request_duration_seconds_sum") > 0
    inf = [v for (n, ls), v in m1.items() if n == "shadowtee_request_duration_seconds_bucket"
           and ("le", "+Inf") in ls]
    assert inf and sum(inf) >= 6


def test_active_connections_gauge(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)

    def active():
        return metric(metrics(st.admin_port), "shadowtee_active_connections")

    # the start-up probe's connection (wait_port) may still be open: let it go
    # first, or it closes while the three below open and the rise reads as two
    assert wait_for(lambda: active() == 0, timeout=10), active()
    base = active()
    conns = [Conn(st.port) for _ in range(3)]
    try:
        for c in conns:
            assert c.request("GET", "/").status == 200
        assert wait_for(lambda: active() - base >= 3, timeout=10), (base, active())
    finally:
        for c in conns:
            c.close()
    assert wait_for(lambda: active() <= base, timeout=10), (base, active())


CLOSE_REASONS = ("exchange_done", "eof", "client_eof", "client_reset", "timeout", "body_timeout",
                 "client_write_error", "error_write", "refused_mid_response",
                 "upstream_failed_mid_response", "tunnel_write", "tunnel_closed", "no_buffer",
                 "tls_error", "tls_handshake", "drain", "stop")


def test_client_closes_counted_by_reason(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    # the start-up probe's one connection (wait_port) is accepted and closed first
    def settled():
        m = metrics(st.admin_port)
        accepted = metric(m, "shadowtee_connections_total")
        return m if accepted >= 1 and metric(m, "shadowtee_active_connections") == 0 else None

    m0 = wait_for(settled, timeout=5)
    assert m0
    assert metric(m0, "shadowtee_client_closes_total") == metric(m0, "shadowtee_connections_total")
    for reason in CLOSE_REASONS:  # every reason listed, from zero
        assert ("shadowtee_client_closes_total", frozenset({("reason", reason)})) in m0, reason
    assert metric(m0, "shadowtee_client_closes_total") == \
        metric(m0, "shadowtee_client_closes_total", reason="eof")
    with Conn(st.port) as c:  # keep-alive, then the client closes while idle: eof
        assert c.request("GET", "/").status == 200
    with Conn(st.port) as c:  # the proxy closes after the answer: exchange_done
        r = c.request("GET", "/", headers=[("Connection", "close")])
        assert r.status == 200
        assert c.read_some(5) == b"" and c.eof
    with Conn(st.port) as c:  # the client goes mid-request: client_eof
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_some(5) == b""

    def closes():
        m = metrics(st.admin_port)
        n = metric(m, "shadowtee_client_closes_total") - metric(m0, "shadowtee_client_closes_total")
        return m if n >= 3 else None

    m1 = wait_for(closes, timeout=5) or metrics(st.admin_port)
    got = {r: metric(m1, "shadowtee_client_closes_total", reason=r) -
           metric(m0, "shadowtee_client_closes_total", reason=r) for r in CLOSE_REASONS}
    assert got["eof"] == 1, got
    assert got["exchange_done"] == 1, got
    assert got["client_eof"] == 1, got
    assert sum(got.values()) == 3, got
    assert metric(m1, "shadowtee_active_connections") == 0


def test_metrics_text_parses_without_duplicates(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    text = metrics_text(st.admin_port)
    seen = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key = line.rsplit(" ", 1)[0]
            assert key not in seen, "duplicate sample %r" % key
            seen.add(key)


def test_admin_unknown_path_404(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    assert get(st.admin_port, "/nope").status == 404


def test_readyz_follows_primary(shadowtee, upstream):
    up = upstream("echo")
    port = up.port
    st = shadowtee(primary=up.addr)
    assert wait_for(lambda: _readyz(st.admin_port) == 200, timeout=5)
    up.stop()
    assert wait_for(lambda: _readyz(st.admin_port) == 503, timeout=6), "readyz still 200 with the primary down"
    upstream("echo", port=port)
    assert wait_for(lambda: _readyz(st.admin_port) == 200, timeout=6), "readyz did not recover"


def test_sigterm_closes_idle_keepalive_connections(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, drain_timeout="10s")
    conns = [Conn(st.port, timeout=10) for _ in range(5)]
    try:
        for c in conns:
            assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        st.proc.signal(signal.SIGTERM)
        for c in conns:
            _, how = c.read_to_close(5)
            assert how != "timeout", "idle keep-alive connection not closed on drain"
        assert st.proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5, "drain waited for idle connections"
    finally:
        for c in conns:
            c.close()


def test_request_on_keepalive_during_drain_gets_close(shadowtee, upstream):
    up = upstream("fixed", body=b"slow-one", delay=1.5)
    st = shadowtee(primary=up.addr, drain_timeout="10s")
    busy = Conn(st.port, timeout=10)
    busy.send(build_request("GET", "/busy"))
    assert up.wait_requests(1) == 1
    st.proc.signal(signal.SIGTERM)
    r = busy.response()
    assert r.status == 200 and r.body == b"slow-one"
    # Once draining, the proxy must not keep this connection for more requests.
    assert "close" in (r.header("connection") or "").lower() or busy.closed_within(3)
    busy.close()
    assert st.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("flag", ["--listen", "--admin"])
def test_address_in_use_exits_2_naming_it_with_nothing_leaked(procs, upstream, flag):
    """A port someone else holds (without SO_REUSEPORT) is found before any
    loop or thread exists: exit 2, one line naming the flag and the address,
    and nothing for the sanitizers to report (the procs fixture checks)."""
    from conftest import free_port, shadowtee_bin
    up = upstream("echo")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = "127.0.0.1:%d" % holder.getsockname()[1]
    addrs = {"--listen": "127.0.0.1:%d" % free_port(), "--admin": "127.0.0.1:%d" % free_port()}
    addrs[flag] = taken
    try:
        p = procs([shadowtee_bin(), "--primary", up.addr, "--listen", addrs["--listen"],
                   "--admin", addrs["--admin"], "--workers", "2"], ours=True)
        assert p.wait(timeout=20) == 2
        err = p.stderr()
        assert "cannot listen on %s %s" % (flag, taken) in err, err
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    finally:
        holder.close()
