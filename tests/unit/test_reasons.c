/*
 * Unit tests of the reason tables (proxy/reasons.h): in every family each
 * enum value has a non-empty name and label, unique within the family; a
 * label looked up gives its value back; the counted upstream reasons stop
 * before EOF, which is counted as a reset; and the labels are the ones
 * /metrics has always shown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proxy/reasons.h"

static void check_family(const char *const *names, const char *const *labels, int n,
                         const char *prefix)
{
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        assert_non_null(names[i]);
        assert_non_null(labels[i]);
        assert_true(strlen(names[i]) > strlen(prefix));
        assert_memory_equal(names[i], prefix, strlen(prefix));
        assert_true(labels[i][0] != '\0');
        for (const char *p = labels[i]; *p; p++) /* a Prometheus label value kept plain */
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(names[i], names[j]);
            assert_string_not_equal(labels[i], labels[j]);
        }
        assert_int_equal(st_reason_find(labels, n, labels[i], strlen(labels[i])), i);
    }
    assert_int_equal(st_reason_find(labels, n, "no_such_reason", 14), -1);
    assert_int_equal(st_reason_find(labels, n, labels[0], 0), -1);
    /* a prefix of a label is not the label */
    assert_int_equal(st_reason_find(labels, n, labels[0], strlen(labels[0]) - 1), -1);
}

static void test_upfail(void **state)
{
    (void)state;
    check_family(st_upfail_names, st_upfail_labels, ST_UPFAIL_COUNT, "ST_UPFAIL_");
    assert_string_equal(st_upfail_names[ST_UPFAIL_TIMEOUT], "ST_UPFAIL_TIMEOUT");
    assert_int_equal(ST_UPFAIL_NCOUNTED, ST_UPFAIL_COUNT - 1);
    assert_int_equal(ST_UPFAIL_EOF, ST_UPFAIL_NCOUNTED);
    assert_int_equal(st_upfail_counted(ST_UPFAIL_EOF), ST_UPFAIL_RESET);
    for (int i = 0; i < ST_UPFAIL_NCOUNTED; i++)
        assert_int_equal(st_upfail_counted((enum st_upfail)i), i);
    /* the labels of shadowtee_upstream_errors_total / shadowtee_shadow_errors_total */
    const char *want[] = {"connect", "timeout", "reset", "protocol", "tls"};
    assert_int_equal(sizeof(want) / sizeof(want[0]), ST_UPFAIL_NCOUNTED);
    for (int i = 0; i < ST_UPFAIL_NCOUNTED; i++)
        assert_string_equal(st_upfail_labels[i], want[i]);
}

static void test_tls_fail(void **state)
{
    (void)state;
    check_family(st_tls_fail_names, st_tls_fail_labels, ST_TLSFAIL_COUNT, "ST_TLSFAIL_");
    assert_string_equal(st_tls_fail_labels[ST_TLSFAIL_VERIFY], "verify");
    assert_string_equal(st_tls_fail_labels[ST_TLSFAIL_HANDSHAKE], "handshake");
    assert_string_equal(st_tls_fail_labels[ST_TLSFAIL_PROTOCOL], "protocol");
    assert_int_equal(ST_TLSFAIL_COUNT, 3);
}

static void test_close(void **state)
{
    (void)state;
    check_family(st_close_names, st_close_labels, ST_CLOSE_COUNT, "ST_CLOSE_");
    assert_string_equal(st_close_labels[ST_CLOSE_EXCHANGE_DONE], "exchange_done");
    assert_string_equal(st_close_names[ST_CLOSE_CLIENT_EOF], "ST_CLOSE_CLIENT_EOF");
    assert_int_equal(st_reason_find(st_close_labels, ST_CLOSE_COUNT, "stop", 4), ST_CLOSE_STOP);
}

/* The families that were an enum in metrics.h and a hand-kept label array in
 * metrics.c: the labels are the metric's wire values, so they are pinned in
 * their enum order as they were before the tables. */
static void test_counted_families(void **state)
{
    (void)state;
    static const char *const skip[] = {"sampling",     "method",        "body_too_large",
                                       "inflight_cap", "memory_budget", "shadow_unavailable",
                                       "loop_guard"};
    static const char *const mdrop[] = {"comparator_busy", "queue_bytes", "aborted",   "redis_down",
                                        "connection_lost", "error_reply", "duplicate", "shutdown"};
    static const char *const rej[] = {"none",
                                      "connect",
                                      "upgrade",
                                      "http09",
                                      "bad_request_line",
                                      "bad_header_name",
                                      "bad_header_value",
                                      "bad_host",
                                      "bare_lf",
                                      "bare_cr",
                                      "bad_framing",
                                      "malformed",
                                      "unknown_method",
                                      "transfer_coding",
                                      "version",
                                      "head_too_large",
                                      "uri_too_long",
                                      "body_too_large",
                                      "timeout"};
    static const char *const accept[] = {"emfile", "enfile", "enobufs", "other"};
    static const char *const cmpskip[] = {"comparator_busy", "queue_bytes", "shutdown"};

    check_family(st_skip_names, st_skip_labels, ST_SKIP_COUNT, "ST_SKIP_");
    check_family(st_mesh_drop_names, st_mesh_drop_labels, ST_MDROP_COUNT, "ST_MDROP_");
    check_family(st_cmpskip_names, st_cmpskip_labels, ST_CMPSKIP_COUNT, "ST_CMPSKIP_");
    check_family(st_reject_names, st_reject_labels, ST_REJ_COUNT, "ST_REJ_");
    check_family(st_accept_err_names, st_accept_err_labels, ST_ACCEPT_ERR_COUNT, "ST_ACCEPT_");
    assert_int_equal(ST_SKIP_COUNT, sizeof(skip) / sizeof(skip[0]));
    assert_int_equal(ST_MDROP_COUNT, sizeof(mdrop) / sizeof(mdrop[0]));
    assert_int_equal(ST_CMPSKIP_COUNT, sizeof(cmpskip) / sizeof(cmpskip[0]));
    assert_int_equal(ST_REJ_COUNT, sizeof(rej) / sizeof(rej[0]));
    assert_int_equal(ST_ACCEPT_ERR_COUNT, sizeof(accept) / sizeof(accept[0]));
    for (int i = 0; i < ST_SKIP_COUNT; i++)
        assert_string_equal(st_skip_labels[i], skip[i]);
    for (int i = 0; i < ST_MDROP_COUNT; i++)
        assert_string_equal(st_mesh_drop_labels[i], mdrop[i]);
    for (int i = 0; i < ST_CMPSKIP_COUNT; i++)
        assert_string_equal(st_cmpskip_labels[i], cmpskip[i]);
    for (int i = 0; i < ST_REJ_COUNT; i++)
        assert_string_equal(st_reject_labels[i], rej[i]);
    for (int i = 0; i < ST_ACCEPT_ERR_COUNT; i++)
        assert_string_equal(st_accept_err_labels[i], accept[i]);
    assert_int_equal(ST_REJ_NONE, 0); /* a zeroed exchange has no reason */
    assert_string_equal(st_reject_names[ST_REJ_BARE_LF], "ST_REJ_BARE_LF");
    assert_string_equal(st_accept_err_labels[ST_ACCEPT_ENOBUFS], "enobufs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upfail),
        cmocka_unit_test(test_tls_fail),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_counted_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
