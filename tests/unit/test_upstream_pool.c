/*
 * Unit tests of the upstream pool's accounting (proxy/upstream.c), through
 * its public API on a real uv loop against a real listener on 127.0.0.1
 * (port 0: one the kernel picks), which counts what it accepts and the
 * connections the pool closes (EOF on its side):
 *   - a new connection: counted in nconns and upstream_connects, on_ready;
 *   - release(reusable): kept idle (nidle), reused by the next acquire
 *     (returns 1, no on_ready, no new connect); release(0): closed, nconns
 *     drops once its handles are closed;
 *   - max_conns refuses (-1) without a connect; max_idle closes the surplus;
 *   - release closes when unparsed bytes are in the read buffer, when the
 *     worker stops; a kept one returns its read buffer to the worker's pool;
 *   - an idle connection the upstream closes, or whose idle timeout ran
 *     out, leaves the pool; st_pool_close_idle closes every idle one;
 *   - a refused connect: on_fail(ST_UPFAIL_CONNECT), no failover with one
 *     address; with two, one failover and two connects, and new connections
 *     start at the address that worked;
 *   - no address resolved: acquire refuses without a connect.
 * Every loop wait is bounded (5 s); the loop must close cleanly at the end
 * of each test (no handle left behind).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../proxy/upstream.h"
#include "../../proxy/worker.h"

static st_worker_t w;
static st_pool_t pool;
static st_addr_t addr;
static uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking for long */

/* the listener */
#define MAX_ACC 16
static uv_tcp_t srv;
static int srv_port;
static uv_tcp_t *acc[MAX_ACC];
static int nacc;             /* connections accepted */
static int srv_eof;          /* of those, closed by the pool (EOF or reset seen) */
static const char *greeting; /* written to each accepted connection, NULL: none */

typedef struct {
    int ready, data, fails;
    enum st_upfail why;
} owner_t;

static void o_ready(void *owner, st_upconn_t *u)
{
    (void)u;
    ((owner_t *)owner)->ready++;
}
static void o_data(void *owner, st_upconn_t *u)
{
    (void)u;
    ((owner_t *)owner)->data++;
}
static void o_fail(void *owner, st_upconn_t *u, enum st_upfail why)
{
    (void)u;
    owner_t *o = owner;
    o->fails++;
    o->why = why;
}
static const st_upstream_ops_t ops = {o_ready, o_data, o_fail};

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        uint64_t dl_ = uv_now(&w.loop) + 5000;                                                     \
        while (!(cond) && uv_now(&w.loop) < dl_)                                                   \
            uv_run(&w.loop, UV_RUN_ONCE);                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char sink[4096];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(sink, sizeof(sink));
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void acc_slot_clear(uv_tcp_t *t)
{
    for (int i = 0; i < nacc; i++)
        if (acc[i] == t) acc[i] = NULL;
}

static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread >= 0) return; /* requests are not sent by these tests */
    srv_eof++;
    acc_slot_clear((uv_tcp_t *)s);
    uv_close((uv_handle_t *)s, free_handle);
}

static void srv_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_conn(uv_stream_t *server, int status)
{
    assert_int_equal(status, 0);
    assert_true(nacc < MAX_ACC);
    uv_tcp_t *c = malloc(sizeof(*c));
    assert_non_null(c);
    uv_tcp_init(&w.loop, c);
    assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
    acc[nacc++] = c;
    uv_read_start((uv_stream_t *)c, srv_alloc, srv_read);
    if (greeting) {
        uv_write_t *req = malloc(sizeof(*req));
        uv_buf_t b = uv_buf_init((char *)greeting, (unsigned)strlen(greeting));
        assert_int_equal(uv_write(req, (uv_stream_t *)c, &b, 1, srv_written), 0);
    }
}

