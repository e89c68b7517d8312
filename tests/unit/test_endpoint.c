/*
 * Unit tests of endpoint keys (path templating, explicit templates, query
 * and fragment dropped, label-safe bytes, snprintf-like sizing) and of the
 * bounded endpoint set (cardinality cap, stable pointers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shadowtee/comparator.h"

typedef struct {
    const char *method;
    const char *path;
    const char *expect;
} key_case_t;

static void check_keys(const st_rules_t *rules, const key_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char out[256];
        size_t len = st_endpoint_key(rules, cases[i].method, strlen(cases[i].method), cases[i].path,
                                     strlen(cases[i].path), out, sizeof(out));
        if (strcmp(out, cases[i].expect) != 0 || len != strlen(cases[i].expect))
            fail_msg("%s %s: got [%s] (%zu), expected [%s]", cases[i].method, cases[i].path, out,
                     len, cases[i].expect);
    }
}

static void test_key_templating(void **state)
{
    static const key_case_t cases[] = {
        {"GET", "/", "GET /"},
        {"GET", "", "GET /"},
        {"get", "/users", "GET /users"},
        {"GET", "/users/42", "GET /users/{id}"},
        {"GET", "/users/42/orders/7", "GET /users/{id}/orders/{id}"},
        {"GET", "/users/4a2", "GET /users/4a2"},
        {"GET", "/v1/items/550e8400-e29b-41d4-a716-446655440000", "GET /v1/items/{id}"},
        {"GET", "/v1/items/550E8400-E29B-41D4-A716-446655440000/x", "GET /v1/items/{id}/x"},
        {"GET", "/v1/items/550e8400e29b41d4a716446655440000", "GET /v1/items/{id}"},
        {"GET", "/blob/0123456789abcdef", "GET /blob/{id}"},           /* 16 hex digits */
        {"GET", "/blob/0123456789abcde", "GET /blob/0123456789abcde"}, /* 15 */
        {"GET", "/blob/0123456789abcdeg", "GET /blob/0123456789abcdeg"},
        {"GET", "/v1/models", "GET /v1/models"}, /* v1 is not an id */
        {"GET", "/search?q=1&page=2", "GET /search"},
        {"GET", "/page#section", "GET /page"},
        {"GET", "/users/12?x=/9", "GET /users/{id}"},
        {"GET", "/a//b/", "GET /a//b/"},
        {"GET", "http://example.com/users/5?x=1", "GET /users/{id}"},
        {"GET", "http://example.com", "GET /"},
        {"OPTIONS", "*", "OPTIONS *"},
        {"GET", "/we ird/\"q\"/back\\slash/\x01", "GET /we_ird/_q_/back_slash/_"},
        {"", "/x", "_ /x"},
        {"GE T", "/x", "GE_T /x"},
    };
    (void)state;
    check_keys(NULL, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_explicit_templates_win(void **state)
{
    const char *json = "{\"templates\":[\"/v1/models/{id}/predict\",\"/users/{name}\","
                       "\"/files/{path}/raw\",\"/\"]}";
    char err[256];
    st_rules_t *r = NULL;
    static const key_case_t cases[] = {
        {"POST", "/v1/models/resnet50/predict", "POST /v1/models/{id}/predict"},
        {"POST", "/v1/models/resnet50/predict?v=2", "POST /v1/models/{id}/predict"},
        {"GET", "/users/alice", "GET /users/{name}"},
        {"GET", "/users/42", "GET /users/{name}"},
        {"GET", "/users/alice/photos", "GET /users/alice/photos"}, /* segment count differs */
        {"GET", "/users/7/photos", "GET /users/{id}/photos"},      /* falls back to heuristics */
        {"GET", "/files/a/raw", "GET /files/{path}/raw"},
        {"GET", "/files/a/b/raw", "GET /files/a/b/raw"},
        {"GET", "/", "GET /"},
        {"GET", "/v1/models//predict", "GET /v1/models//predict"}, /* {x} needs a segment */
    };
    (void)state;
    assert_int_equal(st_rules_parse(json, strlen(json), &r, err, sizeof(err)), 0);
    check_keys(r, cases, sizeof(cases) / sizeof(cases[0]));
    st_rules_free(r);
}

static void test_key_buffer_too_small(void **state)
{
    char out[8];
    (void)state;
    const char *path = "/users/42/orders";
    size_t n = st_endpoint_key(NULL, "GET", 3, path, strlen(path), out, sizeof(out));
    assert_int_equal(n, strlen("GET /users/{id}/orders"));
    assert_string_equal(out, "GET /us"); /* cut, still terminated */
    assert_int_equal(st_endpoint_key(NULL, "GET", 3, path, strlen(path), NULL, 0), n);
    /* the needed size is enough */
    char exact[32];
    assert_int_equal(st_endpoint_key(NULL, "GET", 3, path, strlen(path), exact, n + 1), n);
    assert_string_equal(exact, "GET /users/{id}/orders");
}

static void test_endpoint_set_cardinality_cap(void **state)
{
    st_endpoint_set_t *s = st_endpoint_set_new(3);
    (void)state;
    assert_non_null(s);
    const char *a = st_endpoint_set_intern(s, "GET /a");
    const char *b = st_endpoint_set_intern(s, "GET /b");
    const char *c = st_endpoint_set_intern(s, "GET /c");
    assert_string_equal(a, "GET /a");
    assert_string_equal(b, "GET /b");
    assert_string_equal(c, "GET /c");
    /* beyond the cap: {other}; keys already in keep their pointer */
    assert_string_equal(st_endpoint_set_intern(s, "GET /d"), ST_ENDPOINT_OTHER);
    assert_string_equal(st_endpoint_set_intern(s, "GET /e"), ST_ENDPOINT_OTHER);
    assert_ptr_equal(st_endpoint_set_intern(s, "GET /a"), a);
    assert_ptr_equal(st_endpoint_set_intern(s, "GET /c"), c);
    /* the caller's buffer is copied */
    char buf[16];
    strcpy(buf, "GET /b");
    assert_ptr_equal(st_endpoint_set_intern(s, buf), b);
    assert_string_equal(st_endpoint_set_intern(s, NULL), ST_ENDPOINT_OTHER);
    assert_string_equal(st_endpoint_set_intern(s, ST_ENDPOINT_OTHER), ST_ENDPOINT_OTHER);
    st_endpoint_set_free(s);
    st_endpoint_set_free(NULL);

    s = st_endpoint_set_new(0);
    assert_string_equal(st_endpoint_set_intern(s, "GET /a"), ST_ENDPOINT_OTHER);
    st_endpoint_set_free(s);
}

static void test_endpoint_set_grows_with_stable_pointers(void **state)
{
    enum { N = 500 };
    const char *ptrs[N];
    char key[32];
    st_endpoint_set_t *s = st_endpoint_set_new(400);
    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "GET /k%d", i);
        ptrs[i] = st_endpoint_set_intern(s, key);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "GET /k%d", i);
        if (i < 400) {
            assert_string_equal(ptrs[i], key);
            assert_ptr_equal(st_endpoint_set_intern(s, key), ptrs[i]);
        } else {
            assert_string_equal(ptrs[i], ST_ENDPOINT_OTHER);
        }
    }
    st_endpoint_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_templating),
        cmocka_unit_test(test_explicit_templates_win),
        cmocka_unit_test(test_key_buffer_too_small),
        cmocka_unit_test(test_endpoint_set_cardinality_cap),
        cmocka_unit_test(test_endpoint_set_grows_with_stable_pointers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
