/*
 * Unit tests of st_compare: the JSON diff engine (structure, numbers and
 * tolerances, unicode, big integers, nesting limit, invalid JSON, binary
 * bodies, argmax / top-k, unordered arrays, ignores), status and header
 * comparison, noise marking and verdicts. Table-driven: each case gives two
 * bodies and the expected differences as "kind path | kind path", with a
 * leading '~' on entries marked as noise.
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

#include "shadowtee/comparator.h"

typedef struct {
    const char *name;
    const char *rules;  /* rules JSON, NULL for the defaults */
    const char *a;      /* primary body */
    const char *b;      /* shadow body */
    const char *expect; /* every difference (tables stay below the entry cap) */
} diff_case_t;

/* Formats entries as "kind path | kind path" (noise entries with '~'). */
static void describe(const st_diff_result_t *r, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->nentries && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s%s %s", i ? " | " : "",
                                 r->entries[i].noise ? "~" : "",
                                 st_diff_kind_name(r->entries[i].kind), r->entries[i].path);
}

static st_rules_t *rules_or_default(const char *json)
{
    char err[512];
    st_rules_t *r = NULL;
    if (!json) return st_rules_default();
    if (st_rules_parse(json, strlen(json), &r, err, sizeof(err)) != 0) fail_msg("rules: %s", err);
    return r;
}

static st_response_t body_resp(const char *body, size_t len)
{
    st_response_t r;
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.body = body;
    r.body_len = len;
    return r;
}

static void run_table(const diff_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const diff_case_t *c = &cases[i];
        st_rules_t *rules = rules_or_default(c->rules);
        st_response_t a = body_resp(c->a, strlen(c->a)), b = body_resp(c->b, strlen(c->b));
        st_diff_result_t res;
        int rc = st_compare(rules, "POST /predict", &a, &b, NULL, &res);
        char got[2048];
        describe(&res, got, sizeof(got));
        if (rc != 0 || strcmp(got, c->expect) != 0)
            fail_msg("case '%s': expected [%s], got [%s] (rc %d)", c->name, c->expect, got, rc);
        if (res.total != res.nentries)
            fail_msg("case '%s': total %zu, stored %zu", c->name, res.total, res.nentries);
        st_verdict_t want = c->expect[0] ? ST_VERDICT_DIVERGED : ST_VERDICT_MATCH;
        if (res.verdict != want)
            fail_msg("case '%s': verdict %s, expected %s", c->name, st_verdict_name(res.verdict),
                     st_verdict_name(want));
        st_diff_result_free(&res);
        st_rules_free(rules);
    }
}

#define RUN(table) run_table(table, sizeof(table) / sizeof(table[0]))

static void test_nested_objects_and_arrays(void **state)
{
    static const diff_case_t cases[] = {
        {"equal", NULL, "{\"a\":{\"b\":[1,2,{\"c\":\"x\"}]}}",
         "{\"a\":{\"b\":[1,2,{\"c\":\"x\"}]}}", ""},
        {"key order is irrelevant", NULL, "{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}", ""},
        {"whitespace is irrelevant", NULL, "{ \"a\" : [ 1 , 2 ] }", "{\"a\":[1,2]}", ""},
        {"nested value", NULL, "{\"a\":{\"b\":[1,2,{\"c\":\"x\"}]}}",
         "{\"a\":{\"b\":[1,2,{\"c\":\"y\"}]}}", "value $.a.b[2].c"},
        {"missing and extra", NULL, "{\"a\":1,\"b\":2}", "{\"a\":1,\"c\":3}",
         "missing $.b | extra $.c"},
        {"array length then prefix", NULL, "[1,2,3]", "[1,5]", "array_length $ | value $[1]"},
        {"predictions path", NULL, "{\"predictions\":[{\"score\":0.1},{\"score\":0.2}]}",
         "{\"predictions\":[{\"score\":0.1},{\"score\":0.3}]}", "value $.predictions[1].score"},
        {"non-identifier keys", NULL, "{\"a b\":1,\"x-model\":\"m1\",\"it's\":true,\"_ok\":1}",
         "{\"a b\":2,\"x-model\":\"m2\",\"it's\":false,\"_ok\":2}",
         "value $['a b'] | value $['x-model'] | value $['it\\'s'] | value $._ok"},
        {"booleans and null", NULL, "[true,false,null]", "[false,false,null]", "value $[0]"},
        {"scalar, not declared JSON: bytes", NULL, "\"x\"", "\"y\"", "bytes $body"},
    };
    (void)state;
    RUN(cases);
}

static void test_unicode_and_escapes(void **state)
{
    static const diff_case_t cases[] = {
        {"escaped vs raw e-acute", NULL, "{\"s\":\"caf\\u00e9\"}", "{\"s\":\"café\"}", ""},
        {"escaped slash", NULL, "{\"s\":\"a\\/b\"}", "{\"s\":\"a/b\"}", ""},
        {"surrogate pair vs raw emoji", NULL, "[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]", ""},
        {"composed vs decomposed differ", NULL, "[\"\\u00e9\"]", "[\"e\\u0301\"]", "value $[0]"},
        {"NUL inside strings", NULL, "[\"a\\u0000b\"]", "[\"a\\u0000c\"]", "value $[0]"},
        {"NUL inside strings equal", NULL, "[\"a\\u0000b\"]", "[\"a\\u0000b\"]", ""},
        {"unicode key", NULL, "{\"clé\":1}", "{\"cl\\u00e9\":2}", "value $['clé']"},
    };
    (void)state;
    RUN(cases);
}

