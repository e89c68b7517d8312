"""Timeouts fire for the side that is idle, and only then.

The client's idle deadline does not run while the primary is answering
(slowly, or streaming for longer than the deadline); a client that reads
slowly is not the primary's timeout; a primary that stops reading the
request body is (504, counted as an upstream timeout).

Findings R1, R3, R6 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80).
"""
import socket
import threading
import time

from httpclient import Conn, build_request, metric
from regress_support import m_of, raw_upstream, read_all, read_cl_response, scale, status_of  # noqa: F401  (fixtures)
from upstreams import upstream, wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R1: the client deadline must not run while the primary answers --------


def test_primary_slower_than_idle_timeout_is_served(shadowtee, upstream):
    """R1: --idle-timeout 1s, the primary answers after 1.8 s (well within
    --upstream-timeout): the client gets the 200, not an empty reply at 1 s."""
    up = upstream("fixed", body=b"slow but fine", delay=1.8)
    st = shadowtee(primary=up.addr, idle_timeout="1s", upstream_timeout="10s")
    with Conn(st.port, timeout=scale(5)) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/slow")
        elapsed = time.monotonic() - t0
    assert r.status == 200 and r.body == b"slow but fine", r
    assert elapsed >= 1.7, elapsed
    assert wait_for(lambda: metric(m_of(st), "shadowtee_requests_total", code="2xx") == 1)


def _slow_chunks(srv_pieces, gap):
    """Handler: answers one request with len(srv_pieces) chunks, `gap` s apart."""

    def handler(s, srv):
        head, _ = srv.read_head(s)
        if head is None:
            return
        srv.send(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for p in srv_pieces:
            srv.send(s, b"%x\r\n%s\r\n" % (len(p), p))
            srv.hold(gap)
        srv.send(s, b"0\r\n\r\n")
        while srv.recv(s):
            pass

    return handler


def test_stream_longer_than_idle_timeout_is_not_cut(shadowtee, raw_upstream):
    """R1: a chunked stream whose bytes keep flowing (a chunk every 0.25 s)
    but which lasts 2.25 s in total, with --idle-timeout 1s: the client gets
    every chunk and the last chunk; before the fix it was closed at 1 s."""
    pieces = [b"tok%02d " % i for i in range(9)]
    srv = raw_upstream(_slow_chunks(pieces, 0.25))
    st = shadowtee(primary=srv.addr, idle_timeout="1s", upstream_timeout="10s")
    with Conn(st.port, timeout=scale(5)) as c:
        r = c.request("GET", "/stream")
    assert r.status == 200
    assert r.complete, "stream cut after %d bytes" % len(r.body)
    assert r.body == b"".join(pieces)


# ---- R3: a slow client is not the primary's timeout ------------------------


def test_slow_reader_is_not_an_upstream_timeout(shadowtee, upstream):
    """R3: --upstream-timeout 1s, the primary sends 8 MiB at once, the client
    pauses 2 s before reading: it still gets all 8 MiB and no upstream
    timeout is counted (before the fix: ~4 MiB, then reason="timeout")."""
    n = 8 << 20
    up = upstream("fixed", body=b"z" * n)
    st = shadowtee(primary=up.addr, upstream_timeout="1s", idle_timeout="30s")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(5)
        s.connect(("127.0.0.1", st.port))
        s.sendall(build_request("GET", "/big"))
        time.sleep(2.0)  # a client that stalls (GC, slow link) longer than --upstream-timeout
        head, body, how = read_cl_response(s, scale(5))
    assert status_of(head) == 200, head[:60]
    assert len(body) == n, "%d of %d body bytes, then %s" % (len(body), n, how)
    m = m_of(st)
    assert metric(m, "shadowtee_upstream_errors_total", reason="timeout") == 0
    assert metric(m, "shadowtee_upstream_errors_total") == 0


# ---- R6: a primary that stops reading the body gets the blame (504) -------


def test_primary_not_reading_body_gives_504(shadowtee, raw_upstream):
    """R6: the primary reads the head and then nothing; the client uploads
    32 MiB. While the proxy waits on the primary it does not read the client,
    so the body deadline fires: that is an upstream timeout (504, counted),
    not a 408 for the client."""

    def noread(s, srv):
        head, _ = srv.read_head(s)
        if head is None:
            return
        srv.hold(8)

    srv = raw_upstream(noread)
    st = shadowtee(primary=srv.addr, idle_timeout="1s", upstream_timeout="2s")
    n = 32 << 20
    s = socket.create_connection(("127.0.0.1", st.port), timeout=scale(6))

    def push():
        try:
            s.sendall(build_request("POST", "/u", [("Content-Length", str(n))]) + b"u" * n)
        except OSError:
            pass

    t = threading.Thread(target=push, daemon=True)
    t.start()
    try:
        raw, how = read_all(s, 1 << 16, scale(6))
    finally:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        t.join(timeout=5)
        s.close()
    assert status_of(raw) == 504, (raw[:60], how)
    m = m_of(st)
    assert metric(m, "shadowtee_upstream_errors_total", reason="timeout") == 1
    assert metric(m, "shadowtee_requests_total", code="4xx") == 0
