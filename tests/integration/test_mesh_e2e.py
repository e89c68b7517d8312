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
import hashlib
import http.client
import json
import os
import re
import signal
import tempfile
import threading
import time
import urllib.request

import pytest
import redis

from conftest import PY, free_port, require, shadowtee_bin
from upstreams import sanitized, upstream, wait_for, watchdog  # noqa: F401  (fixtures)
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


def in_share(rid, percent):
    """The sampling decision of mesh mode as proxy/mesh.h specifies it: the
    first 8 bytes of SHA-256(x-request-id), big-endian, mod 1,000,000, below
    round(P * 10,000)."""
    point = int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") % 1000000
    return point < round(percent * 10000)


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
        location = /__ready {{
            return 200 'ready';  # nginx's own readiness: never proxied, never mirrored
        }}
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
    wait_http(ng.port, "/__ready", ng.proc)
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


# ---- mesh mode: the whole chain ----------------------------------------------


class Sidecar:
    pass


class Mesh:
    """redis-server, Flask v1 and v2, the stable and the shadow sidecar in mesh
    mode, and nginx mirroring every request (the percentage lives in the
    sidecars, as in the issue's scheme)."""

    def __init__(self, procs, redis_server, nginx, rules, service, percent=100, ttl="30s"):
        self.procs, self.redis_server = procs, redis_server
        self.rules, self.service, self.percent, self.ttl = rules, service, percent, ttl
        self.v1, self.v2 = App(procs, "v1"), App(procs, "v2")
        self.stable = self.start_sidecar("stable", self.v1.addr)
        self.shadow = self.start_sidecar("shadow", self.v2.addr)
        self.ng = nginx("127.0.0.1:%d" % self.stable.port, "127.0.0.1:%d" % self.shadow.port)
        wait_http(self.ng.port, "/__ready", self.ng.proc)
        self.rc = redis.Redis(port=redis_server.port, decode_responses=True, socket_timeout=5)

    def start_sidecar(self, role, primary, port=None):
        """A sidecar on free ports, or on `port` (a restart where nginx points)."""
        flags = ["--primary", primary, "--workers", "1", "--mirror-mode", "mesh", "--mesh-role", role,
                 "--redis", "127.0.0.1:%d" % self.redis_server.port, "--service", self.service,
                 "--mirror-percent", str(self.percent), "--compare-rules", self.rules,
                 "--redis-flush-interval", "50ms", "--mesh-pair-ttl", self.ttl]
        for attempt in range(3):
            st = Sidecar()
            st.port = port or free_port()
            st.admin_port = free_port()
            argv = [shadowtee_bin(), "--listen", "127.0.0.1:%d" % st.port,
                    "--admin", "127.0.0.1:%d" % st.admin_port] + flags
            try:
                st.proc = self.procs(argv, wait_ports=(st.port, st.admin_port), ours=True)
                return st
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise

    def counts(self):
        """The endpoint's counters in Redis (compared, diverged, ...)."""
        try:
            h = self.rc.hgetall("shadowtee:{%s}:ep:POST /predict:counts" % self.service)
        except redis.RedisError:
            return {}
        return {k: int(v) for k, v in h.items()}

    def compared(self):
        return self.counts().get("compared", 0)

    def wait_compared(self, n, timeout=20.0):
        got = wait_for(lambda: self.compared() >= n, timeout * slow(), 0.05)
        assert got, "compared %d, want %d; counts %r" % (self.compared(), n, self.counts())
        return self.compared()

    def report(self):
        r = report("--redis", "127.0.0.1:%d" % self.redis_server.port, "--service", self.service,
                   "--format", "json")
        assert r.rc == 0, r
        return r.json()

    def halves(self, st, role, outcome):
        return metric_sum(metrics(st.admin_port), "shadowtee_mesh_halves_total", role=role, outcome=outcome)


@pytest.fixture
def mesh(procs, redis_server, nginx, rules):
    def start(service, **kw):
        return Mesh(procs, redis_server, nginx, rules, service, **kw)
    return start


