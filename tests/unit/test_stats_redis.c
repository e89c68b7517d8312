/*
 * The stats sink against a real redis-server: flushed values, reconnect
 * after the server drops the connection, AUTH + SELECT, a wrong password,
 * a stalled server (CLIENT PAUSE) and a server that only comes up later.
 *
 * Needs ST_TEST_REDIS_PORT (a redis-server on 127.0.0.1 this test may
 * FLUSHALL and reconfigure); without it every test SKIPS. The pytest
 * tests/integration/test_redis_sink.py starts the server and runs this.
 * ST_TEST_REDIS_LATE_PORT: a port where Redis starts only after this binary
 * printed "WAITING_FOR_REDIS" on stdout (test_late_redis; skipped otherwise).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "../../comparator/redis_sink_internal.h"

static int env_port(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static redisContext *sync_connect(int port)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    assert_non_null(c);
    if (c->err) fail_msg("cannot connect to redis on %d: %s", port, c->errstr);
    return c;
}

/* Runs a command and returns its reply (caller frees). */
static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static long long hget_ll(redisContext *c, const char *key, const char *field)
{
    redisReply *r = cmd(c, "HGET %s %s", key, field);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

static long long int_reply(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = cmd(c, fmt, arg);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* ---- loop helpers ------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    st_sink_t *s;
    int closed;
    int (*until)(st_sink_t *s, void *arg);
    void *arg;
    uv_timer_t check, dog;
    int timed_out;
} fx_t;

static void on_check(uv_timer_t *t)
{
    fx_t *f = t->data;
    if (f->until(f->s, f->arg)) uv_stop(&f->loop);
}

static void on_dog(uv_timer_t *t)
{
    fx_t *f = t->data;
    f->timed_out = 1;
    uv_stop(&f->loop);
}

/* Runs the loop until until(s, arg) holds (checked every 5 ms) or ms pass. */
static int run_until(fx_t *f, int (*until)(st_sink_t *, void *), void *arg, uint64_t ms)
{
    f->until = until;
    f->arg = arg;
    f->timed_out = 0;
    uv_timer_start(&f->check, on_check, 5, 5);
    uv_timer_start(&f->dog, on_dog, ms, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->check);
    uv_timer_stop(&f->dog);
    return !f->timed_out;
}

static fx_t *fx_new_at(const char *host, int port, const char *service, const char *password,
                       int db)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->check);
    uv_timer_init(&f->loop, &f->dog);
    f->check.data = f->dog.data = f;
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    cfg.redis_host = host;
    cfg.redis_port = port;
    cfg.redis_password = password;
    cfg.redis_db = db;
    cfg.service = service;
    cfg.flush_interval_ms = 20;
    cfg.samples_per_endpoint = 5;
    cfg.bucket_ttl_s = 3600;
    f->s = st_sink_new(&f->loop, &cfg);
    assert_non_null(f->s);
    return f;
}

