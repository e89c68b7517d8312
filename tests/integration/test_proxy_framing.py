"""Ambiguous or malformed request framing: 400, the connection closed, and
not one byte reaching the upstream or the shadow (request smuggling
defence); mutated requests never crash the proxy."""
import os
import socket

import pytest

from httpclient import Conn, build_request, metrics
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
    "cl_negative": b"POST /s HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nx",
    "te_chunked_not_last": b"POST /s HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "http10_with_te": b"POST /s HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


# The shadowtee_requests_rejected_total reason each one is counted under.
REASON = {
    "cl_and_te": "bad_framing", "te_and_cl": "bad_framing", "duplicate_cl_differ": "bad_framing",
    "cl_list_differ": "bad_framing", "cl_not_a_number": "bad_framing",
    "invalid_chunk_size": "bad_framing", "chunk_size_overflow": "bad_framing",
    "obs_fold_space": "bad_header_name", "obs_fold_tab": "bad_header_name",
    "bare_lf_in_head": "bare_lf", "bare_lf_line_ends": "bare_lf",
    "ctl_in_header_name": "bad_header_name", "ctl_in_header_value": "bad_header_value",
    "nul_in_header_value": "bad_header_value", "space_before_colon": "bad_header_name",
    "cl_negative": "bad_framing", "te_chunked_not_last": "bad_framing",
    "http10_with_te": "bad_framing",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_framing_rejected_and_not_forwarded(shadowtee, upstream, name):
    up = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=up.addr, shadow=shadow.addr)
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
    # Nor the shadow: once /good is mirrored, the bad request never will be.
    assert shadow.wait_requests(1) >= 1
    shadow.settle(quiet=0.2)
    assert [q.path for q in shadow.requests] == ["/good"], name
    assert shadow.raw_all().count(b"/s HTTP/1.1") == 0, "%s: bytes of the bad request reached the shadow" % name
    m = metrics(st.admin_port)
    counted = {ls: v for (n, ls), v in m.items() if n == "shadowtee_requests_rejected_total" and v}
    assert counted == {frozenset({("reason", REASON[name])}): 1.0}, (name, counted)


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


SEEDS = [
    build_request("GET", "/a?b=c", [("Accept", "*/*"), ("X-Request-Id", "r1")]),
    build_request("POST", "/p", [("Content-Type", "application/json")], b'{"k": [1, 2, 3]}'),
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;e=1\r\npedia\r\n0\r\nT: v\r\n\r\n",
    build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")]),
    build_request("PUT", "/e", [("Expect", "100-continue")], b"0123456789"),
    build_request("GET", "/one") + build_request("HEAD", "/two"),
]


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(i, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # insert special bytes
            data[i:i] = rng.choice([b"\r\n", b"\n", b"\x00", b" ", b":", b"\t", b"\r\n\r\n", b"ffffffff",
                                    b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"])
        elif op == 2:  # truncate
            del data[i:]
        elif op == 3 and data:  # delete a span
            del data[i:i + rng.randint(1, 8)]
        else:  # duplicate a span
            data[i:i] = data[max(0, i - 16):i]
    return bytes(data)


def test_mutated_requests_never_crash_the_proxy(shadowtee, upstream):
    import random
    import threading
    up = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=up.addr, shadow=shadow.addr, client_header_timeout="1s", idle_timeout="1s")
    cases = [_mutate(random.Random(seed), SEEDS[seed % len(SEEDS)]) for seed in range(int(os.environ.get("ST_FUZZ_CASES", "400")))]
    errors = []

    def run(part):
        for data in part:
            try:
                with Conn(st.port, timeout=3) as c:
                    c.send(data)
                    try:
                        c.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    _, how = c.read_to_close(3)
                    if how == "timeout":
                        errors.append(("left open", data))
            except (ConnectionResetError, BrokenPipeError):
                pass
            except Exception as e:  # connect refused: the proxy died
                errors.append((repr(e), data))
                return

    threads = [threading.Thread(target=run, args=(cases[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert st.proc.p.poll() is None, "proxy died: %s" % st.proc.stderr()[-2000:]
    assert not errors, errors[:5]
    with Conn(st.port) as c:
        assert c.request("GET", "/still-fine").status == 200
    print("mutated: %d cases, %d reached the primary, %d the shadow" % (
        len(cases), len(up.requests), len(shadow.requests)))
    assert len(up.requests) >= 20, "almost every mutation rejected: the corpus tests nothing"
