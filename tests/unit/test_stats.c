/*
 * Unit tests of the stats aggregation (comparator/stats.c) and of the Redis
 * command batch it builds, checked as argv lines without any server; plus
 * the close paths of the sink when Redis is absent or unreachable and the
 * Prometheus text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../comparator/redis_sink_internal.h"

/* ---- helpers ----------------------------------------------------------- */

/* Renders the batch as one line per command, args joined by a space. */
static char **batch_lines(const st_batch_t *b)
{
    char **lines = calloc(b->ncmds + 1, sizeof(char *));
    for (size_t i = 0; i < b->ncmds; i++) {
        size_t len = 1;
        for (int k = 0; k < b->cmds[i].argc; k++)
            len += b->cmds[i].argvlen[k] + 1;
        lines[i] = calloc(1, len);
        for (int k = 0; k < b->cmds[i].argc; k++) {
            if (k) strcat(lines[i], " ");
            strcat(lines[i], b->cmds[i].argv[k]);
        }
    }
    return lines;
}

static void lines_free(char **lines)
{
    for (size_t i = 0; lines[i]; i++)
        free(lines[i]);
    free(lines);
}

static int has_line(char **lines, const char *want)
{
    for (size_t i = 0; lines[i]; i++)
        if (strcmp(lines[i], want) == 0) return 1;
    return 0;
}

static size_t count_prefix(char **lines, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; lines[i]; i++)
        n += strncmp(lines[i], prefix, strlen(prefix)) == 0;
    return n;
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

typedef struct {
    uv_loop_t loop;
    st_sink_t *s;
    int closed;
} fixture_t;

/* A stats object pointed at a Redis address nobody listens on (port 1), so
 * deltas aggregate but nothing is sent while the test does not run the loop. */
static fixture_t *fx_new(void (*tweak)(st_sink_config_t *))
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = 1;
    cfg.service = "svc";
    if (tweak) tweak(&cfg);
    f->s = st_sink_new(&f->loop, &cfg);
    assert_non_null(f->s);
    return f;
}

static void fx_free(fixture_t *f)
{
    st_sink_close(f->s, on_closed, &f->closed);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

static st_agg_record_t rec_base(const char *endpoint, st_verdict_t v, int64_t now_ms)
{
    st_agg_record_t r;
    memset(&r, 0, sizeof(r));
    r.endpoint = endpoint;
    r.method = "POST";
    r.path = "/v1/predict?x=1";
    r.request_id = "req-1";
    r.verdict = v;
    r.primary_seconds = 0.004; /* 4 ms -> bucket "4" */
    r.shadow_seconds = 0.012;  /* 12 ms -> bucket "15" */
    r.now_ms = now_ms;
    return r;
}

#define T0 1700000000000LL /* a minute boundary: 1700000000000 / 60000 = 28333333.33 */

/* ---- tests ------------------------------------------------------------- */

static void test_config_defaults(void **state)
{
    st_sink_config_t cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    st_sink_config_init(&cfg);
    assert_null(cfg.redis_host);
    assert_int_equal(cfg.redis_port, 6379);
    assert_string_equal(cfg.service, "default");
    assert_int_equal(cfg.flush_interval_ms, 100);
    assert_true(cfg.max_backlog > 0);
    assert_true(cfg.max_endpoints > 0);
    assert_null(cfg.rules);
}

static void test_hist_bucket(void **state)
{
    assert_int_equal(st_agg_hist_bucket(0.2), 0);
    assert_int_equal(st_agg_hist_bucket(1.0), 0);
    assert_int_equal(st_agg_hist_bucket(1.01), 1);
    assert_int_equal(st_agg_hist_bucket(12), 10); /* 15 */
    assert_true(st_agg_hist_bounds_ms[10] == 15);
    assert_int_equal(st_agg_hist_bucket(60000), ST_HIST_NBOUNDS - 1);
    assert_int_equal(st_agg_hist_bucket(60001), ST_HIST_NBOUNDS);
    for (size_t i = 1; i < ST_HIST_NBOUNDS; i++)
        assert_true(st_agg_hist_bounds_ms[i] > st_agg_hist_bounds_ms[i - 1]);
    char name[32];
    for (size_t i = 0; i < ST_HIST_NBOUNDS; i++) { /* field names are "%g" of the bounds */
        snprintf(name, sizeof(name), "%g", st_agg_hist_bounds_ms[i]);
        assert_string_equal(st_agg_hist_fields[i], name);
    }
    assert_string_equal(st_agg_hist_fields[ST_HIST_NBOUNDS], "+Inf");
}

static void test_batch_counts_paths_latency(void **state)
{
    fixture_t *f = fx_new(NULL);
    st_diff_entry_t entries[2] = {
        {ST_DIFF_VALUE, "$.score", "0.91", "0.42", 0.49, 0},
        {ST_DIFF_VALUE, "$.ts", "1", "2", 1, 1},
    };
    st_diff_result_t diff = {ST_VERDICT_DIVERGED, entries, 2, 2, 0.49, 0, 0};
    st_agg_record_t r = rec_base("POST /v1/predict", ST_VERDICT_MATCH, T0);
    st_sink_record(f->s, &r);
    r.verdict = ST_VERDICT_DIVERGED;
    r.diff = &diff;
    st_sink_record(f->s, &r);
    st_sink_record(f->s, &r);
    r = rec_base("POST /v1/predict", ST_VERDICT_ERROR, T0 + 61000);
    r.shadow_error = "timeout";
    st_sink_record(f->s, &r);

    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 1, T0), 0);
    char **l = batch_lines(&b);
    const char *ep = "shadowtee:{svc}:ep:POST /v1/predict:";
    char want[512];