static fx_t *fx_new(int port, const char *service, const char *password, int db)
{
    return fx_new_at("127.0.0.1", port, service, password, db);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void fx_free(fx_t *f)
{
    st_sink_close(f->s, on_closed, &f->closed);
    uv_close((uv_handle_t *)&f->check, NULL);
    uv_close((uv_handle_t *)&f->dog, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static int is_connected(st_sink_t *s, void *arg)
{
    return s->state == ST_SINK_READY && s->setup_pending == 0;
}

static int flushed_at_least(st_sink_t *s, void *arg)
{
    return atomic_load(&s->flushes) >= *(uint64_t *)arg && st_agg_pending(s->agg) == 0 &&
           s->inflight_left == 0;
}

static int reconnected(st_sink_t *s, void *arg)
{
    return atomic_load(&s->reconnects) >= 1 && is_connected(s, NULL);
}

static int had_errors(st_sink_t *s, void *arg)
{
    return atomic_load(&s->redis_errors) >= *(uint64_t *)arg;
}

static void record_n(st_sink_t *s, const char *endpoint, st_verdict_t v, int n)
{
    static st_diff_entry_t e = {ST_DIFF_VALUE, "$.score", "0.9", "0.1", 0.8, 0};
    static st_diff_result_t d = {ST_VERDICT_DIVERGED, &e, 1, 1, 0.8, 0, 0};
    for (int i = 0; i < n; i++) {
        st_agg_record_t r;
        memset(&r, 0, sizeof(r));
        r.endpoint = endpoint;
        r.method = "GET";
        r.path = "/p";
        r.request_id = "rid";
        r.verdict = v;
        r.diff = v == ST_VERDICT_DIVERGED ? &d : NULL;
        r.shadow_error = v == ST_VERDICT_ERROR ? "timeout" : NULL;
        r.primary_seconds = 0.002;
        r.shadow_seconds = 0.003;
        r.now_ms = now_ms();
        st_sink_record(s, &r);
    }
}

#define NEED_REDIS(port)                                                                           \
    int port = env_port("ST_TEST_REDIS_PORT");                                                     \
    if (!port) {                                                                                   \
        fprintf(stderr, "SKIP: ST_TEST_REDIS_PORT is not set (run via "                            \
                        "tests/integration/test_redis_sink.py)\n");                                \
        skip();                                                                                    \
    }

/* ---- tests ------------------------------------------------------------- */

static void test_flush_values(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    freeReplyObject(cmd(c, "FLUSHALL"));
    fx_t *f = fx_new(port, "flush", NULL, 0);
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 7);
    record_n(f->s, "GET /a", ST_VERDICT_DIVERGED, 3);
    record_n(f->s, "GET /b", ST_VERDICT_ERROR, 2);
    uint64_t one = 1;
    assert_true(run_until(f, flushed_at_least, &one, 5000));

    const char *a = "shadowtee:{flush}:ep:GET /a:counts";
    assert_int_equal(hget_ll(c, a, "compared"), 10);
    assert_int_equal(hget_ll(c, a, "matched"), 7);
    assert_int_equal(hget_ll(c, a, "diverged"), 3);
    assert_int_equal(hget_ll(c, a, "kind:value"), 3);
    assert_int_equal(hget_ll(c, "shadowtee:{flush}:ep:GET /b:counts", "timeouts"), 2);
    assert_int_equal(hget_ll(c, "shadowtee:{flush}:ep:GET /a:paths", "value|$.score"), 3);
    assert_int_equal(hget_ll(c, "shadowtee:{flush}:ep:GET /a:lat:primary", "2"), 10);
    assert_int_equal(hget_ll(c, "shadowtee:{flush}:ep:GET /a:lat:shadow", "3"), 10);
    assert_int_equal(int_reply(c, "LLEN %s", "shadowtee:{flush}:ep:GET /a:samples"), 3);
    assert_int_equal(int_reply(c, "SCARD %s", "shadowtee:{flush}:endpoints"), 2);
    assert_true(hget_ll(c, "shadowtee:{flush}:meta", "first_seen_ms") > 0);
    assert_true(hget_ll(c, "shadowtee:{flush}:meta", "last_seen_ms") >=
                hget_ll(c, "shadowtee:{flush}:meta", "first_seen_ms"));
    assert_int_equal(hget_ll(c, "shadowtee:{flush}:meta", "schema"), 2);
    char mkey[128];
    snprintf(mkey, sizeof(mkey), "shadowtee:{flush}:minute:%lld", (long long)(now_ms() / 60000));
    long long ttl = int_reply(c, "TTL %s", mkey);
    if (ttl == -2) { /* the minute just turned: the records are in the previous one */
        snprintf(mkey, sizeof(mkey), "shadowtee:{flush}:minute:%lld",
                 (long long)(now_ms() / 60000 - 1));
        ttl = int_reply(c, "TTL %s", mkey);
    }
    assert_true(ttl > 3500 && ttl <= 3600);
    /* schema 2: the minute holds latency too (errors have no shadow latency) */
    assert_int_equal(hget_ll(c, mkey, "lat:primary:2|GET /a"), 10);
    assert_int_equal(hget_ll(c, mkey, "lat:shadow:3|GET /a"), 10);
    assert_int_equal(hget_ll(c, mkey, "lat:primary:2|GET /b"), 2);
    assert_int_equal(hget_ll(c, mkey, "lat:shadow:3|GET /b"), -1); /* absent */
    redisReply *sum = cmd(c, "HGET %s %s", mkey, "lat:shadow:sum_ms|GET /a");
    assert_true(sum->type == REDIS_REPLY_STRING && fabs(atof(sum->str) - 30.0) < 1e-6);
    freeReplyObject(sum);

    /* a second round adds up */
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 5);
    uint64_t want = atomic_load(&f->s->flushes) + 1;
    assert_true(run_until(f, flushed_at_least, &want, 5000));
    assert_int_equal(hget_ll(c, a, "compared"), 15);
    assert_int_equal(atomic_load(&f->s->agg->dropped), 0);
    assert_int_equal(atomic_load(&f->s->lost), 0);
    fx_free(f);
    redisFree(c);
}

/* The server closes our connection: the sink reconnects and nothing is lost. */
static void test_reconnect_after_kill(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    freeReplyObject(cmd(c, "FLUSHALL"));
    fx_t *f = fx_new(port, "kill", NULL, 0);
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 4);
    uint64_t one = 1;
    assert_true(run_until(f, flushed_at_least, &one, 5000));
    redisReply *r = cmd(c, "CLIENT KILL TYPE normal SKIPME yes");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 6); /* while reconnecting */
    assert_true(run_until(f, reconnected, NULL, 5000));
    uint64_t want = atomic_load(&f->s->flushes) + 1;
    assert_true(run_until(f, flushed_at_least, &want, 5000));
    assert_int_equal(hget_ll(c, "shadowtee:{kill}:ep:GET /a:counts", "compared"), 10);
    assert_int_equal(atomic_load(&f->s->lost), 0);
    fx_free(f);
    redisFree(c);
}

