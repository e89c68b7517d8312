"""The stats Redis sink (comparator/redis_sink.c) against a real redis-server.

The C side is the cmocka binary build/tests/test_stats_redis (from
tests/unit/test_stats_redis.c): it skips itself without ST_TEST_REDIS_PORT,
so this test gives it a real server, and a second port where Redis only
starts once the binary says it is waiting (backlog kept while Redis is
down, delivered when it comes up); on RESTART_REDIS the server is stopped
and started again on the same port. A skip inside the binary fails here.
"""
import os
import select
import shutil
import subprocess
import tempfile
import time

from conftest import BUILD, free_port


def _redis_argv(port, d):
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", d]


def test_sink_basic_against_real_redis(redis_server, procs):
    binary = os.path.join(BUILD, "tests", "test_stats_redis")
    assert os.path.exists(binary), "%s is not built (make unit)" % binary
    late_port = free_port()
    env = dict(os.environ, ST_TEST_REDIS_PORT=str(redis_server.port),
               ST_TEST_REDIS_LATE_PORT=str(late_port), ST_TEST_REDIS_RESTART="1")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    argv = [binary]
    if os.environ.get("SHADOWTEE_VALGRIND") == "1":
        argv = ["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
                "--error-exitcode=99"] + argv
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = []
    late_dir = tempfile.mkdtemp(prefix="st-redis-late-")
    deadline = time.monotonic() + 120
    try:
        buf = b""
        while True:
            assert time.monotonic() < deadline, "test_stats_redis hung:\n" + "".join(out)
            r, _, _ = select.select([p.stdout], [], [], 1.0)
            if not r:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                out.append(text + "\n")
                if text.strip() == "RESTART_REDIS":  # a real restart, same port
                    assert redis_server.proc.stop() == 0
                    redis_server.start()
                if text.strip() == "WAITING_FOR_REDIS":
                    procs(_redis_argv(late_port, late_dir), wait_ports=(late_port,))
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(late_dir, ignore_errors=True)
    log = "".join(out)
    assert rc == 0, "test_stats_redis failed (rc=%s):\n%s" % (rc, log)
    assert "SKIPPED" not in log, "a Redis test skipped itself:\n" + log
    assert "[  PASSED  ] 8 test(s)." in log, log
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in log, log