#define HAS(fmt, ...)                                                                              \
    do {                                                                                           \
        snprintf(want, sizeof(want), fmt, __VA_ARGS__);                                            \
        if (!has_line(l, want)) fail_msg("missing command: %s", want);                             \
    } while (0)
    HAS("SADD shadowtee:{svc}:endpoints %s", "POST /v1/predict");
    HAS("HINCRBY %scounts compared 4", ep);
    HAS("HINCRBY %scounts matched 1", ep);
    HAS("HINCRBY %scounts diverged 2", ep);
    HAS("HINCRBY %scounts errors 1", ep);
    HAS("HINCRBY %scounts timeouts 1", ep);
    HAS("HINCRBY %scounts error:timeout 1", ep);
    HAS("HINCRBY %scounts kind:value 2", ep);
    HAS("HINCRBY %scounts noise_kind:value 2", ep);
    HAS("HINCRBY %spaths value|$.score 2", ep);
    HAS("HINCRBY %snoise_paths value|$.ts 2", ep);
    HAS("HINCRBY %slat:primary 4 4", ep);
    HAS("HINCRBY %slat:primary count 4", ep);
    HAS("HINCRBYFLOAT %slat:primary sum_ms 16.000000", ep);
    HAS("HINCRBY %slat:shadow 15 3", ep); /* no shadow latency on errors */
    HAS("HINCRBY %slat:shadow count 3", ep);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld compared|POST /v1/predict 3", T0 / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld diverged|POST /v1/predict 2", T0 / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld compared|POST /v1/predict 1", (T0 + 61000) / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld errors|POST /v1/predict 1", (T0 + 61000) / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld timeouts|POST /v1/predict 1", (T0 + 61000) / 60000);
    /* per-minute latency (schema 2): --since windows it like the counts */
    HAS("HINCRBY shadowtee:{svc}:minute:%lld lat:primary:4|POST /v1/predict 3", T0 / 60000);
    HAS("HINCRBYFLOAT shadowtee:{svc}:minute:%lld lat:primary:sum_ms|POST /v1/predict 12.000000",
        T0 / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld lat:shadow:15|POST /v1/predict 3", T0 / 60000);
    HAS("HINCRBY shadowtee:{svc}:minute:%lld lat:primary:4|POST /v1/predict 1",
        (T0 + 61000) / 60000);
    snprintf(want, sizeof(want),
             "HINCRBY shadowtee:{svc}:minute:%lld lat:shadow:", (T0 + 61000) / 60000);
    assert_int_equal(count_prefix(l, want), 0); /* the error had no shadow latency */
    HAS("EXPIRE shadowtee:{svc}:minute:%lld 604800", T0 / 60000);
    HAS("EXPIRE shadowtee:{svc}:minute:%lld 604800", (T0 + 61000) / 60000);
    HAS("HSETNX shadowtee:{svc}:meta first_seen_ms %lld", T0);
    HAS("HSET shadowtee:{svc}:meta last_seen_ms %lld", T0 + 61000);
    HAS("LTRIM %ssamples 0 19", ep);
    assert_int_equal(count_prefix(l, "LPUSH "), 1);
    assert_int_equal(count_prefix(l, "HSET shadowtee:{svc}:meta schema 2 service svc "), 1);
    /* matched is not a per-minute counter (compared - the others) */
    snprintf(want, sizeof(want), "HINCRBY shadowtee:{svc}:minute:%lld matched|", T0 / 60000);
    assert_int_equal(count_prefix(l, want), 0);
    lines_free(l);
    assert_int_equal(b.ndeltas, b.ncmds - 1 /* SADD */ - 2 /* EXPIRE */ - 1 /* LTRIM */ -
                                    3 /* meta */ - 1 /* LPUSH cmd */ + 2 /* its 2 samples */);
    st_batch_free(&b);
    assert_int_equal(st_agg_pending(f->s->agg), 0);

    /* the table is empty: the next batch without records is empty too */
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    assert_int_equal(b.ncmds, 0);
    st_batch_free(&b);
    fx_free(f);
}

