"""Shared pieces of the test_regress_*.py files (behaviours the proxy review
found broken, /work/notes/review.md): upstreams that misbehave in ways
`upstreams.Upstream` has no mode for, client-side readers, and a TLS
listener's certificate and clients.

`RawServer`s (answer slowly in pieces, reset the second request of a
connection, stop reading a body, stream a TLS client to death) run one
thread per connection on 127.0.0.1, all stopped and joined at test end.
Fixtures (`raw_upstream`, `tls_cert`) are used by importing them into the
test module, like those of upstreams.py.
"""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import require
from httpclient import metric, metrics
from upstreams import Upstream, sanitized

OPENSSL = shutil.which("openssl")


# ---- raw upstreams -------------------------------------------------------


class RawServer(Upstream):
    """A listener on 127.0.0.1 (free port) that runs handler(sock, server)
    in a thread per accepted connection: `upstreams.Upstream`'s listener,
    connection threads and bounded stop, with the handler in place of its
    HTTP modes. Sockets have a short timeout so a handler can notice the
    stop; use `server.recv()` / `server.read_head()` / `server.send()`,
    which honour it. A readiness probe's bare connect reaches the handler
    too: read_head() then returns None."""

    def __init__(self, handler):
        super().__init__(mode="raw-handler")
        self.handler = handler
        self.start()

    def _serve(self, sock, rec):
        try:
            self.handler(sock, self)
        except (OSError, EOFError):
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def recv(self, s, n=1 << 16):
        """recv() that waits through the short timeout; b"" on EOF, EOFError on stop."""
        while True:
            if self._stopping.is_set():
                raise EOFError("stopping")
            try:
                return s.recv(n)
            except socket.timeout:
                continue

    def read_head(self, s, buf=b""):
        """Returns (head, rest) or (None, buf) on EOF before a full head."""
        while b"\r\n\r\n" not in buf:
            d = self.recv(s)
            if not d:
                return None, buf
            buf += d
        i = buf.index(b"\r\n\r\n") + 4
        return buf[:i], buf[i:]

    def send(self, s, data):
        """sendall() through the short timeout (a peer applying back-pressure)."""
        self._send(s, data)

    def hold(self, seconds):
        """Sleeps up to `seconds`, less if the server is stopping."""
        self._stopping.wait(seconds)


@pytest.fixture
def raw_upstream():
    """raw_upstream(handler) starts a RawServer; all are stopped at test end."""
    made = []

    def make(handler):
        srv = RawServer(handler)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


# ---- client helpers ------------------------------------------------------


def read_all(sock, limit, timeout):
    """Reads until EOF, RST, `limit` bytes or `timeout` seconds overall.
    Returns (bytes, how) with how in "eof", "reset", "limit", "timeout"."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), "timeout"
        sock.settimeout(left)
        try:
            d = sock.recv(1 << 20)
        except socket.timeout:
            return bytes(out), "timeout"
        except ConnectionResetError:
            return bytes(out), "reset"
        if not d:
            return bytes(out), "eof"
        out += d
    return bytes(out), "limit"


def read_cl_response(sock, timeout):
    """Reads one response framed by Content-Length (or ended by EOF/RST).
    Returns (head, body, how) like read_all; how is "limit" when complete."""
    deadline = time.monotonic() + timeout
    raw, how = b"", "eof"
    while b"\r\n\r\n" not in raw:
        more, how = read_all(sock, 1, deadline - time.monotonic())
        if not more:
            return raw, b"", how
        raw += more
    head, _, body = raw.partition(b"\r\n\r\n")
    want = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            want = int(v)
    more, how = read_all(sock, (want if want is not None else 1 << 40) - len(body),
                         deadline - time.monotonic())
    return head + b"\r\n\r\n", body + more, how


def status_of(raw):
    line = raw.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def m_of(st):
    return metrics(st.admin_port)


def active(st):
    return metric(m_of(st), "shadowtee_active_connections")


def scale(seconds):
    """Client-side waits stretch for sanitizer builds (never the proxy's timers)."""
    return seconds * (3 if sanitized() else 1)


# ---- TLS listener ------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cert():
    require(OPENSSL, "the openssl command line is not installed (make deps): TLS listener NOT tested")
    d = tempfile.mkdtemp(prefix="st-rg-pki-")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield {"cert": os.path.join(d, "cert.pem"), "key": os.path.join(d, "key.pem")}
    shutil.rmtree(d, ignore_errors=True)


def tls_client(port, cert, timeout=5):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


class MemTls:
    """A TLS client on memory BIOs over a plain socket: the test decides
    exactly which ciphertext bytes go out in which write."""

    def __init__(self, port, cert, timeout):
        ctx = ssl.create_default_context(cafile=cert)
        ctx.set_alpn_protocols(["http/1.1"])
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._push()
                self._pull()
        self._push()

    def _push(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pull(self):
        self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("EOF")
        self.inc.write(data)

    def encrypt(self, data):
        """Returns the TLS records for data (not sent)."""
        self.obj.write(data)
        return self.out.read()

    def read(self, limit, timeout):
        """Decrypted bytes until `limit`, EOF or `timeout`; returns (bytes, how)."""
        self.deadline = time.monotonic() + timeout
        got = bytearray()
        while len(got) < limit:
            try:
                got += self.obj.read(1 << 16)
                continue
            except ssl.SSLWantReadError:
                pass
            try:
                self._pull()
            except socket.timeout:
                return bytes(got), "timeout"
            except (ConnectionError, OSError):
                return bytes(got), "eof"
        return bytes(got), "limit"

    def close(self):
        self.sock.close()