def settle(pred_value, quiet=0.5, timeout=10.0):
    """Waits until pred_value() has not changed for `quiet` seconds; returns it."""
    deadline = time.monotonic() + timeout * slow()
    last, since = pred_value(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        v = pred_value()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def by_source(doc):
    """Compared pairs by source in the report: {"tee": n, "mesh": m}."""
    src = doc.get("sources")
    assert src is not None, "the report has no counts by source: %s" % sorted(doc)
    return src


def orphans(doc):
    """Orphaned halves by side in the report ({"stable", "shadow", "baseline"})."""
    mesh = doc.get("mesh")
    assert mesh is not None, "the report has no mesh section: %s" % sorted(doc)
    return mesh["orphans"]


def redis_orphans(m):
    """The orphan counters the join script keeps in Redis, by side."""
    h = m.rc.hgetall("shadowtee:{%s}:mesh:orphans" % m.service)
    return {k: int(v) for k, v in h.items() if int(v)}


def test_mesh_exact_matched_and_diverged_counts_noise_never_divergence(mesh):
    """100% sampled: every request the client sends is compared exactly once,
    as a mesh pair. v2 diverges on the label for i % 7 == 3 and nowhere else;
    the noise on every answer (an ignored timestamp and model_version, a score
    1e-9 away inside the 1e-6 tolerance) is never a divergence: those pairs
    are matched. Half the requests carry the client's X-Request-Id, half get
    nginx's."""
    m = mesh("exact")
    n = 70
    items = [(i, "exact-%d" % i if i % 2 else None) for i in range(n)]
    answers = send(m.ng.port, items)
    assert [s for s, _ in answers] == [200] * n
    assert all(b["model_version"] == "v1" for _, b in answers), "clients get the stable answer"
    m.wait_compared(n)
    assert settle(m.counts) == m.counts()
    want_div = sum(1 for i in range(n) if divergent(i))
    doc = m.report()
    assert (doc["compared"], doc["matched"], doc["diverged"], doc["noise"], doc["shadow_errors"]) == \
        (n, n - want_div, want_div, 0, 0), {k: doc[k] for k in ("compared", "matched", "diverged", "noise")}
    ep = doc["endpoints"][0]
    assert ep["endpoint"] == "POST /predict"
    assert ep["paths"] == [{"path": "$.label", "kind": "value", "count": want_div}]
    assert ep["noise_paths"] == []
    assert by_source(doc) == {"tee": 0, "mesh": n}
    assert ep["sources"] == {"tee": 0, "mesh": n}
    # a mesh service with every half joined: a mesh section saying 0 orphans,
    # nothing waiting (not null, which would read as "not mesh mode")
    assert doc["mesh"] is not None and doc["mesh"]["pending"] == 0 and not any(doc["mesh"]["orphans"].values())
    assert doc["samples"], "no sample recorded"
    for s in doc["samples"]:
        assert s.get("source") == "mesh", s
        pb, sb = json.loads(s["primary"]["body"]), json.loads(s["shadow"]["body"])
        assert (pb["model_version"], sb["model_version"]) == ("v1", "v2")
        assert pb["request_id"] == sb["request_id"] == s["request_id"]
        i = [i for (i, _), (_, b) in zip(items, answers) if b["request_id"] == s["request_id"]][0]
        assert s["verdict"] == ("diverged" if divergent(i) else "match"), s
    assert not any(orphans(doc).values()), doc["mesh"]
    # each pair was joined (and compared) on exactly one side, published on the other
    joined = m.halves(m.stable, "stable", "joined") + m.halves(m.shadow, "shadow", "joined")
    published = m.halves(m.stable, "stable", "published") + m.halves(m.shadow, "shadow", "published")
    assert (joined, published) == (n, n)
    assert m.v2.seen()["count"] == n and m.v1.seen()["count"] == n


def test_mesh_shadow_app_sees_only_the_sampled_share(mesh):
    """30% sampled by a hash of x-request-id: nginx mirrors everything, the
    shadow sidecar answers the copies outside the share itself (204), so the
    shadow app receives exactly the sampled share: exactly the ids that
    proxy/mesh.h's function selects, and the same ones the stable side
    selected (each is joined and compared, none is an orphan). The same ids
    sent again select the same subset. A request without x-request-id (sent
    straight to the stable sidecar) is never sampled, and counted."""
    pct, n = 30, 400
    m = mesh("share", percent=pct)
    ids = ["share-%d-%s" % (i, hashlib.md5(str(i).encode()).hexdigest()[:6]) for i in range(n)]
    want = sorted(r for r in ids if in_share(r, pct))
    assert 0 < len(want) < n
    answers = send(m.ng.port, list(zip(range(n), ids)))
    assert [s for s, _ in answers] == [200] * n
    assert all(b["model_version"] == "v1" for _, b in answers)
    # the mirror copies arrive asynchronously: wait until the shadow sidecar
    # has seen every one (in the share or not)
    sm = lambda: (metric_sum(metrics(m.shadow.admin_port), "shadowtee_mesh_unsampled_total", role="shadow"),
                  m.v2.seen()["count"])
    assert wait_for(lambda: sum(sm()) >= n, 15 * slow()), sm()
    assert sm() == (n - len(want), len(want))
    assert sorted(m.v2.seen()["ids"]) == want  # the shadow app saw the share and nothing else
    assert m.v1.seen()["count"] == n  # the stable app serves every client request
    m.wait_compared(len(want))
    assert settle(m.compared) == len(want)  # the stable side sampled exactly the same requests
    st_metrics = metrics(m.stable.admin_port)
    assert metric_sum(st_metrics, "shadowtee_mesh_unsampled_total", role="stable") == n - len(want)
    assert metric_sum(st_metrics, "shadowtee_mesh_sampled_total", role="stable") == len(want)
    want_div = sum(1 for i in range(n) if divergent(i) and in_share(ids[i], pct))
    doc = m.report()
    assert (doc["compared"], doc["diverged"], doc["matched"]) == (len(want), want_div, len(want) - want_div)
    assert redis_orphans(m) == {}

    # the same ids again: the same subset, on both sides
    assert [s for s, _ in send(m.ng.port, list(zip(range(n), ids)))] == [200] * n
    assert wait_for(lambda: m.v2.seen()["count"] >= 2 * len(want), 15 * slow())
    assert sorted(m.v2.seen()["ids"][len(want):]) == want
    m.wait_compared(2 * len(want))
    assert settle(m.compared) == 2 * len(want)

    # no x-request-id: not sampled, counted, still served
    before = metric_sum(metrics(m.stable.admin_port), "shadowtee_mesh_no_request_id_total")
    conn = http.client.HTTPConnection("127.0.0.1", m.stable.port, timeout=10)
    try:
        for i in range(5):
            status, body = post(conn, i)
            assert status == 200 and body["model_version"] == "v1"
    finally:
        conn.close()
    after = metric_sum(metrics(m.stable.admin_port), "shadowtee_mesh_no_request_id_total")
    assert after - before == 5
    assert settle(m.compared) == 2 * len(want)
    assert m.v2.seen()["count"] == 2 * len(want)


def test_mesh_orphans_counted_by_side_when_a_side_is_missing(mesh):
    """With the shadow sidecar SIGKILLed the clients are still served (nginx
    drops the failed mirror copy, as Envoy does); the stable halves published
    meanwhile never find a partner and, once their TTL has passed, are swept
    and counted as stable orphans. Halves sent only to the shadow side (a
    mirror copy whose primary never reached the stable sidecar) become shadow
    orphans. Pairs joined before and after are compared as usual; no orphan
    is ever compared. The report shows the orphans by side."""
    m = mesh("orphans", ttl="1s")
    n1, n2, n3, n4 = 20, 15, 10, 12
    assert [s for s, _ in send(m.ng.port, [(i, "o1-%d" % i) for i in range(n1)])] == [200] * n1
    m.wait_compared(n1)
    shadow_port = m.shadow.port
    m.shadow.proc.signal(signal.SIGKILL)
    m.shadow.proc.wait(10)
    answers = send(m.ng.port, [(i, "o2-%d" % i) for i in range(n2)])
    assert [s for s, _ in answers] == [200] * n2
    assert all(b["model_version"] == "v1" for _, b in answers)
    assert wait_for(lambda: m.halves(m.stable, "stable", "published") >= n2, 10 * slow())
    # the shadow sidecar comes back where nginx points
    m.shadow = m.start_sidecar("shadow", m.v2.addr, port=shadow_port)
    # halves only the shadow side ever sees
    conn = http.client.HTTPConnection("127.0.0.1", m.shadow.port, timeout=10)
    try:
        for i in range(n3):
            status, _ = post(conn, i, "o3-%d" % i)
            assert status == 200
    finally:
        conn.close()
    # joined pairs meanwhile and after the 1 s TTL: compared as usual
    assert [s for s, _ in send(m.ng.port, [(i, "o4-%d" % i) for i in range(n4)])] == [200] * n4
    want = {"stable": n2, "shadow": n3}
    assert wait_for(lambda: redis_orphans(m) == want, 15 * slow(), 0.1), redis_orphans(m)
    m.wait_compared(n1 + n4)
    assert settle(m.compared) == n1 + n4
    assert settle(lambda: redis_orphans(m)) == want
    swept = {side: metric_sum(metrics(m.stable.admin_port), "shadowtee_mesh_orphans_swept_total", side=side)
             + metric_sum(metrics(m.shadow.admin_port), "shadowtee_mesh_orphans_swept_total", side=side)
             for side in ("stable", "shadow")}
    assert swept == want
    doc = m.report()
    assert doc["compared"] == n1 + n4
    assert orphans(doc) == dict(want, baseline=0)
    assert doc["mesh"]["pending"] == 0  # every half is joined or counted
    assert by_source(doc) == {"tee": 0, "mesh": n1 + n4}


class Load:
    """`threads` clients, each on its own keep-alive connection to `port`,
    sending POST /predict {"i": k} with x-request-id "load-k" until stop()
    or until `limit` requests in all or `seconds` have gone by (bounded both
    ways). Every answer must be a 200 from the stable app: anything else is
    recorded in .errors."""

    def __init__(self, port, threads=4, limit=6000, seconds=60.0):
        self.port, self.limit = port, limit
        self.deadline = time.monotonic() + seconds * slow()
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.errors = []
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _take(self):
        with self.lock:
            if self.next >= self.limit or self._stop.is_set() or time.monotonic() > self.deadline:
                return None
            self.next += 1
            return self.next - 1

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while True:
                k = self._take()
                if k is None:
                    return
                try:
                    status, body = post(conn, k, "load-%d" % k)
                    if status != 200 or not body or body.get("model_version") != "v1":
                        raise ValueError("status %s body %r" % (status, body))
                except (OSError, http.client.HTTPException, ValueError) as e:
                    with self.lock:
                        self.errors.append("request %d: %r" % (k, e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                with self.lock:
                    self.done += 1
        finally:
            conn.close()

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a load thread hung"
        return self.done


def test_mesh_redis_sigkilled_and_restarted_under_load(mesh, redis_server):
    """Redis SIGKILLed under load, then restarted on the same port: no client
    request fails or waits on it (clients are served by nginx -> stable sidecar
    -> v1 throughout), the captures meanwhile are dropped and counted in
    /metrics, and comparisons resume in the new Redis, recorded correctly (a
    diverged sample is exactly a divergent input)."""
    m = mesh("rkill")
    load = Load(m.ng.port)
    try:
        m.wait_compared(30)
        dropped0 = (m.halves(m.stable, "stable", "dropped"), m.halves(m.shadow, "shadow", "dropped"))
        redis_server.proc.signal(signal.SIGKILL)
        redis_server.proc.wait(10)
        at_kill = load.done
        # the load goes on; both sidecars count the captures they cannot publish
        dropped = lambda: (m.halves(m.stable, "stable", "dropped"), m.halves(m.shadow, "shadow", "dropped"))
        assert wait_for(lambda: all(d > d0 for d, d0 in zip(dropped(), dropped0)), 20 * slow()), dropped()
        assert load.done > at_kill, "clients stalled while Redis was down"
        redis_server.start()  # same port
        m.rc = redis.Redis(port=redis_server.port, decode_responses=True, socket_timeout=5)
        assert load.done < load.limit, "the load ended before Redis came back (raise its limit)"
        m.wait_compared(30, timeout=30)
    finally:
        total = load.stop()
    assert load.errors == [], "%d of %d client requests failed: %s" % (len(load.errors), total, load.errors[:5])
    settle(m.compared)
    doc = m.report()
    assert doc["compared"] >= 30 and doc["shadow_errors"] == 0
    assert doc["compared"] == doc["matched"] + doc["diverged"] and doc["noise"] == 0
    assert by_source(doc) == {"tee": 0, "mesh": doc["compared"]}
    assert doc["samples"]
    for s in doc["samples"]:
        k = int(s["request_id"].split("-")[1])
        assert s["verdict"] == ("diverged" if divergent(k) else "match"), s
    # every compared pair was divergent exactly when its input was: the
    # diverged count is the divergent share of what was compared (about 1/7)
    assert 0 < doc["diverged"] < doc["compared"]


# ---- the loop guard ------------------------------------------------------------


def test_loop_guard_a_mirrored_request_is_not_mirrored_again(procs, shadowtee, upstream, nginx):
    """Sidecars in tee mode never tee a request that is already a mirror:
    (1) a copy marked by shadowtee's own tee (x-shadowtee-mirror) reaching
    another tee'ing sidecar, and (2) nginx's/Envoy's mirror copy (Host ending
    in "-shadow") reaching a tee'ing sidecar. The original requests are tee'd
    as before (the guard is not simply "never tee")."""
    v1, v2 = App(procs, "v1"), App(procs, "v2")
    third = upstream("echo")  # where a second-generation copy would land
    # B: a tee'ing sidecar in front of v2 (a shadow pod mistakenly teeing)
    b = shadowtee(primary=v2.addr, shadow=third.addr, mirror_percent=100, compare="off")
    # A: the stable sidecar, tee'ing to B
    a = shadowtee(primary=v1.addr, shadow="127.0.0.1:%d" % b.port, mirror_percent=100, compare="off")
    n = 12
    assert [s for s, _ in send(a.port, [(i, "guard-%d" % i) for i in range(n)])] == [200] * n
    assert wait_for(lambda: v2.seen()["count"] >= n, 10 * slow()), v2.seen()
    assert wait_for(lambda: metric_sum(metrics(b.admin_port), "shadowtee_mirror_skipped_total",
                                       reason="loop_guard") >= n, 5 * slow())
    assert metric_sum(metrics(b.admin_port), "shadowtee_mirror_skipped_total", reason="loop_guard") == n
    # a request straight to B is an original: B tees it
    assert [s for s, _ in send(b.port, [(0, "direct-b")])] == [200]
    assert third.wait_requests(1) == 1
    assert third.settle() == 1, "B tee'd A's copies again: %r" % third.requests
    assert third.requests[0].header("x-request-id") == "direct-b"

    # (2) nginx mirrors to a tee'ing sidecar C: the copies (Host "...-shadow") are not tee'd
    fourth = upstream("echo")
    c = shadowtee(primary=v2.addr, shadow=fourth.addr, mirror_percent=100, compare="off")
    ng = nginx(v1.addr, "127.0.0.1:%d" % c.port)
    wait_http(ng.port, "/__ready", ng.proc)
    before = v2.seen()["count"]
    assert [s for s, _ in send(ng.port, [(i, "ng-%d" % i) for i in range(n)])] == [200] * n
    assert wait_for(lambda: v2.seen()["count"] >= before + n, 10 * slow())
    assert fourth.settle() == 0, "C tee'd nginx's mirror copies: %r" % fourth.requests
    assert metric_sum(metrics(c.admin_port), "shadowtee_mirror_skipped_total", reason="loop_guard") == n
    assert [s for s, _ in send(c.port, [(0, "direct-c")])] == [200]
    assert fourth.wait_requests(1) == 1 and fourth.settle() == 1
