#!/usr/bin/python3
"""shadowtee fault suite (issue 15): each case runs wrk against a real
shadowtee (2 workers, mirroring 100% to a shadow, comparing, statistics in
Redis) on loopback and injects one fault while the load runs:

  baseline          no fault (the reference row)
  redis_kill        Redis SIGKILLed, restarted 2 s later (AOF, fsync always)
  shadow_stop       the shadow SIGSTOPped, SIGCONT 3 s later
  shadow_kill       the shadow SIGKILLed, restarted 2 s later
  shadow_reset      the shadow resets every 3rd response mid-body
  primary_restart   the primary killed and restarted: wrk in three phases
                    (up / down / back up); 502s allowed only while it is down
  rolling_restart   a second shadowtee with --handover takes the listening
                    sockets, then SIGTERM to the first; a second wrk opens a
                    connection per request meanwhile
  rolling_reuseport the same with SO_REUSEPORT only (no handover): shows the
                    resets of connections queued on the old listener (info)
  fd_exhaustion     prlimit --nofile=256, wrk connected first, then 400 idle
                    clients for 3 s (the connection cap keeps descriptors for
                    the upstreams)
  fd_emfile         the same with the cap off (--max-connections 100000):
                    accept(2) hits EMFILE, the listener backs off
  slowloris         2,000 connections sending a header line a second; a paced
                    client (100 req/s) and wrk -c8 measured before and during
                    the attack in the same run

Client errors are counted by status (wrk's Lua response hook) and by socket
error (connect, read, write, timeout). After each case shadowtee is stopped
(SIGTERM: the statistics' final flush) and the accounting checked: the
comparisons Redis holds (sum of ep:*:counts compared), the comparisons the
workers recorded and the ones they counted as lost (their
event=stats_closed lines) must satisfy stored <= compared <= stored + lost,
and compared <= mirrored. RSS of every shadowtee process is sampled every
100 ms. Goals: no client error where the primary is up, the accounting
holds, RSS below FAULTS_RSS_MIB.

Usage: bench/faults/run.py [CASE ...]   (default: all; about 3 minutes)
Environment: SHADOWTEE_BUILD (default build/), FAULTS_SECS (wrk seconds per
case, default 8), FAULTS_RSS_MIB (default 400). Output: the table on stdout
and in bench/results/faults-latest.md, logs in bench/results/faults-<time>/.
Exit status 1 when a goal case fails. Run it alone: flock /work/.bench.lock.
"""
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SHADOWTEE_BUILD", os.path.join(ROOT, "build"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
SECS = int(os.environ.get("FAULTS_SECS", "8"))
RSS_LIMIT_MIB = int(os.environ.get("FAULTS_RSS_MIB", "400"))
PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "servers.py")
LUA = os.path.join(HERE, "count.lua")


