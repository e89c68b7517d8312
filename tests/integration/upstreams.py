"""Reusable upstream servers for the integration suite.

Every server is a real TCP listener on 127.0.0.1 (free port) served by
plain threads, written on raw sockets so a test can make it misbehave in
ways a stock HTTP server cannot (reset mid-body, never answer, 101 then
echo, stream hundreds of MiB). Each server records what it received:
one `Request` per parsed request (method, path, headers, decoded body or
its length + crc32) and the raw bytes per connection (capped).

Modes (Upstream(mode=...)):
  echo       200 + JSON {method, path, version, headers, body, body_len,
             body_crc}; path "/status/NNN" answers with status NNN
  fixed      `status`, `headers`, `body` as given (deterministic bytes)
  stream     `stream_size` bytes of a fixed pattern, generated on the fly
  reset      head + `reset_after` body bytes, wait `reset_delay`, then RST
             (SO_LINGER 0); the head announces the full `body`
  close      reads the request, closes without answering
  blackhole  accepts and reads, never answers (held until stop)
  upgrade    a request with Upgrade gets 101 (a CONNECT gets 200) then every
             byte is echoed; other requests are answered like `echo`
  raw        `body` is sent verbatim as the whole response (malformed
             responses), then the connection is closed
  early      answers right after the head without reading the body (like an
             auth failure), then lingers: half-close, drain, close
Options common to the body modes: framing = "length" | "chunked" | "close",
delay (seconds before answering), status, headers, sink (count and crc
the request body instead of storing it), pause_after/pause (stall the
body read once, to exercise the proxy's back-pressure), port (0: a free one;
a fixed one to restart a server where a proxy already points), close_after
(close right after each response although it was keep-alive: a stale pool),
always_close (every response says Connection: close), trailers (list of
(name, value) sent after the last chunk of a chunked response), host (the
loopback address to listen on, default 127.0.0.1), unix (listen on this
Unix-domain socket path instead; .addr is then "unix:PATH").

Fixtures: `upstream` (factory, stops every server at test end),
`blackhole_addr` (a listener whose accept queue is full: connects hang,
for connect timeouts), `watchdog` (autouse once imported: SIGALRM fails
a test that runs past WATCHDOG_SECONDS, module attribute, default 90).
Helpers: `RssSampler`, `sanitized()`, `pattern_chunks()`, `wait_for()`.
"""
import http.server
import json
import os
import select
import signal
import socket
import struct
import threading
import time
import zlib

import pytest

from conftest import BUILD, free_port

MAX_HEAD = 1 << 20
RAW_CAP = 256 * 1024
PATTERN = bytes(range(256)) * 4096  # 1 MiB, the block of every streamed body


