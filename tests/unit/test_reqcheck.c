/* Unit tests of proxy/reqcheck.c: the head scanner (verdicts, and the same
 * verdict however the bytes are split), authority grammar, target forms and
 * the absolute-form rewrite, Host rules, Upgrade protocol lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "../../proxy/reqcheck.h"

typedef struct {
    const char *in;
    size_t len;          /* 0: strlen(in) */
    enum st_reject want; /* verdict once every byte arrived */
    size_t head_len;     /* ST_REJ_NONE: where the head ends (0: not complete) */
} scan_case_t;

#define OK_HEAD(s)                                                                                 \
    {                                                                                              \
        s, sizeof(s) - 1, ST_REJ_NONE, sizeof(s) - 1                                               \
    }
#define REFUSE(s, r)                                                                               \
    {                                                                                              \
        s, sizeof(s) - 1, r, 0                                                                     \
    }

static const scan_case_t scan_cases[] = {
    OK_HEAD("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    OK_HEAD("\r\n\r\nGET / HTTP/1.0\r\n\r\n"), /* empty lines before the request line */
    OK_HEAD("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
    OK_HEAD("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n"),
    OK_HEAD("GET http://a.example/x?y=%20 HTTP/1.1\r\nHost: b\r\n\r\n"),
    OK_HEAD("GET /{|}^`[]\\!$&'()*+,;=:@~ HTTP/1.1\r\nHost: a\r\n\r\n"),
    OK_HEAD("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), /* grammar fine: 505 comes later */
    OK_HEAD("GET / HTTP/1.1\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-8: a\x80\xff\r\n\r\n"),
    OK_HEAD("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n"), /* every tchar */
    /* the scan stops at the head: what follows is body or the next request */
    {"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\n\r :x\x01", 0, ST_REJ_NONE, 38},
    {"GET / HTTP/1.1\r\nHost: a\r\n", 0, ST_REJ_NONE, 0}, /* fine so far, not complete */
    {"GET /", 0, ST_REJ_NONE, 0},
    REFUSE("GET /\r\n", ST_REJ_HTTP09),
    REFUSE("GET /\r", ST_REJ_HTTP09), /* decided at the CR: no byte more is awaited */
    REFUSE("GET /\n", ST_REJ_HTTP09),
    REFUSE("GET /index.html\r\n\r\n", ST_REJ_HTTP09),
    REFUSE("GET  / HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /  HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET\t/ HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /\tHTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / HTTP/1.1 \r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / http/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / HTTP/1.10\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / HTTP/11\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / HTTP/1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET / HTTP/1.x\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE(" GET / HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET \r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GE(T / HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /a#b HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /a\xff HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /a\x01 HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("GET /a\x7f HTTP/1.1\r\n", ST_REJ_BAD_REQUEST_LINE),
    REFUSE("\x16\x03\x01\x02\x00", ST_REJ_BAD_REQUEST_LINE), /* a TLS ClientHello */
    REFUSE("GET / HTTP/1.1\r\n: x\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX@Y: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX/Y: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX\"Y: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX\x01Y: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX\xffY: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\n X: v\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", ST_REJ_BAD_HEADER_NAME), /* obs-fold */
    REFUSE("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nContent-Length : 0\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\r\nNoColon\r\n\r\n", ST_REJ_BAD_HEADER_NAME),
    REFUSE("GET / HTTP/1.1\n", ST_REJ_BARE_LF),
    REFUSE("\nGET / HTTP/1.1\r\n", ST_REJ_BARE_LF),
    REFUSE("GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", ST_REJ_BARE_LF),
    REFUSE("GET / HTTP/1.1\r\nHost: a\r\n\n", ST_REJ_BARE_LF),
    REFUSE("GET / HTTP/1.1\rX", ST_REJ_BARE_CR),
    REFUSE("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", ST_REJ_BARE_CR),
    REFUSE("\rGET / HTTP/1.1\r\n", ST_REJ_BARE_CR),
    REFUSE("GET / HTTP/1.1\r\n\rX", ST_REJ_BARE_CR),
};

/* Scans in[0, len) fed as the reads cut[0] < cut[1] < ... < len deliver it. */
static enum st_reject scan_split(const char *in, size_t len, const size_t *cut, size_t ncut,
                                 st_reqcheck_scan_t *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t k = 0; k < ncut; k++) {
        enum st_reject why = st_reqcheck_scan(s, in, cut[k]);
        if (why) return why;
    }
    return st_reqcheck_scan(s, in, len);
}

static void check_case(const scan_case_t *t, enum st_reject got, const st_reqcheck_scan_t *s,
                       const char *how)
{
    if (got != t->want)
        fail_msg("scan case %zu: %s gave %s, want %s", (size_t)(t - scan_cases), how,
                 st_reject_labels[got], st_reject_labels[t->want]);
    if (got == ST_REJ_NONE) {
        assert_int_equal(s->done, t->head_len > 0);
        if (t->head_len) assert_int_equal(s->pos, t->head_len);
    }
}

static void test_scan_verdicts(void **state)
{
    for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++) {
        const scan_case_t *t = &scan_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        st_reqcheck_scan_t s;
        check_case(t, scan_split(t->in, len, NULL, 0, &s), &s, "one read");
    }
}

/* The verdict does not depend on how the bytes arrive: every cut in two,
 * and one byte per read. */
static void test_scan_same_verdict_for_every_split(void **state)
{
    for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]); i++) {
        const scan_case_t *t = &scan_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        st_reqcheck_scan_t s;
        for (size_t cut = 0; cut <= len; cut++)
            check_case(t, scan_split(t->in, len, &cut, 1, &s), &s, "two reads");
        size_t cuts[128];
        assert_true(len <= 128);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k;
        check_case(t, scan_split(t->in, len, cuts, len, &s), &s, "byte by byte");
    }
}