def log(msg):
    sys.stderr.write("[faults %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited (%s) before port %d answered" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("port %d did not answer in %.0f s" % (port, timeout))


def wait_for(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- processes -----------------------------------------------------------

class Proc:
    def __init__(self, name, argv, logdir):
        self.name = name
        self.argv = argv
        self.errpath = os.path.join(logdir, "%s.log" % name)
        self.err = open(self.errpath, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=self.err)

    @property
    def pid(self):
        return self.p.pid

    def text(self):
        with open(self.errpath, "r", errors="replace") as f:
            return f.read()

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class Redis:
    def __init__(self, logdir):
        self.port = free_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="st-faults-redis-")
        self.logdir = logdir
        self.proc = None
        self.start()

    def start(self):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = Proc("redis", [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir],
                         self.logdir)
        wait_port(self.port, proc=self.proc.p)
        wait_for(lambda: self.ping(), 10)

    def ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except (OSError, ValueError):
            return False

    def cmd(self, *args):
        """One command on a new connection; the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            out = b"*%d\r\n" % len(args) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
            s.sendall(out)
            f = s.makefile("rb")
            return self._read(f)

    def _read(self, f):
        line = f.readline()
        if not line:
            raise ValueError("no reply")
        t, rest = line[:1], line[1:-2].decode()
        if t == b"+":
            return rest
        if t == b"-":
            raise ValueError(rest)
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)
            return data[:-2].decode()
        if t == b"*":
            n = int(rest)
            return [self._read(f) for _ in range(n)] if n >= 0 else None
        raise ValueError("bad reply %r" % line)

    def stored(self, service):
        prefix = "shadowtee:{%s}:" % service
        total = 0
        for ep in self.cmd("SMEMBERS", prefix + "endpoints") or []:
            v = self.cmd("HGET", prefix + "ep:%s:counts" % ep, "compared")
            total += int(v or 0)
        return total

    def close(self):
        if self.proc:
            self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def upstream(name, port, logdir, *extra):
    p = Proc(name, [PY, SERVERS, str(port)] + list(extra), logdir)
    wait_port(port, proc=p.p)
    return p


class RssSampler:
    """Peak VmRSS (KiB) of every pid in pids() every 100 ms, in a thread."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in list(self.pids()):
                try:
                    with open("/proc/%d/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                kib = int(line.split()[1])
                                self.peak[pid] = max(self.peak.get(pid, 0), kib)
                except OSError:
                    pass
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=2)

    def peak_mib(self):
        return max(self.peak.values()) / 1024.0 if self.peak else 0.0


# ---- load ----------------------------------------------------------------

class Wrk:
    """One wrk run in the background; result() parses what count.lua printed.
    churn=True: every request on a new connection (Connection: close)."""

    def __init__(self, port, secs, conns=16, threads=2, churn=False):
        hdr = ["-H", "Connection: close"] if churn else []
        self.p = subprocess.Popen(["timeout", str(secs + 15), "wrk", "-t%d" % threads, "-c%d" % conns,
                                   "-d%ds" % secs, "--timeout", "2s", "-s", LUA] + hdr +
                                  ["http://127.0.0.1:%d/" % port],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self):
        out, _ = self.p.communicate()
        r = {"status": {}, "errors": {}, "requests": 0, "p50_us": 0, "p99_us": 0, "raw": out}
        for line in out.splitlines():
            f = line.split()
            if line.startswith("status "):
                r["status"][int(f[1])] = int(f[2])
            elif line.startswith("errors "):
                r["errors"] = {f[i]: int(f[i + 1]) for i in range(1, len(f) - 1, 2)}
            elif line.startswith("requests "):
                r["requests"] = int(f[1])
            elif line.startswith("latency_us "):
                r["p50_us"], r["p99_us"] = int(f[2]), int(f[4])
        if not r["errors"]:
            raise RuntimeError("wrk printed no summary:\n" + out[-1000:])
        return r


def merge(results):
    m = {"status": {}, "errors": {}, "requests": 0}
    for r in results:
        m["requests"] += r["requests"]
        for k, v in r["status"].items():
            m["status"][k] = m["status"].get(k, 0) + v
        for k, v in r["errors"].items():
            m["errors"][k] = m["errors"].get(k, 0) + v
    return m


def client_errors(r):
    return sum(v for k, v in r["status"].items() if not 200 <= k < 300) + sum(r["errors"].values())


def paced_latencies(port, n=400, interval=0.01):
    """n requests on one keep-alive connection, one every `interval` s:
    latencies in ms (a request that failed counts as None)."""
    out = []
    req = (b"POST /v1/models/m/predict?i=7 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\n\r\n{}")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    next_at = time.perf_counter()
    for _ in range(n):
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        t0 = time.perf_counter()
        try:
            s.sendall(req)
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise OSError("closed")
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(buf) < need:
                d = s.recv(65536)
                if not d:
                    raise OSError("closed")
                buf += d
            buf = buf[need:]
            out.append((time.perf_counter() - t0) * 1000 if head.startswith(b"HTTP/1.1 200") else None)
        except OSError:
            out.append(None)
            s.close()
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            buf = b""
    s.close()
    return out


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q / 100.0 * len(xs)))]


