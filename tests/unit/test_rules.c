/*
 * Unit tests of the rules file: the documented example loads, every bad rule
 * gives one clear message naming the file and the JSON path of the bad value,
 * and the parsed settings behave (endpoint matching and merging, redaction
 * lists, templates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shadowtee/comparator.h"

typedef struct {
    const char *json;
    const char *expect; /* substring of the error message */
} bad_case_t;

static void test_bad_rules_name_the_offending_path(void **state)
{
    static const bad_case_t cases[] = {
        {"{", "rules:1:1: invalid JSON: "},
        {"{\"version\":1,\n \"defaults\": {\"ignore\": [\"$.a\",]}}", "rules:2:"},
        {"[]", "rules: $: expected an object, got an array"},
        {"{\"versio\":1}", "rules: $.versio: unknown key (expected one of: version, defaults"},
        {"{\"version\":2}", "rules: $.version: unsupported version"},
        {"{\"version\":\"1\"}", "rules: $.version: unsupported version"},
        {"{\"version\":1,\"version\":1}", "duplicate object key"},
        {"{\"defaults\":[]}", "rules: $.defaults: expected an object, got an array"},
        {"{\"defaults\":{\"ignore\":\"$.a\"}}",
         "rules: $.defaults.ignore: expected an array of JSONPath strings, got a string"},
        {"{\"defaults\":{\"ignore\":[\"$.a\",3]}}",
         "rules: $.defaults.ignore[1]: expected a JSONPath string, got an integer"},
        {"{\"defaults\":{\"ignore\":[\"a.b\"]}}",
         "rules: $.defaults.ignore[0]: invalid JSONPath \"a.b\": a path must start with '$'"},
        {"{\"defaults\":{\"ignore\":[\"$.a[\"]}}", "rules: $.defaults.ignore[0]: invalid JSONPath"},
        {"{\"defaults\":{\"ignore\":[\"$.a.\"]}}",
         "$.defaults.ignore[0]: invalid JSONPath \"$.a.\""},
        {"{\"defaults\":{\"ignore\":[\"$['a]\"]}}", "unterminated quoted key"},
        {"{\"defaults\":{\"ignore\":[\"$ a\"]}}", "expected '.', '..' or '['"},
        {"{\"defaults\":{\"unordered\":[\"$.a b\"]}}", "rules: $.defaults.unordered[0]: invalid"},
        {"{\"defaults\":{\"argmax\":{}}}", "rules: $.defaults.argmax: expected an array"},
        {"{\"defaults\":{\"tolerance\":{\"absolute\":-1}}}",
         "rules: $.defaults.tolerance.absolute: expected a number >= 0"},
        {"{\"defaults\":{\"tolerance\":{\"relative\":\"1\"}}}",
         "rules: $.defaults.tolerance.relative: expected a number, got a string"},
        {"{\"defaults\":{\"tolerance\":{\"abs\":1}}}",
         "rules: $.defaults.tolerance.abs: unknown key (expected \"absolute\" or \"relative\")"},
        {"{\"defaults\":{\"tolerance\":0.1}}", "rules: $.defaults.tolerance: expected an object"},
        {"{\"defaults\":{\"topk\":{\"$.p\":0}}}",
         "rules: $.defaults.topk['$.p']: expected an integer k between 1 and 1000000"},
        {"{\"defaults\":{\"topk\":{\"p\":2}}}",
         "rules: $.defaults.topk.p: invalid JSONPath \"p\": a path must start with '$'"},
        {"{\"defaults\":{\"topk\":[\"$.p\"]}}", "rules: $.defaults.topk: expected an object"},
        {"{\"defaults\":{\"path_tolerance\":{\"$.a\":{\"relative\":\"x\"}}}}",
         "rules: $.defaults.path_tolerance['$.a'].relative: expected a number, got a string"},
        {"{\"defaults\":{\"path_tolerance\":{\"$.a\":1}}}",
         "rules: $.defaults.path_tolerance['$.a']: expected an object"},
        {"{\"defaults\":{\"ignore_headers\":[\"bad name\"]}}",
         "rules: $.defaults.ignore_headers[0]: invalid header name \"bad name\""},
        {"{\"defaults\":{\"ignore_headers\":[\"x-*-y\"]}}", "only a trailing '*' is allowed"},
        {"{\"defaults\":{\"redact_headers\":[\"x-*\"]}}",
         "rules: $.defaults.redact_headers[0]: invalid header name"},
        {"{\"defaults\":{\"redact_headers\":[\"\"]}}",
         "$.defaults.redact_headers[0]: empty header name"},
        {"{\"defaults\":{\"redact_paths\":[null]}}",
         "rules: $.defaults.redact_paths[0]: expected a JSONPath string, got null"},
        {"{\"defaults\":{\"match\":\"GET /\"}}",
         "rules: $.defaults.match: unknown key (expected one of: tolerance"},
        {"{\"defaults\":{\"Ignore\":[]}}", "rules: $.defaults.Ignore: unknown key"},
        {"{\"endpoints\":{}}", "rules: $.endpoints: expected an array of objects, got an object"},
        {"{\"endpoints\":[1]}", "rules: $.endpoints[0]: expected an object, got an integer"},
        {"{\"endpoints\":[{\"ignore\":[]}]}", "rules: $.endpoints[0]: missing \"match\""},
        {"{\"endpoints\":[{\"match\":\"POST predict\"}]}",
         "rules: $.endpoints[0].match: expected a path starting with '/'"},
        {"{\"endpoints\":[{\"match\":7}]}", "rules: $.endpoints[0].match: expected a string"},
        {"{\"endpoints\":[{\"match\":\"GET /a?b=1\"}]}",
         "$.endpoints[0].match: a path template has no query"},
        {"{\"endpoints\":[{\"match\":\"GET /a/*/b\"}]}", "'*' is only allowed as the last segment"},
        {"{\"endpoints\":[{\"match\":\"G(T /a\"}]}", "$.endpoints[0].match: invalid method"},
        {"{\"endpoints\":[{\"match\":\"GET /a\"},{\"match\":\"POST /p\",\"ignore\":[1]}]}",
         "rules: $.endpoints[1].ignore[0]: expected a JSONPath string"},
        {"{\"endpoints\":[{\"match\":\"POST /p\",\"foo\":1}]}",
         "rules: $.endpoints[0].foo: unknown key (expected one of: match, tolerance"},
        {"{\"templates\":\"/a\"}", "rules: $.templates: expected an array"},
        {"{\"templates\":[\"users/{id}\"]}",
         "rules: $.templates[0]: expected a path starting with '/'"},
        {"{\"templates\":[\"/users/x{id}\"]}",
         "rules: $.templates[0]: a {placeholder} must be a whole"},
        {"{\"templates\":[\"/a/*\"]}", "rules: $.templates[0]: '*' is only allowed"},
        {"{\"templates\":[1]}", "rules: $.templates[0]: expected a string, got an integer"},
        {"{\"max_depth\":0}", "rules: $.max_depth: expected an integer between 1 and 256"},
        {"{\"max_depth\":1000}", "rules: $.max_depth: expected an integer between 1 and 256"},
        {"{\"max_depth\":2.5}", "rules: $.max_depth: expected an integer"},
        {"{\"a b\":1}", "rules: $['a b']: unknown key"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        st_rules_t *r = (st_rules_t *)0x1;
        int rc = st_rules_parse(cases[i].json, strlen(cases[i].json), &r, err, sizeof(err));
        if (rc != -1 || r != NULL || strstr(err, cases[i].expect) == NULL)
            fail_msg("rules %s: rc %d, error [%s], expected it to contain [%s]", cases[i].json, rc,
                     err, cases[i].expect);
    }
}

static void test_small_error_buffer_is_safe(void **state)
{
    char err[16];
    st_rules_t *r = NULL;
    (void)state;
    const char *bad = "{\"defaults\":{\"ignore\":[\"nope\"]}}";
    assert_int_equal(st_rules_parse(bad, strlen(bad), &r, err, sizeof(err)), -1);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_int_equal(st_rules_parse(bad, strlen(bad), &r, NULL, 0), -1);
    assert_null(r);
}

/* Writes text to a temporary file; returns its path in buf. */
static void write_tmp(char *buf, size_t len, const char *text)
{
    snprintf(buf, len, "/tmp/st_rules_test_XXXXXX");
    int fd = mkstemp(buf);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_load_names_the_file(void **state)
{
    char path[64], err[512], want[128];
    st_rules_t *r = NULL;
    (void)state;
    write_tmp(path, sizeof(path),
              "{\"version\":1,\n\"endpoints\":[{\"match\":\"GET /x\",\n"
              "\"ignore\":\"$.a\"}]}\n");
    assert_int_equal(st_rules_load(path, &r, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: $.endpoints[0].ignore: expected an array", path);
    assert_non_null(strstr(err, want));
    unlink(path);

    write_tmp(path, sizeof(path), "{\"version\":1,\n  \"defaults\": {,}}\n");
    assert_int_equal(st_rules_load(path, &r, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2:16: invalid JSON: ", path);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("got [%s], expected [%s...]", err, want);
    unlink(path);

    assert_int_equal(st_rules_load("/nonexistent/rules.json", &r, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/rules.json: cannot open: No such file or directory");
    assert_null(r);
}

static void test_example_file_loads(void **state)
{
    char err[512] = "";
    st_rules_t *r = NULL;
    (void)state;
    /* tests run from the repository root (make unit) */
    if (st_rules_load("examples/rules-example.json", &r, err, sizeof(err)) != 0)
        fail_msg("examples/rules-example.json: %s", err);
    const char *const *names;
    size_t n = st_rules_redact_headers(r, &names);
    assert_true(n >= 1);
    assert_string_equal(names[0], "x-api-key");
    st_rules_free(r);
}

static st_rules_t *parse_ok(const char *json)
{
    char err[512];
    st_rules_t *r = NULL;
    if (st_rules_parse(json, strlen(json), &r, err, sizeof(err)) != 0) fail_msg("%s", err);
    assert_non_null(r);
    return r;
}

static int diverges(const st_rules_t *r, const char *endpoint, const char *a, const char *b)
{
    st_response_t ra, rb;
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    ra.status = rb.status = 200;
    ra.body = a;
    ra.body_len = strlen(a);
    rb.body = b;
    rb.body_len = strlen(b);
    st_diff_result_t res;
    assert_int_equal(st_compare(r, endpoint, &ra, &rb, NULL, &res), 0);
    int d = res.verdict == ST_VERDICT_DIVERGED;
    st_diff_result_free(&res);
    return d;
}

static void test_endpoint_matching(void **state)
{
    st_rules_t *r = parse_ok("{\"endpoints\":["
                             "{\"match\":\"POST /v1/models/{m}/predict\",\"ignore\":[\"$.a\"]},"
                             "{\"match\":\"post /v1/*\",\"ignore\":[\"$.b\"]},"
                             "{\"match\":\"/health\",\"ignore\":[\"$.c\"]},"
                             "{\"match\":\"* /\",\"ignore\":[\"$.d\"]}]}");
    static const struct {
        const char *endpoint;
        const char *ignored; /* which of a, b, c, d is ignored, "" for none */
    } cases[] = {
        {"POST /v1/models/{id}/predict", "a"}, /* first match wins: not b */
        {"POST /v1/models/x/predict", "a"},
        {"POST /v1/models/x/predict/more", "b"},
        {"POST /v1", "b"}, /* a trailing "*" also matches nothing */
        {"GET /v1/models/x/predict", ""},
        {"GET /health", "c"},
        {"DELETE /health", "c"},
        {"GET /health/x", ""},
        {"PUT /", "d"},
        {"{other}", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *keys[] = {"a", "b", "c", "d"};
        for (size_t k = 0; k < 4; k++) {
            char a[32], b[32];
            snprintf(a, sizeof(a), "{\"%s\":1}", keys[k]);
            snprintf(b, sizeof(b), "{\"%s\":2}", keys[k]);
            int want_ignored = strcmp(cases[i].ignored, keys[k]) == 0;
            if (diverges(r, cases[i].endpoint, a, b) == want_ignored)
                fail_msg("endpoint '%s', key %s: expected %s", cases[i].endpoint, keys[k],
                         want_ignored ? "ignored" : "compared");
        }
    }
    st_rules_free(r);
}

static void test_tolerance_inheritance(void **state)
{
    /* endpoint tolerance overrides defaults field by field; path_tolerance
     * fields not given inherit the resolved tolerance */
    st_rules_t *r =
        parse_ok("{\"defaults\":{\"tolerance\":{\"absolute\":0.1,\"relative\":0}},"
                 "\"endpoints\":[{\"match\":\"GET /e\",\"tolerance\":{\"relative\":0.5},"
                 "\"path_tolerance\":{\"$.p\":{\"absolute\":2}}}]}");
    (void)state;
    assert_false(diverges(r, "GET /x", "[1.0]", "[1.09]"));
    assert_true(diverges(r, "GET /x", "[1.0]", "[1.2]"));
    assert_false(diverges(r, "GET /e", "[1.0]", "[1.09]"));  /* absolute inherited */
    assert_false(diverges(r, "GET /e", "[10.0]", "[14.0]")); /* relative 0.5 */
    assert_true(diverges(r, "GET /e", "[10.0]", "[30.0]"));
    assert_false(diverges(r, "GET /e", "{\"p\":1.0}", "{\"p\":2.9}"));
    assert_false(diverges(r, "GET /e", "{\"p\":100.0}", "{\"p\":140.0}")); /* relative kept */
    assert_true(diverges(r, "GET /x", "{\"p\":1.0}", "{\"p\":2.9}"));
    st_rules_free(r);
}

static void test_defaults_and_redact_lists(void **state)
{
    const char *const *names = (const char *const *)0x1;
    (void)state;
    st_rules_t *d = st_rules_default();
    assert_non_null(d);
    assert_int_equal(st_rules_redact_headers(d, &names), 0);
    st_rules_free(d);
    st_rules_free(NULL);
    assert_int_equal(st_rules_redact_headers(NULL, &names), 0);

    st_rules_t *r = parse_ok("{\"defaults\":{\"redact_headers\":[\"X-Api-Key\",\"x-token\"]},"
                             "\"endpoints\":[{\"match\":\"GET /\",\"redact_headers\":"
                             "[\"x-api-key\",\"X-Other\"]}]}");
    size_t n = st_rules_redact_headers(r, &names);
    assert_int_equal(n, 3); /* union, lower-cased, without duplicates */
    assert_string_equal(names[0], "x-api-key");
    assert_string_equal(names[1], "x-token");
    assert_string_equal(names[2], "x-other");
    st_rules_free(r);

    /* every documented key at once, empty containers allowed */
    r = parse_ok(
        "{\"version\":1,\"defaults\":{\"tolerance\":{},\"ignore\":[],\"ignore_headers\":[],"
        "\"unordered\":[],\"argmax\":[],\"topk\":{},\"path_tolerance\":{},"
        "\"redact_headers\":[],\"redact_paths\":[]},\"endpoints\":[],\"templates\":[],"
        "\"max_depth\":256}");
    st_rules_free(r);
    r = parse_ok("{}");
    st_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_rules_name_the_offending_path),
        cmocka_unit_test(test_small_error_buffer_is_safe),
        cmocka_unit_test(test_load_names_the_file),
        cmocka_unit_test(test_example_file_loads),
        cmocka_unit_test(test_endpoint_matching),
        cmocka_unit_test(test_tolerance_inheritance),
        cmocka_unit_test(test_defaults_and_redact_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