/* Once the head is complete, later calls scan nothing more. */
static void test_scan_stops_at_head_end(void **state)
{
    const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\x01\n";
    st_reqcheck_scan_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(st_reqcheck_scan(&s, in, 27), ST_REJ_NONE);
    assert_true(s.done);
    assert_int_equal(s.pos, 27);
    assert_int_equal(st_reqcheck_scan(&s, in, sizeof(in) - 1), ST_REJ_NONE);
    assert_int_equal(s.pos, 27);
}

static void test_authority(void **state)
{
    const char *valid[] = {"a",
                           "a.example",
                           "a.example:8080",
                           "A.EXAMPLE",
                           "127.0.0.1",
                           "127.0.0.1:80",
                           "999.1.1.1",
                           "[::1]",
                           "[::1]:443",
                           "[2001:db8::1]",
                           "[::ffff:1.2.3.4]",
                           "[v1.x:y]",
                           "a%41b",
                           "a-b_c~d",
                           "a!$&'()*+,;=",
                           "a:0",
                           "a:65535",
                           "a:00080",
                           "a \t"};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        if (!st_reqcheck_authority(valid[i], strlen(valid[i]), 0))
            fail_msg("'%s' refused", valid[i]);
    const char *invalid[] = {"",       ":80",    "a:",    "a:8x",         "a:65536", "a:123456",
                             "a b",    "a/b",    "u@a",   "a%4",          "a%zz",    "[::1",
                             "[::1]x", "[::1]:", "[zz]",  "[::1%25eth0]", "a:80:90", "\xc3\xa9",
                             "[v.x]",  "[vg.x]", "[v1.]", "[]",           " a",      "a\x01"};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
        if (st_reqcheck_authority(invalid[i], strlen(invalid[i]), 0))
            fail_msg("'%s' accepted", invalid[i]);
    assert_true(st_reqcheck_authority("a:443", 5, 1));
    assert_true(st_reqcheck_authority("[::1]:443", 9, 1));
    assert_false(st_reqcheck_authority("a", 1, 1));
    assert_false(st_reqcheck_authority("[::1]", 5, 1));
}