/* A loopback port nothing listens on: bound, then closed (refused). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void set_addr(int i, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(&addr.addrs[i], 0, sizeof(addr.addrs[i]));
    memcpy(&addr.addrs[i].sa, &sin, sizeof(sin));
    addr.addrs[i].len = sizeof(sin);
}

/* The pool to ports[0..n) (n = 0: nothing resolved). */
static void init_pool(size_t max_idle, size_t max_conns, uint64_t idle_ms, const int *ports, int n)
{
    char text[64];
    snprintf(text, sizeof(text), "127.0.0.1:%d", n ? ports[0] : srv_port);
    assert_int_equal(st_config_parse_addr(text, &addr, 80), 0);
    for (int i = 0; i < n; i++)
        set_addr(i, ports[i]);
    addr.naddrs = n;
    st_pool_init(&pool, &w, &addr, "primary", max_idle, max_conns, 1000, idle_ms);
    pool.tls_side = ST_TLS_PRIMARY;
}

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof(w));
    nacc = srv_eof = 0;
    greeting = NULL;
    if (uv_loop_init(&w.loop) != 0) return -1;
    if (st_rpool_init(&w.rpool, ST_RBUF_SIZE, 4) != 0) return -1;
    uv_timer_init(&w.loop, &tick);
    uv_timer_start(&tick, on_tick, 2, 2);
    uv_tcp_init(&w.loop, &srv);
    struct sockaddr_in sin;
    uv_ip4_addr("127.0.0.1", 0, &sin);
    if (uv_tcp_bind(&srv, (const struct sockaddr *)&sin, 0) != 0) return -1;
    if (uv_listen((uv_stream_t *)&srv, 64, on_conn) != 0) return -1;
    int len = sizeof(sin);
    uv_tcp_getsockname(&srv, (struct sockaddr *)&sin, &len);
    srv_port = ntohs(sin.sin_port);
    return 0;
}

static void close_left(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int teardown(void **state)
{
    (void)state;
    st_pool_close_idle(&pool);
    for (int i = 0; i < nacc; i++)
        if (acc[i]) uv_close((uv_handle_t *)acc[i], free_handle);
    uv_close((uv_handle_t *)&srv, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    for (int i = 0; i < 1000 && uv_loop_alive(&w.loop); i++)
        uv_run(&w.loop, UV_RUN_NOWAIT);
    int rc = 0;
    if (uv_loop_alive(&w.loop)) { /* a connection the test left open (it failed) */
        uv_walk(&w.loop, close_left, NULL);
        uv_run(&w.loop, UV_RUN_DEFAULT);
        rc = -1;
    }
    if (uv_loop_close(&w.loop) != 0) rc = -1;
    st_rpool_deinit(&w.rpool);
    return rc;
}

/* acquire, then wait until it is connected and the listener has it */
static st_upconn_t *connected(owner_t *o)
{
    st_upconn_t *u = NULL;
    int before = nacc;
    assert_int_equal(st_pool_acquire(&pool, o, &ops, &u), 0);
    assert_non_null(u);
    RUN_UNTIL(o->ready == 1 && nacc == before + 1);
    assert_int_equal(u->state, ST_UP_ACTIVE);
    return u;
}

#define CONNECTS()  atomic_load(&w.metrics.upstream_connects[ST_TLS_PRIMARY])
#define FAILOVERS() atomic_load(&w.metrics.upstream_failovers[ST_TLS_PRIMARY])

static void test_new_then_reused(void **state)
{
    (void)state;
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o = {0}, o2 = {0};
    st_upconn_t *u = NULL;
    assert_int_equal(st_pool_acquire(&pool, &o, &ops, &u), 0); /* connecting */
    assert_int_equal(pool.nconns, 1);
    assert_int_equal(pool.nidle, 0);
    assert_int_equal(CONNECTS(), 1);
    assert_int_equal(u->state, ST_UP_CONNECTING);
    RUN_UNTIL(o.ready == 1 && nacc == 1);
    assert_int_equal(u->state, ST_UP_ACTIVE);
    assert_int_equal(u->reused, 0);
    assert_int_equal(o.fails, 0);

    st_upconn_release(u, 1);
    assert_int_equal(pool.nidle, 1);
    assert_int_equal(pool.nconns, 1);
    assert_int_equal(u->state, ST_UP_IDLE);
    assert_null(u->owner);

    st_upconn_t *again = NULL;
    assert_int_equal(st_pool_acquire(&pool, &o2, &ops, &again), 1); /* ready now */
    assert_ptr_equal(again, u);
    assert_int_equal(u->reused, 1);
    assert_ptr_equal(u->owner, &o2);
    assert_int_equal(pool.nidle, 0);
    assert_int_equal(pool.nconns, 1);
    assert_int_equal(CONNECTS(), 1); /* no new connect */
    assert_int_equal(o2.ready, 0);   /* on_ready is not called for a reused one */
    assert_int_equal(nacc, 1);

    st_upconn_release(u, 0); /* not reusable: closed */
    assert_int_equal(pool.nidle, 0);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 1);
}

static void test_max_conns_refuses(void **state)
{
    (void)state;
    init_pool(8, 2, 60000, &srv_port, 1);
    owner_t a = {0}, b = {0}, c = {0}, d = {0};
    st_upconn_t *ua = connected(&a), *ub = connected(&b), *uc = NULL;
    assert_int_equal(pool.nconns, 2);
    assert_int_equal(st_pool_acquire(&pool, &c, &ops, &uc), -1);
    assert_int_equal(st_pool_connect(&pool, &c, &ops, &uc), -1);
    assert_int_equal(CONNECTS(), 2); /* a refusal connects nothing */
    assert_int_equal(pool.nconns, 2);
    st_upconn_close(ua);
    RUN_UNTIL(pool.nconns == 1);
    st_upconn_t *ud = connected(&d); /* room again */
    assert_int_equal(pool.nconns, 2);
    assert_int_equal(CONNECTS(), 3);
    st_upconn_close(ub);
    st_upconn_close(ud);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 3);
}