static void test_auth_and_select(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    freeReplyObject(cmd(c, "FLUSHALL"));
    freeReplyObject(cmd(c, "CONFIG SET requirepass s3cret"));
    redisReply *r = cmd(c, "AUTH s3cret");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);

    /* wrong password: errors counted, nothing written, serving goes on */
    fx_t *bad = fx_new(port, "auth", "wrong", 3);
    uint64_t one = 1;
    assert_true(run_until(bad, had_errors, &one, 5000));
    record_n(bad->s, "GET /a", ST_VERDICT_MATCH, 2);
    assert_int_equal(atomic_load(&bad->s->flushes), 0);
    fx_free(bad);

    fx_t *f = fx_new(port, "auth", "s3cret", 3);
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_DIVERGED, 2);
    assert_true(run_until(f, flushed_at_least, &one, 5000));
    assert_int_equal(hget_ll(c, "shadowtee:{auth}:ep:GET /a:counts", "compared"), -1); /* db 0 */
    freeReplyObject(cmd(c, "SELECT 3"));
    assert_int_equal(hget_ll(c, "shadowtee:{auth}:ep:GET /a:counts", "compared"), 2);
    fx_free(f);
    freeReplyObject(cmd(c, "CONFIG SET requirepass %s", ""));
    redisFree(c);
}

static int paused_and_back(st_sink_t *s, void *arg)
{
    return atomic_load(&s->reconnects) >= 1 && atomic_load(&s->flushes) >= 2 &&
           st_agg_pending(s->agg) == 0 && s->inflight_left == 0;
}

/* A stalled server: the batch gets no reply within the reply timeout, the
 * connection is replaced, its deltas count as lost (unconfirmed). */
static void test_stalled_server(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    freeReplyObject(cmd(c, "FLUSHALL"));
    fx_t *f = fx_new(port, "pause", NULL, 0);
    f->s->reply_timeout_ms = 200;
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 1);
    uint64_t one = 1;
    assert_true(run_until(f, flushed_at_least, &one, 5000));
    freeReplyObject(cmd(c, "CLIENT PAUSE 700 ALL"));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 1);
    assert_true(run_until(f, had_errors, &one, 5000)); /* the reply timeout fired */
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 1);
    assert_true(run_until(f, paused_and_back, NULL, 8000));
    assert_true(atomic_load(&f->s->lost) >= 1);
    long long n = hget_ll(c, "shadowtee:{pause}:ep:GET /a:counts", "compared");
    assert_true(n >= 2 && n <= 3); /* the unconfirmed one may or may not have landed */
    fx_free(f);
    redisFree(c);
}

static int flushed_once(st_sink_t *s, void *arg)
{
    return atomic_load(&s->flushes) >= 1 && st_agg_pending(s->agg) == 0 && s->inflight_left == 0;
}

static int is_down(st_sink_t *s, void *arg)
{
    return atomic_load(&s->connected) == 0;
}

/* st_sink_close sends what is pending before it frees (final flush). */
static void test_close_flushes(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    fx_t *f = fx_new(port, "closing", NULL, 0);
    f->s->cfg.flush_interval_ms = 60000; /* only the close can flush */
    uv_timer_stop(&f->s->flush_timer);
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_DIVERGED, 7);
    assert_int_equal(atomic_load(&f->s->flushes), 0);
    fx_free(f); /* st_sink_close + run the loop until the callback ran */
    assert_int_equal(hget_ll(c, "shadowtee:{closing}:ep:GET /a:counts", "compared"), 7);
    assert_int_equal(int_reply(c, "LLEN %s", "shadowtee:{closing}:ep:GET /a:samples"), 5);
    redisFree(c);
}

/* A real restart (the pytest stops redis-server and starts it again on the
 * same port when it reads RESTART_REDIS): deltas recorded while it is down
 * are delivered after the reconnect. Redis runs without persistence, so
 * what was flushed before the restart is gone. */
