"""Raw-socket HTTP/1.1 client helpers for the integration suite.

The proxy is tested byte by byte, so nothing here normalises what the
server sent: `Response.raw` keeps the exact wire bytes of one response,
`Conn` keeps its own read buffer so pipelined responses and the bytes that
follow a bodiless response are visible. Every socket has a timeout: a
proxy that never answers makes the test fail, not hang.

  c = Conn(port); c.send(build_request("GET", "/x")); r = c.response()
  get(port, "/healthz") -> Response          (one request, Connection: close)
  metrics(admin_port) -> {(name, labels): value}; metric(m, name, **labels)
"""
import json
import re
import socket
import time


class ConnClosed(Exception):
    """The peer closed (EOF or RST) before a complete message arrived."""


class Response:
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers = []  # [(name, value)]
        self.body = b""
        self.body_len = 0
        self.raw = b""  # head + body exactly as received
        self.raw_head = b""
        self.chunked = False
        self.close_delimited = False
        self.complete = True  # False when the body ended early (EOF/RST)
        self.interim = []  # 1xx heads received before this response

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def headers_named(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r body=%d bytes>" % (self.status, self.reason, len(self.body))


def build_request(method="GET", path="/", headers=None, body=b"", version="HTTP/1.1", host="test.local"):
    """Builds raw request bytes. Host is added unless given in headers
    (pass host=None to omit it); Content-Length is added for a non-empty
    body unless headers already frame it."""
    hs = list(headers or [])
    names = {k.lower() for k, _ in hs}
    if host is not None and "host" not in names:
        hs.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hs)
    return head.encode("latin-1") + b"\r\n" + body


def chunked_body(pieces, trailers=()):
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    out += b"0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in trailers) + b"\r\n"
    return out


class Conn:
    """One client connection with its own read buffer."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=None, body=b"", **kw):
        self.send(build_request(method, path, headers, body, **kw))
        return self.response(method)

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                return self._take(i + len(delim))
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (delim, limit))
            if not self._fill():
                raise ConnClosed("closed before %r (have %r)" % (delim, bytes(self.buf[:200])))

    def read_head(self):
        """Returns the next head as raw bytes (through CRLFCRLF)."""
        return self.read_until(b"\r\n\r\n")

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnClosed("closed with %d of %d bytes" % (len(self.buf), n))
        return self._take(n)

    def read_some(self, timeout):
        """Returns whatever arrives within timeout (b"" at EOF or on timeout)."""
        if self.buf:
            return self._take(len(self.buf))
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            self._fill()
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(old)
        return self._take(len(self.buf))

    def read_to_close(self, timeout=5.0):
        """Reads until EOF/RST; returns (bytes, how) where how is "eof",
        "reset" or "timeout"."""
        deadline = time.monotonic() + timeout
        how = "eof"
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                how = "timeout"
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                how = "timeout"
                break
            except ConnectionResetError:
                how = "reset"
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
        return self._take(len(self.buf)), how

    def closed_within(self, timeout):
        """True when the peer closes within timeout, without sending more bytes
        than what is already buffered being discarded."""
        _, how = self.read_to_close(timeout)
        return how != "timeout"

    def response(self, method="GET", sink=None, keep_interim=True):
        """Reads one full response (skipping and recording 1xx other than 101).
        sink(bytes), when given, receives the body instead of Response.body."""
        r = Response()
        while True:
            head = self.read_head()
            first, _, rest = head.partition(b"\r\n")
            parts = first.decode("latin-1").split(" ", 2)
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                r.interim.append(head)
                continue
            break
        r.raw_head = head
        r.version = parts[0]
        r.status = status
        r.reason = parts[2] if len(parts) > 2 else ""
        for line in rest[:-4].split(b"\r\n"):
            if line:
                k, _, v = line.decode("latin-1").partition(":")
                r.headers.append((k, v.strip(" \t")))
        raw = [head]
        body = []

        def out(b):
            if not sink:
                raw.append(b)
            r.body_len += len(b)
            if sink:
                sink(b)
            else:
                body.append(b)

        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if method == "HEAD" or status in (204, 304) or status == 101:
            pass
        elif "chunked" in te:
            r.chunked = True
            try:
                while True:
                    line = self.read_until(b"\r\n")
                    raw.append(line)
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:
                            t = self.read_until(b"\r\n")
                            raw.append(t)
                            if t == b"\r\n":
                                break
                        break
                    left = size
                    while left:
                        if not self.buf and not self._fill():
                            raise ConnClosed("EOF in chunk")
                        take = min(left, len(self.buf))
                        out(self._take(take))
                        left -= take
                    crlf = self.read_exact(2)
                    raw.append(crlf)
                    if crlf != b"\r\n":
                        raise ValueError("chunk data not followed by CRLF")
            except ConnClosed:
                r.complete = False
        elif cl is not None:
            left = int(cl)
            while left:
                if not self.buf and not self._fill():
                    r.complete = False
                    break
                take = min(left, len(self.buf))
                out(self._take(take))
                left -= take
        else:
            r.close_delimited = True
            while True:
                if self.buf:
                    out(self._take(len(self.buf)))
                if not self._fill():
                    break
        r.body = b"".join(body)
        r.raw = b"".join(bytes(x) for x in raw) if not sink else head
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, path, method="GET", headers=None, timeout=5.0):
    """One request on a fresh connection with Connection: close."""
    with Conn(port, timeout=timeout) as c:
        hs = [("Connection", "close")] + list(headers or [])
        return c.request(method, path, hs)


def strip_headers(raw, names=("date", "x-request-id")):
    """Removes the named header lines from one raw response (head + body)."""
    i = raw.find(b"\r\n\r\n")
    head, body = raw[:i], raw[i:]
    lines = head.split(b"\r\n")
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower().decode() not in names]
    return b"\r\n".join(keep) + body


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out


def metrics_text(admin_port):
    r = get(admin_port, "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def metrics(admin_port):
    return parse_metrics(metrics_text(admin_port))


def metric(samples, name, **labels):
    """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def has_metric(text, name):
    return re.search(r"(^|\n)(# (TYPE|HELP) )?%s[ {_]" % re.escape(name), text) is not None
