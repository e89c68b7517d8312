"""/metrics stays safe to scrape while the proxy shuts down.

Scrapers hammer /metrics while the proxy gets SIGTERM: it exits 0, and in
the ASan build no use-after-free of the worker stats or the admin state
(the `procs` fixture fails a test whose process printed a sanitizer
report).

Finding R7 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80); the use-after-free
only with the ASan build of b55a8b2 (the plain build passes there too).
"""
import signal
import socket
import threading
import time

from httpclient import Conn
from regress_support import scale
from upstreams import upstream, wait_for, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R7: /metrics while shutting down ------------------------------------


def test_metrics_scraped_during_shutdown(shadowtee, upstream):
    """R7: 4 threads scrape /metrics in a loop while the proxy (2 workers,
    a shadow) gets SIGTERM; 5 rounds. The proxy exits 0 every time; in the
    ASan build a use-after-free of the worker stats or of the admin state
    is a sanitizer report that fails the test (procs fixture)."""
    primary = upstream("echo")
    shadow = upstream("echo")
    for rnd in range(5):
        st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=2, drain_timeout="2s",
                       log_level="error")
        stop = threading.Event()
        answered = []

        def scrape():
            while not stop.is_set():
                try:
                    with socket.create_connection(("127.0.0.1", st.admin_port), timeout=2) as s:
                        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        first = s.recv(64)
                        if first.startswith(b"HTTP/1.1 200"):
                            answered.append(1)
                        while s.recv(65536):
                            pass
                except OSError:
                    pass

        with Conn(st.port) as c:  # some traffic, so the stats are not empty
            assert c.request("GET", "/warm").status == 200
        threads = [threading.Thread(target=scrape, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answered) >= 4, 3)
        time.sleep(0.2)
        st.proc.signal(signal.SIGTERM)
        try:
            rc = st.proc.wait(timeout=scale(10))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)
        assert answered, "round %d: no /metrics answer before SIGTERM" % rnd
        assert rc == 0, "round %d: exit %s\n%s" % (rnd, rc, st.proc.stderr()[-3000:])
