"""A pooled primary connection that died while idle costs the client nothing.

A request sent on a pooled connection the primary had closed is retried
on a new connection instead of answered 502; a request with a body is
never sent twice (the guard on the limit of that retry).

Finding R4 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80),
except test_upload_on_stale_connection_is_not_replayed, a guard on the limit
of the fix (a body is never sent twice).
"""
import socket
import struct
import time

from httpclient import Conn, metric
from regress_support import m_of, raw_upstream, scale  # noqa: F401  (fixtures)
from upstreams import watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R4: a dead pooled connection is retried, not a 502 -------------------


def _stale_after_first(seen):
    """A primary that answers the first request of a connection keep-alive
    and resets the connection when the second one arrives (its keep-alive
    timer fired); each request line it saw is appended to `seen`."""

    def racy(s, srv):
        head, rest = srv.read_head(s)
        if head is None:
            return
        seen.append(head.split(b"\r\n", 1)[0])
        srv.send(s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        head, rest = srv.read_head(s, rest)
        if head is None:
            return
        seen.append(head.split(b"\r\n", 1)[0])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return racy


def test_request_on_stale_pooled_connection_is_retried(shadowtee, raw_upstream):
    """R4: the primary answers the first request of a connection keep-alive
    and resets the connection when the second one arrives (its keep-alive
    timer fired): the body-less GET is replayed on a fresh connection, the
    client gets 200 both times and no upstream error is counted."""
    seen = []
    srv = raw_upstream(_stale_after_first(seen))
    st = shadowtee(primary=srv.addr)
    codes = []
    for i in range(2):
        with Conn(st.port, timeout=scale(5)) as c:
            r = c.request("GET", "/idempotent/%d" % i)
            codes.append((r.status, r.body))
        time.sleep(0.1)  # the first upstream connection is back in the pool
    assert codes == [(200, b"ok"), (200, b"ok")], codes
    # the second request reached the stale connection and then a fresh one
    assert seen.count(b"GET /idempotent/1 HTTP/1.1") == 2, seen
    m = m_of(st)
    assert metric(m, "shadowtee_upstream_errors_total") == 0
    assert metric(m, "shadowtee_requests_total", code="5xx") == 0


def test_upload_on_stale_connection_is_not_replayed(shadowtee, raw_upstream):
    """R4 (limit of the fix): a request with a body is not replayed: the
    client gets a 502 and the primary sees it once. Guards against a retry
    that would send a body twice."""
    seen = []
    srv = raw_upstream(_stale_after_first(seen))
    st = shadowtee(primary=srv.addr)
    with Conn(st.port, timeout=scale(5)) as c:
        assert c.request("GET", "/first").status == 200
    time.sleep(0.1)
    with Conn(st.port, timeout=scale(5)) as c:
        r = c.request("POST", "/pay", body=b"amount=1")
    assert r.status == 502
    assert seen.count(b"POST /pay HTTP/1.1") == 1, seen