static void test_numbers_and_tolerance(void **state)
{
    static const char abs_rules[] = "{\"defaults\":{\"tolerance\":{\"absolute\":0.001}}}";
    static const char rel_rules[] = "{\"defaults\":{\"tolerance\":{\"relative\":0.01}}}";
    static const char half[] = "{\"defaults\":{\"tolerance\":{\"absolute\":0.5}}}";
    static const char path_rules[] =
        "{\"defaults\":{\"tolerance\":{\"absolute\":1e-9},"
        "\"path_tolerance\":{\"$.predictions[*].score\":{\"absolute\":0.01}}}}";
    static const diff_case_t cases[] = {
        {"int equals real", NULL, "[1, 2.5, -0]", "[1.0, 2.5, 0.0]", ""},
        {"exact without tolerance", NULL, "[0.1]", "[0.10000001]", "value $[0]"},
        {"abs: just inside", abs_rules, "[1.0]", "[1.0009]", ""},
        {"abs: just outside", abs_rules, "[1.0]", "[1.0011]", "value $[0]"},
        {"abs: inside, negative side", abs_rules, "[1.0]", "[0.9991]", ""},
        {"abs: outside, negative side", abs_rules, "[1.0]", "[0.9989]", "value $[0]"},
        {"abs: exactly on the bound", half, "[1.0]", "[1.5]", ""},
        {"rel: inside", rel_rules, "[100.0]", "[100.9]", ""},
        {"rel: outside", rel_rules, "[100.0]", "[101.5]", "value $[0]"},
        {"rel: small numbers", rel_rules, "[0.0001]", "[0.000100999]", ""},
        {"rel: zero vs tiny is outside", rel_rules, "[0.0]", "[1e-300]", "value $[0]"},
        {"tolerance ignores two integers", rel_rules, "[1000000]", "[1000001]", "value $[0]"},
        {"tolerance applies to int vs real", rel_rules, "[1000000]", "[1000001.0]", ""},
        {"path tolerance inside", path_rules,
         "{\"predictions\":[{\"score\":0.5},{\"score\":0.5}],\"score\":0.5}",
         "{\"predictions\":[{\"score\":0.505},{\"score\":0.4}],\"score\":0.505}",
         "value $.predictions[1].score | value $.score"},
    };
    (void)state;
    RUN(cases);
}

static void test_big_integers(void **state)
{
    static const diff_case_t cases[] = {
        {"equal beyond int64", NULL, "{\"id\":12345678901234567890}",
         "{\"id\":12345678901234567890}", ""},
        {"different beyond int64", NULL, "{\"id\":12345678901234567890}",
         "{\"id\":22345678901234567890}", "value $.id"},
        {"other fields still compared", NULL, "{\"id\":18446744073709551616,\"n\":1}",
         "{\"id\":18446744073709551616,\"n\":2}", "value $.n"},
        {"one side big, other int64", NULL, "[9223372036854775807]", "[92233720368547758070]",
         "value $[0]"},
        {"int64 limits exact", NULL, "[9223372036854775807,-9223372036854775808]",
         "[9223372036854775806,-9223372036854775808]", "value $[0]"},
        {"real overflow is not JSON: bytes", NULL, "[1e400]", "[2e400]", "bytes $body"},
    };
    (void)state;
    RUN(cases);
}

static void test_type_changes(void **state)
{
    static const diff_case_t cases[] = {
        {"number to string", NULL, "{\"a\":1}", "{\"a\":\"1\"}", "type $.a"},
        {"object to array", NULL, "{\"a\":{}}", "{\"a\":[]}", "type $.a"},
        {"null to object", NULL, "{\"a\":null}", "{\"a\":{\"b\":1}}", "type $.a"},
        {"bool to number", NULL, "[true]", "[1]", "type $[0]"},
        {"root object to array", NULL, "{}", "[]", "type $"},
    };
    (void)state;
    RUN(cases);
}

static char *nest(size_t depth, const char *leaf)
{
    size_t n = 2 * depth + strlen(leaf) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, '[', depth);
    strcpy(s + depth, leaf);
    memset(s + depth + strlen(leaf), ']', depth);
    s[n - 1] = '\0';
    return s;
}

static void test_deep_nesting(void **state)
{
    char *d64a = nest(64, "1"), *d64b = nest(64, "2");
    char *d65a = nest(65, "1"), *d65b = nest(65, "2");
    char *d3000a = nest(3000, "1"), *d3000b = nest(3000, "2");
    const diff_case_t cases[] = {
        {"64 levels: structural", NULL, d64a, d64b, ""},
        {"65 levels: bytes, equal", NULL, d65a, d65a, ""},
        {"65 levels: bytes, different", NULL, d65a, d65b, "too_deep $body"},
        {"beyond jansson's own limit", NULL, d3000a, d3000b, "too_deep $body"},
        {"deep on one side only", NULL, "[1]", d65a, "too_deep $body"},
        {"rules lower the limit", "{\"max_depth\":2}", "{\"a\":{\"b\":1}}", "{\"a\":{\"b\":2}}",
         "value $.a.b"},
        {"rules lower the limit: beyond", "{\"max_depth\":2}", "{\"a\":{\"b\":[1]}}",
         "{\"a\":{\"b\":[2]}}", "too_deep $body"},
        {"escaped quotes and backslashes in strings", "{\"max_depth\":1}", "[\"\\\"[[[\\\\\", 1]",
         "[\"\\\"[[[\\\\\", 2]", "value $[1]"},
        {"brackets inside strings do not count", "{\"max_depth\":1}", "[\"[[[[\"]", "[\"[[[[x\"]",
         "value $[0]"},
    };
    (void)state;
    /* the 64-level pair differs at its innermost element, 64 indexes deep */
    char path[512] = "value $";
    for (int i = 0; i < 64; i++)
        strcat(path, "[0]");
    diff_case_t first = cases[0];
    first.expect = path;
    run_table(&first, 1);
    run_table(cases + 1, sizeof(cases) / sizeof(cases[0]) - 1);
    free(d64a), free(d64b), free(d65a), free(d65b), free(d3000a), free(d3000b);
}

static void test_invalid_json(void **state)
{
    static const diff_case_t cases[] = {
        {"shadow invalid", NULL, "{\"a\":1}", "{\"a\":", "invalid_json $body"},
        {"primary invalid", NULL, "[1,2", "[1,2]", "invalid_json $body"},
        {"shadow is HTML", NULL, "{\"a\":1}", "<html>oops</html>", "invalid_json $body"},
        {"both invalid and different", NULL, "{\"a\":", "{\"b\":", "bytes $body"},
        {"both invalid and equal", NULL, "{\"a\":", "{\"a\":", ""},
        {"trailing garbage", NULL, "{\"a\":1}", "{\"a\":1} x", "invalid_json $body"},
        {"NUL in a key is not supported", NULL, "{\"a\":1}", "{\"a\\u0000\":1}",
         "invalid_json $body"},
    };
    (void)state;
    RUN(cases);
}

