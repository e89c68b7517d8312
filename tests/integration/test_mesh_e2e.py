"""Mesh mirroring end to end (issue 16), on loopback, with a real mirror that
is not ours standing in for Envoy: nginx's ngx_http_mirror_module.

    client -> nginx -+-> stable shadowtee (--mirror-mode mesh --mesh-role stable) -> Flask v1
                     |   (the client's answer)
                     +-> shadow shadowtee (--mesh-role shadow) -> Flask v2
                         (mirror copy: nginx throws the answer away, as Envoy does)
    both sidecars -> one real redis-server (the join by x-request-id)

nginx sets X-Request-Id on both copies (the client's, else its own
$request_id) and, like Envoy's mirror, Host "<host>-shadow" on the copy.
The apps (mesh_app.py) diverge on known inputs (i % 7 == 3) and add noise on
every answer (an ignored timestamp and model_version, a score moved inside
the tolerance), so the report's counts are known exactly. Every process is
real and on 127.0.0.1; every wait is on readiness or on a counter, with a
deadline.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
import redis

from conftest import PY, free_port, require, shadowtee_bin, wait_port
from upstreams import sanitized, wait_for
from report_fill import report

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "mesh_app.py")
NGINX = "/usr/sbin/nginx"
WATCHDOG_SECONDS = 150

RULES = {"version": 1, "defaults": {"tolerance": {"absolute": 1e-6},
                                    "ignore": ["$.timestamp", "$.model_version"]}}


def divergent(i):
    """The inputs on which Flask v2's label differs from v1's (mesh_app.py)."""
    return i % 7 == 3


def slow():
    return 4.0 if sanitized() else 1.0


# ---- processes ---------------------------------------------------------------


def _http_get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_http(port, path, proc, timeout=20.0):
    """Waits until GET path on port answers 200 (the process being alive)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError("%s exited (%s) before %s answered: %s"
                               % (proc.argv[0], proc.p.returncode, path, proc.stderr()[-800:]))
        try:
            status, _ = _http_get(port, path)
            if status == 200:
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise TimeoutError("GET %s on port %d: no 200 within %.0fs (last: %r)" % (path, port, timeout, last))


class App:
    """A running mesh_app.py."""

    def __init__(self, procs, version):
        self.version = version
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.proc = procs([PY, APP, "--port", str(self.port), "--version", version],
                          wait_ports=(self.port,))
        wait_http(self.port, "/health", self.proc)

    def seen(self):
        status, body = _http_get(self.port, "/__seen", timeout=5)
        assert status == 200
        return json.loads(body)


NGINX_CONF = """\
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format mesh '$request_uri rid=$rid status=$status';
    access_log {d}/access.log mesh;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    # the request id both copies carry: the client's, else nginx's own
    map $http_x_request_id $rid {{
        ""      $request_id;
        default $http_x_request_id;
    }}
    upstream stable {{
        server {stable};
        keepalive 32;
    }}
    upstream shadow {{
        server {shadow};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            mirror /__mirror;
            mirror_request_body on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $rid;
            proxy_pass http://stable;
        }}
        location = /__mirror {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $rid;
            # what Envoy's request mirror does to the copy
            proxy_set_header Host $host-shadow;
            proxy_connect_timeout 1s;
            proxy_send_timeout 5s;
            proxy_read_timeout 5s;
            proxy_pass http://shadow$request_uri;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground (daemon off) with its own prefix: the mirror."""

    def __init__(self, procs, stable, shadow):
        self.dir = tempfile.mkdtemp(prefix="st-mesh-nginx-")
        os.chmod(self.dir, 0o755)  # workers may run as nobody
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.dir, port=self.port, stable=stable, shadow=shadow))
        self.proc = procs([NGINX, "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log"),
                           "-g", "daemon off;"], wait_ports=(self.port,))

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def access_log(self):
        with open(os.path.join(self.dir, "access.log"), errors="replace") as f:
            return f.read().splitlines()


@pytest.fixture
def nginx(procs):
    require(os.path.exists(NGINX), "nginx is not installed (scripts/deps.sh)")
    made = []

    def start(stable, shadow):
        n = Nginx(procs, stable, shadow)
        made.append(n)
        return n

    yield start
    import shutil
    for n in made:
        shutil.rmtree(n.dir, ignore_errors=True)


@pytest.fixture
def rules(tmp_path):
    p = tmp_path / "rules.json"
    p.write_text(json.dumps(RULES))
    return str(p)


# ---- the client side ---------------------------------------------------------


def post(conn, i, rid=None, path="/predict"):
    """POST {"i": i}; returns (status, parsed body or None)."""
    headers = {"Content-Type": "application/json"}
    if rid is not None:
        headers["X-Request-Id"] = rid
    conn.request("POST", path, body=json.dumps({"i": i}), headers=headers)
    r = conn.getresponse()
    data = r.read()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, None


def send(port, items, timeout=10.0):
    """Sends POST /predict for each (i, rid) in order on one keep-alive
    connection; returns the list of (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        return [post(conn, i, rid) for i, rid in items]
    finally:
        conn.close()


def metrics(admin_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5) as r:
        return r.read().decode()


def metric_sum(text, name, **labels):
    """Sum of the series of metric `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


# ---- the mirror on its own ---------------------------------------------------


def test_nginx_mirror_gives_both_copies_the_same_request_id(procs, nginx):
    """The stand-in for Envoy, checked on its own before anything of ours is
    put behind it: the client gets the stable app's answer; the shadow app
    gets a copy of every request, body included, with Host "<host>-shadow";
    both copies carry the same X-Request-Id, the client's when it sent one,
    else nginx's own (32 hex digits, a different one per request)."""
    v1, v2 = App(procs, "v1"), App(procs, "v2")
    ng = nginx(v1.addr, v2.addr)
    wait_http(ng.port, "/health", ng.proc)
    n = 30
    items = [(i, "client-%d" % i if i % 2 == 0 else None) for i in range(n)]
    answers = send(ng.port, items)
    assert all(s == 200 for s, _ in answers), answers
    assert all(b["model_version"] == "v1" for _, b in answers), "the client must get the stable answer"
    for (i, rid), (_, b) in zip(items, answers):
        if rid is not None:
            assert b["request_id"] == rid
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", b["request_id"]), b
    assert len({b["request_id"] for _, b in answers}) == n
    # the mirror copy may still be in flight when the client has its answer
    assert wait_for(lambda: v2.seen()["count"] >= n, 10 * slow()), v2.seen()
    s1, s2 = v1.seen(), v2.seen()
    assert s1["count"] == n and s2["count"] == n
    assert s1["ids"] == [b["request_id"] for _, b in answers]
    assert sorted(s2["ids"]) == sorted(s1["ids"])
    assert s2["hosts"] == {"127.0.0.1-shadow": n}, s2["hosts"]
    assert all(not h.endswith("-shadow") for h in s1["hosts"]), s1["hosts"]
    assert "[emerg]" not in ng.error_log() and "[alert]" not in ng.error_log()
