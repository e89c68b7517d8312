"""Ambiguous or malformed request framing: 400, the connection closed, and
not one byte reaching the upstream (request smuggling defence)."""
import pytest

from httpclient import Conn, build_request
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30

H = b"Host: test.local\r\n"

BAD_REQUESTS = {
    "cl_and_te": b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /s HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "duplicate_cl_differ": b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list_differ": b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl_not_a_number": b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: 5a\r\n\r\nhello",
    "invalid_chunk_size": b"POST /s HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /s HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n1000000000000000000001\r\nx\r\n0\r\n\r\n",
    "obs_fold_space": b"GET /s HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n",
    "obs_fold_tab": b"GET /s HTTP/1.1\r\n" + H + b"X-Folded: a\r\n\tb\r\n\r\n",
    "bare_lf_in_head": b"GET /s HTTP/1.1\r\n" + H + b"X-A: b\nX-B: c\r\n\r\n",
    "bare_lf_line_ends": b"GET /s HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n",
    "ctl_in_header_name": b"GET /s HTTP/1.1\r\n" + H + b"X-B\x01ad: v\r\n\r\n",
    "ctl_in_header_value": b"GET /s HTTP/1.1\r\n" + H + b"X-Bad: a\x01b\r\n\r\n",
    "nul_in_header_value": b"GET /s HTTP/1.1\r\n" + H + b"X-Bad: a\x00b\r\n\r\n",
    "space_before_colon": b"GET /s HTTP/1.1\r\n" + H + b"Content-Length : 0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_framing_rejected_and_not_forwarded(shadowtee, upstream, name):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=5) as c:
        c.send(BAD_REQUESTS[name])
        r = c.response()
        assert r.status == 400, "%s: got %r" % (name, r)
        rest, how = c.read_to_close(3)
        assert how != "timeout", "%s: connection left open after 400" % name
    # Barrier: a good request on a fresh connection is the only one upstream.
    with Conn(st.port) as c:
        assert c.request("GET", "/good").status == 200
    assert [q.path for q in up.requests] == ["/good"], name
    assert up.raw_all().count(b"/s HTTP/1.1") == 0, "%s: bytes of the bad request reached upstream" % name


def test_good_request_after_bad_one_on_other_connection_works(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    for name in ("cl_and_te", "obs_fold_space"):
        with Conn(st.port) as c:
            c.send(BAD_REQUESTS[name])
            assert c.response().status == 400
    with Conn(st.port) as c:
        for i in range(3):
            assert c.request("GET", "/ok%d" % i).status == 200


def test_identical_duplicate_content_length_accepted_or_rejected_cleanly(shadowtee, upstream):
    """RFC 9110 8.6 allows merging identical values; either 200 with the body
    intact or 400 with nothing forwarded is correct, smuggling is not."""
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(b"POST /dup HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n"
               + H + b"\r\n")
        r = c.response()
        assert r.status in (200, 400)
        if r.status == 200:
            assert r.json()["body"] == "hello"
    paths = [q.path for q in up.requests]
    assert paths in ([], ["/dup"], ["/dup", "/smuggled"])
    if paths and paths[0] == "/dup":
        assert up.requests[0].body == b"hello"


def test_request_line_garbage_gets_400(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-not-http\r\n\r\n")
        data, how = c.read_to_close(3)
        assert how != "timeout"
        assert data == b"" or data.startswith(b"HTTP/1.1 400")
    assert up.requests == [] and up.bytes_received == 0


def test_chunked_upload_valid_then_pipelined_request(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
               + build_request("GET", "/next"))
        r1 = c.response()
        r2 = c.response()
    assert r1.status == 200 and r1.json()["body"] == "abc"
    assert r2.json()["path"] == "/next"


def test_http11_without_host_gets_400(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(b"GET /nohost HTTP/1.1\r\nAccept: */*\r\n\r\n")
        assert c.response().status == 400
    with Conn(st.port) as c:
        c.send(b"GET /two HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert c.response().status == 400
    assert up.requests == []
