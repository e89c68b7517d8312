"""The command line contract: bad flags and values exit 2 with one clear
message, env vars SHADOWTEE_<FLAG> work, flags win over env, --help and
--version exit 0, and the DUR / SIZE forms are accepted."""
import os
import socket
import subprocess

import pytest

from conftest import free_port, shadowtee_bin
from httpclient import Conn, get
from resolver import hosts  # noqa: F401  (fixture)
from upstreams import upstream, wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


def _run(args, env=None, timeout=3):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWTEE_")}
    e.update(env or {})
    return subprocess.run([shadowtee_bin()] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=e, stdin=subprocess.DEVNULL)


def _base(primary="127.0.0.1:1"):
    return ["--listen", "127.0.0.1:%d" % free_port(), "--primary", primary,
            "--admin", "127.0.0.1:%d" % free_port()]


BAD = [
    (["--no-such-flag"], "no-such-flag"),
    (["--workers", "abc"], "workers"),
    (["--workers", "-1"], "workers"),
    (["--log-level", "verbose"], "log-level"),
    (["--max-header-size", "12Q"], "max-header-size"),
    (["--max-uri-size", ""], "max-uri-size"),
    (["--max-body-size", "-5"], "max-body-size"),
    (["--idle-timeout", "5x"], "idle-timeout"),
    (["--client-header-timeout", "ms"], "client-header-timeout"),
    (["--upstream-timeout", "-1s"], "upstream-timeout"),
    (["--mirror-percent", "101"], "mirror-percent"),
    (["--mirror-percent", "-0.5"], "mirror-percent"),
    (["--mirror-percent", "ten"], "mirror-percent"),
    (["--shadow-host-suffix", "prepend"], "shadow-host-suffix"),
    (["--shadow", "not a host"], "shadow"),
    (["--mirror-max-body", "8T"], "mirror-max-body"),
    (["--drain-timeout"], "drain-timeout"),  # missing value
]


def _assert_clear_error(res, needle):
    assert res.returncode == 2, "exit %s, stderr %r" % (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, "expected one clear message, got %r" % res.stderr
    assert needle.lower() in res.stderr.lower(), "message does not name %r: %r" % (needle, res.stderr)
    assert "AddressSanitizer" not in res.stderr and "runtime error" not in res.stderr


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) or "empty" for a, _ in BAD])
def test_bad_flag_or_value_exits_2(args, needle):
    _assert_clear_error(_run(_base() + args), needle)


def test_bad_listen_address_exits_2():
    res = _run(["--listen", "127.0.0.1:99999", "--primary", "127.0.0.1:1"])
    _assert_clear_error(res, "listen")
    res = _run(["--listen", "nonsense", "--primary", "127.0.0.1:1"])
    _assert_clear_error(res, "listen")


def test_bad_primary_exits_2():
    res = _run(["--listen", "127.0.0.1:%d" % free_port(), "--primary", "host-without-port:"])
    _assert_clear_error(res, "primary")


def test_missing_primary_exits_2():
    res = _run(["--listen", "127.0.0.1:%d" % free_port()])
    _assert_clear_error(res, "primary")


def test_bad_env_value_exits_2():
    res = _run(_base(), env={"SHADOWTEE_WORKERS": "many"})
    _assert_clear_error(res, "workers")


def test_help_exits_0():
    res = _run(["--help"])
    assert res.returncode == 0
    out = res.stdout + res.stderr
    for flag in ("--listen", "--primary", "--shadow", "--mirror-percent", "--max-body-size",
                 "--drain-timeout"):
        assert flag in out, flag