static void test_sample_json_redacted(void **state)
{
    fixture_t *f = fx_new(NULL);
    st_header_t ph[] = {{"Content-Type", 12, "application/json", 16},
                        {"Authorization", 13, "Bearer secret", 13}};
    st_response_t primary = {200, ph, 2, "{\"score\":0.91}", 14, 0, NULL};
    st_response_t shadow = {500, ph, 1, "bad \xff\xfe bytes", 12, 0, NULL};
    st_diff_entry_t e = {ST_DIFF_STATUS, "status", "200", "500", 0, 0};
    st_diff_result_t diff = {ST_VERDICT_DIVERGED, &e, 1, 1, 0, 0, 0};
    st_agg_record_t r = rec_base("GET /x", ST_VERDICT_DIVERGED, T0);
    r.diff = &diff;
    r.primary = &primary;
    r.shadow = &shadow;
    r.request_id = "abc-123";
    st_sink_record(f->s, &r);

    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    const st_cmd_t *lp = NULL;
    for (size_t i = 0; i < b.ncmds; i++)
        if (strcmp(b.cmds[i].argv[0], "LPUSH") == 0) lp = &b.cmds[i];
    assert_non_null(lp);
    assert_int_equal(lp->argc, 3);
    assert_string_equal(lp->argv[1], "shadowtee:{svc}:ep:GET /x:samples");
    json_error_t jerr;
    json_t *j = json_loads(lp->argv[2], 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "abc-123");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/predict?x=1");
    assert_int_equal(json_integer_value(json_object_get(j, "time_ms")), T0);
    json_t *p = json_object_get(j, "primary"), *sh = json_object_get(j, "shadow");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(sh, "status")), 500);
    json_t *hdrs = json_object_get(p, "headers");
    assert_int_equal(json_array_size(hdrs), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(hdrs, 0), 1)),
                        "application/json");
    assert_string_equal(json_string_value(json_array_get(json_array_get(hdrs, 1), 1)),
                        "[REDACTED]");
    assert_null(strstr(lp->argv[2], "secret"));
    assert_string_equal(json_string_value(json_object_get(p, "body")), "{\"score\":0.91}");
    /* invalid UTF-8 became U+FFFD instead of breaking the JSON */
    assert_string_equal(json_string_value(json_object_get(sh, "body")),
                        "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
    json_t *d = json_array_get(json_object_get(j, "diffs"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "path")), "status");
    assert_string_equal(json_string_value(json_object_get(d, "kind")), "status");
    assert_string_equal(json_string_value(json_object_get(d, "a")), "200");
    assert_string_equal(json_string_value(json_object_get(d, "b")), "500");
    assert_true(json_is_false(json_object_get(d, "noise")));
    json_decref(j);
    st_batch_free(&b);
    fx_free(f);
}

