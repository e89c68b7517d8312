"""A client that goes away mid-response is nobody else's failure.

A client that vanishes during a chunked response is not counted as a
primary protocol error; a TLS client reset again and again in the middle
of a long response leaks nothing (a leak is only visible in the ASan
build: the `procs` fixture fails a test whose process printed a sanitizer
report, so the scenario runs several times).

Findings R5, R8 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80); the R8 leak
only with the ASan build of b55a8b2 (the plain build passes there too).
"""
import socket
import struct

from httpclient import build_request, metric
from regress_support import active, m_of, raw_upstream, read_all, scale, status_of, tls_cert, tls_client  # noqa: F401  (fixtures)
from upstreams import wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R5: a client that vanishes is not an upstream protocol error ---------


def test_client_gone_mid_chunked_response_not_blamed_on_primary(shadowtee, raw_upstream):
    """R5: the primary streams many small chunks; the client half-closes,
    reads a little and resets. The proxy closes the client and the primary,
    and counts no upstream error (before the fix: reason="protocol")."""

    def chunky(s, srv):
        head, _ = srv.read_head(s)
        if head is None:
            return
        srv.send(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"5\r\nhello\r\n" * 50
        for _ in range(400):  # at most ~4 s; ends earlier when the proxy closes
            srv.send(s, block)
            srv.hold(0.01)
        srv.send(s, b"0\r\n\r\n")

    srv = raw_upstream(chunky)
    st = shadowtee(primary=srv.addr)
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", st.port), timeout=scale(5))
        s.sendall(build_request("GET", "/chunks/%d" % i))
        s.shutdown(socket.SHUT_WR)
        got = s.recv(1000)
        assert got.startswith(b"HTTP/1.1 200"), got[:40]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        assert wait_for(lambda: active(st) == 0, scale(4)), "client %d still open" % i
    m = m_of(st)
    assert metric(m, "shadowtee_upstream_errors_total", reason="protocol") == 0
    assert metric(m, "shadowtee_upstream_errors_total") == 0


# ---- R8: a TLS client reset mid-response, again and again -----------------


def test_tls_client_reset_mid_response_repeatedly(shadowtee, raw_upstream, tls_cert):
    """R8: TLS listener, the primary streams a long chunked answer in 1 KiB
    chunks, the TLS client reads a little and resets; 5 times. The proxy
    closes each client and keeps serving; in the ASan build the ciphertext
    batch leaked on the write error is a LeakSanitizer report at exit."""

    def big(s, srv):
        buf = b""
        while True:
            head, buf = srv.read_head(s, buf)
            if head is None:
                return
            if b"/small" in head.split(b"\r\n", 1)[0]:
                srv.send(s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                continue
            srv.send(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(2000):  # ~2 MiB; stops when the proxy drops the connection
                srv.send(s, b"400\r\n" + b"q" * 1024 + b"\r\n")
                srv.hold(0.0005)
            srv.send(s, b"0\r\n\r\n")

    srv = raw_upstream(big)
    st = shadowtee(primary=srv.addr, tls_cert=tls_cert["cert"], tls_key=tls_cert["key"])
    for i in range(5):
        s = tls_client(st.port, tls_cert["cert"], timeout=scale(5))
        s.sendall(build_request("GET", "/big/%d" % i))
        got = s.recv(1000)
        assert got.startswith(b"HTTP/1.1 200"), got[:40]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        assert wait_for(lambda: active(st) == 0, scale(4)), "TLS client %d still open" % i
    s = tls_client(st.port, tls_cert["cert"], timeout=scale(5))
    try:
        s.sendall(build_request("GET", "/small", [("Connection", "close")]))
        raw, _ = read_all(s, 4096, scale(5))
    finally:
        s.close()
    assert status_of(raw) == 200 and raw.endswith(b"\r\n\r\nok"), raw[:80]
