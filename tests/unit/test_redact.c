/*
 * Unit tests of redaction for stored samples: credential headers (built-in
 * and configured), JSON values at redact paths (plain, wildcard, recursive),
 * truncation with its marker (not splitting UTF-8), and failing closed on
 * bodies that look like JSON but do not parse.
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

static st_rules_t *parse_ok(const char *json)
{
    char err[512];
    st_rules_t *r = NULL;
    if (st_rules_parse(json, strlen(json), &r, err, sizeof(err)) != 0) fail_msg("%s", err);
    return r;
}

static void test_redact_header_names(void **state)
{
    static const struct {
        const char *name;
        int with_rules; /* expected with the rules below */
        int without;    /* expected with no rules */
    } cases[] = {
        {"Authorization", 1, 1},   {"authorization", 1, 1},       {"COOKIE", 1, 1},
        {"Set-Cookie", 1, 1},      {"Proxy-Authorization", 1, 1}, {"X-Api-Key", 1, 0},
        {"x-session-token", 1, 0}, {"X-Api-Key-Id", 0, 0},        {"Authorizatio", 0, 0},
        {"Content-Type", 0, 0},
    };
    st_rules_t *r = parse_ok("{\"defaults\":{\"redact_headers\":[\"x-api-key\"]},"
                             "\"endpoints\":[{\"match\":\"GET /\",\"redact_headers\":"
                             "[\"X-Session-Token\"]}]}");
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].name);
        if (st_redact_header(r, cases[i].name, n) != cases[i].with_rules ||
            st_redact_header(NULL, cases[i].name, n) != cases[i].without)
            fail_msg("header %s", cases[i].name);
    }
    /* names are length-delimited, not NUL-terminated */
    assert_int_equal(st_redact_header(NULL, "Cookie: x", 6), 1);
    st_rules_free(r);
}

typedef struct {
    const char *name;
    const char *body;
    size_t max_len;
    const char *expect;
} body_case_t;

static void check_bodies(const st_rules_t *r, const body_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t out_len = 12345;
        char *out =
            st_redact_body(r, cases[i].body, strlen(cases[i].body), cases[i].max_len, &out_len);
        if (!out || strcmp(out, cases[i].expect) != 0 || out_len != strlen(cases[i].expect))
            fail_msg("case '%s': got [%s] (%zu), expected [%s]", cases[i].name, out ? out : "NULL",
                     out_len, cases[i].expect);
        free(out);
    }
}

static void test_redact_json_paths(void **state)
{
    st_rules_t *r =
        parse_ok("{\"defaults\":{\"redact_paths\":[\"$.user.email\",\"$.cards[*].number\","
                 "\"$..password\"]},\"endpoints\":[{\"match\":\"GET /\",\"redact_paths\":"
                 "[\"$['api key']\"]}]}");
    static const body_case_t cases[] = {
        {"plain path", "{\"user\":{\"email\":\"a@b.c\",\"id\":7}}", 1000,
         "{\"user\":{\"email\":\"[REDACTED]\",\"id\":7}}"},
        {"object value replaced whole", "{\"user\":{\"email\":{\"x\":1}}}", 1000,
         "{\"user\":{\"email\":\"[REDACTED]\"}}"},
        {"wildcard index",
         "{\"cards\":[{\"number\":\"4111\"},{\"number\":\"5500\",\"exp\":\"1/30\"}]}", 1000,
         "{\"cards\":[{\"number\":\"[REDACTED]\"},{\"number\":\"[REDACTED]\",\"exp\":\"1/30\"}]}"},
        {"recursive descent", "[{\"a\":{\"password\":\"x\"}},{\"password\":\"y\"}]", 1000,
         "[{\"a\":{\"password\":\"[REDACTED]\"}},{\"password\":\"[REDACTED]\"}]"},
        {"endpoint section paths count too", "{\"api key\":\"k\"}", 1000,
         "{\"api key\":\"[REDACTED]\"}"},
        {"nothing to redact keeps the bytes", "{ \"user\" : { \"id\" : 7 } }", 1000,
         "{ \"user\" : { \"id\" : 7 } }"},
        {"redacted then truncated", "{\"user\":{\"email\":\"a@b.c\",\"id\":7}}", 10,
         "{\"user\":{\"...[truncated 28 bytes]"},
        {"not JSON: only truncated", "email=a@b.c&password=x", 11,
         "email=a@b.c...[truncated 11 bytes]"},
        {"looks like JSON, does not parse: fail closed", "{\"user\":{\"email\":\"a@b.c\",\"id\"",
         1000, "[REDACTED: body looks like JSON but does not parse]"},
        {"empty body", "", 10, ""},
    };
    (void)state;
    check_bodies(r, cases, sizeof(cases) / sizeof(cases[0]));
    st_rules_free(r);

    r = parse_ok("{\"defaults\":{\"redact_paths\":[\"$\"]}}");
    static const body_case_t root[] = {
        {"the root itself", "{\"a\":1}", 100, "\"[REDACTED]\""},
    };
    check_bodies(r, root, 1);
    st_rules_free(r);
}

static void test_truncation(void **state)
{
    static const body_case_t cases[] = {
        {"short body untouched", "{\"a\":1}", 100, "{\"a\":1}"},
        {"exact fit untouched", "abcdef", 6, "abcdef"},
        {"cut with marker", "abcdefgh", 5, "abcde...[truncated 3 bytes]"},
        {"zero bytes kept", "abc", 0, "...[truncated 3 bytes]"},
        /* "é" is two bytes: cutting after 2 bytes would split it */
        {"UTF-8 not split", "ab\xc3\xa9\xc3\xa9", 3, "ab...[truncated 4 bytes]"},
        {"UTF-8 whole char kept", "ab\xc3\xa9\xc3\xa9", 4, "ab\xc3\xa9...[truncated 2 bytes]"},
        {"3-byte char", "a\xe2\x82\xac", 2, "a...[truncated 3 bytes]"},
    };
    (void)state;
    /* no rules: nothing redacted, only cut */
    check_bodies(NULL, cases, sizeof(cases) / sizeof(cases[0]));

    /* binary bodies are copied as they are, NULs included */
    static const char bin[] = "a\0b\0c";
    size_t out_len = 0;
    char *out = st_redact_body(NULL, bin, 5, 100, &out_len);
    assert_non_null(out);
    assert_int_equal(out_len, 5);
    assert_memory_equal(out, bin, 5);
    free(out);
}

static void test_deep_json_with_redact_paths_fails_closed(void **state)
{
    st_rules_t *r = parse_ok("{\"max_depth\":3,\"defaults\":{\"redact_paths\":[\"$..secret\"]}}");
    static const body_case_t cases[] = {
        {"within the depth limit", "{\"a\":{\"b\":{\"secret\":1}}}", 100,
         "{\"a\":{\"b\":{\"secret\":\"[REDACTED]\"}}}"},
        {"beyond the depth limit", "{\"a\":{\"b\":{\"c\":{\"secret\":1}}}}", 100,
         "[REDACTED: body looks like JSON but does not parse]"},
    };
    (void)state;
    check_bodies(r, cases, sizeof(cases) / sizeof(cases[0]));
    st_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_header_names),
        cmocka_unit_test(test_redact_json_paths),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_deep_json_with_redact_paths_fails_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