static void cfg_small_samples(st_sink_config_t *c)
{
    c->samples_per_endpoint = 3;
}

static void test_samples_capped_per_second(void **state)
{
    fixture_t *f = fx_new(cfg_small_samples);
    st_diff_entry_t e = {ST_DIFF_VALUE, "$.a", "1", "2", 1, 0};
    st_diff_result_t diff = {ST_VERDICT_DIVERGED, &e, 1, 1, 1, 0, 0};
    char rid[32];
    for (int i = 0; i < 10; i++) { /* 10 in one second, then 2 in the next */
        st_agg_record_t r = rec_base("GET /x", ST_VERDICT_DIVERGED, T0 + (i < 10 ? 0 : 0));
        snprintf(rid, sizeof(rid), "r%d", i);
        r.request_id = rid;
        r.diff = &diff;
        st_sink_record(f->s, &r);
    }
    for (int i = 10; i < 12; i++) {
        st_agg_record_t r = rec_base("GET /x", ST_VERDICT_DIVERGED, T0 + 1000);
        snprintf(rid, sizeof(rid), "r%d", i);
        r.request_id = rid;
        r.diff = &diff;
        st_sink_record(f->s, &r);
    }
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    char **l = batch_lines(&b);
    assert_true(has_line(l, "LTRIM shadowtee:{svc}:ep:GET /x:samples 0 2"));
    assert_true(has_line(l, "HINCRBY shadowtee:{svc}:ep:GET /x:counts diverged 12"));
    lines_free(l);
    for (size_t i = 0; i < b.ncmds; i++) {
        if (strcmp(b.cmds[i].argv[0], "LPUSH") != 0) continue;
        /* ring of 3 pending: r0..r2 taken in the first second, r10, r11 in the
         * next replace the two oldest; pushed oldest first */
        assert_int_equal(b.cmds[i].argc, 5);
        assert_non_null(strstr(b.cmds[i].argv[2], "\"r2\""));
        assert_non_null(strstr(b.cmds[i].argv[3], "\"r10\""));
        assert_non_null(strstr(b.cmds[i].argv[4], "\"r11\""));
    }
    /* the two replaced pending samples are counted as dropped */
    assert_int_equal(atomic_load(&f->s->agg->dropped), 2);
    st_batch_free(&b);
    fx_free(f);
}

static void cfg_small_backlog(st_sink_config_t *c)
{
    c->max_backlog = 10;
}

static void test_backlog_bounded(void **state)
{
    fixture_t *f = fx_new(cfg_small_backlog);
    char path[32];
    st_diff_entry_t e = {ST_DIFF_VALUE, path, "1", "2", 1, 1};
    st_diff_result_t diff = {ST_VERDICT_NOISE, &e, 1, 1, 1, 0, 0};
    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "$.a[%d]", i);
        st_agg_record_t r = rec_base("GET /x", ST_VERDICT_NOISE, T0);
        r.diff = &diff;
        st_sink_record(f->s, &r);
    }
    assert_true(st_agg_pending(f->s->agg) <= 10);
    assert_true(atomic_load(&f->s->agg->dropped) >= 50);
    /* counters already in the table keep merging */
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    char **l = batch_lines(&b);
    assert_true(has_line(l, "HINCRBY shadowtee:{svc}:ep:GET /x:counts compared 50"));
    assert_true(has_line(l, "HINCRBY shadowtee:{svc}:ep:GET /x:counts noise 50"));
    lines_free(l);
    st_batch_free(&b);
    fx_free(f);
}

/* Every comparison recorded is either counted by a command of the batch or
 * counted as lost (here: the pending table was full for its endpoint). */
