/*
 * Unit tests of the aggregator alone (comparator/stats.c, shadowtee/stats.h):
 * no libuv loop, no sink, no Redis. What it counts, the batch it drains into,
 * the backlog cap and the loss ledger, and its Prometheus families.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../comparator/stats_internal.h"

/* The aggregator's headers pull in neither libuv nor hiredis. */
#if defined(UV_VERSION_MAJOR) || defined(HIREDIS_MAJOR)
#error "shadowtee/stats.h or stats_internal.h includes libuv or hiredis"
#endif

#define T0 1700000000000LL

static st_agg_t *agg_new(int deltas, size_t max_backlog)
{
    st_agg_config_t cfg;
    st_agg_config_init(&cfg);
    cfg.service = "svc";
    cfg.deltas = deltas;
    if (max_backlog) cfg.max_backlog = max_backlog;
    st_agg_t *a = st_agg_new(&cfg);
    assert_non_null(a);
    return a;
}

static st_agg_record_t rec(const char *endpoint, st_verdict_t v)
{
    st_agg_record_t r;
    memset(&r, 0, sizeof(r));
    r.endpoint = endpoint;
    r.method = "GET";
    r.path = "/x";
    r.request_id = "id-1";
    r.verdict = v;
    r.primary_seconds = 0.002;
    r.shadow_seconds = 0.003;
    r.now_ms = T0;
    return r;
}

/* The argv of command i joined by spaces, in buf. */
static const char *cmd_line(const st_batch_t *b, size_t i, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int k = 0; k < b->cmds[i].argc && o < len; k++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", k ? " " : "", b->cmds[i].argv[k]);
    return buf;
}

static int batch_has(const st_batch_t *b, const char *want)
{
    char buf[1024];
    for (size_t i = 0; i < b->ncmds; i++)
        if (strcmp(cmd_line(b, i, buf, sizeof(buf)), want) == 0) return 1;
    return 0;
}

static void test_config_defaults(void **state)
{
    st_agg_config_t cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    st_agg_config_init(&cfg);
    assert_string_equal(cfg.service, "default");
    assert_int_equal(cfg.deltas, 0);
    assert_int_equal(cfg.samples_per_endpoint, 20);
    assert_int_equal(cfg.sample_body_max, 4096);
    assert_true(cfg.max_backlog > 0);
    assert_true(cfg.max_endpoints > 0);
    assert_null(cfg.rules);
}

/* Without a sink to drain them, no delta is kept: counters only. */
static void test_counters_only(void **state)
{
    st_agg_t *a = agg_new(0, 0);
    st_agg_record_t r = rec("GET /x", ST_VERDICT_MATCH);
    for (int i = 0; i < 10; i++)
        st_agg_record(a, &r);
    r.verdict = ST_VERDICT_ERROR;
    r.shadow_error = "timeout";
    st_agg_record(a, &r);
    assert_int_equal(st_agg_pending(a), 0);
    assert_int_equal(atomic_load(&a->n_match), 10);
    assert_int_equal(atomic_load(&a->n_error), 1);
    assert_int_equal(st_agg_compared(a), 11);
    assert_int_equal(st_agg_lost(a), 0);
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(a, &b, 0, T0), 0);
    assert_int_equal(b.ncmds, 0);
    st_batch_free(&b);
    st_agg_free(a);
}

/* With deltas: the drained batch holds the counts (merged per key+field)
 * and the comparisons it carries; the table is empty afterwards. */
static void test_drain_into_batch(void **state)
{
    st_agg_t *a = agg_new(1, 0);
    st_agg_record_t r = rec("GET /x", ST_VERDICT_MATCH);
    st_agg_record(a, &r);
    st_agg_record(a, &r);
    r.verdict = ST_VERDICT_NOISE;
    st_agg_record(a, &r);
    assert_true(st_agg_pending(a) > 0);
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(a, &b, 0, T0), 0);
    assert_true(batch_has(&b, "SADD shadowtee:{svc}:endpoints GET /x"));
    assert_true(batch_has(&b, "HINCRBY shadowtee:{svc}:ep:GET /x:counts compared 3"));
    assert_true(batch_has(&b, "HINCRBY shadowtee:{svc}:ep:GET /x:counts matched 2"));
    assert_true(batch_has(&b, "HINCRBY shadowtee:{svc}:ep:GET /x:counts noise 1"));
    assert_true(batch_has(&b, "HINCRBY shadowtee:{svc}:ep:GET /x:counts source:tee 3"));
    assert_int_equal(b.ncompared, 3);
    assert_int_equal(st_agg_pending(a), 0);
    st_batch_free(&b);
    /* no meta without with_meta; with it, the schema line */
    st_agg_record(a, &r);
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(a, &b, 1, T0), 0);
    char buf[1024];
    int meta = 0;
    for (size_t i = 0; i < b.ncmds; i++)
        meta += strncmp(cmd_line(&b, i, buf, sizeof(buf)), "HSET shadowtee:{svc}:meta schema ",
                        33) == 0;
    assert_int_equal(meta, 1);
    st_batch_free(&b);
    st_agg_free(a);
}

/* A full table drops new entries (counted), and a comparison whose
 * "compared" delta could not be kept is in the loss ledger. */
static void test_backlog_and_losses(void **state)
{
    st_agg_t *a = agg_new(1, 4);
    const char *eps[] = {"GET /a", "GET /b", "GET /c"};
    for (int i = 0; i < 3; i++) {
        st_agg_record_t r = rec(eps[i], ST_VERDICT_MATCH);
        st_agg_record(a, &r);
    }
    assert_true(st_agg_pending(a) <= 4);
    assert_true(atomic_load(&a->dropped) > 0);
    uint64_t backlog = atomic_load(&a->cmp_lost[ST_CMP_LOSS_BACKLOG]);
    assert_true(backlog >= 1);
    /* what is pending and never drained is lost at shutdown */
    st_agg_lose_pending(a, ST_CMP_LOSS_SHUTDOWN);
    uint64_t shut = atomic_load(&a->cmp_lost[ST_CMP_LOSS_SHUTDOWN]);
    assert_int_equal(backlog + shut, 3);
    assert_int_equal(st_agg_lost(a), 3);
    st_agg_lose(a, ST_CMP_LOSS_ERROR, 2);
    assert_int_equal(st_agg_lost(a), 5);
    st_agg_pending_clear(a);
    assert_int_equal(st_agg_pending(a), 0);
    st_agg_free(a);
}

static void test_prometheus_sums(void **state)
{
    st_agg_t *a = agg_new(0, 0), *b = agg_new(1, 0);
    st_agg_record_t r = rec("GET /x", ST_VERDICT_DIVERGED);
    st_agg_record(a, &r);
    st_agg_record(b, &r);
    r.verdict = ST_VERDICT_MATCH;
    st_agg_record(b, &r);
    st_agg_t *all[3] = {a, NULL, b};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    st_agg_prometheus(all, 3, f);
    fclose(f);
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"diverged\"} 2\n"));
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"match\"} 1\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /x\"} 3\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_divergences_total{endpoint=\"GET /x\"} 2\n"));
    assert_null(strstr(text, "shadowtee_redis_")); /* the sink's families are not its own */
    free(text);
    st_agg_free(a);
    st_agg_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),  cmocka_unit_test(test_counters_only),
        cmocka_unit_test(test_drain_into_batch), cmocka_unit_test(test_backlog_and_losses),
        cmocka_unit_test(test_prometheus_sums),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