/* A message as llhttp would leave it: url and headers are spans into buf. */
typedef struct {
    char buf[512];
    size_t used;
    st_http_msg_t m;
} msg_t;

static const char *put(msg_t *x, const char *s)
{
    size_t n = strlen(s);
    char *p = x->buf + x->used;
    memcpy(p, s, n + 1);
    x->used += n + 1;
    return p;
}

static st_http_msg_t *msg(msg_t *x, const char *url, const char *const *headers)
{
    x->used = 0;
    st_http_msg_reset(&x->m);
    const char *u = put(x, url);
    assert_int_equal(st_http_on_url(&x->m, u, strlen(u), 0), 0);
    for (size_t i = 0; headers && headers[i]; i += 2) {
        const char *n = put(x, headers[i]);
        const char *v = put(x, headers[i + 1]);
        assert_int_equal(st_http_on_header_field(&x->m, n, strlen(n)), 0);
        assert_int_equal(st_http_on_header_value(&x->m, v, strlen(v)), 0);
    }
    st_http_on_headers_complete(&x->m);
    return &x->m;
}

static void test_head_targets_and_host(void **state)
{
    static const char *const host_a[] = {"Host", "a", NULL};
    static const char *const host_bad[] = {"Host", "a b", NULL};
    static const char *const two_hosts[] = {"Host", "a", "host", "a", NULL};
    static const char *const none[] = {NULL};
    const struct {
        int method, minor, allow_connect;
        const char *url;
        const char *const *headers;
        enum st_reject want;
    } cases[] = {
        {HTTP_GET, 1, 0, "/", host_a, ST_REJ_NONE},
        {HTTP_GET, 1, 0, "//x/../y?z", host_a, ST_REJ_NONE},
        {HTTP_GET, 1, 0, "/", none, ST_REJ_BAD_HOST},
        {HTTP_GET, 0, 0, "/", none, ST_REJ_NONE}, /* HTTP/1.0 may omit it */
        {HTTP_GET, 1, 0, "/", two_hosts, ST_REJ_BAD_HOST},
        {HTTP_GET, 0, 0, "/", two_hosts, ST_REJ_BAD_HOST},
        {HTTP_GET, 1, 0, "/", host_bad, ST_REJ_BAD_HOST},
        {HTTP_CONNECT, 1, 0, "a.example:443", host_a, ST_REJ_CONNECT},
        {HTTP_CONNECT, 1, 1, "a.example:443", host_a, ST_REJ_NONE},
        {HTTP_CONNECT, 1, 1, "a.example", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_CONNECT, 1, 1, "/x", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_OPTIONS, 1, 0, "*", host_a, ST_REJ_NONE},
        {HTTP_GET, 1, 0, "*", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_GET, 1, 0, "a.example:80", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_GET, 1, 0, "ftp://a/x", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_GET, 1, 0, "http:/a/x", host_a, ST_REJ_BAD_REQUEST_LINE},
        {HTTP_GET, 1, 0, "http://u@a/x", host_a, ST_REJ_BAD_HOST},
        {HTTP_GET, 1, 0, "http:///x", host_a, ST_REJ_BAD_HOST},
        {HTTP_GET, 1, 0, "http://a:99999/x", host_a, ST_REJ_BAD_HOST},
        {HTTP_GET, 1, 0, "http://a/x", none, ST_REJ_BAD_HOST}, /* still one Host in 1.1 */
        {HTTP_GET, 0, 0, "http://a/x", none, ST_REJ_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg_t x;
        st_http_msg_t *m = msg(&x, cases[i].url, cases[i].headers);
        enum st_reject got =
            st_reqcheck_head(m, cases[i].method, cases[i].minor, cases[i].allow_connect);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): %s, want %s", i, cases[i].url, st_reject_labels[got],
                     st_reject_labels[cases[i].want]);
    }
}