static void test_backlog_losses_accounted(void **state)
{
    fixture_t *f = fx_new(cfg_small_backlog);
    const char *eps[] = {"GET /a", "GET /b", "GET /c", "GET /d", "GET /e"};
    for (int i = 0; i < 50; i++) {
        st_agg_record_t r = rec_base(eps[i % 5], ST_VERDICT_MATCH, T0);
        st_sink_record(f->s, &r);
    }
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    uint64_t lost = atomic_load(&f->s->agg->cmp_lost[ST_CMP_LOSS_BACKLOG]);
    assert_true(lost > 0 && b.ncompared > 0);
    assert_int_equal(b.ncompared + lost, 50);
    uint64_t sum = 0;
    for (size_t i = 0; i < b.ncmds; i++)
        sum += b.cmds[i].ncompared;
    assert_int_equal(sum, b.ncompared);
    st_batch_free(&b);
    fx_free(f);
}

static char closed_line[512];

static void capture_log(void *arg, int is_warning, const char *line)
{
    (void)arg;
    (void)is_warning;
    if (strstr(line, "event=stats_closed")) snprintf(closed_line, sizeof(closed_line), "%s", line);
}

static void cfg_capture_log(st_sink_config_t *c)
{
    c->log = capture_log;
}

/* Redis never answered: at close every comparison is reported lost. */
static void test_closed_line_counts_what_redis_lacks(void **state)
{
    closed_line[0] = '\0';
    fixture_t *f = fx_new(cfg_capture_log);
    for (int i = 0; i < 7; i++) {
        st_agg_record_t r = rec_base("GET /x", i % 2 ? ST_VERDICT_DIVERGED : ST_VERDICT_MATCH, T0);
        st_sink_record(f->s, &r);
    }
    fx_free(f);
    assert_non_null(strstr(closed_line, "event=stats_closed service=svc comparisons=7 redis=on "
                                        "lost_comparisons=7 "));
}

/* Many distinct fields: the table grows and every increment still merges. */
static void test_many_fields_merge(void **state)
{
    fixture_t *f = fx_new(NULL);
    char path[32];
    st_diff_entry_t e = {ST_DIFF_VALUE, path, "1", "2", 1, 0};
    st_diff_result_t diff = {ST_VERDICT_DIVERGED, &e, 1, 1, 1, 0, 0};
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(path, sizeof(path), "$.a[%d]", i);
            st_agg_record_t r = rec_base("GET /x", ST_VERDICT_DIVERGED, T0);
            r.diff = &diff;
            st_sink_record(f->s, &r);
        }
    }
    assert_true(f->s->agg->nbuckets >= 5000);
    assert_int_equal(atomic_load(&f->s->agg->dropped),
                     0); /* the rate limit skips samples, no drop */
    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    size_t paths = 0;
    for (size_t i = 0; i < b.ncmds; i++) {
        if (strcmp(b.cmds[i].argv[0], "HINCRBY") == 0 && strstr(b.cmds[i].argv[1], ":paths")) {
            paths++;
            assert_string_equal(b.cmds[i].argv[3], "3");
        }
    }
    assert_int_equal(paths, 5000);
    st_batch_free(&b);
    fx_free(f);
}

static void cfg_two_endpoints(st_sink_config_t *c)
{
    c->max_endpoints = 2;
}

