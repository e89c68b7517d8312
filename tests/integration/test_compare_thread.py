"""Comparisons off the client's loop (proxy/cmpthread.c), through the real
proxy with real upstreams and a real redis-server on loopback.

- When the comparator keeps up, every mirrored pair is compared and counted
  exactly once, in /metrics and in Redis, with one or several workers and
  comparator threads.
- With a comparator held artificially slow (the test build's
  --test-compare-delay, which burns CPU before each comparison), a client
  request never waits for a comparison and the pairs the queue cannot hold
  are dropped and counted, by the length cap and by the byte budget alike.
- SIGTERM: the pairs queued before it are all compared and reach Redis
  within --drain-timeout; past the timeout the rest is dropped and counted.
- The comparator threads run below the workers (SCHED_IDLE, or SCHED_BATCH
  at --compare-nice), read back from /proc, and within their CPU budget
  (--compare-cpu).
- The production binary has no way to slow its comparator.
"""
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import redis

from conftest import free_port, require, shadowtee_bin
from httpclient import Conn, build_request, metric, metrics
from upstreams import http_role_servers, send_json, sanitized, upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 90
EP = "POST /v1/models/{id}/predict"
NGINX = "/usr/sbin/nginx"


class _Handler(http.server.BaseHTTPRequestHandler):
    """JSON answers; the shadow's differs on $.label when i % 3 == 0."""
    protocol_version = "HTTP/1.1"
    role = "primary"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        i = json.loads(self.rfile.read(n) or b"{}").get("i", 0)
        doc = {"label": "cat", "scores": [0.5, 0.25, 0.25], "i": i}
        if self.role == "shadow" and i % 3 == 0:
            doc["label"] = "dog"
        body = json.dumps(doc).encode()
        send_json(self, body)


@pytest.fixture
def apps():
    yield from http_role_servers(_Handler)


def _post(conn, i, path="/v1/models/7/predict"):
    body = json.dumps({"i": i}).encode()
    conn.send(build_request("POST", path, [("Content-Type", "application/json"),
                                           ("X-Request-Id", "rid-%d" % i)], body=body))
    return conn.response("POST")


def _load(port, n, conns):
    """n POSTs with i = 0..n-1 spread over `conns` keep-alive connections in
    parallel; returns the statuses."""
    statuses = []
    lock = threading.Lock()

    def run(k):
        with Conn(port, timeout=20) as c:
            for i in range(k, n, conns):
                r = _post(c, i)
                with lock:
                    statuses.append(r.status)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return statuses


def _compared(m):
    return metric(m, "shadowtee_comparisons_total")


def _skipped(m, reason):
    return metric(m, "shadowtee_comparisons_skipped_total", reason=reason)


def _redis_counts(r, service):
    return {k: int(v) for k, v in r.hgetall("shadowtee:{%s}:ep:%s:counts" % (service, EP)).items()}


@pytest.mark.parametrize("workers,threads", [(1, 1), (2, 2)])
def test_every_pair_compared_and_counted_exactly_when_the_comparator_keeps_up(
        shadowtee, apps, redis_server, workers, threads):
    service = "exact%d%d" % (workers, threads)
    # the production binary ignores the test build's variable: nothing is slowed
    st = shadowtee(primary=apps("primary"), shadow=apps("shadow"), workers=workers,
                   compare_threads=threads, redis="127.0.0.1:%d" % redis_server.port,
                   service=service, redis_flush_interval="50ms",
                   env={"SHADOWTEE_TEST_COMPARE_DELAY": "10s"})
    n = 300
    statuses = _load(st.port, n, conns=6)
    assert statuses.count(200) == n
    diverged = len([i for i in range(n) if i % 3 == 0])
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    assert wait_for(lambda: _redis_counts(r, service).get("compared") == n, timeout=20), \
        _redis_counts(r, service)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_requests_total") == n
    assert metric(m, "shadowtee_compare_queued_total") == n
    assert _compared(m) == n
    assert metric(m, "shadowtee_comparisons_total", result="diverged") == diverged
    assert metric(m, "shadowtee_comparisons_total", result="match") == n - diverged
    for reason in ("comparator_busy", "queue_bytes", "shutdown"):
        assert _skipped(m, reason) == 0, reason
    assert metric(m, "shadowtee_compare_queue_length") == 0
    assert metric(m, "shadowtee_compare_queue_bytes") == 0
    assert metric(m, "shadowtee_compare_duration_seconds_count") == n
    counts = _redis_counts(r, service)
    assert counts["diverged"] == diverged and counts.get("matched", 0) == n - diverged
    assert r.hget("shadowtee:{%s}:ep:%s:paths" % (service, EP), "value|$.label") == str(diverged)
    # a few seconds later nothing was counted twice
    time.sleep(0.3)
    assert _redis_counts(r, service)["compared"] == n