static void expect_rewrite(int method, const char *url, const char *want_url,
                           const char *want_authority)
{
    static const char *const host_b[] = {"Host", "b.example", NULL};
    msg_t x;
    st_http_msg_t *m = msg(&x, url, host_b);
    assert_int_equal(st_reqcheck_head(m, method, 1, 0), ST_REJ_NONE);
    char got[256];
    snprintf(got, sizeof(got), "%.*s", (int)m->url_len, m->url);
    assert_string_equal(got, want_url);
    assert_non_null(m->authority);
    snprintf(got, sizeof(got), "%.*s", (int)m->authority_len, m->authority);
    assert_string_equal(got, want_authority);
}

static void test_absolute_form_rewritten(void **state)
{
    expect_rewrite(HTTP_GET, "http://a.example/x?y", "/x?y", "a.example");
    expect_rewrite(HTTP_GET, "HTTPS://a.example:8443", "/", "a.example:8443");
    expect_rewrite(HTTP_GET, "http://[::1]:8080/p", "/p", "[::1]:8080");
    expect_rewrite(HTTP_OPTIONS, "http://a.example", "*", "a.example");
    expect_rewrite(HTTP_OPTIONS, "http://a.example/", "/", "a.example");
    /* an empty path with a query: "/" is made room for in the buffer */
    expect_rewrite(HTTP_GET, "http://a.example?q=1", "/?q=1", "a.example");
    expect_rewrite(HTTP_POST, "https://a?", "/?", "a");
}

/* The rewritten message builds a head with the target's authority as the
 * only Host, first after the request line; the shadow variant suffixes it. */