static void test_endpoint_cap_and_prometheus(void **state)
{
    fixture_t *f = fx_new(cfg_two_endpoints);
    fixture_t *g = fx_new(cfg_two_endpoints);
    const char *names[] = {"GET /a", "GET /b", "GET /c\"q\\", "GET /d"};
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k <= i; k++) {
            st_agg_record_t r = rec_base(names[i], k ? ST_VERDICT_DIVERGED : ST_VERDICT_MATCH, T0);
            st_sink_record(f->s, &r);
        }
    }
    st_agg_record_t r = rec_base("GET /c\"q\\", ST_VERDICT_ERROR, T0);
    r.shadow_error = "reset";
    st_sink_record(g->s, &r); /* g: "GET /c\"q\\" is its first endpoint */

    st_batch_t b;
    st_batch_init(&b);
    assert_int_equal(st_agg_build_batch(f->s->agg, &b, 0, T0), 0);
    char **l = batch_lines(&b);
    assert_true(has_line(l, "SADD shadowtee:{svc}:endpoints GET /a GET /b {other}"));
    assert_true(has_line(l, "HINCRBY shadowtee:{svc}:ep:{other}:counts compared 7"));
    lines_free(l);
    st_batch_free(&b);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    st_sink_t *all[] = {f->s, g->s, NULL};
    st_sink_prometheus(all, 3, out);
    fclose(out);
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"match\"} 4\n"));
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"diverged\"} 6\n"));
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"error\"} 1\n"));
    assert_non_null(strstr(text, "shadowtee_comparisons_total{result=\"noise\"} 0\n"));
    /* merged across workers, the first 2 created kept, the rest folded into {other} */
    assert_non_null(strstr(text, "shadowtee_endpoint_comparisons_total{endpoint=\"{other}\"} 8\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /b\"} 2\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_divergences_total{endpoint=\"GET /b\"} 1\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /a\"} 1\n"));
    assert_non_null(strstr(text, "shadowtee_endpoint_divergences_total{endpoint=\"{other}\"} 5\n"));
    assert_non_null(strstr(text, "shadowtee_redis_connected 0\n"));
    assert_non_null(strstr(text, "# TYPE shadowtee_redis_flushes_total counter\n"));
    assert_non_null(strstr(text, "shadowtee_redis_dropped_deltas_total 0\n"));
    assert_non_null(strstr(text, "shadowtee_redis_reconnects_total 0\n"));
    free(text);

    /* label escaping, with a cap large enough to show the odd name */
    g->s->cfg.max_endpoints = 10;
    text = NULL;
    out = open_memstream(&text, &len);
    st_sink_t *one[] = {g->s};
    st_sink_prometheus(one, 1, out);
    fclose(out);
    assert_non_null(
        strstr(text, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /c\\\"q\\\\\"} 1\n"));
    free(text);
    fx_free(f);
    fx_free(g);
}

static char *prom_text(st_sink_t *const *all, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    st_sink_prometheus(all, n, out);
    fclose(out);
    return text;
}

/* The value of one exposition line "<series> <value>", or -1 when absent. */
static long long prom_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return atoll(p + n + 1);
    return -1;
}

static void cfg_one_endpoint(st_sink_config_t *c)
{
    c->max_endpoints = 1;
}

/* Every per-endpoint series must be a counter that only grows, so the
 * endpoints that keep their own label are the first created (over all
 * workers), not the busiest: a busy late endpoint never pushes an early one
 * into {other} (which would make both series jump back). */
static void test_prometheus_labels_stable(void **state)
{
    fixture_t *f = fx_new(cfg_one_endpoint), *g = fx_new(cfg_one_endpoint);
    st_sink_t *all[] = {f->s, g->s};
    st_agg_record_t r = rec_base("GET /early", ST_VERDICT_MATCH, T0);
    st_sink_record(f->s, &r);
    st_diff_entry_t e = {ST_DIFF_VALUE, "$.x", "1", "2", 0, 0};
    st_diff_result_t diff = {ST_VERDICT_DIVERGED, &e, 1, 1, 0, 1, 0};
    for (int i = 0; i < 30; i++) { /* later and much busier, on another worker */
        r = rec_base("GET /late", i % 3 ? ST_VERDICT_MATCH : ST_VERDICT_DIVERGED, T0);
        r.diff = &diff; /* with a noise replica that agreed with the primary */
        st_sink_record(g->s, &r);
    }
    char *t = prom_text(all, 2);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /early\"}"),
                     1);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /late\"}"),
                     -1);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"{other}\"}"),
                     30);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_divergences_total{endpoint=\"{other}\"}"),
                     10);
    assert_int_equal(prom_value(t, "shadowtee_noise_replica_comparisons_total{result=\"match\"}"),
                     30);
    free(t);

    /* more of everything: the same label set, every series grown or equal */
    for (int i = 0; i < 5; i++) {
        r = rec_base("GET /late", ST_VERDICT_NOISE, T0);
        st_sink_record(g->s, &r);
        r = rec_base("GET /third", ST_VERDICT_ERROR, T0); /* g's cap: into its own {other} */
        r.shadow_error = "timeout";
        st_sink_record(g->s, &r);
    }
    r = rec_base("GET /early", ST_VERDICT_NOISE, T0);
    st_sink_record(f->s, &r);
    t = prom_text(all, 2);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /early\"}"),
                     2);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_noise_total{endpoint=\"GET /early\"}"), 1);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"{other}\"}"),
                     40);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_noise_total{endpoint=\"{other}\"}"), 5);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_shadow_errors_total{endpoint=\"{other}\"}"),
                     5);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /third\"}"),
                     -1);
    assert_int_equal(prom_value(t, "shadowtee_comparisons_total{result=\"error\"}"), 5);
    free(t);

    /* an endpoint created after the scrape began is not in that scrape at
     * all (neither named nor in {other}): so it cannot displace one */
    g->s->agg->eps[0]->born_ns = UINT64_MAX;
    t = prom_text(all, 2);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"{other}\"}"),
                     5);
    free(t);
    g->s->agg->eps[0]->born_ns = 0; /* born before GET /early: now it is the one kept */
    t = prom_text(all, 2);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"GET /late\"}"),
                     35);
    assert_int_equal(prom_value(t, "shadowtee_endpoint_comparisons_total{endpoint=\"{other}\"}"),
                     7);
    free(t);
    fx_free(f);
    fx_free(g);
}

