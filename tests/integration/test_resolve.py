"""Upstream names with several addresses, and names that change while the
proxy runs (proxy/addrset.c, proxy/upstream.c, comparator/redis_sink.c).

A name is given its addresses by the test's own hosts file through the
preloaded resolver shim (resolver.py): a dead address first and a live one
second, as Debian's and every Kubernetes pod's /etc/hosts give localhost
(::1, then 127.0.0.1) while Flask and gunicorn listen on 127.0.0.1 only.
Dead addresses are real: nothing listens on that loopback IP and port
(refused), or a listener never accepts (connect timeout).
"""
import socket
import time

import redis

from conftest import free_port
from httpclient import Conn, get, metric, metrics
from resolver import hosts  # noqa: F401  (fixture)
from upstreams import NoAcceptListener, Upstream, upstream, wait_for, watchdog  # noqa: F401


def _pair_port():
    """A port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (upstreams on
    several loopback IPs share it: a name's port is the same for each of
    its addresses)."""
    for _ in range(20):
        p = free_port()
        socks = []
        try:
            for ip in ("127.0.0.2", "127.0.0.3"):
                s = socket.socket()
                socks.append(s)
                s.bind((ip, p))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no port free on three loopback addresses")


def test_localhost_with_the_standard_hosts_file(shadowtee, upstream, hosts):
    """test_config_cli's test_primary_and_shadow_by_hostname on a machine
    whose /etc/hosts has localhost = ::1 and 127.0.0.1: both upstreams listen
    on 127.0.0.1 only. Each pool fails over once and then remembers: with no
    idle pool every request opens a new connection, straight to 127.0.0.1."""
    hosts.set({"localhost": ["::1", "127.0.0.1"]})
    up = upstream("echo")
    sh = upstream("echo")
    st = shadowtee(primary="localhost:%d" % up.port, shadow="localhost:%d" % sh.port,
                   upstream_idle_conns=0, env=hosts.env)
    for i in range(5):
        r = get(st.port, "/named%d" % i)
        assert r.status == 200, r
        assert r.json()["path"] == "/named%d" % i
    assert sh.wait_requests(5) == 5
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_upstream_failovers_total", pool="primary") == 1
    assert metric(m, "shadowtee_upstream_connects_total", pool="primary") == 6  # ::1 once, then 5
    assert metric(m, "shadowtee_upstream_failovers_total", pool="shadow") == 1
    assert metric(m, "shadowtee_shadow_errors_total") == 0
    assert metric(m, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") == 0
    r = get(st.admin_port, "/readyz")
    assert r.status == 200, r.body


def test_blackholed_first_address_times_out_then_the_next(shadowtee, upstream, hosts):
    """The first address never accepts (connect timeout): after
    --upstream-connect-timeout the next address answers, and later requests
    go there directly."""
    port = _pair_port()
    up = upstream("echo", host="127.0.0.1", port=port)
    hole = NoAcceptListener(host="127.0.0.3", port=port)
    try:
        assert hole.hangs, "could not make a hanging listener on 127.0.0.3"
        hosts.set({"app.test": ["127.0.0.3", "127.0.0.1"]})
        st = shadowtee(primary="app.test:%d" % port, upstream_connect_timeout="300ms",
                       env=hosts.env)
        with Conn(st.port) as c:
            assert c.request("GET", "/first").status == 200
            assert c.request("GET", "/second").status == 200
        r = get(st.port, "/third")  # a new client connection, the pooled upstream one
        assert r.status == 200
        assert [q.path for q in up.requests] == ["/first", "/second", "/third"]
        m = metrics(st.admin_port)
        assert metric(m, "shadowtee_upstream_failovers_total", pool="primary") == 1
        assert metric(m, "shadowtee_upstream_errors_total") == 0
    finally:
        hole.close()


def test_dead_first_address_for_shadow_and_noise(shadowtee, upstream, hosts):
    """The shadow's and the noise replica's names each resolve to a dead
    address first: every copy still reaches them, none counts as a shadow
    error, and the shadow is never marked down."""
    port_sh, port_no = _pair_port(), _pair_port()
    up = upstream("echo")
    sh = upstream("echo", host="127.0.0.1", port=port_sh)
    no = upstream("echo", host="127.0.0.1", port=port_no)
    hosts.set({"shadow.test": ["127.0.0.2", "127.0.0.1"],
               "noise.test": ["127.0.0.3", "127.0.0.1"]})
    st = shadowtee(primary=up.addr, shadow="shadow.test:%d" % port_sh,
                   noise_upstream="noise.test:%d" % port_no, env=hosts.env)
    with Conn(st.port) as c:
        for i in range(6):
            assert c.request("GET", "/m%d" % i).status == 200
    assert sh.wait_requests(6) == 6
    assert no.wait_requests(6) == 6
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_upstream_failovers_total", pool="shadow") == 1
    assert metric(m, "shadowtee_upstream_failovers_total", pool="noise") == 1
    assert metric(m, "shadowtee_shadow_errors_total") == 0
    assert metric(m, "shadowtee_mirror_requests_total") == 6


def test_dead_first_address_for_redis(shadowtee, upstream, hosts, redis_server):
    """--redis NAME whose first address refuses: the statistics reach the
    real Redis on the second one (hiredis is given numeric addresses only)."""
    hosts.set({"redis.test": ["127.0.0.2", "127.0.0.1"]})
    up = upstream("echo")
    sh = upstream("echo")
    st = shadowtee(primary=up.addr, shadow=sh.addr, redis="redis.test:%d" % redis_server.port,
                   service="resolve", redis_flush_interval="50ms", env=hosts.env)
    with Conn(st.port) as c:
        for i in range(4):
            assert c.request("GET", "/r%d" % i).status == 200
    assert sh.wait_requests(4) == 4
    r = redis.Redis(port=redis_server.port, socket_timeout=5)

    def compared():
        keys = r.keys("shadowtee:{resolve}:ep:*:counts")
        return sum(int(r.hget(k, "compared") or 0) for k in keys)

    assert wait_for(lambda: compared() == 4, 10), r.keys("shadowtee:*")
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_redis_connected") == 1
    assert "event=redis_down" not in st.proc.stderr()  # the refused address is not an outage


def test_address_change_is_followed_without_restart(shadowtee, hosts):
    """app.test and shadow.test move to other addresses while the proxy
    runs (a Service re-created): the periodic re-resolution picks them up,
    though the old upstreams still answer, and pooled connections to the old
    addresses are not used again."""
    port, sport = _pair_port(), _pair_port()
    old, new = Upstream("echo", host="127.0.0.2", port=port).start(), None
    sold, snew = Upstream("echo", host="127.0.0.2", port=sport).start(), None
    try:
        new = Upstream("echo", host="127.0.0.3", port=port).start()
        snew = Upstream("echo", host="127.0.0.3", port=sport).start()
        hosts.set({"app.test": ["127.0.0.2"], "shadow.test": ["127.0.0.2"]})
        st = shadowtee(primary="app.test:%d" % port, shadow="shadow.test:%d" % sport,
                       resolve_interval="100ms", env=hosts.env)
        c = Conn(st.port)
        try:
            assert c.request("GET", "/before").status == 200
            assert old.requests[-1].path == "/before"
            assert sold.wait_requests(1) == 1
            hosts.set({"app.test": ["127.0.0.3"], "shadow.test": ["127.0.0.3"]})
            i = [0]

            def moved():
                i[0] += 1
                assert c.request("GET", "/probe%d" % i[0]).status == 200
                return new.requests and snew.requests

            assert wait_for(moved, 10), "the proxy kept using the old addresses"
            n_old, s_old, s_new = len(old.requests), len(sold.requests), len(snew.requests)
            for k in range(5):
                assert c.request("GET", "/after%d" % k).status == 200
            assert [q.path for q in new.requests[-5:]] == ["/after%d" % k for k in range(5)]
            assert len(old.requests) == n_old
            assert snew.wait_requests(s_new + 5) >= s_new + 5
            assert len(sold.requests) == s_old
        finally:
            c.close()
        m = metrics(st.admin_port)
        assert metric(m, "shadowtee_upstream_resolutions_total", pool="primary", result="changed") == 1
        assert metric(m, "shadowtee_upstream_resolutions_total", pool="shadow", result="changed") == 1
        assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_upstream_resolutions_total",
                                       pool="primary", result="unchanged") >= 1, 10)  # and goes on
        assert wait_for(lambda: "upstream addresses changed" in st.proc.stderr(), 10)
    finally:
        for u in (old, new, sold, snew):
            if u:
                u.stop()


