"""Regressions found by the libFuzzer harnesses (tests/fuzz/), each with the
fuzzer's input reduced to what matters, checked on the wire against real
upstreams.

- fuzz_request, bad trailer: a chunked request whose last chunk is followed
  by an invalid trailer line reached the primary as a complete request
  (the proxy forwarded "0\\r\\n\\r\\n" as soon as it parsed the last-chunk
  line) while the client got 400. The last chunk now goes out only once the
  trailer section parsed.
- fuzz_response, cut close-delimited body: an HTTP/1.0 client gets a
  close-delimited body; when the primary's (chunked) body was cut, the proxy
  closed with a FIN, so the client took the cut body for the whole one. The
  proxy now resets the connection instead.
"""
from httpclient import Conn
from upstreams import upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 30


def test_bad_trailer_never_completes_the_request_upstream(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n")
        # the chunk goes out at once; the last chunk used to go with it
        assert wait_for(lambda: b"hello\r\n" in up.raw_all(), timeout=5)
        assert b"0\r\n\r\n" not in up.raw_all(), "the request looked complete before its trailers"
        c.send(b"not a trailer line\r\n\r\n")
        r = c.response()
        assert r.status == 400
        _, how = c.read_to_close(5)
        assert how in ("eof", "reset")
    assert wait_for(lambda: up.conns and all(rec.closed for rec in up.conns), timeout=5)
    assert up.requests == [], up.requests
    assert b"0\r\n\r\n" not in up.raw_all()


def test_valid_trailers_still_end_the_request(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n")
        r = c.response()
        assert r.status == 200
    assert up.wait_requests(1) == 1
    assert up.requests[0].body == b"hello"


def test_cut_body_to_http10_client_ends_with_reset(shadowtee, upstream):
    up = upstream("raw", body=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"ff\r\nthe first bytes of a longer chunk")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(b"GET /cut HTTP/1.0\r\n\r\n")
        data, how = c.read_to_close(5)
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Content-Length" not in data and b"chunked" not in data  # close-delimited for 1.0
    assert how == "reset", "a cut close-delimited body must not end like a whole one (%s)" % how


def test_whole_body_to_http10_client_ends_with_fin(shadowtee, upstream):
    up = upstream("raw", body=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5\r\nwhole\r\n0\r\n\r\n")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(b"GET /whole HTTP/1.0\r\n\r\n")
        data, how = c.read_to_close(5)
    assert data.endswith(b"\r\n\r\nwhole")
    assert how == "eof"
