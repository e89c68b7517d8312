"""Regressions found by the libFuzzer harnesses (tests/fuzz/), each with the
fuzzer's input reduced to what matters, checked on the wire against real
upstreams.

- fuzz_request, bad trailer: a chunked request whose last chunk is followed
  by an invalid trailer line reached the primary as a complete request
  (the proxy forwarded "0\\r\\n\\r\\n" as soon as it parsed the last-chunk
  line) while the client got 400. The last chunk now goes out only once the
  trailer section parsed.
"""
from httpclient import Conn
from upstreams import upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 30


def test_bad_trailer_never_completes_the_request_upstream(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\nnot a trailer line\r\n\r\n")
        r = c.response()
        assert r.status == 400
        _, how = c.read_to_close(5)
        assert how in ("eof", "reset")
    # the head and the first chunk may have gone out, the end of the body never;
    # once the proxy dropped the connection the upstream has parsed all it got
    assert wait_for(lambda: all(rec.closed for rec in up.conns), timeout=5)
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
