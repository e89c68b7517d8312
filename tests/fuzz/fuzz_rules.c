/*
 * fuzz_rules: the rules-file parser (st_rules_parse) on any bytes, then the
 * parsed rules used the way the proxy uses them: endpoint keys, the redact
 * lists, redaction and a comparison.
 *
 * Oracle, besides the sanitizers: a parse either returns rules and no error,
 * or no rules and one NUL-terminated message; the same text parses the same
 * way twice (no hidden state); a tiny err buffer is never overrun.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadowtee/comparator.h"

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_rules: %s\n", why);
    abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *text = (const char *)data;
    char err[256];
    memset(err, 'x', sizeof(err));
    st_rules_t *rules = NULL;
    int rc = st_rules_parse(text, size, &rules, err, sizeof(err));
    if (rc != 0) {
        if (rules) fail("failed, but returned rules");
        if (!memchr(err, '\0', sizeof(err)) || !err[0]) fail("failed without a message");
    } else if (!rules) {
        fail("succeeded without rules");
    }
    char small[8];
    memset(small, 'x', sizeof(small));
    st_rules_t *again = NULL;
    int rc2 = st_rules_parse(text, size, &again, small, sizeof(small));
    if (rc2 != rc) fail("the same text parsed two ways");
    if (rc2 != 0 && !memchr(small, '\0', sizeof(small))) fail("a short err buffer not terminated");
    st_rules_free(again);
    if (rc != 0) return 0;

    static const char *const paths[] = {"/v1/models/123/predict", "/users/alice/orders/9",
                                        "/a%2Fb/../c?q=1#f", ""};
    char key[256];
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        size_t n = st_endpoint_key(rules, "GET", 3, paths[i], strlen(paths[i]), key, sizeof(key));
        if (n < sizeof(key) && strlen(key) != n) fail("endpoint key length mismatch");
        char tiny[4];
        st_endpoint_key(rules, "GET", 3, paths[i], strlen(paths[i]), tiny, sizeof(tiny));
        if (!memchr(tiny, '\0', sizeof(tiny))) fail("endpoint key not terminated when cut");
    }
    const char *const *names = NULL;
    size_t nn = st_rules_redact_headers(rules, &names);
    for (size_t i = 0; i < nn; i++)
        if (!names[i]) fail("NULL redact header name");
    static const char body[] =
        "{\"predictions\":[{\"score\":0.91,\"label\":\"cat\"},{\"score\":0.09,\"label\":\"dog\"}],"
        "\"model\":{\"name\":\"m\",\"version\":3},\"user\":{\"email\":\"a@b.c\",\"token\":\"s\"},"
        "\"probs\":[0.1,0.7,0.2],\"ids\":[3,1,2]}";
    size_t out_len;
    char *red = st_redact_body(rules, body, sizeof(body) - 1, 4096, &out_len);
    free(red);
    static const char other[] =
        "{\"predictions\":[{\"score\":0.90,\"label\":\"cat\"},{\"score\":0.1,\"label\":\"dog\"}],"
        "\"model\":{\"name\":\"m\",\"version\":4},\"user\":{\"email\":\"x@b.c\"},"
        "\"probs\":[0.2,0.6,0.2],\"ids\":[1,2,3],\"extra\":null}";
    st_header_t h = {"Content-Type", 12, "application/json", 16};
    st_response_t a = {
        .status = 200, .headers = &h, .nheaders = 1, .body = body, .body_len = sizeof(body) - 1};
    st_response_t b = {
        .status = 200, .headers = &h, .nheaders = 1, .body = other, .body_len = sizeof(other) - 1};
    st_endpoint_key(rules, "POST", 4, paths[0], strlen(paths[0]), key, sizeof(key));
    st_diff_result_t res;
    memset(&res, 0, sizeof(res));
    st_compare(rules, key, &a, &b, NULL, &res);
    if (res.nentries > res.total) fail("more entries than differences");
    st_diff_result_free(&res);
    st_rules_free(rules);
    return 0;
}
