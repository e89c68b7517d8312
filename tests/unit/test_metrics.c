/*
 * Unit tests of proxy/metrics.c, the proxy's Prometheus text exposition:
 *   - st_hist_observe: a value on a bucket bound counts in that bucket (le),
 *     NaN and negatives count as 0, huge values are capped, sum in us;
 *   - st_hist_render: HELP and TYPE first, cumulative buckets with their le
 *     in %g form and +Inf last, _sum in seconds (6 decimals) and _count,
 *     summed over several histograms;
 *   - st_metrics_render over two workers: every family has one HELP and one
 *     TYPE line, before its samples, and every sample belongs to the family
 *     declared last; counters and gauges are the workers' sums (the active
 *     connections gauge is signed), status classes 1xx..5xx only, the
 *     rejection reasons without "none", one line per TLS side and reason;
 *   - st_status_class.
 * Label values here are fixed names (no escaping in this module: the
 * per-endpoint labels, which need it, are rendered and tested by
 * comparator/stats.c, tests/unit/test_stats.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>

#include "../../proxy/metrics.h"

/* Renders into a string the caller frees. */
#define RENDER(call)                                                                               \
    ({                                                                                             \
        char *buf_ = NULL;                                                                         \
        size_t len_ = 0;                                                                           \
        FILE *f_ = open_memstream(&buf_, &len_);                                                   \
        assert_non_null(f_);                                                                       \
        call;                                                                                      \
        assert_int_equal(fclose(f_), 0);                                                           \
        buf_;                                                                                      \
    })

/* The line of `text` that starts with `prefix` followed by a space, or NULL;
 * *value gets what follows the space. */
static const char *sample(const char *text, const char *prefix, char *value, size_t vlen)
{
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, n) == 0 && l[n] == ' ') {
            const char *v = l + n + 1, *e = strchr(v, '\n');
            size_t m = e ? (size_t)(e - v) : strlen(v);
            if (m >= vlen) m = vlen - 1;
            memcpy(value, v, m);
            value[m] = '\0';
            return l;
        }
    }
    return NULL;
}

#define ASSERT_SAMPLE(text, prefix, want)                                                          \
    do {                                                                                           \
        char v_[64];                                                                               \
        if (!sample((text), (prefix), v_, sizeof(v_))) fail_msg("no sample %s", (prefix));         \
        assert_string_equal(v_, (want));                                                           \
    } while (0)

static uint64_t bucket(const st_hist_t *h, int i)
{
    return atomic_load(&h->bucket[i]);
}

static void test_hist_observe_buckets(void **state)
{
    (void)state;
    st_hist_t h;
    memset(&h, 0, sizeof(h));
    st_hist_observe(&h, 0.0005); /* on the first bound: le="0.0005" */
    st_hist_observe(&h, 0.00051);
    st_hist_observe(&h, 0.0);
    st_hist_observe(&h, 5.0);   /* the last finite bound */
    st_hist_observe(&h, 5.001); /* +Inf */
    assert_int_equal(bucket(&h, 0), 2);
    assert_int_equal(bucket(&h, 1), 1);
    assert_int_equal(bucket(&h, ST_HIST_BUCKETS - 2), 1);
    assert_int_equal(bucket(&h, ST_HIST_BUCKETS - 1), 1);
    assert_int_equal(atomic_load(&h.count), 5);
    /* 500 + 510 + 0 + 5000000 + 5001000 us */
    assert_int_equal(atomic_load(&h.sum_us), 500 + 510 + 5000000 + 5001000);
}

static void test_hist_observe_clamps(void **state)
{
    (void)state;
    st_hist_t h;
    memset(&h, 0, sizeof(h));
    st_hist_observe(&h, -1.0);
    st_hist_observe(&h, NAN);
    assert_int_equal(bucket(&h, 0), 2); /* both as 0 */
    assert_int_equal(atomic_load(&h.sum_us), 0);
    st_hist_observe(&h, 1e300); /* capped at 1e6 s: the sum does not wrap */
    assert_int_equal(bucket(&h, ST_HIST_BUCKETS - 1), 1);
    assert_int_equal(atomic_load(&h.sum_us), 1000000ULL * 1000000ULL);
    assert_int_equal(atomic_load(&h.count), 3);
}