static void test_max_idle_closes_the_surplus(void **state)
{
    (void)state;
    init_pool(1, 0, 60000, &srv_port, 1);
    owner_t a = {0}, b = {0}, c = {0};
    st_upconn_t *ua = connected(&a), *ub = connected(&b);
    st_upconn_release(ua, 1);
    assert_int_equal(pool.nidle, 1);
    st_upconn_release(ub, 1); /* no room: closed */
    assert_int_equal(pool.nidle, 1);
    RUN_UNTIL(pool.nconns == 1 && srv_eof == 1);
    st_upconn_t *u = NULL;
    assert_int_equal(st_pool_acquire(&pool, &c, &ops, &u), 1);
    assert_ptr_equal(u, ua); /* the one kept */
    st_upconn_release(u, 1);
}

static void test_release_with_unparsed_bytes_closes(void **state)
{
    (void)state;
    greeting = "HTTP/1.1 200 OK\r\n";
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o = {0};
    st_upconn_t *u = connected(&o);
    RUN_UNTIL(o.data >= 1 && u->rb.filled == strlen(greeting));
    assert_non_null(u->rb.base);
    assert_int_equal(u->rb.parsed, 0);
    assert_int_equal(u->got_bytes, 1);
    st_upconn_release(u, 1); /* bytes nobody parsed: not reusable */
    assert_int_equal(pool.nidle, 0);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 1);
    assert_int_equal(w.rpool.nfree, 1); /* its read buffer went back to the worker */
}

static void test_release_parsed_returns_the_read_buffer(void **state)
{
    (void)state;
    greeting = "HTTP/1.1 204 No Content\r\n\r\n";
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o = {0};
    st_upconn_t *u = connected(&o);
    RUN_UNTIL(o.data >= 1 && u->rb.filled == strlen(greeting));
    assert_int_equal(w.rpool.nfree, 0);
    u->rb.parsed = u->rb.filled; /* what the owner's parser does */
    st_upconn_release(u, 1);
    assert_int_equal(pool.nidle, 1);
    assert_int_equal(u->state, ST_UP_IDLE);
    assert_null(u->rb.base);
    assert_int_equal(w.rpool.nfree, 1);
    assert_int_equal(pool.nconns, 1);
    assert_int_equal(srv_eof, 0);
}

static void test_stopping_worker_closes_on_release(void **state)
{
    (void)state;
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o = {0};
    st_upconn_t *u = connected(&o);
    w.stopping = 1;
    st_upconn_release(u, 1);
    assert_int_equal(pool.nidle, 0);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 1);
    w.stopping = 0;
}

static void test_idle_closed_by_the_upstream_leaves_the_pool(void **state)
{
    (void)state;
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o = {0}, o2 = {0};
    st_upconn_t *u = connected(&o);
    st_upconn_release(u, 1);
    assert_int_equal(pool.nidle, 1);
    uv_close((uv_handle_t *)acc[0], free_handle); /* the upstream closes it */
    acc[0] = NULL;
    RUN_UNTIL(pool.nidle == 0 && pool.nconns == 0);
    assert_int_equal(o.fails, 0); /* nobody owned it */
    st_upconn_t *u2 = NULL;
    assert_int_equal(st_pool_acquire(&pool, &o2, &ops, &u2), 0); /* a new one */
    assert_int_equal(CONNECTS(), 2);
    RUN_UNTIL(o2.ready == 1);
    st_upconn_close(u2);
    RUN_UNTIL(pool.nconns == 0);
}

