/* Unit tests of proxy/http.c: header spans and checks, hop-by-hop removal,
 * forwarding headers, request ids, host suffix, response heads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../proxy/http.h"

/* Feeds "Name: value" pairs as llhttp would (each a contiguous span). */
static void add_header(st_http_msg_t *m, char *storage, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    memcpy(storage, name, nl);
    memcpy(storage + nl + 2, value, vl);
    assert_int_equal(st_http_on_header_field(m, storage, nl), 0);
    assert_int_equal(st_http_on_header_value(m, storage + nl + 2, vl), 0);
}

static void test_hop_by_hop_list(void **state)
{
    const char *hop[] = {"Connection", "keep-alive",      "TE", "Trailer", "Transfer-Encoding",
                         "Upgrade",    "Proxy-Connection"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(st_http_is_hop_by_hop(hop[i], strlen(hop[i])));
    const char *e2e[] = {"Content-Type", "Host", "X-Request-Id", "Authorization", "Content-Length"};
    for (size_t i = 0; i < sizeof(e2e) / sizeof(e2e[0]); i++)
        assert_false(st_http_is_hop_by_hop(e2e[i], strlen(e2e[i])));
}

static void test_request_head_removes_hop_by_hop_and_sets_forwarding(void **state)
{
    static char store[16][128];
    st_http_msg_t m;
    st_http_msg_reset(&m);
    char url[] = "/predict?x=1";
    assert_int_equal(st_http_on_url(&m, url, strlen(url), 0), 0);
    add_header(&m, store[0], "Host", "api:8080");
    add_header(&m, store[1], "Connection", "keep-alive, X-Secret-Hop");
    add_header(&m, store[2], "X-Secret-Hop", "1");
    add_header(&m, store[3], "Keep-Alive", "timeout=5");
    add_header(&m, store[4], "TE", "trailers");
    add_header(&m, store[5], "Proxy-Connection", "keep-alive");
    add_header(&m, store[6], "X-Forwarded-For", "10.0.0.1");
    add_header(&m, store[7], "Content-Type", "application/json");
    add_header(&m, store[8], "x-request-id", "abc-123");
    add_header(&m, store[9], "Expect", "100-continue");
    st_http_on_headers_complete(&m);
    assert_int_equal(m.host, 0);
    assert_int_equal(m.xrid, 8);
    assert_int_equal(m.expect_continue, 1);
    st_sbuf_t out;
    st_sbuf_init(&out);
    st_reqhead_opts_t o = {.method = "POST",
                           .client_ip = "127.0.0.9",
                           .proto = "http",
                           .request_id = "abc-123",
                           .framing = ST_FRAME_LENGTH,
                           .content_length = 42};
    assert_int_equal(st_http_build_request_head(&out, &m, &o), 0);
    const char *h = out.p;
    assert_non_null(strstr(h, "POST /predict?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(h, "Host: api:8080\r\n"));
    assert_non_null(strstr(h, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(h, "X-Forwarded-For: 10.0.0.1, 127.0.0.9\r\n"));
    assert_non_null(strstr(h, "X-Forwarded-Proto: http\r\n"));
    assert_non_null(strstr(h, "x-request-id: abc-123\r\n"));
    assert_non_null(strstr(h, "Content-Length: 42\r\n\r\n"));
    assert_null(strstr(h, "X-Secret-Hop"));
    assert_null(strstr(h, "Keep-Alive"));
    assert_null(strstr(h, "TE:"));
    assert_null(strstr(h, "Proxy-Connection"));
    assert_null(strstr(h, "Connection:"));
    assert_null(strstr(h, "Expect"));
    assert_null(strstr(h, "x-shadowtee-mirror"));
    /* the mirror variant: marked, Host suffixed, head left open for framing */
    out.len = 0;
    o.mirror = 1;
    o.host_suffix = 1;
    o.framing = ST_FRAME_OPEN;
    assert_int_equal(st_http_build_request_head(&out, &m, &o), 0);
    assert_non_null(strstr(out.p, "x-shadowtee-mirror: 1\r\n"));
    assert_non_null(strstr(out.p, "Host: api-shadow:8080\r\n"));
    assert_null(strstr(out.p, "\r\n\r\n"));
    st_sbuf_free(&out);
}

static void test_forwarded_headers_joined_and_proto_kept(void **state)
{
    static char store[4][64];
    st_http_msg_t m;
    st_http_msg_reset(&m);
    char url[] = "/";
    assert_int_equal(st_http_on_url(&m, url, 1, 0), 0);
    add_header(&m, store[0], "Host", "a");
    add_header(&m, store[1], "X-Forwarded-For", "203.0.113.7");
    add_header(&m, store[2], "X-Forwarded-For", "10.0.0.2");
    add_header(&m, store[3], "X-Forwarded-Proto", "https");
    st_http_on_headers_complete(&m);
    st_sbuf_t out;
    st_sbuf_init(&out);
    st_reqhead_opts_t o = {.method = "GET",
                           .client_ip = "127.0.0.1",
                           .proto = "http",
                           .request_id = "r",
                           .keep_forwarded_proto = 1};
    assert_int_equal(st_http_build_request_head(&out, &m, &o), 0);
    assert_non_null(strstr(out.p, "X-Forwarded-For: 203.0.113.7, 10.0.0.2, 127.0.0.1\r\n"));
    assert_non_null(strstr(out.p, "X-Forwarded-Proto: https\r\n"));
    /* a proxy that terminates TLS itself says so, whatever the client claimed */
    out.len = 0;
    o.proto = "https";
    o.keep_forwarded_proto = 0;
    st_http_msg_reset(&m);
    assert_int_equal(st_http_on_url(&m, url, 1, 0), 0);
    add_header(&m, store[0], "Host", "a");
    add_header(&m, store[3], "X-Forwarded-Proto", "http");
    st_http_on_headers_complete(&m);
    assert_int_equal(st_http_build_request_head(&out, &m, &o), 0);
    assert_non_null(strstr(out.p, "X-Forwarded-Proto: https\r\n"));
    assert_null(strstr(out.p, "X-Forwarded-Proto: http\r\n"));
    st_sbuf_free(&out);
}

static void test_header_value_checks(void **state)
{
    st_http_msg_t m;
    /* obs-fold: a second value piece that is not contiguous with the first */
    char fold[] = "X-Aa\r\n b";
    st_http_msg_reset(&m);
    assert_int_equal(st_http_on_header_field(&m, fold, 3), 0);
    assert_int_equal(st_http_on_header_value(&m, fold + 3, 1), 0);
    assert_int_equal(st_http_on_header_value(&m, fold + 6, 2), -1);
    /* a value split across reads of one buffer stays one value */
    char split[] = "X-Bhello";
    st_http_msg_reset(&m);
    assert_int_equal(st_http_on_header_field(&m, split, 3), 0);
    assert_int_equal(st_http_on_header_value(&m, split + 3, 2), 0);
    assert_int_equal(st_http_on_header_value(&m, split + 5, 3), 0);
    assert_int_equal(m.hdr[0].value_len, 5);
    /* URI limit */
    char url[100];
    memset(url, 'a', sizeof(url));
    st_http_msg_reset(&m);
    assert_int_equal(st_http_on_url(&m, url, 50, 64), 0);
    assert_int_equal(st_http_on_url(&m, url + 50, 50, 64), -1);
    assert_int_equal(m.bad, 414);
}

static void test_too_many_headers(void **state)
{
    static char store[ST_HTTP_MAX_HEADERS + 1][8];
    st_http_msg_t m;
    st_http_msg_reset(&m);
    for (int i = 0; i < ST_HTTP_MAX_HEADERS; i++) {
        memcpy(store[i], "X-Hv", 4);
        assert_int_equal(st_http_on_header_field(&m, store[i], 3), 0);
        assert_int_equal(st_http_on_header_value(&m, store[i] + 3, 1), 0);
    }
    assert_int_equal(st_http_on_header_field(&m, store[ST_HTTP_MAX_HEADERS], 3), -1);
    assert_int_equal(m.bad, 431);
}

static void test_shadow_host(void **state)
{
    const struct {
        const char *in, *out;
    } cases[] = {{"api:8080", "api-shadow:8080"},     {"api", "api-shadow"},
                 {"api.ns.svc", "api.ns.svc-shadow"}, {"[::1]:8080", "[::1]:8080"},
                 {"127.0.0.1:80", "127.0.0.1:80"},    {"10.1.2.3", "10.1.2.3"}};
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = st_http_shadow_host(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        assert_int_equal(n, (int)strlen(cases[i].out));
        assert_string_equal(out, cases[i].out);
    }
    assert_int_equal(st_http_shadow_host("api", 3, out, 5), -1);
}

static void test_response_head_framing(void **state)
{
    static char store[4][64];
    st_http_msg_t m;
    st_http_msg_reset(&m);
    add_header(&m, store[0], "Content-Type", "text/plain");
    add_header(&m, store[1], "Transfer-Encoding", "chunked");
    add_header(&m, store[2], "Connection", "close");
    add_header(&m, store[3], "Content-Length", "5");
    st_http_on_headers_complete(&m);
    st_sbuf_t out;
    st_sbuf_init(&out);
    st_resphead_opts_t o = {.status = 200, .http_minor = 1, .framing = ST_FRAME_CHUNKED};
    assert_int_equal(st_http_build_response_head(&out, &m, &o), 0);
    assert_non_null(strstr(out.p, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out.p, "Transfer-Encoding: chunked\r\n"));
    assert_null(strstr(out.p, "Connection: close"));
    assert_null(strstr(out.p, "Content-Length"));
    out.len = 0;
    o.framing = ST_FRAME_LENGTH;
    o.content_length = 5;
    o.connection = "keep-alive";
    assert_int_equal(st_http_build_response_head(&out, &m, &o), 0);
    assert_non_null(strstr(out.p, "Content-Length: 5\r\n"));
    assert_non_null(strstr(out.p, "Connection: keep-alive\r\n"));
    assert_null(strstr(out.p, "Transfer-Encoding"));
    out.len = 0;
    assert_int_equal(st_http_build_error(&out, 502, "rid-1", 1), 0);
    assert_non_null(strstr(out.p, "HTTP/1.1 502 Bad Gateway\r\n"));
    assert_non_null(strstr(out.p, "x-request-id: rid-1\r\n"));
    assert_non_null(strstr(out.p, "Connection: close\r\n"));
    assert_non_null(strstr(out.p, "Content-Length: 16\r\n"));
    assert_string_equal(out.p + out.len - 20, "\r\n\r\n502 Bad Gateway\n");
    st_sbuf_free(&out);
}

/* The proxy's own 405 names what is allowed (RFC 9110 15.5.6); others do not. */
static void test_error_405_has_allow(void **state)
{
    st_sbuf_t out;
    st_sbuf_init(&out);
    assert_int_equal(st_http_build_error(&out, 405, "r-1", 1), 0);
    assert_string_equal(out.p, "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 23\r\nx-request-id: r-1\r\n"
                               "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
                               "Connection: close\r\n\r\n405 Method Not Allowed\n");
    out.len = 0;
    assert_int_equal(st_http_build_error(&out, 501, NULL, 1), 0);
    assert_string_equal(out.p, "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 20\r\nConnection: close\r\n\r\n"
                               "501 Not Implemented\n");
    st_sbuf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop_list),
        cmocka_unit_test(test_request_head_removes_hop_by_hop_and_sets_forwarding),
        cmocka_unit_test(test_header_value_checks),
        cmocka_unit_test(test_forwarded_headers_joined_and_proto_kept),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_shadow_host),
        cmocka_unit_test(test_response_head_framing),
        cmocka_unit_test(test_error_405_has_allow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