def test_the_production_binary_cannot_slow_its_comparator(procs):
    p = subprocess.run([shadowtee_bin(), "--primary", "127.0.0.1:9", "--test-compare-delay", "1s"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert "unknown flag '--test-compare-delay'" in p.stderr
    help_text = subprocess.run([shadowtee_bin(), "--help"], capture_output=True, text=True,
                               timeout=10).stdout
    assert "test-compare-delay" not in help_text
    assert "test-compare-delay" in subprocess.run([shadowtee_bin("shadowtee-test"), "--help"],
                                                  capture_output=True, text=True,
                                                  timeout=10).stdout


def _threads(pid):
    """[(thread name, scheduling policy, nice)] of a process, from /proc."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        out.append((name, int(fields[38]), int(fields[16])))  # field 41 policy, field 19 nice
    return sorted(out)


SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = 0, 3, 5


@pytest.mark.parametrize("sched", ["idle", "batch"])
def test_comparator_threads_run_below_the_workers(shadowtee, upstream, sched):
    primary = upstream("fixed", body=b"{}")
    st = shadowtee(primary=primary.addr, shadow=primary.addr, workers=2, compare_threads=2,
                   compare_sched=sched, compare_nice=7)
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the workers keep the nice they were started with
    want = (SCHED_IDLE, base) if sched == "idle" else (SCHED_BATCH, min(base + 7, 19))
    want = [("st-compare-0",) + want, ("st-compare-1",) + want]
    assert wait_for(lambda: [t for t in _threads(st.proc.pid) if t[0].startswith("st-compare-")] == want,
                    timeout=5), _threads(st.proc.pid)
    others = [t for t in _threads(st.proc.pid) if not t[0].startswith("st-compare-")]
    assert len(others) >= 3, others  # main + 2 workers (+ libuv's own)
    assert all(t[1:] == (SCHED_OTHER, base) for t in others), others  # workers and main untouched


def _thread_cpu(pid, name):
    """CPU seconds (utime + stime) of the thread called `name`. The thread
    names itself once it runs, which may be just after the proxy answers:
    waited for (bounded)."""
    def find():
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
            if stat[stat.index("(") + 1:stat.rindex(")")] == name:
                fields = stat[stat.rindex(")") + 2:].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return None
    assert wait_for(lambda: find() is not None, timeout=5), "no thread %s in %d" % (name, pid)
    return find()


def test_cpu_budget_bounds_what_the_comparator_burns(shadowtee, upstream):
    primary = upstream("fixed", body=b'{"label":"cat"}')
    shadow = upstream("fixed", body=b'{"label":"dog"}')
    budget, delay = 0.2, 0.05  # each comparison burns 50 ms: unbudgeted it would take a whole core
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, binary="shadowtee-test",
                   test_compare_delay="50ms", compare_cpu=budget, compare_queue=20,
                   compare_sched="batch")
    cpu0, t0 = _thread_cpu(st.proc.pid, "st-compare-0"), time.monotonic()
    with Conn(st.port, timeout=20) as c:
        i = 0
        while time.monotonic() - t0 < 3.0:  # a steady stream of pairs for 3 s
            assert _post(c, i).status == 200
            i += 1
            time.sleep(0.005)
    cpu, wall = _thread_cpu(st.proc.pid, "st-compare-0") - cpu0, time.monotonic() - t0
    # the budget, its 10 ms burst, one comparison that overshoots it, 10 ms ticks
    assert cpu <= budget * wall + 0.01 + delay + 0.03, "comparator burned %.2fs CPU in %.2fs" % (cpu, wall)
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_compare_paused_seconds_total") > 0  # the budget did hold it back
    assert _compared(m) >= 2
    # its own account of the CPU agrees with the kernel's (10 ms ticks)
    assert abs(metric(m, "shadowtee_compare_cpu_seconds_total") - (cpu + cpu0)) < delay + 0.03


def _sequential(port, n, path="/v1/models/7/predict"):
    """n POSTs one after the other on one connection: (statuses, latencies)."""
    statuses, lat = [], []
    with Conn(port, timeout=20) as c:
        for i in range(n):
            t0 = time.monotonic()
            r = _post(c, i, path)
            lat.append(time.monotonic() - t0)
            statuses.append(r.status)
    return statuses, lat


def _wait_pairs_done(admin_port, n):
    """Waits until the n mirrors have finished (each pair handed to the
    comparator or dropped): the skip counters are final then."""
    assert wait_for(lambda: (lambda m: metric(m, "shadowtee_mirror_requests_total") == n
                             and metric(m, "shadowtee_mirror_inflight") == 0)(metrics(admin_port)),
                    timeout=10)


def _accounted(m):
    """Every mirrored pair is either queued or skipped for one of the three
    reasons; every queued one is compared, still held, or dropped at shutdown."""
    mirrored = metric(m, "shadowtee_mirror_requests_total")
    queued = metric(m, "shadowtee_compare_queued_total")
    skipped_in = _skipped(m, "comparator_busy") + _skipped(m, "queue_bytes")
    return (mirrored == queued + skipped_in and
            queued == _compared(m) + metric(m, "shadowtee_compare_queue_length")
            + _skipped(m, "shutdown"))


def test_slow_comparator_costs_the_client_nothing_and_drops_are_counted(shadowtee, upstream):
    delay = 0.4
    primary = upstream("fixed", body=b'{"label":"cat"}', headers=[("Content-Type", "application/json")])
    shadow = upstream("fixed", body=b'{"label":"dog"}', headers=[("Content-Type", "application/json")])
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, binary="shadowtee-test",
                   test_compare_delay="%dms" % (delay * 1000), compare_queue=2)
    n = 40
    t0 = time.monotonic()
    statuses, lat = _sequential(st.port, n)
    assert statuses == [200] * n
    # one comparison burns `delay` of CPU: a client that waited for even one
    # of them would have taken longer than that
    assert max(lat) < delay, "slowest client request %.3fs, a comparison takes %.3fs" % (max(lat), delay)
    _wait_pairs_done(st.admin_port, n)
    elapsed = time.monotonic() - t0
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_requests_total") == n
    # at most 2 held at a time, and at most elapsed/delay + 1 finished meanwhile
    most_taken = 2 + int(elapsed / delay) + 1
    assert _skipped(m, "comparator_busy") >= n - most_taken, "%.3f %s" % (elapsed, json.dumps(_summary(m)))
    assert _skipped(m, "queue_bytes") == 0
    assert metric(m, "shadowtee_compare_queue_length") <= 2
    # the queue empties at the comparator's pace and every pair is accounted for
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_compare_queue_length") == 0,
                    timeout=10)
    m = metrics(st.admin_port)
    assert _accounted(m), m
    assert _compared(m) == metric(m, "shadowtee_compare_queued_total") >= 2


def _summary(m):
    return {(n + "{" + ",".join("%s=%s" % kv for kv in sorted(ls)) + "}"): v for (n, ls), v in m.items()
            if ("compar" in n or "mirror" in n or "shadow" in n) and "bucket" not in n}


@pytest.mark.parametrize("cap", ["length", "bytes"])
def test_each_queue_cap_drops_and_counts_what_it_cannot_hold(shadowtee, upstream, cap):
    # 30,000-byte bodies: each captured in a 32 KiB buffer, so one pair
    # holds about 66 KiB (two captures, headers, the job)
    body = b'{"pad":"' + b"x" * 29980 + b'"}'
    primary = upstream("fixed", body=body, headers=[("Content-Type", "application/json")])
    shadow = upstream("fixed", body=body.replace(b"x", b"y", 1),
                      headers=[("Content-Type", "application/json")])
    if cap == "length":
        flags = dict(compare_queue=3, compare_queue_bytes="64M")
        reason, other = "comparator_busy", "queue_bytes"
    else:
        flags = dict(compare_queue=1000, compare_queue_bytes="160K")  # room for 2 pairs, not 3
        reason, other = "queue_bytes", "comparator_busy"
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, binary="shadowtee-test",
                   test_compare_delay="300ms", **flags)
    statuses, seen = [], []
    with Conn(st.port, timeout=20) as c:
        for i in range(16):  # the queue's length and bytes read after each answer
            statuses.append(_post(c, i).status)
            m = metrics(st.admin_port)
            seen.append((metric(m, "shadowtee_compare_queue_length"),
                         metric(m, "shadowtee_compare_queue_bytes")))
    _wait_pairs_done(st.admin_port, 16)
    assert statuses == [200] * 16
    m = metrics(st.admin_port)
    assert _skipped(m, reason) >= 8, _summary(m)
    assert _skipped(m, other) == 0
    assert seen, "the queue was never observed"
    if cap == "length":
        assert max(j for j, _ in seen) <= 3
    else:
        assert max(j for j, _ in seen) <= 2
        assert max(b for _, b in seen) <= 160 * 1024
        assert max(b for _, b in seen) > 60 * 1024, (seen, _summary(m))  # a pair was really held
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_compare_queue_length") == 0,
                    timeout=10)
    assert _accounted(metrics(st.admin_port))


def _stderr_field(text, name):
    m = re.search(r'msg="comparator finished".*\b%s=(\d+)' % name, text)
    return int(m.group(1)) if m else None


def _queue_up(st, n):
    """n pairs handed to the (slow) comparator, on separate connections at
    once, before this returns."""
    statuses = _load(st.port, n, conns=n)
    assert statuses == [200] * n
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_compare_queued_total") == n,
                    timeout=10)


def test_sigterm_compares_every_queued_pair_within_the_drain_timeout(shadowtee, apps, redis_server):
    n, delay = 12, 0.15
    st = shadowtee(primary=apps("primary"), shadow=apps("shadow"), binary="shadowtee-test",
                   test_compare_delay="%dms" % (delay * 1000), compare_queue=64,
                   redis="127.0.0.1:%d" % redis_server.port, service="drain",
                   redis_flush_interval="1s", drain_timeout="20s")
    _queue_up(st, n)
    held = metric(metrics(st.admin_port), "shadowtee_compare_queue_length")
    assert held >= n // 2, "the comparator was not behind: nothing to drain (held %d)" % held
    t0 = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    assert st.proc.wait(timeout=30) == 0
    took = time.monotonic() - t0
    assert took < 20, "drain took %.1fs" % took
    err = st.proc.stderr()
    assert _stderr_field(err, "compared") == n, err[-2000:]
    assert _stderr_field(err, "dropped_shutdown") == 0
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    counts = _redis_counts(r, "drain")  # the final flush happened before the exit
    assert counts.get("compared") == n, counts
    assert counts.get("diverged") == len([i for i in range(n) if i % 3 == 0])


def test_past_the_drain_timeout_the_rest_is_dropped_and_counted(shadowtee, apps, redis_server):
    n, delay = 10, 0.5  # 5 s of comparing against a 1 s drain timeout
    st = shadowtee(primary=apps("primary"), shadow=apps("shadow"), binary="shadowtee-test",
                   test_compare_delay="%dms" % (delay * 1000), compare_queue=64,
                   redis="127.0.0.1:%d" % redis_server.port, service="cut",
                   redis_flush_interval="1s", drain_timeout="1s")
    _queue_up(st, n)
    t0 = time.monotonic()
    st.proc.signal(signal.SIGTERM)
    assert st.proc.wait(timeout=30) == 0
    took = time.monotonic() - t0
    # drain timeout + the comparison in progress + the final flush (<= 1 s)
    assert took < 1 + delay + 1 + (3 if sanitized() else 1.5), "shutdown took %.1fs" % took
    err = st.proc.stderr()
    compared, dropped = _stderr_field(err, "compared"), _stderr_field(err, "dropped_shutdown")
    assert compared is not None and dropped is not None, err[-2000:]
    assert compared + dropped == n
    assert compared >= 1 and dropped >= 1, (compared, dropped)
    assert "comparisons dropped at shutdown" in err
    r = redis.Redis(port=redis_server.port, decode_responses=True)
    assert _redis_counts(r, "cut").get("compared") == compared


def _minor_faults(pid):
    """Minor page faults of process `pid`, all threads (/proc/PID/stat field 10)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def _prediction_doc(n, model):
    """An inference answer like bench/payload.py's: ~73 bytes per prediction."""
    preds = [{"label": "class-%d" % (i % 7), "id": i, "class_scores": [0.125 * (i % 8), 0.5, 0.375]}
             for i in range(n)]
    return json.dumps({"model": model, "predictions": preds}).encode()


def _wrk_paced(port, path, seconds, tmp_path, conns=4, think_ms=10):
    """wrk -cN with a think time after each response (the payload bench's
    paced load), bounded by -d; returns the requests it completed."""
    script = tmp_path / "paced.lua"
    script.write_text("function delay()\n    return %d\nend\n" % think_ms)
    out = subprocess.run(["timeout", "-k", "5", str(seconds + 20), "wrk", "-t1", "-c%d" % conns,
                          "-d%ds" % seconds, "--timeout", "2s", "-s", str(script),
                          "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    assert m and "Non-2xx" not in out and "Socket errors" not in out, out
    return int(m.group(1))


STATIC_NGINX_CONF = """\
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    default_type application/json;
    sendfile on;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}
}}
"""


def _static_nginx(procs, files):
    """nginx serving `files` ({name: bytes}) with sendfile, as the payload
    bench's upstreams do; returns HOST:PORT."""
    d = tempfile.mkdtemp(prefix="st-static-nginx-")
    os.chmod(d, 0o755)  # workers may run as nobody
    os.makedirs(os.path.join(d, "tmp"))
    os.makedirs(os.path.join(d, "www"))
    for name, body in files.items():
        with open(os.path.join(d, "www", name), "wb") as f:
            f.write(body)
        os.chmod(os.path.join(d, "www", name), 0o644)
    os.chmod(os.path.join(d, "www"), 0o755)
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(STATIC_NGINX_CONF.format(d=d, port=port))
    procs([NGINX, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log"), "-g", "daemon off;"], wait_ports=(port,))
    return "127.0.0.1:%d" % port


@pytest.mark.parametrize("retain,per_request", [(None, "none"), ("0", "a body's pages")])
def test_compared_200k_pairs_do_not_fault_pages_in_per_request(shadowtee, procs, redis_server, tmp_path, retain,
                                                             per_request):
    """Issue 13: a pair's bodies are malloc'd by the worker and freed by the
    comparator thread. With glibc's adaptive thresholds the freed heap top
    went back to the OS (madvise DONTNEED, ~2 MB at a time) after most pairs,
    and the worker faulted those pages in again, on the client's path: ~55
    minor faults per request and a paced p99 1.7-1.9x that of --compare off
    in the payload bench (200 KiB bodies). --heap-retain (default 64M) keeps
    them. The second case, glibc's defaults under the same load, is a
    control: that this count sees the faults (it skips when the machine's
    timing did not make glibc trim)."""
    if sanitized():
        pytest.skip("a sanitizer or valgrind build replaces glibc's allocator: its page faults say nothing "
                    "about --heap-retain")
    require(shutil.which("wrk"), "wrk is missing (scripts/deps.sh installs it): no paced load to measure under")
    require(os.path.exists(NGINX), "nginx is not installed (scripts/deps.sh): no upstream serving 200 KiB fast")
    body = _prediction_doc(2800, "stable")
    assert len(body) > 190000
    primary = _static_nginx(procs, {"predict": body})
    shadow = _static_nginx(procs, {"predict": _prediction_doc(2800, "shadow")})
    flags = {} if retain is None else {"heap_retain": retain}
    # a comparator starved by a busy machine holds at most 4M of pairs: the
    # heap's growth to hold them is bounded (~1 fault per request here)
    # SCHED_BATCH: on a machine busy with other work the comparator still gets its share
    st = shadowtee(primary=primary, shadow=shadow, compare_threads=1, compare_queue_bytes="4M", compare_sched="batch",
                   redis="127.0.0.1:%d" % redis_server.port, service="faults", **flags)
    _wrk_paced(st.port, "/predict", 1, tmp_path)  # the heap grows to its working size
    f0, c0 = _minor_faults(st.proc.pid), _compared(metrics(st.admin_port))
    n = _wrk_paced(st.port, "/predict", 3, tmp_path)
    faults = (_minor_faults(st.proc.pid) - f0) / n
    print("--heap-retain %s: %.2f minor faults per request over %d" % (retain or "default", faults, n))
    assert n >= 200
    assert wait_for(lambda: _compared(metrics(st.admin_port)) - c0 >= n * 0.5, timeout=20), \
        "most pairs were dropped, not compared: %s" % metrics(st.admin_port)
    if per_request == "none":
        assert faults < 8, "%.1f minor faults per compared 200 KiB pair" % faults
    elif faults <= 20:
        # a control, not a check of ours: glibc trims or not depending on how
        # frees and captures interleave, which a machine busy with other
        # work changes (46-55 per request on a quiet one)
        pytest.skip("control: glibc's defaults faulted only %.1f pages in per request under this machine's "
                    "timing, so this run cannot show that the count sees them" % faults)