def test_version_exits_0():
    res = _run(["--version"])
    assert res.returncode == 0
    assert "0.1.0" in res.stdout + res.stderr


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_env_vars_configure_everything(procs, upstream):
    up = upstream("echo")
    port, admin = free_port(), free_port()
    env = {"SHADOWTEE_LISTEN": "127.0.0.1:%d" % port, "SHADOWTEE_PRIMARY": up.addr,
           "SHADOWTEE_ADMIN": "127.0.0.1:%d" % admin, "SHADOWTEE_WORKERS": "1",
           "SHADOWTEE_MAX_URI_SIZE": "1K"}
    procs([shadowtee_bin()], env=env, wait_ports=(port, admin), ours=True)
    with Conn(port) as c:
        assert c.request("GET", "/env").json()["path"] == "/env"
        c.send(b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.response().status == 414  # SHADOWTEE_MAX_URI_SIZE applied
    assert get(admin, "/healthz").status == 200


def test_flags_win_over_env(procs, upstream):
    up = upstream("echo")
    env_port, flag_port, admin = free_port(), free_port(), free_port()
    env = {"SHADOWTEE_LISTEN": "127.0.0.1:%d" % env_port, "SHADOWTEE_PRIMARY": "127.0.0.1:1",
           "SHADOWTEE_MAX_URI_SIZE": "1K"}
    procs([shadowtee_bin(), "--listen", "127.0.0.1:%d" % flag_port, "--primary", up.addr,
           "--admin", "127.0.0.1:%d" % admin, "--workers", "1", "--max-uri-size", "16K"],
          env=env, wait_ports=(flag_port, admin), ours=True)
    assert not _answers(env_port)
    with Conn(flag_port) as c:
        r = c.request("GET", "/" + "u" * 2000)
        assert r.status == 200  # flag --max-uri-size beat the env, primary from the flag
        assert r.json()["path"] == "/" + "u" * 2000


def test_duration_and_size_forms_accepted(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, client_header_timeout="250ms", idle_timeout="1m",
                   upstream_timeout="1h", upstream_connect_timeout="2", drain_timeout="25s",
                   max_header_size="16K", max_uri_size="8192", max_body_size="1G",
                   mirror_max_body="8M")
    with Conn(st.port) as c:
        assert c.request("POST", "/", body=b"x" * 100).status == 200


def test_shadow_as_url_accepted(shadowtee, upstream):
    up = upstream("echo")
    sh = upstream("echo")
    st = shadowtee(primary=up.addr, shadow="http://%s" % sh.addr)
    with Conn(st.port) as c:
        assert c.request("GET", "/").status == 200
    assert sh.wait_requests(1) >= 1


@pytest.mark.parametrize("hosts_file", ["this machine's", "Debian's standard"])
def test_primary_and_shadow_by_hostname(shadowtee, upstream, hosts, hosts_file):
    """localhost with this machine's /etc/hosts, and with Debian's standard
    one (as in every Kubernetes pod: localhost is ::1 first, then 127.0.0.1)
    through the test resolver, while both upstreams listen on 127.0.0.1 only."""
    env = None
    if hosts_file == "Debian's standard":
        hosts.set({"localhost": ["::1", "127.0.0.1"]})
        env = hosts.env
    up = upstream("echo")
    sh = upstream("echo")
    st = shadowtee(primary="localhost:%d" % up.port, shadow="localhost:%d" % sh.port, env=env)
    with Conn(st.port) as c:
        assert c.request("GET", "/named").json()["path"] == "/named"
    assert sh.wait_requests(1) == 1


def test_listen_on_ipv6_loopback(procs, upstream):
    from conftest import wait_port
    up = upstream("echo")
    port, admin = free_port(), free_port()
    procs([shadowtee_bin(), "--listen", "[::1]:%d" % port, "--primary", up.addr,
           "--admin", "127.0.0.1:%d" % admin, "--workers", "1"], wait_ports=(admin,), ours=True)
    wait_port(port, host="::1")
    with Conn(port, host="::1") as c:
        r = c.request("GET", "/v6")
    assert r.status == 200
    assert up.requests[0].header("x-forwarded-for") == "::1"


def test_workers_zero_means_one_per_cpu(shadowtee, upstream):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, workers=0)
    conns = [Conn(st.port) for _ in range(4)]
    try:
        for i, c in enumerate(conns):
            assert c.request("GET", "/w%d" % i).status == 200
    finally:
        for c in conns:
            c.close()


def test_access_log_one_line_per_request(shadowtee, upstream):
    import re
    up = upstream("echo")
    st = shadowtee(primary=up.addr, access_log=True)
    with Conn(st.port) as c:
        for path in ("/one", "/two?x=1", '/q"uote'):
            c.request("GET", path)
        c.request("GET", "/status/404")

    def lines():
        return [ln for ln in st.proc.stderr().splitlines() if "msg=access" in ln]

    assert wait_for(lambda: len(lines()) >= 4, timeout=3), st.proc.stderr()[-2000:]
    got = lines()
    assert len(got) == 4
    assert "/one" in got[0] and "status=200" in got[0]
    assert "status=404" in got[3]
    for ln in got:  # each line stays parseable: quotes balanced once escapes are dropped
        assert re.sub(r'\\.', "", ln).count('"') % 2 == 0, ln


def test_env_configures_the_tee(procs, upstream):
    up = upstream("echo")
    sh = upstream("echo")
    port, admin = free_port(), free_port()
    env = {"SHADOWTEE_LISTEN": "127.0.0.1:%d" % port, "SHADOWTEE_PRIMARY": up.addr,
           "SHADOWTEE_ADMIN": "127.0.0.1:%d" % admin, "SHADOWTEE_WORKERS": "1",
           "SHADOWTEE_SHADOW": sh.addr, "SHADOWTEE_MIRROR_METHODS": "POST",
           "SHADOWTEE_SHADOW_HOST_SUFFIX": "append"}
    procs([shadowtee_bin()], env=env, wait_ports=(port, admin), ours=True)
    with Conn(port) as c:
        c.request("GET", "/not-mirrored", [("Host", "api:80")], host=None)
        c.request("POST", "/mirrored", [("Host", "api:80")], body=b"x", host=None)
    assert sh.wait_requests(1) == 1
    assert sh.settle(quiet=0.3) == 1
    assert sh.requests[0].path == "/mirrored"
    assert sh.requests[0].header("host") == "api-shadow:80"