class IdleClients:
    """n connections that never send a byte (they connect in the kernel's
    accept queue whether or not the proxy accepts them)."""

    def __init__(self, port, n):
        self.socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self.socks.append(s)

    def close(self):
        for s in self.socks:
            s.close()


class Slowloris:
    """bench/faults/slowloris.py in its own process (see there)."""

    def __init__(self, port, n, logdir):
        self.p = subprocess.Popen([PY, os.path.join(HERE, "slowloris.py"), str(port), str(n)],
                                  stdout=subprocess.PIPE, stderr=open(os.path.join(logdir, "slowloris.log"), "ab"),
                                  text=True)
        line = self.p.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError("slowloris did not start: %r" % line)

    def close(self):
        self.p.terminate()
        self.p.wait(timeout=10)


# ---- the system under test ----------------------------------------------

class Stack:
    """primary + shadow (servers.py) and shadowtee for one case; Redis is
    the suite's (a service name per case keeps the counts apart)."""

    def __init__(self, name, redis, logdir, shadow_args=(), st_prefix=(), st_extra=()):
        self.name = name
        self.redis = redis
        self.logdir = logdir
        self.port, self.admin, self.pport, self.sport = free_ports(4)
        self.handover = os.path.join(logdir, "%s.handover.sock" % name)
        self.primary = upstream(name + "-primary", self.pport, logdir)
        self.shadow_args = list(shadow_args)
        self.shadow = upstream(name + "-shadow", self.sport, logdir, "--variant", "shadow", *self.shadow_args)
        self.st_prefix = list(st_prefix)
        self.st_extra = list(st_extra)
        self.sts = []  # every shadowtee process of the case
        self.st = self.start_shadowtee()

    def argv(self, admin=None, handover=True):
        a = self.st_prefix + [os.path.join(BUILD, "shadowtee"), "--listen", "127.0.0.1:%d" % self.port,
                              "--primary", "127.0.0.1:%d" % self.pport, "--shadow", "127.0.0.1:%d" % self.sport,
                              "--admin", "127.0.0.1:%d" % (admin or self.admin), "--workers", "2",
                              "--redis", "127.0.0.1:%d" % self.redis.port, "--service", "faults-" + self.name,
                              "--shadow-timeout", "500ms", "--shadow-connect-timeout", "300ms",
                              "--drain-timeout", "5s", "--log-level", "info"]
        if handover:
            a += ["--handover", self.handover]
        return a + self.st_extra

    def start_shadowtee(self, admin=None, handover=True, wait=True):
        p = Proc("%s-shadowtee-%d" % (self.name, len(self.sts)), self.argv(admin, handover), self.logdir)
        self.sts.append(p)
        if wait:
            wait_port(self.port, proc=p.p)
            wait_port(admin or self.admin, proc=p.p)
        return p

    def pids(self):
        return [p.pid for p in self.sts if p.p.poll() is None]

    def metrics(self, admin=None):
        try:
            with socket.create_connection(("127.0.0.1", admin or self.admin), timeout=2) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
        except OSError:
            return {}
        out = {}
        for line in data.decode(errors="replace").splitlines():
            if line and not line.startswith("#") and " " in line:
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def settle(self):
        """Mirrors in flight finish (bounded)."""
        wait_for(lambda: self.metrics().get("shadowtee_mirror_inflight", 0) == 0, timeout=5)

    def finish(self):
        """Stops every shadowtee (final flush), then the upstreams; returns
        the accounting."""
        for p in self.sts:
            p.stop()
        acc = {"compared": 0, "lost": 0, "mirrored": 0, "exit_codes": [p.p.returncode for p in self.sts]}
        for p in self.sts:
            text = p.text()
            for m in re.finditer(r"event=stats_closed .*?comparisons=(\d+) .*?lost_comparisons=(\d+)", text):
                acc["compared"] += int(m.group(1))
                acc["lost"] += int(m.group(2))
            for m in re.finditer(r"msg=stopped requests=(\d+) mirrored=(\d+)", text):
                acc["mirrored"] += int(m.group(2))
        acc["stored"] = self.redis.stored("faults-" + self.name)
        self.primary.stop()
        self.shadow.stop()
        return acc


