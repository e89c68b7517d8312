"""Unix-domain socket upstreams: --primary unix:/path (gunicorn --bind
unix:... in the stable pod), the noise replica and the shadow likewise.

Real servers on real socket files in a temp directory. A socket that is not
there is a 502 with one clear log line and /readyz 503, until it appears; a
path longer than sun_path holds is refused at start-up with exit 2.
"""
import os
import subprocess
import tempfile

import pytest

from conftest import free_port, shadowtee_bin
from httpclient import Conn, get, metric, metrics
from upstreams import Upstream, upstream, wait_for, watchdog  # noqa: F401  (fixtures)

SUN_PATH_MAX = 107  # bytes of a path that fit in sockaddr_un.sun_path with its NUL


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="st-unix-")
    yield d
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)


def test_primary_over_a_unix_socket(shadowtee, upstream, sockdir):
    """Requests, a body, keep-alive reuse of the one upstream connection, and
    /readyz, all over the socket."""
    up = upstream("echo", unix=os.path.join(sockdir, "app.sock"))
    st = shadowtee(primary=up.addr)
    with Conn(st.port) as c:
        r = c.request("GET", "/hello?x=1")
        assert r.status == 200
        assert r.json()["path"] == "/hello?x=1"
        body = b'{"features": [1, 2, 3]}' * 1000
        r = c.request("POST", "/predict", [("Content-Type", "application/json")], body)
        assert r.status == 200
        assert r.json()["body_len"] == len(body)
        for i in range(3):
            assert c.request("GET", "/k%d" % i).status == 200
    assert len(up.requests) == 5
    assert len({q.conn_id for q in up.requests}) == 1  # one pooled connection
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_upstream_connects_total", pool="primary") == 1
    assert get(st.admin_port, "/readyz").status == 200


def test_shadow_and_noise_over_unix_sockets(shadowtee, upstream, sockdir):
    up = upstream("echo", unix=os.path.join(sockdir, "stable.sock"))
    sh = upstream("echo", unix=os.path.join(sockdir, "shadow.sock"))
    no = upstream("echo", unix=os.path.join(sockdir, "noise.sock"))
    st = shadowtee(primary=up.addr, shadow=sh.addr, noise_upstream=no.addr)
    with Conn(st.port) as c:
        for i in range(4):
            assert c.request("POST", "/m%d" % i, body=b'{"i": %d}' % i).status == 200
    assert sh.wait_requests(4) == 4
    assert no.wait_requests(4) == 4
    assert sorted(q.path for q in sh.requests) == ["/m%d" % i for i in range(4)]
    # the copies may arrive out of order (two in flight on two connections)
    first = next(q for q in sh.requests if q.path == "/m0")
    assert first.header("x-shadowtee-mirror") == "1"
    assert first.body == b'{"i": 0}'
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_shadow_errors_total") == 0
    assert metric(m, "shadowtee_noise_requests_total") == 4


def test_missing_socket_is_502_with_a_clear_line_until_it_appears(shadowtee, sockdir):
    """The app has not bound its socket yet (containers start in any order):
    the proxy starts with a warning, answers 502 and logs the path and the
    error, /readyz says 503; once the socket exists both recover without a
    restart."""
    path = os.path.join(sockdir, "late.sock")
    st = shadowtee(primary="unix:" + path)
    assert "upstream socket does not exist yet" in st.proc.stderr()
    assert get(st.port, "/early").status == 502
    assert wait_for(lambda: get(st.admin_port, "/readyz").status == 503, 10)
    assert b"primary unreachable" in get(st.admin_port, "/readyz").body
    assert wait_for(lambda: "every address failed" in st.proc.stderr(), 10)  # the log's ring drains off the loop
    lines = [ln for ln in st.proc.stderr().splitlines() if "every address failed" in ln]
    assert len(lines) == 1, st.proc.stderr()
    assert "upstream=unix:%s" % path in lines[0], lines[0]
    assert "unix:%s ENOENT" % path in lines[0], lines[0]
    up = Upstream("echo", unix=path).start()
    try:
        assert wait_for(lambda: get(st.admin_port, "/readyz").status == 200, 10)
        r = get(st.port, "/late")
        assert r.status == 200
        assert r.json()["path"] == "/late"
    finally:
        up.stop()
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_upstream_errors_total", reason="connect") == 1


def test_socket_that_refuses_is_502(shadowtee, sockdir):
    """A socket file nobody listens on any more (the app died): refused, 502."""
    path = os.path.join(sockdir, "dead.sock")
    up = Upstream("echo", unix=path)
    up.lsock.close()  # the file stays, nothing accepts on it
    assert os.path.exists(path)
    st = shadowtee(primary="unix:" + path)
    assert get(st.port, "/x").status == 502
    assert wait_for(lambda: "unix:%s ECONNREFUSED" % path in st.proc.stderr(), 5), st.proc.stderr()


def test_longest_path_that_fits_works(shadowtee, upstream, sockdir):
    """A path of exactly SUN_PATH_MAX bytes is accepted and used as is."""
    d = sockdir
    while len(d) < SUN_PATH_MAX - 20:
        d = os.path.join(d, "d" * min(40, SUN_PATH_MAX - 20 - len(d)))
        os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "s" * (SUN_PATH_MAX - len(d) - 1))
    assert len(path.encode()) == SUN_PATH_MAX
    up = upstream("echo", unix=path)
    try:
        st = shadowtee(primary=up.addr)
        assert get(st.port, "/long").status == 200
        assert up.requests[0].path == "/long"
    finally:
        up.stop()
        p = d
        while p != sockdir:
            os.rmdir(p)
            p = os.path.dirname(p)


def _run(args):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWTEE_")}
    return subprocess.run([shadowtee_bin()] + list(args), capture_output=True, text=True, timeout=10,
                          env=e, stdin=subprocess.DEVNULL)


TOO_LONG = "unix:/tmp/" + "x" * (SUN_PATH_MAX + 1 - len("/tmp/"))


@pytest.mark.parametrize("flag", ["--primary", "--shadow", "--noise-upstream"])
def test_path_too_long_for_sun_path_exits_2(flag):
    args = {"--primary": "127.0.0.1:1", "--shadow": "127.0.0.1:2", "--noise-upstream": "127.0.0.1:3"}
    args[flag] = TOO_LONG
    argv = ["--listen", "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port()]
    for k, v in args.items():
        argv += [k, v]
    res = _run(argv)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert flag in lines[0] and "sun_path" in lines[0] and "at most 107" in lines[0], lines[0]


@pytest.mark.parametrize("flag", ["--listen", "--admin"])
def test_unix_is_refused_where_the_proxy_listens(flag):
    argv = {"--listen": "127.0.0.1:%d" % free_port(), "--admin": "127.0.0.1:%d" % free_port(),
            "--primary": "127.0.0.1:1"}
    argv[flag] = "unix:/tmp/st-listen.sock"
    res = _run([x for kv in argv.items() for x in kv])
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert flag in res.stderr and "unix:" in res.stderr, res.stderr