static void test_hist_render_sums_and_is_cumulative(void **state)
{
    (void)state;
    st_hist_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    st_hist_observe(&a, 0.0001); /* le 0.0005 */
    st_hist_observe(&a, 0.2);    /* le 0.25 */
    st_hist_observe(&b, 0.003);  /* le 0.005 */
    st_hist_observe(&b, 60);     /* +Inf */
    const st_hist_t *hs[2] = {&a, &b};
    char *t = RENDER(st_hist_render(f_, "x_seconds", "Some latency.", hs, 2));
    const char *want = "# HELP x_seconds Some latency.\n"
                       "# TYPE x_seconds histogram\n"
                       "x_seconds_bucket{le=\"0.0005\"} 1\n"
                       "x_seconds_bucket{le=\"0.001\"} 1\n"
                       "x_seconds_bucket{le=\"0.0025\"} 1\n"
                       "x_seconds_bucket{le=\"0.005\"} 2\n"
                       "x_seconds_bucket{le=\"0.01\"} 2\n"
                       "x_seconds_bucket{le=\"0.025\"} 2\n"
                       "x_seconds_bucket{le=\"0.05\"} 2\n"
                       "x_seconds_bucket{le=\"0.1\"} 2\n"
                       "x_seconds_bucket{le=\"0.25\"} 3\n"
                       "x_seconds_bucket{le=\"0.5\"} 3\n"
                       "x_seconds_bucket{le=\"1\"} 3\n"
                       "x_seconds_bucket{le=\"2.5\"} 3\n"
                       "x_seconds_bucket{le=\"5\"} 3\n"
                       "x_seconds_bucket{le=\"+Inf\"} 4\n"
                       "x_seconds_sum 60.203100\n"
                       "x_seconds_count 4\n";
    assert_string_equal(t, want);
    free(t);
    /* no histogram at all: zeros, same shape */
    t = RENDER(st_hist_render(f_, "y_seconds", "None.", hs, 0));
    ASSERT_SAMPLE(t, "y_seconds_bucket{le=\"+Inf\"}", "0");
    ASSERT_SAMPLE(t, "y_seconds_sum", "0.000000");
    ASSERT_SAMPLE(t, "y_seconds_count", "0");
    free(t);
}

/* Every line is a comment (HELP/TYPE) or a sample "name[{labels}] value";
 * each family has exactly one HELP and one TYPE, HELP first, both before
 * its samples; each sample's name is the family declared last, or that
 * family's _bucket/_sum/_count when it is a histogram. Returns the number
 * of families. */
static int check_exposition(const char *text)
{
    char family[128] = "", type[32] = "";
    int families = 0, help_seen = 0;
    char *copy = strdup(text), *save = NULL;
    assert_non_null(copy);
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (strncmp(l, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(l + 7, "%127s", name), 1);
            /* a new family: never seen before in this text */
            char needle[160];
            snprintf(needle, sizeof(needle), "# HELP %s ", name);
            assert_ptr_equal(strstr(text, needle), text + (l - copy));
            snprintf(family, sizeof(family), "%s", name);
            type[0] = '\0';
            help_seen = 1;
            families++;
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char t[32];
            assert_int_equal(sscanf(l + 7, "%127s %31s", name, t), 2);
            assert_true(help_seen);
            assert_string_equal(name, family);
            assert_string_equal(type, ""); /* one TYPE per family */
            assert_true(strcmp(t, "counter") == 0 || strcmp(t, "gauge") == 0 ||
                        strcmp(t, "histogram") == 0);
            snprintf(type, sizeof(type), "%s", t);
            continue;
        }
        assert_true(l[0] != '#');
        assert_string_not_equal(type, ""); /* a sample after HELP and TYPE */
        size_t n = strcspn(l, "{ ");
        assert_true(n > 0 && n < sizeof(name));
        memcpy(name, l, n);
        name[n] = '\0';
        if (strcmp(type, "histogram") == 0) {
            size_t fl = strlen(family);
            assert_true(strncmp(name, family, fl) == 0);
            const char *suf = name + fl;
            assert_true(strcmp(suf, "_bucket") == 0 || strcmp(suf, "_sum") == 0 ||
                        strcmp(suf, "_count") == 0);
        } else {
            assert_string_equal(name, family);
        }
        const char *rest = l + n;
        if (*rest == '{') {
            const char *close = strstr(rest, "} ");
            assert_non_null(close);
            rest = close + 1;
        }
        assert_true(*rest == ' ');
        char *end = NULL;
        strtod(rest + 1, &end);
        assert_true(end != rest + 1 && *end == '\0'); /* a number, and nothing after it */
    }
    free(copy);
    return families;
}