static void test_no_redis_keeps_only_counters(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    st_sink_t *s = st_sink_new(&loop, &cfg);
    assert_non_null(s);
    st_agg_record_t r = rec_base("GET /x", ST_VERDICT_MATCH, T0);
    for (int i = 0; i < 100; i++)
        st_sink_record(s, &r);
    assert_int_equal(st_agg_pending(s->agg), 0);
    assert_int_equal(atomic_load(&s->agg->n_match), 100);
    int closed = 0;
    st_sink_close(s, on_closed, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void on_watchdog(uv_timer_t *t)
{
    fail_msg("watchdog: the loop did not finish in time");
}

static void on_later_close(uv_timer_t *t)
{
    fixture_t *f = t->data;
    assert_true(atomic_load(&f->s->reconnects) >= 1); /* backoff retried */
    assert_int_equal(atomic_load(&f->s->connected), 0);
    st_sink_close(f->s, on_closed, &f->closed);
    uv_close((uv_handle_t *)t, NULL);
}

/* Redis unreachable: retries with backoff, record keeps working, close ends
 * the loop with every handle closed. */
static void test_unreachable_redis_close(void **state)
{
    fixture_t *f = fx_new(NULL);
    st_agg_record_t r = rec_base("GET /x", ST_VERDICT_MATCH, T0);
    st_sink_record(f->s, &r);
    uv_timer_t later, dog;
    uv_timer_init(&f->loop, &later);
    uv_timer_init(&f->loop, &dog);
    later.data = f;
    uv_timer_start(&later, on_later_close, 450, 0); /* attempts at 0, 100, 300 ms */
    uv_timer_start(&dog, on_watchdog, 10000, 0);
    uv_unref((uv_handle_t *)&dog);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    uv_close((uv_handle_t *)&dog, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

/* ---- a silent server: accepts, reads, never answers ------------------- */

typedef struct {
    uv_tcp_t server;
    uv_tcp_t conns[4];
    int nconns;
    int port;
} silent_t;

static void on_silent_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char sink[4096];
    *buf = uv_buf_init(sink, sizeof(sink));
}

static void on_silent_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) uv_read_stop(s);
}

static void on_silent_conn(uv_stream_t *server, int status)
{
    silent_t *sv = server->data;
    assert_int_equal(status, 0);
    assert_true(sv->nconns < 4);
    uv_tcp_t *c = &sv->conns[sv->nconns];
    uv_tcp_init(server->loop, c);
    assert_int_equal(uv_accept(server, (uv_stream_t *)c), 0);
    sv->nconns++;
    uv_read_start((uv_stream_t *)c, on_silent_alloc, on_silent_read);
}

static void silent_start(uv_loop_t *loop, silent_t *sv)
{
    struct sockaddr_in addr;
    memset(sv, 0, sizeof(*sv));
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &sv->server);
    sv->server.data = sv;
    assert_int_equal(uv_tcp_bind(&sv->server, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&sv->server, 8, on_silent_conn), 0);
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&sv->server, (struct sockaddr *)&bound, &len);
    sv->port = ntohs(bound.sin_port);
}