def test_failure_triggers_re_resolution(shadowtee, hosts):
    """--resolve-interval 0: names are re-resolved only after a failure. The
    primary moves and its old address dies: the request that finds it dead
    gets 502 and starts a re-resolution; the next ones reach the new
    address, and /readyz (its own probe on the main loop) follows too."""
    port = _pair_port()
    old = Upstream("echo", host="127.0.0.2", port=port).start()
    new = Upstream("echo", host="127.0.0.3", port=port).start()
    try:
        hosts.set({"app.test": ["127.0.0.2"]})
        st = shadowtee(primary="app.test:%d" % port, resolve_interval="0", upstream_idle_conns=0,
                       env=hosts.env)
        assert get(st.port, "/old").status == 200
        assert wait_for(lambda: get(st.admin_port, "/readyz").status == 200, 10)
        hosts.set({"app.test": ["127.0.0.3"]})
        old.stop()
        statuses = []

        def recovered():
            statuses.append(get(st.port, "/x").status)
            return statuses[-1] == 200

        assert wait_for(recovered, 10), statuses
        assert statuses[0] == 502, statuses  # the failure that asked for the new address
        assert new.requests and new.requests[-1].path == "/x"
        assert wait_for(lambda: get(st.admin_port, "/readyz").status == 200, 10)
        m = metrics(st.admin_port)
        assert metric(m, "shadowtee_upstream_resolutions_total", pool="primary", result="changed") == 1
        assert metric(m, "shadowtee_upstream_resolutions_total", pool="primary", result="unchanged") == 0
    finally:
        old.stop()
        new.stop()


