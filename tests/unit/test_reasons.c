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
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upfail),
        cmocka_unit_test(test_tls_fail),
        cmocka_unit_test(test_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
