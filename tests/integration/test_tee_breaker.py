"""The shadow's health, as the tee sees it: a shadow that stops answering
(response timeouts in a row) or refuses connections is marked down, copies
are then skipped as shadow_unavailable instead of holding a slot and a
connection each, one probe copy at a time goes out after the backoff, and
the first answer brings mirroring back. One worker, so the state is one."""
import time

from httpclient import Conn, metric, metrics
from upstreams import closed_port, upstream, wait_for, watchdog  # noqa: F401

WATCHDOG_SECONDS = 60


def _m(st, name, **labels):
    return metric(metrics(st.admin_port), name, **labels)


def _get(st, paths):
    with Conn(st.port, timeout=10) as c:
        for p in paths:
            r = c.request("GET", p)
            assert r.status == 200 and r.body == b"ok", (p, r.status)


def _probe_answered_then_all_mirrored(st, path):
    """Sends a request every 100 ms until the shadow's first answer is
    counted (a probe went out and was answered), then 5 more: each one is
    mirrored again."""
    def answered():
        _get(st, [path])
        return _m(st, "shadowtee_shadow_responses_total", code="2xx") >= 1

    assert wait_for(answered, timeout=10, interval=0.1)
    before = _m(st, "shadowtee_mirror_requests_total")
    _get(st, ["%s%d" % (path, i) for i in range(5)])
    assert _m(st, "shadowtee_mirror_requests_total") == before + 5


def test_timeouts_in_a_row_mark_the_shadow_down_then_a_probe_brings_it_back(shadowtee, upstream):
    primary = upstream("fixed", body=b"ok")
    shadow = upstream("blackhole")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=1, shadow_timeout="1s",
                   shadow_eject_timeouts=3, log_level="info")
    _get(st, ["/a0", "/a1", "/a2"])  # three copies in flight at once, all time out together
    assert shadow.wait_requests(3) == 3
    assert wait_for(lambda: _m(st, "shadowtee_shadow_errors_total", reason="timeout") == 3, timeout=5)
    assert wait_for(lambda: "shadow marked down" in st.proc.stderr(), 10)

    # down: copies are skipped, none is sent
    _get(st, ["/down%d" % i for i in range(4)])
    assert _m(st, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") >= 4
    assert _m(st, "shadowtee_mirror_requests_total") == 3

    # after the 250 ms backoff exactly one probe goes out while it is in flight
    time.sleep(0.4)
    _get(st, ["/p%d" % i for i in range(5)])
    assert _m(st, "shadowtee_mirror_requests_total") == 4
    assert shadow.wait_requests(4) == 4
    assert [r.path for r in shadow.requests][-1] == "/p0"

    # the shadow answers again: once the probe after the next backoff is
    # answered, every copy goes out again
    shadow.mode = "fixed"
    shadow.body = b"shadow"
    assert wait_for(lambda: _m(st, "shadowtee_shadow_errors_total", reason="timeout") == 4, timeout=5)

    _probe_answered_then_all_mirrored(st, "/up")
    assert wait_for(lambda: _m(st, "shadowtee_shadow_responses_total", code="2xx") >= 6, timeout=5)
    assert wait_for(lambda: "shadow up again" in st.proc.stderr(), 10)


def test_eject_timeouts_zero_never_marks_a_slow_shadow_down(shadowtee, upstream):
    primary = upstream("fixed", body=b"ok")
    shadow = upstream("blackhole")
    st = shadowtee(primary=primary.addr, shadow=shadow.addr, workers=1, shadow_timeout="200ms",
                   shadow_eject_timeouts=0)
    for i in range(4):  # one after the other: four timeouts in a row
        _get(st, ["/t%d" % i])
        assert wait_for(lambda: _m(st, "shadowtee_shadow_errors_total", reason="timeout") == i + 1,
                        timeout=5)
    _get(st, ["/more"])
    assert _m(st, "shadowtee_mirror_requests_total") == 5
    assert _m(st, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") == 0


def test_refused_shadow_is_probed_and_comes_back(shadowtee, upstream):
    port = closed_port()
    primary = upstream("fixed", body=b"ok")
    st = shadowtee(primary=primary.addr, shadow="127.0.0.1:%d" % port, workers=1)
    _get(st, ["/r0"])
    assert wait_for(lambda: _m(st, "shadowtee_shadow_errors_total", reason="connect") == 1, timeout=5)
    _get(st, ["/r%d" % i for i in range(1, 5)])  # within the backoff: skipped, not connected
    assert _m(st, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") >= 4
    assert _m(st, "shadowtee_shadow_errors_total", reason="connect") == 1

    shadow = upstream("fixed", body=b"shadow", port=port)  # the shadow starts

    _probe_answered_then_all_mirrored(st, "/ok")
    assert shadow.wait_requests(6) >= 6
