"""Restart on the same port without a refused or reset connection (issue 15).

--handover PATH: a new instance takes the running one's listening sockets
(client and admin) over a unix socket, then the old one drains on SIGTERM;
clients hammering the port through the whole sequence see no error. Drain
itself no longer resets a request that was on its way on an idle keep-alive
connection. Misuse (a path that is not a socket, a predecessor listening
elsewhere) fails at start with a clear message.
"""
import os
import signal
import socket
import tempfile
import threading
import time

from conftest import free_port, shadowtee_bin
from httpclient import Conn, build_request, get
from upstreams import upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 60


def _argv(port, admin, primary, path, workers=2, extra=()):
    return [shadowtee_bin(), "--listen", "127.0.0.1:%d" % port, "--primary", primary, "--admin",
            "127.0.0.1:%d" % admin, "--workers", str(workers), "--handover", path,
            "--drain-timeout", "10s"] + list(extra)


def _readyz(admin):
    try:
        return get(admin, "/readyz", timeout=2).status
    except OSError:
        return None


class Load:
    """Client threads: keep-alive connections doing requests back to back
    (a new connection when the server closes one gracefully); every error
    (refused, reset, EOF mid-exchange, bad status) is recorded."""

    def __init__(self, port, threads=4):
        self.port = port
        self.ok = 0
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = Conn(self.port, timeout=5)
                r = conn.request("GET", "/load")
                if r.status != 200 or not r.complete:
                    raise RuntimeError("status %d complete=%s" % (r.status, r.complete))
                with self._lock:
                    self.ok += 1
                if "close" in (r.header("connection") or "").lower():
                    conn.close()
                    conn = None
            except Exception as e:  # counted, the assertion shows them
                with self._lock:
                    self.errors.append(repr(e))
                if conn:
                    conn.close()
                conn = None
        if conn:
            conn.close()

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def count(self):
        with self._lock:
            return self.ok


def test_rolling_restart_under_load(procs, upstream):
    up = upstream("echo")
    port, admin = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="st-ho-")
    path = os.path.join(d, "handover.sock")
    old = procs(_argv(port, admin, up.addr, path), wait_ports=(port, admin), ours=True)
    assert wait_for(lambda: os.path.exists(path), timeout=5)
    with Load(port) as load:
        assert wait_for(lambda: load.count() > 50, timeout=10)
        new = procs(_argv(port, admin, up.addr, path, workers=3), ours=True)
        assert wait_for(lambda: "took over listening sockets" in new.stderr(), timeout=10), new.stderr()
        assert "listen=2 admin=1" in new.stderr()
        assert wait_for(lambda: "handed over to a successor" in old.stderr(), timeout=5)
        n0 = load.count()
        assert wait_for(lambda: load.count() > n0 + 50, timeout=10)
        old.signal(signal.SIGTERM)
        assert old.wait(timeout=15) == 0
        n1 = load.count()
        assert wait_for(lambda: load.count() > n1 + 200, timeout=10), "no progress after the restart"
    assert load.errors == [], load.errors[:10]
    assert _readyz(admin) == 200  # the admin socket lives on in the new instance
    # the new instance serves the path for the next restart
    assert os.path.exists(path)
    third = procs(_argv(port, admin, up.addr, path), ours=True)
    assert wait_for(lambda: "took over listening sockets" in third.stderr(), timeout=10)
    assert "listen=3 admin=1" in third.stderr()  # the three workers' sockets of the second one
    new.signal(signal.SIGTERM)
    assert new.wait(timeout=15) == 0
    assert get(port, "/after-two-restarts").status == 200
    third.stop()
    assert not os.path.exists(path), "the last instance leaves no socket file behind"
    os.rmdir(d)


def test_first_instance_serves_path_and_removes_it(procs, upstream):
    up = upstream("echo")
    port, admin = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="st-ho-")
    path = os.path.join(d, "h.sock")
    st = procs(_argv(port, admin, up.addr, path), wait_ports=(port, admin), ours=True)
    assert wait_for(lambda: os.path.exists(path), timeout=5)
    assert os.stat(path).st_mode & 0o077 == 0  # only its owner may connect
    assert "took over" not in st.stderr()
    assert get(port, "/").status == 200
    assert st.stop() == 0
    assert not os.path.exists(path)
    os.rmdir(d)


def test_path_that_is_not_a_socket_is_refused(procs, upstream):
    up = upstream("echo")
    port, admin = free_port(), free_port()
    with tempfile.NamedTemporaryFile(prefix="st-ho-") as f:
        f.write(b"precious")
        f.flush()
        st = procs(_argv(port, admin, up.addr, f.name), ours=True)
        assert st.wait(timeout=10) != 0
        assert "not a socket" in st.stderr()
        with open(f.name, "rb") as g:
            assert g.read() == b"precious"


def test_predecessor_on_another_port_is_refused(procs, upstream):
    up = upstream("echo")
    port, admin = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="st-ho-")
    path = os.path.join(d, "h.sock")
    procs(_argv(port, admin, up.addr, path), wait_ports=(port, admin), ours=True)
    assert wait_for(lambda: os.path.exists(path), timeout=5)
    other = procs(_argv(free_port(), free_port(), up.addr, path), ours=True)
    assert other.wait(timeout=10) == 2
    assert "does not listen on --listen" in other.stderr()


def test_drain_answers_a_request_sent_on_an_idle_keepalive_connection(procs, upstream):
    """Once draining, a request arriving on a connection that was idle (its
    last response said keep-alive) gets an answer with Connection: close,
    not a reset."""
    up = upstream("echo")
    port, admin = free_port(), free_port()
    argv = [shadowtee_bin(), "--listen", "127.0.0.1:%d" % port, "--primary", up.addr, "--admin",
            "127.0.0.1:%d" % admin, "--drain-timeout", "10s"]
    st = procs(argv, wait_ports=(port, admin), ours=True)
    c = Conn(port, timeout=5)
    r = c.request("GET", "/first")
    assert r.status == 200 and "close" not in (r.header("connection") or "")
    st.signal(signal.SIGTERM)
    assert wait_for(lambda: _readyz(admin) != 200, timeout=5)  # the drain has begun
    c.send(build_request("GET", "/second"))
    r = c.response()  # before: the drain had closed the connection, this read EOF or a reset
    assert r.status == 200 and r.complete
    # with Connection: close when the worker was already draining as the
    # response began; either way the connection then ends with a FIN
    _, how = c.read_to_close(5)
    assert how == "eof"
    c.close()
    assert st.wait(timeout=10) == 0
