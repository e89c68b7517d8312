"""The client gets the response the primary sent, whole and as framed.

An early answer to a large upload (the primary answers before reading the
body) reaches the client whole; a response transfer coding other than
chunked is kept for an HTTP/1.1 client and refused (502) to an HTTP/1.0
one, instead of coded bytes passed off as the body.

Findings R2, R9 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80).
"""
import gzip
import socket
import threading
import time

import pytest

from httpclient import Conn, build_request
from regress_support import raw_upstream, read_all, read_cl_response, scale, status_of  # noqa: F401  (fixtures)
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R2: an early answer to an upload must reach the client whole ----------


def test_early_answer_to_large_upload_arrives_whole(shadowtee, upstream):
    """R2: the primary answers 403 with a 2 MiB body right after the head
    (like an auth failure) while the client still uploads 4 MiB: the client
    reads the whole 403 body; before the fix it got a RST after ~128 KiB."""
    answer = b"r" * (2 << 20)
    up = upstream("early", status=403, body=answer)
    st = shadowtee(primary=up.addr)
    for attempt in range(2):
        with socket.create_connection(("127.0.0.1", st.port), timeout=scale(5)) as s:
            upload = b"x" * (4 << 20)
            s.sendall(build_request("POST", "/upload", [("Content-Length", str(len(upload)))]))
            time.sleep(0.3)  # the early answer is on its way before the upload starts

            def push():
                try:
                    s.sendall(upload)
                except OSError:
                    pass  # a proxy that stops reading may refuse the rest: fine

            t = threading.Thread(target=push, daemon=True)
            t.start()
            t.join(timeout=scale(2))  # read only once the upload is out (or stuck), like a simple client
            head, body, how = read_cl_response(s, scale(5))
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            t.join(timeout=5)
        assert status_of(head) == 403, (attempt, head[:60], how)
        assert len(body) == len(answer), "attempt %d: %d of %d body bytes, then %s" % (
            attempt, len(body), len(answer), how)
        assert body == answer


# ---- R9: transfer codings besides chunked ----------------------------------


def _raw_answer(data):
    """Handler: answers one request with `data` verbatim, then closes."""

    def handler(s, srv):
        head, _ = srv.read_head(s)
        if head is None:
            return
        srv.send(s, data)

    return handler


GZ_TEXT = b"hello world " * 10
GZ = gzip.compress(GZ_TEXT)


@pytest.mark.parametrize("framing", ["gzip_chunked", "gzip_close"])
def test_response_transfer_coding_kept_for_http11(shadowtee, raw_upstream, framing):
    """R9: the primary answers `Transfer-Encoding: gzip, chunked` (or `gzip`,
    close-delimited): an HTTP/1.1 client is told about the gzip coding
    (`Transfer-Encoding: gzip, chunked`) and the de-chunked body gunzips to
    the text. Before the fix the head said only `chunked` and the client
    got gzip bytes as if they were the plain body."""
    if framing == "gzip_chunked":
        data = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                + b"%x\r\n" % len(GZ) + GZ + b"\r\n0\r\n\r\n")
    else:
        data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n" + GZ
    srv = raw_upstream(_raw_answer(data))
    st = shadowtee(primary=srv.addr)
    with Conn(st.port, timeout=scale(5)) as c:
        r = c.request("GET", "/gz", [("Connection", "close")])
    assert r.status == 200, r
    codings = [t.strip().lower() for v in r.headers_named("transfer-encoding") for t in v.split(",")]
    assert codings == ["gzip", "chunked"], r.raw_head
    assert r.complete
    assert gzip.decompress(r.body) == GZ_TEXT


def test_response_transfer_coding_to_http10_client_is_502(shadowtee, raw_upstream):
    """R9: an HTTP/1.0 client cannot be told about a transfer coding: 502
    instead of gzip bytes passed off as the body."""
    data = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            + b"%x\r\n" % len(GZ) + GZ + b"\r\n0\r\n\r\n")
    srv = raw_upstream(_raw_answer(data))
    st = shadowtee(primary=srv.addr)
    with socket.create_connection(("127.0.0.1", st.port), timeout=scale(5)) as s:
        s.sendall(build_request("GET", "/gz", version="HTTP/1.0"))
        raw, how = read_all(s, 1 << 16, scale(5))
    assert status_of(raw) == 502, (raw[:80], how)
    assert b"\x1f\x8b" not in raw