static void test_render_two_workers(void **state)
{
    (void)state;
    st_metrics_t *m[2];
    for (int i = 0; i < 2; i++) {
        m[i] = calloc(1, sizeof(st_metrics_t));
        assert_non_null(m[i]);
    }
    ST_ADD(m[0]->requests[2], 5);
    ST_ADD(m[1]->requests[2], 7);
    ST_ADD(m[1]->requests[5], 1);
    ST_ADD(m[0]->requests[0], 100); /* "other": not rendered */
    ST_ADD(m[0]->upstream_errors[ST_UPFAIL_TIMEOUT], 3);
    ST_ADD(m[1]->rejected[ST_REJ_URI_TOO_LONG], 2);
    ST_ADD(m[0]->rejected[ST_REJ_NONE], 9); /* not a reason: not rendered */
    ST_ADD(m[0]->active_connections, 4);
    ST_ADD(m[1]->active_connections, -1);
    ST_ADD(m[0]->connections_total, 10);
    ST_ADD(m[1]->connections_total, 11);
    st_hist_observe(&m[0]->request_duration, 0.002);
    st_hist_observe(&m[1]->request_duration, 0.02);
    ST_ADD(m[1]->mirror_skipped[ST_SKIP_MEMORY_BUDGET], 6);
    ST_ADD(m[0]->shadow_responses[4], 2);
    ST_ADD(m[0]->shadow_errors[ST_UPFAIL_RESET], 1);
    st_hist_observe(&m[1]->shadow_duration, 0.7);
    ST_ADD(m[0]->mirror_inflight, 3);
    ST_ADD(m[1]->mirror_bytes, 4096);
    ST_ADD(m[1]->tls_failures[ST_TLS_SHADOW][ST_TLSFAIL_HANDSHAKE], 8);
    ST_ADD(m[0]->upstream_connects[ST_TLS_PRIMARY], 2);
    ST_ADD(m[1]->upstream_connects[ST_TLS_NOISE], 1);
    ST_ADD(m[1]->upstream_failovers[ST_TLS_SHADOW], 4);
    ST_ADD(m[0]->upstream_resolves[ST_TLS_PRIMARY][1], 1);
    ST_ADD(m[1]->accept_errors[ST_ACCEPT_EMFILE], 12);
    ST_ADD(m[1]->accept_paused, 1);
    ST_ADD(m[0]->max_connections, 100);
    ST_ADD(m[1]->max_connections, 50);

    char *t = RENDER(st_metrics_render(m, 2, f_));
    int families = check_exposition(t);
    assert_true(families >= 23); /* the 23 of this module, at least */

    ASSERT_SAMPLE(t, "shadowtee_requests_total{code=\"2xx\"}", "12");
    ASSERT_SAMPLE(t, "shadowtee_requests_total{code=\"5xx\"}", "1");
    ASSERT_SAMPLE(t, "shadowtee_requests_total{code=\"1xx\"}", "0");
    assert_null(strstr(t, "code=\"other\""));
    ASSERT_SAMPLE(t, "shadowtee_upstream_errors_total{reason=\"timeout\"}", "3");
    ASSERT_SAMPLE(t, "shadowtee_upstream_errors_total{reason=\"connect\"}", "0");
    ASSERT_SAMPLE(t, "shadowtee_requests_rejected_total{reason=\"uri_too_long\"}", "2");
    assert_null(strstr(t, "shadowtee_requests_rejected_total{reason=\"none\"}"));
    ASSERT_SAMPLE(t, "shadowtee_active_connections", "3");
    ASSERT_SAMPLE(t, "shadowtee_connections_total", "21");
    ASSERT_SAMPLE(t, "shadowtee_request_duration_seconds_bucket{le=\"0.001\"}", "0");
    ASSERT_SAMPLE(t, "shadowtee_request_duration_seconds_bucket{le=\"0.0025\"}", "1");
    ASSERT_SAMPLE(t, "shadowtee_request_duration_seconds_bucket{le=\"0.025\"}", "2");
    ASSERT_SAMPLE(t, "shadowtee_request_duration_seconds_sum", "0.022000");
    ASSERT_SAMPLE(t, "shadowtee_request_duration_seconds_count", "2");
    ASSERT_SAMPLE(t, "shadowtee_mirror_skipped_total{reason=\"memory_budget\"}", "6");
    ASSERT_SAMPLE(t, "shadowtee_shadow_responses_total{code=\"4xx\"}", "2");
    ASSERT_SAMPLE(t, "shadowtee_shadow_errors_total{reason=\"reset\"}", "1");
    ASSERT_SAMPLE(t, "shadowtee_shadow_duration_seconds_bucket{le=\"0.5\"}", "0");
    ASSERT_SAMPLE(t, "shadowtee_shadow_duration_seconds_bucket{le=\"1\"}", "1");
    ASSERT_SAMPLE(t, "shadowtee_mirror_inflight", "3");
    ASSERT_SAMPLE(t, "shadowtee_mirror_buffered_bytes", "4096");
    ASSERT_SAMPLE(t, "shadowtee_tls_handshake_failures_total{side=\"shadow\",reason=\"handshake\"}",
                  "8");
    ASSERT_SAMPLE(t, "shadowtee_tls_handshake_failures_total{side=\"listener\",reason=\"verify\"}",
                  "0");
    ASSERT_SAMPLE(t, "shadowtee_upstream_connects_total{pool=\"primary\"}", "2");
    ASSERT_SAMPLE(t, "shadowtee_upstream_connects_total{pool=\"noise\"}", "1");
    /* pools are primary, shadow, noise: the listener is no pool */
    assert_null(strstr(t, "shadowtee_upstream_connects_total{pool=\"listener\"}"));
    ASSERT_SAMPLE(t, "shadowtee_upstream_failovers_total{pool=\"shadow\"}", "4");
    ASSERT_SAMPLE(t, "shadowtee_upstream_resolutions_total{pool=\"primary\",result=\"changed\"}",
                  "1");
    ASSERT_SAMPLE(t, "shadowtee_upstream_resolutions_total{pool=\"noise\",result=\"failed\"}", "0");
    ASSERT_SAMPLE(t, "shadowtee_accept_errors_total{reason=\"emfile\"}", "12");
    ASSERT_SAMPLE(t, "shadowtee_accept_paused", "1");
    ASSERT_SAMPLE(t, "shadowtee_max_connections", "150");
    /* one line per TLS side and reason: 4 x 3 */
    int tls_lines = 0;
    for (const char *p = t; (p = strstr(p, "\nshadowtee_tls_handshake_failures_total{")); p++)
        tls_lines++;
    assert_int_equal(tls_lines, 12);
    /* the types of a few families */
    assert_non_null(strstr(t, "# TYPE shadowtee_requests_total counter\n"));
    assert_non_null(strstr(t, "# TYPE shadowtee_active_connections gauge\n"));
    assert_non_null(strstr(t, "# TYPE shadowtee_request_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "# TYPE shadowtee_mirror_inflight gauge\n"));
    free(t);

    /* one worker alone: its own values */
    t = RENDER(st_metrics_render(m, 1, f_));
    check_exposition(t);
    ASSERT_SAMPLE(t, "shadowtee_requests_total{code=\"2xx\"}", "5");
    ASSERT_SAMPLE(t, "shadowtee_active_connections", "4");
    ASSERT_SAMPLE(t, "shadowtee_max_connections", "100");
    free(t);
    free(m[0]);
    free(m[1]);
}

static void test_status_class(void **state)
{
    (void)state;
    assert_int_equal(st_status_class(100), 1);
    assert_int_equal(st_status_class(199), 1);
    assert_int_equal(st_status_class(200), 2);
    assert_int_equal(st_status_class(404), 4);
    assert_int_equal(st_status_class(599), 5);
    assert_int_equal(st_status_class(600), 0);
    assert_int_equal(st_status_class(99), 0);
    assert_int_equal(st_status_class(0), 0);
    assert_int_equal(st_status_class(-200), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_observe_buckets),
        cmocka_unit_test(test_hist_observe_clamps),
        cmocka_unit_test(test_hist_render_sums_and_is_cumulative),
        cmocka_unit_test(test_render_two_workers),
        cmocka_unit_test(test_status_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
