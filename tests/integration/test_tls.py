"""TLS on both sides: https primary and shadow (verification, private CA,
mutual TLS, an unknown CA refused), TLS termination on --listen (curl
--cacert, ALPN, X-Forwarded-Proto), and clear failures for a plain client
on the TLS port and a TLS client on a plain port. Certificates are made by
the test with the openssl command line; upstreams are Python ssl servers.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import free_port, require, wait_port
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")


@pytest.fixture(autouse=True, scope="module")
def _need_openssl():
    require(OPENSSL, "the openssl command line is not installed (make deps): no certificates, TLS NOT tested")


def _run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _make_ca(d, name):
    _run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", name + ".key", "-out", name + ".crt", "-days", "2", "-subj", "/CN=" + name, cwd=d)


def _make_cert(d, name, ca, san, client=False):
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        if san:
            f.write("subjectAltName=%s\n" % san)
    _run(OPENSSL, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
         name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    _run(OPENSSL, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
         "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", ext, cwd=d)


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="st-pki-")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_cert(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _make_cert(d, "rogue", "other-ca", "IP:127.0.0.1,DNS:localhost")
    _make_cert(d, "client", "ca", None, client=True)
    _make_cert(d, "server2", "ca", "IP:127.0.0.1,DNS:localhost")
    yield {k: os.path.join(d, k) for k in ("ca", "other-ca", "server", "rogue", "client", "server2")} | {"dir": d}
    shutil.rmtree(d, ignore_errors=True)


class TlsUpstream:
    """A keep-alive HTTP/1.1 server over TLS that answers JSON naming itself
    and what it received; optionally requires a client certificate."""

    def __init__(self, cert, key, name, client_ca=None):
        self.name = name
        self.requests = []
        self.peer_certs = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert + ".crt", key + ".key")
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca + ".crt")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "https://127.0.0.1:%d" % self.port
        self.stopped = False
        self.handshake_errors = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_errors += 1
            raw.close()
            return
        self.peer_certs.append(conn.getpeercert())
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    buf += conn.recv(65536)
                body, buf = buf[:n], buf[n:]
                self.requests.append({"line": lines[0], "headers": headers, "body": body})
                out = json.dumps({"server": self.name, "path": lines[0].split(" ")[1],
                                  "proto": headers.get("x-forwarded-proto"),
                                  "mirror": headers.get("x-shadowtee-mirror")}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(out), out))
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            conn.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


@pytest.fixture
def tls_upstream():
    servers = []

    def make(*args, **kw):
        s = TlsUpstream(*args, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def _get(port, path="/", timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, json.loads(r.read())


def _metric(admin_port, name, **labels):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5) as r:
        text = r.read().decode()
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_https_primary_and_shadow_verified_with_private_ca(shadowtee, tls_upstream, pki):
    primary = tls_upstream(pki["server"], pki["server"], "primary")
    shadow = tls_upstream(pki["server2"], pki["server2"], "shadow")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, primary_ca=pki["ca"] + ".crt",
                   shadow_ca=pki["ca"] + ".crt")
    for i in range(5):
        status, doc = _get(st.port, "/p%d" % i)
        assert status == 200 and doc["server"] == "primary" and doc["path"] == "/p%d" % i
    assert _wait(lambda: len(shadow.requests) == 5)
    assert all(r["headers"].get("x-shadowtee-mirror") == "1" for r in shadow.requests)
    # keep-alive on the TLS pool: 5 requests, fewer handshakes; later ones resumed or reused
    assert _metric(st.admin_port, "shadowtee_shadow_errors_total", reason="tls") == 0
    assert _metric(st.admin_port, "shadowtee_upstream_errors_total", reason="tls") == 0


def test_shadow_with_unknown_ca_is_refused_and_counted_client_still_served(shadowtee, upstream, tls_upstream, pki):
    primary = upstream("echo")
    shadow = tls_upstream(pki["rogue"], pki["rogue"], "rogue")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, shadow_ca=pki["ca"] + ".crt")
    for i in range(5):
        with urllib.request.urlopen("http://127.0.0.1:%d/r%d" % (st.port, i), timeout=5) as r:
            assert r.status == 200
    assert _wait(lambda: _metric(st.admin_port, "shadowtee_tls_handshake_failures_total",
                                 side="shadow", reason="verify") >= 1)
    assert _metric(st.admin_port, "shadowtee_shadow_errors_total", reason="tls") >= 1
    assert shadow.requests == []  # nothing was sent to a shadow we could not verify


def test_primary_with_unknown_ca_gives_502(shadowtee, tls_upstream, pki):
    primary = tls_upstream(pki["rogue"], pki["rogue"], "rogue")
    st = shadowtee(primary=primary.addr, primary_ca=pki["ca"] + ".crt")
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(st.port, "/x")
    assert e.value.code == 502
    assert _metric(st.admin_port, "shadowtee_upstream_errors_total", reason="tls") >= 1
    assert primary.requests == []


def test_insecure_skips_verification(shadowtee, tls_upstream, pki):
    primary = tls_upstream(pki["rogue"], pki["rogue"], "rogue")
    st = shadowtee(primary=primary.addr, primary_insecure=True)
    status, doc = _get(st.port, "/ok")
    assert status == 200 and doc["server"] == "rogue"
    assert "verification is OFF" in st.proc.stderr()


def test_mutual_tls_to_primary(shadowtee, tls_upstream, pki):
    primary = tls_upstream(pki["server"], pki["server"], "mtls", client_ca=pki["ca"])
    st = shadowtee(primary=primary.addr, primary_ca=pki["ca"] + ".crt",
                   primary_client_cert=pki["client"] + ".crt", primary_client_key=pki["client"] + ".key")
    status, doc = _get(st.port, "/m")
    assert status == 200 and doc["server"] == "mtls"
    assert primary.peer_certs and dict(x[0] for x in primary.peer_certs[0]["subject"])["commonName"] == "client"
    # without the client certificate the primary refuses the handshake: 502
    st2 = shadowtee(primary=primary.addr, primary_ca=pki["ca"] + ".crt")
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(st2.port, "/m2")
    assert e.value.code == 502


def test_tls_listener_with_curl_cacert(shadowtee, upstream, pki):
    require(CURL, "curl is not installed (make deps): TLS listener NOT tested with curl")
    up = upstream("echo")
    st = shadowtee(primary=up.addr, tls_cert=pki["server"] + ".crt", tls_key=pki["server"] + ".key")
    out = subprocess.run([CURL, "-sS", "--http1.1", "--cacert", pki["ca"] + ".crt", "-w", "\n%{http_code}",
                          "https://localhost:%d/hello?q=1" % st.port, "--resolve", "localhost:%d:127.0.0.1" % st.port],
                         capture_output=True, timeout=15, text=True)
    assert out.returncode == 0, out.stderr
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "200"
    doc = json.loads(body)
    assert doc["path"] == "/hello?q=1"
    assert {k.lower(): v for k, v in doc["headers"]}["x-forwarded-proto"] == "https"
    # TLS 1.1 is refused
    old = subprocess.run([CURL, "-sS", "--cacert", pki["ca"] + ".crt", "--tls-max", "1.1",
                          "https://localhost:%d/" % st.port, "--resolve", "localhost:%d:127.0.0.1" % st.port],
                         capture_output=True, timeout=15, text=True)
    assert old.returncode != 0


def test_tls_listener_keepalive_and_alpn(shadowtee, upstream, pki):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, tls_cert=pki["server"] + ".crt", tls_key=pki["server"] + ".key")
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".crt")
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", st.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"
            assert s.version() in ("TLSv1.2", "TLSv1.3")
            f = s.makefile("rb")
            for i in range(3):
                s.sendall(b"GET /k%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % i)
                status = f.readline()
                assert status.startswith(b"HTTP/1.1 200")
                n = 0
                while True:
                    line = f.readline()
                    if line == b"\r\n":
                        break
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                assert json.loads(f.read(n))["path"] == "/k%d" % i


def test_plain_client_on_tls_port_fails_fast(shadowtee, upstream, pki):
    up = upstream("echo")
    st = shadowtee(primary=up.addr, tls_cert=pki["server"] + ".crt", tls_key=pki["server"] + ".key")
    with socket.create_connection(("127.0.0.1", st.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 3, "a plain client on the TLS port hung"
    assert b"HTTP/1.1 200" not in data
    assert up.requests == []
    assert _metric(st.admin_port, "shadowtee_tls_handshake_failures_total", side="listener",
                   reason="handshake") >= 1


def test_tls_client_on_plain_port_fails_fast(shadowtee, upstream, pki):
    up = upstream("echo")
    st = shadowtee(primary=up.addr)
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".crt")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", st.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert time.monotonic() - t0 < 3
    assert up.requests == []


def test_sighup_reloads_certificate_without_dropping_connections(shadowtee, upstream, pki):
    d = tempfile.mkdtemp(prefix="st-reload-")
    cert, key = os.path.join(d, "c.crt"), os.path.join(d, "c.key")
    shutil.copy(pki["server"] + ".crt", cert)
    shutil.copy(pki["server"] + ".key", key)
    up = upstream("echo")
    st = shadowtee(primary=up.addr, tls_cert=cert, tls_key=key)
    ctx = ssl.create_default_context(cafile=pki["ca"] + ".crt")

    def serial():
        with socket.create_connection(("127.0.0.1", st.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.getpeercert()["serialNumber"]

    with socket.create_connection(("127.0.0.1", st.port), timeout=5) as raw:
        keep = ctx.wrap_socket(raw, server_hostname="localhost")
        first = serial()
        shutil.copy(pki["server2"] + ".crt", cert)
        shutil.copy(pki["server2"] + ".key", key)
        st.proc.signal(__import__("signal").SIGHUP)
        assert _wait(lambda: "TLS certificate reloaded" in st.proc.stderr())
        second = serial()
        assert first != second
        keep.sendall(b"GET /still HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert keep.recv(100).startswith(b"HTTP/1.1 200")
        keep.close()
    shutil.rmtree(d, ignore_errors=True)


def test_bad_tls_flags_exit_2(pki):
    from conftest import shadowtee_bin
    cases = [
        (["--tls-cert", pki["server"] + ".crt"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent.crt", "--tls-key", pki["server"] + ".key"], "cannot read"),
        (["--tls-cert", pki["server"] + ".crt", "--tls-key", pki["client"] + ".key"], "mismatch"),
        (["--primary-client-cert", pki["client"] + ".crt"], "go together"),
    ]
    for extra, msg in cases:
        p = subprocess.run([shadowtee_bin(), "--primary", "https://127.0.0.1:1", "--listen",
                            "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port()] + extra,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (extra, p.stderr)
        assert msg in p.stderr, (extra, p.stderr)