def test_every_address_dead_is_502_with_one_clear_line(shadowtee, hosts):
    """Both addresses refuse: 502, /readyz 503, and one warning that names
    the upstream, each address and its error."""
    port = _pair_port()
    hosts.set({"app.test": ["127.0.0.2", "127.0.0.3"]})
    st = shadowtee(primary="app.test:%d" % port, env=hosts.env)
    with Conn(st.port) as c:
        r = c.request("GET", "/dead")
    assert r.status == 502
    assert wait_for(lambda: get(st.admin_port, "/readyz").status == 503, 10)
    assert b"primary unreachable" in get(st.admin_port, "/readyz").body
    # the log's ring reaches stderr off the loop: wait for the line, then count
    assert wait_for(lambda: "every address failed" in st.proc.stderr(), 10), st.proc.stderr()
    err = st.proc.stderr()
    lines = [ln for ln in err.splitlines() if "every address failed" in ln]
    assert len(lines) == 1, err
    line = lines[0]
    assert "pool=primary" in line and "upstream=app.test:%d" % port in line, line
    for a in ("127.0.0.2:%d ECONNREFUSED" % port, "127.0.0.3:%d ECONNREFUSED" % port):
        assert a in line, line
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_upstream_errors_total", reason="connect") == 1
    assert metric(m, "shadowtee_upstream_failovers_total", pool="primary") == 1


