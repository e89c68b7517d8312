"""Size limits (431, 414, 413) and client-side timeouts (slowloris 408,
idle keep-alive close)."""
import socket
import time

from httpclient import Conn, build_request, chunked_body, metric, metrics
from upstreams import sanitized, upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


def _rejected(st, reason):
    return metric(metrics(st.admin_port), "shadowtee_requests_rejected_total", reason=reason)


def test_head_too_large_gets_431(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, max_header_size="2K", max_uri_size="1K")
    with Conn(st.port) as c:
        assert c.request("GET", "/small", [("X-Pad", "a" * 1000)]).status == 200
    with Conn(st.port) as c:
        c.send(build_request("GET", "/big", [("X-Pad", "a" * 3000)]))
        r = c.response()
        assert r.status == 431
        assert c.closed_within(3)
    with Conn(st.port) as c:  # many small headers count too
        c.send(build_request("GET", "/many", [("X-H%d" % i, "v" * 20) for i in range(200)]))
        assert c.response().status == 431
    assert [q.path for q in up.requests] == ["/small"]
    assert _rejected(st, "head_too_large") == 2


def test_default_header_limit_is_16k(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        assert c.request("GET", "/", [("X-Pad", "a" * 12000)]).status == 200
    with Conn(st.port) as c:
        c.send(build_request("GET", "/", [("X-Pad", "a" * 20000)]))
        assert c.response().status == 431


def test_uri_too_long_gets_414(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, max_uri_size="1K")
    with Conn(st.port) as c:
        ok = "/" + "u" * 900
        assert c.request("GET", ok).json()["path"] == ok
    with Conn(st.port) as c:
        c.send(build_request("GET", "/" + "u" * 2000))
        r = c.response()
        assert r.status == 414
        assert c.closed_within(3)
    assert len(up.requests) == 1
    assert _rejected(st, "uri_too_long") == 1


def test_body_over_max_gets_413(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, max_body_size="1K")
    with Conn(st.port) as c:
        assert c.request("POST", "/fits", body=b"f" * 1000).json()["body_len"] == 1000
    with Conn(st.port) as c:
        c.send(build_request("POST", "/over", body=b"o" * 2000))
        r = c.response()
        assert r.status == 413
    assert [q.path for q in up.requests] == ["/fits"]
    assert _rejected(st, "body_too_large") == 1


def test_chunked_body_over_max_gets_413(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, max_body_size="1K")
    with Conn(st.port) as c:
        c.send(build_request("POST", "/over", [("Transfer-Encoding", "chunked")],
                             chunked_body([b"c" * 600, b"c" * 600, b"c" * 600])))
        r = c.response()
        assert r.status == 413
        assert c.closed_within(3)
    # Whatever was streamed, the upstream never saw a complete oversized body.
    assert all(q.body_len <= 1024 for q in up.requests)
    assert _rejected(st, "body_too_large") == 1


def test_slowloris_gets_408_and_close(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, client_header_timeout="1s")
    trickle = b"GET /slow HTTP/1.1\r\nHost: test.local\r\n" + b"X-Slow: " + b"a" * 80
    with Conn(st.port) as c:
        t0 = time.monotonic()
        got = b""
        for b in trickle:  # one byte per ~50 ms: ~6 s in total if never cut
            try:
                c.send(bytes([b]))
            except OSError:
                break
            got += c.read_some(0.05)
            if got or c.eof:
                break
        data, how = c.read_to_close(5)
        elapsed = time.monotonic() - t0
        got += data
    assert got.startswith(b"HTTP/1.1 408"), got[:100]
    assert how != "timeout", "connection not closed after 408"
    slack = 3.0 if not sanitized() else 6.0
    assert 0.8 <= elapsed <= 1.0 + slack, elapsed
    assert up.requests == []
    assert _rejected(st, "timeout") == 1


def test_idle_keepalive_connection_closed(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, idle_timeout="1s")
    with Conn(st.port) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        data, how = c.read_to_close(6)
        elapsed = time.monotonic() - t0
    assert how != "timeout", "idle connection still open after 6s"
    assert data == b"" or data.startswith(b"HTTP/1.1 408")
    assert 0.8 <= elapsed <= 4.0, elapsed


def test_active_connection_not_cut_by_idle_timeout(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, idle_timeout="1s")
    with Conn(st.port) as c:
        for i in range(6):  # 6 x 0.4 s > 1 s idle timeout, but never idle 1 s
            assert c.request("GET", "/%d" % i).status == 200
            time.sleep(0.4)


def test_no_bytes_at_all_connection_closed(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, client_header_timeout="1s", idle_timeout="1s")
    s = socket.create_connection(("127.0.0.1", st.port), timeout=6)
    try:
        t0 = time.monotonic()
        try:
            data = s.recv(4096)
            while data and time.monotonic() - t0 < 6:
                data = s.recv(4096)
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 5
    finally:
        s.close()


def test_body_inactivity_closes_connection(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, idle_timeout="1s")
    with Conn(st.port) as c:
        c.send(build_request("POST", "/stalled", [("Content-Length", "100")]) + b"only ten b")
        t0 = time.monotonic()
        data, how = c.read_to_close(6)
        elapsed = time.monotonic() - t0
    assert how != "timeout", "a body stalled past --idle-timeout kept the connection open"
    assert 0.8 <= elapsed <= 4.0, elapsed
    # Whatever reached the upstream, it never saw a complete 100-byte body.
    assert all(q.body_len < 100 for q in up.requests)


def test_expect_100_with_oversized_length_gets_413_without_continue(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, max_body_size="1K")
    with Conn(st.port) as c:
        c.send(build_request("POST", "/big", [("Expect", "100-continue"), ("Content-Length", "5000")]))
        head = c.read_head()
        assert head.startswith(b"HTTP/1.1 413"), head
    assert up.requests == []


def test_many_tiny_headers_within_size(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    hs = [("A%d" % i, "b") for i in range(1000)]  # ~8 KiB of head, 1000 fields
    with Conn(st.port) as c:
        c.send(build_request("GET", "/many", hs))
        r = c.response()
    assert r.status in (200, 431), r
    if r.status == 200:
        assert len(up.requests[0].headers) >= 1000
    with Conn(st.port) as c:  # and the proxy is fine afterwards
        assert c.request("GET", "/").status == 200


def test_long_header_name_and_value_within_size(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    name, value = "X-" + "n" * 6000, "v" * 6000
    with Conn(st.port) as c:
        r = c.request("GET", "/long", [(name, value)])
    assert r.status in (200, 431), r
    if r.status == 200:
        assert up.requests[0].header(name) == value