static void test_absolute_form_head(void **state)
{
    static const char *const h[] = {"Accept", "*/*", "Host", "b.example", NULL};
    msg_t x;
    st_http_msg_t *m = msg(&x, "http://a.example:81?q=1", h);
    assert_int_equal(st_reqcheck_head(m, HTTP_GET, 1, 0), ST_REJ_NONE);
    st_sbuf_t out;
    st_sbuf_init(&out);
    st_reqhead_opts_t o = {
        .method = "GET", .client_ip = "127.0.0.1", .proto = "http", .request_id = "r"};
    assert_int_equal(st_http_build_request_head(&out, m, &o), 0);
    assert_string_equal(out.p, "GET /?q=1 HTTP/1.1\r\nHost: a.example:81\r\nAccept: */*\r\n"
                               "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                               "x-request-id: r\r\n\r\n");
    out.len = 0;
    o.host_suffix = 1;
    assert_int_equal(st_http_build_request_head(&out, m, &o), 0);
    assert_non_null(strstr(out.p, "\r\nHost: a.example-shadow:81\r\nAccept"));
    assert_null(strstr(out.p, "b.example"));
    st_sbuf_free(&out);
}

static void test_protocol_lists(void **state)
{
    const struct {
        const char *value, *allow;
        int want;
    } cases[] = {
        {"websocket", "websocket", 1},
        {"WebSocket", "websocket", 1},
        {"websocket/13", "websocket", 1},
        {" websocket ", "websocket", 1},
        {"h2c", "websocket", 0},
        {"websocket, h2c", "websocket", 0},
        {"h2c, websocket", "websocket,h2c", 1},
        {"foo", "websocket, foo", 1},
        {"foo", "websocket foo", 1},
        {"websock", "websocket", 0},
        {"websocketx", "websocket", 0},
        {"", "websocket", 0},
        {" , ", "websocket", 0},
        {"websocket/", "websocket", 0},
        {"websocket;x", "websocket", 0},
        {"websocket", "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (st_reqcheck_protocols_allowed(cases[i].value, strlen(cases[i].value), cases[i].allow) !=
            cases[i].want)
            fail_msg("'%s' against '%s': want %d", cases[i].value, cases[i].allow, cases[i].want);
    static const char *const one[] = {"Upgrade", "websocket", NULL};
    static const char *const two[] = {"Upgrade", "websocket", "upgrade", "h2c", NULL};
    static const char *const none[] = {"Connection", "upgrade", NULL};
    msg_t x;
    assert_true(st_reqcheck_upgrade_allowed(msg(&x, "/", one), "websocket"));
    assert_false(st_reqcheck_upgrade_allowed(msg(&x, "/", two), "websocket"));
    assert_true(st_reqcheck_upgrade_allowed(msg(&x, "/", two), "websocket,h2c"));
    assert_false(st_reqcheck_upgrade_allowed(msg(&x, "/", none), "websocket"));
    assert_true(st_reqcheck_allow_list_valid("websocket"));
    assert_true(st_reqcheck_allow_list_valid("websocket, h2c"));
    assert_true(st_reqcheck_allow_list_valid(""));
    assert_false(st_reqcheck_allow_list_valid("web/socket"));
    assert_false(st_reqcheck_allow_list_valid("a\"b"));
}

static void test_statuses_and_llhttp_errors(void **state)
{
    assert_int_equal(st_reqcheck_status(ST_REJ_CONNECT), 405);
    assert_int_equal(st_reqcheck_status(ST_REJ_HTTP09), 400);
    assert_int_equal(st_reqcheck_status(ST_REJ_BAD_HOST), 400);
    assert_int_equal(st_reqcheck_status(ST_REJ_UNKNOWN_METHOD), 501);
    assert_int_equal(st_reqcheck_status(ST_REJ_TRANSFER_CODING), 501);
    assert_int_equal(st_reqcheck_status(ST_REJ_VERSION), 505);
    assert_int_equal(st_reqcheck_status(ST_REJ_HEAD_TOO_LARGE), 431);
    assert_int_equal(st_reqcheck_status(ST_REJ_URI_TOO_LONG), 414);
    assert_int_equal(st_reqcheck_status(ST_REJ_BODY_TOO_LARGE), 413);
    assert_int_equal(st_reqcheck_status(ST_REJ_TIMEOUT), 408);
    assert_int_equal(st_reqcheck_errno(HPE_INVALID_METHOD), ST_REJ_UNKNOWN_METHOD);
    assert_int_equal(st_reqcheck_errno(HPE_PAUSED_H2_UPGRADE), ST_REJ_VERSION);
    assert_int_equal(st_reqcheck_errno(HPE_INVALID_VERSION), ST_REJ_BAD_REQUEST_LINE);
    assert_int_equal(st_reqcheck_errno(HPE_INVALID_HEADER_TOKEN), ST_REJ_BAD_HEADER_VALUE);
    assert_int_equal(st_reqcheck_errno(HPE_INVALID_CHUNK_SIZE), ST_REJ_BAD_FRAMING);
    assert_int_equal(st_reqcheck_errno(HPE_UNEXPECTED_CONTENT_LENGTH), ST_REJ_BAD_FRAMING);
    assert_int_equal(st_reqcheck_errno(HPE_USER), ST_REJ_MALFORMED);
    for (int r = 1; r < ST_REJ_COUNT; r++) /* every label is a distinct, non-empty name */
        for (int q = 1; q < r; q++)
            assert_true(strcmp(st_reject_labels[r], st_reject_labels[q]) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_verdicts),
        cmocka_unit_test(test_scan_same_verdict_for_every_split),
        cmocka_unit_test(test_scan_stops_at_head_end),
        cmocka_unit_test(test_authority),
        cmocka_unit_test(test_head_targets_and_host),
        cmocka_unit_test(test_absolute_form_rewritten),
        cmocka_unit_test(test_absolute_form_head),
        cmocka_unit_test(test_protocol_lists),
        cmocka_unit_test(test_statuses_and_llhttp_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