static void test_idle_timeout_closes(void **state)
{
    (void)state;
    init_pool(8, 0, 30, &srv_port, 1);
    owner_t o = {0};
    st_upconn_t *u = connected(&o);
    st_upconn_release(u, 1);
    assert_int_equal(pool.nidle, 1);
    RUN_UNTIL(pool.nidle == 0 && pool.nconns == 0 && srv_eof == 1);
}

static void test_close_idle_closes_every_idle_one(void **state)
{
    (void)state;
    init_pool(8, 0, 60000, &srv_port, 1);
    owner_t o[3];
    st_upconn_t *u[3];
    memset(o, 0, sizeof(o));
    for (int i = 0; i < 3; i++)
        u[i] = connected(&o[i]);
    for (int i = 0; i < 3; i++)
        st_upconn_release(u[i], 1);
    assert_int_equal(pool.nidle, 3);
    assert_int_equal(pool.nconns, 3);
    st_pool_close_idle(&pool);
    assert_int_equal(pool.nidle, 0);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 3);
}

static void test_refused_connect_fails_the_owner(void **state)
{
    (void)state;
    int port = dead_port();
    init_pool(8, 0, 60000, &port, 1);
    owner_t o = {0};
    st_upconn_t *u = NULL;
    assert_int_equal(st_pool_acquire(&pool, &o, &ops, &u), 0);
    RUN_UNTIL(o.fails == 1);
    assert_int_equal(o.why, ST_UPFAIL_CONNECT);
    assert_int_equal(o.ready, 0);
    assert_int_equal(CONNECTS(), 1);
    assert_int_equal(FAILOVERS(), 0); /* one address: nothing to fail over to */
    assert_int_equal(pool.nconns, 1); /* until the owner closes it */
    st_upconn_close(u);
    RUN_UNTIL(pool.nconns == 0);
    assert_int_equal(nacc, 0);
}

static void test_failover_to_the_next_address(void **state)
{
    (void)state;
    int ports[2] = {dead_port(), srv_port};
    init_pool(8, 0, 60000, ports, 2);
    assert_int_equal(pool.addrs.n, 2);
    assert_int_equal(pool.addrs.cur, 0);
    owner_t o = {0};
    st_upconn_t *u = connected(&o);
    assert_int_equal(o.fails, 0);
    assert_int_equal(CONNECTS(), 2);
    assert_int_equal(FAILOVERS(), 1);
    assert_int_equal(pool.nconns, 1);
    struct sockaddr_in *peer = (struct sockaddr_in *)&u->peer.sa;
    assert_int_equal(ntohs(peer->sin_port), srv_port);
    assert_int_equal(pool.addrs.cur, 1); /* new connections start where it worked */
    owner_t o2 = {0};
    st_upconn_t *u2 = connected(&o2);
    assert_int_equal(CONNECTS(), 3); /* straight to the working address */
    assert_int_equal(FAILOVERS(), 1);
    st_upconn_close(u);
    st_upconn_close(u2);
    RUN_UNTIL(pool.nconns == 0 && srv_eof == 2);
}

static void test_nothing_resolved_refuses(void **state)
{
    (void)state;
    init_pool(8, 0, 60000, NULL, 0);
    assert_int_equal(pool.addrs.n, 0);
    owner_t o = {0};
    st_upconn_t *u = NULL;
    assert_int_equal(st_pool_acquire(&pool, &o, &ops, &u), -1);
    assert_null(u);
    assert_int_equal(pool.nconns, 0);
    assert_int_equal(CONNECTS(), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_new_then_reused),
        T(test_max_conns_refuses),
        T(test_max_idle_closes_the_surplus),
        T(test_release_with_unparsed_bytes_closes),
        T(test_release_parsed_returns_the_read_buffer),
        T(test_stopping_worker_closes_on_release),
        T(test_idle_closed_by_the_upstream_leaves_the_pool),
        T(test_idle_timeout_closes),
        T(test_close_idle_closes_every_idle_one),
        T(test_refused_connect_fails_the_owner),
        T(test_failover_to_the_next_address),
        T(test_nothing_resolved_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
