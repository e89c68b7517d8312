"""Safe defaults at the edge (issue 15): CONNECT refused, Upgrade limited to
--allow-upgrade, HTTP/0.9 lines answered at once, request-line / field-name /
Host grammar, absolute-form targets rewritten to origin-form.

Every case is checked on the wire, byte for byte: exactly what the client
got and that the connection then closed, exactly what the primary and the
shadow (mirroring on) received, and the exact value of each
shadowtee_requests_rejected_total{reason} counter afterwards."""
import collections

from httpclient import Conn, build_request, metric, metrics
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 60

REASONS = ("connect", "upgrade", "http09", "bad_request_line", "bad_header_name",
           "bad_header_value", "bad_host", "bare_lf", "bare_cr", "bad_framing", "malformed",
           "unknown_method", "transfer_coding", "version", "head_too_large", "uri_too_long",
           "body_too_large", "timeout")
STATUS = {"connect": 405, "unknown_method": 501, "transfer_coding": 501, "version": 505}
REASON_PHRASE = {400: "Bad Request", 405: "Method Not Allowed", 501: "Not Implemented",
                 505: "HTTP Version Not Supported"}

ID = b"X-Request-Id: t-edge\r\n"
H = b"Host: app.example\r\n"

# (name, bytes sent, reason, whether the answer carries the client's
# x-request-id: only a head that was parsed whole has one, so every such case
# sends one; a head refused earlier has none to give back)
REFUSED = [
    ("connect", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n" + ID + b"\r\n", "connect", True),
    ("connect_http10", b"CONNECT [::1]:443 HTTP/1.0\r\n" + ID + b"\r\n", "connect", True),
    ("http09", b"GET /\r\n", "http09", False),
    ("http09_lf_only", b"GET /index.html\n", "http09", False),
    ("http09_cr_only", b"GET /\r", "http09", False),
    ("double_space_before_target", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("double_space_before_version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("tab_separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("trailing_space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", "bad_request_line", False),
    ("lowercase_version", b"GET / http/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("malformed_version", b"GET / HTTP/1.10\r\n" + H + b"\r\n", "bad_request_line", False),
    ("unknown_minor_version", b"GET / HTTP/1.2\r\n" + H + b"\r\n", "bad_request_line", False),
    ("fragment_in_target", b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("8bit_in_target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("asterisk_for_get", b"GET * HTTP/1.1\r\n" + H + ID + b"\r\n", "bad_request_line", True),
    ("authority_form_for_get", b"GET a.example:80 HTTP/1.1\r\n" + H + b"\r\n", "bad_request_line", False),
    ("absolute_form_other_scheme", b"GET ftp://a.example/x HTTP/1.1\r\n" + H + ID + b"\r\n",
     "bad_request_line", True),
    ("empty_header_name", b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", "bad_header_name", False),
    ("non_token_header_name", b"GET / HTTP/1.1\r\n" + H + b"X@Y: v\r\n\r\n", "bad_header_name", False),
    ("space_in_header_name", b"GET / HTTP/1.1\r\n" + H + b"X Y: v\r\n\r\n", "bad_header_name", False),
    ("del_in_header_name", b"GET / HTTP/1.1\r\n" + H + b"X\x7fY: v\r\n\r\n", "bad_header_name", False),
    ("space_before_colon", b"GET / HTTP/1.1\r\n" + H + b"Content-Length : 0\r\n\r\n",
     "bad_header_name", False),
    ("obs_fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", "bad_header_name", False),
    ("line_without_colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", "bad_header_name", False),
    ("missing_host_http11", b"GET / HTTP/1.1\r\n" + ID + b"\r\n", "bad_host", True),
    ("two_hosts", b"GET / HTTP/1.1\r\n" + H + b"Host: other.example\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_with_space", b"GET / HTTP/1.1\r\nHost: a b\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_with_userinfo", b"GET / HTTP/1.1\r\nHost: u@a.example\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_with_path", b"GET / HTTP/1.1\r\nHost: a.example/x\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_port_not_digits", b"GET / HTTP/1.1\r\nHost: a.example:8x\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_port_too_large", b"GET / HTTP/1.1\r\nHost: a.example:99999\r\n" + ID + b"\r\n", "bad_host", True),
    ("host_empty", b"GET / HTTP/1.1\r\nHost: \r\n" + ID + b"\r\n", "bad_host", True),
    ("host_ipv6_unclosed", b"GET / HTTP/1.1\r\nHost: [::1\r\n" + ID + b"\r\n", "bad_host", True),
    ("absolute_form_userinfo", b"GET http://u@a.example/ HTTP/1.1\r\n" + H + ID + b"\r\n", "bad_host", True),
    ("bare_lf", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\nX-B: c\r\n\r\n", "bare_lf", False),
    ("bare_cr", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rX-B: c\r\n\r\n", "bare_cr", False),
    ("lowercase_method", b"get / HTTP/1.1\r\n" + H + b"\r\n", "unknown_method", False),
    ("unknown_method", b"FROB / HTTP/1.1\r\n" + H + b"\r\n", "unknown_method", False),
    ("transfer_coding", b"POST / HTTP/1.1\r\n" + H + ID + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
     "transfer_coding", True),
    ("http2_in_text", b"GET / HTTP/2.0\r\n" + H + b"\r\n", "version", False),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "version", False),
]


def refusal(reason, rid):
    """The exact bytes of the proxy's own answer for `reason`."""
    status = STATUS.get(reason, 400)
    phrase = REASON_PHRASE[status]
    body = ("%d %s\n" % (status, phrase)).encode()
    head = "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (
        status, phrase, len(body))
    if rid:
        head += "x-request-id: t-edge\r\n"
    if status == 405:
        head += "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
    head += "Connection: close\r\n\r\n"
    return head.encode() + body


def forwarded(request_line, host, rid, mirror=False, extra=b""):
    """The exact head the proxy sends upstream for a body-less request whose
    only header besides Host is X-Request-Id (from 127.0.0.1, plain HTTP)."""
    head = request_line + b"\r\nHost: " + host + b"\r\n" + extra
    head += b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nx-request-id: " + rid + b"\r\n"
    if mirror:
        head += b"x-shadowtee-mirror: 1\r\n"
    return head + b"\r\n"


def rejected(st):
    m = metrics(st.admin_port)
    return {r: metric(m, "shadowtee_requests_rejected_total", reason=r) for r in REASONS}


def assert_only(upstream_server, heads):
    """The server received these heads and not one byte more."""
    assert sorted(q.raw_head for q in upstream_server.requests) == sorted(heads)
    assert upstream_server.bytes_received == sum(len(h) for h in heads), upstream_server.raw_all()


def test_refusals_byte_exact_and_counted(shadowtee, upstream):
    primary = upstream("echo")
    shadow = upstream("echo")
    # A head the proxy waited on would be answered 408 after 30 s: each read
    # below gives up after 5 s, so "answered at once" is what passes.
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, client_header_timeout="30s")
    for name, data, reason, rid in REFUSED:
        with Conn(st.port, timeout=5) as c:
            c.send(data)
            got, how = c.read_to_close(5)
        assert got == refusal(reason, rid), "%s: got %r" % (name, got)
        assert how == "eof", "%s: connection %s after the answer" % (name, how)
    # Barrier: one good request, mirrored. It is all either upstream ever got.
    with Conn(st.port) as c:
        c.send(b"GET /good HTTP/1.1\r\n" + H + ID + b"\r\n")
        assert c.response().status == 200
    assert shadow.wait_requests(1) == 1
    shadow.settle(quiet=0.3)
    assert_only(primary, [forwarded(b"GET /good HTTP/1.1", b"app.example", b"t-edge")])
    assert_only(shadow, [forwarded(b"GET /good HTTP/1.1", b"app.example", b"t-edge", mirror=True)])
    want = collections.Counter(reason for _, _, reason, _ in REFUSED)
    got = rejected(st)
    assert got == {r: float(want.get(r, 0)) for r in REASONS}, got
    print("rejections by reason:", dict(sorted(want.items())))


def test_http09_line_answered_without_waiting_for_more(shadowtee, upstream):
    """Only the request line is sent and the socket stays open for writing:
    the 400 comes at once (not after --client-header-timeout) and closes."""
    primary = upstream("echo")
    st = shadowtee(primary=primary.addr, client_header_timeout="60s")
    with Conn(st.port, timeout=5) as c:
        c.send(b"GET /old-client\r\n")
        got, how = c.read_to_close(5)
    assert got == refusal("http09", False) and how == "eof", (got, how)
    assert primary.bytes_received == 0
    assert rejected(st)["http09"] == 1


def test_h2c_upgrade_removed_and_connection_stays_http11(shadowtee, upstream):
    """nginx's behaviour: a request asking for h2c is forwarded without
    Upgrade, without the Connection: upgrade token and without the headers
    Connection names (HTTP2-Settings), to the primary and the shadow alike;
    the bytes after it are the next HTTP/1.1 request, not another protocol."""
    primary = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr)
    h2c = (b"POST /h2c HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Request-Id: t-h2c\r\nContent-Length: 5\r\n\r\nhello")
    nxt = b"GET /after HTTP/1.1\r\n" + H + b"X-Request-Id: t-after\r\n\r\n"
    with Conn(st.port) as c:
        c.send(h2c + nxt)  # pipelined: the second request follows the body at once
        r1 = c.response()
        r2 = c.response()
        assert r1.status == 200 and r1.header("upgrade") is None and r1.json()["body"] == "hello"
        assert r2.status == 200 and r2.json()["path"] == "/after"
        assert c.request("GET", "/third").status == 200  # still keep-alive
    assert shadow.wait_requests(3) == 3
    shadow.settle(quiet=0.3)
    h2c_fwd = forwarded(b"POST /h2c HTTP/1.1", b"app.example", b"t-h2c")
    h2c_fwd = h2c_fwd[:-2] + b"Content-Length: 5\r\n\r\n"
    first = [q for q in primary.requests if q.path == "/h2c"]
    assert [q.raw_head for q in first] == [h2c_fwd] and first[0].body == b"hello"
    assert [q.raw_head for q in primary.requests if q.path == "/after"] == [
        forwarded(b"GET /after HTTP/1.1", b"app.example", b"t-after")]
    mirrored = [q for q in shadow.requests if q.path == "/h2c"]
    assert len(mirrored) == 1 and mirrored[0].body == b"hello"
    for name in ("upgrade", "http2-settings", "connection"):
        assert mirrored[0].header(name) is None, name
    assert mirrored[0].header("x-shadowtee-mirror") == "1"
    assert rejected(st) == {r: float(r == "upgrade") for r in REASONS}


def test_101_to_a_protocol_not_allowed_never_becomes_a_tunnel(shadowtee, upstream):
    """A primary that switches anyway (to h2c the client asked for and we
    removed, or to h2c when websocket was asked for) gets the client a 502
    and a closed connection: not one byte after the 101 reaches the client."""
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI-BYTES"
    for offered in (b"h2c", b"websocket"):
        primary = upstream("raw", body=switch)
        st = shadowtee(primary=primary.addr)
        with Conn(st.port) as c:
            c.send(b"GET /switch HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: " + offered
                   + b"\r\n" + ID + b"\r\n")
            got, how = c.read_to_close(5)
        assert got == (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
                       b"x-request-id: t-edge\r\nConnection: close\r\n\r\n502 Bad Gateway\n"), (offered, got)
        assert how == "eof", offered
        want_head = forwarded(b"GET /switch HTTP/1.1", b"app.example", b"t-edge")
        if offered == b"websocket":  # allowed: forwarded with its Upgrade
            want_head = want_head[:-2] + b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        assert [q.raw_head for q in primary.requests] == [want_head], offered
        m = metrics(st.admin_port)
        assert metric(m, "shadowtee_upstream_errors_total", reason="protocol") == 1, offered
        assert metric(m, "shadowtee_requests_rejected_total", reason="upgrade") == (offered == b"h2c")


def test_websocket_upgrade_still_tunnels_and_allow_list_is_the_flag(shadowtee, upstream):
    """The default list lets websocket through end to end; --allow-upgrade
    replaces the list: "" removes every Upgrade, a listed protocol passes."""
    primary = upstream("upgrade")
    st = shadowtee(primary=primary.addr)
    with Conn(st.port) as c:
        c.send(build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        assert c.response().status == 101
        c.send(b"\x81\x05hello")
        assert c.read_exact(7) == b"\x81\x05hello"
    assert primary.requests[-1].header("upgrade") == "websocket"
    assert rejected(st)["upgrade"] == 0

    none = upstream("upgrade")
    st = shadowtee(primary=none.addr, allow_upgrade="")
    with Conn(st.port) as c:
        r = c.request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
        assert r.status == 200 and r.json()["path"] == "/ws"  # answered as plain HTTP
    assert none.requests[-1].header("upgrade") is None
    assert rejected(st)["upgrade"] == 1

    other = upstream("upgrade")
    st = shadowtee(primary=other.addr, allow_upgrade="websocket,x-test")
    with Conn(st.port) as c:
        c.send(build_request("GET", "/x", [("Connection", "Upgrade"), ("Upgrade", "x-test")]))
        assert c.response().status == 101  # the test server names websocket: listed too
        c.send(b"raw")
        assert c.read_exact(3) == b"raw"
    assert other.requests[-1].header("upgrade") == "x-test"
    assert rejected(st)["upgrade"] == 0


def test_connect_tunnels_only_with_allow_connect(shadowtee, upstream):
    """--allow-connect restores the tunnel: the CONNECT reaches the primary
    as sent, its 200 turns the connection into a byte tunnel, and it is
    never mirrored."""
    primary = upstream("upgrade")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, allow_connect=True)
    with Conn(st.port) as c:
        c.send(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n" + ID + b"\r\n")
        assert c.read_head() == b"HTTP/1.1 200 Connection Established\r\n\r\n"
        for i in range(3):
            msg = b"\x16\x03\x01 opaque %d \r\n\r\n" % i
            c.send(msg)
            assert c.read_exact(len(msg)) == msg
    assert [q.raw_head for q in primary.requests] == [
        forwarded(b"CONNECT a.example:443 HTTP/1.1", b"a.example:443", b"t-edge")]
    with Conn(st.port) as c:  # barrier for the shadow
        assert c.request("GET", "/marker").status == 200
    assert shadow.wait_requests(1) == 1
    shadow.settle(quiet=0.3)
    assert [q.path for q in shadow.requests] == ["/marker"]
    assert rejected(st)["connect"] == 0


def test_absolute_form_rewritten_to_origin_form_with_its_authority(shadowtee, upstream):
    """RFC 9112 3.2.2: the target's authority wins over Host. Both upstreams
    see origin-form and one Host, the target's: they can never disagree."""
    primary = upstream("echo")
    shadow = upstream("echo")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_host_suffix="append")
    sent = [
        (b"GET http://a.example/x?y=1 HTTP/1.1\r\nHost: b.example\r\nX-Request-Id: t-1\r\n\r\n",
         b"GET /x?y=1 HTTP/1.1", b"a.example", b"a.example-shadow", b"t-1"),
        (b"GET HTTPS://a.example:8443 HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: t-2\r\n\r\n",
         b"GET / HTTP/1.1", b"a.example:8443", b"a.example-shadow:8443", b"t-2"),
        (b"GET http://a.example?q=1 HTTP/1.1\r\nHost: b.example\r\nX-Request-Id: t-3\r\n\r\n",
         b"GET /?q=1 HTTP/1.1", b"a.example", b"a.example-shadow", b"t-3"),
        (b"OPTIONS http://[::1]:8080 HTTP/1.1\r\nHost: b.example\r\nX-Request-Id: t-4\r\n\r\n",
         b"OPTIONS * HTTP/1.1", b"[::1]:8080", b"[::1]:8080", b"t-4"),
        (b"GET http://a.example/v HTTP/1.0\r\nX-Request-Id: t-5\r\n\r\n",  # 1.0: no Host needed
         b"GET /v HTTP/1.1", b"a.example", b"a.example-shadow", b"t-5"),
    ]
    with Conn(st.port) as c:  # all on one keep-alive connection
        for data, *_ in sent[:4]:
            c.send(data)
            assert c.response().status == 200
    with Conn(st.port) as c:
        c.send(sent[4][0])
        assert c.response().status == 200
    assert shadow.wait_requests(len(sent)) == len(sent)
    shadow.settle(quiet=0.3)
    assert_only(primary, [forwarded(line, host, rid) for _, line, host, _, rid in sent])
    assert_only(shadow, [forwarded(line, shost, rid, mirror=True) for _, line, _, shost, rid in sent])
    assert rejected(st) == {r: 0.0 for r in REASONS}
