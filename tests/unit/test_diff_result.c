/*
 * Unit tests of the comparator's result plumbing (comparator/diff_result.c):
 * the difference sink (cap, counts, noise marking), the verdict it makes, the
 * bounded a/b text helpers and the kind/verdict names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../comparator/cmp_internal.h"

static void test_names(void **state)
{
    assert_string_equal(st_diff_kind_name(ST_DIFF_VALUE), "value");
    assert_string_equal(st_diff_kind_name(ST_DIFF_ARGMAX), "argmax");
    assert_string_equal(st_diff_kind_name(ST_DIFF_KIND_COUNT), "unknown");
    assert_string_equal(st_verdict_name(ST_VERDICT_MATCH), "match");
    assert_string_equal(st_verdict_name(ST_VERDICT_DIVERGED), "diverged");
    assert_string_equal(st_verdict_name(ST_VERDICT_NOISE), "noise");
    assert_string_equal(st_verdict_name(ST_VERDICT_ERROR), "error");
}

static void test_text_dup_cuts_on_utf8(void **state)
{
    char *d = stc_text_dup("abc", 3);
    assert_string_equal(d, "abc");
    free(d);
    char buf[STC_VALUE_MAX + 8];
    memset(buf, 'x', sizeof(buf));
    /* a 2-byte sequence straddling the cut: cut before its lead byte */
    buf[STC_VALUE_MAX - 1] = (char)0xC3;
    buf[STC_VALUE_MAX] = (char)0xA9;
    d = stc_text_dup(buf, sizeof(buf));
    assert_int_equal(strlen(d), STC_VALUE_MAX - 1 + 3);
    assert_memory_equal(d + STC_VALUE_MAX - 1, "...", 3);
    free(d);
    d = stc_escape_bytes("a\"\\\x01", 4);
    assert_string_equal(d, "a\\\"\\\\\\x01");
    free(d);
}

static void test_sink_cap_counts_all(void **state)
{
    stc_sink_t s;
    stc_sink_init(&s, 2, 0);
    assert_true(stc_sink_wants(&s));
    for (int i = 0; i < 5; i++) {
        char path[16];
        snprintf(path, sizeof(path), "$.k%d", i);
        stc_sink_add(&s, ST_DIFF_VALUE, path, strdup("1"), strdup("2"), 1);
    }
    assert_false(stc_sink_wants(&s));
    st_diff_result_t r;
    memset(&r, 0, sizeof(r));
    stc_sink_result(&s, &r);
    assert_int_equal(r.nentries, 2);
    assert_int_equal(r.total, 5);
    assert_int_equal(r.verdict, ST_VERDICT_DIVERGED);
    assert_string_equal(r.entries[1].path, "$.k1");
    assert_string_equal(r.entries[1].a, "1");
    stc_sink_deinit(&s);
    st_diff_result_free(&r);
    assert_null(r.entries);
}

static void test_noise_marking_and_verdict(void **state)
{
    st_diff_entry_t noise[1] = {{ST_DIFF_VALUE, "$.ts", NULL, NULL, 0, 0}};
    assert_true(stc_path_covers("$.ts", "$.ts"));
    assert_true(stc_path_covers("$.ts", "$.ts.ms"));
    assert_true(stc_path_covers("$.ts", "$.ts[0]"));
    assert_false(stc_path_covers("$.ts", "$.tsx"));

    stc_sink_t s;
    stc_sink_init(&s, 8, 0);
    s.noise = noise;
    s.nnoise = 1;
    stc_sink_add(&s, ST_DIFF_VALUE, "$.ts.ms", NULL, NULL, 0);
    st_diff_result_t r;
    memset(&r, 0, sizeof(r));
    stc_sink_result(&s, &r);
    assert_int_equal(r.verdict, ST_VERDICT_NOISE);
    assert_int_equal(r.entries[0].noise, 1);
    st_diff_result_free(&r);

    stc_sink_init(&s, 8, 0);
    memset(&r, 0, sizeof(r));
    stc_sink_result(&s, &r);
    assert_int_equal(r.verdict, ST_VERDICT_MATCH);
    st_diff_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_text_dup_cuts_on_utf8),
        cmocka_unit_test(test_sink_cap_counts_all),
        cmocka_unit_test(test_noise_marking_and_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
