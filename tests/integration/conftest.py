"""Shared fixtures for the integration suite.

Everything runs on loopback with ports picked free at run time. Processes
are started through `Proc`, which waits on readiness (a port that answers),
never on fixed sleeps, and on teardown checks the sanitizer / valgrind
output of our own binaries so a leak or UB report fails the test.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SHADOWTEE_BUILD", os.path.join(ROOT, "build"))
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.dirname(__file__))

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "== ERROR SUMMARY: [1-9]",
)


def require(found, reason):
    """Returns `found`; when it is missing, the test skips with `reason` on a
    user's machine but fails under CI=true: CI must never pass without having
    run it (scripts/deps.sh installs everything the suite uses but kubectl,
    which no Debian archive has)."""
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("%s; CI=true: a missing prerequisite fails CI instead of skipping" % reason, pytrace=False)
    pytest.skip(reason)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, host="127.0.0.1", timeout=15.0, proc=None):
    """Waits until a TCP connect to host:port succeeds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before port %d answered" % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("port %d did not answer within %.1fs" % (port, timeout))


class Proc:
    """A child process with its stderr kept in a temp file."""

    def __init__(self, argv, env=None, wait_ports=(), timeout=15.0, ours=False):
        self.argv = list(argv)
        self.ours = ours
        self.signalled = False  # a test sent it a signal itself
        self.died = None  # exit status found when stop() came, None: it was still running
        self.errfile = tempfile.NamedTemporaryFile(prefix="st-", suffix=".err", delete=False)
        e = dict(os.environ)
        e.update(env or {})
        if ours:
            e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            if os.environ.get("SHADOWTEE_VALGRIND") == "1":
                self.argv = ["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
                             "--error-exitcode=99"] + self.argv
                timeout = max(timeout, 60.0)
        self.p = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.errfile, env=e,
                                  stdin=subprocess.DEVNULL)
        try:
            for port in wait_ports:
                wait_port(port, timeout=timeout, proc=self.p)
        except (RuntimeError, TimeoutError) as e:
            raise type(e)("%s; %s stderr ends: %s" % (e, os.path.basename(self.argv[0]),
                                                      self.stderr()[-600:])) from None

    @property
    def pid(self):
        return self.p.pid

    def stderr(self):
        with open(self.errfile.name, "r", errors="replace") as f:
            return f.read()

    def signal(self, sig):
        if self.p.poll() is None:
            self.signalled = True
            self.p.send_signal(sig)

    def wait(self, timeout=30):
        return self.p.wait(timeout=timeout)

    def stop(self, timeout=30):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        self.died = self.p.poll()
        if self.died is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def sanitizer_report(self):
        import re
        text = self.stderr()
        for m in SANITIZER_MARKERS:
            if re.search(m, text):
                return text
        return None

    def tally_metrics(self, path):
        """Appends this proxy's non-zero request rejection and accept-error
        counters to `path` (opt-in, SHADOWTEE_METRICS_TALLY: how the closing
        notes count each reason the suite provokes)."""
        import re
        import urllib.request
        if "--admin" not in self.argv or self.p.poll() is not None:
            return
        admin = self.argv[self.argv.index("--admin") + 1]
        try:
            with urllib.request.urlopen("http://%s/metrics" % admin, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return
        lines = [l for l in text.splitlines()
                 if re.match(r"^shadowtee_(requests_rejected|accept_errors)_total\{.*\} [1-9]", l)]
        with open(path, "a") as f:
            f.writelines(l + "\n" for l in lines)

    def close(self):
        if self.ours and os.environ.get("SHADOWTEE_METRICS_TALLY"):
            self.tally_metrics(os.environ["SHADOWTEE_METRICS_TALLY"])
        self.stop()
        report = self.sanitizer_report() if self.ours else None
        if self.ours and not report and not self.signalled and self.died is not None and self.died < 0:
            # killed by a signal nobody sent (a crash): stderr has no sanitizer marker then
            report = "%s died by signal %d:\n%s" % (os.path.basename(self.argv[0]), -self.died,
                                                    self.stderr()[-3000:])
        os.unlink(self.errfile.name)
        return report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item (item.rep_call), so
    fixtures can tell at teardown whether the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def procs(request):
    """Starts processes for one test and stops them all at the end; a
    sanitizer or valgrind report from our binaries, or one of them killed
    by a signal the test did not send, fails the test. When the test failed,
    the end of each of our processes' stderr is printed with it."""
    started = []

    def start(argv, **kw):
        p = Proc(argv, **kw)
        started.append(p)
        return p

    yield start
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in started:
            if p.ours:
                print("---- stderr of %s (last 4000 bytes) ----\n%s"
                      % (" ".join(p.argv[:3]), p.stderr()[-4000:]))
    reports = []
    for p in reversed(started):
        r = p.close()
        if r:
            reports.append(r)
    assert not reports, "sanitizer/valgrind report:\n" + "\n".join(reports)


def shadowtee_bin(name="shadowtee"):
    path = os.path.join(BUILD, name)
    assert os.path.exists(path), "%s is not built (run make)" % path
    return path


@pytest.fixture
def shadowtee(procs):
    """shadowtee(primary="127.0.0.1:PORT", **flags) starts the real binary on
    free ports and returns an object with .port, .admin_port, .proc."""

    class Running:
        pass

    def start(primary, workers=1, extra=(), env=None, binary="shadowtee", **flags):
        # A port picked free can be taken before the proxy binds it (another
        # socket's ephemeral port): then, and only then, pick new ones.
        for attempt in range(3):
            r = Running()
            r.port = free_port()
            r.admin_port = free_port()
            argv = [shadowtee_bin(binary), "--listen", "127.0.0.1:%d" % r.port, "--primary", primary,
                    "--admin", "127.0.0.1:%d" % r.admin_port, "--workers", str(workers)]
            for k, v in flags.items():
                flag = "--" + k.replace("_", "-")
                if v is True:
                    argv.append(flag)
                else:
                    argv += [flag, str(v)]
            argv += list(extra)
            try:
                r.proc = procs(argv, env=env, wait_ports=(r.port, r.admin_port), ours=True)
                return r
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise

    return start


@pytest.fixture
def redis_server(procs):
    """A real redis-server on a free loopback port, no persistence."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    d = tempfile.mkdtemp(prefix="st-redis-")

    class R:
        pass

    r = R()
    r.port = free_port()
    r.dir = d

    def start():
        r.proc = procs([exe, "--port", str(r.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", d], wait_ports=(r.port,))
        return r

    r.start = start
    start()
    yield r
    shutil.rmtree(d, ignore_errors=True)