static void silent_stop(silent_t *sv)
{
    for (int i = 0; i < sv->nconns; i++)
        uv_close((uv_handle_t *)&sv->conns[i], NULL);
    uv_close((uv_handle_t *)&sv->server, NULL);
}

typedef struct {
    st_sink_t *s;
    silent_t *sv;
    int closed;
    uint64_t closed_at, close_called_at;
    uv_loop_t *loop;
} close_case_t;

static void on_case_closed(void *arg)
{
    close_case_t *c = arg;
    c->closed++;
    c->closed_at = uv_now(c->loop);
    silent_stop(c->sv);
}

static void on_close_later(uv_timer_t *t)
{
    close_case_t *c = t->data;
    /* connected at TCP level, PING unanswered: setup pending */
    assert_int_equal(c->s->state, ST_SINK_READY);
    assert_true(c->s->setup_pending > 0);
    assert_int_equal(atomic_load(&c->s->connected), 0);
    st_agg_record_t r = rec_base("GET /x", ST_VERDICT_MATCH, T0);
    st_sink_record(c->s, &r);
    c->close_called_at = uv_now(c->loop);
    st_sink_close(c->s, on_case_closed, c);
    uv_close((uv_handle_t *)t, NULL);
}

/* A server that never answers: close waits a bounded time, then frees. */
static void test_close_with_silent_server(void **state)
{
    uv_loop_t loop;
    silent_t sv;
    assert_int_equal(uv_loop_init(&loop), 0);
    silent_start(&loop, &sv);
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = sv.port;
    close_case_t c = {.sv = &sv, .loop = &loop};
    c.s = st_sink_new(&loop, &cfg);
    assert_non_null(c.s);
    uv_timer_t later;
    uv_timer_init(&loop, &later);
    later.data = &c;
    uv_timer_start(&later, on_close_later, 200, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.closed, 1);
    assert_true(c.closed_at - c.close_called_at <= 1500); /* ST_SINK_CLOSE_WAIT_MS + slack */
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Close right after new, while the connect is still in progress. */
static void test_close_while_connecting(void **state)
{
    uv_loop_t loop;
    silent_t sv;
    assert_int_equal(uv_loop_init(&loop), 0);
    silent_start(&loop, &sv);
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    cfg.redis_host = "127.0.0.1";
    cfg.redis_port = sv.port;
    close_case_t c = {.sv = &sv, .loop = &loop};
    c.s = st_sink_new(&loop, &cfg);
    assert_non_null(c.s);
    assert_int_equal(c.s->state, ST_SINK_CONNECTING);
    st_sink_close(c.s, on_case_closed, &c);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A host name is resolved in libuv's thread pool first; a close meanwhile
 * waits for the lookup (it holds the stats) and then frees everything. */
static void test_close_while_resolving(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    st_sink_config_t cfg;
    st_sink_config_init(&cfg);
    cfg.redis_host = "localhost";
    cfg.redis_port = 1;
    st_sink_t *s = st_sink_new(&loop, &cfg);
    assert_non_null(s);
    assert_int_equal(s->state, ST_SINK_WAIT);
    assert_true(s->resolving);
    int closed = 0;
    st_sink_close(s, on_closed, &closed);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_hist_bucket),
        cmocka_unit_test(test_batch_counts_paths_latency),
        cmocka_unit_test(test_sample_json_redacted),
        cmocka_unit_test(test_samples_capped_per_second),
        cmocka_unit_test(test_backlog_bounded),
        cmocka_unit_test(test_backlog_losses_accounted),
        cmocka_unit_test(test_closed_line_counts_what_redis_lacks),
        cmocka_unit_test(test_many_fields_merge),
        cmocka_unit_test(test_endpoint_cap_and_prometheus),
        cmocka_unit_test(test_prometheus_labels_stable),
        cmocka_unit_test(test_no_redis_keeps_only_counters),
        cmocka_unit_test(test_unreachable_redis_close),
        cmocka_unit_test(test_close_with_silent_server),
        cmocka_unit_test(test_close_while_connecting),
        cmocka_unit_test(test_close_while_resolving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
