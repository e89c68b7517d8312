/*
 * Unit tests of the endpoint policy resolved once per pair
 * (st_policy_resolve, rules.c): which sections apply, the resolved
 * tolerance, and that the comparison and the samples' redaction under it
 * (st_compare_policy, st_policy_redact_header / _body) answer exactly what
 * the rules-based calls answer.
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

static const char RULES[] =
    "{\"version\":1,\"max_depth\":12,"
    "\"defaults\":{\"tolerance\":{\"absolute\":0.5},\"ignore\":[\"$.ts\"],"
    "\"redact_headers\":[\"x-api-key\"],\"redact_paths\":[\"$..password\"]},"
    "\"endpoints\":[{\"match\":\"POST /v1/predict\",\"tolerance\":{\"relative\":0.1},"
    "\"ignore\":[\"$.model\"],\"redact_headers\":[\"x-session\"]}]}";

static st_rules_t *rules_new(void)
{
    char err[256];
    st_rules_t *r = NULL;
    if (st_rules_parse(RULES, strlen(RULES), &r, err, sizeof(err)) != 0) fail_msg("%s", err);
    return r;
}

static void test_resolve_sections_and_tolerance(void **state)
{
    st_rules_t *r = rules_new();
    st_policy_t p;
    st_policy_resolve(r, "POST /v1/predict", &p);
    assert_int_equal(p.nsec, 2); /* its own section, then the defaults */
    assert_true(p.tol.absolute == 0.5 && p.tol.relative == 0.1);
    assert_int_equal(p.max_depth, 12);
    assert_int_equal(p.nredact, 1);
    assert_int_equal(p.nredact_headers, 2); /* the union of every section's */
    st_policy_resolve(r, "GET /other", &p);
    assert_int_equal(p.nsec, 1);
    assert_true(p.tol.absolute == 0.5 && p.tol.relative == 0);
    assert_int_equal(p.nredact_headers, 2); /* redaction is the same for every endpoint */
    st_policy_resolve(NULL, "GET /other", &p);
    assert_int_equal(p.nsec, 0);
    assert_int_equal(p.max_depth, STC_MAX_DEPTH_DEFAULT);
    assert_int_equal(p.nredact + p.nredact_headers, 0);
    st_rules_free(r);
}

static st_response_t json_response(const char *body, const st_header_t *h, size_t nh)
{
    st_response_t x;
    memset(&x, 0, sizeof(x));
    x.status = 200;
    x.headers = h;
    x.nheaders = nh;
    x.body = body;
    x.body_len = strlen(body);
    return x;
}

static void test_compare_policy_is_compare(void **state)
{
    st_rules_t *r = rules_new();
    st_header_t ha[] = {{"X-Api-Key", 9, "a", 1}, {"Content-Type", 12, "application/json", 16}};
    st_header_t hb[] = {{"X-Api-Key", 9, "b", 1}, {"Content-Type", 12, "application/json", 16}};
    st_response_t a = json_response("{\"ts\":1,\"model\":\"x\",\"score\":1.0,\"n\":1}", ha, 2);
    st_response_t b = json_response("{\"ts\":2,\"model\":\"y\",\"score\":1.05,\"n\":2}", hb, 2);
    const char *eps[] = {"POST /v1/predict", "GET /other"};
    for (size_t k = 0; k < 2; k++) {
        st_diff_result_t x, y;
        st_policy_t p;
        st_policy_resolve(r, eps[k], &p);
        assert_int_equal(st_compare(r, eps[k], &a, &b, NULL, &x), 0);
        assert_int_equal(st_compare_policy(&p, &a, &b, NULL, &y), 0);
        assert_int_equal(x.verdict, y.verdict);
        assert_int_equal(x.total, y.total);
        assert_int_equal(x.nentries, y.nentries);
        for (size_t i = 0; i < x.nentries; i++) {
            assert_string_equal(x.entries[i].path, y.entries[i].path);
            assert_string_equal(x.entries[i].a ? x.entries[i].a : "-",
                                y.entries[i].a ? y.entries[i].a : "-");
        }
        st_diff_result_free(&x);
        st_diff_result_free(&y);
    }
    /* the endpoint's own section: $.model ignored, score within 10% */
    st_policy_t p;
    st_policy_resolve(r, "POST /v1/predict", &p);
    st_diff_result_t y;
    assert_int_equal(st_compare_policy(&p, &a, &b, NULL, &y), 0);
    assert_int_equal(y.total, 2); /* header:x-api-key (redacted text) and $.n */
    assert_string_equal(y.entries[0].path, "header:x-api-key");
    assert_string_equal(y.entries[0].a, "[REDACTED]");
    st_diff_result_free(&y);
    st_rules_free(r);
}

static void test_policy_redaction_is_rules_redaction(void **state)
{
    st_rules_t *r = rules_new();
    st_policy_t p;
    st_policy_resolve(r, "GET /other", &p);
    const char *names[] = {"X-Api-Key", "x-session", "Authorization", "Content-Type", "X-Other"};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(st_policy_redact_header(&p, names[i], strlen(names[i])),
                         st_redact_header(r, names[i], strlen(names[i])));
    assert_int_equal(st_policy_redact_header(&p, "x-session", 9), 1);
    const char *bodies[] = {"{\"user\":{\"password\":\"hunter2\"},\"n\":1}", "{\"a\":", "plain",
                            "[{\"password\":1}]", ""};
    for (size_t i = 0; i < 5; i++) {
        size_t la = 0, lb = 0;
        char *x = st_redact_body(r, bodies[i], strlen(bodies[i]), 20, &la);
        char *y = st_policy_redact_body(&p, bodies[i], strlen(bodies[i]), 20, &lb);
        assert_non_null(x);
        assert_non_null(y);
        assert_int_equal(la, lb);
        assert_memory_equal(x, y, la);
        free(x);
        free(y);
    }
    size_t n = 0;
    char *y = st_policy_redact_body(&p, bodies[0], strlen(bodies[0]), 4096, &n);
    assert_non_null(strstr(y, "[REDACTED]"));
    assert_null(strstr(y, "hunter2"));
    free(y);
    st_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_sections_and_tolerance),
        cmocka_unit_test(test_compare_policy_is_compare),
        cmocka_unit_test(test_policy_redaction_is_rules_redaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