def wait_for(pred, timeout=5.0, interval=0.02):
    """Polls pred() until it is truthy or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def pattern_chunks(total, block=len(PATTERN)):
    """Yields `total` bytes of PATTERN in slices of at most `block` bytes."""
    view = memoryview(PATTERN)
    left = total
    while left > 0:
        n = min(left, block, len(PATTERN))
        yield view[:n]
        left -= n


def pattern_crc(total):
    crc = 0
    for c in pattern_chunks(total):
        crc = zlib.crc32(c, crc)
    return crc


_sanitized_cache = {}


def sanitized():
    """True when build/shadowtee is an ASan/UBSan or TSan build or runs under valgrind
    (memory figures and timings are then much larger)."""
    if os.environ.get("SHADOWTEE_VALGRIND") == "1":
        return True
    path = os.path.join(BUILD, "shadowtee")
    if path not in _sanitized_cache:
        try:
            with open(path, "rb") as f:
                data = f.read()
            _sanitized_cache[path] = (b"__asan_init" in data or b"__ubsan_handle" in data
                                      or b"__tsan_init" in data)
        except OSError:
            _sanitized_cache[path] = False
    return _sanitized_cache[path]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread while used
    as a context manager; .max_kib is the peak seen, .samples the count."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_kib(self.pid)
            if v is not None:
                self.max_kib = max(self.max_kib, v)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=2)
        v = rss_kib(self.pid)
        if v is not None:
            self.max_kib = max(self.max_kib, v)


class Request:
    """One request as the upstream parsed it."""

    def __init__(self):
        self.method = self.path = self.version = ""
        self.headers = []  # [(name, value)] in wire order
        self.raw_head = b""
        self.body = b""  # decoded body (empty when the server sinks bodies)
        self.body_len = 0
        self.body_crc = 0
        self.chunked = False
        self.conn_id = -1
        self.at = 0.0

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def headers_named(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return "<Request %s %s body_len=%d>" % (self.method, self.path, self.body_len)


class ConnRecord:
    def __init__(self, cid):
        self.id = cid
        self.raw = bytearray()  # first RAW_CAP bytes received
        self.nbytes = 0
        self.error = None
        self.closed = False


class _Reader:
    """Buffered reads from a server-side socket, honouring the server's stop."""

    def __init__(self, up, sock, rec):
        self.up = up
        self.sock = sock
        self.rec = rec
        self.buf = bytearray()

    def fill(self):
        """Reads more bytes; returns False on EOF. Raises on stop or idle limit."""
        idle_deadline = time.monotonic() + self.up.idle_limit
        while True:
            if self.up._stopping.is_set():
                raise EOFError("server stopping")
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                if time.monotonic() > idle_deadline:
                    raise EOFError("idle limit")
                continue
            if not data:
                return False
            self.up._count_bytes(self.rec, data)
            self.buf += data
            return True

    def read_head(self):
        """Returns the head (through CRLFCRLF) or None on EOF before any byte."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[: i + 4])
                del self.buf[: i + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise ValueError("head too large")
            if not self.fill():
                if self.buf:
                    raise EOFError("EOF inside head")
                return None

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > 65536:
                raise ValueError("line too long")
            if not self.fill():
                raise EOFError("EOF inside line")

    def read_into(self, n, consume):
        """Passes exactly n bytes to consume(bytes) in pieces."""
        while n > 0:
            if not self.buf and not self.fill():
                raise EOFError("EOF inside body (%d bytes missing)" % n)
            take = min(n, len(self.buf))
            consume(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take


def _parse_head(head):
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % lines[0])
    req = Request()
    req.method, req.path, req.version = parts
    req.raw_head = head
    for line in lines[1:]:
        k, sep, v = line.decode("latin-1").partition(":")
        if not sep:
            raise ValueError("bad header line %r" % line)
        req.headers.append((k, v.strip(" \t")))
    return req


def _reason(status):
    return {100: "Continue", 101: "Switching Protocols", 200: "OK", 204: "No Content",
            304: "Not Modified", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")


class Upstream:
    """A threaded raw-socket HTTP/1.1 server on 127.0.0.1 (see module doc)."""

    def __init__(self, mode="echo", status=200, body=b"hello from upstream\n", headers=(),
                 framing="length", delay=0.0, chunk_size=7, stream_size=0, reset_after=10,
                 reset_delay=0.3, sink=False, pause_after=0, pause=0.0, send_continue=True,
                 idle_limit=120.0, max_conns=4000, port=0, close_after=False,
                 always_close=False, trailers=(), host="127.0.0.1", unix=None):
        self.mode = mode
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.framing = framing
        self.delay = delay
        self.chunk_size = chunk_size
        self.stream_size = stream_size
        self.reset_after = reset_after
        self.reset_delay = reset_delay
        self.sink = sink
        self.pause_after = pause_after
        self.pause = pause
        self.send_continue = send_continue
        self.idle_limit = idle_limit
        self.max_conns = max_conns
        self.close_after = close_after
        self.always_close = always_close
        self.trailers = list(trailers)
        self.requests = []
        self.conns = []
        self.bytes_received = 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socks = set()
        self._threads = []
        self.unix = unix
        if unix:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix)
            self.port = None
            self.addr = "unix:" + unix
        else:
            self.lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((host, port))
            self.port = self.lsock.getsockname()[1]
            self.addr = ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)
        self.lsock.listen(512)
        self.lsock.settimeout(0.2)

    # ---- lifecycle -------------------------------------------------
    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True, name="upstream-accept")
        t.start()
        self._accept_thread = t
        return self

    def stop(self):
        """Stops accepting, closes every connection, joins threads (bounded)."""
        self._stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        self._accept_thread.join(timeout=max(0.1, deadline - time.monotonic()))
        for t in list(self._threads):
            t.join(timeout=max(0.05, deadline - time.monotonic()))
        if self.unix:
            try:
                os.unlink(self.unix)
            except OSError:
                pass

    # ---- queries ---------------------------------------------------
    def wait_requests(self, n, timeout=5.0):
        """Waits until at least n requests were recorded; returns the count.
        The timeout stretches 4x for sanitizer/valgrind builds."""
        wait_for(lambda: len(self.requests) >= n, timeout * (4 if sanitized() else 1))
        return len(self.requests)

    def settle(self, quiet=0.3, timeout=5.0):
        """Waits until no new request arrived for `quiet` seconds; returns the count."""
        deadline = time.monotonic() + timeout
        last = len(self.requests)
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            n = len(self.requests)
            if n != last:
                last, still_since = n, time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                break
        return len(self.requests)

    def conns_with_bytes(self):
        """Connections that carried at least one byte (a readiness probe's
        bare connect does not count)."""
        with self._lock:
            return sum(1 for c in self.conns if c.nbytes)

    def raw_all(self):
        with self._lock:
            return b"".join(bytes(c.raw) for c in self.conns)

    # ---- internals -------------------------------------------------
    def _count_bytes(self, rec, data):
        with self._lock:
            self.bytes_received += len(data)
            rec.nbytes += len(data)
            room = RAW_CAP - len(rec.raw)
            if room > 0:
                rec.raw += data[:room]

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                self.accepted += 1
                if len(self._socks) >= self.max_conns:
                    s.close()
                    continue
                rec = ConnRecord(len(self.conns))
                self.conns.append(rec)
                self._socks.add(s)
            s.settimeout(0.25)
            if not self.unix:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(s, rec), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock, rec):
        reader = _Reader(self, sock, rec)
        rst = False
        try:
            while not self._stopping.is_set():
                head = reader.read_head()
                if head is None:
                    break
                req = _parse_head(head)
                req.conn_id = rec.id
                if self.mode == "blackhole":
                    self._read_body(reader, sock, req)
                    self._record(req)
                    continue  # never answer; keep reading further requests
                if self.mode == "upgrade" and (req.header("upgrade") or req.method == "CONNECT"):
                    self._record(req)
                    self._tunnel(sock, reader, req.method == "CONNECT")
                    break
                if self.mode == "early":
                    self._record(req)
                    self._early(sock)
                    break
                self._read_body(reader, sock, req)
                self._record(req)
                if self.delay:
                    if self._stopping.wait(self.delay):
                        break
                if self.mode == "close":
                    break
                if self.mode == "raw":
                    self._send(sock, self.body)
                    break
                if self.mode == "reset":
                    self._reset(sock, req)
                    rst = True
                    break
                if not self._respond(sock, req) or self.close_after:
                    break
        except (OSError, EOFError, ValueError) as e:
            rec.error = repr(e)
        finally:
            rec.closed = True
            with self._lock:
                self._socks.discard(sock)
            if not rst:
                try:
                    sock.close()
                except OSError:
                    pass

    def _send(self, sock, data):
        """sendall() that survives the short socket timeout used for stop
        checks: a stalled reader (back-pressure) is waited for, up to idle_limit."""
        view = memoryview(data)
        deadline = time.monotonic() + self.idle_limit
        while view:
            if self._stopping.is_set():
                raise EOFError("server stopping")
            try:
                n = sock.send(view)
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise
                continue
            view = view[n:]

    def _record(self, req):
        req.at = time.monotonic()
        with self._lock:
            self.requests.append(req)

    def _read_body(self, reader, sock, req):
        te = (req.header("transfer-encoding") or "").lower()
        cl = req.header("content-length")
        if self.send_continue and (req.header("expect") or "").lower() == "100-continue":
            self._send(sock, b"HTTP/1.1 100 Continue\r\n\r\n")
        parts = []
        state = {"n": 0, "crc": 0, "paused": False}

        def consume(b):
            state["n"] += len(b)
            state["crc"] = zlib.crc32(b, state["crc"])
            if not self.sink:
                parts.append(b)
            if self.pause and not state["paused"] and state["n"] >= self.pause_after:
                state["paused"] = True
                self._stopping.wait(self.pause)

        if "chunked" in te:
            req.chunked = True
            while True:
                line = reader.read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while reader.read_line() != b"":  # trailers
                        pass
                    break
                reader.read_into(size, consume)
                if reader.read_line() != b"":
                    raise ValueError("chunk not followed by CRLF")
        elif cl is not None:
            reader.read_into(int(cl), consume)
        req.body = b"".join(parts)
        req.body_len = state["n"]
        req.body_crc = state["crc"]

    def _keep_alive(self, req):
        conn = (req.header("connection") or "").lower()
        if req.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    def _payload(self, req):
        """Returns (status, body-iterable, total length)."""
        status = self.status
        if self.mode == "echo" or self.mode == "upgrade":
            if req.path.startswith("/status/"):
                status = int(req.path.split("/")[2][:3])
            doc = {"method": req.method, "path": req.path, "version": req.version,
                   "headers": req.headers, "body_len": req.body_len, "body_crc": req.body_crc}
            if not self.sink:
                doc["body"] = req.body.decode("latin-1")
            body = json.dumps(doc, sort_keys=True).encode()
            return status, [body], len(body)
        if self.mode == "stream":
            return status, pattern_chunks(self.stream_size), self.stream_size
        return status, [self.body], len(self.body)

    def _respond(self, sock, req):
        status, chunks, total = self._payload(req)
        keep = self._keep_alive(req) and self.framing != "close" and not self.always_close
        bodyless = req.method == "HEAD" or status in (204, 304) or status < 200
        head = ["HTTP/1.1 %d %s" % (status, _reason(status))]
        head += ["%s: %s" % kv for kv in self.headers]
        if status != 204 and status >= 200:
            if self.framing == "length":
                head.append("Content-Length: %d" % total)
            elif self.framing == "chunked" and not bodyless:
                head.append("Transfer-Encoding: chunked")
        if not keep:
            head.append("Connection: close")
        head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if bodyless:
            self._send(sock, head_bytes)
            return keep
        if self.framing != "chunked" and total <= 65536:
            # Small bodies leave in one write, like most servers do.
            self._send(sock, head_bytes + b"".join(bytes(c) for c in chunks))
            return keep
        self._send(sock, head_bytes)
        step = self.chunk_size if total < 65536 else 1 << 20
        for c in chunks:
            if self.framing == "chunked":
                c = bytes(c)
                for i in range(0, len(c), step):
                    piece = c[i:i + step]
                    self._send(sock, b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self._send(sock, c)
        if self.framing == "chunked":
            tr = "".join("%s: %s\r\n" % kv for kv in self.trailers).encode("latin-1")
            self._send(sock, b"0\r\n" + tr + b"\r\n")
        return keep

    def _early(self, sock):
        body = self.body
        head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            self.status, _reason(self.status), len(body))
        self._send(sock, head.encode("latin-1") + body)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + 2.0  # lingering close, like nginx
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                if not sock.recv(1 << 20):
                    break
            except socket.timeout:
                continue
            except OSError:
                break

    def _reset(self, sock, req):
        body = self.body
        head = "HTTP/1.1 %d %s\r\n" % (self.status, _reason(self.status))
        head += "".join("%s: %s\r\n" % kv for kv in self.headers)
        part = body[: self.reset_after]
        if self.framing == "chunked":
            head += "Transfer-Encoding: chunked\r\n\r\n"
            data = head.encode("latin-1")
            if part:
                data += b"%x\r\n%s\r\n" % (len(part), part)
        else:
            head += "Content-Length: %d\r\n\r\n" % len(body)
            data = head.encode("latin-1") + part
        self._send(sock, data)
        self._stopping.wait(self.reset_delay)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _tunnel(self, sock, reader, connect=False):
        up = reader.buf
        if connect:
            hdr = "HTTP/1.1 200 Connection Established\r\n\r\n"
        else:
            hdr = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        self._send(sock, hdr.encode())
        if up:
            self._send(sock, bytes(up))
            del up[:]
        while not self._stopping.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            self._count_bytes(reader.rec, data)
            self._send(sock, data)


class NoAcceptListener:
    """A listener that never accepts, its accept queue filled so further
    connects hang in SYN-SENT: the loopback stand-in for an unreachable host."""

    def __init__(self, host="127.0.0.1", port=0):
        self.lsock = socket.socket()
        self.lsock.bind((host, port))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.fillers = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect((host, self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
            _, w, _ = select.select([], [s], [], 0.3)
            if not w:
                break
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect((host, self.port))
            self.hangs = False
        except socket.timeout:
            self.hangs = True
        except OSError:
            self.hangs = False
        finally:
            self.fillers.append(probe)

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()


@pytest.fixture
def upstream():
    """upstream(mode="echo", **options) starts an Upstream; all stop at test end."""
    made = []

    def make(mode="echo", **kw):
        u = Upstream(mode, **kw).start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def blackhole_addr():
    """HOST:PORT on loopback where a TCP connect hangs (accept queue full)."""
    b = NoAcceptListener()
    assert b.hangs, "could not make a hanging listener on loopback"
    yield b.addr
    b.close()


class _RoleServer(http.server.ThreadingHTTPServer):
    # the default listen backlog of 5 drops SYNs when a proxy opens a few
    # pooled connections at once: each costs a 1 s retransmit (a connect timeout)
    request_queue_size = 128


def http_role_servers(handler):
    """Body of a fixture: yields start(role), which serves a subclass of the
    http.server handler class `handler` with attribute .role = role on a
    threading http.server on a free loopback port and returns its
    "127.0.0.1:PORT"; every server is shut down afterwards."""
    servers = []

    def start(role):
        srv = _RoleServer(("127.0.0.1", 0), type("H_" + role, (handler,), {"role": role}))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return "127.0.0.1:%d" % srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def send_json(handler, body, headers=()):
    """Answers an http.server handler's request: 200, Content-Type
    application/json, the (name, value) pairs of `headers`, Content-Length,
    then `body` (bytes)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def closed_port():
    """A loopback port with nothing listening (connect gets ECONNREFUSED)."""
    return free_port()


class WatchdogTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def watchdog(request):
    """Fails the running test with WatchdogTimeout after the module's
    WATCHDOG_SECONDS (default 90): a hung proxy fails, it never hangs the suite."""
    limit = getattr(request.module, "WATCHDOG_SECONDS", 90)
    if sanitized():
        limit *= 3

    def on_alarm(signum, frame):
        raise WatchdogTimeout("test exceeded %ss" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
