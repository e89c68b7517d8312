"""Nothing waits behind the 64 KiB read buffer.

A TLS tunnel burst that decrypts to more plaintext than the read buffer
holds is delivered whole without the client sending more; a head limit
above the read buffer, which could not be honoured, is refused at start.

Finding R10 of the proxy review (/work/notes/review.md), first tested in
test_regressions.py. Each test was checked to fail on the code before
"proxy review fixes" (b55a8b2) and to pass on the fix (07cbb80).
"""
import signal
import subprocess
import threading

import pytest

from conftest import free_port, shadowtee_bin
from httpclient import build_request
from regress_support import MemTls, scale, status_of, tls_cert  # noqa: F401  (fixtures)
from upstreams import upstream, watchdog  # noqa: F401  (fixtures)

WATCHDOG_SECONDS = 30


# ---- R10: TLS plaintext beyond one read buffer ------------------------------


def test_tls_tunnel_burst_larger_than_read_buffer(shadowtee, upstream, tls_cert):
    """R10: TLS listener, an Upgrade tunnel to an echoing primary. The client
    sends 7 full TLS records and a 5000-byte one while the proxy is stopped
    (SIGSTOP), so it reads them as 64 KiB + the rest: the second read
    completes 4 full records + the short one, more plaintext than the 64 KiB
    read buffer holds. All 119688 bytes must come back; before the fix the
    last 5000 stayed inside OpenSSL until the client sent more."""
    up = upstream("upgrade")
    st = shadowtee(primary=up.addr, tls_cert=tls_cert["cert"], tls_key=tls_cert["key"])
    c = MemTls(st.port, tls_cert["cert"], scale(5))
    try:
        c.sock.sendall(c.encrypt(build_request("GET", "/ws", [("Connection", "Upgrade"),
                                                              ("Upgrade", "websocket")])))
        head, _ = c.read(1, scale(5))
        while b"\r\n\r\n" not in head:
            more, how = c.read(1, scale(5))
            assert more, "closed before the 101: %r" % head
            head += more
        assert status_of(head) == 101, head
        n = 7 * 16384 + 5000
        payload = (bytes(range(256)) * (n // 256 + 1))[:n]
        records = c.encrypt(payload)
        st.proc.signal(signal.SIGSTOP)  # the whole burst queues up in front of the proxy
        try:
            sender = threading.Thread(target=c.sock.sendall, args=(records,), daemon=True)
            sender.start()
            sender.join(timeout=1.0)
        finally:
            st.proc.signal(signal.SIGCONT)
        sender.join(timeout=5)
        got, how = c.read(n, scale(3))
    finally:
        st.proc.signal(signal.SIGCONT)
        c.close()
    assert len(got) == n, "echoed %d of %d, then %s" % (len(got), n, how)
    assert got == payload


def test_max_header_size_above_read_buffer_refused():
    """R10 (related): a head limit above the 64 KiB read buffer cannot be
    honoured (with TLS the undecrypted tail piled up until the header
    timeout): the flag is refused with a clear error and exit 2."""
    p = subprocess.Popen([shadowtee_bin(), "--primary", "127.0.0.1:1", "--listen",
                          "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port(),
                          "--max-header-size", "128K"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=scale(3))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("--max-header-size 128K was accepted: the proxy started")
    assert p.returncode == 2, (p.returncode, err[-500:])
    assert b"max-header-size" in err
