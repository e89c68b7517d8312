"""Proxy core: keep-alive, HTTP/1.0, chunked both ways, pipelining,
bodiless responses, 100-continue, hop-by-hop headers, X-Forwarded-*,
x-request-id and the Upgrade tunnel, against real loopback upstreams."""
from httpclient import Conn, build_request, chunked_body
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


def test_get_keepalive_several_requests(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for i in range(5):
            r = c.request("GET", "/item/%d?q=%d" % (i, i))
            assert r.status == 200
            assert r.json()["method"] == "GET"
            assert r.json()["path"] == "/item/%d?q=%d" % (i, i)
    assert [q.path for q in up.requests] == ["/item/%d?q=%d" % (i, i) for i in range(5)]


def test_post_keepalive_bodies_intact(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for i in range(4):
            body = bytes((i * 7 + j) % 256 for j in range(1000 + i * 333))
            r = c.request("POST", "/p%d" % i, [("Content-Type", "application/octet-stream")], body)
            assert r.status == 200
            assert r.json()["body"].encode("latin-1") == body
    assert len(up.requests) == 4


def test_http10_client(shadowtee, upstream):
    up = upstream("fixed", body=b"ten-four")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/old", version="HTTP/1.0"))
        r = c.response()
        assert r.status == 200
        assert r.body == b"ten-four"
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        # A 1.0 request without keep-alive ends with the connection.
        rest, how = c.read_to_close(3)
        assert how != "timeout" and rest == b""


def test_http10_keepalive_client(shadowtee, upstream):
    up = upstream("fixed", body=b"again")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for _ in range(2):
            c.send(build_request("GET", "/", [("Connection", "keep-alive")], version="HTTP/1.0"))
            r = c.response()
            assert r.status == 200 and r.body == b"again"


def test_chunked_upload_arrives_intact(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    pieces = [b"first-", b"x" * 5000, b"", b"\r\n0\r\n", bytes(range(256)), b"end"]
    want = b"".join(pieces)
    with Conn(st.port) as c:
        c.send(build_request("POST", "/up", [("Transfer-Encoding", "chunked")], chunked_body(pieces)))
        r = c.response()
        assert r.status == 200
        assert r.json()["body"].encode("latin-1") == want
        # The connection stays usable after a chunked upload.
        assert c.request("GET", "/after").json()["path"] == "/after"
    assert up.requests[0].body == want


def test_chunked_response_to_http11_client(shadowtee, upstream):
    body = b"".join(b"line %d\n" % i for i in range(300))
    up = upstream("fixed", body=body, framing="chunked", chunk_size=13)
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for _ in range(2):
            r = c.request("GET", "/c")
            assert r.status == 200 and r.complete
            assert r.body == body


def test_chunked_response_to_http10_client(shadowtee, upstream):
    body = b"".join(b"chunk %d;" % i for i in range(200))
    up = upstream("fixed", body=body, framing="chunked", chunk_size=11)
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/c", version="HTTP/1.0"))
        r = c.response()
        assert r.status == 200
        # A 1.0 client does not understand chunked: length- or close-delimited.
        assert "chunked" not in (r.header("transfer-encoding") or "").lower()
        assert r.body == body


def test_pipelined_requests_answered_in_order(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/one") + build_request("POST", "/two", body=b"2222")
               + build_request("GET", "/three") + build_request("DELETE", "/four"))
        got = [c.response().json() for _ in range(4)]
    assert [g["path"] for g in got] == ["/one", "/two", "/three", "/four"]
    assert got[1]["body"] == "2222"


def _bodiless_then_next(st, method, path):
    with Conn(st.port) as c:
        c.send(build_request(method, path))
        head = c.read_head()
        # No body bytes may follow: the very next bytes are the next response.
        c.send(build_request("GET", "/next"))
        r2 = c.response()
        return head, r2


def test_head_response_has_no_body(shadowtee, upstream):
    up = upstream("fixed", body=b"B" * 500)
    st = shadowtee(primary=up.addr)
    head, r2 = _bodiless_then_next(st, "HEAD", "/h")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 500" in head.lower()
    assert r2.status == 200 and r2.body == b"B" * 500


def test_204_and_304_have_no_body(shadowtee, upstream):
    for status in (204, 304):
        up = upstream("fixed", status=status, body=b"C" * 50, headers=[("ETag", '"v1"')])
        st = shadowtee(primary=up.addr)
        head, r2 = _bodiless_then_next(st, "GET", "/s")
        assert head.startswith(b"HTTP/1.1 %d" % status)
        assert r2.status == status  # the next response parsed cleanly: no stray bytes
        assert len(up.requests) == 2


def test_expect_100_continue(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    body = b"payload-after-continue"
    with Conn(st.port, timeout=5) as c:
        c.send(build_request("POST", "/e", [("Expect", "100-continue"),
                                            ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.startswith(b"HTTP/1.1 100"), interim
        c.send(body)
        r = c.response()
        assert r.status == 200
        assert r.json()["body"].encode() == body


def test_hop_by_hop_request_headers_removed(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        r = c.request("GET", "/hop", [
            ("Connection", "keep-alive, X-Hop-Named"),
            ("X-Hop-Named", "drop-me"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c-not-requested"),
            ("X-End-To-End", "keep-me"),
            ("Accept", "application/json"),
            ("Cookie", "a=b"),
            ("User-Agent", "st-test/1"),
        ])
        assert r.status == 200
    got = {k.lower(): v for k, v in up.requests[0].headers}
    for h in ("x-hop-named", "keep-alive", "te", "trailer", "proxy-connection", "upgrade"):
        assert h not in got, "hop-by-hop %s reached the upstream: %r" % (h, got)
    assert "x-hop-named" not in got.get("connection", "").lower()
    assert got["host"] == "test.local"
    assert got["x-end-to-end"] == "keep-me"
    assert got["accept"] == "application/json"
    assert got["cookie"] == "a=b"
    assert got["user-agent"] == "st-test/1"


def test_hop_by_hop_response_headers_removed(shadowtee, upstream):
    up = upstream("fixed", body=b"ok", headers=[
        ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "1"), ("Keep-Alive", "timeout=9"),
        ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T"), ("Upgrade", "foo"),
        ("X-Resp-End", "kept"), ("Cache-Control", "no-store")])
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"ok"
        names = {k.lower() for k, _ in r.headers}
        for h in ("x-resp-hop", "keep-alive", "proxy-connection", "trailer", "upgrade"):
            assert h not in names, "hop-by-hop %s reached the client" % h
        assert r.header("x-resp-end") == "kept"
        assert r.header("cache-control") == "no-store"
        # Still keep-alive for the client.
        assert c.request("GET", "/2").status == 200


def test_x_forwarded_for_and_proto(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.request("GET", "/a")
        c.request("GET", "/b", [("X-Forwarded-For", "203.0.113.7")])
    first, second = up.requests
    assert first.header("x-forwarded-for") == "127.0.0.1"
    assert first.header("x-forwarded-proto") == "http"
    xff = ",".join(second.headers_named("x-forwarded-for")).replace(" ", "")
    assert xff == "203.0.113.7,127.0.0.1"


def test_request_id_kept_when_present(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.request("GET", "/", [("X-Request-Id", "abc-123-keep")])
    assert up.requests[0].headers_named("x-request-id") == ["abc-123-keep"]


def test_request_id_generated_unique(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for i in range(30):
            assert c.request("GET", "/%d" % i).status == 200
    with Conn(st.port) as c:
        assert c.request("GET", "/other-conn").status == 200
    ids = [q.header("x-request-id") for q in up.requests]
    assert all(ids), ids
    assert all(len(i.strip()) > 0 for i in ids)
    assert len(set(ids)) == len(ids), "x-request-id repeats: %r" % ids


def test_upgrade_101_becomes_byte_tunnel(shadowtee, upstream):
    up = upstream("upgrade")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/ws", [
            ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
        r = c.response()
        assert r.status == 101
        assert (r.header("upgrade") or "").lower() == "websocket"
        # Arbitrary (non-HTTP) bytes both ways, several rounds.
        for i in range(5):
            msg = bytes([0x81, 0x05]) + b"hi-%02d" % i + b"\x00\xff\r\n\r\n"
            c.send(msg)
            assert c.read_exact(len(msg)) == msg
    req = up.requests[0]
    assert req.header("upgrade") == "websocket"
    assert "upgrade" in (req.header("connection") or "").lower()


def test_close_delimited_upstream_response(shadowtee, upstream):
    body = b"no length, ends with the connection\n" * 50
    up = upstream("fixed", body=body, framing="close")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        r = c.request("GET", "/eof")
        assert r.status == 200 and r.body == body
        if r.close_delimited:
            return
        # Re-framed (chunked or a length): the connection stays usable unless
        # the proxy said it would close it.
        if "close" in (r.header("connection") or "").lower():
            assert c.closed_within(3)
        else:
            assert c.request("GET", "/eof2").body == body


def test_concurrent_connections_two_workers(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, workers=2)
    conns = [Conn(st.port) for _ in range(8)]
    try:
        for round_ in range(3):
            for i, c in enumerate(conns):
                c.send(build_request("GET", "/c%d/r%d" % (i, round_)))
            for i, c in enumerate(conns):
                assert c.response().json()["path"] == "/c%d/r%d" % (i, round_)
    finally:
        for c in conns:
            c.close()
    assert len(up.requests) == 24


def test_chunked_response_with_trailers_then_next_request(shadowtee, upstream):
    body = b"with trailers " * 20
    up = upstream("fixed", body=body, framing="chunked", trailers=[("X-Checksum", "abc123")])
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for _ in range(3):
            r = c.request("GET", "/t")
            assert r.status == 200 and r.complete and r.body == body


def test_early_upstream_answer_before_body_reaches_client(shadowtee, upstream):
    up = upstream("early", status=401, body=b"no credentials")
    st = shadowtee(primary=up.addr)
    with Conn(st.port, timeout=10) as c:
        c.send(build_request("POST", "/upload", [("Content-Length", str(1 << 20))]))
        try:
            c.send(b"z" * (1 << 20))
        except OSError:
            pass  # the proxy may stop reading once the answer is in
        r = c.response()
    assert r.status == 401 and r.body == b"no credentials"


def test_upstream_connection_close_each_response(shadowtee, upstream):
    up = upstream("echo", always_close=True)
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for i in range(4):
            r = c.request("GET", "/%d" % i)
            assert r.status == 200 and r.json()["path"] == "/%d" % i
            if "close" in (r.header("connection") or "").lower():
                assert c.closed_within(3)
                return
    assert len(up.requests) == 4


def test_client_connection_close_honoured(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        r = c.request("GET", "/bye", [("Connection", "close")])
        assert r.status == 200
        assert "close" in (r.header("connection") or "").lower()
        assert c.closed_within(3)


def test_client_half_close_still_gets_response(shadowtee, upstream):
    import socket as _socket
    up = upstream("fixed", body=b"half-closed is fine", delay=0.2)
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/half"))
        c.sock.shutdown(_socket.SHUT_WR)
        r = c.response()
    assert r.status == 200 and r.body == b"half-closed is fine"


def test_many_and_duplicate_headers_kept_in_order(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    hs = [("X-H%03d" % i, "value-%d" % i) for i in range(100)]
    hs += [("X-Dup", "one"), ("X-Dup", "two"), ("Set-Something", "a=b; c=d")]
    with Conn(st.port) as c:
        assert c.request("GET", "/h", hs).status == 200
    got = [(k, v) for k, v in up.requests[0].headers if k.lower().startswith(("x-h", "x-dup", "set-something"))]
    assert got == hs


def test_request_target_passed_verbatim(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    targets = ["/a%2Fb/../c?q=a+b&r=%20", "/%E2%82%AC?x=[1]", "/p;matrix=1?", "/?", "/double//slash"]
    with Conn(st.port) as c:
        for t in targets:
            assert c.request("GET", t).status == 200
    assert [q.path for q in up.requests] == targets


def test_request_id_unique_across_workers_and_processes(shadowtee, upstream):
    up = upstream("echo")
    proxies = [shadowtee(primary=up.addr, workers=2), shadowtee(primary=up.addr, workers=2)]
    conns = [Conn(p.port) for p in proxies for _ in range(4)]
    try:
        for _ in range(25):
            for c in conns:
                c.send(build_request("GET", "/id"))
            for c in conns:
                assert c.response().status == 200
    finally:
        for c in conns:
            c.close()
    ids = [q.header("x-request-id") for q in up.requests]
    assert len(ids) == 200 and all(ids)
    assert len(set(ids)) == 200, "duplicate generated x-request-id across workers/processes"


def test_chunked_response_to_http10_keepalive_client(shadowtee, upstream):
    body = b"".join(b"piece %d|" % i for i in range(100))
    up = upstream("fixed", body=body, framing="chunked", chunk_size=9)
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        for _ in range(2):
            c.send(build_request("GET", "/c", [("Connection", "keep-alive")], version="HTTP/1.0"))
            r = c.response()
            assert r.status == 200 and r.body == body
            assert "chunked" not in (r.header("transfer-encoding") or "").lower()
            if r.close_delimited:  # the only honest way without a length: close
                assert c.eof
                return
            assert "keep-alive" in (r.header("connection") or "").lower(), r.headers