def test_name_that_stops_resolving_keeps_its_addresses(shadowtee, upstream, hosts):
    """The name stops resolving (DNS down): the last addresses stay in use,
    the failure is counted and logged once."""
    up = upstream("echo")
    hosts.set({"app.test": ["127.0.0.1"]})
    st = shadowtee(primary="app.test:%d" % up.port, resolve_interval="100ms",
                   upstream_idle_conns=0, env=hosts.env)
    assert get(st.port, "/a").status == 200
    hosts.set({"app.test": []})
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_upstream_resolutions_total",
                                   pool="primary", result="failed") >= 3, 10)
    for i in range(3):
        assert get(st.port, "/b%d" % i).status == 200
    assert wait_for(lambda: "does not resolve, keeping its last addresses" in st.proc.stderr(), 10)
    err = st.proc.stderr()
    lines = [ln for ln in err.splitlines() if "does not resolve, keeping its last addresses" in ln]
    assert len(lines) == 1 and "pool=primary" in lines[0], err
    hosts.set({"app.test": ["127.0.0.1"]})
    assert wait_for(lambda: "upstream name resolves again" in st.proc.stderr(), 10)


def test_slow_resolver_does_not_block_requests(shadowtee, upstream, hosts, redis_server):
    """Every lookup of the primary's and Redis's names takes 3 s (a slow DNS
    server) and the primary is re-resolved every 100 ms: requests still take
    nowhere near 3 s, since no lookup runs on a worker's loop (nor does the
    Redis sink's, which shares it)."""
    up = upstream("echo")
    sh = upstream("echo")
    hosts.set({"app.test": [("delay", 3000), "127.0.0.1"],
               "redis.test": [("delay", 3000), "127.0.0.1"]})
    st = shadowtee(primary="app.test:%d" % up.port, shadow=sh.addr, resolve_interval="100ms",
                   redis="redis.test:%d" % redis_server.port, upstream_idle_conns=0,
                   env=hosts.env)
    slowest = 0.0
    deadline = time.monotonic() + 7  # spans two lookups of each name
    n = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        assert get(st.port, "/s%d" % n).status == 200
        slowest = max(slowest, time.monotonic() - t0)
        n += 1
    assert slowest < 1.5, "a request took %.2fs: a lookup blocked the loop" % slowest
    assert n >= 20
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_redis_connected") == 1, 15)


def test_shadow_and_redis_that_resolve_only_later(shadowtee, upstream, hosts, redis_server):
    """The shadow's Service and Redis are applied after the proxy started:
    their names do not resolve yet. The proxy starts, serves the primary,
    skips mirrors as shadow_unavailable and keeps statistics in memory; once
    the names resolve, copies reach the shadow and the statistics Redis."""
    up = upstream("echo")
    sh = upstream("echo")
    hosts.set({"shadow.test": [], "redis.test": []})
    st = shadowtee(primary=up.addr, shadow="shadow.test:%d" % sh.port, resolve_interval="100ms",
                   redis="redis.test:%d" % redis_server.port, service="late",
                   redis_flush_interval="50ms", env=hosts.env)
    err = st.proc.stderr()
    assert "upstream not resolvable yet, will retry" in err and "shadow.test" in err, err
    with Conn(st.port) as c:
        for i in range(3):
            assert c.request("GET", "/early%d" % i).status == 200
    m = metrics(st.admin_port)
    assert metric(m, "shadowtee_mirror_skipped_total", reason="shadow_unavailable") == 3
    assert len(sh.requests) == 0
    assert wait_for(lambda: "cannot resolve redis.test" in st.proc.stderr(), 10), st.proc.stderr()
    hosts.set({"shadow.test": ["127.0.0.1"], "redis.test": ["127.0.0.1"]})
    i = [0]

    def mirrored():
        i[0] += 1
        assert get(st.port, "/late%d" % i[0]).status == 200
        return sh.requests

    assert wait_for(mirrored, 10), "the shadow's name was not resolved again"
    r = redis.Redis(port=redis_server.port, socket_timeout=5)
    assert wait_for(lambda: r.keys("shadowtee:{late}:ep:*:counts"), 15), "no statistics reached Redis"
    assert wait_for(lambda: metric(metrics(st.admin_port), "shadowtee_redis_connected") == 1, 10)
