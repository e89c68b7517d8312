"""Large streamed bodies (256 MiB each way, generated on the fly) pass
intact while the proxy's RSS stays bounded, including while the receiving
side stalls (back-pressure instead of buffering)."""
import os
import threading
import time
import zlib

from httpclient import Conn, build_request
from upstreams import RssSampler, pattern_chunks, pattern_crc, rss_kib, sanitized, upstream, watchdog  # noqa: F401

WATCHDOG_SECONDS = 60
# Under valgrind (make valgrind selects the "chunked" tests) sizes shrink and
# the RSS bound is not checked: valgrind's own memory dominates the figure.
VALGRIND = os.environ.get("SHADOWTEE_VALGRIND") == "1"
SIZE = (8 if VALGRIND else 256) << 20
MID = (4 if VALGRIND else 64) << 20
STALL_AT = (2 if VALGRIND else 32) << 20


def _rss_limit_kib():
    if VALGRIND:
        return 1 << 30
    # ASan keeps freed memory in quarantine and adds shadow memory.
    return (256 if sanitized() else 64) * 1024


def _env():
    return {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"}


def test_large_upload_streamed_with_bounded_rss(shadowtee, upstream):
    # The upstream stalls 1 s after 32 MiB: a proxy that buffers the rest
    # of the upload instead of pausing its client read blows the RSS bound.
    up = upstream("echo", sink=True, pause_after=STALL_AT, pause=1.0)
    st = shadowtee(primary=up.addr, env=_env())
    base = rss_kib(st.proc.pid)
    with Conn(st.port, timeout=20) as c, RssSampler(st.proc.pid) as rss:
        t0 = time.monotonic()
        c.send(build_request("POST", "/upload", [("Content-Length", str(SIZE)),
                                                 ("Content-Type", "application/octet-stream")]))
        for piece in pattern_chunks(SIZE):
            c.send(piece)
        r = c.response()
        elapsed = time.monotonic() - t0
    assert r.status == 200
    doc = r.json()
    assert doc["body_len"] == SIZE
    assert doc["body_crc"] == pattern_crc(SIZE)
    assert rss.samples > 5
    assert rss.max_kib < _rss_limit_kib(), "RSS peaked at %d KiB (base %s KiB)" % (rss.max_kib, base)
    print("upload 256 MiB: %.2fs, peak RSS %d KiB" % (elapsed, rss.max_kib))


def test_large_chunked_upload_streamed(shadowtee, upstream):
    size = MID
    up = upstream("echo", sink=True)
    st = shadowtee(primary=up.addr, env=_env())
    with Conn(st.port, timeout=20) as c, RssSampler(st.proc.pid) as rss:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")]))
        for piece in pattern_chunks(size, block=256 * 1024):
            c.send(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.response()
    assert r.status == 200
    assert r.json()["body_len"] == size
    assert r.json()["body_crc"] == pattern_crc(size)
    assert rss.max_kib < _rss_limit_kib()


def test_large_download_streamed_with_stalled_client(shadowtee, upstream):
    up = upstream("stream", stream_size=SIZE)
    st = shadowtee(primary=up.addr, env=_env())
    state = {"crc": 0, "n": 0, "stalled": False}

    def sink(b):
        state["crc"] = zlib.crc32(b, state["crc"])
        state["n"] += len(b)
        if not state["stalled"] and state["n"] >= STALL_AT:
            state["stalled"] = True
            time.sleep(1.0)  # the client stops reading; the proxy must push back

    with Conn(st.port, timeout=20) as c, RssSampler(st.proc.pid) as rss:
        t0 = time.monotonic()
        c.send(build_request("GET", "/download"))
        r = c.response(sink=sink)
        elapsed = time.monotonic() - t0
    assert r.status == 200
    assert int(r.header("content-length")) == SIZE
    assert state["n"] == SIZE and r.complete
    assert state["crc"] == pattern_crc(SIZE)
    assert rss.max_kib < _rss_limit_kib(), "RSS peaked at %d KiB" % rss.max_kib
    print("download 256 MiB: %.2fs, peak RSS %d KiB" % (elapsed, rss.max_kib))


def test_large_chunked_download_to_http11_client(shadowtee, upstream):
    size = MID
    up = upstream("stream", stream_size=size, framing="chunked")
    st = shadowtee(primary=up.addr, env=_env())
    state = {"crc": 0}

    def sink(b):
        state["crc"] = zlib.crc32(b, state["crc"])

    with Conn(st.port, timeout=20) as c:
        c.send(build_request("GET", "/d"))
        r = c.response(sink=sink)
        assert r.complete and r.body_len == size
        assert state["crc"] == pattern_crc(size)


def test_concurrent_uploads_and_downloads(shadowtee, upstream):
    size = MID // 2
    up_sink = upstream("echo", sink=True)
    up_stream = upstream("stream", stream_size=size)
    st_up = shadowtee(primary=up_sink.addr, workers=2, env=_env())
    st_down = shadowtee(primary=up_stream.addr, workers=2, env=_env())
    errors = []

    def upload():
        try:
            with Conn(st_up.port, timeout=20) as c:
                c.send(build_request("POST", "/u", [("Content-Length", str(size))]))
                for p in pattern_chunks(size):
                    c.send(p)
                assert c.response().json()["body_len"] == size
        except Exception as e:
            errors.append(e)

    def download():
        try:
            with Conn(st_down.port, timeout=20) as c:
                c.send(build_request("GET", "/d"))
                assert c.response(sink=lambda b: None).body_len == size
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (upload, upload, download, download)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_pipelined_flood_with_unread_responses_bounded(shadowtee, upstream):
    """2000 pipelined GETs for 64 KiB answers while the client does not read:
    the proxy must stop reading requests instead of queueing 128 MiB."""
    n = 200 if VALGRIND else 2000
    body = bytes(range(256)) * 256
    up = upstream("fixed", body=body)
    st = shadowtee(primary=up.addr, env=_env())
    reqs = b"".join(build_request("GET", "/f%d" % i) for i in range(n))
    errors = []
    with Conn(st.port, timeout=20) as c, RssSampler(st.proc.pid) as rss:
        def writer():
            try:
                c.send(reqs)
            except Exception as e:
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(1.0)  # nobody reads: the proxy has to push back
        for i in range(n):
            r = c.response()
            assert r.status == 200 and r.body_len == len(body), i
        t.join(timeout=10)
    assert not errors, errors
    assert len(up.requests) == n
    assert rss.max_kib < _rss_limit_kib(), "RSS peaked at %d KiB" % rss.max_kib