# ---- cases ---------------------------------------------------------------

def at(t0, secs):
    """Sleeps until t0 + secs (the fault schedule of a case)."""
    left = t0 + secs - time.monotonic()
    if left > 0:
        time.sleep(left)


def run_plain(stack, actions, churn=False):
    """wrk (16 keep-alive connections) for SECS seconds with actions [(t, fn)]
    run on schedule; churn: a second wrk opens a connection per request."""
    with RssSampler(stack.pids) as rss:
        t0 = time.monotonic()
        runs = [Wrk(stack.port, SECS)] + ([Wrk(stack.port, SECS, conns=16, threads=1, churn=True)]
                                          if churn else [])
        for t, fn in actions:
            at(t0, t)
            fn()
        r = merge([w.result() for w in runs])
        stack.settle()
    return r, rss.peak_mib(), {}


def case_baseline(stack, redis):
    return run_plain(stack, [])


def case_redis_kill(stack, redis):
    return run_plain(stack, [(2, lambda: redis.proc.kill()), (4, redis.start)])


def case_shadow_stop(stack, redis):
    return run_plain(stack, [(2, lambda: stack.shadow.signal(signal.SIGSTOP)),
                             (5, lambda: stack.shadow.signal(signal.SIGCONT))])


def case_shadow_kill(stack, redis):
    def restart():
        stack.shadow = upstream(stack.name + "-shadow", stack.sport, stack.logdir, "--variant", "shadow")
    return run_plain(stack, [(2, lambda: stack.shadow.kill()), (4, restart)])


def case_shadow_reset(stack, redis):
    return run_plain(stack, [])


def case_primary_restart(stack, redis):
    phases = {}
    with RssSampler(stack.pids) as rss:
        phases["up"] = Wrk(stack.port, 2).result()
        stack.primary.kill()
        phases["down"] = Wrk(stack.port, 2).result()
        stack.primary = upstream(stack.name + "-primary", stack.pport, stack.logdir)
        phases["back"] = Wrk(stack.port, max(2, SECS - 4)).result()
        stack.settle()
    r = merge(phases.values())
    r["phases"] = phases
    return r, rss.peak_mib(), {}


def case_rolling(stack, redis, handover):
    notes = {}

    def start_new():
        if handover:
            new = stack.start_shadowtee(wait=False)
            if not wait_for(lambda: "took over listening sockets" in new.text() or new.p.poll() is not None, 10):
                raise RuntimeError("the new instance did not take over: " + new.text()[-500:])
            notes["took_over"] = "took over listening sockets" in new.text()
        else:
            admin2 = free_ports(1)[0]
            stack.start_shadowtee(admin=admin2, handover=False, wait=True)

    def stop_old():
        old = stack.sts[0]
        old.signal(signal.SIGTERM)
        old.p.wait(timeout=15)
        notes["old_exit"] = old.p.returncode

    r, peak, _ = run_plain(stack, [(2, start_new), (3, stop_old)], churn=True)
    return r, peak, notes


def case_rolling_restart(stack, redis):
    return case_rolling(stack, redis, True)


def case_rolling_reuseport(stack, redis):
    return case_rolling(stack, redis, False)