static void test_empty_bodies(void **state)
{
    static const diff_case_t cases[] = {
        {"both empty", NULL, "", "", ""},
        {"empty vs JSON", NULL, "", "{}", "invalid_json $body"},
        {"empty vs text", NULL, "", "ok", "bytes $body"},
        {"whitespace-only JSON-ish", NULL, "  ", "  ", ""},
    };
    (void)state;
    RUN(cases);

    /* a NULL body pointer with length 0 is an empty body */
    st_response_t a = body_resp(NULL, 0), b = body_resp("ok", 2), c = body_resp(NULL, 0);
    st_diff_result_t res;
    assert_int_equal(st_compare(NULL, "GET /", &a, &c, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH);
    st_diff_result_free(&res);
    assert_int_equal(st_compare(NULL, "GET /", &a, &b, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_string_equal(res.entries[0].a, "offset 0 (length 0): \"\" \"\"");
    assert_string_equal(res.entries[0].b, "offset 0 (length 2): \"\" \"ok\"");
    st_diff_result_free(&res);
    size_t out_len = 1;
    char *red = st_redact_body(NULL, NULL, 0, 10, &out_len);
    assert_non_null(red);
    assert_int_equal(out_len, 0);
    free(red);
}

static void test_binary_bodies(void **state)
{
    static const char a[] = "GIF89a\0\0\x01\x02rest of the image";
    static const char b[] = "GIF89a\0\0\x01\x03rest of the image";
    st_response_t ra = body_resp(a, sizeof(a) - 1), rb = body_resp(b, sizeof(b) - 1);
    st_diff_result_t res;
    (void)state;
    assert_int_equal(st_compare(NULL, "GET /img", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_int_equal(res.entries[0].kind, ST_DIFF_BYTES);
    assert_string_equal(res.entries[0].path, "$body");
    assert_string_equal(
        res.entries[0].a,
        "offset 9 (length 27): \"IF89a\\x00\\x00\\x01\" \"\\x02rest of the image\"");
    assert_string_equal(
        res.entries[0].b,
        "offset 9 (length 27): \"IF89a\\x00\\x00\\x01\" \"\\x03rest of the image\"");
    st_diff_result_free(&res);

    /* equal binary bodies; one a prefix of the other */
    rb = body_resp(a, sizeof(a) - 1);
    assert_int_equal(st_compare(NULL, "GET /img", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH);
    st_diff_result_free(&res);
    rb = body_resp(a, 8);
    assert_int_equal(st_compare(NULL, "GET /img", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_string_equal(res.entries[0].b, "offset 8 (length 8): \"GIF89a\\x00\\x00\" \"\"");
    st_diff_result_free(&res);

    /* a long equal prefix (the 64-byte block loop) */
    char big_a[1000], big_b[1000];
    memset(big_a, 'x', sizeof(big_a));
    memcpy(big_b, big_a, sizeof(big_b));
    big_b[777] = 'y';
    ra = body_resp(big_a, sizeof(big_a));
    rb = body_resp(big_b, sizeof(big_b));
    assert_int_equal(st_compare(NULL, "GET /img", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_non_null(strstr(res.entries[0].b, "offset 777 (length 1000)"));
    st_diff_result_free(&res);
}

static void test_argmax_and_topk(void **state)
{
    static const char am[] = "{\"defaults\":{\"argmax\":[\"$.scores\",\"$.p[*].s\"]}}";
    static const char tk[] = "{\"defaults\":{\"topk\":{\"$.probs\":2}}}";
    static const diff_case_t cases[] = {
        {"argmax kept", am, "{\"scores\":[0.1,0.7,0.2]}", "{\"scores\":[0.15,0.6,0.25]}", ""},
        {"argmax moved", am, "{\"scores\":[0.1,0.7,0.2]}", "{\"scores\":[0.5,0.3,0.2]}",
         "argmax $.scores"},
        {"argmax with wildcard path", am, "{\"p\":[{\"s\":[1,2]},{\"s\":[2,1]}]}",
         "{\"p\":[{\"s\":[1,3]},{\"s\":[1,2]}]}", "argmax $.p[1].s"},
        {"argmax: lengths differ, plain diff", am, "{\"scores\":[0.1,0.9]}",
         "{\"scores\":[0.1,0.9,0.0]}", "array_length $.scores"},
        {"argmax: not numbers, plain diff", am, "{\"scores\":[\"a\",1]}", "{\"scores\":[\"b\",1]}",
         "value $.scores[0]"},
        {"argmax: ties pick the first", am, "{\"scores\":[0.5,0.5]}", "{\"scores\":[0.5,0.4]}", ""},
        {"topk same set, other order", tk, "{\"probs\":[0.5,0.3,0.1,0.1]}",
         "{\"probs\":[0.3,0.5,0.1,0.1]}", ""},
        {"topk set changed", tk, "{\"probs\":[0.5,0.3,0.1,0.1]}", "{\"probs\":[0.5,0.1,0.3,0.1]}",
         "argmax $.probs"},
        {"topk larger than the array", "{\"defaults\":{\"topk\":{\"$.probs\":9}}}",
         "{\"probs\":[0.5,0.3]}", "{\"probs\":[0.1,0.9]}", ""},
    };
    (void)state;
    RUN(cases);

    /* the delta is still recorded, and a/b carry the winning indices */
    st_rules_t *r = rules_or_default(am);
    const char *a = "{\"scores\":[0.1,0.7,0.2]}", *b = "{\"scores\":[0.5,0.3,0.2]}";
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    assert_int_equal(st_compare(r, "POST /predict", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_string_equal(res.entries[0].a, "[1]");
    assert_string_equal(res.entries[0].b, "[0]");
    assert_true(res.entries[0].delta > 0.399 && res.entries[0].delta < 0.401);
    assert_true(res.max_delta > 0.399 && res.max_delta < 0.401);
    st_diff_result_free(&res);
    st_rules_free(r);
}

static void test_unordered_arrays(void **state)
{
    static const char un[] = "{\"defaults\":{\"unordered\":[\"$.tags\",\"$..items\"]}}";
    static const diff_case_t cases[] = {
        {"permutation", un, "{\"tags\":[\"a\",\"b\",\"c\"]}", "{\"tags\":[\"c\",\"a\",\"b\"]}", ""},
        {"permutation without rule", NULL, "{\"tags\":[\"a\",\"b\"]}", "{\"tags\":[\"b\",\"a\"]}",
         "value $.tags[0] | value $.tags[1]"},
        {"different multiset", un, "{\"tags\":[\"a\",\"b\"]}", "{\"tags\":[\"a\",\"c\"]}",
         "value $.tags[1]"},
        {"duplicates count", un, "{\"tags\":[\"a\",\"a\",\"b\"]}", "{\"tags\":[\"a\",\"b\",\"b\"]}",
         "value $.tags[1]"},
        {"objects compared canonically", un, "{\"x\":{\"items\":[{\"k\":1,\"v\":2},{\"k\":3}]}}",
         "{\"x\":{\"items\":[{\"k\":3},{\"v\":2,\"k\":1}]}}", ""},
        {"length differs", un, "{\"tags\":[\"a\"]}", "{\"tags\":[\"a\",\"b\"]}",
         "array_length $.tags"},
    };
    (void)state;
    RUN(cases);
}

static void test_ignore_paths(void **state)
{
    static const char ig[] = "{\"defaults\":{\"ignore\":[\"$.meta.*\",\"$..timestamp\","
                             "\"$.items[*].id\",\"$['trace id']\"]}}";
    static const diff_case_t cases[] = {
        {"children of meta", ig, "{\"meta\":{\"host\":\"a\",\"t\":1},\"v\":1}",
         "{\"meta\":{\"host\":\"b\",\"t\":2},\"v\":1}", ""},
        {"missing child of meta", ig, "{\"meta\":{\"x\":1}}", "{\"meta\":{}}", ""},
        {"meta itself is still compared", ig, "{\"meta\":{}}", "{\"meta\":[]}", "type $.meta"},
        {"recursive descent at any depth", ig,
         "{\"timestamp\":1,\"a\":{\"timestamp\":1,\"b\":[{\"timestamp\":2}]}}",
         "{\"timestamp\":9,\"a\":{\"timestamp\":3,\"b\":[{\"timestamp\":4}]}}", ""},
        {"any index", ig, "{\"items\":[{\"id\":1,\"v\":1},{\"id\":2,\"v\":2}]}",
         "{\"items\":[{\"id\":7,\"v\":1},{\"id\":8,\"v\":3}]}", "value $.items[1].v"},
        {"quoted key", ig, "{\"trace id\":\"x\"}", "{\"trace id\":\"y\"}", ""},
        {"siblings still compared", ig, "{\"timestamp\":1,\"ts\":1}", "{\"timestamp\":2,\"ts\":2}",
         "value $.ts"},
        {"ignore the root", "{\"defaults\":{\"ignore\":[\"$\"]}}", "{\"a\":1}", "{\"a\":2}", ""},
    };
    (void)state;
    RUN(cases);
}

static void test_endpoint_rules_merge(void **state)
{
    static const char rules[] =
        "{\"defaults\":{\"tolerance\":{\"absolute\":0.1},\"ignore\":[\"$.t\"]},"
        "\"endpoints\":[{\"match\":\"POST /predict\",\"tolerance\":{\"absolute\":0.5},"
        "\"ignore\":[\"$.u\"]}]}";
    st_rules_t *r = rules_or_default(rules);
    const char *a = "{\"t\":1,\"u\":1,\"x\":1.0}", *b = "{\"t\":2,\"u\":2,\"x\":1.3}";
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    char got[256];
    (void)state;
    /* the endpoint's settings are merged over the defaults */
    assert_int_equal(st_compare(r, "POST /predict", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH);
    assert_true(res.max_delta > 0.29 && res.max_delta < 0.31);
    st_diff_result_free(&res);
    /* another endpoint gets only the defaults */
    assert_int_equal(st_compare(r, "GET /other", &ra, &rb, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "value $.u | value $.x");
    st_diff_result_free(&res);
    st_rules_free(r);
}

static void test_status_and_headers(void **state)
{
    st_header_t ha[] = {
        {"Content-Type", 12, "application/json", 16},
        {"Date", 4, "Mon, 01 Jan 2024 00:00:00 GMT", 29},
        {"X-Model", 7, "v1", 2},
        {"Set-Cookie", 10, "s=1", 3},
        {"Vary", 4, "Accept", 6},
        {"Vary", 4, "Origin", 6},
        {"X-Trace", 7, "abc", 3},
        {"X-Debug-Host", 12, "pod-a", 5},
        {"X-Shadowtee-Leg", 15, "primary", 7},
        {"Cache-Control", 13, "no-cache", 8},
    };
    st_header_t hb[] = {
        {"content-type", 12, "application/json ", 17},
        {"date", 4, "Tue, 02 Jan 2024 00:00:00 GMT", 29},
        {"x-model", 7, "v2", 2},
        {"set-cookie", 10, "s=2", 3},
        {"vary", 4, "Accept", 6},
        {"vary", 4, "Origin", 6},
        {"x-trace", 7, "def", 3},
        {"x-debug-host", 12, "pod-b", 5},
        {"x-shadowtee-leg", 15, "shadow", 6},
        {"X-New", 5, "1", 1},
        {"Server", 6, "x", 1},
        {"Authorization", 13, "Bearer secret", 13},
    };
    st_response_t a = body_resp("{}", 2), b = body_resp("{}", 2);
    a.headers = ha;
    a.nheaders = sizeof(ha) / sizeof(ha[0]);
    b.headers = hb;
    b.nheaders = sizeof(hb) / sizeof(hb[0]);
    b.status = 201;
    st_rules_t *r =
        rules_or_default("{\"defaults\":{\"ignore_headers\":[\"X-Trace\",\"x-debug-*\"]}}");
    st_diff_result_t res;
    char got[512];
    (void)state;
    assert_int_equal(st_compare(r, "POST /predict", &a, &b, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "status status | header header:authorization | "
                             "header header:cache-control | header header:x-model | "
                             "header header:x-new");
    assert_string_equal(res.entries[0].a, "200");
    assert_string_equal(res.entries[0].b, "201");
    assert_null(res.entries[1].a);
    assert_string_equal(res.entries[1].b, "[REDACTED]");
    assert_string_equal(res.entries[2].a, "no-cache");
    assert_null(res.entries[2].b);
    assert_string_equal(res.entries[3].a, "v1");
    assert_string_equal(res.entries[3].b, "v2");
    st_diff_result_free(&res);

    /* Set-Cookie presence is compared; repeated headers compare as a list */
    st_header_t hc[] = {{"Vary", 4, "Origin", 6}, {"Vary", 4, "Accept", 6}};
    st_response_t c = body_resp("{}", 2);
    c.headers = hc;
    c.nheaders = 2;
    st_response_t d = body_resp("{}", 2);
    d.headers = ha + 3;
    d.nheaders = 3;
    assert_int_equal(st_compare(r, "POST /predict", &d, &c, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "header header:set-cookie | header header:vary");
    assert_string_equal(res.entries[0].a, "[present]");
    assert_string_equal(res.entries[1].a, "Accept, Origin");
    assert_string_equal(res.entries[1].b, "Origin, Accept");
    st_diff_result_free(&res);
    st_rules_free(r);
}

static void test_content_type_and_sniffing(void **state)
{
    st_header_t json_ct = {"Content-Type", 12, "application/problem+json; charset=utf-8", 39};
    st_header_t text_ct = {"Content-Type", 12, "text/plain", 10};
    st_response_t a = body_resp("\"x\"", 3), b = body_resp("\"y\"", 3);
    st_diff_result_t res;
    (void)state;
    /* declared JSON (+json): a scalar document is diffed as JSON */
    a.headers = b.headers = &json_ct;
    a.nheaders = b.nheaders = 1;
    assert_int_equal(st_compare(NULL, "GET /", &a, &b, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_int_equal(res.entries[0].kind, ST_DIFF_VALUE);
    assert_string_equal(res.entries[0].path, "$");
    assert_string_equal(res.entries[0].a, "\"x\"");
    st_diff_result_free(&res);
    /* text/plain and not sniffable: bytes */
    a.headers = b.headers = &text_ct;
    assert_int_equal(st_compare(NULL, "GET /", &a, &b, NULL, &res), 0);
    assert_int_equal(res.entries[0].kind, ST_DIFF_BYTES);
    st_diff_result_free(&res);
    /* text/plain but sniffed as JSON: structural */
    a = body_resp(" {\"a\":1}", 8), b = body_resp("{\"a\":1 }", 8);
    a.headers = b.headers = &text_ct;
    a.nheaders = b.nheaders = 1;
    assert_int_equal(st_compare(NULL, "GET /", &a, &b, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH);
    st_diff_result_free(&res);
}

static void test_truncated_body_not_compared(void **state)
{
    st_response_t a = body_resp("{\"a\":1}", 7), b = body_resp("{\"a\":", 5);
    st_diff_result_t res;
    (void)state;
    b.body_truncated = 1;
    assert_int_equal(st_compare(NULL, "GET /", &a, &b, NULL, &res), 0);
    assert_int_equal(res.nentries, 1);
    assert_int_equal(res.entries[0].kind, ST_DIFF_TOO_LARGE);
    assert_string_equal(res.entries[0].b, "truncated after 5 bytes");
    st_diff_result_free(&res);
}

static void test_entry_cap_and_value_truncation(void **state)
{
    char a[4096], b[4096];
    size_t na = 0, nb = 0;
    st_diff_result_t res;
    (void)state;
    na += (size_t)sprintf(a + na, "[");
    nb += (size_t)sprintf(b + nb, "[");
    for (int i = 0; i < 100; i++) {
        na += (size_t)sprintf(a + na, "%s%d", i ? "," : "", i);
        nb += (size_t)sprintf(b + nb, "%s%d", i ? "," : "", i + 1);
    }
    strcpy(a + na, "]");
    strcpy(b + nb, "]");
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    assert_int_equal(st_compare(NULL, "GET /", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.total, 100);
    assert_int_equal(res.nentries, 64);
    assert_string_equal(res.entries[63].path, "$[63]");
    assert_int_equal(res.verdict, ST_VERDICT_DIVERGED);
    assert_true(res.max_delta == 1.0);
    st_diff_result_free(&res);

    /* a long string value: cut to ~256 bytes on a UTF-8 boundary, marked */
    size_t n = 0;
    n += (size_t)sprintf(a + n, "[\"");
    for (int i = 0; i < 400; i++)
        n += (size_t)sprintf(a + n, "\xc3\xa9");
    strcpy(a + n, "\"]");
    ra = body_resp(a, strlen(a));
    rb = body_resp("[\"x\"]", 5);
    assert_int_equal(st_compare(NULL, "GET /", &ra, &rb, NULL, &res), 0);
    const char *v = res.entries[0].a;
    size_t vl = strlen(v);
    assert_true(vl <= 256 + 3);
    assert_true(vl > 200);
    assert_string_equal(v + vl - 3, "...");
    /* the text before the marker is whole two-byte characters after the quote */
    assert_int_equal((vl - 3 - 1) % 2, 0);
    assert_int_equal((unsigned char)v[vl - 4], 0xa9);
    st_diff_result_free(&res);
}

static void test_value_text(void **state)
{
    const char *a = "{\"x\":0.1,\"y\":{\"z\":[1,\"s\"]},\"big\":1e300,\"n\":3}";
    const char *b = "{\"x\":0.2,\"y\":null,\"big\":1e301,\"n\":4.0}";
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    (void)state;
    assert_int_equal(st_compare(NULL, "GET /", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 4);
    assert_string_equal(res.entries[0].a, "0.1");
    assert_string_equal(res.entries[0].b, "0.2");
    assert_true(res.entries[0].delta > 0.099 && res.entries[0].delta < 0.101);
    assert_string_equal(res.entries[1].a, "{\"z\":[1,\"s\"]}");
    assert_string_equal(res.entries[1].b, "null");
    assert_string_equal(res.entries[2].a, "1e+300");
    assert_string_equal(res.entries[3].a, "3");
    assert_string_equal(res.entries[3].b, "4.0");
    st_diff_result_free(&res);
}

static void test_redacted_values_in_entries(void **state)
{
    st_rules_t *r = rules_or_default("{\"defaults\":{\"redact_paths\":[\"$..email\"]}}");
    const char *a = "{\"user\":{\"email\":\"a@x.io\",\"n\":1},\"email\":\"b@x.io\"}";
    const char *b = "{\"email\":\"c@x.io\"}";
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    char got[256];
    (void)state;
    assert_int_equal(st_compare(r, "GET /", &ra, &rb, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "missing $.user | value $.email");
    assert_string_equal(res.entries[0].a, "{\"email\":\"[REDACTED]\",\"n\":1}");
    assert_string_equal(res.entries[1].a, "\"[REDACTED]\"");
    assert_string_equal(res.entries[1].b, "\"[REDACTED]\"");
    st_diff_result_free(&res);

    /* a value below a redacted path is redacted */
    st_rules_t *r2 = rules_or_default("{\"defaults\":{\"redact_paths\":[\"$.user\"]}}");
    const char *ja = "{\"user\":{\"email\":\"a@x.io\"}}";
    const char *jb = "{\"user\":{\"email\":\"b@x.io\",\"x\":1}}";
    st_response_t ua = body_resp(ja, strlen(ja)), ub = body_resp(jb, strlen(jb));
    assert_int_equal(st_compare(r2, "GET /", &ua, &ub, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "value $.user.email | extra $.user.x");
    assert_string_equal(res.entries[0].a, "\"[REDACTED]\"");
    assert_string_equal(res.entries[0].b, "\"[REDACTED]\"");
    assert_null(res.entries[1].a);
    assert_string_equal(res.entries[1].b, "\"[REDACTED]\"");
    st_diff_result_free(&res);
    st_rules_free(r2);

    /* the JSON side of an invalid_json entry is redacted too */
    rb = body_resp("{\"email\":", 9);
    assert_int_equal(st_compare(r, "GET /", &ra, &rb, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "invalid_json $body");
    assert_null(strstr(res.entries[0].a, "@x.io"));
    assert_non_null(strstr(res.entries[0].a, "[REDACTED]"));
    assert_non_null(strstr(res.entries[0].b, "not JSON: line 1 column"));
    st_diff_result_free(&res);

    /* JSON that does not parse cannot be redacted: no bytes are shown */
    ra = body_resp("{\"email\":\"a@x.io", 16);
    rb = body_resp("{\"email\":\"b@x.io", 16);
    assert_int_equal(st_compare(r, "GET /", &ra, &rb, NULL, &res), 0);
    describe(&res, got, sizeof(got));
    assert_string_equal(got, "bytes $body");
    assert_string_equal(res.entries[0].a, "offset 10 (length 16)");
    assert_string_equal(res.entries[0].b, "offset 10 (length 16)");
    st_diff_result_free(&res);
    st_rules_free(r);
}

/* ---- noise and verdicts ------------------------------------------------- */

typedef struct {
    const char *name;
    const char *p, *s, *n; /* bodies; n NULL: no noise replica */
    const char *expect;
    st_verdict_t verdict;
} noise_case_t;

static void test_noise_marking(void **state)
{
    static const noise_case_t cases[] = {
        {"no noise replica", "{\"a\":1,\"b\":1}", "{\"a\":2,\"b\":2}", NULL,
         "value $.a | value $.b", ST_VERDICT_DIVERGED},
        {"some paths are noise", "{\"a\":1,\"b\":1}", "{\"a\":2,\"b\":2}", "{\"a\":3,\"b\":1}",
         "~value $.a | value $.b", ST_VERDICT_DIVERGED},
        {"all paths are noise", "{\"a\":1,\"b\":1}", "{\"a\":2,\"b\":1}", "{\"a\":3,\"b\":1}",
         "~value $.a", ST_VERDICT_NOISE},
        {"ancestor path covers", "{\"m\":{\"x\":1,\"y\":[1]}}", "{\"m\":{\"x\":2,\"y\":[2]}}",
         "{\"m\":null}", "~value $.m.x | ~value $.m.y[0]", ST_VERDICT_NOISE},
        {"sibling prefix does not cover", "{\"a\":1,\"ab\":1}", "{\"a\":1,\"ab\":2}",
         "{\"a\":2,\"ab\":1}", "value $.ab", ST_VERDICT_DIVERGED},
        {"descendant does not cover ancestor", "{\"m\":{\"x\":1}}", "{\"m\":[]}",
         "{\"m\":{\"x\":2}}", "type $.m", ST_VERDICT_DIVERGED},
        {"match with noise replica", "{\"a\":1}", "{\"a\":1}", "{\"a\":2}", "", ST_VERDICT_MATCH},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const noise_case_t *c = &cases[i];
        st_response_t p = body_resp(c->p, strlen(c->p)), s = body_resp(c->s, strlen(c->s));
        st_response_t n = c->n ? body_resp(c->n, strlen(c->n)) : body_resp("", 0);
        st_diff_result_t res;
        char got[512];
        assert_int_equal(st_compare(NULL, "GET /", &p, &s, c->n ? &n : NULL, &res), 0);
        describe(&res, got, sizeof(got));
        if (strcmp(got, c->expect) != 0 || res.verdict != c->verdict)
            fail_msg("case '%s': got [%s] %s, expected [%s] %s", c->name, got,
                     st_verdict_name(res.verdict), c->expect, st_verdict_name(c->verdict));
        st_diff_result_free(&res);
    }
}

static void test_noise_beyond_entry_cap(void **state)
{
    /* 100 noisy differences and one real one after the stored 64: the
     * verdict must still see the real one */
    char p[2048], s[2048], n[2048];
    size_t lp = 0, ls = 0, ln = 0;
    (void)state;
    lp += (size_t)sprintf(p, "{");
    ls += (size_t)sprintf(s, "{");
    ln += (size_t)sprintf(n, "{");
    for (int i = 0; i < 100; i++) {
        lp += (size_t)sprintf(p + lp, "\"k%d\":0,", i);
        ls += (size_t)sprintf(s + ls, "\"k%d\":1,", i);
        ln += (size_t)sprintf(n + ln, "\"k%d\":2,", i);
    }
    sprintf(p + lp, "\"z\":0}");
    sprintf(s + ls, "\"z\":1}");
    sprintf(n + ln, "\"z\":0}");
    st_response_t rp = body_resp(p, strlen(p)), rs = body_resp(s, strlen(s));
    st_response_t rn = body_resp(n, strlen(n));
    st_diff_result_t res;
    assert_int_equal(st_compare(NULL, "GET /", &rp, &rs, &rn, &res), 0);
    assert_int_equal(res.total, 101);
    assert_int_equal(res.nentries, 64);
    assert_int_equal(res.entries[0].noise, 1);
    assert_int_equal(res.verdict, ST_VERDICT_DIVERGED);
    st_diff_result_free(&res);
    /* without the real one, all noise */
    sprintf(s + ls, "\"z\":0}");
    rs = body_resp(s, strlen(s));
    assert_int_equal(st_compare(NULL, "GET /", &rp, &rs, &rn, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_NOISE);
    st_diff_result_free(&res);
}

/* The noise replica's own comparison with the primary (the A/A baseline
 * counted by the stats): compared only when its answer is usable, and its
 * difference count is independent of what the shadow did. */
static void test_noise_baseline(void **state)
{
    st_response_t p = body_resp("{\"a\":1,\"b\":1}", 13);
    st_response_t s = body_resp("{\"a\":1,\"b\":1}", 13);
    st_response_t n = body_resp("{\"a\":2,\"b\":3}", 13);
    st_diff_result_t res;
    (void)state;
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, &n, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH); /* the shadow agrees ... */
    assert_int_equal(res.noise_compared, 1);
    assert_int_equal(res.noise_total, 2); /* ... the second stable replica does not */
    st_diff_result_free(&res);

    n = body_resp("{\"a\":1,\"b\":1}", 13);
    s = body_resp("{\"a\":5,\"b\":1}", 13);
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, &n, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_DIVERGED);
    assert_int_equal(res.noise_compared, 1);
    assert_int_equal(res.noise_total, 0);
    st_diff_result_free(&res);

    assert_int_equal(st_compare(NULL, "GET /", &p, &s, NULL, &res), 0);
    assert_int_equal(res.noise_compared, 0);
    st_diff_result_free(&res);

    n.error = "timeout"; /* a failed noise answer is no baseline */
    n.status = 0;
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, &n, &res), 0);
    assert_int_equal(res.noise_compared, 0);
    assert_int_equal(res.noise_total, 0);
    st_diff_result_free(&res);
}

static void test_verdicts(void **state)
{
    st_response_t p = body_resp("{}", 2), s = body_resp("{}", 2), n = body_resp("{\"x\":1}", 7);
    st_diff_result_t res;
    (void)state;
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_MATCH);
    assert_int_equal(res.total, 0);
    st_diff_result_free(&res);

    s.error = "timeout";
    s.status = 0;
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_ERROR);
    assert_int_equal(res.nentries, 0);
    st_diff_result_free(&res);

    s.error = NULL; /* status 0 alone is an error too */
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_ERROR);
    st_diff_result_free(&res);

    s.status = 200;
    p.error = "reset";
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, NULL, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_ERROR);
    st_diff_result_free(&res);

    /* a failed noise replica is ignored */
    p.error = NULL;
    s = body_resp("{\"x\":2}", 7);
    n.error = "timeout";
    n.status = 0;
    assert_int_equal(st_compare(NULL, "GET /", &p, &s, &n, &res), 0);
    assert_int_equal(res.verdict, ST_VERDICT_DIVERGED);
    assert_int_equal(res.entries[0].noise, 0);
    st_diff_result_free(&res);

    assert_string_equal(st_verdict_name(ST_VERDICT_NOISE), "noise");
    assert_string_equal(st_diff_kind_name(ST_DIFF_ARRAY_LEN), "array_length");
    assert_string_equal(st_diff_kind_name(ST_DIFF_ARGMAX), "argmax");
    assert_string_equal(st_diff_kind_name(ST_DIFF_KIND_COUNT), "unknown");
    st_diff_result_free(NULL);
}

/* Deterministic mutations of a document (bytes flipped, cut, duplicated):
 * whatever the input, st_compare returns 0 with a consistent result. Run
 * under ASan/valgrind this is a small bounded fuzz of parse + diff. */
static void test_mutated_inputs_are_handled(void **state)
{
    static const char base[] =
        "{\"predictions\":[{\"label\":\"cat\",\"score\":0.91,\"scores\":[0.91,0.05,0.04]},"
        "{\"label\":\"d\\u00e9g\",\"score\":1e-3,\"scores\":[1,2,3],\"m\":{\"a b\":[[],{}]}}],"
        "\"meta\":{\"timestamp\":1717171717,\"big\":123456789012345678901234}}";
    st_rules_t *r = rules_or_default(
        "{\"defaults\":{\"tolerance\":{\"relative\":1e-3},\"ignore\":[\"$..timestamp\"],"
        "\"unordered\":[\"$..m.*\"],\"argmax\":[\"$.predictions[*].scores\"],"
        "\"redact_paths\":[\"$..label\"]}}");
    char buf[sizeof(base) * 2];
    unsigned long long seed = 42;
    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = sizeof(base) - 1;
        memcpy(buf, base, n);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits && n > 0; e++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (size_t)(seed >> 33) % n;
            unsigned char byte = (unsigned char)(seed >> 20);
            switch ((seed >> 60) % 4) {
            case 0: /* replace by a JSON-significant or random byte */
                buf[pos] = "{}[]\",:\\0e-."[byte % 12];
                break;
            case 1:
                buf[pos] = (char)byte;
                break;
            case 2: /* cut */
                n = pos;
                break;
            default: /* duplicate a slice */
                if (n + 16 < sizeof(buf)) {
                    memmove(buf + pos + 16, buf + pos, n - pos);
                    n += 16;
                }
            }
        }
        st_response_t a = body_resp(base, sizeof(base) - 1), b = body_resp(buf, n);
        st_diff_result_t res;
        assert_int_equal(st_compare(r, "POST /predict", &a, &b, iter % 3 ? NULL : &b, &res), 0);
        assert_true(res.nentries <= res.total);
        assert_true(res.nentries <= 64);
        assert_true(res.verdict == ST_VERDICT_MATCH ? res.total == 0 : res.total > 0);
        for (size_t i = 0; i < res.nentries; i++) {
            assert_non_null(res.entries[i].path);
            assert_true(res.entries[i].kind < ST_DIFF_KIND_COUNT);
        }
        /* comparing the mutated body with itself is a match, or noise-free */
        st_diff_result_free(&res);
        assert_int_equal(st_compare(r, "POST /predict", &b, &b, NULL, &res), 0);
        assert_int_equal(res.verdict, ST_VERDICT_MATCH);
        st_diff_result_free(&res);
        size_t out_len;
        char *red = st_redact_body(r, buf, n, 100, &out_len);
        assert_non_null(red);
        assert_true(out_len <= 100 + 40);
        free(red);
    }
    st_rules_free(r);
}

/* jansson allocations fail after `budget` calls (test-only allocator). */
static long alloc_budget = -1;

static void *failing_malloc(size_t n)
{
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    return malloc(n);
}

/* Whichever jansson allocation fails, st_compare returns 0 or -1, never
 * crashes, and leaks nothing (checked under valgrind and ASan). */
static void test_allocation_failures_are_reported(void **state)
{
    const char *a = "{\"p\":[{\"s\":[0.1,0.9],\"t\":[\"x\",\"y\"]}],\"m\":{\"e\":\"a@b\"},\"k\":1}";
    const char *b = "{\"p\":[{\"s\":[0.9,0.1],\"t\":[\"y\",\"z\"]}],\"m\":{\"e\":\"c@d\"},\"n\":2}";
    st_rules_t *r = rules_or_default("{\"defaults\":{\"argmax\":[\"$.p[*].s\"],"
                                     "\"unordered\":[\"$..t\"],\"redact_paths\":[\"$.m.e\"]}}");
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    int failures = 0, successes = 0;
    (void)state;
    json_set_alloc_funcs(failing_malloc, free);
    for (long budget = 0; budget < 400 && successes < 3; budget++) {
        alloc_budget = budget;
        int rc = st_compare(r, "GET /", &ra, &rb, &rb, &res);
        assert_true(rc == 0 || rc == -1);
        if (rc == 0 && alloc_budget > 0)
            successes++; /* enough allocations: the normal result */
        else if (rc == -1)
            failures++;
        st_diff_result_free(&res);
    }
    alloc_budget = -1;
    json_set_alloc_funcs(malloc, free);
    assert_true(failures > 0);
    assert_true(successes > 0);
    st_rules_free(r);
}

/* Every path the diff reports can be pasted into the rules: ignoring the
 * reported paths makes the same comparison a match. */
static void test_reported_paths_round_trip_as_rules(void **state)
{
    const char *a = "{\"a b\":1,\"it's\":[1,{\"x\\\\y\":2}],\"q\\\"\":3,\"é\":4,\"_k9\":[[5]],"
                    "\"x-model\":\"m1\",\"gone\":0}";
    const char *b = "{\"a b\":2,\"it's\":[1,{\"x\\\\y\":3}],\"q\\\"\":4,\"é\":5,\"_k9\":[[6]],"
                    "\"x-model\":\"m2\",\"new\":0}";
    st_response_t ra = body_resp(a, strlen(a)), rb = body_resp(b, strlen(b));
    st_diff_result_t res;
    (void)state;
    assert_int_equal(st_compare(NULL, "GET /", &ra, &rb, NULL, &res), 0);
    assert_int_equal(res.nentries, 8);
    json_t *ignore = json_array();
    for (size_t i = 0; i < res.nentries; i++)
        json_array_append_new(ignore, json_string(res.entries[i].path));
    st_diff_result_free(&res);
    json_t *rules_doc = json_pack("{s:{s:o}}", "defaults", "ignore", ignore);
    char *rules_text = json_dumps(rules_doc, JSON_COMPACT);
    json_decref(rules_doc);
    st_rules_t *r = rules_or_default(rules_text);
    assert_int_equal(st_compare(r, "GET /", &ra, &rb, NULL, &res), 0);
    if (res.verdict != ST_VERDICT_MATCH)
        fail_msg("with %s: %zu differences left, first %s", rules_text, res.total,
                 res.nentries ? res.entries[0].path : "-");
    st_diff_result_free(&res);
    st_rules_free(r);
    free(rules_text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nested_objects_and_arrays),
        cmocka_unit_test(test_unicode_and_escapes),
        cmocka_unit_test(test_numbers_and_tolerance),
        cmocka_unit_test(test_big_integers),
        cmocka_unit_test(test_type_changes),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_empty_bodies),
        cmocka_unit_test(test_binary_bodies),
        cmocka_unit_test(test_argmax_and_topk),
        cmocka_unit_test(test_unordered_arrays),
        cmocka_unit_test(test_ignore_paths),
        cmocka_unit_test(test_endpoint_rules_merge),
        cmocka_unit_test(test_status_and_headers),
        cmocka_unit_test(test_content_type_and_sniffing),
        cmocka_unit_test(test_truncated_body_not_compared),
        cmocka_unit_test(test_entry_cap_and_value_truncation),
        cmocka_unit_test(test_value_text),
        cmocka_unit_test(test_reported_paths_round_trip_as_rules),
        cmocka_unit_test(test_redacted_values_in_entries),
        cmocka_unit_test(test_noise_marking),
        cmocka_unit_test(test_noise_beyond_entry_cap),
        cmocka_unit_test(test_noise_baseline),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_mutated_inputs_are_handled),
        cmocka_unit_test(test_allocation_failures_are_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