static void test_restart(void **state)
{
    NEED_REDIS(port);
    if (!getenv("ST_TEST_REDIS_RESTART")) {
        fprintf(stderr, "SKIP: ST_TEST_REDIS_RESTART is not set\n");
        skip();
    }
    fx_t *f = fx_new(port, "restart", NULL, 0);
    assert_true(run_until(f, is_connected, NULL, 5000));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 3);
    uint64_t one = 1;
    assert_true(run_until(f, flushed_at_least, &one, 5000));
    printf("RESTART_REDIS\n");
    fflush(stdout);
    assert_true(run_until(f, is_down, NULL, 15000));
    record_n(f->s, "GET /a", ST_VERDICT_DIVERGED, 2); /* while down */
    assert_true(run_until(f, reconnected, NULL, 15000));
    record_n(f->s, "GET /a", ST_VERDICT_MATCH, 4);
    uint64_t want = atomic_load(&f->s->flushes) + 1;
    assert_true(run_until(f, flushed_at_least, &want, 5000));
    redisContext *c = sync_connect(port);
    assert_int_equal(hget_ll(c, "shadowtee:{restart}:ep:GET /a:counts", "compared"), 6);
    assert_int_equal(hget_ll(c, "shadowtee:{restart}:ep:GET /a:counts", "diverged"), 2);
    redisReply *m = cmd(c, "SISMEMBER %s %s", "shadowtee:{restart}:endpoints", "GET /a");
    assert_int_equal(m->type, REDIS_REPLY_INTEGER);
    assert_int_equal(m->integer, 1);
    freeReplyObject(m);
    assert_int_equal(hget_ll(c, "shadowtee:{restart}:meta", "schema"), 2); /* meta re-sent */
    assert_int_equal(atomic_load(&f->s->lost), 0);
    fx_free(f);
    redisFree(c);
}

/* Redis absent at start: the backlog is kept (bounded) and delivered once
 * the server comes up. */
static void test_late_redis(void **state)
{
    int port = env_port("ST_TEST_REDIS_LATE_PORT");
    if (!port) {
        fprintf(stderr, "SKIP: ST_TEST_REDIS_LATE_PORT is not set\n");
        skip();
    }
    fx_t *f = fx_new(port, "late", NULL, 0);
    f->s->agg->cfg.max_backlog = 40;
    record_n(f->s, "GET /a", ST_VERDICT_DIVERGED, 5);
    record_n(f->s, "GET /b", ST_VERDICT_ERROR, 5);
    uint64_t one = 1;
    assert_true(run_until(f, had_errors, &one, 5000)); /* refused at least once */
    char ep[32];
    for (int i = 0; i < 60; i++) { /* 60 new endpoints: beyond the backlog */
        snprintf(ep, sizeof(ep), "GET /x%d", i);
        record_n(f->s, ep, ST_VERDICT_MATCH, 1);
    }
    uint64_t dropped = atomic_load(&f->s->agg->dropped);
    assert_true(dropped > 0);
    assert_true(st_agg_pending(f->s->agg) <= 40);
    printf("WAITING_FOR_REDIS\n");
    fflush(stdout);
    assert_true(run_until(f, flushed_once, NULL, 15000));
    redisContext *c = sync_connect(port);
    assert_int_equal(hget_ll(c, "shadowtee:{late}:ep:GET /a:counts", "compared"), 5);
    assert_int_equal(hget_ll(c, "shadowtee:{late}:ep:GET /a:counts", "diverged"), 5);
    assert_int_equal(hget_ll(c, "shadowtee:{late}:ep:GET /b:counts", "timeouts"), 5);
    assert_int_equal(atomic_load(&f->s->lost), 0);
    assert_true(atomic_load(&f->s->reconnects) >= 1);
    fx_free(f);
    redisFree(c);
}

/* A host name: resolved off the loop, hiredis given the numeric address that
 * answers (redis-server listens on 127.0.0.1 only; with a standard hosts
 * file localhost is ::1 first, which refuses). */
static void test_connect_by_name(void **state)
{
    NEED_REDIS(port);
    redisContext *c = sync_connect(port);
    freeReplyObject(cmd(c, "FLUSHALL"));
    fx_t *f = fx_new_at("localhost", port, "byname", NULL, 0);
    assert_int_equal(f->s->state, ST_SINK_WAIT); /* resolving in the thread pool */
    assert_true(f->s->resolving);
    assert_true(run_until(f, is_connected, NULL, 5000));
    assert_string_equal(f->s->addr_ok, "127.0.0.1");
    record_n(f->s, "GET /n", ST_VERDICT_MATCH, 3);
    uint64_t one = 1;
    assert_true(run_until(f, flushed_at_least, &one, 5000));
    assert_int_equal(hget_ll(c, "shadowtee:{byname}:ep:GET /n:counts", "compared"), 3);
    fx_free(f);
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_values),    cmocka_unit_test(test_reconnect_after_kill),
        cmocka_unit_test(test_auth_and_select), cmocka_unit_test(test_stalled_server),
        cmocka_unit_test(test_close_flushes),   cmocka_unit_test(test_restart),
        cmocka_unit_test(test_late_redis),      cmocka_unit_test(test_connect_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