def case_fd(stack, redis):
    notes = {}
    holder = {}

    def flood():
        holder["idle"] = IdleClients(stack.port, 400)

    def release():
        m = stack.metrics()
        notes["paused_during"] = m.get("shadowtee_accept_paused")
        holder["idle"].close()

    r, peak, _ = run_plain(stack, [(1.5, flood), (4.5, release)])
    m = stack.metrics()
    notes["emfile"] = m.get('shadowtee_accept_errors_total{reason="emfile"}', 0)
    notes["cap"] = m.get("shadowtee_max_connections")
    # a new connection after the flood is served again
    try:
        with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as s:
            s.sendall(b"GET /v1/models/m/predict?i=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            notes["after"] = s.recv(12).decode(errors="replace")
    except OSError as e:
        notes["after"] = "error %s" % e
    return r, peak, notes


def case_slowloris(stack, redis):
    notes = {}
    with RssSampler(stack.pids) as rss:
        base_paced = paced_latencies(stack.port)
        base_wrk = Wrk(stack.port, 4, conns=8).result()
        attack = Slowloris(stack.port, 2000, stack.logdir)
        try:
            wait_for(lambda: stack.metrics().get("shadowtee_active_connections", 0) >= 2000, 10)
            notes["active"] = stack.metrics().get("shadowtee_active_connections")
            atk_paced = paced_latencies(stack.port)
            atk_wrk = Wrk(stack.port, 4, conns=8).result()
        finally:
            attack.close()
        stack.settle()
    for name, xs in (("base", base_paced), ("attack", atk_paced)):
        notes["paced_%s_p50_ms" % name] = pct(xs, 50)
        notes["paced_%s_p99_ms" % name] = pct(xs, 99)
        notes["paced_%s_failed" % name] = sum(1 for x in xs if x is None)
    notes["paced_p50_ratio"] = notes["paced_attack_p50_ms"] / notes["paced_base_p50_ms"]
    notes["paced_p99_ratio"] = notes["paced_attack_p99_ms"] / notes["paced_base_p99_ms"]
    notes["wrk_p50_ratio"] = atk_wrk["p50_us"] / max(1, base_wrk["p50_us"])
    notes["wrk_base_p99_ms"] = base_wrk["p99_us"] / 1000.0
    notes["wrk_attack_p99_ms"] = atk_wrk["p99_us"] / 1000.0
    notes["wrk_p99_ratio"] = atk_wrk["p99_us"] / max(1, base_wrk["p99_us"])
    notes["wrk_rps_ratio"] = atk_wrk["requests"] / max(1, base_wrk["requests"])
    r = merge([base_wrk, atk_wrk])
    extra_failed = notes["paced_base_failed"] + notes["paced_attack_failed"]
    if extra_failed:
        r["errors"]["paced"] = extra_failed
    return r, rss.peak_mib(), notes


CASES = [
    ("baseline", case_baseline, {}, True),
    ("redis_kill", case_redis_kill, {}, True),
    ("shadow_stop", case_shadow_stop, {}, True),
    ("shadow_kill", case_shadow_kill, {}, True),
    ("shadow_reset", case_shadow_reset, {"shadow_args": ["--reset-every", "3"]}, True),
    ("primary_restart", case_primary_restart, {}, True),
    ("rolling_restart", case_rolling_restart, {}, True),
    ("rolling_reuseport", case_rolling_reuseport, {}, False),
    ("fd_exhaustion", case_fd, {"st_prefix": ["prlimit", "--nofile=256", "--"]}, True),
    ("fd_emfile", case_fd, {"st_prefix": ["prlimit", "--nofile=256", "--"],
                            "st_extra": ["--max-connections", "100000"]}, True),
    ("slowloris", case_slowloris, {}, True),
]


def verdict(name, r, acc, peak, goal):
    """(ok, reasons) for one row."""
    why = []
    if name == "primary_restart":
        ph = r["phases"]
        if client_errors(ph["up"]) or client_errors(ph["back"]):
            why.append("errors while the primary was up")
        down = ph["down"]
        if sum(down["errors"].values()) or any(k != 502 and not 200 <= k < 300 for k in down["status"]):
            why.append("errors other than 502 while it was down")
    elif client_errors(r):
        why.append("client errors")
    if not (acc["stored"] <= acc["compared"] <= acc["stored"] + acc["lost"]):
        why.append("accounting: stored %d, compared %d, lost %d" % (acc["stored"], acc["compared"], acc["lost"]))
    if acc["compared"] > acc["mirrored"]:
        why.append("more comparisons than mirrored requests")
    if peak > RSS_LIMIT_MIB:
        why.append("RSS %.0f MiB over %d" % (peak, RSS_LIMIT_MIB))
    if any(c not in (0, None) for c in acc["exit_codes"]):
        why.append("shadowtee exit codes %s" % acc["exit_codes"])
    if not goal:
        return None, why
    return not why, why


def fmt_status(r):
    bad = {k: v for k, v in sorted(r["status"].items()) if not 200 <= k < 300}
    return ", ".join("%d: %d" % kv for kv in bad.items()) or "0"


def fmt_sock(r):
    e = r["errors"]
    return "%d/%d/%d/%d" % (e.get("connect", 0), e.get("read", 0), e.get("write", 0), e.get("timeout", 0)) + (
        " +%d paced" % e["paced"] if e.get("paced") else "")


def main():
    want = sys.argv[1:]
    names = [c[0] for c in CASES]
    for w in want:
        if w not in names:
            sys.exit("unknown case %r (cases: %s)" % (w, " ".join(names)))
    if not os.path.exists(os.path.join(BUILD, "shadowtee")):
        sys.exit("%s/shadowtee is not built (make)" % BUILD)
    for tool in ("wrk", "redis-server", "prlimit"):
        if not shutil.which(tool):
            sys.exit("%s is needed (bash scripts/deps.sh)" % tool)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,000 slowloris sockets
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(ROOT, "bench", "results", "faults-" + stamp)
    os.makedirs(outdir, exist_ok=True)
    redis = Redis(outdir)
    rows, failed = [], []
    t_start = time.monotonic()
    try:
        for name, fn, kw, goal in CASES:
            if want and name not in want:
                continue
            log("case %s" % name)
            stack = Stack(name, redis, outdir, **kw)
            try:
                r, peak, notes = fn(stack, redis)
            finally:
                acc = stack.finish()
            ok, why = verdict(name, r, acc, peak, goal)
            rows.append((name, r, acc, peak, ok, why, notes))
            if ok is False:
                failed.append(name)
            log("  %s: requests %d, errors %s / %s, compared %d stored %d lost %d, RSS %.0f MiB%s"
                % ("PASS" if ok else ("info" if ok is None else "FAIL"), r["requests"], fmt_status(r),
                   fmt_sock(r), acc["compared"], acc["stored"], acc["lost"], peak,
                   (": " + "; ".join(why)) if why else ""))
    finally:
        redis.close()
    lines = ["# shadowtee fault suite, %s (%d s per case, %.0f s in all)" % (stamp, SECS, time.monotonic() - t_start),
             "",
             "Command: `flock /work/.bench.lock make faults` (= `bench/faults/run.py`); build: `%s`; load "
             "average at the end: %s." % (os.path.relpath(BUILD, ROOT), os.getloadavg()[0]),
             "",
             "| case | requests | client errors by status | socket errors c/r/w/t | mirrored | compared | "
             "stored | lost | RSS peak MiB | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r, acc, peak, ok, why, notes in rows:
        v = "pass" if ok else ("info" if ok is None else "FAIL")
        if why:
            v += " (" + "; ".join(why) + ")"
        lines.append("| %s | %d | %s | %s | %d | %d | %d | %d | %.0f | %s |" % (
            name, r["requests"], fmt_status(r), fmt_sock(r), acc["mirrored"], acc["compared"],
            acc["stored"], acc["lost"], peak, v))
    lines.append("")
    for name, r, acc, peak, ok, why, notes in rows:
        if name == "primary_restart":
            ph = r["phases"]
            lines.append("- primary_restart phases: up %d req, errors %s / %s; down %d req, %s / %s; back %d req, "
                         "%s / %s" % (ph["up"]["requests"], fmt_status(ph["up"]), fmt_sock(ph["up"]),
                                      ph["down"]["requests"], fmt_status(ph["down"]), fmt_sock(ph["down"]),
                                      ph["back"]["requests"], fmt_status(ph["back"]), fmt_sock(ph["back"])))
        if notes:
            lines.append("- %s: %s" % (name, ", ".join(
                "%s=%s" % (k, ("%.2f" % v) if isinstance(v, float) else v) for k, v in notes.items())))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(ROOT, "bench", "results", "faults-latest.md"), "w") as f:
        f.write(text)
    log("logs in %s" % outdir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
